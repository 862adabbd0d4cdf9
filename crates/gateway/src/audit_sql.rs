//! SQL over the audit log for auditors: the segment files read as newline-delimited JSON (one
//! partition per segment, without the live segment's preallocated zeros or a line still being
//! written), exposed as one view `calls`. Queries only (no DDL, DML or statements), no
//! information schema, no URL tables, bounded memory.

use crate::convert::rows_to_wire;
use crate::{Error, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use citybrain_proto::v1 as pb;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;

/// One segment file as a partition of the `audit_lines` table.
#[derive(Debug)]
struct SegmentLines {
    path: PathBuf,
    schema: SchemaRef,
}

impl SegmentLines {
    /// Whole lines of the segment decoded against the line schema.
    fn decode(path: &Path, schema: SchemaRef) -> Result<Vec<RecordBatch>, DataFusionError> {
        let bytes = citybrain_audit::read_whole_lines(path)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        arrow::json::ReaderBuilder::new(schema)
            .with_batch_size(BATCH_ROWS)
            .build(std::io::Cursor::new(bytes))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataFusionError::from)
    }
}

impl PartitionStream for SegmentLines {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (path, schema) = (self.path.clone(), self.schema.clone());
        let read = async move {
            let batches = tokio::task::spawn_blocking(move || SegmentLines::decode(&path, schema))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))??;
            Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::TryStreamExt::try_flatten(futures::stream::once(read)),
        ))
    }
}

/// The segments of the log in `dir` as one table.
fn lines_table(dir: &Path) -> Result<StreamingTable> {
    let schema: SchemaRef = Arc::new(lines_schema());
    let partitions = citybrain_audit::list_segments(dir)
        .map_err(|e| Error::Internal(format!("audit log {}: {e}", dir.display())))?
        .into_iter()
        .map(|seg| {
            Arc::new(SegmentLines {
                path: seg.path,
                schema: schema.clone(),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    StreamingTable::try_new(schema, partitions)
        .map_err(|e| Error::Internal(format!("audit log as a table: {e}")))
}

/// Memory one audit query may use.
const MEMORY_LIMIT: usize = 256 * 1024 * 1024;
/// Most rows one answer carries.
pub(crate) const MAX_ROWS: u32 = 10_000;

fn lines_schema() -> Schema {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    Schema::new(vec![
        Field::new("seq", DataType::UInt64, true),
        Field::new("kind", DataType::Utf8, true),
        Field::new("call_id", DataType::Utf8, true),
        Field::new("time_us", DataType::Int64, true),
        Field::new("dept", DataType::Utf8, true),
        Field::new("subject", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, true),
        Field::new("method", DataType::Utf8, true),
        Field::new("tables", list(), true),
        Field::new("columns", list(), true),
        Field::new("grant_id", DataType::Utf8, true),
        Field::new("purpose", DataType::Utf8, true),
        Field::new("key_hashes", list(), true),
        Field::new("rows", DataType::UInt64, true),
        Field::new("bytes", DataType::UInt64, true),
        Field::new("outcome", DataType::Utf8, true),
        Field::new("code", DataType::Int32, true),
        Field::new("latency_us", DataType::UInt64, true),
        Field::new("hash", DataType::Utf8, true),
    ])
}

fn sql_error(e: DataFusionError) -> Error {
    match e {
        DataFusionError::ResourcesExhausted(_) => {
            Error::Denied("the query needs more memory than an audit query may use".into())
        }
        other => Error::invalid(
            "sql",
            other
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
    }
}

/// Runs one auditor query over the log in `dir`.
pub(crate) async fn query(dir: &Path, sql: &str, max_rows: u32) -> Result<pb::QueryAuditResponse> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(MEMORY_LIMIT, 1.0)
        .build_arc()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let config = SessionConfig::new()
        .with_target_partitions(2)
        .with_information_schema(false);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_table("audit_lines", Arc::new(lines_table(dir)?))
        .map_err(|e| Error::Internal(format!("audit log as a table: {e}")))?;
    let view = ctx
        .sql(
            "SELECT seq, call_id, time_us, dept AS department, subject, role, method, tables, \
             columns, grant_id, purpose, key_hashes, rows, bytes, outcome, code, latency_us, hash \
             FROM audit_lines WHERE kind = 'call'",
        )
        .await
        .map(|df| df.into_view())
        .map_err(|e| Error::Internal(format!("audit view: {e}")))?;
    ctx.register_table("calls", view)
        .map_err(|e| Error::Internal(e.to_string()))?;
    ctx.deregister_table("audit_lines")
        .map_err(|e| Error::Internal(e.to_string()))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(sql, options)
        .await
        .map_err(sql_error)?;
    let batches: Vec<RecordBatch> = df
        .limit(0, Some(max_rows as usize + 1))
        .map_err(sql_error)?
        .collect()
        .await
        .map_err(sql_error)?;
    let columns: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let mut rows = Vec::new();
    for b in &batches {
        rows_to_wire(b, &mut rows)?;
    }
    let truncated = rows.len() > max_rows as usize;
    rows.truncate(max_rows as usize);
    Ok(pb::QueryAuditResponse {
        columns,
        rows,
        truncated,
    })
}
