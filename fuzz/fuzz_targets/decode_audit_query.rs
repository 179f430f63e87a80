//! Arbitrary bytes decoded as a `AuditQuery` (Governance.QueryAudit), as the gRPC server decodes it, then checked
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
    let Some(m) = ponte_fuzz::decode_request::<v1::AuditQuery>(data) else { return };
    let _ = check::audit_query(&ponte_fuzz::node_for("asl-lecce"), &m).map(|_| panic!("a node may not read the audit"));
    match check::audit_query(&ponte_fuzz::officer(), &m) {
        Ok(q) => {
            assert!((1..=limits::MAX_AUDIT_QUERY).contains(&q.limit));
            assert!((4096..=check::MAX_AUDIT_PAGE_BYTES).contains(&q.max_bytes), "a page is bounded in bytes");
            assert_eq!(q.from, m.from_sequence);
        }
        Err(e) => ponte_fuzz::assert_refusal("audit query", &e),
    }
});
