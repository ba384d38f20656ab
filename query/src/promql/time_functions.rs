//! Functions about time: the date functions (`year`, `hour`, `days_in_month`, …), `timestamp`,
//! and the query-frame functions `step()`, `range()`, `start()`, `end()`.

use chrono::{DateTime, Datelike, Timelike};
use pharos_model::Labels;
use promql_parser::parser::Expr;

use super::eval::{Evaluator, check_unique, unwrap_parens};
use super::value::{Sample, Value};
use crate::error::Result;

/// Names handled by [`date_function`].
pub const DATE_FUNCTIONS: &[&str] = &[
    "year",
    "month",
    "day_of_month",
    "day_of_year",
    "day_of_week",
    "hour",
    "minute",
    "days_in_month",
];

/// The date part `name` of unix time `secs` (UTC), as Prometheus' `dateWrapper` computes it
/// from `time.Unix(int64(v), 0).UTC()`.
pub fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let Some(t) = DateTime::from_timestamp(secs.trunc() as i64, 0) else {
        return f64::NAN;
    };
    (match name {
        "year" => t.year() as u32,
        "month" => t.month(),
        "day_of_month" => t.day(),
        "day_of_year" => t.ordinal(),
        "day_of_week" => t.weekday().num_days_from_sunday(),
        "hour" => t.hour(),
        "minute" => t.minute(),
        _ => days_in_month(t.year(), t.month()),
    }) as f64
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `year(v)` and friends; without an argument they apply to `vector(time())`.
pub fn date_function(ev: &Evaluator, name: &str, args: &[Box<Expr>], t: i64) -> Result<Value> {
    let input = match args.first() {
        Some(a) => ev.eval_vector(a, t)?,
        None => vec![Sample {
            labels: Labels::default(),
            value: t as f64 / 1000.0,
        }],
    };
    let out = input
        .into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            value: date_part(name, s.value),
        })
        .collect();
    check_unique(out).map(Value::Vector)
}

/// `timestamp(v)`: the timestamp of each sample in seconds; for a bare selector that is when
/// the sample was written, otherwise the evaluation time.
pub fn timestamp(ev: &Evaluator, arg: &Expr, t: i64) -> Result<Value> {
    let samples = match unwrap_parens(arg) {
        Expr::VectorSelector(vs) => {
            let at = super::selector::reference_time(vs, ev.frame, t);
            ev.fetched.instant_timestamps(vs, at)?
        }
        other => ev
            .eval_vector(other, t)?
            .into_iter()
            .map(|s| Sample {
                labels: s.labels,
                value: t as f64 / 1000.0,
            })
            .collect(),
    };
    let out = samples
        .into_iter()
        .map(|s| Sample {
            labels: s.labels.without_name(),
            value: s.value,
        })
        .collect();
    check_unique(out).map(Value::Vector)
}

/// `step()`, `range()`, `start()`, `end()` in seconds; `None` for other names.
pub fn frame_function(ev: &Evaluator, name: &str) -> Option<f64> {
    let f = ev.frame;
    let ms = match name {
        "step" => f.step_ms,
        "range" => f.end_ms - f.start_ms,
        "start" => f.start_ms,
        "end" => f.end_ms,
        _ => return None,
    };
    Some(ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_parts_of_2006_01_02_22_04_05_utc() {
        // 1136239445 = Mon 2006-01-02 22:04:05 UTC (Go's reference time).
        let t = 1_136_239_445.0;
        assert_eq!(date_part("year", t), 2006.0);
        assert_eq!(date_part("month", t), 1.0);
        assert_eq!(date_part("day_of_month", t), 2.0);
        assert_eq!(date_part("day_of_year", t), 2.0);
        assert_eq!(date_part("day_of_week", t), 1.0);
        assert_eq!(date_part("hour", t), 22.0);
        assert_eq!(date_part("minute", t), 4.0);
        assert_eq!(date_part("days_in_month", t), 31.0);
    }

    #[test]
    fn days_in_month_knows_leap_years() {
        // 1454284800 = 2016-02-01 (leap), 1485907200 = 2017-02-01.
        assert_eq!(date_part("days_in_month", 1_454_284_800.0), 29.0);
        assert_eq!(date_part("days_in_month", 1_485_907_200.0), 28.0);
        // 2008-12-31 23:59:59 is day 366; one second later is 2009.
        assert_eq!(date_part("day_of_year", 1_230_767_999.0), 366.0);
        assert_eq!(date_part("year", 1_230_768_000.0), 2009.0);
        assert!(date_part("hour", f64::NAN).is_nan());
    }
}
