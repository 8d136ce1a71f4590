//! The memory store's clock: the system clock, or a manual one that tests move by hand.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{add_duration, truncate_millis};
use tokio::sync::watch;

/// The clock every time comparison of a [`MemoryStore`](crate::MemoryStore) uses.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// A signal that fires when the clock jumps (a manual clock that is moved); `None` for a
    /// clock that only runs forward with real time.
    fn jumps(&self) -> Option<watch::Receiver<()>> {
        None
    }
}

/// The system clock (the default): the wall time when it was made, counted on with the
/// monotonic clock, so a step of the machine's wall clock (NTP, a resumed virtual machine) moves
/// no lease end and makes no job due early. (During a suspend the monotonic clock stops, and so
/// does this one.)
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    wall: DateTime<Utc>,
    at: std::time::Instant,
}

impl SystemClock {
    /// A clock that reads the wall time now, and counts on from it.
    pub fn new() -> Self {
        SystemClock {
            wall: Utc::now(),
            at: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        add_duration(self.wall, self.at.elapsed())
    }
}

/// A clock that stands still until it is moved, for tests of time-dependent behaviour: move it
/// with [`advance`](ManualClock::advance) or [`set`](ManualClock::set) and the store sees the new
/// time at once (idle workers are woken when jobs become due).
///
/// ```
/// use std::time::Duration;
/// use dogs_memory::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2030-01-01T00:00:00Z".parse().unwrap());
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now().to_rfc3339(), "2030-01-01T00:01:30+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    jumped: watch::Sender<()>,
}

impl ManualClock {
    /// A clock that reads `start` until moved.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                now: Mutex::new(truncate_millis(start)),
                jumped: watch::Sender::new(()),
            }),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.update(|now| add_duration(now, by));
    }

    /// Sets the clock to `at` (also backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        self.update(|_| at);
    }

    fn update(&self, change: impl FnOnce(DateTime<Utc>) -> DateTime<Utc>) {
        {
            let mut now = self
                .inner
                .now
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *now = truncate_millis(change(*now));
        }
        self.inner.jumped.send_replace(());
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .inner
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn jumps(&self) -> Option<watch::Receiver<()>> {
        Some(self.inner.jumped.subscribe())
    }
}
