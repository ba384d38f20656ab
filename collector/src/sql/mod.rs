//! SQL over the metrics data with DataFusion.
//!
//! The table `metrics`, with the columns of the Parquet files (`metric_name`, `labels` as a
//! JSON object, `timestamp` as `Timestamp(ms, UTC)`, `value`), over the published files the
//! manifest lists plus the head, so SQL sees what PromQL sees; and `histograms`, the native
//! histogram samples with the columns of the histogram files ([`histograms_table`]). Scans prune files by time
//! ([`table`]); `label(labels, 'name')` reads one label ([`udf`]); [`SqlEngine`] runs read-only
//! queries only (no DDL, DML, `COPY` or `SET`), with a row cap and a timeout.

mod engine;
pub mod histograms_table;
pub mod table;
pub mod udf;

#[cfg(test)]
mod tests;

pub use engine::SqlEngine;
