//! A granted table as SQL sees it: an opaque governed scan.
//!
//! The scan reads the raw columns it needs from the table's Parquet files, applies the grant's
//! compiled policy (row filter on raw values first, then the granted columns, masked) and only
//! then hands rows to the rest of the plan. It takes no limits or statistics from the caller's
//! query and has no children an optimizer could rewrite, so nothing the caller writes runs
//! underneath the policy.
//!
//! One exception, which cannot change an answer: a condition of the query over unmasked granted
//! columns only, of the kinds that cannot fail on a value (comparisons with values of the same
//! type, IN, BETWEEN, LIKE with a fixed pattern, null tests, boolean logic), under a grant whose
//! row filter cannot fail on a value either, is handed to the file scan: the Parquet
//! reader skips row groups and pages whose statistics show no row can match, and raw rows that
//! fail it are dropped before the policy's work. An unmasked column's visible value is its raw
//! value and the condition cannot fail, so this drops exactly the visible rows the query would
//! drop, and the condition is not applied again above the scan (the scan tells the planner it
//! applies it exactly; evaluating it twice cost a governed filter-and-count about a tenth more
//! than the same query on plain DataFusion).
//! What can leak is timing at the granularity of row groups and pages: how long a query takes
//! depends on the min/max statistics of row groups and of the pages whose statistics the engine
//! keeps, including rows the row filter hides, as a full scan's time depends on their number.
//!
//! Under a read grant without a row filter, where every row is visible, the scan reports the
//! row count of its file scan (nothing about columns), so an unconditioned `count(*)` is
//! answered from the Parquet footers.
//!
//! Under a read grant without a row filter, short text columns are read as string views (no copy
//! out of Parquet's pages); unmasked ones reach the query as views, and masks and group keys see
//! the table's own types. A view keeps the page it was read from, so where any row is hidden
//! text is read as plain strings, which a filter copies.
//!
//! A text column read only for a lent condition that compares it with values, where every page
//! of every file is dictionary-encoded with a small dictionary, is read as the dictionary's keys:
//! the condition is decided once per dictionary value. It is dropped once the condition is
//! applied, so no one sees the type. (BETWEEN reaches the scan as two comparisons; other
//! conditions on the column leave it text.) The choice rests on every row's pages, hidden ones
//! included, and a scan's time on their dictionaries: timing of the same grain as above.

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, new_null_array,
};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use citybrain_catalog::TableManifest;
use citybrain_governance::{Mode, Policy};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::config::ConfigOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::physical_plan::{FileGroup, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::object_store::ObjectMeta;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
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
    /// The table's schema as its files are read (text as views).
    read_schema: SchemaRef,
    files: FileHints,
}

/// What a table's footers say about reading its files.
#[derive(Clone, Default)]
pub(crate) struct FileHints {
    /// Text columns to read as string views.
    pub(crate) views: BTreeSet<String>,
    /// Text columns whose every page is dictionary-encoded, with small dictionaries.
    pub(crate) dictionaries: BTreeSet<String>,
    /// A file's own Arrow schema, if its footer is held and the file has not changed since.
    pub(crate) schema_of: Option<FileSchemas>,
}

/// A file's own Arrow schema, if known.
pub(crate) type FileSchemas = Arc<dyn Fn(&ObjectMeta) -> Option<SchemaRef> + Send + Sync>;

impl fmt::Debug for FileHints {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("FileHints")
            .field("views", &self.views)
            .field("dictionaries", &self.dictionaries)
            .field("schema_of", &self.schema_of.is_some())
            .finish()
    }
}

/// How a text column read only for a condition is held: a dictionary's keys, with the
/// dictionary's values once per page of values.
fn dictionary_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// `schema` with the text columns named in `keyed` as [`dictionary_type`].
fn keyed_schema(schema: &Schema, keyed: &BTreeSet<&str>) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                if keyed.contains(f.name().as_str()) =>
            {
                f.as_ref().clone().with_data_type(dictionary_type())
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The column a condition compares with values only, if `e` is one: `c = v` (or another
/// comparison), `c IN (v, ...)`, `c IS [NOT] NULL`. Such a comparison is decided once per
/// dictionary value when `c` is read as dictionary keys.
fn compared_column(e: &Expr) -> Option<&str> {
    let literal = |e: &Expr| matches!(e, Expr::Literal(..));
    match e {
        Expr::BinaryExpr(b) if compares(b.op) => match (&*b.left, &*b.right) {
            (Expr::Column(c), v) | (v, Expr::Column(c)) if literal(v) => Some(&c.name),
            _ => None,
        },
        Expr::InList(l) if l.list.iter().all(literal) => match &*l.expr {
            Expr::Column(c) => Some(&c.name),
            _ => None,
        },
        Expr::IsNull(c) | Expr::IsNotNull(c) => match &**c {
            Expr::Column(c) => Some(&c.name),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `op` compares its operands by value.
fn compares(op: Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq | Lt | LtEq | Gt | GtEq | IsDistinctFrom | IsNotDistinctFrom
    )
}

/// Whether `conditions` read `column` only in comparisons with values ([`compared_column`]).
fn only_compared(conditions: &[Expr], column: &str) -> bool {
    let (mut all, mut compared) = (0usize, 0usize);
    for e in conditions {
        let _ = e.apply(|e| {
            match e {
                Expr::Column(c) if c.name == column => all += 1,
                e if compared_column(e) == Some(column) => compared += 1,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    all == compared
}

/// `e` with the text values compared with a column in `keyed` as plain strings, the
/// dictionary's value type (the planner made them views, as the table reads that column; a
/// view compared with dictionary keys would turn every key into a view).
fn plain_text_values(e: Expr, keyed: &BTreeSet<&str>) -> Result<Expr> {
    let plain = |v: Expr| match v {
        Expr::Literal(ScalarValue::Utf8View(s) | ScalarValue::LargeUtf8(s), m) => {
            Expr::Literal(ScalarValue::Utf8(s), m)
        }
        other => other,
    };
    e.transform(|e| {
        if !compared_column(&e).is_some_and(|c| keyed.contains(c)) {
            return Ok(Transformed::no(e));
        }
        Ok(Transformed::yes(match e {
            Expr::BinaryExpr(b) => Expr::BinaryExpr(BinaryExpr::new(
                Box::new(plain(*b.left)),
                b.op,
                Box::new(plain(*b.right)),
            )),
            Expr::InList(l) => Expr::InList(InList::new(
                l.expr,
                l.list.into_iter().map(plain).collect(),
                l.negated,
            )),
            other => other,
        }))
    })
    .map(|t| t.data)
}

/// `plan`, a Parquet file scan, with each file's columns named in `keyed` read as
/// [`dictionary_type`] straight from their pages. A file whose own schema `schema_of` does not
/// know is read as it is and its values converted, which gives the same rows.
fn read_keyed(
    plan: Arc<dyn ExecutionPlan>,
    keyed: &BTreeSet<&str>,
    schema_of: &FileSchemas,
) -> Arc<dyn ExecutionPlan> {
    let Some(exec) = plan.downcast_ref::<DataSourceExec>() else {
        return plan;
    };
    let Some((config, _)) = exec.downcast_to_file_source::<ParquetSource>() else {
        return plan;
    };
    let mut config = config.clone();
    config.file_groups = config
        .file_groups
        .iter()
        .map(|group| {
            let files = group
                .iter()
                .map(|f| match schema_of(&f.object_meta) {
                    Some(own) => f
                        .clone()
                        .with_arrow_schema(Arc::new(keyed_schema(&own, keyed))),
                    None => f.clone(),
                })
                .collect();
            match group.file_statistics(None) {
                Some(s) => FileGroup::new(files).with_statistics(Arc::new(s.clone())),
                None => FileGroup::new(files),
            }
        })
        .collect();
    Arc::new(exec.clone().with_data_source(Arc::new(config)))
}

/// Bytes a string view holds inside itself.
pub(crate) const INLINE_BYTES: u64 = 12;

impl GovernedTable {
    /// `manifest`'s table under `policy`, its files at `url` read as `files` says.
    pub(crate) fn new(
        manifest: &TableManifest,
        policy: Arc<Policy>,
        url: ListingTableUrl,
        files: FileHints,
    ) -> Self {
        let read_type = |f: &Field| match f.data_type() {
            DataType::Utf8 if files.views.contains(f.name()) => DataType::Utf8View,
            other => other.clone(),
        };
        // Unmasked columns are passed on as read; masked ones in the mask's type.
        let mut fields: Vec<Field> = policy
            .output_schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(o, f)| match policy.is_masked(o) {
                true => f.as_ref().clone(),
                false => f.as_ref().clone().with_data_type(read_type(f)),
            })
            .collect();
        let key_index = match (policy.mode(), manifest.key_column.as_deref()) {
            (Mode::Aggregate, Some(k)) => policy.table_schema().index_of(k).ok(),
            _ => None,
        };
        if key_index.is_some() {
            fields.push(Field::new(GROUP_KEY, DataType::Utf8, true));
        }
        let read: Vec<Field> = policy
            .table_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(read_type(f)))
            .collect();
        Self {
            name: manifest.name.clone(),
            policy,
            url,
            key_index,
            schema: Arc::new(Schema::new(fields)),
            read_schema: Arc::new(Schema::new(read)),
            files,
        }
    }

    /// The grant's mode.
    pub fn mode(&self) -> Mode {
        self.policy.mode()
    }

    /// Whether the file scan may use `filter` to skip row groups and pages: it reads only
    /// unmasked granted columns and cannot fail on a value (see the module docs).
    fn prunes(&self, filter: &Expr) -> bool {
        let Ok(schema) = DFSchema::try_from(self.schema.as_ref().clone()) else {
            return false;
        };
        let granted = self.policy.output_schema();
        let plain = |name: &str| {
            granted
                .index_of(name)
                .is_ok_and(|o| !self.policy.is_masked(o))
        };
        let unqualified = match unqualify(filter.clone()) {
            Ok(f) => f,
            Err(_) => return false,
        };
        // A LIKE pattern taken from a column would build a matcher per raw row.
        let column_pattern = unqualified
            .exists(|e| {
                Ok(matches!(e, Expr::Like(l)
                    if !matches!(l.pattern.as_ref(), Expr::Literal(..) | Expr::Cast(_))))
            })
            .unwrap_or(true);
        let columns = unqualified.column_refs();
        // Skipping rows before the row filter runs is harmless only if it cannot fail on one.
        self.policy.row_filter_cannot_fail()
            && !column_pattern
            && !columns.is_empty()
            && columns.iter().all(|c| plain(&c.name))
            && crate::shape::safe(&unqualified, &schema)
    }
}

impl GovernedTable {
    /// The file scan narrowed by the query's conditions that [`GovernedTable::prunes`] accepts
    /// (unqualified; the scan reads their columns): the Parquet reader skips row groups and
    /// pages whose statistics rule them out, and rows that fail them are dropped before the
    /// policy's work. The planner was told they are applied exactly, so one that cannot be
    /// applied fails the query rather than being left out. Only the columns at `kept` go on:
    /// a column read for a condition alone is not filtered and copied for nothing.
    fn narrowed(
        &self,
        state: &dyn Session,
        inner: Arc<dyn ExecutionPlan>,
        lent: Vec<Expr>,
        kept: Vec<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(condition) = conjunction(lent) else {
            return Ok(inner);
        };
        let schema = DFSchema::try_from(inner.schema().as_ref().clone())?;
        let predicate = state.create_physical_expr(condition, &schema)?;
        let filtered: Arc<dyn ExecutionPlan> = Arc::new(filter_exec(predicate, inner, kept)?);
        FilterPushdown::new().optimize(filtered, state.config_options())
    }
}

/// Rows of `input` for which `predicate` holds, as the columns at `keep`.
fn filter_exec(
    predicate: Arc<dyn PhysicalExpr>,
    input: Arc<dyn ExecutionPlan>,
    keep: Vec<usize>,
) -> Result<FilterExec> {
    FilterExecBuilder::new(predicate, input)
        .apply_projection(Some(keep))?
        .build()
}

/// `e` with its columns named without a table qualifier (the file scan knows only the table).
fn unqualify(e: Expr) -> Result<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            c.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
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
        Ok(filters
            .iter()
            .map(|f| match self.prunes(f) {
                true => TableProviderFilterPushDown::Exact,
                false => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        // The planner was told every condition that `prunes` accepts is applied here exactly,
        // and leaves none of them above the scan. It may still hand over a condition in another
        // form than it asked about (after simplifying it, say into a constant), so what the
        // scan receives is split again: conditions lent to the file scan, and the rest, applied
        // to governed rows above the policy, as a filter above the scan would have been.
        let (lent, rest): (Vec<&Expr>, Vec<&Expr>) = filters.iter().partition(|f| self.prunes(f));
        let unqualified = |fs: Vec<&Expr>| {
            fs.into_iter()
                .map(|f| unqualify(f.clone()))
                .collect::<Result<Vec<Expr>>>()
        };
        let (lent, rest) = (unqualified(lent)?, unqualified(rest)?);
        // Governed columns shown: those asked for, then those only the rest of the conditions
        // read (dropped once they are applied).
        let mut shown = wanted.clone();
        for c in rest.iter().flat_map(|f| f.column_refs()) {
            let i = self.schema.index_of(&c.name)?;
            if !shown.contains(&i) {
                shown.push(i);
            }
        }
        let granted = self.policy.granted_indices();
        // Raw columns read: what the row filter needs plus what is shown.
        let mut raw: BTreeSet<usize> = self.policy.filter_columns().into_iter().collect();
        for &w in &shown {
            match granted.get(w) {
                Some(&i) => raw.insert(i),
                None => raw.insert(self.key_index.ok_or_else(|| {
                    DataFusionError::Internal(format!("column {w} of {} out of range", self.name))
                })?),
            };
        }
        // The columns the lent conditions need.
        let mut read = raw.clone();
        for c in lent.iter().flat_map(|f| f.column_refs()) {
            let shown_at = self.schema.index_of(&c.name)?;
            read.insert(granted.get(shown_at).copied().ok_or_else(|| {
                DataFusionError::Internal(format!("condition column {c} of {} unknown", self.name))
            })?);
        }
        // Read: `read`; handed on after the conditions: `raw`, in the same (table) order.
        let read: Vec<usize> = read.into_iter().collect();
        let kept: Vec<usize> = read
            .iter()
            .enumerate()
            .filter(|(_, i)| raw.contains(i))
            .map(|(j, _)| j)
            .collect();
        // Text read only for a lent condition, where every page holds a dictionary's keys, is
        // read as those keys: the condition is decided once per dictionary value, and no value
        // is copied per row. It is dropped once the condition is applied, so its type is the
        // file scan's own.
        let table_schema = self.policy.table_schema();
        let keyed: BTreeSet<&str> = match &self.files.schema_of {
            Some(_) => read
                .iter()
                .filter(|i| !raw.contains(i))
                .map(|&i| table_schema.field(i).name().as_str())
                .filter(|name| {
                    self.files.dictionaries.contains(*name) && only_compared(&lent, name)
                })
                .collect(),
            None => BTreeSet::new(),
        };
        let lent = match keyed.is_empty() {
            true => lent,
            false => lent
                .into_iter()
                .map(|e| plain_text_values(e, &keyed))
                .collect::<Result<_>>()?,
        };
        let raw: Vec<usize> = raw.into_iter().collect();
        // The session's Parquet settings (bloom filters are not read: see the crate docs).
        let format = ParquetFormat::default().with_options(state.default_table_options().parquet);
        let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
        let config = ListingTableConfig::new(self.url.clone())
            .with_listing_options(options)
            .with_schema(Arc::new(keyed_schema(&self.read_schema, &keyed)));
        let files = ListingTable::try_new(config)?;
        let mut inner = files.scan(state, Some(&read), &[], None).await?;
        if let Some(schema_of) = &self.files.schema_of
            && !keyed.is_empty()
        {
            inner = read_keyed(inner, &keyed, schema_of);
        }
        let inner = self.narrowed(state, inner, lent, kept)?;
        let schema = Arc::new(self.schema.project(&shown)?);
        let partitions = inner.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let governed: Arc<dyn ExecutionPlan> = Arc::new(GovernedExec {
            governor: Arc::new(Governor {
                table: self.name.clone(),
                policy: self.policy.clone(),
                raw,
                wanted: shown,
                key_index: self.key_index,
                schema,
                null_columns: Mutex::new(HashMap::new()),
            }),
            inner,
            properties,
        });
        let Some(condition) = conjunction(rest) else {
            return Ok(governed);
        };
        let schema = DFSchema::try_from(governed.schema().as_ref().clone())?;
        let predicate = state.create_physical_expr(condition, &schema)?;
        let asked = (0..wanted.len()).collect();
        Ok(Arc::new(filter_exec(predicate, governed, asked)?))
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
    /// Table-schema positions the inner scan hands on, in its output order (the file scan may
    /// read more, for conditions lent to it).
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

/// A view column that holds much more than its values (views into a whole page, or into the
/// rows a filter dropped) as a copy of just its values. Joins and sorts keep batches, and each
/// batch would otherwise hold, and be charged to the query's memory for, the whole shared
/// buffer. A small excess (a short dictionary) is not worth the copy.
fn compact(a: &ArrayRef) -> ArrayRef {
    const SMALL_EXCESS: usize = 64 << 10;
    // What the values use is counted over every row, so only where the buffers held could be
    // worth a copy at all (values read through a dictionary share one small page).
    let wasteful = |buffers: &[arrow::buffer::Buffer], used: &dyn Fn() -> usize| {
        let held: usize = buffers.iter().map(|b| b.len()).sum();
        held > SMALL_EXCESS && held > 2 * used() + SMALL_EXCESS
    };
    if let Some(v) = a.as_string_view_opt()
        && wasteful(v.data_buffers(), &|| v.total_buffer_bytes_used())
    {
        return Arc::new(v.gc());
    }
    if let Some(v) = a.as_binary_view_opt()
        && wasteful(v.data_buffers(), &|| v.total_buffer_bytes_used())
    {
        return Arc::new(v.gc());
    }
    a.clone()
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

    /// Table column `i` of a raw batch (as read) in the table's own type.
    fn plain(&self, i: usize, raw: &RecordBatch) -> Result<ArrayRef> {
        let fail = || policy_failed(&self.table, &self.policy.grant.id);
        let values = self.as_read(i, raw)?;
        let t = self.policy.table_schema().field(i).data_type();
        match values.data_type() == t {
            true => Ok(values.clone()),
            false => cast(values, t).map_err(|_| fail()),
        }
    }

    /// Table column `i` of a raw batch, as read.
    fn as_read<'a>(&self, i: usize, raw: &'a RecordBatch) -> Result<&'a ArrayRef> {
        let j = self.raw.iter().position(|r| *r == i);
        j.map(|j| raw.column(j))
            .ok_or_else(|| policy_failed(&self.table, &self.policy.grant.id))
    }

    /// Rows of a raw batch the grant's row filter keeps (`None`: all of them). The filter sees
    /// the table's types; columns it does not read are nulls.
    fn selection(&self, raw: &RecordBatch) -> Result<Option<BooleanArray>> {
        if !self.policy.has_row_filter() {
            return Ok(None);
        }
        let fail = || policy_failed(&self.table, &self.policy.grant.id);
        let table_schema = self.policy.table_schema();
        let filtered = self.policy.filter_columns();
        let columns = (0..table_schema.fields().len())
            .map(|i| match filtered.binary_search(&i) {
                Ok(_) => self.plain(i, raw),
                Err(_) => Ok(self.nulls(i, raw.num_rows())),
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let full = RecordBatch::try_new(table_schema.clone(), columns).map_err(|_| fail())?;
        self.policy.selection(&full).map_err(|_| fail())
    }

    /// Raw batch from the inner scan → what the consumer may see of it.
    fn govern(&self, raw: &RecordBatch) -> Result<RecordBatch> {
        let fail = || policy_failed(&self.table, &self.policy.grant.id);
        let visible = match self.selection(raw)? {
            Some(keep) => filter_record_batch(raw, &keep).map_err(|_| fail())?,
            None => raw.clone(),
        };
        let granted = self.policy.granted_indices();
        let mut columns = Vec::with_capacity(self.wanted.len());
        for &w in &self.wanted {
            let column = match granted.get(w) {
                // Unmasked: as read (text stays a view).
                Some(&i) if !self.policy.is_masked(w) => compact(self.as_read(i, &visible)?),
                Some(&i) => self
                    .policy
                    .mask_column(w, &self.plain(i, &visible)?)
                    .map_err(|_| fail())?,
                None => {
                    let key = self.key_index.ok_or_else(fail)?;
                    self.policy
                        .hash_values(&self.plain(key, &visible)?)
                        .map_err(|_| fail())?
                }
            };
            columns.push(column);
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

    /// Under a read grant without a row filter every row is visible, so the scan reports how
    /// many rows its file scan says it gives (exact from the Parquet footers when no condition
    /// is lent to it, an estimate otherwise; nothing about columns): `count(*)` is then answered
    /// without reading rows. Otherwise nothing. The file scan is not a child (see above), so
    /// its statistics are computed here rather than handed in.
    fn statistics_from_inputs(
        &self,
        _inputs: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        let mut stats = Statistics::new_unknown(&self.schema());
        let policy = &self.governor.policy;
        if args.partition().is_none() && policy.mode() == Mode::Read && !policy.has_row_filter() {
            let inner = StatisticsContext::new().compute(self.inner.as_ref(), args)?;
            stats.num_rows = inner.num_rows;
        }
        Ok(Arc::new(stats))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::compute::cast as cast_array;
    use citybrain_governance::{Grant, GrantColumn, GrantTerms, Mask};
    use datafusion::prelude::{cast, col, lit};

    fn manifest() -> TableManifest {
        citybrain_catalog::parse_manifest(
            "residents.toml",
            include_str!("../../../catalog/population/residents.toml"),
        )
        .expect("manifest")
    }

    /// Residents under a read grant: id_number and town unmasked, name masked, gender not
    /// granted; rows of one town only. Files under `url`.
    fn residents_at(url: ListingTableUrl) -> GovernedTable {
        residents_filtered(url, "town = '桂城街道'")
    }

    fn residents_filtered(url: ListingTableUrl, row_filter: &str) -> GovernedTable {
        residents_granted(url, Some(row_filter), Mode::Read)
    }

    fn residents_granted(
        url: ListingTableUrl,
        row_filter: Option<&str>,
        mode: Mode,
    ) -> GovernedTable {
        let manifest = manifest();
        let files = FileHints {
            views: ["town".to_owned()].into(),
            ..FileHints::default()
        };
        GovernedTable::new(&manifest, Arc::new(policy(row_filter, mode)), url, files)
    }

    /// The grant of [`residents_granted`], compiled.
    fn policy(row_filter: Option<&str>, mode: Mode) -> Policy {
        let manifest = manifest();
        let column = |name: &str, mask: Option<Mask>| GrantColumn {
            name: name.into(),
            mask,
        };
        let grant = Grant {
            id: "g1".into(),
            application_id: "a1".into(),
            table: manifest.name.clone(),
            consumer_dept: "civil-affairs".into(),
            terms: GrantTerms {
                columns: vec![
                    column("id_number", None),
                    column("name", Some(Mask::FirstChar)),
                    column("town", None),
                    column("birth_date", Some(Mask::Year)),
                ],
                row_filter: row_filter.map(str::to_owned),
                purpose: "test".into(),
                mode,
                max_calls_per_day: 0,
                max_rows_per_day: 0,
                min_group_size: 0,
            },
            created_at: 0,
            expires_at: u64::MAX,
            revoked_at: None,
            revoke_reason: String::new(),
        };
        Policy::compile(grant, &manifest, b"secret").expect("policy")
    }

    fn residents() -> GovernedTable {
        residents_at(ListingTableUrl::parse("file:///nowhere/").expect("url"))
    }

    /// 400 residents sorted by ID number in four row groups of 100, pages of 10: the first two
    /// groups in 桂城街道, the last two in 大沥镇; every other column null.
    /// A directory of residents' Parquet files, and its URL.
    fn written_residents() -> (tempfile::TempDir, ListingTableUrl) {
        let dir = tempfile::tempdir().expect("dir");
        write_residents(dir.path());
        let url = ListingTableUrl::parse(format!("{}/", dir.path().display())).expect("url");
        (dir, url)
    }

    /// Writes the residents of [`written_residents`] into `dir`.
    fn write_residents(dir: &std::path::Path) {
        write_residents_file(&dir.join("part-00000.parquet"), 400);
    }

    /// `rows` residents: the first 200 in 桂城街道, the rest in 大沥镇.
    fn write_residents_file(path: &std::path::Path, rows: usize) {
        let schema = citybrain_governance::table_schema(&manifest());
        let ids: Vec<String> = (0..rows).map(|i| format!("440605{i:012}")).collect();
        let towns: Vec<&str> = (0..rows)
            .map(|i| if i < 200 { "桂城街道" } else { "大沥镇" })
            .collect();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "id_number" => Arc::new(arrow::array::StringArray::from(ids.clone())),
                    "town" => Arc::new(arrow::array::StringArray::from(towns.clone())),
                    _ => new_null_array(f.data_type(), rows),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        let props = datafusion::parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(100))
            .set_data_page_row_count_limit(10)
            .set_write_batch_size(10)
            .build();
        let file = std::fs::File::create(path).expect("file");
        let mut w = datafusion::parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))
            .expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
    }

    /// The governed scan: the plan itself, or below a filter applied to governed rows.
    fn governed(plan: &Arc<dyn ExecutionPlan>) -> &GovernedExec {
        match plan.downcast_ref::<GovernedExec>() {
            Some(g) => g,
            None => governed(plan.children().first().expect("a governed scan")),
        }
    }

    /// The scan's Parquet reader, below the governed scan (and any filter lent to it).
    fn file_scan(plan: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        let mut node = governed(plan).inner.clone();
        while let Some(child) = node.children().first().map(|c| (*c).clone()) {
            node = child;
        }
        node
    }

    fn row_groups_pruned(plan: &Arc<dyn ExecutionPlan>) -> usize {
        use datafusion::physical_plan::metrics::MetricValue;
        file_scan(plan)
            .metrics()
            .expect("metrics")
            .iter()
            .filter_map(|m| match m.value() {
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } if name == "row_groups_pruned_statistics" => Some(pruning_metrics.pruned()),
                _ => None,
            })
            .sum()
    }

    #[test]
    fn a_view_column_keeps_only_its_own_values() {
        let long: Vec<String> = (0..10_000).map(|i| format!("440605{i:012}")).collect();
        let all: ArrayRef = Arc::new(arrow::array::StringViewArray::from_iter_values(&long));
        let few = all.slice(10, 5);
        let kept = compact(&few);
        let bytes = |a: &ArrayRef| -> usize {
            a.as_string_view()
                .data_buffers()
                .iter()
                .map(|b| b.len())
                .sum()
        };
        assert!(bytes(&few) >= 180_000);
        assert!(bytes(&kept) < 1_000, "{}", bytes(&kept));
        assert_eq!(kept.as_ref(), few.as_ref());
        // Already compact: kept as it is.
        assert!(Arc::ptr_eq(&compact(&all), &all));
    }

    #[tokio::test]
    async fn a_lent_condition_skips_row_groups_and_the_policy_still_applies() {
        let (_dir, url) = written_residents();
        let t = residents_at(url);
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().execution.parquet.bloom_filter_on_read = false;
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        // Rows 150..250: row groups 1 and 2 may match, 0 and 3 cannot.
        let id = |i: i32| lit(format!("440605{i:012}"));
        let range = col("id_number")
            .gt_eq(id(150))
            .and(col("id_number").lt(id(250)));
        let plan = t
            .scan(&ctx.state(), None, &[range], None)
            .await
            .expect("scan");
        let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .expect("run");
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let c = cast_array(b.column(0), &DataType::Utf8).expect("text");
                let c = c.as_string::<i32>();
                c.iter()
                    .map(|v| v.unwrap_or_default().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        // The condition narrowed the read; the row filter (桂城街道 only) still applied.
        let expected: Vec<String> = (150..200).map(|i| format!("440605{i:012}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(row_groups_pruned(&plan), 2);
        // The file scan follows the session's Parquet settings: no bloom filter reads.
        let files = file_scan(&plan);
        let (_, parquet) = files
            .downcast_ref::<datafusion::datasource::source::DataSourceExec>()
            .and_then(|d| {
                d.downcast_to_file_source::<datafusion::datasource::physical_plan::ParquetSource>()
            })
            .expect("a Parquet scan");
        assert!(!parquet.table_parquet_options().global.bloom_filter_on_read);
        // A condition on a masked column is not lent: nothing is skipped, and it is applied
        // to governed rows (every name is missing, so its mask is too). The same goes for a
        // condition the planner simplified to a constant. Only the asked-for column is shown.
        let town = t.schema().index_of("town").expect("town");
        for (condition, expected) in [
            (col("name").is_null(), 200),
            (col("name").is_not_null(), 0),
            (lit(false), 0),
            (lit(true), 200),
        ] {
            let plan = t
                .scan(
                    &ctx.state(),
                    Some(&vec![town]),
                    std::slice::from_ref(&condition),
                    None,
                )
                .await
                .expect("scan");
            let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
                .await
                .expect("run");
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(rows, expected, "{condition}");
            assert!(batches.iter().all(|b| b.num_columns() == 1), "{condition}");
            assert_eq!(row_groups_pruned(&plan), 0, "{condition}");
        }
    }

    #[tokio::test]
    async fn a_lent_condition_is_applied_exactly_even_when_its_column_is_not_returned() {
        let (_dir, url) = written_residents();
        let t = residents_at(url);
        let ctx = datafusion::prelude::SessionContext::new();
        let id = |i: i32| lit(format!("440605{i:012}"));
        let range = col("id_number")
            .gt_eq(id(150))
            .and(col("id_number").lt(id(250)));
        let masked = col("name").eq(lit("张**"));
        // The planner leaves a lent condition to the scan alone; others it applies above.
        assert_eq!(
            t.supports_filters_pushdown(&[&range, &masked])
                .expect("pushdown"),
            vec![
                TableProviderFilterPushDown::Exact,
                TableProviderFilterPushDown::Unsupported
            ]
        );
        // Only the town is asked for: the scan still reads id_number to apply the condition.
        let town = t.schema().index_of("town").expect("town");
        let plan = t
            .scan(&ctx.state(), Some(&vec![town]), &[range], None)
            .await
            .expect("scan");
        // id_number is read for the condition and dropped once it is applied.
        let governed = plan.downcast_ref::<GovernedExec>().expect("governed");
        let handed_on = governed.inner.schema();
        assert_eq!(handed_on.fields().len(), 1);
        assert_eq!(handed_on.field(0).name(), "town");
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .expect("run");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 50, "rows 150..200 of 桂城街道 only");
        assert!(batches.iter().all(|b| b.num_columns() == 1));
        // Through SQL: the count is the governed one.
        ctx.register_table("r", Arc::new(t)).expect("register");
        let counted = ctx
            .sql(
                "SELECT count(*) FROM r WHERE id_number >= '440605000000000150' \
                 AND id_number < '440605000000000250'",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let n = counted[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(n, 50);
        // A condition the planner accepted for the scan and then simplified into one the scan
        // does not lend (here: to false) is still applied.
        let none = ctx
            .sql(
                "SELECT * FROM (SELECT town, 'a' AS c FROM r) s \
                 WHERE (town = '桂城街道' AND c = 'b') OR (town = '大沥镇' AND c = 'z')",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        assert_eq!(none.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    #[tokio::test]
    async fn every_row_visible_counts_from_the_footers_and_a_row_filter_still_counts_rows() {
        let (_dir, url) = written_residents();
        let url = || url.clone();
        for (row_filter, expected, from_footers) in
            [(None, 400, true), (Some("town = '桂城街道'"), 200, false)]
        {
            let ctx = datafusion::prelude::SessionContext::new();
            ctx.register_table(
                "r",
                Arc::new(residents_granted(url(), row_filter, Mode::Read)),
            )
            .expect("register");
            let count = |sql: &'static str| {
                let ctx = ctx.clone();
                async move {
                    let df = ctx.sql(sql).await.expect("plan");
                    let plan = df.clone().create_physical_plan().await.expect("physical");
                    let shown = datafusion::physical_plan::displayable(plan.as_ref())
                        .indent(false)
                        .to_string();
                    let batches = df.collect().await.expect("run");
                    let n = batches[0]
                        .column(0)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(0);
                    (n, shown.contains("GovernedScan"))
                }
            };
            let (n, scanned) = count("SELECT count(*) FROM r").await;
            assert_eq!(n, expected, "{row_filter:?}");
            assert_eq!(scanned, !from_footers, "{row_filter:?}");
            // A condition makes the count a scan again, and a right one: lent to the file
            // scan, or on a masked column and applied above the policy.
            let (n, scanned) = count("SELECT count(*) FROM r WHERE town = '大沥镇'").await;
            assert_eq!(n, if row_filter.is_none() { 200 } else { 0 });
            assert!(scanned);
            let (n, scanned) = count("SELECT count(*) FROM r WHERE name IS NULL").await;
            assert_eq!(n, expected);
            assert!(scanned);
        }
        // Under an aggregate grant the scan reports nothing, even with every row visible.
        let ctx = datafusion::prelude::SessionContext::new();
        let t = residents_granted(url(), None, Mode::Aggregate);
        let plan = t.scan(&ctx.state(), None, &[], None).await.expect("scan");
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .expect("statistics");
        assert_eq!(stats.num_rows, datafusion::common::stats::Precision::Absent);
        let read = residents_granted(url(), None, Mode::Read);
        let plan = read
            .scan(&ctx.state(), None, &[], None)
            .await
            .expect("scan");
        let stats = StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .expect("statistics");
        assert_eq!(
            stats.num_rows,
            datafusion::common::stats::Precision::Exact(400)
        );
    }

    /// SQL over the residents of [`write_residents`] in a data root of their own, under the
    /// read grant of [`policy`] without a row filter.
    struct Served {
        _root: tempfile::TempDir,
        /// The residents' directory.
        dir: std::path::PathBuf,
        engine: Arc<citybrain_engine::Engine>,
        analytics: crate::Analytics,
        sources: [crate::Source; 1],
    }

    /// The count a `SELECT count(*) ...` gives.
    async fn counted(analytics: &crate::Analytics, sources: &[crate::Source], sql: &str) -> i64 {
        let answer = analytics.run(sources, sql).await.expect(sql);
        answer.batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    }

    fn served() -> Served {
        use citybrain_engine::{DataRoot, Engine};
        let root = tempfile::tempdir().expect("dir");
        let dir = root.path().join("population").join("residents");
        std::fs::create_dir_all(&dir).expect("dir");
        write_residents(&dir);
        let engine = Arc::new(Engine::new(DataRoot::local(root.path()).expect("root")));
        let analytics =
            crate::Analytics::new(engine.clone(), crate::Limits::default()).expect("analytics");
        let sources = [crate::Source {
            manifest: manifest(),
            policy: Arc::new(policy(None, Mode::Read)),
        }];
        Served {
            _root: root,
            dir,
            engine,
            analytics,
            sources,
        }
    }

    #[tokio::test]
    async fn sql_reads_the_engines_footers_and_keeps_no_copy_of_its_own() {
        use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
        use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
        let Served {
            _root,
            engine,
            analytics,
            sources,
            ..
        } = served();
        // Conditions on a column without a column index (town) and on the key, whose pages
        // may still be pruned: the answers are exact.
        for (sql, expected) in [
            (
                "SELECT count(*) FROM population.residents WHERE town = '大沥镇'",
                200,
            ),
            (
                "SELECT count(*) FROM population.residents \
                 WHERE town = '大沥镇' AND id_number >= '440605000000000350'",
                50,
            ),
            (
                "SELECT count(*) FROM population.residents WHERE id_number < '440605000000000010'",
                10,
            ),
            // Null counts of a column without a column index are unknown, not zero.
            (
                "SELECT count(*) FROM population.residents \
                 WHERE name IS NULL AND id_number >= '440605000000000395'",
                5,
            ),
        ] {
            assert_eq!(counted(&analytics, &sources, sql).await, expected, "{sql}");
        }
        // The engine holds the footer with the column index of the key and of the columns of
        // numbers and dates (birth_date) alone.
        let path = engine
            .root()
            .dataset_path("population/residents")
            .join("part-00000.parquet");
        let (_, held) = engine
            .cached_footer(&path)
            .expect("the engine holds the footer");
        let index = held.column_index().expect("a page index");
        let schema = held.file_metadata().schema_descr();
        for group in index {
            for (c, ci) in group.iter().enumerate() {
                let kept = ["id_number", "birth_date"].contains(&schema.column(c).name());
                assert_eq!(!matches!(ci, ColumnIndexMetaData::NONE), kept, "column {c}");
            }
        }
        // DataFusion read no footer itself (it would have kept it in its own cache), and what
        // its cache gives it for the file is the engine's.
        let cache = analytics.base.cache_manager.get_file_metadata_cache();
        assert_eq!(cache.len(), 0, "footers DataFusion read itself");
        let shared = cache.get(&path).expect("shared");
        let shared = shared
            .file_metadata
            .as_any()
            .downcast_ref::<CachedParquetMetaData>()
            .expect("parquet metadata");
        assert!(Arc::ptr_eq(shared.parquet_metadata(), &held));
    }

    #[tokio::test]
    async fn a_column_only_compared_with_values_is_read_as_dictionary_keys() {
        let Served {
            _root,
            analytics,
            sources,
            ..
        } = served();
        // Town, written with a dictionary, is read as its keys where the query only compares
        // it with values and does not show it; otherwise as the table's text. Same answers.
        let keys = dictionary_type();
        for (sql, expected, town) in [
            (
                "SELECT count(*) FROM population.residents WHERE town = '大沥镇'",
                200,
                &keys,
            ),
            (
                "SELECT count(*) FROM population.residents WHERE town IN ('大沥镇', '罗村街道')",
                200,
                &keys,
            ),
            (
                "SELECT count(*) FROM population.residents \
                 WHERE town <> '大沥镇' AND id_number >= '440605000000000150'",
                50,
                &keys,
            ),
            (
                "SELECT count(*) FROM population.residents WHERE town >= '桂' OR town IS NULL",
                200,
                &keys,
            ),
            (
                "SELECT count(*) FROM population.residents WHERE town LIKE '大%'",
                200,
                &DataType::Utf8View,
            ),
            (
                "SELECT count(*) FROM population.residents WHERE town = '大沥镇' OR town = id_number",
                200,
                &DataType::Utf8View,
            ),
            (
                "SELECT count(town) FROM population.residents WHERE town = '大沥镇'",
                200,
                &DataType::Utf8View,
            ),
        ] {
            let (ctx, logical, _) = analytics.plan(&sources, sql).await.expect(sql);
            let plan = ctx.state().create_physical_plan(&logical).await.expect(sql);
            let read = file_scan(&plan).schema();
            assert_eq!(
                read.field_with_name("town").expect(sql).data_type(),
                town,
                "{sql}"
            );
            assert_eq!(counted(&analytics, &sources, sql).await, expected, "{sql}");
        }
        // Row groups are still skipped by the keyed column's statistics: the first two hold
        // 桂城街道 alone.
        let sql = "SELECT count(*) FROM population.residents WHERE town = '大沥镇'";
        let (ctx, logical, _) = analytics.plan(&sources, sql).await.expect(sql);
        let plan = ctx.state().create_physical_plan(&logical).await.expect(sql);
        datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .expect(sql);
        assert_eq!(row_groups_pruned(&plan), 2);
    }

    #[tokio::test]
    async fn sql_reads_a_tables_files_as_they_are_at_each_query() {
        let Served {
            _root,
            dir,
            analytics,
            sources,
            ..
        } = served();
        let count = |sql: &'static str| counted(&analytics, &sources, sql);
        // Counted from the footers, and by scanning.
        let all = "SELECT count(*) FROM population.residents";
        let dali = "SELECT count(*) FROM population.residents WHERE town = '大沥镇'";
        assert_eq!((count(all).await, count(dali).await), (400, 200));
        // A file added, then replaced by a larger one, then removed: each query reads the files
        // there are, not a listing kept from an earlier query.
        let added = dir.join("part-00001.parquet");
        write_residents_file(&added, 100);
        assert_eq!((count(all).await, count(dali).await), (500, 200));
        write_residents_file(&added, 300);
        assert_eq!((count(all).await, count(dali).await), (700, 300));
        std::fs::remove_file(&added).expect("remove");
        assert_eq!((count(all).await, count(dali).await), (400, 200));
    }

    #[test]
    fn only_unfailing_conditions_on_unmasked_columns_prune() {
        let t = residents();
        let text = |s: &str| cast(lit(s), DataType::Utf8View);
        let town = || col("town");
        // Unmasked columns, comparisons with values of the same type: lent to the file scan.
        assert!(t.prunes(&town().eq(text("桂城街道"))));
        assert!(
            t.prunes(
                &col("id_number")
                    .gt_eq(text("4406"))
                    .and(town().is_not_null())
            )
        );
        assert!(t.prunes(&Expr::Column(Column::new(Some("r"), "town")).eq(text("x"))));
        // A masked column's raw statistics are not what the caller sees.
        assert!(!t.prunes(&col("name").eq(lit("张**"))));
        assert!(!t.prunes(&col("birth_date").eq(lit("1990"))));
        assert!(!t.prunes(&town().eq(text("x")).or(col("name").eq(lit("张**")))));
        // Anything that could fail on a value, or reads no column, stays above the policy.
        assert!(!t.prunes(&cast(town(), DataType::Int64).eq(lit(5i64))));
        assert!(!t.prunes(&(col("id_number") / lit(0i64)).eq(lit(1i64))));
        assert!(!t.prunes(&lit(true)));
        // A LIKE pattern from a column would be built per raw row.
        assert!(!t.prunes(&town().like(col("id_number"))));
        assert!(t.prunes(&town().like(lit("桂%"))));
        // Under a row filter that can fail on a value, nothing may skip rows before it runs:
        // whether it fails would depend on the caller's condition.
        let nowhere = || ListingTableUrl::parse("file:///nowhere/").expect("url");
        for failing in [
            "CAST(phone AS BIGINT) > 0",
            "town = '桂城街道' AND 1 / CAST(length(name) - 2 AS INT) = 1",
            "name LIKE town",
        ] {
            let t = residents_filtered(nowhere(), failing);
            assert!(!t.policy.row_filter_cannot_fail(), "{failing}");
            assert!(!t.prunes(&town().eq(text("桂城街道"))), "{failing}");
        }
        for unfailing in [
            "town IN ('桂城街道', '大沥镇') AND phone IS NOT NULL",
            "NOT (name LIKE '张%') OR birth_date >= DATE '1990-01-01'",
        ] {
            let t = residents_filtered(nowhere(), unfailing);
            assert!(t.policy.row_filter_cannot_fail(), "{unfailing}");
            assert!(t.prunes(&town().eq(text("桂城街道"))), "{unfailing}");
        }
    }
}
