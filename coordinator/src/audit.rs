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
    /// A who-else question and what was shown.
    WhoElseAnswered { purpose: String, operator_role: String, operator_id: String, anchor: String, shown: Vec<String> },
    /// A who-else question that was refused, and why.
    WhoElseRefused { purpose: String, operator_role: String, operator_id: String, anchor: String, reason: String },
    /// A node withdrew items (erasure).
    Withdrawn { references: Vec<String> },
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
    }
}
