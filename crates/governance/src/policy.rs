//! A grant compiled into the one policy object every data path applies: row filter first, then
//! the granted columns with their masks. Paths differ in how they find rows, never in what a
//! consumer may see of them.

use crate::mask::mask_array;
use crate::model::{Grant, GrantTerms, Mode};
use crate::{Error, Result};
use arrow::array::{ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use citybrain_catalog::TableManifest;
use datafusion::common::DFSchema;
use datafusion::logical_expr::ExprSchemable;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::prelude::SessionContext;
use std::sync::Arc;

/// The Arrow schema of a catalog table, in catalog column order.
pub fn table_schema(m: &TableManifest) -> SchemaRef {
    use citybrain_types::DataType as T;
    Arc::new(Schema::new(
        m.columns
            .iter()
            .map(|c| {
                let t = match c.data_type {
                    T::String => DataType::Utf8,
                    T::Int64 => DataType::Int64,
                    T::Int32 => DataType::Int32,
                    T::Float64 => DataType::Float64,
                    T::Bool => DataType::Boolean,
                    T::Date => DataType::Date32,
                };
                Field::new(&c.name, t, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Parses a row filter against a table's schema: unknown columns, bad syntax and non-boolean
/// expressions are refused here, when the grant is made.
pub fn compile_filter(sql: &str, schema: &SchemaRef) -> Result<Arc<dyn PhysicalExpr>> {
    let bad = |reason: String| Error::Invalid {
        field: "row_filter".into(),
        reason,
    };
    let df_schema = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| bad(e.to_string()))?;
    let ctx = SessionContext::new();
    let expr = ctx
        .parse_sql_expr(sql, &df_schema)
        .map_err(|e| bad(first_line(&e.to_string())))?;
    let ty = expr
        .get_type(&df_schema)
        .map_err(|e| bad(first_line(&e.to_string())))?;
    if ty != DataType::Boolean {
        return Err(bad(format!("must be a condition (boolean), not {ty}")));
    }
    ctx.create_physical_expr(expr, &df_schema)
        .map_err(|e| bad(first_line(&e.to_string())))
}

/// Comparisons that cannot fail on values of the same type.
pub fn compares_without_failing(op: &datafusion::logical_expr::Operator) -> bool {
    use datafusion::logical_expr::Operator as Op;
    matches!(
        op,
        Op::Eq
            | Op::NotEq
            | Op::Lt
            | Op::LtEq
            | Op::Gt
            | Op::GtEq
            | Op::IsDistinctFrom
            | Op::IsNotDistinctFrom
    )
}

/// See [`Policy::row_filter_cannot_fail`]. The compiled expression carries the casts type
/// coercion added, so a column cast to another type (which can fail) is seen here.
fn cannot_fail(e: &Arc<dyn PhysicalExpr>) -> bool {
    use datafusion::logical_expr::Operator as Op;
    use datafusion::physical_expr::expressions::{
        BinaryExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr, Literal,
        NotExpr, TryCastExpr,
    };
    let literal = |e: &Arc<dyn PhysicalExpr>| {
        e.is::<Literal>()
            || (e.is::<CastExpr>() || e.is::<TryCastExpr>())
                && e.children().iter().all(|c| c.is::<Literal>())
    };
    if e.is::<Column>() || literal(e) {
        return true;
    }
    if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        return (matches!(b.op(), Op::And | Op::Or) || compares_without_failing(b.op()))
            && cannot_fail(b.left())
            && cannot_fail(b.right());
    }
    if let Some(l) = e.downcast_ref::<LikeExpr>() {
        return cannot_fail(l.expr()) && literal(l.pattern());
    }
    if e.is::<NotExpr>() || e.is::<IsNullExpr>() || e.is::<IsNotNullExpr>() || e.is::<InListExpr>()
    {
        return e.children().into_iter().all(cannot_fail);
    }
    false
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// A grant ready to apply.
pub struct Policy {
    /// The grant.
    pub grant: Grant,
    table: SchemaRef,
    filter: Option<Arc<dyn PhysicalExpr>>,
    /// Indices of granted columns in the table schema.
    indices: Vec<usize>,
    /// See [`Policy::columns_read`].
    read: Vec<usize>,
    output: SchemaRef,
    hash_key: Vec<u8>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("grant", &self.grant.id)
            .finish()
    }
}

impl Policy {
    /// Compiles a grant for a table. `secret` keys the hash mask (mixed with the grant id).
    pub fn compile(grant: Grant, manifest: &TableManifest, secret: &[u8]) -> Result<Self> {
        let table = table_schema(manifest);
        let filter = grant
            .terms
            .row_filter
            .as_deref()
            .map(|f| compile_filter(f, &table))
            .transpose()?;
        let (indices, output) = output_schema(&grant.terms, &table)?;
        let mut hash_key = secret.to_vec();
        hash_key.extend_from_slice(grant.id.as_bytes());
        let mut policy = Self {
            grant,
            table,
            filter,
            indices,
            read: Vec::new(),
            output,
            hash_key,
        };
        let mut read = policy.filter_columns();
        read.extend_from_slice(&policy.indices);
        read.sort_unstable();
        read.dedup();
        policy.read = read;
        Ok(policy)
    }

    /// The table's schema (what [`Policy::filter`] expects batches in).
    pub fn table_schema(&self) -> &SchemaRef {
        &self.table
    }

    /// What a consumer receives.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The grant's mode.
    pub fn mode(&self) -> Mode {
        self.grant.terms.mode
    }

    /// Rows the consumer may know exist: the row filter on raw values. Hot path.
    pub fn filter(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        match self.selection(batch)? {
            Some(keep) => Ok(filter_record_batch(batch, &keep)?),
            None => Ok(batch.clone()),
        }
    }

    /// Whether the grant has a row filter.
    pub fn has_row_filter(&self) -> bool {
        self.filter.is_some()
    }

    /// Whether the row filter (if any) cannot fail on a value: it only compares columns with
    /// values of the same type (=, <>, <, >, IN, LIKE with a fixed pattern, null tests, AND,
    /// OR, NOT). Only then may anything skip rows before it runs, since otherwise whether it
    /// fails would depend on which rows it saw.
    pub fn row_filter_cannot_fail(&self) -> bool {
        self.filter.as_ref().is_none_or(cannot_fail)
    }

    /// The rows of `batch` (in [`Policy::table_schema`]) the row filter keeps, or `None` when
    /// the grant has no row filter. NULL counts as false: a row the filter cannot decide is
    /// hidden.
    pub fn selection(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        let Some(f) = &self.filter else {
            return Ok(None);
        };
        let keep = f.evaluate(batch)?.into_array(batch.num_rows())?;
        Ok(Some(keep.as_boolean().clone()))
    }

    /// Granted columns, masked, of rows already filtered. Hot path.
    pub fn project(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let all: Vec<usize> = (0..self.indices.len()).collect();
        let cols = self.project_columns(batch, &all)?;
        Ok(RecordBatch::try_new(self.output.clone(), cols)?)
    }

    /// Some granted columns (positions in [`Policy::output_schema`]), masked, of rows already
    /// filtered. Only the columns asked for are masked.
    pub fn project_columns(&self, batch: &RecordBatch, which: &[usize]) -> Result<Vec<ArrayRef>> {
        which
            .iter()
            .map(|&o| self.mask_column(o, batch.column(self.indices[o])))
            .collect()
    }

    /// Whether granted column `o` (a position in [`Policy::output_schema`]) is masked.
    pub fn is_masked(&self, o: usize) -> bool {
        self.grant.terms.columns[o].mask.is_some()
    }

    /// Granted column `o`'s values (of visible rows, in the table's type), masked if its grant
    /// masks it.
    pub fn mask_column(&self, o: usize, values: &ArrayRef) -> Result<ArrayRef> {
        Ok(match &self.grant.terms.columns[o].mask {
            Some(m) => mask_array(m, values, &self.hash_key)?,
            None => values.clone(),
        })
    }

    /// Positions in [`Policy::table_schema`] of the granted columns, in output order.
    pub fn granted_indices(&self) -> &[usize] {
        &self.indices
    }

    /// Positions in [`Policy::table_schema`] of the columns the row filter reads.
    pub fn filter_columns(&self) -> Vec<usize> {
        let mut cols: Vec<usize> = self
            .filter
            .as_ref()
            .map(|f| collect_columns(f).iter().map(|c| c.index()).collect())
            .unwrap_or_default();
        cols.sort_unstable();
        cols
    }

    /// Positions in [`Policy::table_schema`] of every column this policy looks at: the granted
    /// ones and those the row filter reads. Nothing else of a row can reach an answer, so a
    /// read path need not read anything else. Worked out once, when the grant is compiled.
    pub fn columns_read(&self) -> &[usize] {
        &self.read
    }

    /// The grant's keyed hash of each value: stable within this grant, different across grants.
    /// Lets the SQL path count distinct people in a group without showing who they are.
    pub fn hash_values(&self, values: &ArrayRef) -> Result<ArrayRef> {
        mask_array(&crate::mask::Mask::Hash, values, &self.hash_key)
    }

    /// Filter, then project and mask: what every read path returns.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        self.project(&self.filter(batch)?)
    }
}

fn output_schema(terms: &GrantTerms, table: &SchemaRef) -> Result<(Vec<usize>, SchemaRef)> {
    let mut indices = Vec::new();
    let mut fields = Vec::new();
    for c in &terms.columns {
        let i = table.index_of(&c.name).map_err(|_| Error::Invalid {
            field: "columns".into(),
            reason: format!("unknown column '{}'", c.name),
        })?;
        let f = table.field(i);
        let t = match &c.mask {
            Some(m) => {
                m.check_type(&c.name, f.data_type())?;
                m.output_type(f.data_type())
            }
            None => f.data_type().clone(),
        };
        indices.push(i);
        fields.push(Field::new(&c.name, t, true));
    }
    Ok((indices, Arc::new(Schema::new(fields))))
}
