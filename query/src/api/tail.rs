//! `GET /loki/api/v1/tail`: Loki's live tail over a WebSocket.
//!
//! The first frame holds the most recent entries since `start` (default one hour ago, at most
//! `limit`, default 100). After that, with a store that has a live feed
//! ([`pharos_model::LogsReader::subscribe_logs`], the collector's), entries are sent as they
//! are ingested, whatever their timestamps (a late one is shown too), gathered for up to 100 ms
//! per frame; a tail that falls more than 1,024 batches behind lists the entries it skips in
//! `dropped_entries` (labels and timestamp, as Loki does; at most 1,000 per frame). Entries
//! both in the first frame's reading and in the feed (ingested while it was read) are sent
//! once. Without a live feed the reader is polled every 500 ms for entries newer than the last
//! one sent (an entry arriving with an older timestamp is then not shown). The socket closes
//! when the client goes away.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use pharos_model::select::matches_all;
use pharos_model::{Labels, LogRecord, LogSink};
use serde_json::json;

use super::AppState;
use super::loki::{now_ns, parse_time_ns};
use super::params::Params;
use super::prometheus::run_blocking;
use crate::error::{Error, Result};
use crate::logql::pipeline::DistinctSeen;
use crate::logql::{self, LogQuery};

const HOUR_NS: i64 = 3_600_000_000_000;
const DEFAULT_LIMIT: usize = 100;
const POLL: Duration = Duration::from_millis(500);
/// Batches of records a live tail may hold queued; beyond, records are counted as dropped.
const LIVE_QUEUE_BATCHES: usize = 1024;
/// How long a live tail gathers records into one frame.
const LIVE_FRAME: Duration = Duration::from_millis(100);
/// Dropped entries listed per frame at most.
const MAX_DROPPED: usize = 1000;

/// Entries (labels, timestamp) the live feed could not queue, for the next frame.
type Dropped = Arc<std::sync::Mutex<Vec<(Labels, i64)>>>;

/// The upgrade handler; parameters are checked before upgrading (400 on a bad query).
pub async fn tail(
    State(state): State<AppState>,
    Query(params): Query<Params>,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let parsed = || -> Result<(LogQuery, i64, usize)> {
        let text = params
            .get("query")
            .filter(|q| !q.is_empty())
            .ok_or_else(|| Error::BadData("invalid parameter \"query\": missing".into()))?;
        let query = logql::parse(text)?;
        let start = match params.get("start").filter(|s| !s.is_empty()) {
            Some(s) => parse_time_ns("start", s)?,
            None => now_ns().saturating_sub(HOUR_NS),
        };
        let limit = match params.get("limit").filter(|l| !l.is_empty()) {
            Some(l) => l.parse::<usize>().ok().filter(|l| *l > 0).ok_or_else(|| {
                Error::BadData(format!("invalid parameter \"limit\": {l:?} must be a positive integer"))
            })?,
            None => DEFAULT_LIMIT,
        };
        Ok((query, start, limit))
    };
    let (query, start, limit) = match parsed() {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    match ws {
        Ok(ws) => ws.on_upgrade(move |socket| tail_loop(socket, state, query, start, limit)),
        Err(rejection) => rejection.into_response(),
    }
}

/// One poll: the processed entries in `[after, now]`, sorted by time. `seen` is what the
/// query's `distinct` stages let through so far in the session: the records go through them
/// oldest first, and those at exactly `after` again (dropped then, as their values are seen).
async fn poll(
    state: &AppState,
    query: &LogQuery,
    from_ns: i64,
    mut seen: DistinctSeen,
) -> Result<(Vec<(i64, Labels, String)>, DistinctSeen)> {
    let (state, query) = (state.clone(), query.clone());
    let end = now_ns();
    run_blocking(move || {
        let mut records = state
            .logs
            .select_logs(&query.matchers, &query.required_substrings(), from_ns, end)
            .map_err(|e| Error::Internal(format!("reading logs: {e}")))?;
        records.retain(|r| r.timestamp_ns >= from_ns && r.timestamp_ns <= end);
        let distinct = query.has_distinct();
        if distinct {
            records.sort_by(|a, b| (a.timestamp_ns, &a.labels, &a.body).cmp(&(b.timestamp_ns, &b.labels, &b.body)));
        }
        let mut out: Vec<(i64, Labels, String)> = records
            .into_iter()
            .filter_map(|r| {
                let (labels, line) = if distinct {
                    let (labels, line) = query.process_record_distinct(&r, &mut seen)?;
                    (Labels::from_pairs(labels), line)
                } else {
                    query.process(&r)?
                };
                Some((r.timestamp_ns, labels, line))
            })
            .collect();
        out.sort();
        Ok((out, seen))
    })
    .await
}

fn frame(entries: Vec<(i64, Labels, String)>, dropped: Vec<(Labels, i64)>) -> String {
    let mut streams: BTreeMap<Labels, Vec<serde_json::Value>> = BTreeMap::new();
    for (ts, labels, line) in entries {
        streams.entry(labels).or_default().push(json!([ts.to_string(), line]));
    }
    let streams: Vec<_> = streams
        .into_iter()
        .map(|(labels, values)| json!({"stream": crate::promql::labels_json(&labels), "values": values}))
        .collect();
    let dropped: Vec<_> = dropped
        .into_iter()
        .map(|(labels, ts)| json!({"labels": crate::promql::labels_json(&labels), "timestamp": ts.to_string()}))
        .collect();
    json!({"streams": streams, "dropped_entries": dropped}).to_string()
}

async fn tail_loop(socket: WebSocket, state: AppState, query: LogQuery, start: i64, limit: usize) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<LogRecord>>(LIVE_QUEUE_BATCHES);
    let dropped: Dropped = Arc::default();
    if state.logs.subscribe_logs(live_sink(query.matchers.clone(), tx, dropped.clone())) {
        live_loop(socket, state, query, start, limit, rx, dropped).await
    } else {
        poll_loop(socket, state, query, start, limit).await
    }
}

/// The callback on the ingest path: the records of streams the selector matches are queued
/// for the tail (the pipeline runs in the tail); when the queue is full they are listed in
/// `dropped` (at most [`MAX_DROPPED`] waiting); once the tail is gone it unsubscribes.
fn live_sink(matchers: Vec<pharos_model::LabelMatcher>, tx: tokio::sync::mpsc::Sender<Vec<LogRecord>>, dropped: Dropped) -> LogSink {
    Box::new(move |records: &[LogRecord]| {
        if tx.is_closed() {
            return false;
        }
        let matching: Vec<LogRecord> = records.iter().filter(|r| matches_all(&matchers, &r.labels)).cloned().collect();
        if matching.is_empty() {
            return true;
        }
        match tx.try_send(matching) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) => {
                let mut d = dropped.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_DROPPED.saturating_sub(d.len());
                d.extend(batch.into_iter().take(room).map(|r| (r.labels, r.timestamp_ns)));
                true
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    })
}

/// A hash of an entry, to send the entries read for the first frame once.
fn entry_hash(ts: i64, labels: &Labels, line: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (ts, labels, line).hash(&mut h);
    h.finish()
}

/// The tail over the store's live feed (subscribed before the first frame is read).
async fn live_loop(
    mut socket: WebSocket,
    state: AppState,
    query: LogQuery,
    start: i64,
    limit: usize,
    mut rx: tokio::sync::mpsc::Receiver<Vec<LogRecord>>,
    dropped: Dropped,
) {
    let (mut history, mut seen) = match poll(&state, &query, start, DistinctSeen::default()).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "tail read failed");
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let read: Arc<HashSet<u64>> = Arc::new(history.iter().map(|(ts, l, line)| entry_hash(*ts, l, line)).collect());
    if history.len() > limit {
        history.drain(..history.len() - limit);
    }
    if !history.is_empty() && socket.send(Message::Text(frame(history, Vec::new()).into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(mut records) = batch else { return };
                let until = tokio::time::Instant::now() + LIVE_FRAME;
                while let Ok(Some(more)) = tokio::time::timeout_at(until, rx.recv()).await {
                    records.extend(more);
                }
                let (query, read) = (query.clone(), read.clone());
                let distinct = query.has_distinct();
                let processed = run_blocking(move || {
                    let mut out = Vec::new();
                    for r in records {
                        let kept = if distinct {
                            query.process_record_distinct(&r, &mut seen).map(|(l, line)| (Labels::from_pairs(l), line))
                        } else {
                            query.process(&r)
                        };
                        if let Some((labels, line)) = kept
                            && !read.contains(&entry_hash(r.timestamp_ns, &labels, &line))
                        {
                            out.push((r.timestamp_ns, labels, line));
                        }
                    }
                    out.sort();
                    Ok((out, seen))
                })
                .await;
                let Ok((entries, now_seen)) = processed else { return };
                seen = now_seen;
                let lost = std::mem::take(&mut *dropped.lock().unwrap_or_else(|e| e.into_inner()));
                if (!entries.is_empty() || !lost.is_empty())
                    && socket.send(Message::Text(frame(entries, lost).into())).await.is_err()
                {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The tail by polling the reader (one without a live feed).
async fn poll_loop(mut socket: WebSocket, state: AppState, query: LogQuery, start: i64, limit: usize) {
    // Entries at `last_ts` already sent, by (labels, line).
    let mut last_ts = start;
    let mut sent_at_last: HashSet<(Labels, String)> = HashSet::new();
    let mut first = true;
    let mut seen = DistinctSeen::default();
    loop {
        match poll(&state, &query, last_ts, std::mem::take(&mut seen)).await {
            Ok((mut entries, now_seen)) => {
                seen = now_seen;
                entries.retain(|(ts, labels, line)| {
                    *ts > last_ts || !sent_at_last.contains(&(labels.clone(), line.clone()))
                });
                if first && entries.len() > limit {
                    entries.drain(..entries.len() - limit);
                }
                first = false;
                if let Some(max_ts) = entries.last().map(|e| e.0) {
                    if max_ts > last_ts {
                        sent_at_last.clear();
                        last_ts = max_ts;
                    }
                    sent_at_last.extend(
                        entries.iter().filter(|e| e.0 == last_ts).map(|e| (e.1.clone(), e.2.clone())),
                    );
                    if socket.send(Message::Text(frame(entries, Vec::new()).into())).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "tail poll failed");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_sink_queues_matching_records_lists_overflow_and_unsubscribes() {
        let rec = |app: &str, ts: i64| LogRecord::new(Labels::from_pairs([("app", app)]), ts, "line", "");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let dropped: Dropped = Arc::default();
        let matchers = logql::parse_selector(r#"{app="api"}"#).unwrap();
        let mut sink = live_sink(matchers, tx, dropped.clone());
        // Only api's record is queued; a batch with nothing matching takes no room.
        assert!(sink(&[rec("api", 1), rec("web", 2)]));
        assert!(sink(&[rec("web", 3)]));
        // The queue holds one batch: the next two are listed as dropped.
        assert!(sink(&[rec("api", 4)]));
        assert!(sink(&[rec("api", 5), rec("web", 6), rec("api", 7)]));
        let queued = rx.try_recv().unwrap();
        assert_eq!(queued.iter().map(|r| r.timestamp_ns).collect::<Vec<_>>(), vec![1]);
        let api = Labels::from_pairs([("app", "api")]);
        assert_eq!(*dropped.lock().unwrap(), vec![(api.clone(), 4), (api.clone(), 5), (api, 7)]);
        // At most MAX_DROPPED wait to be listed.
        let many: Vec<LogRecord> = (0..2 * MAX_DROPPED as i64).map(|t| rec("api", 10 + t)).collect();
        assert!(sink(&[rec("api", 8)]));
        assert!(sink(&many));
        assert_eq!(dropped.lock().unwrap().len(), MAX_DROPPED);
        // The tail gone, the sink asks to be removed.
        drop(rx);
        assert!(!sink(&[rec("api", 9)]));
    }
}
