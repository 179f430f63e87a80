//! Text names of the closed vocabularies, as used in configuration files, CLIs and CSV mappings:
//! the lower-case official Italian names (`cure_domiciliari`, `in_valutazione`, `asl`), and the
//! checks for identifier-shaped strings. The default sensitivity tier of each service category
//! follows DOMAIN.md §3; the policy (a later layer) may only make a tier stricter.

use crate::limits::MAX_ID_LEN;
use crate::v1::{
    BreakGlassReason, CategoryGroup, ConsentGiver, ContactRole, EntityType as EntityTypeV1, MatchBand, OperatorRole, PlanType, Purpose,
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

vocabulary!(CategoryGroupName, CategoryGroup, "", "category group", [
    InterventoSociale, SostegnoEconomico, AssistenzaDomiciliare, AssistenzaResidenziale,
    AssistenzaSemiresidenziale, SostegnoDisabilita, ContinuitaOspedaleTerritorio,
    ServizioSpecialistico,
]);
vocabulary!(BreakGlassReasonName, BreakGlassReason, "", "break-glass reason", [
    PericoloDiVita, IncapacitaDiConsentire,
]);
vocabulary!(ConsentGiverName, ConsentGiver, "", "consent giver", [
    Interessato, RappresentanteLegale, Genitore,
]);
vocabulary!(TokenKindName, crate::v1::TokenKind, "", "token kind", [CodiceFiscale, IdAnpr, Stp, Eni, CfProvvisorio]);

/// The generalised group of a service category: what a requester learns of a category the
/// policy discloses only generalised. Every T3 category falls in one group, so a generalised
/// T3 relationship does not say which protected service it is.
pub fn category_group(c: ServiceCategory) -> CategoryGroup {
    use ServiceCategory::*;
    match c {
        SegretariatoSociale | ServizioSocialeProfessionale | ProntoInterventoSociale | ResidenzaFittizia => {
            CategoryGroup::InterventoSociale
        }
        ContributoEconomico | AssegnoDiInclusione => CategoryGroup::SostegnoEconomico,
        AssistenzaDomiciliareSociale | CureDomiciliari | CurePalliative => CategoryGroup::AssistenzaDomiciliare,
        ResidenzialeRsa => CategoryGroup::AssistenzaResidenziale,
        CentroDiurno => CategoryGroup::AssistenzaSemiresidenziale,
        ServiziDisabilita => CategoryGroup::SostegnoDisabilita,
        DimissioniProtette => CategoryGroup::ContinuitaOspedaleTerritorio,
        Unspecified | Serd | SaluteMentale | Npia | Consultorio | Ivg | Hiv | ViolenzaDiGenere | TutelaMinori => {
            CategoryGroup::ServizioSpecialistico
        }
    }
}

/// `YYYYMMDD` with a plausible year, a month 1–12 and a day that exists in that month.
pub fn check_day(d: u32) -> Result<(), String> {
    let (y, m, day) = (d / 10_000, d / 100 % 100, d % 100);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    };
    if !(1900..=2200).contains(&y) || day == 0 || day > days_in_month {
        return Err(format!("{d} is not a date in the form YYYYMMDD"));
    }
    Ok(())
}

/// The UTC day of a Unix time, as `YYYYMMDD` (times beyond year 9999 read as 1970-01-01).
pub fn day_of_unix_time(secs: u64) -> u32 {
    let date = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    date.year() as u32 * 10_000 + u8::from(date.month()) as u32 * 100 + date.day() as u32
}

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

/// Pseudonymous operator ids: `[A-Za-z0-9._-]{1,64}`, taken exactly as given — case matters
/// (`Op-7` and `op-7` are two operators), nothing is lower-cased on the way to the audit — and
/// refused when any part of the id is shaped like a personal identifier, which would otherwise be
/// written into the permanent audit: a codice fiscale (16 characters, omocodes included, in any
/// case) or an STP/ENI code (`STP`/`ENI` + 13 digits). Checked wherever an operator id enters:
/// the node's CLI and API, and the coordinator.
pub fn check_operator_id(s: &str) -> Result<(), String> {
    // Upper-case letters pass the character check like lower-case ones; the id is not changed.
    check_id(&s.to_ascii_lowercase(), "operator id", &['-', '_', '.'])?;
    if let Some(kind) = personal_identifier_in(s) {
        return Err(format!(
            "the operator id contains what looks like {kind}: operator ids reach the permanent audit log, so they must be \
             pseudonymous — use the operator's id in your system (e.g. op-4711), never a codice fiscale, STP/ENI code or name"
        ));
    }
    Ok(())
}

/// Letters that stand for the digits 0–9 in an omocode codice fiscale.
const OMOCODE_LETTERS: &[u8] = b"LMNPQRSTUV";
/// Month letters of a codice fiscale.
const MONTH_LETTERS: &[u8] = b"ABCDEHLMPRST";

/// Whether 16 bytes (upper case) have the shape of a codice fiscale: surname and name letters,
/// year, month letter, day (+40 for women), Belfiore code, check letter; digits may be omocode
/// letters. The check character is not verified: a mistyped code is personal data too.
fn shaped_like_codice_fiscale(w: &[u8]) -> bool {
    let digit = |b: u8| b.is_ascii_digit() || OMOCODE_LETTERS.contains(&b);
    w.len() == 16
        && w[..6].iter().all(u8::is_ascii_uppercase)
        && w[6..8].iter().all(|b| digit(*b))
        && MONTH_LETTERS.contains(&w[8])
        && w[9..11].iter().all(|b| digit(*b))
        && w[11].is_ascii_uppercase()
        && w[12..15].iter().all(|b| digit(*b))
        && w[15].is_ascii_uppercase()
}

/// What kind of personal identifier `s` contains, if any (case-insensitive).
fn personal_identifier_in(s: &str) -> Option<&'static str> {
    let up = s.to_ascii_uppercase();
    for w in up.as_bytes().windows(16) {
        if shaped_like_codice_fiscale(w) {
            return Some("a codice fiscale");
        }
        if (w.starts_with(b"STP") || w.starts_with(b"ENI")) && w[3..].iter().all(u8::is_ascii_digit) {
            return Some("an STP or ENI code");
        }
    }
    None
}

/// Years a relationship's month ([`check_month`]) may fall in.
pub const MONTH_YEARS: std::ops::RangeInclusive<u32> = 1900..=2200;

/// `YYYYMM` with a plausible year ([`MONTH_YEARS`]) and a month 1–12.
pub fn check_month(m: u32) -> Result<(), String> {
    let (y, mo) = (m / 100, m % 100);
    if !MONTH_YEARS.contains(&y) || !(1..=12).contains(&mo) {
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
        assert!(check_day(20240229).is_ok());
        assert!(check_day(20230229).is_err());
        assert!(check_day(20241131).is_err());
        assert_eq!(day_of_unix_time(0), 19700101);
        assert_eq!(day_of_unix_time(951_782_400), 20000229);
        assert_eq!(day_of_unix_time(1_795_393_696), 20261123);
    }

    #[test]
    fn operator_ids_are_taken_as_given_and_personal_identifiers_are_refused() {
        for ok in ["op-4711", "Op-4711", "OPERATORE_7", "a", "pua.lecce-12", "7f3a9c2e41b8d605", "stp123"] {
            assert_eq!(check_operator_id(ok), Ok(()), "{ok}");
        }
        let refused = [
            "RSSMRA40B11E506X",
            "rssmra40b11e506x",
            "RssMra40b11E506x",
            // Omocodes: digits written as L M N P Q R S T U V.
            "RSSMRA40B1ME506X",
            "RSSMRAQLB11E5LSX",
            // Inside a longer id.
            "op-RSSMRA40B11E506X",
            "RSSMRA40B11E506X.pua",
            "STP1234567890123",
            "eni1234567890123",
            "op_STP1234567890123",
        ];
        for id in refused {
            let e = check_operator_id(id).unwrap_err();
            assert!(e.contains("pseudonymous") && e.contains("op-4711"), "{id}: {e}");
        }
        assert!(check_operator_id("RSSMRA40B11E506X").unwrap_err().contains("codice fiscale"));
        assert!(check_operator_id("ENI1234567890123").unwrap_err().contains("STP or ENI"));
        // Not a codice fiscale: a wrong month letter, 15 characters, or an STP code too short.
        for ok in ["RSSMRA40Z11E506X", "RSSMRA40B11E506", "STP123456789012"] {
            assert_eq!(check_operator_id(ok), Ok(()), "{ok}");
        }
        // The character check still applies.
        assert!(check_operator_id("Mario Rossi").unwrap_err().contains("' '"));
        assert!(check_operator_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn every_t3_category_generalises_to_one_group() {
        for c in ServiceCategoryName::ALL {
            let g = category_group(*c);
            assert_ne!(g, CategoryGroup::Unspecified);
            assert_eq!(g == CategoryGroup::ServizioSpecialistico, default_tier(*c) == SensitivityTier::T3, "{c:?}");
        }
        assert_eq!(BreakGlassReasonName::parse("pericolo_di_vita").unwrap(), BreakGlassReason::PericoloDiVita);
        assert_eq!(ConsentGiverName::name(ConsentGiver::Genitore), "genitore");
    }
}
