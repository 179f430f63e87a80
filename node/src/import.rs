//! Reading an entity's CSV export through its column mapping. Pure over a reader: no storage.
//!
//! Each row is checked on its own: a malformed row is reported (line, field, reason) and the
//! other rows go on. Doubtful rows (quality flags) are imported and reported too, so that the
//! entity's data stewards can fix them at the source. One row is one line: every line is split
//! into fields on its own, so an unterminated quote costs its own row and never the rows after
//! it ([`read_export`] lists the rules). Every input is bounded: line length, field length, row
//! count ([`ImportConfig::max_rows`]) and the number of problems kept in the report.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

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

/// Longest line accepted, in bytes. A row of 60 columns of [`MAX_FIELD_CHARS`] characters fits;
/// anything longer is not one row of an identity export.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One physical line of the export.
enum Line {
    /// The line's bytes, without the terminator, are in [`LineReader::buf`].
    Text,
    /// Longer than [`MAX_LINE_BYTES`]: its length; its bytes were not kept.
    TooLong(u64),
}

/// Splits the export into physical lines: `\n`, `\r\n` and a lone `\r` (old spreadsheet exports)
/// each end one. Holds at most [`MAX_LINE_BYTES`] of a line, whatever the input.
struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    /// The 1-based number of the last line returned.
    line: u64,
    /// The last line ended with `\r`: a `\n` right after it is part of the same terminator.
    after_cr: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(input: R) -> Self {
        LineReader { input, buf: Vec::new(), line: 0, after_cr: false }
    }

    /// The next line, `None` at the end of the input. An I/O error ends the reading.
    fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut started = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !started {
                    return Ok(None);
                }
                self.line += 1;
                return Ok(Some(Self::finished(len)));
            }
            if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
                self.input.consume(1);
                continue;
            }
            started = true;
            let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
            let piece = &chunk[..end.unwrap_or(chunk.len())];
            len += piece.len() as u64;
            if self.buf.len() + piece.len() <= MAX_LINE_BYTES {
                self.buf.extend_from_slice(piece);
            }
            match end {
                Some(i) => {
                    self.after_cr = chunk[i] == b'\r';
                    self.input.consume(i + 1);
                    self.line += 1;
                    return Ok(Some(Self::finished(len)));
                }
                None => {
                    let n = chunk.len();
                    self.input.consume(n);
                }
            }
        }
    }

    fn finished(len: u64) -> Line {
        if len > MAX_LINE_BYTES as u64 { Line::TooLong(len) } else { Line::Text }
    }
}

/// How one line splits into fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// This many fields, readable with [`LineParser::field`].
    Fields(usize),
    /// The line ends inside a quoted field: the 0-based index of that field.
    OpenQuote(usize),
    /// The CSV parser gave up on the line (never expected: refuse the row rather than guess).
    Unreadable,
}

/// The UTF-8 byte-order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits one line into fields with the CSV rules (RFC 4180 quoting, `""` for a quote inside a
/// quoted field). Each line is split on its own: a quote left open at the end of a line is
/// reported, never carried into the next line.
struct LineParser {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl LineParser {
    fn new(delimiter: u8) -> Self {
        LineParser { core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(), out: Vec::new(), ends: Vec::new() }
    }

    /// Splits `line` (without its terminator). Byte-order marks at its start are skipped: the
    /// file's own, and those of exports concatenated into one file.
    fn split(&mut self, mut line: &[u8]) -> Split {
        while let Some(rest) = line.strip_prefix(UTF8_BOM) {
            line = rest;
        }
        if line.is_empty() {
            // One empty field. (csv-core would take an empty input for the end of the data.)
            self.ends.clear();
            self.ends.push(0);
            return Split::Fields(1);
        }
        self.core.reset();
        // A field's bytes are at most the line's plus the terminator (inside an open quote),
        // and a line of n bytes has at most n + 1 fields: the buffers never fill up.
        let room = line.len() + 1;
        if self.out.len() < room {
            self.out.resize(room, 0);
        }
        if self.ends.len() < room + 1 {
            self.ends.resize(room + 1, 0);
        }
        let (mut nout, mut nend) = (0, 0);
        // The line, then the terminator the line reader took off: it ends the record, unless a
        // quote is still open and swallows it.
        for input in [line, b"\n".as_slice()] {
            let (result, nin, o, e) = self.core.read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            nout += o;
            nend += e;
            match result {
                csv_core::ReadRecordResult::Record => return Split::Fields(nend),
                csv_core::ReadRecordResult::InputEmpty => debug_assert_eq!(nin, input.len()),
                other => {
                    // Cannot happen: the input is not empty and the buffers have room for it.
                    debug_assert!(false, "csv_core returned {other:?} with room for the whole line");
                    return Split::Unreadable;
                }
            }
        }
        Split::OpenQuote(nend)
    }

    /// The bytes of field `i` of the last line split into [`Split::Fields`].
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends.get(i - 1).copied().unwrap_or(0) };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.out.get(start..end).unwrap_or(&[])
    }
}

/// Characters of a field as the length limit counts them (bytes when it is not UTF-8).
fn field_chars(b: &[u8]) -> usize {
    std::str::from_utf8(b).map_or(b.len(), |s| s.chars().count())
}

/// The first control character of `s` (1-based character position and the character).
fn first_control(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|(_, c)| c.is_control()).map(|(i, c)| (i + 1, c))
}

/// Reads an export. Returns the importable rows and the report; a file-level problem (missing
/// columns, too many rows, a read error) is an error that names what to fix, and then nothing
/// from the file is imported.
///
/// The rules a row must meet, each refused with its line, field and reason while the other
/// rows go on (see README, "Importing"):
/// - one row per line: `\n`, `\r\n` or `\r` ends it; blank lines are skipped; a line longer than
///   [`MAX_LINE_BYTES`] is refused;
/// - a quoted field must close on its own line. No field the mapping reads can hold a line break,
///   so a quote still open at the end of a line is an unterminated quote: that row is refused and
///   reading goes on at the next line (a stray quote never swallows the rows after it);
/// - as many fields as the header, none longer than [`MAX_FIELD_CHARS`] characters;
/// - every field the mapping reads is UTF-8 and, once trimmed, holds no control character
///   (U+0000–U+001F, U+007F–U+009F): a NUL or an escape in an id or a name is refused, never
///   stored or normalised away.
pub fn read_export<R: Read>(input: R, file: &str, cfg: &ImportConfig) -> Result<(Vec<ImportedRow>, ImportReport), FileError> {
    let delimiter = cfg.delimiter_byte().map_err(|e| FileError(e.0))?;
    let date_format = DateFormat::parse(&cfg.date_format).map_err(FileError)?;
    let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, input));
    let mut parser = LineParser::new(delimiter);
    let read_error = |line: u64, e: std::io::Error| {
        FileError(format!("{file}: reading stopped at line {line}: {e}; nothing from this file was imported"))
    };

    // The header: the first line that is not blank.
    let headers: Vec<String> = loop {
        match lines.next_line().map_err(|e| read_error(lines.line + 1, e))? {
            None => {
                return Err(FileError(format!(
                    "{file}: the file is empty; its first line must be the header naming the columns"
                )));
            }
            Some(Line::TooLong(n)) => {
                return Err(FileError(format!(
                    "{file}: line {}: the header line is {n} bytes, more than {MAX_LINE_BYTES}; is this a CSV export?",
                    lines.line
                )));
            }
            Some(Line::Text) if lines.buf.is_empty() => continue,
            Some(Line::Text) => {
                let text = lines.buf.as_slice();
                if text.contains(&0) {
                    return Err(FileError(format!(
                        "{file}: line {}: the header holds NUL bytes: the file looks UTF-16 encoded; export it as UTF-8",
                        lines.line
                    )));
                }
                match parser.split(text) {
                    Split::Fields(n) => break (0..n).map(|i| String::from_utf8_lossy(parser.field(i)).into_owned()).collect(),
                    Split::OpenQuote(i) => {
                        return Err(FileError(format!(
                            "{file}: line {}: the header has an unterminated quote (column {}); close it or remove it",
                            lines.line,
                            i + 1
                        )));
                    }
                    Split::Unreadable => {
                        return Err(FileError(format!("{file}: line {}: the header cannot be split into columns", lines.line)));
                    }
                }
            }
        }
    };
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
            headers.join(", ")
        )));
    }
    // The columns the mapping reads, in the order their checks run.
    let mapped: Vec<(&str, usize)> = [
        ("record_id", Some(c_record)),
        ("relationship_id", c_rel),
        ("surname", Some(c_surname)),
        ("given_names", Some(c_given)),
        ("sex", c_sex),
        ("birth_date", Some(c_birth)),
        ("birthplace", c_place),
        ("codice_fiscale", c_cf),
        ("surname_alias", c_alias),
        ("service", Some(c_service)),
        ("status", Some(c_status)),
        ("since", Some(c_since)),
        ("unit", c_unit),
        ("case_manager", c_cm),
        ("never_encode", c_never),
    ]
    .into_iter()
    .filter_map(|(f, c)| c.map(|c| (f, c)))
    .collect();
    // How a problem names a column: its header, cut to 64 characters; by number when the header
    // is empty, has control characters or is missing.
    let column_name = |i: usize| match headers.get(i).map(|h| h.trim()) {
        Some(h) if !h.is_empty() && !h.chars().any(char::is_control) => match h.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &h[..cut]),
            None => h.to_string(),
        },
        _ => format!("column {}", i + 1),
    };

    let mut rows = Vec::new();
    let mut report = ImportReport { file: file.to_string(), ..Default::default() };
    while let Some(kind) = lines.next_line().map_err(|e| read_error(lines.line + 1, e))? {
        if matches!(kind, Line::Text) && lines.buf.is_empty() {
            continue;
        }
        let line = lines.line;
        report.rows_read += 1;
        if report.rows_read as usize > cfg.max_rows {
            return Err(FileError(format!(
                "{file}: more than {} rows; raise import.max_rows or split the export (nothing from this file was imported)",
                cfg.max_rows
            )));
        }
        let reject = |report: &mut ImportReport, field: &str, reason: String, kind: &str| {
            report.rows_rejected += 1;
            report.add(RowProblem { line, field: field.into(), reason, severity: "rejected" }, kind);
        };
        if let Line::TooLong(n) = kind {
            reject(&mut report, "row", format!("the line is {n} bytes; a row has at most {MAX_LINE_BYTES}"), "too long");
            continue;
        }
        let n = match parser.split(&lines.buf) {
            Split::Fields(n) => n,
            Split::OpenQuote(i) => {
                reject(
                    &mut report,
                    &column_name(i),
                    format!(
                        "unterminated quote opened at line {line}: the quoted field does not close on its line, and no \
                         field may span lines; close the quote in the export (the row is rejected, reading went on at line {})",
                        line + 1
                    ),
                    "unterminated quote",
                );
                continue;
            }
            Split::Unreadable => {
                reject(&mut report, "row", "cannot be split into fields".into(), "unreadable");
                continue;
            }
        };
        if n != headers.len() {
            reject(&mut report, "row", format!("{n} fields where the header has {}", headers.len()), "wrong field count");
            continue;
        }
        if let Some(i) = (0..n).find(|&i| field_chars(parser.field(i)) > MAX_FIELD_CHARS) {
            reject(&mut report, &column_name(i), format!("longer than {MAX_FIELD_CHARS} characters"), "too long");
            continue;
        }
        // The fields the mapping reads: UTF-8, trimmed, without control characters.
        let mut values = vec![""; n];
        let mut refused = None;
        for &(field, c) in &mapped {
            let bytes = parser.field(c);
            match std::str::from_utf8(bytes) {
                Err(e) => {
                    let at = e.valid_up_to();
                    let byte = bytes.get(at).copied().unwrap_or(0);
                    refused = Some((
                        field,
                        format!("not UTF-8 (byte 0x{byte:02X} at byte {} of the field); export the file as UTF-8", at + 1),
                        "not UTF-8",
                    ));
                    break;
                }
                Ok(s) => {
                    let s = s.trim();
                    if let Some((at, ch)) = first_control(s) {
                        refused = Some((
                            field,
                            format!(
                                "holds the control character U+{:04X} at character {at}; ids, names, dates and codes are \
                                 printable text: fix the value in the export",
                                ch as u32
                            ),
                            "control character",
                        ));
                        break;
                    }
                    if let Some(v) = values.get_mut(c) {
                        *v = s;
                    }
                }
            }
        }
        if let Some((field, reason, kind)) = refused {
            reject(&mut report, field, reason, kind);
            continue;
        }
        let get = |c: usize| values.get(c).copied().unwrap_or("");
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
            Ok((y, _)) if !vocab::MONTH_YEARS.contains(&u32::from(y)) => {
                // A date the wire refuses would be imported here and then refused at every
                // publication: refuse it now, where the data steward sees it.
                reject(
                    &mut report,
                    "since",
                    format!(
                        "{:?}: a care relationship's date lies in the years {}–{}",
                        get(c_since),
                        vocab::MONTH_YEARS.start(),
                        vocab::MONTH_YEARS.end()
                    ),
                    "bad date",
                );
                continue;
            }
            Ok((y, m)) => u32::from(y) * 100 + u32::from(m),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The default column mapping plus a `note` column the mapping does not read.
    const HEADER: &str =
        "record_id;relationship_id;surname;given_names;sex;birth_date;birthplace;codice_fiscale;service;status;since;unit;case_manager;note";

    fn row(id: &str, surname: &str) -> String {
        format!("{id};R{id};{surname};Mario;M;11/02/1940;Lecce;;cure_domiciliari;attiva;01/03/2024;distretto-lecce;S;")
    }

    fn read(text: &[u8]) -> (Vec<ImportedRow>, ImportReport) {
        let (rows, report) = read_export(text, "t.csv", &ImportConfig::default()).unwrap();
        assert_counts_add_up(&rows, &report);
        (rows, report)
    }

    /// Every row read is imported or rejected, once, and each rejection has its problem.
    fn assert_counts_add_up(rows: &[ImportedRow], r: &ImportReport) {
        assert_eq!(rows.len() as u64, r.rows_imported);
        assert_eq!(r.rows_read, r.rows_imported + r.rows_rejected, "{r:?}");
        let rejected: Vec<u64> = r.problems.iter().filter(|p| p.severity == "rejected").map(|p| p.line).collect();
        assert_eq!(rejected.len() as u64, r.rows_rejected, "{r:?}");
        assert!(rejected.iter().all(|l| rows.iter().all(|row| row.line != *l)), "a line both imported and rejected: {r:?}");
    }

    fn lines_of(rows: &[ImportedRow]) -> Vec<u64> {
        rows.iter().map(|r| r.line).collect()
    }

    /// (line, field, reason) of each rejected row.
    fn rejections(r: &ImportReport) -> Vec<(u64, String, String)> {
        r.problems.iter().filter(|p| p.severity == "rejected").map(|p| (p.line, p.field.clone(), p.reason.clone())).collect()
    }

    #[test]
    fn an_unterminated_quote_costs_its_own_row_and_no_other() {
        let text = [HEADER.to_string(), row("P1", "Rossi"), row("P2", "\"Quarta"), row("P3", "Greco"), row("P4", "Rizzo")].join("\n");
        let (rows, report) = read(text.as_bytes());
        assert_eq!(report.rows_read, 4);
        assert_eq!(lines_of(&rows), [2, 4, 5]);
        assert_eq!(rows.iter().map(|r| r.record_id.as_str()).collect::<Vec<_>>(), ["P1", "P3", "P4"]);
        let rej = rejections(&report);
        assert_eq!(rej.len(), 1, "{rej:?}");
        assert_eq!((rej[0].0, rej[0].1.as_str()), (3, "surname"));
        assert!(rej[0].2.starts_with("unterminated quote opened at line 3:") && rej[0].2.contains("reading went on at line 4"), "{}", rej[0].2);
        assert_eq!(report.counts.get("rejected surname: unterminated quote"), Some(&1));
    }

    #[test]
    fn a_quote_still_open_at_the_end_of_the_file_is_reported_with_its_line() {
        let text = format!("{HEADER}\n{}\n{}", row("P1", "Rossi"), row("P2", "Greco").replace(";Lecce;", ";\"Lecce;"));
        let (rows, report) = read(text.as_bytes());
        assert_eq!(lines_of(&rows), [2]);
        let rej = rejections(&report);
        assert_eq!((rej[0].0, rej[0].1.as_str()), (3, "birthplace"), "{rej:?}");
        assert!(rej[0].2.starts_with("unterminated quote opened at line 3"), "{rej:?}");
    }

    #[test]
    fn a_quoted_field_spanning_lines_is_refused_even_in_a_column_not_read() {
        // A free-text note with a line break (a spreadsheet cell with Alt+Enter): the identity
        // columns never hold one, so the row is refused at its first line; the note's second
        // line is read as a row of its own (and refused: one field), the rows after are read.
        let text = format!(
            "{HEADER}\n{}\"prima riga\nseconda riga\"\n{}\n",
            row("P1", "Rossi"),
            row("P2", "Greco")
        );
        let (rows, report) = read(text.as_bytes());
        assert_eq!(lines_of(&rows), [4]);
        let rej = rejections(&report);
        assert_eq!(rej.len(), 2, "{rej:?}");
        assert_eq!((rej[0].0, rej[0].1.as_str()), (2, "note"));
        assert!(rej[0].2.starts_with("unterminated quote opened at line 2"));
        assert_eq!(rej[1], (3, "row".to_string(), "1 fields where the header has 14".to_string()));
    }

    #[test]
    fn quotes_that_close_on_their_line_are_read_as_csv() {
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            row("P1", "\"D'Amico; detto Mimmo\"").replacen("P1", "\"P1\"", 1).replace("Mario", "\"Maria \"\"Pina\"\"\""),
            row("P2", "\"De Giorgi\"")
        );
        let (rows, report) = read(text.as_bytes());
        assert_eq!(report.rows_rejected, 0, "{report:?}");
        assert_eq!(rows[0].record_id, "P1");
        assert_eq!(rows[1].identity.surname, "DEGIORGI");
    }

    #[test]
    fn control_characters_in_ids_and_names_are_refused_per_row() {
        let text = [
            HEADER.to_string(),
            row("P\u{0}1", "Rossi"),
            row("P2", "Rossi").replace(";RP2;", ";R\u{1b}P2;"),
            row("P3", "Ros\u{7f}si"),
            row("P4", "Ros\tsi"),
            row("P5", "Greco").replace(";distretto-lecce;", ";distretto\u{85}lecce;"),
            // Trimmed away (leading/trailing whitespace), and in a column the mapping does not read.
            row("P6", "Greco").replacen("P6", "\tP6 ", 1) + "nota\u{0}",
            row("P7", "Rizzo"),
        ]
        .join("\r\n");
        let (rows, report) = read(text.as_bytes());
        assert_eq!(rows.iter().map(|r| (r.line, r.record_id.as_str())).collect::<Vec<_>>(), [(7, "P6"), (8, "P7")]);
        let rej = rejections(&report);
        let expect = [
            (2, "record_id", "U+0000 at character 2"),
            (3, "relationship_id", "U+001B at character 2"),
            (4, "surname", "U+007F at character 4"),
            (5, "surname", "U+0009 at character 4"),
            (6, "unit", "U+0085 at character 10"),
        ];
        assert_eq!(rej.len(), expect.len(), "{rej:?}");
        for ((line, field, reason), (l, f, what)) in rej.iter().zip(expect) {
            assert_eq!((*line, field.as_str()), (l, f));
            assert!(reason.starts_with("holds the control character ") && reason.contains(what), "{reason}");
        }
        assert_eq!(report.counts.get("rejected surname: control character"), Some(&2));
    }

    #[test]
    fn every_line_terminator_counts_one_line_wherever_the_reader_splits_the_input() {
        let text = format!(
            "\u{feff}{HEADER}\r\n{}\r{}\n\n{}\r\n\r\n{}",
            row("P1", "Rossi"),
            row("P2", "Greco"),
            row("P3", "\"Rizzo"),
            row("P4", "Longo")
        );
        let (rows, report) = read(text.as_bytes());
        assert_eq!(lines_of(&rows), [2, 3, 7]);
        assert_eq!(rejections(&report).iter().map(|r| r.0).collect::<Vec<_>>(), [5]);
        // The same bytes handed over one at a time: `\r` and `\n` of one terminator in two reads.
        struct OneByte<'a>(&'a [u8]);
        impl Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else { return Ok(0) };
                if buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let (rows2, report2) = read_export(OneByte(text.as_bytes()), "t.csv", &ImportConfig::default()).unwrap();
        assert_eq!(rows2, rows);
        assert_eq!(serde_json::to_string(&report2).unwrap(), serde_json::to_string(&report).unwrap());
    }

    #[test]
    fn byte_order_marks_at_the_start_of_a_line_are_skipped_and_a_mark_alone_is_an_empty_row() {
        // Found by the csv_import fuzz target: a file holding only a byte-order mark made the
        // line splitter hand csv-core an empty input (which it takes for the end of the data).
        let e = read_export(b"\xEF\xBB\xBF".as_slice(), "t.csv", &ImportConfig::default()).unwrap_err().0;
        assert!(e.contains("lacks the columns") && e.ends_with("Columns found: . Fix [import.columns] in the node configuration."), "{e}");
        // Two exports concatenated (the second with its mark and header), a mark alone on a line,
        // a row after two marks.
        let bom = "\u{feff}";
        let text = format!(
            "{bom}{HEADER}\n{}\n{bom}{HEADER}\n{bom}\n{bom}{bom}{}\n",
            row("P1", "Rossi"),
            row("P2", "Greco")
        );
        let (rows, report) = read(text.as_bytes());
        assert_eq!(rows.iter().map(|r| (r.line, r.record_id.as_str())).collect::<Vec<_>>(), [(2, "P1"), (5, "P2")]);
        let rej = rejections(&report);
        assert_eq!(rej.len(), 2, "{rej:?}");
        assert_eq!((rej[0].0, rej[0].1.as_str()), (3, "birth_date"), "the second header is a row like any other: {rej:?}");
        assert_eq!(rej[1], (4, "row".to_string(), "1 fields where the header has 14".to_string()));
    }

    #[test]
    fn a_since_date_the_wire_refuses_is_refused_at_import() {
        // Found by the csv_import fuzz target: a since date in 1855 is a valid date for the date
        // parser (years 1800–2199) but not a month the coordinator accepts (1900–2200): the row
        // was imported and would have been refused at every publication.
        let text = format!(
            "{HEADER}\n{}\n{}\n{}\n",
            row("P1", "Rossi").replace("01/03/2024", "17/03/1855"),
            row("P2", "Greco").replace("01/03/2024", "01/01/1900"),
            row("P3", "Rizzo").replace("01/03/2024", "31/12/2199")
        );
        let (rows, report) = read(text.as_bytes());
        assert_eq!(rows.iter().map(|r| (r.line, r.since_month)).collect::<Vec<_>>(), [(3, 190001), (4, 219912)]);
        assert_eq!(
            rejections(&report),
            [(2, "since".to_string(), "\"17/03/1855\": a care relationship's date lies in the years 1900–2200".to_string())]
        );
        for r in &rows {
            vocab::check_month(r.since_month).unwrap();
        }
    }

    #[test]
    fn an_overlong_line_is_refused_without_being_held_and_the_next_row_is_read() {
        let long = row("P1", &"A".repeat(MAX_LINE_BYTES));
        let text = format!("{HEADER}\n{long}\n{}\n", row("P2", "Greco"));
        let (rows, report) = read(text.as_bytes());
        assert_eq!(lines_of(&rows), [3]);
        let rej = rejections(&report);
        assert_eq!((rej[0].0, rej[0].1.as_str()), (2, "row"));
        assert!(rej[0].2.contains(&format!("a row has at most {MAX_LINE_BYTES}")), "{rej:?}");
        // A long field on a short enough line: refused by the field limit, naming the column.
        let text = format!("{HEADER}\n{}\n", row("P1", &"A".repeat(MAX_FIELD_CHARS + 1)));
        let (_, report) = read(text.as_bytes());
        assert_eq!(rejections(&report), [(2, "surname".to_string(), format!("longer than {MAX_FIELD_CHARS} characters"))]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_where_they_are_read_and_ignored_elsewhere() {
        let mut text = format!("{HEADER}\n").into_bytes();
        // "Nicolò" written in Windows-1252: ò is the single byte 0xF2.
        text.extend(row("P1", "Nicol@").bytes().map(|b| if b == b'@' { 0xF2 } else { b }));
        text.push(b'\n');
        text.extend(row("P2", "Greco").as_bytes());
        text.extend(b"nota di Nicol\xF2\n");
        let (rows, report) = read(&text);
        assert_eq!(lines_of(&rows), [3]);
        let rej = rejections(&report);
        assert_eq!((rej[0].0, rej[0].1.as_str()), (2, "surname"));
        assert!(rej[0].2.contains("not UTF-8 (byte 0xF2 at byte 6 of the field)"), "{rej:?}");
    }

    #[test]
    fn a_read_error_stops_the_import_with_its_line_and_imports_nothing() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("device gone"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let text = format!("{HEADER}\n{}\n{}\n", row("P1", "Rossi"), row("P2", "Greco"));
        let e = read_export(Failing(text.as_bytes()), "t.csv", &ImportConfig::default()).unwrap_err();
        assert_eq!(e.0, "t.csv: reading stopped at line 4: device gone; nothing from this file was imported");
    }

    #[test]
    fn file_level_problems_say_what_to_fix() {
        let e = |text: &[u8]| read_export(text, "t.csv", &ImportConfig::default()).unwrap_err().0;
        assert!(e(b"").contains("the file is empty"), "{}", e(b""));
        assert!(e(b"\n\r\n").contains("the file is empty"));
        let utf16: Vec<u8> = HEADER.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(e(&utf16).contains("looks UTF-16 encoded"), "{}", e(&utf16));
        assert!(e(b"record_id;\"surname\n").contains("line 1: the header has an unterminated quote (column 2)"));
        let missing = e(b"record_id;surname\n");
        assert!(missing.contains("given_names") && missing.contains("Columns found: record_id, surname"), "{missing}");
        let many = format!("{HEADER}\n{}\n{}\n", row("P1", "Rossi"), row("P2", "Greco"));
        let cfg = ImportConfig { max_rows: 1, ..Default::default() };
        assert!(read_export(many.as_bytes(), "t.csv", &cfg).unwrap_err().0.contains("more than 1 rows"));
    }
}
