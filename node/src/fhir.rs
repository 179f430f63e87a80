//! The FHIR R4 representation of a who-else answer: a `searchset` [`Bundle`] of `EpisodeOfCare`
//! resources, one per relationship of the answer, for systems that speak FHIR instead of Ponte's
//! own JSON (`Accept: application/fhir+json`). Pure: one answer and its context in, one JSON value
//! out; nothing here talks to anything or reads a clock.
//!
//! What the bundle carries is exactly what the answer carries, and no more:
//! - no personal data of the person asked about. The answer describes *other* entities' care
//!   episodes; every `EpisodeOfCare.patient` (1..1 in R4) is a logical reference with only
//!   `type` and `display` ([`PATIENT_DISPLAY`]). Only when the caller passes the asking node's
//!   local record id explicitly ([`BundleContext::record_id`]) does it appear: as the patient
//!   reference's `identifier` and in the `self` link, which is the request's own URL;
//! - no operator name: a case manager is a role of a unit, never a person
//!   (`careManager.display`, with `type` `PractitionerRole`);
//! - nothing about what was withheld: the constant notice travels as an `OperationOutcome`
//!   entry (`search.mode` `outcome`, severity `information`), and `total` counts only the matches.
//!
//! Mapping (Ponte → FHIR R4; URIs are the constants of this module):
//!
//! | Ponte | FHIR R4 |
//! |---|---|
//! | the answer | `Bundle`, `type` `searchset`, `timestamp` = answer time, `total` = relationships |
//! | receipt `SEQ`, `HASH` | `Bundle.identifier` {[`AUDIT_RECEIPT_SYSTEM`], `"SEQ:HASH"`} |
//! | notice | `OperationOutcome` entry, `issue` {`information`, `informational`, `details.text`} |
//! | one relationship | `entry` {`fullUrl` `urn:uuid:…`, `resource` `EpisodeOfCare`, `search.mode` `match`} |
//! | band certain / probable / possible | `entry.search.extension` `match-grade` = `certain` / `probable` / `possible` |
//! | status segnalata, in_valutazione | `status` `planned` |
//! | status attiva | `status` `active` |
//! | status sospesa | `status` `onhold` |
//! | status conclusa | `status` `finished` |
//! | status (exact Ponte value) | extension [`RELATIONSHIP_STATUS_EXTENSION`], `valueCoding` in [`RELATIONSHIP_STATUS_SYSTEM`] |
//! | category (full disclosure) | `type[0]`: coding in [`SERVICE_CATEGORY_SYSTEM`], Italian `display` |
//! | category group (always) | last `type`: coding in [`CATEGORY_GROUP_SYSTEM`]; alone when generalised |
//! | entity id, entity name | `managingOrganization` {`identifier` {[`NODE_ID_SYSTEM`], id}, `display` name} |
//! | entity type | `managingOrganization.extension` [`ENTITY_TYPE_EXTENSION`], `valueCoding` |
//! | unit (empty when generalised) | `managingOrganization.extension` [`RESPONSIBLE_UNIT_EXTENSION`], `valueString` |
//! | case manager | `careManager` {`type` `PractitionerRole`, `display` "Case manager dell'unità …"} |
//! | since `YYYYMM` | `period.start` `YYYY-MM` (a dateTime of month precision: Ponte knows no day) |
//! | contact role | extension [`CONTACT_ROLE_EXTENSION`], `valueCoding` |
//! | plan type | extension [`PLAN_TYPE_EXTENSION`], `valueCoding` |
//!
//! Why `planned` for both segnalata and in_valutazione: R4 defines `planned` as an episode that
//! has not started, during which "an organization may perform assessments to determine if the
//! patient is eligible to receive services" — which is what both are; `waitlist` is an accepted
//! episode waiting for a place, which neither is. The exact Ponte status stays in the extension.
//!
//! A value the wire did not fill in or does not know (a newer peer, a bug) never makes the bundle
//! invalid and never panics: an unknown status becomes `_status` with the standard
//! `data-absent-reason` `unknown`; an unknown band, category, group, entity type, contact role,
//! plan or month leaves its element out. Empty strings are left out (FHIR forbids them).
//! The output is linear in the size of the answer, which the gRPC message limit bounds.
//!
//! The Ponte URIs live under [`FHIR_BASE`] (`https://ponte.example/fhir`, a reserved example
//! domain): stable names, not resolvable documents. Properties are inserted in FHIR element
//! order, `resourceType` first, but come out in serde_json's map order (alphabetical unless its
//! `preserve_order` feature is on): FHIR JSON gives property order no meaning.

use ponte_proto::v1::{self, MatchBand, PlanType, RelationshipStatus};
use ponte_proto::vocab;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::labels;

/// Root of every URI Ponte defines for FHIR.
pub const FHIR_BASE: &str = "https://ponte.example/fhir";
/// Code system of Ponte's service categories (codes: `vocab::ServiceCategoryName` names).
pub const SERVICE_CATEGORY_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/service-category";
/// Code system of the generalised category groups (codes: `vocab::CategoryGroupName` names).
pub const CATEGORY_GROUP_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/category-group";
/// Code system of Ponte's relationship statuses (codes: `vocab::StatusName` names).
pub const RELATIONSHIP_STATUS_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/relationship-status";
/// Code system of entity types (codes: `vocab::EntityType` names).
pub const ENTITY_TYPE_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/entity-type";
/// Code system of role-based contact points (codes: `vocab::ContactRoleName` names).
pub const CONTACT_ROLE_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/contact-role";
/// Code system of care plan types (codes: `vocab::PlanTypeName` names).
pub const PLAN_TYPE_SYSTEM: &str = "https://ponte.example/fhir/CodeSystem/plan-type";
/// Identifier system of Ponte node ids, i.e. of the entities of a federation.
pub const NODE_ID_SYSTEM: &str = "https://ponte.example/fhir/NamingSystem/node-id";
/// Identifier system of the coordinator's audit receipts (`SEQUENCE:ENTRY_HASH`).
pub const AUDIT_RECEIPT_SYSTEM: &str = "https://ponte.example/fhir/NamingSystem/audit-receipt";
/// Extension (on `EpisodeOfCare`): the exact Ponte status, a `valueCoding`.
pub const RELATIONSHIP_STATUS_EXTENSION: &str = "https://ponte.example/fhir/StructureDefinition/relationship-status";
/// Extension (on `EpisodeOfCare`): the role-based contact point, a `valueCoding`.
pub const CONTACT_ROLE_EXTENSION: &str = "https://ponte.example/fhir/StructureDefinition/contact-role";
/// Extension (on `EpisodeOfCare`): the type of care plan, a `valueCoding`.
pub const PLAN_TYPE_EXTENSION: &str = "https://ponte.example/fhir/StructureDefinition/plan-type";
/// Extension (on `managingOrganization`): the kind of entity, a `valueCoding`.
pub const ENTITY_TYPE_EXTENSION: &str = "https://ponte.example/fhir/StructureDefinition/entity-type";
/// Extension (on `managingOrganization`): the entity's responsible-unit code, a `valueString`.
pub const RESPONSIBLE_UNIT_EXTENSION: &str = "https://ponte.example/fhir/StructureDefinition/responsible-unit";
/// HL7's match-grade extension (context `Bundle.entry.search`, a `valueCode`).
pub const MATCH_GRADE_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";
/// HL7's data-absent-reason extension, for a required value the answer does not give.
pub const DATA_ABSENT_REASON_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
/// What every `EpisodeOfCare.patient` says instead of an identity.
pub const PATIENT_DISPLAY: &str = "Persona della richiesta";

/// Latest time an `instant` can write (9999-12-31T23:59:59Z); later times are written as it.
const MAX_INSTANT_SECS: u64 = 253_402_300_799;

/// Who asked, where, and when: what the bundle needs besides the answer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleContext {
    /// The asking node's id (`vocab::check_node_id` shape): names the system of the local record
    /// id and seeds the entries' `fullUrl`s.
    pub node_id: String,
    /// Absolute base URL of the node's API, e.g. `https://127.0.0.1:7800` (a trailing `/` is
    /// ignored): the bundle's `meta.source` and the start of the `self` link. Empty (or with
    /// whitespace inside, so not a URI): both left out.
    pub base_url: String,
    /// When the answer was received, in seconds since the Unix epoch: `Bundle.timestamp`.
    pub answered_at: u64,
    /// The asking node's local record id of the person. `None` (the default to prefer): the
    /// bundle names nobody and has no `self` link, since the request URL contains the record id.
    /// `Some`: it becomes the patient reference's `identifier` (system
    /// [`local_record_system`] of `node_id`) and the `self` link is the request URL
    /// `{base_url}/api/v1/persons/{record_id}/who-else`. Only pass it for a recipient entitled
    /// to the record id, such as the node's own operator.
    pub record_id: Option<String>,
}

/// The identifier system of one node's local record ids.
pub fn local_record_system(node_id: &str) -> String {
    format!("{FHIR_BASE}/NamingSystem/local-record/{}", percent_encode(node_id))
}

/// The R4 `EpisodeOfCare.status` of a Ponte relationship status (wire value), or `None` for a
/// value that is not a known status.
pub fn episode_of_care_status(status: i32) -> Option<&'static str> {
    match vocab::StatusName::from_wire(status).ok()? {
        RelationshipStatus::Segnalata | RelationshipStatus::InValutazione => Some("planned"),
        RelationshipStatus::Attiva => Some("active"),
        RelationshipStatus::Sospesa => Some("onhold"),
        RelationshipStatus::Conclusa => Some("finished"),
        RelationshipStatus::Unspecified => None,
    }
}

/// The `match-grade` code of a match band (wire value), or `None` for a value that is not a band.
pub fn match_grade(band: i32) -> Option<&'static str> {
    match vocab::MatchBandName::from_wire(band).ok()? {
        MatchBand::Certain => Some("certain"),
        MatchBand::Probable => Some("probable"),
        MatchBand::Possible => Some("possible"),
        MatchBand::Unspecified => None,
    }
}

/// The who-else answer as a FHIR R4 `searchset` Bundle (see the module doc for the mapping).
/// Entries keep the answer's order, followed by the notice's `OperationOutcome` when the notice is
/// not blank; `fullUrl`s are `urn:uuid:`s derived from the node id, the answer time, the receipt
/// and the position, so the same answer in the same context always gives the same bundle.
pub fn who_else_bundle(answer: &v1::WhoElseAnswer, ctx: &BundleContext) -> Value {
    let mut entries: Vec<Value> = answer
        .relationships
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut search = Map::new();
            if let Some(grade) = match_grade(r.band) {
                search.insert("extension".into(), json!([{ "url": MATCH_GRADE_EXTENSION, "valueCode": grade }]));
            }
            search.insert("mode".into(), json!("match"));
            json!({
                "fullUrl": entry_urn(answer, ctx, i),
                "resource": episode_of_care(r, ctx),
                "search": Value::Object(search),
            })
        })
        .collect();
    let notice = answer.notice.trim();
    if !notice.is_empty() {
        entries.push(json!({
            "fullUrl": entry_urn(answer, ctx, answer.relationships.len()),
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{ "severity": "information", "code": "informational", "details": { "text": notice } }],
            },
            "search": { "mode": "outcome" },
        }));
    }

    let base = ctx.base_url.trim().trim_end_matches('/');
    // Not a URI (FHIR's `uri` has no whitespace): no meta.source and no self link, never an invalid one.
    let base = if base.contains(char::is_whitespace) { "" } else { base };
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    if !base.is_empty() {
        bundle.insert("meta".into(), json!({ "source": base }));
    }
    if let Some(receipt) = &answer.receipt {
        bundle.insert(
            "identifier".into(),
            json!({ "system": AUDIT_RECEIPT_SYSTEM, "value": format!("{}:{}", receipt.sequence, receipt.entry_hash.trim()) }),
        );
    }
    bundle.insert("type".into(), json!("searchset"));
    bundle.insert("timestamp".into(), json!(instant(ctx.answered_at)));
    bundle.insert("total".into(), json!(answer.relationships.len()));
    if let (Some(record), false) = (record_id(ctx), base.is_empty()) {
        let url = format!("{base}/api/v1/persons/{}/who-else", percent_encode(record));
        bundle.insert("link".into(), json!([{ "relation": "self", "url": url }]));
    }
    if !entries.is_empty() {
        bundle.insert("entry".into(), Value::Array(entries));
    }
    Value::Object(bundle)
}

fn record_id(ctx: &BundleContext) -> Option<&str> {
    ctx.record_id.as_deref().map(str::trim).filter(|r| !r.is_empty())
}

fn episode_of_care(r: &v1::OtherRelationship, ctx: &BundleContext) -> Value {
    let mut extensions = Vec::new();
    if let Ok(s) = vocab::StatusName::from_wire(r.status) {
        extensions.push(coding_extension(
            RELATIONSHIP_STATUS_EXTENSION,
            RELATIONSHIP_STATUS_SYSTEM,
            vocab::StatusName::name(s),
            labels::status(s),
        ));
    }
    if let Ok(c) = vocab::ContactRoleName::from_wire(r.contact) {
        extensions.push(coding_extension(
            CONTACT_ROLE_EXTENSION,
            CONTACT_ROLE_SYSTEM,
            vocab::ContactRoleName::name(c),
            labels::contact(c),
        ));
    }
    if let Ok(p) = vocab::PlanTypeName::from_wire(r.plan) {
        extensions.push(coding_extension(
            PLAN_TYPE_EXTENSION,
            PLAN_TYPE_SYSTEM,
            vocab::PlanTypeName::name(p),
            plan_label(p),
        ));
    }

    let mut types = Vec::new();
    if let Ok(c) = vocab::ServiceCategoryName::from_wire(r.category) {
        types.push(concept(SERVICE_CATEGORY_SYSTEM, vocab::ServiceCategoryName::name(c), labels::service(c)));
    }
    if let Ok(g) = vocab::CategoryGroupName::from_wire(r.category_group) {
        types.push(concept(CATEGORY_GROUP_SYSTEM, vocab::CategoryGroupName::name(g), labels::category_group(g)));
    }

    let mut patient = Map::new();
    patient.insert("type".into(), json!("Patient"));
    if let Some(record) = record_id(ctx) {
        patient.insert("identifier".into(), json!({ "system": local_record_system(&ctx.node_id), "value": record }));
    }
    patient.insert("display".into(), json!(PATIENT_DISPLAY));

    let mut eoc = Map::new();
    eoc.insert("resourceType".into(), json!("EpisodeOfCare"));
    if !extensions.is_empty() {
        eoc.insert("extension".into(), Value::Array(extensions));
    }
    match episode_of_care_status(r.status) {
        Some(status) => eoc.insert("status".into(), json!(status)),
        None => eoc.insert(
            "_status".into(),
            json!({ "extension": [{ "url": DATA_ABSENT_REASON_EXTENSION, "valueCode": "unknown" }] }),
        ),
    };
    if !types.is_empty() {
        eoc.insert("type".into(), Value::Array(types));
    }
    eoc.insert("patient".into(), Value::Object(patient));
    if let Some(org) = managing_organization(r) {
        eoc.insert("managingOrganization".into(), org);
    }
    if vocab::check_month(r.since_month).is_ok() {
        eoc.insert(
            "period".into(),
            json!({ "start": format!("{:04}-{:02}", r.since_month / 100, r.since_month % 100) }),
        );
    }
    if r.case_manager {
        eoc.insert("careManager".into(), json!({ "type": "PractitionerRole", "display": case_manager_display(r) }));
    }
    Value::Object(eoc)
}

/// The holding entity: identifier and name, with its type and unit as extensions. `None` when the
/// answer names nothing of it (a reference must say something).
fn managing_organization(r: &v1::OtherRelationship) -> Option<Value> {
    let (id, name, unit) = (r.entity_id.trim(), r.entity_name.trim(), r.unit.trim());
    let mut extensions = Vec::new();
    if let Ok(t) = vocab::EntityType::from_wire(r.entity_type) {
        extensions.push(coding_extension(
            ENTITY_TYPE_EXTENSION,
            ENTITY_TYPE_SYSTEM,
            vocab::EntityType::name(t),
            labels::entity_type(t),
        ));
    }
    if !unit.is_empty() {
        extensions.push(json!({ "url": RESPONSIBLE_UNIT_EXTENSION, "valueString": unit }));
    }
    if id.is_empty() && name.is_empty() && extensions.is_empty() {
        return None;
    }
    let mut org = Map::new();
    if !extensions.is_empty() {
        org.insert("extension".into(), Value::Array(extensions));
    }
    org.insert("type".into(), json!("Organization"));
    if !id.is_empty() {
        org.insert("identifier".into(), json!({ "system": NODE_ID_SYSTEM, "value": id }));
    }
    if !name.is_empty() {
        org.insert("display".into(), json!(name));
    }
    Some(Value::Object(org))
}

/// A role, never a person: Ponte carries no operator names.
fn case_manager_display(r: &v1::OtherRelationship) -> String {
    let (unit, name) = (r.unit.trim(), r.entity_name.trim());
    match (unit.is_empty(), name.is_empty()) {
        (false, false) => format!("Case manager dell'unità {unit} ({name})"),
        (false, true) => format!("Case manager dell'unità {unit}"),
        (true, false) => format!("Case manager presso {name}"),
        (true, true) => "Case manager dell'ente".to_string(),
    }
}

/// A coding; its `display` (and a concept's `text`) only when there is a label (FHIR forbids "").
fn coding(system: &str, code: String, display: &str) -> Value {
    let mut c = Map::new();
    c.insert("system".into(), json!(system));
    c.insert("code".into(), json!(code));
    if !display.is_empty() {
        c.insert("display".into(), json!(display));
    }
    Value::Object(c)
}

fn coding_extension(url: &str, system: &str, code: String, display: &str) -> Value {
    json!({ "url": url, "valueCoding": coding(system, code, display) })
}

fn concept(system: &str, code: String, display: &str) -> Value {
    let mut c = Map::new();
    c.insert("coding".into(), json!([coding(system, code, display)]));
    if !display.is_empty() {
        c.insert("text".into(), json!(display));
    }
    Value::Object(c)
}

/// A deterministic name-based UUID (RFC 9562 version 8: SHA-256, truncated) for one entry.
fn entry_urn(answer: &v1::WhoElseAnswer, ctx: &BundleContext, index: usize) -> String {
    let mut h = Sha256::new();
    let (sequence, hash) = answer.receipt.as_ref().map(|r| (r.sequence, r.entry_hash.as_str())).unwrap_or((0, ""));
    for part in [b"ponte-fhir-entry-v1".as_slice(), ctx.node_id.as_bytes(), hash.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(ctx.answered_at.to_be_bytes());
    h.update([u8::from(answer.receipt.is_some())]);
    h.update(sequence.to_be_bytes());
    h.update((index as u64).to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!("urn:uuid:{}-{}-{}-{}-{}", &x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..])
}

/// `YYYY-MM-DDThh:mm:ssZ`, an R4 `instant`.
fn instant(secs: u64) -> String {
    let secs = secs.min(MAX_INSTANT_SECS);
    let day = vocab::day_of_unix_time(secs);
    let s = secs % 86_400;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        day / 10_000,
        day / 100 % 100,
        day % 100,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for one path segment.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Care plan types (`labels` has no entry for them yet).
fn plan_label(p: PlanType) -> &'static str {
    match p {
        PlanType::Unspecified => "",
        PlanType::PlanNone => "Nessun piano",
        PlanType::Pai => "Piano Assistenziale Individualizzato (PAI)",
        PlanType::Pei => "Progetto Educativo Individualizzato (PEI)",
        PlanType::ProgettoPersonalizzato => "Progetto personalizzato",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ponte_proto::v1::{CategoryGroup, ContactRole, EntityType, ServiceCategory};

    fn ctx() -> BundleContext {
        BundleContext {
            node_id: "comune-lecce".into(),
            base_url: "https://127.0.0.1:7800/".into(),
            answered_at: 1_795_393_696,
            record_id: None,
        }
    }

    fn relationship() -> v1::OtherRelationship {
        v1::OtherRelationship {
            band: MatchBand::Certain as i32,
            entity_id: "asl-lecce".into(),
            entity_name: "ASL Lecce".into(),
            entity_type: EntityType::Asl as i32,
            unit: "distretto-lecce.adi".into(),
            category: ServiceCategory::CureDomiciliari as i32,
            status: RelationshipStatus::Attiva as i32,
            since_month: 202403,
            case_manager: true,
            plan: PlanType::Pai as i32,
            contact: ContactRole::CaseManagerUnita as i32,
            category_group: CategoryGroup::AssistenzaDomiciliare as i32,
        }
    }

    fn answer(relationships: Vec<v1::OtherRelationship>) -> v1::WhoElseAnswer {
        v1::WhoElseAnswer {
            relationships,
            notice: ponte_proto::ANSWER_NOTICE.into(),
            receipt: Some(v1::AuditReceipt { sequence: 42, entry_hash: "ab12".into() }),
        }
    }

    fn first_episode(b: &Value) -> &Value {
        &b["entry"][0]["resource"]
    }

    #[test]
    fn every_status_maps_into_the_r4_value_set() {
        let r4 = ["planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"];
        for s in vocab::StatusName::ALL {
            let code = episode_of_care_status(*s as i32).unwrap();
            assert!(r4.contains(&code), "{s:?} → {code}");
        }
        assert_eq!(episode_of_care_status(RelationshipStatus::Segnalata as i32), Some("planned"));
        assert_eq!(episode_of_care_status(RelationshipStatus::InValutazione as i32), Some("planned"));
        assert_eq!(episode_of_care_status(RelationshipStatus::Attiva as i32), Some("active"));
        assert_eq!(episode_of_care_status(RelationshipStatus::Sospesa as i32), Some("onhold"));
        assert_eq!(episode_of_care_status(RelationshipStatus::Conclusa as i32), Some("finished"));
        assert_eq!(episode_of_care_status(0), None);
        assert_eq!(episode_of_care_status(99), None);
        assert_eq!(episode_of_care_status(-1), None);
    }

    #[test]
    fn bands_map_to_match_grades() {
        assert_eq!(match_grade(MatchBand::Certain as i32), Some("certain"));
        assert_eq!(match_grade(MatchBand::Probable as i32), Some("probable"));
        assert_eq!(match_grade(MatchBand::Possible as i32), Some("possible"));
        assert_eq!(match_grade(0), None);
        assert_eq!(match_grade(7), None);
    }

    #[test]
    fn a_full_relationship_reads_as_an_episode_of_care() {
        let b = who_else_bundle(&answer(vec![relationship()]), &ctx());
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 1);
        assert_eq!(b["timestamp"], "2026-11-23T00:28:16Z");
        assert_eq!(b["meta"]["source"], "https://127.0.0.1:7800");
        assert_eq!(b["identifier"], json!({ "system": AUDIT_RECEIPT_SYSTEM, "value": "42:ab12" }));
        let e = &b["entry"][0];
        assert_eq!(e["search"]["mode"], "match");
        assert_eq!(e["search"]["extension"][0], json!({ "url": MATCH_GRADE_EXTENSION, "valueCode": "certain" }));
        let eoc = first_episode(&b);
        assert_eq!(eoc["resourceType"], "EpisodeOfCare");
        assert_eq!(eoc["status"], "active");
        assert_eq!(
            eoc["type"][0]["coding"][0],
            json!({ "system": SERVICE_CATEGORY_SYSTEM, "code": "cure_domiciliari", "display": labels::service(ServiceCategory::CureDomiciliari) })
        );
        assert_eq!(eoc["type"][1]["coding"][0]["code"], "assistenza_domiciliare");
        assert_eq!(eoc["type"][1]["coding"][0]["system"], CATEGORY_GROUP_SYSTEM);
        assert_eq!(eoc["period"], json!({ "start": "2024-03" }));
        let org = &eoc["managingOrganization"];
        assert_eq!(org["identifier"], json!({ "system": NODE_ID_SYSTEM, "value": "asl-lecce" }));
        assert_eq!(org["display"], "ASL Lecce");
        assert_eq!(org["extension"][0]["valueCoding"]["code"], "asl");
        assert_eq!(
            org["extension"][1],
            json!({ "url": RESPONSIBLE_UNIT_EXTENSION, "valueString": "distretto-lecce.adi" })
        );
        assert_eq!(eoc["careManager"]["display"], "Case manager dell'unità distretto-lecce.adi (ASL Lecce)");
        assert_eq!(eoc["careManager"]["type"], "PractitionerRole");
        let ext = |url: &str| eoc["extension"].as_array().unwrap().iter().find(|x| x["url"] == url).cloned().unwrap();
        assert_eq!(ext(RELATIONSHIP_STATUS_EXTENSION)["valueCoding"]["code"], "attiva");
        assert_eq!(ext(CONTACT_ROLE_EXTENSION)["valueCoding"]["code"], "case_manager_unita");
        assert_eq!(ext(PLAN_TYPE_EXTENSION)["valueCoding"]["code"], "pai");
        // The notice closes the bundle and is not counted as a match.
        let outcome = &b["entry"][1];
        assert_eq!(outcome["search"]["mode"], "outcome");
        assert_eq!(outcome["resource"]["issue"][0]["details"]["text"], ponte_proto::ANSWER_NOTICE);
    }

    #[test]
    fn a_generalised_relationship_names_only_its_group_and_no_unit() {
        let mut r = relationship();
        r.category = 0;
        r.unit = String::new();
        r.case_manager = true;
        let b = who_else_bundle(&answer(vec![r]), &ctx());
        let eoc = first_episode(&b);
        let types = eoc["type"].as_array().unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0]["coding"][0]["system"], CATEGORY_GROUP_SYSTEM);
        assert_eq!(types[0]["coding"][0]["code"], "assistenza_domiciliare");
        assert!(!b.to_string().contains(SERVICE_CATEGORY_SYSTEM));
        assert!(!b.to_string().contains(RESPONSIBLE_UNIT_EXTENSION));
        assert_eq!(eoc["careManager"]["display"], "Case manager presso ASL Lecce");
    }

    #[test]
    fn the_person_is_named_only_when_the_caller_says_so() {
        let a = answer(vec![relationship()]);
        let anonymous = who_else_bundle(&a, &ctx());
        assert_eq!(first_episode(&anonymous)["patient"], json!({ "type": "Patient", "display": PATIENT_DISPLAY }));
        assert!(anonymous.get("link").is_none());
        let named = who_else_bundle(&a, &BundleContext { record_id: Some("P 12/3".into()), ..ctx() });
        assert_eq!(
            first_episode(&named)["patient"]["identifier"],
            json!({ "system": "https://ponte.example/fhir/NamingSystem/local-record/comune-lecce", "value": "P 12/3" })
        );
        assert_eq!(
            named["link"],
            json!([{ "relation": "self", "url": "https://127.0.0.1:7800/api/v1/persons/P%2012%2F3/who-else" }])
        );
        // A blank record id is no record id.
        let blank = who_else_bundle(&a, &BundleContext { record_id: Some("  ".into()), ..ctx() });
        assert_eq!(blank, anonymous);
    }

    #[test]
    fn case_manager_off_means_no_care_manager() {
        let mut r = relationship();
        r.case_manager = false;
        let b = who_else_bundle(&answer(vec![r]), &ctx());
        assert!(first_episode(&b).get("careManager").is_none());
    }

    #[test]
    fn an_empty_answer_is_an_empty_searchset_with_its_notice() {
        let b = who_else_bundle(&answer(vec![]), &ctx());
        assert_eq!(b["total"], 0);
        let entries = b["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["resource"]["resourceType"], "OperationOutcome");
        let bare = who_else_bundle(&v1::WhoElseAnswer::default(), &BundleContext { base_url: String::new(), ..ctx() });
        assert_eq!(
            bare,
            json!({ "resourceType": "Bundle", "type": "searchset", "timestamp": "2026-11-23T00:28:16Z", "total": 0 })
        );
    }

    #[test]
    fn unknown_wire_values_leave_elements_out_instead_of_inventing_them() {
        let r = v1::OtherRelationship {
            band: 9,
            status: 77,
            category: 1234,
            category_group: -3,
            entity_type: 8,
            contact: 5,
            plan: 6,
            since_month: 202413,
            ..Default::default()
        };
        let b = who_else_bundle(&answer(vec![r]), &ctx());
        let eoc = first_episode(&b);
        assert!(eoc.get("status").is_none());
        assert_eq!(
            eoc["_status"]["extension"][0],
            json!({ "url": DATA_ABSENT_REASON_EXTENSION, "valueCode": "unknown" })
        );
        for absent in ["type", "extension", "managingOrganization", "period", "careManager"] {
            assert!(eoc.get(absent).is_none(), "{absent}: {eoc}");
        }
        assert_eq!(b["entry"][0]["search"], json!({ "mode": "match" }));
    }

    #[test]
    fn full_urls_are_deterministic_uuids_unique_within_a_bundle() {
        let a = answer(vec![relationship(), relationship(), relationship()]);
        let b = who_else_bundle(&a, &ctx());
        assert_eq!(b, who_else_bundle(&a, &ctx()));
        let urls: Vec<&str> = b["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap()).collect();
        assert_eq!(urls.len(), 4);
        for (i, u) in urls.iter().enumerate() {
            let hex: String = u.strip_prefix("urn:uuid:").unwrap().split('-').collect();
            assert_eq!(u.len(), 45, "{u}");
            assert!(hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{u}");
            assert_eq!(&u[23..24], "8", "version 8: {u}");
            assert!(urls[..i].iter().all(|other| other != u), "{u} repeated");
        }
        let other = who_else_bundle(&a, &BundleContext { answered_at: 1, ..ctx() });
        assert_ne!(other["entry"][0]["fullUrl"], b["entry"][0]["fullUrl"]);
    }

    #[test]
    fn instants_are_utc_to_the_second_and_bounded() {
        assert_eq!(instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(instant(951_782_400 + 3_661), "2000-02-29T01:01:01Z");
        assert_eq!(instant(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn every_vocabulary_value_has_a_code_and_an_italian_display() {
        let displays = |r: v1::OtherRelationship| {
            let b = who_else_bundle(&answer(vec![r]), &ctx());
            let eoc = first_episode(&b).clone();
            let mut found = Vec::new();
            let mut stack = vec![eoc];
            while let Some(v) = stack.pop() {
                match v {
                    Value::Object(m) => {
                        if m.contains_key("code") && m.contains_key("system") {
                            found.push((m["code"].clone(), m.get("display").cloned()));
                        }
                        stack.extend(m.into_values());
                    }
                    Value::Array(a) => stack.extend(a),
                    _ => {}
                }
            }
            found
        };
        let mut seen = 0;
        for i in 0..vocab::ServiceCategoryName::ALL.len().max(vocab::PlanTypeName::ALL.len()) {
            let pick = |n: usize| i % n;
            let category = vocab::ServiceCategoryName::ALL[pick(vocab::ServiceCategoryName::ALL.len())];
            let r = v1::OtherRelationship {
                category: category as i32,
                category_group: vocab::CategoryGroupName::ALL[pick(vocab::CategoryGroupName::ALL.len())] as i32,
                status: vocab::StatusName::ALL[pick(vocab::StatusName::ALL.len())] as i32,
                entity_type: vocab::EntityType::ALL[pick(vocab::EntityType::ALL.len())] as i32,
                contact: vocab::ContactRoleName::ALL[pick(vocab::ContactRoleName::ALL.len())] as i32,
                plan: vocab::PlanTypeName::ALL[pick(vocab::PlanTypeName::ALL.len())] as i32,
                ..relationship()
            };
            for (code, display) in displays(r) {
                let display = display.and_then(|d| d.as_str().map(str::to_string)).unwrap_or_default();
                assert!(!display.trim().is_empty(), "{code} has no display");
                seen += 1;
            }
        }
        assert!(seen > 0);
        for uri in [
            SERVICE_CATEGORY_SYSTEM,
            CATEGORY_GROUP_SYSTEM,
            RELATIONSHIP_STATUS_SYSTEM,
            ENTITY_TYPE_SYSTEM,
            CONTACT_ROLE_SYSTEM,
            PLAN_TYPE_SYSTEM,
            NODE_ID_SYSTEM,
            AUDIT_RECEIPT_SYSTEM,
            RELATIONSHIP_STATUS_EXTENSION,
            CONTACT_ROLE_EXTENSION,
            PLAN_TYPE_EXTENSION,
            ENTITY_TYPE_EXTENSION,
            RESPONSIBLE_UNIT_EXTENSION,
        ] {
            assert!(uri.starts_with(FHIR_BASE), "{uri}");
        }
    }
}
