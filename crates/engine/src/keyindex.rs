//! An in-memory index of a table's key column, built from the cached Parquet page indexes:
//! for every data page, its smallest and largest key and where its rows are. A point lookup
//! finds its page by binary search and reads that page only; a key outside every page's range is
//! answered as absent without touching Parquet. Once the key filter (a Bloom filter of every key,
//! ~10 bits a key, ~1% false positives) is built, an absent key inside a page's range is answered
//! the same way.

use std::sync::OnceLock;

use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;

/// One data page of the key column.
#[derive(Debug, Clone)]
pub(crate) struct PageEntry {
    pub(crate) min: Box<[u8]>,
    pub(crate) max: Box<[u8]>,
    /// File number in listing order.
    pub(crate) file: u32,
    pub(crate) row_group: u32,
    /// First row of the page within its row group.
    pub(crate) first_row: u64,
    pub(crate) rows: u64,
}

/// Pages of one table's key column, sorted by smallest key.
#[derive(Debug, Default)]
pub(crate) struct KeyIndex {
    pages: Vec<PageEntry>,
    /// Pages do not overlap once sorted (files and row groups sorted by key; a key repeated
    /// across a page boundary may touch): binary search finds every candidate. Otherwise every
    /// page is checked.
    disjoint: bool,
    /// Row groups without a usable page index (searched whole when their range may hold a key).
    whole: Vec<PageEntry>,
    /// Every key of the table, once read (in the background for large tables).
    pub(crate) filter: OnceLock<KeyFilter>,
}

/// A Bloom filter of keys: "certainly absent" or "maybe present".
#[derive(Debug)]
pub(crate) struct KeyFilter {
    bits: Vec<u64>,
}

/// Probes per key: with 10 bits a key, about 1% false positives.
const PROBES: u64 = 7;

fn hashes(key: &[u8]) -> (u64, u64) {
    // FNV-1a, then a SplitMix64 finaliser for the second hash (double hashing).
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (h, (z ^ (z >> 31)) | 1)
}

impl KeyFilter {
    /// An empty filter sized for `keys` keys.
    pub(crate) fn with_capacity(keys: u64) -> Self {
        let words = (keys.saturating_mul(10) / 64).max(1) as usize;
        Self {
            bits: vec![0; words],
        }
    }

    /// The bit positions of `key` in a filter of `bits` bits.
    fn positions(key: &[u8], bits: u64) -> impl Iterator<Item = usize> {
        let (h1, h2) = hashes(key);
        (0..PROBES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
    }

    pub(crate) fn insert(&mut self, key: &[u8]) {
        for p in Self::positions(key, self.bits.len() as u64 * 64) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        Self::positions(key, self.bits.len() as u64 * 64)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

impl KeyIndex {
    /// Builds the index from each file's metadata (listing order) and the key column's position.
    pub(crate) fn build(files: &[(&ParquetMetaData, usize)]) -> Self {
        let mut pages = Vec::new();
        let mut whole = Vec::new();
        for (f, (md, key)) in files.iter().enumerate() {
            for g in 0..md.num_row_groups() {
                let rg = md.row_group(g);
                let indexed = md
                    .column_index()
                    .zip(md.offset_index())
                    .and_then(|(ci, oi)| Some((ci.get(g)?.get(*key)?, oi.get(g)?.get(*key)?)));
                let mut done = false;
                if let Some((ColumnIndexMetaData::BYTE_ARRAY(ci), oi)) = indexed {
                    let locs = oi.page_locations();
                    let n = locs.len();
                    let mut ok = true;
                    let mut these = Vec::with_capacity(n);
                    for p in 0..n {
                        let (Some(min), Some(max)) = (ci.min_value(p), ci.max_value(p)) else {
                            ok = ci.is_null_page(p);
                            if ok {
                                continue;
                            }
                            break;
                        };
                        let first = locs[p].first_row_index as u64;
                        let end = locs
                            .get(p + 1)
                            .map_or(rg.num_rows() as u64, |l| l.first_row_index as u64);
                        these.push(PageEntry {
                            min: min.into(),
                            max: max.into(),
                            file: f as u32,
                            row_group: g as u32,
                            first_row: first,
                            rows: end.saturating_sub(first),
                        });
                    }
                    if ok {
                        pages.extend(these);
                        done = true;
                    }
                }
                if !done {
                    let stats = rg.column(*key).statistics();
                    let range = stats.and_then(|s| Some((s.min_bytes_opt()?, s.max_bytes_opt()?)));
                    let (min, max): (Box<[u8]>, Box<[u8]>) = match range {
                        Some((a, b)) => (a.into(), b.into()),
                        // No statistics at all: the group may hold any key.
                        None => (Box::from(&b""[..]), Box::from(&[0xFF; 64][..])),
                    };
                    whole.push(PageEntry {
                        min,
                        max,
                        file: f as u32,
                        row_group: g as u32,
                        first_row: 0,
                        rows: rg.num_rows() as u64,
                    });
                }
            }
        }
        pages.sort_by(|a, b| a.min.cmp(&b.min).then(a.max.cmp(&b.max)));
        let disjoint = pages.windows(2).all(|w| w[0].max <= w[1].min);
        Self {
            pages,
            disjoint,
            whole,
            filter: OnceLock::new(),
        }
    }

    /// Pages (and unindexed row groups) whose key range holds `key`.
    pub(crate) fn candidates<'a>(
        &'a self,
        key: &'a [u8],
    ) -> Box<dyn Iterator<Item = &'a PageEntry> + 'a> {
        if self.filter.get().is_some_and(|f| !f.may_contain(key)) {
            return Box::new(std::iter::empty());
        }
        let holds = move |p: &&PageEntry| p.min.as_ref() <= key && key <= p.max.as_ref();
        let indexed: Box<dyn Iterator<Item = &PageEntry>> = if self.disjoint {
            // Pages starting at or below the key, walking back while they reach it.
            let end = self.pages.partition_point(|p| p.min.as_ref() <= key);
            let start = self.pages[..end]
                .iter()
                .rposition(|p| p.max.as_ref() < key)
                .map_or(0, |i| i + 1);
            Box::new(self.pages[start..end].iter())
        } else {
            Box::new(self.pages.iter())
        };
        Box::new(indexed.filter(holds).chain(self.whole.iter().filter(holds)))
    }

    /// Indexed pages (for figures and tests).
    pub(crate) fn pages(&self) -> usize {
        self.pages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::KeyFilter;

    #[test]
    fn the_filter_never_forgets_a_key_and_rarely_claims_one() {
        let mut f = KeyFilter::with_capacity(10_000);
        let key = |i: u32| format!("4406051990{i:08}");
        (0..10_000).for_each(|i| f.insert(key(i).as_bytes()));
        assert!((0..10_000).all(|i| f.may_contain(key(i).as_bytes())));
        let false_positives = (10_000..20_000)
            .filter(|i| f.may_contain(key(*i).as_bytes()))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10000");
    }
}
