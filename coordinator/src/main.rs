//! `ponte-coordinator`: serve the federation, verify and read the audit log, re-estimate the
//! matching model.
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ponte_coordinator::blocking::LshParams;
use ponte_coordinator::estimate::{self, EstimateOptions};
use ponte_coordinator::scoring::{self, FsModel};
use ponte_coordinator::config::{self, CoordinatorConfig};
use ponte_coordinator::officer::OfficerConfig;
use ponte_coordinator::policy::{self, Policy};
use ponte_coordinator::{audit, server, storage::Store};
use ponte_proto::v1;
use ponte_proto::vocab;
use ponte_proto::schema::LinkageSchema;

/// mimalloc: the coordinator's questions allocate many small values on several threads at once.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Output. `println!` and `print!` in this file are these two, not std's: std's panic when the
// reader of stdout has gone (`ponte-coordinator stats | head`). Here the first write that meets
// a closed pipe ends the output quietly and later writes are skipped; the command finishes what
// it was doing and exits with its own code. Any other write error is reported once on stderr
// and makes the exit code 1.
macro_rules! println {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// Set once stdout can no longer be written: 1 the reader closed the pipe, 2 another error.
static STDOUT_STATE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn write_stdout(args: std::fmt::Arguments) {
    use std::sync::atomic::Ordering;
    if STDOUT_STATE.load(Ordering::Relaxed) != 0 {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_STATE.store(1, Ordering::Relaxed);
        } else {
            STDOUT_STATE.store(2, Ordering::Relaxed);
            eprintln!("ponte-coordinator: writing to stdout failed: {e}");
        }
    }
}

/// The Ponte coordinator. It links the keyed encodings that nodes publish and answers
/// consent-aware who-else questions. Every connection is mutual TLS; it never holds the
/// linkage secret.
#[derive(Parser)]
#[command(version, about, long_about = None, after_help = LOGS_HELP)]
struct Cli {
    /// Log format on stderr: text (for people) or json (one JSON object per line, for log
    /// collectors).
    #[arg(long, global = true, env = "PONTE_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

const LOGS_HELP: &str = "Logs go to stderr. PONTE_LOG sets what is logged (a tracing filter: info by default, \
debug for more); PONTE_LOG_FORMAT=json (or --log-format json) writes one JSON object per line. No log line \
carries personal data, encodings, references of items, operator ids or secrets.";

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: timestamp, level, target, message and fields at the top level.
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serves the Federation and Governance gRPC services (with health and reflection) until
    /// SIGINT/SIGTERM, and Prometheus metrics over plain HTTP.
    #[command(long_about = SERVE_ABOUT)]
    Serve {
        /// Configuration file (TOML; see README "Coordinator configuration").
        #[arg(long, short, default_value = "coordinator.toml")]
        config: PathBuf,
    },
    /// The disclosure policy: check a file before it goes live, compare two versions, load a
    /// new version live, see the one in force, explain a decision.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Verifies, lists and queries the audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Counts stored items per node and key epoch, links, person clusters and items held
    /// without links (the coordinator must be stopped).
    Stats {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// What a data steward should look at (privacy-officer certificate): codici fiscali or other
    /// tokens that one node gives to several different identities (no longer evidence), and
    /// items held without links because one person would hold too many items of one node.
    /// Items are named node/reference: the node that published them finds its records.
    Quarantine {
        #[arg(long, default_value = "officer.toml")]
        officer: PathBuf,
        /// At most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// The Fellegi–Sunter matching model: show the one in force, re-estimate it on the
    /// federation's own encodings.
    Params {
        #[command(subcommand)]
        cmd: ParamsCmd,
    },
}

const SERVE_ABOUT: &str = "Serves the Federation gRPC service (nodes) and the Governance gRPC service \
(privacy officers), with gRPC health and reflection, over mutual TLS on `listen`, until SIGINT/SIGTERM.

Prometheus metrics (questions, answers, refusals by reason, disclosures, publish batches, links \
found, latencies, queue depth, what the store holds) are served as `GET /metrics` over plain HTTP \
on `[metrics] listen` — by default 127.0.0.1:7701 (if that address is taken, the coordinator serves \
without metrics and logs a warning); port 0 picks a free port; listen = \"\" serves no metrics. \
The endpoint has no authentication: its labels are purposes, entity types, refusal reasons and \
node ids, never references, record or operator ids, but keep it on loopback or a management \
network.

Logs go to stderr: PONTE_LOG sets the filter (info by default), PONTE_LOG_FORMAT=json (or \
--log-format json) writes one JSON object per line for a log collector.";

#[derive(Subcommand)]
enum ParamsCmd {
    /// Re-estimates the matching model on the federation's own stored encodings and shows what
    /// changed (the coordinator must be stopped).
    #[command(long_about = ESTIMATE_ABOUT)]
    Estimate(EstimateArgs),
    /// Prints the matching model in force (TOML, as `model_file` reads it).
    Show {
        /// Configuration file: its `model_file`, or the shipped model when it has none.
        #[arg(long, short, default_value = "coordinator.toml")]
        config: PathBuf,
        /// Print the shipped model (with its notes on where the numbers come from); no
        /// configuration needed.
        #[arg(long, conflicts_with = "config")]
        shipped: bool,
    },
}

const ESTIMATE_ABOUT: &str = "Re-estimates the Fellegi–Sunter matching model on the federation's own stored \
encodings and shows what changed.

Reads the store of a stopped coordinator (`data_dir` of the configuration; it is locked while the \
coordinator runs) and takes every item's encoding of one key epoch: the newest present, unless \
--epoch. The linkage schema's blocking proposes candidate pairs, random pairs outside them stand \
for the rest; u is estimated once from all pairs, then m and the prior by EM, starting from the \
shipped model. Prints the counts, whether EM converged, and every level whose weight moved by at \
least 0.5 bits. Needs at least 100 items.

Nothing changes until you use the result: --out FILE writes the new model there; then set \
model_file = \"FILE\" in the coordinator configuration and restart the coordinator. Always \
re-estimate from the shipped model, never from a previous estimate: repeated re-estimation drifts \
where the data cannot identify the parameters. The model holds only per-level probabilities and \
a prior, no encoding.";

#[derive(clap::Args)]
struct EstimateArgs {
    /// Configuration file (its `data_dir`, `schema_file` and `model_file` are used).
    #[arg(long, short, default_value = "coordinator.toml")]
    config: PathBuf,
    /// Key epoch whose encodings to estimate on (default: the newest in the store).
    #[arg(long)]
    epoch: Option<u32>,
    /// Write the re-estimated model here (TOML for `model_file`); without it nothing is written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long, requires = "out")]
    force: bool,
    /// Random pairs drawn outside the candidates to estimate u (10000 to 20000000); more is
    /// slower and steadier.
    #[arg(long, default_value_t = estimate::DEFAULT_RANDOM_PAIRS)]
    random_pairs: usize,
    /// Seed of the random pairs: the same store, options and seed give the same model.
    #[arg(long, default_value_t = estimate::DEFAULT_SEED)]
    seed: u64,
    /// Start from this model file instead of the shipped model (for a hand-made model with other
    /// levels; never a previous estimate).
    #[arg(long)]
    start: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// Checks a policy file: errors (with line and column) make it unusable; warnings flag
    /// risky settings. Exits with 1 on errors.
    Check {
        /// The policy file (TOML; `policy default` prints the shipped one, every key commented).
        file: PathBuf,
    },
    /// Shows what a new policy version changes compared with an old one.
    Diff {
        /// The version in force (a file, or `default` for the shipped policy).
        old: String,
        /// The new version (a file).
        new: PathBuf,
    },
    /// Prints the shipped default policy (DOMAIN.md §7), every key commented.
    Default,
    /// Loads a new policy version live on a running coordinator (privacy-officer certificate).
    /// It is checked first and refused on any error; the change is audited.
    Reload {
        file: PathBuf,
        /// The privacy officer's client configuration (coordinator address and certificate).
        #[arg(long, default_value = "officer.toml")]
        officer: PathBuf,
    },
    /// Prints the policy in force on a running coordinator, with who loaded it and when.
    Current {
        #[arg(long, default_value = "officer.toml")]
        officer: PathBuf,
    },
    /// Explains, rule by rule, why a relationship was or was not disclosed for a question
    /// (privacy officers only; the explanation is audited). Name a past question with
    /// --receipt, or describe one with --anchor (the asking node and its reference), --purpose
    /// and --role.
    Explain {
        #[arg(long, default_value = "officer.toml")]
        officer: PathBuf,
        /// The relationship to explain, as NODE/REFERENCE (as the audit log names items).
        #[arg(long)]
        target: String,
        /// The audit sequence of a past question (its receipt).
        #[arg(long, conflicts_with = "anchor")]
        receipt: Option<u64>,
        /// The asking node and its anchor reference (NODE/REFERENCE).
        #[arg(long, requires = "purpose", requires = "role")]
        anchor: Option<String>,
        /// Purpose of the question (continuita_assistenziale, convocazione_uvm, …).
        #[arg(long)]
        purpose: Option<String>,
        /// Operator role of the question (operatore_pua, assistente_sociale, …).
        #[arg(long)]
        role: Option<String>,
        /// Break-glass reason (with purpose emergenza).
        #[arg(long)]
        break_glass: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Checks the hash chain and its recorded head: detects any altered, reordered or removed
    /// entry (the coordinator must be stopped). Exits with 1 when the chain is broken.
    Verify {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Also check that an audit receipt a node holds is in the chain: SEQUENCE:HASH
        /// (repeatable).
        #[arg(long, value_name = "SEQUENCE:HASH")]
        receipt: Vec<String>,
    },
    /// Prints entries as JSON lines from a stopped coordinator's store.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        #[command(flatten)]
        filter: AuditFilter,
    },
    /// Queries a running coordinator's audit log (privacy-officer certificate); the query is
    /// itself audited.
    Query {
        #[arg(long, default_value = "officer.toml")]
        officer: PathBuf,
        #[command(flatten)]
        filter: AuditFilter,
        /// At most this many entries (1–10000).
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(clap::Args)]
struct AuditFilter {
    /// Entries made by this node or naming one of its items.
    #[arg(long)]
    node: Option<String>,
    /// Only questions for this purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// From this day (YYYY-MM-DD, UTC, inclusive) or Unix time in seconds.
    #[arg(long)]
    from: Option<String>,
    /// Until this day (YYYY-MM-DD, UTC, inclusive) or Unix time in seconds.
    #[arg(long)]
    to: Option<String>,
}

/// Unix seconds of `s` (a YYYY-MM-DD day or a number); `end` takes the day's last second.
fn parse_time(s: &str, end: bool) -> anyhow::Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(s, &format).with_context(|| format!("{s:?} is not a day in the form YYYY-MM-DD nor Unix seconds"))?;
    let start = day.midnight().assume_utc().unix_timestamp().max(0) as u64;
    Ok(if end { start + 86_399 } else { start })
}

impl AuditFilter {
    fn query(&self) -> anyhow::Result<audit::Query> {
        if let Some(n) = &self.node {
            vocab::check_node_id(n).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
        }
        let purpose = self.purpose.as_deref().map(vocab::PurposeName::parse).transpose().map_err(|e| anyhow::anyhow!("--purpose: {e}"))?;
        Ok(audit::Query {
            from: self.from.as_deref().map(|s| parse_time(s, false)).transpose()?,
            to: self.to.as_deref().map(|s| parse_time(s, true)).transpose()?,
            node: self.node.clone(),
            purpose: purpose.map(vocab::PurposeName::name),
        })
    }
}

fn split_item(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (node, reference) = s.split_once('/').with_context(|| format!("{what} {s:?}: write NODE/REFERENCE, e.g. asl-lecce/3f9a…"))?;
    vocab::check_node_id(node).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    vocab::check_reference(reference).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    Ok((node.to_string(), reference.to_string()))
}

fn read_policy_file(p: &std::path::Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(p).with_context(|| format!("cannot read the policy file {}", p.display()))?;
    anyhow::ensure!(
        meta.len() <= ponte_proto::limits::MAX_POLICY_BYTES as u64,
        "the policy file {} is larger than {} bytes",
        p.display(),
        ponte_proto::limits::MAX_POLICY_BYTES
    );
    std::fs::read_to_string(p).with_context(|| format!("cannot read the policy file {} (is it UTF-8 text?)", p.display()))
}

/// Checks a policy file's text, printing problems as FILE:LINE:COLUMN; the policy if usable.
fn checked_policy(text: &str, name: &str) -> Option<Policy> {
    let report = policy::check(text);
    for e in &report.errors {
        eprintln!("{name}:{}:{}: error: {}", e.line, e.column, e.message);
    }
    for w in &report.warnings {
        eprintln!("{name}:{}:{}: warning: {}", w.line, w.column, w.message);
    }
    if report.errors.is_empty() { report.policy } else { None }
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the coordinator refused: {} ({:?})", s.message(), s.code())
}

fn policy_cmd(cmd: PolicyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCmd::Default => print!("{}", policy::DEFAULT_POLICY_TOML),
        PolicyCmd::Check { file } => {
            let text = read_policy_file(&file)?;
            let name = file.display().to_string();
            let report = policy::check(&text);
            match checked_policy(&text, &name) {
                Some(p) => println!(
                    "{name}: policy {} is usable ({} warnings); sha256 {}",
                    p.version,
                    report.warnings.len(),
                    p.sha256
                ),
                None => {
                    println!("{name}: {} errors; fix them before loading the policy", report.errors.len());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        PolicyCmd::Diff { old, new } => {
            let (old_text, old_name) = if old == "default" {
                (policy::DEFAULT_POLICY_TOML.to_string(), "the shipped default policy".to_string())
            } else {
                (read_policy_file(std::path::Path::new(&old))?, old.clone())
            };
            let new_text = read_policy_file(&new)?;
            let new_name = new.display().to_string();
            let (Some(a), Some(b)) = (checked_policy(&old_text, &old_name), checked_policy(&new_text, &new_name)) else {
                anyhow::bail!("cannot compare: fix the errors above first");
            };
            let changes = policy::diff(&a, &b);
            if changes.is_empty() {
                println!("no change in effect between {old_name} and {new_name}");
            }
            for c in changes {
                println!("{c}");
            }
        }
        PolicyCmd::Reload { file, officer } => {
            let text = read_policy_file(&file)?;
            if checked_policy(&text, &file.display().to_string()).is_none() {
                anyhow::bail!("{} has errors; nothing was sent", file.display());
            }
            let cfg = OfficerConfig::load(&officer).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            let status = rt.block_on(async {
                let mut c = cfg.connect().await?;
                c.reload_policy(v1::PolicyDocument { toml: text }).await.map_err(status_error).map(|r| r.into_inner())
            })?;
            println!(
                "policy {} (sha256 {}) in force; audit receipt {}",
                status.version,
                status.sha256,
                status.receipt.map(|r| r.sequence.to_string()).unwrap_or_default()
            );
        }
        PolicyCmd::Current { officer } => {
            let cfg = OfficerConfig::load(&officer).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            let status = rt.block_on(async {
                let mut c = cfg.connect().await?;
                c.current_policy(v1::CurrentPolicyRequest {}).await.map_err(status_error).map(|r| r.into_inner())
            })?;
            println!("# policy {} (sha256 {}), loaded by {} at Unix time {}", status.version, status.sha256, status.loaded_by, status.loaded_at);
            for w in &status.warnings {
                println!("# warning: {w}");
            }
            print!("{}", status.toml);
        }
        PolicyCmd::Explain { officer, target, receipt, anchor, purpose, role, break_glass, json } => {
            let (target_node, target_reference) = split_item(&target, "--target")?;
            let mut req = v1::ExplainRequest { receipt_sequence: receipt, target_node, target_reference, ..Default::default() };
            if receipt.is_none() {
                let anchor = anchor.context("name the question: --receipt SEQUENCE, or --anchor NODE/REFERENCE --purpose P --role R")?;
                let (asker_node, anchor_reference) = split_item(&anchor, "--anchor")?;
                req.asker_node = asker_node;
                req.anchor_reference = anchor_reference;
                req.purpose = vocab::PurposeName::parse(purpose.as_deref().unwrap_or_default()).map_err(|e| anyhow::anyhow!("--purpose: {e}"))? as i32;
                req.operator_role = vocab::OperatorRoleName::parse(role.as_deref().unwrap_or_default()).map_err(|e| anyhow::anyhow!("--role: {e}"))? as i32;
                if let Some(b) = &break_glass {
                    req.break_glass_reason = vocab::BreakGlassReasonName::parse(b).map_err(|e| anyhow::anyhow!("--break-glass: {e}"))? as i32;
                }
            }
            let cfg = OfficerConfig::load(&officer).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            let ex = rt.block_on(async {
                let mut c = cfg.connect().await?;
                c.explain(req).await.map_err(status_error).map(|r| r.into_inner())
            })?;
            if json {
                let rules: Vec<serde_json::Value> =
                    ex.rules.iter().map(|r| serde_json::json!({"rule": r.rule, "passed": r.passed, "detail": r.detail})).collect();
                println!(
                    "{}",
                    serde_json::json!({"disclosed": ex.disclosed, "disclosure": ex.disclosure, "policy_version": ex.policy_version, "rules": rules,
                        "receipt": ex.receipt.map(|r| r.sequence)})
                );
            } else {
                println!("{target}: {} (disclosure: {}) under policy {}", if ex.disclosed { "DISCLOSED" } else { "NOT DISCLOSED" }, ex.disclosure, ex.policy_version);
                for r in &ex.rules {
                    println!("  [{}] {:<18} {}", if r.passed { "pass" } else { "STOP" }, r.rule, r.detail);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::Serve { config } => {
            let cfg = CoordinatorConfig::load(&config).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(server::serve(cfg, shutdown_signal(), |addr| {
                println!("ponte-coordinator listening on {addr}");
            }))?;
        }
        Cmd::Policy { cmd } => return policy_cmd(cmd),
        Cmd::Audit { cmd: AuditCmd::Verify { data_dir, receipt } } => {
            anyhow::ensure!(data_dir.join("sled").is_dir(), "{} holds no coordinator store (no sled folder): check --data-dir", data_dir.display());
            let store = Store::open(&data_dir)?;
            let entries = store.audit_entries()?;
            let head = store.recorded_audit_head()?;
            match audit::verify_with_head(&entries, head.as_ref().map(|(s, h)| (*s, h.as_str()))) {
                Ok((n, head)) => println!("audit chain intact: {n} entries, head {head}"),
                Err(b) => {
                    eprintln!("audit chain BROKEN — {b}");
                    return Ok(ExitCode::FAILURE);
                }
            }
            for r in receipt {
                let (seq, hash) = r.split_once(':').context("--receipt: write SEQUENCE:HASH")?;
                let seq: u64 = seq.parse().with_context(|| format!("--receipt {r}: the sequence is not a number"))?;
                if let Err(e) = audit::check_receipt(&entries, seq, hash) {
                    eprintln!("audit chain BROKEN — {e}");
                    return Ok(ExitCode::FAILURE);
                }
                println!("receipt {seq} found in the chain");
            }
        }
        Cmd::Audit { cmd: AuditCmd::List { data_dir, filter } } => {
            let q = filter.query()?;
            let store = Store::open(&data_dir)?;
            for e in store.audit_entries()? {
                if q.matches(&e) {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
        }
        Cmd::Audit { cmd: AuditCmd::Query { officer, filter, limit } } => {
            let q = filter.query()?;
            let cfg = OfficerConfig::load(&officer).map_err(anyhow::Error::msg)?;
            anyhow::ensure!((1..=10_000).contains(&limit), "--limit {limit}: give 1 to 10000");
            let purpose = q.purpose.as_deref().map(|p| vocab::PurposeName::parse(p).map(|p| p as i32)).transpose().map_err(anyhow::Error::msg)?.unwrap_or(0);
            let rt = tokio::runtime::Runtime::new()?;
            // Page by page (each page bounded in entries and bytes) until --limit entries.
            let (printed, more) = rt.block_on(async {
                let mut c = cfg.connect().await?;
                let (mut printed, mut from) = (0u32, 0u64);
                loop {
                    let req = v1::AuditQuery {
                        from_time: q.from.unwrap_or(0),
                        to_time: q.to.unwrap_or(0),
                        node: q.node.clone().unwrap_or_default(),
                        purpose,
                        limit: limit - printed,
                        from_sequence: from,
                        max_bytes: 0,
                    };
                    let page = c.query_audit(req).await.map_err(status_error)?.into_inner();
                    for e in &page.entries {
                        println!("{}", e.json);
                    }
                    printed += page.entries.len() as u32;
                    if !page.more || printed >= limit {
                        return anyhow::Ok((printed, page.more));
                    }
                    from = page.next_sequence;
                }
            })?;
            if more && printed >= limit {
                eprintln!("more entries may match than --limit {limit}: narrow the window or raise the limit");
            }
        }
        Cmd::Quarantine { officer, limit, json } => {
            let cfg = OfficerConfig::load(&officer).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            let entries = rt.block_on(async {
                let mut c = cfg.connect().await?;
                let (mut out, mut after) = (Vec::new(), String::new());
                loop {
                    let page = c
                        .quarantine(v1::QuarantineQuery { after_key: after.clone(), limit: (limit as usize - out.len()).min(1000) as u32 })
                        .await
                        .map_err(status_error)?
                        .into_inner();
                    out.extend(page.entries);
                    if page.next_key.is_empty() || out.len() >= limit as usize {
                        return anyhow::Ok(out);
                    }
                    after = page.next_key;
                }
            })?;
            if entries.is_empty() && !json {
                println!("nothing in quarantine");
            }
            for e in entries {
                let token = vocab::TokenKindName::from_wire(e.token_kind).map(vocab::TokenKindName::name).unwrap_or_default();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"kind": e.kind, "node": e.node, "token_kind": token, "items": e.items, "identities": e.identities, "time": e.time, "references": e.references})
                    );
                } else if e.kind == "token_hub" {
                    println!(
                        "{}: node {} gives one {token} to {} different identities ({} items) — no longer evidence; check these records: {}",
                        e.kind,
                        e.node,
                        e.identities,
                        e.items,
                        e.references.join(", ")
                    );
                } else {
                    println!(
                        "{}: node {} item {} held without links — one person would hold {} items of this node",
                        e.kind,
                        e.node,
                        e.references.join(", "),
                        e.items
                    );
                }
            }
        }
        Cmd::Stats { data_dir } => {
            let store = Store::open(&data_dir)?;
            for (node, n) in store.counts_by_node()? {
                println!("{node}\t{n}");
            }
            println!("links\t{}", store.link_count()?);
            println!("clusters\t{}", store.cluster_count()?);
            println!("held\t{}", store.held_count()?);
            for ((node, epoch), n) in store.counts_by_node_epoch()? {
                println!("epoch {epoch}\t{node}\t{n}");
            }
        }
        Cmd::Params { cmd: ParamsCmd::Show { shipped: true, .. } } => print!("{}", scoring::DEFAULT_MODEL_TOML),
        Cmd::Params { cmd: ParamsCmd::Show { config, .. } } => {
            let cfg = CoordinatorConfig::load(&config).map_err(anyhow::Error::msg)?;
            match &cfg.model_file {
                None => {
                    println!("# The model in force: the shipped model (no model_file in {}).", config.display());
                    print!("{}", scoring::DEFAULT_MODEL_TOML);
                }
                Some(p) => {
                    let model = cfg.model().map_err(anyhow::Error::msg)?;
                    println!("# The model in force: {} (model_file in {}).", p.display(), config.display());
                    print!("{}", model.to_toml());
                }
            }
        }
        Cmd::Params { cmd: ParamsCmd::Estimate(args) } => params_estimate(args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_diff(diff: &scoring::ModelDiff) {
    print!("{diff}");
    if diff.levels.is_empty() {
        println!("no level's weight moved by {} bits or more", estimate::MIN_WEIGHT_CHANGE);
    }
}

/// `params estimate`: the imperative shell around [`estimate::estimate`].
fn params_estimate(args: EstimateArgs) -> anyhow::Result<()> {
    let cfg = CoordinatorConfig::load(&args.config).map_err(anyhow::Error::msg)?;
    let pairs = estimate::MIN_RANDOM_PAIRS..=estimate::MAX_RANDOM_PAIRS;
    anyhow::ensure!(
        pairs.contains(&args.random_pairs),
        "--random-pairs {}: must be {} to {}",
        args.random_pairs,
        pairs.start(),
        pairs.end()
    );
    if let Some(out) = &args.out
        && out.exists()
        && !args.force
    {
        anyhow::bail!("{} exists; pass --force to overwrite it, or choose another --out", out.display());
    }
    let schema = match &cfg.schema_file {
        Some(p) => LinkageSchema::load(p).map_err(anyhow::Error::msg)?,
        None => LinkageSchema::default_schema(),
    };
    let (start, start_name) = match &args.start {
        Some(p) => (config::load_model(p).map_err(anyhow::Error::msg)?, p.display().to_string()),
        None => (FsModel::default_model(), "the shipped model".to_string()),
    };
    let in_force = cfg.model().map_err(anyhow::Error::msg)?;
    if !cfg.data_dir.is_dir() {
        anyhow::bail!(
            "the data directory {} (data_dir in {}) does not exist: there are no encodings to estimate on",
            cfg.data_dir.display(),
            args.config.display()
        );
    }
    let loaded = Store::open(&cfg.data_dir)?.load()?;
    let clk_bits = schema.published_clk_bits();
    let selected = estimate::epoch_items(loaded.items.iter().map(|(_, item)| item), args.epoch, clk_bits)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cfg.data_dir.display()))?;
    drop(loaded);
    let lsh = LshParams::from(&schema.blocking);
    eprintln!(
        "estimating on {} items of key epoch {} (schema {} {}, blocking K = {}, L = {}) …",
        selected.items.len(),
        selected.epoch,
        schema.name,
        schema.fingerprint().short(),
        lsh.bits_per_key,
        lsh.tables
    );
    let opts = EstimateOptions { random_pairs: args.random_pairs, seed: args.seed };
    let est = estimate::estimate(&start, lsh, clk_bits, &selected.items, &opts).map_err(anyhow::Error::msg)?;

    let epochs: Vec<String> = selected.epochs.iter().map(u32::to_string).collect();
    println!("items: {} of key epoch {} (epochs present: {})", est.records, selected.epoch, epochs.join(", "));
    if selected.without_epoch > 0 {
        println!("  {} items without an encoding of epoch {} left out", selected.without_epoch, selected.epoch);
    }
    println!("candidate pairs: {}; random pairs outside them: {} (seed {})", est.candidate_pairs, est.random_pairs, est.seed);
    println!(
        "EM: {} iterations, {}; expected matching pairs {:.0}",
        est.em.iterations,
        if est.em.converged { "converged" } else { "NOT converged — review before use" },
        est.em.expected_matches
    );
    println!();
    println!(
        "What changed from {start_name} (prior for {} records; levels whose weight moved by ≥ {} bits):",
        est.records,
        estimate::MIN_WEIGHT_CHANGE
    );
    print_diff(&est.diff);
    if in_force.for_records(est.records as u64) != est.before {
        let source = cfg.model_file.as_ref().map_or("the shipped model".to_string(), |p| p.display().to_string());
        println!();
        println!("What changed from the model in force ({source}):");
        print_diff(&scoring::compare_models(&in_force.for_records(est.records as u64), &est.model, estimate::MIN_WEIGHT_CHANGE));
    }
    println!();
    match &args.out {
        None => println!("Nothing written: pass --out FILE to write the model."),
        Some(out) => {
            let text = est.model_file(&format!("key epoch {}", selected.epoch), &start_name);
            let mut file = if args.force {
                std::fs::File::create(out)
            } else {
                std::fs::OpenOptions::new().write(true).create_new(true).open(out)
            }
            .with_context(|| format!("cannot create {}", out.display()))?;
            file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", out.display()))?;
            // Absolute, because `model_file` is read relative to the configuration's folder.
            let absolute = std::fs::canonicalize(out).unwrap_or_else(|_| out.clone());
            println!("Wrote {}.", out.display());
            println!(
                "To use it: set model_file = {:?} in {} and restart the coordinator.",
                absolute.display().to_string(),
                args.config.display()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let format = cli.log_format;
    match run(cli) {
        Ok(_) if STDOUT_STATE.load(std::sync::atomic::Ordering::Relaxed) == 2 => ExitCode::FAILURE,
        Ok(code) => code,
        Err(e) => {
            // With JSON logs, stderr holds JSON lines only: the error is one of them.
            match format {
                LogFormat::Text => eprintln!("ponte-coordinator: {e:#}"),
                LogFormat::Json => tracing::error!("ponte-coordinator: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
