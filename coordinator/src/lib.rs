//! The Ponte coordinator: links keyed encodings published by nodes and answers who-else
//! questions, over mutual TLS only.
//!
//! Pure core: [`model`] (checked values and the shared vocabulary), [`linker`] (blocking and
//! scoring), [`graph`] (links and person clusters, with their bounds), [`answer`] (what a
//! question may see), [`audit`] (the hash chain), [`scoring`] and [`estimate`] (the matching
//! model and its re-estimation on the federation's own encodings), [`policy`]. The federation
//! core, [`federation`], puts them together with storage under a domain error and no transport.
//! Edges: [`storage`] (sled), [`server`] (tonic: identity from certificates, adapters, wiring)
//! and [`metrics`] (Prometheus names, closed label sets, the plain-HTTP `/metrics` endpoint). This crate does not depend on
//! the node's encoder and never receives the linkage secret: it cannot encode.

pub mod answer;
pub mod audit;
pub mod blocking;
pub mod config;
pub mod estimate;
pub mod federation;
pub mod graph;
pub mod kernel;
pub mod linker;
pub mod metrics;
pub mod model;
pub mod officer;
pub mod policy;
pub mod scoring;
pub mod server;
pub mod storage;
