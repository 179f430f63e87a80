//! Arbitrary bytes decoded as a `ObscureRequest` (Federation.SetObscured), as the gRPC server decodes it, then checked
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
    let Some(m) = ponte_fuzz::decode_request::<v1::ObscureRequest>(data) else { return };
    let who = ponte_fuzz::node_for(&m.node_id);
    match check::obscure(&who, &m) {
        Ok((caller, key, obscured)) => {
            assert_eq!((key.node.as_str(), obscured), (caller.node.as_str(), m.obscured));
            vocab::check_reference(&key.reference).expect("an accepted reference is valid");
        }
        Err(e) => ponte_fuzz::assert_refusal("obscuring", &e),
    }
});
