//! The synthetic population: people with Italian identities, old-skewed, mostly born in Salento.
//!
//! Each [`Person`] is the *true* identity, as the civil registry would hold it; the exports derive
//! their (possibly wrong) values from it through [`super::errors`]. A person's codice fiscale is
//! computed from the true values with the node's own `compute`, so the truth and the normaliser
//! agree by construction; people who would share a CF get omocode variants, as the Agenzia delle
//! Entrate does. Birthplaces are Belfiore codes valid *at the birth date* (Presicce H047 before
//! 2019, the ceded comuni Pola / Fiume / Zara for people born there before 1947).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use ponte_node::normalise::codice_fiscale;
use ponte_node::normalise::places::{Place, Places};
use ponte_node::normalise::{BirthDate, Sex};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::calendar::{add_days, age_on, to_days};
use super::names::{self, Cohort, FOREIGN_ORIGINS, ForeignOrigin};
use super::scenario::PopulationSpec;
use super::{SynthError, pick_weighted};

/// One synthetic person: the true identity behind every record that refers to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// 1-based, unique within a generated population; appears only in the truth file.
    pub person_id: u32,
    /// Birth surname as registered ("De Giorgi", "D'Amico", "Calò", "Rizzo Quarta").
    pub surname: String,
    /// Given names in order ("Maria Grazia", "Giuseppe").
    pub given_names: String,
    pub sex: Sex,
    pub birth_date: BirthDate,
    /// Belfiore code valid at the birth date, or the country's `Z` code for the foreign-born.
    pub birthplace_code: String,
    /// Name of the birthplace at the birth date ("Presicce", "Pola", "Albania").
    pub birthplace_name: String,
    /// The person's codice fiscale (an omocode for a few); `None` for STP / ENI people.
    pub codice_fiscale: Option<String>,
    /// Another identifier: (`"STP"` or `"ENI"`, 16-character code).
    pub other_id: Option<(String, String)>,
    /// Husband's surname, for married or widowed women whose records may carry it.
    pub married_surname: Option<String>,
    /// Widowed women are written "ROSSI VED. BIANCHI".
    pub widowed: bool,
    /// Belfiore code of the comune of residence (today).
    pub residence_code: String,
    pub residence_name: String,
}

impl Person {
    /// Whether the person was born abroad (country `Z` code).
    pub fn foreign_born(&self) -> bool {
        self.birthplace_code.starts_with('Z')
    }

    /// The person's country of origin entry, for the foreign-born.
    pub fn origin(&self) -> Option<&'static ForeignOrigin> {
        FOREIGN_ORIGINS
            .iter()
            .find(|o| o.code == self.birthplace_code)
    }

    pub fn age_on(&self, on: BirthDate) -> u16 {
        age_on(self.birth_date, on)
    }
}

/// The bundled places indexed by code and by province (all validity periods), built once.
struct PlaceIndex {
    by_code: BTreeMap<&'static str, Vec<&'static Place>>,
    by_province: BTreeMap<&'static str, Vec<&'static Place>>,
}

fn index() -> &'static PlaceIndex {
    static INDEX: OnceLock<PlaceIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_code: BTreeMap<&'static str, Vec<&'static Place>> = BTreeMap::new();
        let mut by_province: BTreeMap<&'static str, Vec<&'static Place>> = BTreeMap::new();
        for p in Places::bundled().all() {
            by_code.entry(p.code.as_str()).or_default().push(p);
            if !p.foreign {
                by_province.entry(p.province.as_str()).or_default().push(p);
            }
        }
        PlaceIndex {
            by_code,
            by_province,
        }
    })
}

/// The entry of `code` valid on `on`, if any.
pub fn place_on(code: &str, on: BirthDate) -> Option<&'static Place> {
    index()
        .by_code
        .get(code)?
        .iter()
        .copied()
        .find(|p| p.covers(on))
}

/// The entry of `code` with the latest validity (the current name for a comune still existing).
pub fn latest_place(code: &str) -> Option<&'static Place> {
    index().by_code.get(code)?.iter().copied().max_by_key(|p| {
        p.valid_to.unwrap_or(BirthDate {
            year: 9999,
            month: 12,
            day: 31,
        })
    })
}

/// A place name as people write it: "Castri Di Lecce" → "Castri di Lecce",
/// "Corigliano D'Otranto" → "Corigliano d'Otranto". Capitalised names stay as they are.
pub fn display_name(official: &str) -> String {
    const LOWER: &[&str] = &[
        "di", "de", "del", "della", "delle", "dei", "degli", "dello", "in", "al", "sul", "sulla",
        "e", "la", "lo", "le", "il", "de'", "dal", "da", "sotto", "sopra",
    ];
    let mut out = Vec::new();
    for (i, word) in official.split(' ').enumerate() {
        let lower = word.to_lowercase();
        if i > 0 && LOWER.contains(&lower.as_str()) {
            out.push(lower);
        } else if i > 0 && (lower.starts_with("d'") && word.len() > 2) {
            out.push(format!("d'{}", &word[2..]));
        } else {
            out.push(word.to_string());
        }
    }
    out.join(" ")
}

/// Comuni of `province` valid on `on`, one entry per code, in code order.
fn places_in_province(province: &str, on: BirthDate) -> Vec<&'static Place> {
    let mut v: Vec<&'static Place> = index()
        .by_province
        .get(province)
        .map(|list| list.iter().copied().filter(|p| p.covers(on)).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| a.code.cmp(&b.code));
    v.dedup_by(|a, b| a.code == b.code);
    v
}

/// Draws `spec`'s population. Deterministic for a given `rng` state.
pub fn generate_population(
    spec: &PopulationSpec,
    count: usize,
    as_of: BirthDate,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Person>, SynthError> {
    let province_now = places_in_province(&spec.province, as_of);
    if province_now.is_empty() {
        return Err(SynthError(format!(
            "population.province = {:?}: no comuni valid on {:?} in the bundled table",
            spec.province, as_of
        )));
    }
    let mut residences: Vec<(&'static Place, f64)> = Vec::new();
    for (code, w) in &spec.residences {
        let place = place_on(code, as_of).ok_or_else(|| {
            SynthError(format!(
                "population.residences: {code:?} is not a comune valid on {as_of:?}"
            ))
        })?;
        residences.push((place, *w));
    }
    let listed: BTreeSet<&str> = spec.residences.iter().map(|(c, _)| c.as_str()).collect();
    let rest: Vec<&'static Place> = province_now
        .iter()
        .copied()
        .filter(|p| !listed.contains(p.code.as_str()))
        .collect();

    let mut issued: BTreeSet<String> = BTreeSet::new();
    let mut persons = Vec::with_capacity(count);
    for i in 0..count {
        let person_id = u32::try_from(i + 1).map_err(|_| SynthError("too many persons".into()))?;
        // Residence: a listed comune or any other comune of the province.
        let listed_weight: f64 = residences.iter().map(|(_, w)| *w).sum();
        let residence = if rng.random::<f64>() * (listed_weight + spec.rest_of_province)
            < listed_weight
            || rest.is_empty()
        {
            let weights: Vec<f64> = residences.iter().map(|(_, w)| *w).collect();
            residences[pick_weighted(rng, &weights)].0
        } else {
            rest.choose(rng).copied().expect("rest is not empty")
        };

        let origin = if rng.random::<f64>() < spec.foreign_born {
            let weights: Vec<f64> = FOREIGN_ORIGINS.iter().map(|o| o.weight as f64).collect();
            Some(&FOREIGN_ORIGINS[pick_weighted(rng, &weights)])
        } else {
            None
        };

        // Age, then sex (women live longer: the very old are mostly women).
        let bands = if origin.is_some() {
            &spec.foreign_age_bands
        } else {
            &spec.age_bands
        };
        let weights: Vec<f64> = bands.iter().map(|b| b.2).collect();
        let (min_age, max_age, _) = bands[pick_weighted(rng, &weights)];
        let mut birth = birth_in_age_range(rng, as_of, min_age, max_age);
        if let Some(o) = origin
            && birth.year < o.born_from
        {
            birth = birth_in_age_range(
                rng,
                as_of,
                20,
                as_of.year.saturating_sub(o.born_from).max(20),
            );
        }
        let age = age_on(birth, as_of);
        let p_female = match (origin.map(|o| o.code), age) {
            (Some("Z138"), _) => 0.8,
            (_, 85..) => 0.66,
            (_, 65..) => 0.56,
            _ => 0.5,
        };
        let sex = if rng.random::<f64>() < p_female {
            Sex::F
        } else {
            Sex::M
        };

        // Birthplace.
        let (birthplace_code, birthplace_name) = match origin {
            Some(o) => match place_on(o.code, birth) {
                Some(p) => {
                    let common = names::COUNTRY_COMMON_NAMES
                        .iter()
                        .find(|(c, _)| *c == p.code)
                        .map(|(_, n)| n.to_string());
                    (
                        p.code.clone(),
                        common.unwrap_or_else(|| display_name(&p.name)),
                    )
                }
                None => italian_birthplace(spec, rng, residence, birth)?,
            },
            None => italian_birthplace(spec, rng, residence, birth)?,
        };
        let foreign = birthplace_code.starts_with('Z');
        let origin = if foreign { origin } else { None };

        // Names.
        let italian_names = origin.is_none_or(|o| o.italian_names);
        let (surname, given_names) = if italian_names {
            let mut surname = zipf_surname(rng).to_string();
            let double_share = if birth.year >= 2022 {
                0.5
            } else {
                spec.double_surname
            };
            if rng.random::<f64>() < double_share {
                let second = zipf_surname(rng);
                if second != surname {
                    surname = format!("{surname} {second}");
                }
            }
            (surname, italian_given_names(spec, rng, sex, birth.year))
        } else {
            let o = origin.expect("foreign names need an origin");
            let surname = o
                .surnames
                .choose(rng)
                .copied()
                .unwrap_or("Rossi")
                .to_string();
            let list = if sex == Sex::M { o.male } else { o.female };
            (
                surname,
                list.choose(rng).copied().unwrap_or("Maria").to_string(),
            )
        };
        let mut married_surname = None;
        let mut widowed = false;
        if sex == Sex::F && italian_names && age >= 25 && rng.random::<f64>() < spec.married_women {
            let mut husband = zipf_surname(rng);
            while surname.starts_with(husband) {
                husband = zipf_surname(rng);
            }
            married_surname = Some(husband.to_string());
            widowed = rng.random::<f64>() < if age >= 70 { 0.55 } else { 0.08 };
        }

        // Identifiers.
        let mut codice_fiscale = None;
        let mut other_id = None;
        match origin.and_then(|o| o.no_cf) {
            Some((kind, share)) if rng.random::<f64>() < share => {
                // STP/ENI: kind + region (Puglia, 160) + ASL (illustrative) + 7-digit serial,
                // sequential as issued.
                other_id = Some((
                    kind.to_string(),
                    format!("{kind}160116{:07}", (1_000 + i) % 10_000_000),
                ));
            }
            _ => {
                let base =
                    codice_fiscale::compute(&surname, &given_names, sex, birth, &birthplace_code);
                let mut cf = base.clone();
                // Someone outside the population may already hold the base code.
                let mut level = if rng.random::<f64>() < spec.omocode_share {
                    rng.random_range(1..=2u8)
                } else {
                    0
                };
                if level > 0 {
                    cf = codice_fiscale::omocode(&base, level).unwrap_or(base.clone());
                }
                while issued.contains(&cf) && level < 7 {
                    level += 1;
                    cf = codice_fiscale::omocode(&base, level).unwrap_or(base.clone());
                }
                issued.insert(cf.clone());
                codice_fiscale = Some(cf);
            }
        }

        persons.push(Person {
            person_id,
            surname,
            given_names,
            sex,
            birth_date: birth,
            birthplace_code,
            birthplace_name,
            codice_fiscale,
            other_id,
            married_surname,
            widowed,
            residence_code: residence.code.clone(),
            residence_name: display_name(&residence.name),
        });
    }
    Ok(persons)
}

/// A birth date for someone aged between `min_age` and `max_age` (inclusive) on `as_of`.
fn birth_in_age_range(
    rng: &mut ChaCha8Rng,
    as_of: BirthDate,
    min_age: u16,
    max_age: u16,
) -> BirthDate {
    let max_age = max_age.max(min_age);
    let latest = to_days(as_of) - (min_age as i64 * 36_525) / 100;
    let earliest = to_days(as_of) - ((max_age as i64 + 1) * 36_525) / 100 + 1;
    let offset = rng.random_range(0..=(latest - earliest).max(0));
    add_days(as_of, earliest + offset - to_days(as_of))
}

fn zipf_surname(rng: &mut ChaCha8Rng) -> &'static str {
    // Cumulative weights built once per call are cheap for ~85 names.
    let weights: Vec<f64> = (0..names::SURNAMES.len())
        .map(names::surname_weight)
        .collect();
    names::SURNAMES[pick_weighted(rng, &weights)]
}

fn italian_given_names(spec: &PopulationSpec, rng: &mut ChaCha8Rng, sex: Sex, year: u16) -> String {
    let table = match (Cohort::of_year(year), sex) {
        (Cohort::Elder, Sex::M) => names::ELDER_MALE,
        (Cohort::Elder, Sex::F) => names::ELDER_FEMALE,
        (Cohort::Adult, Sex::M) => names::ADULT_MALE,
        (Cohort::Adult, Sex::F) => names::ADULT_FEMALE,
        (Cohort::Young, Sex::M) => names::YOUNG_MALE,
        (Cohort::Young, Sex::F) => names::YOUNG_FEMALE,
    };
    let weights: Vec<f64> = table.iter().map(|(_, w)| *w as f64).collect();
    let first = table[pick_weighted(rng, &weights)].0;
    if !first.contains(' ') && rng.random::<f64>() < spec.second_given_name {
        let second = table[pick_weighted(rng, &weights)].0;
        if !second.contains(' ') && second != first {
            return format!("{first} {second}");
        }
    }
    first.to_string()
}

/// An Italian birthplace valid at `birth`: the residence comune (or the comune it was before a
/// merger), another comune of the province, a comune elsewhere in Italy, or a ceded comune.
fn italian_birthplace(
    spec: &PopulationSpec,
    rng: &mut ChaCha8Rng,
    residence: &Place,
    birth: BirthDate,
) -> Result<(String, String), SynthError> {
    let named = |p: &Place| (p.code.clone(), display_name(&p.name));
    if birth.year < 1947 && rng.random::<f64>() < spec.ceded_share {
        let valid: Vec<&'static Place> = names::CEDED
            .iter()
            .filter_map(|c| place_on(c, birth))
            .collect();
        if let Some(p) = valid.choose(rng) {
            return Ok(named(p));
        }
    }
    let roll: f64 = rng.random();
    if roll < spec.born_in_residence {
        if let Some(p) = place_on(&residence.code, birth) {
            return Ok(named(p));
        }
        let before: Vec<&'static Place> = names::MERGED_INTO
            .iter()
            .filter(|(_, new)| *new == residence.code)
            .filter_map(|(old, _)| place_on(old, birth))
            .collect();
        if let Some(p) = before.choose(rng) {
            return Ok(named(p));
        }
    } else if roll < spec.born_in_residence + spec.born_elsewhere_in_italy
        && !spec.other_provinces.is_empty()
    {
        let province = spec.other_provinces.choose(rng).expect("not empty");
        let candidates = places_in_province(province, birth);
        if let Some(p) = candidates.choose(rng) {
            return Ok(named(p));
        }
    }
    // Another comune of the province; the capoluogo is over-represented (hospital births).
    if let Some(p) = place_on(&spec.capoluogo, birth)
        && rng.random::<f64>() < spec.born_in_capoluogo
    {
        return Ok(named(p));
    }
    let candidates = places_in_province(&spec.province, birth);
    match candidates.choose(rng) {
        Some(p) => Ok(named(p)),
        None => Err(SynthError(format!(
            "no comune of province {:?} valid on {:?} in the bundled table",
            spec.province, birth
        ))),
    }
}

/// Index of persons by surname (for "CF typed from a relative").
pub fn by_surname(persons: &[Person]) -> BTreeMap<&str, Vec<usize>> {
    let mut map: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in persons.iter().enumerate() {
        map.entry(p.surname.as_str()).or_default().push(i);
    }
    map
}
