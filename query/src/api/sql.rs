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
    /// Memory one query's operators may hold (sorts, joins, aggregations). Default 256 MiB.
    pub max_memory_bytes: usize,
}

impl Default for SqlSettings {
    fn default() -> Self {
        SqlSettings {
            default_rows: 10_000,
            max_rows: 100_000,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(60),
            max_memory_bytes: 256 << 20,
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
            let text = std::str::from_utf8(&body).map_err(|_| {
                Error::BadData("the request body (the SQL query) is not UTF-8".into())
            })?;
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
                return Err(Error::BadData(format!(
                    "invalid parameter \"timeout\": {t:?} is not positive"
                )));
            }
            Duration::from_millis(ms as u64).min(s.max_timeout)
        }
    };
    state
        .engine
        .sql(query, SqlLimits { max_rows, timeout, max_memory_bytes: s.max_memory_bytes })
        .await
        .map_err(|e| match e {
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use pharos_model::sql::{SqlAnswer, SqlColumn, SqlFuture};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;

    /// Echoes what it was asked (query, row cap, timeout) as one row; fails on demand.
    struct Echo;

    impl SqlReader for Echo {
        fn sql(&self, query: String, limits: SqlLimits) -> SqlFuture {
            Box::pin(async move {
                match query.as_str() {
                    "bad" => Err(SqlError::BadQuery(
                        "SQL error: ParserError(\"Expected: an SQL statement, found: bad\")".into(),
                    )),
                    "slow" => Err(SqlError::Exhausted("query timed out after 10 ms".into())),
                    "broken" => Err(SqlError::Internal("disk on fire".into())),
                    _ => Ok(SqlAnswer {
                        columns: vec![SqlColumn {
                            name: "q".into(),
                            data_type: "Utf8".into(),
                        }],
                        rows: vec![
                            vec![json!(query)],
                            vec![json!(limits.max_rows)],
                            vec![json!(limits.timeout.as_millis() as u64)],
                        ],
                        truncated: false,
                        stats: Default::default(),
                    }),
                }
            })
        }
    }

    async fn send(req: Request<Body>) -> (StatusCode, Value) {
        let app = sql_router(Arc::new(Echo), SqlSettings::default());
        let resp = app.oneshot(req).await.expect("router never fails");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {bytes:?}")),
        )
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    fn post(uri: &str, content_type: &str, body: &str) -> Request<Body> {
        Request::post(uri)
            .header("content-type", content_type)
            .body(Body::from(body.to_string()))
            .expect("request")
    }

    /// (query, max_rows, timeout ms) the engine received.
    fn echoed(body: &Value) -> (String, u64, u64) {
        let rows = &body["data"]["rows"];
        (
            rows[0][0].as_str().unwrap().to_string(),
            rows[1][0].as_u64().unwrap(),
            rows[2][0].as_u64().unwrap(),
        )
    }

    #[tokio::test]
    async fn get_and_both_post_forms_reach_the_engine() {
        let (status, body) = send(get("/api/v1/sql?query=SELECT%201")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "success");
        assert_eq!(
            body["data"]["columns"],
            json!([{"name": "q", "type": "Utf8"}])
        );
        assert_eq!(body["data"]["truncated"], json!(false));
        assert_eq!(echoed(&body), ("SELECT 1".to_string(), 10_000, 30_000));

        let form = post(
            "/api/v1/sql?limit=5",
            "application/x-www-form-urlencoded",
            "query=SELECT+2&timeout=2s",
        );
        let (status, body) = send(form).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed(&body), ("SELECT 2".to_string(), 5, 2_000));

        let raw = post(
            "/api/v1/sql?limit=3",
            "application/sql; charset=utf-8",
            "SELECT 'a&b=c'",
        );
        let (status, body) = send(raw).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(echoed(&body), ("SELECT 'a&b=c'".to_string(), 3, 30_000));
        let (_, body) = send(post("/api/v1/sql?timeout=1h", "text/plain", "SELECT 3")).await;
        assert_eq!(
            echoed(&body),
            ("SELECT 3".to_string(), 10_000, 60_000),
            "timeout capped at the maximum"
        );
    }

    #[tokio::test]
    async fn malformed_requests_are_400_naming_the_problem() {
        for (req, needle) in [
            (get("/api/v1/sql"), "\"query\": missing"),
            (
                post(
                    "/api/v1/sql",
                    "application/x-www-form-urlencoded",
                    "limit=3",
                ),
                "\"query\": missing",
            ),
            (get("/api/v1/sql?query=SELECT%201&limit=0"), "\"limit\""),
            (
                get("/api/v1/sql?query=SELECT%201&limit=100001"),
                "between 1 and 100000",
            ),
            (get("/api/v1/sql?query=SELECT%201&limit=ten"), "\"limit\""),
            (
                get("/api/v1/sql?query=SELECT%201&timeout=soon"),
                "\"timeout\"",
            ),
            (
                get("/api/v1/sql?query=SELECT%201&timeout=-1"),
                "\"timeout\"",
            ),
            (get("/api/v1/sql?query=bad"), "ParserError"),
        ] {
            let (status, body) = send(req).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(body["errorType"], "bad_data");
            assert!(
                body["error"].as_str().unwrap().contains(needle),
                "{needle}: {body}"
            );
        }
        let invalid_utf8 = Request::post("/api/v1/sql")
            .header("content-type", "text/plain")
            .body(Body::from(vec![0xff, 0xfe]))
            .unwrap();
        let (status, body) = send(invalid_utf8).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"].as_str().unwrap().contains("not UTF-8"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn engine_failures_map_to_their_status() {
        let (status, body) = send(get("/api/v1/sql?query=slow")).await;
        assert_eq!(
            (status, body["errorType"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("execution"))
        );
        assert!(body["error"].as_str().unwrap().contains("timed out"));
        let (status, body) = send(get("/api/v1/sql?query=broken")).await;
        assert_eq!(
            (status, body["errorType"].as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("internal"))
        );
    }
}
