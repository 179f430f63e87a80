//! Arbitrary bytes decoded as a `ExplainRequest` (Governance.Explain), as the gRPC server decodes it, then checked
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
    let Some(m) = ponte_fuzz::decode_request::<v1::ExplainRequest>(data) else { return };
    let _ = check::explain(&ponte_fuzz::node_for("asl-lecce"), &m).map(|_| panic!("a node may not ask for explanations"));
    match check::explain(&ponte_fuzz::officer(), &m) {
        Ok((question, target)) => {
            vocab::check_node_id(&target.node).expect("an accepted target node is valid");
            vocab::check_reference(&target.reference).expect("an accepted target reference is valid");
            if let check::ExplainQuestion::Described { asker, anchor_reference, purpose, role, .. } = question {
                vocab::check_node_id(&asker).expect("an accepted asker is valid");
                vocab::check_reference(&anchor_reference).expect("an accepted anchor is valid");
                assert!(purpose != v1::Purpose::Unspecified && role != v1::OperatorRole::Unspecified);
            }
        }
        Err(e) => ponte_fuzz::assert_refusal("explain", &e),
    }
});
