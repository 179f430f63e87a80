//! The federation's linkage secret: 32 random bytes shared by the nodes only (distributed out of
//! band by the key custodian), tagged with its key epoch. The coordinator never receives it.
//!
//! File format (TOML): `epoch = 1` and `secret = "<64 hex digits>"`.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    epoch: u32,
    secret: String,
}

/// A linkage secret and its epoch. `Debug` never prints the secret.
#[derive(Clone)]
pub struct LinkageSecret {
    pub epoch: u32,
    bytes: [u8; 32],
}

impl std::fmt::Debug for LinkageSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkageSecret {{ epoch: {}, .. }}", self.epoch)
    }
}

impl LinkageSecret {
    pub fn from_bytes(epoch: u32, bytes: [u8; 32]) -> LinkageSecret {
        LinkageSecret { epoch, bytes }
    }

    /// A fresh secret from the operating system's random source.
    pub fn generate(epoch: u32) -> LinkageSecret {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        LinkageSecret { epoch, bytes }
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Reads a secret file, with errors that say what to fix.
    pub fn load(path: &Path) -> Result<LinkageSecret, String> {
        let hint = "create one with `ponte-node secret generate --out FILE` (one per federation, shared by the key custodian)";
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the linkage secret {}: {e}; {hint}", path.display()))?;
        if meta.len() > 4096 {
            return Err(format!("the linkage secret file {} is too large to be a secret file", path.display()));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the linkage secret {}: {e}; {hint}", path.display()))?;
        let f: SecretFile = toml::from_str(&text)
            .map_err(|_| format!("the linkage secret {} is not a Ponte secret file (expected `epoch = N` and `secret = \"<64 hex digits>\"`); {hint}", path.display()))?;
        let raw = hex::decode(f.secret.trim())
            .map_err(|_| format!("the secret in {} is not hexadecimal", path.display()))?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| format!("the secret in {} must be 32 bytes (64 hex digits)", path.display()))?;
        if bytes.iter().all(|b| *b == 0) {
            return Err(format!("the secret in {} is all zeros; generate a real one", path.display()));
        }
        Ok(LinkageSecret { epoch: f.epoch, bytes })
    }

    /// Writes the secret file, readable by its owner only.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(&SecretFile { epoch: self.epoch, secret: hex::encode(self.bytes) })
            .expect("a secret file always serialises");
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        std::fs::write(path, text)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }
}
