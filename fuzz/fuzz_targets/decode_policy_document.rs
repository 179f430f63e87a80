//! Arbitrary bytes decoded as a `PolicyDocument` (Governance.ReloadPolicy), as the gRPC server decodes it, then checked
//! by the coordinator's own request check (`ponte_coordinator::federation::check`, pure).
//!
//! Asserts: no panic; decoding is stable; a refusal is a bounded message of a request-check kind
//! (invalid, forbidden, precondition); an accepted request holds only valid, bounded values, and
//! speaks only for the certificate's node (or the officer).
#![no_main]

use ponte_coordinator::federation::check;
use ponte_proto::limits;
use ponte_proto::v1;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(m) = ponte_fuzz::decode_request::<v1::PolicyDocument>(data) else { return };
    let _ = check::policy_document(&ponte_fuzz::node_for("asl-lecce"), &m).map(|_| panic!("a node may not load a policy"));
    match check::policy_document(&ponte_fuzz::officer(), &m) {
        Ok(()) => {
            assert!(m.toml.len() <= limits::MAX_POLICY_BYTES);
            // What the coordinator then does with the text: the policy check, which never panics.
            let report = ponte_coordinator::policy::check(&m.toml);
            assert_eq!(report.policy.is_some(), report.errors.is_empty());
        }
        Err(e) => ponte_fuzz::assert_refusal("policy document", &e),
    }
});
