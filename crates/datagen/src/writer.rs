//! Writing one table as a dataset of Parquet files laid out for point lookups.

use crate::{Config, Error, Result};
use arrow::array::{ArrayRef, Date32Builder, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per data page by default: a lookup decodes one page of about this many rows of each
/// column it returns, and a batch match one page a key. At 100 M residents, 256-row pages against
/// 1,024 halved the time of a 10,000-key batch and took about 7% off a lookup's p50, for files an
/// eighth larger and SQL scans 13-23% slower (more pages to decode). Their page index is four
/// times larger; the hub keeps pages' text min and max only for the key and sorted columns, and
/// SQL shares the engine's copy (see the README).
pub const PAGE_ROWS: usize = 256;
/// Rows buffered before a batch is handed to the Parquet writer.
const BATCH_ROWS: usize = 8192;

/// A column of a generated table: name, Arrow type, nullability, and whether its values repeat
/// enough for dictionary encoding to pay (never for ID-like columns).
pub struct ColumnDef {
    /// Column name.
    pub name: &'static str,
    /// Arrow type.
    pub data_type: DataType,
    /// Whether nulls occur.
    pub nullable: bool,
    /// Low cardinality: dictionary-encode.
    pub dictionary: bool,
}

/// Shorthand for the table definitions.
pub(crate) const fn col(name: &'static str, data_type: DataType, dictionary: bool) -> ColumnDef {
    ColumnDef {
        name,
        data_type,
        nullable: false,
        dictionary,
    }
}

/// A column whose values may be null.
pub(crate) const fn nullable(mut c: ColumnDef) -> ColumnDef {
    c.nullable = true;
    c
}

/// One value to append.
pub(crate) enum V<'a> {
    S(&'a str),
    D(i32),
    F(f64),
    Null,
}

enum Builder {
    Str(StringBuilder),
    Date(Date32Builder),
    F64(Float64Builder),
}

/// Writes rows of one table into `part-NNNNN.parquet` files of at most `rows_per_file` rows,
/// each made durable (fsync) and renamed into place only when complete.
pub(crate) struct TableWriter {
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    builders: Vec<Builder>,
    buffered: usize,
    rows_per_file: u64,
    rows_in_file: u64,
    file_index: usize,
    current: Option<(ArrowWriter<File>, PathBuf, PathBuf)>,
    pub(crate) rows: u64,
    pub(crate) files: usize,
}

/// Fails when `dir` (the dataset `dataset`) already holds Parquet files; a missing directory
/// is empty.
pub(crate) fn ensure_empty(dir: &Path, dataset: &str) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let occupied = entries
        .filter_map(|e| e.ok())
        .any(|e| e.path().extension().is_some_and(|x| x == "parquet"));
    if occupied {
        return Err(Error::OutputNotEmpty {
            dataset: dataset.to_owned(),
        });
    }
    Ok(())
}

impl TableWriter {
    /// A writer into `cfg.out/dataset`, which [`crate::generate`] has checked holds no Parquet
    /// files yet. `sort_key` is the column the rows arrive sorted by (recorded in the file
    /// metadata).
    pub(crate) fn new(
        cfg: &Config,
        dataset: &str,
        defs: &[ColumnDef],
        sort_key: usize,
    ) -> Result<Self> {
        let dir = cfg.out.join(dataset);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let schema: SchemaRef = Arc::new(Schema::new(
            defs.iter()
                .map(|d| Field::new(d.name, d.data_type.clone(), d.nullable))
                .collect::<Vec<_>>(),
        ));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::LZ4_RAW)
            .set_data_page_row_count_limit(cfg.page_rows)
            .set_write_batch_size(cfg.page_rows)
            .set_max_row_group_row_count(Some(cfg.row_group_rows))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_dictionary_enabled(false)
            // A fixed creator string keeps output byte-identical across builds.
            .set_created_by("citybrain-datagen".to_owned())
            .set_sorting_columns(Some(vec![SortingColumn {
                column_idx: sort_key as i32,
                descending: false,
                nulls_first: false,
            }]));
        for d in defs.iter().filter(|d| d.dictionary) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(d.name), true);
        }
        let builders = defs
            .iter()
            .map(|d| match d.data_type {
                DataType::Utf8 => Builder::Str(StringBuilder::new()),
                DataType::Date32 => Builder::Date(Date32Builder::new()),
                DataType::Float64 => Builder::F64(Float64Builder::new()),
                ref other => unreachable!("generated tables use no {other} columns"),
            })
            .collect();
        Ok(Self {
            dir,
            schema,
            props: props.build(),
            builders,
            buffered: 0,
            rows_per_file: cfg.rows_per_file,
            rows_in_file: 0,
            file_index: 0,
            current: None,
            rows: 0,
            files: 0,
        })
    }

    /// Appends one row; values must follow the column order and types.
    pub(crate) fn push(&mut self, values: &[V<'_>]) -> Result<()> {
        debug_assert_eq!(values.len(), self.builders.len());
        for (b, v) in self.builders.iter_mut().zip(values) {
            match (b, v) {
                (Builder::Str(b), V::S(s)) => b.append_value(s),
                (Builder::Str(b), V::Null) => b.append_null(),
                (Builder::Date(b), V::D(d)) => b.append_value(*d),
                (Builder::Date(b), V::Null) => b.append_null(),
                (Builder::F64(b), V::F(f)) => b.append_value(*f),
                _ => unreachable!("value does not match its column type"),
            }
        }
        self.buffered += 1;
        self.rows += 1;
        self.rows_in_file += 1;
        if self.buffered >= BATCH_ROWS {
            self.flush_batch()?;
        }
        if self.rows_in_file >= self.rows_per_file {
            self.flush_batch()?;
            self.close_file()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Str(b) => Arc::new(b.finish()),
                    Builder::Date(b) => Arc::new(b.finish()),
                    Builder::F64(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.buffered = 0;
        if self.current.is_none() {
            let name = format!("part-{:05}.parquet", self.file_index);
            let final_path = self.dir.join(&name);
            let tmp = self.dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let w = ArrowWriter::try_new(file, self.schema.clone(), Some(self.props.clone()))?;
            self.current = Some((w, tmp, final_path));
        }
        let (w, _, _) = self.current.as_mut().expect("opened above");
        w.write(&batch)?;
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some((w, tmp, final_path)) = self.current.take() {
            let file = w.into_inner()?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
            self.file_index += 1;
            self.files += 1;
        }
        self.rows_in_file = 0;
        Ok(())
    }

    /// Writes what is buffered, closes the last file and syncs the directory.
    pub(crate) fn finish(mut self) -> Result<(u64, usize)> {
        self.flush_batch()?;
        self.close_file()?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(&self.dir, e))?;
        Ok((self.rows, self.files))
    }
}
