//! Arbitrary bytes decoded as a `ConsentAssertion` (Federation.RecordConsent), as the gRPC server decodes it, then checked
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
    let Some(m) = ponte_fuzz::decode_request::<v1::ConsentAssertion>(data) else { return };
    let who = ponte_fuzz::node_for(&m.node_id);
    match check::consent(&who, &m) {
        Ok((caller, id, row)) => {
            vocab::check_reference(&id).expect("an accepted consent id is valid");
            assert_eq!(row.reference.node, caller.node, "a consent is keyed by the node's own item");
            let c = &row.consent;
            for list in [&c.categories, &c.recipients, &c.purposes] {
                assert!(!list.is_empty() && list.len() <= limits::MAX_CONSENT_SCOPE);
                assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted, without duplicates");
            }
            vocab::check_day(c.valid_from).expect("valid_from is a day");
            vocab::check_day(c.valid_until).expect("valid_until is a day");
            assert!(c.valid_from <= c.valid_until);
        }
        Err(e) => ponte_fuzz::assert_refusal("consent", &e),
    }
});
