//! `pharos serve`: every control-plane role in one process on one listener.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use pharos_collector::Collector;
use pharos_collector::telemetry::CollectorMetrics;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::config::PharosConfig;

/// A running control plane; dropping it does not stop it, call [`Server::shutdown`].
pub struct Server {
    /// The address actually bound.
    pub addr: std::net::SocketAddr,
    collector: Collector,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// Opens the store (replaying unpublished data), starts ingest, and serves HTTP.
    pub async fn start(cfg: &PharosConfig) -> anyhow::Result<Server> {
        let metrics = Arc::new(CollectorMetrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let (data_dir, collector_cfg) = (cfg.data_dir.clone(), cfg.collector.clone());
        let m = metrics.clone();
        let collector = tokio::task::spawn_blocking(move || Collector::start(&data_dir, collector_cfg, m))
            .await?
            .with_context(|| format!("cannot start the collector on {}", cfg.data_dir.display()))?;
        let store = collector.store();
        let registry = Arc::new(registry);
        let sql = Arc::new(pharos_collector::sql::SqlEngine::new(store.clone()).context("cannot start the SQL engine")?);
        let app = Router::new()
            .merge(pharos_collector::http::router(store.clone()))
            .merge(pharos_query::router(store.clone(), store))
            .merge(pharos_query::sql_router(sql, pharos_query::SqlSettings::default()))
            .route("/metrics", get(move || own_metrics(registry.clone())))
            .route("/-/ready", get(|| async { "Pharos is Ready.\n" }))
            .route("/-/healthy", get(|| async { "Pharos is Healthy.\n" }))
            .route("/", get(index));
        let listener = TcpListener::bind(cfg.listen).await.with_context(|| format!("cannot listen on {}", cfg.listen))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%addr, data_dir = %cfg.data_dir.display(), kafka = cfg.collector.kafka.is_some(), "pharos serving");
        Ok(Server { addr, collector, serve, stop })
    }

    /// Stops serving, stops ingest and flushes the head.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let _ = self.serve.await;
        let collector = self.collector;
        tokio::task::spawn_blocking(move || collector.shutdown()).await?;
        Ok(())
    }
}

async fn own_metrics(registry: Arc<Registry>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            out,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}
