//! The dashboard query set, its timing, and the comparison of answers with Prometheus'.

use std::collections::BTreeMap;
use std::time::Instant;

use pharos_e2e::enc;

/// Dashboard queries (node-exporter style).
pub const QUERIES: [&str; 4] = [
    r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
    r#"1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"#,
    r#"topk(5, rate(node_network_receive_bytes_total[5m]))"#,
    r#"sum(rate(node_disk_written_bytes_total[5m]))"#,
];

/// One query shape: instant at the end, or a range with a 60 s step.
#[derive(Clone, Copy)]
pub enum Shape {
    Instant,
    Range1h,
    RangeFull,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Instant, Shape::Range1h, Shape::RangeFull];
    pub fn name(self) -> &'static str {
        match self {
            Shape::Instant => "instant",
            Shape::Range1h => "range 1h",
            Shape::RangeFull => "range full",
        }
    }
}

/// Series labels → (timestamp, value) points, the comparable part of an answer.
pub type Answer = BTreeMap<String, Vec<(f64, f64)>>;

fn url(addr: &str, q: &str, shape: Shape, start_ms: i64, end_ms: i64, vm: bool) -> String {
    // Query times sit 7 s off the 15 s scrape grid: no sample lies on a range's left boundary,
    // where Prometheus 2.x (closed `[t-5m, t]`) and 3.x / Pharos (left-open) differ.
    let end = end_ms as f64 / 1000.0 + 7.0;
    let full_start = ((start_ms / 1000) / 60 + 1) as f64 * 60.0 + 7.0;
    let extra = if vm { "&nocache=1" } else { "" };
    match shape {
        Shape::Instant => format!("http://{addr}/api/v1/query?query={}&time={end}{extra}", enc(q)),
        Shape::Range1h | Shape::RangeFull => {
            let start = if let Shape::Range1h = shape { (end - 3600.0).max(full_start) } else { full_start };
            let end_aligned = start + ((end - start) / 60.0).floor() * 60.0;
            format!("http://{addr}/api/v1/query_range?query={}&start={start}&end={end_aligned}&step=60{extra}", enc(q))
        }
    }
}

fn parse(body: &serde_json::Value) -> anyhow::Result<Answer> {
    anyhow::ensure!(body["status"] == "success", "query failed: {body}");
    let mut out = Answer::new();
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap_or_default();
        let pairs = s["values"].as_array().cloned().unwrap_or_else(|| vec![s["value"].clone()]);
        let pts = pairs.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_str()?.parse::<f64>().ok()?))).collect();
        out.insert(format!("{labels:?}"), pts);
    }
    Ok(out)
}

/// Runs `q` `runs` times; returns the p50 latency (ms) and the first answer.
pub async fn time_query(client: &reqwest::Client, addr: &str, q: &str, shape: Shape, start_ms: i64, end_ms: i64, vm: bool, runs: usize) -> anyhow::Result<(f64, Answer)> {
    let u = url(addr, q, shape, start_ms, end_ms, vm);
    let mut lat = Vec::new();
    let mut answer = None;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let text = client.get(&u).send().await?.text().await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        if answer.is_none() {
            answer = Some(parse(&serde_json::from_str(&text)?)?);
        }
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat[lat.len() / 2], answer.unwrap_or_default()))
}

/// A query's figures once the data settled.
pub struct Settled {
    pub p50_ms: f64,
    /// The server's user + system CPU time per run.
    pub cpu_ms: f64,
    pub answer: Answer,
}

/// Pharos' own breakdown of one run of `q` (Prometheus' `stats` parameter): milliseconds reading
/// the series, milliseconds evaluating, and samples read.
pub async fn pharos_breakdown(client: &reqwest::Client, addr: &str, q: &str, shape: Shape, start_ms: i64, end_ms: i64) -> Option<(f64, f64, u64)> {
    let u = format!("{}&stats=all", url(addr, q, shape, start_ms, end_ms, false));
    let body: serde_json::Value = serde_json::from_str(&client.get(&u).send().await.ok()?.text().await.ok()?).ok()?;
    let s = &body["data"]["stats"];
    Some((
        s["timings"]["queryPreparationTime"].as_f64()? * 1000.0,
        s["timings"]["innerEvalTime"].as_f64()? * 1000.0,
        s["samples"]["totalQueryableSamples"].as_u64()?,
    ))
}

/// `None` when equal (same series, same timestamps, values within 1e-9 relative); else why not.
pub fn differs(a: &Answer, reference: &Answer) -> Option<String> {
    if a.len() != reference.len() || a.keys().ne(reference.keys()) {
        let missing = reference.keys().find(|k| !a.contains_key(*k));
        let extra = a.keys().find(|k| !reference.contains_key(*k));
        return Some(format!("{} series vs {} (missing {missing:?}, extra {extra:?})", a.len(), reference.len()));
    }
    for (k, pts) in a {
        let r = &reference[k];
        if pts.len() != r.len() {
            return Some(format!("{k}: {} points vs {}", pts.len(), r.len()));
        }
        for ((t1, v1), (t2, v2)) in pts.iter().zip(r) {
            let close = (v1.is_nan() && v2.is_nan()) || (v1 - v2).abs() <= 1e-9 * v1.abs().max(v2.abs()).max(1e-12);
            if t1 != t2 || !close {
                return Some(format!("{k}: ({t1}, {v1}) vs ({t2}, {v2})"));
            }
        }
    }
    None
}
