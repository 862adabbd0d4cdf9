//! Reading rows by key without SQL: row groups pruned by key statistics, the key column filtered
//! while decoding, only the catalog's columns projected. (Page-level selection from the page
//! index is the next step for the hot path; this is the correct baseline it must match.)

use crate::dataset::{Engine, check_schema};
use crate::{DataProblem, Error, Result};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::Schema;
use bytes::Bytes;
use citybrain_catalog::TableManifest;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use std::collections::{BTreeSet, HashSet};
use std::ops::Range;
use std::sync::Arc;

/// Byte ranges of one Parquet object whose metadata is already known.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    metadata: Arc<ParquetMetaData>,
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let m = self.metadata.clone();
        Box::pin(async move { Ok(m) })
    }
}

impl Engine {
    /// Every row whose key column equals one of `keys`, with the catalog's columns in catalog
    /// order. Keys must already be validated by the caller.
    pub async fn lookup(&self, table: &TableManifest, keys: &[String]) -> Result<Vec<RecordBatch>> {
        let key_col = table.key_column.as_deref().ok_or_else(|| Error::NoKey {
            table: table.name.clone(),
        })?;
        let dataset = table.dataset.as_deref().ok_or_else(|| Error::NoDataset {
            table: table.name.clone(),
        })?;
        let unavailable = |problem| Error::Unavailable {
            table: table.name.clone(),
            problem,
        };
        let files = self.list(dataset).await?;
        if files.is_empty() {
            return Err(unavailable(DataProblem::NoFiles));
        }
        let wanted: BTreeSet<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let mut out = Vec::new();
        for (i, meta) in files.iter().enumerate() {
            let footer = self
                .footer(meta)
                .await
                .map_err(|p| unavailable(p.at(i + 1, files.len())))?;
            let md = &footer.metadata;
            check_schema(table, md).map_err(|detail| {
                unavailable(DataProblem::SchemaMismatch {
                    index: i + 1,
                    detail,
                })
            })?;
            let descr = md.file_metadata().schema_descr();
            let root =
                |name: &str| (0..descr.num_columns()).find(|c| descr.column(*c).name() == name);
            let Some(key_idx) = root(key_col) else {
                return Err(unavailable(DataProblem::SchemaMismatch {
                    index: i + 1,
                    detail: format!("key column '{key_col}' is missing"),
                }));
            };
            let groups: Vec<usize> = (0..md.num_row_groups())
                .filter(|g| {
                    let stats = md.row_group(*g).column(key_idx).statistics();
                    match stats.and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?))) {
                        Some((min, max)) => wanted.range(min..=max).next().is_some(),
                        None => true,
                    }
                })
                .collect();
            if groups.is_empty() {
                continue;
            }
            let columns: Vec<usize> = table.columns.iter().filter_map(|c| root(&c.name)).collect();
            let set: HashSet<String> = keys.iter().cloned().collect();
            let predicate = ArrowPredicateFn::new(
                ProjectionMask::roots(descr, [key_idx]),
                move |b: RecordBatch| {
                    let col = b.column(0).as_string::<i32>();
                    Ok((0..col.len())
                        .map(|r| Some(col.is_valid(r) && set.contains(col.value(r))))
                        .collect::<BooleanArray>())
                },
            );
            let reader = StoreReader {
                store: self.root().store().clone(),
                path: meta.location.clone(),
                metadata: md.clone(),
            };
            let arrow_meta = ArrowReaderMetadata::try_new(md.clone(), ArrowReaderOptions::new())
                .map_err(|_| {
                    unavailable(DataProblem::Corrupt {
                        index: i + 1,
                        files: files.len(),
                    })
                })?;
            let stream = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, arrow_meta)
                .with_row_groups(groups)
                .with_projection(ProjectionMask::roots(descr, columns))
                .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
                .build()
                .map_err(|_| {
                    unavailable(DataProblem::Corrupt {
                        index: i + 1,
                        files: files.len(),
                    })
                })?;
            let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| {
                tracing::warn!(file = %meta.location, error = %e, "lookup read failed");
                unavailable(DataProblem::Unreadable {
                    index: i + 1,
                    files: files.len(),
                })
            })?;
            for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
                out.push(in_catalog_order(table, &b).map_err(|detail| {
                    unavailable(DataProblem::SchemaMismatch {
                        index: i + 1,
                        detail,
                    })
                })?);
            }
        }
        Ok(out)
    }
}

/// Reorders a batch's columns into catalog order.
fn in_catalog_order(table: &TableManifest, b: &RecordBatch) -> Result<RecordBatch, String> {
    let schema = b.schema();
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for c in &table.columns {
        let i = schema
            .index_of(&c.name)
            .map_err(|_| format!("column '{}' is missing", c.name))?;
        fields.push(schema.field(i).clone());
        cols.push(b.column(i).clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}
