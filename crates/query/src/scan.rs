//! A granted table as SQL sees it: an opaque governed scan.
//!
//! The scan reads the raw columns it needs from the table's Parquet files, applies the grant's
//! compiled policy (row filter on raw values first, then the granted columns, masked) and only
//! then hands rows to the rest of the plan. It takes no filters, limits or statistics from the
//! caller's query, has no children an optimizer could rewrite, and refuses every filter pushed
//! at it, so nothing the caller writes can run underneath the policy.

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use citybrain_catalog::TableManifest;
use citybrain_governance::{Mode, Policy};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;

/// Name of the column an `aggregate` grant adds: the grant's keyed hash of the row's key, so the
/// hub can count the distinct people behind each group. Its values identify no one.
pub const GROUP_KEY: &str = "__cb_key";

/// A granted table registered in a query's catalog.
#[derive(Debug)]
pub struct GovernedTable {
    pub(crate) name: String,
    pub(crate) policy: Arc<Policy>,
    url: ListingTableUrl,
    /// Position of the key column in the table schema, for aggregate grants.
    key_index: Option<usize>,
    schema: SchemaRef,
}

impl GovernedTable {
    pub(crate) fn new(manifest: &TableManifest, policy: Arc<Policy>, url: ListingTableUrl) -> Self {
        let mut fields: Vec<Field> = policy
            .output_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let key_index = match (policy.mode(), manifest.key_column.as_deref()) {
            (Mode::Aggregate, Some(k)) => policy.table_schema().index_of(k).ok(),
            _ => None,
        };
        if key_index.is_some() {
            fields.push(Field::new(
                GROUP_KEY,
                arrow::datatypes::DataType::Utf8,
                true,
            ));
        }
        Self {
            name: manifest.name.clone(),
            policy,
            url,
            key_index,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// The grant's mode.
    pub fn mode(&self) -> Mode {
        self.policy.mode()
    }
}

#[async_trait::async_trait]
impl TableProvider for GovernedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let granted = self.policy.granted_indices();
        // Raw columns read: what the row filter needs plus what the query asked for.
        let mut raw: BTreeSet<usize> = self.policy.filter_columns().into_iter().collect();
        for &w in &wanted {
            match granted.get(w) {
                Some(&i) => raw.insert(i),
                None => raw.insert(self.key_index.ok_or_else(|| {
                    DataFusionError::Internal(format!("column {w} of {} out of range", self.name))
                })?),
            };
        }
        let raw: Vec<usize> = raw.into_iter().collect();
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(self.url.clone())
            .with_listing_options(options)
            .with_schema(self.policy.table_schema().clone());
        let files = ListingTable::try_new(config)?;
        let inner = files.scan(state, Some(&raw), &[], None).await?;
        let schema = Arc::new(self.schema.project(&wanted)?);
        let partitions = inner.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(GovernedExec {
            governor: Arc::new(Governor {
                table: self.name.clone(),
                policy: self.policy.clone(),
                raw,
                wanted,
                key_index: self.key_index,
                schema,
                null_columns: Mutex::new(HashMap::new()),
            }),
            inner,
            properties,
        }))
    }
}

/// The physical governed scan. Its inner file scan is not a child: optimizer rules see a leaf.
#[derive(Debug)]
struct GovernedExec {
    governor: Arc<Governor>,
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

/// What a governed scan does to each raw batch.
#[derive(Debug)]
struct Governor {
    table: String,
    policy: Arc<Policy>,
    /// Table-schema positions the inner scan reads, in its output order.
    raw: Vec<usize>,
    /// Positions in the governed table's schema this scan returns.
    wanted: Vec<usize>,
    key_index: Option<usize>,
    schema: SchemaRef,
    null_columns: Mutex<HashMap<(usize, usize), ArrayRef>>,
}

impl DisplayAs for GovernedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let g = &self.governor;
        write!(f, "GovernedScan: {} grant={}", g.table, g.policy.grant.id)
    }
}

/// A policy failure inside a scan, told without the values that caused it.
fn policy_failed(table: &str, grant: &str) -> DataFusionError {
    tracing::warn!(table, grant, "the grant's policy failed while reading");
    DataFusionError::Execution(format!(
        "the grant '{grant}' could not be applied to table '{table}'"
    ))
}

impl Governor {
    /// An all-null column standing in for a column the query does not read (the policy's
    /// compiled filter addresses columns by table position). Batches mostly share one length,
    /// so the array is made once and shared.
    fn nulls(&self, column: usize, rows: usize) -> ArrayRef {
        let mut cache = self.null_columns.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry((column, rows))
            .or_insert_with(|| {
                new_null_array(self.policy.table_schema().field(column).data_type(), rows)
            })
            .clone()
    }

    /// Raw batch from the inner scan → what the consumer may see of it.
    fn govern(&self, raw: &RecordBatch) -> Result<RecordBatch> {
        let table_schema = self.policy.table_schema();
        let rows = raw.num_rows();
        let fail = || policy_failed(&self.table, &self.policy.grant.id);
        let columns: Vec<ArrayRef> = (0..table_schema.fields().len())
            .map(|i| match self.raw.iter().position(|r| *r == i) {
                Some(j) => raw.column(j).clone(),
                None => self.nulls(i, rows),
            })
            .collect();
        let full = RecordBatch::try_new(table_schema.clone(), columns).map_err(|_| fail())?;
        let visible = self.policy.filter(&full).map_err(|_| fail())?;
        let granted = self.policy.granted_indices().len();
        let outputs: Vec<usize> = self
            .wanted
            .iter()
            .copied()
            .filter(|w| *w < granted)
            .collect();
        let mut masked = self
            .policy
            .project_columns(&visible, &outputs)
            .map_err(|_| fail())?
            .into_iter();
        let mut columns = Vec::with_capacity(self.wanted.len());
        for &w in &self.wanted {
            if w < granted {
                columns.push(masked.next().ok_or_else(fail)?);
            } else {
                let key = self.key_index.ok_or_else(fail)?;
                columns.push(
                    self.policy
                        .hash_values(visible.column(key))
                        .map_err(|_| fail())?,
                );
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(visible.num_rows()));
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)
            .map_err(|_| fail())
    }
}

impl ExecutionPlan for GovernedExec {
    fn name(&self) -> &str {
        "GovernedScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "a governed scan has no children".into(),
            ))
        }
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        Ok(FilterDescription::all_unsupported(&parent_filters, &[]))
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::all_unsupported(
            child_pushdown_result,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.inner.execute(partition, context)?;
        let g = self.governor.clone();
        let schema = g.schema.clone();
        let governed = stream.map(move |batch| g.govern(&batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, governed)))
    }
}
