//! One HTTP listener serving every emulated endpoint under path prefixes, a ticker that advances
//! the simulation on a timer, and a poster that delivers Trino events to an HTTP receiver.
//!
//! | path | what |
//! |---|---|
//! | `/c/<cluster>/n/<node>/node-exporter/metrics` | node-exporter |
//! | `/c/<cluster>/n/<node>/kubelet/pods` | kubelet `PodList` |
//! | `/c/<cluster>/n/<node>/kubelet/metrics/cadvisor` | cAdvisor via the kubelet |
//! | `/c/<cluster>/n/<node>/kubelet/metrics/resource` | kubelet resource metrics |
//! | `/c/<cluster>/kube-state-metrics/metrics` | kube-state-metrics |
//! | `/c/<cluster>/spark/<app>/metrics/prometheus/` | Spark driver PrometheusServlet (301 without the slash) |
//! | `/c/<cluster>/spark/<app>/metrics/executors/prometheus` | Spark executors |
//! | `/c/<cluster>/trino/metrics` | Trino coordinator OpenMetrics |
//! | `/targets` | JSON list of the paths above that exist now |

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{SimConfig, Simulation, SparkAnswer};

type Shared = Arc<Mutex<Simulation>>;

const PROM_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn text(content_type: &'static str, body: Option<String>) -> Response {
    match body {
        Some(b) => ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], b).into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

fn with_sim<T>(sim: &Shared, f: impl FnOnce(&Simulation) -> T) -> T {
    let guard = sim.lock().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}

/// The router serving every emulated endpoint of `sim`.
pub fn router(sim: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/targets", get(targets))
        .route("/c/{cluster}/n/{node}/node-exporter/metrics", get(|State(s): State<Shared>, Path((c, n)): Path<(String, String)>| async move {
            text(PROM_TEXT, with_sim(&s, |sim| sim.node_exporter(&c, &n)))
        }))
        .route("/c/{cluster}/n/{node}/kubelet/pods", get(|State(s): State<Shared>, Path((c, n)): Path<(String, String)>| async move {
            text("application/json", with_sim(&s, |sim| sim.kubelet_pods(&c, &n)))
        }))
        .route("/c/{cluster}/n/{node}/kubelet/metrics/cadvisor", get(|State(s): State<Shared>, Path((c, n)): Path<(String, String)>| async move {
            text(PROM_TEXT, with_sim(&s, |sim| sim.cadvisor(&c, &n)))
        }))
        .route("/c/{cluster}/n/{node}/kubelet/metrics/resource", get(|State(s): State<Shared>, Path((c, n)): Path<(String, String)>| async move {
            text(PROM_TEXT, with_sim(&s, |sim| sim.resource_metrics(&c, &n)))
        }))
        .route("/c/{cluster}/kube-state-metrics/metrics", get(|State(s): State<Shared>, Path(c): Path<String>| async move {
            text(PROM_TEXT, with_sim(&s, |sim| sim.kube_state(&c)))
        }))
        .route("/c/{cluster}/trino/metrics", get(|State(s): State<Shared>, Path(c): Path<String>| async move {
            text(OPENMETRICS, with_sim(&s, |sim| sim.trino_metrics(&c)))
        }))
        .route("/c/{cluster}/spark/{app}/{*rest}", get(spark))
        .with_state(sim)
}

async fn index(State(s): State<Shared>) -> Response {
    let paths = with_sim(&s, |sim| sim.endpoint_paths());
    let mut body = String::from("pharos-sim endpoints\n\n");
    for p in paths {
        body.push_str(&p);
        body.push('\n');
    }
    body.into_response()
}

async fn targets(State(s): State<Shared>) -> Response {
    let paths = with_sim(&s, |sim| sim.endpoint_paths());
    axum::Json(paths).into_response()
}

async fn spark(State(s): State<Shared>, Path((c, app, rest)): Path<(String, String, String)>) -> Response {
    let rest = rest.trim_start_matches('/');
    let answer = with_sim(&s, |sim| match rest {
        "metrics/prometheus/" | "metrics/executors/prometheus" => sim.spark_driver(&c, &app, rest.contains("executors")),
        _ => sim.spark_driver(&c, &app, false).map(|a| match a {
            SparkAnswer::Starting(p) => SparkAnswer::Starting(p),
            SparkAnswer::Ready(_) => SparkAnswer::Ready(String::new()),
        }),
    });
    match answer {
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        Some(SparkAnswer::Starting(body)) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=utf-8"))], body).into_response()
        }
        Some(SparkAnswer::Ready(body)) => match rest {
            "metrics/prometheus" => {
                let loc = format!("/c/{c}/spark/{app}/metrics/prometheus/");
                (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, loc)]).into_response()
            }
            "metrics/prometheus/" => text("text/plain;charset=utf-8", Some(body)),
            "metrics/executors/prometheus" => text("text/plain", Some(body)),
            _ => (StatusCode::NOT_FOUND, "not found\n").into_response(),
        },
    }
}

/// How [`SimServer::start`] runs the simulation.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Tick on a timer every `tick_ms` of wall time (default true via [`SimServer::start`]'s
    /// caller); `false` leaves ticking to the caller (`server.sim.lock().tick()`).
    pub auto_tick: bool,
    /// POST every Trino QueryCompletedEvent here (retried with backoff until accepted).
    pub trino_events_url: Option<String>,
}

/// A running simulator: listener, ticker and Trino event poster. Aborted on drop.
pub struct SimServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The simulation, shared with the handlers.
    pub sim: Shared,
    tasks: Vec<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `listen` (port 0 for an ephemeral one) and starts serving `cfg`.
    pub async fn start(cfg: SimConfig, listen: SocketAddr, opts: RunOptions) -> anyhow::Result<SimServer> {
        use anyhow::Context;
        let tick = Duration::from_millis(cfg.tick_ms.max(1));
        let sim = Arc::new(Mutex::new(Simulation::new(cfg).context("failed to create the simulation output directories")?));
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("failed to bind {listen}"))?;
        let addr = listener.local_addr()?;
        let app = router(sim.clone());
        let mut tasks = vec![tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })];
        let (tx, rx) = mpsc::channel::<String>(10_000);
        if let Some(url) = opts.trino_events_url.clone() {
            tasks.push(tokio::spawn(post_events(url, rx)));
        }
        if opts.auto_tick {
            let sim = sim.clone();
            let forward = opts.trino_events_url.is_some();
            tasks.push(tokio::spawn(async move {
                let mut interval = tokio::time::interval(tick);
                interval.tick().await;
                loop {
                    interval.tick().await;
                    let s = sim.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        let mut sim = s.lock().unwrap_or_else(|p| p.into_inner());
                        sim.tick()?;
                        write_file_sd(&sim, addr)?;
                        Ok::<_, std::io::Error>(sim.take_trino_events())
                    })
                    .await;
                    match res {
                        Ok(Ok(events)) if forward => {
                            for e in events {
                                if tx.try_send(e).is_err() {
                                    eprintln!("pharos-sim: trino event queue full, event dropped (it is still in trino-events.jsonl)");
                                }
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => eprintln!("pharos-sim: tick failed: {e}"),
                        Err(e) if e.is_cancelled() => break, // runtime shutting down
                        Err(e) => eprintln!("pharos-sim: tick panicked: {e}"),
                    }
                }
            }));
        }
        {
            let s = sim.lock().unwrap_or_else(|p| p.into_inner());
            write_file_sd(&s, addr)?;
        }
        Ok(SimServer { addr, sim, tasks })
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Delivers events one by one, retrying each (250 ms doubling to 10 s) until a 2xx.
async fn post_events(url: String, mut rx: mpsc::Receiver<String>) {
    let client = reqwest::Client::new();
    while let Some(event) = rx.recv().await {
        let mut delay = Duration::from_millis(250);
        loop {
            let res = client.post(&url).header("content-type", "application/json; charset=utf-8").body(event.clone()).send().await;
            match res {
                Ok(r) if r.status().is_success() => break,
                Ok(r) if r.status().is_client_error() && r.status() != 408 && r.status() != 429 => {
                    eprintln!("pharos-sim: {url} refused a trino event with {}; not retried", r.status());
                    break;
                }
                Ok(r) => eprintln!("pharos-sim: {url} answered {}; retrying in {delay:?}", r.status()),
                Err(e) => eprintln!("pharos-sim: POST {url} failed: {e}; retrying in {delay:?}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}

/// Writes `<out-dir>/file_sd.json` (atomically: temp file, rename) so an agent's
/// `scrape.file_targets` follows the endpoints as Spark applications come and go.
fn write_file_sd(sim: &Simulation, addr: SocketAddr) -> std::io::Result<()> {
    let Some(dir) = sim.out_dir() else { return Ok(()) };
    let body = serde_json::to_vec_pretty(&sim.file_sd_groups(&addr.to_string()))?;
    let path = dir.join("file_sd.json");
    if std::fs::read(&path).ok().as_deref() == Some(body.as_slice()) {
        return Ok(());
    }
    let tmp = dir.join("file_sd.json.tmp");
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, &path)
}
