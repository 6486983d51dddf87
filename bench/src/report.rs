//! Latency histograms and the printed figures.
//!
//! Each run prints a human-readable block and one `RESULT key=value ...` line; the shell
//! scripts read only the `RESULT` lines, so the human text can change freely.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track: one hour, in microseconds. Anything longer is
/// recorded as one hour rather than dropped.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Latencies in microseconds, 3 significant digits (0.1% resolution).
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid static bounds"))
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, latency: Duration) {
        self.record_us(latency.as_micros().min(u128::from(MAX_TRACKED_US)) as u64);
    }

    pub fn record_us(&mut self, micros: u64) {
        // The histogram's lowest discernible value is 1 µs; 0 is stored as 0 all the same.
        self.0.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Self) {
        // Both sides have the same bounds, so adding cannot fail.
        self.0.add(&other.0).expect("histograms with equal bounds");
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.0.len(),
            p50_us: self.0.value_at_quantile(0.50),
            p90_us: self.0.value_at_quantile(0.90),
            p99_us: self.0.value_at_quantile(0.99),
            max_us: self.0.max(),
            mean_us: self.0.mean(),
        }
    }
}

/// Percentiles of one histogram, in microseconds (what `/stats` of the receiver returns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl LatencySummary {
    /// `p50 1.23 ms  p90 ...` for the human-readable block.
    pub fn line(&self) -> String {
        format!(
            "p50 {} ms  p90 {} ms  p99 {} ms  max {} ms  (n={})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.count
        )
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(micros: u64) -> String {
    format!("{:.3}", micros as f64 / 1000.0)
}

/// What a set of load workers saw: answers by kind and request latency.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Requests answered 2xx.
    pub requests_ok: u64,
    /// Events in the requests answered 2xx.
    pub events_ok: u64,
    /// Failed requests by cause: the HTTP status (`"503"`), `"timeout"` or `"io"`.
    pub errors: BTreeMap<String, u64>,
    /// Latency of 2xx requests only: failures are often fast and would flatter the figures.
    pub latency: LatencyHistogram,
    /// The first transport error's text, so a refused connection is not just a count.
    pub first_io_error: Option<String>,
}

impl LoadStats {
    pub fn error(&mut self, cause: impl Into<String>) {
        *self.errors.entry(cause.into()).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &Self) {
        self.requests_ok += other.requests_ok;
        self.events_ok += other.events_ok;
        for (cause, count) in &other.errors {
            *self.errors.entry(cause.clone()).or_default() += count;
        }
        self.latency.merge(&other.latency);
        if self.first_io_error.is_none() {
            self.first_io_error.clone_from(&other.first_io_error);
        }
    }

    /// `none` or `503:12,io:3`.
    pub fn errors_text(&self) -> String {
        if self.errors.is_empty() {
            return "none".to_owned();
        }
        let mut text = String::new();
        for (cause, count) in &self.errors {
            if !text.is_empty() {
                text.push(',');
            }
            let _ = write!(text, "{cause}:{count}");
        }
        text
    }
}

/// Builds a `RESULT label=... key=value ...` line; values must not contain spaces.
pub struct ResultLine(String);

impl ResultLine {
    pub fn new(label: &str) -> Self {
        Self(format!("RESULT label={}", label.replace(' ', "_")))
    }

    pub fn field(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    pub fn latency(self, prefix: &str, summary: &LatencySummary) -> Self {
        self.field(&format!("{prefix}p50_ms"), ms(summary.p50_us))
            .field(&format!("{prefix}p90_ms"), ms(summary.p90_us))
            .field(&format!("{prefix}p99_ms"), ms(summary.p99_us))
            .field(&format!("{prefix}max_ms"), ms(summary.max_us))
    }

    pub fn print(self) {
        println!("{}", self.0);
    }
}

/// Per-second rate with one decimal, 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_values() {
        let mut histogram = LatencyHistogram::default();
        for micros in 1..=1000 {
            histogram.record_us(micros);
        }
        let summary = histogram.summary();
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p50_us, 500);
        assert_eq!(summary.p99_us, 990);
        assert_eq!(summary.max_us, 1000);
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(
            LatencyHistogram::default().summary(),
            LatencySummary::default()
        );
    }

    #[test]
    fn huge_latencies_saturate_instead_of_vanishing() {
        let mut histogram = LatencyHistogram::default();
        histogram.record(Duration::from_secs(10_000));
        assert_eq!(histogram.summary().count, 1);
    }

    #[test]
    fn stats_merge_adds_errors_by_cause() {
        let mut a = LoadStats::default();
        a.error("503");
        a.requests_ok = 2;
        let mut b = LoadStats::default();
        b.error("503");
        b.error("io");
        b.latency.record_us(10);
        a.merge(&b);
        assert_eq!(a.errors_text(), "503:2,io:1");
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.requests_ok, 2);
        assert_eq!(a.latency.summary().count, 1);
    }

    #[test]
    fn result_line_format() {
        let line = ResultLine::new("gateway single").field("events_per_sec", 12.5);
        assert_eq!(line.0, "RESULT label=gateway_single events_per_sec=12.5");
    }
}
