//! Arbitrary bytes decoded as a `QuarantineQuery` (Governance.Quarantine), as the gRPC server decodes it, then checked
//! by the coordinator's own request check (`ponte_coordinator::federation::check`, pure).
//!
//! Asserts: no panic; decoding is stable; a refusal is a bounded message of a request-check kind
//! (invalid, forbidden, precondition); an accepted request holds only valid, bounded values, and
//! speaks only for the certificate's node (or the officer).
#![no_main]

use ponte_coordinator::federation::check;
use ponte_proto::v1;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(m) = ponte_fuzz::decode_request::<v1::QuarantineQuery>(data) else { return };
    let _ = check::quarantine_query(&ponte_fuzz::node_for("asl-lecce"), &m).map(|_| panic!("a node may not read the quarantine"));
    match check::quarantine_query(&ponte_fuzz::officer(), &m) {
        Ok((after, limit)) => {
            assert!((1..=check::MAX_QUARANTINE_PAGE).contains(&limit));
            assert!(after.len() <= 256 && !after.chars().any(char::is_control));
        }
        Err(e) => ponte_fuzz::assert_refusal("quarantine query", &e),
    }
});
