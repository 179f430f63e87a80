//! `ponte-certs-dev`: development certificates for a Ponte federation.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ponte_certs_dev::{DevCa, Holder, generate_federation};

/// Development PKI for Ponte. Production federations use each entity's own PKI with the same
/// certificate profile (see the README); these files are for demos and tests only.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Creates a new CA and certificates for a coordinator, nodes, privacy officers and researchers.
    ///
    /// Example:
    ///   ponte-certs-dev init --out certs-dev/out --node asl-lecce:asl:"ASL Lecce" \
    ///       --node comune-lecce:comune:"Comune di Lecce" --privacy-officer dpo --researcher lab
    Init {
        /// Output folder (git-ignored by default: certs-dev/out).
        #[arg(long, default_value = "certs-dev/out")]
        out: PathBuf,
        /// Coordinator id (its certificate names localhost, 127.0.0.1 and ::1).
        #[arg(long, default_value = "coordinator")]
        coordinator: String,
        /// A node, as ID:ENTITY_TYPE:DISPLAY NAME (entity type: asl, comune, ats, provider).
        #[arg(long = "node", value_name = "ID:TYPE:NAME")]
        nodes: Vec<String>,
        /// A privacy officer's id.
        #[arg(long = "privacy-officer", value_name = "ID")]
        officers: Vec<String>,
        /// A researcher's id.
        #[arg(long = "researcher", value_name = "ID")]
        researchers: Vec<String>,
        /// Validity of the issued certificates, in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Overwrite an existing CA in the output folder.
        #[arg(long)]
        force: bool,
    },
    /// Issues one more node certificate with an existing CA.
    AddNode {
        #[arg(long, default_value = "certs-dev/out")]
        out: PathBuf,
        /// ID:ENTITY_TYPE:DISPLAY NAME
        node: String,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

fn parse_node(s: &str) -> Result<Holder> {
    let mut parts = s.splitn(3, ':');
    let (Some(id), Some(et)) = (parts.next(), parts.next()) else {
        bail!("--node {s:?}: write ID:ENTITY_TYPE:DISPLAY NAME, e.g. asl-lecce:asl:\"ASL Lecce\"");
    };
    let name = parts.next().unwrap_or(id);
    let et = ponte_proto::vocab::EntityType::parse(et).map_err(|e| anyhow::anyhow!("--node {s:?}: {e}"))?;
    Ok(Holder::node(id, et, name))
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ponte-certs-dev: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Init { out, coordinator, nodes, officers, researchers, days, force } => {
            if out.join("ca.pem").exists() && !force {
                bail!("{} already holds a CA; use `add-node` to issue more, or --force to start over", out.display());
            }
            let mut holders = vec![Holder::coordinator(&coordinator)];
            for n in &nodes {
                holders.push(parse_node(n)?);
            }
            holders.extend(officers.iter().map(|o| Holder::privacy_officer(o, o)));
            holders.extend(researchers.iter().map(|r| Holder::researcher(r, r)));
            generate_federation(&out, &holders, days)?;
            println!("wrote a development CA and {} certificates to {}", holders.len(), out.display());
        }
        Cmd::AddNode { out, node, days } => {
            let ca = DevCa::load(&out)?;
            let h = parse_node(&node)?;
            ca.issue(&h, days)?.write(&out, &h.id).context("writing the certificate")?;
            println!("wrote {}/{}.pem and .key", out.display(), h.id);
        }
    }
    Ok(())
}
