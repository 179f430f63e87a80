//! Arbitrary bytes decoded as a `WithdrawRequest` (Federation.Withdraw), as the gRPC server decodes it, then checked
//! by the coordinator's own request check (`ponte_coordinator::federation::check`, pure).
//!
//! Asserts: no panic; decoding is stable; a refusal is a bounded message of a request-check kind
//! (invalid, forbidden, precondition); an accepted request holds only valid, bounded values, and
//! speaks only for the certificate's node (or the officer).
#![no_main]

use ponte_coordinator::federation::check;
use ponte_proto::limits;
use ponte_proto::v1;
use ponte_proto::vocab;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(m) = ponte_fuzz::decode_request::<v1::WithdrawRequest>(data) else { return };
    let who = ponte_fuzz::node_for(&m.node_id);
    match check::withdraw(&who, &m) {
        Ok((caller, keys)) => {
            assert_eq!(caller.node, m.node_id);
            assert!(keys.len() <= limits::MAX_WITHDRAW_REFERENCES && keys.len() <= m.references.len());
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted, without duplicates");
            for k in &keys {
                assert_eq!(k.node, caller.node, "a node erases only its own items");
                vocab::check_reference(&k.reference).expect("an accepted reference is valid");
            }
        }
        Err(e) => ponte_fuzz::assert_refusal("withdrawal", &e),
    }
});
