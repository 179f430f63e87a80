//! Arbitrary bytes decoded as a `AuditQuery` (Governance.QueryAudit), as the gRPC server decodes it. Asserts: no panic,
//! and decoding is stable (encoded again, it decodes to the same message). When the
//! coordinator's validation of this message is a pure entry point, call it here on the result.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ponte_fuzz::decode_request::<ponte_proto::v1::AuditQuery>(data);
});
