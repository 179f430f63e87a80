//! The string pipeline of DOMAIN.md §6 and the rules for surnames, given names and sex; and
//! [`normalise_identity`], which puts all the normaliser's parts together.
//!
//! Pipeline ([`normalise_text`]): Unicode NFC → the transliteration table of Circ. Agenzia delle
//! Entrate 34/E 2011, written out letter by letter (`Ö` → `OE`, never a generic accent strip),
//! plus the common extra letters (Romanian, Albanian, Turkish, Polish, …) → uppercase → a final
//! accented vowel becomes vowel + apostrophe (`NICOLÒ` → `NICOLO'`) → apostrophes removed
//! (joining: `D'AMICO` → `DAMICO`), `.` `-` and every other non-letter become a space → spaces
//! collapsed → leading honorifics dropped (`SIG.RA`, `DOTT.`, …).
//!
//! Guarantees: the output contains only `A`–`Z` and single inner spaces; the pipeline is
//! idempotent; nothing panics, whatever the input. Letters outside the table keep their base
//! Latin letter when Unicode gives one (Vietnamese `ễ` → `E`); other scripts are dropped.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{decompose_canonical, is_combining_mark};

use super::codice_fiscale::{self, CfFieldContent, ValidCf};
use super::dates::DateFormat;
use super::places::{PlaceResolution, Places};
use super::{NormalisedIdentity, QualityFlags, RawIdentity, Rejection, Sex};

/// Longest accepted value of any identity field, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The official table (Circ. 34/E 2011) and the extra letters, for letters that are not ASCII.
fn transliteration(c: char) -> Option<&'static str> {
    Some(match c {
        // Official table.
        'Ä' | 'ä' | 'Æ' | 'æ' => "AE",
        'Ö' | 'ö' | 'Œ' | 'œ' => "OE",
        'Ü' | 'ü' => "UE",
        'ß' | 'ẞ' => "SS",
        'Ç' | 'ç' | 'Č' | 'č' => "C",
        'Š' | 'š' => "S",
        'Ž' | 'ž' => "Z",
        'À' | 'à' | 'Á' | 'á' | 'Â' | 'â' => "A",
        'È' | 'è' | 'É' | 'é' | 'Ê' | 'ê' | 'Ë' | 'ë' => "E",
        'Ì' | 'ì' | 'Í' | 'í' | 'Î' | 'î' | 'Ï' | 'ï' => "I",
        'Ò' | 'ò' | 'Ó' | 'ó' | 'Ô' | 'ô' => "O",
        'Ù' | 'ù' | 'Ú' | 'ú' | 'Û' | 'û' => "U",
        // Extra letters. Ø and the Hungarian long umlauts Ő Ű are the same letters as Ö Ü.
        'Ø' | 'ø' | 'Ő' | 'ő' => "OE",
        'Ű' | 'ű' => "UE",
        'Ã' | 'ã' | 'Å' | 'å' | 'Ā' | 'ā' | 'Ă' | 'ă' | 'Ą' | 'ą' => "A",
        'Ć' | 'ć' | 'Ĉ' | 'ĉ' | 'Ċ' | 'ċ' => "C",
        'Ď' | 'ď' | 'Đ' | 'đ' | 'Ð' | 'ð' => "D",
        'Ē' | 'ē' | 'Ĕ' | 'ĕ' | 'Ė' | 'ė' | 'Ę' | 'ę' | 'Ě' | 'ě' | 'Ə' | 'ə' => "E",
        'Ĝ' | 'ĝ' | 'Ğ' | 'ğ' | 'Ġ' | 'ġ' | 'Ģ' | 'ģ' => "G",
        'Ĥ' | 'ĥ' | 'Ħ' | 'ħ' => "H",
        'Ĩ' | 'ĩ' | 'Ī' | 'ī' | 'Ĭ' | 'ĭ' | 'Į' | 'į' | 'İ' | 'ı' => "I",
        'Ĳ' | 'ĳ' => "IJ",
        'Ĵ' | 'ĵ' => "J",
        'Ķ' | 'ķ' | 'ĸ' => "K",
        'Ĺ' | 'ĺ' | 'Ļ' | 'ļ' | 'Ľ' | 'ľ' | 'Ŀ' | 'ŀ' | 'Ł' | 'ł' => "L",
        'Ñ' | 'ñ' | 'Ń' | 'ń' | 'Ņ' | 'ņ' | 'Ň' | 'ň' | 'ŉ' | 'Ŋ' | 'ŋ' => "N",
        'Õ' | 'õ' | 'Ō' | 'ō' | 'Ŏ' | 'ŏ' => "O",
        'Ŕ' | 'ŕ' | 'Ŗ' | 'ŗ' | 'Ř' | 'ř' => "R",
        'Ś' | 'ś' | 'Ŝ' | 'ŝ' | 'Ş' | 'ş' | 'Ș' | 'ș' | 'ſ' => "S",
        'Ţ' | 'ţ' | 'Ț' | 'ț' | 'Ť' | 'ť' | 'Ŧ' | 'ŧ' => "T",
        'Þ' | 'þ' => "TH",
        'Ũ' | 'ũ' | 'Ū' | 'ū' | 'Ŭ' | 'ŭ' | 'Ů' | 'ů' | 'Ų' | 'ų' => "U",
        'Ŵ' | 'ŵ' => "W",
        'Ý' | 'ý' | 'ÿ' | 'Ÿ' | 'Ŷ' | 'ŷ' => "Y",
        'Ź' | 'ź' | 'Ż' | 'ż' => "Z",
        _ => return None,
    })
}

/// Vowels whose accent, at the end of a word, is written as an apostrophe.
fn is_accented_plain_vowel(c: char) -> bool {
    matches!(
        c,
        'À' | 'à'
            | 'Á'
            | 'á'
            | 'Â'
            | 'â'
            | 'È'
            | 'è'
            | 'É'
            | 'é'
            | 'Ê'
            | 'ê'
            | 'Ë'
            | 'ë'
            | 'Ì'
            | 'ì'
            | 'Í'
            | 'í'
            | 'Î'
            | 'î'
            | 'Ï'
            | 'ï'
            | 'Ò'
            | 'ò'
            | 'Ó'
            | 'ó'
            | 'Ô'
            | 'ô'
            | 'Ù'
            | 'ù'
            | 'Ú'
            | 'ú'
            | 'Û'
            | 'û'
    )
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | '‘' | '`' | '´' | 'ʼ' | 'ʹ' | '′')
}

/// Steps 1–4: NFC, transliteration, uppercase, final-accent apostrophe. Punctuation, digits and
/// blanks are kept as they are (`Nicolò D'Amico` → `NICOLO' D'AMICO`).
pub fn transliterate(s: &str) -> String {
    let chars: Vec<char> = s.nfc().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else if let Some(latin) = transliteration(c) {
            out.push_str(latin);
            let word_ends = !chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
            if is_accented_plain_vowel(c) && word_ends {
                out.push('\'');
            }
        } else if c.is_alphabetic() {
            // Outside the table: the base letter if Unicode decomposes it to one, else dropped.
            let mut base = None;
            decompose_canonical(c, |d| {
                base.get_or_insert(d);
            });
            if let Some(b) = base.filter(char::is_ascii_alphabetic) {
                out.push(b.to_ascii_uppercase());
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Steps 1–6: [`transliterate`], then apostrophes and combining marks removed, every other
/// non-letter turned into a space, spaces collapsed and trimmed. Output: `A`–`Z` and single
/// inner spaces. Honorifics are kept (place names use this).
pub fn clean(s: &str) -> String {
    let t = transliterate(s);
    let mut out = String::with_capacity(t.len());
    let mut gap = false;
    for c in t.chars() {
        match c {
            'A'..='Z' => {
                if gap && !out.is_empty() {
                    out.push(' ');
                }
                gap = false;
                out.push(c);
            }
            c if is_apostrophe(c) || is_combining_mark(c) => {}
            _ => gap = true,
        }
    }
    out
}

/// The whole pipeline: [`clean`] and then leading honorifics / status words dropped (never the
/// last word: a surname `SIGNA` stays).
pub fn normalise_text(s: &str) -> String {
    let cleaned = clean(s);
    let words: Vec<&str> = cleaned.split(' ').collect();
    let mut start = 0;
    while words.len() - start > 1 {
        let n = honorific_len(&words[start..]);
        if n == 0 || n >= words.len() - start {
            break;
        }
        start += n;
    }
    words[start..].join(" ")
}

/// Honorifics and titles, as words after [`clean`] (`SIG.RA` is `SIG RA`, `DOTT.SSA` is `DOTT SSA`).
const HONORIFICS: &[&str] = &[
    "SIG",
    "SIGRA",
    "SIGNA",
    "SIGG",
    "SIGNOR",
    "SIGNORA",
    "SIGNORE",
    "SIGNORINA",
    "DOTT",
    "DOTTSSA",
    "DOTTOR",
    "DOTTORE",
    "DOTTORESSA",
    "DR",
    "DRSSA",
    "PROF",
    "PROFSSA",
    "PROFESSOR",
    "PROFESSORE",
    "PROFESSORESSA",
    "ING",
    "AVV",
    "RAG",
    "GEOM",
    "ARCH",
    "ON",
    "SEN",
    "CAV",
    "COMM",
    "MONS",
    "DON",
    "SUOR",
    "SR",
    "MR",
    "MRS",
    "MS",
    "MME",
    "MLLE",
];

/// How many leading words form an honorific (0 if none).
fn honorific_len(words: &[&str]) -> usize {
    match words {
        ["SIG", "RA" | "NA" | "RINA" | "G", ..] => 2,
        ["DOTT" | "PROF" | "DR" | "AVV", "SSA" | "SA", ..] => 2,
        [first, ..] if HONORIFICS.contains(first) => 1,
        _ => 0,
    }
}

/// Surname particles, as words after the pipeline (`D'` and `DELL'` lose their apostrophe).
const PARTICLES: &[&str] = &[
    "D", "DE", "DI", "DA", "DEL", "DELL", "DELLA", "DELLE", "DELLO", "DEI", "DEGLI", "DAL", "DALL",
    "DALLA", "DALLE", "DALLO", "DAI", "DAGLI", "LO", "LA", "LE", "LI", "VAN", "VON", "DER", "DEN",
    "DU", "DOS", "DAS", "EL", "AL",
];

/// Words that introduce a married surname: `ROSSI IN BIANCHI`, `ROSSI VED. BIANCHI`.
const MARRIED_MARKERS: &[&str] = &["IN", "VED", "VEDOVA", "CONIUGATA", "MARITATA"];
/// Words that introduce the birth surname after the current one: `BIANCHI NATA ROSSI`.
const BIRTH_MARKERS: &[&str] = &["NATA", "NATO"];

/// A surname field taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SurnameParts {
    /// Birth surname words with particles attached to the next word (`DE GIORGI` →
    /// `["DEGIORGI"]`); empty when the field only held a married surname (`VED. BIANCHI`).
    pub tokens: Vec<String>,
    /// Married / social surname, compact.
    pub alias: Option<String>,
}

/// Splits a surname field into birth surname and married alias, and attaches particles.
///
/// Particles are glued to the word they introduce, so that `DE GIORGI`, `DEGIORGI`,
/// `De-Giorgi` and `D'AMICO` / `D AMICO` / `DAMICO` give the same tokens, and a double surname
/// keeps one token per family (`DE GIORGI ROSSI` → `["DEGIORGI", "ROSSI"]`). A particle with no
/// word after it stays a token of its own.
pub fn parse_surname(raw: &str) -> SurnameParts {
    let text = normalise_text(raw);
    let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
    let (birth, married): (&[&str], &[&str]) =
        if let Some(i) = words.iter().position(|w| MARRIED_MARKERS.contains(w)) {
            let mut rest = &words[i + 1..];
            while let [m, tail @ ..] = rest
                && MARRIED_MARKERS.contains(m)
            {
                rest = tail;
            }
            (&words[..i], rest)
        } else if let Some(i) = words.iter().position(|w| BIRTH_MARKERS.contains(w))
            && i > 0
            && i + 1 < words.len()
        {
            (&words[i + 1..], &words[..i])
        } else {
            (&words[..], &[])
        };
    let alias = attach_particles(married).concat();
    SurnameParts {
        tokens: attach_particles(birth),
        alias: (!alias.is_empty()).then_some(alias),
    }
}

fn attach_particles(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for w in words {
        pending.push_str(w);
        if !PARTICLES.contains(w) {
            out.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    out
}

/// Hypocoristics and nicknames → the registered name they usually stand for. Where a nickname
/// has several sources the commonest in the elderly South is taken (`TOTO` → SALVATORE,
/// `PIPPO` → GIUSEPPE, `TINA` → CONCETTA). Names that are also registered in their own right
/// and too ambiguous (Lino, Dino, Gina, Nuccio) are left out.
const HYPOCORISTICS: &[(&str, &str)] = &[
    ("PINO", "GIUSEPPE"),
    ("PEPPINO", "GIUSEPPE"),
    ("PEPPE", "GIUSEPPE"),
    ("PEPPUCCIO", "GIUSEPPE"),
    ("PINUCCIO", "GIUSEPPE"),
    ("BEPPE", "GIUSEPPE"),
    ("BEPPINO", "GIUSEPPE"),
    ("PIPPO", "GIUSEPPE"),
    ("PINA", "GIUSEPPINA"),
    ("PINUCCIA", "GIUSEPPINA"),
    ("PEPPINA", "GIUSEPPINA"),
    ("GIUSY", "GIUSEPPINA"),
    ("MIMMO", "DOMENICO"),
    ("MINGO", "DOMENICO"),
    ("MIMMA", "DOMENICA"),
    ("GIANNI", "GIOVANNI"),
    ("NANNI", "GIOVANNI"),
    ("VANNI", "GIOVANNI"),
    ("TOTO", "SALVATORE"),
    ("TURI", "SALVATORE"),
    ("TURIDDU", "SALVATORE"),
    ("SASA", "SALVATORE"),
    ("TINA", "CONCETTA"),
    ("CETTINA", "CONCETTA"),
    ("CONCETTINA", "CONCETTA"),
    ("UCCIO", "ANTONIO"),
    ("TONINO", "ANTONIO"),
    ("TOTONNO", "ANTONIO"),
    ("NINO", "ANTONINO"),
    ("NINETTA", "ANTONIETTA"),
    ("ENZO", "VINCENZO"),
    ("CENZINO", "VINCENZO"),
    ("ENZA", "VINCENZA"),
    ("FRANCO", "FRANCESCO"),
    ("CICCIO", "FRANCESCO"),
    ("CICCILLO", "FRANCESCO"),
    ("CHECCO", "FRANCESCO"),
    ("MENA", "FILOMENA"),
    ("NUCCIA", "ANNUNZIATA"),
    ("MELINA", "CARMELA"),
    ("GINO", "LUIGI"),
    ("GIGI", "LUIGI"),
    ("TANO", "GAETANO"),
    ("NANDO", "FERDINANDO"),
    ("LELLO", "RAFFAELE"),
    ("LELLA", "RAFFAELLA"),
    ("SANDRO", "ALESSANDRO"),
    ("ROSETTA", "ROSA"),
    ("ROSINA", "ROSA"),
    ("ORONZINO", "ORONZO"),
    ("BICE", "BEATRICE"),
];

/// The registered name a nickname stands for, if the word is in the table.
pub fn canonical_given_name(word: &str) -> Option<&'static str> {
    HYPOCORISTICS
        .iter()
        .find(|(nick, _)| *nick == word)
        .map(|(_, name)| *name)
}

/// Given names in order, after the pipeline: `Maria Grazia` → `["MARIA", "GRAZIA"]`,
/// `Mariagrazia` → `["MARIAGRAZIA"]`, `Maria-Grazia` → `["MARIA", "GRAZIA"]`.
pub fn parse_given_names(raw: &str) -> Vec<String> {
    normalise_text(raw)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// All given names joined without spaces: `MARIAGRAZIA` for both `Maria Grazia` and
/// `Mariagrazia`, so that compounds compare equal whichever way they were written.
pub fn given_names_compact(identity: &NormalisedIdentity) -> String {
    identity.given_names.concat()
}

/// `M` / `F` as commonly written: `M`, `F`, `MASCHIO`, `FEMMINA`, `MASCHILE`, `FEMMINILE`,
/// `UOMO`, `DONNA`, `MALE`, `FEMALE`, and ISTAT's `1` / `2`. Anything else is `None`.
pub fn parse_sex(raw: &str) -> Option<Sex> {
    let s = raw.trim().trim_end_matches('.');
    if s.len() > 12 {
        return None;
    }
    match s.to_ascii_uppercase().as_str() {
        "M" | "MASCHIO" | "MASCHILE" | "UOMO" | "MALE" | "1" => Some(Sex::M),
        "F" | "FEMMINA" | "FEMMINILE" | "DONNA" | "FEMALE" | "2" => Some(Sex::F),
        _ => None,
    }
}

/// Normalises one record (see [`super::normalise`]).
///
/// Flags, set when:
/// - `CF_MISSING`: the CF field is empty or holds another identifier; `CF_INVALID`: it holds
///   something that fails validation (kept nowhere); `CF_OMOCODE`: a valid omocode;
///   `OTHER_ID_IN_CF_FIELD`: STP / ENI / provisional numeric CF / ID ANPR found there and moved
///   to `other_ids`;
/// - `CF_MISMATCH`: a valid CF disagrees with the given sex, birth date (two-digit year, month,
///   day) or resolved birthplace; `SEX_MISMATCH` additionally for sex; `CF_OF_ANOTHER`
///   additionally when it disagrees in two or more of sex, day, month, year and birthplace (one
///   disagreement is most often a typo in the record, several a code that is somebody else's);
/// - `SEX_MISSING`: sex blank or unreadable. Sex, date and place are **not** filled in from the
///   CF: the CF is its own high-weight feature and copying its parts would count it twice;
/// - `DATE_MISSING`: blank or unparseable date (kept only when an identifier is present), plus
///   the flags of [`DateFormat::parse_date`];
/// - `BIRTHPLACE_MISSING` / `BIRTHPLACE_UNRESOLVED` / `BIRTHPLACE_NOT_VALID_AT_BIRTH` from
///   [`Places::resolve_with_hint`] (the valid CF's place code breaks ties between homonyms);
///   `FOREIGN_BORN` when the birthplace or the valid CF's place is a `Z` code;
/// - `SURNAME_ALIAS_PRESENT`: a married / social surname was found (in the surname field or the
///   alias column, the column winning); `SURNAME_MAY_BE_MARRIED`: the surname field only held a
///   married surname (`VED. BIANCHI`), which is then also used as the surname;
/// - `GIVEN_NAME_HYPOCORISTIC`: the first given name is in the nickname table.
///
/// Rejects a field longer than [`MAX_FIELD_CHARS`], an empty surname or given name after
/// normalisation, and a record with neither a birth date nor an identifier (valid CF or another
/// identifier).
pub fn normalise_identity(
    raw: &RawIdentity<'_>,
    date_format: &DateFormat,
) -> Result<NormalisedIdentity, Rejection> {
    let fields = [
        ("surname", raw.surname),
        ("given_names", raw.given_names),
        ("sex", raw.sex),
        ("birth_date", raw.birth_date),
        ("birthplace", raw.birthplace),
        ("codice_fiscale", raw.codice_fiscale),
        ("surname_alias", raw.surname_alias),
    ];
    for (field, value) in fields {
        if value.chars().take(MAX_FIELD_CHARS + 1).count() > MAX_FIELD_CHARS {
            return Err(Rejection {
                field,
                reason: format!("longer than {MAX_FIELD_CHARS} characters"),
            });
        }
    }
    let mut out = NormalisedIdentity::default();
    let mut flags = QualityFlags::default();

    // Surname and alias.
    let parts = parse_surname(raw.surname);
    let column = parse_surname(raw.surname_alias);
    let column_alias = Some(column.tokens.concat())
        .filter(|a| !a.is_empty())
        .or(column.alias);
    out.surname_alias = column_alias.or_else(|| parts.alias.clone());
    out.surname_tokens = parts.tokens;
    if out.surname_tokens.is_empty() {
        match parts.alias {
            Some(married) => {
                flags.set(QualityFlags::SURNAME_MAY_BE_MARRIED);
                out.surname_tokens = vec![married];
            }
            None => return Err(reject("surname", "empty after normalisation")),
        }
    }
    out.surname = out.surname_tokens.concat();
    if out.surname_alias.is_some() {
        flags.set(QualityFlags::SURNAME_ALIAS_PRESENT);
    }

    // Given names.
    out.given_names = parse_given_names(raw.given_names);
    let Some(first) = out.given_names.first() else {
        return Err(reject("given_names", "empty after normalisation"));
    };
    out.given_name_canonical = canonical_given_name(first).map(str::to_string);
    if out.given_name_canonical.is_some() {
        flags.set(QualityFlags::GIVEN_NAME_HYPOCORISTIC);
    }

    // Codice fiscale field.
    let cf: Option<ValidCf> = match codice_fiscale::classify_cf_field(raw.codice_fiscale) {
        CfFieldContent::Empty => {
            flags.set(QualityFlags::CF_MISSING);
            None
        }
        CfFieldContent::Cf(v) => {
            if v.omocodia_level > 0 {
                flags.set(QualityFlags::CF_OMOCODE);
            }
            out.codice_fiscale = Some(v.code.clone());
            Some(v)
        }
        CfFieldContent::Other(kind, code) => {
            flags.set(QualityFlags::CF_MISSING);
            flags.set(QualityFlags::OTHER_ID_IN_CF_FIELD);
            out.other_ids.push((kind, code));
            None
        }
        CfFieldContent::Invalid(_) => {
            flags.set(QualityFlags::CF_INVALID);
            None
        }
    };
    let has_identifier = cf.is_some() || !out.other_ids.is_empty();

    // How many of sex, day, month, year and birthplace the CF disagrees with.
    let mut cf_disagreements = 0u32;

    // Sex.
    out.sex = parse_sex(raw.sex);
    match (out.sex, &cf) {
        (None, _) => flags.set(QualityFlags::SEX_MISSING),
        (Some(given), Some(v)) if given != v.sex => {
            flags.set(QualityFlags::SEX_MISMATCH);
            flags.set(QualityFlags::CF_MISMATCH);
            cf_disagreements += 1;
        }
        _ => {}
    }

    // Birth date.
    if raw.birth_date.trim().is_empty() {
        if !has_identifier {
            return Err(reject(
                "birth_date",
                "missing, and no identifier to link on",
            ));
        }
        flags.set(QualityFlags::DATE_MISSING);
    } else {
        match date_format.parse_date(raw.birth_date) {
            Ok((date, date_flags)) => {
                flags.set(date_flags);
                out.birth_date = Some(date);
                if let Some(v) = &cf {
                    let parts = [((date.year % 100) as u8, v.birth_year2), (date.month, v.birth_month), (date.day, v.birth_day)];
                    let mut differ = parts.iter().filter(|(a, b)| a != b).count() as u32;
                    // Day and month swapped is one slip of the pen, not two.
                    if date.day != date.month && (date.day, date.month) == (v.birth_month, v.birth_day) {
                        differ -= 1;
                    }
                    if differ > 0 {
                        flags.set(QualityFlags::CF_MISMATCH);
                        cf_disagreements += differ;
                    }
                }
            }
            Err(_) if has_identifier => flags.set(QualityFlags::DATE_MISSING),
            Err(e) => {
                return Err(Rejection {
                    field: "birth_date",
                    reason: format!("{e}, and no identifier to link on"),
                });
            }
        }
    }

    // Birthplace.
    let hint = cf.as_ref().map(|v| v.place_code.as_str());
    match Places::bundled().resolve_with_hint(raw.birthplace, out.birth_date, hint) {
        PlaceResolution::Resolved {
            code,
            foreign,
            valid_at_birth,
        } => {
            if foreign {
                flags.set(QualityFlags::FOREIGN_BORN);
            }
            if !valid_at_birth {
                flags.set(QualityFlags::BIRTHPLACE_NOT_VALID_AT_BIRTH);
            }
            if hint.is_some_and(|h| h != code) {
                flags.set(QualityFlags::CF_MISMATCH);
                cf_disagreements += 1;
            }
            out.birthplace = Some(code);
        }
        PlaceResolution::Unresolved => flags.set(QualityFlags::BIRTHPLACE_UNRESOLVED),
        PlaceResolution::Missing => flags.set(QualityFlags::BIRTHPLACE_MISSING),
    }
    if hint.is_some_and(|h| h.starts_with('Z')) {
        flags.set(QualityFlags::FOREIGN_BORN);
    }
    if cf_disagreements >= 2 {
        flags.set(QualityFlags::CF_OF_ANOTHER);
    }

    out.flags = flags;
    Ok(out)
}

fn reject(field: &'static str, reason: &str) -> Rejection {
    Rejection {
        field,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::{BirthDate, OtherIdKind};
    use proptest::prelude::*;

    fn fmt() -> DateFormat {
        DateFormat::parse("%d/%m/%Y").unwrap()
    }

    fn base() -> RawIdentity<'static> {
        RawIdentity {
            surname: "Rossi",
            given_names: "Mario",
            sex: "M",
            birth_date: "11/02/1979",
            birthplace: "C566",
            codice_fiscale: "RSSMRA79B11C566R",
            surname_alias: "",
        }
    }

    fn run(raw: &RawIdentity<'_>) -> NormalisedIdentity {
        normalise_identity(raw, &fmt()).unwrap()
    }

    #[test]
    fn official_transliteration_not_a_generic_strip() {
        assert_eq!(normalise_text("Öz"), "OEZ");
        assert_eq!(normalise_text("Müller"), "MUELLER");
        assert_eq!(normalise_text("Schäfer"), "SCHAEFER");
        assert_eq!(normalise_text("Strauß"), "STRAUSS");
        assert_eq!(normalise_text("Œuvre Æsir"), "OEUVRE AESIR");
        assert_eq!(
            normalise_text("Çela Čapek Šimić Žižek"),
            "CELA CAPEK SIMIC ZIZEK"
        );
        assert_eq!(
            normalise_text("Ștefănescu Țurcanu Şahin"),
            "STEFANESCU TURCANU SAHIN"
        );
        assert_eq!(
            normalise_text("Gjergjë Hoxhaj Ilır Ağca Łukasz Muñoz"),
            "GJERGJE HOXHAJ ILIR AGCA LUKASZ MUNOZ"
        );
        assert_eq!(
            normalise_text("Ênio Îsa Ôdo Ûgo Ëlla Ïda"),
            "ENIO ISA ODO UGO ELLA IDA"
        );
        assert_eq!(normalise_text("Nguyễn"), "NGUYEN");
        assert_eq!(normalise_text("Öz\u{0308}"), "OEZ");
    }

    #[test]
    fn nfc_first() {
        // "O" + combining diaeresis composes to Ö before the table is applied.
        assert_eq!(normalise_text("O\u{0308}z"), "OEZ");
        assert_eq!(normalise_text("Nicolo\u{0300}"), "NICOLO");
    }

    #[test]
    fn final_accent_becomes_an_apostrophe_then_goes() {
        assert_eq!(transliterate("Nicolò"), "NICOLO'");
        assert_eq!(transliterate("Nicolò Rossi"), "NICOLO' ROSSI");
        assert_eq!(transliterate("Débora"), "DEBORA", "only final accents");
        for s in ["NICOLÒ", "NICOLO'", "NICOLO", "Nicolo’", "nicolò"] {
            assert_eq!(normalise_text(s), "NICOLO", "{s}");
        }
    }

    #[test]
    fn punctuation_and_spaces() {
        assert_eq!(normalise_text("  D'Amico\t "), "DAMICO");
        assert_eq!(normalise_text("Rossi-Bianchi"), "ROSSI BIANCHI");
        assert_eq!(normalise_text("M.Grazia"), "M GRAZIA");
        assert_eq!(normalise_text("Rossi  2 🙂 Bianchi"), "ROSSI BIANCHI");
        assert_eq!(normalise_text("王芳"), "");
    }

    #[test]
    fn honorifics_are_dropped_from_the_front_only() {
        assert_eq!(normalise_text("Sig.ra Rossi"), "ROSSI");
        assert_eq!(normalise_text("SIG. RA ROSSI"), "ROSSI");
        assert_eq!(normalise_text("Dott.ssa Maria"), "MARIA");
        assert_eq!(normalise_text("Prof. Dott. Mario"), "MARIO");
        assert_eq!(normalise_text("Signa"), "SIGNA", "never the last word");
        assert_eq!(normalise_text("Mario Don"), "MARIO DON");
    }

    #[test]
    fn apostrophe_particles_are_equal() {
        let s = |x| {
            run(&RawIdentity {
                surname: x,
                ..base()
            })
        };
        for x in ["D'AMICO", "DAMICO", "D AMICO", "d'Amico", "D’Amico"] {
            assert_eq!(s(x).surname, "DAMICO", "{x}");
            assert_eq!(s(x).surname_tokens, ["DAMICO"], "{x}");
        }
    }

    #[test]
    fn particle_surnames_compact_and_tokens() {
        for x in ["DE GIORGI", "DEGIORGI", "De-Giorgi", "de giorgi"] {
            let p = parse_surname(x);
            assert_eq!(p.tokens.concat(), "DEGIORGI", "{x}");
            assert_eq!(p.tokens, ["DEGIORGI"], "{x}");
        }
        assert_eq!(parse_surname("Dell'Anna").tokens, ["DELLANNA"]);
        assert_eq!(
            parse_surname("Della Rocca Lo Russo").tokens,
            ["DELLAROCCA", "LORUSSO"]
        );
        assert_eq!(parse_surname("De Lo Vecchio").tokens, ["DELOVECCHIO"]);
        assert_eq!(parse_surname("Greco Quarta").tokens, ["GRECO", "QUARTA"]);
        assert_eq!(parse_surname("Li").tokens, ["LI"]);
    }

    #[test]
    fn married_surnames_become_the_alias() {
        let r = run(&RawIdentity {
            surname: "ROSSI IN BIANCHI",
            ..base()
        });
        assert_eq!(
            (r.surname.as_str(), r.surname_alias.as_deref()),
            ("ROSSI", Some("BIANCHI"))
        );
        assert!(r.flags.has(QualityFlags::SURNAME_ALIAS_PRESENT));
        let r = run(&RawIdentity {
            surname: "Rossi ved. Bianchi",
            ..base()
        });
        assert_eq!(
            (r.surname.as_str(), r.surname_alias.as_deref()),
            ("ROSSI", Some("BIANCHI"))
        );
        let r = run(&RawIdentity {
            surname: "ROSSI VEDOVA DE GIORGI",
            ..base()
        });
        assert_eq!(
            (r.surname.as_str(), r.surname_alias.as_deref()),
            ("ROSSI", Some("DEGIORGI"))
        );
        let r = run(&RawIdentity {
            surname: "Bianchi nata Rossi",
            ..base()
        });
        assert_eq!(
            (r.surname.as_str(), r.surname_alias.as_deref()),
            ("ROSSI", Some("BIANCHI"))
        );
        // Only the married surname is known: used as surname, flagged.
        let r = run(&RawIdentity {
            surname: "VED. BIANCHI",
            ..base()
        });
        assert_eq!(
            (r.surname.as_str(), r.surname_alias.as_deref()),
            ("BIANCHI", Some("BIANCHI"))
        );
        assert!(r.flags.has(QualityFlags::SURNAME_MAY_BE_MARRIED));
        let r = run(&base());
        assert_eq!(r.surname_alias, None);
        assert!(!r.flags.has(QualityFlags::SURNAME_ALIAS_PRESENT));
    }

    #[test]
    fn alias_column() {
        let r = run(&RawIdentity {
            surname_alias: "De Giorgi",
            ..base()
        });
        assert_eq!(r.surname_alias.as_deref(), Some("DEGIORGI"));
        assert!(r.flags.has(QualityFlags::SURNAME_ALIAS_PRESENT));
        let r = run(&RawIdentity {
            surname: "Rossi in Verdi",
            surname_alias: "Bianchi",
            ..base()
        });
        assert_eq!(
            r.surname_alias.as_deref(),
            Some("BIANCHI"),
            "the column wins"
        );
        let r = run(&RawIdentity {
            surname_alias: " - ",
            ..base()
        });
        assert_eq!(r.surname_alias, None);
    }

    #[test]
    fn compound_given_names() {
        let a = run(&RawIdentity {
            given_names: "Maria Grazia",
            ..base()
        });
        let b = run(&RawIdentity {
            given_names: "Mariagrazia",
            ..base()
        });
        let c = run(&RawIdentity {
            given_names: "Maria-Grazia",
            ..base()
        });
        assert_eq!(a.given_names, ["MARIA", "GRAZIA"]);
        assert_eq!(b.given_names, ["MARIAGRAZIA"]);
        assert_eq!(c.given_names, ["MARIA", "GRAZIA"]);
        assert_eq!(given_names_compact(&a), "MARIAGRAZIA");
        assert_eq!(given_names_compact(&b), "MARIAGRAZIA");
        assert_eq!(given_names_compact(&c), "MARIAGRAZIA");
        assert_eq!(b.given_names_compact(), a.given_names_compact());
        let r = run(&RawIdentity {
            given_names: "Gian Luca",
            ..base()
        });
        assert_eq!(r.given_names_compact(), "GIANLUCA");
    }

    #[test]
    fn hypocoristics_are_an_added_feature() {
        for (nick, name) in [
            ("Pino", "GIUSEPPE"),
            ("Peppino", "GIUSEPPE"),
            ("Peppe", "GIUSEPPE"),
            ("Pippo", "GIUSEPPE"),
            ("Mimmo", "DOMENICO"),
            ("Gianni", "GIOVANNI"),
            ("Totò", "SALVATORE"),
            ("Toto'", "SALVATORE"),
            ("Pina", "GIUSEPPINA"),
            ("Tina", "CONCETTA"),
            ("Uccio", "ANTONIO"),
            ("Ninetta", "ANTONIETTA"),
            ("Nino", "ANTONINO"),
            ("Enzo", "VINCENZO"),
            ("Franco", "FRANCESCO"),
            ("Ciccio", "FRANCESCO"),
            ("Mena", "FILOMENA"),
            ("Nuccia", "ANNUNZIATA"),
            ("Melina", "CARMELA"),
        ] {
            let r = run(&RawIdentity {
                given_names: nick,
                ..base()
            });
            assert_eq!(r.given_name_canonical.as_deref(), Some(name), "{nick}");
            assert_eq!(r.given_names, [normalise_text(nick)], "never replaced");
            assert!(r.flags.has(QualityFlags::GIVEN_NAME_HYPOCORISTIC));
        }
        let r = run(&RawIdentity {
            given_names: "Rocco",
            ..base()
        });
        assert_eq!(r.given_name_canonical, None);
        assert!(!r.flags.has(QualityFlags::GIVEN_NAME_HYPOCORISTIC));
        assert!(HYPOCORISTICS.len() >= 40);
        for (nick, name) in HYPOCORISTICS {
            assert_eq!(normalise_text(nick), *nick);
            assert_eq!(normalise_text(name), *name);
            assert!(
                canonical_given_name(name).is_none(),
                "{name} is itself a nickname"
            );
        }
    }

    #[test]
    fn sex_values() {
        for s in ["M", "m", "Maschio", "MASCHILE", "1", " M. "] {
            assert_eq!(parse_sex(s), Some(Sex::M), "{s}");
        }
        for s in ["F", "femmina", "FEMMINILE", "2", "Donna"] {
            assert_eq!(parse_sex(s), Some(Sex::F), "{s}");
        }
        for s in ["", "X", "0", "9", "MF", "altro"] {
            assert_eq!(parse_sex(s), None, "{s}");
        }
    }

    #[test]
    fn a_clean_record() {
        let r = run(&base());
        assert_eq!(r.surname, "ROSSI");
        assert_eq!(r.surname_tokens, ["ROSSI"]);
        assert_eq!(r.given_names, ["MARIO"]);
        assert_eq!(r.sex, Some(Sex::M));
        assert_eq!(
            r.birth_date,
            Some(BirthDate {
                year: 1979,
                month: 2,
                day: 11
            })
        );
        assert_eq!(r.birthplace.as_deref(), Some("C566"));
        assert_eq!(r.codice_fiscale.as_deref(), Some("RSSMRA79B11C566R"));
        // 11/02: day and month could be swapped; nothing else to say.
        assert_eq!(
            r.flags.0,
            QualityFlags::DATE_DAY_MONTH_AMBIGUOUS,
            "{:b}",
            r.flags.0
        );
    }

    #[test]
    fn cf_disagreements_are_flagged_not_corrected() {
        // CF day 70 = a woman; the record says M.
        let r = run(&RawIdentity {
            surname: "De Michele",
            given_names: "Maria Grazia",
            sex: "M",
            birth_date: "30/12/1938",
            birthplace: "Lecce",
            codice_fiscale: "DMCMGR38T70E506H",
            surname_alias: "",
        });
        assert_eq!(r.sex, Some(Sex::M));
        assert!(r.flags.has(QualityFlags::SEX_MISMATCH) && r.flags.has(QualityFlags::CF_MISMATCH));
        assert!(!r.flags.has(QualityFlags::CF_OF_ANOTHER), "one disagreement (sex) is a typo, not another's code");
        assert_eq!(r.birthplace.as_deref(), Some("E506"));

        let r = run(&RawIdentity {
            birth_date: "12/02/1979",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_MISMATCH) && !r.flags.has(QualityFlags::SEX_MISMATCH));
        assert!(!r.flags.has(QualityFlags::CF_OF_ANOTHER), "the day alone differs");
        assert_eq!(r.birth_date.map(|d| d.day), Some(12));
        let r = run(&RawIdentity {
            birthplace: "Galatina",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_MISMATCH) && !r.flags.has(QualityFlags::CF_OF_ANOTHER));
        assert_eq!(r.birthplace.as_deref(), Some("D862"));
        // Another person's code: day and birthplace differ.
        let r = run(&RawIdentity {
            birth_date: "12/02/1979",
            birthplace: "Galatina",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_MISMATCH) && r.flags.has(QualityFlags::CF_OF_ANOTHER));
        // The day, the month and the year all differ.
        let r = run(&RawIdentity {
            birth_date: "03/05/1951",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_OF_ANOTHER));
        // Day and month swapped (11 February written as 2 November): one slip, the code kept.
        let r = run(&RawIdentity {
            birth_date: "02/11/1979",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_MISMATCH) && !r.flags.has(QualityFlags::CF_OF_ANOTHER));
    }

    #[test]
    fn cf_field_contents() {
        let r = run(&RawIdentity {
            codice_fiscale: "",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_MISSING));
        let r = run(&RawIdentity {
            codice_fiscale: "RSSMRA79B11C566X",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_INVALID) && r.codice_fiscale.is_none());
        let omocode = codice_fiscale::omocode("RSSMRA79B11C566R", 2).unwrap();
        let r = run(&RawIdentity {
            codice_fiscale: &omocode,
            ..base()
        });
        assert!(r.flags.has(QualityFlags::CF_OMOCODE) && !r.flags.has(QualityFlags::CF_MISMATCH));
        assert_eq!(
            r.codice_fiscale.as_deref(),
            Some(omocode.as_str()),
            "not folded back"
        );
        let r = run(&RawIdentity {
            codice_fiscale: "STP1601010000123",
            ..base()
        });
        assert_eq!(
            r.other_ids,
            [(OtherIdKind::Stp, "STP1601010000123".to_string())]
        );
        assert!(
            r.flags.has(QualityFlags::OTHER_ID_IN_CF_FIELD)
                && r.flags.has(QualityFlags::CF_MISSING)
        );
        assert!(r.codice_fiscale.is_none());
    }

    #[test]
    fn sex_missing() {
        let r = run(&RawIdentity { sex: "", ..base() });
        assert!(r.flags.has(QualityFlags::SEX_MISSING));
        assert_eq!(r.sex, None, "not copied from the CF");
        let r = run(&RawIdentity { sex: "?", ..base() });
        assert!(r.flags.has(QualityFlags::SEX_MISSING));
    }

    #[test]
    fn dates_in_records() {
        let r = run(&RawIdentity {
            birth_date: "garbage",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::DATE_MISSING));
        assert_eq!(r.birth_date, None, "never taken from the CF");
        let r = run(&RawIdentity {
            birth_date: "",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::DATE_MISSING));
        let e = normalise_identity(
            &RawIdentity {
                birth_date: "",
                codice_fiscale: "",
                ..base()
            },
            &fmt(),
        );
        assert_eq!(e.unwrap_err().field, "birth_date");
        let e = normalise_identity(
            &RawIdentity {
                birth_date: "31/02/1950",
                codice_fiscale: "RSSMRA79B11C566X",
                ..base()
            },
            &fmt(),
        );
        assert_eq!(e.unwrap_err().field, "birth_date");
        // Another identifier is enough to keep a record without a date.
        let r = run(&RawIdentity {
            birth_date: "",
            codice_fiscale: "ENI1601010000123",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::DATE_MISSING));
        let r = run(&RawIdentity {
            birth_date: "01/01/1979",
            codice_fiscale: "",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::DATE_PLACEHOLDER));
        let r = run(&RawIdentity {
            birth_date: "03/04/1979",
            codice_fiscale: "",
            ..base()
        });
        assert!(r.flags.has(QualityFlags::DATE_DAY_MONTH_AMBIGUOUS));
    }

    #[test]
    fn birthplaces_in_records() {
        let born = |place: &'static str, date: &'static str| {
            run(&RawIdentity {
                birthplace: place,
                birth_date: date,
                codice_fiscale: "",
                ..base()
            })
        };
        assert_eq!(
            born("Presicce", "01/06/1950").birthplace.as_deref(),
            Some("H047")
        );
        assert_eq!(
            born("Presicce", "01/06/2020").birthplace.as_deref(),
            Some("M428")
        );
        let r = born("H047", "01/06/2020");
        assert!(r.flags.has(QualityFlags::BIRTHPLACE_NOT_VALID_AT_BIRTH));
        assert_eq!(
            born("Pola", "15/06/1935").birthplace.as_deref(),
            Some("G778")
        );
        let r = born("Albania", "15/06/1975");
        assert_eq!(r.birthplace.as_deref(), Some("Z100"));
        assert!(r.flags.has(QualityFlags::FOREIGN_BORN));
        let r = born("Italia", "15/06/1975");
        assert!(r.flags.has(QualityFlags::BIRTHPLACE_UNRESOLVED) && r.birthplace.is_none());
        let r = born("", "15/06/1975");
        assert!(r.flags.has(QualityFlags::BIRTHPLACE_MISSING));
        // A valid CF tells homonyms apart.
        let cf = codice_fiscale::compute(
            "Rossi",
            "Mario",
            Sex::M,
            BirthDate {
                year: 1979,
                month: 2,
                day: 11,
            },
            "M261",
        );
        let r = run(&RawIdentity {
            birthplace: "Castro",
            codice_fiscale: &cf,
            ..base()
        });
        assert_eq!(r.birthplace.as_deref(), Some("M261"));
        assert!(!r.flags.has(QualityFlags::CF_MISMATCH));
    }

    #[test]
    fn rejections() {
        let e = normalise_identity(
            &RawIdentity {
                surname: " '- ",
                ..base()
            },
            &fmt(),
        )
        .unwrap_err();
        assert_eq!(e.field, "surname");
        let e = normalise_identity(
            &RawIdentity {
                given_names: "🙂",
                ..base()
            },
            &fmt(),
        )
        .unwrap_err();
        assert_eq!(e.field, "given_names");
        let long = "A".repeat(MAX_FIELD_CHARS + 1);
        let e = normalise_identity(
            &RawIdentity {
                birthplace: &long,
                ..base()
            },
            &fmt(),
        )
        .unwrap_err();
        assert_eq!(e.field, "birthplace");
        assert!(e.reason.contains("200"));
        let ok = "A".repeat(MAX_FIELD_CHARS);
        assert!(
            normalise_identity(
                &RawIdentity {
                    surname: &ok,
                    ..base()
                },
                &fmt()
            )
            .is_ok()
        );
    }

    proptest! {
        #[test]
        fn pipeline_is_idempotent_and_ascii(s in "\\PC{0,40}") {
            let once = normalise_text(&s);
            prop_assert_eq!(normalise_text(&once), once.clone());
            prop_assert!(once.bytes().all(|c| c.is_ascii_uppercase() || c == b' '), "{:?}", once);
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
            let c = clean(&s);
            prop_assert_eq!(clean(&c), c);
        }

        #[test]
        fn pipeline_on_latin_names(s in "[a-zA-Z àèéìòùÀÈÉÌÒÙäöüÄÖÜßçÇșțăâîëñ'’.-]{0,30}") {
            let once = normalise_text(&s);
            prop_assert_eq!(normalise_text(&once), once.clone());
            prop_assert!(once.bytes().all(|c| c.is_ascii_uppercase() || c == b' '));
        }

        #[test]
        fn surname_outputs_are_compact(s in "\\PC{0,40}") {
            let p = parse_surname(&s);
            for t in p.tokens.iter().chain(p.alias.iter()) {
                prop_assert!(!t.is_empty() && t.bytes().all(|c| c.is_ascii_uppercase()));
            }
        }

        #[test]
        fn normalise_never_panics(
            surname in "\\PC{0,30}", given in "\\PC{0,30}", sex in "\\PC{0,3}", date in "\\PC{0,12}",
            place in "\\PC{0,20}", cf in "\\PC{0,18}", alias in "\\PC{0,10}",
        ) {
            let raw = RawIdentity {
                surname: &surname, given_names: &given, sex: &sex, birth_date: &date,
                birthplace: &place, codice_fiscale: &cf, surname_alias: &alias,
            };
            if let Ok(n) = normalise_identity(&raw, &fmt()) {
                prop_assert!(!n.surname.is_empty() && !n.given_names.is_empty());
                prop_assert!(n.birth_date.is_some() || n.codice_fiscale.is_some() || !n.other_ids.is_empty());
            }
        }
    }
}
