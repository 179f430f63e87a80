//! Dates in the format an entity declares in its configuration (no guessing between formats: a
//! `03/04/1950` means the same thing for every row of an export).
//!
//! Guarantees: a parsed date exists in the Gregorian calendar (leap years included) and its year
//! lies in [`MIN_YEAR`]`..=`[`MAX_YEAR`]; what is suspicious but possible is reported as
//! [`QualityFlags`] bits, never corrected. A trailing time of day (`1950-04-03 00:00:00`,
//! `1950-04-03T00:00:00Z`), as many exports add, is accepted and ignored for separated formats.

use std::fmt;

use super::{BirthDate, QualityFlags};

/// Earliest year accepted in a date.
pub const MIN_YEAR: u16 = 1800;
/// Latest year accepted in a date.
pub const MAX_YEAR: u16 = 2199;
/// Default reference year for placing two-digit years (see [`DateFormat::with_reference_year`]).
pub const DEFAULT_REFERENCE_YEAR: u16 = 2026;
/// Longest date string examined.
const MAX_DATE_CHARS: usize = 40;

/// The formats an entity may declare, in `strftime` notation.
pub const ACCEPTED_FORMATS: [&str; 6] = [
    "%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d", "%d/%m/%y",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Day, month, year separated by `sep`; `two_digit_year` for `%y`.
    Dmy { sep: u8, two_digit_year: bool },
    /// Year, month, day separated by `sep`.
    Ymd { sep: u8 },
    /// `%Y%m%d`, exactly eight digits.
    YmdCompact,
}

/// A declared date format.
///
/// Two-digit years (`%y`) are placed in the century that puts them at or before the reference
/// year: with reference 2026, `26` → 2026 and `27` → 1927. Such dates always carry
/// [`QualityFlags::DATE_TWO_DIGIT_YEAR`] because the century is a guess (a centenarian born in
/// 1920 written `20` becomes 2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateFormat {
    layout: Layout,
    pattern: &'static str,
    reference_year: u16,
}

impl fmt::Display for DateFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.pattern)
    }
}

impl DateFormat {
    /// Parses a declared format; only [`ACCEPTED_FORMATS`] are known.
    pub fn parse(fmt: &str) -> Result<DateFormat, String> {
        let trimmed = fmt.trim();
        let layout = match trimmed {
            "%d/%m/%Y" => Layout::Dmy {
                sep: b'/',
                two_digit_year: false,
            },
            "%Y-%m-%d" => Layout::Ymd { sep: b'-' },
            "%d-%m-%Y" => Layout::Dmy {
                sep: b'-',
                two_digit_year: false,
            },
            "%d.%m.%Y" => Layout::Dmy {
                sep: b'.',
                two_digit_year: false,
            },
            "%Y%m%d" => Layout::YmdCompact,
            "%d/%m/%y" => Layout::Dmy {
                sep: b'/',
                two_digit_year: true,
            },
            _ => {
                let shown: String = fmt.chars().take(MAX_DATE_CHARS).collect();
                return Err(format!(
                    "unknown date format {shown:?}; accepted formats: {}",
                    ACCEPTED_FORMATS.join(", ")
                ));
            }
        };
        let pattern = ACCEPTED_FORMATS
            .iter()
            .copied()
            .find(|p| *p == trimmed)
            .unwrap_or("");
        Ok(DateFormat {
            layout,
            pattern,
            reference_year: DEFAULT_REFERENCE_YEAR,
        })
    }

    /// The same format with another reference year for two-digit years (normally the current
    /// year, supplied by the caller so that parsing stays a pure function).
    pub fn with_reference_year(mut self, year: u16) -> DateFormat {
        self.reference_year = year.clamp(MIN_YEAR + 99, MAX_YEAR);
        self
    }

    /// The declared pattern, e.g. `%d/%m/%Y`.
    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    /// Parses one date and returns it with its quality flags:
    /// - [`QualityFlags::DATE_DAY_MONTH_AMBIGUOUS`]: day ≤ 12, month ≤ 12 and day ≠ month, so a
    ///   swap of day and month would also give a real date;
    /// - [`QualityFlags::DATE_PLACEHOLDER`]: 1 January of any year (the usual filler when only
    ///   the year is known, frequent for foreign-born people) or any date up to 1900-01-01
    ///   (31/12/1899 and 01/01/1900 are software defaults);
    /// - [`QualityFlags::DATE_TWO_DIGIT_YEAR`]: the year was written with two digits.
    ///
    /// Digits, separators and field widths must follow the format; day and month may have one
    /// or two digits in separated formats.
    pub fn parse_date(&self, s: &str) -> Result<(BirthDate, u32), String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty date".into());
        }
        if s.chars().count() > MAX_DATE_CHARS {
            return Err(format!("date longer than {MAX_DATE_CHARS} characters"));
        }
        let bad = || format!("{s:?} does not match the declared format {}", self.pattern);
        let mut flags = 0u32;
        let (year, month, day) = match self.layout {
            Layout::YmdCompact => {
                let b = s.as_bytes();
                if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
                    return Err(bad());
                }
                (number(&b[0..4]), number(&b[4..6]), number(&b[6..8]))
            }
            Layout::Ymd { sep } => {
                let [y, m, d] = split3(strip_time(s), sep).ok_or_else(bad)?;
                if y.len() != 4 || !(1..=2).contains(&m.len()) || !(1..=2).contains(&d.len()) {
                    return Err(bad());
                }
                (number(y), number(m), number(d))
            }
            Layout::Dmy {
                sep,
                two_digit_year,
            } => {
                let [d, m, y] = split3(strip_time(s), sep).ok_or_else(bad)?;
                let year_len = if two_digit_year { 2 } else { 4 };
                if y.len() != year_len || !(1..=2).contains(&m.len()) || !(1..=2).contains(&d.len())
                {
                    return Err(bad());
                }
                let mut year = number(y);
                if two_digit_year {
                    flags |= QualityFlags::DATE_TWO_DIGIT_YEAR;
                    let reference = u32::from(self.reference_year);
                    let century = reference / 100 * 100;
                    year += if century + year <= reference {
                        century
                    } else {
                        century - 100
                    };
                }
                (year, number(m), number(d))
            }
        };
        let date = checked_date(year, month, day)?;
        if date.day <= 12 && date.month <= 12 && date.day != date.month {
            flags |= QualityFlags::DATE_DAY_MONTH_AMBIGUOUS;
        }
        if (date.day == 1 && date.month == 1)
            || date
                <= (BirthDate {
                    year: 1900,
                    month: 1,
                    day: 1,
                })
        {
            flags |= QualityFlags::DATE_PLACEHOLDER;
        }
        Ok((date, flags))
    }
}

/// Year and month of a date in the entity's format (e.g. the start of a care relationship, which
/// is published at month precision). Same validation as [`DateFormat::parse_date`].
pub fn month_of(s: &str, fmt: &DateFormat) -> Result<(u16, u8), String> {
    fmt.parse_date(s).map(|(d, _)| (d.year, d.month))
}

/// Days in a month of a year (0 for a month outside 1..=12).
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Gregorian leap year.
pub fn is_leap_year(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// `YYYY-MM-DD` exactly (the format of the bundled reference tables), calendar-checked.
pub(crate) fn parse_iso(s: &str) -> Option<BirthDate> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| number(&b[r]))
    };
    checked_date(digits(0..4)?, digits(5..7)?, digits(8..10)?).ok()
}

/// The day after `d` (callers pass real dates; the year saturates at [`MAX_YEAR`]).
pub(crate) fn next_day(d: BirthDate) -> BirthDate {
    if d.day < days_in_month(d.year, d.month) {
        BirthDate {
            day: d.day + 1,
            ..d
        }
    } else if d.month < 12 {
        BirthDate {
            month: d.month + 1,
            day: 1,
            ..d
        }
    } else {
        BirthDate {
            year: d.year.saturating_add(1).min(MAX_YEAR),
            month: 1,
            day: 1,
        }
    }
}

fn checked_date(year: u32, month: u32, day: u32) -> Result<BirthDate, String> {
    if !(u32::from(MIN_YEAR)..=u32::from(MAX_YEAR)).contains(&year) {
        return Err(format!("year {year} outside {MIN_YEAR}–{MAX_YEAR}"));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} does not exist"));
    }
    let (year, month) = (year as u16, month as u8);
    if day == 0 || day > u32::from(days_in_month(year, month)) {
        return Err(format!("day {day} does not exist in {month:02}/{year}"));
    }
    Ok(BirthDate {
        year,
        month,
        day: day as u8,
    })
}

/// Splits `a<sep>b<sep>c` into three all-digit parts.
fn split3(s: &str, sep: u8) -> Option<[&[u8]; 3]> {
    let mut parts = s.as_bytes().split(|&c| c == sep);
    let out = [parts.next()?, parts.next()?, parts.next()?];
    if parts.next().is_some()
        || out
            .iter()
            .any(|p| p.is_empty() || !p.iter().all(u8::is_ascii_digit))
    {
        return None;
    }
    Some(out)
}

/// Removes a trailing time of day: `' '` or `'T'` followed by digits, `:`, `.` and an optional `Z`.
fn strip_time(s: &str) -> &str {
    match s.find([' ', 'T']) {
        Some(i) => {
            let time = s[i + 1..].trim_start().trim_end_matches('Z');
            let looks_like_time = !time.is_empty()
                && time.as_bytes()[0].is_ascii_digit()
                && time
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b':' || c == b'.');
            if looks_like_time {
                s[..i].trim_end()
            } else {
                s
            }
        }
        None => s,
    }
}

/// Decimal value of ASCII digits (callers have checked them; at most 4 digits).
fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(f: &str) -> DateFormat {
        DateFormat::parse(f).unwrap()
    }

    fn date(year: u16, month: u8, day: u8) -> BirthDate {
        BirthDate { year, month, day }
    }

    #[test]
    fn every_accepted_format_parses_the_same_date() {
        let cases = [
            ("%d/%m/%Y", "23/04/1938"),
            ("%Y-%m-%d", "1938-04-23"),
            ("%d-%m-%Y", "23-04-1938"),
            ("%d.%m.%Y", "23.04.1938"),
            ("%Y%m%d", "19380423"),
            ("%d/%m/%y", "23/04/38"),
        ];
        for (f, s) in cases {
            let (d, _) = fmt(f)
                .parse_date(s)
                .unwrap_or_else(|e| panic!("{f} {s}: {e}"));
            assert_eq!(d, date(1938, 4, 23), "{f}");
        }
    }

    #[test]
    fn unknown_format_lists_the_accepted_ones() {
        let e = DateFormat::parse("%m/%d/%Y").unwrap_err();
        for f in ACCEPTED_FORMATS {
            assert!(e.contains(f), "{e}");
        }
        assert_eq!(fmt(" %d/%m/%Y ").to_string(), "%d/%m/%Y");
    }

    #[test]
    fn calendar_is_checked() {
        let f = fmt("%d/%m/%Y");
        assert!(f.parse_date("29/02/2000").is_ok());
        assert!(
            f.parse_date("29/02/1900").is_err(),
            "1900 is not a leap year"
        );
        assert!(f.parse_date("29/02/1944").is_ok());
        assert!(f.parse_date("29/02/1943").is_err());
        assert!(f.parse_date("31/04/1950").is_err());
        assert!(f.parse_date("00/01/1950").is_err());
        assert!(f.parse_date("10/13/1950").is_err());
        assert!(f.parse_date("10/10/1700").unwrap_err().contains("year"));
    }

    #[test]
    fn format_is_enforced() {
        let f = fmt("%d/%m/%Y");
        assert!(f.parse_date("1950-04-03").is_err());
        assert!(f.parse_date("03/04/50").is_err());
        assert!(f.parse_date("03/04/1950/1").is_err());
        assert!(f.parse_date("3/4/1950").is_ok());
        assert!(f.parse_date("+3/4/1950").is_err());
        assert!(f.parse_date("").is_err());
        assert!(fmt("%Y%m%d").parse_date("1950043").is_err());
        assert!(
            f.parse_date(&"1".repeat(1000))
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn trailing_time_is_ignored() {
        assert_eq!(
            fmt("%d/%m/%Y").parse_date("03/05/1950 00:00:00").unwrap().0,
            date(1950, 5, 3)
        );
        assert_eq!(
            fmt("%Y-%m-%d")
                .parse_date("1950-05-03T00:00:00.000Z")
                .unwrap()
                .0,
            date(1950, 5, 3)
        );
        assert!(fmt("%Y-%m-%d").parse_date("1950-05-03 abc").is_err());
    }

    #[test]
    fn flags() {
        let f = fmt("%d/%m/%Y");
        assert_eq!(
            f.parse_date("03/05/1950").unwrap().1,
            QualityFlags::DATE_DAY_MONTH_AMBIGUOUS
        );
        assert_eq!(
            f.parse_date("05/05/1950").unwrap().1,
            0,
            "a swap changes nothing"
        );
        assert_eq!(f.parse_date("13/05/1950").unwrap().1, 0);
        assert_eq!(
            f.parse_date("01/01/1950").unwrap().1,
            QualityFlags::DATE_PLACEHOLDER
        );
        assert_eq!(
            f.parse_date("01/01/1900").unwrap().1,
            QualityFlags::DATE_PLACEHOLDER
        );
        assert!(f.parse_date("31/12/1899").unwrap().1 & QualityFlags::DATE_PLACEHOLDER != 0);
        assert_eq!(
            f.parse_date("02/01/1901").unwrap().1,
            QualityFlags::DATE_DAY_MONTH_AMBIGUOUS
        );
    }

    #[test]
    fn two_digit_years_are_placed_in_the_past() {
        let f = fmt("%d/%m/%y");
        let (d, flags) = f.parse_date("15/06/26").unwrap();
        assert_eq!(d.year, 2026);
        assert_eq!(flags, QualityFlags::DATE_TWO_DIGIT_YEAR);
        assert_eq!(f.parse_date("15/06/27").unwrap().0.year, 1927);
        assert_eq!(f.parse_date("15/06/00").unwrap().0.year, 2000);
        let f = f.with_reference_year(2040);
        assert_eq!(f.parse_date("15/06/27").unwrap().0.year, 2027);
        assert_eq!(f.parse_date("15/06/41").unwrap().0.year, 1941);
        assert_eq!(
            fmt("%d/%m/%y").parse_date("29/02/00").unwrap().0,
            date(2000, 2, 29)
        );
    }

    #[test]
    fn month_of_a_relationship_start() {
        assert_eq!(month_of("2024-03-15", &fmt("%Y-%m-%d")), Ok((2024, 3)));
        assert!(month_of("2024-02-30", &fmt("%Y-%m-%d")).is_err());
    }

    #[test]
    fn iso_helper() {
        assert_eq!(parse_iso("2019-05-15"), Some(date(2019, 5, 15)));
        assert_eq!(parse_iso("2019-5-15"), None);
        assert_eq!(parse_iso("2019-02-29"), None);
        assert_eq!(next_day(date(2019, 5, 14)), date(2019, 5, 15));
        assert_eq!(next_day(date(2020, 2, 28)), date(2020, 2, 29));
        assert_eq!(next_day(date(2019, 2, 28)), date(2019, 3, 1));
        assert_eq!(next_day(date(2019, 12, 31)), date(2020, 1, 1));
    }

    proptest! {
        #[test]
        fn round_trip(y in MIN_YEAR..=MAX_YEAR, m in 1u8..=12, d in 1u8..=31) {
            prop_assume!(d <= days_in_month(y, m));
            let (got, _) = fmt("%d/%m/%Y").parse_date(&format!("{d:02}/{m:02}/{y}")).unwrap();
            prop_assert_eq!(got, date(y, m, d));
            let (got, _) = fmt("%Y%m%d").parse_date(&format!("{y}{m:02}{d:02}")).unwrap();
            prop_assert_eq!(got, date(y, m, d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}", f in prop::sample::select(ACCEPTED_FORMATS.to_vec())) {
            let _ = fmt(f).parse_date(&s);
        }
    }
}
