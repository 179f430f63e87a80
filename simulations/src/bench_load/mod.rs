//! `ponte-sim bench load`: who-else questions from many concurrent clients over mutual-TLS gRPC
//! against a live `ponte-coordinator serve` holding ≥ 1 M items, while another node publishes.
//!
//! Everything is real: the release binaries as processes, a development PKI (one certificate
//! per node), the coordinator's sled store, the synthetic population of the `lecce` scenario
//! encoded by the node's encoder under a generated linkage secret ([`items`]). The benchmark
//! talks to the coordinator only through its gRPC API, its configuration file, its `/metrics`
//! endpoint and its CLI, so it measures whatever the coordinator's internals are.
//!
//! Two phases, in one work directory (`--dir`):
//! - **prepare** (once): certificates, secret, coordinator configuration; the population
//!   published through `Publish` by the scenario's six entities, each with its own certificate,
//!   in batches of [`LOAD_BATCH`] items; the anchors each node may ask about
//!   (`anchors.tsv`) and the load figures (`bench-load.json`). A directory that holds them is
//!   reused as it is: the coordinator rebuilds its index from its store at start.
//! - **measure** (per `--cores` setting): the coordinator restarted, pinned to N CPUs and the
//!   load generator to the others where there are others; who-else clients, one HTTP/2
//!   connection each, ask the five asking nodes' own anchors with the default policy's
//!   role/purpose pairs while the sixth node publishes new and changed items; one JSON object per
//!   setting ([`traffic`] says what counts).

pub mod items;
pub mod system;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ponte_node::encode::Encoder;
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::v1::PublishBatch;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use items::NodeSpec;

/// Items per publish batch while preparing (the protocol's maximum).
pub const LOAD_BATCH: usize = ponte_proto::limits::MAX_BATCH_ITEMS;
/// The node that publishes during the measurement (the others ask).
pub const PUBLISHER: &str = "comune-lecce";
/// Version of `bench-load.json`'s shape.
const PREPARED_FORMAT: u32 = 1;
const MANIFEST: &str = "bench-load.json";
const ANCHORS: &str = "anchors.tsv";

/// The coordinator's per-node limits off, and room for every client's connection from one
/// address: the bench measures what the coordinator can do, not what one node is allowed
/// (`[limits]`, `[connections]`, README). Written once into the prepared configuration.
fn unlimit(config: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut text = text;
    if !text.contains("[limits]") {
        text += "\n# ponte-sim bench load: measure capacity, not the per-node limits.\n[limits]\nquestions_per_sec = 0\nwrites_per_sec = 0\nitems_per_node = 1000000000\n";
    }
    if !text.contains("[connections]") {
        // Every client of the bench connects from 127.0.0.1.
        text += "\n[connections]\nmax_connections = 4096\nmax_connections_per_ip = 4096\n";
    }
    std::fs::write(config, text).with_context(|| format!("writing {}", config.display()))?;
    Ok(())
}

/// What `ponte-sim bench load` takes.
#[derive(Args, Debug, Clone)]
pub struct LoadBenchArgs {
    /// Work directory (certificates, secret, coordinator store, anchors, logs). A directory
    /// prepared by an earlier run is reused: the expensive load is done once. Default: a fresh
    /// temporary directory, removed at the end unless --keep.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the temporary work directory (its path is printed) to reuse it with --dir.
    #[arg(long)]
    pub keep: bool,
    /// Items (person × care relationship) to load when preparing (1,000 to 20,000,000; default
    /// 1,000,000). A prepared directory must have been prepared with the same number.
    #[arg(long)]
    pub items: Option<usize>,
    /// Only prepare (load) the directory and print the load figures; measure nothing.
    #[arg(long)]
    pub prepare_only: bool,
    /// Concurrent who-else clients, each with its own HTTP/2 connection and node certificate
    /// (1 to 1,024).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Open loop: questions per second in total, sent on schedule whether answers come back or
    /// not (latency counted from when each was due). Default: closed loop, each client asking
    /// again as soon as it has its answer.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds measured (1 to 3,600).
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of traffic before the measurement, not counted (0 to 600).
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Items per second the publishing node sends while the clients ask: a number, `max` (as
    /// fast as acknowledgements come, one batch in flight) or 0 (nobody publishes).
    #[arg(long, default_value = "1000")]
    pub publish_rate: String,
    /// Items per batch of the publishing node (1 to 1,000).
    #[arg(long, default_value_t = 100)]
    pub publish_batch: usize,
    /// CPUs the coordinator is pinned to: a number, or a comma-separated sweep (`1,2`), or
    /// `all`. The load generator is pinned to the CPUs left over; when none are left it shares
    /// the coordinator's (the JSON says so).
    #[arg(long, default_value = "all")]
    pub cores: String,
    /// Seed of the population (a prepared directory keeps its own).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Folder with ponte-coordinator (default: next to this program).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Print one JSON object per measurement (per --cores setting), one per line.
    #[arg(long)]
    pub json: bool,
}

/// One node of a prepared directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedNode {
    #[serde(flatten)]
    pub spec: NodeSpec,
    pub items: u64,
    pub anchors: u64,
}

/// `bench-load.json`: what was loaded, and how fast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prepared {
    pub format: u32,
    pub scenario: String,
    pub items: u64,
    pub seed: u64,
    pub chunk_persons: usize,
    pub chunks: u64,
    pub nodes: Vec<PreparedNode>,
    pub publisher: String,
    /// The load's figures (see [`prepare`]).
    pub load: Value,
}

/// A progress bar on a terminal; elsewhere (a log file) [`prepare`] writes a line per chunk.
fn bar(len: u64) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} items ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message("loading");
    b
}

fn say(json: bool, s: &str) {
    if !json {
        eprintln!("{s}");
    }
}

/// The CPU settings of `--cores` against the CPUs this process may use.
pub fn core_settings(spec: &str, allowed: &[usize]) -> Result<Vec<usize>> {
    let all = allowed.len();
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        let n = if part == "all" {
            all
        } else {
            part.parse::<usize>().map_err(|_| anyhow::anyhow!("--cores {spec:?}: {part:?} is neither a number nor `all`"))?
        };
        ensure!((1..=all).contains(&n), "--cores {spec:?}: {n} CPUs asked, this process may use {all} ({allowed:?})");
        out.push(n);
    }
    ensure!(!out.is_empty(), "--cores is empty");
    Ok(out)
}

/// Parses `--publish-rate`: `None` as fast as possible, `Some(0)` nobody publishes.
pub fn publish_rate(s: &str) -> Result<Option<f64>> {
    match s.trim() {
        "max" => Ok(None),
        t => {
            let r: f64 = t.parse().map_err(|_| anyhow::anyhow!("--publish-rate {s:?}: write items per second (e.g. 1000), `max` or 0"))?;
            ensure!(r.is_finite() && (0.0..=1e6).contains(&r), "--publish-rate must be between 0 and 1000000 (or `max`)");
            Ok(Some(r))
        }
    }
}

fn check(args: &LoadBenchArgs) -> Result<()> {
    if let Some(n) = args.items {
        ensure!((1_000..=20_000_000).contains(&n), "--items must be between 1000 and 20000000");
    }
    ensure!((1..=1_024).contains(&args.clients), "--clients must be between 1 and 1024");
    ensure!(args.duration.is_finite() && (1.0..=3_600.0).contains(&args.duration), "--duration must be between 1 and 3600 seconds");
    ensure!(args.warmup.is_finite() && (0.0..=600.0).contains(&args.warmup), "--warmup must be between 0 and 600 seconds");
    ensure!((1..=LOAD_BATCH).contains(&args.publish_batch), "--publish-batch must be between 1 and {LOAD_BATCH}");
    if let Some(r) = args.rate {
        ensure!(r.is_finite() && (1.0..=1e6).contains(&r), "--rate must be between 1 and 1000000 questions per second");
        ensure!(r / args.clients as f64 <= 1e5, "--rate per client is above 100000/s: use more --clients");
    }
    publish_rate(&args.publish_rate)?;
    Ok(())
}

/// The secret every node of the benchmark encodes with (generated at preparation; nodes only).
fn secret_path(dir: &Path) -> PathBuf {
    dir.join("secret").join("linkage.secret")
}

fn coordinator_config(dir: &Path) -> PathBuf {
    dir.join("coordinator").join("coordinator.toml")
}

/// Runs the benchmark as `args` say; returns one report per measurement (or the load's when
/// `--prepare-only`).
pub fn run(args: &LoadBenchArgs) -> Result<Vec<Value>> {
    check(args)?;
    let allowed = system::allowed_cpus();
    let settings = core_settings(&args.cores, &allowed)?;
    let publish = publish_rate(&args.publish_rate)?;
    let bin_dir = system::binaries(args.bin_dir.clone())?;
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("ponte-bench-load-{}", std::process::id())), true),
    };
    let result = (|| {
        let (prepared, loaded_now) = prepare_or_reuse(args, &dir, &bin_dir)?;
        if args.prepare_only {
            return Ok(vec![json!({ "benchmark": "load-prepare", "dir": dir, "items": prepared.items, "load": prepared.load, "machine": system::machine() })]);
        }
        let mut reports = Vec::new();
        let mut pool = None;
        for &cores in &settings {
            let report = measure(args, &dir, &bin_dir, &prepared, &allowed, cores, publish, &mut pool, loaded_now)?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            }
            reports.push(report);
        }
        Ok(reports)
    })();
    if temporary {
        if args.keep {
            eprintln!("work directory kept: {} (reuse it with --dir)", dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    result
}

/// Loads a new directory, or reads a prepared one.
fn prepare_or_reuse(args: &LoadBenchArgs, dir: &Path, bin_dir: &Path) -> Result<(Prepared, bool)> {
    let manifest = dir.join(MANIFEST);
    if manifest.exists() {
        let text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
        let p: Prepared = serde_json::from_str(&text).with_context(|| format!("{} is not a bench-load manifest", manifest.display()))?;
        ensure!(p.format == PREPARED_FORMAT, "{} was written by another version of this benchmark; prepare a fresh --dir", manifest.display());
        if let Some(n) = args.items {
            ensure!(n as u64 == p.items, "{} holds {} items, not --items {n}: choose another --dir (or leave out --items)", dir.display(), p.items);
        }
        if let Some(s) = args.seed {
            ensure!(s == p.seed, "{} was prepared with seed {}, not --seed {s}", dir.display(), p.seed);
        }
        say(args.json, &format!("reusing {} ({} items from {} nodes)", dir.display(), p.items, p.nodes.len()));
        return Ok((p, false));
    }
    if dir.join("coordinator").exists() || dir.join("certs").exists() {
        bail!(
            "{} holds an unfinished or foreign preparation (no {MANIFEST}): remove it or choose another --dir",
            dir.display()
        );
    }
    Ok((prepare(args, dir, bin_dir)?, true))
}

/// Prepares `dir`: PKI, secret, configuration, then the load through the real gRPC API.
///
/// A generator thread builds the chunks (population, import, encoding on all cores) one ahead
/// of the publishers; each node publishes its share of a chunk in batches of [`LOAD_BATCH`], one
/// batch in flight per node, all nodes at once. Reported: wall seconds from the first batch to
/// the last acknowledgement, items/s over that time, the generator's busy seconds and how long
/// the publishers waited for it (when that is small, the coordinator set the pace).
fn prepare(args: &LoadBenchArgs, dir: &Path, bin_dir: &Path) -> Result<Prepared> {
    let target = args.items.unwrap_or(1_000_000);
    let seed = args.seed.unwrap_or(2026);
    let nodes = items::nodes();
    ensure!(nodes.iter().any(|n| n.id == PUBLISHER), "the {} scenario has no node {PUBLISHER}", items::SCENARIO);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    say(args.json, &format!("preparing {}: {target} items from {} nodes", dir.display(), nodes.len()));

    let certs = dir.join("certs");
    let mut holders = vec![ponte_certs_dev::Holder::coordinator("coordinator")];
    for n in &nodes {
        let et = ponte_proto::vocab::EntityType::parse(&n.entity_type).map_err(anyhow::Error::msg)?;
        holders.push(ponte_certs_dev::Holder::node(&n.id, et, &n.name));
    }
    ponte_certs_dev::generate_federation(&certs, &holders, 365)?;
    let secret = LinkageSecret::generate(1);
    secret.save(&secret_path(dir))?;
    let coord_dir = dir.join("coordinator");
    crate::demo::write_coordinator_config(&coord_dir, &certs, "127.0.0.1:0")?;
    unlimit(&coordinator_config(dir))?;

    let coordinator = system::start_coordinator(bin_dir, &coordinator_config(dir), &coord_dir.join("coordinator.log"), None)?;
    let schema = LinkageSchema::default_schema();
    let fingerprint = schema.fingerprint().0.to_vec();
    let chunk_persons = items::chunk_persons(target);
    let today = ponte_node::consent::today();

    // The generator: chunks one ahead of the publishers.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<items::Chunk>>(1);
    let generator = {
        let schema = schema.clone();
        std::thread::spawn(move || -> (f64, u64) {
            let encoder = Encoder::new(&secret, &schema);
            let (mut busy, mut made, mut c) = (0.0, 0usize, 0u64);
            while made < target {
                let t = Instant::now();
                let chunk = items::chunk(c, chunk_persons, seed, "", &encoder, 1, today).map(|mut ch| {
                    ch.truncate(target - made);
                    ch
                });
                busy += t.elapsed().as_secs_f64();
                match &chunk {
                    Ok(ch) if ch.is_empty() => {
                        let _ = tx.send(Err(anyhow::anyhow!("chunk {c} of the population gave no publishable item")));
                        break;
                    }
                    Ok(ch) => made += ch.len(),
                    Err(_) => {}
                }
                let failed = chunk.is_err();
                if tx.send(chunk).is_err() || failed {
                    break;
                }
                c += 1;
            }
            (busy, c)
        })
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let progress = bar(target as u64);
    let log_lines = progress.is_hidden();
    let mut anchors: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    let mut per_node = vec![0u64; nodes.len()];
    let mut skipped = 0u64;
    let (seconds, waited, batches) = runtime.block_on(async {
        let mut clients = Vec::new();
        for n in &nodes {
            clients.push(traffic::connect(&coordinator.addr, &certs, &n.id).await?);
        }
        let info = clients[0].info(ponte_proto::v1::FederationInfoRequest {}).await.context("asking the coordinator what it expects")?.into_inner();
        ensure!(info.schema_fingerprint == fingerprint, "the coordinator expects another linkage schema than the default one");
        let mut started: Option<Instant> = None;
        let mut waited = 0.0;
        let mut batches = 0u64;
        let mut chunk_no = 0u64;
        loop {
            let t = Instant::now();
            let next = tokio::task::block_in_place(|| rx.recv());
            if started.is_some() {
                waited += t.elapsed().as_secs_f64();
            }
            let Ok(chunk) = next else { break };
            let chunk = chunk?;
            started.get_or_insert_with(Instant::now);
            skipped += chunk.skipped;
            let mut sends = Vec::new();
            for (i, (node_items, client)) in chunk.items.into_iter().zip(clients.iter().cloned()).enumerate() {
                let node = nodes[i].id.clone();
                let fingerprint = fingerprint.clone();
                let progress = progress.clone();
                let mut client = client;
                per_node[i] += node_items.len() as u64;
                sends.push(tokio::spawn(async move {
                    let mut sent = 0u64;
                    for (b, items) in node_items.chunks(LOAD_BATCH).enumerate() {
                        let n = items.len();
                        let batch_id = (chunk_no << 32) | b as u64;
                        let ack = client
                            .publish(PublishBatch {
                                node_id: node.clone(),
                                schema_fingerprint: fingerprint.clone(),
                                key_epoch: 1,
                                batch_id,
                                items: items.to_vec(),
                            })
                            .await
                            .map_err(|s| anyhow::anyhow!("{node}: publishing refused — {}", ponte_node::client::status_text(&s)))?
                            .into_inner();
                        ensure!(ack.accepted as usize == n, "{node}: the coordinator accepted {} of {n} items", ack.accepted);
                        progress.inc(n as u64);
                        sent += 1;
                    }
                    anyhow::Ok(sent)
                }));
            }
            for s in sends {
                batches += s.await.context("a publishing task stopped")??;
            }
            for (i, a) in chunk.anchors.into_iter().enumerate() {
                anchors[i].extend(a);
            }
            chunk_no += 1;
            if log_lines {
                let done: u64 = per_node.iter().sum();
                let s = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
                eprintln!("loaded {done}/{target} items in {s:.0} s ({:.0} items/s)", done as f64 / s.max(1e-9));
            }
        }
        anyhow::Ok((started.map_or(0.0, |s| s.elapsed().as_secs_f64()), waited, batches))
    })?;
    progress.finish_and_clear();
    let (busy, chunks) = generator.join().map_err(|_| anyhow::anyhow!("the population generator panicked"))?;
    let loaded: u64 = per_node.iter().sum();
    ensure!(loaded == target as u64, "loaded {loaded} items, not {target}");
    let memory = system::memory(coordinator.pid()).unwrap_or_default();
    let indexed = coordinator.metrics.as_deref().and_then(system::indexed_from_metrics);
    coordinator.stop();

    let mut text = String::with_capacity(loaded as usize * 24);
    for (n, refs) in nodes.iter().zip(&anchors) {
        for r in refs {
            text.push_str(&n.id);
            text.push('\t');
            text.push_str(r);
            text.push('\n');
        }
    }
    std::fs::write(dir.join(ANCHORS), text)?;
    let load = json!({
        "items": loaded,
        "seconds": seconds,
        "items_per_s": loaded as f64 / seconds.max(1e-9),
        "batches": batches,
        "batch_items": LOAD_BATCH,
        "nodes_publishing_at_once": nodes.len(),
        "generator_busy_s": busy,
        "publishers_waited_for_generator_s": waited,
        "rows_not_published": skipped,
        "indexed_after_load": indexed,
        "coordinator_rss_bytes_after_load": memory.rss,
        "coordinator_rss_peak_bytes": memory.peak,
        "cores": "all (not pinned)",
        "store_bytes": dir_size(&dir.join("coordinator").join("data")),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    let prepared = Prepared {
        format: PREPARED_FORMAT,
        scenario: items::SCENARIO.into(),
        items: loaded,
        seed,
        chunk_persons,
        chunks,
        nodes: nodes
            .iter()
            .zip(per_node.iter().zip(&anchors))
            .map(|(spec, (&items, a))| PreparedNode { spec: spec.clone(), items, anchors: a.len() as u64 })
            .collect(),
        publisher: PUBLISHER.into(),
        load,
    };
    std::fs::write(dir.join(MANIFEST), serde_json::to_string_pretty(&prepared)?)?;
    say(
        args.json,
        &format!("loaded {loaded} items in {seconds:.1} s ({:.0} items/s); {} prepared", loaded as f64 / seconds.max(1e-9), dir.display()),
    );
    Ok(prepared)
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The anchors of each node, from `anchors.tsv`.
fn read_anchors(dir: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let path = dir.join(ANCHORS);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let (node, reference) = line.split_once('\t').with_context(|| format!("{}: a line without a tab", path.display()))?;
        out.entry(node.to_string()).or_default().push(reference.to_string());
    }
    Ok(out)
}

/// The publishing node's items: its own items of the first chunk (already published: sent with
/// a higher revision, a changed identity) followed by a fresh population's rows (new references,
/// unique to this run) published as its own.
fn publish_pool(prepared: &Prepared, dir: &Path, nonce: u64) -> Result<traffic::PublishPool> {
    let secret = LinkageSecret::load(&secret_path(dir)).map_err(anyhow::Error::msg)?;
    let encoder = Encoder::new(&secret, &LinkageSchema::default_schema());
    let today = ponte_node::consent::today();
    let me = prepared.nodes.iter().position(|n| n.spec.id == prepared.publisher).context("the publisher is not among the prepared nodes")?;
    // Revisions above every earlier run's: seconds since the epoch, times a thousand passes.
    let revision = ponte_node::consent::now_secs() * 1_000;
    let first = items::chunk(0, prepared.chunk_persons, prepared.seed, "", &encoder, revision, today)?;
    let mut pool: Vec<_> = first.items.into_iter().nth(me).unwrap_or_default();
    let known = pool.len();
    let persons = (prepared.items as usize / 4).clamp(1_000, items::MAX_CHUNK_PERSONS);
    let fresh = items::chunk(0, persons, prepared.seed ^ nonce, &format!("n{nonce:x}-"), &encoder, 1, today)?;
    let entity_type =
        ponte_proto::vocab::EntityType::parse(&prepared.nodes[me].spec.entity_type).map_err(anyhow::Error::msg)? as i32;
    for mut it in fresh.items.into_iter().flatten() {
        if let Some(r) = it.relationship.as_mut() {
            r.entity_type = entity_type;
        }
        pool.push(it);
    }
    Ok(traffic::PublishPool::new(pool, known))
}

/// One measurement with the coordinator pinned to `cores` CPUs.
#[allow(clippy::too_many_arguments, reason = "the measurement's settings, each used once")]
fn measure(
    args: &LoadBenchArgs,
    dir: &Path,
    bin_dir: &Path,
    prepared: &Prepared,
    allowed: &[usize],
    cores: usize,
    publish: Option<f64>,
    pool: &mut Option<Arc<Mutex<traffic::PublishPool>>>,
    loaded_now: bool,
) -> Result<Value> {
    let anchors = read_anchors(dir)?;
    let askers: Vec<(String, Arc<Vec<String>>)> = prepared
        .nodes
        .iter()
        .filter(|n| n.spec.id != prepared.publisher)
        .filter_map(|n| anchors.get(&n.spec.id).filter(|a| !a.is_empty()).map(|a| (n.spec.id.clone(), Arc::new(a.clone()))))
        .collect();
    ensure!(!askers.is_empty(), "no asking node has an anchor in {}", dir.join(ANCHORS).display());
    let publishing = publish != Some(0.0);
    if publishing && pool.is_none() {
        say(args.json, "preparing the publishing node's items …");
        let nonce = ponte_node::consent::now_secs();
        *pool = Some(Arc::new(Mutex::new(publish_pool(prepared, dir, nonce)?)));
    }
    if let Some(p) = pool.as_ref() {
        p.lock().unwrap_or_else(|e| e.into_inner()).new_pass();
    }

    // Who runs where: the coordinator on the first `cores` CPUs, the load generator on the rest.
    system::pin_this_process(allowed)?;
    let coordinator_cpus: Vec<usize> = allowed[..cores].to_vec();
    let rest: Vec<usize> = allowed[cores..].to_vec();
    let loadgen_cpus = if rest.is_empty() { allowed.to_vec() } else { rest };
    let shares = loadgen_cpus.iter().any(|c| coordinator_cpus.contains(c));
    let machine = system::machine();
    say(args.json, &format!("starting the coordinator on CPUs {coordinator_cpus:?} (rebuilding its index from the store) …"));
    let coord_dir = dir.join("coordinator");
    unlimit(&coordinator_config(dir))?;
    let mut coordinator = system::start_coordinator(bin_dir, &coordinator_config(dir), &coord_dir.join("coordinator.log"), Some(&coordinator_cpus))?;
    let pid = coordinator.pid();
    system::pin_this_process(&loadgen_cpus)?;
    let indexed_at_start = coordinator.metrics.as_deref().and_then(system::indexed_from_metrics);
    let memory_at_start = system::memory(pid).unwrap_or_default();
    say(
        args.json,
        &format!(
            "coordinator listening on {} after {:.1} s; {} clients for {} + {} s{} …",
            coordinator.addr,
            coordinator.start_seconds,
            args.clients,
            args.warmup,
            args.duration,
            match publish {
                Some(r) if r == 0.0 => String::new(),
                Some(r) => format!(", {} publishing {r} items/s", prepared.publisher),
                None => format!(", {} publishing as fast as it can", prepared.publisher),
            }
        ),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(loadgen_cpus.len().max(1)).enable_all().build()?;
    let certs = dir.join("certs");
    let fingerprint = LinkageSchema::default_schema().fingerprint().0.to_vec();
    let seed = prepared.seed;
    let outcome = runtime.block_on(async {
        let mut clients = Vec::with_capacity(args.clients);
        for i in 0..args.clients {
            let (node, anchors) = &askers[i % askers.len()];
            let client = traffic::connect(&coordinator.addr, &certs, node).await?;
            clients.push(traffic::Asker { client, node: node.clone(), anchors: anchors.clone(), seed: seed ^ (i as u64 + 1) * 7919 });
        }
        let publisher_client = if publishing { Some(traffic::connect(&coordinator.addr, &certs, &prepared.publisher).await?) } else { None };
        let start = tokio::time::Instant::now();
        let window = traffic::Window {
            start,
            from: start + Duration::from_secs_f64(args.warmup),
            until: start + Duration::from_secs_f64(args.warmup + args.duration),
        };
        let publisher = publisher_client.zip(pool.clone()).map(|(c, p)| {
            tokio::spawn(traffic::publisher(c, prepared.publisher.clone(), fingerprint.clone(), p, args.publish_batch, publish, window, seed))
        });
        let per_client = args.rate.map(|r| r / args.clients as f64);
        let tasks: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, a)| match per_client {
                Some(r) => tokio::spawn(traffic::open_loop(a, i, r, window)),
                None => tokio::spawn(traffic::closed_loop(a, i, window)),
            })
            .collect();
        // Memory and CPU while the window runs.
        let mut rss_max = 0u64;
        tokio::time::sleep_until(window.from).await;
        let cpu0 = (system::cpu_seconds(&pid.to_string()), system::cpu_seconds("self"), Instant::now());
        while tokio::time::Instant::now() < window.until {
            if let Some(m) = system::memory(pid) {
                rss_max = rss_max.max(m.rss);
            }
            tokio::time::sleep(Duration::from_millis(250).min(window.until.saturating_duration_since(tokio::time::Instant::now()))).await;
        }
        let cpu1 = (system::cpu_seconds(&pid.to_string()), system::cpu_seconds("self"), Instant::now());
        let mut questions: Option<traffic::Questions> = None;
        for t in tasks {
            let q = t.await.context("a client task stopped")?;
            match questions.as_mut() {
                Some(all) => all.merge(&q),
                None => questions = Some(q),
            }
        }
        let published = match publisher {
            Some(p) => Some(p.await.context("the publishing task stopped")?),
            None => None,
        };
        let wall = (cpu1.2 - cpu0.2).as_secs_f64().max(1e-9);
        let used = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / wall);
        anyhow::Ok((questions.context("no client ran")?, published, rss_max, used(cpu0.0, cpu1.0), used(cpu0.1, cpu1.1)))
    });
    drop(runtime);
    let exited = coordinator.exited();
    let memory = system::memory(pid).unwrap_or_default();
    let metrics_addr = coordinator.metrics.clone();
    let start_seconds = coordinator.start_seconds;
    let indexed_metrics = metrics_addr.as_deref().and_then(system::indexed_from_metrics);
    coordinator.stop();
    system::pin_this_process(allowed)?;
    let (q, published, rss_max, coord_cpu, loadgen_cpu) = outcome?;
    ensure!(!exited, "the coordinator exited during the measurement; see {}", coord_dir.join("coordinator.log").display());
    let (indexed, indexed_source) = match indexed_metrics {
        Some(n) => (n, "metrics"),
        None => (system::indexed_from_stats(bin_dir, &coord_dir.join("data"))?, "stats"),
    };

    let total = q.answered + q.refused + q.errors_total();
    let publish_json = published.as_ref().map(|p| {
        json!({
            "node": prepared.publisher,
            "rate_target": publish.map_or(json!("max"), |r| json!(r)),
            "batch_items": args.publish_batch,
            "items": p.items,
            "new_items": p.new_items,
            "changed_items": p.items - p.new_items,
            "batches": p.batches,
            "items_per_s": p.items as f64 / args.duration,
            "batch_p50_ms": traffic::ms(&p.latency, 0.5),
            "batch_p99_ms": traffic::ms(&p.latency, 0.99),
            "batch_max_ms": p.latency.max() as f64 / 1e3,
            "errors": p.errors.values().sum::<u64>(),
            "errors_by_code": p.errors,
            "first_error": p.first_error,
        })
    });
    let mut report = json!({
        "benchmark": "load",
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate_target": args.rate,
        "questions_per_s": total as f64 / args.duration,
        "answered_per_s": q.answered as f64 / args.duration,
        "p50_ms": traffic::ms(&q.latency, 0.5),
        "p90_ms": traffic::ms(&q.latency, 0.9),
        "p99_ms": traffic::ms(&q.latency, 0.99),
        "p999_ms": traffic::ms(&q.latency, 0.999),
        "max_ms": q.latency.max() as f64 / 1e3,
        "mean_ms": q.latency.mean() / 1e3,
        "answered": q.answered,
        "refused": q.refused,
        "errors": q.errors_total(),
        "errors_by_code": q.errors,
        "first_error": q.first_error,
        "relationships_per_answer": q.relationships as f64 / q.answered.max(1) as f64,
        "answers_with_others": q.answers_with_others,
        "indexed": indexed,
        "indexed_source": indexed_source,
        "indexed_at_start": indexed_at_start,
    });
    let more = json!({
        "coordinator_rss_bytes": memory.rss,
        "coordinator_rss_peak_bytes": memory.peak,
        "coordinator_rss_max_in_window_bytes": rss_max,
        "coordinator_rss_at_start_bytes": memory_at_start.rss,
        "coordinator_start_s": start_seconds,
        "cores": cores,
        "coordinator_cpus": coordinator_cpus,
        "loadgen_cpus": loadgen_cpus,
        "loadgen_shares_coordinator_cpus": shares,
        "coordinator_cpu_cores_used": coord_cpu,
        "loadgen_cpu_cores_used": loadgen_cpu,
        "clients": args.clients,
        "connections": args.clients + usize::from(publishing),
        "asking_nodes": askers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "publish_items_per_s": published.as_ref().map_or(0.0, |p| p.items as f64 / args.duration),
        "publish": publish_json,
        "load": prepared.load,
        "loaded_in_this_run": loaded_now,
        "machine": machine,
        "dir": dir,
        "seed": prepared.seed,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
    });
    if let (Some(r), Value::Object(m)) = (report.as_object_mut(), more) {
        r.extend(m);
    }
    Ok(report)
}

/// Prints the reports as a table (the JSON lines were printed as each measurement ended).
pub fn print(reports: &[Value], json: bool) {
    if json {
        if let Some(r) = reports.first().filter(|r| r["benchmark"] == "load-prepare") {
            println!("{r}");
        }
        return;
    }
    let Some(first) = reports.first() else { return };
    if first["benchmark"] == "load-prepare" {
        let l = &first["load"];
        println!("prepared {}: {} items in {:.1} s ({:.0} items/s)", first["dir"], first["items"], l["seconds"].as_f64().unwrap_or(0.0), l["items_per_s"].as_f64().unwrap_or(0.0));
        return;
    }
    let l = &first["load"];
    println!(
        "load benchmark: {} items indexed, asked by {}; loaded at {:.0} items/s ({:.0} s)",
        first["indexed"],
        first["asking_nodes"].as_array().map(|a| a.len()).unwrap_or(0),
        l["items_per_s"].as_f64().unwrap_or(0.0),
        l["seconds"].as_f64().unwrap_or(0.0)
    );
    println!(
        "{:>5} {:>7} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>8} {:>9} {:>9}",
        "cores", "clients", "mode", "q/s", "p50 ms", "p99 ms", "max ms", "mean ms", "errors", "refused", "publish/s", "RSS MB", "coord cpu", "lgen cpu"
    );
    for r in reports {
        let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
        println!(
            "{:>5} {:>7} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>8.1} {:>8.2} {:>7} {:>7} {:>10.0} {:>8.0} {:>9.2} {:>9.2}",
            r["cores"].to_string(),
            r["clients"].to_string(),
            r["mode"].as_str().unwrap_or(""),
            f("questions_per_s"),
            f("p50_ms"),
            f("p99_ms"),
            f("max_ms"),
            f("mean_ms"),
            r["errors"].to_string(),
            r["refused"].to_string(),
            f("publish_items_per_s"),
            f("coordinator_rss_bytes") / 1e6,
            f("coordinator_cpu_cores_used"),
            f("loadgen_cpu_cores_used"),
        );
        if let Some(e) = r["first_error"].as_str() {
            println!("      first error: {e}");
        }
        if r["loadgen_shares_coordinator_cpus"] == true {
            println!("      the load generator shared the coordinator's CPUs {}", r["coordinator_cpus"]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_settings_are_checked_against_the_allowed_cpus() {
        assert_eq!(core_settings("1,2", &[0, 1]).unwrap(), vec![1, 2]);
        assert_eq!(core_settings("all", &[0, 1, 2]).unwrap(), vec![3]);
        assert!(core_settings("3", &[0, 1]).is_err());
        assert!(core_settings("0", &[0, 1]).is_err());
        assert!(core_settings("two", &[0, 1]).is_err());
    }

    #[test]
    fn publish_rates_parse() {
        assert_eq!(publish_rate("max").unwrap(), None);
        assert_eq!(publish_rate("250").unwrap(), Some(250.0));
        assert!(publish_rate("-1").is_err());
        assert!(publish_rate("fast").is_err());
    }
}
