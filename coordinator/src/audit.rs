//! The audit chain: append-only entries, each hashing its predecessor, so that any altered,
//! reordered or removed entry is detected by [`verify`]. Pure: storage lives in `storage`.
//!
//! Entries name items by opaque reference (`node/reference`) and people by pseudonymous operator
//! ids only: nothing in the audit log identifies a person by itself.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Hash of the (virtual) entry before the first one.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A who-else question and what was shown: `shown` names the items by reference and
    /// `shown_as` says, in the same order, the category disclosed (`category` or `~group` when
    /// generalised).
    WhoElseAnswered {
        purpose: String,
        operator_role: String,
        operator_id: String,
        anchor: String,
        shown: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shown_as: Vec<String>,
        /// The anchor's person cluster when asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<u64>,
        /// Break-glass reason, when the purpose was `emergenza`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        break_glass: Option<String>,
    },
    /// A who-else question that was refused, and why.
    WhoElseRefused {
        purpose: String,
        operator_role: String,
        operator_id: String,
        anchor: String,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<u64>,
    },
    /// A node withdrew items (erasure). Written by coordinators before entries had a size
    /// bound; kept so that older chains read and verify.
    Withdrawn { references: Vec<String> },
    /// Closed relationships removed by the retention sweep (older chains; see `RetentionErased`).
    RetentionExpired { references: Vec<String>, closed_months: u32 },
    /// A node's withdrawal (erasure): how many references it named, how many were erased, and
    /// the SHA-256 of the erased labels (`node/reference`, sorted, one per line), which the node
    /// can recompute from its own list. Constant size, whatever the request.
    Erased { requested: u32, erased: u32, digest: String },
    /// Closed relationships removed by the retention sweep: how many, and the digest of their
    /// labels (as in `Erased`).
    RetentionErased {
        erased: u32,
        digest: String,
        closed_months: u32,
        /// The nodes whose relationships were removed (so that an officer's query by node finds
        /// the entry); bounded by the federation's nodes, not by the items.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
    },
    /// A consent recorded (or replaced) at a node, keyed by one of its references.
    ConsentRecorded { consent: String, reference: String },
    /// A consent revoked.
    ConsentRevoked { consent: String },
    /// Obscuring of an item set or lifted by its node.
    ObscuringChanged { item: String, obscured: bool },
    /// A policy version loaded (at first start, or live by a privacy officer).
    PolicyLoaded { version: String, sha256: String, previous: Option<String>, changes: Vec<String> },
    /// Privacy officers notified of a break-glass question (by its audit sequence).
    BreakGlassNotified { officers: Vec<String>, question: u64 },
    /// A data-subject report produced for a node's reference.
    SubjectReported { reference: String, operator_id: String, accesses: usize },
    /// A privacy officer asked why a relationship was or was not disclosed.
    Explained { target: String, question: Option<u64>, disclosed: bool },
    /// A privacy officer queried the audit log.
    AuditQueried { filter: String, returned: usize },
}

impl Event {
    /// The purpose of a question event (answered or refused).
    pub fn purpose(&self) -> Option<&str> {
        match self {
            Event::WhoElseAnswered { purpose, .. } | Event::WhoElseRefused { purpose, .. } => Some(purpose),
            _ => None,
        }
    }

    /// Every item label the event names.
    pub fn items(&self) -> Vec<&str> {
        match self {
            Event::WhoElseAnswered { anchor, shown, .. } => std::iter::once(anchor.as_str()).chain(shown.iter().map(String::as_str)).collect(),
            Event::WhoElseRefused { anchor, .. } => vec![anchor],
            Event::Withdrawn { references } | Event::RetentionExpired { references, .. } => references.iter().map(String::as_str).collect(),
            Event::ConsentRecorded { reference, .. } => vec![reference],
            Event::ObscuringChanged { item, .. } => vec![item],
            Event::SubjectReported { reference, .. } => vec![reference],
            Event::Explained { target, .. } => vec![target],
            _ => Vec::new(),
        }
    }
}

/// The digest of a set of item labels, as `Erased` and `RetentionErased` record it: SHA-256 of the
/// sorted labels, one per line (hex).
pub fn labels_digest(labels: &[String]) -> String {
    let mut sorted: Vec<&str> = labels.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut h = Sha256::new();
    for l in sorted {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// A privacy officer's audit query: entries in a time window, by or about a node, for a purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Query {
    /// Seconds since the Unix epoch, inclusive.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Entries made by this node, or naming one of its items.
    pub node: Option<String>,
    /// Questions for this purpose (lower-case name).
    pub purpose: Option<String>,
}

impl Query {
    pub fn matches(&self, e: &Entry) -> bool {
        let r = &e.record;
        if self.from.is_some_and(|f| r.time < f) || self.to.is_some_and(|t| r.time > t) {
            return false;
        }
        if let Some(n) = &self.node {
            let prefix = format!("{n}/");
            let named = match &r.event {
                Event::RetentionErased { nodes, .. } => nodes.iter().any(|x| x == n),
                _ => false,
            };
            if r.actor != *n && !named && !r.event.items().iter().any(|i| i.starts_with(&prefix)) {
                return false;
            }
        }
        if let Some(p) = &self.purpose
            && r.event.purpose() != Some(p.as_str())
        {
            return false;
        }
        true
    }
}

/// The content of an entry, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Who asked: the certificate's id and role.
    pub actor: String,
    pub actor_role: String,
    /// Policy version in force.
    pub policy: String,
    pub event: Event,
}

/// A chained entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub sequence: u64,
    pub prev_hash: String,
    pub record: Record,
    pub hash: String,
}

/// The hash of an entry: SHA-256 over the sequence, the previous hash and the record's JSON.
pub fn entry_hash(sequence: u64, prev_hash: &str, record: &Record) -> String {
    let mut h = Sha256::new();
    h.update(b"ponte-audit/v1\n");
    h.update(sequence.to_be_bytes());
    h.update(prev_hash.as_bytes());
    h.update(serde_json::to_vec(record).expect("audit records always serialise"));
    hex::encode(h.finalize())
}

/// Chains `record` after the entry `(last_sequence, last_hash)` (None for the first entry).
pub fn chain(last: Option<(u64, &str)>, record: Record) -> Entry {
    let (sequence, prev_hash) = match last {
        Some((s, h)) => (s + 1, h.to_string()),
        None => (0, GENESIS.to_string()),
    };
    let hash = entry_hash(sequence, &prev_hash, &record);
    Entry { sequence, prev_hash, record, hash }
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Position (0-based) in the stored order where the break shows.
    pub position: usize,
    pub problem: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit entry at position {}: {}", self.position, self.problem)
    }
}

/// Verifies entries in stored order: consecutive sequence numbers from 0, each entry's hash
/// recomputed, each entry pointing to its predecessor's hash. Returns the number of entries
/// and the last hash.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<(u64, String), ChainBreak> {
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    for (pos, e) in entries.into_iter().enumerate() {
        if e.sequence != pos as u64 {
            return Err(ChainBreak {
                position: pos,
                problem: format!("sequence {} where {} was expected (an entry was removed or reordered)", e.sequence, pos),
            });
        }
        if e.prev_hash != prev {
            return Err(ChainBreak { position: pos, problem: "does not point to the previous entry's hash (removed or reordered entries)".into() });
        }
        let h = entry_hash(e.sequence, &e.prev_hash, &e.record);
        if h != e.hash {
            return Err(ChainBreak { position: pos, problem: "its content does not match its hash (the entry was altered)".into() });
        }
        prev = e.hash.clone();
        count += 1;
    }
    Ok((count, prev))
}

/// Verifies the chain and then that it ends at `head`, the sequence and hash recorded apart
/// from the entries at every append: this catches the removal of the last entries, which the
/// chain alone cannot show.
pub fn verify_with_head<'a>(entries: impl IntoIterator<Item = &'a Entry>, head: Option<(u64, &str)>) -> Result<(u64, String), ChainBreak> {
    let (count, last) = verify(entries)?;
    match head {
        None if count == 0 => Ok((count, last)),
        None => Err(ChainBreak { position: 0, problem: format!("{count} entries but no recorded head (the head record was removed)") }),
        Some((seq, hash)) => {
            if count != seq + 1 {
                return Err(ChainBreak {
                    position: count as usize,
                    problem: format!(
                        "the chain has {count} entries but the recorded head is entry {seq}: {} entries were removed from the end",
                        (seq + 1).saturating_sub(count)
                    ),
                });
            }
            if last != hash {
                return Err(ChainBreak { position: seq as usize, problem: "the last entry is not the recorded head (the end of the chain was replaced)".into() });
            }
            Ok((count, last))
        }
    }
}

/// Checks that an audit receipt a node holds (sequence and hash) is in the chain.
pub fn check_receipt(entries: &[Entry], sequence: u64, hash: &str) -> Result<(), String> {
    match entries.iter().find(|e| e.sequence == sequence) {
        None => Err(format!("receipt {sequence}: no entry with that sequence (removed)")),
        Some(e) if e.hash != hash => Err(format!("receipt {sequence}: the entry's hash is {} but the receipt says {hash} (altered)", e.hash)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record {
            time: 1_700_000_000 + i,
            actor: "asl-lecce".into(),
            actor_role: "node".into(),
            policy: "default-1".into(),
            event: Event::Withdrawn { references: vec![format!("r{i}")] },
        }
    }

    fn chain_of(n: u64) -> Vec<Entry> {
        let mut v: Vec<Entry> = Vec::new();
        for i in 0..n {
            let last = v.last().map(|e| (e.sequence, e.hash.as_str()));
            let e = chain(last, rec(i));
            v.push(e);
        }
        v
    }

    #[test]
    fn intact_chain_verifies() {
        let v = chain_of(5);
        assert_eq!(verify(&v).unwrap().0, 5);
    }

    #[test]
    fn alteration_reordering_and_removal_are_detected() {
        let v = chain_of(5);
        let mut altered = v.clone();
        altered[2].record.actor = "comune-lecce".into();
        assert_eq!(verify(&altered).unwrap_err().position, 2);
        let mut reordered = v.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(&reordered).unwrap_err().position, 1);
        let mut removed = v.clone();
        removed.remove(3);
        assert_eq!(verify(&removed).unwrap_err().position, 3);
        // Removing the last entry is only detectable against a published head (receipts).
        let mut truncated = v.clone();
        truncated.pop();
        assert_eq!(verify(&truncated).unwrap().1, v[3].hash);
        // … which the recorded head is.
        let head = Some((4, v[4].hash.as_str()));
        assert!(verify_with_head(&v, head).is_ok());
        let err = verify_with_head(&truncated, head).unwrap_err();
        assert!(err.problem.contains("1 entries were removed"), "{err}");
        assert!(verify_with_head(&v[..0], None).is_ok());
        assert!(verify_with_head(&v, None).is_err());
        assert!(check_receipt(&v, 2, &v[2].hash).is_ok());
        assert!(check_receipt(&removed, 3, &v[3].hash).is_err());
    }

    #[test]
    fn queries_filter_by_time_node_and_purpose() {
        let mut v = chain_of(3);
        v[1].record.event = Event::WhoElseAnswered {
            purpose: "continuita_assistenziale".into(),
            operator_role: "operatore_pua".into(),
            operator_id: "op-1".into(),
            anchor: "comune-lecce/r1".into(),
            shown: vec!["asl-lecce/r9".into()],
            shown_as: vec!["cure_domiciliari".into()],
            cluster: Some(4),
            break_glass: None,
        };
        v[1].record.actor = "comune-lecce".into();
        let q = |from, to, node: Option<&str>, purpose: Option<&str>| {
            let q = Query { from, to, node: node.map(String::from), purpose: purpose.map(String::from) };
            v.iter().filter(|e| q.matches(e)).map(|e| e.sequence).collect::<Vec<_>>()
        };
        assert_eq!(q(None, None, None, None), vec![0, 1, 2]);
        assert_eq!(q(Some(1_700_000_001), Some(1_700_000_001), None, None), vec![1]);
        assert_eq!(q(None, None, Some("comune-lecce"), None), vec![1]);
        // Named as the holder of a shown item: the ASL sees who received its relationship.
        assert_eq!(q(None, None, Some("asl-lecce"), None), vec![0, 1, 2]);
        assert_eq!(q(None, None, None, Some("continuita_assistenziale")), vec![1]);
        assert_eq!(q(None, None, None, Some("emergenza")), Vec::<u64>::new());
    }
}
