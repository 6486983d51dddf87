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

/// Which end of a time range a query parameter gives: a coarse value (a date, whole
/// seconds) covers its whole span, so an upper bound takes the span's last millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Start,
    End,
}

/// Epoch values below this are seconds, not millis: as millis they would fall before
/// March 1973, as seconds after it lies the year 5138. Sterling documents epoch millis
/// and shows 10-digit samples (`1630510372`), which are seconds.
const EPOCH_SECONDS_BELOW: i64 = 100_000_000_000;

/// Parses a time query parameter: RFC 3339, a date (`2021-12-01`, Front Systems, UTC),
/// or an epoch value in millis or seconds (Sterling).
pub fn parse_time_param(text: &str, bound: Bound) -> Result<EpochMillis, String> {
    let last_ms = |span: i64| if bound == Bound::End { span - 1 } else { 0 };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value = text
            .parse::<i64>()
            .map_err(|_| format!("`{text}` is out of range for an epoch time"))?;
        return Ok(if value < EPOCH_SECONDS_BELOW {
            value * 1000 + last_ms(1000)
        } else {
            value
        });
    }
    if text.len() == 10
        && let Ok(date) = text.parse::<jiff::civil::Date>()
    {
        let start = date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|e| format!("`{text}`: {e}"))?
            .timestamp()
            .as_millisecond();
        return Ok(start + last_ms(86_400_000));
    }
    parse_rfc3339(text).map_err(|e| format!("{e} (or a date like 2021-12-01, or epoch millis)"))
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
    fn time_parameters_take_rfc3339_dates_and_epoch_seconds_or_millis() {
        use Bound::{End, Start};
        let day = parse_rfc3339("2021-12-01T00:00:00Z").unwrap();
        assert_eq!(parse_time_param("2021-12-01", Start), Ok(day));
        assert_eq!(
            parse_time_param("2021-12-01", End),
            Ok(day + 86_400_000 - 1)
        );
        // Sterling's sample is seconds; a 13-digit value is millis.
        assert_eq!(parse_time_param("1630510372", Start), Ok(1_630_510_372_000));
        assert_eq!(parse_time_param("1630510372", End), Ok(1_630_510_372_999));
        assert_eq!(
            parse_time_param("1630510372123", End),
            Ok(1_630_510_372_123)
        );
        assert_eq!(
            parse_time_param("2021-12-01T10:00:00.5Z", End),
            Ok(day + 36_000_500)
        );
        for bad in ["2021-13-01", "yesterday", "", "99999999999999999999"] {
            assert!(parse_time_param(bad, Start).is_err(), "{bad}");
        }
    }

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
        assert_eq!(parse_time_param("0", Bound::Start).unwrap(), 0);
        assert_eq!(
            parse_time_param("2026-11-22T10:00:00Z", Bound::End).unwrap(),
            parse_time_param("1795341600000", Bound::End).unwrap()
        );
        assert_eq!(format_millis(1_795_341_600_000), "2026-11-22T10:00:00.000Z");
    }
}
