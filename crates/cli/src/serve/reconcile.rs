//! The reconcile of `hubsync serve`: every `--reconcile-every` (15 minutes by default; `0` or `off`
//! turns it off), the core reconcile ([`hubsync_core::reconcile`], the same the sync function runs
//! on its schedule) queues a sync on the SQLite queue for each registered repository whose default
//! branch is ahead of its cursor, so a push whose webhook delivery was lost is replicated within
//! one period, without anyone pushing again. The workers then sync it like any push.
//!
//! The first reconcile runs one period after the start. [`Reconciler::reconcile_now`] asks the
//! task for one at once and returns its report (tests drive it so, without waiting for a period).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hubsync_core::error_chain;
use hubsync_core::ports::GitHostConnector;
use hubsync_core::reconcile::{ReconcileError, ReconcileReport};
use hubsync_sqlite::SqliteHub;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::warn;

use super::worker::LocalWorker;

/// The default period: a lost delivery is healed within 15 minutes.
pub const DEFAULT_RECONCILE_EVERY: ReconcileEvery = ReconcileEvery(Some(Duration::from_secs(15 * 60)));

/// How often `hubsync serve` reconciles; `None` = never. Written `30s`, `15m`, `2h`, `1d`, or
/// `0` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileEvery(pub Option<Duration>);

impl FromStr for ReconcileEvery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "0" || s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let invalid = || format!("`{s}` is not a period: write e.g. 30s, 15m, 2h, 1d, or 0 / off to turn it off");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
        let (number, unit) = s.split_at(split);
        let number: u64 = number.parse().map_err(|_| invalid())?;
        let seconds = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(invalid()),
        };
        let seconds = number.checked_mul(seconds).ok_or_else(invalid)?;
        Ok(Self((seconds > 0).then(|| Duration::from_secs(seconds))))
    }
}

impl fmt::Display for ReconcileEvery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(d) if d.as_secs() % 60 == 0 && d.as_secs() > 0 => write!(f, "{}m", d.as_secs() / 60),
            Some(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

type Request = oneshot::Sender<Result<ReconcileReport, ReconcileError>>;

/// The handle on the reconcile task.
pub struct Reconciler {
    requests: mpsc::Sender<Request>,
    task: JoinHandle<()>,
}

impl Reconciler {
    /// Starts the task: a reconcile every `every` (if any) and on request, until `stop` is set.
    pub(super) fn start<C: GitHostConnector + 'static>(
        hub: SqliteHub,
        worker: Arc<LocalWorker<C>>,
        every: ReconcileEvery,
        mut stop: watch::Receiver<bool>,
    ) -> Self {
        let (requests, mut received) = mpsc::channel::<Request>(4);
        let task = tokio::spawn(async move {
            let mut timer = every.0.map(|period| {
                let mut timer = tokio::time::interval_at(Instant::now() + period, period);
                timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
                timer
            });
            loop {
                let tick = async {
                    match timer.as_mut() {
                        Some(timer) => {
                            timer.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let stopping = async {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                tokio::select! {
                    () = stopping => break,
                    () = tick => {
                        if let Err(e) = worker.reconcile(&hub).await {
                            warn!(error = %error_chain(&e), "the reconcile failed; trying again in one period");
                        }
                    }
                    request = received.recv() => {
                        let Some(reply) = request else { break };
                        // The caller may have gone away; the reconcile still ran.
                        let _ = reply.send(worker.reconcile(&hub).await);
                    }
                }
            }
        });
        Self { requests, task }
    }

    /// Runs one reconcile now (between the timer's) and returns what it did.
    pub async fn reconcile_now(&self) -> anyhow::Result<ReconcileReport> {
        let (reply, report) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .ok()
            .context("the server is stopping: no reconcile")?;
        Ok(report.await.context("the reconcile task stopped")??)
    }

    /// Waits for the task to end (after `stop`), at most until `deadline`.
    pub(super) async fn stopped(self, deadline: Instant) {
        let mut task = self.task;
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "the reconcile task failed"),
            Err(_) => task.abort(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_with_their_unit_and_zero_or_off_turns_the_reconcile_off() {
        assert_eq!("15m".parse(), Ok(ReconcileEvery(Some(Duration::from_secs(900)))));
        assert_eq!("30s".parse(), Ok(ReconcileEvery(Some(Duration::from_secs(30)))));
        assert_eq!("2h".parse(), Ok(ReconcileEvery(Some(Duration::from_secs(7200)))));
        assert_eq!("1d".parse(), Ok(ReconcileEvery(Some(Duration::from_secs(86_400)))));
        assert_eq!("0".parse(), Ok(ReconcileEvery(None)));
        assert_eq!("off".parse(), Ok(ReconcileEvery(None)));
        assert!("15".parse::<ReconcileEvery>().is_err());
        assert!("m".parse::<ReconcileEvery>().is_err());
        assert!("-1m".parse::<ReconcileEvery>().is_err());
    }

    #[test]
    fn the_default_reads_back_from_its_display() {
        assert_eq!(DEFAULT_RECONCILE_EVERY.to_string(), "15m");
        assert_eq!(DEFAULT_RECONCILE_EVERY.to_string().parse(), Ok(DEFAULT_RECONCILE_EVERY));
    }
}
