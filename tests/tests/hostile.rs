//! What a hostile or careless node meets at the coordinator, end to end (a real coordinator
//! process over mTLS): malformed messages are the sender's fault, a node over its rate is told
//! when to retry and changes nothing, audit entries have a size bound whatever the request,
//! officers page through the audit by size, and a placeholder token is held for a data steward.

mod support;

use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use ponte_e2e::*;
use ponte_proto::v1::{self, ServiceCategory as Cat};
use support::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Sends bytes as they are and reads the answer as bytes: a client that does not follow
/// ponte.proto.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

#[test]
fn a_malformed_message_is_invalid_argument_on_every_rpc_and_changes_nothing() {
    let w = World::new(None);
    let (cert, key) = w.fed.cert("comune-lecce");
    let channel = w.rt.block_on(w.fed.channel(Some((&cert, &key)), &w.fed.certs.join("ca.pem"))).unwrap();
    // A length-delimited field whose length runs past the end, and a field with wire type 7.
    for bytes in [vec![0x0a, 0xff, 0xff, 0x01], vec![0x0f, 0x01], vec![0x12, 0x05, 0x01]] {
        for method in ["Publish", "WhoElse", "Withdraw", "RecordConsent", "SetObscured", "SubjectReport", "UpdateRelationship", "RevokeConsent"] {
            let path = PathAndQuery::try_from(format!("/ponte.v1.Federation/{method}")).unwrap();
            let status = w.rt.block_on(async {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await.unwrap();
                grpc.unary(tonic::Request::new(bytes.clone()), path, RawCodec).await.unwrap_err()
            });
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{method} {bytes:?}: {status:?}");
            assert!(status.message().contains("not a valid ponte.v1 protobuf message"), "{method}: {}", status.message());
        }
    }
    // Nothing was audited: the next question's receipt is the first after the policy's.
    w.publish_one("comune-lecce", "c1", &person(1), active(Cat::SegretariatoSociale)).unwrap();
    let a = w.ask_usual("comune-lecce", "c1").unwrap();
    assert_eq!(a.receipt.unwrap().sequence, 1);
}

#[test]
fn a_node_over_its_question_rate_is_told_when_to_retry_and_others_are_not_held_up() {
    let w = World::with_config(None, "[limits]\nquestions_per_sec = 2\nquestions_burst = 5\n");
    w.publish_one("comune-lecce", "c1", &person(1), active(Cat::SegretariatoSociale)).unwrap();
    w.publish_one("asl-lecce", "a1", &person(1), active(Cat::CureDomiciliari)).unwrap();
    let mut last = 0;
    for i in 0..5 {
        last = w.ask_usual("comune-lecce", "c1").unwrap_or_else(|e| panic!("question {i} within the burst: {e:?}")).receipt.unwrap().sequence;
    }
    let refused = w.ask_usual("comune-lecce", "c1").unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("too many questions from this node") && refused.message().contains("retry in"), "{}", refused.message());
    let retry: u64 = refused.metadata().get("grpc-retry-pushback-ms").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");
    // Another node is not held up by it.
    let other = w.ask_usual("asl-lecce", "a1").unwrap();
    assert_eq!(other.receipt.unwrap().sequence, last + 1, "the refused question was not audited");
    // After the time it was told, the node is answered again.
    std::thread::sleep(Duration::from_millis(retry + 50));
    w.ask_usual("comune-lecce", "c1").unwrap();
}

#[test]
fn audit_entries_are_bounded_whatever_the_request_and_officers_page_by_size() {
    let w = World::new(None);
    w.publish_one("comune-lecce", "c1", &person(1), active(Cat::SegretariatoSociale)).unwrap();
    // A withdrawal of 1,000 references the node never published: nothing erased, and the audit
    // entry is as small as any other.
    let refs: Vec<String> = (0..1000).map(|i| format!("never-published-{i:04}-{}", "x".repeat(32))).collect();
    let mut c = w.client("comune-lecce");
    let ack = w.rt.block_on(c.withdraw(v1::WithdrawRequest { node_id: "comune-lecce".into(), references: refs })).unwrap().into_inner();
    assert_eq!(ack.affected, 0);
    for _ in 0..40 {
        w.ask_usual("comune-lecce", "c1").unwrap();
    }
    let officer = w.fed.officer_config();
    let o = w.fed.coordinator_cmd(&["audit", "query", "--officer", &officer.to_string_lossy(), "--node", "comune-lecce"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(String::from).collect();
    let erased = lines.iter().find(|l| l.contains("\"erased\"")).unwrap_or_else(|| panic!("no erasure entry in {lines:?}"));
    assert!(erased.len() < 600, "the erasure entry is {} bytes: {erased}", erased.len());
    assert!(erased.contains("\"requested\":1000") && erased.contains("\"erased\":0"), "{erased}");
    assert_eq!(lines.len(), 41, "the withdrawal and 40 questions");

    // Through gRPC, pages of at most 4 KiB: every entry exactly once, in order.
    use ponte_proto::v1::governance_client::GovernanceClient;
    let (cert, key) = w.fed.cert("dpo-federazione");
    let mut g = w.rt.block_on(async { GovernanceClient::new(w.fed.channel(Some((&cert, &key)), &w.fed.certs.join("ca.pem")).await.unwrap()) });
    let (mut seen, mut from, mut pages) = (Vec::new(), 0u64, 0);
    loop {
        let page = w
            .rt
            .block_on(g.query_audit(v1::AuditQuery { node: "comune-lecce".into(), max_bytes: 4096, from_sequence: from, ..Default::default() }))
            .unwrap()
            .into_inner();
        pages += 1;
        let bytes: usize = page.entries.iter().map(|e| e.json.len()).sum();
        assert!(bytes <= 4096 + 1024, "a page of {bytes} bytes (one entry may cross the bound)");
        seen.extend(page.entries.iter().map(|e| e.sequence));
        if !page.more {
            break;
        }
        from = page.next_sequence;
        assert!(pages < 100);
    }
    assert!(pages > 1, "4 KiB pages of 41 entries: several pages");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seen, sorted, "in order, none twice");
    assert_eq!(seen.len(), 41);
    let bad = w.rt.block_on(g.query_audit(v1::AuditQuery { max_bytes: 5 * 1024 * 1024, ..Default::default() })).unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}

#[test]
fn a_token_one_node_gives_to_several_identities_is_no_evidence_and_is_reported_for_a_steward() {
    let w = World::new(None);
    // The Comune's export gives one (valid) codice fiscale to five different people; the ASL
    // holds the real owner of that codice fiscale.
    // A custom client: it sends the owner's codice fiscale token with each stranger's filter
    // (the real node would not: it drops a CF that disagrees with the record's own data).
    let owner = person(100);
    let owner_encoding = w.encode(&owner);
    let cf_token = owner_encoding.tokens.iter().find(|t| t.kind == v1::TokenKind::CodiceFiscale as i32).unwrap().clone();
    w.publish("asl-lecce", vec![item("owner", owner_encoding, active(Cat::CureDomiciliari), 1, false)]).unwrap();
    let mut items = Vec::new();
    for n in 0..5u32 {
        let mut encoding = w.encode(&person(200 + n));
        encoding.tokens = vec![cf_token.clone()];
        items.push(item(&format!("c{n}"), encoding, active(Cat::SegretariatoSociale), 1, false));
    }
    w.publish("comune-lecce", items).unwrap();
    for n in 0..5 {
        let a = w.ask_usual("comune-lecce", &format!("c{n}")).unwrap();
        assert!(a.relationships.is_empty(), "c{n} is glued to somebody by the placeholder: {:?}", a.relationships);
    }
    assert!(w.ask_usual("asl-lecce", "owner").unwrap().relationships.is_empty(), "the owner is glued to the placeholder's holders");
    let officer = w.fed.officer_config();
    let start = Instant::now();
    let o = w.fed.coordinator_cmd(&["quarantine", "--officer", &officer.to_string_lossy()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("token_hub: node comune-lecce gives one codice_fiscale to"), "{out}");
    for n in 0..3 {
        assert!(out.contains(&format!("comune-lecce/c{n}")), "{out}");
    }
    assert!(!out.contains("asl-lecce/owner"), "another node's item is never reported as the Comune's: {out}");
    assert!(start.elapsed() < Duration::from_secs(30));
    // Only privacy officers read it.
    let (cert, key) = w.fed.cert("comune-lecce");
    let status = w.rt.block_on(async {
        let ch = w.fed.channel(Some((&cert, &key)), &w.fed.certs.join("ca.pem")).await.unwrap();
        ponte_proto::v1::governance_client::GovernanceClient::new(ch).quarantine(v1::QuarantineQuery::default()).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
}
