//! The forwarder: reads the buffer in order, sends each record through the sink, and advances
//! the persisted position once the sink acknowledged (or definitively rejected) it.

use std::future::Future;
use std::pin::Pin;

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::FuturesOrdered;
use tokio::sync::watch;

use super::disk::BufferReader;
use crate::sink::Sink;

/// A record that left the sink: (seq, size on disk, tail checkpoint JSON if any).
type Sent = (u64, u64, Option<Vec<u8>>);

/// Forwards records from `reader` to `sink` until `stop` turns true (or its sender is gone);
/// then waits for the sends in flight, acknowledges them and returns. Up to
/// [`Sink::max_in_flight`] sends run at once; acknowledgement is always in sequence order, so
/// the position never skips an unacknowledged record.
pub async fn run_forwarder(mut reader: BufferReader, sink: Sink, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let max_in_flight = sink.max_in_flight().max(1);
    let mut in_flight: FuturesOrdered<Pin<Box<dyn Future<Output = Sent> + Send>>> = FuturesOrdered::new();
    let mut stopping = false;
    loop {
        stopping |= *stop.borrow();
        let room = max_in_flight - in_flight.len();
        if room > 0 && !stopping {
            let batch = if in_flight.is_empty() {
                tokio::select! {
                    r = reader.next(room, true) => r?,
                    _ = stop.changed() => { stopping = true; Vec::new() }
                }
            } else {
                reader.next(room, false).await?
            };
            for (record, size) in batch {
                let sink = sink.clone();
                in_flight.push_back(Box::pin(async move {
                    if let Some(signal) = record.kind.signal() {
                        let delivery = sink.send(signal, record.payload, u64::from(record.items)).await;
                        tracing::debug!(seq = record.seq, ?signal, ?delivery, "buffered record delivered");
                    }
                    let tail = (!record.tail.is_empty()).then_some(record.tail);
                    (record.seq, size, tail)
                }));
            }
        }
        let Some(first) = in_flight.next().await else {
            if stopping {
                return Ok(());
            }
            continue;
        };
        // Acknowledge the oldest and every later one already done, with one position write.
        let (mut last, mut records, mut bytes, mut tail) = (first.0, 1u64, first.1, first.2.map(|t| (first.0, t)));
        while let Some(Some((seq, size, t))) = in_flight.next().now_or_never() {
            last = seq;
            records += 1;
            bytes += size;
            if let Some(t) = t {
                tail = Some((seq, t));
            }
        }
        reader.ack(last, records, bytes, tail).await;
    }
}
