//! `ponte-coordinator`: serve the federation, verify and read the audit log.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ponte_coordinator::{audit, config::CoordinatorConfig, service, storage::Store};

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
    /// Counts stored items per node and links (the coordinator must be stopped).
    Stats {
        #[arg(long)]
        data_dir: PathBuf,
    },
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
            for ((node, epoch), n) in store.counts_by_node_epoch()? {
                println!("epoch {epoch}\t{node}\t{n}");
            }
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
