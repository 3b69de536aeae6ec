//! The retry policy: which attempt results are retried and after how long, as the Standard
//! Webhooks spec suggests. Pure: the attempt number, the jitter and the clock are inputs, so every
//! rule is tested without a network.
//!
//! - 2xx: delivered.
//! - Timeouts, connection errors (refused, reset, closed before the response), 5xx, 408 and 429:
//!   retried after an exponential backoff with jitter — or, for the throttling answers 429, 502,
//!   503 and 504, after the response's `Retry-After` (seconds or an HTTP date, capped) when it
//!   has one.
//! - 3xx: a failure, not retried: redirects are not followed (a POST must not silently turn into
//!   a GET elsewhere; the endpoint's URL is to be updated instead).
//! - 410 Gone: the receiver wants no more webhooks; not retried. Nor are the other 4xx, and
//!   requests that cannot be built.
//! - A retryable failure on the last attempt: given up. Given-up records are dead-lettered.

use std::time::{Duration, SystemTime};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// An HTTP response with its status and, when present and valid, its `Retry-After`.
    Response {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No complete response within the request timeout.
    Timeout,
    /// Could not connect, or the connection broke before a response (reset, closed).
    Connection,
    /// The request could not be built or sent at all: retrying cannot help.
    Invalid,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver accepted the record.
    Delivered,
    /// Try again after this delay.
    Retry(Duration),
    /// Stop trying: the record goes to the dead-letter topic. `retryable` tells a failure that
    /// ran out of attempts from one that was refused outright.
    GiveUp { retryable: bool },
}

/// Attempts, backoff and `Retry-After` limits (from `[webhooks]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per record and endpoint, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles with each retry.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
    /// Longest honoured `Retry-After`.
    pub retry_after_max: Duration,
}

impl RetryPolicy {
    /// The verdict on attempt number `attempt` (1-based). `jitter` is uniform in `[0, 1)`.
    pub fn decide(&self, attempt: u32, result: &Attempt, jitter: f64) -> Verdict {
        let retry_after = match result {
            Attempt::Response { status, .. } if (200..300).contains(status) => {
                return Verdict::Delivered
            }
            Attempt::Response {
                status,
                retry_after,
            } => {
                if !retryable_status(*status) {
                    return Verdict::GiveUp { retryable: false };
                }
                if honours_retry_after(*status) {
                    *retry_after
                } else {
                    None
                }
            }
            Attempt::Timeout | Attempt::Connection => None,
            Attempt::Invalid => return Verdict::GiveUp { retryable: false },
        };
        if attempt >= self.max_attempts {
            return Verdict::GiveUp { retryable: true };
        }
        Verdict::Retry(self.delay(attempt, retry_after, jitter))
    }

    /// The wait after failed attempt number `attempt` of a probe (an endpoint that is down):
    /// the retry delay of a retryable failure, whatever `max_attempts` says.
    pub fn probe_delay(&self, attempt: u32, result: &Attempt, jitter: f64) -> Duration {
        let retry_after = match result {
            Attempt::Response {
                status,
                retry_after,
            } if honours_retry_after(*status) => *retry_after,
            _ => None,
        };
        self.delay(attempt, retry_after, jitter)
    }

    fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        match retry_after {
            Some(d) => d.min(self.retry_after_max),
            None => self.backoff(attempt, jitter),
        }
    }

    /// The backoff after failed attempt number `attempt` (1-based): `base · 2^(attempt-1)`, capped
    /// at `max`, of which a random half is taken off ("equal jitter": between half and all of it),
    /// so that retries of many records spread out instead of arriving together.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        full.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// Statuses worth another attempt: the receiver is overloaded, down or timed out.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..=599).contains(&status)
}

/// Statuses whose `Retry-After` sets the next attempt's time: the receiver (or its gateway)
/// asks to be throttled.
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Parses a `Retry-After` value: delay seconds (`"120"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to `now`; a past date means no wait).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.unix_timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
            retry_after_max: Duration::from_secs(60),
        }
    }

    fn status(s: u16) -> Attempt {
        Attempt::Response {
            status: s,
            retry_after: None,
        }
    }

    #[test]
    fn success_is_delivered_whatever_the_attempt() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(policy().decide(1, &status(s), 0.5), Verdict::Delivered);
            assert_eq!(policy().decide(5, &status(s), 0.5), Verdict::Delivered);
        }
    }

    #[test]
    fn transient_failures_are_retried_until_the_last_attempt() {
        let p = policy();
        for r in [
            status(500),
            status(502),
            status(503),
            status(504),
            status(429),
            status(408),
            Attempt::Timeout,
            Attempt::Connection,
        ] {
            for attempt in 1..5 {
                assert!(
                    matches!(p.decide(attempt, &r, 0.0), Verdict::Retry(_)),
                    "{r:?} attempt {attempt}"
                );
            }
            assert_eq!(p.decide(5, &r, 0.0), Verdict::GiveUp { retryable: true });
        }
    }

    #[test]
    fn other_4xx_redirects_and_invalid_requests_are_not_retried() {
        let p = policy();
        for r in [
            status(400),
            status(401),
            status(403),
            status(404),
            status(410),
            status(413),
            status(422),
            status(301),
            status(302),
            status(307),
            status(100),
            Attempt::Invalid,
        ] {
            assert_eq!(
                p.decide(1, &r, 0.3),
                Verdict::GiveUp { retryable: false },
                "{r:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = policy();
        let ms = |a, j| p.backoff(a, j).as_millis();
        assert_eq!(ms(1, 0.0), 250);
        assert_eq!(ms(1, 1.0), 500);
        assert_eq!(ms(2, 0.0), 500);
        assert_eq!(ms(2, 1.0), 1000);
        assert_eq!(ms(3, 1.0), 2000);
        assert_eq!(ms(7, 1.0), 30_000);
        assert_eq!(ms(7, 0.0), 15_000);
        assert_eq!(ms(200, 1.0), 30_000);
        for a in 1..40 {
            for j in [0.0, 0.25, 0.999] {
                let d = p.backoff(a, j);
                assert!(d <= p.max && d >= p.base / 2, "{a} {j}: {d:?}");
            }
        }
        // The retry verdict uses the backoff of the failed attempt.
        assert_eq!(
            p.decide(2, &Attempt::Timeout, 1.0),
            Verdict::Retry(Duration::from_secs(1))
        );
    }

    #[test]
    fn retry_after_is_honoured_on_429_502_503_504_and_capped() {
        let p = policy();
        let ra = |s, secs| Attempt::Response {
            status: s,
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            p.decide(1, &ra(429, 1), 0.0),
            Verdict::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            p.decide(1, &ra(503, 7), 0.0),
            Verdict::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            p.decide(1, &ra(429, 3600), 0.0),
            Verdict::Retry(Duration::from_secs(60))
        );
        for s in [502, 504] {
            assert_eq!(
                p.decide(1, &ra(s, 9), 0.0),
                Verdict::Retry(Duration::from_secs(9)),
                "{s}"
            );
        }
        // Only the throttling answers carry a meaningful Retry-After; a 500's is ignored.
        assert_eq!(
            p.decide(1, &ra(500, 40), 1.0),
            Verdict::Retry(Duration::from_millis(500))
        );
        // A refusal is a refusal, whatever its Retry-After.
        for s in [410, 301, 400] {
            assert_eq!(
                p.decide(1, &ra(s, 1), 0.0),
                Verdict::GiveUp { retryable: false },
                "{s}"
            );
        }
        // The last attempt is the last, whatever the receiver asks.
        assert_eq!(
            p.decide(5, &ra(429, 1), 0.0),
            Verdict::GiveUp { retryable: true }
        );
    }

    #[test]
    fn a_probe_backs_off_without_running_out_of_attempts() {
        let p = policy();
        assert_eq!(
            p.probe_delay(1, &status(503), 1.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            p.probe_delay(50, &Attempt::Connection, 1.0),
            Duration::from_secs(30)
        );
        let ra = Attempt::Response {
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.probe_delay(50, &ra, 0.0), Duration::from_secs(7));
        let ra_500 = Attempt::Response {
            status: 500,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(p.probe_delay(1, &ra_500, 1.0), Duration::from_millis(500));
    }

    #[test]
    fn parses_retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }
}
