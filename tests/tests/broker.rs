//! The broker the end-to-end tests rely on speaks the Kafka protocol the way Pharos uses it:
//! topic creation through the admin API, an idempotent lz4-compressed producer with acks=all,
//! and a consumer reading back exactly what was produced.

use std::time::Duration;

use pharos_e2e::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[tokio::test]
async fn idempotent_compressed_produce_then_consume_round_trips() {
    let logs = tempfile::tempdir().unwrap();
    let broker = Broker::start(logs.path());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &broker.addr).create().unwrap();
    let res = admin
        .create_topics(&[NewTopic::new("t", 2, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    for i in 0..20 {
        let payload = format!("message-{i}");
        producer
            .send(FutureRecord::to("t").key("k").payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "g")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 20 {
        assert!(std::time::Instant::now() < deadline, "timed out; got {got:?}");
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = (0..20).map(|i| format!("message-{i}")).collect();
    assert_eq!(got, expected, "same key → same partition → produced order");
}
