//! Reading an entity's CSV export through its column mapping. Pure over a reader: no storage.
//!
//! Each row is checked on its own: a malformed row is reported (line, field, reason) and the
//! other rows go on. Doubtful rows (quality flags) are imported and reported too, so that the
//! entity's data stewards can fix them at the source.

use std::collections::BTreeMap;
use std::io::Read;

use ponte_proto::v1;
use ponte_proto::vocab;
use serde::Serialize;

use crate::config::ImportConfig;
use crate::normalise::dates::{DateFormat, month_of};
use crate::normalise::{self, NormalisedIdentity, QualityFlags, RawIdentity};

/// Longest field accepted (characters).
pub const MAX_FIELD_CHARS: usize = 200;

/// One row that can be imported.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedRow {
    pub line: u64,
    pub record_id: String,
    pub relationship_id: String,
    pub identity: NormalisedIdentity,
    pub unit: String,
    pub category: v1::ServiceCategory,
    pub status: v1::RelationshipStatus,
    pub since_month: u32,
    pub case_manager: bool,
    /// Never encoded, never published (the export's `never_encode` column).
    pub never_encode: bool,
}

/// A problem with one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowProblem {
    pub line: u64,
    pub field: String,
    pub reason: String,
    /// `rejected` (row not imported) or `doubtful` (imported with quality flags).
    pub severity: &'static str,
}

/// What an import did, kept on the node for the data stewards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub file: String,
    pub rows_read: u64,
    pub rows_imported: u64,
    pub rows_rejected: u64,
    pub rows_doubtful: u64,
    /// Imported rows marked never to be encoded: kept on this node only.
    pub never_encoded: u64,
    pub problems: Vec<RowProblem>,
    /// Count of problems by kind (`field: reason-kind`).
    pub counts: BTreeMap<String, u64>,
}

impl ImportReport {
    fn add(&mut self, p: RowProblem, kind: &str) {
        *self.counts.entry(format!("{} {}: {kind}", p.severity, p.field)).or_insert(0) += 1;
        if self.problems.len() < 10_000 {
            self.problems.push(p);
        }
    }
}

/// A problem with the file as a whole (nothing was imported).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

const FLAG_NAMES: &[(u32, &str, &str)] = &[
    (QualityFlags::CF_INVALID, "codice_fiscale", "invalid (pattern or check character)"),
    (QualityFlags::CF_MISMATCH, "codice_fiscale", "disagrees with sex, birth date or birthplace"),
    (QualityFlags::CF_OF_ANOTHER, "codice_fiscale", "disagrees in two or more of sex, day, month, year and birthplace: probably another person's code, not sent as evidence"),
    (QualityFlags::SEX_MISMATCH, "sex", "differs from the sex in the codice fiscale"),
    (QualityFlags::DATE_PLACEHOLDER, "birth_date", "placeholder date"),
    (QualityFlags::BIRTHPLACE_UNRESOLVED, "birthplace", "not a known comune or country"),
    (QualityFlags::BIRTHPLACE_NOT_VALID_AT_BIRTH, "birthplace", "code not valid at the birth date"),
    (QualityFlags::OTHER_ID_IN_CF_FIELD, "codice_fiscale", "holds an STP/ENI/provisional code (moved to its own kind)"),
];

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "s" | "si" | "sì" | "y" | "yes" | "1" | "true" | "x" => Some(true),
        "n" | "no" | "0" | "false" | "" => Some(false),
        _ => None,
    }
}

/// Reads an export. Returns the importable rows and the report; a file-level problem (missing
/// columns, too many rows) is an error that names what to fix.
pub fn read_export<R: Read>(input: R, file: &str, cfg: &ImportConfig) -> Result<(Vec<ImportedRow>, ImportReport), FileError> {
    let delimiter = cfg.delimiter_byte().map_err(|e| FileError(e.0))?;
    let date_format = DateFormat::parse(&cfg.date_format).map_err(FileError)?;
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| FileError(format!("{file}: cannot read the header line: {e}")))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name.trim()));
    let m = &cfg.columns;
    let mut missing = Vec::new();
    let mut need = |field: &str, name: &str| -> usize {
        col(name).unwrap_or_else(|| {
            missing.push(format!("{field} → \"{name}\""));
            usize::MAX
        })
    };
    let c_record = need("record_id", &m.record_id);
    let c_surname = need("surname", &m.surname);
    let c_given = need("given_names", &m.given_names);
    let c_birth = need("birth_date", &m.birth_date);
    let c_service = need("service", &m.service);
    let c_status = need("status", &m.status);
    let c_since = need("since", &m.since);
    let mut opt = |field: &str, name: &Option<String>| -> Option<usize> { name.as_ref().map(|n| need(field, n)) };
    let c_rel = opt("relationship_id", &m.relationship_id);
    let c_sex = opt("sex", &m.sex);
    let c_place = opt("birthplace", &m.birthplace);
    let c_cf = opt("codice_fiscale", &m.codice_fiscale);
    let c_alias = opt("surname_alias", &m.surname_alias);
    let c_unit = opt("unit", &m.unit);
    let c_cm = opt("case_manager", &m.case_manager);
    let c_never = opt("never_encode", &m.never_encode);
    if !missing.is_empty() {
        return Err(FileError(format!(
            "{file}: the export lacks the columns the import mapping names: {}. Columns found: {}. Fix [import.columns] in the node configuration.",
            missing.join(", "),
            headers.iter().collect::<Vec<_>>().join(", ")
        )));
    }

    let mut rows = Vec::new();
    let mut report = ImportReport { file: file.to_string(), ..Default::default() };
    for result in reader.records() {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                report.rows_read += 1;
                report.rows_rejected += 1;
                report.add(RowProblem { line, field: "row".into(), reason: format!("unreadable: {e}"), severity: "rejected" }, "unreadable");
                continue;
            }
        };
        report.rows_read += 1;
        if report.rows_read as usize > cfg.max_rows {
            return Err(FileError(format!(
                "{file}: more than {} rows; raise import.max_rows or split the export (nothing from this file was imported)",
                cfg.max_rows
            )));
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let reject = |report: &mut ImportReport, field: &str, reason: String, kind: &str| {
            report.rows_rejected += 1;
            report.add(RowProblem { line, field: field.into(), reason, severity: "rejected" }, kind);
        };
        if record.len() != headers.len() {
            reject(&mut report, "row", format!("{} fields where the header has {}", record.len(), headers.len()), "wrong field count");
            continue;
        }
        if let Some((i, _)) = record.iter().enumerate().find(|(_, f)| f.chars().count() > MAX_FIELD_CHARS) {
            reject(&mut report, headers.get(i).unwrap_or("?"), format!("longer than {MAX_FIELD_CHARS} characters"), "too long");
            continue;
        }
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let getopt = |c: Option<usize>| c.map(get).unwrap_or("");
        let record_id = get(c_record).to_string();
        if record_id.is_empty() {
            reject(&mut report, "record_id", "empty".into(), "empty");
            continue;
        }
        let raw = RawIdentity {
            surname: get(c_surname),
            given_names: get(c_given),
            sex: getopt(c_sex),
            birth_date: get(c_birth),
            birthplace: getopt(c_place),
            codice_fiscale: getopt(c_cf),
            surname_alias: getopt(c_alias),
        };
        let identity = match normalise::normalise(&raw, &date_format) {
            Ok(i) => i,
            Err(r) => {
                reject(&mut report, r.field, r.reason, "cannot be linked");
                continue;
            }
        };
        let service_raw = get(c_service);
        let service_name = cfg.services.get(service_raw).map(String::as_str).unwrap_or(service_raw);
        let category = match vocab::ServiceCategoryName::parse(service_name) {
            Ok(c) => c,
            Err(_) => {
                reject(
                    &mut report,
                    "service",
                    format!("{service_raw:?} is neither mapped in [import.services] nor a Ponte service category"),
                    "unknown value",
                );
                continue;
            }
        };
        let status_raw = get(c_status);
        let status_name = cfg.statuses.get(status_raw).map(String::as_str).unwrap_or(status_raw);
        let status = match vocab::StatusName::parse(status_name) {
            Ok(s) => s,
            Err(_) => {
                reject(
                    &mut report,
                    "status",
                    format!("{status_raw:?} is neither mapped in [import.statuses] nor a Ponte status"),
                    "unknown value",
                );
                continue;
            }
        };
        let since_month = match month_of(get(c_since), &date_format) {
            Ok((y, m)) => y as u32 * 100 + m as u32,
            Err(e) => {
                reject(&mut report, "since", e, "bad date");
                continue;
            }
        };
        let unit = match c_unit.map(get).filter(|u| !u.is_empty()) {
            Some(u) => u.to_ascii_lowercase(),
            None => cfg.default_unit.clone(),
        };
        if let Err(e) = vocab::check_unit_code(&unit) {
            reject(&mut report, "unit", e, "bad code");
            continue;
        }
        let case_manager = match parse_bool(getopt(c_cm)) {
            Some(b) => b,
            None => {
                reject(&mut report, "case_manager", format!("{:?} is not yes/no (S/N, si/no, 1/0)", getopt(c_cm)), "bad value");
                continue;
            }
        };
        let never_encode = match parse_bool(getopt(c_never)) {
            Some(b) => b,
            None => {
                reject(&mut report, "never_encode", format!("{:?} is not yes/no (S/N, si/no, 1/0)", getopt(c_never)), "bad value");
                continue;
            }
        };
        let relationship_id = match getopt(c_rel) {
            "" => format!("{record_id}:{}", vocab::ServiceCategoryName::name(category)),
            r => r.to_string(),
        };
        let mut doubtful = false;
        for (flag, field, what) in FLAG_NAMES {
            if identity.flags.has(*flag) {
                doubtful = true;
                report.add(RowProblem { line, field: (*field).into(), reason: (*what).into(), severity: "doubtful" }, what);
            }
        }
        if doubtful {
            report.rows_doubtful += 1;
        }
        report.rows_imported += 1;
        if never_encode {
            report.never_encoded += 1;
        }
        rows.push(ImportedRow { line, record_id, relationship_id, identity, unit, category, status, since_month, case_manager, never_encode });
    }
    Ok((rows, report))
}
