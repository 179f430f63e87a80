//! Arbitrary bytes decoded as a `WhoElseQuestion` (Federation.WhoElse), as the gRPC server decodes it, then checked
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
    let Some(m) = ponte_fuzz::decode_request::<v1::WhoElseQuestion>(data) else { return };
    let who = ponte_fuzz::node_for(&m.node_id);
    match check::who_else(&who, &m) {
        Ok(q) => {
            assert_eq!(q.caller.node, m.node_id, "a question is made as the certificate's node only");
            vocab::check_reference(&q.anchor.reference).expect("an accepted anchor is a reference");
            assert_eq!(q.anchor.node, q.caller.node, "the anchor is the asker's own");
            vocab::check_operator_id(&q.operator_id).expect("an accepted operator id is valid");
            assert!(q.purpose != v1::Purpose::Unspecified && q.role != v1::OperatorRole::Unspecified);
        }
        Err(e) => ponte_fuzz::assert_refusal("who-else", &e),
    }
});
