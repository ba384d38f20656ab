//! `GET/POST /api/v1/sql`: read-only SQL over the `metrics` table, answered as JSON rows.
//!
//! Parameters (query string, form body, or for POST a raw `application/sql` / `text/plain` body
//! holding the query itself):
//! - `query`: the SQL (required);
//! - `limit`: at most this many rows (default [`SqlSettings::default_rows`], at most
//!   [`SqlSettings::max_rows`]); `data.truncated` says whether more rows were cut;
//! - `timeout`: seconds or a duration like `10s` (default [`SqlSettings::default_timeout`],
//!   capped at [`SqlSettings::max_timeout`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pharos_model::sql::{SqlError, SqlLimits, SqlReader};
use serde_json::json;

use super::params::{Params, parse_duration_ms, required};
use crate::error::{Error, Result};

/// Limits of the SQL route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlSettings {
    /// Rows returned when the request has no `limit`. Default 10 000.
    pub default_rows: usize,
    /// The largest `limit` accepted. Default 100 000.
    pub max_rows: usize,
    /// Time a query may run when the request has no `timeout`. Default 30 s.
    pub default_timeout: Duration,
    /// The longest `timeout` honoured; larger ones are cut to this. Default 60 s (published files
    /// a compaction replaced stay readable for two minutes, so a query never loses its files).
    pub max_timeout: Duration,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            default_rows: 10_000,
            max_rows: 100_000,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone)]
struct SqlState {
    engine: Arc<dyn SqlReader>,
    settings: SqlSettings,
}

/// The `/api/v1/sql` route over `engine`.
pub fn sql_router(engine: Arc<dyn SqlReader>, settings: SqlSettings) -> Router {
    Router::new()
        .route("/api/v1/sql", get(sql_get).post(sql_post))
        .with_state(SqlState { engine, settings })
}

async fn sql_get(State(state): State<SqlState>, Query(params): Query<Params>) -> Response {
    respond(run(&state, params).await)
}

async fn sql_post(
    State(state): State<SqlState>,
    Query(mut params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed: Result<()> = (|| {
        if content_type == "application/x-www-form-urlencoded" {
            let form: Params = serde_urlencoded::from_bytes(&body)
                .map_err(|e| Error::BadData(format!("invalid form body: {e}")))?;
            params.extend(form);
        } else if !body.is_empty() {
            let text = std::str::from_utf8(&body)
                .map_err(|_| Error::BadData("the request body (the SQL query) is not UTF-8".into()))?;
            params.insert("query".into(), text.to_string());
        }
        Ok(())
    })();
    match parsed {
        Ok(()) => respond(run(&state, params).await),
        Err(e) => e.into_response(),
    }
}

async fn run(state: &SqlState, params: Params) -> Result<pharos_model::sql::SqlAnswer> {
    let query = required(&params, "query")?.to_string();
    let s = state.settings;
    let max_rows = match params.get("limit").filter(|l| !l.is_empty()) {
        None => s.default_rows,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n >= 1 && n <= s.max_rows => n,
            _ => {
                return Err(Error::BadData(format!(
                    "invalid parameter \"limit\": {l:?} is not a row count between 1 and {}",
                    s.max_rows
                )));
            }
        },
    };
    let timeout = match params.get("timeout").filter(|t| !t.is_empty()) {
        None => s.default_timeout,
        Some(t) => {
            let ms = parse_duration_ms("timeout", t)?;
            if ms <= 0 {
                return Err(Error::BadData(format!("invalid parameter \"timeout\": {t:?} is not positive")));
            }
            Duration::from_millis(ms as u64).min(s.max_timeout)
        }
    };
    state.engine.sql(query, SqlLimits { max_rows, timeout }).await.map_err(|e| match e {
        SqlError::BadQuery(m) => Error::BadData(m),
        SqlError::Exhausted(m) => Error::Execution(m),
        SqlError::Internal(m) => Error::Internal(m),
    })
}

fn respond(result: Result<pharos_model::sql::SqlAnswer>) -> Response {
    match result {
        Ok(answer) => Json(json!({"status": "success", "data": answer})).into_response(),
        Err(e) => {
            if matches!(e, Error::Internal(_)) {
                tracing::error!(error = %e, "SQL query failed");
            }
            e.into_response()
        }
    }
}
