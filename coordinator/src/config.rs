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
