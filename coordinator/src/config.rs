//! The coordinator's TOML configuration. Relative paths are relative to the file's folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Folder of the coordinator's sled store.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Key epochs whose encodings are accepted.
    #[serde(default = "default_epochs")]
    pub key_epochs: Vec<u32>,
    /// Linkage schema file; the built-in default when absent. The coordinator only needs the
    /// schema's shape and fingerprint: it never holds the linkage secret.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Fellegi–Sunter model file (`ponte-coordinator params estimate` writes one); the shipped
    /// `params/default-fs.toml` when absent.
    #[serde(default)]
    pub model_file: Option<PathBuf>,
    /// Disclosure policy file (`ponte-coordinator policy check` checks one). Read at the first
    /// start only: from then on the policy in force is the last one loaded, kept in the store,
    /// and a new version is loaded live by a privacy officer (`ponte-coordinator policy
    /// reload`). The shipped default policy when absent.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    pub tls: TlsConfig,
    /// The Prometheus metrics endpoint (`[metrics]`); on by default, on loopback.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// What one node may ask of the coordinator (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Disk space kept free (`[storage]`).
    #[serde(default)]
    pub storage: StorageConfig,
    /// Connections to the gRPC port (`[connections]`).
    #[serde(default)]
    pub connections: ConnectionsConfig,
}

/// `[connections]`: the gRPC listener's bounds (see `ponte_net::Limits`, where every default is
/// explained). At `max_connections` (or `max_connections_per_ip` from one address) a newcomer
/// closes the least recently active connection that has no request in flight instead of being
/// refused, so idle or half-open connections — an unfinished TLS handshake, an HTTP/2 preface
/// and nothing more — can never lock a node out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Seconds allowed for the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight.
    pub idle_timeout_secs: u64,
    /// Longest pause, in seconds, between two messages of a request (a publish stream lives on
    /// as long as batches keep coming).
    pub body_idle_timeout_secs: u64,
    /// Requests one HTTP/2 connection may have in flight at once.
    pub max_concurrent_streams: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        let d = ponte_net::Limits::default();
        ConnectionsConfig {
            // The coordinator serves every node of a federation and their who-else clients.
            max_connections: 1024,
            max_connections_per_ip: d.max_connections_per_ip,
            handshake_timeout_secs: d.handshake_timeout.as_secs(),
            idle_timeout_secs: d.idle_timeout.as_secs(),
            body_idle_timeout_secs: d.body_idle_timeout.as_secs(),
            max_concurrent_streams: d.max_concurrent_streams,
        }
    }
}

impl ConnectionsConfig {
    /// The listener's limits (the rest: `ponte_net::Limits::default`).
    pub fn limits(&self) -> ponte_net::Limits {
        use std::time::Duration;
        ponte_net::Limits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            max_concurrent_streams: self.max_concurrent_streams,
            ..ponte_net::Limits::default()
        }
    }
}

/// `[limits]`: the bounds that keep one node — careless or hostile — from hurting the others.
/// Every rate is per node (per certificate), as a token bucket: `*_per_sec` sustained, `*_burst`
/// at once. A refused call changes nothing and says when to retry; the node's outbox retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Who-else questions and data-subject reports per second, per node. Each is audited, so
    /// this also bounds how fast one node can grow the audit log. 0: no limit.
    pub questions_per_sec: u32,
    pub questions_burst: u32,
    /// Audited writes per second, per node: withdrawals, consents, revocations, obscuring,
    /// relationship updates. 0: no limit.
    pub writes_per_sec: u32,
    pub writes_burst: u32,
    /// Items one node may hold at the coordinator (a quota on its disk use).
    pub items_per_node: u64,
    /// Most items of one node in one person cluster (see `graph::GraphBounds`).
    pub items_per_node_per_person: u32,
    /// LSH buckets larger than this are not walked for candidates (see `linker::IndexBounds`).
    pub max_bucket: u32,
    /// A token with more holders than this is not a blocking key.
    pub max_token_holders: u32,
    /// A token one node gives to this many different identities stops being evidence for that
    /// node's items (a placeholder codice fiscale).
    pub token_identities: u32,
    /// How long a publication may wait for the linker before it is refused unapplied, in
    /// milliseconds (also bounded by the caller's own deadline).
    pub publish_wait_ms: u64,
    /// Threads that link publications; 0: all cores but one (at least one), so that questions
    /// always have a core.
    pub link_threads: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            questions_per_sec: 500,
            questions_burst: 5_000,
            writes_per_sec: 200,
            writes_burst: 2_000,
            items_per_node: 50_000_000,
            items_per_node_per_person: crate::graph::DEFAULT_MAX_ITEMS_PER_NODE as u32,
            max_bucket: crate::linker::DEFAULT_MAX_BUCKET as u32,
            max_token_holders: crate::linker::DEFAULT_MAX_TOKEN_HOLDERS as u32,
            token_identities: crate::linker::DEFAULT_TOKEN_IDENTITIES as u32,
            publish_wait_ms: 30_000,
            link_threads: 0,
        }
    }
}

impl LimitsConfig {
    /// The problems of these limits, each naming its key.
    pub fn check(&self) -> Result<(), String> {
        let mut p = Vec::new();
        if self.items_per_node_per_person == 0 {
            p.push("items_per_node_per_person must be at least 1".to_string());
        }
        if self.max_bucket < 16 {
            p.push("max_bucket must be at least 16".into());
        }
        if self.max_token_holders < 2 {
            p.push("max_token_holders must be at least 2".into());
        }
        if self.token_identities < 2 {
            p.push("token_identities must be at least 2 (one identity per token is what a token is)".into());
        }
        if self.publish_wait_ms == 0 {
            p.push("publish_wait_ms must be positive".into());
        }
        if (self.questions_per_sec > 0 && self.questions_burst == 0) || (self.writes_per_sec > 0 && self.writes_burst == 0) {
            p.push("a burst of 0 with a positive rate refuses everything: set the burst to at least 1".into());
        }
        if p.is_empty() { Ok(()) } else { Err(format!("[limits]: {}", p.join("; "))) }
    }
}

/// `[storage]`: free space the coordinator keeps on its data directory's disk.
///
/// Writes (publications, consents, withdrawals …) are refused while less than
/// `write_reserve_bytes` are free, so that the audit log — every question is audited — can still
/// grow: questions go on being answered on a nearly full disk. A *ballast* file of
/// `ballast_bytes` is kept in the data directory and deleted when the disk fills anyway (another
/// program filled it): the space it frees keeps questions answered until space returns, when it
/// is made again and writes resume by themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub write_reserve_bytes: u64,
    pub ballast_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { write_reserve_bytes: 256 * 1024 * 1024, ballast_bytes: 64 * 1024 * 1024 }
    }
}

/// `[metrics]`: where the coordinator serves `GET /metrics` (Prometheus text format) over plain
/// HTTP. The endpoint has no authentication and no TLS: it serves counts and timings only (no
/// personal data, no references, record or operator ids), but keep it on loopback or a
/// management network that only the monitoring system reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the metrics endpoint; port 0 picks a free port (logged at start); `""`
    /// serves no metrics. When absent: [`DEFAULT_METRICS_LISTEN`], and if that address is
    /// taken the coordinator serves without metrics and logs a warning. An address written here
    /// must be free, or the coordinator does not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// The metrics endpoint when `[metrics] listen` is absent.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:7701";

/// Where to serve metrics, as [`MetricsConfig`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    /// `listen = ""`.
    Off,
    /// No `listen`: the default address, given up with a warning if it is taken.
    Default(std::net::SocketAddr),
    /// `listen` names an address: it must be free.
    Configured(std::net::SocketAddr),
}

impl MetricsConfig {
    /// No metrics endpoint (for tests and embedded coordinators).
    pub fn off() -> MetricsConfig {
        MetricsConfig { listen: Some(String::new()) }
    }

    /// The endpoint's address, checked.
    pub fn address(&self) -> Result<MetricsListen, String> {
        let parse = |s: &str| {
            s.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("[metrics] listen = {s:?} is not an address like {DEFAULT_METRICS_LISTEN} ({e}); write \"\" to serve no metrics"))
        };
        match self.listen.as_deref().map(str::trim) {
            None => Ok(MetricsListen::Default(parse(DEFAULT_METRICS_LISTEN)?)),
            Some("") => Ok(MetricsListen::Off),
            Some(s) => Ok(MetricsListen::Configured(parse(s)?)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The federation CA: client certificates must chain to it.
    pub ca: PathBuf,
    /// The coordinator's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Largest configuration file accepted.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

fn default_listen() -> String {
    "127.0.0.1:7700".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("coordinator-data")
}
fn default_epochs() -> Vec<u32> {
    vec![1]
}

impl CoordinatorConfig {
    pub fn load(path: &Path) -> Result<CoordinatorConfig, String> {
        let meta = std::fs::metadata(path).map_err(|e| {
            format!("cannot read the coordinator configuration {}: {e}; pass the right file with --config", path.display())
        })?;
        if meta.len() > MAX_CONFIG_BYTES as u64 {
            return Err(format!("the configuration {} is larger than 1 MiB", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        CoordinatorConfig::from_toml(&text, path)
    }

    /// Parses and checks a configuration's text as [`CoordinatorConfig::load`] does for the
    /// file at `path`, without touching the file system: `path` only names the file in errors and
    /// gives the folder relative paths are resolved against. Never panics, whatever the text.
    pub fn from_toml(text: &str, path: &Path) -> Result<CoordinatorConfig, String> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(format!("the configuration {} is larger than 1 MiB", path.display()));
        }
        let mut cfg: CoordinatorConfig =
            toml::from_str(text).map_err(|e| format!("the coordinator configuration {} is not valid: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.data_dir, &mut cfg.tls.ca, &mut cfg.tls.cert, &mut cfg.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        for s in [cfg.schema_file.as_mut(), cfg.model_file.as_mut(), cfg.policy_file.as_mut()].into_iter().flatten() {
            if s.is_relative() {
                *s = base.join(&*s);
            }
        }
        if cfg.key_epochs.is_empty() {
            return Err(format!("{}: key_epochs is empty; list the epochs in use, e.g. key_epochs = [1]", path.display()));
        }
        cfg.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| format!("{}: listen = {:?} is not an address like 127.0.0.1:7700 ({e})", path.display(), cfg.listen))?;
        cfg.metrics.address().map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.limits.check().map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.connections.limits().check().map_err(|e| format!("{}: [connections] {e}", path.display()))?;
        Ok(cfg)
    }

    /// The matching model: `model_file`, or the shipped one.
    pub fn model(&self) -> Result<crate::scoring::FsModel, String> {
        match &self.model_file {
            None => Ok(crate::scoring::FsModel::default_model()),
            Some(p) => load_model(p),
        }
    }
}

/// Reads and checks a model file of at most [`crate::scoring::MAX_MODEL_BYTES`] bytes.
pub fn load_model(p: &Path) -> Result<crate::scoring::FsModel, String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read the model file {}: {e}", p.display()))?;
    if meta.len() > crate::scoring::MAX_MODEL_BYTES as u64 {
        return Err(format!("the model file {} is larger than {} bytes", p.display(), crate::scoring::MAX_MODEL_BYTES));
    }
    let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    crate::scoring::FsModel::parse(&text).map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Result<CoordinatorConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, format!("listen = \"127.0.0.1:7700\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n{extra}")).unwrap();
        CoordinatorConfig::load(&path)
    }

    #[test]
    fn metrics_default_to_loopback_and_can_be_moved_or_turned_off() {
        let cfg = load("").unwrap();
        assert_eq!(cfg.metrics.address(), Ok(MetricsListen::Default("127.0.0.1:7701".parse().unwrap())));
        let cfg = load("[metrics]\nlisten = \"0.0.0.0:9101\"\n").unwrap();
        assert_eq!(cfg.metrics.address(), Ok(MetricsListen::Configured("0.0.0.0:9101".parse().unwrap())));
        let cfg = load("[metrics]\nlisten = \"\"\n").unwrap();
        assert_eq!(cfg.metrics.address(), Ok(MetricsListen::Off));
        assert_eq!(MetricsConfig::off().address(), Ok(MetricsListen::Off));
    }

    #[test]
    fn a_bad_metrics_address_or_key_says_what_to_write() {
        let e = load("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains("[metrics] listen = \"localhost\" is not an address") && e.contains("127.0.0.1:7701"), "{e}");
        let e = load("[metrics]\nport = 7701\n").unwrap_err();
        assert!(e.contains("unknown field") && e.contains("port"), "{e}");
    }

    #[test]
    fn from_toml_reads_text_as_load_reads_the_file_without_touching_the_disk() {
        let text = "key_epochs = [1, 2]\n[tls]\nca = \"ca.pem\"\ncert = \"/abs/c.pem\"\nkey = \"c.key\"\n";
        let cfg = CoordinatorConfig::from_toml(text, Path::new("/nonexistent/coord/coordinator.toml")).unwrap();
        assert_eq!(cfg.tls.ca, Path::new("/nonexistent/coord/ca.pem"));
        assert_eq!(cfg.tls.cert, Path::new("/abs/c.pem"));
        assert_eq!(cfg.key_epochs, [1, 2]);
        let e = CoordinatorConfig::from_toml("key_epochs = []\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n", Path::new("/etc/c.toml"))
            .unwrap_err();
        assert!(e.starts_with("/etc/c.toml: key_epochs is empty"), "{e}");
        let big = format!("#{}\n", "x".repeat(MAX_CONFIG_BYTES));
        assert!(CoordinatorConfig::from_toml(&big, Path::new("/etc/c.toml")).unwrap_err().contains("larger than 1 MiB"));
    }

    #[test]
    fn a_config_written_back_keeps_the_metrics_setting() {
        for extra in ["", "[metrics]\nlisten = \"\"\n", "[metrics]\nlisten = \"127.0.0.1:0\"\n"] {
            let cfg = load(extra).unwrap();
            let again: CoordinatorConfig = toml::from_str(&toml::to_string_pretty(&cfg).unwrap()).unwrap();
            assert_eq!(again.metrics, cfg.metrics);
        }
    }
}
