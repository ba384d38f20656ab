//! A small writer for the Prometheus text exposition format (HELP/TYPE, escaped label values,
//! optional millisecond timestamps), shared by the emulated exporters.

use std::fmt::Write;

/// Builds one exposition body.
#[derive(Default)]
pub struct Exposition {
    body: String,
}

impl Exposition {
    /// An empty body.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a metric family: `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, typ: &str, help: &str) {
        let _ = writeln!(self.body, "# HELP {name} {help}\n# TYPE {name} {typ}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.sample_at(name, labels, value, None);
    }

    /// One sample line with an optional timestamp (unix ms), as the kubelet writes them.
    pub fn sample_at(&mut self, name: &str, labels: &[(&str, &str)], value: f64, ts_ms: Option<i64>) {
        self.body.push_str(name);
        if !labels.is_empty() {
            self.body.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.body.push(',');
                }
                let _ = write!(self.body, "{k}=\"{}\"", escape(v));
            }
            self.body.push('}');
        }
        let _ = write!(self.body, " {}", format_value(value));
        if let Some(ts) = ts_ms {
            let _ = write!(self.body, " {ts}");
        }
        self.body.push('\n');
    }

    /// The finished body.
    pub fn finish(self) -> String {
        self.body
    }
}

/// Go's `strconv.FormatFloat(v, 'g', -1, 64)`-like rendering: integers without a fraction,
/// large/small magnitudes in exponent form.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e21 || (v != 0.0 && v.abs() < 1e-4) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
