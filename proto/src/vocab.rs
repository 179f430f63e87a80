//! Text names of the closed vocabularies, as used in configuration files, CLIs and CSV mappings:
//! the lower-case official Italian names (`cure_domiciliari`, `in_valutazione`, `asl`), and the
//! checks for identifier-shaped strings. The default sensitivity tier of each service category
//! follows DOMAIN.md §3; the policy (a later layer) may only make a tier stricter.

use crate::limits::MAX_ID_LEN;
use crate::v1::{
    ContactRole, EntityType as EntityTypeV1, MatchBand, OperatorRole, PlanType, Purpose,
    RelationshipStatus, SensitivityTier, ServiceCategory,
};

fn lower_name(upper: &str, prefix: &str) -> String {
    upper.strip_prefix(prefix).unwrap_or(upper).to_ascii_lowercase()
}

fn upper_name(lower: &str, prefix: &str) -> String {
    format!("{prefix}{}", lower.trim().to_ascii_uppercase().replace('-', "_"))
}

macro_rules! vocabulary {
    ($name:ident, $enum:ty, $prefix:expr, $what:expr, [$($variant:ident),* $(,)?]) => {
        /// Text names of one closed vocabulary.
        pub struct $name;
        impl $name {
            /// All values, in wire order.
            pub const ALL: &'static [$enum] = &[$(<$enum>::$variant),*];
            /// Parses a lower-case name (hyphens accepted for underscores).
            pub fn parse(s: &str) -> Result<$enum, String> {
                let e = <$enum>::from_str_name(&upper_name(s, $prefix))
                    .or_else(|| <$enum>::from_str_name(&upper_name(s, "")));
                match e {
                    Some(v) if v as i32 != 0 => Ok(v),
                    _ => Err(format!(
                        "{:?} is not a known {}; use one of: {}",
                        s,
                        $what,
                        Self::ALL.iter().map(|v| Self::name(*v)).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
            /// The lower-case name of a value.
            pub fn name(v: $enum) -> String {
                lower_name(v.as_str_name(), $prefix)
            }
            /// The name of a raw wire value, or an error naming it.
            pub fn from_wire(v: i32) -> Result<$enum, String> {
                match <$enum>::try_from(v) {
                    Ok(e) if v != 0 => Ok(e),
                    _ => Err(format!("{v} is not a valid {} on the wire", $what)),
                }
            }
        }
    };
}

vocabulary!(EntityType, EntityTypeV1, "ENTITY_TYPE_", "entity type", [Asl, Comune, Ats, Provider]);
vocabulary!(ServiceCategoryName, ServiceCategory, "", "service category", [
    SegretariatoSociale, ServizioSocialeProfessionale, AssistenzaDomiciliareSociale,
    ContributoEconomico, AssegnoDiInclusione, ProntoInterventoSociale, ResidenzaFittizia,
    CureDomiciliari, CurePalliative, ResidenzialeRsa, CentroDiurno, ServiziDisabilita,
    DimissioniProtette, Serd, SaluteMentale, Npia, Consultorio, Ivg, Hiv, ViolenzaDiGenere,
    TutelaMinori,
]);
vocabulary!(StatusName, RelationshipStatus, "", "relationship status", [
    Segnalata, InValutazione, Attiva, Sospesa, Conclusa,
]);
vocabulary!(PurposeName, Purpose, "", "purpose", [
    ContinuitaAssistenziale, ConvocazioneUvm, DimissioneProtetta, RichiestaInteressato, Emergenza,
]);
vocabulary!(OperatorRoleName, OperatorRole, "", "operator role", [
    AssistenteSociale, OperatorePua, MembroUvm, OperatoreCot, Mmg, ReferentePrivacy,
]);
vocabulary!(MatchBandName, MatchBand, "", "match band", [Certain, Probable, Possible]);
vocabulary!(PlanTypeName, PlanType, "", "plan type", [PlanNone, Pai, Pei, ProgettoPersonalizzato]);
vocabulary!(ContactRoleName, ContactRole, "", "contact role", [
    SportelloPua, SegreteriaUnita, CaseManagerUnita,
]);

/// Default sensitivity tier of a service category (DOMAIN.md §3).
pub fn default_tier(c: ServiceCategory) -> SensitivityTier {
    use ServiceCategory::*;
    match c {
        Unspecified => SensitivityTier::T3,
        SegretariatoSociale | ServizioSocialeProfessionale | AssistenzaDomiciliareSociale
        | ContributoEconomico | AssegnoDiInclusione | ProntoInterventoSociale
        | ResidenzaFittizia => SensitivityTier::T1,
        CureDomiciliari | CurePalliative | ResidenzialeRsa | CentroDiurno | ServiziDisabilita
        | DimissioniProtette => SensitivityTier::T2,
        Serd | SaluteMentale | Npia | Consultorio | Ivg | Hiv | ViolenzaDiGenere | TutelaMinori => {
            SensitivityTier::T3
        }
    }
}

/// Statuses on which a requester may anchor a question: it must itself hold an active or pending
/// relationship with the person (need-to-know, GDPR 5(1)(c)).
pub fn status_allows_anchor(s: RelationshipStatus) -> bool {
    matches!(
        s,
        RelationshipStatus::Segnalata | RelationshipStatus::InValutazione | RelationshipStatus::Attiva
    )
}

fn check_id(s: &str, what: &str, extra: &[char]) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(format!("the {what} is {} characters long; at most {MAX_ID_LEN} are allowed", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))) {
        return Err(format!(
            "the {what} {s:?} contains {c:?}; use lower-case letters, digits and {}",
            extra.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" ")
        ));
    }
    Ok(())
}

/// Node ids: `[a-z0-9-]{1,64}`, e.g. `asl-lecce`.
pub fn check_node_id(s: &str) -> Result<(), String> {
    check_id(s, "node id", &['-'])
}

/// Responsible-unit codes: `[a-z0-9._-]{1,64}`, e.g. `distretto-lecce.pua`.
pub fn check_unit_code(s: &str) -> Result<(), String> {
    check_id(s, "unit code", &['-', '_', '.'])
}

/// Opaque references: `[a-z0-9-]{1,64}` (the node generates them at random).
pub fn check_reference(s: &str) -> Result<(), String> {
    check_id(s, "reference", &['-'])
}

/// Pseudonymous operator ids: `[A-Za-z0-9._-]{1,64}`.
pub fn check_operator_id(s: &str) -> Result<(), String> {
    check_id(&s.to_ascii_lowercase(), "operator id", &['-', '_', '.'])
}

/// `YYYYMM` with a plausible year and a month 1–12.
pub fn check_month(m: u32) -> Result<(), String> {
    let (y, mo) = (m / 100, m % 100);
    if !(1900..=2200).contains(&y) || !(1..=12).contains(&mo) {
        return Err(format!("{m} is not a month in the form YYYYMM"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in ServiceCategoryName::ALL {
            assert_eq!(ServiceCategoryName::parse(&ServiceCategoryName::name(*c)).unwrap(), *c);
        }
        assert_eq!(EntityType::parse("asl").unwrap(), EntityTypeV1::Asl);
        assert_eq!(EntityType::name(EntityTypeV1::Comune), "comune");
        assert_eq!(StatusName::parse("in-valutazione").unwrap(), RelationshipStatus::InValutazione);
        assert!(StatusName::parse("relationship_status_unspecified").is_err());
        let err = ServiceCategoryName::parse("adi").unwrap_err();
        assert!(err.contains("cure_domiciliari"), "{err}");
    }

    #[test]
    fn tiers_follow_domain() {
        assert_eq!(default_tier(ServiceCategory::CureDomiciliari), SensitivityTier::T2);
        assert_eq!(default_tier(ServiceCategory::Serd), SensitivityTier::T3);
        assert_eq!(default_tier(ServiceCategory::SegretariatoSociale), SensitivityTier::T1);
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_node_id("asl-lecce").is_ok());
        assert!(check_node_id("ASL Lecce").is_err());
        assert!(check_node_id(&"a".repeat(65)).is_err());
        assert!(check_unit_code("distretto-lecce.pua").is_ok());
        assert!(check_month(202401).is_ok());
        assert!(check_month(202413).is_err());
    }
}
