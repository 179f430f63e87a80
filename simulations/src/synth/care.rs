//! Who is in care where: care relationships between the population and the scenario's entities.
//!
//! An entity takes in a person resident in its catchment with probability
//! `share_of_population` (and someone from elsewhere with `outside_catchment_share`), for a service
//! drawn from its own weights among those that fit the person's age and sex. Because the ASL
//! serves the whole province and each social entity serves its own comuni, many people are
//! followed by two or three entities: the cross-entity links Ponte exists to find. Where several
//! entities follow a person (an open relationship at each), exactly one of them is case manager,
//! on exactly one of its open relationships.

use ponte_node::normalise::{BirthDate, Sex};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;

use super::calendar::{add_days, age_on, to_days};
use super::pick_weighted;
use super::population::Person;
use super::scenario::{EntitySpec, Scenario};

/// One care relationship, in Ponte's vocabulary (the export translates it to the entity's own).
#[derive(Debug, Clone, PartialEq)]
pub struct CareRelationship {
    /// Ponte service category.
    pub service: String,
    /// Ponte status.
    pub status: String,
    /// Start date (only its month leaves a node).
    pub since: BirthDate,
    pub unit: String,
    pub case_manager: bool,
}

/// A person known to an entity, with the relationships the entity holds with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Index into the scenario's entities.
    pub entity: usize,
    /// Index into the population.
    pub person: usize,
    pub relationships: Vec<CareRelationship>,
}

/// Status shares of a relationship (mostly active).
pub const STATUS_WEIGHTS: [(&str, f64); 5] = [
    ("segnalata", 0.06),
    ("in_valutazione", 0.10),
    ("attiva", 0.62),
    ("sospesa", 0.07),
    ("conclusa", 0.15),
];

/// Whether a service category plausibly applies to someone of this age and sex.
pub fn fits(category: &str, age: u16, sex: Sex) -> bool {
    match category {
        "serd" => (15..=80).contains(&age),
        "salute_mentale" => age >= 18,
        "residenziale_rsa" => age >= 60,
        "npia" | "tutela_minori" => age < 18,
        "consultorio" => (14..=60).contains(&age),
        "ivg" => sex == Sex::F && (14..=50).contains(&age),
        "violenza_di_genere" => age >= 16,
        "assegno_di_inclusione"
        | "contributo_economico"
        | "segretariato_sociale"
        | "pronto_intervento_sociale"
        | "residenza_fittizia" => age >= 18,
        _ => true,
    }
}

/// Open = the entity still follows the person.
pub fn is_open(status: &str) -> bool {
    status != "conclusa"
}

/// Draws every registration, ordered by person then entity. Deterministic for a given `rng`.
pub fn assign_care(
    scenario: &Scenario,
    persons: &[Person],
    rng: &mut ChaCha8Rng,
) -> Vec<Registration> {
    let as_of = scenario.as_of;
    let mut out = Vec::new();
    for (pi, person) in persons.iter().enumerate() {
        let age = age_on(person.birth_date, as_of);
        let first = out.len();
        for (ei, entity) in scenario.entities.iter().enumerate() {
            let in_catchment =
                entity.catchment.is_empty() || entity.catchment.contains(&person.residence_code);
            let p = if in_catchment {
                entity.share_of_population
            } else {
                entity.outside_catchment_share
            };
            if !(p > 0.0 && rng.random::<f64>() < p) {
                continue;
            }
            let home_unit = entity
                .unit_for_residence
                .get(&person.residence_code)
                .or_else(|| entity.units.choose(rng))
                .unwrap_or(&entity.export.default_unit)
                .clone();
            let mut relationships = Vec::new();
            let mut taken: Vec<&str> = Vec::new();
            let wanted = if rng.random::<f64>() < entity.second_service_share {
                2
            } else {
                1
            };
            for _ in 0..wanted {
                let Some(service) = draw_service(entity, age, person.sex, &taken, rng) else {
                    break;
                };
                taken.push(service);
                relationships.push(relationship(
                    entity,
                    service,
                    &home_unit,
                    person.birth_date,
                    as_of,
                    rng,
                ));
            }
            if !relationships.is_empty() {
                out.push(Registration {
                    entity: ei,
                    person: pi,
                    relationships,
                });
            }
        }
        choose_case_manager(&mut out[first..], rng);
    }
    out
}

fn draw_service<'a>(
    entity: &'a EntitySpec,
    age: u16,
    sex: Sex,
    taken: &[&str],
    rng: &mut ChaCha8Rng,
) -> Option<&'a str> {
    let candidates: Vec<(&'a str, f64)> = entity
        .services
        .iter()
        .filter(|(c, w)| *w > 0.0 && fits(c, age, sex) && !taken.contains(&c.as_str()))
        .map(|(c, w)| (c.as_str(), *w))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let weights: Vec<f64> = candidates.iter().map(|c| c.1).collect();
    Some(candidates[pick_weighted(rng, &weights)].0)
}

fn relationship(
    entity: &EntitySpec,
    service: &str,
    home_unit: &str,
    birth: BirthDate,
    as_of: BirthDate,
    rng: &mut ChaCha8Rng,
) -> CareRelationship {
    let weights: Vec<f64> = STATUS_WEIGHTS.iter().map(|s| s.1).collect();
    let status = STATUS_WEIGHTS[pick_weighted(rng, &weights)].0;
    // Days before `as_of`: recent for referrals and assessments, older for closed cases.
    let (lo, hi) = match status {
        "segnalata" => (0, 60),
        "in_valutazione" => (10, 150),
        "attiva" => (30, 2_500),
        "sospesa" => (60, 1_800),
        _ => (120, 3_000),
    };
    let mut since = add_days(as_of, -rng.random_range(lo..=hi));
    if since < birth {
        let span = (to_days(as_of) - to_days(birth)).max(0);
        since = add_days(birth, rng.random_range(0..=span));
    }
    let unit = entity
        .unit_for_service
        .get(service)
        .map_or(home_unit, String::as_str)
        .to_string();
    CareRelationship {
        service: service.to_string(),
        status: status.to_string(),
        since,
        unit,
        case_manager: false,
    }
}

/// Where two or more entities follow the person, one of them (uniformly) becomes case manager on
/// one open relationship, an active one if it has any.
fn choose_case_manager(registrations: &mut [Registration], rng: &mut ChaCha8Rng) {
    let following: Vec<usize> = (0..registrations.len())
        .filter(|&i| {
            registrations[i]
                .relationships
                .iter()
                .any(|r| is_open(&r.status))
        })
        .collect();
    if following.len() < 2 {
        return;
    }
    let chosen = *following.choose(rng).expect("at least two");
    let rels = &mut registrations[chosen].relationships;
    let at = rels
        .iter()
        .position(|r| r.status == "attiva")
        .or_else(|| rels.iter().position(|r| is_open(&r.status)))
        .expect("an open relationship");
    rels[at].case_manager = true;
}
