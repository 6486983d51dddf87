//! ISO-8601 durations (`PT30S`, `P90D`) and timestamps (RFC 3339 or epoch millis), the
//! two time notations of the API contract. One parser each, so every field agrees.

use std::{fmt, str::FromStr, time::Duration};

use jiff::{SpanTotal, Timestamp, Unit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO-8601 duration that remembers how the user wrote it, so responses echo it back.
#[derive(Clone, PartialEq, Eq)]
pub struct IsoDuration {
    text: String,
    duration: Duration,
}

impl IsoDuration {
    pub fn duration(&self) -> Duration {
        self.duration
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for IsoDuration {
    type Err = String;

    /// Days count as 24 hours: retry schedules and retention windows are elapsed time,
    /// not calendar arithmetic. Years and months are refused because their length varies.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{text}` is not an ISO-8601 duration like PT30S, PT5M or P90D");
        if !text.starts_with(['P', 'p']) {
            return Err(invalid());
        }
        let span: jiff::Span = text.parse().map_err(|_| invalid())?;
        if span.get_years() != 0 || span.get_months() != 0 {
            return Err(format!(
                "`{text}`: years and months have no fixed length; use days (P30D)"
            ));
        }
        if span.is_negative() {
            return Err(format!("`{text}`: durations must not be negative"));
        }
        let seconds = span
            .total(SpanTotal::from(Unit::Second).days_are_24_hours())
            .map_err(|_| invalid())?;
        Ok(IsoDuration {
            text: text.to_string(),
            duration: Duration::from_secs_f64(seconds),
        })
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch: the one time representation inside the store.
pub type EpochMillis = i64;

pub fn now_millis() -> EpochMillis {
    Timestamp::now().as_millisecond()
}

/// RFC 3339 UTC with millisecond precision, as every body of the API shows time.
pub fn format_millis(millis: EpochMillis) -> String {
    match Timestamp::from_millisecond(millis) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => millis.to_string(),
    }
}

/// Parses a time given in a body field: RFC 3339 only.
pub fn parse_rfc3339(text: &str) -> Result<EpochMillis, String> {
    text.parse::<Timestamp>()
        .map(|ts| ts.as_millisecond())
        .map_err(|_| format!("`{text}` is not an RFC 3339 timestamp like 2026-11-22T10:00:00Z"))
}

/// Parses a time query parameter: RFC 3339, or epoch millis as Sterling sends them.
pub fn parse_time_param(text: &str) -> Result<EpochMillis, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| format!("`{text}` is out of range for epoch milliseconds"));
    }
    parse_rfc3339(text).map_err(|e| format!("{e} (or epoch milliseconds)"))
}

/// Serde helper for store records: millis in, RFC 3339 out in API views.
pub mod rfc3339_millis {
    use super::*;

    pub fn serialize<S: Serializer>(millis: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_millis(*millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_to_elapsed_time() {
        let cases = [
            ("PT0S", 0),
            ("PT30S", 30),
            ("PT5M", 300),
            ("PT2H", 7200),
            ("P90D", 90 * 86_400),
            ("P1DT1S", 86_401),
        ];
        for (text, secs) in cases {
            let d: IsoDuration = text.parse().unwrap();
            assert_eq!(d.duration(), Duration::from_secs(secs), "{text}");
            assert_eq!(d.as_str(), text);
        }
        assert_eq!(
            "PT0.5S".parse::<IsoDuration>().unwrap().duration(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in ["30s", "P1M", "P1Y", "-PT5S", "", "PT", "hello"] {
            assert!(text.parse::<IsoDuration>().is_err(), "{text} should fail");
        }
    }

    #[test]
    fn time_params_accept_rfc3339_and_millis() {
        assert_eq!(parse_time_param("0").unwrap(), 0);
        assert_eq!(
            parse_time_param("2026-11-22T10:00:00Z").unwrap(),
            parse_time_param("1795341600000").unwrap()
        );
        assert!(parse_time_param("yesterday").is_err());
        assert_eq!(format_millis(1_795_341_600_000), "2026-11-22T10:00:00.000Z");
    }
}
