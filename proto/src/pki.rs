//! Loading PEM certificates and keys with errors that say which file, what is wrong and what to
//! do — a missing, unreadable, malformed or expired certificate must never surface as a bare
//! "transport error".

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read.
pub const MAX_PEM_BYTES: u64 = 256 * 1024;

fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let hint = "generate development certificates with `ponte-certs-dev` or point the configuration at your entity's PKI files";
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}; {hint}", path.display()))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!("the {what} {} is {} bytes, larger than the {MAX_PEM_BYTES}-byte limit for a PEM file", path.display(), meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}; {hint}", path.display()))
}

/// Reads a PEM certificate (chain) and checks that it parses and is currently valid.
pub fn load_cert_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let pem = read_bounded(path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the {what} {} is not a valid PEM certificate: {e:?}", path.display()))?;
    let first = certs
        .first()
        .ok_or_else(|| format!("the {what} {} holds no CERTIFICATE block", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first)
        .map_err(|e| format!("the {what} {} cannot be parsed: {e}", path.display()))?;
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(format!(
            "the {what} {} is not valid now (valid from {} to {}); issue a new one",
            path.display(),
            validity.not_before,
            validity.not_after
        ));
    }
    Ok(pem)
}

/// Reads a PEM private key and checks that it parses.
pub fn load_key_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let pem = read_bounded(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("the {what} {} is not a PEM private key: {e:?}", path.display()))?;
    Ok(pem)
}

/// The DER of the first certificate in a PEM buffer.
pub fn first_cert_der(pem: &[u8]) -> Option<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem).next()?.ok().map(|c| c.to_vec())
}
