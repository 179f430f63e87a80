//! Tests of the generator as a whole; module-level helpers are tested in their own files.

use std::collections::{BTreeMap, BTreeSet};

use ponte_node::config::ImportConfig;
use ponte_node::normalise::codice_fiscale;
use ponte_node::normalise::{BirthDate, Sex};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::calendar::{date, format_date};
use super::errors::{ErrorKind, ErrorRates, RenderContext, cf_check_consistent, render_record};
use super::population::{Person, by_surname, place_on};
use super::scenario::{SERVICE_CATEGORIES, STATUSES, TextCase};
use super::*;

fn demo_no_errors(persons: usize) -> Scenario {
    let mut s = demo_scenario(persons);
    for e in &mut s.entities {
        e.errors = ErrorRates::none();
        e.duplicate_rate = 0.0;
    }
    s
}

/// Parses an export with its own delimiter: (headers, rows).
fn parse(export: &EntityExport) -> (Vec<String>, Vec<Vec<String>>) {
    let delimiter = export.import.delimiter.as_bytes()[0];
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(export.csv.as_slice());
    let headers = reader
        .headers()
        .expect("header row")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            r.expect("well-formed row")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (headers, rows)
}

fn column(headers: &[String], name: &str) -> usize {
    headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {headers:?}"))
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let a = generate(&demo_scenario(300));
    let b = generate(&demo_scenario(300));
    assert_eq!(a.persons, b.persons);
    assert_eq!(a.truth, b.truth);
    assert_eq!(a.truth_csv().unwrap(), b.truth_csv().unwrap());
    for (x, y) in a.exports.iter().zip(&b.exports) {
        assert_eq!(x.csv, y.csv, "{}", x.node_id);
        assert_eq!(a.import_toml(x).unwrap(), b.import_toml(y).unwrap());
    }
    let mut other = demo_scenario(300);
    other.seed += 1;
    let c = generate(&other);
    assert_ne!(a.truth_csv().unwrap(), c.truth_csv().unwrap());
    for (x, z) in a.exports.iter().zip(&c.exports) {
        assert_ne!(x.csv, z.csv, "{}", x.node_id);
    }
}

#[test]
fn written_files_are_the_generated_bytes() {
    let g = generate(&demo_scenario(60));
    let dir = std::env::temp_dir().join(format!("ponte-synth-test-{}", std::process::id()));
    g.write_to(&dir).unwrap();
    for e in &g.exports {
        assert_eq!(
            std::fs::read(dir.join(format!("{}.csv", e.node_id))).unwrap(),
            e.csv
        );
        let text = std::fs::read_to_string(dir.join(format!("{}.import.toml", e.node_id))).unwrap();
        let back: ImportConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, e.import, "{}", e.node_id);
    }
    assert_eq!(
        std::fs::read(dir.join("truth.csv")).unwrap(),
        g.truth_csv().unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn population_is_old_skewed_salentine_and_well_identified() {
    let s = demo_scenario(4000);
    let g = generate(&s);
    let n = g.persons.len() as f64;
    let old = g.persons.iter().filter(|p| p.age_on(s.as_of) >= 65).count() as f64;
    let minors = g.persons.iter().filter(|p| p.age_on(s.as_of) < 18).count();
    let foreign = g.persons.iter().filter(|p| p.foreign_born()).count() as f64;
    assert!(old / n > 0.6, "share aged 65+ = {}", old / n);
    assert!(minors > 0);
    assert!(
        (0.03..0.08).contains(&(foreign / n)),
        "foreign-born share {}",
        foreign / n
    );
    assert!(
        g.persons.iter().any(
            |p| p.other_id.as_ref().is_some_and(|o| o.0 == "STP") && p.codice_fiscale.is_none()
        )
    );
    assert!(
        g.persons.iter().any(|p| p.birthplace_code == "H047"),
        "someone born in Presicce before 2019"
    );
    assert!(
        g.persons
            .iter()
            .any(|p| super::names::CEDED.contains(&p.birthplace_code.as_str()))
    );
    assert!(g.persons.iter().any(|p| p.married_surname.is_some()));
    assert!(g.persons.iter().any(|p| p.surname.contains('\'')));

    // A few surnames are very frequent.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &g.persons {
        *counts.entry(p.surname.as_str()).or_default() += 1;
    }
    assert!(
        counts["Greco"] as f64 / n > 0.05,
        "Greco: {}",
        counts["Greco"]
    );

    let mut ids = BTreeSet::new();
    let mut cfs = BTreeSet::new();
    for p in &g.persons {
        assert!(ids.insert(p.person_id));
        // Every birthplace is a code valid at the birth date.
        let place = place_on(&p.birthplace_code, p.birth_date)
            .unwrap_or_else(|| panic!("{} not valid on {:?}", p.birthplace_code, p.birth_date));
        assert_eq!(place.foreign, p.foreign_born());
        if p.birthplace_code == "H047" {
            assert!(p.birth_date < date(2019, 5, 15));
        }
        match (&p.codice_fiscale, &p.other_id) {
            (Some(cf), None) => {
                let valid = codice_fiscale::validate(cf).unwrap_or_else(|e| panic!("{cf}: {e}"));
                assert!(cf_check_consistent(cf));
                assert_eq!(valid.place_code, p.birthplace_code);
                let base = codice_fiscale::compute(
                    &p.surname,
                    &p.given_names,
                    p.sex,
                    p.birth_date,
                    &p.birthplace_code,
                );
                assert!(valid.omocodia_level > 0 || *cf == base, "{cf} vs {base}");
                assert!(cfs.insert(cf.clone()), "CF {cf} given twice");
            }
            (None, Some((kind, code))) => {
                assert!(kind == "STP" || kind == "ENI");
                assert!(
                    code.starts_with(kind.as_str())
                        && code.len() == 16
                        && code[3..].bytes().all(|b| b.is_ascii_digit())
                );
            }
            other => panic!("person {} has {other:?}", p.person_id),
        }
    }
    assert!(
        g.persons
            .iter()
            .filter_map(|p| p.codice_fiscale.as_deref())
            .any(|cf| codice_fiscale::validate(cf).unwrap().omocodia_level > 0)
    );
}

#[test]
fn many_people_are_followed_by_several_entities() {
    let g = generate(&demo_scenario(500));
    let mut entities: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    for t in &g.truth {
        entities
            .entry(t.person_id)
            .or_default()
            .insert(t.node_id.as_str());
    }
    let several = entities.values().filter(|e| e.len() >= 2).count();
    assert!(
        several as f64 >= 0.2 * 500.0,
        "{several} of 500 persons at two or more entities"
    );
    assert!(
        entities.values().any(|e| e.len() >= 3),
        "someone at three entities"
    );
}

#[test]
fn exactly_one_case_manager_where_several_entities_follow() {
    let s = demo_scenario(800);
    let mut rng = stage_rng(s.seed, "population");
    let persons =
        population::generate_population(&s.population, s.persons, s.as_of, &mut rng).unwrap();
    let regs = care::assign_care(&s, &persons, &mut stage_rng(s.seed, "care"));
    let mut by_person: BTreeMap<usize, Vec<&care::Registration>> = BTreeMap::new();
    for r in &regs {
        by_person.entry(r.person).or_default().push(r);
    }
    // A person's relationships at one entity share a unit, except service-specific ones.
    for r in &regs {
        let spec = &s.entities[r.entity];
        let units: BTreeSet<&str> = r
            .relationships
            .iter()
            .filter(|x| !spec.unit_for_service.contains_key(&x.service))
            .map(|x| x.unit.as_str())
            .collect();
        assert!(units.len() <= 1, "{units:?}");
    }
    let mut with_plan = 0;
    for rs in by_person.values() {
        let following = rs
            .iter()
            .filter(|r| r.relationships.iter().any(|x| care::is_open(&x.status)))
            .count();
        let flags: Vec<&care::CareRelationship> = rs
            .iter()
            .flat_map(|r| r.relationships.iter())
            .filter(|x| x.case_manager)
            .collect();
        if following >= 2 {
            with_plan += 1;
            assert_eq!(flags.len(), 1);
            assert!(care::is_open(&flags[0].status));
        } else {
            assert!(flags.is_empty());
        }
    }
    assert!(with_plan > 50, "{with_plan}");
    // The flag reaches the truth, and the exports write it in the entity's style.
    let g = generate(&s);
    assert_eq!(g.truth.iter().filter(|t| t.case_manager).count(), with_plan);
}

#[test]
fn exports_read_with_their_own_mapping() {
    let s = demo_scenario(500);
    let g = generate(&s);
    let mut formats = BTreeSet::new();
    for (e, spec) in g.exports.iter().zip(&s.entities) {
        assert_eq!(e.file_name, format!("{}.csv", e.node_id));
        e.import
            .check()
            .unwrap_or_else(|err| panic!("{}: {err}", e.node_id));
        formats.insert((
            e.import.delimiter.clone(),
            e.import.date_format.clone(),
            e.import.columns.surname.clone(),
        ));
        let (headers, rows) = parse(e);
        let m = &e.import.columns;
        let named: Vec<&String> = [
            &m.record_id,
            &m.surname,
            &m.given_names,
            &m.birth_date,
            &m.service,
            &m.status,
            &m.since,
        ]
        .into_iter()
        .chain(
            [
                &m.relationship_id,
                &m.sex,
                &m.birthplace,
                &m.codice_fiscale,
                &m.surname_alias,
                &m.unit,
                &m.case_manager,
            ]
            .into_iter()
            .flatten(),
        )
        .collect();
        assert_eq!(
            named.len(),
            headers.len(),
            "{}: every column is mapped",
            e.node_id
        );
        for h in named {
            column(&headers, h);
        }
        let truth: Vec<&TruthRow> = g.truth.iter().filter(|t| t.node_id == e.node_id).collect();
        assert_eq!(rows.len(), truth.len());
        assert!(!rows.is_empty());
        let (c_service, c_status, c_record, c_rel) = (
            column(&headers, &m.service),
            column(&headers, &m.status),
            column(&headers, &m.record_id),
            column(&headers, m.relationship_id.as_ref().unwrap()),
        );
        let ponte_service = |v: &str| SERVICE_CATEGORIES.iter().any(|(c, _)| *c == v);
        let mut rel_ids = BTreeSet::new();
        for (row, t) in rows.iter().zip(&truth) {
            let service = e
                .import
                .services
                .get(&row[c_service])
                .map(String::as_str)
                .unwrap_or(&row[c_service]);
            assert!(
                ponte_service(service),
                "{}: service {:?}",
                e.node_id,
                row[c_service]
            );
            assert_eq!(service, t.service);
            let status = e
                .import
                .statuses
                .get(&row[c_status])
                .map(String::as_str)
                .unwrap_or(&row[c_status]);
            assert!(
                STATUSES.contains(&status),
                "{}: status {:?}",
                e.node_id,
                row[c_status]
            );
            assert_eq!(status, t.status);
            assert_eq!(row[c_record], t.record_id);
            assert_eq!(row[c_rel], t.relationship_id);
            assert!(
                rel_ids.insert(row[c_rel].clone()),
                "relationship ids are unique"
            );
            assert!(spec.services.iter().any(|(c, _)| *c == t.service));
            assert!(super::scenario::is_code(&t.unit));
        }
    }
    assert_eq!(formats.len(), 4, "each entity exports differently");
    // The acronym clash: "ADI" means different things at the ASL and at the ATS.
    let asl = &g.exports[0].import.services;
    let ats = &g.exports[3].import.services;
    assert_eq!(asl["ADI"], "cure_domiciliari");
    assert_eq!(ats["ADI"], "assegno_di_inclusione");
}

#[test]
fn the_node_importer_reads_every_row() {
    let g = generate(&demo_scenario(400));
    for e in &g.exports {
        let (rows, report) =
            ponte_node::import::read_export(e.csv.as_slice(), &e.file_name, &e.import)
                .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            report.rows_rejected,
            0,
            "{}: {:?}",
            e.node_id,
            report.problems.iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(
            rows.len(),
            g.truth.iter().filter(|t| t.node_id == e.node_id).count()
        );
    }
}

#[test]
fn with_no_errors_the_exports_hold_the_true_identities() {
    let s = demo_no_errors(400);
    let g = generate(&s);
    let persons: BTreeMap<u32, &Person> = g.persons.iter().map(|p| (p.person_id, p)).collect();
    for (e, spec) in g.exports.iter().zip(&s.entities) {
        let (headers, rows) = parse(e);
        let m = &e.import.columns;
        let col = |name: &Option<String>| column(&headers, name.as_ref().unwrap());
        let (c_s, c_g, c_b) = (
            column(&headers, &m.surname),
            column(&headers, &m.given_names),
            column(&headers, &m.birth_date),
        );
        let (c_sex, c_place, c_cf) = (col(&m.sex), col(&m.birthplace), col(&m.codice_fiscale));
        let case = |s: &str| match spec.export.text_case {
            TextCase::Upper => s.to_uppercase(),
            TextCase::AsWritten => s.to_string(),
        };
        let truth: Vec<&TruthRow> = g.truth.iter().filter(|t| t.node_id == e.node_id).collect();
        for (row, t) in rows.iter().zip(truth) {
            let p = persons[&t.person_id];
            assert_eq!(row[c_s], case(&p.surname));
            assert_eq!(row[c_g], case(&p.given_names));
            assert_eq!(row[c_b], format_date(p.birth_date, &e.import.date_format));
            assert_eq!(row[c_place], case(&p.birthplace_name));
            assert_eq!(row[c_cf], p.codice_fiscale.clone().unwrap_or_default());
            let sex = &row[c_sex];
            assert!(match p.sex {
                Sex::M => sex == "M" || sex == "MASCHIO",
                Sex::F => sex == "F" || sex == "FEMMINA",
            });
            if let Some(alias) = &m.surname_alias {
                assert_eq!(
                    row[column(&headers, alias)],
                    p.married_surname.as_deref().map(case).unwrap_or_default()
                );
            }
        }
        // And the node's normaliser finds the true CF and birthplace code in every row.
        let (imported, report) =
            ponte_node::import::read_export(e.csv.as_slice(), &e.file_name, &e.import).unwrap();
        assert_eq!(report.rows_rejected, 0);
        for (row, t) in imported
            .iter()
            .zip(g.truth.iter().filter(|t| t.node_id == e.node_id))
        {
            let p = persons[&t.person_id];
            assert_eq!(
                row.identity.codice_fiscale, p.codice_fiscale,
                "{}",
                row.record_id
            );
            assert_eq!(
                row.identity.birthplace.as_deref(),
                Some(p.birthplace_code.as_str()),
                "{} {:?}",
                p.birthplace_name,
                p.birth_date
            );
            assert_eq!(row.identity.birth_date, Some(p.birth_date));
        }
    }
}

#[test]
fn duplicates_are_the_same_person_under_another_record_and_spelling() {
    let mut s = demo_scenario(200);
    for e in &mut s.entities {
        e.duplicate_rate = 1.0;
    }
    let g = generate(&s);
    for e in &g.exports {
        let (headers, rows) = parse(e);
        let m = &e.import.columns;
        let (c_rec, c_s, c_g) = (
            column(&headers, &m.record_id),
            column(&headers, &m.surname),
            column(&headers, &m.given_names),
        );
        let mut records: BTreeMap<u32, BTreeMap<String, (String, String)>> = BTreeMap::new();
        for (row, t) in rows
            .iter()
            .zip(g.truth.iter().filter(|t| t.node_id == e.node_id))
        {
            records
                .entry(t.person_id)
                .or_default()
                .insert(row[c_rec].clone(), (row[c_s].clone(), row[c_g].clone()));
        }
        for (person, recs) in records {
            assert_eq!(
                recs.len(),
                2,
                "{}: person {person} registered twice",
                e.node_id
            );
            let spellings: BTreeSet<&(String, String)> = recs.values().collect();
            assert_eq!(
                spellings.len(),
                2,
                "{}: person {person} spelt differently",
                e.node_id
            );
        }
    }
}

// ---- The error model, one error at a time, on hand-made people. ----

fn person(
    surname: &str,
    given: &str,
    sex: Sex,
    birth: BirthDate,
    code: &str,
    name: &str,
) -> Person {
    let cf = if code.starts_with('Z') && surname == "Diop" {
        None
    } else {
        Some(codice_fiscale::compute(surname, given, sex, birth, code))
    };
    Person {
        person_id: 1,
        surname: surname.into(),
        given_names: given.into(),
        sex,
        birth_date: birth,
        birthplace_code: code.into(),
        birthplace_name: name.into(),
        other_id: cf
            .is_none()
            .then(|| ("STP".to_string(), "STP1601160001234".to_string())),
        codice_fiscale: cf,
        married_surname: None,
        widowed: false,
        residence_code: "E506".into(),
        residence_name: "Lecce".into(),
    }
}

/// Renders `p` `n` times (different random draws) with only `set` applied to zero rates.
fn render_many(
    p: &Person,
    set: impl Fn(&mut ErrorRates),
    upper: bool,
    n: usize,
) -> Vec<(super::errors::RecordText, Vec<ErrorKind>)> {
    let scenario = demo_scenario(1);
    let format = if upper {
        &scenario.entities[0].export
    } else {
        &scenario.entities[1].export
    };
    let persons = vec![p.clone()];
    let index = by_surname(&persons);
    let ctx = RenderContext {
        format,
        as_of: scenario.as_of,
        persons: &persons,
        by_surname: &index,
    };
    let mut rates = ErrorRates::none();
    set(&mut rates);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|_| render_record(p, &ctx, &rates, &mut rng))
        .collect()
}

fn lecce_woman() -> Person {
    let mut p = person(
        "D'Amico",
        "Maria Grazia",
        Sex::F,
        date(1938, 3, 5),
        "E506",
        "Lecce",
    );
    p.married_surname = Some("Rizzo".into());
    p.widowed = true;
    p
}

#[test]
fn zero_rates_write_the_clean_record() {
    for upper in [true, false] {
        let p = lecce_woman();
        let scenario = demo_scenario(1);
        let format = if upper {
            &scenario.entities[0].export
        } else {
            &scenario.entities[1].export
        };
        for (r, kinds) in render_many(&p, |_| {}, upper, 20) {
            assert!(kinds.is_empty());
            assert_eq!(r, super::errors::clean_record(&p, format));
        }
    }
    let (r, _) = &render_many(&lecce_woman(), |_| {}, true, 1)[0];
    assert_eq!(
        (
            r.surname.as_str(),
            r.given_names.as_str(),
            r.birth_date.as_str()
        ),
        ("D'AMICO", "MARIA GRAZIA", "05/03/1938")
    );
    let (r, _) = &render_many(&lecce_woman(), |_| {}, false, 1)[0];
    assert_eq!(
        (
            r.surname.as_str(),
            r.surname_alias.as_str(),
            r.sex.as_str(),
            r.birth_date.as_str()
        ),
        ("D'Amico", "Rizzo", "FEMMINA", "1938-03-05")
    );
}

#[test]
fn name_errors_appear_at_rate_one() {
    let p = lecce_woman();
    for (r, k) in render_many(&p, |r| r.apostrophe_accent = 1.0, false, 20) {
        assert!(
            !r.surname.contains('\'') && r.surname.starts_with('D'),
            "{}",
            r.surname
        );
        assert!(k.contains(&ErrorKind::SurnameApostropheAccent));
    }
    let calo = person(
        "Calò",
        "Nicolò",
        Sex::M,
        date(1950, 1, 20),
        "D862",
        "Galatina",
    );
    for (r, _) in render_many(&calo, |r| r.apostrophe_accent = 1.0, true, 20) {
        assert!(
            ["CALO'", "CALO", "CALÓ"].contains(&r.surname.as_str()),
            "{}",
            r.surname
        );
        assert!(
            ["NICOLO'", "NICOLO", "NICOLÓ"].contains(&r.given_names.as_str()),
            "{}",
            r.given_names
        );
    }
    let de = person(
        "De Giorgi",
        "Giuseppe",
        Sex::M,
        date(1940, 7, 1),
        "E506",
        "Lecce",
    );
    for (r, _) in render_many(&de, |r| r.particle_spacing = 1.0, true, 20) {
        assert!(
            ["DEGIORGI", "DE-GIORGI"].contains(&r.surname.as_str()),
            "{}",
            r.surname
        );
    }
    for (r, _) in render_many(&de, |r| r.hypocoristic = 1.0, true, 20) {
        assert!(
            ["PEPPINO", "PINO", "PEPPE"].contains(&r.given_names.as_str()),
            "{}",
            r.given_names
        );
    }
    for (r, _) in render_many(&p, |r| r.married_surname = 1.0, true, 30) {
        assert!(
            ["RIZZO", "D'AMICO IN RIZZO", "D'AMICO VED. RIZZO"].contains(&r.surname.as_str()),
            "{}",
            r.surname
        );
    }
    for (r, _) in render_many(&p, |r| r.given_compound = 1.0, true, 20) {
        assert!(
            ["MARIAGRAZIA", "MARIA-GRAZIA", "MARIA"].contains(&r.given_names.as_str()),
            "{}",
            r.given_names
        );
    }
    let double = person(
        "Rizzo Quarta",
        "Sofia",
        Sex::F,
        date(2023, 2, 1),
        "E506",
        "Lecce",
    );
    for (r, _) in render_many(&double, |r| r.surname_partial = 1.0, true, 20) {
        assert!(["RIZZO", "QUARTA"].contains(&r.surname.as_str()));
    }
    let greco = person(
        "Carluccio",
        "Antonio",
        Sex::M,
        date(1944, 11, 30),
        "E506",
        "Lecce",
    );
    for (r, k) in render_many(&greco, |r| r.name_typo = 1.0, true, 50) {
        assert_ne!(r.surname, "CARLUCCIO");
        assert_ne!(r.given_names, "ANTONIO");
        assert!(
            r.surname.starts_with('C') && (8..=10).contains(&r.surname.chars().count()),
            "{}",
            r.surname
        );
        assert!(k.contains(&ErrorKind::SurnameTypo) && k.contains(&ErrorKind::GivenNamesTypo));
    }
    for (r, _) in render_many(&greco, |r| r.case_variation = 1.0, true, 10) {
        assert_eq!(r.surname, "Carluccio");
    }
    for (r, _) in render_many(&greco, |r| r.case_variation = 1.0, false, 10) {
        assert!(r.surname == "CARLUCCIO" || r.surname == "carluccio");
    }
    for (r, _) in render_many(&greco, |r| r.extra_spaces = 1.0, true, 20) {
        let fields = [&r.surname, &r.given_names, &r.birthplace, &r.codice_fiscale];
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with(' ') || f.ends_with(' ') || f.contains("  "))
        );
    }
    for (r, _) in render_many(&greco, |r| r.sex_missing = 1.0, true, 5) {
        assert_eq!(r.sex, "");
    }
}

#[test]
fn foreign_name_errors_appear_at_rate_one() {
    let m = person(
        "Benali",
        "Mohamed",
        Sex::M,
        date(1975, 4, 9),
        "Z330",
        "Marocco",
    );
    for (r, _) in render_many(&m, |r| r.foreign_name_variant = 1.0, false, 20) {
        assert!(
            ["Mohammed", "Muhammad"].contains(&r.given_names.as_str()),
            "{}",
            r.given_names
        );
    }
    let c = person("Chen", "Wei", Sex::M, date(1980, 4, 9), "Z210", "Cina");
    for (r, _) in render_many(&c, |r| r.foreign_name_variant = 1.0, false, 5) {
        assert_eq!(
            (r.surname.as_str(), r.given_names.as_str()),
            ("Wei", "Chen")
        );
    }
    let ro = person(
        "Ștefănescu",
        "Ion",
        Sex::M,
        date(1970, 4, 9),
        "Z129",
        "Romania",
    );
    for (r, _) in render_many(&ro, |r| r.foreign_name_variant = 1.0, false, 10) {
        assert!(
            ["Stefanescu", "Ştefănescu"].contains(&r.surname.as_str()),
            "{}",
            r.surname
        );
    }
    for (r, _) in render_many(&m, |r| r.date_placeholder_foreign = 1.0, true, 5) {
        assert_eq!(r.birth_date, "01/01/1975");
    }
    let stp = person(
        "Diop",
        "Moussa",
        Sex::M,
        date(1990, 6, 6),
        "Z343",
        "Senegal",
    );
    for (r, _) in render_many(&stp, |r| r.stp_in_cf_field = 1.0, true, 3) {
        assert_eq!(r.codice_fiscale, "STP1601160001234");
    }
    for (r, _) in render_many(&stp, |_| {}, true, 3) {
        assert_eq!(r.codice_fiscale, "");
    }
}

#[test]
fn date_errors_appear_at_rate_one() {
    let p = lecce_woman(); // 05/03/1938
    for (r, _) in render_many(&p, |r| r.date_day_month_swap = 1.0, true, 5) {
        assert_eq!(r.birth_date, "03/05/1938");
    }
    for (r, _) in render_many(&p, |r| r.date_year_typo = 1.0, true, 5) {
        assert_eq!(r.birth_date, "05/03/1983");
    }
    let very_old = person("Greco", "Rosa", Sex::F, date(1921, 8, 14), "E506", "Lecce");
    for (r, _) in render_many(&very_old, |r| r.date_year_typo = 1.0, true, 5) {
        assert_eq!(r.birth_date, "14/08/2021");
    }
    let q = person("Greco", "Rosa", Sex::F, date(1938, 12, 13), "E506", "Lecce");
    for (r, k) in render_many(&q, |r| r.date_digit_transposition = 1.0, true, 20) {
        assert!(
            ["31/12/1938", "13/12/1983"].contains(&r.birth_date.as_str()),
            "{}",
            r.birth_date
        );
        assert!(k.contains(&ErrorKind::DateDigitTransposition));
    }
    // Not eligible: day > 12 cannot be swapped silently.
    for (r, _) in render_many(&q, |r| r.date_day_month_swap = 1.0, true, 5) {
        assert_eq!(r.birth_date, "13/12/1938");
    }
}

#[test]
fn birthplace_and_cf_errors_appear_at_rate_one() {
    let g = person(
        "Greco",
        "Rosa",
        Sex::F,
        date(1938, 12, 13),
        "D862",
        "Galatina",
    );
    for (r, _) in render_many(&g, |r| r.birthplace_frazione = 1.0, true, 10) {
        assert!(
            ["NOHA", "COLLEMETO", "SANTA BARBARA"].contains(&r.birthplace.as_str()),
            "{}",
            r.birthplace
        );
    }
    for (r, _) in render_many(&g, |r| r.birthplace_code = 1.0, true, 3) {
        assert_eq!(r.birthplace, "D862");
    }
    for (r, _) in render_many(&g, |r| r.birthplace_missing = 1.0, true, 3) {
        assert_eq!(r.birthplace, "");
    }
    let presicce = person(
        "Martina",
        "Cosimo",
        Sex::M,
        date(1946, 2, 2),
        "H047",
        "Presicce",
    );
    for (r, _) in render_many(&presicce, |r| r.birthplace_current_name = 1.0, false, 3) {
        assert_eq!(r.birthplace, "Presicce-Acquarica");
    }
    // Not eligible: Galatina has not changed name.
    for (r, _) in render_many(&g, |r| r.birthplace_current_name = 1.0, true, 3) {
        assert_eq!(r.birthplace, "GALATINA");
    }
    let own = g.codice_fiscale.clone().unwrap();
    for (r, _) in render_many(&g, |r| r.cf_missing = 1.0, true, 3) {
        assert_eq!(r.codice_fiscale, "");
    }
    for (r, _) in render_many(&g, |r| r.cf_typo = 1.0, true, 30) {
        assert_eq!(r.codice_fiscale.len(), 16);
        assert_ne!(r.codice_fiscale, own);
        assert!(
            !cf_check_consistent(&r.codice_fiscale),
            "{}",
            r.codice_fiscale
        );
        assert!(codice_fiscale::validate(&r.codice_fiscale).is_err());
    }
    for (r, _) in render_many(&g, |r| r.cf_relative = 1.0, true, 10) {
        assert_ne!(r.codice_fiscale, own);
        codice_fiscale::validate(&r.codice_fiscale).unwrap();
        assert_eq!(
            &r.codice_fiscale[..3],
            &own[..3],
            "a relative shares the surname"
        );
    }
}

#[test]
fn full_error_rates_touch_most_records_but_files_stay_importable() {
    let mut s = demo_scenario(200);
    for e in &mut s.entities {
        e.errors = ErrorRates::uniform(1.0);
    }
    let g = generate(&s);
    let persons: BTreeMap<u32, &Person> = g.persons.iter().map(|p| (p.person_id, p)).collect();
    for e in &g.exports {
        let (headers, rows) = parse(e);
        let c_cf = column(&headers, e.import.columns.codice_fiscale.as_ref().unwrap());
        let c_place = column(&headers, e.import.columns.birthplace.as_ref().unwrap());
        for (row, t) in rows
            .iter()
            .zip(g.truth.iter().filter(|t| t.node_id == e.node_id))
        {
            // cf_missing wins over every other CF error; birthplace_missing over every place error.
            let p = persons[&t.person_id];
            if p.codice_fiscale.is_some() {
                assert_eq!(row[c_cf].trim(), "");
            }
            assert_eq!(row[c_place].trim(), "");
        }
        let (_, report) =
            ponte_node::import::read_export(e.csv.as_slice(), &e.file_name, &e.import).unwrap();
        assert!(report.rows_read > 0);
    }
}

#[test]
fn scenario_check_names_the_problem() {
    let mut s = demo_scenario(10);
    s.entities[1].services.push(("adi".into(), 1.0));
    assert!(s.check().unwrap_err().0.contains("adi"));
    let mut s = demo_scenario(10);
    s.entities[0].errors.cf_missing = 1.5;
    assert!(s.check().unwrap_err().0.contains("cf_missing"));
    let mut s = demo_scenario(10);
    s.entities[2].export.date_format = "%m/%d/%Y".into();
    assert!(s.check().unwrap_err().0.contains("date_format"));
    let mut s = demo_scenario(10);
    s.entities[3].node_id = "ATS Maglie".into();
    assert!(s.check().is_err());
    let mut s = demo_scenario(10);
    s.entities[0]
        .export
        .services
        .push(("serd".into(), "ADI".into()));
    assert!(s.check().unwrap_err().0.contains("ADI"));
    assert!(try_generate(&demo_scenario(super::scenario::MAX_PERSONS + 1)).is_err());
    demo_scenario(10).check().unwrap();
}

#[test]
fn keyboard_typos_are_single_plausible_edits() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for word in ["Carluccio", "Quarta", "Giuseppe", "Leo"] {
        for _ in 0..200 {
            let t = super::errors::keyboard_typo(word, &mut rng).unwrap();
            assert_ne!(t, word);
            assert_eq!(t.chars().next(), word.chars().next(), "first letter kept");
            let d = t.chars().count() as i64 - word.chars().count() as i64;
            assert!(d.abs() <= 1, "{word} → {t}");
        }
    }
    assert_eq!(super::errors::keyboard_typo("A", &mut rng), None);
}

#[test]
fn scenarios_round_trip_through_toml() {
    let s = demo_scenario(1000);
    let text = toml::to_string(&s).unwrap();
    let back: Scenario = toml::from_str(&text).unwrap();
    assert_eq!(back, s);
    // Error rates left out of a file take the defaults.
    let rates: ErrorRates = toml::from_str("cf_missing = 0.3").unwrap();
    assert_eq!(rates, ErrorRates { cf_missing: 0.3, ..ErrorRates::default() });
}
