//! Finding a person among the node's own records: by codice fiscale (omocodia-insensitive), or by
//! surname + given name + birth date with tolerance for the spelling variants and typos that
//! DOMAIN.md §5 lists (particles, one or two wrong letters, a compound written apart, day and
//! month swapped, a birth date off by a few days).
//!
//! Pure: it scores records handed to it. The query is normalised by the same rules as imported
//! records, so `De Giorgi` finds `DEGIORGI`. Nothing here leaves the node.

use crate::normalise::text::{normalise_text, parse_given_names, parse_surname};
use crate::normalise::{BirthDate, NormalisedIdentity};

/// Lowest name similarity (Jaro–Winkler, 0–1) that still counts as the same name: one wrong
/// letter in a six-letter surname scores about 0.9.
pub const NAME_THRESHOLD: f64 = 0.86;

/// Longest name a query may carry, in characters.
pub const MAX_QUERY_CHARS: usize = 100;

/// Largest tolerance on the birth date a query may ask for, in days.
pub const MAX_TOLERANCE_DAYS: u32 = 366;

/// What a case worker looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A codice fiscale (any case, spaces allowed; an omocode finds its base code and back).
    CodiceFiscale(String),
    /// Surname, given name(s) and birth date, with a tolerance in days on the date.
    Demographic { surname: String, given_name: String, birth_date: BirthDate, tolerance_days: u32 },
}

/// One record found, with how well it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub record_id: String,
    /// 0–1: 1 for an exact codice fiscale or exact names and date.
    pub score: f64,
    /// Every part matched exactly (after normalisation).
    pub exact: bool,
}

/// Why a query cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub field: &'static str,
    pub reason: String,
}

impl Query {
    /// Checks a query's parts; a name must keep at least one letter after normalisation.
    pub fn check(&self) -> Result<(), QueryError> {
        match self {
            Query::CodiceFiscale(cf) => {
                if cf.chars().count() > MAX_QUERY_CHARS {
                    return Err(QueryError { field: "codice_fiscale", reason: format!("at most {MAX_QUERY_CHARS} characters") });
                }
                let c = compact_cf(cf);
                if c.len() != 16 || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    return Err(QueryError {
                        field: "codice_fiscale",
                        reason: format!("a codice fiscale has 16 letters and digits; got {} characters", c.chars().count()),
                    });
                }
                Ok(())
            }
            Query::Demographic { surname, given_name, tolerance_days, .. } => {
                for (field, v) in [("surname", surname), ("given_name", given_name)] {
                    if v.chars().count() > MAX_QUERY_CHARS {
                        return Err(QueryError { field, reason: format!("at most {MAX_QUERY_CHARS} characters") });
                    }
                }
                if normalise_text(surname).is_empty() {
                    return Err(QueryError { field: "surname", reason: "the surname has no letters".into() });
                }
                if normalise_text(given_name).is_empty() {
                    return Err(QueryError { field: "given_name", reason: "the given name has no letters".into() });
                }
                if *tolerance_days > MAX_TOLERANCE_DAYS {
                    return Err(QueryError {
                        field: "tolerance_days",
                        reason: format!("{tolerance_days} days is more than the {MAX_TOLERANCE_DAYS} allowed"),
                    });
                }
                Ok(())
            }
        }
    }
}

fn compact_cf(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect()
}

/// The first fifteen characters with omocodia letters turned back into digits: equal for a code
/// and all its omocodes.
fn cf_base(cf: &str) -> Option<String> {
    const NUMERIC: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];
    const LETTERS: &[u8; 10] = b"LMNPQRSTUV";
    let b = compact_cf(cf).into_bytes();
    if b.len() != 16 {
        return None;
    }
    let mut out = b[..15].to_vec();
    for p in NUMERIC {
        if let Some(d) = LETTERS.iter().position(|l| *l == out[p]) {
            out[p] = b'0' + d as u8;
        }
    }
    String::from_utf8(out).ok()
}

/// Days since 0000-03-01 of a proleptic Gregorian date (for differences only).
fn day_number(d: BirthDate) -> i64 {
    let (y, m) = if d.month <= 2 { (i64::from(d.year) - 1, i64::from(d.month) + 9) } else { (i64::from(d.year), i64::from(d.month) - 3) };
    365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + i64::from(d.day) - 1
}

/// How well two birth dates agree: 1 when equal, 0.95 within the tolerance, 0.9 when day and
/// month are swapped, `None` otherwise.
fn date_agreement(want: BirthDate, have: BirthDate, tolerance_days: u32) -> Option<f64> {
    if want == have {
        return Some(1.0);
    }
    if (day_number(want) - day_number(have)).unsigned_abs() <= u64::from(tolerance_days) {
        return Some(0.95);
    }
    if want.year == have.year && want.day == have.month && want.month == have.day {
        return Some(0.9);
    }
    None
}

/// Best similarity of a query name against any of a record's forms of it.
fn best_similarity(query: &str, forms: &[String]) -> f64 {
    forms.iter().filter(|f| !f.is_empty()).map(|f| strsim::jaro_winkler(query, f)).fold(0.0, f64::max)
}

/// Scores one record against a query; `None` when it does not match.
pub fn score(query: &Query, identity: &NormalisedIdentity) -> Option<(f64, bool)> {
    match query {
        Query::CodiceFiscale(cf) => {
            let have = identity.codice_fiscale.as_deref()?;
            if compact_cf(cf) == have {
                return Some((1.0, true));
            }
            (cf_base(cf)? == cf_base(have)?).then_some((0.99, false))
        }
        Query::Demographic { surname, given_name, birth_date, tolerance_days } => {
            let date = date_agreement(*birth_date, identity.birth_date?, *tolerance_days)?;
            let s = parse_surname(surname);
            let want_surname = s.tokens.concat();
            let mut surname_forms = vec![identity.surname.clone()];
            surname_forms.extend(identity.surname_tokens.iter().cloned());
            surname_forms.extend(identity.surname_alias.iter().cloned());
            let surname_sim = best_similarity(&want_surname, &surname_forms)
                .max(s.tokens.iter().map(|t| best_similarity(t, &surname_forms)).fold(0.0, f64::max) * 0.98);
            let want_given = parse_given_names(given_name);
            let want_compact = want_given.concat();
            let mut given_forms = vec![identity.given_names.concat()];
            given_forms.extend(identity.given_names.iter().cloned());
            given_forms.extend(identity.given_name_canonical.iter().cloned());
            let given_sim = best_similarity(&want_compact, &given_forms)
                .max(want_given.first().map(|g| best_similarity(g, &given_forms) * 0.98).unwrap_or(0.0));
            if surname_sim < NAME_THRESHOLD || given_sim < NAME_THRESHOLD {
                return None;
            }
            let exact = surname_sim >= 1.0 && given_sim >= 1.0 && date >= 1.0;
            Some(((surname_sim + given_sim) / 2.0 * date, exact))
        }
    }
}

/// The best `max` records matching `query`, best first (ties by record id, so the order is
/// stable).
pub fn search<'a>(query: &Query, records: impl IntoIterator<Item = (&'a str, &'a NormalisedIdentity)>, max: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = records
        .into_iter()
        .filter_map(|(id, identity)| score(query, identity).map(|(score, exact)| Hit { record_id: id.to_string(), score, exact }))
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.record_id.cmp(&b.record_id)));
    hits.truncate(max);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalise::dates::DateFormat;
    use crate::normalise::{RawIdentity, normalise};

    fn person(surname: &str, given: &str, date: &str, cf: &str) -> NormalisedIdentity {
        let raw = RawIdentity { surname, given_names: given, birth_date: date, codice_fiscale: cf, ..Default::default() };
        normalise(&raw, &DateFormat::parse("%Y-%m-%d").unwrap()).unwrap()
    }

    fn date(y: u16, m: u8, d: u8) -> BirthDate {
        BirthDate { year: y, month: m, day: d }
    }

    fn demo(surname: &str, given: &str, d: BirthDate, tol: u32) -> Query {
        Query::Demographic { surname: surname.into(), given_name: given.into(), birth_date: d, tolerance_days: tol }
    }

    #[test]
    fn codice_fiscale_finds_the_code_and_its_omocodes() {
        let cf = crate::normalise::codice_fiscale::compute("ROSSI", "MARIO", crate::normalise::Sex::M, date(1980, 1, 1), "E506");
        let p = person("Rossi", "Mario", "1980-01-01", &cf);
        assert_eq!(score(&Query::CodiceFiscale(cf.to_lowercase()), &p), Some((1.0, true)));
        let omo = crate::normalise::codice_fiscale::omocode(&cf, 1).unwrap();
        assert_eq!(score(&Query::CodiceFiscale(omo), &p), Some((0.99, false)), "an omocode finds its base code");
        let other = crate::normalise::codice_fiscale::compute("ROSSI", "MARIO", crate::normalise::Sex::M, date(1980, 1, 2), "E506");
        assert_eq!(score(&Query::CodiceFiscale(other), &p), None);
        assert!(Query::CodiceFiscale("RSSMRA80".into()).check().is_err());
        assert_eq!(Query::CodiceFiscale("X".repeat(MAX_QUERY_CHARS + 1)).check().unwrap_err().field, "codice_fiscale");
        let long = demo(&"ROSSI".repeat(30), "Mario", date(1950, 1, 1), 0);
        assert_eq!(long.check().unwrap_err().field, "surname");
        assert_eq!(demo("Rossi", "Mario", date(1950, 1, 1), MAX_TOLERANCE_DAYS + 1).check().unwrap_err().field, "tolerance_days");
    }

    #[test]
    fn names_tolerate_particles_typos_and_compounds() {
        let p = person("De Giorgi", "Maria Grazia", "1940-03-12", "");
        let d = date(1940, 3, 12);
        assert_eq!(score(&demo("DEGIORGI", "mariagrazia", d, 0), &p).map(|s| s.1), Some(true));
        assert!(score(&demo("De Giorgio", "Maria Grazia", d, 0), &p).is_some(), "one extra letter");
        assert!(score(&demo("Degiorgi", "Maria", d, 0), &p).is_some(), "first given name alone");
        assert!(score(&demo("De Giorgi", "Maria Grazia", date(1940, 12, 3), 0), &p).is_some(), "day and month swapped");
        assert!(score(&demo("Rossi", "Maria Grazia", d, 0), &p).is_none(), "another surname");
        assert!(score(&demo("De Giorgi", "Giuseppe", d, 0), &p).is_none(), "another given name");
        assert!(score(&demo("De Giorgi", "Maria Grazia", date(1940, 3, 15), 0), &p).is_none(), "date off without tolerance");
        assert!(score(&demo("De Giorgi", "Maria Grazia", date(1940, 3, 15), 3), &p).is_some(), "date off within tolerance");
    }

    #[test]
    fn search_ranks_exact_first_and_bounds_the_results() {
        let a = person("Rossi", "Mario", "1950-05-05", "");
        let b = person("Rosi", "Mario", "1950-05-05", "");
        let c = person("Bianchi", "Mario", "1950-05-05", "");
        let recs = [("B", &b), ("A", &a), ("C", &c)];
        let hits = search(&demo("Rossi", "Mario", date(1950, 5, 5), 0), recs.iter().map(|(i, p)| (*i, *p)), 10);
        assert_eq!(hits.iter().map(|h| h.record_id.as_str()).collect::<Vec<_>>(), ["A", "B"]);
        assert!(hits[0].exact && !hits[1].exact && hits[0].score > hits[1].score);
        let one = search(&demo("Rossi", "Mario", date(1950, 5, 5), 0), recs.iter().map(|(i, p)| (*i, *p)), 1);
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn day_numbers_count_days() {
        assert_eq!(day_number(date(2000, 3, 1)) - day_number(date(2000, 2, 28)), 2);
        assert_eq!(day_number(date(2001, 1, 1)) - day_number(date(2000, 1, 1)), 366);
    }
}
