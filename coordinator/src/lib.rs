//! The Ponte coordinator: links keyed encodings published by nodes and answers who-else
//! questions, over mutual TLS only.
//!
//! Pure core: [`model`] (checked values), [`linker`] (scoring, link graph, clusters), [`answer`]
//! (what a question may see), [`audit`] (the hash chain), [`scoring`] and [`estimate`] (the
//! matching model and its re-estimation on the federation's own encodings). Edges: [`storage`]
//! (sled), [`service`] (tonic, identity from certificates) and [`metrics`] (Prometheus names,
//! closed label sets, the plain-HTTP `/metrics` endpoint on axum). This crate does not depend on
//! the node's encoder and never receives the linkage secret: it cannot encode.

pub mod answer;
pub mod audit;
pub mod blocking;
pub mod config;
pub mod estimate;
pub mod kernel;
pub mod linker;
pub mod metrics;
pub mod model;
pub mod officer;
pub mod policy;
pub mod scoring;
pub mod service;
pub mod storage;
