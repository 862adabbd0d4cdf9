//! Deterministic synthetic base libraries for the hub, written as Parquet.
//!
//! [`generate`] writes the population, legal-entity and map base libraries and three
//! departmental tables that join to them, at any scale, byte-identically for a seed:
//! residents with valid 18-character ID numbers whose birth date and gender agree with the
//! number; legal entities with valid unified social credit codes whose legal representatives are
//! residents; addresses inside Nanhai's seven towns with coordinates in the district; social
//! insurance enrolments, electronic licences and business licences. [`Config::tables`] picks
//! some of them; a table's random draws do not depend on which tables are written beside it, so
//! it is the same whichever others are written with it.
//!
//! Keyed tables are written for point lookups: rows arrive sorted by key and are split into files
//! by key range; pages hold about 256 rows (`Config::page_rows`) with page statistics and the page
//! index; ID-like columns are not dictionary-encoded; LZ4 (raw) compression. Residents are
//! produced in key order straight from the generator, so memory stays bounded by the entity code
//! list and the pool of candidate legal representatives (about 36 bytes per eight residents).

mod firms;
mod geo;
mod people;
mod rng;
pub mod schema;
mod words;
mod writer;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};

pub use writer::{ColumnDef, PAGE_ROWS};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Output root; each table goes to `<out>/<dataset>/part-NNNNN.parquet`.
    pub out: PathBuf,
    /// Number of residents; the other tables scale with it.
    pub persons: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Largest number of rows in one file.
    pub rows_per_file: u64,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Rows per data page (at most; a page also ends at the writer's page size in bytes).
    pub page_rows: usize,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// Catalog names of the tables to write (see [`schema::all`]); empty: every table. Each
    /// table's rows are the same whichever others are written with it.
    pub tables: Vec<String>,
}

impl Config {
    /// Defaults for `persons` residents into `out`.
    pub fn new(out: impl Into<PathBuf>, persons: u64) -> Self {
        Self {
            out: out.into(),
            persons,
            seed: 20190601,
            rows_per_file: 2_000_000,
            row_group_rows: 128 * 1024,
            page_rows: PAGE_ROWS,
            progress: false,
            tables: Vec::new(),
        }
    }
}

/// What one table received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// Catalog name.
    pub name: &'static str,
    /// Dataset path under the output root.
    pub dataset: &'static str,
    /// Rows written.
    pub rows: u64,
    /// Files written.
    pub files: usize,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing or syncing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The output already holds data for a table; the generator never overwrites.
    #[error(
        "output dataset '{dataset}' already holds Parquet files; choose an empty output directory"
    )]
    OutputNotEmpty {
        /// The dataset path.
        dataset: String,
    },
    /// Encoding Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow arrays failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An ID number kept compactly (the pool of possible legal representatives).
pub(crate) type IdBytes = [u8; 18];

/// Days since the epoch of a constant date.
pub(crate) fn days(y: i32, m: u32, d: u32) -> i32 {
    citybrain_types::Date::from_ymd(y, m, d)
        .expect("constant dates are valid")
        .days()
}

/// Legal entities per resident (about 470,000 entities for 3.67 million residents).
pub const ENTITIES_PER_PERSON: f64 = 1.0 / 8.0;
/// Residents per standard address (household size in the district).
pub const PERSONS_PER_ADDRESS: f64 = 2.6;

/// The tables a run writes.
pub(crate) struct Selection(Vec<&'static str>);

impl Selection {
    fn new(cfg: &Config) -> Result<Self> {
        let all = schema::all();
        if cfg.tables.is_empty() {
            return Ok(Self(all.iter().map(|d| d.name).collect()));
        }
        let mut names = Vec::new();
        for t in &cfg.tables {
            let def = all.iter().find(|d| d.name == t).ok_or_else(|| {
                let known: Vec<_> = all.iter().map(|d| d.name).collect();
                Error::Parameter(format!(
                    "unknown table '{t}'; the generator writes {}",
                    known.join(", ")
                ))
            })?;
            names.push(def.name);
        }
        Ok(Self(names))
    }

    pub(crate) fn has(&self, def: &schema::TableDef) -> bool {
        self.0.contains(&def.name)
    }

    /// A writer for `def` when it is selected.
    pub(crate) fn open(
        &self,
        cfg: &Config,
        def: schema::TableDef,
    ) -> Result<Option<writer::TableWriter>> {
        self.has(&def)
            .then(|| writer::TableWriter::new(cfg, def.dataset, &def.columns, 0))
            .transpose()
    }
}

/// Closes a writer that was opened; an unselected table wrote nothing.
pub(crate) fn finish(w: Option<writer::TableWriter>) -> Result<(u64, usize)> {
    w.map_or(Ok((0, 0)), writer::TableWriter::finish)
}

/// Generates the selected tables ([`Config::tables`]; all by default). Returns one summary per
/// table written, in [`schema::all`] order.
pub fn generate(cfg: &Config) -> Result<Vec<TableSummary>> {
    if cfg.rows_per_file == 0 || cfg.row_group_rows == 0 || cfg.page_rows == 0 {
        return Err(Error::Parameter(
            "rows per file, rows per row group and rows per page must be positive".into(),
        ));
    }
    let sel = Selection::new(cfg)?;
    // Refuse what would fail half-way before writing a row.
    for def in schema::all().iter().filter(|d| sel.has(d)) {
        writer::ensure_empty(&cfg.out.join(def.dataset), def.dataset)?;
    }
    let firms_wanted = sel.has(&schema::entities()) || sel.has(&schema::business_licences());
    let people_wanted = firms_wanted
        || [
            schema::residents(),
            schema::social_insurance(),
            schema::e_licences(),
        ]
        .iter()
        .any(|d| sel.has(d));
    let map_wanted = sel.has(&schema::addresses());
    let entities = (cfg.persons as f64 * ENTITIES_PER_PERSON) as u64;
    let addresses = ((cfg.persons as f64 / PERSONS_PER_ADDRESS).ceil() as u64).max(1);
    let bar = progress_bar(
        cfg,
        [
            (people_wanted, cfg.persons),
            (firms_wanted, entities),
            (map_wanted, addresses),
        ]
        .iter()
        .filter(|(w, _)| *w)
        .map(|(_, n)| n)
        .sum(),
    );

    let space = geo::AddressSpace::new(cfg.seed, addresses);
    // Credit codes are the entities' keys and the insurance's employers.
    let codes = if firms_wanted || sel.has(&schema::social_insurance()) {
        firms::credit_codes(cfg.seed, entities)
    } else {
        firms::CodeList::default()
    };
    let mut written = Vec::new();
    if people_wanted {
        people::check_capacity(cfg.seed, cfg.persons)?;
        let people = people::generate(cfg, &sel, &space, &codes, entities, firms_wanted, &bar)?;
        written.push((schema::residents(), people.residents));
        written.push((schema::social_insurance(), people.insurance));
        written.push((schema::e_licences(), people.licences));
        if firms_wanted {
            let firms = firms::generate(cfg, &sel, &space, &codes, &people.rep_pool, &bar)?;
            written.push((schema::entities(), firms.entities));
            written.push((schema::business_licences(), firms.licences));
        }
    }
    if map_wanted {
        written.push((schema::addresses(), write_addresses(cfg, &space, &bar)?));
    }
    bar.finish_and_clear();

    Ok(schema::all()
        .into_iter()
        .filter(|def| sel.has(def))
        .map(|def| {
            let (rows, files) = written
                .iter()
                .find(|(d, _)| d.name == def.name)
                .map_or((0, 0), |(_, out)| *out);
            TableSummary {
                name: def.name,
                dataset: def.dataset,
                rows,
                files,
            }
        })
        .collect())
}

fn progress_bar(cfg: &Config, len: u64) -> ProgressBar {
    let target = if cfg.progress {
        // indicatif draws nothing when stderr is not a terminal.
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:12} [{bar:40}] {human_pos}/{human_len} rows {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn write_addresses(
    cfg: &Config,
    space: &geo::AddressSpace,
    bar: &ProgressBar,
) -> Result<(u64, usize)> {
    use writer::V;
    bar.set_message("addresses");
    let def = schema::addresses();
    let mut w = writer::TableWriter::new(cfg, def.dataset, &def.columns, 0)?;
    for i in 0..space.len() {
        let a = space.get(i);
        w.push(&[
            V::S(&a.id),
            V::S(&a.full),
            V::S(a.town),
            V::S(&a.community),
            V::F(a.lon),
            V::F(a.lat),
            V::S(&a.grid),
        ])?;
        bar.inc(1);
    }
    w.finish()
}

/// Every row of a generated dataset directory, read straight from its Parquet files in name
/// order: the reference that tests and benchmarks compare the hub's answers with.
pub fn read_dataset(dir: &Path) -> Result<Vec<arrow::array::RecordBatch>> {
    let io = |e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    };
    let mut files = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    files.retain(|f| f.extension().is_some_and(|x| x == "parquet"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f).map_err(io)?;
        for b in
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?
        {
            out.push(b?);
        }
    }
    Ok(out)
}

/// Every value of a text column of a generated dataset, in file order.
pub fn read_strings(dir: &Path, column: &str) -> Result<Vec<String>> {
    use arrow::array::{Array, AsArray};
    let mut out = Vec::new();
    for b in read_dataset(dir)? {
        let c = b
            .column_by_name(column)
            .ok_or_else(|| Error::Parameter(format!("no column '{column}' in {}", dir.display())))?
            .as_string::<i32>();
        out.extend((0..c.len()).map(|i| c.value(i).to_owned()));
    }
    Ok(out)
}
