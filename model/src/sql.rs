//! Read-only SQL over stored data, as the query layer sees it.
//!
//! The store that owns the data (the collector) implements [`SqlReader`]: it plans and runs a
//! query and hands back rows already converted to JSON values, so the HTTP layer needs to know
//! neither the engine nor the storage layout.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// One result column: its name and the engine's name of its type (e.g. `Utf8`, `Float64`,
/// `Int64`, `Timestamp(ms, "UTC")`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SqlColumn {
    /// Column name as the query spelled it (or the engine derived it).
    pub name: String,
    /// Type of the column.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// How much of the data a query read, so users (and tests) can see what pruning did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SqlScanStats {
    /// Published Parquet files whose time range the query's scans could not rule out, summed
    /// over the scans of the `metrics` table (a self-join counts twice).
    pub files_scanned: u64,
    /// Published files skipped because their time range does not overlap the query's.
    pub files_pruned: u64,
    /// Rows taken from the in-memory head.
    pub head_rows: u64,
    /// Bytes sorts, aggregations and joins wrote to disk because the query's memory limit
    /// would have been exceeded.
    pub spilled_bytes: u64,
}

/// The answer of a SQL query.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SqlAnswer {
    /// Result columns, in order.
    pub columns: Vec<SqlColumn>,
    /// Rows, each with one JSON value per column. Timestamps are RFC 3339 strings in UTC with
    /// millisecond precision; NaN and infinities are the strings `"NaN"`, `"+Inf"`, `"-Inf"`.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// True when the query returned more rows than the cap and `rows` was cut.
    pub truncated: bool,
    /// What the scans read.
    pub stats: SqlScanStats,
}

/// Why a SQL query failed, sorted by whose fault it is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SqlError {
    /// The query does not parse, names something unknown, is not a read-only query, or fails on
    /// its own data (a bad cast). Maps to HTTP 400.
    #[error("{0}")]
    BadQuery(String),
    /// The query ran out of time or memory. Maps to HTTP 422 (`execution`).
    #[error("{0}")]
    Exhausted(String),
    /// The store failed or a bug was hit. Maps to HTTP 500.
    #[error("{0}")]
    Internal(String),
}

/// Limits of one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// At most this many rows are returned; more set [`SqlAnswer::truncated`].
    pub max_rows: usize,
    /// The query is cancelled after this long.
    pub timeout: Duration,
    /// Memory the query's operators (sorts, joins, aggregations) may hold; a query that needs
    /// more fails with a "resources exhausted" error instead of growing the process.
    pub max_memory_bytes: usize,
}

/// A boxed future of a SQL answer.
pub type SqlFuture = Pin<Box<dyn Future<Output = Result<SqlAnswer, SqlError>> + Send>>;

/// Runs read-only SQL over the stored data (a `metrics` table; see the README's SQL section).
pub trait SqlReader: Send + Sync {
    /// Plans and runs `query` within `limits`.
    fn sql(&self, query: String, limits: SqlLimits) -> SqlFuture;
}
