//! Calendar arithmetic and date formatting for the generator.
//!
//! Dates are [`BirthDate`] values (a plain year/month/day triple) whether they are birth dates or
//! relationship start dates. The generator needs no time zone and no clock: every date is derived
//! from the scenario's reference date, so output never depends on when it is generated.

use ponte_node::normalise::BirthDate;

/// The date formats an export may declare (strftime style, as `ImportConfig::date_format`).
pub use ponte_node::normalise::dates::ACCEPTED_FORMATS as DATE_FORMATS;

pub fn date(year: u16, month: u8, day: u8) -> BirthDate {
    debug_assert!(
        is_valid(year, month, day),
        "invalid date {year}-{month}-{day}"
    );
    BirthDate { year, month, day }
}

pub use ponte_node::normalise::dates::{days_in_month, is_leap_year as is_leap};

pub fn is_valid(year: u16, month: u8, day: u8) -> bool {
    (1..=9999).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
}

/// Days since 0000-03-01 (proleptic Gregorian); only differences between two values matter.
pub fn to_days(d: BirthDate) -> i64 {
    let (y, m) = if d.month <= 2 {
        (d.year as i64 - 1, d.month as i64 + 9)
    } else {
        (d.year as i64, d.month as i64 - 3)
    };
    365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d.day as i64 - 1
}

/// Inverse of [`to_days`].
pub fn from_days(n: i64) -> BirthDate {
    // Civil-from-days over 400-year eras (146,097 days each).
    let era = n.div_euclid(146_097);
    let doe = n.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (era * 400 + yoe + if month <= 2 { 1 } else { 0 }) as u16;
    BirthDate { year, month, day }
}

pub fn add_days(d: BirthDate, n: i64) -> BirthDate {
    from_days(to_days(d) + n)
}

/// Whole years between `birth` and `on`.
pub fn age_on(birth: BirthDate, on: BirthDate) -> u16 {
    let mut age = on.year.saturating_sub(birth.year);
    if (on.month, on.day) < (birth.month, birth.day) {
        age = age.saturating_sub(1);
    }
    age
}

/// `YYYY-MM`, the month precision that leaves the node.
pub fn month_string(d: BirthDate) -> String {
    format!("{:04}-{:02}", d.year, d.month)
}

/// Writes `d` in a strftime-style format. Only `%d`, `%m`, `%Y` and `%y` are interpreted; every
/// other character is copied. The caller picks the format from [`DATE_FORMATS`].
pub fn format_date(d: BirthDate, fmt: &str) -> String {
    format_parts(
        &format!("{:02}", d.day),
        &format!("{:02}", d.month),
        &format!("{:04}", d.year),
        fmt,
    )
}

/// Like [`format_date`] but from already written parts, so that an error model can alter one part
/// (`year` has four digits; `%y` takes its last two).
pub fn format_parts(day: &str, month: &str, year: &str, fmt: &str) -> String {
    let mut out = String::with_capacity(10);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(day),
            Some('m') => out.push_str(month),
            Some('Y') => out.push_str(year),
            Some('y') => out.push_str(&year[year.len().saturating_sub(2)..]),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_known_difference() {
        for &(y, m, d) in &[
            (1900, 1, 1),
            (1920, 2, 29),
            (2000, 2, 29),
            (2024, 12, 31),
            (1861, 3, 17),
        ] {
            let x = date(y, m, d);
            assert_eq!(from_days(to_days(x)), x);
        }
        assert_eq!(to_days(date(2000, 3, 1)) - to_days(date(2000, 2, 1)), 29);
        assert_eq!(to_days(date(2001, 1, 1)) - to_days(date(2000, 1, 1)), 366);
        assert_eq!(add_days(date(2023, 12, 31), 1), date(2024, 1, 1));
    }

    #[test]
    fn formats() {
        let d = date(1938, 12, 30);
        assert_eq!(format_date(d, "%d/%m/%Y"), "30/12/1938");
        assert_eq!(format_date(d, "%Y-%m-%d"), "1938-12-30");
        assert_eq!(format_date(d, "%d.%m.%Y"), "30.12.1938");
        assert_eq!(format_date(d, "%Y%m%d"), "19381230");
        assert_eq!(format_date(d, "%d/%m/%y"), "30/12/38");
        assert_eq!(age_on(d, date(2025, 12, 29)), 86);
        assert_eq!(age_on(d, date(2025, 12, 30)), 87);
    }
}
