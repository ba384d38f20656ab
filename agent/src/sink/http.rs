//! The OTLP/HTTP sink: `POST {collector_url}/v1/metrics` and `/v1/logs` with protobuf bodies.

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::{Attempt, Signal};

/// Posts OTLP protobuf to a collector.
pub struct HttpSink {
    client: reqwest::Client,
    metrics_url: Url,
    logs_url: Url,
    base: String,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpSink {
    /// A sink for the collector at `collector_url` (plain HTTP).
    pub fn new(collector_url: &str) -> anyhow::Result<HttpSink> {
        let base = crate::config::parse_http_url("sink.collector_url", collector_url)?;
        let join = |path: &str| -> anyhow::Result<Url> {
            let mut url = base.clone();
            let prefix = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!("{prefix}{path}"));
            Ok(url)
        };
        Ok(HttpSink {
            client: reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build()?,
            metrics_url: join("/v1/metrics")?,
            logs_url: join("/v1/logs")?,
            base: collector_url.to_string(),
        })
    }

    /// The collector URL this sink posts to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub(crate) async fn send(&self, signal: Signal, payload: &[u8]) -> Attempt {
        let url = match signal {
            Signal::Metrics => &self.metrics_url,
            Signal::Logs => &self.logs_url,
        };
        let response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .body(payload.to_vec())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("POST {url}: {}", super::error_chain(&e))),
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done;
        }
        let body = response.text().await.unwrap_or_default();
        let reason = format!("POST {url}: {status}: {}", body.chars().take(300).collect::<String>());
        // 408 and 429 are "try later", every other 4xx is the payload's fault.
        let transient = status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
        if status.is_client_error() && !transient { Attempt::Reject(reason) } else { Attempt::Retry(reason) }
    }
}
