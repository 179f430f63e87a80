//! The node's TOML configuration.
//!
//! Every entity's software exports its records differently, so the import section maps Ponte's
//! canonical fields to the entity's own column headers and its own service / status values to
//! Ponte's closed vocabularies. Paths are resolved relative to the configuration file's folder.
//! Loading never panics: every problem is reported with the file, the setting and how to fix it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Upper bound on the size of a configuration file we are willing to read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's identifier; must equal the node id in its certificate (e.g. `asl-lecce`).
    pub node_id: String,
    /// The entity's display name (e.g. `ASL Lecce`). Informational: the coordinator takes the
    /// name from the certificate.
    #[serde(default)]
    pub entity_name: String,
    /// `asl`, `comune`, `ats` or `provider`.
    pub entity_type: String,
    /// The coordinator's gRPC address, e.g. `https://127.0.0.1:7700`.
    #[serde(default = "default_coordinator")]
    pub coordinator: String,
    /// Folder of the node's sled store.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// File holding the federation's linkage secret (hex). Never sent anywhere.
    #[serde(default = "default_secret_file")]
    pub secret_file: PathBuf,
    /// Further linkage secrets (other key epochs) to publish under as well, during a key
    /// rotation. Empty outside rotations.
    #[serde(default)]
    pub extra_secret_files: Vec<PathBuf>,
    /// Optional linkage schema file; the built-in default schema is used when absent.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    pub tls: TlsConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub import: ImportConfig,
    #[serde(default)]
    pub api: ApiConfig,
}

/// The case workers' HTTPS API, web page, metrics and gRPC health, served by `ponte-node serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on (HTTPS with the node's certificate, HTTP/1.1 and HTTP/2); an empty
    /// string turns the API off. Loopback by default: expose it only inside the entity's network.
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// The integrated systems' credentials (only their SHA-256 is stored), managed with
    /// `ponte-node credentials`.
    #[serde(default = "default_credentials_file")]
    pub credentials_file: PathBuf,
    /// CA that systems' client certificates must chain to; defaults to `tls.ca`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most search results returned.
    #[serde(default = "default_max_results")]
    pub max_results: usize,
    /// Connections open at once, in total. At the limit a newcomer closes the least recently
    /// active idle connection instead of being refused; only when all are busy does it wait.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one address (a system's server, a proxy).
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Seconds allowed for the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// Seconds allowed for an HTTP/1 request's headers.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Longest pause, in seconds, between two pieces of a request body: a body trickled slower is
    /// cut (408).
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight (HTTP/1 keep-alive and
    /// HTTP/2 alike).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings; a ping unanswered for `keepalive_timeout_secs`
    /// closes the connection.
    #[serde(default = "default_keepalive_interval")]
    pub keepalive_interval_secs: u64,
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout_secs: u64,
    /// HTTP/2 requests one connection may have in flight at once.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
}

impl ApiConfig {
    /// The listener's limits this section sets (the rest: `ponte_net::Limits::default`).
    pub fn limits(&self) -> ponte_net::Limits {
        use std::time::Duration;
        ponte_net::Limits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            body_idle_timeout: Duration::from_secs(self.body_idle_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            keepalive_interval: Duration::from_secs(self.keepalive_interval_secs),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_secs),
            max_concurrent_streams: self.max_concurrent_streams,
            ..ponte_net::Limits::default()
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            credentials_file: default_credentials_file(),
            client_ca: None,
            max_body_bytes: default_max_body(),
            max_results: default_max_results(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            handshake_timeout_secs: default_handshake_timeout(),
            header_read_timeout_secs: default_header_read_timeout(),
            body_idle_timeout_secs: default_body_idle_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            keepalive_interval_secs: default_keepalive_interval(),
            keepalive_timeout_secs: default_keepalive_timeout(),
            max_concurrent_streams: default_max_concurrent_streams(),
        }
    }
}

// The listener's defaults come from ponte_net::Limits::default, where each is explained.
fn default_max_connections() -> usize {
    ponte_net::Limits::default().max_connections
}
fn default_max_connections_per_ip() -> usize {
    ponte_net::Limits::default().max_connections_per_ip
}
fn default_handshake_timeout() -> u64 {
    ponte_net::Limits::default().handshake_timeout.as_secs()
}
fn default_header_read_timeout() -> u64 {
    ponte_net::Limits::default().header_read_timeout.as_secs()
}
fn default_body_idle_timeout() -> u64 {
    ponte_net::Limits::default().body_idle_timeout.as_secs()
}
fn default_idle_timeout() -> u64 {
    ponte_net::Limits::default().idle_timeout.as_secs()
}
fn default_keepalive_interval() -> u64 {
    ponte_net::Limits::default().keepalive_interval.as_secs()
}
fn default_keepalive_timeout() -> u64 {
    ponte_net::Limits::default().keepalive_timeout.as_secs()
}
fn default_max_concurrent_streams() -> u32 {
    ponte_net::Limits::default().max_concurrent_streams
}

/// Longest timeout any `api.*_secs` setting may have: an hour.
pub const MAX_API_TIMEOUT_SECS: u64 = 3600;

fn default_api_listen() -> String {
    "127.0.0.1:7800".into()
}
fn default_credentials_file() -> PathBuf {
    PathBuf::from("api-credentials.toml")
}
fn default_max_body() -> usize {
    16 * 1024
}
fn default_max_results() -> usize {
    20
}

/// Hard ceiling of `api.max_body_bytes`: the API's largest legitimate body (an intake or a
/// consent) is well under 2 KiB.
pub const MAX_API_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the federation's CA (the coordinator's certificate must chain to it).
    pub ca: PathBuf,
    /// PEM certificate of this node (carries node id and entity type).
    pub cert: PathBuf,
    /// PEM private key of this node.
    pub key: PathBuf,
    /// Name the coordinator's certificate is checked against.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Seconds between outbox drains in `serve`.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Items per publish batch (bounded by the protocol's maximum).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds to wait for the coordinator before giving up a connection attempt.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_secs: default_interval(),
            batch_size: default_batch(),
            timeout_secs: default_timeout(),
        }
    }
}

/// How to read this entity's CSV export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Field delimiter: one ASCII character (`;`, `,`, `|` or `\t`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Date format of the export, strftime style: `%d/%m/%Y`, `%Y-%m-%d`, `%d-%m-%Y`, `%d.%m.%Y`,
    /// `%Y%m%d` or `%d/%m/%y`.
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// Maximum number of data rows accepted from one file.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Responsible unit code used when the export has no unit column (e.g. `pua-distretto-lecce`).
    #[serde(default = "default_unit")]
    pub default_unit: String,
    /// Canonical field → column header in the export.
    #[serde(default)]
    pub columns: ColumnMapping,
    /// The entity's own service values → Ponte service categories (e.g. `"ADI" = "cure_domiciliari"`).
    /// Values already equal to a Ponte category need no entry.
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    /// The entity's own status values → Ponte statuses (`segnalata`, `in_valutazione`, `attiva`,
    /// `sospesa`, `conclusa`).
    #[serde(default)]
    pub statuses: BTreeMap<String, String>,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            delimiter: default_delimiter(),
            date_format: default_date_format(),
            max_rows: default_max_rows(),
            default_unit: default_unit(),
            columns: ColumnMapping::default(),
            services: BTreeMap::new(),
            statuses: BTreeMap::new(),
        }
    }
}

/// Column headers of the export, one per canonical field. Optional fields may be left out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnMapping {
    /// The entity's own person identifier (stays on the node).
    pub record_id: String,
    /// The entity's identifier of the care relationship; defaults to the record id.
    #[serde(default)]
    pub relationship_id: Option<String>,
    pub surname: String,
    pub given_names: String,
    #[serde(default)]
    pub sex: Option<String>,
    pub birth_date: String,
    #[serde(default)]
    pub birthplace: Option<String>,
    #[serde(default)]
    pub codice_fiscale: Option<String>,
    /// Married or social surname, when the export keeps it apart.
    #[serde(default)]
    pub surname_alias: Option<String>,
    pub service: String,
    pub status: String,
    /// Date since which the relationship has its current status: its start for an open one, its
    /// closure for a closed (`conclusa`) one, from which retention counts. Reduced to its month
    /// before it leaves the node.
    pub since: String,
    #[serde(default)]
    pub unit: Option<String>,
    /// Whether this entity holds the case manager role (`S`/`N`, `si`/`no`, `1`/`0`, `true`/`false`).
    #[serde(default)]
    pub case_manager: Option<String>,
    /// Marks rows that must never be encoded or published (DOMAIN.md §3: SerD users who chose
    /// anonymity; the mother ↔ child link after *parto anonimo*), yes/no like `case_manager`.
    /// Such relationships stay on this node only; one published before is withdrawn.
    #[serde(default)]
    pub never_encode: Option<String>,
}

impl Default for ColumnMapping {
    fn default() -> Self {
        ColumnMapping {
            record_id: "record_id".into(),
            relationship_id: Some("relationship_id".into()),
            surname: "surname".into(),
            given_names: "given_names".into(),
            sex: Some("sex".into()),
            birth_date: "birth_date".into(),
            birthplace: Some("birthplace".into()),
            codice_fiscale: Some("codice_fiscale".into()),
            surname_alias: None,
            service: "service".into(),
            status: "status".into(),
            since: "since".into(),
            unit: Some("unit".into()),
            case_manager: Some("case_manager".into()),
            never_encode: None,
        }
    }
}

fn default_coordinator() -> String {
    "https://127.0.0.1:7700".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("node-data")
}
fn default_secret_file() -> PathBuf {
    PathBuf::from("linkage.secret")
}
fn default_server_name() -> String {
    "localhost".into()
}
fn default_interval() -> u64 {
    2
}
fn default_batch() -> usize {
    500
}
fn default_timeout() -> u64 {
    5
}
fn default_delimiter() -> String {
    ";".into()
}
fn default_date_format() -> String {
    "%d/%m/%Y".into()
}
fn default_max_rows() -> usize {
    5_000_000
}
fn default_unit() -> String {
    "servizio-sociale".into()
}

/// A configuration problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl NodeConfig {
    /// Reads and checks a configuration file; relative paths become relative to its folder.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError(format!(
                "cannot read the node configuration {}: {e}. Pass the right file with --config, \
                 or write one (see README, 'Node configuration').",
                path.display()
            ))
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError(format!(
                "the node configuration {} is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("cannot read the node configuration {}: {e}", path.display()))
        })?;
        NodeConfig::from_toml(&text, path)
    }

    /// Parses and checks a configuration's text as [`NodeConfig::load`] does for the file at
    /// `path`, without touching the file system: `path` only names the file in errors and gives
    /// the folder relative paths are resolved against. Never panics, whatever the text.
    pub fn from_toml(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError(format!(
                "the node configuration {} is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                path.display(),
                text.len()
            )));
        }
        let mut cfg: NodeConfig = toml::from_str(text).map_err(|e| {
            ConfigError(format!("the node configuration {} is not valid: {e}", path.display()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.check().map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.secret_file);
        for p in &mut self.extra_secret_files {
            fix(p);
        }
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        if let Some(s) = self.schema_file.as_mut() {
            fix(s);
        }
        fix(&mut self.api.credentials_file);
        if let Some(c) = self.api.client_ca.as_mut() {
            fix(c);
        }
    }

    /// Checks values that TOML's types cannot.
    pub fn check(&self) -> Result<(), ConfigError> {
        ponte_proto::vocab::check_node_id(&self.node_id)
            .map_err(|e| ConfigError(format!("node_id: {e}")))?;
        ponte_proto::vocab::EntityType::parse(&self.entity_type)
            .map_err(|e| ConfigError(format!("entity_type: {e}")))?;
        if !(self.coordinator.starts_with("https://")) {
            return Err(ConfigError(format!(
                "coordinator = {:?}: the address must start with https:// (every connection is mutual TLS)",
                self.coordinator
            )));
        }
        if self.sync.batch_size == 0 || self.sync.batch_size > ponte_proto::limits::MAX_BATCH_ITEMS {
            return Err(ConfigError(format!(
                "sync.batch_size = {}: choose between 1 and {}",
                self.sync.batch_size,
                ponte_proto::limits::MAX_BATCH_ITEMS
            )));
        }
        if !self.api.listen.is_empty() && self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError(format!(
                "api.listen = {:?}: write an address and port such as \"127.0.0.1:7800\", or \"\" to turn the API off",
                self.api.listen
            )));
        }
        if self.api.max_body_bytes < 1024 || self.api.max_body_bytes > MAX_API_BODY_BYTES {
            return Err(ConfigError(format!(
                "api.max_body_bytes = {}: choose between 1024 and {MAX_API_BODY_BYTES}",
                self.api.max_body_bytes
            )));
        }
        if !(1..=200).contains(&self.api.max_results) {
            return Err(ConfigError(format!("api.max_results = {}: choose between 1 and 200", self.api.max_results)));
        }
        for (name, secs) in [
            ("handshake_timeout_secs", self.api.handshake_timeout_secs),
            ("header_read_timeout_secs", self.api.header_read_timeout_secs),
            ("body_idle_timeout_secs", self.api.body_idle_timeout_secs),
            ("idle_timeout_secs", self.api.idle_timeout_secs),
            ("keepalive_interval_secs", self.api.keepalive_interval_secs),
            ("keepalive_timeout_secs", self.api.keepalive_timeout_secs),
        ] {
            if !(1..=MAX_API_TIMEOUT_SECS).contains(&secs) {
                return Err(ConfigError(format!("api.{name} = {secs}: choose between 1 and {MAX_API_TIMEOUT_SECS} seconds")));
            }
        }
        self.api.limits().check().map_err(|e| ConfigError(format!("api.{e}")))?;
        self.import.check()
    }
}

impl ImportConfig {
    /// The delimiter as a byte, checked.
    pub fn delimiter_byte(&self) -> Result<u8, ConfigError> {
        let d = if self.delimiter == "\\t" { "\t" } else { self.delimiter.as_str() };
        match d.as_bytes() {
            [b] if b.is_ascii() && !b.is_ascii_alphanumeric() && *b != b'"' => Ok(*b),
            _ => Err(ConfigError(format!(
                "import.delimiter = {:?}: use one punctuation character such as \";\", \",\", \"|\" or \"\\t\"",
                self.delimiter
            ))),
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        self.delimiter_byte()?;
        crate::normalise::dates::DateFormat::parse(&self.date_format)
            .map_err(|e| ConfigError(format!("import.date_format: {e}")))?;
        ponte_proto::vocab::check_unit_code(&self.default_unit)
            .map_err(|e| ConfigError(format!("import.default_unit: {e}")))?;
        for (theirs, ours) in &self.services {
            ponte_proto::vocab::ServiceCategoryName::parse(ours).map_err(|e| {
                ConfigError(format!("import.services.{theirs:?}: {e}"))
            })?;
        }
        for (theirs, ours) in &self.statuses {
            ponte_proto::vocab::StatusName::parse(ours)
                .map_err(|e| ConfigError(format!("import.statuses.{theirs:?}: {e}")))?;
        }
        if self.max_rows == 0 {
            return Err(ConfigError("import.max_rows must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "node_id = \"asl-lecce\"\nentity_type = \"asl\"\n[tls]\nca = \"ca.pem\"\ncert = \"n.pem\"\nkey = \"/abs/n.key\"\n";

    #[test]
    fn from_toml_reads_text_as_load_reads_the_file_without_touching_the_disk() {
        // The folder does not exist: from_toml only uses the path to name the file and resolve paths.
        let path = Path::new("/nonexistent/site/node.toml");
        let cfg = NodeConfig::from_toml(MINIMAL, path).unwrap();
        assert_eq!(cfg.tls.ca, Path::new("/nonexistent/site/ca.pem"));
        assert_eq!(cfg.tls.key, Path::new("/abs/n.key"));
        assert_eq!(cfg.data_dir, Path::new("/nonexistent/site/node-data"));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, MINIMAL).unwrap();
        let loaded = NodeConfig::load(&file).unwrap();
        let parsed = NodeConfig::from_toml(MINIMAL, &file).unwrap();
        assert_eq!(serde_json::to_value(&loaded).unwrap(), serde_json::to_value(&parsed).unwrap());
    }

    #[test]
    fn from_toml_names_the_file_and_the_setting() {
        let path = Path::new("/etc/ponte/node.toml");
        let e = NodeConfig::from_toml(&MINIMAL.replace("asl-lecce", "ASL Lecce"), path).unwrap_err().0;
        assert!(e.starts_with("/etc/ponte/node.toml: node_id:"), "{e}");
        let e = NodeConfig::from_toml("node_id = ", path).unwrap_err().0;
        assert!(e.starts_with("the node configuration /etc/ponte/node.toml is not valid:"), "{e}");
        let big = format!("{MINIMAL}#{}\n", "x".repeat(MAX_CONFIG_BYTES as usize));
        let e = NodeConfig::from_toml(&big, path).unwrap_err().0;
        assert!(e.contains(&format!("the limit is {MAX_CONFIG_BYTES}")), "{e}");
    }
}
