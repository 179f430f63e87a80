//! `ponte-node`: an entity's node.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ponte_node::client::{self, ClientError};
use ponte_node::config::NodeConfig;
use ponte_node::consent::{self, ConsentScope, iso_day};
use ponte_node::node::Node;
use ponte_node::secret::LinkageSecret;
use ponte_node::store::LocalConsent;
use ponte_node::view::{self, ConsentView, RelationshipView, SubjectReportView};
use ponte_proto::schema::LinkageSchema;
use ponte_proto::{v1, vocab};

// Output. Everything this binary prints on stdout goes through `outln!`/`out!`, which return an
// error instead of panicking (as `println!` does) when stdout cannot be written. A reader that
// went away (`ponte-node records list | head`) closes the pipe: the write fails with
// `BrokenPipe`, the error [`StdoutClosed`] ends the command at that point, and `main` exits
// quietly (see `Cmd::output_lost`).
macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// Stdout was closed by its reader.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

fn write_stdout(args: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::anyhow!("writing to stdout failed: {e}")),
    }
}

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
    /// Queues every relationship for publishing again (after a key epoch is added); never-encode
    /// relationships are skipped.
    Republish,
    /// Erases a record: removes it here and its encodings and relationships at the coordinator
    /// (its consents are revoked there and removed here).
    Withdraw { record_id: String },
    /// Records, revokes and lists the consents people give at this entity.
    ///
    /// Protected services (T3: SerD, salute mentale, consultorio, …) are shown to nobody without
    /// the person's consent naming them, the recipients and the purpose. Consents are local data
    /// of this entity; the coordinator receives them keyed by an opaque reference. Queued: works
    /// with the coordinator down.
    Consent {
        #[command(subcommand)]
        cmd: ConsentCmd,
    },
    /// Obscures a relationship at the person's request (oscuramento), or ends it with --undo.
    ///
    /// Once delivered, the coordinator shows the relationship to nobody, and no answer shows that
    /// something was hidden. Queued: works with the coordinator down; `publish` or `serve`
    /// delivers it.
    Obscure {
        /// The relationship id (see `ponte-node records show RECORD_ID`).
        relationship_id: String,
        /// End the obscuring instead.
        #[arg(long)]
        undo: bool,
    },
    /// Data-subject access report (GDPR art. 15) for the person of a local record.
    ///
    /// Lists the person's relationships as published in the federation and every question that
    /// touched them: when (UTC), which entity, for which purpose, which operator role and id, and
    /// whether it was refused or what it disclosed. The request itself is audited. Needs the
    /// coordinator.
    SubjectReport {
        /// The local record id.
        record_id: String,
        /// Pseudonymous id of the privacy contact handling the request (reaches the audit log).
        #[arg(long, default_value = "operatore-cli")]
        operator: String,
    },
    /// Asks the coordinator who else takes care of the person of a local record.
    WhoElse {
        /// The local record id (omit with --all).
        record_id: Option<String>,
        /// Anchor on this relationship id (default: the record's first active or pending one).
        /// Never-encode relationships are never anchors.
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
        /// Break-glass reason, required with --purpose emergenza and refused otherwise:
        /// pericolo_di_vita (immediate danger to life or safety) or incapacita_di_consentire (the
        /// person cannot consent and vital interest is at stake). Protected services stay hidden
        /// without consent; the privacy officer is notified.
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Keeps publishing queued changes every sync.interval_secs, and serves the case workers'
    /// HTTPS API, web page, metrics and gRPC health on api.listen, until stopped.
    ///
    /// The API (https://HOST:PORT/): GET / is the Italian web page, /openapi.json the API's
    /// document, /metrics Prometheus metrics, /healthz a liveness check; /api/v1/... needs a
    /// system credential from `ponte-node credentials add`.
    Serve,
    /// Registers, lists and removes the systems allowed to call the API (api.credentials_file).
    ///
    /// A system is a piece of software of this entity (cartella sociale, PUA or ADI software,
    /// the web page's users) limited to some operator roles. It proves who it is with a bearer
    /// credential (printed once; only its SHA-256 is stored) or a client certificate (only its
    /// fingerprint is stored). A running `serve` reads the file at start: restart it after a
    /// change.
    Credentials {
        #[command(subcommand)]
        cmd: CredentialsCmd,
    },
    /// Shows the last import report.
    Report,
    /// Counts records, relationships, consents and changes still queued for the coordinator.
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
enum ConsentCmd {
    /// Records a consent the person gives here; prints its id.
    ///
    /// The consent (given by the person, their legal representative, or a minor's parent) says
    /// which service categories may be disclosed, to which kinds of entity, for which purposes,
    /// between which days. It is queued for the coordinator, which applies it to the person
    /// wherever they are followed. Prints the consent id on stdout (details on stderr; --json
    /// prints the consent).
    ///
    /// Example: ponte-node consent give P1 --categories serd,salute_mentale --recipients asl,comune
    /// --purposes continuita_assistenziale,convocazione_uvm --until 2027-10-31 --given-by interessato
    Give {
        /// The local record id of the person.
        record_id: String,
        /// Service categories that may be disclosed, comma-separated (e.g. serd,salute_mentale).
        #[arg(long, value_delimiter = ',', required = true, value_name = "CATEGORY,...")]
        categories: Vec<String>,
        /// Kinds of entity that may receive them: asl, comune, ats, provider.
        #[arg(long, value_delimiter = ',', required = true, value_name = "ENTITY_TYPE,...")]
        recipients: Vec<String>,
        /// Purposes: continuita_assistenziale, convocazione_uvm, dimissione_protetta,
        /// richiesta_interessato, emergenza.
        #[arg(long, value_delimiter = ',', required = true, value_name = "PURPOSE,...")]
        purposes: Vec<String>,
        /// First valid day, YYYY-MM-DD (default: today, UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last valid day, YYYY-MM-DD, inclusive.
        #[arg(long, value_name = "YYYY-MM-DD")]
        until: String,
        /// Who gives it: interessato (the person), rappresentante_legale (tutore, amministratore
        /// di sostegno) or genitore (parent of a minor; cannot unlock what the policy excludes,
        /// e.g. consultorio).
        #[arg(long, value_name = "GIVER")]
        given_by: String,
    },
    /// Revokes a consent: effective on the coordinator's next answer once delivered (queued).
    Revoke {
        /// The consent id (see `ponte-node consent list`).
        consent_id: String,
    },
    /// Lists the consents recorded here (all, or one record's), with their scope and state.
    List {
        /// Only this record's consents.
        record_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum CredentialsCmd {
    /// Registers a system; prints its new bearer credential once (or registers --cert instead).
    ///
    /// Example: ponte-node credentials add cartella-sociale --roles assistente_sociale,operatore_pua
    Add {
        /// The system's id, `[a-z0-9-]` (e.g. cartella-sociale, pua-adi, pagina-web).
        system_id: String,
        /// Operator roles it may act for: assistente_sociale, operatore_pua, membro_uvm,
        /// operatore_cot, mmg, referente_privacy.
        #[arg(long, value_delimiter = ',', required = true, value_name = "ROLE,...")]
        roles: Vec<String>,
        /// Authenticate with this client certificate (PEM) instead of a bearer credential. It must
        /// chain to api.client_ca (default: tls.ca).
        #[arg(long, value_name = "FILE.pem")]
        cert: Option<PathBuf>,
        /// Replace an existing registration of the same id (its old credential stops working).
        #[arg(long)]
        replace: bool,
    },
    /// Lists the registered systems (never their credentials).
    List,
    /// Removes a system: its credential or certificate stops working at the next `serve` start.
    Remove { system_id: String },
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

impl Cmd {
    /// When stdout closes before the command's output is written: `None` for commands that only
    /// read (they stop quietly with exit code 0); otherwise what to say on stderr — the command's
    /// changes are made by the time it prints — and the exit code.
    fn output_lost(&self) -> Option<(&'static str, u8)> {
        const DONE: &str = "stdout was closed before the command's report was written; what it did is done and kept (see `ponte-node status`)";
        match self {
            Cmd::Records { .. } | Cmd::Report | Cmd::Status | Cmd::Schema { .. } | Cmd::WhoElse { .. } | Cmd::SubjectReport { .. } | Cmd::Serve => None,
            Cmd::Consent { cmd: ConsentCmd::List { .. } } | Cmd::Credentials { cmd: CredentialsCmd::List } => None,
            Cmd::Credentials { cmd: CredentialsCmd::Add { cert: None, .. } } => Some((
                "stdout was closed before the new credential was printed; the system is registered but its credential is shown only once: \
                 issue another with `ponte-node credentials add SYSTEM --roles … --replace`",
                1,
            )),
            _ => Some((DONE, 0)),
        }
    }
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
            outln!("wrote a new linkage secret for epoch {epoch} to {} (mode 600)", out.display())?;
        }
        Cmd::Secret { cmd: SecretCmd::Rotate { from, out } } => {
            let current = LinkageSecret::load(from).map_err(anyhow::Error::msg)?;
            if out.exists() {
                anyhow::bail!("{} exists; choose another file for the new epoch's secret", out.display());
            }
            let next = current.epoch.checked_add(1).context("the epoch counter is exhausted")?;
            LinkageSecret::generate(next).save(out).with_context(|| format!("writing {}", out.display()))?;
            outln!("wrote the secret of key epoch {next} to {} (epoch {} stays valid until every node has moved)", out.display(), current.epoch)?;
        }
        Cmd::Republish => {
            let node = load(&cli)?;
            let n = node.republish_all()?;
            outln!("{n} relationship(s) queued for publishing (run `ponte-node publish`)")?;
        }
        Cmd::Schema { cmd: SchemaCmd::Check { file } } => {
            let schema = match file {
                Some(f) => LinkageSchema::load(f).map_err(anyhow::Error::msg)?,
                None => LinkageSchema::default_schema(),
            };
            outln!("schema {:?} is valid; fingerprint {}", schema.name, schema.fingerprint())?;
            outln!(
                "record-level filter: {} bits on the wire; field-level filters: {}",
                schema.published_clk_bits(),
                match schema.field_filter_bytes() {
                    v if v.is_empty() => "none".to_string(),
                    v => v.iter().map(|(f, b)| format!("{f} ({} bits)", b * 8)).collect::<Vec<_>>().join(", "),
                }
            )?;
            for w in schema.warnings() {
                outln!("warning: {w}")?;
            }
        }
        Cmd::Import { file } => {
            // Before anything reads the path (the progress bar counts its lines first).
            ponte_node::node::check_export_file(file)?;
            let node = load(&cli)?;
            let pb = bar(0, "importing");
            pb.set_length(count_lines(file).saturating_sub(1));
            let report = node.import_file(file, |n| pb.set_position(n))?;
            pb.finish_and_clear();
            if cli.json {
                outln!("{}", serde_json::to_string(&report)?)?;
            } else {
                outln!(
                    "{}: {} rows read, {} imported ({} with doubts), {} rejected; {} changes queued",
                    report.file,
                    report.rows_read,
                    report.rows_imported,
                    report.rows_doubtful,
                    report.rows_rejected,
                    node.store.outbox_len()
                )?;
                if report.never_encoded > 0 {
                    outln!("  {} row(s) marked never_encode: kept on this node only, never published", report.never_encoded)?;
                }
                for p in report.problems.iter().filter(|p| p.severity == "rejected").take(50) {
                    outln!("  line {}: {} — {} (row rejected)", p.line, p.field, p.reason)?;
                }
                for (kind, n) in &report.counts {
                    outln!("  {n:>6}  {kind}")?;
                }
                outln!("  full report: ponte-node report")?;
            }
        }
        Cmd::Status => {
            let node = load(&cli)?;
            let rels = node.store.relationships().count();
            let s = serde_json::json!({"node_id": node.config.node_id, "records": node.store.record_count(), "relationships": rels, "consents": node.store.consent_count(), "queued": node.store.outbox_len()});
            if cli.json {
                outln!("{s}")?;
            } else {
                outln!(
                    "{} records, {} relationships, {} consent(s), {} change(s) queued for the coordinator",
                    s["records"], s["relationships"], s["consents"], s["queued"]
                )?;
            }
        }
        Cmd::Report => {
            let node = load(&cli)?;
            match node.store.last_report()? {
                Some(r) if cli.json => outln!("{}", String::from_utf8_lossy(&r))?,
                Some(r) => {
                    let v: serde_json::Value = serde_json::from_slice(&r)?;
                    outln!(
                        "{}: {} rows read, {} imported ({} with doubts), {} rejected",
                        v["file"].as_str().unwrap_or("?"),
                        v["rows_read"],
                        v["rows_imported"],
                        v["rows_doubtful"],
                        v["rows_rejected"]
                    )?;
                    if v["never_encoded"].as_u64().unwrap_or(0) > 0 {
                        outln!("  {} row(s) marked never_encode: kept on this node only, never published", v["never_encoded"])?;
                    }
                    for p in v["problems"].as_array().into_iter().flatten() {
                        outln!(
                            "  line {:>6}  {:<9} {:<15} {}",
                            p["line"],
                            p["severity"].as_str().unwrap_or(""),
                            p["field"].as_str().unwrap_or(""),
                            p["reason"].as_str().unwrap_or("")
                        )?;
                    }
                    outln!("  by kind:")?;
                    for (kind, n) in v["counts"].as_object().into_iter().flatten() {
                        outln!("  {n:>6}  {kind}")?;
                    }
                }
                None => outln!("no import yet")?,
            }
        }
        Cmd::Records { cmd: RecordsCmd::List } => {
            let node = load(&cli)?;
            for r in node.store.records() {
                let r = r?;
                let rels = node.store.relationships_of(&r.record_id)?;
                if cli.json {
                    outln!("{}", serde_json::json!({"record_id": r.record_id, "relationships": rels.len(), "quality_flags": r.identity.flags.0}))?;
                } else {
                    outln!("{}\t{} relationship(s)\tflags {:#x}", r.record_id, rels.len(), r.identity.flags.0)?;
                }
            }
        }
        Cmd::Records { cmd: RecordsCmd::Show { record_id } } => {
            let node = load(&cli)?;
            let r = node.store.get_record(record_id)?.with_context(|| format!("no record {record_id:?}"))?;
            let rels = node.store.relationships_of(record_id)?;
            let today = consent::today();
            let consents: Vec<serde_json::Value> = node.store.consents_of(record_id)?.iter().map(|c| serde_json::json!(ConsentView::new(c, today))).collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"record": r.identity, "record_id": r.record_id, "relationships": rels, "consents": consents}))?
            )?;
        }
        Cmd::Withdraw { record_id } => {
            let node = load(&cli)?;
            let n = node.withdraw_record(record_id)?;
            outln!("record {record_id} erased here; {n} withdrawal(s) queued for the coordinator (run `ponte-node publish`)")?;
        }
        Cmd::Consent { cmd: ConsentCmd::Give { record_id, categories, recipients, purposes, from, until, given_by } } => {
            let node = load(&cli)?;
            let scope = consent_scope(categories, recipients, purposes, from.as_deref(), until, given_by)?;
            let today = consent::today();
            if scope.valid_until < today {
                anyhow::bail!("--until {}: that day is past, so the consent would never apply; check the date", iso_day(scope.valid_until));
            }
            let c = node.give_consent(record_id, scope)?;
            if cli.json {
                outln!("{}", serde_json::json!(ConsentView::new(&c, today)))?;
            } else {
                outln!("{}", c.consent_id)?;
                eprintln!("consent recorded for record {record_id}: {}", consent_text(&c, today));
                eprintln!("{QUEUED}");
            }
        }
        Cmd::Consent { cmd: ConsentCmd::Revoke { consent_id } } => {
            let node = load(&cli)?;
            let before = node.store.get_consent(consent_id)?.and_then(|c| c.revoked_at);
            let c = node.revoke_consent(consent_id)?;
            if cli.json {
                outln!("{}", serde_json::json!(ConsentView::new(&c, consent::today())))?;
            } else if let Some(at) = before {
                outln!("consent {consent_id} was already revoked on {}; nothing queued", consent::utc_time(at))?;
            } else {
                outln!("consent {consent_id} revoked; {QUEUED}")?;
            }
        }
        Cmd::Consent { cmd: ConsentCmd::List { record_id } } => {
            let node = load(&cli)?;
            let consents: Vec<LocalConsent> = match record_id {
                Some(id) => {
                    if node.store.get_record(id)?.is_none() {
                        anyhow::bail!("no record {id:?} on this node (see `ponte-node records list`)");
                    }
                    node.store.consents_of(id)?
                }
                None => node.store.consents().collect::<Result<_>>()?,
            };
            let today = consent::today();
            for c in &consents {
                if cli.json {
                    outln!("{}", serde_json::json!(ConsentView::new(c, today)))?;
                } else {
                    outln!("{}\trecord {}\t{}", c.consent_id, c.record_id, consent_text(c, today))?;
                }
            }
            if consents.is_empty() && !cli.json {
                outln!("no consents recorded on this node{}", record_id.as_ref().map(|r| format!(" for record {r}")).unwrap_or_default())?;
            }
        }
        Cmd::Obscure { relationship_id, undo } => {
            let node = load(&cli)?;
            let queued = node.set_obscured(relationship_id, !undo)?;
            let what = if *undo { "no longer obscured" } else { "obscured" };
            if cli.json {
                outln!("{}", serde_json::json!({"relationship_id": relationship_id, "obscured": !undo, "queued": queued}))?;
            } else if queued {
                outln!("relationship {relationship_id} {what}; {QUEUED}")?;
            } else {
                outln!("relationship {relationship_id} {what} here; it is marked never_encode and never published, so nothing is queued")?;
            }
        }
        Cmd::SubjectReport { record_id, operator } => {
            let node = load(&cli)?;
            vocab::check_operator_id(operator).map_err(|e| anyhow::anyhow!("--operator: {e}"))?;
            // Check locally first, so that a wrong record id is explained without a connection.
            let anchor = node.require_published(record_id)?;
            let report = match client::connect(&node).await {
                Ok(mut c) => client::subject_report(&node, &mut c, &anchor, operator).await,
                Err(e) => Err(e),
            };
            let report = match report {
                Ok(r) => r,
                Err(ClientError::NotPublished { message }) => {
                    eprintln!("ponte-node: the coordinator does not know record {record_id:?}'s reference yet ({message}); run `ponte-node publish` first");
                    return Ok(ExitCode::from(EXIT_REFUSED));
                }
                Err(e) => {
                    eprintln!("ponte-node: data-subject report for record {record_id:?}: {e}");
                    return Ok(exit_code(&e));
                }
            };
            let view = SubjectReportView::new(record_id, &report);
            if cli.json {
                outln!("{}", serde_json::to_string(&view)?)?;
            } else {
                out!("{}", view.text())?;
            }
        }
        Cmd::Publish => {
            let node = load(&cli)?;
            let queued = node.store.outbox_len();
            if queued == 0 {
                outln!("nothing to publish")?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut c = match client::connect(&node).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ponte-node: {e}\n{queued} change(s) stay queued; run `ponte-node publish` again later");
                    return Ok(exit_code(&e));
                }
            };
            let pb = bar(queued as u64, "publishing");
            let result = client::publish_outbox(&node, &mut c, |o| pb.set_position(o.handled())).await;
            pb.finish_and_clear();
            match result {
                Ok(o) => {
                    // Said first, on stderr: it decides the exit code even if stdout is gone.
                    if let Some(wait) = o.retry_after {
                        eprintln!(
                            "ponte-node: the coordinator asked this node to wait ({}); {} change(s) stay queued: run `ponte-node publish` again in {} s (or keep `serve` running, which waits by itself)",
                            o.retry_reason.as_deref().unwrap_or("no reason given"),
                            node.store.outbox_len(),
                            wait.as_secs().max(1)
                        );
                    }
                    let code = if o.retry_after.is_some() { ExitCode::from(EXIT_TRY_LATER) } else { ExitCode::SUCCESS };
                    outln!(
                        "published {} item(s) in {} batch(es), {} withdrawal(s), {} consent(s), {} revocation(s), {} obscuring change(s)",
                        o.items_sent, o.batches, o.withdrawals_sent, o.consents_sent, o.revocations_sent, o.obscurings_sent
                    )?;
                    if o.dropped > 0 {
                        outln!("{} queued change(s) dropped: what they were about is gone here, or is never published", o.dropped)?;
                    }
                    if o.deferred > 0 {
                        outln!(
                            "{} consent(s) stay queued: the coordinator does not know the person's references yet; run `ponte-node publish` again later",
                            o.deferred
                        )?;
                    }
                    return Ok(code);
                }
                Err(e) => {
                    eprintln!("ponte-node: publishing: {e}\n{} change(s) stay queued", node.store.outbox_len());
                    return Ok(exit_code(&e));
                }
            }
        }
        Cmd::Serve => {
            let node = load(&cli)?;
            serve(node).await?;
        }
        Cmd::Credentials { cmd } => {
            let cfg = NodeConfig::load(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?;
            credentials_cmd(&cli, &cfg, cmd)?;
        }
        Cmd::WhoElse { record_id, relationship, purpose, role, operator, all, break_glass } => {
            let node = load(&cli)?;
            let purpose = vocab::PurposeName::parse(purpose).map_err(|e| anyhow::anyhow!("--purpose: {e}"))?;
            let role = vocab::OperatorRoleName::parse(role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            vocab::check_operator_id(operator).map_err(|e| anyhow::anyhow!("--operator: {e}"))?;
            let break_glass = match (purpose, break_glass) {
                (v1::Purpose::Emergenza, Some(r)) => Some(vocab::BreakGlassReasonName::parse(r).map_err(|e| anyhow::anyhow!("--break-glass: {e}"))?),
                (v1::Purpose::Emergenza, None) => anyhow::bail!(
                    "--purpose emergenza is break-glass: give the reason with --break-glass pericolo_di_vita or --break-glass incapacita_di_consentire"
                ),
                (_, Some(_)) => anyhow::bail!("--break-glass is only for --purpose emergenza; drop it, or ask with --purpose emergenza"),
                (_, None) => None,
            };
            let anchors = if *all {
                let mut v = Vec::new();
                for r in node.store.relationships() {
                    let r = r?;
                    if r.publishable() && vocab::StatusName::from_wire(r.status).map(vocab::status_allows_anchor).unwrap_or(false) {
                        v.push(r);
                    }
                }
                v
            } else {
                let id = record_id.as_deref().context("name a record id, or use --all")?;
                vec![node.anchor_for(id, relationship.as_deref())?]
            };
            let mut c = match client::connect(&node).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ponte-node: {e}");
                    return Ok(exit_code(&e));
                }
            };
            let mut refused = 0;
            for anchor in &anchors {
                match client::who_else(&node, &mut c, anchor, purpose, role, operator, break_glass).await {
                    Ok(answer) => print_answer(&cli, anchor, &answer)?,
                    // The coordinator could not be asked: no point asking about the others.
                    Err(e) if e.retry_later() => {
                        eprintln!("ponte-node: question about {} not asked: {e}", anchor.record_id);
                        return Ok(exit_code(&e));
                    }
                    Err(e) => {
                        refused += 1;
                        if cli.json {
                            outln!("{}", serde_json::json!({"record_id": anchor.record_id, "relationship_id": anchor.relationship_id, "refused": e.to_string()}))?;
                        } else {
                            eprintln!("question about {} refused: {e}", anchor.record_id);
                        }
                    }
                }
            }
            if refused > 0 && !*all {
                return Ok(ExitCode::from(EXIT_REFUSED));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code when the coordinator could not be reached or asked to wait: changes stay queued,
/// try again later.
const EXIT_TRY_LATER: u8 = 3;
/// Exit code when the coordinator refused the request.
const EXIT_REFUSED: u8 = 4;

/// The exit code for an error from the coordinator client: 3 try later (unreachable, busy,
/// unavailable), 4 refused (policy, certificate, settings that must match, unknown reference,
/// invalid request), 1 anything else (this node's configuration or store).
fn exit_code(e: &ClientError) -> ExitCode {
    match e {
        ClientError::Unreachable { .. } | ClientError::Unavailable { .. } | ClientError::RateLimited { .. } => ExitCode::from(EXIT_TRY_LATER),
        ClientError::Refused { .. } | ClientError::NotPublished { .. } | ClientError::Invalid { .. } => ExitCode::from(EXIT_REFUSED),
        ClientError::Config { .. } | ClientError::Local(_) => ExitCode::FAILURE,
    }
}

/// Printed after every change that waits in the outbox.
const QUEUED: &str = "queued; run `ponte-node publish` or keep `serve` running";

fn names<T: Copy>(values: &[String], parse: fn(&str) -> Result<T, String>, flag: &str) -> Result<Vec<T>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| parse(v).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
        .collect()
}

/// A consent scope from the command line; every error names the flag and the valid values.
fn consent_scope(
    categories: &[String],
    recipients: &[String],
    purposes: &[String],
    from: Option<&str>,
    until: &str,
    given_by: &str,
) -> Result<ConsentScope> {
    consent::scope_from_names(categories, recipients, purposes, from, until, given_by).map_err(|(field, e)| {
        let flag = match field {
            "valid_from" => "--from",
            "valid_until" => "--until",
            "given_by" => "--given-by",
            other => return anyhow::anyhow!("--{other}: {e}"),
        };
        anyhow::anyhow!("{flag}: {e}")
    })
}

fn consent_text(c: &LocalConsent, today: u32) -> String {
    let state = match c.revoked_at {
        Some(at) => format!("revoked {}", consent::utc_time(at)),
        None => ConsentView::state(c, today).replace('_', " "),
    };
    format!(
        "{} → {} for {}, {} to {}, given by {} [{state}]",
        view::wire_names(&c.categories, vocab::ServiceCategoryName::from_wire, vocab::ServiceCategoryName::name).join(","),
        view::wire_names(&c.recipients, vocab::EntityType::from_wire, vocab::EntityType::name).join(","),
        view::wire_names(&c.purposes, vocab::PurposeName::from_wire, vocab::PurposeName::name).join(","),
        iso_day(c.valid_from),
        iso_day(c.valid_until),
        vocab::ConsentGiverName::from_wire(c.given_by).map(vocab::ConsentGiverName::name).unwrap_or_default(),
    )
}

fn print_answer(cli: &Cli, anchor: &ponte_node::store::LocalRelationship, a: &v1::WhoElseAnswer) -> Result<()> {
    let rows: Vec<RelationshipView> = a.relationships.iter().map(RelationshipView::from).collect();
    let receipt = a.receipt.as_ref().map(|r| r.sequence).unwrap_or_default();
    // SEQUENCE:HASH, as `ponte-coordinator audit verify --receipt` takes it.
    let full_receipt = a.receipt.as_ref().map(|r| format!("{}:{}", r.sequence, r.entry_hash)).unwrap_or_default();
    if cli.json {
        outln!(
            "{}",
            serde_json::json!({"record_id": anchor.record_id, "relationship_id": anchor.relationship_id, "answer": rows, "receipt": receipt, "receipt_full": full_receipt})
        )?;
        return Ok(());
    }
    outln!("Chi altro segue la persona del record {} (ricevuta di audit {full_receipt}):", anchor.record_id)?;
    if rows.is_empty() {
        outln!("  nessun'altra presa in carico visibile")?;
    }
    for r in &rows {
        outln!("  - {}", r.text())?;
    }
    outln!("  {}", a.notice)?;
    Ok(())
}

fn credentials_cmd(cli: &Cli, cfg: &NodeConfig, cmd: &CredentialsCmd) -> Result<()> {
    use ponte_node::credentials::{Credentials, System, new_token, sha256_hex};
    let path = &cfg.api.credentials_file;
    let mut creds = Credentials::load(path).map_err(anyhow::Error::msg)?;
    match cmd {
        CredentialsCmd::Add { system_id, roles, cert, replace } => {
            let roles: Vec<String> = names(roles, vocab::OperatorRoleName::parse, "--roles")?.into_iter().map(vocab::OperatorRoleName::name).collect();
            if creds.systems.iter().any(|s| &s.id == system_id) {
                if !replace {
                    anyhow::bail!("system {system_id:?} is already registered in {}; add --replace to issue a new credential (the old one stops working)", path.display());
                }
                creds.systems.retain(|s| &s.id != system_id);
            }
            let (token, token_sha256, cert_sha256) = match cert {
                Some(file) => {
                    let pem = ponte_proto::pki::load_cert_pem(file, "system client certificate (--cert)").map_err(anyhow::Error::msg)?;
                    use rustls::pki_types::pem::PemObject;
                    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
                        .map_err(|e| anyhow::anyhow!("--cert {}: not a PEM certificate: {e}", file.display()))?;
                    (None, None, Some(sha256_hex(&der)))
                }
                None => {
                    let t = new_token();
                    let h = sha256_hex(t.as_bytes());
                    (Some(t), Some(h), None)
                }
            };
            let system = System { id: system_id.clone(), roles, token_sha256, cert_sha256, created: consent::utc_time(consent::now_secs()) };
            system.check().map_err(anyhow::Error::msg)?;
            creds.systems.push(system);
            creds.save(path).map_err(anyhow::Error::msg)?;
            if cli.json {
                outln!("{}", serde_json::json!({"system_id": system_id, "credential": token, "file": path.display().to_string()}))?;
            } else if let Some(t) = token {
                outln!("{t}")?;
                eprintln!(
                    "system {system_id} registered in {}. The line above is its credential: give it to the system now, it is not shown again \
                     (send it as `Authorization: Bearer …`). Restart `serve` to use it.",
                    path.display()
                );
            } else {
                outln!("system {system_id} registered with its client certificate in {}; restart `serve` to use it", path.display())?;
            }
        }
        CredentialsCmd::List => {
            if cli.json {
                let v: Vec<serde_json::Value> = creds
                    .systems
                    .iter()
                    .map(|s| serde_json::json!({"system_id": s.id, "roles": s.roles, "auth": if s.cert_sha256.is_some() { "client_certificate" } else { "bearer" }, "created": s.created}))
                    .collect();
                outln!("{}", serde_json::Value::Array(v))?;
            } else if creds.systems.is_empty() {
                outln!("no system registered in {} (add one with `ponte-node credentials add SYSTEM --roles …`)", path.display())?;
            } else {
                for s in &creds.systems {
                    let auth = if s.cert_sha256.is_some() { "client certificate" } else { "bearer credential" };
                    outln!("{}\t{}\t{auth}\tregistered {}", s.id, s.roles.join(","), s.created)?;
                }
            }
        }
        CredentialsCmd::Remove { system_id } => {
            let before = creds.systems.len();
            creds.systems.retain(|s| &s.id != system_id);
            if creds.systems.len() == before {
                anyhow::bail!("no system {system_id:?} in {} (see `ponte-node credentials list`)", path.display());
            }
            creds.save(path).map_err(anyhow::Error::msg)?;
            outln!("system {system_id} removed; restart `serve` for it to take effect")?;
        }
    }
    Ok(())
}

/// The outbox drain, and the API when `api.listen` is set, until SIGINT/SIGTERM.
async fn serve(node: Node) -> Result<()> {
    use std::sync::Arc;
    let api_on = !node.config.api.listen.is_empty();
    let shared = Arc::new(ponte_node::api::Shared::new(node));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = if api_on {
        let shared = shared.clone();
        let mut rx = stop_rx.clone();
        Some(tokio::spawn(async move {
            ponte_node::api::serve(shared, async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        }))
    } else {
        None
    };
    let node = &shared.node;
    let interval = std::time::Duration::from_secs(node.config.sync.interval_secs.max(1));
    tracing::info!(node = %node.config.node_id, api = api_on, "sync loop started");
    let mut backoff = interval;
    loop {
        if let Some(a) = &api
            && a.is_finished()
        {
            break;
        }
        if node.store.outbox_len() > 0 {
            match shared.publish_now().await {
                Ok(o) => {
                    tracing::info!(
                        items = o.items_sent,
                        withdrawals = o.withdrawals_sent,
                        consents = o.consents_sent,
                        revocations = o.revocations_sent,
                        obscurings = o.obscurings_sent,
                        deferred = o.deferred,
                        "published"
                    );
                    backoff = if let Some(wait) = o.retry_after {
                        // The coordinator asked to slow down: wait as long as it says.
                        tracing::info!(retry_after_secs = wait.as_secs(), queued = node.store.outbox_len(), "the coordinator asked to slow down; the rest stays queued");
                        wait.max(interval)
                    } else if o.deferred > 0 && o.handled() == o.deferred {
                        // Only consents waiting for their references: no need to ask every tick.
                        (backoff * 2).min(std::time::Duration::from_secs(60))
                    } else {
                        interval
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind(), queued = node.store.outbox_len(), "publish failed; will retry");
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(60));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {},
            _ = shared.wake.notified() => {},
            _ = stop_signal() => { tracing::info!("stopping"); break; }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(a) = api {
        // A bind error or a bad TLS file ends the API at once: report it.
        match tokio::time::timeout(std::time::Duration::from_secs(5), a).await {
            Ok(Ok(Err(e))) => return Err(e.context("the API stopped")),
            Ok(Err(e)) => anyhow::bail!("the API task failed: {e}"),
            _ => {}
        }
    }
    Ok(())
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
    // A read error ends the count (a reader that yields the same error again would never end).
    std::fs::File::open(path).map(|f| std::io::BufReader::new(f).split(b'\n').map_while(Result::ok).count() as u64).unwrap_or(0)
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // PONTE_LOG sets the level (default warn); PONTE_LOG_FORMAT=json writes one JSON object per
    // line for log collectors. Logs carry no personal data: system ids, roles, purposes, counts.
    let filter = tracing_subscriber::EnvFilter::try_from_env("PONTE_LOG").unwrap_or_else(|_| "warn".into());
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("PONTE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        fmt.json().flatten_event(true).init();
    } else {
        fmt.init();
    }
    let cli = Cli::parse();
    let output_lost = cli.cmd.output_lost();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ponte-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if e.is::<StdoutClosed>() => match output_lost {
            None => ExitCode::SUCCESS,
            Some((what, code)) => {
                eprintln!("ponte-node: {what}");
                ExitCode::from(code)
            }
        },
        Err(e) => {
            eprintln!("ponte-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}
