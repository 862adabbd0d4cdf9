//! The key join's index for a probe side that comes in key order, as a base library sorted by
//! ID number does: the build side's keys as numbers, sorted, which each probe batch walks
//! through from its first key. A probe row then costs a comparison with the entry the row
//! before it stopped at, in memory read in order, where the hash index costs a hash and a read
//! from a random place (and, for a match, two more: the row's number and its key).
//!
//! It serves keys that are codes: text of one length of up to 19 characters, decimal digits
//! but for the last, which may also be `X` (an ID number's check character). ID numbers, phone
//! numbers and postcodes are codes. A code's number keeps the text's order and tells codes
//! apart exactly, so equal numbers are equal keys and no key is read again to check a match.

use super::{KeyColumn, Keys, MAX_ROWS, NONE, Rows};
use arrow::array::{Array, ArrayRef, StringBuilder, UInt64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryReservation;

/// The codes of one length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Code {
    len: usize,
}

impl Code {
    /// The longest code: 18 digits and a last character make a number under 2^64.
    const MAX_LEN: usize = 19;

    /// The codes as long as `key`, if `key` is one.
    pub(super) fn like(key: &[u8]) -> Option<Self> {
        let code = Self { len: key.len() };
        ((1..=Self::MAX_LEN).contains(&key.len()) && code.number(key).is_some()).then_some(code)
    }

    /// `key`'s number, if it is one of these codes: its digits but the last as a number, times
    /// 11, plus the last character's value (`X` is 10). Numbers of codes of one length are in
    /// the codes' byte order.
    #[inline]
    pub(super) fn number(self, key: &[u8]) -> Option<u64> {
        if key.len() != self.len {
            return None;
        }
        let (digits, last) = key.split_at(self.len - 1);
        let last = match last.first()? {
            b @ b'0'..=b'9' => u64::from(b - b'0'),
            b'X' => 10,
            _ => return None,
        };
        let mut chunks = digits.chunks_exact(8);
        let mut value = 0u64;
        for chunk in &mut chunks {
            value = value * 100_000_000 + eight_digits(chunk)?;
        }
        for &b in chunks.remainder() {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u64::from(b - b'0');
        }
        Some(value * 11 + last)
    }

    /// The code whose number is `number`, written into `out` (as long as a code).
    fn write(self, number: u64, out: &mut [u8]) {
        let (mut value, last) = (number / 11, number % 11);
        out[self.len - 1] = if last == 10 { b'X' } else { b'0' + last as u8 };
        for place in out[..self.len - 1].iter_mut().rev() {
            *place = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
}

/// A batch's keys as numbers of `code`'s codes, nulls kept. Where `code` is not yet known it is
/// taken from the first non-null key. `None` if some key is not such a code.
pub(super) fn numbers(code: &mut Option<Code>, keys: &Keys) -> Option<UInt64Array> {
    let nulls = keys
        .column()
        .nulls()
        .filter(|n| n.null_count() > 0)
        .cloned();
    if code.is_none() {
        *code = (0..keys.len())
            .find_map(|i| keys.value(i))
            .and_then(Code::like);
    }
    let Some(code) = *code else {
        // Every key is null (a key that is not a code would have been found).
        return (nulls.as_ref().map_or(0, |n| n.null_count()) == keys.len())
            .then(|| UInt64Array::new(vec![0; keys.len()].into(), nulls));
    };
    let values = (0..keys.len())
        .map(|i| match nulls.as_ref().is_some_and(|n| n.is_null(i)) {
            true => Some(0),
            false => code.number(keys.bytes(i)),
        })
        .collect::<Option<Vec<u64>>>()?;
    Some(UInt64Array::new(values.into(), nulls))
}

/// The keys `numbers` stand for, as text of `code`'s length (every key null where `code` is
/// unknown), in an array of `key_type`.
pub(super) fn texts(
    code: Option<Code>,
    numbers: &UInt64Array,
    key_type: &DataType,
) -> Result<ArrayRef> {
    let Some(code) = code else {
        return Ok(arrow::array::new_null_array(key_type, numbers.len()));
    };
    let mut text = StringBuilder::with_capacity(numbers.len(), numbers.len() * code.len);
    let mut out = [0u8; Code::MAX_LEN];
    let out = &mut out[..code.len];
    for number in numbers.iter() {
        match number {
            Some(number) => {
                code.write(number, out);
                // A code is ASCII digits and `X`.
                text.append_value(std::str::from_utf8(out).unwrap_or_default());
            }
            None => text.append_null(),
        }
    }
    Ok(arrow::compute::cast(&text.finish(), key_type)?)
}

/// The number eight ASCII decimal digits write, the first the most significant; `None` if a
/// byte is not a digit. Worked on all eight at once: each pair, then each four, then all.
#[inline]
fn eight_digits(chunk: &[u8]) -> Option<u64> {
    const NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    let x = u64::from_le_bytes(chunk.try_into().ok()?);
    // A digit's high nibble is 3, and stays 3 with 6 added (a byte over 0xF9 that carries into
    // the next already fails, its own high nibble being F).
    let nibbles = (x & NIBBLES) | ((x.wrapping_add(0x0606_0606_0606_0606) & NIBBLES) >> 4);
    if nibbles != 0x3333_3333_3333_3333 {
        return None;
    }
    let x = (x & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(10 << 8 | 1) >> 8;
    let x = (x & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 << 16 | 1) >> 16;
    Some((x & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 << 32 | 1) >> 32)
}

/// Fewest non-null keys a probe batch has for its order to be taken as the probe side's.
/// Random keys this many are in order by chance far less often than never.
const ORDER_SAMPLE: usize = 256;

/// Whether `keys` hold at least [`ORDER_SAMPLE`] non-null keys, each no smaller than the one
/// before it.
pub(super) fn in_key_order(keys: &Keys) -> bool {
    let (mut seen, mut last): (usize, Option<&[u8]>) = (0, None);
    for i in 0..keys.len() {
        let Some(key) = keys.value(i) else {
            continue;
        };
        if last.is_some_and(|last| last > key) {
            return false;
        }
        (seen, last) = (seen + 1, Some(key));
    }
    seen >= ORDER_SAMPLE
}

/// The build side's keys, all codes of one length, in order.
pub(super) struct Ordered {
    code: Code,
    /// Each non-null build row's code number (the high 64 bits) and row (the low 32), sorted.
    entries: Vec<u128>,
}

impl Ordered {
    /// Every non-null key of `rows` as a number, sorted on `threads` threads; `None` if some
    /// key is not a code of the first key's length, no key is non-null, or the pool has no
    /// room.
    pub(super) fn build(
        rows: &Rows,
        threads: usize,
        reservation: &mut MemoryReservation,
    ) -> Result<Option<Self>> {
        let Some(code) = rows
            .keys
            .iter()
            .find_map(|k| (0..k.len()).find_map(|i| k.value(i)))
            .and_then(Code::like)
        else {
            return Ok(None);
        };
        let held: usize = rows.keys.iter().map(|k| k.len()).sum();
        Self::sorted(code, held, threads, reservation, |entries| {
            for (b, keys) in rows.keys.iter().enumerate() {
                for i in 0..keys.len() {
                    let Some(key) = keys.value(i) else {
                        continue;
                    };
                    let Some(number) = code.number(key) else {
                        return false;
                    };
                    let row = ((b as u32) << rows.row_bits) | i as u32;
                    entries.push(u128::from(number) << 32 | u128::from(row));
                }
            }
            true
        })
    }

    /// The index of keys already made numbers of `code` as the build side was read (see
    /// [`numbers`]), a batch's numbers beside it; rows are named as in [`Rows`].
    pub(super) fn of_numbers(
        code: Code,
        numbers: &[UInt64Array],
        row_bits: u32,
        threads: usize,
        reservation: &mut MemoryReservation,
    ) -> Result<Option<Self>> {
        let held = numbers.iter().map(|n| n.len() - n.null_count()).sum();
        Self::sorted(code, held, threads, reservation, |entries| {
            for (b, numbers) in numbers.iter().enumerate() {
                let nulls = numbers.nulls().filter(|n| n.null_count() > 0);
                for (i, &number) in numbers.values().iter().enumerate() {
                    if !nulls.is_some_and(|n: &NullBuffer| n.is_null(i)) {
                        let row = ((b as u32) << row_bits) | i as u32;
                        entries.push(u128::from(number) << 32 | u128::from(row));
                    }
                }
            }
            true
        })
    }

    /// Up to `held` entries from `fill` (`false` if a key is not a code), sorted on `threads`
    /// threads; `None` if `fill` fails or the pool has no room for them.
    fn sorted(
        code: Code,
        held: usize,
        threads: usize,
        reservation: &mut MemoryReservation,
        fill: impl FnOnce(&mut Vec<u128>) -> bool,
    ) -> Result<Option<Self>> {
        // Where the pool cannot hold these, the hash index, about two thirds the size, may.
        if reservation.try_grow(held * size_of::<u128>()).is_err() {
            return Ok(None);
        }
        let mut entries = Vec::with_capacity(held);
        if !fill(&mut entries) {
            reservation.shrink(held * size_of::<u128>());
            return Ok(None);
        }
        if entries.len() > MAX_ROWS {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "a join's build side has {} keys, more than one join may hold",
                entries.len()
            )));
        }
        sort_on(&mut entries, threads);
        Ok(Some(Self { code, entries }))
    }

    fn number_at(&self, at: usize) -> u64 {
        (self.entries[at] >> 32) as u64
    }

    /// The first place from `at` on whose number is not below `number`: one step for the next
    /// key of a probe side as dense as the build side, a gallop over longer gaps.
    fn seek(&self, at: usize, number: u64) -> usize {
        let len = self.entries.len();
        if at >= len || self.number_at(at) >= number {
            return at;
        }
        let (mut below, mut step) = (at, 1);
        while below + step < len && self.number_at(below + step) < number {
            below += step;
            step *= 2;
        }
        let end = (below + step).min(len);
        below + 1 + self.entries[below + 1..end].partition_point(|&e| ((e >> 32) as u64) < number)
    }

    /// Each probe row of `keys` whose key is held, with the first place of its key, in row
    /// order. Rows in key order are walked as they come; others are put in order first.
    pub(super) fn matches(&self, keys: &impl KeyColumn) -> Vec<(u32, u32)> {
        let nulls = keys.nulls().filter(|n| n.null_count() > 0);
        let mut probes: Vec<(u64, u32)> = (0..keys.len())
            .filter(|&row| !nulls.is_some_and(|n| n.is_null(row)))
            .filter_map(|row| Some((self.code.number(keys.bytes(row))?, row as u32)))
            .collect();
        let in_order = probes.is_sorted_by_key(|&(number, _)| number);
        if !in_order {
            probes.sort_unstable();
        }
        let mut matched = Vec::with_capacity(probes.len() / 4);
        let mut at = 0;
        for (number, row) in probes {
            at = self.seek(at, number);
            if at < self.entries.len() && self.number_at(at) == number {
                matched.push((row, at as u32));
            }
        }
        if !in_order {
            matched.sort_unstable();
        }
        matched
    }

    /// The build row at place `at`, and the next place with the same key, or [`NONE`].
    pub(super) fn step(&self, at: u32) -> (u32, u32) {
        let here = self.entries[at as usize];
        let next = match self.entries.get(at as usize + 1) {
            Some(&next) if next >> 32 == here >> 32 => at + 1,
            _ => NONE,
        };
        (here as u32, next)
    }
}

/// Sorts `entries` on up to `threads` threads: split about the middle value, each half sorted
/// on its own.
fn sort_on(entries: &mut [u128], threads: usize) {
    if threads < 2 || entries.len() < 1 << 16 {
        entries.sort_unstable();
        return;
    }
    let middle = entries.len() / 2;
    entries.select_nth_unstable(middle);
    let (low, high) = entries.split_at_mut(middle);
    std::thread::scope(|scope| {
        scope.spawn(|| sort_on(low, threads / 2));
        sort_on(high, threads - threads / 2);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number a key's characters write, one at a time.
    fn slowly(key: &[u8]) -> Option<u64> {
        let (digits, last) = key.split_at(key.len() - 1);
        let mut value = 0u64;
        for &b in digits {
            value = value * 10 + u64::from((b as char).to_digit(10)?);
        }
        let last = match last[0] {
            b'X' => 10,
            b => u64::from((b as char).to_digit(10)?),
        };
        Some(value * 11 + last)
    }

    /// Codes of every length give the number their characters write; anything else gives none.
    #[test]
    fn a_code_is_its_number() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            seed >> 33
        };
        for len in 1..=Code::MAX_LEN {
            let code = Code { len };
            for _ in 0..2_000 {
                let mut key: Vec<u8> = (0..len).map(|_| b'0' + (next() % 10) as u8).collect();
                if next() % 4 == 0 {
                    key[len - 1] = b'X';
                }
                assert_eq!(code.number(&key), slowly(&key), "{key:?}");
                assert_eq!(Code::like(&key), Some(code));
                let mut written = vec![0; len];
                code.write(code.number(&key).expect("a code"), &mut written);
                assert_eq!(written, key, "its number writes it back");
                // One character out of place: a letter, a byte either side of the digits, a
                // high byte, or an `X` before the end.
                let at = (next() % len as u64) as usize;
                let mut bad = key.clone();
                bad[at] = [b'a', b'/', b':', 0xF9, 0xFF, b'x'][(next() % 6) as usize];
                assert_eq!(code.number(&bad), None, "{bad:?}");
                if at + 1 < len {
                    bad[at] = b'X';
                    assert_eq!(code.number(&bad), None, "{bad:?}");
                }
            }
        }
        let id = Code { len: 18 };
        assert_eq!(
            id.number(b"44060519900101123X"),
            Some(44_060_519_900_101_123 * 11 + 10)
        );
        assert_eq!(id.number(b"4406051990010112"), None, "another length");
        assert_eq!(Code::like(b""), None);
        assert_eq!(
            Code::like(b"12345678901234567890"),
            None,
            "longer than a number holds"
        );
        assert_eq!(
            Code { len: 19 }.number(b"999999999999999999X"),
            Some(999_999_999_999_999_999 * 11 + 10)
        );
    }

    /// Numbers of codes of one length sort as the codes' bytes do.
    #[test]
    fn numbers_keep_the_codes_order() {
        let code = Code { len: 18 };
        let mut keys: Vec<String> = (0..5_000u64)
            .map(|i| {
                let n = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 100_000_000_000_000_000;
                let last = ["X", "0", "9", "5"][(i % 4) as usize];
                format!("{n:017}{last}")
            })
            .collect();
        keys.sort();
        let numbers: Vec<u64> = keys
            .iter()
            .map(|k| code.number(k.as_bytes()).expect("a code"))
            .collect();
        assert!(numbers.is_sorted(), "numbers out of the keys' order");
    }

    /// Build rows of `keys` (a null for `None`), in one batch.
    fn rows(keys: &[Option<&str>]) -> Rows {
        let array: arrow::array::StringArray = keys.iter().copied().collect();
        Rows {
            keys: vec![Keys::of(std::sync::Arc::new(array)).expect("keys")],
            row_bits: 16,
            starts: vec![0],
        }
    }

    fn reservation(pool_bytes: usize) -> MemoryReservation {
        use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryConsumer, MemoryPool};
        let pool: std::sync::Arc<dyn MemoryPool> =
            std::sync::Arc::new(GreedyMemoryPool::new(pool_bytes));
        MemoryConsumer::new("test").register(&pool)
    }

    /// Held keys are found with all their rows, in any probe order; a key that is not a code,
    /// or a pool without room, leaves the build side to the hash index.
    #[test]
    fn finds_each_held_key_and_gives_way_to_the_hash_index() {
        let build = [
            Some("44060519900101123X"),
            None,
            Some("110101200001010019"),
            Some("44060519900101123X"),
            Some("440605199001011230"),
        ];
        let mut held = reservation(1 << 20);
        let ordered = Ordered::build(&rows(&build), 2, &mut held)
            .expect("built")
            .expect("all codes");
        assert_eq!(held.size(), build.len() * size_of::<u128>());
        let probe: arrow::array::BinaryArray = [
            Some("44060519900101123X"),
            Some("4406051990010112"),
            None,
            Some("110101200001010019"),
            Some("440605199001011231"),
            Some("44060519900101123X"),
        ]
        .iter()
        .map(|k| k.map(str::as_bytes))
        .collect();
        let rows_of = |at: u32| {
            let mut found = Vec::new();
            let mut next = at;
            while next != NONE {
                let (row, after) = ordered.step(next);
                found.push(row);
                next = after;
            }
            found
        };
        let found: Vec<(u32, Vec<u32>)> = ordered
            .matches(&probe)
            .into_iter()
            .map(|(row, at)| (row, rows_of(at)))
            .collect();
        assert_eq!(found, [(0, vec![0, 3]), (3, vec![2]), (5, vec![0, 3])]);

        let mut refused = reservation(16);
        assert!(
            Ordered::build(&rows(&build), 2, &mut refused)
                .expect("no error")
                .is_none()
        );
        assert_eq!(refused.size(), 0);
        let mut other = reservation(1 << 20);
        let mixed = [Some("110101200001010019"), Some("11010120000101001")];
        assert!(
            Ordered::build(&rows(&mixed), 2, &mut other)
                .expect("no error")
                .is_none()
        );
        assert_eq!(other.size(), 0, "the reservation is given back");
    }

    /// Sorting on several threads sorts.
    #[test]
    fn sorts_on_threads() {
        let mut entries: Vec<u128> = (0..200_000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_003)
            .collect();
        let mut expected = entries.clone();
        expected.sort_unstable();
        sort_on(&mut entries, 3);
        assert_eq!(entries, expected);
    }
}
