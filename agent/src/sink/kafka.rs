//! The Kafka sink: an idempotent `FutureProducer` (acks=all, compressed) writing OTLP protobuf,
//! keyed by `cluster/node`; every send waits for its delivery report.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use super::{Attempt, Signal};
use crate::config::KafkaSinkConfig;

/// Produces to the metrics and logs topics.
pub struct KafkaSink {
    producer: FutureProducer,
    metrics_topic: String,
    logs_topic: String,
    key: String,
    brokers: String,
}

/// The librdkafka properties for a producer built from `config` (user `options` last).
pub fn producer_properties(config: &KafkaSinkConfig, client_id: &str) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = [
        ("bootstrap.servers", config.brokers.clone()),
        ("client.id", client_id.to_string()),
        ("enable.idempotence", "true".into()),
        ("acks", "all".into()),
        ("compression.type", config.compression.as_librdkafka().into()),
        ("message.timeout.ms", config.message_timeout_ms.to_string()),
        ("linger.ms", config.linger_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    props.extend(config.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    props
}

impl KafkaSink {
    /// Creates the producer (no connection is made yet; bad properties fail here).
    pub fn new(config: &KafkaSinkConfig, cluster: &str, node: &str) -> anyhow::Result<KafkaSink> {
        let mut client = ClientConfig::new();
        for (k, v) in producer_properties(config, &format!("pharos-agent-{node}")) {
            client.set(k, v);
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|e| anyhow::anyhow!("invalid Kafka producer config for {}: {e}", config.brokers))?;
        Ok(KafkaSink {
            producer,
            metrics_topic: config.metrics_topic.clone(),
            logs_topic: config.logs_topic.clone(),
            key: format!("{cluster}/{node}"),
            brokers: config.brokers.clone(),
        })
    }

    /// The bootstrap brokers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub(crate) async fn send(&self, signal: Signal, payload: &[u8]) -> Attempt {
        let topic = match signal {
            Signal::Metrics => &self.metrics_topic,
            Signal::Logs => &self.logs_topic,
        };
        let record = FutureRecord::to(topic).key(&self.key).payload(payload);
        match self.producer.send(record, Timeout::Never).await {
            Ok(_) => Attempt::Done,
            Err((e, _)) => Attempt::Retry(format!("produce to {topic}: {e}")),
        }
    }

    pub(crate) async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout))).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "Kafka flush incomplete at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;

    #[test]
    fn producer_is_idempotent_acks_all_and_compressed() {
        let mut c = KafkaSinkConfig::with_brokers("b1:9092,b2:9092");
        c.compression = Compression::Zstd;
        let props = producer_properties(&c, "pharos-agent-n1");
        let get = |k: &str| props.iter().rev().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("compression.type"), Some("zstd"));
        assert_eq!(get("message.timeout.ms"), Some("300000"));
        assert_eq!(get("linger.ms"), Some("5"));
        assert_eq!(get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        // Creating the producer validates the properties without connecting.
        if let Err(e) = KafkaSink::new(&c, "c", "n") {
            panic!("{e:#}");
        }
        c.options.insert("no.such.property".into(), "1".into());
        assert!(KafkaSink::new(&c, "c", "n").is_err());
    }
}
