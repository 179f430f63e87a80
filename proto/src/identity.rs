//! How a certificate says who its holder is.
//!
//! Every Ponte certificate carries exactly one subject-alternative-name URI of the form
//! `ponte:<role>:<id>` (`ponte:node:<node-id>:<entity-type>` for nodes), and the holder's display
//! name as the subject's organisation (O). The coordinator reads identity and role from the
//! verified client certificate only; nothing a client writes in a message can change them.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::vocab;

/// What a certificate holder may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// An entity's node (`entity_type` is `asl`, `comune`, `ats` or `provider`).
    Node { entity_type: crate::v1::EntityType },
    Coordinator,
    PrivacyOfficer,
    Researcher,
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::Node { .. } => "node",
            Role::Coordinator => "coordinator",
            Role::PrivacyOfficer => "privacy-officer",
            Role::Researcher => "researcher",
        }
    }
}

/// A verified peer: its id (node id or personal id), role and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub id: String,
    pub role: Role,
    pub display_name: String,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.role.name(), self.id)
    }
}

/// The SAN URI that names `role` and `id`.
pub fn san_uri(role: &Role, id: &str) -> String {
    match role {
        Role::Node { entity_type } => {
            format!("ponte:node:{id}:{}", vocab::EntityType::name(*entity_type))
        }
        other => format!("ponte:{}:{id}", other.name()),
    }
}

/// Parses the `ponte:` SAN URI.
pub fn parse_san_uri(uri: &str) -> Result<(Role, String), String> {
    let rest = uri.strip_prefix("ponte:").ok_or_else(|| format!("{uri:?} is not a ponte: URI"))?;
    let parts: Vec<&str> = rest.split(':').collect();
    let (role, id) = match parts.as_slice() {
        ["node", id, et] => (Role::Node { entity_type: vocab::EntityType::parse(et)? }, *id),
        ["coordinator", id] => (Role::Coordinator, *id),
        ["privacy-officer", id] => (Role::PrivacyOfficer, *id),
        ["researcher", id] => (Role::Researcher, *id),
        _ => return Err(format!("{uri:?} does not name a Ponte role (node, coordinator, privacy-officer, researcher)")),
    };
    vocab::check_node_id(id).map_err(|e| format!("{uri:?}: {e}"))?;
    Ok((role, id.to_string()))
}

/// Reads the Ponte identity of a DER certificate (already chain-verified by TLS).
pub fn identity_from_der(der: &[u8]) -> Result<PeerIdentity, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let mut found = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(u) = name
                && u.starts_with("ponte:") {
                    found.push(parse_san_uri(u)?);
                }
        }
    }
    let (role, id) = match found.len() {
        1 => found.remove(0),
        0 => return Err("the certificate has no ponte: identity URI (issue it with ponte-certs-dev or your PKI's Ponte profile)".into()),
        _ => return Err("the certificate has more than one ponte: identity URI".into()),
    };
    let display_name = cert
        .subject()
        .iter_organization()
        .next()
        .and_then(|o| o.as_str().ok())
        .unwrap_or(&id)
        .chars()
        .take(crate::limits::MAX_ID_LEN * 2)
        .collect();
    Ok(PeerIdentity { id, role, display_name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let r = Role::Node { entity_type: crate::v1::EntityType::Comune };
        let u = san_uri(&r, "comune-lecce");
        assert_eq!(u, "ponte:node:comune-lecce:comune");
        assert_eq!(parse_san_uri(&u).unwrap(), (r, "comune-lecce".to_string()));
        assert_eq!(parse_san_uri("ponte:privacy-officer:dpo-1").unwrap().0, Role::PrivacyOfficer);
        assert!(parse_san_uri("ponte:node:x").is_err());
        assert!(parse_san_uri("ponte:admin:x").is_err());
        assert!(parse_san_uri("ponte:node:Bad Id:asl").is_err());
    }
}
