//! `pharos-bench logs` — issue 4: log indexing throughput, on-disk size and query latency of
//! Pharos next to `ripgrep` over the same raw files, in the same run.
//!
//! A deterministic corpus (Kubernetes, Spark with multi-line stack traces, Trino with query ids,
//! trace ids everywhere) is written as plain files (one per stream, for `rg`) and as Loki push
//! JSON bodies (several MB each). The bodies are POSTed by concurrent senders to a release
//! `pharos serve`; the clock stops when every record is ingested and the head has been flushed
//! into tantivy splits. Rare terms, a phrase and one Trino query id are planted at known
//! positions, so both tools' answers are checked against the generator's counts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pharos_e2e::*;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Raw corpus size in MB.
    #[arg(long, default_value_t = 1024)]
    mb: usize,
    /// Concurrent push senders.
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Raw MB per push request.
    #[arg(long, default_value_t = 4)]
    batch_mb: usize,
    /// Runs per query (p50 reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Work in this (new or empty) directory and keep it afterwards (corpus, data_dir), for
    /// profiling a query by hand; by default a temporary directory is removed at the end.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
}

const RARE: &str = "ZQXV9RARE";
const PHRASE: &str = "disk quota exceeded for tenant acme";
const TERM: &str = "OutOfMemoryError";
const STREAMS: usize = 12;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(n);
        s
    }
}

fn stream_labels(s: usize) -> Vec<(&'static str, String)> {
    let (ns, app) = match s % 3 {
        0 => ("kube-system", "coredns"),
        1 => ("spark-jobs", "spark-executor"),
        _ => ("trino", "trino-worker"),
    };
    vec![
        ("cluster", "bench".into()),
        ("namespace", ns.into()),
        ("app", app.into()),
        ("pod", format!("{app}-{}-{:05x}", s / 3, s * 7919)),
        ("container", app.into()),
    ]
}

struct Corpus {
    dir: PathBuf,
    bodies: Vec<PathBuf>,
    lines: u64,
    raw_bytes: u64,
    first_ns: i64,
    last_ns: i64,
    rare: Vec<String>,
    phrase: u64,
    term: u64,
    qid: String,
    qid_count: u64,
}

/// One log line of stream `s` (its own RFC 3339 timestamp first, as runtimes write them).
/// Multi-line stack traces come out as several consecutive lines (one record each, as an agent
/// without a multiline preset sends them).
fn gen_lines(s: usize, r: &mut Rng, ts: &str, pending: &mut Vec<String>, trino_q: &mut (String, u32, u32)) -> String {
    if let Some(l) = pending.pop() {
        return format!("{ts} {l}");
    }
    let trace = r.hex(32);
    let span = r.hex(16);
    match s % 3 {
        0 => match r.below(4) {
            0 => format!("{ts} I1122 17:25:{:02}.{:06} 1 reflector.go:{}] Watch close - *v1.Pod total {} items received trace_id={trace}", r.below(60), r.below(1_000_000), 200 + r.below(300), r.below(900)),
            1 => format!("{ts} [INFO] 10.244.{}.{}:{} - {} \"A IN svc-{}.default.svc.cluster.local. udp 64 false 512\" NOERROR qr,aa,rd 116 0.000{}s", r.below(255), r.below(255), 30000 + r.below(30000), r.below(65535), r.below(5000), r.below(999)),
            2 => format!("{ts} {{\"level\":\"info\",\"ts\":{}.{},\"logger\":\"controller\",\"msg\":\"Reconciling\",\"namespace\":\"team-{}\",\"name\":\"deploy-{}\",\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"}}", 1_795_000_000 + r.below(100_000), r.below(1000), r.below(40), r.below(3000)),
            _ => format!("{ts} W1122 17:25:{:02}.{:06} 1 kubelet.go:{}] Pod sandbox changed, it will be killed and re-created. pod=\"default/web-{}\" podUID={}", r.below(60), r.below(1_000_000), 1000 + r.below(2000), r.below(9999), r.hex(32)),
        },
        1 => {
            let n = r.below(200);
            if n == 0 {
                // A multi-line Java stack trace.
                let depth = 4 + r.below(12) as usize;
                let mut frames: Vec<String> = (0..depth)
                    .map(|i| format!("\tat org.apache.spark.sql.execution.Stage{}.processNext(Unknown Source:{})", i, r.below(900)))
                    .collect();
                frames.push("Caused by: java.io.IOException: Connection reset by peer".into());
                frames.reverse();
                *pending = frames;
                return format!("{ts} ERROR Executor: Exception in task {}.0 in stage {}.0 (TID {}) java.lang.{TERM}: Java heap space", r.below(5000), r.below(300), r.below(900_000));
            }
            match n % 3 {
                0 => format!("{ts} INFO TaskSetManager: Finished task {}.0 in stage {}.0 (TID {}) in {} ms on 10.0.{}.{} (executor {}) ({}/{})", r.below(5000), r.below(300), r.below(900_000), r.below(20000), r.below(255), r.below(255), r.below(64), r.below(200), 200),
                1 => format!("{ts} INFO BlockManagerInfo: Added broadcast_{}_piece0 in memory on 10.0.{}.{}:{} (size: {}.{} KiB, free: 4.{} GiB) trace_id={trace}", r.below(9000), r.below(255), r.below(255), 30000 + r.below(30000), r.below(100), r.below(10), r.below(10)),
                _ => format!("{ts} INFO ShuffleBlockFetcherIterator: Getting {} (12.{} MiB) non-empty blocks including {} local and {} remote blocks app=app-20261122172500-{:04}", r.below(500), r.below(10), r.below(100), r.below(400), r.below(9999)),
            }
        }
        _ => {
            if trino_q.1 == 0 {
                trino_q.0 = format!("20261122_1725{:02}_{:05}_{}", r.below(60), r.below(100_000), &r.hex(5));
                trino_q.1 = 3 + r.below(8) as u32;
                trino_q.2 = trino_q.1;
            }
            trino_q.1 -= 1;
            let q = &trino_q.0;
            match r.below(3) {
                0 => format!("{ts} INFO dispatcher-query-{} io.trino.event.QueryMonitor TIMELINE: Query {q} :: FINISHED :: elapsed {}ms :: planning {}ms :: execution {}ms :: queued 0ms user=analyst{} source=superset trace_id={trace}", r.below(999), r.below(60000), r.below(900), r.below(50000), r.below(300)),
                1 => format!("{ts} DEBUG task-notification-{} io.trino.execution.SqlTaskManager Task {q}.{}.{}.0 state changed to RUNNING splits={} catalog=hive schema=sales_{}", r.below(99), r.below(9), r.below(40), r.below(4000), r.below(50)),
                _ => format!("{ts} INFO Query-{q}-{} io.trino.operator.Driver split {} of table hive.sales_{}.orders_{} processed {} rows in {}ms span_id={span}", r.below(9999), r.below(100000), r.below(50), r.below(2000), r.below(1_000_000), r.below(5000)),
            }
        }
    }
}

fn esc_json(s: &str) -> String {
    serde_json::to_string(s).expect("json string")
}

fn generate(root: &Path, args: &LogsArgs) -> Corpus {
    use std::io::Write;
    let target = args.mb as u64 * 1_000_000;
    let raw = root.join("raw");
    std::fs::create_dir_all(&raw).expect("raw dir");
    let mut files: Vec<_> = (0..STREAMS)
        .map(|s| std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(raw.join(format!("stream-{s:02}.log"))).expect("raw file")))
        .collect();
    let mut rngs: Vec<Rng> = (0..STREAMS).map(|s| Rng(0x9E37_79B9_7F4A_7C15 ^ (s as u64 + 1) * 0x1234_5678_9ABC_DEF1)).collect();
    let mut pending: Vec<Vec<String>> = vec![Vec::new(); STREAMS];
    let mut trino: Vec<(String, u32, u32)> = vec![(String::new(), 0, 0); STREAMS];
    let labels: Vec<String> = (0..STREAMS)
        .map(|s| format!("{{{}}}", stream_labels(s).iter().map(|(k, v)| format!("{}:{}", esc_json(k), esc_json(v))).collect::<Vec<_>>().join(",")))
        .collect();
    // ~260 B/line; the corpus spans 2 h ending 10 min ago, lines 1 µs-aligned (never on a minute edge).
    let est_lines = target / 260 + 1;
    let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let span_ns: i64 = 2 * 3600 * 1_000_000_000;
    let first_ns = (now_ns - span_ns - 600 * 1_000_000_000) / 60_000_000_000 * 60_000_000_000 + 123_457;
    let step_ns = (span_ns as u64 / est_lines).max(1000) / 1000 * 1000;
    let mut c = Corpus { dir: raw.clone(), bodies: vec![], lines: 0, raw_bytes: 0, first_ns, last_ns: first_ns, rare: vec![], phrase: 0, term: 0, qid: String::new(), qid_count: 0 };
    let mut per_stream: Vec<Vec<(i64, String)>> = vec![Vec::new(); STREAMS];
    let mut batch_bytes = 0u64;
    let batch_target = args.batch_mb as u64 * 1_000_000;
    let flush_body = |per_stream: &mut Vec<Vec<(i64, String)>>, bodies: &mut Vec<PathBuf>| {
        let path = root.join(format!("body-{:05}.json", bodies.len()));
        let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).expect("body file"));
        w.write_all(b"{\"streams\":[").expect("write");
        let mut first = true;
        for (s, vals) in per_stream.iter_mut().enumerate() {
            if vals.is_empty() {
                continue;
            }
            if !first {
                w.write_all(b",").expect("write");
            }
            first = false;
            write!(w, "{{\"stream\":{},\"values\":[", labels[s]).expect("write");
            for (i, (ts, line)) in vals.drain(..).enumerate() {
                write!(w, "{}[\"{ts}\",{}]", if i > 0 { "," } else { "" }, esc_json(&line)).expect("write");
            }
            w.write_all(b"]}").expect("write");
        }
        w.write_all(b"]}").expect("write");
        w.flush().expect("flush");
        bodies.push(path);
    };
    let mut rr = Rng(42);
    let mut qid_stream = usize::MAX;
    while c.raw_bytes < target {
        let i = c.lines;
        let s = rr.below(STREAMS as u64) as usize;
        let ts_ns = first_ns + (i * step_ns) as i64;
        let ts = chrono::DateTime::from_timestamp_nanos(ts_ns).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        let mut line = gen_lines(s, &mut rngs[s], &ts, &mut pending[s], &mut trino[s]);
        if i % 4999 == 1234 {
            let tag = format!("{RARE}-{:06}", i / 4999);
            line.push_str(&format!(" note={tag}"));
            c.rare.push(line.clone());
        }
        if i % 7919 == 77 {
            line.push_str(&format!(" warn: {PHRASE} (used {} GiB)", i % 97));
        }
        // The Trino query id of the query running at half the corpus: its lines are counted.
        if s % 3 == 2 && c.qid.is_empty() && c.raw_bytes >= target / 2 && trino[s].1 >= 2 {
            c.qid = trino[s].0.clone();
            qid_stream = s;
            // Lines of this query already written (the current one is counted below).
            c.qid_count = (trino[s].2 - trino[s].1 - 1) as u64;
        }
        if !c.qid.is_empty() && s == qid_stream && line.contains(&c.qid) {
            c.qid_count += 1;
        }
        if line.contains(PHRASE) {
            c.phrase += 1;
        }
        if line.contains(TERM) {
            c.term += 1;
        }
        files[s].write_all(line.as_bytes()).expect("write");
        files[s].write_all(b"\n").expect("write");
        c.raw_bytes += line.len() as u64 + 1;
        batch_bytes += line.len() as u64 + 1;
        c.lines += 1;
        c.last_ns = ts_ns;
        per_stream[s].push((ts_ns, line));
        if batch_bytes >= batch_target {
            flush_body(&mut per_stream, &mut c.bodies);
            batch_bytes = 0;
        }
    }
    if batch_bytes > 0 {
        flush_body(&mut per_stream, &mut c.bodies);
    }
    for f in &mut files {
        f.flush().expect("flush");
    }
    c
}

async fn push_all(addr: &str, bodies: &[PathBuf], senders: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = std::sync::Arc::new(bodies.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..senders.max(1) {
        let (client, next, bodies, url) = (client.clone(), next.clone(), bodies.clone(), format!("http://{addr}/loki/api/v1/push"));
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = bodies.get(i) else { return anyhow::Ok(()) };
                let body = tokio::fs::read(p).await?;
                let r = client.post(&url).header("Content-Type", "application/json").body(body).send().await?;
                if !r.status().is_success() {
                    anyhow::bail!("push {i}: {} {}", r.status(), r.text().await.unwrap_or_default());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes under `dir` by file extension (tantivy: `store` doc store, `idx` postings, `pos`
/// positions, `term` term dictionary, `fast` columns), and the number of split directories.
fn du_by_extension(dir: &Path, out: &mut std::collections::BTreeMap<String, u64>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => {
                *out.entry("(splits)".into()).or_default() += u64::from(dir.ends_with("logs"));
                du_by_extension(&e.path(), out)
            }
            Ok(m) => {
                let p = e.path();
                let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("(none)").to_string();
                *out.entry(ext).or_default() += m.len();
            }
            Err(_) => {}
        }
    }
}

async fn metric(addr: &str, name: &str) -> f64 {
    metric_value(addr, name).await.unwrap_or(0.0)
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `sh -c cmd` `runs` times; p50 ms and the last stdout.
fn time_sh(cmd: &str, runs: usize) -> (f64, String) {
    let mut t = Vec::new();
    let mut out = String::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let o = Command::new("sh").args(["-c", cmd]).output().expect("sh");
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
        out = String::from_utf8_lossy(&o.stdout).into_owned();
    }
    (p50(t), out)
}

/// p50 and first run (ms) of `runs` GETs of `url`, and the last answer.
async fn time_http(client: &reqwest::Client, url: &str, runs: usize) -> anyhow::Result<(f64, f64, serde_json::Value)> {
    let mut t = Vec::new();
    let mut body = serde_json::Value::Null;
    for _ in 0..runs {
        let t0 = Instant::now();
        let r = client.get(url).send().await?;
        let st = r.status();
        let text = r.text().await?;
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(st.is_success(), "{url}: {st} {}", text.chars().take(300).collect::<String>());
        body = serde_json::from_str(&text)?;
    }
    let first = t.first().copied().unwrap_or_default();
    Ok((p50(t), first, body))
}

fn sum_counts(rg_c: &str) -> u64 {
    rg_c.lines().filter_map(|l| l.rsplit(':').next()?.trim().parse::<u64>().ok()).sum()
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(Command::new("rg").arg("--version").output().is_ok(), "ripgrep (rg) is not installed: apt-get install ripgrep");
    let dir = tempfile::tempdir()?;
    let root = match &args.keep_dir {
        Some(k) => {
            std::fs::create_dir_all(k)?;
            anyhow::ensure!(std::fs::read_dir(k)?.next().is_none(), "--keep-dir {} is not empty", k.display());
            k.as_path()
        }
        None => dir.path(),
    };
    let t0 = Instant::now();
    let c = generate(root, &args);
    eprintln!(
        "corpus: {} lines, {:.1} MB raw in {} files, {} push bodies, generated in {:.1} s; planted: {} rare, {} phrase, {} {TERM}, query id {} × {}",
        c.lines, c.raw_bytes as f64 / 1e6, STREAMS, c.bodies.len(), t0.elapsed().as_secs_f64(), c.rare.len(), c.phrase, c.term, c.qid, c.qid_count
    );
    let data = root.join("data");
    std::fs::write(root.join("pharos.yaml"), format!("data_dir: {:?}\ncollector:\n  flush_interval_ms: 1000\n", data.display().to_string()))?;
    let mut pharos = Pharos::serve(root, &["--config", root.join("pharos.yaml").to_str().expect("utf8")]).await;
    let pid = pharos.proc.child.id();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    push_all(&pharos.addr, &c.bodies, args.senders).await?;
    let push_s = t0.elapsed().as_secs_f64();
    let addr = pharos.addr.clone();
    wait_for_async("all records ingested and flushed", Duration::from_secs(3600), || {
        let addr = addr.clone();
        let n = c.lines as f64;
        async move {
            (metric(&addr, "pharos_collector_log_records_ingested_total").await >= n && metric(&addr, "pharos_collector_head_rows").await == 0.0).then_some(())
        }
    })
    .await;
    let e2e_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(pid) - cpu0;
    let mb = c.raw_bytes as f64 / 1e6;
    eprintln!("ingest: pushed (WAL-acked) in {push_s:.1} s, flushed to splits at {e2e_s:.1} s, {cpu_s:.1} server CPU-s");
    pharos.stop();
    pharos.start_again().await;
    let logs_bytes = du(&data.join("logs"));
    // What a general-purpose compressor at its strongest setting leaves of the raw corpus: the
    // information in it (random ids, numbers) that any lossless store must keep, with no index.
    // Measured on the first FLOOR_SAMPLE bytes of every stream file (zstd -19 is slow).
    const FLOOR_SAMPLE: u64 = 100_000_000;
    let per_file = FLOOR_SAMPLE / STREAMS as u64;
    let sampled: u64 = (0..STREAMS)
        .map(|s| std::fs::metadata(c.dir.join(format!("stream-{s:02}.log"))).map_or(0, |m| m.len().min(per_file)))
        .sum();
    let floor = Command::new("sh")
        .arg("-c")
        .arg(format!("for f in {}/stream-*.log; do head -c {per_file} \"$f\"; done | zstd -19 -T0 -c | wc -c", c.dir.display()))
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().ok())
        .filter(|&b| b > 0)
        .map(|b| (b, sampled));
    let data_bytes = du(&data);
    let mut by_ext = std::collections::BTreeMap::new();
    du_by_extension(&data.join("logs"), &mut by_ext);

    let client = reqwest::Client::new();
    let (start, end) = (c.first_ns - 1, c.last_ns + 1);
    let sel = "{cluster=\"bench\"}";
    let qr = |q: &str, limit: usize, dir: &str| {
        format!("http://{}/loki/api/v1/query_range?query={}&start={start}&end={end}&limit={limit}&direction={dir}", pharos.addr, enc(q))
    };
    let raw = c.dir.display().to_string();
    let mut rows: Vec<(String, String, f64, String, f64, String)> = Vec::new();

    // 1. last 100 lines with a rare term.
    let (pl, first, b) = time_http(&client, &qr(&format!("{sel} |= \"{RARE}\""), 100, "backward"), args.runs).await?;
    let mut got = loki_lines(&b);
    got.sort();
    let rg_cmd = format!("rg --no-filename -N -F '{RARE}' {raw} | sort | tail -n 100");
    let (rl, out) = time_sh(&rg_cmd, args.runs);
    let rg_lines: Vec<String> = out.lines().map(str::to_string).collect();
    let mut want: Vec<String> = c.rare[c.rare.len().saturating_sub(100)..].to_vec();
    want.sort();
    let ok = got == want && rg_lines == want;
    rows.push((format!("last 100 lines containing a rare term (`|= \"{RARE}\"`, {} hits)", c.rare.len()), format!("{first:.1} ms"), pl, rg_cmd, rl, format!("{}: pharos {} lines, rg {} lines, expected {}", if ok { "same 100 lines" } else { "MISMATCH" }, got.len(), rg_lines.len(), want.len())));

    // 2. a phrase (count).
    let (pl, first, b) = time_http(&client, &qr(&format!("{sel} |= \"{PHRASE}\""), 100_000, "backward"), args.runs).await?;
    let n = loki_lines(&b).len() as u64;
    let rg_cmd = format!("rg -c -F '{PHRASE}' {raw}");
    let (rl, out) = time_sh(&rg_cmd, args.runs);
    let rn = sum_counts(&out);
    rows.push((format!("a phrase (`|= \"{PHRASE}\"`)"), format!("{first:.1} ms"), pl, rg_cmd, rl, format!("{}: pharos {n}, rg {rn}, expected {}", if n == rn && n == c.phrase { "same count" } else { "MISMATCH" }, c.phrase)));

    // 3. a high-cardinality id (a Trino query id).
    let (pl, first, b) = time_http(&client, &qr(&format!("{sel} |= \"{}\"", c.qid), 100_000, "backward"), args.runs).await?;
    let n = loki_lines(&b).len() as u64;
    let rg_cmd = format!("rg -c -F '{}' {raw}", c.qid);
    let (rl, out) = time_sh(&rg_cmd, args.runs);
    let rn = sum_counts(&out);
    rows.push((format!("a high-cardinality id (Trino query id `{}`)", c.qid), format!("{first:.1} ms"), pl, rg_cmd, rl, format!("{}: pharos {n}, rg {rn}, expected {}", if n == rn && n == c.qid_count { "same count" } else { "MISMATCH" }, c.qid_count)));

    // 4. volume per minute for a term over the whole corpus.
    let q = format!("sum(count_over_time({sel} |= \"{TERM}\" [1m]))");
    let (s0, s1) = (c.first_ns / 60_000_000_000 * 60 + 60, (c.last_ns / 60_000_000_000) * 60 + 120);
    let url = format!("http://{}/loki/api/v1/query_range?query={}&start={s0}&end={s1}&step=60", pharos.addr, enc(&q));
    let (pl, first, b) = time_http(&client, &url, args.runs).await?;
    let total: f64 = prom_values(&b).iter().map(|(_, v)| v.parse::<f64>().unwrap_or(0.0)).sum();
    let rg_cmd = format!("rg -c -F '{TERM}' {raw}");
    let (rl, out) = time_sh(&rg_cmd, args.runs);
    let rn = sum_counts(&out);
    rows.push((format!("log volume per minute for a term, whole corpus (`{q}`, step 60s)"), format!("{first:.1} ms"), pl, rg_cmd, rl, format!("{}: pharos Σ {total}, rg {rn}, expected {}", if total as u64 == rn && rn == c.term { "same total" } else { "MISMATCH" }, c.term)));
    pharos.stop();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("\nLogs vs ripgrep: {} lines, {mb:.0} MB raw ({} B/line), {} senders × {} MB bodies, {} runs per query, {cores} cores\n", c.lines, c.raw_bytes / c.lines.max(1), args.senders, args.batch_mb, args.runs);
    println!("| measurement | Pharos | goal |\n|---|---|---|");
    println!("| push (WAL-acked), wall | {push_s:.1} s: {:.1} MB/s | |", mb / push_s);
    println!("| indexing end to end (push → all records flushed into tantivy splits), wall | {e2e_s:.1} s: {:.1} MB/s, {:.1} MB/s per core ({cores} cores) | |", mb / e2e_s, mb / e2e_s / cores as f64);
    println!("| indexing per server CPU-second (utime+stime from /proc) | {cpu_s:.1} CPU-s: **{:.1} MB/s per CPU-s** | ≥ 25 (Quickwit: 7.5) |", mb / cpu_s.max(1e-9));
    println!("| on disk, data_dir/logs (tantivy splits) after restart | {:.1} MB = **{:.1} %** of raw | ≤ 10 % |", logs_bytes as f64 / 1e6, logs_bytes as f64 * 100.0 / c.raw_bytes as f64);
    if let Some((f, sampled)) = floor {
        println!(
            "| for scale: raw lines through `zstd -19` (no index, not searchable; the first {:.0} MB of the streams) | {:.1} % of raw | |",
            sampled as f64 / 1e6,
            f as f64 * 100.0 / sampled.max(1) as f64
        );
    }
    println!("| on disk, whole data_dir (splits + WAL + manifest) | {:.1} MB = {:.1} % of raw | |", data_bytes as f64 / 1e6, data_bytes as f64 * 100.0 / c.raw_bytes as f64);
    let parts: Vec<String> = by_ext
        .iter()
        .map(|(k, v)| if k == "(splits)" { format!("{v} splits") } else { format!("{k} {:.1} MB ({:.1} %)", *v as f64 / 1e6, *v as f64 * 100.0 / c.raw_bytes as f64) })
        .collect();
    println!("| data_dir/logs by file type | {} | |", parts.join(", "));
    println!("\n| query (p50 of {}) | Pharos | Pharos, first run after the restart | ripgrep | rg time ÷ Pharos time (goal ≥ 50×) | check |\n|---|---|---|---|---|---|", args.runs);
    for (what, first, pl, cmd, rl, check) in &rows {
        println!("| {} | {pl:.1} ms | {first} | {rl:.0} ms (`{}`) | {:.3}× | {check} |", what.replace('|', "\\|"), cmd.replace(&raw, "raw/").replace('|', "\\|"), rl / pl);
    }
    Ok(())
}
