//! Harness for Ponte's end-to-end tests: real binaries, real mutual TLS on loopback, real sled
//! directories. A [`Federation`] owns a temporary directory with a development PKI, a linkage
//! secret and a coordinator configuration on a fixed free port (so that it can be restarted).

pub mod held;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use ponte_certs_dev::Holder;
use ponte_node::config::ImportConfig;
use ponte_node::secret::LinkageSecret;
use ponte_sim::demo::{self, CoordinatorProcess};

/// The folder holding ponte-node and ponte-coordinator, built once per test run.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ponte_sim::locate_binaries(false).expect("ponte-node and ponte-coordinator can be built")
    })
}

pub struct Federation {
    pub dir: tempfile::TempDir,
    pub certs: PathBuf,
    pub secret: PathBuf,
    pub coordinator_config: PathBuf,
    pub coordinator_dir: PathBuf,
    pub addr: String,
    pub coordinator: Option<CoordinatorProcess>,
}

/// Node ids used by the tests: the demo's four, and a second ASL and a provider.
pub const NODES: [(&str, &str, &str); 6] = [
    ponte_sim::demo::DEMO_NODES[0],
    ponte_sim::demo::DEMO_NODES[1],
    ponte_sim::demo::DEMO_NODES[2],
    ponte_sim::demo::DEMO_NODES[3],
    ("asl-brindisi", "asl", "ASL Brindisi"),
    ("rsa-sole", "provider", "RSA Il Sole"),
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Federation {
    pub fn new() -> Federation {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        let mut holders = vec![Holder::coordinator("coordinator")];
        for (id, et, name) in NODES {
            holders.push(Holder::node(id, ponte_proto::vocab::EntityType::parse(et).unwrap(), name));
        }
        holders.push(Holder::researcher("ricerca", "Ricerca"));
        holders.push(Holder::privacy_officer("dpo-federazione", "DPO federazione"));
        ponte_certs_dev::generate_federation(&certs, &holders, 5).unwrap();
        let secret = dir.path().join("linkage.secret");
        LinkageSecret::generate(1).save(&secret).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let coordinator_dir = dir.path().join("coordinator");
        let coordinator_config = demo::write_coordinator_config(&coordinator_dir, &certs, &addr).unwrap();
        Federation { dir, certs, secret, coordinator_config, coordinator_dir, addr, coordinator: None }
    }

    pub fn start_coordinator(&mut self) {
        let log = self.coordinator_dir.join(format!("coordinator-{}.log", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()));
        self.coordinator = Some(demo::start_coordinator(bin_dir(), &self.coordinator_config, &log).unwrap());
    }

    pub fn stop_coordinator(&mut self) {
        self.coordinator = None;
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            c.child.kill().unwrap();
            c.child.wait().unwrap();
            std::mem::forget(c);
        }
    }

    /// All coordinator log text so far.
    pub fn coordinator_logs(&self) -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(&self.coordinator_dir).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "log") {
                s.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        s
    }

    pub fn node_config(&self, id: &str, import: &ImportConfig) -> PathBuf {
        let (_, et, name) = NODES.iter().find(|n| n.0 == id).copied().unwrap_or((id, "comune", id));
        demo::write_node_config(&self.dir.path().join("nodes").join(id), id, et, name, &self.addr, &self.certs, &self.secret, import).unwrap()
    }

    pub fn coordinator_cmd(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("ponte-coordinator")).args(args).output().unwrap()
    }

    /// Rewrites the coordinator's accepted key epochs (takes effect at the next start).
    pub fn set_coordinator_epochs(&self, epochs: &[u32]) {
        let text = std::fs::read_to_string(&self.coordinator_config).unwrap();
        let list = epochs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        let text: String = text
            .lines()
            .map(|l| if l.starts_with("key_epochs") { format!("key_epochs = [{list}]") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&self.coordinator_config, text + "\n").unwrap();
    }

    /// The privacy officer `dpo-federazione`'s client configuration.
    pub fn officer_config(&self) -> PathBuf {
        demo::write_officer_config(&self.dir.path().join("officer"), &self.certs, &self.addr, "dpo-federazione").unwrap()
    }

    /// Makes the coordinator start with this policy (takes effect at the first start only: from
    /// then on the policy in force is kept in the store).
    pub fn set_coordinator_policy(&self, policy_toml: &str) {
        let path = self.coordinator_dir.join("policy.toml");
        std::fs::write(&path, policy_toml).unwrap();
        let text = std::fs::read_to_string(&self.coordinator_config).unwrap();
        std::fs::write(&self.coordinator_config, format!("policy_file = \"{}\"\n{text}", path.display())).unwrap();
    }

    pub fn coordinator_data(&self) -> PathBuf {
        self.coordinator_dir.join("data")
    }

    /// Items stored per node (the coordinator must be stopped).
    pub fn stored_items(&self) -> std::collections::BTreeMap<String, usize> {
        let out = self.coordinator_cmd(&["stats", "--data-dir", &self.coordinator_data().to_string_lossy()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(k, _)| *k != "links" && !k.starts_with("epoch"))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    /// A gRPC channel to the coordinator presenting `holder`'s certificate (None: no certificate),
    /// trusting `ca_pem`.
    pub async fn channel(&self, holder: Option<(&str, &str)>, ca_pem: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(ca_pem).unwrap()))
            .domain_name("localhost");
        if let Some((cert, key)) = holder {
            tls = tls.identity(tonic::transport::Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
        }
        tonic::transport::Endpoint::from_shared(format!("https://{}", self.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
    }

    pub fn cert(&self, id: &str) -> (String, String) {
        (self.certs.join(format!("{id}.pem")).to_string_lossy().into(), self.certs.join(format!("{id}.key")).to_string_lossy().into())
    }
}

impl Default for Federation {
    fn default() -> Self {
        Federation::new()
    }
}

/// Changes a node configuration file in place.
pub fn edit_node_config(path: &Path, f: impl FnOnce(&mut ponte_node::config::NodeConfig)) {
    let mut cfg = ponte_node::config::NodeConfig::load(path).unwrap();
    f(&mut cfg);
    std::fs::write(path, toml::to_string_pretty(&cfg).unwrap()).unwrap();
}

/// Every who-else answer of a node for all its open relationships, without receipts, sorted.
pub fn all_answers(config: &Path) -> Vec<String> {
    let o = node(config, &["--json", "who-else", "--all", "--operator", "op-test"]);
    assert!(o.status.success(), "{}", text(&o));
    let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut j: serde_json::Value = serde_json::from_str(l).unwrap();
            j.as_object_mut().unwrap().remove("receipt");
            j.as_object_mut().unwrap().remove("receipt_full");
            j.to_string()
        })
        .collect();
    v.sort();
    v
}

/// Runs ponte-node; returns the whole output.
pub fn node(config: &Path, args: &[&str]) -> Output {
    Command::new(bin_dir().join("ponte-node")).arg("--config").arg(config).args(args).output().unwrap()
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A small export in the default column mapping.
pub fn default_import() -> ImportConfig {
    ImportConfig { date_format: "%Y-%m-%d".into(), delimiter: ";".into(), ..Default::default() }
}

pub const HEADER: &str = "record_id;relationship_id;surname;given_names;sex;birth_date;birthplace;codice_fiscale;service;status;since;unit;case_manager";

/// A codice fiscale computed from the identity (a valid one, as an export would carry).
pub fn cf(s: &str, g: &str, sex: ponte_node::normalise::Sex, y: u16, m: u8, d: u8, place: &str) -> String {
    ponte_node::normalise::codice_fiscale::compute(s, g, sex, ponte_node::normalise::BirthDate { year: y, month: m, day: d }, place)
}

/// Writes a small export in the default mapping and returns its path.
pub fn small_export(dir: &Path, name: &str, rows: &[String]) -> PathBuf {
    use std::io::Write;
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{HEADER}").unwrap();
    for r in rows {
        writeln!(f, "{r}").unwrap();
    }
    path
}
