//! Consent scopes and the calendar days they are bounded by. Pure: no clock except [`today`],
//! no storage.
//!
//! A consent scope is service categories × recipient entity types × purposes × validity
//! (DOMAIN.md §7). [`ConsentScope::check`] enforces what a scope must be before it is stored or
//! sent: every list non-empty, deduplicated, at most [`MAX_CONSENT_SCOPE`] values, real days in
//! order. Days travel as `YYYYMMDD` numbers; people type and read them as ISO `YYYY-MM-DD`.

use ponte_proto::limits::MAX_CONSENT_SCOPE;
use ponte_proto::v1::{ConsentGiver, EntityType, Purpose, ServiceCategory};
use ponte_proto::vocab;

/// What a person consents to, as given at this entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentScope {
    pub categories: Vec<ServiceCategory>,
    pub recipients: Vec<EntityType>,
    pub purposes: Vec<Purpose>,
    /// `YYYYMMDD`, inclusive.
    pub valid_from: u32,
    /// `YYYYMMDD`, inclusive.
    pub valid_until: u32,
    pub given_by: ConsentGiver,
}

fn check_list<T: PartialEq + Copy>(v: &mut Vec<T>, what: &str) -> Result<(), String> {
    if v.len() > MAX_CONSENT_SCOPE {
        return Err(format!("the consent names {} {what}; at most {MAX_CONSENT_SCOPE} are allowed", v.len()));
    }
    let mut seen: Vec<T> = Vec::with_capacity(v.len());
    for x in v.iter() {
        if !seen.contains(x) {
            seen.push(*x);
        }
    }
    *v = seen;
    if v.is_empty() {
        return Err(format!("the consent names no {what}; name at least one"));
    }
    Ok(())
}

impl ConsentScope {
    /// Checks the scope and removes repeated values (keeping the first occurrence's order). Each
    /// list is bounded as given, before repeats are removed.
    /// The error names what is wrong and how to fix it.
    pub fn check(&mut self) -> Result<(), String> {
        check_list(&mut self.categories, "service categories")?;
        check_list(&mut self.recipients, "recipient entity types")?;
        check_list(&mut self.purposes, "purposes")?;
        for (d, what) in [(self.valid_from, "first valid day"), (self.valid_until, "last valid day")] {
            vocab::check_day(d).map_err(|e| format!("the {what}: {e}"))?;
        }
        if self.valid_from > self.valid_until {
            return Err(format!(
                "the consent would end ({}) before it starts ({}); check --from and --until",
                iso_day(self.valid_until),
                iso_day(self.valid_from)
            ));
        }
        if self.given_by == ConsentGiver::Unspecified {
            return Err("say who gave the consent (interessato, rappresentante_legale or genitore)".into());
        }
        Ok(())
    }
}

/// A consent scope as a person or a program types it: names of categories, recipient entity
/// types, purposes and giver, ISO days. Blank names are skipped; each list may hold at most
/// [`MAX_CONSENT_SCOPE`] names. An error names the part at fault (`categories`, `recipients`,
/// `purposes`, `valid_from`, `valid_until`, `given_by`) and the valid values. The scope still has
/// to pass [`ConsentScope::check`].
pub fn scope_from_names(
    categories: &[String],
    recipients: &[String],
    purposes: &[String],
    valid_from: Option<&str>,
    valid_until: &str,
    given_by: &str,
) -> Result<ConsentScope, (&'static str, String)> {
    fn list<T>(field: &'static str, values: &[String], parse: fn(&str) -> Result<T, String>) -> Result<Vec<T>, (&'static str, String)> {
        if values.len() > MAX_CONSENT_SCOPE {
            return Err((field, format!("{} values; at most {MAX_CONSENT_SCOPE} are allowed", values.len())));
        }
        values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()).map(|v| parse(v).map_err(|e| (field, e))).collect()
    }
    Ok(ConsentScope {
        categories: list("categories", categories, vocab::ServiceCategoryName::parse)?,
        recipients: list("recipients", recipients, vocab::EntityType::parse)?,
        purposes: list("purposes", purposes, vocab::PurposeName::parse)?,
        valid_from: match valid_from {
            Some(d) => parse_iso_day(d).map_err(|e| ("valid_from", e))?,
            None => today(),
        },
        valid_until: parse_iso_day(valid_until).map_err(|e| ("valid_until", e))?,
        given_by: vocab::ConsentGiverName::parse(given_by).map_err(|e| ("given_by", e))?,
    })
}

/// Parses an ISO day `YYYY-MM-DD` into `YYYYMMDD`.
pub fn parse_iso_day(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a day in the form YYYY-MM-DD (e.g. 2027-10-31)");
    let t = s.trim();
    let parts: Vec<&str> = t.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !t.chars().all(|c| c.is_ascii_digit() || c == '-') {
        return Err(bad());
    }
    let (y, m, d): (u32, u32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    let day = y * 10_000 + m * 100 + d;
    vocab::check_day(day).map_err(|_| format!("{s:?} is not a day of the calendar (YYYY-MM-DD)"))?;
    Ok(day)
}

/// `YYYYMMDD` as `YYYY-MM-DD`.
pub fn iso_day(d: u32) -> String {
    format!("{:04}-{:02}-{:02}", d / 10_000, d / 100 % 100, d % 100)
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The (UTC) day of a Unix time, as `YYYYMMDD`.
pub fn day_of(secs: u64) -> u32 {
    ponte_proto::vocab::day_of_unix_time(secs)
}

/// Today (UTC) as `YYYYMMDD`.
pub fn today() -> u32 {
    day_of(now_secs())
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_time(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{} {:02}:{:02} UTC", iso_day(day_of(secs)), s / 3600, s / 60 % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_from_names_name_the_part_at_fault() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ok = scope_from_names(&v(&["serd", " "]), &v(&["asl"]), &v(&["continuita_assistenziale"]), Some("2026-01-01"), "2027-12-31", "genitore").unwrap();
        assert_eq!(ok.categories, vec![ServiceCategory::Serd], "blank names are skipped");
        assert_eq!((ok.valid_from, ok.valid_until, ok.given_by), (20260101, 20271231, ConsentGiver::Genitore));
        let field = |r: Result<ConsentScope, (&'static str, String)>| r.unwrap_err().0;
        assert_eq!(field(scope_from_names(&v(&["ADI"]), &v(&["asl"]), &v(&["emergenza"]), None, "2027-12-31", "interessato")), "categories");
        assert_eq!(field(scope_from_names(&v(&["serd"]), &v(&["usl"]), &v(&["emergenza"]), None, "2027-12-31", "interessato")), "recipients");
        assert_eq!(field(scope_from_names(&v(&["serd"]), &v(&["asl"]), &v(&["svago"]), None, "2027-12-31", "interessato")), "purposes");
        assert_eq!(field(scope_from_names(&v(&["serd"]), &v(&["asl"]), &v(&["emergenza"]), Some("ieri"), "2027-12-31", "interessato")), "valid_from");
        assert_eq!(field(scope_from_names(&v(&["serd"]), &v(&["asl"]), &v(&["emergenza"]), None, "31/12/2027", "interessato")), "valid_until");
        assert_eq!(field(scope_from_names(&v(&["serd"]), &v(&["asl"]), &v(&["emergenza"]), None, "2027-12-31", "vicino")), "given_by");
        let many = vec!["serd".to_string(); MAX_CONSENT_SCOPE + 1];
        assert_eq!(field(scope_from_names(&many, &v(&["asl"]), &v(&["emergenza"]), None, "2027-12-31", "interessato")), "categories");
    }

    fn scope() -> ConsentScope {
        ConsentScope {
            categories: vec![ServiceCategory::Serd, ServiceCategory::SaluteMentale, ServiceCategory::Serd],
            recipients: vec![EntityType::Asl, EntityType::Comune],
            purposes: vec![Purpose::ContinuitaAssistenziale],
            valid_from: 20261101,
            valid_until: 20271031,
            given_by: ConsentGiver::Interessato,
        }
    }

    #[test]
    fn iso_days_parse_and_print() {
        assert_eq!(parse_iso_day("2027-10-31").unwrap(), 20271031);
        assert_eq!(parse_iso_day(" 2024-02-29 ").unwrap(), 20240229);
        assert_eq!(iso_day(20270101), "2027-01-01");
        for bad in ["2023-02-29", "2027-13-01", "2027-1-01", "31/10/2027", "20271031", "2027-10-3x", "", "+027-10-31"] {
            let e = parse_iso_day(bad).unwrap_err();
            assert!(e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
    }

    #[test]
    fn unix_times_become_utc_days() {
        assert_eq!(day_of(0), 19700101);
        assert_eq!(day_of(951_782_400), 20000229); // 2000-02-29 00:00 UTC
        assert_eq!(day_of(1_798_761_599), 20261231); // 2026-12-31 23:59:59 UTC
        assert_eq!(utc_time(1_798_761_599), "2026-12-31 23:59 UTC");
        assert!(vocab::check_day(today()).is_ok());
    }

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        let mut s = scope();
        s.check().unwrap();
        assert_eq!(s.categories, vec![ServiceCategory::Serd, ServiceCategory::SaluteMentale]);

        let mut s = scope();
        s.purposes.clear();
        assert!(s.check().unwrap_err().contains("no purposes"));

        let mut s = scope();
        (s.valid_from, s.valid_until) = (20271031, 20261101);
        assert!(s.check().unwrap_err().contains("before it starts"));

        let mut s = scope();
        s.valid_until = 20270230;
        assert!(s.check().unwrap_err().contains("last valid day"));

        let mut s = scope();
        s.given_by = ConsentGiver::Unspecified;
        assert!(s.check().is_err());
    }

    #[test]
    fn scopes_are_bounded() {
        let mut s = scope();
        s.categories = vocab::ServiceCategoryName::ALL.to_vec();
        s.check().unwrap();
        let mut s = scope();
        s.purposes = vec![Purpose::Emergenza; MAX_CONSENT_SCOPE + 1];
        assert!(s.check().unwrap_err().contains("at most"));
    }
}
