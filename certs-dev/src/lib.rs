//! A development PKI for Ponte: one CA, and certificates for a coordinator, any number of nodes
//! (node id and entity type in the certificate), privacy officers and researchers.
//!
//! Production federations use each entity's own PKI; what matters is the certificate profile:
//! one subject-alternative-name URI `ponte:<role>:<id>` (see `ponte_proto::identity`), the
//! display name as the subject's O, and client / server key usages. Keys are ECDSA P-256.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ponte_proto::identity::{Role, san_uri};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Who a certificate is for.
#[derive(Debug, Clone)]
pub struct Holder {
    pub id: String,
    pub role: Role,
    pub display_name: String,
    /// DNS names / IPs for a server certificate (the coordinator, and nodes serving HTTP).
    pub hosts: Vec<String>,
}

impl Holder {
    pub fn coordinator(id: &str) -> Holder {
        Holder {
            id: id.into(),
            role: Role::Coordinator,
            display_name: "Ponte coordinator".into(),
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        }
    }
    pub fn node(id: &str, entity_type: ponte_proto::v1::EntityType, display_name: &str) -> Holder {
        Holder {
            id: id.into(),
            role: Role::Node { entity_type },
            display_name: display_name.into(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        }
    }
    pub fn privacy_officer(id: &str, display_name: &str) -> Holder {
        Holder { id: id.into(), role: Role::PrivacyOfficer, display_name: display_name.into(), hosts: vec![] }
    }
    pub fn researcher(id: &str, display_name: &str) -> Holder {
        Holder { id: id.into(), role: Role::Researcher, display_name: display_name.into(), hosts: vec![] }
    }
}

/// A certificate and its private key, PEM encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A development certificate authority.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

impl DevCa {
    /// A new CA named `name`, valid ten years.
    pub fn generate(name: &str) -> Result<DevCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Ponte development PKI");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, 3650);
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(params.clone(), key)?;
        let cert_pem = ca.pem();
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(DevCa { issuer: Issuer::new(params, key), cert_pem, key_pem })
    }

    /// Loads a CA written earlier by [`DevCa::write`].
    pub fn load(dir: &Path) -> Result<DevCa> {
        let cert_pem = std::fs::read_to_string(dir.join("ca.pem"))
            .with_context(|| format!("reading {}/ca.pem (run `ponte-certs-dev init` first)", dir.display()))?;
        let key_pem = std::fs::read_to_string(dir.join("ca.key"))
            .with_context(|| format!("reading {}/ca.key", dir.display()))?;
        let key = KeyPair::from_pem(&key_pem).context("ca.key is not a PEM private key")?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).context("ca.pem is not a CA certificate")?;
        Ok(DevCa { issuer, cert_pem, key_pem })
    }

    /// Issues a certificate for `holder`, valid `days` days.
    pub fn issue(&self, holder: &Holder, days: i64) -> Result<Issued> {
        ponte_proto::vocab::check_node_id(&holder.id).map_err(anyhow::Error::msg)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, holder.id.as_str());
        dn.push(DnType::OrganizationName, holder.display_name.as_str());
        dn.push(DnType::OrganizationalUnitName, holder.role.name());
        params.distinguished_name = dn;
        let mut sans = vec![SanType::URI(san_uri(&holder.role, &holder.id).try_into()?)];
        for h in &holder.hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(h.as_str().try_into()?)),
            }
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if !holder.hosts.is_empty() {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes `ca.pem` and `ca.key` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("ca.pem"), &self.cert_pem)?;
        write_private(&dir.join("ca.key"), &self.key_pem)
    }
}

fn write_private(path: &Path, pem: &str) -> Result<()> {
    std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Paths of one holder's files.
#[derive(Debug, Clone)]
pub struct HolderFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Issued {
    /// Writes `<id>.pem` and `<id>.key` into `dir`.
    pub fn write(&self, dir: &Path, id: &str) -> Result<HolderFiles> {
        std::fs::create_dir_all(dir)?;
        let files = HolderFiles { cert: dir.join(format!("{id}.pem")), key: dir.join(format!("{id}.key")) };
        std::fs::write(&files.cert, &self.cert_pem)?;
        write_private(&files.key, &self.key_pem)?;
        Ok(files)
    }
}

/// Generates a CA and certificates for every holder into `dir` (one call sets up a federation).
pub fn generate_federation(dir: &Path, holders: &[Holder], days: i64) -> Result<DevCa> {
    let ca = DevCa::generate("Ponte development CA")?;
    ca.write(dir)?;
    for h in holders {
        ca.issue(h, days)?.write(dir, &h.id)?;
    }
    Ok(ca)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_identity() {
        let ca = DevCa::generate("test CA").unwrap();
        let node = Holder::node("comune-lecce", ponte_proto::v1::EntityType::Comune, "Comune di Lecce");
        let issued = ca.issue(&node, 30).unwrap();
        let der = ponte_proto::pki::first_cert_der(issued.cert_pem.as_bytes()).unwrap();
        let id = ponte_proto::identity::identity_from_der(&der).unwrap();
        assert_eq!(id.id, "comune-lecce");
        assert_eq!(id.display_name, "Comune di Lecce");
        assert_eq!(id.role, Role::Node { entity_type: ponte_proto::v1::EntityType::Comune });
        assert!(ca.issue(&Holder::researcher("Bad Id", "x"), 30).is_err());
    }

    #[test]
    fn a_written_ca_can_be_loaded_and_issue_again() {
        let dir = tempdir();
        let ca = DevCa::generate("test CA").unwrap();
        ca.write(&dir).unwrap();
        let again = DevCa::load(&dir).unwrap();
        let issued = again.issue(&Holder::privacy_officer("dpo-asl", "DPO ASL"), 30).unwrap();
        let der = ponte_proto::pki::first_cert_der(issued.cert_pem.as_bytes()).unwrap();
        assert_eq!(ponte_proto::identity::identity_from_der(&der).unwrap().role, Role::PrivacyOfficer);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ponte-certs-test-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    }
}
