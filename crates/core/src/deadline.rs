//! A sync's deadline: when the process running it must be done (the Lambda invocation's deadline,
//! or `hubsync serve --slice`), and the decision to stop at the next safe point so that it is.
//!
//! A sync that cannot finish in time does not run until it is killed (and redelivered, and killed
//! again): once [`SLICE_STOP_PERCENT`] of its time is spent, it stops between files, records how far
//! it got and queues its own continuation (see [`crate::sync`]). The rest of the time is left for
//! the files in flight, recording the resume point and queueing the continuation.
//!
//! Time is read from a [`Clock`], so tests decide how fast it passes instead of sleeping.
//!
//! A deadline may also carry a token that abandons the sync at once ([`Deadline::abandoned_by`]:
//! `hubsync sync --slice` after a second Ctrl-C): the work in hand is dropped, but the lease is
//! still released, so the next sync does not wait for it to expire.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

/// The share of its time after which a sync stops at its next safe point, in percent.
pub const SLICE_STOP_PERCENT: i32 = 80;

/// Where the time comes from: the system clock, or a test's.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Whether a slice that started at `started` and must end at `deadline` is spent at `now`: at
/// least [`SLICE_STOP_PERCENT`] of it has passed (a slice with no time at all is spent at once).
pub fn slice_spent(started: DateTime<Utc>, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let total = deadline.signed_duration_since(started);
    if total <= TimeDelta::zero() {
        return true;
    }
    now.signed_duration_since(started) * 100 >= total * SLICE_STOP_PERCENT
}

/// When the work in hand must be done, read against a clock.
#[derive(Debug, Clone)]
pub struct Deadline {
    started: DateTime<Utc>,
    at: DateTime<Utc>,
    clock: Clock,
    abandon: Option<CancellationToken>,
}

impl Deadline {
    /// Ends at `at`; the slice starts now.
    pub fn at(at: DateTime<Utc>, clock: Clock) -> Self {
        Self {
            started: clock.now(),
            at,
            clock,
            abandon: None,
        }
    }

    /// Ends `length` from now.
    pub fn after(length: Duration, clock: Clock) -> Self {
        let started = clock.now();
        Self {
            started,
            at: started + TimeDelta::from_std(length).unwrap_or(TimeDelta::MAX),
            clock,
            abandon: None,
        }
    }

    /// The Lambda invocation's deadline (`Context::deadline`, milliseconds since the epoch).
    pub fn from_epoch_millis(millis: u64, clock: Clock) -> Self {
        let at = i64::try_from(millis)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self::at(at, clock)
    }

    pub fn at_time(&self) -> DateTime<Utc> {
        self.at
    }

    /// Whether the work should stop at its next safe point ([`slice_spent`]).
    pub fn is_near(&self) -> bool {
        slice_spent(self.started, self.at, self.clock.now())
    }

    /// The same deadline, and the sync abandoned at once when `token` is cancelled: its work in
    /// hand (files in flight, the resume point) is dropped, its lease released, and it ends with
    /// [`SyncError::Abandoned`](crate::sync::SyncError::Abandoned).
    pub fn abandoned_by(self, token: CancellationToken) -> Self {
        Self {
            abandon: Some(token),
            ..self
        }
    }

    /// Completes once the sync is to be abandoned (never without a token).
    pub(crate) async fn abandoned(&self) {
        match &self.abandon {
            Some(token) => token.cancelled().await,
            None => std::future::pending().await,
        }
    }
}

/// How `hubsync serve --slice` cuts syncs: each gets `length` from its start.
#[derive(Debug, Clone)]
pub struct Slicing {
    pub length: Duration,
    pub clock: Clock,
}

impl Slicing {
    /// Slices of `length` on the system clock.
    pub fn new(length: Duration) -> Self {
        Self {
            length,
            clock: Clock::system(),
        }
    }

    /// The deadline of a sync starting now.
    pub fn deadline(&self) -> Deadline {
        Deadline::after(self.length, self.clock.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn a_slice_is_spent_from_eighty_percent_of_its_time() {
        let (started, deadline) = (t(0), t(2_000));

        assert!(!slice_spent(started, deadline, t(0)));
        assert!(!slice_spent(started, deadline, t(1_599)));
        assert!(slice_spent(started, deadline, t(1_600)));
        assert!(slice_spent(started, deadline, t(5_000)));
    }

    #[test]
    fn a_slice_without_time_is_spent_at_once() {
        assert!(slice_spent(t(10), t(10), t(10)));
        assert!(slice_spent(t(10), t(0), t(10)));
    }

    #[test]
    fn a_deadline_reads_its_clock_from_the_moment_it_is_made() {
        let now = Arc::new(std::sync::Mutex::new(t(0)));
        let clock = {
            let now = now.clone();
            Clock::new(move || *now.lock().unwrap())
        };
        let deadline = Deadline::after(Duration::from_secs(10), clock);

        let fresh = deadline.is_near();
        *now.lock().unwrap() = t(7_999);
        let before = deadline.is_near();
        *now.lock().unwrap() = t(8_000);
        let after = deadline.is_near();

        assert_eq!((fresh, before, after), (false, false, true));
        assert_eq!(deadline.at_time(), t(10_000));
    }

    #[test]
    fn a_lambda_deadline_is_read_from_epoch_milliseconds() {
        let deadline = Deadline::from_epoch_millis(1_800_000_002_000, Clock::new(|| t(0)));

        assert_eq!(deadline.at_time(), t(2_000));
        assert!(!deadline.is_near());
    }
}
