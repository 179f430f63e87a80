//! Ponte's hardened TLS listener: HTTP/1.1 and HTTP/2 over rustls for any tower service, shared
//! by the node's HTTPS API and the coordinator's gRPC server.
//!
//! A [`Listener`] accepts TCP connections, performs the TLS handshake with the caller's
//! [`rustls::ServerConfig`] (so the caller decides whether a client certificate is required,
//! optional or refused, and which CA verifies it), and serves each connection with hyper's
//! automatic HTTP/1.1 / HTTP/2 builder, calling the caller's [`tower::Service`] for every request.
//!
//! # What it guarantees
//!
//! Every bound is in one [`Limits`] value (defaults documented there with their reason):
//!
//! - **Latency.** `TCP_NODELAY` is set on every accepted socket, so a small answer written in
//!   several pieces (an HTTP/2 HEADERS frame, then DATA, then trailers) is not held back ~40 ms by
//!   Nagle's algorithm waiting for a delayed ACK.
//! - **Nothing waits for ever.** The TLS handshake must finish within
//!   [`Limits::handshake_timeout`]; HTTP/1 request headers within
//!   [`Limits::header_read_timeout`]; each frame of a request body within
//!   [`Limits::body_idle_timeout`] of the previous one (per-frame idleness, not total time: a
//!   long-lived gRPC stream that keeps sending lives on, a trickled body is cut with
//!   [`BodyError::Idle`]); a connection with no request in flight for
//!   [`Limits::idle_timeout`] is closed — HTTP/1 keep-alive and HTTP/2 alike, including an HTTP/2
//!   connection that sent its preface and nothing else. HTTP/2 connections are pinged every
//!   [`Limits::keepalive_interval`] and closed when a ping is not answered within
//!   [`Limits::keepalive_timeout`]. At most [`Limits::max_concurrent_streams`] streams per
//!   HTTP/2 connection, at most [`Limits::max_header_bytes`] of headers per request.
//! - **Idle connections cannot lock anybody out.** At most [`Limits::max_connections`]
//!   connections in total and [`Limits::max_connections_per_ip`] per peer address. A newcomer
//!   over a limit does not get refused while some connection is idle: the least recently active
//!   connection that has no request in flight — idle, or still in its TLS handshake — is closed
//!   to make room (among the newcomer's own address first when the per-address limit is the one
//!   reached). Only when every connection counted against the limit is busy with a request does
//!   the newcomer wait, at most [`Limits::admission_wait`] and with at most
//!   [`Limits::max_waiting`] others, for one to become idle or close; otherwise it is closed
//!   unanswered. A connection with a request in flight is never evicted.
//! - **Who is calling.** Every request carries a [`PeerInfo`] in its extensions: the remote
//!   address and the client certificate chain that rustls verified (empty when the client sent
//!   none, which only a configuration allowing unauthenticated clients lets through). An auth
//!   layer reads it with `request.extensions().get::<PeerInfo>()`.
//! - **Graceful shutdown.** When the `shutdown` future given to [`Listener::serve`] resolves,
//!   the listener stops accepting, asks every connection to finish (HTTP/2 GOAWAY, HTTP/1 close
//!   after the current response) and waits at most [`Limits::shutdown_grace`] before dropping
//!   the rest.
//!
//! Logs: evictions, refusals and timeouts at `debug`, with counts only — never an address, a
//! certificate or anything from a request.
//!
//! # Using it
//!
//! The service receives `http::Request<`[`Body`]`>` (the request body with the idle timeout) and
//! may answer with any body whose data is [`bytes::Bytes`]. An axum `Router` and a tonic
//! `Routes` both fit:
//!
//! ```ignore
//! let grpc = tonic::service::Routes::new(health).add_service(federation).prepare();
//! let listener = ponte_net::Listener::bind(addr, tls_config, ponte_net::Limits::default()).await?;
//! listener.serve(AuthLayer.layer(grpc), shutdown).await;
//! ```
//!
//! The TLS configuration's ALPN list is set to `h2`, `http/1.1` when it is empty (gRPC clients
//! require `h2` to be negotiated).

mod body;
mod limits;
mod server;
mod table;
mod tls;

pub use body::{Body, BodyError, ResponseBody, ResponseError};
pub use limits::Limits;
pub use server::{ListenError, Listener, PeerInfo};
pub use tls::server_config;

/// The error type services may return; it becomes a reset stream (HTTP/2) or a closed
/// connection (HTTP/1).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
