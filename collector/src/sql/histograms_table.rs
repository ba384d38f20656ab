//! The `histograms` table: native histogram samples, with the columns of the histogram files
//! (see [`crate::histogram_files`]), from the published files and the head as PromQL reads
//! them ([`Store`]'s histogram selection: one snapshot, the later of two samples of a series at
//! one timestamp kept). The samples in the time range the filters on `timestamp` allow (and of
//! the metric `metric_name = '…'` names) are read into one in-memory batch.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use pharos_model::LabelMatcher;

use super::table::{TimeRange, metric_name_equals};
use crate::Store;

/// The `histograms` table of one query.
pub struct HistogramsTable {
    store: Arc<Store>,
}

impl std::fmt::Debug for HistogramsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramsTable").finish()
    }
}

impl HistogramsTable {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        HistogramsTable { store }
    }
}

#[async_trait]
impl TableProvider for HistogramsTable {
    fn schema(&self) -> SchemaRef {
        crate::histogram_files::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| if f.is_volatile() { TableProviderFilterPushDown::Unsupported } else { TableProviderFilterPushDown::Inexact })
            .collect())
    }

    async fn scan(&self, _state: &dyn Session, projection: Option<&Vec<usize>>, filters: &[Expr], _limit: Option<usize>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let range = TimeRange::of(filters);
        let matchers: Vec<LabelMatcher> = filters
            .iter()
            .find_map(metric_name_equals)
            .and_then(|m| LabelMatcher::new(pharos_model::METRIC_NAME, "=", &m).ok())
            .into_iter()
            .collect();
        let (store, start, end) = (self.store.clone(), range.start_ms, range.end_ms);
        let batch = tokio::task::spawn_blocking(move || {
            let series = store.select_histograms_in(&matchers, start, end)?;
            crate::histogram_files::series_batch(&series)
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("reading histograms: {e}")))?
        .map_err(|e| DataFusionError::Execution(format!("reading histograms: {e}")))?;
        let exec: Arc<dyn ExecutionPlan> = MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?;
        Ok(exec)
    }
}
