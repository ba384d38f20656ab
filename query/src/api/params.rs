//! Parsing request parameters: times, durations, integers.

use std::collections::HashMap;

use chrono::DateTime;

use crate::error::{Error, Result};

/// Request parameters (query string and form body merged; the body wins, as in Go).
pub type Params = HashMap<String, String>;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Prometheus' time parameter: unix seconds (float, millisecond precision) or RFC3339.
pub fn parse_time_ms(name: &str, s: &str) -> Result<i64> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 9.2e15
    {
        let whole = secs.trunc();
        let frac = ((secs - whole) * 1000.0).round();
        return Ok(whole as i64 * 1000 + frac as i64);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    Err(Error::BadData(format!(
        "invalid parameter {name:?}: cannot parse {s:?} to a valid timestamp"
    )))
}

/// An optional time parameter, `default` when absent.
pub fn time_param_ms(params: &Params, name: &str, default: i64) -> Result<i64> {
    match params.get(name) {
        Some(s) if !s.is_empty() => parse_time_ms(name, s),
        _ => Ok(default),
    }
}

/// Prometheus' duration parameter: float seconds or a duration like `1h30m`; milliseconds.
pub fn parse_duration_ms(name: &str, s: &str) -> Result<i64> {
    let err = || {
        Error::BadData(format!(
            "invalid parameter {name:?}: cannot parse {s:?} to a valid duration"
        ))
    };
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > 9.2e15 {
            return Err(err());
        }
        return Ok(ms.trunc() as i64);
    }
    // Only non-numeric strings reach the parser (it panics on negative floats).
    let d = promql_parser::util::parse_duration(s).map_err(|_| err())?;
    i64::try_from(d.as_millis()).map_err(|_| err())
}

/// A required parameter.
pub fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::BadData(format!("invalid parameter {name:?}: missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_float_seconds_or_rfc3339() {
        assert_eq!(
            parse_time_ms("time", "1700000000").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time_ms("time", "1700000000.123").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_time_ms("time", "1970-01-01T00:01:00Z").unwrap(),
            60_000
        );
        assert_eq!(
            parse_time_ms("time", "1970-01-01T00:01:00.5+00:00").unwrap(),
            60_500
        );
        assert!(parse_time_ms("time", "yesterday").is_err());
        assert!(parse_time_ms("time", "NaN").is_err());
    }

    #[test]
    fn durations_as_float_seconds_or_prometheus_units() {
        assert_eq!(parse_duration_ms("step", "15").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration_ms("step", "15s").unwrap(), 15_000);
        assert_eq!(parse_duration_ms("step", "1m").unwrap(), 60_000);
        assert_eq!(parse_duration_ms("step", "1h30m").unwrap(), 5_400_000);
        assert_eq!(
            parse_duration_ms("step", "-1").unwrap(),
            -1_000,
            "sign checked by caller"
        );
        assert!(parse_duration_ms("step", "fast").is_err());
        assert!(parse_duration_ms("step", "inf").is_err());
    }
}
