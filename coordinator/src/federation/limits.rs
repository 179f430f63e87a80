//! Per-node rate limits and the disk-space guard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::FederationError;
use crate::config::{LimitsConfig, StorageConfig};

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Who-else questions and data-subject reports.
    Question,
    /// Audited writes: withdrawals, consents, revocations, obscuring, relationship updates.
    Write,
}

impl Class {
    fn what(self) -> &'static str {
        match self {
            Class::Question => "too many questions from this node",
            Class::Write => "too many withdrawals, consents or other audited changes from this node",
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per (node, class). Nodes are bounded by the federation's certificates.
pub struct RateLimiter {
    rates: HashMap<Class, (f64, f64)>,
    buckets: Mutex<HashMap<(String, Class), Bucket>>,
}

impl RateLimiter {
    pub fn new(cfg: &LimitsConfig) -> RateLimiter {
        let mut rates = HashMap::new();
        if cfg.questions_per_sec > 0 {
            rates.insert(Class::Question, (f64::from(cfg.questions_per_sec), f64::from(cfg.questions_burst.max(1))));
        }
        if cfg.writes_per_sec > 0 {
            rates.insert(Class::Write, (f64::from(cfg.writes_per_sec), f64::from(cfg.writes_burst.max(1))));
        }
        RateLimiter { rates, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one call of `class` from `node`'s bucket, or says when to retry. A refused call
    /// costs nothing.
    pub fn take(&self, node: &str, class: Class) -> Result<(), FederationError> {
        let Some(&(rate, burst)) = self.rates.get(&class) else { return Ok(()) };
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let b = buckets.entry((node.to_string(), class)).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let retry_after_ms = (((1.0 - b.tokens) / rate) * 1000.0).ceil() as u64;
            Err(FederationError::RateLimited { what: format!("{} (at most {rate} per second, {burst} at once)", class.what()), retry_after_ms })
        }
    }
}

/// Free space on the data directory's disk: writes stop below a reserve, and a ballast file is
/// given up when the disk fills anyway (see `config::StorageConfig`).
pub struct DiskGuard {
    dir: PathBuf,
    ballast: PathBuf,
    cfg: StorageConfig,
    state: Mutex<GuardState>,
}

struct GuardState {
    checked: Option<Instant>,
    free: u64,
}

/// How long a free-space reading is reused (a reading is a `statvfs`, about a microsecond: the
/// guard reads afresh for every write and every audit group, so that a disk filled from outside
/// is seen before the next write).
const FRESH: Duration = Duration::ZERO;
/// Below this much free space the ballast is given up (questions must still be audited).
pub const AUDIT_LOW_BYTES: u64 = 4 * 1024 * 1024;

impl DiskGuard {
    pub fn new(dir: &Path, cfg: StorageConfig) -> DiskGuard {
        DiskGuard { dir: dir.to_path_buf(), ballast: dir.join("ballast"), cfg, state: Mutex::new(GuardState { checked: None, free: u64::MAX }) }
    }

    /// Free bytes on the disk, read at most every [`FRESH`].
    pub fn free(&self) -> u64 {
        let mut s = self.state.lock();
        if s.checked.is_none_or(|t| t.elapsed() >= FRESH) {
            s.free = fs2::available_space(&self.dir).unwrap_or(u64::MAX);
            s.checked = Some(Instant::now());
        }
        s.free
    }

    fn forget_reading(&self) {
        self.state.lock().checked = None;
    }

    /// Whether the ballast file is in place.
    pub fn ballast_present(&self) -> bool {
        self.cfg.ballast_bytes == 0 || std::fs::metadata(&self.ballast).is_ok_and(|m| m.len() >= self.cfg.ballast_bytes)
    }

    /// Refuses a write when the disk is nearly full (or the ballast is given up), saying so.
    pub fn check_write(&self) -> Result<(), FederationError> {
        let free = self.free();
        if free < self.cfg.write_reserve_bytes || !self.ballast_present() {
            return Err(FederationError::DiskFull(format!(
                "the coordinator's disk is nearly full ({} MiB free; writes need {} MiB kept free): publications, withdrawals and consents are refused and stay queued at the node until space is freed; questions are still answered",
                free / (1024 * 1024),
                self.cfg.write_reserve_bytes / (1024 * 1024)
            )));
        }
        Ok(())
    }

    /// Before audit writes: gives up the ballast when the disk is about to fill, so that
    /// questions can still be audited. Returns whether it did.
    pub fn before_audit(&self) -> bool {
        if self.cfg.ballast_bytes > 0 && self.free() < AUDIT_LOW_BYTES && self.release() {
            return true;
        }
        false
    }

    /// Gives up the ballast (the disk filled). Returns whether there was one.
    pub fn release(&self) -> bool {
        let released = std::fs::remove_file(&self.ballast).is_ok();
        if released {
            tracing::error!(
                freed_mib = self.cfg.ballast_bytes / (1024 * 1024),
                "the disk is full: ballast released so that questions can still be audited; writes are refused until space is freed"
            );
            self.forget_reading();
        }
        released
    }

    /// Makes the ballast when there is room for it and the write reserve; returns whether it is
    /// in place.
    pub fn upkeep(&self) -> bool {
        if self.ballast_present() {
            return true;
        }
        self.forget_reading();
        if self.free() < self.cfg.write_reserve_bytes.saturating_add(self.cfg.ballast_bytes) {
            return false;
        }
        let made = std::fs::File::create(&self.ballast).and_then(|f| {
            fs2::FileExt::allocate(&f, self.cfg.ballast_bytes)?;
            f.sync_all()
        });
        self.forget_reading();
        match made {
            Ok(()) => {
                tracing::info!(mib = self.cfg.ballast_bytes / (1024 * 1024), "ballast in place: writes are accepted again");
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.ballast);
                tracing::warn!(error = %e, "the ballast could not be made; writes stay refused");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_over_its_rate_is_refused_with_when_to_retry_and_others_are_not() {
        let cfg = LimitsConfig { questions_per_sec: 10, questions_burst: 3, ..LimitsConfig::default() };
        let r = RateLimiter::new(&cfg);
        for _ in 0..3 {
            r.take("a", Class::Question).unwrap();
        }
        match r.take("a", Class::Question) {
            Err(FederationError::RateLimited { retry_after_ms, .. }) => assert!((1..=100).contains(&retry_after_ms), "{retry_after_ms}"),
            other => panic!("{other:?}"),
        }
        r.take("b", Class::Question).unwrap();
        r.take("a", Class::Write).unwrap();
        std::thread::sleep(Duration::from_millis(120));
        r.take("a", Class::Question).unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let cfg = LimitsConfig { questions_per_sec: 0, ..LimitsConfig::default() };
        let r = RateLimiter::new(&cfg);
        for _ in 0..100_000 {
            r.take("a", Class::Question).unwrap();
        }
    }

    #[test]
    fn the_ballast_is_made_given_up_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path(), StorageConfig { write_reserve_bytes: 1, ballast_bytes: 1024 * 1024 });
        assert!(g.check_write().is_err(), "no ballast yet: writes wait for it");
        assert!(g.upkeep());
        g.check_write().unwrap();
        assert_eq!(std::fs::metadata(dir.path().join("ballast")).unwrap().len(), 1024 * 1024);
        assert!(g.release());
        assert!(matches!(g.check_write(), Err(FederationError::DiskFull(m)) if m.contains("questions are still answered")));
        assert!(g.upkeep());
        g.check_write().unwrap();
    }
}
