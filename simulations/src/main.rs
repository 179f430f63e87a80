//! `ponte-sim`: synthetic populations, linkage and attack evaluation with reports, and the demo
//! federation.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ponte_sim::{attack, bench, demo, report, run as research, synth};

/// Ponte's simulator: realistic synthetic Italian populations spread over entities, and the
/// demo federation that runs a coordinator and four nodes over mutual TLS.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the demo federation end to end: development certificates, synthetic exports, a
    /// coordinator and four nodes as separate processes over mTLS, who-else questions, and a
    /// comparison with the synthetic truth.
    Demo {
        /// Keep all state (certificates, exports, node and coordinator data, logs) here;
        /// default: a fresh temporary directory, removed at the end.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Persons in the synthetic population.
        #[arg(long, default_value_t = 400)]
        persons: usize,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Folder with ponte-node and ponte-coordinator (default: next to this program).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Writes a synthetic population's per-entity exports, import mappings and truth. The same
    /// scenario and seed give byte-identical files.
    Generate {
        /// Scenario: `lecce` (the research default: ASL, three Comuni, an ATS, an RSA provider),
        /// `demo` (the demo's four entities), or a scenario file (TOML; `ponte-sim scenario lecce`
        /// prints one to start from).
        #[arg(default_value = "lecce")]
        scenario: String,
        /// Persons in the population (default: 20000 for lecce, 400 for demo, the file's own).
        #[arg(long)]
        persons: Option<usize>,
        /// Seed of every random choice (default: 2026, or a scenario file's own `seed`).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints a built-in scenario as TOML (population shape, entities, export formats, error
    /// rates per entity), to edit and pass to `generate`, `run` or `attack` as a file.
    Scenario {
        /// `lecce` or `demo`.
        #[arg(default_value = "lecce")]
        name: String,
        #[arg(long)]
        persons: Option<usize>,
    },
    /// Links a scenario's population with the real normaliser, encoder and linker for one or
    /// more encoding profiles and reports precision, recall and F1 (cross-entity pairs and
    /// within-entity duplicates apart), pair completeness, reduction ratio, timings and memory;
    /// with --attacks also what the re-identification attacks find per profile; with --report
    /// DIR a Markdown and HTML report with plots.
    Run {
        #[command(flatten)]
        args: research::RunArgs,
        /// Also run the attacks (frequency, pattern mining) on every profile.
        #[arg(long)]
        attacks: bool,
        /// Attacks: share of the encoded persons in the attacker's plaintext reference (0–1).
        #[arg(long, default_value_t = 0.8)]
        overlap: f64,
        /// Write the report (report.md, report.html, plots as SVG) to this folder.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// Runs the re-identification attacks a curious coordinator could try (frequency alignment
    /// and frequent bit-pattern mining, Christen et al. 2017, 2018) against record-level and
    /// field-level encodings of a synthetic population, with a plaintext reference population of
    /// the given overlap, and reports the share of values and records re-identified per profile.
    Attack(attack::AttackArgs),
    /// Links your own entity exports in process (each with its column mapping) and writes the
    /// cluster of every record as CSV (`entity,record_id,cluster_id`); with --truth, also
    /// precision, recall and F1 against your truth.
    Link(research::LinkArgs),
    /// Measures throughput on synthetic data (median of several timed repeats).
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Encodes synthetic identities (the demo population through the node's importer) on one
    /// core and on all cores.
    Encode {
        /// Records encoded per repeat.
        #[arg(long, default_value_t = 50_000)]
        records: usize,
        /// Timed repeats per measurement (at least 5); the median is reported.
        #[arg(long, default_value_t = 7)]
        repeats: usize,
        /// Linkage schema: `default`, `hardened` (the example profile) or a schema file.
        #[arg(long, default_value = "default")]
        schema: String,
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Dice kernel throughput per variant (one query vs many, tiled all-pairs), one core and all
    /// cores.
    Kernel(ponte_sim::bench_kernel::KernelBenchArgs),
    /// An entity's initial load linked in bulk: side A (the ASL) against side B (the others).
    Bulk(ponte_sim::bench_scale::BulkBenchArgs),
    /// One record at a time linked against millions indexed: latency and memory.
    Online(ponte_sim::bench_scale::OnlineBenchArgs),
    /// Linkage quality (LSH blocking + Fellegi–Sunter) against the synthetic truth.
    Quality(ponte_sim::bench_quality::QualityBenchArgs),
    /// Who-else questions from many concurrent mTLS clients against a live coordinator process
    /// holding ≥ 1 M items while another node publishes: questions/s, latency percentiles,
    /// errors, coordinator memory, per CPU setting (--cores 1,2). The 1 M-item load is done
    /// once per --dir and reused.
    Load(ponte_sim::bench_load::LoadBenchArgs),
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Demo { dir, persons, seed, bin_dir, json } => {
            anyhow::ensure!((10..=100_000).contains(&persons), "--persons must be between 10 and 100000");
            let bin_dir = match bin_dir {
                Some(b) => b,
                None => ponte_sim::locate_binaries(true)?,
            };
            let (dir, temp) = match dir {
                Some(d) => (d, None),
                None => {
                    let t = std::env::temp_dir().join(format!("ponte-demo-{}", std::process::id()));
                    (t.clone(), Some(t))
                }
            };
            if dir.join("coordinator").exists() {
                anyhow::bail!("{} already holds a demo; choose an empty --dir", dir.display());
            }
            let opts = demo::DemoOptions { dir: dir.clone(), bin_dir, persons, seed, verbose: !json };
            let summary = demo::run(&opts);
            let result = summary.and_then(|s| {
                if json {
                    println!("{}", serde_json::to_string(&s).unwrap_or_default());
                } else {
                    demo::print_summary(&s, &dir);
                }
                anyhow::ensure!(s.audit_intact, "the coordinator's audit chain did not verify");
                anyhow::ensure!(s.t3_shown == 0, "a protected relationship was shown without consent");
                anyhow::ensure!(s.consent_walkthrough != Some(false), "the consent walk-through did not behave as the policy says");
                anyhow::ensure!(s.api_consistent != Some(false), "the node's HTTPS API answered differently from the CLI");
                Ok(())
            });
            if let Some(t) = temp {
                let _ = std::fs::remove_dir_all(t);
            }
            result?;
        }
        Cmd::Generate { scenario, persons, seed, out } => {
            let builtin = synth::scenario::SCENARIOS.iter().any(|(n, _)| *n == scenario);
            let mut sc = synth::scenario::load_scenario(&scenario, persons).map_err(|e| anyhow::anyhow!(e.0))?;
            if let Some(seed) = seed {
                sc.seed = seed;
            } else if builtin {
                sc.seed = 2026;
            }
            let seed = sc.seed;
            let g = synth::try_generate(&sc).map_err(|e| anyhow::anyhow!(e.0))?;
            g.write_to(&out)?;
            println!(
                "wrote {} exports and truth.csv for {} persons (scenario {}, seed {seed}) to {}",
                g.exports.len(),
                sc.persons,
                sc.name,
                out.display()
            );
        }
        Cmd::Scenario { name, persons } => {
            anyhow::ensure!(
                synth::scenario::SCENARIOS.iter().any(|(n, _)| *n == name),
                "unknown scenario {name:?}; built in: {}",
                synth::scenario::SCENARIOS.iter().map(|(n, d)| format!("{n} ({d})")).collect::<Vec<_>>().join("; ")
            );
            let sc = synth::scenario::load_scenario(&name, persons).map_err(|e| anyhow::anyhow!(e.0))?;
            print!("{}", toml::to_string(&sc)?);
        }
        Cmd::Run { args, attacks, overlap, report: report_dir } => {
            let mut ev = research::run(&args, !args.json)?;
            if attacks {
                let a = attack::AttackArgs {
                    scenario: args.scenario.clone(),
                    persons: args.persons.clamp(attack::MIN_PERSONS, attack::MAX_PERSONS),
                    seed: args.seed,
                    overlap,
                    profiles: args.schemas.clone(),
                    ..Default::default()
                };
                ev.attacks = attack::run(&a, !args.json)?;
                ev.command.push_str(&format!(" --attacks --overlap {overlap}"));
            }
            research::print(&ev, args.json);
            if attacks && !args.json {
                attack::print(&ev.attacks, false);
            }
            if let Some(dir) = report_dir {
                let w = report::write(&ev, &dir)?;
                eprintln!("report written: {} and {} ({} plots)", w.markdown.display(), w.html.display(), w.plots.len());
            }
        }
        Cmd::Attack(args) => {
            let outcomes = attack::run(&args, !args.json)?;
            attack::print(&outcomes, args.json);
        }
        Cmd::Link(args) => {
            let summary = research::link(&args, !args.json)?;
            research::print_link(&summary, args.json);
        }
        Cmd::Bench { what: BenchCmd::Kernel(args) } => ponte_sim::bench_kernel::run_and_print(args)?,
        Cmd::Bench { what: BenchCmd::Bulk(args) } => ponte_sim::bench_scale::print(&ponte_sim::bench_scale::bulk(&args)?, args.common.json)?,
        Cmd::Bench { what: BenchCmd::Online(args) } => {
            ponte_sim::bench_scale::print(&ponte_sim::bench_scale::online(&args)?, args.common.json)?
        }
        Cmd::Bench { what: BenchCmd::Load(args) } => {
            let reports = ponte_sim::bench_load::run(&args)?;
            ponte_sim::bench_load::print(&reports, args.json);
        }
        Cmd::Bench { what: BenchCmd::Quality(args) } => {
            let json = args.json;
            let report = ponte_sim::bench_quality::run(args)?;
            ponte_sim::bench_quality::print(&report, json)?;
        }
        Cmd::Bench { what: BenchCmd::Encode { records, repeats, schema, seed, json } } => {
            let report = bench::encode(&bench::EncodeBenchOptions { records, repeats, schema, seed })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench::print_encode(&report);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ponte-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
