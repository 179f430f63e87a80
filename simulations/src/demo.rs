//! The demo federation: a coordinator and four nodes (ASL Lecce, Comune di Lecce, Comune di
//! Galatina, ATS Maglie) as separate processes over mutual TLS on loopback, fed synthetic exports,
//! asked who-else questions, and checked against the synthetic truth.
//!
//! Everything the demo creates — certificates, secret, exports, configurations, node and
//! coordinator data, logs — lives in one directory, so a person can look at what each side holds.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ponte_certs_dev::Holder;
use ponte_node::secret::LinkageSecret;
use ponte_coordinator::policy::{self, Policy};
use ponte_proto::vocab;
use serde::Deserialize;

use crate::synth;

/// Where the demo finds the two binaries and keeps its state.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
    pub persons: usize,
    pub seed: u64,
    /// Print the walk-through (questions and answers) for a person to read.
    pub verbose: bool,
}

/// What the demo measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DemoSummary {
    pub records_per_node: BTreeMap<String, u64>,
    pub rows_rejected: u64,
    pub questions: u64,
    /// Persons in care at two or more entities (truth).
    pub persons_shared: u64,
    /// Of those, persons for whom the answers showed at least one other entity's relationship.
    pub persons_linked: u64,
    pub relationships_expected: u64,
    pub relationships_shown: u64,
    pub relationships_correct: u64,
    pub precision: f64,
    pub recall: f64,
    /// The same counting only certain and probable answers ("possible" ones are flagged to be
    /// verified and counted apart).
    pub strong_shown: u64,
    pub strong_correct: u64,
    pub precision_strong: f64,
    pub recall_strong: f64,
    pub possible_shown: u64,
    pub possible_correct: u64,
    /// T3 relationships that appeared in an answer (must be 0).
    pub t3_shown: u64,
    /// Answers identical to what the truth says the policy allows.
    pub answers_exact: u64,
    /// The consent walk-through: a protected relationship shown generalised with the person's
    /// consent, hidden again right after the revocation (None when the population had no
    /// suitable person).
    pub consent_walkthrough: Option<bool>,
    /// Entries in the coordinator's audit chain at the end, and whether `audit verify` found it
    /// intact.
    pub audit_entries: u64,
    pub audit_intact: bool,
    /// The node's HTTPS API gave the same answer as the CLI, and the same as a FHIR Bundle (None
    /// when the population had no suitable person).
    pub api_consistent: Option<bool>,
}

/// The demo's four entities.
pub const DEMO_NODES: [(&str, &str, &str); 4] = [
    ("asl-lecce", "asl", "ASL Lecce"),
    ("comune-lecce", "comune", "Comune di Lecce"),
    ("comune-galatina", "comune", "Comune di Galatina"),
    ("ats-maglie", "ats", "ATS Maglie"),
];

/// A running coordinator process, stopped (SIGTERM, then kill) when dropped.
pub struct CoordinatorProcess {
    pub child: Child,
    pub addr: String,
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Asks a child to stop (SIGTERM), waits up to five seconds, then kills it.
pub fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Starts `ponte-coordinator serve` and waits until it listens.
pub fn start_coordinator(bin_dir: &Path, config: &Path, log: &Path) -> Result<CoordinatorProcess> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(bin_dir.join("ponte-coordinator"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}/ponte-coordinator", bin_dir.display()))?;
    let stdout = child.stdout.take().context("coordinator stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ponte-coordinator listening on ") {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Ok(CoordinatorProcess { child, addr }),
        Err(_) => {
            terminate(&mut child);
            let log_text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("the coordinator did not start; its log says:\n{log_text}")
        }
    }
}

/// Runs `ponte-node` with a configuration; returns stdout, or the error with stderr.
pub fn node_cmd(bin_dir: &Path, config: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin_dir.join("ponte-node"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .with_context(|| format!("running {}/ponte-node", bin_dir.display()))?;
    if !out.status.success() {
        bail!(
            "ponte-node {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a node configuration for the demo.
#[allow(clippy::too_many_arguments, reason = "one argument per configuration field the demo varies")]
pub fn write_node_config(
    dir: &Path,
    node_id: &str,
    entity_type: &str,
    entity_name: &str,
    coordinator: &str,
    certs: &Path,
    secret: &Path,
    import: &ponte_node::config::ImportConfig,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let cfg = ponte_node::config::NodeConfig {
        node_id: node_id.into(),
        entity_name: entity_name.into(),
        entity_type: entity_type.into(),
        coordinator: format!("https://{coordinator}"),
        data_dir: dir.join("data"),
        secret_file: secret.to_path_buf(),
        extra_secret_files: Vec::new(),
        schema_file: None,
        tls: ponte_node::config::TlsConfig {
            ca: certs.join("ca.pem"),
            cert: certs.join(format!("{node_id}.pem")),
            key: certs.join(format!("{node_id}.key")),
            server_name: "localhost".into(),
        },
        sync: Default::default(),
        import: import.clone(),
        // Off: several nodes share this machine; tests and the demo turn it on where they use it.
        api: ponte_node::config::ApiConfig { listen: String::new(), ..Default::default() },
    };
    let path = dir.join("node.toml");
    std::fs::write(&path, toml::to_string_pretty(&cfg)?)?;
    Ok(path)
}

/// Writes a coordinator configuration.
pub fn write_coordinator_config(dir: &Path, certs: &Path, listen: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let text = format!(
        // Metrics on a free port: several coordinators may run on this machine (tests).
        // A small disk-space ballast and write reserve: demo and test coordinators are many and
        // short-lived (production keeps the defaults, see README "[storage]").
        "listen = \"{listen}\"\ndata_dir = \"{}\"\nkey_epochs = [1]\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nwrite_reserve_bytes = 67108864\nballast_bytes = 8388608\n",
        dir.join("data").display(),
        certs.join("ca.pem").display(),
        certs.join("coordinator.pem").display(),
        certs.join("coordinator.key").display()
    );
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Writes a privacy officer's client configuration (`officer.toml`) for `ponte-coordinator
/// policy reload | current | explain` and `audit query`, using `certs/<officer>.pem`.
pub fn write_officer_config(dir: &Path, certs: &Path, coordinator: &str, officer: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let text = format!(
        "coordinator = \"https://{coordinator}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.join("ca.pem").display(),
        certs.join(format!("{officer}.pem")).display(),
        certs.join(format!("{officer}.key")).display(),
    );
    let path = dir.join("officer.toml");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[derive(Debug, Deserialize)]
struct TruthRow {
    node_id: String,
    record_id: String,
    relationship_id: String,
    person_id: u64,
    service: String,
    status: String,
    since_month: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnswerLine {
    #[allow(dead_code)]
    pub(crate) record_id: String,
    pub(crate) relationship_id: String,
    #[serde(default)]
    pub(crate) answer: Vec<AnswerRow>,
    #[serde(default)]
    pub(crate) refused: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AnswerRow {
    pub(crate) band: String,
    pub(crate) entity_id: String,
    pub(crate) service: String,
    #[serde(default)]
    pub(crate) category_group: String,
    #[serde(default)]
    pub(crate) generalised: bool,
    pub(crate) status: String,
    pub(crate) since: String,
}

impl AnswerRow {
    /// The service as the truth comparison names it: the category, or `~group` when shown
    /// generalised.
    pub(crate) fn service_key(&self) -> String {
        if self.generalised { format!("~{}", self.category_group) } else { self.service.clone() }
    }
}

/// What the default policy lets a requester of `asker` type see of a relationship in the truth:
/// None when it is hidden (T3 without consent; closed beyond retention), else its service as
/// [`AnswerRow::service_key`] names it (generalised for social requesters of T2 categories).
pub(crate) fn expected_service(policy: &Policy, today: u32, asker: ponte_proto::v1::EntityType, service: &str, status: &str, since_month: &str) -> Option<String> {
    let category = vocab::ServiceCategoryName::parse(service).ok()?;
    let tier = vocab::default_tier(category);
    if tier == ponte_proto::v1::SensitivityTier::T3 {
        return None;
    }
    let month: u32 = since_month.replace('-', "").parse().ok()?;
    if status == "conclusa" && policy.retention_expired(month, today) {
        return None;
    }
    if tier == ponte_proto::v1::SensitivityTier::T2 && policy::sector(policy, asker) == policy::Sector::Social {
        return Some(format!("~{}", vocab::CategoryGroupName::name(vocab::category_group(category))));
    }
    Some(service.to_string())
}

type RelKey = (String, String, String, String);

fn is_t3(service: &str) -> bool {
    vocab::ServiceCategoryName::parse(service)
        .map(|c| vocab::default_tier(c) == ponte_proto::v1::SensitivityTier::T3)
        .unwrap_or(false)
}

fn spinner(msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(0);
    pb.set_style(ProgressStyle::with_template("{spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

/// Runs the whole demo. Returns the summary; the processes are stopped on return.
pub fn run(opts: &DemoOptions) -> Result<DemoSummary> {
    let say = |s: &str| {
        if opts.verbose {
            println!("{s}");
        }
    };
    let dir = &opts.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for bin in ["ponte-node", "ponte-coordinator"] {
        if !opts.bin_dir.join(bin).exists() {
            bail!("{} not found in {}: build the workspace first (cargo build --release)", bin, opts.bin_dir.display());
        }
    }

    // 1. Development PKI.
    let certs = dir.join("certs");
    let mut holders = vec![Holder::coordinator("coordinator")];
    for (id, et, name) in DEMO_NODES {
        holders.push(Holder::node(id, vocab::EntityType::parse(et).map_err(anyhow::Error::msg)?, name));
    }
    holders.push(Holder::privacy_officer("dpo-federazione", "DPO federazione"));
    holders.push(Holder::researcher("ricerca", "Ricerca"));
    ponte_certs_dev::generate_federation(&certs, &holders, 30)?;
    say(&format!("① development CA and {} certificates in {}", holders.len(), certs.display()));

    // 2. Synthetic exports and truth.
    let pb = spinner("generating synthetic exports", !opts.verbose);
    let mut scenario = synth::scenario::demo_scenario(opts.persons);
    scenario.seed = opts.seed;
    let generated = synth::generate(&scenario);
    let exports = dir.join("exports");
    generated.write_to(&exports)?;
    pb.finish_and_clear();
    say(&format!(
        "② synthetic population of {} persons; exports of {} entities in {}",
        generated.persons.len(),
        generated.exports.len(),
        exports.display()
    ));

    // 3. The federation's linkage secret (nodes only).
    let secret = dir.join("secret").join("linkage.secret");
    LinkageSecret::generate(1).save(&secret)?;

    // 4. Coordinator.
    let coord_dir = dir.join("coordinator");
    let coord_cfg = write_coordinator_config(&coord_dir, &certs, "127.0.0.1:0")?;
    let coordinator = start_coordinator(&opts.bin_dir, &coord_cfg, &coord_dir.join("coordinator.log"))?;
    say(&format!("③ coordinator listening on {} (mutual TLS)", coordinator.addr));

    // 5. Nodes: import and publish, each as its own process.
    let mut summary = DemoSummary::default();
    let mut configs = Vec::new();
    for export in &generated.exports {
        let (_, et, name) = DEMO_NODES
            .iter()
            .find(|(id, _, _)| *id == export.node_id)
            .copied()
            .unwrap_or((&export.node_id, &export.entity_type, &export.entity_name));
        let cfg = write_node_config(
            &dir.join("nodes").join(&export.node_id),
            &export.node_id,
            et,
            name,
            &coordinator.addr,
            &certs,
            &secret,
            &export.import,
        )?;
        let pb = spinner(&format!("{}: importing and publishing", export.node_id), !opts.verbose);
        let file = exports.join(&export.file_name);
        let report: serde_json::Value =
            serde_json::from_str(&node_cmd(&opts.bin_dir, &cfg, &["--json", "import", &file.to_string_lossy()])?)?;
        let imported = report["rows_imported"].as_u64().unwrap_or(0);
        summary.rows_rejected += report["rows_rejected"].as_u64().unwrap_or(0);
        summary.records_per_node.insert(export.node_id.clone(), imported);
        let published = node_cmd(&opts.bin_dir, &cfg, &["publish"])?;
        pb.finish_and_clear();
        say(&format!(
            "④ {:<16} {} rows imported ({} rejected, {} doubtful); {}",
            export.node_id,
            imported,
            report["rows_rejected"],
            report["rows_doubtful"],
            published.trim()
        ));
        configs.push((export.node_id.clone(), cfg));
    }

    // 6. Questions.
    let truth: Vec<TruthRow> = csv::Reader::from_path(exports.join("truth.csv"))?
        .deserialize()
        .collect::<Result<_, _>>()
        .context("reading truth.csv")?;
    let by_rel: HashMap<(String, String), &TruthRow> =
        truth.iter().map(|t| ((t.node_id.clone(), t.relationship_id.clone()), t)).collect();
    let mut by_person: HashMap<u64, Vec<&TruthRow>> = HashMap::new();
    for t in &truth {
        by_person.entry(t.person_id).or_default().push(t);
    }

    if opts.verbose {
        println!("\n⑤ Some who-else questions, as case workers would ask them:\n");
        let mut shown_nodes = 0;
        for (node_id, cfg) in &configs {
            // A person of this node who is also in care elsewhere, with an open relationship.
            let candidate = truth.iter().find(|t| {
                &t.node_id == node_id
                    && matches!(t.status.as_str(), "attiva" | "segnalata" | "in_valutazione")
                    && by_person[&t.person_id].iter().any(|o| &o.node_id != node_id && !is_t3(&o.service))
            });
            if let Some(t) = candidate {
                let role = if node_id.starts_with("asl") { "operatore_cot" } else { "assistente_sociale" };
                let purpose = if node_id.starts_with("asl") { "dimissione_protetta" } else { "continuita_assistenziale" };
                println!("  [{node_id}] {role} asks, purpose {purpose}:");
                match node_cmd(
                    &opts.bin_dir,
                    cfg,
                    &["who-else", &t.record_id, "--relationship", &t.relationship_id, "--purpose", purpose, "--role", role, "--operator", "op-demo-1"],
                ) {
                    Ok(out) => println!("{}", indent(&out)),
                    Err(e) => println!("    {e}"),
                }
                shown_nodes += 1;
            }
            if shown_nodes == 3 {
                break;
            }
        }
        if let Some((node_id, cfg)) = configs.first()
            && let Some(t) = truth.iter().find(|t| &t.node_id == node_id && t.status == "attiva")
        {
            println!("  [{node_id}] an operatore_cot asks for an emergency (break-glass is off in the default policy):");
            match node_cmd(
                &opts.bin_dir,
                cfg,
                &["who-else", &t.record_id, "--relationship", &t.relationship_id, "--purpose", "emergenza", "--role", "operatore_cot", "--break-glass", "pericolo_di_vita"],
            ) {
                Ok(out) => println!("{}", indent(&out)),
                Err(e) => println!("{}", indent(&e.to_string())),
            }
        }
    }

    // 7. Every node asks about every person it has in care; answers are compared with the truth,
    // as the default policy discloses it.
    let policy = Policy::default_policy();
    let today = ponte_coordinator::federation::today();
    let pb = spinner("asking who-else for every open relationship and comparing with the truth", !opts.verbose);
    let mut persons_linked = std::collections::HashSet::new();
    for (node_id, cfg) in &configs {
        let out = node_cmd(&opts.bin_dir, cfg, &["--json", "who-else", "--all", "--operator", "op-demo-eval"])?;
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            let a: AnswerLine = serde_json::from_str(line).with_context(|| format!("reading answer line {line}"))?;
            summary.questions += 1;
            if let Some(reason) = &a.refused {
                bail!("a question from {node_id} was refused: {reason}");
            }
            let Some(anchor) = by_rel.get(&(node_id.clone(), a.relationship_id.clone())) else {
                bail!("the answer names relationship {} that the truth does not know", a.relationship_id);
            };
            let asker = entity_of(node_id);
            let mut expected: BTreeMap<RelKey, i64> = BTreeMap::new();
            for t in &by_person[&anchor.person_id] {
                if t.node_id == anchor.node_id && t.relationship_id == anchor.relationship_id {
                    continue;
                }
                if let Some(service) = expected_service(&policy, today, asker, &t.service, &t.status, &t.since_month) {
                    *expected.entry((t.node_id.clone(), service, t.status.clone(), t.since_month.clone())).or_insert(0) += 1;
                }
            }
            let mut shown: BTreeMap<RelKey, i64> = BTreeMap::new();
            let mut strong: BTreeMap<RelKey, i64> = BTreeMap::new();
            let mut possible: BTreeMap<RelKey, i64> = BTreeMap::new();
            for r in &a.answer {
                let k = (r.entity_id.clone(), r.service_key(), r.status.clone(), r.since.clone());
                *(if r.band == "possible" { &mut possible } else { &mut strong }).entry(k.clone()).or_insert(0) += 1;
                if is_t3(&r.service) || r.category_group == "servizio_specialistico" {
                    summary.t3_shown += 1;
                }
                *shown.entry(k).or_insert(0) += 1;
                if &r.entity_id != node_id {
                    persons_linked.insert(anchor.person_id);
                }
            }
            let correct: i64 = expected.iter().map(|(k, n)| (*n).min(*shown.get(k).unwrap_or(&0))).sum();
            let strong_correct: i64 = expected.iter().map(|(k, n)| (*n).min(*strong.get(k).unwrap_or(&0))).sum();
            summary.strong_shown += strong.values().sum::<i64>() as u64;
            summary.strong_correct += strong_correct as u64;
            summary.possible_shown += possible.values().sum::<i64>() as u64;
            summary.possible_correct += (correct - strong_correct).max(0) as u64;
            summary.relationships_expected += expected.values().sum::<i64>() as u64;
            summary.relationships_shown += shown.values().sum::<i64>() as u64;
            summary.relationships_correct += correct as u64;
            if expected == shown {
                summary.answers_exact += 1;
            }
        }
    }
    pb.finish_and_clear();
    summary.persons_shared = by_person
        .values()
        .filter(|rows| {
            let mut nodes: Vec<&str> = rows
                .iter()
                .filter(|r| expected_service(&policy, today, ponte_proto::v1::EntityType::Asl, &r.service, &r.status, &r.since_month).is_some())
                .map(|r| r.node_id.as_str())
                .collect();
            nodes.sort();
            nodes.dedup();
            nodes.len() >= 2
        })
        .count() as u64;
    summary.persons_linked = persons_linked.len() as u64;
    summary.precision = ratio(summary.relationships_correct, summary.relationships_shown);
    summary.recall = ratio(summary.relationships_correct, summary.relationships_expected);
    summary.precision_strong = ratio(summary.strong_correct, summary.strong_shown);
    summary.recall_strong = ratio(summary.strong_correct, summary.relationships_expected);

    // 8. Consent, data-subject access and the privacy officer, on one person.
    let officer = write_officer_config(dir, &certs, &coordinator.addr, "dpo-federazione")?;
    summary.consent_walkthrough = consent_walkthrough(opts, &configs, &truth, &by_person, &officer)?;
    summary.api_consistent = api_walkthrough(opts, &configs, &truth, &by_person, &certs)?;
    drop(coordinator);

    // 9. The audit chain, verified offline.
    let verified = Command::new(opts.bin_dir.join("ponte-coordinator"))
        .args(["audit", "verify", "--data-dir"])
        .arg(coord_dir.join("data"))
        .output()
        .context("running ponte-coordinator audit verify")?;
    let out = String::from_utf8_lossy(&verified.stdout);
    summary.audit_intact = verified.status.success() && out.contains("intact");
    summary.audit_entries = out.split("intact: ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    say(&format!("⑨ {}", if summary.audit_intact { out.trim().to_string() } else { String::from_utf8_lossy(&verified.stderr).trim().to_string() }));
    Ok(summary)
}

/// A running `ponte-node serve`, stopped when dropped.
struct ServeProcess(Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// A Comune's case-worker software asks through its node's HTTPS API: a system credential, the
/// operator's pseudonymous id and role, a who-else question in JSON and in FHIR R4. The answer
/// must equal the CLI's for the same record. Returns None when no person fits.
fn api_walkthrough(
    opts: &DemoOptions,
    configs: &[(String, PathBuf)],
    truth: &[TruthRow],
    by_person: &HashMap<u64, Vec<&TruthRow>>,
    certs: &Path,
) -> Result<Option<bool>> {
    let Some((node_id, cfg)) = configs.iter().find(|(id, _)| id.starts_with("comune")) else { return Ok(None) };
    let Some(t) = truth.iter().find(|t| {
        &t.node_id == node_id
            && t.status == "attiva"
            && by_person[&t.person_id].iter().any(|o| &o.node_id != node_id && !is_t3(&o.service))
    }) else {
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut node_cfg = ponte_node::config::NodeConfig::load(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    node_cfg.api.listen = format!("127.0.0.1:{port}");
    std::fs::write(cfg, toml::to_string_pretty(&node_cfg)?)?;
    let cred: serde_json::Value = serde_json::from_str(&node_cmd(
        &opts.bin_dir,
        cfg,
        &["--json", "credentials", "add", "cartella-sociale", "--roles", "assistente_sociale,operatore_pua", "--replace"],
    )?)?;
    let credential = cred["credential"].as_str().context("no credential printed")?.to_string();
    // The CLI's answer first: `serve` holds the node's store while it runs.
    let cli: serde_json::Value = serde_json::from_str(&node_cmd(
        &opts.bin_dir,
        cfg,
        &["--json", "who-else", &t.record_id, "--relationship", &t.relationship_id, "--operator", "op-demo-api"],
    )?)?;
    let log = cfg.with_file_name("serve.log");
    let child = Command::new(opts.bin_dir.join("ponte-node"))
        .arg("--config")
        .arg(cfg)
        .arg("serve")
        .env("PONTE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting ponte-node serve")?;
    let _serve = ServeProcess(child);
    let base = format!("https://localhost:{port}");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem"))?)?;
    let http = reqwest::blocking::Client::builder().add_root_certificate(ca).use_rustls_tls().timeout(Duration::from_secs(30)).build()?;
    let start = Instant::now();
    while !http.get(format!("{base}/healthz")).send().is_ok_and(|r| r.status().is_success()) {
        if start.elapsed() > Duration::from_secs(30) {
            bail!("ponte-node serve did not come up; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ask = |accept: &str| -> Result<serde_json::Value> {
        let r = http
            .post(format!("{base}/api/v1/persons/{}/who-else", t.record_id))
            .bearer_auth(&credential)
            .header("X-Ponte-Operator", "op-demo-api")
            .header("X-Ponte-Role", "operatore_pua")
            .header("Accept", accept)
            .json(&serde_json::json!({"purpose": "continuita_assistenziale", "relationship_id": t.relationship_id}))
            .send()?;
        let status = r.status();
        let body: serde_json::Value = r.json()?;
        anyhow::ensure!(status.is_success(), "the API answered {status}: {body}");
        Ok(body)
    };
    let json = ask("application/json")?;
    let fhir = ask("application/fhir+json")?;
    let same = json["relationships"] == cli["answer"] && fhir["total"].as_u64() == json["relationships"].as_array().map(|a| a.len() as u64);
    if opts.verbose {
        println!("\n⑧b The same question from a case worker's software, through {node_id}'s HTTPS API ({base}):");
        println!("    POST /api/v1/persons/{}/who-else  (Bearer credential, X-Ponte-Operator, X-Ponte-Role)", t.record_id);
        for r in json["relationships"].as_array().into_iter().flatten() {
            println!(
                "    - {} ({}): {} — {} dal {} [{}]",
                r["entity_name"].as_str().unwrap_or_default(),
                r["entity_id"].as_str().unwrap_or_default(),
                r["service_label"].as_str().unwrap_or_default(),
                r["status_label"].as_str().unwrap_or_default(),
                r["since"].as_str().unwrap_or_default(),
                r["band_label"].as_str().unwrap_or_default()
            );
        }
        println!(
            "    with Accept: application/fhir+json: a FHIR R4 Bundle of {} EpisodeOfCare; {}",
            fhir["total"],
            if same { "the same answer as the CLI's" } else { "DIFFERENT from the CLI's answer" }
        );
        println!("    the page for case workers (/), the OpenAPI document (/openapi.json) and the metrics (/metrics) are served");
        println!("    there too: keep the demo's state with --dir, run `ponte-node -c {} serve` and open {base}/", cfg.display());
    }
    Ok(Some(same))
}

/// The person's consent at the node holding a protected (T3) relationship lets a Comune see it
/// (generalised); the revocation hides it again on the next question; the person's node lists
/// who asked; the privacy officer asks why it is hidden now. Returns whether the Comune saw the
/// relationship exactly while the consent was in force.
fn consent_walkthrough(
    opts: &DemoOptions,
    configs: &[(String, PathBuf)],
    truth: &[TruthRow],
    by_person: &HashMap<u64, Vec<&TruthRow>>,
    officer: &Path,
) -> Result<Option<bool>> {
    let say = |s: &str| {
        if opts.verbose {
            println!("{s}");
        }
    };
    let open = |t: &TruthRow| matches!(t.status.as_str(), "attiva" | "segnalata" | "in_valutazione");
    let config = |node: &str| configs.iter().find(|(n, _)| n == node).map(|(_, c)| c.clone());
    // A T3 relationship at one node, and an open relationship at a Comune for the same person.
    let Some((t3, asker)) = truth.iter().filter(|t| is_t3(&t.service) && open(t)).find_map(|t3| {
        by_person[&t3.person_id].iter().find(|o| o.node_id.starts_with("comune") && open(o)).map(|a| (t3, *a))
    }) else {
        say("⑧ (no person with a protected relationship and a Comune in this population: consent walk-through skipped)");
        return Ok(None);
    };
    let (Some(holder), Some(comune)) = (config(&t3.node_id), config(&asker.node_id)) else { return Ok(None) };
    let ask = || -> Result<(String, bool, u64)> {
        let out = node_cmd(&opts.bin_dir, &comune, &["--json", "who-else", &asker.record_id, "--relationship", &asker.relationship_id, "--role", "assistente_sociale", "--operator", "op-demo-2"])?;
        let v: serde_json::Value = serde_json::from_str(out.trim())?;
        let text = node_cmd(&opts.bin_dir, &comune, &["who-else", &asker.record_id, "--relationship", &asker.relationship_id, "--role", "assistente_sociale", "--operator", "op-demo-2"])?;
        let seen = v["answer"].as_array().is_some_and(|a| a.iter().any(|r| r["entity_id"] == t3.node_id.as_str() && r["category_group"] == "servizio_specialistico"));
        Ok((text, seen, v["receipt"].as_u64().unwrap_or(0)))
    };
    say(&format!("\n⑧ Consent: a person in care at {} ({}, protected) and at {}.", t3.node_id, t3.service, asker.node_id));
    let (text, before, _) = ask()?;
    say(&format!("  [{}] asks — the protected relationship is existence-hidden:\n{}", asker.node_id, indent(&text)));
    let id = node_cmd(&opts.bin_dir, &holder, &[
        "consent", "give", &t3.record_id, "--categories", &t3.service, "--recipients", "comune",
        "--purposes", "continuita_assistenziale", "--until", "2099-12-31", "--given-by", "interessato",
    ])?;
    let id = id.trim().to_string();
    node_cmd(&opts.bin_dir, &holder, &["publish"])?;
    say(&format!("  [{}] the person consents that Comuni may know, for continuity of care (consent {id}); published", t3.node_id));
    let (text, during, _) = ask()?;
    say(&format!("  [{}] asks again — shown, generalised:\n{}", asker.node_id, indent(&text)));
    node_cmd(&opts.bin_dir, &holder, &["consent", "revoke", &id])?;
    node_cmd(&opts.bin_dir, &holder, &["publish"])?;
    let (text, after, receipt) = ask()?;
    say(&format!("  [{}] the person revokes it; [{}] asks again — hidden, with no trace:\n{}", t3.node_id, asker.node_id, indent(&text)));
    let report = node_cmd(&opts.bin_dir, &holder, &["subject-report", &t3.record_id, "--operator", "dpo-demo"])?;
    say(&format!("  [{}] the person asks who asked about them (data-subject report):\n{}", t3.node_id, indent(&report)));
    let show: serde_json::Value = serde_json::from_str(&node_cmd(&opts.bin_dir, &holder, &["records", "show", &t3.record_id])?)?;
    let reference = show["relationships"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["relationship_id"] == t3.relationship_id.as_str()))
        .and_then(|r| r["reference"].as_str())
        .unwrap_or_default()
        .to_string();
    let explain = Command::new(opts.bin_dir.join("ponte-coordinator"))
        .args(["policy", "explain", "--target", &format!("{}/{reference}", t3.node_id), "--receipt", &receipt.to_string(), "--officer"])
        .arg(officer)
        .output()
        .context("running ponte-coordinator policy explain")?;
    say(&format!(
        "  [privacy officer] why was it not shown in question {receipt}? (ponte-coordinator policy explain)\n{}",
        indent(&String::from_utf8_lossy(if explain.status.success() { &explain.stdout } else { &explain.stderr }))
    ));
    Ok(Some(!before && during && !after))
}

/// The entity type of a demo node.
fn entity_of(node_id: &str) -> ponte_proto::v1::EntityType {
    DEMO_NODES
        .iter()
        .find(|(id, _, _)| *id == node_id)
        .and_then(|(_, et, _)| vocab::EntityType::parse(et).ok())
        .unwrap_or(ponte_proto::v1::EntityType::Comune)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// Prints the summary for a person to read.
pub fn print_summary(s: &DemoSummary, dir: &Path) {
    println!("\n⑩ Summary");
    for (node, n) in &s.records_per_node {
        println!("   {node:<16} {n:>5} relationships published");
    }
    println!("   rows rejected at import (see `ponte-node report`): {}", s.rows_rejected);
    println!("   questions asked: {} (every one in the coordinator's audit chain)", s.questions);
    println!(
        "   persons in care at 2+ entities (truth): {}; linked across entities by Ponte: {}",
        s.persons_shared, s.persons_linked
    );
    println!(
        "   relationships shown vs truth: {} shown, {} expected, {} correct → precision {:.3}, recall {:.3}",
        s.relationships_shown, s.relationships_expected, s.relationships_correct, s.precision, s.recall
    );
    println!(
        "   of which certain/probable: {} shown, {} correct → precision {:.3}, recall {:.3}; 'possible' (to be verified): {} shown, {} correct",
        s.strong_shown, s.strong_correct, s.precision_strong, s.recall_strong, s.possible_shown, s.possible_correct
    );
    println!("   answers identical to the truth: {} of {}", s.answers_exact, s.questions);
    println!("   protected (T3) relationships shown without consent: {}", s.t3_shown);
    match s.consent_walkthrough {
        Some(true) => println!("   consent walk-through: shown while consented, hidden right after the revocation"),
        Some(false) => println!("   consent walk-through: FAILED (see above)"),
        None => println!("   consent walk-through: no suitable person in this population"),
    }
    println!(
        "   audit chain: {} entries, {} (ponte-coordinator audit verify)",
        s.audit_entries,
        if s.audit_intact { "intact" } else { "BROKEN" }
    );
    match s.api_consistent {
        Some(true) => println!("   node HTTPS API: the same answer as the CLI, in JSON and as a FHIR R4 Bundle"),
        Some(false) => println!("   node HTTPS API: FAILED (a different answer from the CLI's)"),
        None => println!("   node HTTPS API: no suitable person in this population"),
    }
    println!("   all state (certificates, exports, node and coordinator data, logs): {}", dir.display());
}
