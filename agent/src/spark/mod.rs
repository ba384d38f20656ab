//! Apache Spark sources: [`metrics`] makes the PrometheusServlet output of driver pods (found by
//! [`crate::kubernetes`]) queryable; [`eventlog`] reads event logs into per-application usage
//! ([`usage`]) shipped as `spark_app_*` samples.

pub mod eventlog;
pub mod metrics;
pub mod usage;
