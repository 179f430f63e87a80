//! The table of open connections: admission against the limits, eviction of the least
//! recently active idle connection, and the in-flight count of each connection.
//!
//! Which connection to evict is decided by [`choose`], a pure function over a snapshot; the
//! table applies the decision under its lock, so admission and eviction are atomic. A
//! connection's state is one atomic: the number of requests in flight, or [`EVICTED`]. Eviction
//! moves it from 0 to [`EVICTED`] with a compare-and-swap, and a request starts only on a
//! connection that is not evicted, so a connection with a request in flight is never evicted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::Limits;

/// The state value of an evicted connection.
const EVICTED: usize = usize::MAX;

/// One open connection's place in the table.
pub(crate) struct Slot {
    id: u64,
    ip: IpAddr,
    /// Requests in flight, or [`EVICTED`].
    state: AtomicUsize,
    /// Milliseconds since the table's start at the last request start or end (or the accept).
    last_active_ms: AtomicU64,
    evict: Notify,
    epoch: Instant,
    changed: Arc<Notify>,
}

impl Slot {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Resolves once the connection has been evicted (it must then close at once).
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }

    pub(crate) fn is_busy(&self) -> bool {
        let s = self.state.load(Ordering::Acquire);
        s != 0 && s != EVICTED
    }

    /// When the connection becomes too idle to keep, if nothing happens before: its last
    /// activity plus `idle`; while a request is in flight, `idle` from now (checked again then).
    pub(crate) fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        if self.is_busy() {
            return now + idle;
        }
        let since = Duration::from_millis(self.now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed)));
        now + idle.saturating_sub(since)
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.is_busy() {
            return Duration::ZERO;
        }
        Duration::from_millis(self.now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed)))
    }
}

/// A request in flight on a connection; ends (and marks the connection active) when dropped.
pub(crate) struct RequestGuard {
    slot: Arc<Slot>,
}

impl RequestGuard {
    /// Counts a request in flight, unless the connection was evicted.
    pub(crate) fn start(slot: &Arc<Slot>) -> Option<RequestGuard> {
        let mut cur = slot.state.load(Ordering::Acquire);
        loop {
            if cur == EVICTED {
                return None;
            }
            match slot.state.compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        slot.touch();
        Some(RequestGuard { slot: slot.clone() })
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.slot.touch();
        if self.slot.state.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Idle now: a newcomer waiting for room may evict it.
            self.slot.changed.notify_waiters();
        }
    }
}

/// What admitting a newcomer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Room under both limits.
    Admit,
    /// Close this connection first (then decide again).
    Evict(u64),
    /// Every connection that counts against the limit reached is busy.
    Full,
}

/// A connection as [`choose`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub id: u64,
    pub ip: IpAddr,
    pub busy: bool,
    pub last_active_ms: u64,
    /// Milliseconds since its last activity.
    pub idle_ms: u64,
}

/// Decides how to admit a newcomer from `ip`: when its address is at
/// `max_connections_per_ip`, the least recently active idle connection of that address is
/// evicted (none → [`Decision::Full`]); otherwise, when the total is at `max_connections`, the
/// least recently active idle connection of any address (none → [`Decision::Full`]); otherwise
/// [`Decision::Admit`]. Ties are broken by the older connection (lower id). Busy connections, and
/// idle ones active less than [`Limits::evictable_after`] ago (a client between two requests),
/// are never chosen.
pub(crate) fn choose(conns: &[Candidate], ip: IpAddr, limits: &Limits) -> Decision {
    let min_idle = limits.evictable_after.as_millis() as u64;
    let lru = |same_ip: bool| {
        conns
            .iter()
            .filter(|c| !c.busy && c.idle_ms >= min_idle && (!same_ip || c.ip == ip))
            .min_by_key(|c| (c.last_active_ms, c.id))
            .map(|c| Decision::Evict(c.id))
            .unwrap_or(Decision::Full)
    };
    if conns.iter().filter(|c| c.ip == ip).count() >= limits.max_connections_per_ip {
        return lru(true);
    }
    if conns.len() >= limits.max_connections {
        return lru(false);
    }
    Decision::Admit
}

#[derive(Default)]
struct State {
    next_id: u64,
    conns: HashMap<u64, Arc<Slot>>,
}

/// The open connections of one listener.
pub(crate) struct Table {
    state: Mutex<State>,
    /// Notified when a connection closes or becomes idle.
    pub(crate) changed: Arc<Notify>,
    epoch: Instant,
    limits: Limits,
    waiting: AtomicUsize,
}

/// Why a newcomer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every slot busy and too many newcomers already waiting.
    TooManyWaiting,
    /// Every slot stayed busy for the whole admission wait.
    StillFull,
}

impl Table {
    pub(crate) fn new(limits: Limits) -> Table {
        Table { state: Mutex::new(State::default()), changed: Arc::new(Notify::new()), epoch: Instant::now(), limits, waiting: AtomicUsize::new(0) }
    }

    pub(crate) fn len(&self) -> usize {
        self.state.lock().map(|s| s.conns.len()).unwrap_or(0)
    }

    /// Admits a newcomer now if the limits allow it, evicting idle connections as [`choose`]
    /// says; `None` when every connection that counts is busy.
    pub(crate) fn try_admit(&self, ip: IpAddr) -> Option<Arc<Slot>> {
        let ip = ip.to_canonical();
        let Ok(mut st) = self.state.lock() else { return None };
        // Each round removes one connection, so this ends; the bound is a guard.
        for _ in 0..=self.limits.max_connections + 1 {
            let now = self.epoch.elapsed().as_millis() as u64;
            let snapshot: Vec<Candidate> = st
                .conns
                .values()
                .map(|s| {
                    let last_active_ms = s.last_active_ms.load(Ordering::Relaxed);
                    Candidate { id: s.id, ip: s.ip, busy: s.state.load(Ordering::Acquire) != 0, last_active_ms, idle_ms: now.saturating_sub(last_active_ms) }
                })
                .collect();
            match choose(&snapshot, ip, &self.limits) {
                Decision::Admit => {
                    st.next_id += 1;
                    let now = self.epoch.elapsed().as_millis() as u64;
                    let slot = Arc::new(Slot {
                        id: st.next_id,
                        ip,
                        state: AtomicUsize::new(0),
                        last_active_ms: AtomicU64::new(now),
                        evict: Notify::new(),
                        epoch: self.epoch,
                        changed: self.changed.clone(),
                    });
                    st.conns.insert(slot.id, slot.clone());
                    return Some(slot);
                }
                Decision::Evict(id) => {
                    let victim = st.conns.get(&id).cloned()?;
                    // Only an idle connection may be evicted; one that just started a request
                    // stays, and the next round looks again.
                    if victim.state.compare_exchange(0, EVICTED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                        st.conns.remove(&id);
                        victim.evict.notify_one();
                        tracing::debug!(open = st.conns.len(), "limit reached: evicted the least recently active idle connection");
                    }
                }
                Decision::Full => return None,
            }
        }
        None
    }

    /// Admits a newcomer, waiting (bounded by [`Limits::admission_wait`] and
    /// [`Limits::max_waiting`]) while every connection that counts is busy.
    pub(crate) async fn admit(&self, ip: IpAddr) -> Result<Arc<Slot>, Refused> {
        if let Some(s) = self.try_admit(ip) {
            return Ok(s);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::TooManyWaiting);
        }
        let deadline = tokio::time::Instant::now() + self.limits.admission_wait;
        let result = loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(s) = self.try_admit(ip) {
                break Ok(s);
            }
            // Woken when a connection closes or turns idle, and at least every
            // `evictable_after`, when idle connections become evictable by their age alone.
            let tick = tokio::time::Instant::now() + self.limits.evictable_after.max(Duration::from_millis(10));
            if tokio::time::timeout_at(deadline.min(tick), notified).await.is_err() && tokio::time::Instant::now() >= deadline {
                break self.try_admit(ip).ok_or(Refused::StillFull);
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        result
    }

    /// Removes a connection that ended (no effect if it was evicted) and wakes waiters.
    pub(crate) fn remove(&self, slot: &Slot) {
        if let Ok(mut st) = self.state.lock() {
            st.conns.remove(&slot.id);
        }
        self.changed.notify_waiters();
    }
}

/// Removes its connection from the table when the connection's task ends, however it ends.
pub(crate) struct Registration {
    pub(crate) table: Arc<Table>,
    pub(crate) slot: Arc<Slot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.remove(&self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn c(id: u64, ip_last: u8, busy: bool, last_active_ms: u64) -> Candidate {
        Candidate { id, ip: ip(ip_last), busy, last_active_ms, idle_ms: 10_000 - last_active_ms }
    }

    fn limits(total: usize, per_ip: usize) -> Limits {
        Limits { max_connections: total, max_connections_per_ip: per_ip, ..Limits::default() }
    }

    #[test]
    fn a_connection_active_less_than_a_second_ago_is_never_evicted() {
        let fresh = Candidate { id: 1, ip: ip(1), busy: false, last_active_ms: 9_800, idle_ms: 200 };
        assert_eq!(choose(&[fresh], ip(2), &limits(1, 1)), Decision::Full, "a client between two requests stays");
        let stale = Candidate { idle_ms: 1_500, ..fresh };
        assert_eq!(choose(&[stale], ip(2), &limits(1, 1)), Decision::Evict(1));
    }

    #[test]
    fn under_the_limits_everyone_is_admitted() {
        assert_eq!(choose(&[], ip(1), &limits(1, 1)), Decision::Admit);
        assert_eq!(choose(&[c(1, 1, true, 5)], ip(2), &limits(2, 1)), Decision::Admit);
    }

    #[test]
    fn at_the_total_limit_the_least_recently_active_idle_connection_goes() {
        let conns = [c(1, 1, true, 0), c(2, 2, false, 30), c(3, 3, false, 10), c(4, 4, false, 20)];
        // Connection 1 is the oldest activity but busy: never chosen.
        assert_eq!(choose(&conns, ip(9), &limits(4, 4)), Decision::Evict(3));
        // Ties: the older connection.
        let tie = [c(7, 1, false, 10), c(5, 2, false, 10)];
        assert_eq!(choose(&tie, ip(9), &limits(2, 2)), Decision::Evict(5));
    }

    #[test]
    fn at_the_per_address_limit_only_that_address_loses_a_connection() {
        // Address 1 holds two (one busy); address 2's idle connection is older, but address 1
        // is the one at its limit.
        let conns = [c(1, 1, true, 0), c(2, 2, false, 1), c(3, 1, false, 50)];
        assert_eq!(choose(&conns, ip(1), &limits(10, 2)), Decision::Evict(3));
        // A newcomer from address 2 is under both limits.
        assert_eq!(choose(&conns, ip(2), &limits(10, 2)), Decision::Admit);
    }

    #[test]
    fn when_everything_that_counts_is_busy_the_newcomer_is_not_admitted() {
        let conns = [c(1, 1, true, 0), c(2, 1, true, 1)];
        assert_eq!(choose(&conns, ip(1), &limits(10, 2)), Decision::Full);
        assert_eq!(choose(&conns, ip(2), &limits(2, 2)), Decision::Full);
        // Address 1 at its limit with only busy connections: an idle one elsewhere does not help.
        let conns = [c(1, 1, true, 0), c(2, 2, false, 1)];
        assert_eq!(choose(&conns, ip(1), &limits(10, 1)), Decision::Full);
    }

    #[tokio::test]
    async fn the_table_evicts_in_order_never_a_busy_one_and_lets_a_waiter_in_when_one_turns_idle() {
        let limits = Limits { max_connections: 3, max_connections_per_ip: 3, admission_wait: Duration::from_secs(5), evictable_after: Duration::ZERO, ..Limits::default() };
        let table = Arc::new(Table::new(limits));
        let a = table.try_admit(ip(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = table.try_admit(ip(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c3 = table.try_admit(ip(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        // A request on `a` makes it the most recently active; `b` is now the oldest idle one.
        drop(RequestGuard::start(&a).unwrap());
        let d = table.try_admit(ip(1)).unwrap();
        assert!(b.state.load(Ordering::Acquire) == EVICTED && table.len() == 3);
        assert!(RequestGuard::start(&b).is_none(), "no request starts on an evicted connection");
        // Everything busy: nobody is evicted, a newcomer waits until one turns idle.
        let busy: Vec<RequestGuard> = [&a, &c3, &d].iter().map(|s| RequestGuard::start(s).unwrap()).collect();
        assert!(table.try_admit(ip(1)).is_none());
        let t = table.clone();
        let waiter = tokio::spawn(async move { t.admit(ip(1)).await.map(|s| s.id) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "waits while every connection is busy");
        drop(busy);
        let admitted = tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap().unwrap();
        assert!(admitted > d.id);
        // The one that went idle first among a, c3, d (dropped in that order) was evicted.
        assert_eq!(a.state.load(Ordering::Acquire), EVICTED);
        assert_eq!(table.len(), 3);
    }

    #[tokio::test]
    async fn a_newcomer_is_refused_after_the_admission_wait_and_beyond_the_waiting_bound() {
        let limits = Limits { max_connections: 1, max_connections_per_ip: 1, admission_wait: Duration::from_millis(200), max_waiting: 1, ..Limits::default() };
        let table = Arc::new(Table::new(limits));
        let a = table.try_admit(ip(1)).unwrap();
        let _busy = RequestGuard::start(&a).unwrap();
        let t = table.clone();
        let first = tokio::spawn(async move { t.admit(ip(2)).await.err() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(table.admit(ip(3)).await.err(), Some(Refused::TooManyWaiting));
        assert_eq!(first.await.unwrap(), Some(Refused::StillFull));
    }
}
