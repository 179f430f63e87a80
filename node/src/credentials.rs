//! The integrated systems allowed to call the node's API (a Comune's cartella sociale, the ASL's
//! PUA or ADI software, the node's own web page) and how each proves who it is: a random bearer
//! credential, of which only the SHA-256 is stored, or a client certificate, of which the SHA-256
//! fingerprint is stored. Each system is limited to the operator roles it was registered for.
//!
//! The file (`api.credentials_file`, TOML, one `[[system]]` per system) is written by
//! `ponte-node credentials` and read by `serve` at start.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest credentials file read.
pub const MAX_CREDENTIALS_BYTES: u64 = 1024 * 1024;
/// Most systems in one file.
pub const MAX_SYSTEMS: usize = 1000;
/// Prefix of every bearer credential, so that a leaked one is recognisable in a secret scanner.
pub const TOKEN_PREFIX: &str = "ponte_";

/// One registered system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// `[a-z0-9-]`, e.g. `cartella-sociale`; appears in logs and metrics, never a person.
    pub id: String,
    /// Operator roles this system may act for (`operatore_pua`, `assistente_sociale`, …).
    pub roles: Vec<String>,
    /// Hex SHA-256 of the bearer credential, if the system uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Hex SHA-256 of the DER client certificate, if the system uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
    /// When it was registered, `YYYY-MM-DD HH:MM UTC`.
    #[serde(default)]
    pub created: String,
}

/// The registered systems.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default, rename = "system")]
    pub systems: Vec<System>,
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A new bearer credential: the prefix and 256 random bits, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    format!("{TOKEN_PREFIX}{}", hex::encode(b))
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl System {
    /// Checks the id, the roles and the hashes.
    pub fn check(&self) -> Result<(), String> {
        ponte_proto::vocab::check_node_id(&self.id).map_err(|e| format!("system id {:?}: {e}", self.id))?;
        if self.roles.is_empty() {
            return Err(format!("system {:?} has no roles: give at least one (e.g. operatore_pua)", self.id));
        }
        for r in &self.roles {
            ponte_proto::vocab::OperatorRoleName::parse(r).map_err(|e| format!("system {:?}: role {e}", self.id))?;
        }
        for (what, h) in [("token_sha256", &self.token_sha256), ("cert_sha256", &self.cert_sha256)] {
            if let Some(h) = h
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(format!("system {:?}: {what} must be 64 hex digits", self.id));
            }
        }
        if self.token_sha256.is_none() && self.cert_sha256.is_none() {
            return Err(format!("system {:?} has neither token_sha256 nor cert_sha256: it could never authenticate", self.id));
        }
        Ok(())
    }

    pub fn allows_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl Credentials {
    /// Reads the file; a missing file is an empty list (no system may call yet).
    pub fn load(path: &Path) -> Result<Credentials, String> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::default()),
            Err(e) => return Err(format!("cannot read the API credentials {}: {e}", path.display())),
        };
        if meta.len() > MAX_CREDENTIALS_BYTES {
            return Err(format!("the API credentials {} are {} bytes; the limit is {MAX_CREDENTIALS_BYTES}", path.display(), meta.len()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the API credentials {}: {e}", path.display()))?;
        let c: Credentials = toml::from_str(&text).map_err(|e| format!("the API credentials {} are not valid: {e}", path.display()))?;
        c.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(c)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.systems.len() > MAX_SYSTEMS {
            return Err(format!("{} systems; the limit is {MAX_SYSTEMS}", self.systems.len()));
        }
        for (i, s) in self.systems.iter().enumerate() {
            s.check()?;
            if self.systems[..i].iter().any(|o| o.id == s.id) {
                return Err(format!("system {:?} is registered twice", s.id));
            }
        }
        Ok(())
    }

    /// Writes the file (owner-only permissions), replacing it atomically.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        self.check()?;
        let text = format!(
            "# Systems allowed to call this node's API. Written by `ponte-node credentials`; only hashes are kept.\n{}",
            toml::to_string_pretty(self).map_err(|e| e.to_string())?
        );
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
        }
        std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
    }

    /// The system whose bearer credential this is. Every registered hash is compared, in
    /// constant time, whatever matches.
    pub fn by_token(&self, token: &str) -> Option<&System> {
        let h = sha256_hex(token.as_bytes());
        let mut found = None;
        for s in &self.systems {
            if let Some(t) = &s.token_sha256
                && constant_time_eq(t.as_bytes(), h.as_bytes())
                && found.is_none()
            {
                found = Some(s);
            }
        }
        found
    }

    /// The system whose client certificate (DER) this is.
    pub fn by_cert(&self, der: &[u8]) -> Option<&System> {
        let h = sha256_hex(der);
        self.systems.iter().find(|s| s.cert_sha256.as_deref() == Some(h.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(id: &str, token: Option<&str>) -> System {
        System {
            id: id.into(),
            roles: vec!["operatore_pua".into()],
            token_sha256: token.map(|t| sha256_hex(t.as_bytes())),
            cert_sha256: None,
            created: String::new(),
        }
    }

    #[test]
    fn a_token_finds_its_system_and_nothing_else_does() {
        let t1 = new_token();
        let t2 = new_token();
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() == TOKEN_PREFIX.len() + 64 && t1 != t2);
        let c = Credentials { systems: vec![system("pua", Some(&t1)), system("cartella", Some(&t2))] };
        assert_eq!(c.by_token(&t1).map(|s| s.id.as_str()), Some("pua"));
        assert_eq!(c.by_token(&t2).map(|s| s.id.as_str()), Some("cartella"));
        assert!(c.by_token("ponte_wrong").is_none());
        assert!(c.by_token("").is_none());
    }

    #[test]
    fn saved_files_hold_only_hashes_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-credentials.toml");
        assert_eq!(Credentials::load(&path).unwrap(), Credentials::default(), "a missing file is an empty list");
        let t = new_token();
        let c = Credentials { systems: vec![system("pua", Some(&t))] };
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t) && text.contains(&sha256_hex(t.as_bytes())));
        assert_eq!(Credentials::load(&path).unwrap(), c);
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (text, want) in [
            ("[[system]]\nid = \"pua\"\nroles = [\"operatore_pua\"]\n", "neither token_sha256 nor cert_sha256"),
            ("[[system]]\nid = \"pua\"\nroles = [\"capo\"]\ntoken_sha256 = \"00\"\n", "role"),
            ("[[system]]\nid = \"pua\"\nroles = [\"operatore_pua\"]\ntoken_sha256 = \"zz\"\n", "64 hex digits"),
            ("[[system]]\nid = \"Pua Lecce\"\nroles = [\"operatore_pua\"]\ntoken_sha256 = \"00\"\n", "system id"),
            ("[[sistema]]\nid = \"pua\"\n", "not valid"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Credentials::load(&path).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let dup = Credentials { systems: vec![system("pua", Some("a")), system("pua", Some("b"))] };
        assert!(dup.check().unwrap_err().contains("twice"));
    }
}
