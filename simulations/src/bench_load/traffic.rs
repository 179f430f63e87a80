//! The traffic of `bench load`, all over mutual-TLS gRPC with node certificates: who-else
//! clients (closed loop — one question in flight each, the next sent when the answer arrives —
//! or open loop at a fixed rate, latency counted from the moment a question was due so that a
//! slow coordinator cannot hide its queue), and a node publishing batches while they ask.
//!
//! Only what happens inside the measured window counts: a question counts when its answer (or
//! error) arrives in the window, a batch when its acknowledgement does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use ponte_proto::v1::federation_client::FederationClient;
use ponte_proto::v1::{self, OperatorRole as R, Purpose as P, PublishBatch, PublishedItem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Longest latency the histograms hold (microseconds); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 120_000_000;
/// Questions one open-loop client keeps in flight at most; past it, new ones wait (their
/// latency still runs from when they were due).
const MAX_IN_FLIGHT: usize = 1_024;
/// Deadline of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// (role, purpose) pairs the shipped default policy accepts (`[purposes]`); the clients ask with
/// them in turn. Break-glass and data-subject purposes are left out: they are rare and audited
/// apart.
pub const QUESTION_MIX: [(R, P); 12] = [
    (R::AssistenteSociale, P::ContinuitaAssistenziale),
    (R::AssistenteSociale, P::ConvocazioneUvm),
    (R::AssistenteSociale, P::DimissioneProtetta),
    (R::Mmg, P::ContinuitaAssistenziale),
    (R::Mmg, P::ConvocazioneUvm),
    (R::Mmg, P::DimissioneProtetta),
    (R::OperatorePua, P::ContinuitaAssistenziale),
    (R::OperatorePua, P::ConvocazioneUvm),
    (R::MembroUvm, P::ContinuitaAssistenziale),
    (R::MembroUvm, P::ConvocazioneUvm),
    (R::OperatoreCot, P::DimissioneProtetta),
    (R::OperatoreCot, P::ContinuitaAssistenziale),
];

/// A new latency histogram in microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    h.record(us).expect("value within the histogram's bounds");
}

/// Opens one HTTP/2 connection to the coordinator as node `node` (its certificate in `certs`).
pub async fn connect(addr: &str, certs: &Path, node: &str) -> Result<FederationClient<Channel>> {
    let read = |name: String| std::fs::read_to_string(certs.join(&name)).with_context(|| format!("reading {}", certs.join(&name).display()));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.pem".into())?))
        .identity(Identity::from_pem(read(format!("{node}.pem"))?, read(format!("{node}.key"))?))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(30))
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connecting to the coordinator at {addr} as {node}"))?;
    Ok(FederationClient::new(channel)
        .max_decoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES))
}

/// The measured window: from `from` (after the warm-up) to `until`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub from: Instant,
    pub until: Instant,
}

impl Window {
    fn counts(&self, t: Instant) -> bool {
        t >= self.from && t <= self.until
    }
}

/// What the who-else clients saw in the window.
pub struct Questions {
    pub latency: Histogram<u64>,
    pub answered: u64,
    /// Refused by the policy (`PERMISSION_DENIED`, the coordinator's answer to a question it
    /// must not answer).
    pub refused: u64,
    /// Every other failure, by gRPC code.
    pub errors: BTreeMap<String, u64>,
    /// Relationships in all answers, and answers with at least one.
    pub relationships: u64,
    pub answers_with_others: u64,
    /// The first error's text, to say what went wrong.
    pub first_error: Option<String>,
}

impl Questions {
    fn new() -> Questions {
        Questions {
            latency: histogram(),
            answered: 0,
            refused: 0,
            errors: BTreeMap::new(),
            relationships: 0,
            answers_with_others: 0,
            first_error: None,
        }
    }

    pub fn merge(&mut self, o: &Questions) {
        self.latency.add(&o.latency).expect("same histogram bounds");
        self.answered += o.answered;
        self.refused += o.refused;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.relationships += o.relationships;
        self.answers_with_others += o.answers_with_others;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
    }

    fn tally(&mut self, took: Duration, result: &Result<tonic::Response<v1::WhoElseAnswer>, tonic::Status>) {
        record(&mut self.latency, took);
        match result {
            Ok(answer) => {
                self.answered += 1;
                let n = answer.get_ref().relationships.len() as u64;
                self.relationships += n;
                self.answers_with_others += u64::from(n > 0);
            }
            Err(s) if s.code() == tonic::Code::PermissionDenied => self.refused += 1,
            Err(s) => {
                *self.errors.entry(format!("{:?}", s.code())).or_default() += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(ponte_node::client::status_text(s));
                }
            }
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One who-else client: node `node` asks about its own `anchors`, chosen at random.
pub struct Asker {
    pub client: FederationClient<Channel>,
    pub node: String,
    pub anchors: Arc<Vec<String>>,
    pub seed: u64,
}

fn question(node: &str, anchors: &[String], rng: &mut ChaCha8Rng, k: u64, client: usize) -> v1::WhoElseQuestion {
    let (role, purpose) = QUESTION_MIX[rng.random_range(0..QUESTION_MIX.len())];
    v1::WhoElseQuestion {
        node_id: node.to_string(),
        anchor_reference: anchors[rng.random_range(0..anchors.len())].clone(),
        purpose: purpose as i32,
        operator_role: role as i32,
        operator_id: format!("op-{client}-{}", k % 40),
        break_glass_reason: 0,
    }
}

/// Asks until the window ends, one question at a time.
pub async fn closed_loop(mut a: Asker, index: usize, w: Window) -> Questions {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut q = Questions::new();
    let mut k = 0u64;
    while Instant::now() < w.until {
        let req = question(&a.node, &a.anchors, &mut rng, k, index);
        k += 1;
        let sent = Instant::now();
        let result = a.client.who_else(req).await;
        let done = Instant::now();
        if w.counts(done) {
            q.tally(done - sent, &result);
        }
    }
    q
}

/// Asks `rate` questions a second until the window ends, whether answers come back or not; each
/// question's latency runs from the moment it was due.
pub async fn open_loop(a: Asker, index: usize, rate: f64, w: Window) -> Questions {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let tally = Arc::new(Mutex::new(Questions::new()));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let interval = Duration::from_secs_f64(1.0 / rate);
    // Clients start spread over one interval, not all at once.
    let mut due = w.start + interval.mul_f64(rng.random::<f64>());
    let mut k = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while due < w.until {
        tokio::time::sleep_until(due).await;
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let req = question(&a.node, &a.anchors, &mut rng, k, index);
        let mut client = a.client.clone();
        let tally = tally.clone();
        let was_due = due;
        tasks.spawn(async move {
            let result = client.who_else(req).await;
            let done = Instant::now();
            drop(permit);
            if w.counts(done) {
                tally.lock().unwrap_or_else(|p| p.into_inner()).tally(done - was_due, &result);
            }
        });
        while tasks.try_join_next().is_some() {}
        k += 1;
        due += interval;
    }
    // Questions still in flight at the end of the window finish outside it: not counted.
    tasks.abort_all();
    let mut out = Questions::new();
    out.merge(&tally.lock().unwrap_or_else(|p| p.into_inner()));
    out
}

/// The publishing node's items: sent in turn; when all have been sent, again with a higher
/// revision (a changed identity, which the coordinator links anew).
pub struct PublishPool {
    pub items: Vec<PublishedItem>,
    /// How many of `items` (the first ones) are already published (changed when sent) and how
    /// many are new to the coordinator until sent once.
    pub known: usize,
    next: usize,
    passes: u64,
    sent_once: usize,
}

impl PublishPool {
    pub fn new(items: Vec<PublishedItem>, known: usize) -> PublishPool {
        PublishPool { items, known, next: 0, passes: 0, sent_once: 0 }
    }

    /// Starts a new pass: every item's revision goes up by one, so that what is sent next is a
    /// change whatever was sent before.
    pub fn new_pass(&mut self) {
        for it in &mut self.items {
            it.revision += 1;
        }
        self.passes += 1;
        self.next = 0;
    }

    /// The next `n` items (fewer at the end of a pass); (items, how many are new).
    fn take(&mut self, n: usize) -> (Vec<PublishedItem>, usize) {
        if self.next >= self.items.len() {
            self.new_pass();
        }
        let end = (self.next + n).min(self.items.len());
        let batch = self.items[self.next..end].to_vec();
        let fresh_from = self.known.max(self.sent_once).max(self.next);
        let fresh = end.saturating_sub(fresh_from);
        self.sent_once = self.sent_once.max(end);
        self.next = end;
        (batch, fresh)
    }
}

/// What the publishing node did in the window.
pub struct Publishing {
    pub latency: Histogram<u64>,
    pub items: u64,
    pub new_items: u64,
    pub batches: u64,
    pub errors: BTreeMap<String, u64>,
    pub first_error: Option<String>,
}

/// Publishes batches of `batch` items until the window ends: paced at `rate` items a second, or
/// as fast as acknowledgements come (one batch in flight, as a node's outbox drain does).
pub async fn publisher(
    mut client: FederationClient<Channel>,
    node: String,
    fingerprint: Vec<u8>,
    pool: Arc<Mutex<PublishPool>>,
    batch: usize,
    rate: Option<f64>,
    w: Window,
    seed: u64,
) -> Publishing {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out =
        Publishing { latency: histogram(), items: 0, new_items: 0, batches: 0, errors: BTreeMap::new(), first_error: None };
    let mut sent = 0u64;
    while Instant::now() < w.until {
        if let Some(rate) = rate {
            let due = w.start + Duration::from_secs_f64(sent as f64 / rate);
            if due >= w.until {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        let (items, fresh) = pool.lock().unwrap_or_else(|p| p.into_inner()).take(batch);
        let n = items.len() as u64;
        sent += n;
        let t = Instant::now();
        let result = client
            .publish(PublishBatch { node_id: node.clone(), schema_fingerprint: fingerprint.clone(), key_epoch: 1, batch_id: rng.random(), items })
            .await;
        let done = Instant::now();
        if !w.counts(done) {
            continue;
        }
        match result {
            Ok(ack) if u64::from(ack.get_ref().accepted) == n => {
                record(&mut out.latency, done - t);
                out.items += n;
                out.new_items += fresh as u64;
                out.batches += 1;
            }
            Ok(ack) => {
                *out.errors.entry("PartiallyAccepted".into()).or_default() += 1;
                out.first_error.get_or_insert_with(|| format!("{} of {n} items accepted", ack.get_ref().accepted));
            }
            Err(s) => {
                *out.errors.entry(format!("{:?}", s.code())).or_default() += 1;
                out.first_error.get_or_insert_with(|| ponte_node::client::status_text(&s));
            }
        }
    }
    out
}

/// Milliseconds at quantile `q` of a microsecond histogram (0 when empty).
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1e3 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(r: &str) -> PublishedItem {
        PublishedItem { reference: r.into(), revision: 1, ..Default::default() }
    }

    #[test]
    fn the_pool_counts_new_items_once_then_changes_revisions() {
        let mut pool = PublishPool::new((0..5).map(|i| item(&i.to_string())).collect(), 2);
        let (b, fresh) = pool.take(3);
        assert_eq!((b.len(), fresh), (3, 1), "two known items, then one new");
        let (b, fresh) = pool.take(3);
        assert_eq!((b.len(), fresh), (2, 2), "the pass ends at the pool's end");
        let (b, fresh) = pool.take(3);
        assert_eq!((b.len(), fresh), (3, 0), "the second pass sends changes only");
        assert!(b.iter().all(|i| i.revision == 2));
    }

    #[test]
    fn every_question_of_the_mix_is_allowed_by_the_default_policy() {
        let policy = ponte_coordinator::policy::Policy::default_policy();
        for (role, purpose) in QUESTION_MIX {
            assert!(policy.purpose_allowed(role, purpose), "{role:?} {purpose:?}");
        }
    }
}
