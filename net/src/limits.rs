//! Every bound of the listener, in one value.

use std::time::Duration;

/// The listener's bounds. [`Limits::default`] suits both the node's API and the coordinator;
/// each default says why. [`Limits::check`] refuses values that would disable a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, in total. Default 256: a node's API serves one entity's systems
    /// and page users, the coordinator a federation's nodes and officers; each client needs one
    /// or a few connections (HTTP/2 multiplexes), and 256 TLS connections cost well under 20 MiB.
    pub max_connections: usize,
    /// Connections open at once from one peer address. Default 64: an integrated system's
    /// backend keeps a small pool from one address; below `max_connections` so that one address
    /// cannot take every slot with busy connections.
    pub max_connections_per_ip: usize,
    /// Newcomers waiting for a slot while every connection is busy. Default 64; beyond it a
    /// newcomer is closed at once.
    pub max_waiting: usize,
    /// How long a newcomer waits for a slot while every connection is busy. Default 2 s: longer
    /// than a typical request, short enough that a client sees a refusal rather than a hang.
    pub admission_wait: Duration,
    /// Time allowed for the TLS handshake. Default 10 s: a handshake takes well under a second
    /// on any reasonable network; a peer that opens sockets and sends nothing is closed.
    pub handshake_timeout: Duration,
    /// Time allowed for an HTTP/1 request's headers to arrive. Default 10 s (slowloris).
    pub header_read_timeout: Duration,
    /// Longest silence between two frames of a request body. Default 30 s: a client that is
    /// sending keeps sending; a gRPC stream of publish batches may last for hours as long as
    /// batches keep coming, while a body trickled slower than this is cut.
    pub body_idle_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/1 keep-alive and
    /// HTTP/2 alike). Default 60 s: clients reconnect cheaply, while an idle connection holds a
    /// slot that a waiting client could use.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive ping interval. Default 30 s: a peer that vanished during a long
    /// request (a stream) is noticed within a minute.
    pub keepalive_interval: Duration,
    /// How long an HTTP/2 ping may go unanswered before the connection is closed. Default 10 s.
    pub keepalive_timeout: Duration,
    /// HTTP/2 streams per connection. Default 64: enough for a client's parallel requests,
    /// bounded so that one connection cannot start thousands of handlers.
    pub max_concurrent_streams: u32,
    /// Largest request head: HTTP/1 read buffer and HTTP/2 header list. Default 64 KiB; no
    /// legitimate request of Ponte's comes near it.
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections to finish. Default 5 s.
    pub shutdown_grace: Duration,
    /// How long a connection must have been without activity before a newcomer may evict it.
    /// Default 1 s: a client between two requests (idle for microseconds) is never closed under
    /// it — the newcomer waits for a slot instead — while a connection left idle or half-open by
    /// a peer that holds slots is fair game after a second.
    pub evictable_after: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_connections_per_ip: 64,
            max_waiting: 64,
            admission_wait: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 64,
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(5),
            evictable_after: Duration::from_secs(1),
        }
    }
}

/// Most connections a listener may be configured for.
pub const MAX_CONNECTIONS: usize = 65_536;
/// Smallest header buffer hyper accepts for HTTP/1.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;
/// Largest header buffer allowed.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

impl Limits {
    /// Refuses values that would switch a bound off or could not work, naming the field and
    /// the allowed range.
    pub fn check(&self) -> Result<(), String> {
        let range = |name: &str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi { Err(format!("{name} = {v}: choose between {lo} and {hi}")) } else { Ok(()) }
        };
        range("max_connections", self.max_connections, 1, MAX_CONNECTIONS)?;
        range("max_connections_per_ip", self.max_connections_per_ip, 1, self.max_connections)?;
        range("max_waiting", self.max_waiting, 0, MAX_CONNECTIONS)?;
        range("max_concurrent_streams", self.max_concurrent_streams as usize, 1, 10_000)?;
        range("max_header_bytes", self.max_header_bytes, MIN_HEADER_BYTES, MAX_HEADER_BYTES)?;
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("body_idle_timeout", self.body_idle_timeout),
            ("idle_timeout", self.idle_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ] {
            if d.is_zero() || d > Duration::from_secs(24 * 3600) {
                return Err(format!("{name} = {d:?}: choose a duration above zero and at most a day"));
            }
        }
        if self.admission_wait > Duration::from_secs(60) {
            return Err(format!("admission_wait = {:?}: at most 60 s", self.admission_wait));
        }
        if self.evictable_after > self.idle_timeout {
            return Err(format!("evictable_after = {:?}: at most idle_timeout ({:?})", self.evictable_after, self.idle_timeout));
        }
        if self.shutdown_grace > Duration::from_secs(300) {
            return Err(format!("shutdown_grace = {:?}: at most 300 s", self.shutdown_grace));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_switched_off_bounds_are_refused() {
        assert_eq!(Limits::default().check(), Ok(()));
        let e = Limits { max_connections: 0, ..Limits::default() }.check().unwrap_err();
        assert!(e.starts_with("max_connections = 0"), "{e}");
        let e = Limits { max_connections_per_ip: 300, ..Limits::default() }.check().unwrap_err();
        assert!(e.contains("between 1 and 256"), "{e}");
        let e = Limits { idle_timeout: Duration::ZERO, ..Limits::default() }.check().unwrap_err();
        assert!(e.starts_with("idle_timeout"), "{e}");
        let e = Limits { max_header_bytes: 100, ..Limits::default() }.check().unwrap_err();
        assert!(e.starts_with("max_header_bytes"), "{e}");
    }
}
