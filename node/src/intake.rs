//! Registering a new intake (*presa in carico segnalata*) from the API: a first-contact PUA or
//! social desk records the person and the service they were referred to, so that it can ask
//! who else follows them at once. The identity goes through the same normaliser as imports;
//! the relationship is queued for publishing like an imported one.

use anyhow::Result;
use ponte_proto::v1;
use ponte_proto::vocab;

use crate::consent::today;
use crate::node::{Node, new_reference};
use crate::normalise::dates::DateFormat;
use crate::normalise::{RawIdentity, normalise};
use crate::store::{LocalRecord, LocalRelationship, OutboxOp};

/// Longest value accepted in an intake's text fields.
pub const MAX_FIELD_CHARS: usize = 100;

/// The person, as a case worker types them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntakeIdentity {
    pub surname: String,
    pub given_names: String,
    /// `M`, `F` or empty.
    pub sex: String,
    /// `YYYY-MM-DD`.
    pub birth_date: String,
    /// Comune name or Belfiore / `Z` code, or empty.
    pub birthplace: String,
    pub codice_fiscale: String,
}

/// A new intake: either a new person (`identity`, with `record_id` absent or not yet used here)
/// or a person already on this node (`record_id` of theirs, no `identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntake {
    pub record_id: Option<String>,
    pub identity: Option<IntakeIdentity>,
    pub category: v1::ServiceCategory,
    /// The receiving unit; the import's default unit when absent.
    pub unit: Option<String>,
}

/// What was registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub record_id: String,
    pub relationship_id: String,
    /// `YYYYMM`.
    pub since_month: u32,
    pub new_record: bool,
}

/// Why an intake was refused; nothing was stored.
#[derive(Debug)]
pub enum IntakeError {
    /// A field is wrong: which, and why.
    Invalid { field: &'static str, reason: String },
    /// The store failed.
    Store(anyhow::Error),
}

impl From<anyhow::Error> for IntakeError {
    fn from(e: anyhow::Error) -> Self {
        IntakeError::Store(e)
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IntakeError {
    IntakeError::Invalid { field, reason: reason.into() }
}

/// Record ids given by a caller: what an entity's own software uses, printable and short.
pub fn check_record_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("a record id has 1 to 64 characters; got {}", s.len()));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')) {
        return Err("a record id may hold only letters, digits and - _ . /".into());
    }
    Ok(())
}

impl Node {
    /// Registers an intake: stores the record (if new) and a `segnalata` relationship, and
    /// queues it for publishing. Checks everything before storing anything.
    pub fn register_intake(&self, intake: &NewIntake) -> Result<Registered, IntakeError> {
        let unit = intake.unit.clone().unwrap_or_else(|| self.config.import.default_unit.clone());
        vocab::check_unit_code(&unit).map_err(|e| invalid("unit", e))?;
        if let Some(id) = &intake.record_id {
            check_record_id(id).map_err(|e| invalid("record_id", e))?;
        }
        let existing = match &intake.record_id {
            Some(id) => self.store.get_record(id)?,
            None => None,
        };
        let record = match (&existing, &intake.identity) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "record_id",
                    "this record already exists here: to add an intake for it, send its record_id without the identity fields; to register someone new, leave record_id out",
                ));
            }
            (Some(r), None) => r.clone(),
            (None, None) => {
                return Err(match &intake.record_id {
                    Some(id) => invalid("record_id", format!("no record {id:?} on this node: send the person's identity to register them")),
                    None => invalid("surname", "send the person's identity (surname, given_names, birth_date, …) or the record_id of a person already here"),
                });
            }
            (None, Some(who)) => {
                for (field, v) in [
                    ("surname", &who.surname),
                    ("given_names", &who.given_names),
                    ("sex", &who.sex),
                    ("birth_date", &who.birth_date),
                    ("birthplace", &who.birthplace),
                    ("codice_fiscale", &who.codice_fiscale),
                ] {
                    if v.chars().count() > MAX_FIELD_CHARS {
                        return Err(invalid(field, format!("at most {MAX_FIELD_CHARS} characters")));
                    }
                }
                let raw = RawIdentity {
                    surname: &who.surname,
                    given_names: &who.given_names,
                    sex: &who.sex,
                    birth_date: &who.birth_date,
                    birthplace: &who.birthplace,
                    codice_fiscale: &who.codice_fiscale,
                    surname_alias: "",
                };
                let fmt = DateFormat::parse("%Y-%m-%d").map_err(|e| IntakeError::Store(anyhow::anyhow!(e)))?;
                let identity = normalise(&raw, &fmt).map_err(|r| invalid(r.field, r.reason))?;
                let record_id = intake.record_id.clone().unwrap_or_else(|| format!("segn-{}", &new_reference()[..12]));
                LocalRecord { record_id, identity, revision: 1 }
            }
        };
        let since_month = today() / 100;
        let rel = LocalRelationship {
            relationship_id: format!("segn-{}", &new_reference()[..16]),
            record_id: record.record_id.clone(),
            reference: new_reference(),
            unit,
            category: intake.category as i32,
            status: v1::RelationshipStatus::Segnalata as i32,
            since_month,
            case_manager: false,
            plan: v1::PlanType::PlanNone as i32,
            contact: v1::ContactRole::SportelloPua as i32,
            obscured: false,
            never_publish: false,
        };
        if existing.is_none() {
            self.store.put_record(&record)?;
        }
        self.store.put_relationship(&rel)?;
        self.store.enqueue(&OutboxOp::Upsert { relationship_id: rel.relationship_id.clone() })?;
        self.store.flush()?;
        Ok(Registered { record_id: record.record_id, relationship_id: rel.relationship_id, since_month, new_record: existing.is_none() })
    }
}
