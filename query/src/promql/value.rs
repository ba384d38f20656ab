//! Values PromQL expressions evaluate to, and their Prometheus JSON form.

use pharos_model::Labels;
use serde_json::{Value as Json, json};

/// One element of an instant vector: a series' labels and its value at the evaluation time.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Series labels (the metric name may have been dropped by an operation).
    pub labels: Labels,
    /// The value.
    pub value: f64,
}

/// One series of a range vector or of a range query's result.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    /// Series labels.
    pub labels: Labels,
    /// `(timestamp_ms, value)` in time order.
    pub points: Vec<(i64, f64)>,
}

/// The result of evaluating an expression at one instant.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A bare number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (bare matrix selector).
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The Prometheus name of this value's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A query result ready to be rendered: the value plus the evaluation time of instant queries.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The result value; range queries always produce [`Value::Matrix`].
    pub value: Value,
    /// Evaluation time in milliseconds (used for scalar, string and vector results).
    pub time_ms: i64,
    /// Where the time went, for the API's `stats` parameter.
    pub stats: QueryStats,
}

/// What a query cost, in the shape of Prometheus' `stats` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryStats {
    /// Reading the selected series from the head and files.
    pub preparation: std::time::Duration,
    /// Evaluating the expression over the read samples (every step of a range query).
    pub inner_eval: std::time::Duration,
    /// Sorting the result.
    pub result_sort: std::time::Duration,
    /// Samples read for the query's selectors.
    pub samples_read: u64,
}

impl QueryStats {
    /// The `stats` object of a Prometheus API answer: `timings` in seconds and `samples`.
    pub fn to_json(&self) -> Json {
        let total = self.preparation + self.inner_eval + self.result_sort;
        json!({
            "timings": {
                "evalTotalTime": total.as_secs_f64(),
                "resultSortTime": self.result_sort.as_secs_f64(),
                "queryPreparationTime": self.preparation.as_secs_f64(),
                "innerEvalTime": self.inner_eval.as_secs_f64(),
                "execQueueTime": 0.0,
                "execTotalTime": total.as_secs_f64(),
            },
            "samples": {"totalQueryableSamples": self.samples_read, "peakSamples": self.samples_read},
        })
    }
}

impl QueryResult {
    /// The `data` object of a Prometheus API response.
    pub fn to_json(&self) -> Json {
        let t = self.time_ms;
        let result = match &self.value {
            Value::Scalar(v) => json!([timestamp_json(t), format_float(*v)]),
            Value::String(s) => json!([timestamp_json(t), s]),
            Value::Vector(samples) => Json::Array(
                samples
                    .iter()
                    .map(|s| {
                        json!({"metric": labels_json(&s.labels),
                               "value": [timestamp_json(t), format_float(s.value)]})
                    })
                    .collect(),
            ),
            Value::Matrix(series) => Json::Array(
                series
                    .iter()
                    .map(|s| {
                        let values: Vec<Json> = s
                            .points
                            .iter()
                            .map(|(ts, v)| json!([timestamp_json(*ts), format_float(*v)]))
                            .collect();
                        json!({"metric": labels_json(&s.labels), "values": values})
                    })
                    .collect(),
            ),
        };
        json!({"resultType": self.value.type_name(), "result": result})
    }
}

/// Labels as a JSON object.
pub fn labels_json(labels: &Labels) -> Json {
    Json::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.into())))
            .collect(),
    )
}

/// Milliseconds as Prometheus writes them: unix seconds, integral when whole (`1`, `1.5`).
pub fn timestamp_json(ms: i64) -> Json {
    if ms % 1000 == 0 {
        Json::from(ms / 1000)
    } else {
        Json::from(ms as f64 / 1000.0)
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, which Prometheus uses for values:
/// shortest round-trip digits, never an exponent, `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's Display is shortest round-trip without exponent, like Go's 'f' with -1.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go_strconv_f_minus_one() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.5), "0.5");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(1e-7), "0.0000001");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn timestamps_are_integral_seconds_when_whole() {
        assert_eq!(timestamp_json(1_000).to_string(), "1");
        assert_eq!(timestamp_json(1_500).to_string(), "1.5");
        assert_eq!(
            timestamp_json(1_435_781_451_781).to_string(),
            "1435781451.781"
        );
    }
}
