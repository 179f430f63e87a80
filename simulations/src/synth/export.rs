//! Per-entity CSV exports and the import mapping that reads each of them.
//!
//! Each entity writes its registrations its own way ([`ExportFormat`]): its headers, delimiter,
//! date format, letter case and service / status words, with identity fields passed through its
//! error model. Record ids are the entity's own (never the person id), given in a shuffled order
//! with gaps; relationship ids follow the relationships' start dates, as a registry assigns them.
//! The [`ImportConfig`] returned with each file is exactly what a node needs to read it.

use std::collections::BTreeMap;

use ponte_node::config::{ColumnMapping, ImportConfig};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::SynthError;
use super::calendar::{add_days, format_date, month_string};
use super::care::{CareRelationship, Registration};
use super::errors::{
    ErrorKind, ErrorRates, RecordText, RenderContext, keyboard_typo, render_record,
};
use super::population::Person;
use super::scenario::{EntitySpec, ExportFormat, Field, FlagStyle};
use super::truth::TruthRow;

/// One entity's export file and the import mapping that reads it.
#[derive(Debug, Clone)]
pub struct EntityExport {
    pub node_id: String,
    pub entity_name: String,
    pub entity_type: String,
    /// `<node_id>.csv`
    pub file_name: String,
    /// The file's bytes (UTF-8, header row first).
    pub csv: Vec<u8>,
    pub import: ImportConfig,
}

/// One record of the export before ids are assigned.
struct Record {
    person: usize,
    identity: RecordText,
    relationships: Vec<CareRelationship>,
    /// Errors injected into the identity (kept for diagnostics and tests).
    #[allow(dead_code)]
    errors: Vec<ErrorKind>,
}

/// The import mapping for `format`: headers, delimiter, date format and the entity's own words.
pub fn import_config(format: &ExportFormat) -> ImportConfig {
    let h = |f: Field| format.header(f).map(str::to_string);
    let req = |f: Field| h(f).expect("required columns are checked by Scenario::check");
    let reverse = |pairs: &[(String, String)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .filter(|(ours, theirs)| ours != theirs)
            .map(|(ours, theirs)| (theirs.clone(), ours.clone()))
            .collect()
    };
    ImportConfig {
        delimiter: format.delimiter.to_string(),
        date_format: format.date_format.clone(),
        default_unit: format.default_unit.clone(),
        columns: ColumnMapping {
            record_id: req(Field::RecordId),
            relationship_id: h(Field::RelationshipId),
            surname: req(Field::Surname),
            given_names: req(Field::GivenNames),
            sex: h(Field::Sex),
            birth_date: req(Field::BirthDate),
            birthplace: h(Field::Birthplace),
            codice_fiscale: h(Field::CodiceFiscale),
            surname_alias: h(Field::SurnameAlias),
            service: req(Field::Service),
            status: req(Field::Status),
            since: req(Field::Since),
            unit: h(Field::Unit),
            case_manager: h(Field::CaseManager),
            never_encode: None,
        },
        services: reverse(&format.services),
        statuses: reverse(&format.statuses),
        ..ImportConfig::default()
    }
}

/// Builds one entity's export and its truth rows from its registrations (all of the same entity).
pub fn build_export(
    entity: &EntitySpec,
    registrations: &[&Registration],
    persons: &[Person],
    ctx: &RenderContext<'_>,
    rng: &mut ChaCha8Rng,
) -> Result<(EntityExport, Vec<TruthRow>), SynthError> {
    let format = &entity.export;
    let mut records: Vec<Record> = Vec::with_capacity(registrations.len());
    for reg in registrations {
        let person = &persons[reg.person];
        let (identity, errors) = render_record(person, ctx, &entity.errors, rng);
        let duplicate = entity.duplicate_rate > 0.0 && rng.random::<f64>() < entity.duplicate_rate;
        let original_since = reg.relationships[0].since;
        records.push(Record {
            person: reg.person,
            identity: identity.clone(),
            relationships: reg.relationships.clone(),
            errors,
        });
        if duplicate {
            // Registered again, often without the card at hand, and spelt differently.
            let rates = ErrorRates {
                cf_missing: entity.errors.cf_missing.max(0.5),
                ..entity.errors.clone()
            };
            let (mut dup, mut dup_errors) = render_record(person, ctx, &rates, rng);
            if (&dup.surname, &dup.given_names) == (&identity.surname, &identity.given_names) {
                if let Some(v) = keyboard_typo(&dup.given_names, rng) {
                    dup.given_names = v;
                    dup_errors.push(ErrorKind::GivenNamesTypo);
                } else if let Some(v) = keyboard_typo(&dup.surname, rng) {
                    dup.surname = v;
                    dup_errors.push(ErrorKind::SurnameTypo);
                }
            }
            let first = &reg.relationships[0];
            let status = if rng.random::<f64>() < 0.6 {
                "conclusa".to_string()
            } else {
                first.status.clone()
            };
            let mut since = add_days(original_since, -rng.random_range(30..=1_500));
            if since < person.birth_date {
                since = person.birth_date;
            }
            records.push(Record {
                person: reg.person,
                identity: dup,
                relationships: vec![CareRelationship {
                    service: first.service.clone(),
                    status,
                    since,
                    unit: first.unit.clone(),
                    case_manager: false,
                }],
                errors: dup_errors,
            });
        }
    }

    // Record ids: shuffled order, sequential with occasional gaps (deleted records).
    records.shuffle(rng);
    let digits = format.record_id_digits;
    let mut next: u64 = rng.random_range(1..=999);
    let mut record_ids = Vec::with_capacity(records.len());
    for _ in &records {
        record_ids.push(format!("{}{:0digits$}", format.record_id_prefix, next));
        next += 1 + if rng.random::<f64>() < 0.1 {
            rng.random_range(1..=5)
        } else {
            0
        };
    }

    // Relationship ids: in order of start date (ties broken at random).
    // (start date, random tie-break, record index, relationship index)
    type Slot = ((u16, u8, u8), u64, usize, usize);
    let mut order: Vec<Slot> = Vec::new();
    for (ri, rec) in records.iter().enumerate() {
        for (li, rel) in rec.relationships.iter().enumerate() {
            order.push((
                (rel.since.year, rel.since.month, rel.since.day),
                rng.random(),
                ri,
                li,
            ));
        }
    }
    order.sort();
    let mut rel_nums: Vec<Vec<u64>> = records
        .iter()
        .map(|r| vec![0; r.relationships.len()])
        .collect();
    let first_rel: u64 = rng.random_range(100..=9_999);
    for (n, (_, _, ri, li)) in (first_rel..).zip(&order) {
        rel_nums[*ri][*li] = n;
    }
    let rel_id =
        |ri: usize, li: usize| format!("{}{}", format.relationship_id_prefix, rel_nums[ri][li]);

    // Rows: by record id, then relationship id.
    let has_unit_column = format.header(Field::Unit).is_some();
    let mut rows: Vec<(String, u64, usize, usize)> = Vec::new();
    for (ri, nums) in rel_nums.iter().enumerate() {
        for (li, n) in nums.iter().enumerate() {
            rows.push((record_ids[ri].clone(), *n, ri, li));
        }
    }
    rows.sort();

    let mut writer = csv::WriterBuilder::new()
        .delimiter(format.delimiter_byte())
        .from_writer(Vec::new());
    let io = |e: csv::Error| SynthError(format!("writing the export of {}: {e}", entity.node_id));
    writer
        .write_record(format.columns.iter().map(|(_, h)| h.as_str()))
        .map_err(io)?;
    let mut truth = Vec::with_capacity(rows.len());
    for (record_id, _, ri, li) in &rows {
        let rec = &records[*ri];
        let rel = &rec.relationships[*li];
        let relationship_id = &rel_id(*ri, *li);
        let unit = if has_unit_column {
            rel.unit.clone()
        } else {
            format.default_unit.clone()
        };
        let fields: Vec<String> = format
            .columns
            .iter()
            .map(|(field, _)| match field {
                Field::RecordId => record_id.clone(),
                Field::RelationshipId => relationship_id.clone(),
                Field::Surname => rec.identity.surname.clone(),
                Field::GivenNames => rec.identity.given_names.clone(),
                Field::SurnameAlias => rec.identity.surname_alias.clone(),
                Field::Sex => rec.identity.sex.clone(),
                Field::BirthDate => rec.identity.birth_date.clone(),
                Field::Birthplace => rec.identity.birthplace.clone(),
                Field::CodiceFiscale => rec.identity.codice_fiscale.clone(),
                Field::Service => entity_word(&format.services, &rel.service, rng),
                Field::Status => entity_word(&format.statuses, &rel.status, rng),
                Field::Since => format_date(rel.since, &format.date_format),
                Field::Unit => unit.clone(),
                Field::CaseManager => flag(rel.case_manager, format.flag_style).to_string(),
            })
            .collect();
        writer.write_record(&fields).map_err(io)?;
        truth.push(TruthRow {
            node_id: entity.node_id.clone(),
            record_id: record_id.clone(),
            relationship_id: relationship_id.clone(),
            person_id: persons[rec.person].person_id,
            service: rel.service.clone(),
            status: rel.status.clone(),
            since_month: month_string(rel.since),
            unit,
            case_manager: rel.case_manager,
        });
    }
    let csv = writer
        .into_inner()
        .map_err(|e| SynthError(format!("writing the export of {}: {e}", entity.node_id)))?;
    Ok((
        EntityExport {
            node_id: entity.node_id.clone(),
            entity_name: entity.entity_name.clone(),
            entity_type: entity.entity_type.clone(),
            file_name: format!("{}.csv", entity.node_id),
            csv,
            import: import_config(format),
        },
        truth,
    ))
}

/// The entity's word for a Ponte value (one of its words at random if it has several; Ponte's own
/// value if it has none).
fn entity_word(table: &[(String, String)], ours: &str, rng: &mut ChaCha8Rng) -> String {
    let words: Vec<&String> = table
        .iter()
        .filter(|(o, _)| o == ours)
        .map(|(_, t)| t)
        .collect();
    match words.len() {
        0 => ours.to_string(),
        1 => words[0].clone(),
        _ => words.choose(rng).expect("not empty").to_string(),
    }
}

pub fn flag(value: bool, style: FlagStyle) -> &'static str {
    match (value, style) {
        (true, FlagStyle::SN) => "S",
        (false, FlagStyle::SN) => "N",
        (true, FlagStyle::SiNo) => "si",
        (false, FlagStyle::SiNo) => "no",
    }
}
