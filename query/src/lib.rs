//! Pharos query: PromQL evaluation with the Prometheus HTTP API, and log queries over a
//! Loki-shaped API.
//!
//! This crate owns reading data back for users: it evaluates queries over the
//! [`pharos_model::MetricsReader`] and [`pharos_model::LogsReader`] the collector provides,
//! without knowing how data is stored.
//!
//! - [`router`]: the HTTP routes — `/api/v1/query`, `/api/v1/query_range`,
//!   `/api/v1/status/buildinfo` (Prometheus shape, so Grafana and `promtool` work) and
//!   `/loki/api/v1/query_range`, `/loki/api/v1/query`, `/loki/api/v1/tail` (a WebSocket)
//!   (Loki shape).
//! - [`sql_router`]: `/api/v1/sql`, read-only SQL answered as JSON rows, over the
//!   [`pharos_model::SqlReader`] the collector provides (DataFusion runs there, next to the files).
//! - [`promql`]: parsing (with `promql-parser`) and evaluation; [`promql::instant_query`] and
//!   [`promql::range_query`] are usable without HTTP (alert rules).
//! - [`logql`]: the supported LogQL subset (log queries with pipelines, metric queries).
//! - [`Error`]: every failure, sorted into bad request / execution / internal.
//!
//! ```
//! use pharos_model::{Labels, LabelMatcher, MetricsReader, Series};
//! use pharos_query::promql::{instant_query, Value};
//!
//! struct OneSeries;
//! impl MetricsReader for OneSeries {
//!     fn select_series(&self, m: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<Series>, String> {
//!         let labels = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
//!         let hit = m.iter().all(|m| m.matches(&labels));
//!         Ok(if hit { vec![Series { labels, samples: vec![(1_000, 1.0)] }] } else { vec![] })
//!     }
//! }
//! let r = instant_query(&OneSeries, "up + 1", 2_000).unwrap();
//! let Value::Vector(v) = r.value else { panic!() };
//! assert_eq!(v[0].value, 2.0);
//! ```
#![warn(missing_docs)]

mod api;
mod error;
pub mod logql;
pub mod promql;

pub use api::{SqlSettings, router, sql_router};
pub use error::{Error, Result};
