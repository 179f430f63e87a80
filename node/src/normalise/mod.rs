//! Normalisation of Italian identity fields (DOMAIN.md §4–6). Pure functions over values.
//!
//! What goes in: the raw strings of one export row. What comes out: a [`NormalisedIdentity`] whose
//! values are ready for the encoder, each field with quality flags. Values never leave the node;
//! only the flags (without values) travel with an encoding.
//!
//! Sub-modules:
//! - [`text`]: the string pipeline (NFC → official transliteration table of Circ. 34/E 2011 →
//!   uppercase → final-accent apostrophe rule → punctuation removal → spaces → honorifics) and the
//!   surname / given-name rules (particles, married surnames, compounds, hypocoristics);
//! - [`dates`]: dates in the format an entity declares, with ambiguity / placeholder flags;
//! - [`places`]: birthplace → Belfiore code valid at the birth date (bundled historic table);
//! - [`codice_fiscale`]: validation (pattern, check character, omocodia), computation, and
//!   recognition of STP / ENI / provisional numeric codes typed into the CF field.
//!
//! Limits: every field is at most [`text::MAX_FIELD_CHARS`] characters (longer → [`Rejection`]);
//! no function of this module panics or does I/O (the reference tables are compiled in).

pub mod codice_fiscale;
pub mod dates;
pub mod places;
pub mod text;

use serde::{Deserialize, Serialize};

/// One export row's identity fields, as read. Empty string = absent.
#[derive(Debug, Clone, Default)]
pub struct RawIdentity<'a> {
    pub surname: &'a str,
    pub given_names: &'a str,
    pub sex: &'a str,
    pub birth_date: &'a str,
    pub birthplace: &'a str,
    pub codice_fiscale: &'a str,
    pub surname_alias: &'a str,
}

/// A calendar date of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BirthDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    M,
    F,
}

/// Identifiers other than a valid codice fiscale, each encoded as its own exact-token kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OtherIdKind {
    /// Straniero Temporaneamente Presente: `STP` + 13 digits.
    Stp,
    /// Europeo Non Iscritto: `ENI` + 13 digits.
    Eni,
    /// Provisional numeric codice fiscale (11 digits).
    ProvisionalCf,
    /// ANPR identifier (9 characters).
    IdAnpr,
}

/// Data-quality flags. They travel with the encoding (values never do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QualityFlags(pub u32);

impl QualityFlags {
    pub const CF_MISSING: u32 = 1 << 0;
    pub const CF_INVALID: u32 = 1 << 1;
    pub const CF_OMOCODE: u32 = 1 << 2;
    /// The CF disagrees with the other fields (sex, birth date or birthplace).
    pub const CF_MISMATCH: u32 = 1 << 3;
    pub const SEX_MISSING: u32 = 1 << 4;
    /// Sex given differs from the sex implied by the CF (flagged, not corrected).
    pub const SEX_MISMATCH: u32 = 1 << 5;
    pub const DATE_MISSING: u32 = 1 << 6;
    /// Day and month are both ≤ 12: a swap cannot be excluded.
    pub const DATE_DAY_MONTH_AMBIGUOUS: u32 = 1 << 7;
    /// A placeholder date such as 01/01/1900 or 01/01/YYYY.
    pub const DATE_PLACEHOLDER: u32 = 1 << 8;
    /// The year was written with two digits and had to be placed in a century.
    pub const DATE_TWO_DIGIT_YEAR: u32 = 1 << 9;
    pub const BIRTHPLACE_MISSING: u32 = 1 << 10;
    pub const BIRTHPLACE_UNRESOLVED: u32 = 1 << 11;
    /// The code given was not valid at the birth date (e.g. a comune created later).
    pub const BIRTHPLACE_NOT_VALID_AT_BIRTH: u32 = 1 << 12;
    pub const FOREIGN_BORN: u32 = 1 << 13;
    pub const SURNAME_ALIAS_PRESENT: u32 = 1 << 14;
    /// A non-CF identifier (STP/ENI/provisional) was typed into the CF field.
    pub const OTHER_ID_IN_CF_FIELD: u32 = 1 << 15;
    pub const GIVEN_NAME_HYPOCORISTIC: u32 = 1 << 16;
    /// The surname field held only a married surname (`VED. BIANCHI`); it is used as the surname
    /// (and as the alias) because the birth surname is unknown.
    pub const SURNAME_MAY_BE_MARRIED: u32 = 1 << 17;
    /// The CF disagrees with two or more of the record's sex, birth day, birth month, birth year
    /// and birthplace: most likely another person's code (a placeholder, a relative's), not a
    /// typo in the record. Set with `CF_MISMATCH`; such a code is not sent as evidence.
    pub const CF_OF_ANOTHER: u32 = 1 << 18;

    pub fn set(&mut self, flag: u32) {
        self.0 |= flag;
    }
    pub fn has(&self, flag: u32) -> bool {
        self.0 & flag != 0
    }
}

/// The identity of one record after normalisation: what the encoder consumes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NormalisedIdentity {
    /// Birth surname in compact form (particles joined, no spaces): `DEGIORGI`.
    pub surname: String,
    /// Surname words with each particle glued to the word it introduces, so every spelling of
    /// a particle surname gives the same tokens: `DE GIORGI` / `De-Giorgi` / `DEGIORGI` →
    /// `["DEGIORGI"]`; a double surname keeps one token per family (`DE GIORGI ROSSI` →
    /// `["DEGIORGI", "ROSSI"]`). The first token is the one used alone.
    pub surname_tokens: Vec<String>,
    /// Married / social surname (from "ROSSI IN BIANCHI", "VED. BIANCHI" or an alias column).
    pub surname_alias: Option<String>,
    /// Given names in order, normalised (`["MARIA", "GRAZIA"]`).
    pub given_names: Vec<String>,
    /// Canonical given name from the hypocoristic table when the first name is a nickname
    /// (`PEPPINO` → `GIUSEPPE`); an added feature, never a replacement.
    pub given_name_canonical: Option<String>,
    pub sex: Option<Sex>,
    pub birth_date: Option<BirthDate>,
    /// Belfiore code valid at the birth date, or a foreign `Z` code.
    pub birthplace: Option<String>,
    /// A valid codice fiscale (omocodes kept as they are).
    pub codice_fiscale: Option<String>,
    pub other_ids: Vec<(OtherIdKind, String)>,
    pub flags: QualityFlags,
}

impl NormalisedIdentity {
    /// All given names joined: `MARIAGRAZIA` for both `Maria Grazia` and `Mariagrazia`.
    pub fn given_names_compact(&self) -> String {
        text::given_names_compact(self)
    }
}

pub use text::given_names_compact;

/// Why a row cannot be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The canonical field at fault (`surname`, `given_names`, `birth_date`, ...).
    pub field: &'static str,
    pub reason: String,
}

/// Normalises one record's identity. A record is rejected only when it cannot be linked at all
/// (no surname, no given name, or no usable birth date and no identifier); every lesser problem
/// becomes a quality flag.
pub fn normalise(
    raw: &RawIdentity<'_>,
    date_format: &dates::DateFormat,
) -> Result<NormalisedIdentity, Rejection> {
    text::normalise_identity(raw, date_format)
}
