//! Datasets: listing files, reading and caching footers, checking them against the catalog.

use crate::keyindex::KeyIndex;
use crate::point::{Dictionaries, PageOrder};
use crate::{DataProblem, DataRoot, Error, Result};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use citybrain_catalog::TableManifest;
use citybrain_types::DataType;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::MetadataFetch;
use parquet::basic::{Encoding, PageType};
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    PageIndexPolicy, ParquetColumnIndex, ParquetMetaData, ParquetMetaDataReader,
};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a table's files hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataInfo {
    /// Rows over all files.
    pub records: u64,
    /// Parquet files.
    pub files: u64,
    /// Bytes on storage.
    pub bytes: u64,
    /// Row groups over all files.
    pub row_groups: u64,
    /// Per text column, the average bytes of its values, where every file records them
    /// (Parquet size statistics). Lets SQL choose how to hold the column.
    pub text_bytes_per_value: BTreeMap<String, u64>,
    /// Text columns whose every data page in every file is dictionary-encoded, each dictionary
    /// page of at most 32 KiB stored (their values can be read as a small dictionary's keys,
    /// without copying a value per row).
    pub dictionary_text: BTreeSet<String>,
}

/// A footer read from storage, valid while the file keeps its size and modification time.
pub(crate) struct Footer {
    /// The file as listed when the footer was read.
    object: ObjectMeta,
    /// The table key the footer's column index was trimmed for (see [`keep_column_index`]).
    indexed: Option<String>,
    pub(crate) metadata: Arc<ParquetMetaData>,
    /// The footer as the Arrow reader needs it (schema already converted).
    pub(crate) arrow: ArrowReaderMetadata,
    /// Which column chunks' page indexes point reads may use.
    pub(crate) pages: PageOrder,
    /// Small dictionary pages point reads have decoded.
    pub(crate) dictionaries: Dictionaries,
}

/// A dataset's key index and the files it was built from.
pub(crate) struct Indexed {
    pub(crate) files: Vec<(ObjectPath, u64, i64)>,
    /// The catalog columns the files were checked against.
    pub(crate) columns: Vec<(String, DataType)>,
    pub(crate) footers: Vec<Arc<Footer>>,
    pub(crate) index: Arc<KeyIndex>,
}

/// A file's modification time in nanoseconds: with its path and size, what identifies its
/// content for the caches.
pub(crate) fn modified_ns(m: &ObjectMeta) -> i64 {
    m.last_modified.timestamp_nanos_opt().unwrap_or_default()
}

/// Average unencoded bytes of a column's non-null values over all files, if every row group
/// records them.
fn text_bytes_per_value(footers: &[Arc<Footer>], column: &str) -> Option<u64> {
    let (mut bytes, mut values) = (0i64, 0i64);
    for footer in footers {
        let i = leaf_column(&footer.metadata, column)?;
        for rg in footer.metadata.row_groups() {
            let c = rg.column(i);
            bytes += c.unencoded_byte_array_data_bytes()?;
            let nulls = c.statistics().and_then(|s| s.null_count_opt()).unwrap_or(0) as i64;
            values += c.num_values() - nulls;
        }
    }
    Some(if values > 0 {
        (bytes / values) as u64
    } else {
        0
    })
}

/// Most bytes a column chunk's dictionary page may take as stored (compressed, with its header),
/// for the column to be read as
/// dictionary keys: a condition on keys is decided once per dictionary value for each batch read,
/// so a dictionary nearly as long as the batch would cost more than the values themselves.
const KEYED_DICTIONARY_BYTES: i64 = 32 << 10;

/// Whether every data page of a column in every file is dictionary-encoded, as the footers'
/// page encoding statistics record, each dictionary page at most [`KEYED_DICTIONARY_BYTES`].
fn small_dictionaries_only(footers: &[Arc<Footer>], column: &str) -> bool {
    let dictionary =
        |e: &Encoding| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY);
    !footers.is_empty()
        && footers.iter().all(|footer| {
            let Some(i) = leaf_column(&footer.metadata, column) else {
                return false;
            };
            footer.metadata.row_groups().iter().all(|rg| {
                let c = rg.column(i);
                let pages_recorded = match (c.page_encoding_stats_mask(), c.page_encoding_stats()) {
                    (Some(mask), _) => mask.encodings().all(|e| dictionary(&e)),
                    (None, Some(stats)) => stats
                        .iter()
                        .filter(|s| {
                            matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                        })
                        .all(|s| dictionary(&s.encoding)),
                    (None, None) => false,
                };
                // The dictionary page comes first in its chunk, right before the data pages.
                let small = c.dictionary_page_offset().is_some_and(|d| {
                    (0..=KEYED_DICTIONARY_BYTES).contains(&(c.data_page_offset() - d))
                });
                small && pages_recorded
            })
        })
}

/// Path, size and modification time of a file.
pub(crate) fn file_identity(m: &ObjectMeta) -> (ObjectPath, u64, i64) {
    (m.location.clone(), m.size, modified_ns(m))
}

impl Indexed {
    /// Whether this was built from exactly these files and the table's current columns.
    pub(crate) fn built_from(&self, files: &[ObjectMeta], table: &TableManifest) -> bool {
        self.files.len() == files.len()
            && self.files.iter().zip(files).all(|((path, size, t), m)| {
                *path == m.location && *size == m.size && *t == modified_ns(m)
            })
            && self.columns.len() == table.columns.len()
            && self
                .columns
                .iter()
                .zip(&table.columns)
                .all(|((name, ty), c)| *name == c.name && *ty == c.data_type)
    }
}

/// A dataset's files and when they were listed.
type Listing = (Instant, Arc<Vec<ObjectMeta>>);

/// How long a dataset listing is reused by the lookup path.
const LISTING_TTL: Duration = Duration::from_secs(1);

/// Reads the hub's datasets.
pub struct Engine {
    root: DataRoot,
    footers: Mutex<HashMap<String, Arc<Footer>>>,
    listings: Mutex<HashMap<String, Listing>>,
    pub(crate) indexes: Mutex<HashMap<String, Arc<Indexed>>>,
    /// One key-index build at a time: concurrent first lookups wait for it instead of each
    /// building (and each starting a key filter).
    pub(crate) building: tokio::sync::Mutex<()>,
    /// Read a few pages' rows by point reads (see `point`); off, always the record reader.
    pub(crate) point_reads: bool,
}

impl Engine {
    /// An engine over a data root.
    pub fn new(root: DataRoot) -> Self {
        Self {
            root,
            footers: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            indexes: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
            point_reads: true,
        }
    }

    /// The same engine reading every lookup through the Arrow record reader: the baseline
    /// point reads are measured against (benchmarks), never the hub's own choice.
    pub fn without_point_reads(mut self) -> Self {
        self.point_reads = false;
        self
    }

    /// A dataset's files, listed at most once per second (the hot lookup path).
    pub(crate) async fn list_cached(&self, dataset: &str) -> Result<Arc<Vec<ObjectMeta>>> {
        if let Some((at, files)) = lock(&self.listings).get(dataset)
            && at.elapsed() < LISTING_TTL
        {
            return Ok(files.clone());
        }
        let files = Arc::new(self.list(dataset).await?);
        lock(&self.listings).insert(dataset.to_owned(), (Instant::now(), files.clone()));
        Ok(files)
    }

    /// The data root.
    pub fn root(&self) -> &DataRoot {
        &self.root
    }

    /// Counts a table's data from its files, checking every file against the catalog columns.
    /// Footers are cached, so a repeated call costs one listing.
    pub async fn table_data(&self, table: &TableManifest) -> Result<DataInfo> {
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
        let mut info = DataInfo {
            records: 0,
            files: files.len() as u64,
            bytes: 0,
            row_groups: 0,
            text_bytes_per_value: BTreeMap::new(),
            dictionary_text: BTreeSet::new(),
        };
        let footers = self.checked_footers(table, &files).await?;
        for (meta, footer) in files.iter().zip(&footers) {
            info.records += footer.metadata.file_metadata().num_rows().max(0) as u64;
            info.row_groups += footer.metadata.num_row_groups() as u64;
            info.bytes += meta.size;
        }
        for c in &table.columns {
            if c.data_type == DataType::String
                && let Some(average) = text_bytes_per_value(&footers, &c.name)
            {
                info.text_bytes_per_value.insert(c.name.clone(), average);
            }
            if c.data_type == DataType::String && small_dictionaries_only(&footers, &c.name) {
                info.dictionary_text.insert(c.name.clone());
            }
        }
        Ok(info)
    }

    /// Every file's footer (cached), each checked against the catalog's columns; a bad file
    /// makes the table unavailable, naming the file by number.
    pub(crate) async fn checked_footers(
        &self,
        table: &TableManifest,
        files: &[ObjectMeta],
    ) -> Result<Vec<Arc<Footer>>> {
        let unavailable = |problem| Error::Unavailable {
            table: table.name.clone(),
            problem,
        };
        let mut footers = Vec::with_capacity(files.len());
        for (i, meta) in files.iter().enumerate() {
            let footer = self
                .footer(meta, table.key_column.as_deref())
                .await
                .map_err(|p| unavailable(p.at(i + 1, files.len())))?;
            check_schema(table, &footer.metadata).map_err(|detail| {
                unavailable(DataProblem::SchemaMismatch {
                    index: i + 1,
                    detail,
                })
            })?;
            footers.push(footer);
        }
        Ok(footers)
    }

    /// The Parquet files of a dataset, in name order (hidden and temporary files skipped).
    pub(crate) async fn list(&self, dataset: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = self.root.dataset_path(dataset);
        let mut files: Vec<ObjectMeta> = self
            .root
            .store()
            .list(Some(&prefix))
            .try_filter(|m| {
                let name = m.location.filename().unwrap_or_default();
                std::future::ready(name.ends_with(".parquet") && !name.starts_with('.'))
            })
            .try_collect()
            .await?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(files)
    }

    /// A file's footer with its page index, the column index trimmed for the table's key (see
    /// [`keep_column_index`]); cached while the file keeps its size and modification time.
    pub(crate) async fn footer(
        &self,
        meta: &ObjectMeta,
        key: Option<&str>,
    ) -> Result<Arc<Footer>, FileProblem> {
        let path = meta.location.to_string();
        if let Some(f) = self.cached(&path)
            && f.object.size == meta.size
            && modified_ns(&f.object) == modified_ns(meta)
            && f.indexed.as_deref() == key
        {
            return Ok(f);
        }
        let fetch = StoreFetch {
            store: self.root.store().as_ref(),
            path: &meta.location,
        };
        // The page index is loaded with the footer: point lookups will select pages from it.
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .load_and_finish(fetch, meta.size)
            .await
            .map_err(|e| {
                // Log the detail for operators; callers only learn which file number failed.
                tracing::warn!(file = %path, error = %e, "unreadable parquet footer");
                match e {
                    ParquetError::External(_) => FileProblem::Unreadable,
                    _ => FileProblem::Corrupt,
                }
            })?;
        let metadata = Arc::new(keep_column_index(metadata, key));
        let arrow = ArrowReaderMetadata::try_new(metadata.clone(), ArrowReaderOptions::new())
            .map_err(|e| {
                tracing::warn!(file = %path, error = %e, "parquet schema does not convert");
                FileProblem::Corrupt
            })?;
        let footer = Arc::new(Footer {
            object: meta.clone(),
            indexed: key.map(str::to_owned),
            pages: PageOrder::of(&metadata),
            dictionaries: Dictionaries::default(),
            metadata,
            arrow,
        });
        lock(&self.footers).insert(path, footer.clone());
        Ok(footer)
    }

    fn cached(&self, path: &str) -> Option<Arc<Footer>> {
        lock(&self.footers).get(path).cloned()
    }

    /// The footer this engine holds for a file, with the file as it was listed when the footer
    /// was read (the caller checks it is still current): for SQL to share rather than read and
    /// hold a second copy. It holds every column's statistics: never for a caller's eyes.
    pub fn cached_footer(&self, path: &ObjectPath) -> Option<(ObjectMeta, Arc<ParquetMetaData>)> {
        self.cached(path.as_ref())
            .map(|f| (f.object.clone(), f.metadata.clone()))
    }

    /// The Arrow schema of a file whose footer this engine holds, with the file as it was
    /// listed when the footer was read (the caller checks it is still current).
    pub fn cached_file_schema(&self, path: &ObjectPath) -> Option<(ObjectMeta, SchemaRef)> {
        self.cached(path.as_ref())
            .map(|f| (f.object.clone(), f.arrow.schema().clone()))
    }
}

/// Position of a top-level column among a file's leaf columns (a field of a nested column with
/// the same name is not it).
pub(crate) fn leaf_column(md: &ParquetMetaData, name: &str) -> Option<usize> {
    let descr = md.file_metadata().schema_descr();
    (0..descr.num_columns()).find(|c| descr.column(*c).path().parts() == [name])
}

/// Drops the column index (each page's min and max) of every text or binary column but the key
/// and the columns the file says it is sorted by; with neither, all of it is kept.
///
/// Point reads need only the offset index, and the key index only the key column's min and max.
/// Pages' min and max prune pages only for a column whose rows are ordered or clustered; text
/// ones, other than the key's, are most of a page index's memory (at 100 M residents in 256-row
/// pages, about 0.2 GB). Those of numbers and dates cost a few bytes a page and are kept: a
/// resident's birth date is clustered, as ID numbers hold it, and pruning pages by it took a
/// one-year count at 100 M residents from about 50 ms to about 30 ms. SQL shares these footers,
/// so it prunes pages by the columns kept and row groups by every column.
fn keep_column_index(md: ParquetMetaData, key: Option<&str>) -> ParquetMetaData {
    let mut keep: Vec<usize> = md
        .row_groups()
        .first()
        .and_then(|g| g.sorting_columns())
        .map(|sorted| {
            // A position past the file's columns names none, so keeps none.
            let columns = md.file_metadata().schema_descr().num_columns();
            sorted
                .iter()
                .filter_map(|c| usize::try_from(c.column_idx).ok())
                .filter(|&c| c < columns)
                .collect()
        })
        .unwrap_or_default();
    keep.extend(key.and_then(|k| leaf_column(&md, k)));
    let Some(index) = md.column_index().filter(|_| !keep.is_empty()) else {
        return md;
    };
    let kept: ParquetColumnIndex = index
        .iter()
        .map(|group| {
            group
                .iter()
                .enumerate()
                .map(|(c, ci)| match ci {
                    ColumnIndexMetaData::BYTE_ARRAY(_)
                    | ColumnIndexMetaData::FIXED_LEN_BYTE_ARRAY(_)
                        if !keep.contains(&c) =>
                    {
                        ColumnIndexMetaData::NONE
                    }
                    _ => ci.clone(),
                })
                .collect()
        })
        .collect();
    md.into_builder().set_column_index(Some(kept)).build()
}

/// Locks a cache; a panic elsewhere never poisons it for good.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Byte ranges of one object, for the Parquet metadata reader.
struct StoreFetch<'a> {
    store: &'a dyn ObjectStore,
    path: &'a ObjectPath,
}

impl MetadataFetch for StoreFetch<'_> {
    fn fetch(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        })
    }
}

pub(crate) enum FileProblem {
    Corrupt,
    Unreadable,
}

impl FileProblem {
    pub(crate) fn at(self, index: usize, files: usize) -> DataProblem {
        match self {
            FileProblem::Corrupt => DataProblem::Corrupt { index, files },
            FileProblem::Unreadable => DataProblem::Unreadable { index, files },
        }
    }
}

/// Every catalog column must exist in the file with a matching type.
pub(crate) fn check_schema(table: &TableManifest, meta: &ParquetMetaData) -> Result<(), String> {
    use arrow::datatypes::DataType as A;
    let schema = parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    )
    .map_err(|_| "schema does not decode".to_owned())?;
    for c in &table.columns {
        let field = schema
            .field_with_name(&c.name)
            .map_err(|_| format!("column '{}' is missing", c.name))?;
        let ok = match c.data_type {
            DataType::String => matches!(field.data_type(), A::Utf8 | A::LargeUtf8 | A::Utf8View),
            DataType::Int64 => matches!(field.data_type(), A::Int64),
            DataType::Int32 => matches!(field.data_type(), A::Int32),
            DataType::Float64 => matches!(field.data_type(), A::Float64),
            DataType::Bool => matches!(field.data_type(), A::Boolean),
            DataType::Date => matches!(field.data_type(), A::Date32),
        };
        if !ok {
            return Err(format!(
                "column '{}' is {} in the file but {} in the catalog",
                c.name,
                field.data_type(),
                c.data_type
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::SortingColumn;
    use parquet::file::properties::WriterProperties;

    /// A file of three columns (id, n, town) with a page index, sorted by `sorted` if given.
    fn footer(sorted: Option<i32>) -> ParquetMetaData {
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..100).map(|i| format!("k{i:03}")),
        ));
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..100));
        let towns: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..100).map(|i| ["a", "b"][i % 2]),
        ));
        let batch =
            RecordBatch::try_from_iter([("id", ids), ("n", n), ("town", towns)]).expect("batch");
        let props = WriterProperties::builder()
            .set_data_page_row_count_limit(10)
            .set_write_batch_size(10)
            .set_sorting_columns(sorted.map(|column_idx| {
                vec![SortingColumn {
                    column_idx,
                    descending: false,
                    nulls_first: false,
                }]
            }))
            .build();
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&Bytes::from(file))
            .expect("footer")
    }

    /// Which columns still have their column index.
    fn indexed(md: &ParquetMetaData) -> Vec<usize> {
        let groups = md.column_index().expect("column index");
        (0..3)
            .filter(|&c| {
                groups
                    .iter()
                    .all(|g| !matches!(g[c], ColumnIndexMetaData::NONE))
            })
            .collect()
    }

    #[test]
    fn a_column_is_found_at_the_top_level_not_inside_a_nested_one() {
        use arrow::array::StructArray;
        use arrow::datatypes::{DataType, Field};
        let inner: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        let nested: ArrayRef = Arc::new(StructArray::from(vec![(
            Arc::new(Field::new("id", DataType::Utf8, true)),
            inner,
        )]));
        let id: ArrayRef = Arc::new(StringArray::from(vec!["k"]));
        let batch = RecordBatch::try_from_iter([("s", nested), ("id", id)]).expect("batch");
        let mut file = Vec::new();
        let mut w = ArrowWriter::try_new(&mut file, batch.schema(), None).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        let md = ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::from(file))
            .expect("footer");
        // Leaf 0 is s.id, leaf 1 the top-level id.
        assert_eq!(leaf_column(&md, "id"), Some(1));
        assert_eq!(leaf_column(&md, "s"), None);
    }

    #[test]
    fn the_key_and_sorted_columns_keep_their_column_index() {
        assert_eq!(indexed(&footer(None)), [0, 1, 2]);
        // The key alone; the key and the sort column; the sort column alone. The numbers (n)
        // keep theirs in every case: it is small.
        assert_eq!(
            indexed(&keep_column_index(footer(None), Some("id"))),
            [0, 1]
        );
        assert_eq!(
            indexed(&keep_column_index(footer(Some(2)), Some("id"))),
            [0, 1, 2]
        );
        assert_eq!(indexed(&keep_column_index(footer(Some(2)), None)), [1, 2]);
        // Nothing known to prune pages by: all kept; a sort column that is not there is none.
        assert_eq!(indexed(&keep_column_index(footer(None), None)), [0, 1, 2]);
        assert_eq!(
            indexed(&keep_column_index(footer(Some(7)), None)),
            [0, 1, 2]
        );
        // The offset index of every column stays: point reads need it.
        let md = keep_column_index(footer(None), Some("id"));
        let offsets = md.offset_index().expect("offset index");
        assert!(offsets[0].iter().all(|c| c.page_locations().len() == 10));
    }
}
