//! Retry policy: how an HTTP result is classified and when the next attempt happens.
//! Pure functions, so the rules are testable without a network.

use std::time::Duration;

use rand::Rng;

use crate::iso::EpochMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// 400, 410, 422: the receiver refuses this event; retrying will not help.
    Rejected,
    /// Anything else: worth another try.
    Retryable,
}

/// `status` is `None` when no response arrived (timeout, refused, TLS error).
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Delivered,
        Some(400 | 410 | 422) => Outcome::Rejected,
        _ => Outcome::Retryable,
    }
}

/// A schedule step with ±20% jitter, so retries of many events do not arrive in lockstep.
pub fn jittered(step: Duration) -> Duration {
    if step.is_zero() {
        return step;
    }
    let factor = rand::rng().random_range(0.8..=1.2);
    step.mul_f64(factor)
}

/// `Retry-After` of a 429/503: delay-seconds or an HTTP date.
pub fn retry_after(status: u16, value: Option<&str>, now: EpochMillis) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let value = value?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds.min(24 * 3600)));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let at = date.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64;
    Some(Duration::from_millis(
        (at - now).clamp(0, 24 * 3600 * 1000) as u64
    ))
}

/// Millis since epoch `delay` after `now`.
pub fn after(now: EpochMillis, delay: Duration) -> EpochMillis {
    now + delay.as_millis() as EpochMillis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_contract() {
        assert_eq!(classify(Some(200)), Outcome::Delivered);
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        for code in [400, 410, 422] {
            assert_eq!(classify(Some(code)), Outcome::Rejected);
        }
        for code in [301, 401, 404, 408, 429, 500, 503] {
            assert_eq!(classify(Some(code)), Outcome::Retryable, "{code}");
        }
        assert_eq!(classify(None), Outcome::Retryable);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(8) && d <= Duration::from_secs(12));
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(retry_after(429, Some("2"), 0), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(500, Some("2"), 0), None);
        assert_eq!(retry_after(503, Some("soon"), 0), None);
        let now = 1_700_000_000_000;
        let date = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH + Duration::from_millis(now as u64 + 5000),
        );
        let d = retry_after(503, Some(&date), now).unwrap();
        assert!(d <= Duration::from_secs(5) && d >= Duration::from_secs(4));
    }
}
