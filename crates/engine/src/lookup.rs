//! Reading rows by key without SQL: the key index (from cached page indexes) names the pages that
//! may hold each key, and only those pages are read, of the catalog columns the caller asks to
//! read. Files are read by point reads (see `point`), every Lookup, Verify and batch match: only
//! the matched rows' values are decoded. What point reads cannot read goes through the Arrow
//! record reader with a row selection, the key column filtered while decoding.

use crate::dataset::{Engine, Footer, Indexed, file_identity, leaf_column, lock};
use crate::keyindex::{KeyFilter, KeyIndex};
use crate::local::LocalFile;
use crate::point::{self, FilePlan};
use crate::{DataProblem, DataRoot, Error, Result};
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::buffer::BooleanBuffer;
use arrow::compute::kernels::cmp::eq;
use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use bytes::Bytes;
use citybrain_catalog::TableManifest;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// Ranges of a local file closer than this are read as one when they come from the disk.
const LOCAL_COALESCE: u64 = 64 * 1024;

/// Byte ranges of one Parquet object whose metadata is already known: from the page cache on
/// the calling task when the root is local and the bytes are cached, else from the store.
struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    metadata: Arc<ParquetMetaData>,
    local: Option<LocalFile>,
}

impl StoreReader {
    fn new(root: &DataRoot, path: ObjectPath, metadata: Arc<ParquetMetaData>) -> Self {
        Self {
            store: root.store().clone(),
            local: root.local_file(&path).map(LocalFile::new),
            path,
            metadata,
        }
    }

    /// Each range's bytes if the page cache holds them (see `local`), else `None` for it.
    fn cached(&mut self, ranges: &[Range<u64>]) -> Vec<Option<Bytes>> {
        match self.local.as_mut() {
            Some(local) => local.read_cached(ranges),
            None => vec![None; ranges.len()],
        }
    }

    /// The ranges' bytes from the store.
    async fn stored(&self, ranges: &[Range<u64>]) -> parquet::errors::Result<Vec<Bytes>> {
        let failed = |e| ParquetError::External(Box::new(e));
        if self.local.is_none() {
            return self
                .store
                .get_ranges(&self.path, ranges)
                .await
                .map_err(failed);
        }
        // The local store reads a call's ranges one after another. A lookup's pages (one per
        // column, each in its own column chunk) are far apart, and a disk serves reads in
        // parallel: read ranges within `LOCAL_COALESCE` of each other as one, and the rest at
        // once.
        let (store, path) = (&self.store, &self.path);
        let fetch = |r: Range<u64>| async move {
            // A single read stops at the end of the file; a file cut short is an error here, as
            // it is when the store reads ranges one after another.
            let b = store.get_range(path, r.clone()).await?;
            if b.len() as u64 != r.end - r.start {
                return Err(object_store::Error::Generic {
                    store: "local",
                    source: format!(
                        "{path}: bytes {}..{} run past the end of the file ({} read)",
                        r.start,
                        r.end,
                        b.len()
                    )
                    .into(),
                });
            }
            Ok(b)
        };
        object_store::coalesce_ranges(ranges, fetch, LOCAL_COALESCE)
            .await
            .map_err(failed)
    }
}

impl AsyncFileReader for StoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            if let Some(Some(b)) = self.cached(std::slice::from_ref(&range)).pop() {
                return Ok(b);
            }
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }

    /// The ranges the page cache holds are copied from it here; only the rest are read from the
    /// store (from the disk, when local), in one call to it.
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            let mut got = self.cached(&ranges);
            let missing: Vec<Range<u64>> = ranges
                .iter()
                .zip(&got)
                .filter(|(_, b)| b.is_none())
                .map(|(r, _)| r.clone())
                .collect();
            if !missing.is_empty() {
                let mut stored = self.stored(&missing).await?.into_iter();
                for slot in got.iter_mut().filter(|b| b.is_none()) {
                    *slot = stored.next();
                }
            }
            got.into_iter()
                .map(|b| b.ok_or_else(|| ParquetError::General("a range was not read".into())))
                .collect()
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
    /// The dataset's key index, rebuilt when its files change.
    async fn key_index(
        &self,
        table: &TableManifest,
        dataset: &str,
        key_col: &str,
        files: &[ObjectMeta],
    ) -> Result<(Arc<KeyIndex>, Vec<Arc<Footer>>)> {
        let unavailable = |problem| Error::Unavailable {
            table: table.name.clone(),
            problem,
        };
        let cache_key = format!("{dataset}\u{0}{key_col}");
        // Same files, same catalog columns: footers were read and checked when this was built.
        // Compared in place: this runs on every lookup.
        let cached = || {
            lock(&self.indexes)
                .get(&cache_key)
                .filter(|hit| hit.built_from(files, table))
                .map(|hit| (hit.index.clone(), hit.footers.clone()))
        };
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        let _building = self.building.lock().await;
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        let footers = self.checked_footers(table, files).await?;
        let mut keyed = Vec::with_capacity(footers.len());
        for (i, f) in footers.iter().enumerate() {
            let key_idx = leaf_column(&f.metadata, key_col).ok_or_else(|| {
                unavailable(DataProblem::SchemaMismatch {
                    index: i + 1,
                    detail: format!("key column '{key_col}' is missing"),
                })
            })?;
            keyed.push((f.metadata.as_ref(), key_idx));
        }
        let index = Arc::new(KeyIndex::build(&keyed));
        tracing::debug!(table = %table.name, pages = index.pages(), "key index built");
        // The key filter: built now for small tables, in the background for large ones (lookups
        // go by page ranges alone until it is ready).
        let rows: u64 = footers
            .iter()
            .map(|f| f.metadata.file_metadata().num_rows().max(0) as u64)
            .sum();
        let job = FilterJob {
            root: self.root().clone(),
            files: files.iter().map(|m| m.location.clone()).collect(),
            footers: footers.clone(),
            key_col: key_col.to_owned(),
            rows,
        };
        if rows <= SYNC_FILTER_ROWS {
            if let Ok(f) = job.run().await {
                let _ = index.filter.set(f);
            }
        } else {
            let (index, table) = (index.clone(), table.name.clone());
            let runtime = tokio::runtime::Handle::current();
            // Decoding every key is CPU work: off the async workers, so lookups keep flowing.
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                match runtime.block_on(job.run()) {
                    Ok(f) => {
                        let _ = index.filter.set(f);
                        tracing::info!(%table, rows, secs = started.elapsed().as_secs_f64(), "key filter ready");
                    }
                    Err(e) => tracing::warn!(%table, error = %e, "key filter not built"),
                }
            });
        }
        lock(&self.indexes).insert(
            cache_key,
            Arc::new(Indexed {
                files: files.iter().map(file_identity).collect(),
                columns: table
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.data_type))
                    .collect(),
                footers: footers.clone(),
                index: index.clone(),
            }),
        );
        Ok((index, footers))
    }

    /// Every row whose key column equals one of `keys`, with the catalog's columns in catalog
    /// order. Keys must already be validated by the caller. Only the pages whose key range holds
    /// a wanted key are read; a key outside every page is answered without reading Parquet.
    pub async fn lookup(&self, table: &TableManifest, keys: &[String]) -> Result<Vec<RecordBatch>> {
        let every: Vec<usize> = (0..table.columns.len()).collect();
        self.lookup_reading(table, keys, &every).await
    }

    /// As [`Engine::lookup`], but only the catalog columns at positions `read` (and the key
    /// column) are read and decoded; every other column of the answer is all null, of its
    /// type, so batches keep the table's shape. A caller passes what its grant can show or
    /// its row filter reads: the pages of columns nobody may see are never decompressed.
    pub async fn lookup_reading(
        &self,
        table: &TableManifest,
        keys: &[String],
        read: &[usize],
    ) -> Result<Vec<RecordBatch>> {
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
        let files = self.list_cached(dataset).await?;
        if files.is_empty() {
            return Err(unavailable(DataProblem::NoFiles));
        }
        let (index, footers) = self.key_index(table, dataset, key_col, &files).await?;
        let mut plans: BTreeMap<usize, FilePlan> = BTreeMap::new();
        for (n, k) in (0u32..).zip(keys) {
            for p in index.candidates(k.as_bytes()) {
                plans
                    .entry(p.file as usize)
                    .or_default()
                    .entry(p.row_group as usize)
                    .or_default()
                    .entry((p.first_row, p.rows))
                    .or_default()
                    .add(n);
            }
        }
        let read = Arc::new(FileRead {
            key_col: key_col.to_owned(),
            root: self.root().clone(),
            files,
            footers,
            keys: keys.into(),
            wanted: OnceLock::new(),
            read: table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| read.contains(&i) || c.name == key_col)
                .collect(),
            point: self.point_reads,
        });
        // One file (every single-key lookup): read here. More (a batch): files are read on
        // as many threads at once as there are cores, and answered in file order. Cached pages
        // decode without ever waiting, so these reads run beside the async workers (as blocking
        // work) rather than on them: a large batch must not hold every worker from other calls.
        if plans.len() == 1 {
            let (i, plan) = plans.into_iter().next().expect("one plan");
            return read.file(table, i, plan).await;
        }
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shared = Arc::new(table.clone());
        // Unordered: a file done early makes room for the next at once, where an ordered
        // buffer would leave a core idle behind a slow file. Put back in file order below.
        let mut per_file: Vec<(usize, Vec<RecordBatch>)> = futures::stream::iter(plans)
            .map(|(i, plan)| {
                let (read, table) = (read.clone(), shared.clone());
                async move {
                    let files = read.files.len();
                    let name = table.name.clone();
                    let runtime = tokio::runtime::Handle::current();
                    let task = tokio::task::spawn_blocking(move || {
                        runtime.block_on(read.file(&table, i, plan))
                    });
                    let rows = task.await.unwrap_or_else(|e| {
                        tracing::error!(table = %name, file = i + 1, %e, "lookup read failed");
                        let problem = DataProblem::Unreadable {
                            index: i + 1,
                            files,
                        };
                        Err(Error::Unavailable {
                            table: name,
                            problem,
                        })
                    });
                    rows.map(|rows| (i, rows))
                }
            })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        per_file.sort_unstable_by_key(|(i, _)| *i);
        Ok(per_file.into_iter().flat_map(|(_, rows)| rows).collect())
    }
}

/// What reading one lookup's rows from each of its files needs, shared by the files' tasks.
struct FileRead {
    key_col: String,
    root: DataRoot,
    files: Arc<Vec<ObjectMeta>>,
    footers: Vec<Arc<Footer>>,
    /// The keys looked up.
    keys: Arc<[String]>,
    /// The same as a set: for the record reader, and for point reads of pages that may hold
    /// more keys than are worth comparing one by one (made when first needed).
    wanted: OnceLock<Arc<Wanted>>,
    /// Per catalog column: read it (else it is answered as nulls).
    read: Vec<bool>,
    /// Read files by point reads (see `point`), the record reader being left for what they
    /// cannot read.
    point: bool,
}

impl FileRead {
    /// The keys as a set, made when first needed.
    fn wanted(&self) -> &Arc<Wanted> {
        self.wanted
            .get_or_init(|| Arc::new(Wanted::new(&self.keys)))
    }

    /// The rows of file `i` (0-based) whose key is wanted, from the pages in `plan`.
    async fn file(
        &self,
        table: &TableManifest,
        i: usize,
        plan: FilePlan,
    ) -> Result<Vec<RecordBatch>> {
        let (key_col, files) = (self.key_col.as_str(), &self.files);
        let unavailable = |problem| Error::Unavailable {
            table: table.name.clone(),
            problem,
        };
        let (meta, footer) = (&files[i], &self.footers[i]);
        let md = &footer.metadata;
        let descr = md.file_metadata().schema_descr();
        let key_idx = leaf_column(md, key_col).ok_or_else(|| {
            unavailable(DataProblem::SchemaMismatch {
                index: i + 1,
                detail: format!("key column '{key_col}' is missing"),
            })
        })?;
        let columns: Vec<usize> = table
            .columns
            .iter()
            .zip(&self.read)
            .filter(|(_, read)| **read)
            .filter_map(|(c, _)| leaf_column(md, &c.name))
            .collect();
        let mut reader = StoreReader::new(&self.root, meta.location.clone(), md.clone());
        let schema = footer.arrow.schema();
        if self.point {
            let file = point::FileMeta {
                md,
                schema,
                order: &footer.pages,
                dictionaries: &footer.dictionaries,
            };
            let any = |k: &[u8]| self.wanted().holds(k);
            let (plan, keys) = (&plan, &self.keys);
            match point::read(&mut reader, file, key_idx, &columns, plan, keys, &any).await {
                Ok(batches) => return self.in_catalog_order(table, i, footer, batches),
                Err(why) => {
                    tracing::debug!(file = %meta.location, why, "point read left to the record reader")
                }
            }
        }
        // The record reader: the same pages as a row selection, keys filtered while decoded.
        let mut selectors = Vec::new();
        for (g, pages) in &plan {
            let total = md.row_group(*g).num_rows() as u64;
            let mut at = 0u64;
            for &(first, rows) in pages.keys() {
                let first = first.max(at);
                let end = (first + rows).min(total);
                if first > at {
                    selectors.push(RowSelector::skip((first - at) as usize));
                }
                if end > first {
                    selectors.push(RowSelector::select((end - first) as usize));
                    at = end;
                }
            }
            if total > at {
                selectors.push(RowSelector::skip((total - at) as usize));
            }
        }
        let wanted = self.wanted().clone();
        let predicate = ArrowPredicateFn::new(
            ProjectionMask::leaves(descr, [key_idx]),
            move |b: RecordBatch| {
                let keys = b.column(0).as_string_opt::<i32>().ok_or_else(|| {
                    ArrowError::SchemaError(format!(
                        "key column is {}, not Utf8",
                        b.column(0).data_type()
                    ))
                })?;
                wanted.rows_in(keys)
            },
        );
        let corrupt = || {
            unavailable(DataProblem::Corrupt {
                index: i + 1,
                files: files.len(),
            })
        };
        let stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer.arrow.clone())
                .with_row_groups(plan.keys().copied().collect())
                .with_row_selection(RowSelection::from(selectors))
                .with_projection(ProjectionMask::leaves(descr, columns))
                .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
                .build()
                .map_err(|_| corrupt())?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| {
            tracing::warn!(file = %meta.location, error = %e, "lookup read failed");
            unavailable(DataProblem::Unreadable {
                index: i + 1,
                files: files.len(),
            })
        })?;
        self.in_catalog_order(table, i, footer, batches)
    }

    /// File `i`'s batches of rows, in catalog order (see [`in_catalog_order`]).
    fn in_catalog_order(
        &self,
        table: &TableManifest,
        i: usize,
        footer: &Footer,
        batches: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| {
                in_catalog_order(table, &self.read, footer.arrow.schema(), &b).map_err(|detail| {
                    Error::Unavailable {
                        table: table.name.clone(),
                        problem: DataProblem::SchemaMismatch {
                            index: i + 1,
                            detail,
                        },
                    }
                })
            })
            .collect()
    }
}

/// The keys of one lookup as a set: the record reader checks every row it reads against it,
/// and point reads the rows of a page that may hold more keys than are worth comparing singly.
enum Wanted {
    /// One key (a Lookup or Verify): compared in place, no hashing per row.
    One(String),
    /// Several (a batch).
    Many(KeySet),
}

impl Wanted {
    fn new(keys: &[String]) -> Self {
        match keys {
            [one] => Self::One(one.clone()),
            _ => Self::Many(KeySet::new(keys)),
        }
    }

    /// Whether a key (as stored) is wanted.
    fn holds(&self, key: &[u8]) -> bool {
        match self {
            Self::One(one) => one.as_bytes() == key,
            Self::Many(set) => set.contains(key),
        }
    }

    /// Which rows of a page's key column hold a wanted key (a null key never does).
    fn rows_in(&self, keys: &StringArray) -> Result<BooleanArray, ArrowError> {
        match self {
            Self::One(key) => eq(keys, &StringArray::new_scalar(key)),
            Self::Many(set) => Ok(BooleanArray::new(
                BooleanBuffer::collect_bool(keys.len(), |r| {
                    keys.is_valid(r) && set.contains(keys.value(r).as_bytes())
                }),
                None,
            )),
        }
    }
}

/// The keys of a batch: a bitmap under a cheap hash turns most rows away before the set's own
/// (DoS-resistant) hash is computed. Keys chosen to pass the bitmap only cost that hash, as
/// every row did before.
struct KeySet {
    set: HashSet<Box<[u8]>>,
    bits: Vec<u64>,
    /// log2 of the bitmap's size in bits.
    shift: u32,
}

impl KeySet {
    fn new(keys: &[String]) -> Self {
        let set: HashSet<Box<[u8]>> = keys.iter().map(|k| k.as_bytes().into()).collect();
        // About 16 bits per key: roughly one row in sixteen that is not wanted gets past.
        let size = (set.len() * 16).next_power_of_two().max(64);
        let mut w = Self {
            set,
            bits: vec![0; size / 64],
            shift: 64 - size.trailing_zeros(),
        };
        for k in &w.set {
            let b = w.bit(k);
            w.bits[b / 64] |= 1 << (b % 64);
        }
        w
    }

    /// The bitmap position of a key: its first and last eight bytes, mixed by one multiply.
    fn bit(&self, b: &[u8]) -> usize {
        let word = |s: &[u8]| {
            let mut w = [0u8; 8];
            w[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(w)
        };
        let (head, tail) = (&b[..b.len().min(8)], &b[b.len().saturating_sub(8)..]);
        let mixed = (word(head) ^ word(tail).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (mixed >> self.shift) as usize
    }

    fn contains(&self, key: &[u8]) -> bool {
        let b = self.bit(key);
        self.bits[b / 64] & (1 << (b % 64)) != 0 && self.set.contains(key)
    }
}

/// Tables up to this many rows get their key filter before the first lookup answers.
const SYNC_FILTER_ROWS: u64 = 1_000_000;

/// Reads every key of a table into a [`KeyFilter`].
struct FilterJob {
    root: DataRoot,
    files: Vec<ObjectPath>,
    footers: Vec<Arc<Footer>>,
    key_col: String,
    rows: u64,
}

impl FilterJob {
    async fn run(self) -> Result<KeyFilter, ParquetError> {
        let mut filter = KeyFilter::with_capacity(self.rows);
        for (path, footer) in self.files.into_iter().zip(&self.footers) {
            let md = &footer.metadata;
            let Some(key_idx) = leaf_column(md, &self.key_col) else {
                return Err(ParquetError::General(format!("no column {}", self.key_col)));
            };
            let descr = md.file_metadata().schema_descr();
            let reader = StoreReader::new(&self.root, path, md.clone());
            let mut stream =
                ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer.arrow.clone())
                    .with_projection(ProjectionMask::leaves(descr, [key_idx]))
                    .build()?;
            while let Some(batch) = stream.try_next().await? {
                let keys = batch.column(0).as_string_opt::<i32>().ok_or_else(|| {
                    ParquetError::General(format!(
                        "key column {} is {}, not Utf8",
                        self.key_col,
                        batch.column(0).data_type()
                    ))
                })?;
                for i in 0..keys.len() {
                    if keys.is_valid(i) {
                        filter.insert(keys.value(i).as_bytes());
                    }
                }
            }
        }
        Ok(filter)
    }
}

/// Reorders a batch's columns into catalog order; a column not `read` is all null, of its type
/// in the file (whose `file` schema must still hold it).
fn in_catalog_order(
    table: &TableManifest,
    read: &[bool],
    file: &Schema,
    b: &RecordBatch,
) -> Result<RecordBatch, String> {
    let schema = b.schema();
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (c, read) in table.columns.iter().zip(read) {
        let missing = || format!("column '{}' is missing", c.name);
        if *read {
            let i = schema.index_of(&c.name).map_err(|_| missing())?;
            fields.push(schema.field(i).clone());
            cols.push(b.column(i).clone());
        } else {
            let f = file.field_with_name(&c.name).map_err(|_| missing())?;
            cols.push(new_null_array(f.data_type(), b.num_rows()));
            fields.push(f.clone().with_nullable(true));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{KeySet, LocalFile, ObjectPath, ObjectStore, Range, StoreReader, Wanted};
    use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::async_reader::AsyncFileReader;
    use parquet::file::metadata::ParquetMetaDataReader;
    use std::sync::Arc;

    /// A Parquet file `f.parquet` of over 300 KB in `dir`, its bytes, and a reader of it through
    /// a local store. The page-cache reader names a file that is not there, so every range takes
    /// the disk path, as it does when the bytes are not cached.
    fn written(dir: &std::path::Path) -> (Vec<u8>, StoreReader) {
        let values = StringArray::from_iter_values((0..50_000u64).map(|i| format!("{i:012}")));
        let batch = RecordBatch::try_from_iter([("v", Arc::new(values) as ArrayRef)]).unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        std::fs::write(dir.join("f.parquet"), &buf).unwrap();
        assert!(buf.len() > 300_000, "room for ranges near and far apart");
        let metadata = ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::from(buf.clone()))
            .unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap());
        let reader = StoreReader {
            store,
            path: ObjectPath::from("f.parquet"),
            metadata: Arc::new(metadata),
            local: Some(LocalFile::new(dir.join("not-there"))),
        };
        (buf, reader)
    }

    /// A call with a range past the end of the file (`len` bytes) fails, not short bytes.
    async fn refuses_a_range_past_the_end(reader: &mut StoreReader, len: u64) {
        let past = reader.get_byte_ranges(vec![0..10, len - 5..len + 1]).await;
        let err = past.expect_err("a range past the end fails, not short bytes");
        assert!(
            err.to_string().contains("past the end of the file"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ranges_read_from_the_disk_come_back_exactly_merged_or_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (buf, mut reader) = written(dir.path());
        let len = buf.len() as u64;
        // Near ranges (merged), far ones (apart), out of order, overlapping, empty, the tail.
        let ranges = vec![
            200_000..200_100,
            0..10,
            100..4_000,
            7..9,
            50_000..60_000,
            300..300,
            len - 8..len,
        ];
        let got = reader.get_byte_ranges(ranges.clone()).await.unwrap();
        assert_eq!(got.len(), ranges.len());
        for (r, b) in ranges.iter().zip(&got) {
            assert_eq!(&b[..], &buf[r.start as usize..r.end as usize], "{r:?}");
        }
        refuses_a_range_past_the_end(&mut reader, len).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn only_ranges_not_in_the_page_cache_are_read_from_the_store_and_all_come_in_order() {
        use rustix::fs::{Advice, fadvise};
        let dir = tempfile::tempdir().unwrap();
        // The page-cache reader reads `f.bin`; the store reads a copy whose every byte differs,
        // so each answer shows where it was read.
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
        let copy: Vec<u8> = data.iter().map(|b| b.wrapping_add(1)).collect();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::write(dir.path().join("store/f.bin"), &copy).unwrap();
        std::fs::write(dir.path().join("f.bin"), &data).unwrap();
        // The second half leaves the page cache (from 4 MiB: it drops a file's pieces of up to
        // 2 MiB only whole), as the kernel drops pages a hub has not read for a while.
        let file = std::fs::File::open(dir.path().join("f.bin")).unwrap();
        file.sync_all().unwrap();
        let half = 4u64 << 20;
        fadvise(&file, half, None, Advice::DontNeed).unwrap();
        let end = data.len() as u64;
        let mut probe = LocalFile::new(dir.path().join("f.bin"));
        if probe.read_cached(&[0..1, end - 1..end]) != [Some(Bytes::from(vec![data[0]])), None] {
            eprintln!("skipped: this file system keeps dropped pages or refuses RWF_NOWAIT reads");
            return;
        }
        // Any Parquet metadata will do: byte ranges are read without it.
        let (_, parquet) = written(dir.path());
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store"))
                .unwrap(),
        );
        let mut reader = StoreReader {
            store,
            path: ObjectPath::from("f.bin"),
            metadata: parquet.metadata,
            local: Some(LocalFile::new(dir.path().join("f.bin"))),
        };
        // (range, read from the cache). A read refused starts reading ahead from where it was
        // refused, so the ranges not cached come in falling order: none is read ahead of time.
        let ranges = [
            (half + 100_000..half + 100_100, false),
            (0..10, true),
            (half + 9_000..half + 9_100, false),
            (100..4_200, true),
            (300..300, true),
            (half - 10..half + 10, false),
            (half - 5_000..half - 4_000, true),
        ];
        let asked: Vec<Range<u64>> = ranges.iter().map(|(r, _)| r.clone()).collect();
        let got = reader.get_byte_ranges(asked).await.unwrap();
        assert_eq!(got.len(), ranges.len());
        for ((r, cached), b) in ranges.iter().zip(&got) {
            let from = if *cached { &data } else { &copy };
            assert_eq!(&b[..], &from[r.start as usize..r.end as usize], "{r:?}");
        }
        // A range past the end is not cut short: the store reports it.
        refuses_a_range_past_the_end(&mut reader, end).await;
    }

    #[test]
    fn wanted_keys_are_found_and_no_other_key_is() {
        let id = |i: u64| format!("4406051985{:08}", i * 7919 % 100_000_000);
        for n in [1usize, 3, 1000] {
            let keys: Vec<String> = (0..n as u64).map(id).collect();
            let w = KeySet::new(&keys);
            assert!(keys.iter().all(|k| w.contains(k.as_bytes())));
            let others = (n as u64..n as u64 + 20_000).map(id);
            assert!(others.clone().all(|k| !w.contains(k.as_bytes())));
            // The bitmap alone turns most other keys away.
            let past = others.filter(|k| {
                let b = w.bit(k.as_bytes());
                w.bits[b / 64] & (1 << (b % 64)) != 0
            });
            assert!(past.count() < 20_000 / 4, "{n} keys");
        }
        assert!(!KeySet::new(&["a".into()]).contains(b""));
        // Both kinds agree on a page that holds wanted, other and null keys.
        let page = StringArray::from(vec![Some(id(1)), None, Some(id(5_000)), Some(id(2))]);
        for keys in [vec![id(1)], vec![id(1), id(2)]] {
            let rows = Wanted::new(&keys).rows_in(&page).unwrap();
            let found: Vec<bool> = (0..rows.len())
                .map(|r| rows.is_valid(r) && rows.value(r))
                .collect();
            assert_eq!(found, [true, false, false, keys.len() == 2]);
        }
    }
}
