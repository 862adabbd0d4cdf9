//! Point reads: the rows of a file a lookup or batch match wants, read page by page without the
//! Arrow record reader.
//!
//! A lookup's pages are known before anything is read (the key index names them), and it wants
//! one row or a handful from each; a batch wants a few rows from each of many pages. The record
//! reader is built for scans: per call it builds a reader for every column, decodes each page's
//! rows into arrays and filters them, which costs more than the bytes themselves. Here each page
//! is parsed and decompressed on its own (see `page`; by the parquet crate's page reader for
//! codecs a hub does not write), and only the wanted values are decoded: the key page's keys are
//! compared in place with the keys the key index sent to that page, and every other column's
//! pages are decompressed only as far as the matched rows and yield only their values.
//!
//! Only flat columns of common types, in plain or dictionary encoding with RLE levels, are read
//! this way. Anything else, and any page that does not decode, is left to the record reader
//! (which reads the same pages and reports what is wrong): this path never answers differently,
//! only sooner.

use crate::page::{self, Want};
use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Array, Float64Array, Int32Array,
    Int64Array, LargeBinaryBuilder, LargeStringBuilder, RecordBatch, RecordBatchOptions,
    StringBuilder,
};
use arrow::datatypes::{DataType, Date32Type, Field, Schema};
use bytes::Bytes;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::{Encoding, Type as Physical};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

/// Why a read was left to the record reader.
pub(crate) type Skip = &'static str;

/// Key pages read and decoded at a time (bounds a batch's memory).
const PAGES_AT_ONCE: usize = 256;

/// Rows of one file: row group → page row ranges (first row, rows) → the keys (by their
/// number among those looked up) whose rows the range may hold; sorted.
pub(crate) type FilePlan = BTreeMap<usize, BTreeMap<(u64, u64), PageKeys>>;

/// Keys one page is checked against, at most: beyond, a set of all the keys is cheaper (and
/// a page's list must not grow with the batch, as it would where pages' key ranges overlap).
const PAGE_KEYS: usize = 8;

/// The keys a page range may hold, by their number among those looked up; or, past
/// [`PAGE_KEYS`] of them, any of them.
#[derive(Debug, Clone)]
pub(crate) struct PageKeys(Option<Vec<u32>>);

impl Default for PageKeys {
    fn default() -> Self {
        Self(Some(Vec::new()))
    }
}

impl PageKeys {
    /// Adds key number `n`.
    pub(crate) fn add(&mut self, n: u32) {
        if let Some(list) = &mut self.0 {
            if list.contains(&n) {
                return;
            }
            if list.len() == PAGE_KEYS {
                self.0 = None;
                return;
            }
            list.push(n);
        }
    }

    /// Adds every key `other` names (any of them, if it names any).
    fn merge(&mut self, other: &PageKeys) {
        match &other.0 {
            Some(list) => list.iter().for_each(|&n| self.add(n)),
            None => self.0 = None,
        }
    }

    /// Whether `key` is one of the `keys` named here (or one `any` accepts, if any is named).
    fn holds(&self, keys: &[String], any: &(dyn Fn(&[u8]) -> bool + Sync), key: &[u8]) -> bool {
        match &self.0 {
            Some(list) => list
                .iter()
                .any(|&n| keys.get(n as usize).is_some_and(|k| k.as_bytes() == key)),
            None => any(key),
        }
    }
}

/// What a point read needs to know of a file, all of it read once with its footer.
#[derive(Clone, Copy)]
pub(crate) struct FileMeta<'a> {
    pub(crate) md: &'a ParquetMetaData,
    pub(crate) schema: &'a Schema,
    pub(crate) order: &'a PageOrder,
    /// The file's dictionaries decoded so far.
    pub(crate) dictionaries: &'a Dictionaries,
}

/// A decoded dictionary larger than this is not kept (see [`Dictionaries`]).
const KEPT_DICTIONARY: usize = 16 << 10;
/// Bytes of dictionaries kept for one file, at most.
const KEPT_PER_FILE: usize = 128 << 10;

/// A file's small dictionary pages, decoded, by row group and leaf column. A lookup reads one
/// page of each column it answers: without these, each dictionary-encoded column cost it a
/// second read from the page cache (a call to the kernel) and a decode of the same few values
/// every time. Kept with the file's footer, so a changed file starts afresh.
#[derive(Default)]
pub(crate) struct Dictionaries {
    kept: std::sync::Mutex<Kept>,
}

/// Dictionaries kept, by row group and leaf column, and the bytes they hold.
#[derive(Default)]
struct Kept {
    by_chunk: HashMap<(usize, usize), Arc<Plain>>,
    bytes: usize,
}

impl Dictionaries {
    fn get(&self, group: usize, column: usize) -> Option<Arc<Plain>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.by_chunk.get(&(group, column)).cloned()
    }

    /// Keeps a dictionary if it is small and the file's share has room, in bytes of its own
    /// (a page read with others may share their buffer).
    fn keep(&self, group: usize, column: usize, d: &Plain) {
        let size = d.buf.len() + d.spans.len() * 8;
        if size > KEPT_DICTIONARY {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.bytes + size > KEPT_PER_FILE || kept.by_chunk.contains_key(&(group, column)) {
            return;
        }
        let own = Plain {
            buf: Bytes::copy_from_slice(&d.buf),
            physical: d.physical,
            count: d.count,
            spans: d.spans.clone(),
        };
        kept.by_chunk.insert((group, column), Arc::new(own));
        kept.bytes += size;
    }
}

/// Per row group and leaf column: whether its offset index can be trusted to find a row's page.
///
/// The offset index is trusted no further than checked: pages in order, within the chunk, each
/// holding rows of its own. Checking is a pass over every page of a chunk: on every lookup it
/// took about 5% of the server's CPU (256-row pages), so it is done once, when the footer is read.
#[derive(Debug, Default)]
pub(crate) struct PageOrder(Vec<Vec<bool>>);

impl PageOrder {
    /// The check of every column chunk of `md` (none is trusted without a page index).
    pub(crate) fn of(md: &ParquetMetaData) -> Self {
        let Some(index) = md.offset_index() else {
            return Self::default();
        };
        let groups = index.iter().zip(md.row_groups()).map(|(columns, rg)| {
            let total = u64::try_from(rg.num_rows()).unwrap_or(0);
            columns
                .iter()
                .map(|c| in_order(c.page_locations(), total))
                .collect()
        });
        Self(groups.collect())
    }

    fn trusted(&self, group: usize, column: usize) -> bool {
        self.0
            .get(group)
            .and_then(|g| g.get(column))
            .copied()
            .unwrap_or(false)
    }
}

/// Whether pages start at row 0 and go on in order, rows and bytes, all within `total` rows.
fn in_order(locations: &[PageLocation], total: u64) -> bool {
    let Some(first) = locations.first() else {
        return false;
    };
    first.first_row_index == 0
        && locations.windows(2).all(|pair| {
            pair[1].first_row_index > pair[0].first_row_index && pair[1].offset > pair[0].offset
        })
        && locations
            .last()
            .is_some_and(|l| (l.first_row_index.max(0) as u64) < total)
}

/// Every row in the pages of `plan` whose key (leaf column `key`) is one of `keys` the plan
/// names for its page (or, where it names any, one `any` accepts), with the leaf columns
/// `columns` (which hold `key` when it is to be answered), one batch per group of pages. `Err`
/// says why the record reader must read them instead.
///
/// Each page's rows are compared with its own keys (a lookup's one, a batch's one or two a
/// page), not looked up in a set of the whole batch: cheaper for every row read.
pub(crate) async fn read<R: AsyncFileReader>(
    reader: &mut R,
    file: FileMeta<'_>,
    key: usize,
    columns: &[usize],
    plan: &FilePlan,
    keys: &[String],
    any: &(dyn Fn(&[u8]) -> bool + Sync),
) -> Result<Vec<RecordBatch>, Skip> {
    let FileMeta {
        md,
        schema,
        order,
        dictionaries,
    } = file;
    let descr = md.file_metadata().schema_descr();
    let offsets = md.offset_index().ok_or("no page index")?;
    let flat = |c: usize| -> Result<(Field, i16), Skip> {
        let col = descr.column(c);
        if col.path().parts().len() != 1 || col.max_rep_level() != 0 || col.max_def_level() > 1 {
            return Err("nested column");
        }
        let field = schema.field_with_name(col.name()).map_err(|_| "no field")?;
        if !supported(field.data_type(), col.physical_type()) {
            return Err("type not read here");
        }
        Ok((field.clone(), col.max_def_level()))
    };
    let (key_field, key_def) = flat(key)?;
    if *key_field.data_type() != DataType::Utf8 {
        return Err("key not Utf8");
    }
    let outputs = columns
        .iter()
        .map(|&c| Ok((c, flat(c)?)))
        .collect::<Result<Vec<_>, Skip>>()?;
    let fields: Vec<Field> = outputs.iter().map(|(_, (f, _))| f.clone()).collect();
    let out_schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for (&g, ranges) in plan {
        let rg = md.row_group(g);
        let total = u64::try_from(rg.num_rows()).map_err(|_| "row count")?;
        let locations = |c: usize| -> Result<&[PageLocation], Skip> {
            let l = offsets
                .get(g)
                .and_then(|cols| cols.get(c))
                .map(|o| o.page_locations().as_slice())
                .ok_or("no offset index")?;
            if l.is_empty() { Err("no pages") } else { Ok(l) }
        };
        let key_locs = locations(key)?;
        let key_chunk = Chunk::new(
            rg.column(key),
            key_locs,
            total,
            key_def,
            order.trusted(g, key),
        )?;
        // Each key page with the keys it may hold.
        let mut pages: BTreeMap<usize, PageKeys> = BTreeMap::new();
        for (&(first, rows), numbers) in ranges {
            for p in key_chunk.pages_over(first..first.saturating_add(rows)) {
                pages.entry(p).or_default().merge(numbers);
            }
        }
        let pages: Vec<(usize, PageKeys)> = pages.into_iter().collect();
        for group in pages.chunks(PAGES_AT_ONCE) {
            let numbers: Vec<usize> = group.iter().map(|(p, _)| *p).collect();
            let fetched = fetch(reader, &[(&key_chunk, &numbers)]).await?;
            let key_pages = key_chunk.decode_all(&fetched[0], &|_| usize::MAX, true, &mut None)?;
            let mut rows = Vec::new();
            let mut found = Vec::new();
            for (p, mine) in group {
                let page = key_pages.get(p).ok_or("page")?;
                page.matching(&|k: &[u8]| mine.holds(keys, any, k), &mut found)?;
                rows.extend(
                    found
                        .drain(..)
                        .map(|(i, k)| (*p, page.first_row + i as u64, k)),
                );
            }
            if rows.is_empty() {
                continue;
            }
            rows.sort_unstable_by_key(|&(_, r, _)| r);
            // Every other column: the pages holding the matched rows.
            let mut chunks = Vec::with_capacity(outputs.len());
            for (c, (_, def)) in &outputs {
                if *c == key {
                    chunks.push(None);
                    continue;
                }
                let trusted = order.trusted(g, *c);
                let mut chunk = Chunk::new(rg.column(*c), locations(*c)?, total, *def, trusted)?;
                let kept = chunk.dictionary.as_ref().and(dictionaries.get(g, *c));
                if kept.is_some() {
                    chunk.dictionary = None;
                }
                // Each matched row's page, and how far into each page values are wanted.
                let at = rows
                    .iter()
                    .map(|&(kp, r, _)| chunk.page_of(r, kp))
                    .collect::<Result<Vec<_>, Skip>>()?;
                let mut need = BTreeMap::new();
                for (&p, &(_, r, _)) in at.iter().zip(&rows) {
                    let upto = r
                        .checked_sub(chunk.first_row(p))
                        .ok_or("row before its page")? as usize
                        + 1;
                    let n = need.entry(p).or_insert(0);
                    *n = upto.max(*n);
                }
                let pages: Vec<usize> = need.keys().copied().collect();
                chunks.push(Some((chunk, at, need, pages, kept)));
            }
            let wants: Vec<(&Chunk, &[usize])> = chunks
                .iter()
                .flatten()
                .map(|(c, _, _, pages, _)| (c, pages.as_slice()))
                .collect();
            let mut fetched = fetch(reader, &wants).await?.into_iter();
            let mut arrays = Vec::with_capacity(outputs.len());
            for ((c, (field, _)), chunk) in outputs.iter().zip(&chunks) {
                let mut col = Column::new(field.data_type(), rows.len())?;
                match chunk {
                    None => {
                        for (_, _, k) in &rows {
                            col.push(Some(Cell::Bytes(k)), field)?;
                        }
                    }
                    Some((chunk, at, need, _, kept)) => {
                        let got = fetched.next().ok_or("pages")?;
                        let upto = |p: usize| need.get(&p).copied().unwrap_or(0);
                        let mut dictionary = kept.clone();
                        let decoded = chunk.decode_all(&got, &upto, false, &mut dictionary)?;
                        if let (None, Some(d)) = (kept, &dictionary) {
                            dictionaries.keep(g, *c, d);
                        }
                        for (p, &(_, r, _)) in at.iter().zip(&rows) {
                            let page = decoded.get(p).ok_or("page")?;
                            col.push(page.cell(page.index(r)?)?, field)?;
                        }
                    }
                }
                arrays.push(col.finish(field.data_type())?);
            }
            let rows = RecordBatchOptions::new().with_row_count(Some(rows.len()));
            batches.push(
                RecordBatch::try_new_with_options(out_schema.clone(), arrays, &rows)
                    .map_err(|_| "batch shape")?,
            );
        }
    }
    Ok(batches)
}

/// Arrow types read here, with the physical type that holds them.
fn supported(t: &DataType, physical: Physical) -> bool {
    use DataType as D;
    match physical {
        Physical::BYTE_ARRAY => {
            matches!(t, D::Utf8 | D::LargeUtf8 | D::Binary | D::LargeBinary)
        }
        Physical::INT32 => matches!(
            t,
            D::Int32 | D::Date32 | D::Int8 | D::Int16 | D::UInt8 | D::UInt16
        ),
        Physical::INT64 => *t == D::Int64,
        Physical::FLOAT => *t == D::Float32,
        Physical::DOUBLE => *t == D::Float64,
        Physical::BOOLEAN => *t == D::Boolean,
        _ => false,
    }
}

/// One column chunk of one row group: where its pages are.
struct Chunk<'a> {
    meta: &'a ColumnChunkMetaData,
    locations: &'a [PageLocation],
    /// Rows in the row group.
    total: u64,
    max_def: i16,
    /// The dictionary page's bytes, when the chunk has one.
    dictionary: Option<Range<u64>>,
}

/// Bytes of one chunk's pages: the dictionary page (if the chunk has one) and each page asked.
struct Fetched {
    dictionary: Option<Bytes>,
    pages: Vec<(usize, Bytes)>,
}

impl<'a> Chunk<'a> {
    /// Column chunk `meta`, whose pages `locations` were found `in_order` (see [`PageOrder`]).
    fn new(
        meta: &'a ColumnChunkMetaData,
        locations: &'a [PageLocation],
        total: u64,
        max_def: i16,
        in_order: bool,
    ) -> Result<Self, Skip> {
        if !in_order {
            return Err("offset index out of order");
        }
        let start = meta.byte_range().0;
        let first = u64::try_from(locations[0].offset).map_err(|_| "page offset")?;
        // As the page reader decides it: bytes before the first data page are the dictionary.
        let dictionary = match first.checked_sub(start) {
            Some(0) => None,
            Some(_) => Some(start..first),
            None => return Err("page before its chunk"),
        };
        Ok(Self {
            meta,
            locations,
            total,
            max_def,
            dictionary,
        })
    }

    fn first_row(&self, p: usize) -> u64 {
        self.locations[p].first_row_index.max(0) as u64
    }

    fn end_row(&self, p: usize) -> u64 {
        self.locations
            .get(p + 1)
            .map_or(self.total, |l| l.first_row_index.max(0) as u64)
    }

    /// The page holding row `r` of the row group, tried first at page `hint`: the key
    /// column's page of the row, which is the same page where the writer cut every column's
    /// pages at the same rows (as ours does), saving a search of the page index per column.
    fn page_of(&self, r: u64, hint: usize) -> Result<usize, Skip> {
        if hint < self.locations.len() && self.first_row(hint) <= r && r < self.end_row(hint) {
            return Ok(hint);
        }
        let p = self
            .locations
            .partition_point(|l| l.first_row_index.max(0) as u64 <= r)
            .checked_sub(1)
            .ok_or("row before the first page")?;
        if r >= self.end_row(p) {
            return Err("row past the last page");
        }
        Ok(p)
    }

    /// Pages holding any row of `rows`.
    fn pages_over(&self, rows: Range<u64>) -> impl Iterator<Item = usize> + '_ {
        let from = self
            .locations
            .partition_point(|l| l.first_row_index.max(0) as u64 <= rows.start)
            .saturating_sub(1);
        (from..self.locations.len())
            .take_while(move |&p| self.first_row(p) < rows.end)
            .filter(move |&p| self.end_row(p) > rows.start)
    }

    fn range(&self, p: usize) -> Result<Range<u64>, Skip> {
        let l = &self.locations[p];
        let start = u64::try_from(l.offset).map_err(|_| "page offset")?;
        let len = u64::try_from(l.compressed_page_size).map_err(|_| "page size")?;
        Ok(start..start + len)
    }

    /// Parses and decompresses one page's bytes (header included), as far as `want` asks
    /// where the chunk's codec allows it (see `page`), else whole.
    fn page(&self, bytes: Bytes, want: Want) -> Result<Page, Skip> {
        let codec = self.meta.compression();
        if page::reads(codec) {
            return page::read(&bytes, codec, want);
        }
        let location = PageLocation {
            // The page reader names the chunk's start so it does not look for a dictionary
            // before it; [`OnePage`] answers any offset with these bytes.
            offset: i64::try_from(self.meta.byte_range().0).map_err(|_| "chunk offset")?,
            compressed_page_size: i32::try_from(bytes.len()).map_err(|_| "page size")?,
            first_row_index: 0,
        };
        let rows = usize::try_from(self.total).map_err(|_| "row count")?;
        let mut reader = SerializedPageReader::new(
            Arc::new(OnePage(bytes)),
            self.meta,
            rows,
            Some(vec![location]),
        )
        .map_err(|_| "page reader")?;
        reader
            .get_next_page()
            .map_err(|_| "page does not decode")?
            .ok_or("no page")
    }

    /// Every fetched page, decoded as far as `upto` (page → rows wanted from its start), by
    /// page number. Pages to be `scanned` are only ever read in order (see
    /// [`Decoded::matching`]). `dictionary`: the chunk's, decoded, if known (else it is decoded
    /// from the fetched bytes when a page needs it, and left there).
    fn decode_all(
        &self,
        fetched: &Fetched,
        upto: &dyn Fn(usize) -> usize,
        scanned: bool,
        dictionary: &mut Option<Arc<Plain>>,
    ) -> Result<HashMap<usize, Decoded>, Skip> {
        let mut out = HashMap::with_capacity(fetched.pages.len());
        for (p, bytes) in &fetched.pages {
            let (first, end) = (self.first_row(*p), self.end_row(*p));
            let rows = usize::try_from(end.checked_sub(first).ok_or("page rows")?)
                .map_err(|_| "page rows")?;
            let shape = Shape {
                rows,
                upto: if scanned { rows } else { upto(*p).min(rows) },
                first_row: first,
                scanned,
            };
            let want = Want::Rows {
                upto: shape.upto,
                of: rows,
            };
            let page = self.page(bytes.clone(), want)?;
            let decoded = match Decoded::new(page, shape, self, dictionary, fetched) {
                Ok(d) => d,
                // Decompressed in part, where the wanted rows' values run past the bytes
                // estimated for them: the whole page.
                Err(_) if shape.upto < rows => {
                    let page = self.page(bytes.clone(), Want::Whole)?;
                    Decoded::new(page, shape, self, dictionary, fetched)?
                }
                Err(e) => return Err(e),
            };
            out.insert(*p, decoded);
        }
        Ok(out)
    }
}

/// Reads each chunk's dictionary and asked pages, all in one call to the reader.
async fn fetch<R: AsyncFileReader>(
    reader: &mut R,
    wants: &[(&Chunk<'_>, &[usize])],
) -> Result<Vec<Fetched>, Skip> {
    let mut ranges = Vec::new();
    for (chunk, pages) in wants {
        ranges.extend(chunk.dictionary.clone());
        for &p in *pages {
            ranges.push(chunk.range(p)?);
        }
    }
    let mut got = reader
        .get_byte_ranges(ranges)
        .await
        .map_err(|_| "pages unreadable")?
        .into_iter();
    let mut out = Vec::with_capacity(wants.len());
    for (chunk, pages) in wants {
        let dictionary = match chunk.dictionary {
            Some(_) => Some(got.next().ok_or("dictionary bytes")?),
            None => None,
        };
        let pages = pages
            .iter()
            .map(|&p| Ok((p, got.next().ok_or("page bytes")?)))
            .collect::<Result<_, Skip>>()?;
        out.push(Fetched { dictionary, pages });
    }
    Ok(out)
}

/// A chunk reader over one page's bytes, whatever offset it is asked for.
struct OnePage(Bytes);

impl Length for OnePage {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

impl ChunkReader for OnePage {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, _start: u64) -> parquet::errors::Result<Self::T> {
        Ok(bytes::Buf::reader(self.0.clone()))
    }

    fn get_bytes(&self, _start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if length > self.0.len() {
            return Err(parquet::errors::ParquetError::EOF("page bytes".into()));
        }
        Ok(self.0.slice(..length))
    }
}

/// One value as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Bytes(&'a [u8]),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
}

/// Plain-encoded values.
struct Plain {
    buf: Bytes,
    physical: Physical,
    count: usize,
    /// Where each byte array starts and ends (byte arrays only).
    spans: Vec<(u32, u32)>,
}

impl Plain {
    /// `count` values; byte arrays are located one by one only when `spanned` (else they can
    /// only be [`Plain::scan`]ned).
    fn new(buf: Bytes, physical: Physical, count: usize, spanned: bool) -> Result<Self, Skip> {
        let width = match physical {
            Physical::BYTE_ARRAY => 0,
            Physical::INT32 | Physical::FLOAT => 4,
            Physical::INT64 | Physical::DOUBLE => 8,
            Physical::BOOLEAN => {
                if buf.len() < count.div_ceil(8) {
                    return Err("values cut short");
                }
                return Ok(Self {
                    buf,
                    physical,
                    count,
                    spans: Vec::new(),
                });
            }
            _ => return Err("type not read here"),
        };
        let mut spans = Vec::new();
        if width == 0 && spanned {
            // Counts come from the file: reserve no more than its bytes can hold.
            spans.reserve(count.min(buf.len() / 4));
            let mut at = 0usize;
            for _ in 0..count {
                let (start, end) = byte_array_at(&buf, at)?;
                spans.push((start as u32, end as u32));
                at = end;
            }
        } else if buf.len() < count.checked_mul(width).ok_or("value count")? {
            return Err("values cut short");
        }
        Ok(Self {
            buf,
            physical,
            count,
            spans,
        })
    }

    /// Where each byte array lies in the values (start, end), in order, checked to lie within them.
    fn scan(&self) -> impl Iterator<Item = Result<(usize, usize), Skip>> + '_ {
        let mut at = 0usize;
        (0..self.count).map(move |_| {
            let (start, end) = byte_array_at(&self.buf, at)?;
            at = end;
            Ok((start, end))
        })
    }

    fn get(&self, v: usize) -> Result<Cell<'_>, Skip> {
        if v >= self.count {
            return Err("value index past the values");
        }
        let fixed = |w: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&self.buf[v * w..v * w + w]);
            b
        };
        Ok(match self.physical {
            Physical::BYTE_ARRAY => {
                let (s, e) = *self.spans.get(v).ok_or("values not located")?;
                Cell::Bytes(&self.buf[s as usize..e as usize])
            }
            Physical::INT32 => Cell::I32(i32::from_le_bytes(fixed(4)[..4].try_into().expect("4"))),
            Physical::FLOAT => Cell::F32(f32::from_le_bytes(fixed(4)[..4].try_into().expect("4"))),
            Physical::INT64 => Cell::I64(i64::from_le_bytes(fixed(8))),
            Physical::DOUBLE => Cell::F64(f64::from_le_bytes(fixed(8))),
            Physical::BOOLEAN => Cell::Bool(self.buf[v / 8] >> (v % 8) & 1 == 1),
            _ => return Err("type not read here"),
        })
    }
}

/// Where the PLAIN byte array whose length prefix is at `at` starts and ends.
fn byte_array_at(buf: &[u8], at: usize) -> Result<(usize, usize), Skip> {
    let len = buf.get(at..at + 4).ok_or("values cut short")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let start = at + 4;
    let end = start.checked_add(len).ok_or("value length")?;
    if end > buf.len() {
        return Err("values cut short");
    }
    Ok((start, end))
}

/// A data page whose values can be taken by row, for its first `upto` rows.
struct Decoded {
    first_row: u64,
    upto: usize,
    /// Per row: its value's index, or `u32::MAX` for a null (`None`: no nulls possible).
    present: Option<Vec<u32>>,
    values: Values,
}

/// Where a page's rows are, and how many of them are wanted.
#[derive(Clone, Copy)]
struct Shape {
    /// Rows in the page.
    rows: usize,
    /// Rows wanted, from the first (their levels and values alone are decoded).
    upto: usize,
    /// The page's first row in its row group.
    first_row: u64,
    /// Only scanned in order: byte arrays are not located one by one.
    scanned: bool,
}

enum Values {
    Plain(Plain),
    Dictionary {
        indices: Vec<u32>,
        dictionary: Arc<Plain>,
    },
}

impl Decoded {
    fn new(
        page: Page,
        shape: Shape,
        chunk: &Chunk,
        dictionary: &mut Option<Arc<Plain>>,
        fetched: &Fetched,
    ) -> Result<Self, Skip> {
        let physical = chunk.meta.column_type();
        let Shape {
            rows,
            upto,
            first_row,
            scanned,
        } = shape;
        let (buf, encoding, levels) = match page {
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                ..
            } => {
                if num_values as usize != rows {
                    return Err("page values are not its rows");
                }
                if chunk.max_def == 0 {
                    (buf, encoding, None)
                } else {
                    if def_level_encoding != Encoding::RLE {
                        return Err("level encoding not read here");
                    }
                    let len = buf.get(..4).ok_or("levels cut short")?;
                    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
                    let levels = buf.get(4..4 + len).ok_or("levels cut short")?;
                    let levels = hybrid(levels, 1, upto)?;
                    (buf.slice(4 + len..), encoding, Some(levels))
                }
            }
            Page::DataPageV2 {
                buf,
                num_values,
                num_rows,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                // The record reader counts a page's levels by `num_values`: flat, that is rows.
                if num_rows as usize != rows
                    || num_values as usize != rows
                    || rep_levels_byte_len != 0
                {
                    return Err("page rows or levels not read here");
                }
                let len = def_levels_byte_len as usize;
                let levels = match chunk.max_def {
                    0 => None,
                    _ => Some(hybrid(buf.get(..len).ok_or("levels cut short")?, 1, upto)?),
                };
                (buf.slice(len.min(buf.len())..), encoding, levels)
            }
            Page::DictionaryPage { .. } => return Err("dictionary page where data was due"),
        };
        let (present, count) = match levels {
            None => (None, upto),
            Some(levels) => {
                let mut n = 0u32;
                let present = levels
                    .iter()
                    .map(|&d| {
                        if d == 1 {
                            n += 1;
                            n - 1
                        } else {
                            u32::MAX
                        }
                    })
                    .collect();
                (Some(present), n as usize)
            }
        };
        let values = match encoding {
            Encoding::PLAIN => Values::Plain(Plain::new(buf, physical, count, !scanned)?),
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                let dictionary = match dictionary {
                    Some(d) => d.clone(),
                    None => {
                        let bytes = fetched.dictionary.clone().ok_or("no dictionary page")?;
                        let Page::DictionaryPage {
                            buf,
                            num_values,
                            encoding,
                            ..
                        } = chunk.page(bytes, Want::Whole)?
                        else {
                            return Err("dictionary is not a dictionary page");
                        };
                        if !matches!(
                            encoding,
                            Encoding::PLAIN | Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY
                        ) {
                            return Err("dictionary encoding not read here");
                        }
                        let d = Arc::new(Plain::new(buf, physical, num_values as usize, true)?);
                        *dictionary = Some(d.clone());
                        d
                    }
                };
                let width = *buf.first().ok_or("indices cut short")?;
                if width > 32 {
                    return Err("index width");
                }
                let indices = hybrid(&buf[1..], u32::from(width), count)?;
                if indices.iter().any(|&i| i as usize >= dictionary.count) {
                    return Err("index past the dictionary");
                }
                Values::Dictionary {
                    indices,
                    dictionary,
                }
            }
            _ => return Err("encoding not read here"),
        };
        Ok(Self {
            first_row,
            upto,
            present,
            values,
        })
    }

    /// Rows of the page (as far as decoded) whose key `wanted` accepts, each with its key.
    fn matching(
        &self,
        wanted: &(dyn Fn(&[u8]) -> bool + Sync),
        out: &mut Vec<(usize, Bytes)>,
    ) -> Result<(), Skip> {
        match &self.values {
            Values::Plain(plain) if plain.physical == Physical::BYTE_ARRAY => {
                // Values in order, one per row that is not null.
                // Keys are compared in place; only a match is cut out of the page.
                let mut keys = plain.scan();
                let mut check = |i: usize| -> Result<(), Skip> {
                    let (s, e) = keys.next().ok_or("values cut short")??;
                    if wanted(&plain.buf[s..e]) {
                        out.push((i, plain.buf.slice(s..e)));
                    }
                    Ok(())
                };
                match &self.present {
                    None => (0..self.upto).try_for_each(&mut check)?,
                    Some(p) => (0..p.len())
                        .filter(|&i| p[i] != u32::MAX)
                        .try_for_each(&mut check)?,
                }
            }
            Values::Dictionary {
                indices,
                dictionary,
            } if dictionary.physical == Physical::BYTE_ARRAY => {
                for i in 0..self.upto {
                    let v = match &self.present {
                        None => i,
                        Some(p) if p[i] == u32::MAX => continue,
                        Some(p) => p[i] as usize,
                    };
                    let d = *indices.get(v).ok_or("index past the values")? as usize;
                    let (s, e) = *dictionary.spans.get(d).ok_or("index past the dictionary")?;
                    let (s, e) = (s as usize, e as usize);
                    if wanted(&dictionary.buf[s..e]) {
                        out.push((i, dictionary.buf.slice(s..e)));
                    }
                }
            }
            _ => return Err("key not bytes"),
        }
        Ok(())
    }

    fn value(&self, v: usize) -> Result<Cell<'_>, Skip> {
        match &self.values {
            Values::Plain(plain) => plain.get(v),
            Values::Dictionary {
                indices,
                dictionary,
            } => dictionary.get(*indices.get(v).ok_or("index past the values")? as usize),
        }
    }

    /// Row `r` of the row group as a row of this page.
    fn index(&self, r: u64) -> Result<usize, Skip> {
        let i = r.checked_sub(self.first_row).ok_or("row before the page")? as usize;
        if i >= self.upto {
            return Err("row past the page");
        }
        Ok(i)
    }

    /// The value of the page's row `i` (`None`: null).
    fn cell(&self, i: usize) -> Result<Option<Cell<'_>>, Skip> {
        let v = match &self.present {
            None => i,
            Some(p) => match *p.get(i).ok_or("row past the page")? {
                u32::MAX => return Ok(None),
                v => v as usize,
            },
        };
        self.value(v).map(Some)
    }
}

/// `n` values of the RLE / bit-packed hybrid encoding, `width` bits each.
fn hybrid(mut buf: &[u8], width: u32, n: usize) -> Result<Vec<u32>, Skip> {
    // `n` comes from the file: reserve no more than a page's worth ahead.
    let mut out = Vec::with_capacity(n.min(1 << 16));
    let bytes = width.div_ceil(8) as usize;
    let mask = if width == 32 {
        u32::MAX
    } else {
        (1u32 << width) - 1
    };
    while out.len() < n {
        let (header, used) = uleb128(buf)?;
        buf = &buf[used..];
        if header & 1 == 1 {
            let groups = usize::try_from(header >> 1).map_err(|_| "run length")?;
            let len = groups.checked_mul(width as usize).ok_or("run length")?;
            let run = buf.get(..len).ok_or("run cut short")?;
            buf = &buf[len..];
            let take = groups.saturating_mul(8).min(n - out.len());
            if (1..=8).contains(&width) {
                // Eight values of `width` bits fill `width` bytes: one word per group.
                let w = width as usize;
                for g in 0..take.div_ceil(8) {
                    let mut word = [0u8; 8];
                    word[..w].copy_from_slice(&run[g * w..g * w + w]);
                    let bits = u64::from_le_bytes(word);
                    for j in 0..(take - g * 8).min(8) {
                        out.push((bits >> (j * w)) as u32 & mask);
                    }
                }
                continue;
            }
            for i in 0..take {
                let bit = i * width as usize;
                let mut word = [0u8; 8];
                let from = bit / 8;
                let upto = (from + 8).min(run.len());
                word[..upto - from].copy_from_slice(&run[from..upto]);
                out.push((u64::from_le_bytes(word) >> (bit % 8)) as u32 & mask);
            }
        } else {
            let count = usize::try_from(header >> 1).map_err(|_| "run length")?;
            if count == 0 {
                return Err("empty run");
            }
            let v = buf.get(..bytes).ok_or("run cut short")?;
            let mut word = [0u8; 4];
            word[..bytes].copy_from_slice(v);
            buf = &buf[bytes..];
            // A run's value wider than its width is damage (parquet's readers do not mask it).
            let v = u32::from_le_bytes(word);
            if v > mask {
                return Err("run value too wide");
            }
            out.extend(std::iter::repeat_n(v, count.min(n - out.len())));
        }
    }
    Ok(out)
}

/// An unsigned LEB128 number and the bytes it took.
fn uleb128(buf: &[u8]) -> Result<(u64, usize), Skip> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err("run header")
}

/// One answered column being built.
enum Column {
    Utf8(StringBuilder),
    LargeUtf8(LargeStringBuilder),
    Binary(BinaryBuilder),
    LargeBinary(LargeBinaryBuilder),
    Bool(BooleanBuilder),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
}

impl Column {
    fn new(t: &DataType, rows: usize) -> Result<Self, Skip> {
        use DataType as D;
        Ok(match t {
            D::Utf8 => Self::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
            D::LargeUtf8 => Self::LargeUtf8(LargeStringBuilder::with_capacity(rows, rows * 16)),
            D::Binary => Self::Binary(BinaryBuilder::with_capacity(rows, rows * 16)),
            D::LargeBinary => Self::LargeBinary(LargeBinaryBuilder::with_capacity(rows, rows * 16)),
            D::Boolean => Self::Bool(BooleanBuilder::with_capacity(rows)),
            D::Int32 | D::Date32 | D::Int8 | D::Int16 | D::UInt8 | D::UInt16 => {
                Self::I32(Vec::with_capacity(rows))
            }
            D::Int64 => Self::I64(Vec::with_capacity(rows)),
            D::Float32 => Self::F32(Vec::with_capacity(rows)),
            D::Float64 => Self::F64(Vec::with_capacity(rows)),
            _ => return Err("type not read here"),
        })
    }

    fn push(&mut self, cell: Option<Cell<'_>>, field: &Field) -> Result<(), Skip> {
        let text = |b| std::str::from_utf8(b).map_err(|_| "not UTF-8");
        match (self, cell) {
            (_, None) if !field.is_nullable() => return Err("null in a column without nulls"),
            (Self::Utf8(b), None) => b.append_null(),
            (Self::LargeUtf8(b), None) => b.append_null(),
            (Self::Binary(b), None) => b.append_null(),
            (Self::LargeBinary(b), None) => b.append_null(),
            (Self::Bool(b), None) => b.append_null(),
            (Self::I32(v), None) => v.push(None),
            (Self::I64(v), None) => v.push(None),
            (Self::F32(v), None) => v.push(None),
            (Self::F64(v), None) => v.push(None),
            (Self::Utf8(b), Some(Cell::Bytes(x))) => b.append_value(text(x)?),
            (Self::LargeUtf8(b), Some(Cell::Bytes(x))) => b.append_value(text(x)?),
            (Self::Binary(b), Some(Cell::Bytes(x))) => b.append_value(x),
            (Self::LargeBinary(b), Some(Cell::Bytes(x))) => b.append_value(x),
            (Self::Bool(b), Some(Cell::Bool(x))) => b.append_value(x),
            (Self::I32(v), Some(Cell::I32(x))) => v.push(Some(x)),
            (Self::I64(v), Some(Cell::I64(x))) => v.push(Some(x)),
            (Self::F32(v), Some(Cell::F32(x))) => v.push(Some(x)),
            (Self::F64(v), Some(Cell::F64(x))) => v.push(Some(x)),
            _ => return Err("value of another type"),
        }
        Ok(())
    }

    fn finish(self, t: &DataType) -> Result<ArrayRef, Skip> {
        Ok(match self {
            Self::Utf8(mut b) => Arc::new(b.finish()),
            Self::LargeUtf8(mut b) => Arc::new(b.finish()),
            Self::Binary(mut b) => Arc::new(b.finish()),
            Self::LargeBinary(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::I32(v) => {
                let a = Int32Array::from(v);
                match t {
                    DataType::Int32 => Arc::new(a),
                    DataType::Date32 => Arc::new(a.reinterpret_cast::<Date32Type>()),
                    // Narrow integers are stored widened; a value out of range is not theirs.
                    _ => {
                        let nulls = a.null_count();
                        let cast = arrow::compute::cast(&a, t).map_err(|_| "narrow integer")?;
                        if cast.null_count() != nulls {
                            return Err("narrow integer out of range");
                        }
                        cast
                    }
                }
            }
            Self::I64(v) => Arc::new(Int64Array::from(v)),
            Self::F32(v) => Arc::new(Float32Array::from(v)),
            Self::F64(v) => Arc::new(Float64Array::from(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        AsArray, BinaryArray, BooleanArray, Date32Array, Float32Array, Int16Array,
        LargeStringArray, StringArray, TimestampMillisecondArray,
    };
    use arrow::compute::{concat_batches, filter_record_batch};
    use futures::future::BoxFuture;
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::basic::Compression;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A file in memory that counts the bytes read from it.
    struct Counted(Bytes, Arc<AtomicU64>);

    impl AsyncFileReader for Counted {
        fn get_bytes(&mut self, r: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
            self.1.fetch_add(r.end - r.start, Ordering::Relaxed);
            let b = self.0.slice(r.start as usize..r.end as usize);
            Box::pin(async move { Ok(b) })
        }

        fn get_metadata<'a>(
            &'a mut self,
            _: Option<&'a ArrowReaderOptions>,
        ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
            Box::pin(async { Err(parquet::errors::ParquetError::General("unused".into())) })
        }
    }

    #[derive(Debug, Clone)]
    struct Layout {
        dictionary: bool,
        v2: bool,
        lz4: bool,
        page_rows: usize,
        /// A page byte limit, checked every few rows: wide columns' pages then end at rows
        /// other than narrow ones'.
        page_bytes: Option<usize>,
        group_rows: usize,
        rows: usize,
    }

    /// Rows keyed `k00000`, `k00000`, `k00001`, ... (each key twice), every 13th key null, with
    /// a column of each type read here, nulls in the nullable ones.
    fn file(l: &Layout) -> Bytes {
        let n = l.rows;
        let key = |i: usize| (i % 13 != 5).then(|| format!("k{:05}", i / 2));
        let some = |i: usize, k: usize| i % k != 1;
        let cols: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(StringArray::from_iter((0..n).map(key)))),
            (
                "name",
                Arc::new(StringArray::from_iter(
                    (0..n).map(|i| some(i, 4).then(|| format!("名字{}", i * 7))),
                )),
            ),
            (
                "town",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["东城", "西城", "南湖"][i % 3]),
                )),
            ),
            (
                "n32",
                Arc::new(Int32Array::from_iter(
                    (0..n).map(|i| some(i, 5).then_some(i as i32 - 700)),
                )),
            ),
            (
                "born",
                Arc::new(Date32Array::from_iter_values(
                    (0..n).map(|i| 3000 + i as i32),
                )),
            ),
            (
                "n64",
                Arc::new(Int64Array::from_iter(
                    (0..n).map(|i| some(i, 3).then_some(i as i64 * 1_000_000_007)),
                )),
            ),
            (
                "f64",
                Arc::new(Float64Array::from_iter_values(
                    (0..n).map(|i| i as f64 / 8.0),
                )),
            ),
            (
                "f32",
                Arc::new(Float32Array::from_iter(
                    (0..n).map(|i| some(i, 6).then_some(i as f32 * 0.5)),
                )),
            ),
            (
                "flag",
                Arc::new(BooleanArray::from_iter(
                    (0..n).map(|i| some(i, 7).then_some(i % 3 == 0)),
                )),
            ),
            (
                "small",
                Arc::new(Int16Array::from_iter_values(
                    (0..n).map(|i| (i % 600) as i16 - 300),
                )),
            ),
            (
                "raw",
                Arc::new(BinaryArray::from_iter(
                    (0..n).map(|i| some(i, 9).then(|| vec![i as u8; i % 5])),
                )),
            ),
            (
                "large",
                Arc::new(LargeStringArray::from_iter_values(
                    (0..n).map(|i| "x".repeat(i % 4)),
                )),
            ),
        ];
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        // `try_from_iter` makes every field nullable: mark the ones without nulls required.
        let required = ["town", "born", "f64", "small", "large"];
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_nullable(!required.contains(&f.name().as_str()))
            })
            .collect();
        let batch =
            RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec()).unwrap();
        let props = WriterProperties::builder()
            .set_dictionary_enabled(l.dictionary)
            // Version 2 writers fall back to delta encodings, which are left to the record
            // reader (see below): values that do not fit the dictionary are plain here.
            .set_encoding(Encoding::PLAIN)
            .set_writer_version(if l.v2 {
                WriterVersion::PARQUET_2_0
            } else {
                WriterVersion::PARQUET_1_0
            })
            .set_compression(if l.lz4 {
                Compression::LZ4_RAW
            } else {
                Compression::UNCOMPRESSED
            })
            .set_data_page_row_count_limit(l.page_rows)
            .set_data_page_size_limit(l.page_bytes.unwrap_or(1 << 20))
            .set_write_batch_size(match l.page_bytes {
                Some(_) => l.page_rows.div_ceil(4),
                None => l.page_rows,
            })
            .set_max_row_group_row_count(Some(l.group_rows))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    fn metadata(bytes: &Bytes) -> ParquetMetaData {
        ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(bytes)
            .unwrap()
    }

    /// What the record reader answers: every row, those with a wanted key kept.
    fn reference(bytes: &Bytes, wanted: &[String], columns: &[usize]) -> RecordBatch {
        let all = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let all = concat_batches(&all[0].schema(), &all).unwrap();
        let ids = all.column(0).as_string::<i32>();
        let keep = BooleanArray::from_iter(
            ids.iter()
                .map(|k| Some(k.is_some_and(|k| wanted.iter().any(|w| w == k)))),
        );
        filter_record_batch(&all, &keep)
            .unwrap()
            .project(columns)
            .unwrap()
    }

    /// The point read of `ranges` in every row group (`None`: each group whole).
    fn point(
        bytes: &Bytes,
        wanted: &[String],
        columns: &[usize],
        ranges: Option<&dyn Fn(usize) -> BTreeSet<(u64, u64)>>,
    ) -> (Result<Vec<RecordBatch>, Skip>, u64) {
        point_keeping(bytes, wanted, columns, ranges, &Dictionaries::default())
    }

    /// As [`point`], keeping the file's dictionaries in `dictionaries`.
    fn point_keeping(
        bytes: &Bytes,
        wanted: &[String],
        columns: &[usize],
        ranges: Option<&dyn Fn(usize) -> BTreeSet<(u64, u64)>>,
        dictionaries: &Dictionaries,
    ) -> (Result<Vec<RecordBatch>, Skip>, u64) {
        let md = metadata(bytes);
        let schema = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .schema()
            .clone();
        // Every key in every range: the read must find each in its own page (past eight keys,
        // a range may hold any of them, as a batch's do where pages overlap).
        let mut every = PageKeys::default();
        (0..wanted.len() as u32).for_each(|n| every.add(n));
        let plan: FilePlan = (0..md.num_row_groups())
            .map(|g| {
                let whole = BTreeSet::from([(0, md.row_group(g).num_rows() as u64)]);
                let ranges = ranges.map_or(whole, |f| f(g));
                (g, ranges.into_iter().map(|r| (r, every.clone())).collect())
            })
            .collect();
        let read = Arc::new(AtomicU64::new(0));
        let mut reader = Counted(bytes.clone(), read.clone());
        let got = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_rows(
                &mut reader,
                FileMeta {
                    md: &md,
                    schema: &schema,
                    order: &PageOrder::of(&md),
                    dictionaries,
                },
                columns,
                &plan,
                wanted,
            ));
        (got, read.load(Ordering::Relaxed))
    }

    async fn read_rows(
        reader: &mut Counted,
        file: FileMeta<'_>,
        columns: &[usize],
        plan: &FilePlan,
        keys: &[String],
    ) -> Result<Vec<RecordBatch>, Skip> {
        let any = |k: &[u8]| keys.iter().any(|w| w.as_bytes() == k);
        read(reader, file, 0, columns, plan, keys, &any).await
    }

    fn layouts() -> impl Strategy<Value = Layout> {
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..80,
            proptest::option::of(32usize..1024),
            40usize..700,
            1usize..1500,
        )
            .prop_map(
                |(dictionary, v2, lz4, page_rows, page_bytes, group_rows, rows)| Layout {
                    dictionary,
                    v2,
                    lz4,
                    page_rows,
                    page_bytes,
                    group_rows,
                    rows,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the layout, the point read takes every file written here and answers
        /// exactly the rows and values the record reader does, for any keys and columns.
        #[test]
        fn point_reads_answer_what_the_record_reader_does(
            l in layouts(),
            picks in proptest::collection::vec(0usize..900, 0..12),
            columns in proptest::sample::subsequence((1usize..12).collect::<Vec<_>>(), 0..11),
            with_key in any::<bool>(),
        ) {
            let bytes = file(&l);
            let wanted: Vec<String> = picks.iter().map(|p| format!("k{p:05}")).collect();
            let mut columns = columns;
            if with_key {
                columns.insert(0, 0);
            }
            let want = reference(&bytes, &wanted, &columns);
            let (got, _) = point(&bytes, &wanted, &columns, None);
            let got = got.map_err(|why| TestCaseError::fail(format!("{l:?}: left to the record reader: {why}")))?;
            let got = if got.is_empty() {
                RecordBatch::new_empty(want.schema())
            } else {
                concat_batches(&got[0].schema(), &got).unwrap()
            };
            prop_assert_eq!(got.schema(), want.schema());
            prop_assert_eq!(got.num_rows(), want.num_rows());
            for (g, w) in got.columns().iter().zip(want.columns()) {
                prop_assert_eq!(g.to_data(), w.to_data(), "{:?}", l);
            }
        }

        /// A page whose bytes are damaged is never a panic: the read is left to the record
        /// reader, or (a damaged value the format cannot tell) answered as read.
        #[test]
        fn damaged_pages_are_refused_not_a_panic(
            at in 0.0f64..1.0,
            flips in proptest::collection::vec(any::<u8>(), 1..6),
            lz4 in any::<bool>(),
        ) {
            let l = Layout { dictionary: true, v2: false, lz4, page_rows: 50, page_bytes: None, group_rows: 400, rows: 900 };
            let bytes = file(&l);
            let md = metadata(&bytes);
            let data_end = md.row_group(md.num_row_groups() - 1).columns().last().unwrap().byte_range();
            let data_end = (data_end.0 + data_end.1) as usize;
            let mut damaged = bytes.to_vec();
            let from = 4 + ((data_end - 4 - flips.len()) as f64 * at) as usize;
            for (i, f) in flips.iter().enumerate() {
                damaged[from + i] ^= f | 1;
            }
            let wanted: Vec<String> = (0..450).step_by(7).map(|p| format!("k{p:05}")).collect();
            let _ = point(&Bytes::from(damaged), &wanted, &(0..12).collect::<Vec<_>>(), None);
        }
    }

    /// `batch` as a Parquet file written with `props`.
    fn written(batch: &RecordBatch, props: WriterProperties) -> Bytes {
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
        Bytes::from(buf)
    }

    /// 8,000 rows in groups of 4,096, pages of 64 rows, LZ4.
    fn small_pages(dictionary: bool) -> Layout {
        Layout {
            dictionary,
            v2: false,
            lz4: true,
            page_rows: 64,
            page_bytes: None,
            group_rows: 4096,
            rows: 8000,
        }
    }

    #[test]
    fn a_one_key_read_fetches_its_pages_only() {
        let l = small_pages(false);
        let bytes = file(&l);
        let md = metadata(&bytes);
        let key_pages = md.offset_index().unwrap()[0][0].page_locations().clone();
        let page = key_pages
            .iter()
            .position(|p| p.first_row_index > 1000)
            .unwrap();
        let (first, end) = (
            key_pages[page].first_row_index,
            key_pages[page + 1].first_row_index,
        );
        let key = format!("k{:05}", (first + 2) / 2);
        let one = BTreeSet::from([(first as u64, (end - first) as u64)]);
        let only = |g: usize| if g == 0 { one.clone() } else { BTreeSet::new() };
        let columns: Vec<usize> = (0..12).collect();
        let (got, read) = point(&bytes, std::slice::from_ref(&key), &columns, Some(&only));
        let got = got.unwrap();
        let rows: usize = got.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "the key's two rows");
        assert_eq!(got[0].column(0).as_string::<i32>().value(0), key);
        assert!(
            read < bytes.len() as u64 / 20,
            "{read} of {} bytes read",
            bytes.len()
        );
        // A key absent from its page: the key page is read, nothing else.
        let absent = "k00000x".to_string();
        let (got, read_absent) = point(&bytes, &[absent], &columns, Some(&only));
        assert!(got.unwrap().is_empty());
        assert!(read_absent < read / 5, "{read_absent} against {read}");
    }

    /// A file's small dictionaries are read and decoded once: a second read of the same rows
    /// fetches fewer bytes and answers the same.
    #[test]
    fn small_dictionaries_are_read_once_per_file() {
        let l = small_pages(true);
        let bytes = file(&l);
        let dictionaries = Dictionaries::default();
        let columns: Vec<usize> = (0..12).collect();
        let key = vec!["k01234".to_string()];
        let (first, read_first) = point_keeping(&bytes, &key, &columns, None, &dictionaries);
        let (again, read_again) = point_keeping(&bytes, &key, &columns, None, &dictionaries);
        let (first, again) = (first.unwrap(), again.unwrap());
        assert_eq!(first.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert_eq!(first, again);
        assert!(read_again < read_first, "{read_again} against {read_first}");
        let fresh = point(&bytes, &key, &columns, None).1;
        assert_eq!(
            fresh, read_first,
            "a fresh file's dictionaries are read again"
        );
        let kept = dictionaries.kept.lock().unwrap();
        assert!(!kept.by_chunk.is_empty() && kept.bytes <= KEPT_PER_FILE);
    }

    /// A page's keys stay a short list, a key added twice counted once; past the limit, the
    /// page may hold any key, however many more are added.
    #[test]
    fn a_page_names_a_few_keys_or_any() {
        let mut keys = PageKeys::default();
        for n in (0..PAGE_KEYS as u32).chain([3, 0]) {
            keys.add(n);
        }
        assert_eq!(keys.0.as_deref().map(<[u32]>::len), Some(PAGE_KEYS));
        keys.add(PAGE_KEYS as u32);
        assert!(keys.0.is_none());
        (0..100_000).for_each(|n| keys.add(n));
        assert!(keys.0.is_none());
    }

    #[test]
    fn an_offset_index_out_of_order_is_refused() {
        let l = Layout {
            dictionary: false,
            v2: false,
            lz4: true,
            page_rows: 10,
            page_bytes: None,
            group_rows: 100,
            rows: 100,
        };
        let md = metadata(&file(&l));
        assert!(PageOrder::of(&md).trusted(0, 1));
        let good = md.offset_index().unwrap()[0][1].page_locations().clone();
        assert!(in_order(&good, 100));
        let meta = md.row_group(0).column(1);
        assert!(Chunk::new(meta, &good, 100, 1, true).is_ok());
        assert!(Chunk::new(meta, &good, 100, 1, false).is_err());
        let mut back = good.clone();
        back[2].first_row_index = back[1].first_row_index - 1;
        let mut late = good.clone();
        late[0].first_row_index = 3;
        let mut past = good.clone();
        past.last_mut().unwrap().first_row_index = 100;
        let mut swapped = good.clone();
        swapped.swap(3, 4);
        for bad in [back, late, past, swapped] {
            assert!(!in_order(&bad, 100), "{bad:?}");
        }
    }

    #[test]
    fn columns_of_other_types_are_left_to_the_record_reader() {
        let stamps = TimestampMillisecondArray::from_iter_values([1, 2, 3]);
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(StringArray::from_iter_values(["a", "b", "c"])) as ArrayRef,
            ),
            ("at", Arc::new(stamps) as ArrayRef),
        ])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let bytes = Bytes::from(buf);
        let (got, _) = point(&bytes, &["b".into()], &[0, 1], None);
        assert_eq!(got.unwrap_err(), "type not read here");
        let (got, _) = point(&bytes, &["b".into()], &[0], None);
        assert_eq!(got.unwrap().len(), 1, "the key column alone is read here");
        // Delta encodings, as version 2 writers choose without a dictionary.
        let props = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_dictionary_enabled(false)
            .build();
        let (got, _) = point(&written(&batch, props), &["b".into()], &[0], None);
        assert_eq!(got.unwrap_err(), "encoding not read here");
    }

    /// One page of 2,000 rows whose first half's values are long and second half's short: a
    /// row early in the page is answered from part of it, and a row whose values lie past the
    /// estimate for them from the whole page, both as the record reader answers.
    #[test]
    fn pages_are_decompressed_as_far_as_their_wanted_rows() {
        let n = 2_000usize;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("k{i:05}")),
                )) as ArrayRef,
            ),
            (
                "note",
                Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                    let long = i < n / 2;
                    format!(
                        "{i}:{}",
                        if long {
                            "长文本".repeat(60)
                        } else {
                            "x".into()
                        }
                    )
                }))) as ArrayRef,
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_compression(Compression::LZ4_RAW)
            .set_data_page_row_count_limit(n)
            .set_data_page_size_limit(64 << 20)
            .set_write_batch_size(n)
            .build();
        let bytes = written(&batch, props);
        let md = metadata(&bytes);
        let locations = md.offset_index().unwrap()[0][1].page_locations().clone();
        assert_eq!(locations.len(), 1, "one page");
        let chunk = Chunk::new(md.row_group(0).column(1), &locations, n as u64, 0, true).unwrap();
        let range = chunk.range(0).unwrap();
        let page_bytes = bytes.slice(range.start as usize..range.end as usize);
        let body = |want| match chunk.page(page_bytes.clone(), want).unwrap() {
            Page::DataPage { buf, .. } => buf,
            other => panic!("{other:?}"),
        };
        let whole = body(Want::Whole);
        let part = body(Want::Rows { upto: 10, of: n });
        assert!(
            part.len() < whole.len() / 4,
            "{} of {}",
            part.len(),
            whole.len()
        );
        assert_eq!(part, whole.slice(..part.len()));
        for row in [5usize, 700, 1_100, 1_999] {
            let key = format!("k{row:05}");
            let want = reference(&bytes, std::slice::from_ref(&key), &[0, 1]);
            let (got, _) = point(&bytes, &[key], &[0, 1], None);
            let got = got.expect("read here, not left to the record reader");
            assert_eq!(got.len(), 1);
            assert_eq!(
                got[0].column(1).to_data(),
                want.column(1).to_data(),
                "row {row}"
            );
        }
    }

    #[test]
    fn hybrid_runs_decode_as_written() {
        // An RLE run of 5 threes (width 2), then one bit-packed group of 8: 0..8 at width 3.
        let mut buf = vec![5 << 1, 3];
        buf.push(1 << 1 | 1);
        let mut bits = 0u32;
        for i in 0..8u32 {
            bits |= i << (3 * i);
        }
        buf.extend_from_slice(&bits.to_le_bytes()[..3]);
        let got = hybrid(&buf[..2], 2, 5).unwrap();
        assert_eq!(got, [3; 5]);
        let mut wide = vec![5 << 1, 3, 1 << 1 | 1];
        wide.extend_from_slice(&bits.to_le_bytes()[..3]);
        // Width 3 throughout: the RLE value takes one byte.
        let got = hybrid(&wide, 3, 13).unwrap();
        assert_eq!(got, [3, 3, 3, 3, 3, 0, 1, 2, 3, 4, 5, 6, 7]);
        // Fewer values wanted than the group holds: the rest are ignored.
        assert_eq!(hybrid(&wide, 3, 7).unwrap(), [3, 3, 3, 3, 3, 0, 1]);
        assert!(
            hybrid(&wide, 3, 14).is_err(),
            "runs end before the values do"
        );
        assert!(hybrid(&[0, 1], 1, 1).is_err(), "an empty run never ends");
        assert!(hybrid(&[0x80, 0x80], 1, 1).is_err(), "a header cut short");
        // An RLE value wider than the width: damage, not a value to mask.
        assert!(hybrid(&[2 << 1, 2], 1, 2).is_err());
        // A bit-packed run of zero width and absurd length: no overflow, just the values asked.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert_eq!(hybrid(&huge, 0, 10).unwrap(), [0; 10]);
    }
}
