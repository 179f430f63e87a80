//! Plain, serialisable views of what the coordinator answers (who-else answers, data-subject
//! reports), with vocabulary values as their text names: what the CLI prints as text or JSON.
//! Pure conversions from the wire types; nothing here talks to anything.

use ponte_proto::v1;
use ponte_proto::vocab;
use serde::Serialize;

use crate::consent::utc_time;

fn name<E>(r: Result<E, String>, f: fn(E) -> String) -> String {
    r.map(f).unwrap_or_default()
}

/// The service as a requester learns it: the category, or only its generalised group (then
/// `service` is empty and `generalised` true).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ServiceView {
    /// The service category (`cure_domiciliari`); empty when generalised.
    pub service: String,
    /// The category's group (`assistenza_domiciliare`); always set.
    pub category_group: String,
    /// Only the group is disclosed.
    pub generalised: bool,
    /// In Italian: the category, or the group followed by "(generalizzata)".
    pub service_label: String,
}

impl ServiceView {
    pub fn new(category: i32, group: i32) -> ServiceView {
        let service = name(vocab::ServiceCategoryName::from_wire(category), vocab::ServiceCategoryName::name);
        let service_label = match v1::ServiceCategory::try_from(category) {
            Ok(c) if !service.is_empty() => crate::labels::service(c).to_string(),
            _ => format!("{} (generalizzata)", crate::labels::category_group(v1::CategoryGroup::try_from(group).unwrap_or_default())),
        };
        ServiceView {
            generalised: service.is_empty(),
            category_group: name(vocab::CategoryGroupName::from_wire(group), vocab::CategoryGroupName::name),
            service,
            service_label,
        }
    }

    /// `cure_domiciliari`, or `assistenza_domiciliare (generalizzata)` when generalised.
    pub fn text(&self) -> String {
        if self.generalised {
            format!("{} (generalizzata)", if self.category_group.is_empty() { "servizio" } else { &self.category_group })
        } else {
            self.service.clone()
        }
    }
}

/// One relationship of an answer or a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RelationshipView {
    /// `certain`, `probable` or `possible`.
    pub band: String,
    /// `certa`, `probabile`, or `possibile corrispondenza — da verificare`.
    pub band_label: String,
    pub entity_id: String,
    pub entity_name: String,
    pub entity_type: String,
    /// Empty when the service is generalised.
    pub unit: String,
    #[serde(flatten)]
    pub service: ServiceView,
    pub status: String,
    /// In Italian.
    pub status_label: String,
    /// `YYYY-MM`.
    pub since: String,
    /// The entity holds the case manager role.
    pub case_manager: bool,
    /// Whom to contact there: `sportello_pua`, `segreteria_unita` or `case_manager_unita`.
    pub contact: String,
    /// In Italian.
    pub contact_label: String,
}

impl From<&v1::OtherRelationship> for RelationshipView {
    fn from(r: &v1::OtherRelationship) -> Self {
        RelationshipView {
            band: name(vocab::MatchBandName::from_wire(r.band), vocab::MatchBandName::name),
            band_label: crate::labels::band(v1::MatchBand::try_from(r.band).unwrap_or_default()).to_string(),
            status_label: crate::labels::status(v1::RelationshipStatus::try_from(r.status).unwrap_or_default()).to_string(),
            contact: name(vocab::ContactRoleName::from_wire(r.contact), vocab::ContactRoleName::name),
            contact_label: crate::labels::contact(v1::ContactRole::try_from(r.contact).unwrap_or_default()).to_string(),
            entity_id: r.entity_id.clone(),
            entity_name: r.entity_name.clone(),
            entity_type: name(vocab::EntityType::from_wire(r.entity_type), vocab::EntityType::name),
            unit: r.unit.clone(),
            service: ServiceView::new(r.category, r.category_group),
            status: name(vocab::StatusName::from_wire(r.status), vocab::StatusName::name),
            since: format!("{}-{:02}", r.since_month / 100, r.since_month % 100),
            case_manager: r.case_manager,
        }
    }
}

impl RelationshipView {
    /// One line of text, in Italian like the rest of the case worker's output.
    pub fn text(&self) -> String {
        let band = match self.band.as_str() {
            "certain" => "certa",
            "probable" => "probabile",
            _ => "possibile corrispondenza — da verificare",
        };
        let unit = if self.unit.is_empty() { String::new() } else { format!(", unità {}", self.unit) };
        let since = self.since.split_once('-').map(|(y, m)| format!("{m}/{y}")).unwrap_or_default();
        format!(
            "{} ({}){unit}: {} — {} dal {since}{} [{band}]",
            self.entity_name,
            self.entity_id,
            self.service.text(),
            self.status,
            if self.case_manager { ", case manager" } else { "" },
        )
    }
}

/// What one question disclosed of the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisclosedView {
    pub entity_id: String,
    pub entity_name: String,
    #[serde(flatten)]
    pub service: ServiceView,
}

/// One question that touched the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessView {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub time_utc: String,
    pub entity_id: String,
    pub entity_name: String,
    pub purpose: String,
    pub operator_role: String,
    pub operator_id: String,
    pub refused: bool,
    pub disclosed: Vec<DisclosedView>,
}

/// A data-subject report about the person of one local record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectReportView {
    pub record_id: String,
    pub relationships: Vec<RelationshipView>,
    pub accesses: Vec<AccessView>,
    pub notice: String,
    pub receipt: u64,
}

impl SubjectReportView {
    pub fn new(record_id: &str, r: &v1::SubjectReport) -> SubjectReportView {
        SubjectReportView {
            record_id: record_id.to_string(),
            relationships: r.relationships.iter().map(RelationshipView::from).collect(),
            accesses: r
                .accesses
                .iter()
                .map(|a| AccessView {
                    time: a.time,
                    time_utc: utc_time(a.time),
                    entity_id: a.entity_id.clone(),
                    entity_name: a.entity_name.clone(),
                    purpose: name(vocab::PurposeName::from_wire(a.purpose), vocab::PurposeName::name),
                    operator_role: name(vocab::OperatorRoleName::from_wire(a.operator_role), vocab::OperatorRoleName::name),
                    operator_id: a.operator_id.clone(),
                    refused: a.refused,
                    disclosed: a
                        .disclosed
                        .iter()
                        .map(|d| DisclosedView {
                            entity_id: d.entity_id.clone(),
                            entity_name: d.entity_name.clone(),
                            service: ServiceView::new(d.category, d.category_group),
                        })
                        .collect(),
                })
                .collect(),
            notice: r.notice.clone(),
            receipt: r.receipt.as_ref().map(|r| r.sequence).unwrap_or_default(),
        }
    }

    /// The report as text, for the person or the privacy contact handling the request.
    pub fn text(&self) -> String {
        let mut s = format!("Rapporto per l'interessato del record {} (audit n. {}):\n", self.record_id, self.receipt);
        s.push_str("Prese in carico visibili:\n");
        if self.relationships.is_empty() {
            s.push_str("  nessuna\n");
        }
        for r in &self.relationships {
            s.push_str(&format!("  - {}\n", r.text()));
        }
        s.push_str("Chi ha chiesto della persona:\n");
        if self.accesses.is_empty() {
            s.push_str("  nessuna richiesta\n");
        }
        for a in &self.accesses {
            let outcome = if a.refused {
                "rifiutata".to_string()
            } else if a.disclosed.is_empty() {
                "nessuna informazione comunicata".to_string()
            } else {
                format!(
                    "comunicato: {}",
                    a.disclosed.iter().map(|d| format!("{} ({})", d.service.text(), d.entity_name)).collect::<Vec<_>>().join("; ")
                )
            };
            s.push_str(&format!(
                "  - {} {} ({}), finalità {}, {} {}: {outcome}\n",
                a.time_utc, a.entity_name, a.entity_id, a.purpose, a.operator_role, a.operator_id
            ));
        }
        s.push_str(&format!("  {}\n", self.notice));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalised_services_show_their_group() {
        let generalised = ServiceView::new(0, v1::CategoryGroup::AssistenzaDomiciliare as i32);
        assert!(generalised.generalised);
        assert_eq!(generalised.text(), "assistenza_domiciliare (generalizzata)");
        let full = ServiceView::new(v1::ServiceCategory::CureDomiciliari as i32, v1::CategoryGroup::AssistenzaDomiciliare as i32);
        assert!(!full.generalised);
        assert_eq!(full.text(), "cure_domiciliari");
    }

    #[test]
    fn reports_read_as_text_and_json() {
        let rel = v1::OtherRelationship {
            band: v1::MatchBand::Certain as i32,
            entity_id: "asl-lecce".into(),
            entity_name: "ASL Lecce".into(),
            entity_type: v1::EntityType::Asl as i32,
            category_group: v1::CategoryGroup::AssistenzaDomiciliare as i32,
            status: v1::RelationshipStatus::Attiva as i32,
            since_month: 202603,
            ..Default::default()
        };
        let report = v1::SubjectReport {
            relationships: vec![rel],
            accesses: vec![v1::SubjectAccess {
                time: 1_798_761_599,
                entity_id: "comune-lecce".into(),
                entity_name: "Comune di Lecce".into(),
                purpose: v1::Purpose::ContinuitaAssistenziale as i32,
                operator_role: v1::OperatorRole::AssistenteSociale as i32,
                operator_id: "op-7".into(),
                refused: false,
                disclosed: vec![v1::DisclosedItem {
                    entity_id: "asl-lecce".into(),
                    entity_name: "ASL Lecce".into(),
                    category: 0,
                    category_group: v1::CategoryGroup::AssistenzaDomiciliare as i32,
                }],
            }],
            notice: "n".into(),
            receipt: Some(v1::AuditReceipt { sequence: 9, entry_hash: String::new() }),
        };
        let v = SubjectReportView::new("P1", &report);
        let text = v.text();
        assert!(text.contains("ASL Lecce (asl-lecce): assistenza_domiciliare (generalizzata) — attiva dal 03/2026 [certa]"), "{text}");
        assert!(text.contains("2026-12-31 23:59 UTC Comune di Lecce (comune-lecce), finalità continuita_assistenziale, assistente_sociale op-7"), "{text}");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["relationships"][0]["category_group"], "assistenza_domiciliare");
        assert_eq!(j["relationships"][0]["service"], "");
        assert_eq!(j["accesses"][0]["disclosed"][0]["generalised"], true);
        assert_eq!(j["receipt"], 9);
    }
}

/// Names of raw wire values (`#N` for one that is not valid).
pub fn wire_names<T>(values: &[i32], from_wire: fn(i32) -> Result<T, String>, name: fn(T) -> String) -> Vec<String> {
    values.iter().map(|v| from_wire(*v).map(name).unwrap_or_else(|_| format!("#{v}"))).collect()
}

/// A consent recorded at this node, with its state on a given day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub consent_id: String,
    pub record_id: String,
    /// Service categories that may be disclosed.
    pub categories: Vec<String>,
    /// Kinds of entity that may receive them.
    pub recipients: Vec<String>,
    pub purposes: Vec<String>,
    /// `YYYY-MM-DD`.
    pub valid_from: String,
    /// `YYYY-MM-DD`, inclusive.
    pub valid_until: String,
    /// `interessato`, `rappresentante_legale` or `genitore`.
    pub given_by: String,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub recorded_at: String,
    /// `YYYY-MM-DD HH:MM UTC`, when revoked.
    pub revoked_at: Option<String>,
    /// `valid`, `revoked`, `expired` or `not_yet_valid`.
    pub state: String,
}

impl ConsentView {
    pub fn new(c: &crate::store::LocalConsent, today: u32) -> ConsentView {
        use crate::consent::{iso_day, utc_time};
        ConsentView {
            consent_id: c.consent_id.clone(),
            record_id: c.record_id.clone(),
            categories: wire_names(&c.categories, vocab::ServiceCategoryName::from_wire, vocab::ServiceCategoryName::name),
            recipients: wire_names(&c.recipients, vocab::EntityType::from_wire, vocab::EntityType::name),
            purposes: wire_names(&c.purposes, vocab::PurposeName::from_wire, vocab::PurposeName::name),
            valid_from: iso_day(c.valid_from),
            valid_until: iso_day(c.valid_until),
            given_by: vocab::ConsentGiverName::from_wire(c.given_by).map(vocab::ConsentGiverName::name).unwrap_or_default(),
            recorded_at: utc_time(c.recorded_at),
            revoked_at: c.revoked_at.map(utc_time),
            state: ConsentView::state(c, today).to_string(),
        }
    }

    /// `valid`, `revoked`, `expired` or `not_yet_valid`, on `today`.
    pub fn state(c: &crate::store::LocalConsent, today: u32) -> &'static str {
        if c.revoked_at.is_some() {
            "revoked"
        } else if c.valid_until < today {
            "expired"
        } else if c.valid_from > today {
            "not_yet_valid"
        } else {
            "valid"
        }
    }
}
