//! Shared pieces of Ponte's fuzz targets (`fuzz_targets/*.rs`, one per parser of untrusted
//! input). Each target asserts what the parser promises, not only that it does not panic:
//! every row of an export imported or reported with its line, configurations that read back the
//! same after being written, policy problems at real line:column positions, a schema that
//! passes its check encoding to what the coordinator accepts.
//!
//! Adding a target for one more RPC message is one small file: decode with [`decode_request`],
//! then run the receiver's validation of that message on the result.

use prost::Message;

/// The longest error or problem text a parser may return: inputs are echoed only in bounded
/// excerpts, so a huge input never becomes a huge log line or gRPC status.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Decodes one request message as the gRPC server would (at most
/// [`ponte_proto::limits::MAX_MESSAGE_BYTES`]), and checks that prost's decoding is stable: the
/// decoded message, encoded again, decodes to the same message. `None` when the bytes are not
/// such a message.
pub fn decode_request<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<M> {
    if data.len() > ponte_proto::limits::MAX_MESSAGE_BYTES {
        return None;
    }
    let m = M::decode(data).ok()?;
    let again = M::decode(m.encode_to_vec().as_slice());
    assert_eq!(again.as_ref(), Ok(&m), "a decoded message, encoded again, decodes differently");
    Some(m)
}

/// Fails when `text` (an error or a problem) is longer than [`MAX_ERROR_BYTES`] or empty.
pub fn assert_bounded(what: &str, text: &str) {
    assert!(!text.trim().is_empty(), "{what}: an empty message");
    assert!(text.len() <= MAX_ERROR_BYTES, "{what}: {} bytes: {:?}…", text.len(), &text[..text.floor_char_boundary(200)]);
}

/// The import configurations `csv_import` reads exports with: the README's default mapping and
/// the simulator's demo entities (each with its own delimiter, date format, headers and words),
/// plus a small row limit. The first byte of an input picks one.
pub fn import_configs() -> &'static [ponte_node::config::ImportConfig] {
    static CONFIGS: std::sync::LazyLock<Vec<ponte_node::config::ImportConfig>> = std::sync::LazyLock::new(|| {
        [
            include_str!("../import-configs/default.toml"),
            include_str!("../import-configs/asl-lecce.toml"),
            include_str!("../import-configs/comune-lecce.toml"),
            include_str!("../import-configs/comune-galatina.toml"),
            include_str!("../import-configs/ats-maglie.toml"),
            include_str!("../import-configs/small-limit.toml"),
        ]
        .iter()
        .map(|t| {
            let c: ponte_node::config::ImportConfig = toml::from_str(t).expect("the fuzz import configurations parse");
            c.check().expect("the fuzz import configurations are valid");
            c
        })
        .collect()
    });
    &CONFIGS
}

/// The physical lines of `data` as the importer must see them: `\n`, `\r\n` and a lone `\r`
/// each end one. Returns the 1-based numbers of the lines that are not empty. An oracle written
/// apart from the importer's own line reader.
pub fn non_empty_lines(data: &[u8]) -> Vec<u64> {
    let mut out = Vec::new();
    let (mut line, mut len, mut i) = (1u64, 0usize, 0usize);
    while i < data.len() {
        match data[i] {
            b'\r' | b'\n' => {
                if len > 0 {
                    out.push(line);
                }
                if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                line += 1;
                len = 0;
            }
            _ => len += 1,
        }
        i += 1;
    }
    if len > 0 {
        out.push(line);
    }
    out
}

/// A reader that hands its bytes over in pieces of at most `chunk` bytes, so that a line
/// terminator or a UTF-8 sequence is split between two reads.
pub struct Chunked<'a> {
    pub data: &'a [u8],
    pub chunk: usize,
}

impl std::io::Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.max(1).min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The certificate identity a message claiming to come from `claimed` is checked against: that
/// node when `claimed` is a valid node id (so that the checks past "speaks as itself" run),
/// another one otherwise.
pub fn node_for(claimed: &str) -> ponte_proto::identity::PeerIdentity {
    use ponte_proto::identity::{PeerIdentity, Role};
    let id = if ponte_proto::vocab::check_node_id(claimed).is_ok() { claimed } else { "asl-lecce" };
    PeerIdentity { id: id.to_string(), role: Role::Node { entity_type: ponte_proto::v1::EntityType::Comune }, display_name: "Comune".into() }
}

/// A privacy officer's identity.
pub fn officer() -> ponte_proto::identity::PeerIdentity {
    use ponte_proto::identity::{PeerIdentity, Role};
    PeerIdentity { id: "dpo".into(), role: Role::PrivacyOfficer, display_name: "DPO".into() }
}

/// A refusal of the coordinator's request checks: bounded, and of a kind a request check gives
/// (never a storage or server-side failure).
pub fn assert_refusal(what: &str, e: &ponte_coordinator::federation::FederationError) {
    use ponte_coordinator::federation::FederationError::*;
    assert_bounded(what, &e.to_string());
    assert!(matches!(e, Invalid(_) | Forbidden(_) | Precondition(_)), "{what}: a request check answered {e:?}");
}
