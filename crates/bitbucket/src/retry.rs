//! When to try a request again and how long to wait: exponential backoff with jitter, or the
//! server's `Retry-After` (seconds or an HTTP date), never longer than the configured maximum.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;

/// How many times a request is tried and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based). The server's `Retry-After`
    /// wins when it sent one; otherwise the backoff doubles from `initial_backoff` and a random
    /// part (`unit`, in `[0, 1)`) spreads clients that failed together.
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_backoff),
            None => backoff(attempt, self.initial_backoff, self.max_backoff, unit),
        }
    }
}

/// "Equal jitter": half of the exponential step is fixed, the other half random, so a retry
/// never comes immediately but clients do not retry in lock-step.
fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    let step = initial.saturating_mul(1u32 << exponent).min(max);
    let half = step / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// Statuses worth another attempt: 429 (rate limited) and every 5xx.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past means "now";
/// anything unreadable is `None` (the caller falls back to its own backoff).
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 still means "a very long time"; the caller caps it.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some((date.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2015, 10, 21, 7, 28, 0).unwrap()
    }

    #[test]
    fn retry_after_in_seconds_is_read() {
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("99999999999999999999999", now()), Some(Duration::MAX));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_that_date() {
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now()),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn unreadable_retry_after_is_ignored() {
        for bad in ["", "-1", "1.5", "soon", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_is_capped_at_the_maximum_backoff() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        };
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600)), 0.5),
            Duration::from_secs(10)
        );
        assert_eq!(policy.delay(1, Some(Duration::ZERO), 0.5), Duration::ZERO);
    }

    #[test]
    fn backoff_doubles_within_its_jitter_band_and_stops_at_the_maximum() {
        let initial = Duration::from_millis(200);
        let max = Duration::from_secs(10);
        for (attempt, step_ms) in [(1, 200), (2, 400), (3, 800), (4, 1600), (7, 10_000), (40, 10_000)] {
            let low = backoff(attempt, initial, max, 0.0);
            let high = backoff(attempt, initial, max, 0.999_999);
            assert_eq!(low, Duration::from_millis(step_ms / 2), "attempt {attempt}");
            assert!(
                high <= Duration::from_millis(step_ms) && high > low,
                "attempt {attempt}"
            );
        }
    }

    #[test]
    fn only_rate_limits_and_server_errors_are_retried() {
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable_status(StatusCode::BAD_GATEWAY));
        assert!(is_retryable_status(StatusCode::INTERNAL_SERVER_ERROR));
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
        ] {
            assert!(!is_retryable_status(status));
        }
    }
}
