//! `ponte-node`: an entity's node.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ponte_node::client;
use ponte_node::config::NodeConfig;
use ponte_node::node::Node;
use ponte_node::secret::LinkageSecret;
use ponte_proto::schema::LinkageSchema;
use ponte_proto::vocab;

/// A Ponte node: imports the entity's CSV export, encodes identities with the federation's
/// linkage secret, and publishes only encodings and closed-vocabulary relationship metadata to
/// the coordinator over mutual TLS. Clear personal data never leaves the node.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Node configuration (TOML; see README "Node configuration").
    #[arg(long, short, global = true, default_value = "node.toml")]
    config: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Imports a CSV export through the configured column mapping; new and changed rows are
    /// queued for publishing. Works with the coordinator down.
    Import {
        /// The export file.
        file: PathBuf,
    },
    /// Lists or shows local records (clear data: this terminal only).
    Records {
        #[command(subcommand)]
        cmd: RecordsCmd,
    },
    /// Sends queued changes to the coordinator once, then exits.
    Publish,
    /// Queues every relationship for publishing again (after a key epoch is added).
    Republish,
    /// Erases a record: removes it here and its encodings and relationships at the coordinator.
    Withdraw { record_id: String },
    /// Asks the coordinator who else takes care of the person of a local record.
    WhoElse {
        /// The local record id (omit with --all).
        record_id: Option<String>,
        /// Anchor on this relationship id (default: the record's first active or pending one).
        #[arg(long)]
        relationship: Option<String>,
        /// Purpose: continuita_assistenziale, convocazione_uvm, dimissione_protetta,
        /// richiesta_interessato, emergenza.
        #[arg(long, default_value = "continuita_assistenziale")]
        purpose: String,
        /// Operator role: assistente_sociale, operatore_pua, membro_uvm, operatore_cot, mmg,
        /// referente_privacy.
        #[arg(long, default_value = "operatore_pua")]
        role: String,
        /// Pseudonymous operator id (reaches the audit log).
        #[arg(long, default_value = "operatore-cli")]
        operator: String,
        /// Ask for every local record with an active or pending relationship (acceptance tests
        /// on synthetic data; every question is audited).
        #[arg(long)]
        all: bool,
    },
    /// Keeps publishing queued changes every sync.interval_secs until stopped.
    Serve,
    /// Shows the last import report.
    Report,
    /// Counts records, relationships and changes still queued for the coordinator.
    Status,
    /// Linkage-secret commands.
    Secret {
        #[command(subcommand)]
        cmd: SecretCmd,
    },
    /// Linkage-schema commands.
    Schema {
        #[command(subcommand)]
        cmd: SchemaCmd,
    },
}

#[derive(Subcommand)]
enum RecordsCmd {
    List,
    Show { record_id: String },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Generates the next epoch's secret from the current secret file's epoch (key rotation).
    /// Rotation: the coordinator accepts both epochs; each node lists the new secret as
    /// `secret_file` and the old one in `extra_secret_files`, runs `republish` and `publish`;
    /// once every node has moved, the coordinator drops the old epoch and the nodes remove it.
    Rotate {
        /// The current secret file.
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Generates a new linkage secret file (the federation's key custodian does this once per
    /// epoch and distributes it to the nodes out of band; never to the coordinator).
    Generate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        epoch: u32,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum SchemaCmd {
    /// Checks a linkage schema file and prints its fingerprint (the default schema without FILE).
    Check { file: Option<PathBuf> },
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn load(cli: &Cli) -> Result<Node> {
    let cfg = NodeConfig::load(&cli.config)?;
    Node::open(cfg)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.cmd {
        Cmd::Secret { cmd: SecretCmd::Generate { out, epoch, force } } => {
            if out.exists() && !force {
                anyhow::bail!("{} exists; use --force to replace it (nodes must then all receive the new secret)", out.display());
            }
            LinkageSecret::generate(*epoch).save(out).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote a new linkage secret for epoch {epoch} to {} (mode 600)", out.display());
        }
        Cmd::Secret { cmd: SecretCmd::Rotate { from, out } } => {
            let current = LinkageSecret::load(from).map_err(anyhow::Error::msg)?;
            if out.exists() {
                anyhow::bail!("{} exists; choose another file for the new epoch's secret", out.display());
            }
            let next = current.epoch.checked_add(1).context("the epoch counter is exhausted")?;
            LinkageSecret::generate(next).save(out).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote the secret of key epoch {next} to {} (epoch {} stays valid until every node has moved)", out.display(), current.epoch);
        }
        Cmd::Republish => {
            let node = load(&cli)?;
            let n = node.republish_all()?;
            println!("{n} relationship(s) queued for publishing (run `ponte-node publish`)");
        }
        Cmd::Schema { cmd: SchemaCmd::Check { file } } => {
            let schema = match file {
                Some(f) => LinkageSchema::load(f).map_err(anyhow::Error::msg)?,
                None => LinkageSchema::default_schema(),
            };
            println!("schema {:?} is valid; fingerprint {}", schema.name, schema.fingerprint());
            println!(
                "record-level filter: {} bits on the wire; field-level filters: {}",
                schema.published_clk_bits(),
                match schema.field_filter_bytes() {
                    v if v.is_empty() => "none".to_string(),
                    v => v.iter().map(|(f, b)| format!("{f} ({} bits)", b * 8)).collect::<Vec<_>>().join(", "),
                }
            );
            for w in schema.warnings() {
                println!("warning: {w}");
            }
        }
        Cmd::Import { file } => {
            let node = load(&cli)?;
            let pb = bar(0, "importing");
            pb.set_length(count_lines(file).saturating_sub(1));
            let report = node.import_file(file, |n| pb.set_position(n))?;
            pb.finish_and_clear();
            if cli.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: {} rows read, {} imported ({} with doubts), {} rejected; {} changes queued",
                    report.file,
                    report.rows_read,
                    report.rows_imported,
                    report.rows_doubtful,
                    report.rows_rejected,
                    node.store.outbox_len()
                );
                for p in report.problems.iter().filter(|p| p.severity == "rejected").take(50) {
                    println!("  line {}: {} — {} (row rejected)", p.line, p.field, p.reason);
                }
                for (kind, n) in &report.counts {
                    println!("  {n:>6}  {kind}");
                }
                println!("  full report: ponte-node report");
            }
        }
        Cmd::Status => {
            let node = load(&cli)?;
            let rels = node.store.relationships().count();
            let s = serde_json::json!({"node_id": node.config.node_id, "records": node.store.record_count(), "relationships": rels, "queued": node.store.outbox_len()});
            if cli.json {
                println!("{s}");
            } else {
                println!("{} records, {} relationships, {} change(s) queued for the coordinator", s["records"], s["relationships"], s["queued"]);
            }
        }
        Cmd::Report => {
            let node = load(&cli)?;
            match node.store.last_report()? {
                Some(r) if cli.json => println!("{}", String::from_utf8_lossy(&r)),
                Some(r) => {
                    let v: serde_json::Value = serde_json::from_slice(&r)?;
                    println!(
                        "{}: {} rows read, {} imported ({} with doubts), {} rejected",
                        v["file"].as_str().unwrap_or("?"),
                        v["rows_read"],
                        v["rows_imported"],
                        v["rows_doubtful"],
                        v["rows_rejected"]
                    );
                    for p in v["problems"].as_array().into_iter().flatten() {
                        println!(
                            "  line {:>6}  {:<9} {:<15} {}",
                            p["line"],
                            p["severity"].as_str().unwrap_or(""),
                            p["field"].as_str().unwrap_or(""),
                            p["reason"].as_str().unwrap_or("")
                        );
                    }
                    println!("  by kind:");
                    for (kind, n) in v["counts"].as_object().into_iter().flatten() {
                        println!("  {n:>6}  {kind}");
                    }
                }
                None => println!("no import yet"),
            }
        }
        Cmd::Records { cmd: RecordsCmd::List } => {
            let node = load(&cli)?;
            for r in node.store.records() {
                let r = r?;
                let rels = node.store.relationships_of(&r.record_id)?;
                if cli.json {
                    println!("{}", serde_json::json!({"record_id": r.record_id, "relationships": rels.len(), "quality_flags": r.identity.flags.0}));
                } else {
                    println!("{}\t{} relationship(s)\tflags {:#x}", r.record_id, rels.len(), r.identity.flags.0);
                }
            }
        }
        Cmd::Records { cmd: RecordsCmd::Show { record_id } } => {
            let node = load(&cli)?;
            let r = node.store.get_record(record_id)?.with_context(|| format!("no record {record_id:?}"))?;
            let rels = node.store.relationships_of(record_id)?;
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"record": r.identity, "record_id": r.record_id, "relationships": rels}))?);
        }
        Cmd::Withdraw { record_id } => {
            let node = load(&cli)?;
            let n = node.withdraw_record(record_id)?;
            println!("record {record_id} erased here; {n} withdrawal(s) queued for the coordinator (run `ponte-node publish`)");
        }
        Cmd::Publish => {
            let node = load(&cli)?;
            let queued = node.store.outbox_len();
            if queued == 0 {
                println!("nothing to publish");
                return Ok(ExitCode::SUCCESS);
            }
            let mut c = match client::connect(&node).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ponte-node: {e:#}\n{queued} change(s) stay queued; run `ponte-node publish` again later");
                    return Ok(ExitCode::from(3));
                }
            };
            let pb = bar(queued as u64, "publishing");
            let result = client::publish_outbox(&node, &mut c, |o| pb.set_position(o.items_sent + o.withdrawals_sent)).await;
            pb.finish_and_clear();
            match result {
                Ok(o) => println!(
                    "published {} item(s) in {} batch(es), {} withdrawal(s); {} link(s) found by the coordinator",
                    o.items_sent, o.batches, o.withdrawals_sent, o.links_found
                ),
                Err(e) => {
                    eprintln!("ponte-node: {e:#}\n{} change(s) stay queued", node.store.outbox_len());
                    return Ok(ExitCode::from(3));
                }
            }
        }
        Cmd::Serve => {
            let node = load(&cli)?;
            serve(&node).await?;
        }
        Cmd::WhoElse { record_id, relationship, purpose, role, operator, all } => {
            let node = load(&cli)?;
            let purpose = vocab::PurposeName::parse(purpose).map_err(anyhow::Error::msg)?;
            let role = vocab::OperatorRoleName::parse(role).map_err(anyhow::Error::msg)?;
            vocab::check_operator_id(operator).map_err(|e| anyhow::anyhow!("--operator: {e}"))?;
            let anchors = if *all {
                let mut v = Vec::new();
                for r in node.store.relationships() {
                    let r = r?;
                    if vocab::StatusName::from_wire(r.status).map(vocab::status_allows_anchor).unwrap_or(false) {
                        v.push(r);
                    }
                }
                v
            } else {
                let id = record_id.as_deref().context("name a record id, or use --all")?;
                vec![node.anchor_for(id, relationship.as_deref())?]
            };
            let mut c = client::connect(&node).await?;
            let mut refused = 0;
            for anchor in &anchors {
                match client::who_else(&node, &mut c, anchor, purpose, role, operator).await {
                    Ok(answer) => print_answer(&cli, anchor, &answer)?,
                    Err(s) => {
                        refused += 1;
                        if cli.json {
                            println!("{}", serde_json::json!({"record_id": anchor.record_id, "relationship_id": anchor.relationship_id, "refused": client::status_text(&s)}));
                        } else {
                            eprintln!("question about {} refused: {}", anchor.record_id, client::status_text(&s));
                        }
                    }
                }
            }
            if refused > 0 && !*all {
                return Ok(ExitCode::from(4));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn month(m: u32) -> String {
    format!("{:02}/{}", m % 100, m / 100)
}

fn print_answer(cli: &Cli, anchor: &ponte_node::store::LocalRelationship, a: &ponte_proto::v1::WhoElseAnswer) -> Result<()> {
    let rows: Vec<serde_json::Value> = a
        .relationships
        .iter()
        .map(|r| {
            serde_json::json!({
                "band": vocab::MatchBandName::from_wire(r.band).map(vocab::MatchBandName::name).unwrap_or_default(),
                "entity_id": r.entity_id,
                "entity_name": r.entity_name,
                "entity_type": vocab::EntityType::from_wire(r.entity_type).map(vocab::EntityType::name).unwrap_or_default(),
                "unit": r.unit,
                "service": vocab::ServiceCategoryName::from_wire(r.category).map(vocab::ServiceCategoryName::name).unwrap_or_default(),
                "status": vocab::StatusName::from_wire(r.status).map(vocab::StatusName::name).unwrap_or_default(),
                "since": format!("{}-{:02}", r.since_month / 100, r.since_month % 100),
                "case_manager": r.case_manager,
            })
        })
        .collect();
    let receipt = a.receipt.as_ref().map(|r| r.sequence).unwrap_or_default();
    if cli.json {
        println!("{}", serde_json::json!({"record_id": anchor.record_id, "relationship_id": anchor.relationship_id, "answer": rows, "receipt": receipt}));
        return Ok(());
    }
    println!("Chi altro segue la persona del record {} (audit n. {receipt}):", anchor.record_id);
    if a.relationships.is_empty() {
        println!("  nessun'altra presa in carico visibile");
    }
    for r in &a.relationships {
        let band = match vocab::MatchBandName::from_wire(r.band).map(vocab::MatchBandName::name).as_deref() {
            Ok("certain") => "certa",
            Ok("probable") => "probabile",
            _ => "possibile corrispondenza — da verificare",
        };
        println!(
            "  - {} ({}), unità {}: {} — {} dal {}{} [{band}]",
            r.entity_name,
            r.entity_id,
            r.unit,
            vocab::ServiceCategoryName::from_wire(r.category).map(vocab::ServiceCategoryName::name).unwrap_or_default(),
            vocab::StatusName::from_wire(r.status).map(vocab::StatusName::name).unwrap_or_default(),
            month(r.since_month),
            if r.case_manager { ", case manager" } else { "" },
        );
    }
    println!("  {}", a.notice);
    Ok(())
}

async fn serve(node: &Node) -> Result<()> {
    let interval = std::time::Duration::from_secs(node.config.sync.interval_secs.max(1));
    tracing::info!(node = %node.config.node_id, "sync loop started");
    let mut backoff = interval;
    loop {
        if node.store.outbox_len() > 0 {
            match client::connect(node).await {
                Ok(mut c) => match client::publish_outbox(node, &mut c, |_| {}).await {
                    Ok(o) => {
                        tracing::info!(items = o.items_sent, withdrawals = o.withdrawals_sent, "published");
                        backoff = interval;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, queued = node.store.outbox_len(), "publish failed; will retry");
                        backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, queued = node.store.outbox_len(), "coordinator unreachable; will retry");
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {},
            _ = stop_signal() => { tracing::info!("stopping"); return Ok(()); }
        }
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn count_lines(path: &std::path::Path) -> u64 {
    use std::io::BufRead;
    std::fs::File::open(path).map(|f| std::io::BufReader::new(f).lines().count() as u64).unwrap_or(0)
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ponte-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ponte-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}
