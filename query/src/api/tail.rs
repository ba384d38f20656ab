//! `GET /loki/api/v1/tail`: Loki's live tail over a WebSocket.
//!
//! The first frame holds the most recent entries since `start` (default one hour ago, at most
//! `limit`, default 100); after that the reader is polled every 500 ms for entries newer than the
//! last one sent. Entries with the same timestamp as the last one sent are deduplicated by
//! (labels, line). Entries that arrive with a timestamp older than the last one sent are not
//! shown (as in a stream ordered by time). The socket closes when the client goes away.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use pharos_model::Labels;
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

fn frame(entries: Vec<(i64, Labels, String)>) -> String {
    let mut streams: BTreeMap<Labels, Vec<serde_json::Value>> = BTreeMap::new();
    for (ts, labels, line) in entries {
        streams.entry(labels).or_default().push(json!([ts.to_string(), line]));
    }
    let streams: Vec<_> = streams
        .into_iter()
        .map(|(labels, values)| json!({"stream": crate::promql::labels_json(&labels), "values": values}))
        .collect();
    json!({"streams": streams, "dropped_entries": []}).to_string()
}

async fn tail_loop(mut socket: WebSocket, state: AppState, query: LogQuery, start: i64, limit: usize) {
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
                    if socket.send(Message::Text(frame(entries).into())).await.is_err() {
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
