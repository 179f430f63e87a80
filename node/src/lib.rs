//! A Ponte node: imports the entity's records, normalises them by Italian rules, encodes them
//! with the federation's linkage secret, keeps everything in sled and publishes only encodings
//! and closed-vocabulary relationship metadata to the coordinator.
//!
//! Pure core: [`normalise`], [`encode`], [`import`] (rows → values), [`consent`] (scopes and
//! days), [`view`] (answers → printable values). Edges: [`store`] (sled),
//! [`client`] (tonic), and the CLI in `main.rs`. Clear personal data never leaves this crate's
//! process except on the operator's own terminal.

pub mod api;
pub mod client;
pub mod config;
pub mod consent;
pub mod credentials;
pub mod encode;
pub mod fhir;
pub mod import;
pub mod intake;
pub mod labels;
pub mod node;
pub mod normalise;
pub mod search;
pub mod secret;
pub mod store;
pub mod view;
