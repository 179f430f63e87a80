//! Arbitrary text through the linkage-schema parser and checker (`LinkageSchema::parse`).
//!
//! Asserts: no panic; every problem is explained in a bounded message; an accepted schema has no
//! problems, keeps its fingerprint when written back as TOML and read again, and works
//! everywhere it is used: the node's encoder encodes a record with it into filters of exactly the
//! published lengths (balanced filters with exactly half their bits set), the coordinator
//! accepts that encoding (`item_from_wire`), and the coordinator's LSH index takes its blocking
//! parameters.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ponte_coordinator::blocking::{LshIndex, LshParams};
use ponte_coordinator::model::{EncodingShape, item_from_wire};
use ponte_fuzz::assert_bounded;
use ponte_node::encode::Encoder;
use ponte_node::normalise::{self, NormalisedIdentity, RawIdentity, dates::DateFormat};
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1;

static IDENTITY: LazyLock<NormalisedIdentity> = LazyLock::new(|| {
    let raw = RawIdentity {
        surname: "De Giorgi in Rossi",
        given_names: "Maria Grazia",
        sex: "F",
        birth_date: "11/02/1940",
        birthplace: "Lecce",
        codice_fiscale: "DGRMGR40B51E506X",
        surname_alias: "",
    };
    normalise::normalise(&raw, &DateFormat::parse("%d/%m/%Y").unwrap()).expect("the fuzz identity normalises")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let schema = match LinkageSchema::parse(text) {
        Ok(s) => s,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            for p in &problems {
                assert_bounded("schema problem", p);
            }
            return;
        }
    };
    assert!(schema.problems().is_empty());
    for w in schema.warnings() {
        assert_bounded("schema warning", &w);
    }
    let fingerprint = schema.fingerprint();
    let written = toml::to_string(&schema).expect("an accepted schema can be written as TOML");
    let again = LinkageSchema::parse(&written).unwrap_or_else(|p| panic!("written back, it is refused: {p:?}\n{written}"));
    assert_eq!(again.fingerprint(), fingerprint, "written back, its fingerprint changes:\n{written}");

    // The node encodes with it ...
    let secret = LinkageSecret::from_bytes(1, [7; 32]);
    let enc = Encoder::new(&secret, &schema).encode(&IDENTITY);
    assert_eq!(enc.clk.len(), schema.clk_bytes());
    let shape = EncodingShape::of(&schema);
    assert_eq!(enc.field_filters.len(), shape.field_filters.len());
    for ((field, bits), (name, len)) in enc.field_filters.iter().zip(&shape.field_filters) {
        assert_eq!((field, bits.len()), (name, *len));
    }
    if schema.hardening.balance {
        let ones: u32 = enc.clk.iter().map(|b| b.count_ones()).sum();
        assert_eq!(ones * 2, schema.published_clk_bits(), "a balanced filter has exactly half its bits set");
    }
    // ... and the coordinator accepts what it publishes.
    let item = v1::PublishedItem {
        reference: "0123456789abcdef0123456789abcdef".into(),
        encoding: Some(v1::IdentityEncoding {
            clk: enc.clk,
            tokens: enc.tokens.iter().map(|(k, t)| v1::ExactToken { kind: *k as i32, value: t.to_vec() }).collect(),
            quality_flags: enc.quality_flags,
            field_filters: enc.field_filters.into_iter().map(|(field, bits)| v1::FieldFilter { field, bits }).collect(),
        }),
        relationship: Some(v1::Relationship {
            entity_type: v1::EntityType::Asl as i32,
            unit: "distretto-lecce".into(),
            category: v1::ServiceCategory::CureDomiciliari as i32,
            tier: 0,
            status: v1::RelationshipStatus::Attiva as i32,
            since_month: 202403,
            case_manager: true,
            plan: 0,
            contact: 0,
        }),
        revision: 1,
        obscured: false,
    };
    if let Err(e) = item_from_wire("asl-lecce", "ASL Lecce", v1::EntityType::Asl, 1, &shape, &item) {
        panic!("the coordinator refuses an encoding under an accepted schema: {e}");
    }
    let bits = schema.published_clk_bits();
    let frequencies = vec![1u32; bits as usize];
    if let Err(e) = LshIndex::with_frequencies(LshParams::from(&schema.blocking), bits, &frequencies) {
        panic!("the coordinator's LSH index refuses an accepted schema's blocking: {e}");
    }
});
