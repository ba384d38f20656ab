//! Sinks: where OTLP payloads go. [`Sink::send`] returns only once the payload is acknowledged
//! (Kafka delivery report, HTTP 2xx) or definitively rejected (HTTP 4xx); transient failures are
//! retried with backoff forever, so nothing is dropped while the agent runs.

mod http;
mod kafka;

use std::sync::Arc;
use std::time::Duration;

pub use http::HttpSink;
pub use kafka::KafkaSink;

use crate::config::AgentConfig;
use crate::telemetry::AgentMetrics;

/// `error: cause: cause…` — reqwest's top-level messages alone say little.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Which kind of payload is sent (selects the topic or the URL path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// An OTLP `ExportMetricsServiceRequest`.
    Metrics,
    /// An OTLP `ExportLogsServiceRequest`.
    Logs,
}

/// The final fate of one payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The sink has it.
    Acknowledged,
    /// The receiver refused it for good (HTTP 4xx); it was logged and counted, and is dropped.
    Rejected,
}

/// The result of one send attempt.
pub(crate) enum Attempt {
    /// Acknowledged.
    Done,
    /// Failed in a way that may pass; try again.
    Retry(String),
    /// Refused for good.
    Reject(String),
}

enum Transport {
    Kafka(KafkaSink),
    Http(HttpSink),
}

/// The configured sink (cheap to clone; clones share the connection).
#[derive(Clone)]
pub struct Sink {
    transport: Arc<Transport>,
    metrics: AgentMetrics,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Sink {
    /// Builds the sink named by the config: Kafka when `sink.kafka` is set, else OTLP/HTTP.
    pub fn build(config: &AgentConfig, metrics: AgentMetrics) -> anyhow::Result<Sink> {
        let transport = match (&config.sink.kafka, &config.sink.collector_url) {
            (Some(kafka), _) => Transport::Kafka(KafkaSink::new(kafka, &config.cluster, &config.node)?),
            (None, Some(url)) => Transport::Http(HttpSink::new(url)?),
            (None, None) => anyhow::bail!("no sink configured: set sink.kafka or sink.collector_url"),
        };
        Ok(Sink { transport: Arc::new(transport), metrics })
    }

    /// An OTLP/HTTP sink posting to `collector_url` (for tests and embedding).
    pub fn http(collector_url: &str, metrics: AgentMetrics) -> anyhow::Result<Sink> {
        Ok(Sink { transport: Arc::new(Transport::Http(HttpSink::new(collector_url)?)), metrics })
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match &*self.transport {
            Transport::Kafka(k) => format!("kafka {}", k.brokers()),
            Transport::Http(h) => format!("http {}", h.base_url()),
        }
    }

    /// How many sends the buffer forwarder keeps in flight. One for both transports: HTTP
    /// requests in parallel are not ordered, and a Kafka send that fails for good (e.g. an
    /// unknown topic) is retried by [`Sink::send`] after later ones may have landed, which
    /// would reorder a key's messages. The forwarder acknowledges in order for any value.
    pub fn max_in_flight(&self) -> usize {
        match &*self.transport {
            Transport::Kafka(_) | Transport::Http(_) => 1,
        }
    }

    /// Sends one payload holding `items` samples or records, retrying transient failures with
    /// backoff until it is acknowledged or rejected.
    pub async fn send(&self, signal: Signal, payload: Vec<u8>, items: u64) -> Delivery {
        let mut backoff = BACKOFF_START;
        let mut attempt_no = 0u64;
        loop {
            if attempt_no > 0 {
                self.metrics.sink_retries.inc();
            }
            attempt_no += 1;
            let attempt = match &*self.transport {
                Transport::Kafka(k) => k.send(signal, &payload).await,
                Transport::Http(h) => h.send(signal, &payload).await,
            };
            match attempt {
                Attempt::Done => {
                    match signal {
                        Signal::Metrics => self.metrics.samples_sent.inc_by(items),
                        Signal::Logs => self.metrics.log_records_sent.inc_by(items),
                    };
                    return Delivery::Acknowledged;
                }
                Attempt::Reject(reason) => {
                    self.metrics.sink_rejected.inc();
                    tracing::error!(?signal, items, %reason, "sink rejected payload; dropping it");
                    return Delivery::Rejected;
                }
                Attempt::Retry(reason) => {
                    self.metrics.sink_errors.inc();
                    tracing::warn!(
                        ?signal,
                        items,
                        attempt = attempt_no,
                        retry_in_ms = backoff.as_millis() as u64,
                        %reason,
                        "sink send failed; retrying"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Waits (at most `timeout`) for queued messages to be delivered; call before exiting.
    pub async fn flush(&self, timeout: Duration) {
        if let Transport::Kafka(k) = &*self.transport {
            k.flush(timeout).await;
        }
    }
}
