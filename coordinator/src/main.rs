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
use ponte_coordinator::{audit, service, storage::Store};
use ponte_proto::schema::LinkageSchema;

/// The Ponte coordinator. It links the keyed encodings that nodes publish and answers
/// consent-aware who-else questions. Every connection is mutual TLS; it never holds the
/// linkage secret.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serves the Federation gRPC service (with health and reflection) until SIGINT/SIGTERM.
    Serve {
        /// Configuration file (TOML; see README "Coordinator configuration").
        #[arg(long, short, default_value = "coordinator.toml")]
        config: PathBuf,
    },
    /// Reads the audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Counts stored items per node and key epoch, links and person clusters (the coordinator must be stopped).
    Stats {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// The Fellegi–Sunter matching model: show the one in force, re-estimate it on the
    /// federation's own encodings.
    Params {
        #[command(subcommand)]
        cmd: ParamsCmd,
    },
}

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
enum AuditCmd {
    /// Checks the hash chain: detects any altered, reordered or removed entry.
    Verify {
        /// The coordinator's data directory (the coordinator must be stopped).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Prints the entries as JSON lines.
    List {
        #[arg(long)]
        data_dir: PathBuf,
        /// Only entries by this node.
        #[arg(long)]
        node: Option<String>,
    },
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve { config } => {
            let cfg = CoordinatorConfig::load(&config).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(service::serve(cfg, shutdown_signal(), |addr| {
                println!("ponte-coordinator listening on {addr}");
            }))?;
        }
        Cmd::Audit { cmd: AuditCmd::Verify { data_dir } } => {
            let store = Store::open(&data_dir)?;
            let entries = store.audit_entries()?;
            match audit::verify(&entries) {
                Ok((n, head)) => println!("audit chain intact: {n} entries, head {head}"),
                Err(b) => anyhow::bail!("audit chain BROKEN — {b}"),
            }
        }
        Cmd::Audit { cmd: AuditCmd::List { data_dir, node } } => {
            let store = Store::open(&data_dir)?;
            for e in store.audit_entries()? {
                if node.as_ref().is_none_or(|n| *n == e.record.actor) {
                    println!("{}", serde_json::to_string(&e)?);
                }
            }
        }
        Cmd::Stats { data_dir } => {
            let store = Store::open(&data_dir)?;
            for (node, n) in store.counts_by_node()? {
                println!("{node}\t{n}");
            }
            println!("links\t{}", store.link_count());
            println!("clusters\t{}", store.cluster_count());
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
    Ok(())
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
    init_logs();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ponte-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
