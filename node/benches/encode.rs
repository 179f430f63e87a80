//! Encoding throughput of one realistic identity, under the default schema and under the
//! example hardened profile. `cargo bench -p ponte-node --bench encode`.
//!
//! For records per second over a synthetic population, on one core and on all cores, use
//! `ponte-sim bench encode`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ponte_node::encode::Encoder;
use ponte_node::normalise::{BirthDate, NormalisedIdentity, OtherIdKind, QualityFlags, Sex};
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::{HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};

/// A double surname, a married surname, two given names, a codice fiscale and an ANPR id: a
/// little more than the typical record, so the figure is not flattering.
fn identity() -> NormalisedIdentity {
    NormalisedIdentity {
        surname: "DEGIORGIQUARTA".into(),
        surname_tokens: vec!["DEGIORGI".into(), "QUARTA".into()],
        surname_alias: Some("BIANCHI".into()),
        given_names: vec!["MARIA".into(), "GRAZIA".into()],
        given_name_canonical: None,
        sex: Some(Sex::F),
        birth_date: Some(BirthDate { year: 1950, month: 7, day: 3 }),
        birthplace: Some("E506".into()),
        codice_fiscale: Some("DGRMGR50L43E506U".into()),
        other_ids: vec![(OtherIdKind::IdAnpr, "AB12345CD".into())],
        flags: QualityFlags(QualityFlags::SURNAME_ALIAS_PRESENT),
    }
}

fn encode(c: &mut Criterion) {
    let secret = LinkageSecret::from_bytes(1, [7u8; 32]);
    let id = identity();
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let schemas = [
        ("default", LinkageSchema::default_schema()),
        ("hardened", LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML).expect("the example profile is valid")),
    ];
    for (name, schema) in &schemas {
        let encoder = Encoder::new(&secret, schema);
        group.bench_function(*name, |b| b.iter(|| encoder.encode(std::hint::black_box(&id))));
    }
    group.finish();
    c.bench_function("encoder_new/hardened", |b| b.iter(|| Encoder::new(&secret, &schemas[1].1)));
}

criterion_group!(benches, encode);
criterion_main!(benches);
