//! The FHIR form of a who-else answer is valid FHIR R4 (4.0.1) JSON.
//!
//! Two checks make up [`r4_problems`], and the negative cases at the end prove each can fail:
//! 1. fhirkit, whose model is generated from HL7's `hl7.fhir.r4.core` 4.0.1 package, reads the
//!    bundle strictly: every property must be an element of its type at that place (no unknown or
//!    misspelled element), with the right JSON type, cardinality (required elements present, a
//!    single value not given as an array, no empty array or string) and primitive format (code,
//!    uri, dateTime, instant, unsignedInt …), `[x]` choices included, in contained resources too.
//! 2. What fhirkit does not check, checked here: the *required* value-set bindings of the coded
//!    elements a who-else bundle can contain, and the R4 invariants that can apply to it
//!    (ele-1, ext-1, bdl-1, bdl-2, bdl-3, bdl-5, bdl-7, bdl-8, the Reference rule "at least one
//!    of reference, identifier, display", the match-grade extension's context). The codes are
//!    those the R4 specification lists for each value set.

use std::collections::BTreeSet;

use ponte_node::fhir::{self, BundleContext, who_else_bundle};
use ponte_proto::v1;
use ponte_proto::vocab;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The validator

/// Required bindings (FHIR R4 4.0.1) of the coded elements a who-else bundle may contain, by
/// the element's path in the bundle (array indexes left out).
const REQUIRED_BINDINGS: &[(&str, &[&str])] = &[
    // http://hl7.org/fhir/ValueSet/bundle-type
    (
        "Bundle.type",
        &[
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        ],
    ),
    // http://hl7.org/fhir/ValueSet/search-entry-mode
    ("Bundle.entry.search.mode", &["match", "include", "outcome"]),
    // http://hl7.org/fhir/ValueSet/http-verb (entry.request must not appear, but if it did)
    ("Bundle.entry.request.method", &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    // http://hl7.org/fhir/ValueSet/episode-of-care-status
    ("EpisodeOfCare.status", &["planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"]),
    (
        "EpisodeOfCare.statusHistory.status",
        &["planned", "waitlist", "active", "onhold", "finished", "cancelled", "entered-in-error"],
    ),
    // http://hl7.org/fhir/ValueSet/issue-severity
    ("OperationOutcome.issue.severity", &["fatal", "error", "warning", "information"]),
    // http://hl7.org/fhir/ValueSet/issue-type
    (
        "OperationOutcome.issue.code",
        &[
            "invalid",
            "structure",
            "required",
            "value",
            "invariant",
            "security",
            "login",
            "unknown",
            "expired",
            "forbidden",
            "suppressed",
            "processing",
            "not-supported",
            "duplicate",
            "multiple-matches",
            "not-found",
            "deleted",
            "too-long",
            "code-invalid",
            "extension",
            "too-costly",
            "business-rule",
            "conflict",
            "transient",
            "lock-error",
            "no-store",
            "exception",
            "timeout",
            "incomplete",
            "throttled",
            "informational",
        ],
    ),
    // http://hl7.org/fhir/ValueSet/identifier-use
    ("Identifier.use", &["usual", "official", "temp", "secondary", "old"]),
    // http://hl7.org/fhir/ValueSet/narrative-status
    ("Narrative.status", &["generated", "extensions", "additional", "empty"]),
];

/// Required bindings of the HL7 extensions the bundle may use: url → codes of `valueCode`.
const EXTENSION_BINDINGS: &[(&str, &[&str])] = &[
    // http://hl7.org/fhir/ValueSet/match-grade
    ("http://hl7.org/fhir/StructureDefinition/match-grade", &["certain", "probable", "possible", "certainly-not"]),
    // http://hl7.org/fhir/ValueSet/data-absent-reason
    (
        "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        &[
            "unknown",
            "asked-unknown",
            "temp-unknown",
            "not-asked",
            "asked-declined",
            "masked",
            "not-applicable",
            "unsupported",
            "as-text",
            "error",
            "not-a-number",
            "negative-infinity",
            "positive-infinity",
            "not-performed",
            "not-permitted",
        ],
    ),
];

/// Elements of type Reference in the resources a who-else bundle contains, by path.
const REFERENCES: &[&str] = &[
    "EpisodeOfCare.patient",
    "EpisodeOfCare.managingOrganization",
    "EpisodeOfCare.careManager",
    "EpisodeOfCare.referralRequest",
    "EpisodeOfCare.team",
    "EpisodeOfCare.account",
    "EpisodeOfCare.diagnosis.condition",
    "Identifier.assigner",
];

/// Every reason `bundle` is not a valid FHIR R4 searchset Bundle; empty when it is.
fn r4_problems(bundle: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match fhirkit::from_json::<fhirkit::r4::Bundle>(&bundle.to_string()) {
        Ok((decoded, issues)) => {
            problems.extend(issues.iter().map(|i| format!("fhirkit: {i}")));
            if decoded.is_none() && issues.is_empty() {
                problems.push("fhirkit: not a Bundle".into());
            }
        }
        Err(e) => problems.push(format!("fhirkit: not JSON: {e:?}")),
    }
    walk(bundle, "Bundle", "Bundle", &mut problems);
    bundle_invariants(bundle, &mut problems);
    problems
}

/// Walks the JSON with two names for each place: `path` (with indexes, for messages) and
/// `element` (the FHIR element path from the nearest resource or datatype, for bindings).
fn walk(v: &Value, path: &str, element: &str, problems: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            // ele-1: every element has a value or children.
            if m.is_empty() {
                problems.push(format!("ele-1: {path} is an empty object"));
            }
            if let Some(Value::String(rt)) = m.get("resourceType") {
                return walk_children(m, path, rt, problems);
            }
            if REFERENCES.contains(&element) {
                // Reference: at least one of reference, identifier, display (unless an extension).
                if !["reference", "identifier", "display", "extension"].iter().any(|k| m.contains_key(*k)) {
                    problems.push(format!("Reference: {path} has none of reference, identifier, display"));
                }
                if let Some(t) = m.get("type").and_then(Value::as_str)
                    && !fhirkit::r4::RESOURCE_TYPES.contains(&t)
                {
                    problems.push(format!("Reference.type: {path}.type {t:?} is not an R4 resource type"));
                }
            }
            walk_children(m, path, element, problems);
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}[{i}]"), element, problems);
            }
        }
        Value::String(s) => {
            for (bound, codes) in REQUIRED_BINDINGS {
                if element == *bound && !codes.contains(&s.as_str()) {
                    problems.push(format!("binding: {path} {s:?} is not in the required value set of {bound}"));
                }
            }
        }
        _ => {}
    }
}

fn walk_children(m: &serde_json::Map<String, Value>, path: &str, element: &str, problems: &mut Vec<String>) {
    for (k, child) in m {
        let child_path = format!("{path}.{k}");
        let child_element = match (element, k.as_str()) {
            // Datatypes restart the element path where the bundle uses them.
            (_, "identifier") => "Identifier".to_string(),
            (_, "text") if child.get("div").is_some() => "Narrative".to_string(),
            (_, "extension" | "modifierExtension") => {
                extensions(child, &child_path, element, problems);
                "Extension".to_string()
            }
            _ => format!("{element}.{}", k.trim_start_matches('_')),
        };
        walk(child, &child_path, &child_element, problems);
    }
}

/// ext-1 and the bindings and context of the HL7 extensions.
fn extensions(list: &Value, path: &str, host: &str, problems: &mut Vec<String>) {
    for (i, x) in list.as_array().into_iter().flatten().enumerate() {
        let Some(x) = x.as_object() else { continue };
        let values: Vec<&String> = x.keys().filter(|k| k.starts_with("value")).collect();
        let nested = x.contains_key("extension");
        if values.len() + usize::from(nested) != 1 {
            problems
                .push(format!("ext-1: {path}[{i}] must have either extensions or one value[x], not both or neither"));
        }
        let url = x.get("url").and_then(Value::as_str).unwrap_or_default();
        for (bound, codes) in EXTENSION_BINDINGS {
            if url == *bound {
                match x.get("valueCode").and_then(Value::as_str) {
                    Some(c) if codes.contains(&c) => {}
                    other => {
                        problems.push(format!("binding: {path}[{i}] {url} has {other:?}, not a code of its value set"))
                    }
                }
            }
        }
        if url == fhir::MATCH_GRADE_EXTENSION && host != "Bundle.entry.search" {
            problems.push(format!(
                "context: {path}[{i}] match-grade is only allowed on Bundle.entry.search, found on {host}"
            ));
        }
    }
}

fn bundle_invariants(b: &Value, problems: &mut Vec<String>) {
    let kind = b["type"].as_str().unwrap_or_default();
    // bdl-1: total only when a search or history.
    if b.get("total").is_some() && !matches!(kind, "searchset" | "history") {
        problems.push("bdl-1: total only when a search or history".into());
    }
    let mut full_urls = BTreeSet::new();
    for (i, e) in b["entry"].as_array().into_iter().flatten().enumerate() {
        // bdl-2: entry.search only when a search.
        if e.get("search").is_some() && kind != "searchset" {
            problems.push(format!("bdl-2: entry[{i}].search only when a search"));
        }
        // bdl-3: entry.request only for batch, transaction or history.
        if e.get("request").is_some() && !matches!(kind, "batch" | "transaction" | "history") {
            problems.push(format!("bdl-3: entry[{i}].request only in batch, transaction or history"));
        }
        // bdl-5: an entry has a resource unless it has a request or response.
        if e.get("resource").is_none() && e.get("request").is_none() && e.get("response").is_none() {
            problems.push(format!("bdl-5: entry[{i}] has no resource"));
        }
        if let Some(u) = e.get("fullUrl").and_then(Value::as_str) {
            // bdl-8: fullUrl cannot be a version specific reference.
            if u.contains("/_history/") {
                problems.push(format!("bdl-8: entry[{i}].fullUrl {u} is version specific"));
            }
            // bdl-7: fullUrl unique (no entry here has a meta.versionId).
            if !full_urls.insert(u.to_string()) {
                problems.push(format!("bdl-7: entry[{i}].fullUrl {u} is repeated"));
            }
        }
    }
}

fn assert_valid(b: &Value) {
    let problems = r4_problems(b);
    assert!(
        problems.is_empty(),
        "not valid FHIR R4:\n  {}\n{}",
        problems.join("\n  "),
        serde_json::to_string_pretty(b).unwrap_or_default()
    );
}

/// The problems of `b` after `change`; fails unless one of them contains `expected`.
fn assert_rejected(b: &Value, expected: &str, change: impl FnOnce(&mut Value)) {
    assert!(r4_problems(b).is_empty(), "the starting bundle must be valid");
    let mut bad = b.clone();
    change(&mut bad);
    let problems = r4_problems(&bad);
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem containing {expected:?}, found {problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Answers

fn ctx() -> BundleContext {
    BundleContext {
        node_id: "comune-lecce".into(),
        base_url: "https://127.0.0.1:7800".into(),
        answered_at: 1_795_393_696,
        record_id: None,
    }
}

fn relationship() -> v1::OtherRelationship {
    v1::OtherRelationship {
        band: v1::MatchBand::Certain as i32,
        entity_id: "asl-lecce".into(),
        entity_name: "ASL Lecce".into(),
        entity_type: v1::EntityType::Asl as i32,
        unit: "distretto-lecce.adi".into(),
        category: v1::ServiceCategory::CureDomiciliari as i32,
        status: v1::RelationshipStatus::Attiva as i32,
        since_month: 202403,
        case_manager: true,
        plan: v1::PlanType::Pai as i32,
        contact: v1::ContactRole::CaseManagerUnita as i32,
        category_group: v1::CategoryGroup::AssistenzaDomiciliare as i32,
    }
}

fn answer(relationships: Vec<v1::OtherRelationship>) -> v1::WhoElseAnswer {
    v1::WhoElseAnswer {
        relationships,
        notice: ponte_proto::ANSWER_NOTICE.into(),
        receipt: Some(v1::AuditReceipt {
            sequence: 42,
            entry_hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
    }
}

/// Every band × full or generalised × every status × case manager on and off.
fn every_combination() -> Vec<v1::OtherRelationship> {
    let mut out = Vec::new();
    for band in vocab::MatchBandName::ALL {
        for generalised in [false, true] {
            for status in vocab::StatusName::ALL {
                for case_manager in [false, true] {
                    let mut r = relationship();
                    r.band = *band as i32;
                    r.status = *status as i32;
                    r.case_manager = case_manager;
                    if generalised {
                        r.category = 0;
                        r.unit = String::new();
                    }
                    out.push(r);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Valid bundles

#[test]
fn every_band_status_disclosure_and_case_manager_gives_valid_r4() {
    let all = every_combination();
    assert_eq!(all.len(), 3 * 2 * 5 * 2);
    for r in &all {
        let b = who_else_bundle(&answer(vec![r.clone()]), &ctx());
        assert_valid(&b);
        let e = &b["entry"][0];
        assert_eq!(e["resource"]["resourceType"], "EpisodeOfCare");
        assert_eq!(e["search"]["extension"][0]["valueCode"], fhir::match_grade(r.band).unwrap());
        assert_eq!(e["resource"]["status"], fhir::episode_of_care_status(r.status).unwrap());
        assert_eq!(e["resource"].get("careManager").is_some(), r.case_manager);
    }
    let b = who_else_bundle(&answer(all.clone()), &ctx());
    assert_valid(&b);
    assert_eq!(b["total"], all.len());
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(all.len() + 1));
}

#[test]
fn every_vocabulary_value_gives_valid_r4() {
    let n = vocab::ServiceCategoryName::ALL.len();
    let rs: Vec<v1::OtherRelationship> = (0..n)
        .map(|i| {
            let category = vocab::ServiceCategoryName::ALL[i];
            v1::OtherRelationship {
                category: category as i32,
                category_group: vocab::category_group(category) as i32,
                entity_type: vocab::EntityType::ALL[i % vocab::EntityType::ALL.len()] as i32,
                contact: vocab::ContactRoleName::ALL[i % vocab::ContactRoleName::ALL.len()] as i32,
                plan: vocab::PlanTypeName::ALL[i % vocab::PlanTypeName::ALL.len()] as i32,
                ..relationship()
            }
        })
        .chain(vocab::CategoryGroupName::ALL.iter().map(|g| v1::OtherRelationship {
            category: 0,
            unit: String::new(),
            category_group: *g as i32,
            ..relationship()
        }))
        .collect();
    assert_valid(&who_else_bundle(&answer(rs), &ctx()));
}

#[test]
fn an_empty_answer_gives_valid_r4() {
    let b = who_else_bundle(&answer(vec![]), &ctx());
    assert_valid(&b);
    assert_eq!(b["total"], 0);
    // Nothing at all: no receipt, no notice, no base URL.
    let bare = who_else_bundle(&v1::WhoElseAnswer::default(), &BundleContext { base_url: String::new(), ..ctx() });
    assert_valid(&bare);
    assert!(bare.get("entry").is_none());
}

#[test]
fn the_optional_record_id_gives_valid_r4() {
    let c = BundleContext { record_id: Some("P-123/è".into()), ..ctx() };
    let b = who_else_bundle(&answer(vec![relationship()]), &c);
    assert_valid(&b);
    assert_eq!(b["entry"][0]["resource"]["patient"]["identifier"]["value"], "P-123/è");
    assert_eq!(b["link"][0]["url"], "https://127.0.0.1:7800/api/v1/persons/P-123%2F%C3%A8/who-else");
}

#[test]
fn unknown_or_missing_wire_values_still_give_valid_r4() {
    let odd = [
        v1::OtherRelationship::default(),
        v1::OtherRelationship {
            band: 9,
            status: 77,
            category: 1234,
            category_group: -3,
            entity_type: 8,
            contact: 5,
            plan: 6,
            since_month: 202413,
            ..relationship()
        },
        v1::OtherRelationship {
            entity_id: "  ".into(),
            entity_name: String::new(),
            unit: " ".into(),
            since_month: u32::MAX,
            ..relationship()
        },
        v1::OtherRelationship {
            entity_name: "Comune di \"Lecce\" <&> \u{0}\n".into(),
            unit: "a b".into(),
            ..relationship()
        },
    ];
    let mut a = answer(odd.to_vec());
    a.notice = "  ".into();
    a.receipt = Some(v1::AuditReceipt { sequence: u64::MAX, entry_hash: String::new() });
    let c = BundleContext {
        answered_at: u64::MAX,
        node_id: String::new(),
        base_url: "https://exa mple".into(),
        record_id: Some("P1".into()),
    };
    let b = who_else_bundle(&a, &c);
    assert_valid(&b);
    assert_eq!(b["entry"][0]["resource"]["_status"]["extension"][0]["valueCode"], "unknown");
}

/// A fixed answer's bundle, kept in `tests/fhir/who-else-bundle.json` as the example the README
/// shows: a change of the mapping fails here until the file is updated (`PONTE_BLESS=1`).
#[test]
fn the_example_bundle_is_unchanged() {
    let mut probable = relationship();
    probable.band = v1::MatchBand::Probable as i32;
    probable.entity_id = "comune-galatina".into();
    probable.entity_name = "Comune di Galatina".into();
    probable.entity_type = v1::EntityType::Comune as i32;
    probable.unit = "servizi-sociali".into();
    probable.category = v1::ServiceCategory::AssistenzaDomiciliareSociale as i32;
    probable.status = v1::RelationshipStatus::Segnalata as i32;
    probable.since_month = 202609;
    probable.case_manager = false;
    probable.plan = v1::PlanType::PlanNone as i32;
    probable.contact = v1::ContactRole::SegreteriaUnita as i32;
    let generalised = v1::OtherRelationship {
        band: v1::MatchBand::Possible as i32,
        entity_id: "ats-maglie".into(),
        entity_name: "ATS Maglie".into(),
        entity_type: v1::EntityType::Ats as i32,
        category_group: v1::CategoryGroup::SostegnoEconomico as i32,
        status: v1::RelationshipStatus::Conclusa as i32,
        since_month: 202501,
        plan: v1::PlanType::ProgettoPersonalizzato as i32,
        contact: v1::ContactRole::SportelloPua as i32,
        ..Default::default()
    };
    let b = who_else_bundle(&answer(vec![relationship(), probable, generalised]), &ctx());
    assert_valid(&b);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir/who-else-bundle.json");
    let pretty = serde_json::to_string_pretty(&b).unwrap_or_default() + "\n";
    if std::env::var_os("PONTE_BLESS").is_some() {
        std::fs::write(&path, &pretty).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let kept = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e} (run with PONTE_BLESS=1 to write it)", path.display()));
    let kept: Value = serde_json::from_str(&kept).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(kept, b, "the bundle changed; if on purpose, run this test with PONTE_BLESS=1 and review the diff");
    assert_valid(&kept);
}

// ---------------------------------------------------------------------------------------------
// Invalid bundles: the validator must reject each, for the reason given

fn valid() -> Value {
    let mut r = relationship();
    r.case_manager = true;
    who_else_bundle(&answer(vec![r, relationship()]), &BundleContext { record_id: Some("P123".into()), ..ctx() })
}

#[test]
fn an_invalid_status_code_is_rejected() {
    assert_rejected(&valid(), "EpisodeOfCare.status", |b| {
        b["entry"][0]["resource"]["status"] = json!("in_valutazione")
    });
    assert_rejected(&valid(), "EpisodeOfCare.status", |b| b["entry"][0]["resource"]["status"] = json!("Active"));
}

#[test]
fn a_missing_required_element_is_rejected() {
    let drop = |b: &mut Value, at: &[&str], key: &str| {
        let mut v = b;
        for k in at {
            v = if let Ok(i) = k.parse::<usize>() { &mut v[i] } else { &mut v[*k] };
        }
        v.as_object_mut().and_then(|m| m.remove(key));
    };
    assert_rejected(&valid(), "patient: required element missing", |b| drop(b, &["entry", "0", "resource"], "patient"));
    assert_rejected(&valid(), "status: required element missing", |b| drop(b, &["entry", "0", "resource"], "status"));
    assert_rejected(&valid(), "Bundle.type: required element missing", |b| drop(b, &[], "type"));
    assert_rejected(&valid(), "url: required element missing", |b| {
        drop(b, &["entry", "0", "search", "extension", "0"], "url")
    });
    assert_rejected(&valid(), "issue: required element missing", |b| drop(b, &["entry", "2", "resource"], "issue"));
}

#[test]
fn a_misspelled_or_misplaced_element_is_rejected() {
    assert_rejected(&valid(), "managingOrganisation: unknown element", |b| {
        let r = b["entry"][0]["resource"].as_object_mut().unwrap();
        let org = r.remove("managingOrganization").unwrap();
        r.insert("managingOrganisation".into(), org);
    });
    assert_rejected(&valid(), "careManager.name: unknown element", |b| {
        b["entry"][0]["resource"]["careManager"]["name"] = json!("Maria Rossi")
    });
    // match-grade belongs to the entry's search, not to the resource.
    assert_rejected(&valid(), "context:", |b| {
        let ext = b["entry"][0]["search"]["extension"].clone();
        b["entry"][0]["resource"]["extension"] = ext;
    });
    assert_rejected(&valid(), "EpisodeOfCares", |b| {
        b["entry"][0]["resource"]["resourceType"] = json!("EpisodeOfCares")
    });
}

#[test]
fn a_wrong_type_cardinality_or_format_is_rejected() {
    assert_rejected(&valid(), "expected a single value", |b| {
        let org = b["entry"][0]["resource"]["managingOrganization"].clone();
        b["entry"][0]["resource"]["managingOrganization"] = json!([org]);
    });
    assert_rejected(&valid(), "Bundle.total", |b| b["total"] = json!("2"));
    assert_rejected(&valid(), "Bundle.total", |b| b["total"] = json!(-1));
    assert_rejected(&valid(), "period.start", |b| b["entry"][0]["resource"]["period"]["start"] = json!("202403"));
    assert_rejected(&valid(), "period.start", |b| b["entry"][0]["resource"]["period"]["start"] = json!("2024-13"));
    assert_rejected(&valid(), "Bundle.timestamp", |b| b["timestamp"] = json!("2026-11-23T00:28:16"));
    assert_rejected(&valid(), "Bundle.link", |b| b["link"] = json!([]));
    assert_rejected(&valid(), "display", |b| b["entry"][0]["resource"]["patient"]["display"] = json!(""));
    assert_rejected(&valid(), "system", |b| b["identifier"]["system"] = json!("audit receipt"));
    assert_rejected(&valid(), "only one type", |b| {
        b["entry"][0]["search"]["extension"][0]["valueString"] = json!("certain")
    });
}

#[test]
fn codes_outside_their_required_value_sets_are_rejected() {
    assert_rejected(&valid(), "Bundle.type", |b| b["type"] = json!("search-set"));
    assert_rejected(&valid(), "Bundle.entry.search.mode", |b| b["entry"][0]["search"]["mode"] = json!("matched"));
    assert_rejected(&valid(), "match-grade", |b| {
        b["entry"][0]["search"]["extension"][0]["valueCode"] = json!("likely")
    });
    assert_rejected(&valid(), "OperationOutcome.issue.severity", |b| {
        b["entry"][2]["resource"]["issue"][0]["severity"] = json!("info")
    });
    assert_rejected(&valid(), "OperationOutcome.issue.code", |b| {
        b["entry"][2]["resource"]["issue"][0]["code"] = json!("notice")
    });
    assert_rejected(&valid(), "Identifier.use", |b| b["identifier"]["use"] = json!("receipt"));
    assert_rejected(&valid(), "not an R4 resource type", |b| {
        b["entry"][0]["resource"]["careManager"]["type"] = json!("CaseManager")
    });
}

#[test]
fn broken_invariants_are_rejected() {
    assert_rejected(&valid(), "bdl-7", |b| b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"].clone());
    assert_rejected(&valid(), "bdl-1", |b| b["type"] = json!("collection"));
    assert_rejected(&valid(), "ele-1", |b| b["entry"][0]["resource"]["careManager"] = json!({}));
    assert_rejected(&valid(), "Reference: ", |b| {
        b["entry"][0]["resource"]["careManager"] = json!({ "type": "PractitionerRole" })
    });
    assert_rejected(&valid(), "ext-1", |b| {
        b["entry"][0]["search"]["extension"][0]["extension"] = json!([{ "url": "x", "valueCode": "y" }]);
    });
    assert_rejected(&valid(), "bdl-5", |b| {
        b["entry"][0].as_object_mut().and_then(|e| e.remove("resource"));
    });
}
