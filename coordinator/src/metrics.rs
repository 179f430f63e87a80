//! The coordinator's Prometheus metrics, and the plain-HTTP endpoint that serves them.
//!
//! Every metric name, help text and label value lives in this module, so that what the
//! coordinator exposes can be read — and reviewed for privacy — in one place. The service layer
//! calls the typed recording functions below; the pure core (`linker`, `policy`, `answer`,
//! `audit`) knows nothing of metrics.
//!
//! What callers may rely on:
//! - label values come from closed sets (purpose, entity type, refusal reason, disclosure, link
//!   band, gRPC service, outcome) or are node ids taken from verified certificates (`node`).
//!   No label or value is ever a reference, record id, operator id, consent id, cluster or item
//!   number, and none is taken from a request without being checked against a closed set;
//! - every metric in [`CATALOGUE`] is described (Prometheus `# HELP`) once [`install`] ran;
//! - recording without an installed recorder does nothing (unit tests, library users), so the
//!   recording functions never fail and never panic.
//!
//! The endpoint ([`serve`]) has no authentication: it serves counts and timings, no personal
//! data, and listens on loopback unless `[metrics] listen` says otherwise.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Unit, counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use ponte_proto::v1;
use ponte_proto::vocab;

use crate::policy;

/// What kind of Prometheus metric a catalogue entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Seconds, rendered as a Prometheus histogram with [`LATENCY_BUCKETS`].
    Histogram,
}

/// One metric: its full name, kind, labels and help text.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

// Who-else questions.
pub const QUESTIONS: &str = "ponte_coordinator_questions_total";
pub const ANSWERS: &str = "ponte_coordinator_answers_total";
pub const REFUSALS: &str = "ponte_coordinator_question_refusals_total";
pub const QUESTION_ERRORS: &str = "ponte_coordinator_question_errors_total";
pub const DISCLOSED: &str = "ponte_coordinator_relationships_disclosed_total";
pub const BREAK_GLASS: &str = "ponte_coordinator_break_glass_answers_total";
pub const QUESTION_SECONDS: &str = "ponte_coordinator_question_duration_seconds";
pub const SUBJECT_REPORTS: &str = "ponte_coordinator_subject_reports_total";
// Publishing.
pub const BATCHES: &str = "ponte_coordinator_publish_batches_total";
pub const ITEMS_PUBLISHED: &str = "ponte_coordinator_published_items_total";
pub const LINKS_FOUND: &str = "ponte_coordinator_links_found_total";
pub const COMPARISONS: &str = "ponte_coordinator_link_comparisons_total";
pub const PUBLISH_SECONDS: &str = "ponte_coordinator_publish_duration_seconds";
pub const LINK_SECONDS: &str = "ponte_coordinator_link_duration_seconds";
pub const WITHDRAWN: &str = "ponte_coordinator_withdrawn_items_total";
pub const RELATIONSHIP_UPDATES: &str = "ponte_coordinator_relationship_updates_total";
// Consents, obscuring, policy, retention, governance.
pub const CONSENTS_RECORDED: &str = "ponte_coordinator_consents_recorded_total";
pub const CONSENTS_REVOKED: &str = "ponte_coordinator_consents_revoked_total";
pub const OBSCURING_CHANGES: &str = "ponte_coordinator_obscuring_changes_total";
pub const POLICY_RELOADS: &str = "ponte_coordinator_policy_reloads_total";
pub const RETENTION_EXPIRED: &str = "ponte_coordinator_retention_expired_items_total";
pub const EXPLANATIONS: &str = "ponte_coordinator_explanations_total";
pub const AUDIT_QUERIES: &str = "ponte_coordinator_audit_queries_total";
// Requests, queue, failures.
pub const AUTH_REFUSALS: &str = "ponte_coordinator_auth_refusals_total";
pub const IN_FLIGHT: &str = "ponte_coordinator_requests_in_flight";
pub const STATE_WAITING: &str = "ponte_coordinator_state_queue_depth";
pub const STATE_WAIT_SECONDS: &str = "ponte_coordinator_state_wait_seconds";
pub const VIEW_APPLY_SECONDS: &str = "ponte_coordinator_view_apply_seconds";
pub const STORAGE_FAILURES: &str = "ponte_coordinator_storage_failures_total";
pub const RATE_LIMITED: &str = "ponte_coordinator_rate_limited_total";
pub const DISK_REFUSALS: &str = "ponte_coordinator_disk_full_refusals_total";
pub const QUARANTINED: &str = "ponte_coordinator_quarantined_total";
// What the coordinator holds (refreshed at every scrape).
pub const ITEMS: &str = "ponte_coordinator_items";
pub const ENCODINGS: &str = "ponte_coordinator_encodings";
pub const PERSONS: &str = "ponte_coordinator_persons";
pub const LINKS: &str = "ponte_coordinator_links";
pub const CONSENTS: &str = "ponte_coordinator_consents";
pub const AUDIT_ENTRIES: &str = "ponte_coordinator_audit_entries";
pub const INDEX_BYTES: &str = "ponte_coordinator_index_memory_bytes";
pub const TOKEN_HUBS: &str = "ponte_coordinator_token_hubs";
pub const DISK_FREE: &str = "ponte_coordinator_disk_free_bytes";
pub const WRITES_REFUSED: &str = "ponte_coordinator_writes_refused";
pub const BUILD_INFO: &str = "ponte_coordinator_build_info";

/// Every metric the coordinator exposes.
pub const CATALOGUE: &[MetricDef] = &[
    MetricDef {
        name: QUESTIONS,
        kind: Kind::Counter,
        labels: &["purpose", "requester"],
        help: "Who-else questions received from nodes, by purpose and by the asking node's entity type (asl, comune, ats, provider; invalid when unreadable). Each ends as an answer, a refusal or an error.",
    },
    MetricDef {
        name: ANSWERS,
        kind: Kind::Counter,
        labels: &["purpose", "requester"],
        help: "Who-else questions answered (possibly with no relationship shown), by purpose and by the asking node's entity type.",
    },
    MetricDef {
        name: REFUSALS,
        kind: Kind::Counter,
        labels: &["reason"],
        help: "Who-else questions refused, by reason: invalid_request (malformed values), wrong_node (asked as another node), purpose_not_allowed (role and purpose under the policy), break_glass (break-glass disabled, role not allowed or reason missing/misplaced), anchor_not_held (the anchor is not one of the node's published relationships), anchor_not_active (the anchor's status gives no need-to-know).",
    },
    MetricDef {
        name: QUESTION_ERRORS,
        kind: Kind::Counter,
        labels: &[],
        help: "Who-else questions that failed because the coordinator could not write the audit entry (storage failure); nothing was answered.",
    },
    MetricDef {
        name: DISCLOSED,
        kind: Kind::Counter,
        labels: &["disclosure"],
        help: "Relationships shown in who-else answers, by disclosure: full, or generalised (category group only). Withheld relationships are not counted anywhere.",
    },
    MetricDef {
        name: BREAK_GLASS,
        kind: Kind::Counter,
        labels: &[],
        help: "Break-glass questions (purpose emergenza) answered; each one is audited and notifies the privacy officers named by the policy.",
    },
    MetricDef {
        name: QUESTION_SECONDS,
        kind: Kind::Histogram,
        labels: &["outcome"],
        help: "Time to decide a who-else question, from its arrival at the coordinator's worker to the audited answer or refusal, in seconds, by outcome (answered, refused, error).",
    },
    MetricDef {
        name: SUBJECT_REPORTS,
        kind: Kind::Counter,
        labels: &[],
        help: "Data-subject access reports produced for a person's node.",
    },
    MetricDef {
        name: BATCHES,
        kind: Kind::Counter,
        labels: &["node", "outcome"],
        help: "Publish batches received, by publishing node and outcome: stored (linked and flushed to disk), replayed (a batch already stored; its ack sent again), refused (schema, key epoch or item checks failed; nothing stored), error (storage failure; nothing acknowledged).",
    },
    MetricDef {
        name: ITEMS_PUBLISHED,
        kind: Kind::Counter,
        labels: &["node"],
        help: "Published items (a relationship with its identity encoding) stored, by publishing node.",
    },
    MetricDef {
        name: LINKS_FOUND,
        kind: Kind::Counter,
        labels: &["band"],
        help: "Links found by linking published items, by match band (certain, probable, possible). Each link between two items counts once.",
    },
    MetricDef {
        name: COMPARISONS,
        kind: Kind::Counter,
        labels: &[],
        help: "Dice comparisons made by blocking while linking published items.",
    },
    MetricDef {
        name: PUBLISH_SECONDS,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time to ingest a publish batch that was stored: checks, linking, storing and flushing to disk before the ack, in seconds.",
    },
    MetricDef {
        name: LINK_SECONDS,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time the linker took for a stored publish batch (blocking, Dice kernel, scoring, clusters), in seconds.",
    },
    MetricDef {
        name: WITHDRAWN,
        kind: Kind::Counter,
        labels: &["node"],
        help: "Items erased by withdrawals (encodings, relationship, links and the consents keyed by them), by withdrawing node.",
    },
    MetricDef {
        name: RELATIONSHIP_UPDATES,
        kind: Kind::Counter,
        labels: &[],
        help: "Relationship metadata updates applied to published items.",
    },
    MetricDef { name: CONSENTS_RECORDED, kind: Kind::Counter, labels: &[], help: "Consents recorded (or replaced) at the coordinator." },
    MetricDef {
        name: CONSENTS_REVOKED,
        kind: Kind::Counter,
        labels: &[],
        help: "Consents revoked at the coordinator (revocations of consents it did not hold are not counted).",
    },
    MetricDef {
        name: OBSCURING_CHANGES,
        kind: Kind::Counter,
        labels: &["obscured"],
        help: "Obscuring (oscuramento) changes applied, by the new state: true (obscured) or false (obscuring lifted).",
    },
    MetricDef {
        name: POLICY_RELOADS,
        kind: Kind::Counter,
        labels: &[],
        help: "Disclosure policy versions loaded live by privacy officers since the coordinator started.",
    },
    MetricDef {
        name: RETENTION_EXPIRED,
        kind: Kind::Counter,
        labels: &[],
        help: "Closed relationships removed by the retention sweep because they were past the policy's retention.",
    },
    MetricDef { name: EXPLANATIONS, kind: Kind::Counter, labels: &[], help: "Decisions explained to privacy officers (policy explain)." },
    MetricDef { name: AUDIT_QUERIES, kind: Kind::Counter, labels: &[], help: "Audit log queries made by privacy officers." },
    MetricDef {
        name: AUTH_REFUSALS,
        kind: Kind::Counter,
        labels: &["service", "reason"],
        help: "gRPC requests refused before any handler ran, by service and reason: no_certificate, certificate_refused (not a Ponte identity), wrong_role (a certificate role the service is not for).",
    },
    MetricDef {
        name: IN_FLIGHT,
        kind: Kind::Gauge,
        labels: &["service"],
        help: "gRPC requests being handled, by service (federation, governance, health, reflection, other); a streamed publish counts until its response starts.",
    },
    MetricDef {
        name: STATE_WAITING,
        kind: Kind::Gauge,
        labels: &[],
        help: "The coordinator's work queue: requests waiting for its state. Publishes, questions and every other change are applied one at a time; this many (requests, and the scrape or retention sweep when they wait too) are waiting for their turn.",
    },
    MetricDef {
        name: STATE_WAIT_SECONDS,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time requests that had to queue waited for the coordinator's state, in seconds.",
    },
    MetricDef {
        name: STORAGE_FAILURES,
        kind: Kind::Counter,
        labels: &[],
        help: "Storage failures (sled) while handling requests; the change was not acknowledged.",
    },
    MetricDef {
        name: VIEW_APPLY_SECONDS,
        kind: Kind::Histogram,
        labels: &[],
        help: "Time a change held the view's write lock (applying a stored publication, withdrawal, consent or policy), in seconds: the longest a who-else question can wait for a change.",
    },
    MetricDef {
        name: RATE_LIMITED,
        kind: Kind::Counter,
        labels: &["class"],
        help: "Calls refused because their node exceeded its rate ([limits]), by class: question (who-else, data-subject reports) or write (withdrawals, consents, obscuring, updates). Nothing changed; the node retries.",
    },
    MetricDef {
        name: DISK_REFUSALS,
        kind: Kind::Counter,
        labels: &[],
        help: "Writes refused, or ballast released, because the data directory's disk is (nearly) full ([storage]).",
    },
    MetricDef {
        name: QUARANTINED,
        kind: Kind::Counter,
        labels: &["kind"],
        help: "Evidence held back for a data steward, by kind: token_hub (a token one node gives to several identities stopped being evidence), cluster_bound (an item held without links: one person would hold too many items of one node).",
    },
    MetricDef { name: ITEMS, kind: Kind::Gauge, labels: &[], help: "Published items held (one per published relationship), at the last scrape." },
    MetricDef {
        name: ENCODINGS,
        kind: Kind::Gauge,
        labels: &["epoch"],
        help: "Identity encodings indexed, by key epoch, at the last scrape (during a key rotation an item has one per epoch).",
    },
    MetricDef {
        name: PERSONS,
        kind: Kind::Gauge,
        labels: &[],
        help: "Person clusters (connected components of certain and probable links) among the items held, at the last scrape.",
    },
    MetricDef { name: LINKS, kind: Kind::Gauge, labels: &[], help: "Links between items held (certain, probable and possible), at the last scrape." },
    MetricDef { name: CONSENTS, kind: Kind::Gauge, labels: &[], help: "Consents held, at the last scrape." },
    MetricDef { name: AUDIT_ENTRIES, kind: Kind::Gauge, labels: &[], help: "Entries in the audit chain, at the last scrape." },
    MetricDef {
        name: INDEX_BYTES,
        kind: Kind::Gauge,
        labels: &[],
        help: "Approximate memory of the linker's index (filter matrices, LSH tables, tokens), in bytes, at the last scrape.",
    },
    MetricDef { name: TOKEN_HUBS, kind: Kind::Gauge, labels: &[], help: "Tokens that are no evidence for one node's items (token hubs), at the last scrape." },
    MetricDef { name: DISK_FREE, kind: Kind::Gauge, labels: &[], help: "Free bytes on the data directory's disk, at the last scrape." },
    MetricDef {
        name: WRITES_REFUSED,
        kind: Kind::Gauge,
        labels: &[],
        help: "1 while writes are refused for lack of disk space (or a store recovering from a failed write), 0 otherwise, at the last scrape.",
    },
    MetricDef { name: BUILD_INFO, kind: Kind::Gauge, labels: &["version"], help: "Always 1; the coordinator's version as a label." },
];

/// Upper bounds of the latency histograms' buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// How often the recorder's upkeep runs (histogram samples folded into buckets).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A recorder for the coordinator's metrics, not installed anywhere (tests use it with
/// [`metrics::with_local_recorder`]).
pub fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .expect("LATENCY_BUCKETS is not empty")
        .build_recorder()
}

/// Installs the coordinator's recorder as the process-wide one (once; later calls return the
/// same handle), describes every metric and creates the series of the closed label sets at
/// zero. Fails only if another recorder was installed first.
pub fn install() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .map_err(|_| "another metrics recorder is already installed in this process".to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
}

/// Describes every metric of [`CATALOGUE`] to the current recorder, and creates the series
/// whose labels are closed sets at zero, so that rates and alerts work before the first event.
pub fn describe() {
    for m in CATALOGUE {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, Unit::Count, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, Unit::Seconds, m.help),
        }
    }
    for m in CATALOGUE.iter().filter(|m| m.kind == Kind::Counter && m.labels.is_empty()) {
        counter!(m.name).increment(0);
    }
    for purpose in vocab::PurposeName::ALL {
        for requester in vocab::EntityType::ALL {
            let labels = [("purpose", purpose_label(Some(*purpose))), ("requester", entity_label(Some(*requester)))];
            counter!(QUESTIONS, &labels).increment(0);
            counter!(ANSWERS, &labels).increment(0);
        }
    }
    for reason in RefusalReason::ALL {
        counter!(REFUSALS, "reason" => reason.label()).increment(0);
    }
    for disclosure in ["full", "generalised"] {
        counter!(DISCLOSED, "disclosure" => disclosure).increment(0);
    }
    for band in BANDS {
        counter!(LINKS_FOUND, "band" => band).increment(0);
    }
    for obscured in ["true", "false"] {
        counter!(OBSCURING_CHANGES, "obscured" => obscured).increment(0);
    }
    for class in ["question", "write"] {
        counter!(RATE_LIMITED, "class" => class).increment(0);
    }
    for kind in ["token_hub", "cluster_bound"] {
        counter!(QUARANTINED, "kind" => kind).increment(0);
    }
    for service in GrpcService::ALL {
        gauge!(IN_FLIGHT, "service" => service.label()).set(0.0);
    }
    gauge!(STATE_WAITING).set(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

const BANDS: [&str; 3] = ["certain", "probable", "possible"];

/// The label of a purpose (`invalid` when the question's value was not one).
pub fn purpose_label(p: Option<v1::Purpose>) -> &'static str {
    use v1::Purpose::*;
    match p {
        Some(ContinuitaAssistenziale) => "continuita_assistenziale",
        Some(ConvocazioneUvm) => "convocazione_uvm",
        Some(DimissioneProtetta) => "dimissione_protetta",
        Some(RichiestaInteressato) => "richiesta_interessato",
        Some(Emergenza) => "emergenza",
        Some(Unspecified) | None => "invalid",
    }
}

/// The label of an entity type (`invalid` when the certificate names none).
pub fn entity_label(e: Option<v1::EntityType>) -> &'static str {
    use v1::EntityType::*;
    match e {
        Some(Asl) => "asl",
        Some(Comune) => "comune",
        Some(Ats) => "ats",
        Some(Provider) => "provider",
        Some(Unspecified) | None => "invalid",
    }
}

/// Why a who-else question was refused: a closed set, derived from the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// A value of the question is malformed or not in its vocabulary.
    InvalidRequest,
    /// The question was made as another node than the certificate's (or not by a node).
    WrongNode,
    /// The policy does not allow the purpose for the operator role.
    PurposeNotAllowed,
    /// Break-glass disabled, the role may not use it, or its reason missing or misplaced.
    BreakGlass,
    /// The anchor is not one of the asking node's published relationships.
    AnchorNotHeld,
    /// The anchor's status gives no need-to-know under the policy.
    AnchorNotActive,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 6] = [
        RefusalReason::InvalidRequest,
        RefusalReason::WrongNode,
        RefusalReason::PurposeNotAllowed,
        RefusalReason::BreakGlass,
        RefusalReason::AnchorNotHeld,
        RefusalReason::AnchorNotActive,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::InvalidRequest => "invalid_request",
            RefusalReason::WrongNode => "wrong_node",
            RefusalReason::PurposeNotAllowed => "purpose_not_allowed",
            RefusalReason::BreakGlass => "break_glass",
            RefusalReason::AnchorNotHeld => "anchor_not_held",
            RefusalReason::AnchorNotActive => "anchor_not_active",
        }
    }

    /// The reason of a policy refusal (exhaustive: a new refusal needs a reason here).
    pub fn of(r: &policy::Refusal) -> RefusalReason {
        use policy::Refusal::*;
        match r {
            RoleUnspecified | PurposeUnspecified => RefusalReason::InvalidRequest,
            PurposeNotAllowed { .. } => RefusalReason::PurposeNotAllowed,
            BreakGlassDisabled | BreakGlassRoleNotAllowed { .. } | BreakGlassReasonMissing | BreakGlassReasonWithoutEmergency => {
                RefusalReason::BreakGlass
            }
            AnchorNotHeld => RefusalReason::AnchorNotHeld,
            AnchorNotActive => RefusalReason::AnchorNotActive,
        }
    }
}

/// The gRPC service a request path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcService {
    Federation,
    Governance,
    Health,
    Reflection,
    /// Any other path (answered "unimplemented").
    Other,
}

impl GrpcService {
    pub const ALL: [GrpcService; 5] =
        [GrpcService::Federation, GrpcService::Governance, GrpcService::Health, GrpcService::Reflection, GrpcService::Other];

    /// The service of a request path (`/package.Service/Method`); never echoes the path.
    pub fn of_path(path: &str) -> GrpcService {
        if path.starts_with("/ponte.v1.Federation/") {
            GrpcService::Federation
        } else if path.starts_with("/ponte.v1.Governance/") {
            GrpcService::Governance
        } else if path.starts_with("/grpc.health.v1.Health/") {
            GrpcService::Health
        } else if path.starts_with("/grpc.reflection.") {
            GrpcService::Reflection
        } else {
            GrpcService::Other
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GrpcService::Federation => "federation",
            GrpcService::Governance => "governance",
            GrpcService::Health => "health",
            GrpcService::Reflection => "reflection",
            GrpcService::Other => "other",
        }
    }
}

/// Why a request was refused before any handler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    NoCertificate,
    CertificateRefused,
    WrongRole,
}

impl AuthRefusal {
    pub fn label(self) -> &'static str {
        match self {
            AuthRefusal::NoCertificate => "no_certificate",
            AuthRefusal::CertificateRefused => "certificate_refused",
            AuthRefusal::WrongRole => "wrong_role",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recording

/// A question arrived.
pub fn question_received(purpose: Option<v1::Purpose>, requester: Option<v1::EntityType>) {
    counter!(QUESTIONS, "purpose" => purpose_label(purpose), "requester" => entity_label(requester)).increment(1);
}

/// What an answered question showed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shown {
    pub full: u64,
    pub generalised: u64,
}

/// A question was answered, showing `shown`.
pub fn question_answered(purpose: Option<v1::Purpose>, requester: Option<v1::EntityType>, shown: Shown, break_glass: bool, took: Duration) {
    counter!(ANSWERS, "purpose" => purpose_label(purpose), "requester" => entity_label(requester)).increment(1);
    counter!(DISCLOSED, "disclosure" => "full").increment(shown.full);
    counter!(DISCLOSED, "disclosure" => "generalised").increment(shown.generalised);
    if break_glass {
        counter!(BREAK_GLASS).increment(1);
    }
    histogram!(QUESTION_SECONDS, "outcome" => "answered").record(took.as_secs_f64());
}

/// A question was refused.
pub fn question_refused(reason: RefusalReason, took: Duration) {
    counter!(REFUSALS, "reason" => reason.label()).increment(1);
    histogram!(QUESTION_SECONDS, "outcome" => "refused").record(took.as_secs_f64());
}

/// A question failed (storage): neither answered nor refused.
pub fn question_failed(took: Duration) {
    counter!(QUESTION_ERRORS).increment(1);
    histogram!(QUESTION_SECONDS, "outcome" => "error").record(took.as_secs_f64());
}

pub fn subject_report() {
    counter!(SUBJECT_REPORTS).increment(1);
}

/// What linking a stored batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Linked {
    pub items: u64,
    /// New links by band: certain, probable, possible.
    pub links_by_band: [u64; 3],
    pub comparisons: u64,
    pub link_time: Duration,
}

/// How a publish batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Stored(Linked),
    Replayed,
    Refused,
    Error,
}

/// A publish batch from `node` ended; `took` is the whole ingest time.
pub fn batch(node: &str, outcome: BatchOutcome, took: Duration) {
    let label = match outcome {
        BatchOutcome::Stored(_) => "stored",
        BatchOutcome::Replayed => "replayed",
        BatchOutcome::Refused => "refused",
        BatchOutcome::Error => "error",
    };
    counter!(BATCHES, "node" => node.to_string(), "outcome" => label).increment(1);
    if let BatchOutcome::Stored(linked) = outcome {
        counter!(ITEMS_PUBLISHED, "node" => node.to_string()).increment(linked.items);
        for (band, n) in BANDS.iter().zip(linked.links_by_band) {
            counter!(LINKS_FOUND, "band" => *band).increment(n);
        }
        counter!(COMPARISONS).increment(linked.comparisons);
        histogram!(LINK_SECONDS).record(linked.link_time.as_secs_f64());
        histogram!(PUBLISH_SECONDS).record(took.as_secs_f64());
    }
}

pub fn items_withdrawn(node: &str, n: u64) {
    counter!(WITHDRAWN, "node" => node.to_string()).increment(n);
}

pub fn relationship_updated() {
    counter!(RELATIONSHIP_UPDATES).increment(1);
}

pub fn consent_recorded() {
    counter!(CONSENTS_RECORDED).increment(1);
}

pub fn consent_revoked() {
    counter!(CONSENTS_REVOKED).increment(1);
}

pub fn obscuring_changed(obscured: bool) {
    counter!(OBSCURING_CHANGES, "obscured" => if obscured { "true" } else { "false" }).increment(1);
}

pub fn policy_reloaded() {
    counter!(POLICY_RELOADS).increment(1);
}

pub fn retention_expired(n: u64) {
    counter!(RETENTION_EXPIRED).increment(n);
}

pub fn explanation() {
    counter!(EXPLANATIONS).increment(1);
}

pub fn audit_query() {
    counter!(AUDIT_QUERIES).increment(1);
}

pub fn auth_refused(service: GrpcService, reason: AuthRefusal) {
    counter!(AUTH_REFUSALS, "service" => service.label(), "reason" => reason.label()).increment(1);
}

pub fn rate_limited(class: crate::federation::limits::Class) {
    let label = match class {
        crate::federation::limits::Class::Question => "question",
        crate::federation::limits::Class::Write => "write",
    };
    counter!(RATE_LIMITED, "class" => label).increment(1);
}

/// A change held the view's write lock for `took`.
pub fn view_applied(took: Duration) {
    histogram!(VIEW_APPLY_SECONDS).record(took.as_secs_f64());
}

pub fn disk_full() {
    counter!(DISK_REFUSALS).increment(1);
}

pub fn quarantined(token_hubs: u64, held_items: u64) {
    counter!(QUARANTINED, "kind" => "token_hub").increment(token_hubs);
    counter!(QUARANTINED, "kind" => "cluster_bound").increment(held_items);
}

pub fn storage_failure() {
    counter!(STORAGE_FAILURES).increment(1);
}

/// Counts a gRPC request in flight until dropped.
#[must_use = "the request counts as in flight until the guard is dropped"]
pub struct InFlight(GrpcService);

impl InFlight {
    pub fn start(service: GrpcService) -> InFlight {
        gauge!(IN_FLIGHT, "service" => service.label()).increment(1.0);
        InFlight(service)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(IN_FLIGHT, "service" => self.0.label()).decrement(1.0);
    }
}

/// Counts a request waiting for the coordinator's state until dropped, then records the wait.
#[must_use = "the request counts as waiting until the guard is dropped"]
pub struct Waiting(Instant);

impl Waiting {
    pub fn start() -> Waiting {
        gauge!(STATE_WAITING).increment(1.0);
        Waiting(Instant::now())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        gauge!(STATE_WAITING).decrement(1.0);
        histogram!(STATE_WAIT_SECONDS).record(self.0.elapsed().as_secs_f64());
    }
}

/// What the coordinator holds, for the store gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub items: usize,
    pub encodings_by_epoch: Vec<(u32, usize)>,
    pub persons: usize,
    pub links: usize,
    pub consents: usize,
    pub audit_entries: u64,
    pub index_bytes: usize,
    pub token_hubs: u64,
    pub disk_free_bytes: u64,
    pub writes_refused_for_disk: bool,
}

/// Sets the store gauges.
pub fn holdings(h: &Holdings) {
    gauge!(ITEMS).set(h.items as f64);
    for (epoch, n) in &h.encodings_by_epoch {
        gauge!(ENCODINGS, "epoch" => epoch.to_string()).set(*n as f64);
    }
    gauge!(PERSONS).set(h.persons as f64);
    gauge!(LINKS).set(h.links as f64);
    gauge!(CONSENTS).set(h.consents as f64);
    gauge!(AUDIT_ENTRIES).set(h.audit_entries as f64);
    gauge!(INDEX_BYTES).set(h.index_bytes as f64);
    gauge!(TOKEN_HUBS).set(h.token_hubs as f64);
    gauge!(DISK_FREE).set(h.disk_free_bytes as f64);
    gauge!(WRITES_REFUSED).set(if h.writes_refused_for_disk { 1.0 } else { 0.0 });
}

// ---------------------------------------------------------------------------------------------
// The endpoint

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Scrape {
    handle: PrometheusHandle,
    refresh: Box<dyn Fn() + Send + Sync>,
    /// One scrape at a time: each refresh reads the coordinator's state.
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// Serves `GET /metrics` on `listener` until the task is dropped or aborted. `refresh` runs
/// (on a blocking thread) before each rendering, to update the gauges read at scrape time.
/// Also runs the recorder's upkeep every [`UPKEEP_INTERVAL`].
pub async fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle, refresh: impl Fn() + Send + Sync + 'static) -> std::io::Result<()> {
    use axum::routing::get;

    let upkeep = handle.clone();
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let scrape = Arc::new(Scrape { handle, refresh: Box::new(refresh), one_at_a_time: tokio::sync::Mutex::new(()) });
    let app = axum::Router::new()
        .route("/metrics", get(scrape_metrics))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "not found: the coordinator serves GET /metrics here\n") })
        .with_state(scrape);
    let served = axum::serve(listener, app).await;
    upkeep.abort();
    served
}

async fn scrape_metrics(axum::extract::State(scrape): axum::extract::State<Arc<Scrape>>) -> axum::response::Response {
    use axum::response::IntoResponse;

    let _turn = scrape.one_at_a_time.lock().await;
    let s = scrape.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || (s.refresh)()).await {
        tracing::error!(error = %e, "reading the store gauges failed; serving the last values");
    }
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], scrape.handle.render()).into_response()
}

/// Binds the metrics listener. An address in use or not available gives an error that names
/// the configuration key and how to fix it.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!(
            "cannot serve metrics on {addr} ([metrics] listen): {e}; choose another address (port 0 picks a free one), or set listen = \"\" to serve no metrics"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_prefixed_and_described() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "a metric is listed twice");
        for m in CATALOGUE {
            assert!(m.name.starts_with("ponte_coordinator_"), "{}", m.name);
            assert_eq!(m.name.ends_with("_total"), m.kind == Kind::Counter, "{}: counters and only counters end in _total", m.name);
            assert!(m.help.len() > 20 && m.help.ends_with('.'), "{}: help text", m.name);
            for l in m.labels {
                assert!(
                    !["reference", "record", "operator", "consent", "cluster", "item"].iter().any(|bad| l.contains(bad)),
                    "{}: label {l} could carry an identifier",
                    m.name
                );
            }
        }
    }

    #[test]
    fn every_refusal_has_a_reason_and_reasons_are_distinct() {
        let mut labels: Vec<&str> = RefusalReason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
        assert_eq!(RefusalReason::of(&policy::Refusal::AnchorNotHeld), RefusalReason::AnchorNotHeld);
        assert_eq!(RefusalReason::of(&policy::Refusal::BreakGlassDisabled), RefusalReason::BreakGlass);
        assert_eq!(
            RefusalReason::of(&policy::Refusal::PurposeNotAllowed { role: "mmg".into(), purpose: "emergenza".into() }),
            RefusalReason::PurposeNotAllowed
        );
    }

    #[test]
    fn paths_map_to_a_closed_set_of_services() {
        assert_eq!(GrpcService::of_path("/ponte.v1.Federation/WhoElse"), GrpcService::Federation);
        assert_eq!(GrpcService::of_path("/ponte.v1.Governance/Explain"), GrpcService::Governance);
        assert_eq!(GrpcService::of_path("/grpc.health.v1.Health/Check"), GrpcService::Health);
        assert_eq!(GrpcService::of_path("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), GrpcService::Reflection);
        assert_eq!(GrpcService::of_path("/P1-Rossi-Mario/x"), GrpcService::Other);
    }

    #[test]
    fn rendering_describes_every_metric_and_counts_what_was_recorded() {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            question_received(Some(v1::Purpose::ContinuitaAssistenziale), Some(v1::EntityType::Comune));
            question_answered(
                Some(v1::Purpose::ContinuitaAssistenziale),
                Some(v1::EntityType::Comune),
                Shown { full: 2, generalised: 1 },
                false,
                Duration::from_millis(3),
            );
            question_received(None, Some(v1::EntityType::Asl));
            question_refused(RefusalReason::InvalidRequest, Duration::from_millis(1));
            question_failed(Duration::from_millis(1));
            let linked = Linked { items: 3, links_by_band: [1, 0, 2], comparisons: 9, link_time: Duration::from_millis(2) };
            batch("asl-lecce", BatchOutcome::Stored(linked), Duration::from_millis(5));
            batch("asl-lecce", BatchOutcome::Replayed, Duration::from_millis(1));
            items_withdrawn("asl-lecce", 1);
            relationship_updated();
            subject_report();
            consent_recorded();
            consent_revoked();
            obscuring_changed(true);
            policy_reloaded();
            retention_expired(2);
            explanation();
            audit_query();
            auth_refused(GrpcService::Health, AuthRefusal::NoCertificate);
            storage_failure();
            rate_limited(crate::federation::limits::Class::Question);
            disk_full();
            quarantined(1, 2);
            view_applied(Duration::from_micros(80));
            drop(InFlight::start(GrpcService::Federation));
            drop(Waiting::start());
            holdings(&Holdings { items: 5, encodings_by_epoch: vec![(1, 5)], persons: 3, links: 2, consents: 1, audit_entries: 7, index_bytes: 4096, ..Default::default() });
        });
        let text = handle.render();
        for m in CATALOGUE {
            assert!(text.contains(&format!("# HELP {} ", m.name)), "{} has no HELP line:\n{text}", m.name);
        }
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
                .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
                .trim()
                .parse()
                .unwrap()
        };
        assert_eq!(value(r#"ponte_coordinator_questions_total{purpose="continuita_assistenziale",requester="comune"}"#), 1.0);
        assert_eq!(value(r#"ponte_coordinator_questions_total{purpose="invalid",requester="asl"}"#), 1.0);
        assert_eq!(value(r#"ponte_coordinator_questions_total{purpose="emergenza",requester="ats"}"#), 0.0);
        assert_eq!(value(r#"ponte_coordinator_relationships_disclosed_total{disclosure="full"}"#), 2.0);
        assert_eq!(value(r#"ponte_coordinator_question_refusals_total{reason="invalid_request"}"#), 1.0);
        assert_eq!(value(r#"ponte_coordinator_question_refusals_total{reason="anchor_not_held"}"#), 0.0);
        assert_eq!(value(r#"ponte_coordinator_links_found_total{band="possible"}"#), 2.0);
        assert_eq!(value(r#"ponte_coordinator_publish_batches_total{node="asl-lecce",outcome="replayed"}"#), 1.0);
        assert_eq!(value(r#"ponte_coordinator_requests_in_flight{service="federation"}"#), 0.0);
        assert_eq!(value("ponte_coordinator_state_queue_depth"), 0.0);
        assert_eq!(value(r#"ponte_coordinator_encodings{epoch="1"}"#), 5.0);
        assert_eq!(value(r#"ponte_coordinator_question_duration_seconds_count{outcome="answered"}"#), 1.0);
        assert!(text.contains(r#"ponte_coordinator_publish_duration_seconds_bucket{le="0.01"} 1"#), "{text}");
    }
}
