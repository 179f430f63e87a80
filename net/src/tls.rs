//! The TLS server configuration both Ponte servers use: one certificate chain and key, client
//! certificates verified against a CA when presented, ALPN `h2` and `http/1.1`, rustls on ring.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server configuration from PEM text: `cert_chain` (leaf first) and `key` are the server's;
/// client certificates, when a client sends one, must chain to a certificate in `client_ca`.
/// A client may also send none: whether that is allowed is the service's decision (the
/// coordinator's auth layer refuses it with a gRPC status that says so; the node's API takes
/// bearer credentials instead). Every error names which input is at fault.
pub fn server_config(cert_chain: &[u8], key: &[u8], client_ca: &[u8]) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_chain).collect::<Result<_, _>>().map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("the private key is not a PEM private key: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca) {
        let c = c.map_err(|e| format!("the client CA is not PEM: {e}"))?;
        roots.add(c).map_err(|e| format!("the client CA cannot be used: {e}"))?;
    }
    if roots.is_empty() {
        return Err("the client CA file holds no certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("the client-certificate verifier: {e}"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and the private key do not belong together: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
