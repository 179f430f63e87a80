//! The privacy officer's client: a TOML file naming the coordinator and the officer's
//! certificate, and a mutual-TLS connection to the Governance service. Used by the
//! `ponte-coordinator policy reload | current | explain` and `audit query` commands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use ponte_proto::v1::governance_client::GovernanceClient;
use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerConfig {
    /// The coordinator's gRPC address, e.g. `https://127.0.0.1:7700`.
    #[serde(default = "default_coordinator")]
    pub coordinator: String,
    pub tls: OfficerTls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerTls {
    /// The federation CA (the coordinator's certificate must chain to it).
    pub ca: PathBuf,
    /// The privacy officer's certificate (role `privacy-officer`) and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Name the coordinator's certificate is checked against.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

fn default_coordinator() -> String {
    "https://127.0.0.1:7700".into()
}
fn default_server_name() -> String {
    "localhost".into()
}

impl OfficerConfig {
    /// Reads the file; relative paths are relative to its folder.
    pub fn load(path: &Path) -> Result<OfficerConfig, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the privacy officer's configuration {}: {e}; pass it with --officer", path.display()))?;
        if meta.len() > 64 * 1024 {
            return Err(format!("{} is larger than 64 KiB", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut cfg: OfficerConfig = toml::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.tls.ca, &mut cfg.tls.cert, &mut cfg.tls.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    /// Connects to the coordinator's Governance service with the officer's certificate.
    pub async fn connect(&self) -> Result<GovernanceClient<Channel>> {
        let ca = ponte_proto::pki::load_cert_pem(&self.tls.ca, "federation CA certificate (tls.ca)").map_err(anyhow::Error::msg)?;
        let cert = ponte_proto::pki::load_cert_pem(&self.tls.cert, "privacy officer certificate (tls.cert)").map_err(anyhow::Error::msg)?;
        let key = ponte_proto::pki::load_key_pem(&self.tls.key, "privacy officer private key (tls.key)").map_err(anyhow::Error::msg)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(self.tls.server_name.clone());
        let channel = Endpoint::from_shared(self.coordinator.clone())
            .with_context(|| format!("coordinator = {:?} is not a valid address", self.coordinator))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .with_context(|| format!("cannot connect to the coordinator at {} (is it running?)", self.coordinator))?;
        Ok(GovernanceClient::new(channel)
            .max_decoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(ponte_proto::limits::MAX_MESSAGE_BYTES))
    }
}
