//! Wall-clock seam. Monotonic waits use `tokio::time` (pausable in tests); wall-clock stamps
//! (condition transition times, backoff against container finish times) come from a `Clock`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Time since the Unix epoch.
    fn now(&self) -> Duration;
}

#[derive(Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct FakeClock(Mutex<Duration>);

impl FakeClock {
    pub fn new(start: Duration) -> Self {
        Self(Mutex::new(start))
    }
    pub fn advance(&self, d: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += d;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.lock().map(|t| *t).unwrap_or_default()
    }
}

/// Converts a CRI nanosecond timestamp to the clock's representation (0 → None).
pub fn from_nanos(ns: i64) -> Option<Duration> {
    u64::try_from(ns).ok().filter(|n| *n > 0).map(Duration::from_nanos)
}
