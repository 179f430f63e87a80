//! Arbitrary bytes decoded as a `UpdateRelationshipRequest` (Federation.UpdateRelationship), as the gRPC server decodes it, then checked
//! by the coordinator's own request check (`ponte_coordinator::federation::check`, pure).
//!
//! Asserts: no panic; decoding is stable; a refusal is a bounded message of a request-check kind
//! (invalid, forbidden, precondition); an accepted request holds only valid, bounded values, and
//! speaks only for the certificate's node (or the officer).
#![no_main]

use ponte_coordinator::federation::check;
use ponte_proto::v1;
use ponte_proto::vocab;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(m) = ponte_fuzz::decode_request::<v1::UpdateRelationshipRequest>(data) else { return };
    let who = ponte_fuzz::node_for(&m.node_id);
    match check::update_relationship(&who, &m) {
        Ok((caller, key, rel)) => {
            assert_eq!(key.node, caller.node);
            vocab::check_reference(&key.reference).expect("an accepted reference is valid");
            vocab::check_unit_code(&rel.unit).expect("an accepted unit is valid");
            let category = vocab::ServiceCategoryName::from_wire(rel.category).expect("an accepted category is valid");
            assert!(rel.tier >= vocab::default_tier(category) as i32, "a tier weaker than the category's default was accepted");
            assert_eq!(rel.entity_type, v1::EntityType::Comune as i32, "the entity type is the certificate's");
        }
        Err(e) => ponte_fuzz::assert_refusal("relationship update", &e),
    }
});
