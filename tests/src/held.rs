//! Raw connections a test holds open against a server (the node's API, the coordinator's gRPC
//! port) to occupy its connection slots: TCP that never starts TLS, TLS (mutual or not) that
//! never sends a request, and whether the server has closed one.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A TLS client trusting `ca`, offering `alpn`, presenting `client` (certificate, key PEM files)
/// when given.
pub fn tls_connector(ca: &Path, alpn: &[u8], client: Option<(&str, &str)>) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&std::fs::read(ca).unwrap()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&std::fs::read(cert).unwrap()).map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(&std::fs::read(key).unwrap()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A connection held open by a test, of any kind.
pub enum Held {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Held {
    /// Whether the server has closed it (EOF or reset) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 512];
        let read = async {
            loop {
                let n = match self {
                    Held::Tcp(s) => s.read(&mut buf).await,
                    Held::Tls(s) => s.read(&mut buf).await,
                };
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(within, read).await.is_ok()
    }
}
