//! What to generate: the population's shape and the entities that hold records about it.
//!
//! A [`Scenario`] is plain data (serde), so research runs can keep theirs in a file. Every entity
//! ([`EntitySpec`]) says whom it serves (its catchment of residence comuni), which Ponte service
//! categories it delivers, how its software exports (headers, delimiter, date format, its own
//! service and status words — [`ExportFormat`]) and how dirty its data is ([`ErrorRates`]).
//! [`demo_scenario`] builds the four-node demo federation of the province of Lecce.

use std::collections::{BTreeMap, BTreeSet};

use ponte_node::normalise::BirthDate;
use serde::{Deserialize, Serialize};

use super::SynthError;
use super::calendar::{DATE_FORMATS, date};
use super::errors::ErrorRates;

/// Upper bound on the population of one scenario (memory stays in the low gigabytes).
pub const MAX_PERSONS: usize = 5_000_000;
/// Upper bound on the entities of one scenario.
pub const MAX_ENTITIES: usize = 256;
/// Upper bound on a header, a unit code or a vocabulary value.
pub const MAX_TOKEN_LEN: usize = 64;

/// Ponte's service categories (wire values) with their sensitivity tier (DOMAIN.md §3).
pub const SERVICE_CATEGORIES: &[(&str, u8)] = &[
    ("segretariato_sociale", 1),
    ("servizio_sociale_professionale", 1),
    ("assistenza_domiciliare_sociale", 1),
    ("contributo_economico", 1),
    ("assegno_di_inclusione", 1),
    ("pronto_intervento_sociale", 1),
    ("residenza_fittizia", 1),
    ("cure_domiciliari", 2),
    ("cure_palliative", 2),
    ("residenziale_rsa", 2),
    ("centro_diurno", 2),
    ("servizi_disabilita", 2),
    ("dimissioni_protette", 2),
    ("serd", 3),
    ("salute_mentale", 3),
    ("npia", 3),
    ("consultorio", 3),
    ("ivg", 3),
    ("hiv", 3),
    ("violenza_di_genere", 3),
    ("tutela_minori", 3),
];

/// Ponte's relationship statuses (wire values).
pub const STATUSES: &[&str] = &[
    "segnalata",
    "in_valutazione",
    "attiva",
    "sospesa",
    "conclusa",
];

/// Ponte's entity types (wire values).
pub const ENTITY_TYPES: &[&str] = &["asl", "comune", "ats", "provider"];

pub fn is_service_category(s: &str) -> bool {
    SERVICE_CATEGORIES.iter().any(|(c, _)| *c == s)
}

pub fn is_status(s: &str) -> bool {
    STATUSES.contains(&s)
}

/// A finite, non-negative weight (NaN is not one).
fn is_weight(w: f64) -> bool {
    w.is_finite() && w >= 0.0
}

/// `[a-z0-9-]{1,64}`: node ids and unit codes.
pub fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOKEN_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// Number of people in the population (not all of them are in care somewhere).
    pub persons: usize,
    /// Reference date: ages, relationship start dates and statuses are as of this day.
    pub as_of: BirthDate,
    pub population: PopulationSpec,
    pub entities: Vec<EntitySpec>,
}

/// Shape of the population. Shares are probabilities in `[0, 1]`, weights are relative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopulationSpec {
    /// Province of residence and of most births (`LE`).
    pub province: String,
    /// Belfiore code of the province's capoluogo, over-represented among birthplaces.
    pub capoluogo: String,
    /// Residence comuni (Belfiore code, weight).
    pub residences: Vec<(String, f64)>,
    /// Weight of "any other comune of the province" (uniform among them).
    pub rest_of_province: f64,
    /// Share born abroad.
    pub foreign_born: f64,
    /// Among the Italian-born: share born in their comune of residence.
    pub born_in_residence: f64,
    /// Among the Italian-born: share born in one of `other_provinces`.
    pub born_elsewhere_in_italy: f64,
    pub other_provinces: Vec<String>,
    /// Among the others born in the province: share born in the capoluogo.
    pub born_in_capoluogo: f64,
    /// Among the Italian-born before 1947: share born in a ceded comune (Pola, Fiume, Zara).
    pub ceded_share: f64,
    /// Age bands of the Italian-born: (min age, max age, weight).
    pub age_bands: Vec<(u16, u16, f64)>,
    /// Age bands of the foreign-born.
    pub foreign_age_bands: Vec<(u16, u16, f64)>,
    /// Share with a double surname (born before 2022; half of the younger ones have one).
    pub double_surname: f64,
    /// Share with a second given name.
    pub second_given_name: f64,
    /// Among women aged 25 or more with Italian names: share married or widowed.
    pub married_women: f64,
    /// Share whose CF is an omocode because of someone outside the population.
    pub omocode_share: f64,
}

/// One entity holding care relationships, and how it exports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySpec {
    /// `[a-z0-9-]{1,64}`, e.g. `asl-lecce`; also the export's file name.
    pub node_id: String,
    pub entity_name: String,
    /// `asl`, `comune`, `ats` or `provider`.
    pub entity_type: String,
    /// Probability that a person resident in the catchment is in care here.
    pub share_of_population: f64,
    /// Residence comuni served (Belfiore codes); empty = the whole population.
    #[serde(default)]
    pub catchment: Vec<String>,
    /// Probability that a person resident elsewhere is known here (a past residence, a
    /// homeless person, a relative's request).
    #[serde(default)]
    pub outside_catchment_share: f64,
    /// Ponte service categories delivered here, with relative weights.
    pub services: Vec<(String, f64)>,
    /// Probability of a second relationship (another service) with the same person.
    #[serde(default)]
    pub second_service_share: f64,
    /// Unit codes (`[a-z0-9-]{1,64}`) relationships are assigned to, uniformly.
    pub units: Vec<String>,
    /// Units that hold one service category (e.g. `salute_mentale` → `csm-lecce`); they win
    /// over every other rule.
    #[serde(default)]
    pub unit_for_service: BTreeMap<String, String>,
    /// Units that serve the residents of a comune (Belfiore code → unit, e.g. a distretto).
    /// A person's other relationships here share one unit: this one, or else one of `units`.
    #[serde(default)]
    pub unit_for_residence: BTreeMap<String, String>,
    pub export: ExportFormat,
    #[serde(default)]
    pub errors: ErrorRates,
    /// Probability that a registered person is registered a second time under another spelling.
    #[serde(default)]
    pub duplicate_rate: f64,
}

/// Canonical fields of an export row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    RecordId,
    RelationshipId,
    Surname,
    GivenNames,
    SurnameAlias,
    Sex,
    BirthDate,
    Birthplace,
    CodiceFiscale,
    Service,
    Status,
    Since,
    Unit,
    CaseManager,
}

impl Field {
    /// Fields every export must have (the node cannot import without them; relationship ids
    /// are required because a record may carry several relationships).
    pub const REQUIRED: [Field; 8] = [
        Field::RecordId,
        Field::RelationshipId,
        Field::Surname,
        Field::GivenNames,
        Field::BirthDate,
        Field::Service,
        Field::Status,
        Field::Since,
    ];
}

/// How sex is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SexStyle {
    /// `M` / `F`
    Letter,
    /// `MASCHIO` / `FEMMINA`
    Word,
}

/// How the case-manager flag is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagStyle {
    /// `S` / `N`
    SN,
    /// `si` / `no`
    SiNo,
}

/// Letter case of names and places in the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextCase {
    /// All upper case (legacy systems): `DE GIORGI`, `CALÒ`.
    Upper,
    /// As the person's name is written: `De Giorgi`, `Calò`.
    AsWritten,
}

/// How one entity's software writes its CSV export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportFormat {
    /// One of `;` `,` `|` `\t`.
    pub delimiter: char,
    /// One of [`DATE_FORMATS`].
    pub date_format: String,
    /// Columns in file order: canonical field and the entity's header.
    pub columns: Vec<(Field, String)>,
    pub text_case: TextCase,
    pub sex_style: SexStyle,
    pub flag_style: FlagStyle,
    /// Record ids are `prefix` + zero-padded number (`ASL-000123`).
    pub record_id_prefix: String,
    pub record_id_digits: usize,
    pub relationship_id_prefix: String,
    /// (Ponte category, the entity's value). A category may have several values (legacy
    /// spellings, written uniformly at random); a category without any is written as Ponte's value.
    pub services: Vec<(String, String)>,
    /// (Ponte status, the entity's value), same rules as `services`.
    pub statuses: Vec<(String, String)>,
    /// Unit written in the import mapping for exports without a unit column.
    pub default_unit: String,
}

impl ExportFormat {
    pub fn header(&self, field: Field) -> Option<&str> {
        self.columns
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, h)| h.as_str())
    }

    pub fn delimiter_byte(&self) -> u8 {
        self.delimiter as u8
    }
}

impl Scenario {
    /// Checks every bound and cross-reference; generation assumes a checked scenario.
    pub fn check(&self) -> Result<(), SynthError> {
        let err = |m: String| Err(SynthError(format!("scenario {:?}: {m}", self.name)));
        if self.persons > MAX_PERSONS {
            return err(format!(
                "persons = {}: the limit is {MAX_PERSONS}",
                self.persons
            ));
        }
        if self.entities.is_empty() || self.entities.len() > MAX_ENTITIES {
            return err(format!(
                "{} entities: use between 1 and {MAX_ENTITIES}",
                self.entities.len()
            ));
        }
        if !super::calendar::is_valid(self.as_of.year, self.as_of.month, self.as_of.day)
            || self.as_of.year < 1990
        {
            return err(format!(
                "as_of = {:?} is not a valid date after 1990",
                self.as_of
            ));
        }
        let p = &self.population;
        for (name, v) in [
            ("foreign_born", p.foreign_born),
            ("born_in_residence", p.born_in_residence),
            ("born_elsewhere_in_italy", p.born_elsewhere_in_italy),
            ("born_in_capoluogo", p.born_in_capoluogo),
            ("ceded_share", p.ceded_share),
            ("double_surname", p.double_surname),
            ("second_given_name", p.second_given_name),
            ("married_women", p.married_women),
            ("omocode_share", p.omocode_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(format!(
                    "population.{name} = {v}: a share must be between 0 and 1"
                ));
            }
        }
        if p.born_in_residence + p.born_elsewhere_in_italy > 1.0 {
            return err("population.born_in_residence + born_elsewhere_in_italy exceed 1".into());
        }
        for (name, bands) in [
            ("age_bands", &p.age_bands),
            ("foreign_age_bands", &p.foreign_age_bands),
        ] {
            if bands.is_empty()
                || bands
                    .iter()
                    .any(|b| b.0 > b.1 || b.1 > 110 || !is_weight(b.2))
                || bands.iter().all(|b| b.2 == 0.0)
            {
                return err(format!(
                    "population.{name}: give (min, max, weight) with min ≤ max ≤ 110 and a positive weight"
                ));
            }
        }
        if p.residences.iter().any(|(_, w)| !is_weight(*w))
            || !is_weight(p.rest_of_province)
            || p.residences.iter().map(|r| r.1).sum::<f64>() + p.rest_of_province <= 0.0
        {
            return err(
                "population.residences: weights must be non-negative with a positive total".into(),
            );
        }
        let mut ids = BTreeSet::new();
        for e in &self.entities {
            e.check().map_err(|m| {
                SynthError(format!(
                    "scenario {:?}, entity {:?}: {}",
                    self.name, e.node_id, m.0
                ))
            })?;
            if !ids.insert(e.node_id.as_str()) {
                return err(format!("node_id {:?} appears twice", e.node_id));
            }
        }
        Ok(())
    }
}

impl EntitySpec {
    fn check(&self) -> Result<(), SynthError> {
        let err = |m: String| Err(SynthError(m));
        if !is_code(&self.node_id) {
            return err("node_id must match [a-z0-9-]{1,64}".into());
        }
        if !ENTITY_TYPES.contains(&self.entity_type.as_str()) {
            return err(format!(
                "entity_type {:?}: use one of {ENTITY_TYPES:?}",
                self.entity_type
            ));
        }
        for (name, v) in [
            ("share_of_population", self.share_of_population),
            ("outside_catchment_share", self.outside_catchment_share),
            ("second_service_share", self.second_service_share),
            ("duplicate_rate", self.duplicate_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(format!("{name} = {v}: a share must be between 0 and 1"));
            }
        }
        if self.services.is_empty() || self.services.iter().all(|(_, w)| *w <= 0.0) {
            return err("services: give at least one category with a positive weight".into());
        }
        for (c, w) in &self.services {
            if !is_service_category(c) || !is_weight(*w) {
                return err(format!(
                    "services: {c:?} (weight {w}) is not a Ponte service category with a weight ≥ 0"
                ));
            }
        }
        for u in self
            .units
            .iter()
            .chain(self.unit_for_service.values())
            .chain(self.unit_for_residence.values())
            .chain([&self.export.default_unit])
        {
            if !is_code(u) {
                return err(format!("unit {u:?} must match [a-z0-9-]{{1,64}}"));
            }
        }
        if self.units.is_empty() && self.export.header(Field::Unit).is_some() {
            return err("units: an export with a unit column needs at least one unit".into());
        }
        self.errors
            .check()
            .map_err(|m| SynthError(format!("errors: {}", m.0)))?;
        self.export.check()
    }
}

impl ExportFormat {
    fn check(&self) -> Result<(), SynthError> {
        let err = |m: String| Err(SynthError(format!("export: {m}")));
        if ![';', ',', '|', '\t'].contains(&self.delimiter) {
            return err(format!("delimiter {:?}: use ; , | or tab", self.delimiter));
        }
        if !DATE_FORMATS.contains(&self.date_format.as_str()) {
            return err(format!(
                "date_format {:?}: use one of {DATE_FORMATS:?}",
                self.date_format
            ));
        }
        for f in Field::REQUIRED {
            if self.header(f).is_none() {
                return err(format!("the column {f:?} is required"));
            }
        }
        let mut fields = BTreeSet::new();
        let mut headers = BTreeSet::new();
        for (f, h) in &self.columns {
            if !fields.insert(*f) {
                return err(format!("the column {f:?} appears twice"));
            }
            if h.trim().is_empty()
                || h.len() > MAX_TOKEN_LEN
                || h.contains(self.delimiter)
                || h.contains(['"', '\n', '\r'])
            {
                return err(format!(
                    "header {h:?}: 1–{MAX_TOKEN_LEN} characters, no delimiter, quote or newline"
                ));
            }
            if !headers.insert(h.as_str()) {
                return err(format!("header {h:?} appears twice"));
            }
        }
        if self.record_id_digits == 0
            || self.record_id_digits > 12
            || self.record_id_prefix.len() > 16
            || self.relationship_id_prefix.len() > 16
        {
            return err("record_id_digits 1–12, prefixes up to 16 characters".into());
        }
        for (kind, table, valid) in [
            (
                "services",
                &self.services,
                is_service_category as fn(&str) -> bool,
            ),
            ("statuses", &self.statuses, is_status as fn(&str) -> bool),
        ] {
            let mut theirs: BTreeMap<&str, &str> = BTreeMap::new();
            for (ours, their) in table {
                if !valid(ours) {
                    return err(format!("{kind}: {ours:?} is not a Ponte value"));
                }
                if their.trim().is_empty()
                    || their.len() > MAX_TOKEN_LEN
                    || their.contains(['"', '\n', '\r'])
                {
                    return err(format!(
                        "{kind}: the entity value {their:?} must have 1–{MAX_TOKEN_LEN} characters"
                    ));
                }
                // A value that is itself a Ponte value must mean that value, or import is ambiguous.
                if valid(their) && their != ours {
                    return err(format!(
                        "{kind}: {their:?} is Ponte's own word for something else"
                    ));
                }
                if let Some(prev) = theirs.insert(their.as_str(), ours.as_str())
                    && prev != ours
                {
                    return err(format!(
                        "{kind}: {their:?} maps to both {prev:?} and {ours:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

fn cols(list: &[(Field, &str)]) -> Vec<(Field, String)> {
    list.iter().map(|(f, h)| (*f, h.to_string())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn weights(list: &[(&str, f64)]) -> Vec<(String, f64)> {
    list.iter().map(|(a, w)| (a.to_string(), *w)).collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Comuni of the Ambito Territoriale Sociale of Maglie (illustrative composition for the demo).
pub const ATS_MAGLIE_COMUNI: &[&str] = &[
    "E815", // Maglie
    "A572", // Bagnolo del Salento
    "B616", // Cannole
    "C335", // Castrignano de' Greci
    "D006", // Corigliano d'Otranto
    "D223", // Cursi
    "E053", // Giuggianello
    "F117", // Melpignano
    "F816", // Muro Leccese
    "G188", // Otranto
    "G285", // Palmariggi
    "I549", // Scorrano
];

/// Default seed of the demo federation.
pub const DEMO_SEED: u64 = 0x0050_4F4E_5445; // "PONTE"

/// The demo federation of the province of Lecce: ASL Lecce, Comune di Lecce, Comune di Galatina,
/// ATS Maglie, with `persons` people (about a third of them in care at two or more entities).
pub fn demo_scenario(persons: usize) -> Scenario {
    let mut residences = vec![
        ("E506".to_string(), 0.36),
        ("D862".to_string(), 0.20),
        ("M428".to_string(), 0.03),
    ];
    let ats_weights = [
        0.07, 0.01, 0.01, 0.015, 0.02, 0.015, 0.005, 0.01, 0.02, 0.025, 0.005, 0.03,
    ];
    for (code, w) in ATS_MAGLIE_COMUNI.iter().zip(ats_weights) {
        residences.push((code.to_string(), w));
    }
    let population = PopulationSpec {
        province: "LE".into(),
        capoluogo: "E506".into(),
        residences,
        rest_of_province: 0.155,
        foreign_born: 0.05,
        born_in_residence: 0.55,
        born_elsewhere_in_italy: 0.12,
        other_provinces: strings(&[
            "BR", "TA", "BA", "FG", "NA", "RM", "MI", "TO", "MT", "PZ", "CS", "RC",
        ]),
        born_in_capoluogo: 0.25,
        ceded_share: 0.01,
        age_bands: vec![
            (0, 17, 0.07),
            (18, 44, 0.07),
            (45, 64, 0.12),
            (65, 74, 0.18),
            (75, 84, 0.30),
            (85, 94, 0.22),
            (95, 104, 0.04),
        ],
        foreign_age_bands: vec![
            (0, 17, 0.10),
            (18, 44, 0.45),
            (45, 64, 0.35),
            (65, 85, 0.10),
        ],
        double_surname: 0.02,
        second_given_name: 0.06,
        married_women: 0.5,
        omocode_share: 0.003,
    };

    let asl = EntitySpec {
        node_id: "asl-lecce".into(),
        entity_name: "ASL Lecce".into(),
        entity_type: "asl".into(),
        share_of_population: 0.65,
        catchment: Vec::new(),
        outside_catchment_share: 0.0,
        services: weights(&[
            ("cure_domiciliari", 40.0),
            ("residenziale_rsa", 12.0),
            ("cure_palliative", 6.0),
            ("dimissioni_protette", 10.0),
            ("centro_diurno", 8.0),
            ("salute_mentale", 4.0),
            ("serd", 2.0),
        ]),
        second_service_share: 0.15,
        units: strings(&[
            "distretto-lecce",
            "distretto-galatina",
            "distretto-maglie",
            "distretto-gallipoli",
        ]),
        unit_for_service: [
            ("salute_mentale", "csm-lecce"),
            ("serd", "serd-lecce"),
            ("cure_palliative", "hospice-san-cesario"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
        unit_for_residence: [("E506", "distretto-lecce"), ("D862", "distretto-galatina")]
            .into_iter()
            .chain(ATS_MAGLIE_COMUNI.iter().map(|c| (*c, "distretto-maglie")))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        export: ExportFormat {
            delimiter: ';',
            date_format: "%d/%m/%Y".into(),
            columns: cols(&[
                (Field::RecordId, "ID_ASSISTITO"),
                (Field::RelationshipId, "ID_PRESA_IN_CARICO"),
                (Field::Surname, "COGNOME"),
                (Field::GivenNames, "NOME"),
                (Field::Sex, "SESSO"),
                (Field::BirthDate, "DATA_NASCITA"),
                (Field::Birthplace, "COMUNE_NASCITA"),
                (Field::CodiceFiscale, "CODICE_FISCALE"),
                (Field::Service, "PRESTAZIONE"),
                (Field::Status, "STATO"),
                (Field::Since, "DATA_INIZIO"),
                (Field::Unit, "UNITA_OPERATIVA"),
                (Field::CaseManager, "CASE_MANAGER"),
            ]),
            text_case: TextCase::Upper,
            sex_style: SexStyle::Letter,
            flag_style: FlagStyle::SN,
            record_id_prefix: "ASL-".into(),
            record_id_digits: 6,
            relationship_id_prefix: "PIC-".into(),
            services: pairs(&[
                ("cure_domiciliari", "ADI"),
                ("residenziale_rsa", "RSA"),
                ("cure_palliative", "CURE PALLIATIVE"),
                ("dimissioni_protette", "DIMISSIONE PROTETTA"),
                ("centro_diurno", "CENTRO DIURNO"),
                ("salute_mentale", "CSM"),
                ("serd", "SERD"),
            ]),
            statuses: pairs(&[
                ("segnalata", "SEGNALATO"),
                ("in_valutazione", "IN VALUTAZIONE UVM"),
                ("attiva", "IN CARICO"),
                ("sospesa", "SOSPESO"),
                ("conclusa", "DIMESSO"),
            ]),
            default_unit: "distretto-lecce".into(),
        },
        errors: ErrorRates {
            name_typo: 0.03,
            cf_missing: 0.08,
            birthplace_code: 0.2,
            case_variation: 0.01,
            ..ErrorRates::default()
        },
        duplicate_rate: 0.01,
    };

    let comune_lecce = EntitySpec {
        node_id: "comune-lecce".into(),
        entity_name: "Comune di Lecce".into(),
        entity_type: "comune".into(),
        share_of_population: 0.6,
        catchment: strings(&["E506"]),
        outside_catchment_share: 0.02,
        services: weights(&[
            ("segretariato_sociale", 25.0),
            ("servizio_sociale_professionale", 30.0),
            ("assistenza_domiciliare_sociale", 25.0),
            ("contributo_economico", 20.0),
        ]),
        second_service_share: 0.2,
        units: strings(&[
            "servizio-sociale-lecce-nord",
            "servizio-sociale-lecce-centro",
            "servizio-sociale-lecce-sud",
        ]),
        unit_for_service: [
            ("segretariato_sociale", "segretariato-sociale-lecce"),
            ("contributo_economico", "ufficio-contributi-lecce"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect(),
        unit_for_residence: BTreeMap::new(),
        export: ExportFormat {
            delimiter: ',',
            date_format: "%Y-%m-%d".into(),
            columns: cols(&[
                (Field::RecordId, "id_utente"),
                (Field::RelationshipId, "id_cartella"),
                (Field::Surname, "cognome"),
                (Field::GivenNames, "nome"),
                (Field::SurnameAlias, "cognome_acquisito"),
                (Field::Sex, "sesso"),
                (Field::BirthDate, "data_nascita"),
                (Field::Birthplace, "luogo_nascita"),
                (Field::CodiceFiscale, "codice_fiscale"),
                (Field::Service, "servizio"),
                (Field::Status, "stato"),
                (Field::Since, "data_apertura"),
                (Field::Unit, "ufficio"),
                (Field::CaseManager, "referente_caso"),
            ]),
            text_case: TextCase::AsWritten,
            sex_style: SexStyle::Word,
            flag_style: FlagStyle::SiNo,
            record_id_prefix: "U".into(),
            record_id_digits: 7,
            relationship_id_prefix: "CART/".into(),
            services: pairs(&[
                ("segretariato_sociale", "SEGRETARIATO"),
                ("servizio_sociale_professionale", "SERVIZIO SOCIALE"),
                ("assistenza_domiciliare_sociale", "SAD"),
                ("assistenza_domiciliare_sociale", "ASSISTENZA DOMICILIARE"),
                ("contributo_economico", "CONTRIBUTO"),
            ]),
            statuses: pairs(&[
                ("segnalata", "SEGNALAZIONE"),
                ("in_valutazione", "IN VALUTAZIONE"),
                ("attiva", "ATTIVO"),
                ("sospesa", "SOSPESO"),
                ("conclusa", "CHIUSO"),
            ]),
            default_unit: "servizio-sociale-lecce-centro".into(),
        },
        errors: ErrorRates {
            name_typo: 0.06,
            cf_missing: 0.18,
            case_variation: 0.08,
            married_surname: 0.25,
            ..ErrorRates::default()
        },
        duplicate_rate: 0.02,
    };

    let comune_galatina = EntitySpec {
        node_id: "comune-galatina".into(),
        entity_name: "Comune di Galatina".into(),
        entity_type: "comune".into(),
        share_of_population: 0.6,
        catchment: strings(&["D862"]),
        outside_catchment_share: 0.01,
        services: weights(&[
            ("segretariato_sociale", 25.0),
            ("servizio_sociale_professionale", 30.0),
            ("assistenza_domiciliare_sociale", 30.0),
            ("contributo_economico", 15.0),
        ]),
        second_service_share: 0.1,
        units: Vec::new(),
        unit_for_service: BTreeMap::new(),
        unit_for_residence: BTreeMap::new(),
        export: ExportFormat {
            delimiter: '|',
            date_format: "%d.%m.%Y".into(),
            columns: cols(&[
                (Field::Surname, "Cognome"),
                (Field::GivenNames, "Nome"),
                (Field::Sex, "Sesso"),
                (Field::BirthDate, "Nato il"),
                (Field::Birthplace, "Nato a"),
                (Field::CodiceFiscale, "C.F."),
                (Field::Service, "Intervento"),
                (Field::Status, "Stato pratica"),
                (Field::Since, "Dal"),
                (Field::CaseManager, "Resp. caso"),
                (Field::RecordId, "Cod. utente"),
                (Field::RelationshipId, "N. pratica"),
            ]),
            text_case: TextCase::Upper,
            sex_style: SexStyle::Letter,
            flag_style: FlagStyle::SN,
            record_id_prefix: "GAL".into(),
            record_id_digits: 5,
            relationship_id_prefix: "PR".into(),
            services: pairs(&[
                ("segretariato_sociale", "SEGRETARIATO SOCIALE"),
                ("servizio_sociale_professionale", "S.S.P."),
                ("assistenza_domiciliare_sociale", "SAD"),
                ("contributo_economico", "CONTRIBUTO ECONOMICO"),
            ]),
            statuses: pairs(&[
                ("segnalata", "NUOVA"),
                ("in_valutazione", "IN ISTRUTTORIA"),
                ("attiva", "IN CARICO"),
                ("sospesa", "SOSPESA"),
                ("conclusa", "CHIUSA"),
            ]),
            default_unit: "servizio-sociale-galatina".into(),
        },
        errors: ErrorRates {
            name_typo: 0.08,
            cf_missing: 0.28,
            hypocoristic: 0.05,
            married_surname: 0.4,
            date_day_month_swap: 0.03,
            ..ErrorRates::default()
        },
        duplicate_rate: 0.02,
    };

    let ats_maglie = EntitySpec {
        node_id: "ats-maglie".into(),
        entity_name: "ATS Maglie".into(),
        entity_type: "ats".into(),
        share_of_population: 0.6,
        catchment: strings(ATS_MAGLIE_COMUNI),
        outside_catchment_share: 0.01,
        services: weights(&[
            ("assegno_di_inclusione", 20.0),
            ("servizi_disabilita", 25.0),
            ("assistenza_domiciliare_sociale", 45.0),
            ("pronto_intervento_sociale", 5.0),
        ]),
        second_service_share: 0.1,
        units: strings(&["pua-ambito-maglie", "servizio-sociale-ambito-maglie"]),
        unit_for_service: [("assegno_di_inclusione", "ufficio-inclusione-maglie")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        unit_for_residence: BTreeMap::new(),
        export: ExportFormat {
            delimiter: '\t',
            date_format: "%Y%m%d".into(),
            columns: cols(&[
                (Field::RecordId, "PersonId"),
                (Field::RelationshipId, "CaseId"),
                (Field::Surname, "Surname"),
                (Field::GivenNames, "Name"),
                (Field::Sex, "Gender"),
                (Field::BirthDate, "DateOfBirth"),
                (Field::Birthplace, "PlaceOfBirth"),
                (Field::CodiceFiscale, "TaxCode"),
                (Field::Service, "Service"),
                (Field::Status, "Status"),
                (Field::Since, "StartDate"),
                (Field::Unit, "Unit"),
                (Field::CaseManager, "CaseManager"),
            ]),
            text_case: TextCase::AsWritten,
            sex_style: SexStyle::Letter,
            flag_style: FlagStyle::SiNo,
            record_id_prefix: "ATS-MA-".into(),
            record_id_digits: 6,
            relationship_id_prefix: "C".into(),
            // "ADI" here is the Assegno di Inclusione, at the ASL it is home care (DOMAIN.md §3):
            // only the per-entity mapping tells them apart.
            services: pairs(&[
                ("assegno_di_inclusione", "ADI"),
                ("servizi_disabilita", "DISABILITA"),
                ("assistenza_domiciliare_sociale", "SAD"),
                ("pronto_intervento_sociale", "PIS"),
            ]),
            // The ambito's platform already uses Ponte's status words.
            statuses: Vec::new(),
            default_unit: "pua-ambito-maglie".into(),
        },
        errors: ErrorRates {
            name_typo: 0.05,
            cf_missing: 0.12,
            ..ErrorRates::default()
        },
        duplicate_rate: 0.015,
    };

    Scenario {
        name: "demo-lecce".into(),
        seed: DEMO_SEED,
        persons,
        as_of: date(2025, 6, 30),
        population,
        entities: vec![asl, comune_lecce, comune_galatina, ats_maglie],
    }
}

/// The default research scenario, modelled on the province of Lecce: the demo's ASL, Comuni of
/// Lecce and Galatina and ATS Maglie, plus the Comune di Nardò and an accredited RSA provider
/// whose guests come from the whole province. About a minute at the default size; scales to a
/// million people ([`MAX_PERSONS`]).
pub fn lecce_scenario(persons: usize) -> Scenario {
    let mut s = demo_scenario(persons);
    s.name = "lecce".into();
    // Nardò's residents: taken from the rest of the province's weight.
    s.population.residences.push(("F842".to_string(), 0.05));
    s.population.rest_of_province -= 0.05;

    let mut nardo = s.entities[2].clone();
    nardo.node_id = "comune-nardo".into();
    nardo.entity_name = "Comune di Nardò".into();
    nardo.catchment = strings(&["F842"]);
    nardo.export.record_id_prefix = "NAR".into();
    nardo.export.default_unit = "servizio-sociale-nardo".into();
    nardo.errors = ErrorRates { name_typo: 0.05, cf_missing: 0.2, married_surname: 0.3, case_variation: 0.04, ..ErrorRates::default() };

    let rsa = EntitySpec {
        node_id: "rsa-villa-gelsi".into(),
        entity_name: "RSA Villa dei Gelsi".into(),
        entity_type: "provider".into(),
        // Guests are old: the share is applied to everyone, ages decide who fits the service.
        share_of_population: 0.06,
        catchment: Vec::new(),
        outside_catchment_share: 0.0,
        services: weights(&[("residenziale_rsa", 80.0), ("centro_diurno", 20.0)]),
        second_service_share: 0.05,
        units: strings(&["nucleo-a", "nucleo-b", "centro-diurno-gelsi"]),
        unit_for_service: [("centro_diurno", "centro-diurno-gelsi")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        unit_for_residence: BTreeMap::new(),
        export: ExportFormat {
            delimiter: ';',
            date_format: "%d-%m-%Y".into(),
            columns: cols(&[
                (Field::RecordId, "Codice ospite"),
                (Field::RelationshipId, "Codice ricovero"),
                (Field::Surname, "Cognome"),
                (Field::GivenNames, "Nome"),
                (Field::Sex, "Sesso"),
                (Field::BirthDate, "Data di nascita"),
                (Field::Birthplace, "Luogo di nascita"),
                (Field::CodiceFiscale, "Codice fiscale"),
                (Field::Service, "Tipo ospitalita"),
                (Field::Status, "Stato"),
                (Field::Since, "Data ingresso"),
                (Field::Unit, "Nucleo"),
            ]),
            text_case: TextCase::AsWritten,
            sex_style: SexStyle::Letter,
            flag_style: FlagStyle::SN,
            record_id_prefix: "OSP".into(),
            record_id_digits: 5,
            relationship_id_prefix: "RIC".into(),
            services: pairs(&[("residenziale_rsa", "RESIDENZIALE"), ("centro_diurno", "DIURNO")]),
            statuses: pairs(&[
                ("segnalata", "IN LISTA"),
                ("in_valutazione", "IN VALUTAZIONE"),
                ("attiva", "OSPITE"),
                ("sospesa", "RICOVERO OSPEDALIERO"),
                ("conclusa", "DIMESSO"),
            ]),
            default_unit: "nucleo-a".into(),
        },
        errors: ErrorRates { name_typo: 0.04, cf_missing: 0.03, hypocoristic: 0.03, ..ErrorRates::default() },
        duplicate_rate: 0.005,
    };
    s.entities.push(nardo);
    s.entities.push(rsa);
    s
}

/// Built-in scenarios by name.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("lecce", "province of Lecce: ASL, Comuni of Lecce, Galatina and Nardò, ATS Maglie, an RSA provider (the research default)"),
    ("demo", "the demo federation: ASL Lecce, Comuni of Lecce and Galatina, ATS Maglie"),
];

/// Largest scenario file read.
pub const MAX_SCENARIO_BYTES: u64 = 4 * 1024 * 1024;

/// A built-in scenario by name (`lecce`, `demo`) with `persons` people, or a scenario file (TOML,
/// as `ponte-sim scenario NAME` prints one), whose own `persons` is kept unless `persons` is
/// given. The scenario is checked before it is returned.
pub fn load_scenario(name_or_file: &str, persons: Option<usize>) -> Result<Scenario, SynthError> {
    let mut s = match name_or_file {
        "lecce" => lecce_scenario(persons.unwrap_or(20_000)),
        "demo" => demo_scenario(persons.unwrap_or(400)),
        path => {
            let p = std::path::Path::new(path);
            let meta = std::fs::metadata(p).map_err(|e| {
                SynthError(format!(
                    "{path:?} is neither a built-in scenario ({}) nor a readable file: {e}",
                    SCENARIOS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ))
            })?;
            if meta.len() > MAX_SCENARIO_BYTES {
                return Err(SynthError(format!("{path}: larger than {MAX_SCENARIO_BYTES} bytes")));
            }
            let text = std::fs::read_to_string(p).map_err(|e| SynthError(format!("{path}: {e}")))?;
            let mut s: Scenario = toml::from_str(&text).map_err(|e| SynthError(format!("{path}: not a valid scenario: {e}")))?;
            if let Some(n) = persons {
                s.persons = n;
            }
            s
        }
    };
    if let Some(n) = persons {
        s.persons = n;
    }
    s.check()?;
    Ok(s)
}
