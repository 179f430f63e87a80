//! `ponte-sim run --federation DIR`: the profiles measured on a live federation.
//!
//! For each profile, in `DIR/<profile>/`, a coordinator and one node per entity run as separate
//! processes over mutual TLS, exactly as the demo runs them ([`crate::demo`]), with the profile's
//! linkage schema; the certificates, the scenario's exports and the linkage secret (derived from
//! the seed) are shared in `DIR/certs`, `DIR/exports` and `DIR/secret`. Each node imports its
//! export and publishes it; then each node asks who-else for every open relationship it holds,
//! and the answers are compared with the truth as the default policy discloses it (protected
//! relationships hidden, closed ones past retention hidden, health categories generalised for
//! social requesters), like the demo does.
//!
//! What can be measured there, and how it fills [`ProfileQuality`]:
//! - `cross`: **relationship-level** answers about other entities. `true_pairs`: relationships
//!   the truth holds for the anchor's person at other entities and the policy lets the asker
//!   see, summed over the questions; `linked_pairs`: relationships shown at other entities with
//!   a certain or probable band (possible ones are to be verified and are not counted);
//!   `correct_pairs`: those shown that the truth expects (matched on entity, service as shown,
//!   status and month).
//! - `records`: the distinct `(entity, record_id)` the importer accepts;
//! - `link_secs`: wall time of every node's `publish` (encoding, mTLS transfer, linking at the
//!   coordinator), summed;
//! - `rss_bytes`: the coordinator process's resident memory after the questions.
//!
//! Not measurable from the answers, left 0 (or empty): `within` and `all` (a same-entity answer
//! mixes the record's own other relationships with duplicates), `pair_completeness`,
//! `reduction_ratio`, `encode_secs` (the node encodes while it publishes) and `curve` (nodes
//! see bands, never probabilities).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use ponte_certs_dev::Holder;
use ponte_coordinator::policy::Policy;
use ponte_node::secret::LinkageSecret;
use ponte_proto::{v1, vocab};

use super::{Profile, import_records, spinner};
use crate::demo::{self, AnswerLine, AnswerRow};
use crate::evaluation::{ProfileQuality, Scores};
use crate::synth::{self, TruthRow};

/// (entity, service as shown, status, month): how an answer row is matched with the truth.
type RelKey = (String, String, String, String);

fn key(r: &AnswerRow) -> RelKey {
    (r.entity_id.clone(), r.service_key(), r.status.clone(), r.since.clone())
}

/// What the default policy lets a requester of type `asker` see of a truth relationship (the
/// demo's rule).
fn expected_service(policy: &Policy, today: u32, asker: v1::EntityType, t: &TruthRow) -> Option<String> {
    demo::expected_service(policy, today, asker, &t.service, &t.status, &t.since_month)
}

/// Resident memory of a process (Linux; 0 elsewhere).
fn process_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// Rewrites a TOML configuration file through its type, setting its schema file.
fn set_schema_file<T>(config: &Path, schema: &Path, set: impl FnOnce(&mut T, PathBuf)) -> anyhow::Result<()>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let text = std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut value: T = toml::from_str(&text).with_context(|| format!("reading {}", config.display()))?;
    set(&mut value, schema.to_path_buf());
    std::fs::write(config, toml::to_string_pretty(&value)?).with_context(|| format!("writing {}", config.display()))
}

/// Measures every profile on its own live federation under `dir`.
pub(super) fn measure(
    dir: &Path,
    generated: &synth::Generated,
    profiles: &[Profile],
    secret: &LinkageSecret,
    progress: bool,
) -> anyhow::Result<Vec<ProfileQuality>> {
    for p in profiles {
        let coordinator = dir.join(&p.name).join("coordinator");
        ensure!(!coordinator.exists(), "{} already holds a federation; choose an empty --federation DIR", dir.join(&p.name).display());
    }
    let bin_dir = crate::locate_binaries(true)?;
    for bin in ["ponte-node", "ponte-coordinator"] {
        ensure!(bin_dir.join(bin).exists(), "{bin} not found in {}: build the workspace first (cargo build --release)", bin_dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;

    let pb = spinner(progress, "federation: certificates, exports, secret");
    let certs = dir.join("certs");
    let mut holders = vec![Holder::coordinator("coordinator")];
    for e in &generated.exports {
        let et = vocab::EntityType::parse(&e.entity_type).map_err(anyhow::Error::msg)?;
        holders.push(Holder::node(&e.node_id, et, &e.entity_name));
    }
    ponte_certs_dev::generate_federation(&certs, &holders, 30)?;
    let exports = dir.join("exports");
    generated.write_to(&exports).with_context(|| format!("writing the exports to {}", exports.display()))?;
    let secret_path = dir.join("secret").join("linkage.secret");
    secret.save(&secret_path).with_context(|| format!("writing {}", secret_path.display()))?;
    let mut records = 0u64;
    for e in &generated.exports {
        let (r, _) = import_records(e.csv.as_slice(), &e.file_name, &e.import).with_context(|| format!("reading {}", e.file_name))?;
        records += r.len() as u64;
    }
    pb.finish_and_clear();

    let by_rel: HashMap<(&str, &str), &TruthRow> =
        generated.truth.iter().map(|t| ((t.node_id.as_str(), t.relationship_id.as_str()), t)).collect();
    let mut by_person: HashMap<u32, Vec<&TruthRow>> = HashMap::new();
    for t in &generated.truth {
        by_person.entry(t.person_id).or_default().push(t);
    }
    let policy = Policy::default_policy();
    let today = ponte_coordinator::federation::today();

    let mut out = Vec::new();
    for profile in profiles {
        let pdir = dir.join(&profile.name);
        std::fs::create_dir_all(&pdir)?;
        let schema_path = pdir.join("schema.toml");
        std::fs::write(&schema_path, toml::to_string(&profile.schema)?)?;
        let reread = ponte_proto::schema::LinkageSchema::load(&schema_path).map_err(anyhow::Error::msg)?;
        ensure!(reread.fingerprint() == profile.schema.fingerprint(), "the {} schema did not survive writing it out", profile.name);

        let coord_dir = pdir.join("coordinator");
        let coord_cfg = demo::write_coordinator_config(&coord_dir, &certs, "127.0.0.1:0")?;
        set_schema_file::<ponte_coordinator::config::CoordinatorConfig>(&coord_cfg, &schema_path, |c, s| c.schema_file = Some(s))?;
        let pb = spinner(progress, format!("{}: starting the coordinator", profile.name));
        let coordinator = demo::start_coordinator(&bin_dir, &coord_cfg, &coord_dir.join("coordinator.log"))?;
        pb.finish_and_clear();

        let mut link_secs = 0.0;
        let mut configs = Vec::new();
        for export in &generated.exports {
            let cfg = demo::write_node_config(
                &pdir.join("nodes").join(&export.node_id),
                &export.node_id,
                &export.entity_type,
                &export.entity_name,
                &coordinator.addr,
                &certs,
                &secret_path,
                &export.import,
            )?;
            set_schema_file::<ponte_node::config::NodeConfig>(&cfg, &schema_path, |c, s| c.schema_file = Some(s))?;
            let pb = spinner(progress, format!("{}: {} imports and publishes", profile.name, export.node_id));
            let file = exports.join(&export.file_name);
            demo::node_cmd(&bin_dir, &cfg, &["--json", "import", &file.to_string_lossy()])?;
            let started = Instant::now();
            demo::node_cmd(&bin_dir, &cfg, &["publish"])?;
            link_secs += started.elapsed().as_secs_f64();
            pb.finish_and_clear();
            let asker = vocab::EntityType::parse(&export.entity_type).map_err(anyhow::Error::msg)?;
            configs.push((export.node_id.clone(), asker, cfg));
        }

        let (mut expected_total, mut shown_total, mut correct_total) = (0u64, 0u64, 0u64);
        for (node_id, asker, cfg) in &configs {
            let pb = spinner(progress, format!("{}: {node_id} asks who-else for every open relationship", profile.name));
            let answers = demo::node_cmd(&bin_dir, cfg, &["--json", "who-else", "--all", "--operator", "op-sim-eval"])?;
            pb.finish_and_clear();
            for line in answers.lines().filter(|l| !l.trim().is_empty()) {
                let a: AnswerLine = serde_json::from_str(line).with_context(|| format!("reading the answer line {line}"))?;
                if let Some(reason) = &a.refused {
                    bail!("a question from {node_id} was refused: {reason}");
                }
                let Some(anchor) = by_rel.get(&(node_id.as_str(), a.relationship_id.as_str())) else {
                    bail!("an answer names relationship {} of {node_id}, which the truth does not know", a.relationship_id);
                };
                let mut expected: BTreeMap<RelKey, u64> = BTreeMap::new();
                for t in &by_person[&anchor.person_id] {
                    if t.node_id == *node_id {
                        continue;
                    }
                    if let Some(service) = expected_service(&policy, today, *asker, t) {
                        *expected.entry((t.node_id.clone(), service, t.status.clone(), t.since_month.clone())).or_default() += 1;
                    }
                }
                let mut shown: BTreeMap<RelKey, u64> = BTreeMap::new();
                for r in a.answer.iter().filter(|r| r.band != "possible" && r.entity_id != *node_id) {
                    *shown.entry(key(r)).or_default() += 1;
                }
                expected_total += expected.values().sum::<u64>();
                shown_total += shown.values().sum::<u64>();
                correct_total += expected.iter().map(|(k, n)| (*n).min(*shown.get(k).unwrap_or(&0))).sum::<u64>();
            }
        }
        let rss_bytes = process_rss(coordinator.child.id());
        drop(coordinator);
        out.push(ProfileQuality {
            profile: profile.name.clone(),
            schema_fingerprint: profile.schema.fingerprint().short(),
            records,
            cross: Scores::from_counts(expected_total, shown_total, correct_total),
            link_secs,
            rss_bytes,
            ..Default::default()
        });
    }
    Ok(out)
}
