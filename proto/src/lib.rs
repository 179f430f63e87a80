//! Ponte's wire contract and the few value types both sides must agree on byte for byte.
//!
//! - [`v1`]: the generated gRPC code of package `ponte.v1` (tonic / prost, compiled by protox);
//! - [`vocab`]: the closed vocabularies' text names and the default sensitivity tiers;
//! - [`limits`]: the bounds every receiver enforces;
//! - [`schema`]: the linkage schema and its canonical SHA-256 fingerprint;
//! - [`bits`]: Bloom-filter bit arrays and the Dice coefficient;
//! - [`identity`]: how a certificate names a node, a coordinator, a privacy officer or a researcher;
//! - [`pki`]: loading PEM files with errors that say what to fix;
//! - [`codec`]: the gRPC codec: prost, with malformed messages refused as INVALID_ARGUMENT.
//!
//! This crate knows nothing about the linkage secret: it cannot encode.

pub mod bits;
pub mod codec;
pub mod identity;
pub mod limits;
pub mod pki;
pub mod schema;
pub mod vocab;

/// Generated code of package `ponte.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ponte.v1");
}

/// Encoded `FileDescriptorSet` of the wire contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ponte_descriptor.bin"));

/// The constant notice carried by every who-else answer. It is the same whatever was or was not
/// withheld, so that nobody can infer from it that something was.
pub const ANSWER_NOTICE: &str = "Risposta limitata a quanto consentito dalla policy e dal consenso dell'interessato. \
Le corrispondenze 'possibile' sono da verificare. / Answer limited to what policy and consent allow; \
'possible' matches are to be verified.";
