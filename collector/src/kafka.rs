//! Consuming the metrics and logs topics as one consumer group, exactly once in effect.
//!
//! Auto-commit is off. When partitions are assigned, consumption starts right after the offset the
//! metastore published for each (`kafka:<topic>:<partition>`), or at the beginning when nothing
//! was published. Before partitions are revoked the head is flushed, so the next owner resumes
//! exactly where published data ends. Offsets are also committed to Kafka, but only as advice for
//! lag monitoring: the metastore is the truth.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConsumerConfig;
use crate::store::{Batch, Store};
use crate::telemetry::CollectorMetrics;
use crate::wal::WalKind;
use crate::{Error, Result};

const ADVISORY_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// The metastore source name of a Kafka partition.
pub fn source_name(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

struct ExactlyOnceContext {
    store: Arc<Store>,
}

impl ClientContext for ExactlyOnceContext {}

impl ConsumerContext for ExactlyOnceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                for (topic, partition) in partitions {
                    let resume = match self.store.published_offset(&source_name(&topic, partition)) {
                        Some(o) => Offset::Offset(o + 1),
                        None => Offset::Beginning,
                    };
                    tracing::info!(topic, partition, ?resume, "partition assigned");
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, resume) {
                        tracing::error!(topic, partition, error = %e, "cannot set resume offset");
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = tpl.count(), "partitions revoked; flushing the head first");
                if let Err(e) = self.store.flush() {
                    tracing::error!(error = %e, "flush before revoke failed; data stays in the head");
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// A running consumer thread.
pub struct KafkaIngest {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaIngest {
    /// Stops consuming and waits for the thread (which leaves the group cleanly).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates the topics if they do not exist (the broker used here does not auto-create reliably).
pub fn ensure_topics(cfg: &KafkaConsumerConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.brokers)
        .create()
        .map_err(|e| Error::Internal(format!("kafka admin client for {}: {e}", cfg.brokers)))?;
    let topics: Vec<NewTopic> = [Some(&cfg.metrics_topic), Some(&cfg.logs_topic), cfg.trino_events_topic.as_ref()]
        .into_iter()
        .flatten()
        .map(|t| NewTopic::new(t, cfg.create_topics_partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(5)));
    let results = futures::executor::block_on(admin.create_topics(&topics, &opts))
        .map_err(|e| Error::Internal(format!("creating topics on {}: {e}", cfg.brokers)))?;
    for r in results {
        match r {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Internal(format!("creating topic {topic} on {}: {code}", cfg.brokers)));
            }
        }
    }
    Ok(())
}

/// Starts consuming `cfg`'s topics into `store` on a dedicated thread. An unreachable broker does
/// not stop the control plane: the thread retries (and says so in the log) until it connects.
pub fn start(store: Arc<Store>, cfg: KafkaConsumerConfig, metrics: Arc<CollectorMetrics>) -> Result<KafkaIngest> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(500);
            while !stop2.load(Ordering::SeqCst) {
                match ensure_topics(&cfg).and_then(|()| subscribe(&store, &cfg)) {
                    Ok(consumer) => return consume(consumer, store, cfg, metrics, stop2),
                    Err(e) => {
                        tracing::warn!(brokers = cfg.brokers, error = %e, retry_in = ?backoff, "Kafka not ready");
                        let until = Instant::now() + backoff;
                        while Instant::now() < until && !stop2.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        })
        .map_err(|e| Error::Internal(format!("spawning consumer thread: {e}")))?;
    Ok(KafkaIngest { stop, thread: Some(thread) })
}

fn subscribe(store: &Arc<Store>, cfg: &KafkaConsumerConfig) -> Result<BaseConsumer<ExactlyOnceContext>> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        // Data is queryable as soon as it is consumed: do not let the broker hold fetches long.
        .set("fetch.wait.max.ms", "50");
    if let Some(id) = &cfg.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<ExactlyOnceContext> = client
        .create_with_context(ExactlyOnceContext { store: store.clone() })
        .map_err(|e| Error::Internal(format!("kafka consumer for {}: {e}", cfg.brokers)))?;
    let mut topics = vec![cfg.metrics_topic.as_str(), cfg.logs_topic.as_str()];
    topics.extend(cfg.trino_events_topic.as_deref());
    consumer.subscribe(&topics).map_err(|e| Error::Internal(format!("subscribing to {topics:?}: {e}")))?;
    Ok(consumer)
}

fn consume(
    consumer: BaseConsumer<ExactlyOnceContext>,
    store: Arc<Store>,
    cfg: KafkaConsumerConfig,
    metrics: Arc<CollectorMetrics>,
    stop: Arc<AtomicBool>,
) {
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "kafka poll error"),
            Some(Ok(msg)) => {
                metrics.kafka_messages.inc();
                let payload = msg.payload().unwrap_or_default();
                let decoded = if cfg.trino_events_topic.as_deref() == Some(msg.topic()) {
                    trino_batch(payload)
                } else {
                    let kind = if msg.topic() == cfg.metrics_topic { WalKind::MetricsProtobuf } else { WalKind::LogsProtobuf };
                    Batch::decode(kind, payload)
                };
                let batch = decoded.unwrap_or_else(|e| {
                    metrics.batches_rejected.inc();
                    tracing::warn!(topic = msg.topic(), partition = msg.partition(), offset = msg.offset(), error = %e, "skipping undecodable message");
                    // The offset still advances: a poison message must not be re-read forever.
                    Batch::Metrics(Vec::new())
                });
                store.ingest(&source_name(msg.topic(), msg.partition()), msg.offset(), batch);
            }
        }
        if last_commit.elapsed() >= ADVISORY_COMMIT_INTERVAL {
            last_commit = Instant::now();
            commit_published(&consumer, &store);
        }
    }
    commit_published(&consumer, &store);
    consumer.unsubscribe();
}

/// A message of Trino's Kafka event listener: QueryCompletedEvent JSON (one or an array).
fn trino_batch(payload: &[u8]) -> Result<Batch> {
    let text = std::str::from_utf8(payload).map_err(|e| Error::BadInput(format!("Trino event is not UTF-8: {e}")))?;
    let queries = pharos_model::trino::parse_query_completed_batch(text)
        .map_err(|e| Error::BadInput(format!("invalid Trino event: {e}")))?;
    Ok(Batch::Metrics(queries.iter().flat_map(|q| q.to_samples(&q.owner_labels())).collect()))
}

/// Commits the published offsets of the assigned partitions (advisory, for lag monitoring).
fn commit_published(consumer: &BaseConsumer<ExactlyOnceContext>, store: &Store) {
    let Ok(assigned) = consumer.assignment() else { return };
    let mut tpl = TopicPartitionList::new();
    for elem in assigned.elements() {
        if let Some(o) = store.published_offset(&source_name(elem.topic(), elem.partition())) {
            let _ = tpl.add_partition_offset(elem.topic(), elem.partition(), Offset::Offset(o + 1));
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "advisory offset commit failed");
        }
}
