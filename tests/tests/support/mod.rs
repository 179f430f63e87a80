//! What the hostile-node tests (`side_channels.rs`, `amplification.rs`) share: a federation
//! with a fixed linkage secret and one gRPC client per node certificate, realistic identities
//! encoded by the node's real encoder, and the coordinator process's memory as the kernel
//! reports it.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use ponte_e2e::*;
use ponte_node::encode::Encoder;
use ponte_node::normalise::codice_fiscale::compute;
use ponte_node::normalise::dates::DateFormat;
use ponte_node::normalise::{self, BirthDate, NormalisedIdentity, RawIdentity, Sex};
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1::federation_client::FederationClient;
use ponte_proto::v1::{self, ServiceCategory as Cat};
use tonic::transport::Channel;

/// The fixed secret of every world, so that twin federations publish byte-identical encodings.
pub const SECRET: [u8; 32] = *b"ponte-hostile-node-fixed-secret!";

/// One identity as a node holds it after import, with its own (valid) codice fiscale.
pub fn identity(surname: &str, given: &str, sex: Sex, y: u16, m: u8, d: u8, place: &str) -> NormalisedIdentity {
    let cf = compute(surname, given, sex, BirthDate { year: y, month: m, day: d }, place);
    identity_with_cf(surname, given, sex, y, m, d, place, &cf)
}

/// One identity whose export carries `cf` (which may belong to somebody else).
#[allow(clippy::too_many_arguments)]
pub fn identity_with_cf(surname: &str, given: &str, sex: Sex, y: u16, m: u8, d: u8, place: &str, cf: &str) -> NormalisedIdentity {
    let birth = format!("{y:04}-{m:02}-{d:02}");
    let raw = RawIdentity {
        surname,
        given_names: given,
        sex: if sex == Sex::M { "M" } else { "F" },
        birth_date: &birth,
        birthplace: place,
        codice_fiscale: cf,
        surname_alias: "",
    };
    normalise::normalise(&raw, &DateFormat::parse("%Y-%m-%d").unwrap()).unwrap()
}

const SYLLABLES: [&str; 30] = [
    "ros", "bia", "gre", "can", "tor", "mel", "lup", "fer", "pan", "sal", "cor", "vit", "mar", "des", "pol", "gal", "ric", "sor", "tam", "bel",
    "nar", "ces", "dom", "fal", "gir", "lam", "mon", "pet", "ruf", "zan",
];
const ENDINGS: [&str; 3] = ["o", "i", "a"];
const GIVEN_M: [&str; 10] = ["Antonio", "Cosimo", "Vito", "Giuseppe", "Salvatore", "Luigi", "Donato", "Rocco", "Pasquale", "Oronzo"];
const GIVEN_F: [&str; 10] = ["Maria", "Addolorata", "Lucia", "Concetta", "Rosa", "Anna", "Immacolata", "Carmela", "Teresa", "Assunta"];
const PLACES: [&str; 4] = ["E506", "D862", "E815", "B936"];

/// SplitMix64: a fixed pseudo-random function of the person number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Person number `n`: a surname of its own (three syllables and an ending, distinct for every
/// n below 81,000), a given name, sex, birth date and place drawn from `n` by a fixed
/// pseudo-random function — distinct numbers are distinct people that the matching model keeps
/// apart — with its own codice fiscale.
pub fn person(n: u32) -> NormalisedIdentity {
    let (s, g, sex, y, m, d, p) = person_fields(n);
    identity(&s, g, sex, y, m, d, p)
}

/// The clear fields of person `n`: surname, given name, sex, birth year, month, day, Belfiore.
pub fn person_fields(n: u32) -> (String, &'static str, Sex, u16, u8, u8, &'static str) {
    // 7,919 is prime to 81,000: a bijection that spreads consecutive numbers over the syllables.
    let k = (n as u64 % 81_000) * 7_919 % 81_000;
    let h = mix(n as u64);
    let mut surname = String::new();
    for part in [SYLLABLES[(k % 30) as usize], SYLLABLES[(k / 30 % 30) as usize], SYLLABLES[(k / 900 % 30) as usize], ENDINGS[(k / 27_000) as usize]] {
        surname.push_str(part);
    }
    let surname = surname[..1].to_uppercase() + &surname[1..];
    let sex = if h & 1 == 0 { Sex::M } else { Sex::F };
    let given = if sex == Sex::M { GIVEN_M[(h >> 1) as usize % 10] } else { GIVEN_F[(h >> 1) as usize % 10] };
    let y = 1925 + ((h >> 8) % 70) as u16;
    let m = 1 + ((h >> 16) % 12) as u8;
    let d = 1 + ((h >> 24) % 28) as u8;
    (surname, given, sex, y, m, d, PLACES[((h >> 32) % 4) as usize])
}

/// A relationship description as a node publishes it.
pub fn rel(category: Cat, status: v1::RelationshipStatus, since_month: u32, contact: v1::ContactRole) -> v1::Relationship {
    v1::Relationship {
        entity_type: 0,
        unit: format!("unit-{}", category as i32),
        category: category as i32,
        tier: 0,
        status: status as i32,
        since_month,
        case_manager: contact == v1::ContactRole::CaseManagerUnita,
        plan: v1::PlanType::Pai as i32,
        contact: contact as i32,
    }
}

/// An active relationship since January 2024, reached through the unit's office.
pub fn active(category: Cat) -> v1::Relationship {
    rel(category, v1::RelationshipStatus::Attiva, 202401, v1::ContactRole::SegreteriaUnita)
}

/// The wire encoding of an identity under `encoder`.
pub fn wire_encoding(encoder: &Encoder, who: &NormalisedIdentity) -> v1::IdentityEncoding {
    let enc = encoder.encode(who);
    v1::IdentityEncoding {
        clk: enc.clk,
        tokens: enc.tokens.iter().map(|(k, t)| v1::ExactToken { kind: *k as i32, value: t.to_vec() }).collect(),
        quality_flags: enc.quality_flags,
        field_filters: enc.field_filters.into_iter().map(|(field, bits)| v1::FieldFilter { field, bits }).collect(),
    }
}

pub fn item(reference: &str, encoding: v1::IdentityEncoding, relationship: v1::Relationship, revision: u64, obscured: bool) -> v1::PublishedItem {
    v1::PublishedItem { reference: reference.into(), encoding: Some(encoding), relationship: Some(relationship), revision, obscured }
}

pub fn fingerprint() -> Vec<u8> {
    LinkageSchema::default_schema().fingerprint().0.to_vec()
}

pub fn batch(node: &str, batch_id: u64, items: Vec<v1::PublishedItem>) -> v1::PublishBatch {
    v1::PublishBatch { node_id: node.into(), schema_fingerprint: fingerprint(), key_epoch: 1, batch_id, items }
}

pub fn question(node: &str, anchor: &str, purpose: v1::Purpose, role: v1::OperatorRole) -> v1::WhoElseQuestion {
    v1::WhoElseQuestion {
        node_id: node.into(),
        anchor_reference: anchor.into(),
        purpose: purpose as i32,
        operator_role: role as i32,
        operator_id: "op-hostile".into(),
        break_glass_reason: 0,
    }
}

/// One running federation with a fixed secret, its clients and a deterministic batch counter.
pub struct World {
    pub fed: Federation,
    pub rt: tokio::runtime::Runtime,
    pub encoder: Encoder,
    clients: RefCell<BTreeMap<String, FederationClient<Channel>>>,
    next_batch: Cell<u64>,
}

impl World {
    /// A federation under `policy` (None: the shipped default), its coordinator started.
    pub fn new(policy: Option<&str>) -> World {
        Self::with_config(policy, "")
    }

    /// The same, with `extra` appended to the coordinator's configuration (e.g. `[limits]`).
    pub fn with_config(policy: Option<&str>, extra: &str) -> World {
        let mut fed = Federation::new();
        if !extra.is_empty() {
            let text = std::fs::read_to_string(&fed.coordinator_config).unwrap();
            std::fs::write(&fed.coordinator_config, format!("{text}\n{extra}")).unwrap();
        }
        let secret = LinkageSecret::from_bytes(1, SECRET);
        secret.save(&fed.secret).unwrap();
        if let Some(p) = policy {
            fed.set_coordinator_policy(p);
        }
        fed.start_coordinator();
        let encoder = Encoder::new(&secret, &LinkageSchema::default_schema());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        World { fed, rt, encoder, clients: Default::default(), next_batch: Cell::new(1) }
    }

    pub fn client(&self, node: &str) -> FederationClient<Channel> {
        if let Some(c) = self.clients.borrow().get(node) {
            return c.clone();
        }
        let c = self.rt.block_on(self.new_client(node));
        self.clients.borrow_mut().insert(node.into(), c.clone());
        c
    }

    /// A fresh connection (its own HTTP/2 channel) presenting `node`'s certificate.
    pub async fn new_client(&self, node: &str) -> FederationClient<Channel> {
        let (cert, key) = self.fed.cert(node);
        let ch = self.fed.channel(Some((&cert, &key)), &self.fed.certs.join("ca.pem")).await.unwrap();
        FederationClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }

    pub fn batch_id(&self) -> u64 {
        let b = self.next_batch.get();
        self.next_batch.set(b + 1);
        b
    }

    pub fn encode(&self, who: &NormalisedIdentity) -> v1::IdentityEncoding {
        wire_encoding(&self.encoder, who)
    }

    /// Publishes items as `node` in one batch; the coordinator's ack or error.
    pub fn publish(&self, node: &str, items: Vec<v1::PublishedItem>) -> Result<v1::PublishAck, tonic::Status> {
        let b = batch(node, self.batch_id(), items);
        let mut c = self.client(node);
        self.rt.block_on(c.publish(b)).map(|r| r.into_inner())
    }

    pub fn publish_one(&self, node: &str, reference: &str, who: &NormalisedIdentity, r: v1::Relationship) -> Result<v1::PublishAck, tonic::Status> {
        self.publish(node, vec![item(reference, self.encode(who), r, 1, false)])
    }

    pub fn ask(&self, node: &str, q: v1::WhoElseQuestion) -> Result<v1::WhoElseAnswer, tonic::Status> {
        let mut c = self.client(node);
        self.rt.block_on(c.who_else(q)).map(|r| r.into_inner())
    }

    /// The usual question: continuity of care by an assistente sociale.
    pub fn ask_usual(&self, node: &str, anchor: &str) -> Result<v1::WhoElseAnswer, tonic::Status> {
        self.ask(node, question(node, anchor, v1::Purpose::ContinuitaAssistenziale, v1::OperatorRole::AssistenteSociale))
    }

    pub fn coordinator_pid(&self) -> u32 {
        self.fed.coordinator.as_ref().expect("coordinator running").child.id()
    }
}

/// A month `back` months before today, YYYYMM (UTC).
pub fn months_ago(back: u32) -> u32 {
    let today = ponte_coordinator::federation::today();
    let (y, m) = (today / 10_000, today / 100 % 100);
    let total = y * 12 + (m - 1) - back;
    (total / 12) * 100 + total % 12 + 1
}

/// A kernel memory figure of a process (`VmHWM`: peak resident set, `VmRSS`: current), bytes.
pub fn proc_mem(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub const MIB: u64 = 1 << 20;

/// Watches a process's resident memory and kills it (SIGKILL) past `cap` bytes, so that a
/// runaway coordinator fails the test instead of exhausting the machine. Returns a flag that
/// tells whether it had to, and the peak it saw.
pub struct MemoryGuard {
    pub tripped: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryGuard {
    pub fn watch(pid: u32, cap: u64) -> MemoryGuard {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        let tripped = std::sync::Arc::new(AtomicBool::new(false));
        let peak = std::sync::Arc::new(AtomicU64::new(0));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (t, p, s) = (tripped.clone(), peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(rss) = proc_mem(pid, "VmRSS") else { return };
                p.fetch_max(rss, Ordering::Relaxed);
                if rss > cap {
                    t.store(true, Ordering::Relaxed);
                    // SAFETY-free: kill(1) on the pid of the coordinator this test started.
                    let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        MemoryGuard { tripped, peak, stop }
    }

    pub fn tripped(&self) -> bool {
        self.tripped.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for MemoryGuard {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The median and the 90th percentile of durations, in microseconds.
pub fn median_p90(mut v: Vec<Duration>) -> (u128, u128) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_micros();
    (at(0.5), at(0.9))
}
