//! The codice fiscale (DOMAIN.md §4): validation, computation, omocodia, and recognition of the
//! other identifiers that end up typed into a CF column.
//!
//! Guarantees:
//! - [`validate`] accepts a code only if its shape is right (letters, digits or omocodia letters
//!   where they belong, a month letter, a calendar-possible day, omocodia letters replacing digits
//!   from the right) **and** its check character matches. Any single-character substitution of a
//!   valid code is rejected: the check-character weights are all distinct modulo 26 within each
//!   position, and the omocodia letters never share a weight with a digit.
//! - Omocodes are kept as written. Nothing here folds letters back to digits for equality: an
//!   omocode is a different person. Only the *decoded* fields of [`ValidCf`] (date, place) read
//!   through the substitution.
//! - No function panics, whatever the input.

use std::fmt;

use super::{BirthDate, OtherIdKind, Sex, text};

/// Month letters, January to December.
const MONTHS: &[u8; 12] = b"ABCDEHLMPRST";
/// Omocodia substitutes for the digits 0..=9.
const OMOCODE_LETTERS: &[u8; 10] = b"LMNPQRSTUV";
/// 0-based positions of the seven numeric characters (year, day, place digits).
const NUMERIC_POSITIONS: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
/// Check-character weights at odd (1-based) positions, for `A..=Z`; digit `d` weighs as letter `d`.
const ODD_WEIGHTS: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];
/// Longest input (non-blank characters) examined by [`classify_cf_field`] before giving up.
const MAX_FIELD_CHARS: usize = 64;

/// A syntactically valid codice fiscale with its decoded parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCf {
    /// The code as written (uppercase, no spaces), omocodia letters kept.
    pub code: String,
    /// How many of the seven numeric positions carry an omocodia letter (0 = not an omocode).
    pub omocodia_level: u8,
    /// `F` when the encoded day is above 40.
    pub sex: Sex,
    /// Decoded two-digit birth year.
    pub birth_year2: u8,
    /// Decoded birth month, 1..=12.
    pub birth_month: u8,
    /// Decoded birth day, 1..=31 (the +40 for women removed).
    pub birth_day: u8,
    /// Decoded Belfiore / `Z` code of the birthplace (omocodia letters turned back into digits).
    pub place_code: String,
}

/// Why a string is not a valid codice fiscale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfError {
    Empty,
    /// Number of non-blank characters, when it is not 16.
    Length(usize),
    /// The shape is wrong; the message names the position (1-based) and what was expected.
    Pattern(String),
    /// The shape is right but the last character does not match the first fifteen.
    CheckChar {
        expected: char,
        found: char,
    },
}

impl fmt::Display for CfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CfError::Empty => write!(f, "the codice fiscale is empty"),
            CfError::Length(n) => {
                write!(f, "a codice fiscale has 16 characters, this one has {n}")
            }
            CfError::Pattern(why) => write!(f, "not a codice fiscale: {why}"),
            CfError::CheckChar { expected, found } => write!(
                f,
                "wrong check character: expected '{expected}', found '{found}' \
                 (one of the other characters is probably mistyped)"
            ),
        }
    }
}

impl std::error::Error for CfError {}

/// What a "codice fiscale" column actually contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CfFieldContent {
    Empty,
    Cf(ValidCf),
    /// Another identifier kind, canonicalised (uppercase, no spaces).
    Other(OtherIdKind, String),
    Invalid(CfError),
}

/// The check character of a codice fiscale from its first 15 characters, or `None` unless the
/// input is exactly 15 characters from `A..=Z` / `0..=9` (uppercase).
pub fn check_char(first15: &str) -> Option<char> {
    let bytes = first15.as_bytes();
    if bytes.len() != 15 {
        return None;
    }
    let mut sum = 0u32;
    for (i, &c) in bytes.iter().enumerate() {
        let value = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A'),
            _ => return None,
        };
        // 0-based even index = 1-based odd position.
        sum += if i % 2 == 0 {
            ODD_WEIGHTS[value as usize]
        } else {
            value
        };
    }
    Some(char::from(b'A' + (sum % 26) as u8))
}

/// Validates a codice fiscale. Blanks anywhere and lowercase letters are tolerated.
pub fn validate(cf: &str) -> Result<ValidCf, CfError> {
    let n = cf.chars().filter(|c| !c.is_whitespace()).count();
    if n == 0 {
        return Err(CfError::Empty);
    }
    if n != 16 {
        return Err(CfError::Length(n));
    }
    let code: String = canonical(cf);
    let b = code.as_bytes();
    if b.len() != 16 {
        // 16 characters but not all ASCII.
        let (pos, c) = code
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
            .unwrap_or((0, '?'));
        return Err(pattern(pos, "a letter or a digit", c));
    }
    if let Some(pos) = b[..6].iter().position(|c| !c.is_ascii_uppercase()) {
        return Err(pattern(
            pos,
            "a letter (surname and name code)",
            b[pos] as char,
        ));
    }
    // Numeric positions: digits, or omocodia letters forming a suffix (substituted from the right).
    let mut level = 0u8;
    let mut seen_digit_after = false;
    for &pos in NUMERIC_POSITIONS.iter().rev() {
        let c = b[pos];
        if c.is_ascii_digit() {
            seen_digit_after = true;
        } else if OMOCODE_LETTERS.contains(&c) {
            if seen_digit_after {
                return Err(CfError::Pattern(format!(
                    "position {}: omocodia letter '{}' left of a digit (omocodia replaces \
                     digits from the right)",
                    pos + 1,
                    c as char
                )));
            }
            level += 1;
        } else {
            return Err(pattern(
                pos,
                "a digit or an omocodia letter (L–V)",
                c as char,
            ));
        }
    }
    let month = match MONTHS.iter().position(|&m| m == b[8]) {
        Some(i) => i as u8 + 1,
        None => {
            return Err(pattern(
                8,
                "a month letter (A B C D E H L M P R S T)",
                b[8] as char,
            ));
        }
    };
    if !b[11].is_ascii_uppercase() {
        return Err(pattern(11, "a letter (birthplace code)", b[11] as char));
    }
    if !b[15].is_ascii_uppercase() {
        return Err(pattern(15, "a letter (check character)", b[15] as char));
    }
    let year2 = decode_digit(b[6]) * 10 + decode_digit(b[7]);
    let raw_day = decode_digit(b[9]) * 10 + decode_digit(b[10]);
    let (sex, day) = match raw_day {
        1..=31 => (Sex::M, raw_day),
        41..=71 => (Sex::F, raw_day - 40),
        _ => {
            return Err(CfError::Pattern(format!(
                "positions 10–11: day {raw_day:02} is neither 01–31 (men) nor 41–71 (women)"
            )));
        }
    };
    // The century is unknown: allow 29 February.
    let max_day = if month == 2 {
        29
    } else {
        super::dates::days_in_month(2000, month)
    };
    if day > max_day {
        return Err(CfError::Pattern(format!(
            "positions 10–11: day {day} does not exist in month {month}"
        )));
    }
    let expected = check_char(&code[..15]).unwrap_or('?');
    let found = b[15] as char;
    if expected != found {
        return Err(CfError::CheckChar { expected, found });
    }
    let place_code: String = std::iter::once(b[11] as char)
        .chain(
            b[12..15]
                .iter()
                .map(|&c| char::from(b'0' + decode_digit(c))),
        )
        .collect();
    Ok(ValidCf {
        code,
        omocodia_level: level,
        sex,
        birth_year2: year2,
        birth_month: month,
        birth_day: day,
        place_code,
    })
}

/// Computes the (level-0) codice fiscale. Names may be raw: they go through the text pipeline
/// first (so `Öz` counts as `OEZ`). `place_code` must be a Belfiore or `Z` code; if it is not
/// four letters/digits, or the date is not a real one, the result simply does not validate.
pub fn compute(
    surname: &str,
    given_names: &str,
    sex: Sex,
    birth: BirthDate,
    place_code: &str,
) -> String {
    let mut out = String::with_capacity(16);
    out.push_str(&surname_code(&letters(surname)));
    out.push_str(&given_name_code(&letters(given_names)));
    out.push_str(&format!("{:02}", birth.year % 100));
    let month = usize::from(birth.month)
        .checked_sub(1)
        .and_then(|i| MONTHS.get(i))
        .map_or('?', |&m| m as char);
    out.push(month);
    let day = u32::from(birth.day) + if sex == Sex::F { 40 } else { 0 };
    out.push_str(&format!("{day:02}"));
    out.extend(
        place_code
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .take(8),
    );
    if let Some(k) = check_char(&out) {
        out.push(k);
    }
    out
}

/// The omocode of `cf` at `level` (1..=7): the `level` rightmost numeric characters replaced by
/// their letters (0→L … 9→V) and the check character recomputed. `None` if `cf` is not valid, the
/// level is out of range, or `cf` is already an omocode of that level or higher (the result would
/// not be a different code).
pub fn omocode(cf: &str, level: u8) -> Option<String> {
    if !(1..=7).contains(&level) {
        return None;
    }
    let valid = validate(cf).ok()?;
    if valid.omocodia_level >= level {
        return None;
    }
    let mut b = valid.code.into_bytes();
    for &pos in NUMERIC_POSITIONS.iter().rev().take(usize::from(level)) {
        if b[pos].is_ascii_digit() {
            b[pos] = OMOCODE_LETTERS[usize::from(b[pos] - b'0')];
        }
    }
    let k = check_char(std::str::from_utf8(&b[..15]).ok()?)?;
    b[15] = k as u8;
    String::from_utf8(b).ok()
}

/// Classifies the content of a CF column: a valid CF, another identifier (STP / ENI + 13 digits,
/// an 11-digit provisional numeric CF with a correct check digit, a 9-character ID ANPR), nothing,
/// or an invalid code with the reason. ID ANPR check digits are not verified (the algorithm is
/// not published); a 9-character alphanumeric string is taken as an ID ANPR.
pub fn classify_cf_field(s: &str) -> CfFieldContent {
    let n = s.chars().filter(|c| !c.is_whitespace()).count();
    if n == 0 {
        return CfFieldContent::Empty;
    }
    if n > MAX_FIELD_CHARS {
        return CfFieldContent::Invalid(CfError::Length(n));
    }
    let code = canonical(s);
    for (prefix, kind) in [("STP", OtherIdKind::Stp), ("ENI", OtherIdKind::Eni)] {
        // Only all-digit tails: a CF may start with STP too (surname Stoppa).
        if let Some(rest) = code.strip_prefix(prefix)
            && !rest.is_empty()
            && rest.bytes().all(|c| c.is_ascii_digit())
        {
            if rest.len() == 13 {
                return CfFieldContent::Other(kind, code);
            }
            return CfFieldContent::Invalid(CfError::Pattern(format!(
                "{prefix} code: expected {prefix} followed by 13 digits, found {}",
                rest.len()
            )));
        }
    }
    if code.len() == 11 && code.bytes().all(|c| c.is_ascii_digit()) {
        let expected = numeric_check_digit(&code.as_bytes()[..10]);
        let found = code.as_bytes()[10] as char;
        return if expected == found {
            CfFieldContent::Other(OtherIdKind::ProvisionalCf, code)
        } else {
            CfFieldContent::Invalid(CfError::CheckChar { expected, found })
        };
    }
    if code.len() == 9 && code.bytes().all(|c| c.is_ascii_alphanumeric()) {
        // The first nine characters of a codice fiscale are a truncated CF, not an ID ANPR.
        if looks_like_cf_prefix(code.as_bytes()) {
            return CfFieldContent::Invalid(CfError::Length(9));
        }
        return CfFieldContent::Other(OtherIdKind::IdAnpr, code);
    }
    match validate(&code) {
        Ok(v) => CfFieldContent::Cf(v),
        Err(e) => CfFieldContent::Invalid(e),
    }
}

/// Check digit of an 11-digit numeric code (the partita IVA algorithm, also used for provisional
/// codici fiscali): digits at odd 1-based positions summed, digits at even positions doubled
/// (minus 9 when above 9) and summed; the check digit brings the total to a multiple of 10.
fn numeric_check_digit(first10: &[u8]) -> char {
    let mut sum = 0u32;
    for (i, &c) in first10.iter().enumerate() {
        let d = u32::from(c.wrapping_sub(b'0') % 10);
        sum += if i % 2 == 0 {
            d
        } else if d * 2 > 9 {
            d * 2 - 9
        } else {
            d * 2
        };
    }
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Six letters, two digits (or omocodia letters) and a month letter: the start of a CF.
fn looks_like_cf_prefix(b: &[u8]) -> bool {
    let numeric = |c: &u8| c.is_ascii_digit() || OMOCODE_LETTERS.contains(c);
    b.len() == 9
        && b[..6].iter().all(u8::is_ascii_uppercase)
        && b[6..8].iter().all(numeric)
        && MONTHS.contains(&b[8])
}

/// Uppercase, blanks removed.
fn canonical(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn pattern(pos: usize, expected: &str, found: char) -> CfError {
    CfError::Pattern(format!(
        "position {}: expected {expected}, found '{found}'",
        pos + 1
    ))
}

/// A digit, or the digit an omocodia letter stands for (callers have checked the byte).
fn decode_digit(c: u8) -> u8 {
    if c.is_ascii_digit() {
        c - b'0'
    } else {
        OMOCODE_LETTERS.iter().position(|&l| l == c).unwrap_or(0) as u8
    }
}

/// The letters `A..=Z` of a name after the text pipeline.
fn letters(name: &str) -> Vec<u8> {
    text::normalise_text(name)
        .bytes()
        .filter(u8::is_ascii_uppercase)
        .collect()
}

fn is_vowel(c: &u8) -> bool {
    matches!(c, b'A' | b'E' | b'I' | b'O' | b'U')
}

/// Consonants, then vowels, then `X`, first three.
fn surname_code(l: &[u8]) -> String {
    let consonants = l.iter().filter(|c| !is_vowel(c));
    let vowels = l.iter().filter(|c| is_vowel(c));
    consonants
        .chain(vowels)
        .chain(b"XXX")
        .take(3)
        .map(|&c| c as char)
        .collect()
}

/// As the surname, except that with four or more consonants the 1st, 3rd and 4th are used.
fn given_name_code(l: &[u8]) -> String {
    let consonants: Vec<u8> = l.iter().copied().filter(|c| !is_vowel(c)).collect();
    if consonants.len() >= 4 {
        return [consonants[0], consonants[2], consonants[3]]
            .iter()
            .map(|&c| c as char)
            .collect();
    }
    surname_code(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROSSI: &str = "RSSMRA79B11C566R";
    const DE_MICHELE: &str = "DMCMGR38T70E506H";

    fn date(year: u16, month: u8, day: u8) -> BirthDate {
        BirthDate { year, month, day }
    }

    #[test]
    fn worked_examples_validate_and_decode() {
        let v = validate(ROSSI).unwrap();
        assert_eq!(
            (
                v.sex,
                v.birth_year2,
                v.birth_month,
                v.birth_day,
                v.place_code.as_str()
            ),
            (Sex::M, 79, 2, 11, "C566")
        );
        assert_eq!(v.omocodia_level, 0);
        let v = validate(DE_MICHELE).unwrap();
        assert_eq!(
            (
                v.sex,
                v.birth_year2,
                v.birth_month,
                v.birth_day,
                v.place_code.as_str()
            ),
            (Sex::F, 38, 12, 30, "E506")
        );
    }

    #[test]
    fn lowercase_and_blanks_are_tolerated() {
        assert_eq!(validate(" rssmra 79b11 c566r ").unwrap().code, ROSSI);
    }

    #[test]
    fn compute_reproduces_the_worked_examples() {
        assert_eq!(
            compute("Rossi", "Mario", Sex::M, date(1979, 2, 11), "C566"),
            ROSSI
        );
        // Four or more consonants in the given names: 1st, 3rd and 4th (M, R, G, R, Z → MGR).
        assert_eq!(
            compute(
                "De Michele",
                "Maria Grazia",
                Sex::F,
                date(1938, 12, 30),
                "E506"
            ),
            DE_MICHELE
        );
    }

    #[test]
    fn compute_uses_the_official_transliteration() {
        // Ö → OE: consonant Z, vowels O E → ZOE (a plain diacritic strip would give ZOX).
        assert!(compute("Öz", "Ali", Sex::M, date(1980, 1, 1), "Z243").starts_with("ZOELAI"));
        // Short names pad with X; apostrophes and particles count as letters of the surname.
        assert!(compute("Fo", "Al", Sex::M, date(1980, 1, 1), "F205").starts_with("FOXLAX"));
        assert!(
            compute("D'Amico", "Nicolò", Sex::M, date(1980, 1, 1), "F205").starts_with("DMCNCL")
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(validate("  "), Err(CfError::Empty));
        assert_eq!(validate("RSSMRA79B11C566"), Err(CfError::Length(15)));
        assert!(
            matches!(validate("RSSMRA79Z11C566R"), Err(CfError::Pattern(m)) if m.contains("month"))
        );
        assert!(matches!(
            validate("RSSMRA79B35C566R"),
            Err(CfError::Pattern(_))
        ));
        assert!(
            matches!(validate("RSSMRA79B31C566R"), Err(CfError::Pattern(m)) if m.contains("does not exist"))
        );
        assert!(
            matches!(validate("RSSMRA79B11C5L6R"), Err(CfError::Pattern(m)) if m.contains("from the right"))
        );
        assert!(matches!(
            validate("RSSMRA79B11C566Ä"),
            Err(CfError::Pattern(_))
        ));
        assert_eq!(
            validate("RSSMRA79B11C566A"),
            Err(CfError::CheckChar {
                expected: 'R',
                found: 'A'
            })
        );
        let msg = CfError::CheckChar {
            expected: 'R',
            found: 'A',
        }
        .to_string();
        assert!(msg.contains("expected 'R'") && msg.contains("found 'A'"));
        assert!(CfError::Length(3).to_string().contains("16 characters"));
    }

    #[test]
    fn omocodes_are_distinct_valid_and_never_folded_back() {
        let mut seen = vec![ROSSI.to_string()];
        for level in 1..=7 {
            let o = omocode(ROSSI, level).unwrap();
            let v = validate(&o).unwrap();
            assert_eq!(v.omocodia_level, level);
            assert_eq!(v.code, o, "the omocode is kept as written");
            assert_eq!((v.birth_day, v.place_code.as_str()), (11, "C566"));
            assert!(!seen.contains(&o));
            seen.push(o);
        }
        assert_eq!(
            omocode(ROSSI, 1).unwrap(),
            format!("RSSMRA79B11C56S{}", check_char("RSSMRA79B11C56S").unwrap())
        );
        assert_eq!(omocode(ROSSI, 0), None);
        assert_eq!(omocode(ROSSI, 8), None);
        let level2 = omocode(ROSSI, 2).unwrap();
        assert_eq!(omocode(&level2, 1), None);
        assert!(omocode(&level2, 3).is_some());
    }

    #[test]
    fn check_char_rejects_bad_input() {
        assert_eq!(check_char("RSSMRA79B11C566"), Some('R'));
        assert_eq!(check_char("rssmra79b11c566"), None);
        assert_eq!(check_char("RSSMRA79B11C56"), None);
        assert_eq!(check_char("RSSMRA79B11C56é"), None);
    }

    #[test]
    fn classify_recognises_other_identifiers() {
        assert!(matches!(classify_cf_field(" "), CfFieldContent::Empty));
        assert!(
            matches!(classify_cf_field("rssmra79b11c566r"), CfFieldContent::Cf(v) if v.code == ROSSI)
        );
        assert_eq!(
            classify_cf_field("STP 160 101 0000123"),
            CfFieldContent::Other(OtherIdKind::Stp, "STP1601010000123".into())
        );
        assert_eq!(
            classify_cf_field("ENI1601010000123"),
            CfFieldContent::Other(OtherIdKind::Eni, "ENI1601010000123".into())
        );
        assert!(matches!(
            classify_cf_field("STP12345"),
            CfFieldContent::Invalid(CfError::Pattern(_))
        ));
        // Surname Stoppa: a real CF that starts with STP.
        let stoppa = compute("Stoppa", "Mario", Sex::M, date(1950, 1, 2), "D862");
        assert!(stoppa.starts_with("STP"));
        assert!(matches!(classify_cf_field(&stoppa), CfFieldContent::Cf(_)));
        assert_eq!(
            classify_cf_field("RSSMRA79B"),
            CfFieldContent::Invalid(CfError::Length(9))
        );
        // 11-digit numeric code with the partita-IVA check digit (1234567890 → 3).
        assert_eq!(
            classify_cf_field("12345678903"),
            CfFieldContent::Other(OtherIdKind::ProvisionalCf, "12345678903".into())
        );
        assert_eq!(
            classify_cf_field("12345678901"),
            CfFieldContent::Invalid(CfError::CheckChar {
                expected: '3',
                found: '1'
            })
        );
        assert_eq!(
            classify_cf_field("ca12345bd"),
            CfFieldContent::Other(OtherIdKind::IdAnpr, "CA12345BD".into())
        );
        assert_eq!(
            classify_cf_field("RSSMRA"),
            CfFieldContent::Invalid(CfError::Length(6))
        );
        assert!(matches!(
            classify_cf_field(&"A".repeat(10_000)),
            CfFieldContent::Invalid(CfError::Length(10_000))
        ));
    }

    fn alnum() -> impl Strategy<Value = char> {
        prop::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                .iter()
                .map(|&c| c as char)
                .collect::<Vec<_>>(),
        )
    }

    fn valid_cf() -> impl Strategy<Value = String> {
        (
            "[A-Z ]{0,12}",
            "[A-Z ]{0,12}",
            any::<bool>(),
            1900u16..2030,
            1u8..=12,
            1u8..=28,
            prop::sample::select(vec!["C566", "E506", "H047", "M428", "Z100", "G778"]),
            0u8..=7,
        )
            .prop_map(|(s, n, female, y, m, d, place, level)| {
                let sex = if female { Sex::F } else { Sex::M };
                let base = compute(
                    &s,
                    &n,
                    sex,
                    BirthDate {
                        year: y,
                        month: m,
                        day: d,
                    },
                    place,
                );
                if level == 0 {
                    base
                } else {
                    omocode(&base, level).unwrap_or(base)
                }
            })
    }

    proptest! {
        #[test]
        fn computed_codes_validate(cf in valid_cf()) {
            prop_assert!(validate(&cf).is_ok(), "{cf}: {:?}", validate(&cf));
        }

        #[test]
        fn omocode_validates_and_differs(
            s in "\\PC{0,20}", n in "\\PC{0,20}", y in 1900u16..2030, m in 1u8..=12, d in 1u8..=28,
            level in 1u8..=7,
        ) {
            let cf = compute(&s, &n, Sex::M, BirthDate { year: y, month: m, day: d }, "D862");
            let o = omocode(&cf, level).unwrap();
            prop_assert!(o != cf);
            let v = validate(&o).unwrap();
            prop_assert_eq!(v.omocodia_level, level);
            prop_assert_eq!((v.birth_month, v.birth_day, v.place_code.as_str()), (m, d, "D862"));
        }

        #[test]
        fn any_single_substitution_fails(cf in valid_cf(), pos in 0usize..16, c in alnum()) {
            let mut chars: Vec<char> = cf.chars().collect();
            prop_assume!(chars[pos] != c);
            chars[pos] = c;
            let changed: String = chars.into_iter().collect();
            prop_assert!(validate(&changed).is_err(), "{} → {} validated", cf, changed);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = validate(&s);
            let _ = classify_cf_field(&s);
            let _ = omocode(&s, 3);
            let _ = check_char(&s);
        }
    }
}
