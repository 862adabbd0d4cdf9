//! The join a hub runs most, done with less memory: an inner join on one text key, such as legal
//! entities × residents by legal representative's ID number.
//!
//! DataFusion's hash join holds its build side twice while it builds (the batches as they came,
//! then one concatenated copy), chains every probe through a hash map whose control bytes,
//! buckets, chain links and keys lie in four places, and hash-repartitions both sides of a large
//! join first. This join keeps the build side's batches as they came (small ones gathered into
//! full ones), indexes them with an open-addressed table (in parts, one per partition of the
//! query up to 16, chosen by the key's hash, each sized for its own rows to be about three
//! quarters full, not rounded up to a power of two) whose slots hold a
//! byte of tag (7 bits of the key's hash), read eight at a time, beside the number of the
//! newest row with that key (each row linked to the previous one with its key), and probes each
//! partition of the probe side as it comes: neither side is repartitioned. A probe for an
//! absent key mostly reads one 8-byte group of tags, from an array a sixth the size of
//! DataFusion's map.
//!
//! A probe side that comes in key order, as a base library sorted by ID number does, is served
//! by another index where every build key is a code (ID numbers, phone numbers; see
//! [`ordered`]): the keys as numbers, sorted, which each probe batch walks through in order
//! (a batch out of order is sorted first). The first probe batch read, by whichever partition
//! reads first, decides: the build side is read and indexed once that batch is in, in key order
//! if its keys (at least 256) are. Then a build key column the join does not return is read as
//! numbers, batch by batch, and let go, so the keys' text is never all held (see [`ToNumbers`]).
//!
//! It replaces a hash join only where it gives the same rows: an inner join with one key pair,
//! text or bytes on both sides, no other condition, nulls never equal, no row limit. Rows come
//! out in probe order, in the hash join's schema and with its projection. It runs after
//! DataFusion has chosen each join's build side and before partitioning is planned, so the plan
//! above it sees its real partitioning. The build side's memory is reserved from the query's
//! pool; a build side larger than the pool fails the query cleanly.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, GenericBinaryArray, LargeBinaryArray,
    NullArray, OffsetSizeTrait, RecordBatch, RecordBatchOptions, UInt32Array, UInt64Array,
};
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinSide, JoinType, NullEquality};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{RecordBatchStream, TaskContext};
use datafusion::physical_expr::equivalence::{ProjectionMapping, join_equivalence_properties};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::joins::utils::adjust_right_output_partitioning;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion_common_runtime::SpawnedTask;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use std::fmt;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

mod ordered;

/// DataFusion's physical optimizer rules with [`KeyJoinRule`] right after join selection.
pub(crate) fn optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(at, Arc::new(KeyJoinRule));
    rules
}

/// Places the key join where a hash join gives the same rows (see the module's docs).
#[derive(Debug, Default)]
pub(crate) struct KeyJoinRule;

impl PhysicalOptimizerRule for KeyJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<HashJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            Ok(match KeyJoinExec::replacing(join)? {
                Some(key_join) => Transformed::yes(Arc::new(key_join) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "key_join"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The types whose values the key join compares as bytes.
fn byte_key(t: &DataType) -> Option<bool> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(true),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Some(false),
        _ => None,
    }
}

/// An inner join on one text or bytes key, built from the left child's rows (all its
/// partitions, once) and probed by each partition of the right child.
pub(crate) struct KeyJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: (PhysicalExprRef, PhysicalExprRef),
    /// Left columns, then right columns.
    join_schema: SchemaRef,
    /// Columns of `join_schema` given out, in order; all of them when `None`.
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
    /// The build side, started by the first partition executed and shared by all.
    build: Mutex<Option<SharedBuild>>,
    /// Whether the first probe batch read came in key order, set before the build side is read.
    probe_in_order: Arc<OnceLock<bool>>,
    metrics: ExecutionPlanMetricsSet,
}

type SharedBuild = Shared<BoxFuture<'static, Result<Arc<Table>, Arc<DataFusionError>>>>;

impl fmt::Debug for KeyJoinExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyJoinExec")
            .field("on", &self.on)
            .field("projection", &self.projection)
            .finish()
    }
}

impl KeyJoinExec {
    /// The key join giving the same rows as `join`, if it has the shape the key join serves.
    fn replacing(join: &HashJoinExec) -> Result<Option<Self>> {
        let [(l, r)] = join.on() else {
            return Ok(None);
        };
        let left_key = l.data_type(&join.left().schema())?;
        let right_key = r.data_type(&join.right().schema())?;
        let keys = byte_key(&left_key).is_some() && byte_key(&left_key) == byte_key(&right_key);
        if *join.join_type() != JoinType::Inner
            || join.filter().is_some()
            || join.fetch().is_some()
            || join.null_equality() != NullEquality::NullEqualsNothing
            || join.null_aware
            || !keys
        {
            return Ok(None);
        }
        let projection = join
            .projection
            .as_ref()
            .map(|p| p.iter().copied().collect());
        Self::try_new(
            join.left().clone(),
            join.right().clone(),
            (l.clone(), r.clone()),
            join.join_schema().clone(),
            projection,
        )
        .map(Some)
    }

    fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: (PhysicalExprRef, PhysicalExprRef),
        join_schema: SchemaRef,
        projection: Option<Vec<usize>>,
    ) -> Result<Self> {
        let joined = join_equivalence_properties(
            left.equivalence_properties().clone(),
            right.equivalence_properties().clone(),
            &JoinType::Inner,
            join_schema.clone(),
            // Probe rows come out in their order; build rows in none.
            &[false, true],
            Some(JoinSide::Right),
            std::slice::from_ref(&on),
        )?;
        let partitioning = adjust_right_output_partitioning(
            right.output_partitioning(),
            left.schema().fields().len(),
        )?;
        // A projection keeps the probe side's partitioning under the columns' new places: a
        // plan above may already rely on it (distribution is enforced before projections are
        // swapped in).
        let (equivalences, partitioning) = match &projection {
            None => (joined, partitioning),
            Some(p) => {
                let mapping = ProjectionMapping::from_indices(p, &join_schema)?;
                let schema = Arc::new(join_schema.project(p)?);
                let partitioning = partitioning.project(&mapping, &joined);
                (joined.project(&mapping, schema), partitioning)
            }
        };
        // Rows come out as the probe side's do, once the build side is read; a build side that
        // never ends lets none out.
        let (emission, boundedness) = match left.boundedness().is_unbounded() {
            true => (
                EmissionType::Final,
                Boundedness::Unbounded {
                    requires_infinite_memory: true,
                },
            ),
            false => (right.pipeline_behavior(), right.boundedness()),
        };
        let properties = PlanProperties::new(equivalences, partitioning, emission, boundedness);
        Ok(Self {
            left,
            right,
            on,
            join_schema,
            projection,
            properties: Arc::new(properties),
            build: Mutex::new(None),
            probe_in_order: Arc::new(OnceLock::new()),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The build side, started on first use and shared by every partition.
    fn build(&self, context: &Arc<TaskContext>) -> SharedBuild {
        let mut build = self.build.lock().unwrap_or_else(|e| e.into_inner());
        build
            .get_or_insert_with(|| {
                let (left, key, context) = (self.left.clone(), self.on.0.clone(), context.clone());
                let in_order = self.probe_in_order.clone();
                let ordered = MetricBuilder::new(&self.metrics).global_counter("ordered_index");
                let let_go = MetricBuilder::new(&self.metrics).global_counter("keys_as_numbers");
                // A key column that is not returned may be let go once its keys are numbers.
                let returned = self.output_columns();
                let key_returned = move |c: usize| returned.contains(&c);
                async move {
                    let table = Table::build(left, key, context, &in_order, key_returned).await?;
                    ordered.add(usize::from(table.ordered.is_some()));
                    let_go.add(usize::from(table.keys_as_numbers));
                    Ok(Arc::new(table))
                }
                .map(|r| r.map_err(Arc::new))
                .boxed()
                .shared()
            })
            .clone()
    }

    /// Output columns as positions in the join schema.
    fn output_columns(&self) -> Vec<usize> {
        match &self.projection {
            Some(p) => p.clone(),
            None => (0..self.join_schema.fields().len()).collect(),
        }
    }
}

impl DisplayAs for KeyJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "KeyJoinExec: on=[({}, {})]", self.on.0, self.on.1)?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p
                .iter()
                .map(|&i| self.join_schema.field(i).name().as_str())
                .collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KeyJoinExec {
    fn name(&self) -> &str {
        "KeyJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    /// Probe rows keep their order. Said only without a projection: pushing a sort through this
    /// node takes its columns to be the build side's, then the probe side's.
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false, self.projection.is_none()]
    }

    /// The build side is read whole, whatever its partitions: splitting it gains nothing.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false, true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    /// `ordered_index` is 1 where the build side was indexed in key order (see [`ordered`]).
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match f(&self.on.0)? {
            TreeNodeRecursion::Stop => Ok(TreeNodeRecursion::Stop),
            _ => f(&self.on.1),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = <[_; 2]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("a key join has two children".into()))?;
        Ok(Arc::new(Self::try_new(
            left,
            right,
            self.on.clone(),
            self.join_schema.clone(),
            self.projection.clone(),
        )?))
    }

    /// Takes in a projection above it that only picks columns under their own names.
    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let current = self.output_columns();
        let mut picked = Vec::with_capacity(projection.expr().len());
        for e in projection.expr() {
            let Some(c) = e.expr.downcast_ref::<Column>() else {
                return Ok(None);
            };
            let Some(&i) = current.get(c.index()) else {
                return Ok(None);
            };
            if c.name() != e.alias || picked.contains(&i) {
                return Ok(None);
            }
            picked.push(i);
        }
        let join = Self::try_new(
            self.left.clone(),
            self.right.clone(),
            self.on.clone(),
            self.join_schema.clone(),
            Some(picked),
        )?;
        Ok(Some(Arc::new(join)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let build = self.build(&context);
        let probe = self.right.execute(partition, context.clone())?;
        let left_columns = self.left.schema().fields().len();
        Ok(Box::pin(ProbeStream {
            schema: self.schema(),
            build: Build::Waiting(build),
            probe,
            key: self.on.1.clone(),
            probe_in_order: self.probe_in_order.clone(),
            early: None,
            columns: self.output_columns(),
            left_columns,
            batch_rows: context.session_config().batch_size().max(1),
            pending: None,
        }))
    }
}

/// No row.
const NONE: u32 = u32::MAX;
/// Eight empty slots' tags.
const EMPTY_GROUP: u64 = 0x8080_8080_8080_8080;
/// Each byte's lowest bit.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

/// The bytes of `group` equal to `tag` (and perhaps some just above one), as their high bits.
fn tag_matches(group: u64, tag: u8) -> u64 {
    let x = group ^ (u64::from(tag) * LOW_BITS);
    x.wrapping_sub(LOW_BITS) & !x & EMPTY_GROUP
}

/// The build side: its batches as they came, and an index of their keys: the hash index below,
/// or, for a probe side in key order and keys that are codes, [`ordered::Ordered`].
struct Table {
    batches: Vec<RecordBatch>,
    rows: Rows,
    /// The keys in order, where they are; the hash index's fields are then empty.
    ordered: Option<ordered::Ordered>,
    /// Whether the key column was read as numbers and let go (see [`ToNumbers`]).
    keys_as_numbers: bool,
    /// Open addressing in groups of eight slots: each slot's tag (7 bits of its key's hash, or
    /// `0x80` when empty), one byte each. A probe for an absent key mostly reads one group.
    /// The groups are split into parts (the query's partitions, up to 16, as a power of two),
    /// built side by side; a key's part is chosen by its hash, and its probe stays within it.
    tags: Vec<u64>,
    /// Each slot's newest row with its key.
    ids: Vec<u32>,
    /// Each part's first group and its number of groups, sized for the rows it holds.
    parts: Vec<(usize, usize)>,
    /// For each row, the previous row with the same key.
    previous: Vec<AtomicU32>,
    /// One bit per row: whether it has a previous row with its key. Most keys are held once,
    /// and this (a bit a row, mostly cached) spares their matches a read of [`Self::previous`]
    /// (four bytes a row, mostly not).
    chained: Vec<AtomicU64>,
    seed: u64,
    _reservations: Vec<MemoryReservation>,
}

/// The build side's keys. A row is named by its batch and its place in it, packed into 32 bits
/// (`row_bits` for the place), so finding its key takes no search.
struct Rows {
    keys: Vec<Keys>,
    row_bits: u32,
    /// Where each batch's rows begin in [`Table::previous`].
    starts: Vec<usize>,
}

impl Rows {
    /// Batch and place within it of row `id`.
    fn locate(&self, id: u32) -> (usize, usize) {
        (
            (id >> self.row_bits) as usize,
            (id & ((1 << self.row_bits) - 1)) as usize,
        )
    }

    /// The key of a row in the index (never null).
    fn key(&self, id: u32) -> &[u8] {
        let (b, i) = self.locate(id);
        self.keys[b].bytes(i)
    }

    fn number(&self, id: u32) -> usize {
        let (b, i) = self.locate(id);
        self.starts[b] + i
    }
}

/// Rows of the batches a build side is cut into when its own batches cannot be numbered.
const REGROUP_ROWS: usize = 1 << 15;
/// Most rows a build side may have, so rows and slots are numbered well inside 32 bits.
const MAX_ROWS: usize = 1 << 30;

/// A build side's key column to be read as numbers of codes (see [`ordered::numbers`]) and let
/// go: where the probe side comes in key order and the column is not returned.
struct ToNumbers {
    column: usize,
    /// The build side's schema with that column's type [`DataType::Null`].
    schema: SchemaRef,
}

impl ToNumbers {
    fn new(schema: &SchemaRef, column: usize) -> Self {
        let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
        fields[column] = Arc::new(Field::new(fields[column].name(), DataType::Null, true));
        Self {
            column,
            schema: Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
        }
    }
}

/// One partition of a build side as read.
struct ReadPart {
    batches: Vec<RecordBatch>,
    /// The key numbers of the first batches, where the key column was let go.
    numbers: Vec<UInt64Array>,
    /// The codes those numbers are of, once a key was seen.
    code: Option<ordered::Code>,
    reservation: MemoryReservation,
}

impl ReadPart {
    /// Keeps `batch`: its key column as numbers while every key so far has been a code.
    fn push(&mut self, batch: RecordBatch, to_numbers: Option<&ToNumbers>) -> Result<()> {
        if let Some(to) = to_numbers
            && self.numbers.len() == self.batches.len()
            && let Some(numbers) =
                ordered::numbers(&mut self.code, &Keys::of(batch.column(to.column).clone())?)
        {
            let held = batch.get_array_memory_size();
            let mut columns = batch.columns().to_vec();
            columns[to.column] = Arc::new(NullArray::new(batch.num_rows()));
            let batch = RecordBatch::try_new(to.schema.clone(), columns)?;
            self.reservation
                .try_grow(batch.get_array_memory_size() + numbers.get_array_memory_size())?;
            self.reservation.shrink(held);
            self.numbers.push(numbers);
            self.batches.push(batch);
            return Ok(());
        }
        self.batches.push(batch);
        Ok(())
    }

    /// Puts the key column back as text into each batch whose keys were made numbers.
    fn restore(&mut self, column: usize, schema: &SchemaRef) -> Result<()> {
        let numbers = std::mem::take(&mut self.numbers);
        let freed = restore(
            &mut self.batches,
            numbers,
            self.code,
            column,
            schema,
            &self.reservation,
        )?;
        self.reservation.shrink(freed);
        Ok(())
    }
}

/// Puts the key column (at `column` of `schema`) back as text into the first batches, from
/// their `numbers` of `code`'s codes, the text reserved from `reservation`. Returns the bytes of
/// the numbers let go.
fn restore(
    batches: &mut [RecordBatch],
    numbers: Vec<UInt64Array>,
    code: Option<ordered::Code>,
    column: usize,
    schema: &SchemaRef,
    reservation: &MemoryReservation,
) -> Result<usize> {
    let key_type = schema.field(column).data_type();
    let mut freed = 0;
    for (batch, numbers) in batches.iter_mut().zip(numbers) {
        let keys = ordered::texts(code, &numbers, key_type)?;
        reservation.try_grow(keys.get_array_memory_size())?;
        freed += numbers.get_array_memory_size();
        let mut columns = batch.columns().to_vec();
        columns[column] = keys;
        *batch = RecordBatch::try_new(schema.clone(), columns)?;
    }
    Ok(freed)
}

/// Reads one partition of a build side. Batches under half of `target` rows are gathered into
/// batches of about `target`: each output batch takes its build columns from every build batch,
/// so a filtered scan's many small batches would each cost every output batch a little.
async fn read_partition(
    mut stream: SendableRecordBatchStream,
    reservation: MemoryReservation,
    target: usize,
    to_numbers: Option<Arc<ToNumbers>>,
) -> Result<ReadPart> {
    let schema = stream.schema();
    let to_numbers = to_numbers.as_deref();
    let (mut small, mut small_rows) = (Vec::new(), 0);
    let mut part = ReadPart {
        batches: Vec::new(),
        numbers: Vec::new(),
        code: None,
        reservation,
    };
    let gather = |small: &mut Vec<RecordBatch>, reservation: &MemoryReservation| {
        let held: usize = small.iter().map(|b| b.get_array_memory_size()).sum();
        let whole = arrow::compute::concat_batches(&schema, small.iter())?;
        reservation.try_grow(whole.get_array_memory_size())?;
        reservation.shrink(held);
        small.clear();
        Ok::<_, DataFusionError>(whole)
    };
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        part.reservation.try_grow(batch.get_array_memory_size())?;
        if batch.num_rows() >= target / 2 {
            part.push(batch, to_numbers)?;
            continue;
        }
        small_rows += batch.num_rows();
        small.push(batch);
        if small_rows >= target {
            let whole = gather(&mut small, &part.reservation)?;
            part.push(whole, to_numbers)?;
            small_rows = 0;
        }
    }
    if !small.is_empty() {
        let whole = gather(&mut small, &part.reservation)?;
        part.push(whole, to_numbers)?;
    }
    Ok(part)
}

impl Table {
    /// Reads every partition of `left` (each on its own task) and indexes the rows by `key`: in
    /// key order where `probe_in_order` says the probe side comes so and the keys allow it.
    /// Then a key column that is not returned (`key_returned` says, by its place) is read as
    /// numbers and let go as each batch comes, so the text of the keys is never all held.
    async fn build(
        left: Arc<dyn ExecutionPlan>,
        key: PhysicalExprRef,
        context: Arc<TaskContext>,
        probe_in_order: &OnceLock<bool>,
        key_returned: impl Fn(usize) -> bool,
    ) -> Result<Self> {
        let partitions = left.output_partitioning().partition_count();
        let target = context.session_config().batch_size().max(1);
        let in_order = probe_in_order.get().copied().unwrap_or(false);
        let schema = left.schema();
        let to_numbers = key
            .downcast_ref::<Column>()
            .map(Column::index)
            .filter(|&c| in_order && !key_returned(c))
            .map(|c| Arc::new(ToNumbers::new(&schema, c)));
        let mut tasks = Vec::with_capacity(partitions);
        for p in 0..partitions {
            let stream = left.execute(p, context.clone())?;
            let reservation =
                MemoryConsumer::new(format!("KeyJoin build[{p}]")).register(context.memory_pool());
            tasks.push(SpawnedTask::spawn(read_partition(
                stream,
                reservation,
                target,
                to_numbers.clone(),
            )));
        }
        let mut parts = Vec::with_capacity(partitions);
        for task in tasks {
            parts.push(
                task.join_unwind()
                    .await
                    .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??,
            );
        }
        // The numbers serve only if every key of every part is a code of one length.
        let mut codes = parts.iter().filter_map(|p| p.code);
        let code = codes.next();
        let all_numbers = to_numbers.is_some()
            && codes.all(|c| Some(c) == code)
            && parts.iter().all(|p| p.numbers.len() == p.batches.len());
        if let Some(to) = &to_numbers
            && !all_numbers
        {
            for part in &mut parts {
                part.restore(to.column, &schema)?;
            }
        }
        let (mut batches, mut numbers, mut reservations) = (Vec::new(), Vec::new(), Vec::new());
        for part in parts {
            batches.extend(part.batches);
            numbers.extend(part.numbers);
            reservations.push(part.reservation);
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows > MAX_ROWS {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "a join's build side has {rows} rows, more than one join may hold"
            )));
        }
        let longest = batches.iter().map(|b| b.num_rows()).max().unwrap_or(1);
        let mut row_bits = usize::BITS - (longest - 1).leading_zeros();
        if (batches.len() as u64) << row_bits >= u64::from(NONE) {
            // Many short batches beside a long one: cut them anew, all alike. The copy is
            // held beside the batches until they are let go.
            let held: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let held = held
                + numbers
                    .iter()
                    .map(|n| n.get_array_memory_size())
                    .sum::<usize>();
            let copy = MemoryConsumer::new("KeyJoin regroup").register(context.memory_pool());
            copy.try_grow(held)?;
            let whole = arrow::compute::concat_batches(&batches[0].schema(), &batches)?;
            batches = (0..rows)
                .step_by(REGROUP_ROWS)
                .map(|at| whole.slice(at, REGROUP_ROWS.min(rows - at)))
                .collect();
            if !numbers.is_empty() {
                let parts: Vec<&dyn Array> = numbers.iter().map(|n| n as &dyn Array).collect();
                let whole = arrow::compute::concat(&parts)?;
                let whole = whole.as_primitive::<UInt64Type>();
                numbers = (0..rows)
                    .step_by(REGROUP_ROWS)
                    .map(|at| whole.slice(at, REGROUP_ROWS.min(rows - at)))
                    .collect();
            }
            drop(copy);
            row_bits = REGROUP_ROWS.trailing_zeros();
        }
        let parts = context
            .session_config()
            .target_partitions()
            .clamp(1, 16)
            .next_power_of_two();
        let mut index = MemoryConsumer::new("KeyJoin index").register(context.memory_pool());
        let mut starts = Vec::with_capacity(batches.len());
        let mut first = 0;
        for b in &batches {
            starts.push(first);
            first += b.num_rows();
        }
        let mut table = Self {
            batches,
            rows: Rows {
                keys: Vec::new(),
                row_bits,
                starts,
            },
            ordered: None,
            keys_as_numbers: false,
            tags: Vec::new(),
            ids: Vec::new(),
            parts: Vec::new(),
            previous: Vec::new(),
            chained: Vec::new(),
            seed: std::collections::hash_map::RandomState::new()
                .hash_one(0x6b65_795f_6a6f_696e_u64),
            _reservations: Vec::new(),
        };
        // Hashing and inserting millions of keys would hold a worker of the query's runtime.
        SpawnedTask::spawn_blocking(move || {
            if let (Some(to), true) = (&to_numbers, all_numbers) {
                if let Some(code) = code {
                    table.ordered =
                        ordered::Ordered::of_numbers(code, &numbers, row_bits, parts, &mut index)?;
                    table.keys_as_numbers = table.ordered.is_some();
                }
                let mut freed = match table.ordered {
                    Some(_) => numbers.iter().map(|n| n.get_array_memory_size()).sum(),
                    // No key, or no room for the ordered index: the hash index needs the text.
                    None => restore(
                        &mut table.batches,
                        std::mem::take(&mut numbers),
                        code,
                        to.column,
                        &schema,
                        &index,
                    )?,
                };
                drop(numbers);
                // The numbers were reserved by the partitions that read them.
                for held in &reservations {
                    let shrink = freed.min(held.size());
                    held.shrink(shrink);
                    freed -= shrink;
                }
            }
            if table.ordered.is_none() {
                table.rows.keys = Self::keys(&table.batches, &key, &mut index)?;
                if in_order && to_numbers.is_none() {
                    table.ordered = ordered::Ordered::build(&table.rows, parts, &mut index)?;
                }
            }
            if table.ordered.is_none() {
                table.index(parts, rows, &mut index)?;
            }
            reservations.push(index);
            table._reservations = reservations;
            Ok(table)
        })
        .join_unwind()
        .await
        .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?
    }

    /// The key of each of `batches`' rows. A key that is not a column is computed into arrays of
    /// its own, held with the index.
    fn keys(
        batches: &[RecordBatch],
        key: &PhysicalExprRef,
        index: &mut MemoryReservation,
    ) -> Result<Vec<Keys>> {
        let computed = key.downcast_ref::<Column>().is_none();
        batches
            .iter()
            .map(|b| {
                let k = key.evaluate(b)?.into_array(b.num_rows())?;
                if computed {
                    index.try_grow(k.get_array_memory_size())?;
                }
                Keys::of(k)
            })
            .collect()
    }

    /// A hash's part, its group and its tag (see [`home_in`]).
    fn home(&self, hash: u64) -> (u8, usize, u8) {
        home_in(&self.parts, hash)
    }

    /// The group after `g` in its part.
    fn next_group(&self, part: u8, g: usize) -> usize {
        let (first, groups) = self.parts[usize::from(part)];
        match g + 1 == first + groups {
            true => first,
            false => g + 1,
        }
    }

    /// Rows of each of `parts` parts (as chosen by their keys' hashes), counted side by side.
    fn count_parts(&self, parts: usize) -> Result<Vec<usize>> {
        let (keys, seed) = (&self.rows.keys, self.seed);
        let share = keys.len().div_ceil(parts).max(1);
        std::thread::scope(|scope| {
            let counting: Vec<_> = keys
                .chunks(share)
                .map(|keys| {
                    scope.spawn(move || {
                        let mut counts = vec![0usize; parts];
                        for k in keys {
                            for i in 0..k.len() {
                                if let Some(key) = k.value(i) {
                                    counts[(hash(seed, key) >> 32) as usize & (parts - 1)] += 1;
                                }
                            }
                        }
                        counts
                    })
                })
                .collect();
            let mut counts = vec![0usize; parts];
            for c in counting {
                let c = c.join().map_err(|_| {
                    DataFusionError::Internal("a key join's counting thread panicked".into())
                })?;
                counts.iter_mut().zip(c).for_each(|(n, m)| *n += m);
            }
            Ok(counts)
        })
    }

    /// Indexes every row, each part on its own thread. Each part is sized for the rows it
    /// holds, at most three quarters full: each keeps an empty slot, so every probe and every
    /// insert ends, however unevenly the keys fall. A key repeated many times is counted as
    /// many times, and makes its own part large, not the others.
    fn index(
        &mut self,
        parts: usize,
        rows: usize,
        reservation: &mut MemoryReservation,
    ) -> Result<()> {
        reservation.try_grow(rows * size_of::<u32>() + rows.div_ceil(64) * size_of::<u64>())?;
        self.previous = (0..rows).map(|_| AtomicU32::new(NONE)).collect();
        self.chained = (0..rows.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        let sizes: Vec<usize> = self
            .count_parts(parts)?
            .into_iter()
            .map(|n| (n + n / 3 + 1).div_ceil(8))
            .collect();
        let groups: usize = sizes.iter().sum();
        if groups.saturating_mul(8) >= NONE as usize {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "a join's build side needs an index of {groups} groups, more than one join may hold"
            )));
        }
        reservation.try_grow(groups * 8 * (1 + size_of::<u32>()))?;
        self.tags = vec![EMPTY_GROUP; groups];
        self.ids = vec![NONE; groups * 8];
        let mut first = 0;
        self.parts = sizes
            .iter()
            .map(|&n| {
                first += n;
                (first - n, n)
            })
            .collect();
        let (rows, seed, spans) = (&self.rows, self.seed, &self.parts);
        let chains = Chains {
            previous: &self.previous,
            chained: &self.chained,
        };
        std::thread::scope(|scope| {
            let (mut tags_left, mut ids_left) = (&mut self.tags[..], &mut self.ids[..]);
            for (p, &n) in sizes.iter().enumerate() {
                let (tags, rest) = std::mem::take(&mut tags_left).split_at_mut(n);
                tags_left = rest;
                let (ids, rest) = std::mem::take(&mut ids_left).split_at_mut(n * 8);
                ids_left = rest;
                let first = spans[p].0;
                scope.spawn(move || {
                    let mut part = Part { tags, ids };
                    let mut chunk = Vec::with_capacity(CHUNK);
                    for (b, keys) in rows.keys.iter().enumerate() {
                        for start in (0..keys.len()).step_by(CHUNK) {
                            let end = (start + CHUNK).min(keys.len());
                            chunk.clear();
                            chunk.extend((start..end).filter_map(|i| {
                                let (q, g, tag) = home_in(spans, hash(seed, keys.value(i)?));
                                (usize::from(q) == p).then(|| (i, g - first, tag))
                            }));
                            // Bring the chunk's groups in together (see `matches`); the inserts
                            // then find them cached.
                            let touched = chunk.iter().fold(0, |t, &(_, g, _)| {
                                t ^ part.tags[g] ^ u64::from(part.ids[g * 8])
                            });
                            std::hint::black_box(touched);
                            for &(i, g, tag) in &chunk {
                                let id = ((b as u32) << rows.row_bits) | i as u32;
                                part.insert(rows, chains, g, tag, id);
                            }
                        }
                    }
                });
            }
        });
        Ok(())
    }

    /// The build row at `at` (from [`Self::matches`], or from this step before it), and where
    /// the next row with its key is, or [`NONE`].
    fn step(&self, at: u32) -> (u32, u32) {
        match &self.ordered {
            Some(ordered) => ordered.step(at),
            None => (at, self.previous(at)),
        }
    }

    /// The row before `id` with its key, or [`NONE`].
    fn previous(&self, id: u32) -> u32 {
        let n = self.rows.number(id);
        match (self.chained[n / 64].load(Ordering::Relaxed) >> (n % 64)) & 1 {
            0 => NONE,
            _ => self.previous[n].load(Ordering::Relaxed),
        }
    }

    /// Each non-null row of `keys` whose key is held, in row order, with where its build rows
    /// begin for [`Self::step`]: in the hash index, the newest build row of its key.
    ///
    /// The work is done in steps over chunks of rows, each step a short loop: hash the keys,
    /// read each row's first group of tags, look for the tag in it, then read the candidates'
    /// rows and keys. A random read from memory takes far longer than the work around it, and
    /// a short loop lets the processor have many reads under way at once, where a loop doing
    /// all the work for one row waits on each in turn.
    fn matches(&self, keys: &Keys) -> Vec<(u32, u32)> {
        if let Some(ordered) = &self.ordered {
            return match keys {
                Keys::Binary(a) => ordered.matches(a),
                Keys::LargeBinary(a) => ordered.matches(a),
                Keys::View(a) => ordered.matches(a),
            };
        }
        match keys {
            Keys::Binary(a) => self.matches_in(a),
            Keys::LargeBinary(a) => self.matches_in(a),
            Keys::View(a) => self.matches_in(a),
        }
    }

    /// [`Self::matches`] for one type of key column, so the loops read its values directly.
    fn matches_in(&self, keys: &impl KeyColumn) -> Vec<(u32, u32)> {
        let nulls = keys.nulls().filter(|n| n.null_count() > 0);
        let mut candidates = Vec::with_capacity(keys.len() / 4);
        let (mut homes, mut groups) = (Vec::with_capacity(CHUNK), Vec::with_capacity(CHUNK));
        for start in (0..keys.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(keys.len());
            homes.clear();
            // A null matches nothing: its row gets the first group and is passed over below.
            homes.extend(
                (start..end).map(|row| match nulls.is_some_and(|n| n.is_null(row)) {
                    true => (0, 0, 0),
                    false => self.home(hash(self.seed, keys.bytes(row))),
                }),
            );
            groups.clear();
            groups.extend(homes.iter().map(|&(_, g, _)| self.tags[g]));
            for ((row, &(part, mut g, tag)), &first) in (start..end).zip(&homes).zip(&groups) {
                if nulls.is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                let mut group = first;
                loop {
                    let mut matches = tag_matches(group, tag);
                    while matches != 0 {
                        let slot = g * 8 + (matches.trailing_zeros() / 8) as usize;
                        matches &= matches - 1;
                        candidates.push((row as u32, slot as u32));
                    }
                    if group & EMPTY_GROUP != 0 {
                        break;
                    }
                    g = self.next_group(part, g);
                    group = self.tags[g];
                }
            }
        }
        for c in &mut candidates {
            c.1 = self.ids[c.1 as usize];
        }
        let touched = candidates.iter().fold(0u8, |t, &(_, id)| {
            t ^ self.rows.key(id).first().copied().unwrap_or_default()
        });
        std::hint::black_box(touched);
        candidates.retain(|&(row, id)| same(self.rows.key(id), keys.bytes(row as usize)));
        candidates
    }
}

/// A hash's part (chosen by its high half), its group (the part's first group plus its place
/// in the part, scaled from its low 32 bits) and its tag (its top 7 bits), in an index of
/// `parts` (each part's first group and number of groups).
fn home_in(parts: &[(usize, usize)], hash: u64) -> (u8, usize, u8) {
    let part = (hash >> 32) as usize & (parts.len() - 1);
    let (first, groups) = parts[part];
    (
        part as u8,
        first + (((hash & 0xffff_ffff) * groups as u64) >> 32) as usize,
        (hash >> 57) as u8,
    )
}

/// Where an insert records a row's previous row with the same key.
#[derive(Clone, Copy)]
struct Chains<'a> {
    previous: &'a [AtomicU32],
    chained: &'a [AtomicU64],
}

impl Chains<'_> {
    /// Records that row number `n` follows row `id` with the same key.
    fn link(&self, n: usize, id: u32) {
        self.previous[n].store(id, Ordering::Relaxed);
        self.chained[n / 64].fetch_or(1 << (n % 64), Ordering::Relaxed);
    }
}

/// One part of a table's groups, being built.
struct Part<'a> {
    tags: &'a mut [u64],
    ids: &'a mut [u32],
}

impl Part<'_> {
    /// Puts row `id` in the index, from the part's group `g`.
    fn insert(&mut self, rows: &Rows, chains: Chains, mut g: usize, tag: u8, id: u32) {
        let key = rows.key(id);
        loop {
            let group = self.tags[g];
            let mut matches = tag_matches(group, tag);
            while matches != 0 {
                let slot = g * 8 + (matches.trailing_zeros() / 8) as usize;
                matches &= matches - 1;
                if same(rows.key(self.ids[slot]), key) {
                    chains.link(rows.number(id), self.ids[slot]);
                    self.ids[slot] = id;
                    return;
                }
            }
            let empty = group & EMPTY_GROUP;
            if empty != 0 {
                let byte = empty.trailing_zeros() / 8;
                self.tags[g] = group & !(0xff << (byte * 8)) | u64::from(tag) << (byte * 8);
                self.ids[g * 8 + byte as usize] = id;
                return;
            }
            g = (g + 1) % self.tags.len();
        }
    }
}

/// Whether two keys are equal, compared eight bytes at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    (&mut x).zip(&mut y).all(|(p, q)| word(p) == word(q))
        && x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// Rows handled at a time by each step of building and probing.
const CHUNK: usize = 512;

/// A key column's values as bytes, read with no check of the column's type per value.
trait KeyColumn: Array {
    /// The bytes at `i`, whether or not it is null.
    fn bytes(&self, i: usize) -> &[u8];
}

impl<O: OffsetSizeTrait> KeyColumn for GenericBinaryArray<O> {
    #[inline]
    fn bytes(&self, i: usize) -> &[u8] {
        self.value(i)
    }
}

impl KeyColumn for BinaryViewArray {
    #[inline]
    fn bytes(&self, i: usize) -> &[u8] {
        self.value(i)
    }
}

/// A key column, text taken as its bytes (its buffers shared, not copied).
enum Keys {
    Binary(BinaryArray),
    LargeBinary(LargeBinaryArray),
    View(BinaryViewArray),
}

impl Keys {
    fn of(array: ArrayRef) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => Self::Binary(array.as_string::<i32>().clone().into()),
            DataType::LargeUtf8 => Self::LargeBinary(array.as_string::<i64>().clone().into()),
            DataType::Utf8View => Self::View(array.as_string_view().clone().to_binary_view()),
            DataType::Binary => Self::Binary(array.as_binary::<i32>().clone()),
            DataType::LargeBinary => Self::LargeBinary(array.as_binary::<i64>().clone()),
            DataType::BinaryView => Self::View(array.as_binary_view().clone()),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "a key join cannot compare keys of type {other}"
                )));
            }
        })
    }

    fn column(&self) -> &dyn Array {
        match self {
            Self::Binary(a) => a,
            Self::LargeBinary(a) => a,
            Self::View(a) => a,
        }
    }

    fn len(&self) -> usize {
        self.column().len()
    }

    /// The value at `i` as bytes; `None` for a null, which matches nothing.
    #[inline]
    fn value(&self, i: usize) -> Option<&[u8]> {
        match self.column().is_null(i) {
            true => None,
            false => Some(self.bytes(i)),
        }
    }

    /// The bytes at `i`, whether or not it is null.
    #[inline]
    fn bytes(&self, i: usize) -> &[u8] {
        match self {
            Self::Binary(a) => a.value(i),
            Self::LargeBinary(a) => a.value(i),
            Self::View(a) => a.value(i),
        }
    }
}

/// The high and low halves of a 128-bit product, folded.
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A 64-bit hash of `key`, keyed by `seed` (a fresh one each join, so no table's data can be
/// chosen to collide).
fn hash(seed: u64, key: &[u8]) -> u64 {
    const K: [u64; 3] = [
        0x9e37_79b9_7f4a_7c15,
        0xbf58_476d_1ce4_e5b9,
        0x94d0_49bb_1331_11eb,
    ];
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    let mut h = seed ^ (key.len() as u64).wrapping_mul(K[0]);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        h = fold(h ^ word(c), K[1]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // The last eight bytes, overlapping the word before: keys of one length (which the
        // hash already holds) have their bytes in the same places.
        let last = match key.len() >= 8 {
            true => word(&key[key.len() - 8..]),
            false => {
                let mut last = [0u8; 8];
                last[..rest.len()].copy_from_slice(rest);
                u64::from_le_bytes(last)
            }
        };
        h = fold(h ^ last, K[1]);
    }
    fold(h ^ K[2], K[2] ^ seed)
}

enum Build {
    Waiting(SharedBuild),
    Ready(Arc<Table>),
}

/// A probe batch being matched, and how far.
struct Pending {
    batch: RecordBatch,
    /// Its matched rows, each with where its build rows begin ([`Table::matches`]).
    matched: Vec<(u32, u32)>,
    /// The next of `matched` to give out.
    at: usize,
    /// Where the next build row for `matched[at]` is, or [`NONE`] to begin with its first.
    next: u32,
}

/// One partition of the probe side, matched against the shared build side.
struct ProbeStream {
    schema: SchemaRef,
    build: Build,
    probe: SendableRecordBatchStream,
    key: PhysicalExprRef,
    /// Set from the first probe batch read by any partition, before the build side is read.
    probe_in_order: Arc<OnceLock<bool>>,
    /// A probe batch read to set `probe_in_order`, to be matched once the build side is ready.
    early: Option<RecordBatch>,
    columns: Vec<usize>,
    left_columns: usize,
    batch_rows: usize,
    pending: Option<Pending>,
}

impl ProbeStream {
    fn pending(&self, batch: RecordBatch, table: &Table) -> Result<Pending> {
        let keys = Keys::of(self.key.evaluate(&batch)?.into_array(batch.num_rows())?)?;
        Ok(Pending {
            matched: table.matches(&keys),
            batch,
            at: 0,
            next: NONE,
        })
    }

    /// Up to one output batch of `p`'s matches; `None` when it has no more.
    fn output(&self, p: &mut Pending, table: &Table) -> Result<Option<RecordBatch>> {
        let (mut build, mut probe) = (Vec::new(), Vec::new());
        let build_columns = self.columns.iter().any(|&c| c < self.left_columns);
        while p.at < p.matched.len() && probe.len() < self.batch_rows {
            let (row, first) = p.matched[p.at];
            let (id, next) = table.step(if p.next == NONE { first } else { p.next });
            if build_columns {
                build.push(table.rows.locate(id));
            }
            probe.push(row);
            p.next = next;
            if p.next == NONE {
                p.at += 1;
            }
        }
        if probe.is_empty() {
            return Ok(None);
        }
        let probe = UInt32Array::from(probe);
        let mut columns = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            let column = match c.checked_sub(self.left_columns) {
                Some(r) => take(p.batch.column(r), &probe, None)?,
                None => {
                    let sources: Vec<&dyn Array> =
                        table.batches.iter().map(|b| b.column(c).as_ref()).collect();
                    interleave(&sources, &build)?
                }
            };
            columns.push(column);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(probe.len()));
        Ok(Some(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?))
    }
}

impl Stream for ProbeStream {
    type Item = Result<RecordBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let table = match &mut this.build {
            Build::Ready(table) => table.clone(),
            Build::Waiting(build) => {
                // The build side's index waits for the probe side's first batch, which tells
                // whether it comes in key order. A probe side with no rows needs no build side.
                if this.probe_in_order.get().is_none() && this.early.is_none() {
                    match ready!(this.probe.poll_next_unpin(cx)) {
                        None => return Poll::Ready(None),
                        Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Some(Ok(batch)) => {
                            let keys = this.key.evaluate(&batch)?.into_array(batch.num_rows());
                            let in_order = ordered::in_key_order(&Keys::of(keys?)?);
                            let _ = this.probe_in_order.set(in_order);
                            this.early = Some(batch);
                        }
                    }
                }
                match ready!(build.poll_unpin(cx)) {
                    Ok(table) => {
                        this.build = Build::Ready(table.clone());
                        table
                    }
                    Err(e) => return Poll::Ready(Some(Err(DataFusionError::Shared(e)))),
                }
            }
        };
        if table.batches.is_empty() {
            return Poll::Ready(None);
        }
        if let Some(batch) = this.early.take() {
            match this.pending(batch, &table) {
                Ok(p) => this.pending = Some(p),
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        loop {
            if let Some(mut p) = this.pending.take() {
                match this.output(&mut p, &table) {
                    Ok(Some(batch)) => {
                        this.pending = Some(p);
                        return Poll::Ready(Some(Ok(batch)));
                    }
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            match ready!(this.probe.poll_next_unpin(cx)) {
                None => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                Some(Ok(batch)) => match this.pending(batch, &table) {
                    Ok(p) => this.pending = Some(p),
                    Err(e) => return Poll::Ready(Some(Err(e))),
                },
            }
        }
    }
}

impl RecordBatchStream for ProbeStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::display::array_value_to_string;
    use datafusion::datasource::MemTable;
    use datafusion::execution::memory_pool::FairSpillPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// A small generator, so each case's data are the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// A key from a domain of `domain` values: short ones, ones longer than a view holds, the
    /// empty string, and nulls.
    fn key(rng: &mut Lcg, domain: u64) -> Option<String> {
        match rng.below(domain + 2) {
            0 => None,
            1 => Some(String::new()),
            k if k % 3 == 0 => Some(format!("44060519{k:010}")),
            k => Some(format!("k{k}")),
        }
    }

    /// `partitions` partitions of `batches` batches of up to `rows` rows: (k, `value`).
    fn table(
        rng: &mut Lcg,
        value: &str,
        view: bool,
        domain: u64,
        (partitions, batches, rows): (usize, usize, usize),
    ) -> MemTable {
        let key_type = if view {
            DataType::Utf8View
        } else {
            DataType::Utf8
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", key_type.clone(), true),
            Field::new(value, DataType::Int64, false),
        ]));
        let mut n = 0i64;
        let data = (0..partitions)
            .map(|_| {
                (0..batches)
                    .map(|_| {
                        let len = 1 + rng.below(rows as u64) as usize;
                        let keys: StringArray = (0..len).map(|_| key(rng, domain)).collect();
                        let keys = arrow::compute::cast(&keys, &key_type).expect("cast");
                        let values: Int64Array = (0..len as i64).map(|i| n + i).collect();
                        n += len as i64;
                        RecordBatch::try_new(schema.clone(), vec![keys, Arc::new(values)])
                            .expect("batch")
                    })
                    .collect()
            })
            .collect();
        MemTable::try_new(schema, data).expect("table")
    }

    fn config() -> SessionConfig {
        SessionConfig::new()
            .with_target_partitions(3)
            .with_batch_size(16)
    }

    fn context(key_join: bool, pool: Option<usize>) -> SessionContext {
        context_with(config(), key_join, pool)
    }

    fn context_with(config: SessionConfig, key_join: bool, pool: Option<usize>) -> SessionContext {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = pool {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(bytes)));
        }
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc().expect("runtime"))
            .with_default_features();
        if key_join {
            state = state.with_physical_optimizer_rules(optimizer_rules());
        }
        SessionContext::new_with_state(state.build())
    }

    /// The plan's text, and its rows as text, sorted.
    async fn run(ctx: &SessionContext, sql: &str) -> Result<(String, Vec<String>)> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let text = displayable(plan.as_ref()).indent(true).to_string();
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
        Ok((text, sorted_rows(&batches)))
    }

    /// Each row of `batches` as text, its values joined by `|`, sorted.
    fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let row: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, r).expect("value"))
                    .collect();
                rows.push(row.join("|"));
            }
        }
        rows.sort();
        rows
    }

    fn register(
        ctx: &SessionContext,
        seed: u64,
        view: [bool; 2],
        domain: u64,
        shape: [(usize, usize, usize); 2],
    ) {
        let mut rng = Lcg(seed);
        let l = table(&mut rng, "v", view[0], domain, shape[0]);
        let r = table(&mut rng, "w", view[1], domain, shape[1]);
        ctx.register_table("l", Arc::new(l)).expect("l");
        ctx.register_table("r", Arc::new(r)).expect("r");
    }

    const QUERIES: [&str; 5] = [
        "SELECT l.k, l.v, r.k, r.w FROM l JOIN r ON l.k = r.k",
        "SELECT r.w FROM l JOIN r ON l.k = r.k",
        "SELECT r.k, count(*), sum(l.v) FROM l JOIN r ON r.k = l.k GROUP BY r.k",
        "SELECT l.v AS a, r.w AS b FROM l JOIN r USING (k) WHERE r.w % 2 = 0",
        // The probe side comes hash-partitioned by the key, which the grouping above relies on
        // after the join takes in a projection.
        "SELECT x.k, count(*), max(x.m) FROM l JOIN (SELECT k, max(w) AS m FROM r GROUP BY k) x \
         ON l.k = x.k GROUP BY x.k",
    ];

    /// Same rows as DataFusion's hash join, over keys repeated on both sides (so a probe row
    /// matches several build rows and an output batch is cut mid-row), nulls, empty strings,
    /// plain strings and views, several partitions on each side, either side larger.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gives_the_hash_joins_rows() {
        let cases = [
            (1, [false, false], 20, [(2, 3, 40), (3, 4, 50)]),
            (2, [true, false], 60, [(1, 5, 30), (2, 2, 60)]),
            (3, [false, true], 5, [(3, 2, 20), (1, 6, 40)]),
            (4, [true, true], 400, [(2, 8, 60), (2, 1, 5)]),
        ];
        let mut matched = 0;
        for (seed, view, domain, shape) in cases {
            let (key_join, hash_join) = (context(true, None), context(false, None));
            register(&key_join, seed, view, domain, shape);
            register(&hash_join, seed, view, domain, shape);
            for sql in QUERIES {
                let (plan, rows) = run(&key_join, sql).await.expect("key join");
                let (reference_plan, reference) = run(&hash_join, sql).await.expect("hash join");
                assert!(plan.contains("KeyJoinExec"), "{sql}:\n{plan}");
                assert!(!plan.contains("HashJoinExec"), "{sql}:\n{plan}");
                assert!(reference_plan.contains("HashJoinExec"), "{reference_plan}");
                assert_eq!(rows, reference, "seed {seed}: {sql}\n{plan}");
                matched += rows.len();
            }
        }
        assert!(matched > 1000, "the cases match rows: {matched}");
    }

    /// Joins of other shapes are left to DataFusion's hash join, and still answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leaves_other_joins_to_the_hash_join() {
        let ctx = context(true, None);
        register(&ctx, 5, [false, false], 20, [(2, 3, 30), (2, 3, 30)]);
        for sql in [
            "SELECT l.v, r.w FROM l LEFT JOIN r ON l.k = r.k",
            "SELECT l.v, r.w FROM l JOIN r ON l.k = r.k AND l.v = r.w",
            "SELECT l.v, r.w FROM l JOIN r ON l.k = r.k AND l.v < r.w",
            "SELECT l.v, r.w FROM l JOIN r ON l.v = r.w",
        ] {
            let (plan, _) = run(&ctx, sql).await.expect(sql);
            assert!(plan.contains("HashJoinExec"), "{sql}:\n{plan}");
            assert!(!plan.contains("KeyJoinExec"), "{sql}:\n{plan}");
        }
    }

    /// The probe side keeps its partitions: no repartitioning is planned under the key join.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn repartitions_neither_side() {
        let ctx = context(true, None);
        register(&ctx, 6, [false, false], 20, [(3, 3, 30), (3, 3, 30)]);
        let (plan, _) = run(&ctx, QUERIES[0]).await.expect("join");
        let join = plan
            .lines()
            .position(|l| l.contains("KeyJoinExec"))
            .expect("key join");
        let below = plan.lines().skip(join + 1).collect::<Vec<_>>().join("\n");
        assert!(!below.contains("RepartitionExec"), "{plan}");
    }

    /// An empty build side, or one whose keys are all null, matches nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_or_null_build_side_matches_nothing() {
        let ctx = context(true, None);
        register(&ctx, 7, [false, false], 20, [(2, 3, 30), (2, 3, 30)]);
        for sql in [
            "SELECT r.w FROM (SELECT * FROM l WHERE v < 0) e JOIN r ON e.k = r.k",
            "SELECT r.w FROM (SELECT * FROM l WHERE k IS NULL) e JOIN r ON e.k = r.k",
        ] {
            let (plan, rows) = run(&ctx, sql).await.expect(sql);
            assert!(plan.contains("KeyJoinExec"), "{plan}");
            assert!(rows.is_empty(), "{sql}: {rows:?}");
        }
    }

    /// Runs `f` on a runtime of its own, failing if it has not finished in a minute: a probe
    /// or insert that found no empty slot would spin for good.
    fn within_a_minute<T: Send + 'static>(
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let _ = tx.send(runtime.block_on(f));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("finished within a minute")
    }

    /// A one-column table `k` of the keys `44060519{i:010}` for `i` in `ids`, in one batch.
    fn id_table(ids: impl Iterator<Item = usize>) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let keys: StringArray = ids.map(|i| Some(format!("44060519{i:010}"))).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys)]).expect("batch");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))
    }

    /// The rows of `l JOIN r ON l.k = r.k`, counted, through the key join.
    async fn count_joined(
        partitions: usize,
        build: Arc<MemTable>,
        probe: Arc<MemTable>,
    ) -> Result<Vec<String>> {
        let config = config().with_target_partitions(partitions);
        let ctx = context_with(config, true, None);
        ctx.register_table("l", build)?;
        ctx.register_table("r", probe)?;
        let (plan, rows) = run(&ctx, "SELECT count(*) FROM l JOIN r ON l.k = r.k").await?;
        assert!(plan.contains("KeyJoinExec"), "{plan}");
        Ok(rows)
    }

    /// A build side filling its index to the most it may (three quarters: 1,535 keys in one
    /// part of 2,048 slots), so probes for absent keys run on past full groups and wrap around.
    #[test]
    fn a_full_index_still_finds_every_key() {
        let rows = within_a_minute(count_joined(
            1,
            id_table(0..1_535),
            id_table((0..6_000).map(|i| i * 7 % 6_000)),
        ))
        .expect("join");
        assert_eq!(rows, ["1535"]);
    }

    /// Small build sides of distinct keys over many parts: keys fall unevenly among the parts,
    /// and each part still keeps an empty slot. (Sized as a whole, such a table left some part
    /// full most of the time, and a probe or insert there never ended.) The probe side comes in
    /// falling key order, so the hash index serves it.
    #[test]
    fn small_build_sides_over_many_parts_find_every_key() {
        for (partitions, keys) in [(16, 90), (16, 190), (8, 40), (2, 11), (16, 1), (4, 0)] {
            let rows = within_a_minute(count_joined(
                partitions,
                id_table(0..keys),
                id_table((0..400).rev()),
            ))
            .expect("join");
            assert_eq!(
                rows,
                [keys.to_string()],
                "{keys} keys in {partitions} parts"
            );
        }
    }

    /// One key repeated many times makes its own part of the index large, not every part:
    /// 20,000 rows of one key beside 99 others, in 16 parts, fit a 2 MiB pool. (Sized for the
    /// fullest part, the index alone took 16 parts of 32,768 slots, 2.6 MB, and the query
    /// failed as out of memory.) The probe side is the larger, so these rows are the build side;
    /// it comes in falling key order, so the hash index serves it.
    #[test]
    fn a_frequent_key_sizes_its_own_part_only() {
        let rows = within_a_minute(async {
            let config = config().with_target_partitions(16).with_batch_size(1 << 15);
            let ctx = context_with(config, true, Some(2 << 20));
            ctx.register_table("l", id_table((0..20_000).map(|_| 0).chain(1..100)))?;
            ctx.register_table("r", id_table((0..40_000).rev()))?;
            let (plan, rows) = run(&ctx, "SELECT count(*) FROM l JOIN r ON l.k = r.k").await?;
            assert!(plan.contains("KeyJoinExec"), "{plan}");
            Ok::<_, DataFusionError>(rows)
        })
        .expect("join within the pool");
        assert_eq!(rows, ["20099"]);
    }

    /// The rule is placed after DataFusion's join selection, found by name: a rename would
    /// otherwise put it where join sides are not yet chosen.
    #[test]
    fn join_selection_is_found_by_name() {
        let rules = optimizer_rules();
        let names: Vec<&str> = rules.iter().map(|r| r.name()).collect();
        let at = names
            .iter()
            .position(|n| *n == "key_join")
            .expect("the key join rule");
        assert_eq!(
            names.get(at.wrapping_sub(1)),
            Some(&"join_selection"),
            "{names:?}"
        );
    }

    /// A build side larger than the query's pool fails the query as out of memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_side_over_the_pool_fails_cleanly() {
        let ctx = context(true, Some(64 << 10));
        register(&ctx, 8, [false, false], 5_000, [(2, 40, 500), (2, 4, 500)]);
        let e = run(&ctx, QUERIES[1]).await.expect_err("over the pool");
        assert!(
            matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{e}"
        );
        assert!(e.to_string().contains("KeyJoin"), "the join ran out: {e}");
    }

    /// A pool that holds the ordered index beside the build keys as numbers, but not beside
    /// their text (nor the hash index beside it), still runs the join: the text is let go as
    /// each batch is read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn build_keys_let_go_as_numbers_fit_a_pool_their_text_does_not() {
        let batches = |keys: Vec<Option<String>>, rows: usize| -> Vec<Vec<Option<String>>> {
            keys.chunks(rows).map(<[_]>::to_vec).collect()
        };
        let build = batches(
            (0..200_000).map(|i| Some(id_number(i * 2))).collect(),
            8_192,
        );
        let probe = batches((0..400_000).map(|n| Some(id_number(n))).collect(), 4_096);
        let ctx = context_with(
            config().with_batch_size(4_096).with_target_partitions(2),
            true,
            Some(POOL),
        );
        ctx.register_table("l", keyed("v", vec![build])).expect("l");
        ctx.register_table("r", keyed("w", vec![probe])).expect("r");
        let (rows, ordered, let_go) = run_ordered(&ctx, QUERIES[1]).await.expect("key join");
        assert_eq!((rows.len(), ordered, let_go), (200_000, 1, 1));
    }

    /// The pool of [`build_keys_let_go_as_numbers_fit_a_pool_their_text_does_not`]: 200,000
    /// ID numbers read as text take more than this alone; as numbers 1.6 MB, and 3.2 MB in the
    /// ordered index.
    const POOL: usize = 6 << 20;

    /// An ID number made from `n`, its check character one of three.
    fn id_number(n: u64) -> String {
        format!(
            "{:017}{}",
            44_060_519_000_000_000 + n * 13,
            ["0", "X", "7"][n as usize % 3]
        )
    }

    /// A table (k, `value`) of `partitions` of batches of keys, a null for `None`.
    fn keyed(value: &str, partitions: Vec<Vec<Vec<Option<String>>>>) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new(value, DataType::Int64, false),
        ]));
        let mut n = 0;
        let mut batch = |keys: Vec<Option<String>>| {
            let values: Int64Array = (n..n + keys.len() as i64).collect();
            n += keys.len() as i64;
            let keys: StringArray = keys.into_iter().collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)])
                .expect("batch")
        };
        let partitions = partitions
            .into_iter()
            .map(|batches| batches.into_iter().map(&mut batch).collect())
            .collect();
        Arc::new(MemTable::try_new(schema, partitions).expect("table"))
    }

    /// The join's rows (as [`run`] gives them), whether its build side was indexed in key
    /// order, and whether its key column was let go as numbers.
    async fn run_ordered(ctx: &SessionContext, sql: &str) -> Result<(Vec<String>, usize, usize)> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx()).await?;
        let rows = sorted_rows(&batches);
        let mut metrics = None;
        plan.apply(|node| {
            if node.name() == "KeyJoinExec" {
                metrics = node.metrics();
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let metrics = metrics.expect("a key join with its metrics");
        let count = |name| metrics.sum_by_name(name).map_or(0, |m| m.as_usize());
        Ok((rows, count("ordered_index"), count("keys_as_numbers")))
    }

    /// A probe side whose batches come in key order, over a build side of ID numbers, is
    /// walked through the build side's keys in order, with the hash join's rows: keys repeated
    /// on both sides, nulls, a probe key that is not an ID number, a later batch out of order
    /// and keys the build side lacks. A build key column that is not returned is read as
    /// numbers and let go, batch by batch, in one partition or several. The same join with its
    /// first probe batch shuffled, or with one build key that is not an ID number (read before
    /// or after other keys were made numbers, in its partition or another) or keys of two
    /// lengths, uses the hash index, with the same rows; so does a build side of nulls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_side_in_key_order_walks_the_build_keys_in_order() {
        let build: Vec<Option<String>> = (0..900u64)
            .map(|i| (i % 50 != 7).then(|| id_number(i * 7 % 1_200)))
            .collect();
        let probe = |first: u64| -> Vec<Option<String>> {
            let mut keys = vec![Some("4406".to_owned())];
            keys.extend((first..first + 700).map(|n| (n % 40 != 3).then(|| id_number(n / 2))));
            keys
        };
        let mut late = probe(1_400);
        late.reverse();
        let shuffled = |first: u64| {
            let mut keys = probe(first);
            keys.swap(10, 500);
            keys
        };
        let in_order = vec![vec![probe(0)], vec![probe(700), late.clone()]];
        // The build side cut into batches: long ones kept, short ones gathered.
        let (quarters, halves) = (
            build.chunks(225).map(<[_]>::to_vec).collect::<Vec<_>>(),
            build.chunks(450).map(<[_]>::to_vec).collect::<Vec<_>>(),
        );
        let phones: Vec<Option<String>> = (0..300u64)
            .map(|i| Some(format!("{}", 13_800_000_000 + i)))
            .collect();
        let not_a_code = vec![Some("k1".to_owned())];
        // Whichever partition is read first decides, so each begins alike.
        let cases = [
            (vec![vec![build.clone()]], in_order.clone(), 1),
            (
                vec![vec![build.clone()]],
                vec![vec![shuffled(0)], vec![shuffled(700), late.clone()]],
                0,
            ),
            (
                vec![vec![[build.clone(), not_a_code.clone()].concat()]],
                in_order.clone(),
                0,
            ),
            // Keys made numbers batch by batch in two partitions.
            (
                vec![quarters[..2].to_vec(), quarters[2..].to_vec()],
                in_order.clone(),
                1,
            ),
            // A key that is not a code after keys already made numbers: their text is put
            // back for the hash index, in the same partition or in another.
            (
                vec![vec![
                    halves[0].clone(),
                    [halves[1].clone(), not_a_code].concat(),
                ]],
                in_order.clone(),
                0,
            ),
            (vec![halves.clone(), vec![phones]], in_order.clone(), 0),
        ];
        for (case, (build, probe, expected)) in cases.into_iter().enumerate() {
            let (key_join, hash_join) = (
                // Batches long enough to show their order (the usual 16 rows are not), and as
                // many partitions as the probe side has, so its batches are not dealt anew.
                context_with(
                    config().with_batch_size(512).with_target_partitions(2),
                    true,
                    None,
                ),
                context(false, None),
            );
            for ctx in [&key_join, &hash_join] {
                ctx.register_table("l", keyed("v", build.clone()))
                    .expect("l");
                ctx.register_table("r", keyed("w", probe.clone()))
                    .expect("r");
            }
            let mut matched = 0;
            for (q, sql) in QUERIES[..3].iter().enumerate() {
                let (rows, ordered, let_go) = run_ordered(&key_join, sql).await.expect("key join");
                let (_, reference) = run(&hash_join, sql).await.expect("hash join");
                assert_eq!(rows, reference, "case {case}: {sql}");
                assert_eq!(ordered, expected, "case {case}: {sql}");
                // The first query returns the build side's key; the others do not.
                let numbers = usize::from(q > 0) * expected;
                assert_eq!(let_go, numbers, "case {case}: {sql}");
                matched += rows.len();
            }
            assert!(matched > 1_000, "case {case} matches rows: {matched}");
        }
        // A build side of nulls alone, its keys made numbers of no code, matches nothing.
        let ctx = context_with(
            config().with_batch_size(512).with_target_partitions(2),
            true,
            None,
        );
        ctx.register_table("l", keyed("v", vec![vec![vec![None; 600]]]))
            .expect("l");
        ctx.register_table("r", keyed("w", in_order)).expect("r");
        let (rows, ordered, let_go) = run_ordered(&ctx, QUERIES[1]).await.expect("key join");
        assert_eq!((rows.len(), ordered, let_go), (0, 0, 0));
    }

    /// Equal keys hash alike under one seed; the hash spreads keys that differ in one byte.
    #[test]
    fn hash_is_keyed_and_spreads_near_keys() {
        let a = hash(1, b"440605199001011234");
        assert_eq!(a, hash(1, b"440605199001011234"));
        assert_ne!(a, hash(2, b"440605199001011234"));
        let mut low = std::collections::HashSet::new();
        let mut high = std::collections::HashSet::new();
        for i in 0..10_000u32 {
            let h = hash(9, format!("44060519900101{i:04}").as_bytes());
            low.insert(h & 0xffff);
            high.insert(h >> 48);
        }
        // 10,000 draws from 65,536 values leave about 9,280 distinct.
        assert!(
            low.len() > 9_000 && high.len() > 9_000,
            "{} {}",
            low.len(),
            high.len()
        );
        assert_ne!(hash(3, b""), hash(3, b"\0"));
    }
}
