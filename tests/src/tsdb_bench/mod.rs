//! `pharos-bench tsdb` (issue 3): Pharos vs VictoriaMetrics vs Prometheus on one generated
//! node-exporter-like dataset, pushed as pre-encoded remote_write requests, one server after the
//! other. Reports ingest samples per CPU-second, bytes per sample on disk, peak RSS per series
//! and PromQL p50 latencies, with each answer compared to Prometheus' (the reference).

mod dataset;
mod queries;
mod servers;

use std::time::{Duration, Instant};

use queries::{Shape, QUERIES};
use servers::{du, Engine, Server};

/// Parameters of `pharos-bench tsdb`.
#[derive(clap::Args, Clone)]
pub struct TsdbArgs {
    /// node-exporter-like targets (each ~800 series).
    #[arg(long, default_value_t = 100)]
    pub targets: usize,
    /// Hours of samples, ending now.
    #[arg(long, default_value_t = 2.0)]
    pub hours: f64,
    /// Scrape interval of the generated samples.
    #[arg(long, default_value_t = 15)]
    pub interval_s: u64,
    /// Targets per remote_write request (Prometheus' shards group many series per request).
    #[arg(long, default_value_t = 10)]
    pub targets_per_request: usize,
    /// Scrapes per series per request (4 × 15 s = one minute of samples).
    #[arg(long, default_value_t = 4)]
    pub steps_per_request: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    pub senders: usize,
    /// Runs per query (the p50 is reported).
    #[arg(long, default_value_t = 5)]
    pub query_runs: usize,
    /// Runs per query once the data settled (the p50 and the server's CPU time per run are
    /// reported; CPU time is counted in 10 ms ticks, so many runs).
    #[arg(long, default_value_t = 20)]
    pub settled_runs: usize,
    /// Keep the data directories (printed) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Measure Pharos alone (no peers, no ratios): for profiling and quick before/after checks.
    #[arg(long)]
    pub pharos_only: bool,
}

struct Outcome {
    engine: Engine,
    push_s: f64,
    cpu_s: f64,
    rejected: usize,
    first_error: Option<String>,
    peak_rss: u64,
    /// Peak RSS when the push ended, before any query ran.
    peak_rss_ingest: u64,
    disk_bytes: u64,
    disk_note: String,
    latencies_ms: Vec<f64>,
    answers: Vec<queries::Answer>,
    /// The queries again once the data settled (see [`settled_queries`]).
    settled: Vec<queries::Settled>,
}

/// Runs the whole comparison and prints the markdown report.
pub async fn run(args: TsdbArgs) -> anyhow::Result<()> {
    servers::check_installed()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let end_ms = now_ms - now_ms % (args.interval_s as i64 * 1000);
    let t = Instant::now();
    let data = dataset::generate(args.targets, args.hours, args.interval_s, end_ms, args.targets_per_request, args.steps_per_request);
    let nreq: usize = data.slices.iter().map(Vec::len).sum();
    eprintln!(
        "dataset: {} targets × {} series = {} series, {} samples, {nreq} requests ({:.0} samples each, {:.1} MB snappy) encoded in {:.1} s",
        args.targets,
        dataset::series_per_target(),
        data.series,
        data.samples,
        data.samples as f64 / nreq as f64,
        data.wire_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let dir = tempfile::Builder::new().prefix("pharos-tsdb-bench").tempdir()?;
    let root = if args.keep { dir.keep() } else { dir.path().to_path_buf() };
    let mut outcomes = Vec::new();
    let engines: &[Engine] =
        if args.pharos_only { &[Engine::Pharos] } else { &[Engine::Pharos, Engine::VictoriaMetrics, Engine::Prometheus] };
    for engine in engines {
        eprintln!("--- {}", engine.name());
        outcomes.push(measure(*engine, &root, &data, &args).await?);
    }
    if args.pharos_only {
        println!("{}", report_alone(&outcomes[0], &data));
    } else {
        println!("{}", report(&outcomes, &data, &args));
    }
    if args.keep {
        eprintln!("data kept in {}", root.display());
    }
    Ok(())
}

async fn push(server: &Server, data: &dataset::Dataset, senders: usize) -> (usize, Option<String>) {
    use futures_lite::*;
    let client = reqwest::Client::new();
    let url = server.write_url();
    let mut rejected = 0;
    let mut first_error = None;
    // Slice by slice (time order); the requests of one slice go out concurrently.
    for slice in &data.slices {
        for chunk in slice.chunks(senders.max(1)) {
            let sends = chunk.iter().map(|body| {
                client
                    .post(&url)
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(body.clone())
                    .send()
            });
            for r in join_all(sends).await {
                match r {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => {
                        rejected += 1;
                        let st = r.status();
                        let text = r.text().await.unwrap_or_default();
                        first_error.get_or_insert(format!("{st}: {}", text.chars().take(200).collect::<String>()));
                    }
                    Err(e) => {
                        rejected += 1;
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
        }
    }
    (rejected, first_error)
}

mod futures_lite {
    /// Awaits all futures concurrently (on this task), keeping their order.
    pub async fn join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let handles: Vec<_> = fs.map(Box::pin).collect();
        let mut outs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
        let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (h, o) in handles.iter_mut().zip(outs.iter_mut()) {
                if let Some(f) = h {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            *o = Some(v);
                            *h = None;
                        }
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
        })
        .await;
        outs.into_iter().map(|o| o.expect("every future completed")).collect()
    }
}

async fn measure(engine: Engine, root: &std::path::Path, data: &dataset::Dataset, args: &TsdbArgs) -> anyhow::Result<Outcome> {
    let mut server = Server::start(engine, root).await?;
    let client = reqwest::Client::new();
    let cpu0 = server.cpu_seconds();
    let t = Instant::now();
    let (rejected, first_error) = push(&server, data, args.senders).await;
    let push_s = t.elapsed().as_secs_f64();
    let cpu_s = server.cpu_seconds() - cpu0;
    let peak_rss_ingest = server.peak_rss_bytes();
    let head = match engine {
        Engine::Pharos => {
            let chunk = pharos_e2e::metric_value(&server.addr, "pharos_collector_head_chunk_bytes").await.unwrap_or(0.0);
            let rows = pharos_e2e::metric_value(&server.addr, "pharos_collector_head_rows").await.unwrap_or(0.0);
            format!(", head: {rows:.0} samples in {:.1} MB of chunks ({:.2} B/sample)", chunk / 1e6, chunk / rows.max(1.0))
        }
        _ => String::new(),
    };
    eprintln!("pushed in {push_s:.1} s, {cpu_s:.1} CPU-s, {rejected} requests rejected {first_error:?}, peak RSS {:.0} MB{head}", peak_rss_ingest as f64 / 1e6);
    if engine == Engine::VictoriaMetrics {
        client.get(format!("http://{}/internal/force_flush", server.addr)).send().await?;
    }
    let mut latencies_ms = Vec::new();
    let mut answers = Vec::new();
    for q in QUERIES {
        for shape in Shape::ALL {
            let (p50, a) = queries::time_query(&client, &server.addr, q, shape, data.start_ms, data.end_ms, engine == Engine::VictoriaMetrics, args.query_runs).await?;
            let breakdown = match engine {
                Engine::Pharos => queries::pharos_breakdown(&client, &server.addr, q, shape, data.start_ms, data.end_ms)
                    .await
                    .map(|(prep, eval, n)| format!("  (one more run: reading {prep:.1} ms, evaluating {eval:.1} ms, {n} samples)"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            eprintln!("{:>8.1} ms  {} {q}{breakdown}", p50, shape.name());
            latencies_ms.push(p50);
            answers.push(a);
        }
    }
    let peak_rss = server.peak_rss_bytes();
    let (disk_bytes, disk_note) = match engine {
        Engine::Pharos => pharos_disk(&mut server).await?,
        Engine::VictoriaMetrics => {
            client.get(format!("http://{}/internal/force_flush", server.addr)).send().await?;
            let month = chrono::DateTime::from_timestamp_millis(data.start_ms).unwrap_or_default().format("%Y_%m").to_string();
            client.get(format!("http://{}/internal/force_merge?partition_prefix={month}", server.addr)).send().await?;
            let b = settle(|| du(&server.data), Duration::from_secs(5), Duration::from_secs(300)).await;
            (b, "du of -storageDataPath after force_flush + force_merge (data + indexdb)".into())
        }
        Engine::Prometheus => (du(&server.data), "du of the tsdb dir: head chunks + WAL (under 3 h of data, no block is compacted)".into()),
    };
    let settled = settled_queries(&client, &server, data, args).await?;
    server.proc.terminate();
    Ok(Outcome { engine, push_s, cpu_s, rejected, first_error, peak_rss, peak_rss_ingest, disk_bytes, disk_note, latencies_ms, answers, settled })
}

/// The query set once more after the disk measurement, when no flush, compaction or merge
/// runs next to the queries (Pharos restarted and compacted, VictoriaMetrics force-merged,
/// Prometheus as it was): p50 latency and the server's CPU time per run, the figure that
/// carries across machines and does not depend on how many cores a query spreads over.
async fn settled_queries(client: &reqwest::Client, server: &Server, data: &dataset::Dataset, args: &TsdbArgs) -> anyhow::Result<Vec<queries::Settled>> {
    let vm = server.engine == Engine::VictoriaMetrics;
    let mut out = Vec::new();
    for q in QUERIES {
        for shape in Shape::ALL {
            // One run first: files opened, caches of the OS warm, as for a dashboard refresh.
            queries::time_query(client, &server.addr, q, shape, data.start_ms, data.end_ms, vm, 1).await?;
            let cpu0 = server.cpu_seconds();
            let (p50, answer) = queries::time_query(client, &server.addr, q, shape, data.start_ms, data.end_ms, vm, args.settled_runs).await?;
            let cpu_ms = (server.cpu_seconds() - cpu0) * 1000.0 / args.settled_runs.max(1) as f64;
            eprintln!("{:>8.1} ms {:>6.1} CPU-ms  settled {} {q}", p50, cpu_ms, shape.name());
            out.push(queries::Settled { p50_ms: p50, cpu_ms, answer });
        }
    }
    Ok(out)
}

/// Waits until `f()` stays the same for `quiet`, or `timeout`; returns the last value.
async fn settle(f: impl Fn() -> u64, quiet: Duration, timeout: Duration) -> u64 {
    let start = Instant::now();
    let (mut last, mut since) = (f(), Instant::now());
    while since.elapsed() < quiet && start.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = f();
        if v != last {
            (last, since) = (v, Instant::now());
        }
    }
    last
}

/// The level compaction writes (`pharos_collector::parquet_files::COMPACT_ZSTD_LEVEL`, which
/// this crate does not link).
const COMPACT_ZSTD_LEVEL: i64 = 12;

/// SIGTERM (final flush), restart with every partition taken as settled, and wait until
/// compaction leaves one file per hour partition, each at compaction's zstd level.
async fn pharos_disk(server: &mut Server) -> anyhow::Result<(u64, String)> {
    std::fs::write(server.root.join("pharos.yaml"), servers::pharos_config(&server.data, true))?;
    server.restart().await?;
    let cpu0 = server.cpu_seconds();
    let manifest = server.data.join("manifest.json");
    let read = || -> (u64, usize, usize, bool) {
        let m: serde_json::Value = std::fs::read(&manifest).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let files = m["metric_files"].as_array().cloned().unwrap_or_default();
        let bytes = files.iter().filter_map(|f| f["bytes"].as_u64()).sum();
        let parts: std::collections::BTreeSet<String> = files.iter().filter_map(|f| f["path"].as_str()).map(|p| p.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default()).collect();
        let compacted = files.iter().all(|f| f["zstd_level"].as_i64() == Some(COMPACT_ZSTD_LEVEL));
        (bytes, files.len(), parts.len(), compacted)
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (bytes, files, parts, compacted) = read();
        if (files > 0 && files == parts && compacted) || Instant::now() > deadline {
            let cpu = server.cpu_seconds() - cpu0;
            let note = format!(
                "Parquet files in the manifest after SIGTERM flush + compaction ({files} files, {parts} hour partitions; {cpu:.1} CPU-s from the restart until then)"
            );
            return Ok((bytes, note));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 { "–".into() } else { format!("{:.2}×", a / b) }
}

/// Pharos' own figures, without peers (`--pharos-only`).
fn report_alone(p: &Outcome, data: &dataset::Dataset) -> String {
    let samples = data.samples as f64;
    let mut s = format!(
        "Pharos alone: {:.0}k samples per CPU-second ({:.1} CPU-s), push {:.1} s, {:.2} bytes per sample, peak RSS {:.0} bytes per series ({:.0} MB; {:.0} MB when the push ended, before the queries)\n",
        samples / p.cpu_s.max(1e-9) / 1e3,
        p.cpu_s,
        p.push_s,
        p.disk_bytes as f64 / samples,
        p.peak_rss as f64 / data.series as f64,
        p.peak_rss as f64 / 1e6,
        p.peak_rss_ingest as f64 / 1e6
    );
    s.push_str(&format!("disk: {}\n", p.disk_note));
    let mut i = 0;
    for q in QUERIES {
        for shape in Shape::ALL {
            let st = &p.settled[i];
            let same = if queries::differs(&st.answer, &p.answers[i]).is_none() { "=" } else { "≠" };
            s.push_str(&format!(
                "p50 ms, {} `{q}`: {:.1}; settled: {:.1} ms, {:.1} CPU-ms per run (answer {same} the live one)\n",
                shape.name(),
                p.latencies_ms[i],
                st.p50_ms,
                st.cpu_ms
            ));
            i += 1;
        }
    }
    s
}

fn report(o: &[Outcome], data: &dataset::Dataset, args: &TsdbArgs) -> String {
    let (p, vm, pr) = (&o[0], &o[1], &o[2]);
    let mut s = String::new();
    let samples = data.samples as f64;
    s.push_str(&format!(
        "Dataset: {} targets, {} series, {} h of {} s samples = {} samples, no churn; {} requests of ~{:.0} samples ({} targets × {} scrapes), {} concurrent senders.\n\n",
        args.targets,
        data.series,
        args.hours,
        args.interval_s,
        data.samples,
        data.slices.iter().map(Vec::len).sum::<usize>(),
        samples / data.slices.iter().map(Vec::len).sum::<usize>() as f64,
        args.targets_per_request,
        args.steps_per_request,
        args.senders
    ));
    s.push_str("| measurement | Pharos | VictoriaMetrics | Prometheus | Pharos / VM | Pharos / Prometheus |\n|---|---|---|---|---|---|\n");
    let row = |s: &mut String, name: &str, v: [f64; 3], fmt: &dyn Fn(f64) -> String| {
        s.push_str(&format!("| {name} | {} | {} | {} | {} | {} |\n", fmt(v[0]), fmt(v[1]), fmt(v[2]), ratio(v[0], v[1]), ratio(v[0], v[2])));
    };
    let per = |x: &Outcome| samples / x.cpu_s.max(1e-9);
    row(&mut s, "ingest, samples per CPU-second (higher is better)", [per(p), per(vm), per(pr)], &|v| format!("{:.0}k", v / 1e3));
    row(&mut s, "ingest CPU-seconds of the server", [p.cpu_s, vm.cpu_s, pr.cpu_s], &|v| format!("{v:.1}"));
    row(&mut s, "push wall time, s", [p.push_s, vm.push_s, pr.push_s], &|v| format!("{v:.1}"));
    row(&mut s, "bytes per sample on disk", [p.disk_bytes as f64 / samples, vm.disk_bytes as f64 / samples, pr.disk_bytes as f64 / samples], &|v| format!("{v:.2}"));
    let rss = |x: &Outcome| x.peak_rss as f64 / data.series as f64;
    row(&mut s, "peak RSS per active series, bytes", [rss(p), rss(vm), rss(pr)], &|v| format!("{v:.0}"));
    row(&mut s, "peak RSS, MB", [p.peak_rss as f64 / 1e6, vm.peak_rss as f64 / 1e6, pr.peak_rss as f64 / 1e6], &|v| format!("{v:.0}"));
    let mut i = 0;
    for q in QUERIES {
        for shape in Shape::ALL {
            let eq = |x: &Outcome| match queries::differs(&x.answers[i], &pr.answers[i]) {
                None => "=".to_string(),
                Some(_) => "≠".to_string(),
            };
            s.push_str(&format!(
                "| p50 ms, {} `{}` (answer vs Prometheus) | {:.1} ({}) | {:.1} ({}) | {:.1} | {} | {} |\n",
                shape.name(),
                q,
                p.latencies_ms[i],
                eq(p),
                vm.latencies_ms[i],
                eq(vm),
                pr.latencies_ms[i],
                ratio(p.latencies_ms[i], vm.latencies_ms[i]),
                ratio(p.latencies_ms[i], pr.latencies_ms[i])
            ));
            i += 1;
        }
    }
    s.push_str(&format!(
        "\nSettled (after the disk measurement: Pharos restarted and compacted, VictoriaMetrics force-merged, Prometheus unchanged), {} runs per query after one more, server CPU from /proc:\n\n",
        args.settled_runs
    ));
    s.push_str("| query | Pharos p50 ms | VM p50 ms | Prometheus p50 ms | Pharos CPU-ms per run | VM CPU-ms per run | Prometheus CPU-ms per run | p50 Pharos / VM | CPU Pharos / VM | Pharos answer (vs Prometheus, vs its live answer) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let mut i = 0;
    for q in QUERIES {
        for shape in Shape::ALL {
            let (a, b, c) = (&p.settled[i], &vm.settled[i], &pr.settled[i]);
            let vs_prom = if queries::differs(&a.answer, &c.answer).is_none() { "=" } else { "≠" };
            let vs_live = if queries::differs(&a.answer, &p.answers[i]).is_none() { "=" } else { "≠" };
            s.push_str(&format!(
                "| {} `{q}` | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {vs_prom}, {vs_live} |\n",
                shape.name(),
                a.p50_ms,
                b.p50_ms,
                c.p50_ms,
                a.cpu_ms,
                b.cpu_ms,
                c.cpu_ms,
                ratio(a.p50_ms, b.p50_ms),
                ratio(a.cpu_ms, b.cpu_ms)
            ));
            i += 1;
        }
    }
    s.push('\n');
    for x in o {
        s.push_str(&format!("- {} disk: {}.", x.engine.name(), x.disk_note));
        if x.rejected > 0 {
            s.push_str(&format!(" {} requests rejected, first: {}.", x.rejected, x.first_error.as_deref().unwrap_or("")));
        }
        s.push('\n');
    }
    for (i, a) in p.answers.iter().enumerate() {
        if let Some(d) = queries::differs(a, &pr.answers[i]) {
            s.push_str(&format!("- Pharos ≠ Prometheus on `{}` ({}): {d}\n", QUERIES[i / 3], Shape::ALL[i % 3].name()));
        }
    }
    s
}
