//! Arbitrary bytes decoded as a `PublishBatch` (prost, as the gRPC server does), each item then
//! checked by the coordinator's item validation (`ponte_coordinator::model::item_from_wire`)
//! under the default schema's encoding shape and under the hardened example's (field-level
//! filters, balancing).
//!
//! Asserts: no panic; decoding is stable; a refusal is a bounded message; an accepted item has
//! exactly the shape the schema gives, a valid reference, at most the allowed tokens, a
//! relationship whose every value is valid, and a tier never weaker than its category's default.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ponte_coordinator::model::{EncodingShape, item_from_wire};
use ponte_fuzz::{assert_bounded, decode_request};
use ponte_proto::limits::{MAX_BATCH_ITEMS, MAX_TOKENS_PER_ITEM};
use ponte_proto::schema::{HARDENED_EXAMPLE_SCHEMA_TOML, LinkageSchema};
use ponte_proto::v1::{self, PublishBatch};
use ponte_proto::vocab;

static SHAPES: LazyLock<[EncodingShape; 2]> = LazyLock::new(|| {
    [
        EncodingShape::of(&LinkageSchema::default_schema()),
        EncodingShape::of(&LinkageSchema::parse(HARDENED_EXAMPLE_SCHEMA_TOML).expect("the hardened example parses")),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Some(batch) = decode_request::<PublishBatch>(data) else { return };
    // The whole batch through the coordinator's request check, as a node of that id.
    let expect = ponte_coordinator::federation::check::Expectations {
        fingerprint: LinkageSchema::default_schema().fingerprint(),
        epochs: vec![1, 2],
        shape: SHAPES[0].clone(),
    };
    match ponte_coordinator::federation::check::publish(&ponte_fuzz::node_for(&batch.node_id), &expect, &batch) {
        Ok(checked) => {
            assert_eq!(checked.caller.node, batch.node_id);
            assert!(expect.epochs.contains(&checked.epoch));
            assert_eq!(checked.items.len(), batch.items.len());
            assert!(checked.items.len() <= MAX_BATCH_ITEMS);
            assert!(checked.items.iter().all(|p| p.key.node == batch.node_id && p.encoding.clk.len() == expect.shape.clk_bytes));
        }
        Err(e) => ponte_fuzz::assert_refusal("publish batch", &e),
    }
    for item in batch.items.iter().take(MAX_BATCH_ITEMS) {
        for shape in SHAPES.iter() {
            let p = match item_from_wire("asl-lecce", "ASL Lecce", v1::EntityType::Asl, batch.key_epoch, shape, item) {
                Ok(p) => p,
                Err(e) => {
                    assert_bounded("item refusal", &e);
                    continue;
                }
            };
            assert_eq!(p.key.reference, item.reference);
            vocab::check_reference(&p.key.reference).expect("an accepted reference is valid");
            assert_eq!(p.encoding.clk.len(), shape.clk_bytes);
            assert_eq!(p.encoding.epoch, batch.key_epoch);
            assert!(p.encoding.tokens.len() <= MAX_TOKENS_PER_ITEM);
            for t in &p.encoding.tokens {
                assert!(v1::TokenKind::try_from(t.kind).is_ok_and(|k| k != v1::TokenKind::Unspecified));
            }
            let r = &p.relationship;
            assert_eq!(r.entity_type, v1::EntityType::Asl as i32, "the entity type is the certificate's");
            vocab::check_unit_code(&r.unit).expect("an accepted unit code is valid");
            let category = vocab::ServiceCategoryName::from_wire(r.category).expect("an accepted category is valid");
            vocab::StatusName::from_wire(r.status).expect("an accepted status is valid");
            vocab::check_month(r.since_month).expect("an accepted month is valid");
            v1::SensitivityTier::try_from(r.tier).expect("an accepted tier is a tier");
            assert!(r.tier >= vocab::default_tier(category) as i32, "a tier weaker than the category's default was accepted");
            vocab::PlanTypeName::from_wire(r.plan).expect("an accepted plan is valid");
            vocab::ContactRoleName::from_wire(r.contact).expect("an accepted contact role is valid");
        }
    }
});
