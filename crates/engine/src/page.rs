//! One Parquet page as point reads take it: the header parsed here (Thrift compact protocol) and
//! the body decompressed only as far as the read needs, for the codecs a hub writes
//! (uncompressed and LZ4_RAW).
//!
//! The parquet crate's page reader parses the header through its general Thrift reader,
//! decompresses every page whole into a zeroed buffer, and is built anew for each page. A point
//! read wants a row or two of a page: where those rows are early in it, the rest is never
//! decompressed. LZ4 can stop at any sequence whose literals end past the bytes wanted, which
//! a cheap pass over the sequence headers finds without copying anything.
//!
//! Nothing here is trusted: a header that does not parse, sizes that disagree or a body that
//! does not decompress is refused (the caller leaves the page to the record reader, which
//! reports it), and no size from the file is allocated before it is checked against the
//! bytes that hold it.

use crate::point::Skip;
use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::Page;

/// LZ4 expands a byte into at most this many: a larger size in a header is damage.
const LZ4_MAX_RATIO: usize = 255;

/// Page headers are rarely over a few hundred bytes; statistics with long values can make them
/// longer, but nesting this deep is damage.
const MAX_DEPTH: u8 = 16;

/// Whether pages of a chunk compressed with `codec` are read here.
pub(crate) fn reads(codec: Compression) -> bool {
    matches!(codec, Compression::UNCOMPRESSED | Compression::LZ4_RAW)
}

/// How much of a page's body to decompress.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    /// Enough for its first `upto` rows of `of`, estimated as their share of the body and a
    /// margin for values longer than the page's average: the values of a page cut short run
    /// out early, never differ.
    Rows { upto: usize, of: usize },
    /// All of it.
    Whole,
}

impl Want {
    fn bytes(self, size: usize) -> usize {
        match self {
            Self::Rows { upto, of } if upto < of => {
                let share = (size as u128 * upto as u128 / of as u128) as usize;
                share + size / 16 + 256
            }
            Self::Rows { .. } | Self::Whole => usize::MAX,
        }
    }
}

/// The page in `bytes` (header and body), its body decompressed as far as `want` asks at least.
/// A page cut short holds only a prefix of its values: its decoder finds the values it needs
/// missing rather than reading anything wrong, and the caller then asks for the whole page.
pub(crate) fn read(bytes: &Bytes, codec: Compression, want: Want) -> Result<Page, Skip> {
    let mut r = Compact::new(bytes);
    let h = Header::parse(&mut r)?;
    let want = want.bytes(h.uncompressed);
    let body = bytes.slice(r.at..);
    if body.len() != h.compressed {
        return Err("page size disagrees with its header");
    }
    let unpack = |b: Bytes, size: usize, want: usize| -> Result<Bytes, Skip> {
        match codec {
            Compression::UNCOMPRESSED if b.len() == size => Ok(b),
            Compression::UNCOMPRESSED => Err("page size disagrees with its header"),
            Compression::LZ4_RAW => lz4(&b, size, want),
            _ => Err("codec not read here"),
        }
    };
    Ok(match h.kind {
        Kind::Data {
            encoding,
            def_encoding,
            rep_encoding,
        } => Page::DataPage {
            buf: unpack(body, h.uncompressed, want)?,
            num_values: h.values,
            encoding,
            def_level_encoding: def_encoding,
            rep_level_encoding: rep_encoding,
            statistics: None,
        },
        Kind::DataV2 {
            encoding,
            nulls,
            rows,
            def_len,
            rep_len,
            compressed,
        } => {
            // Levels come first and are never compressed; the values after them may be.
            let levels = def_len as usize + rep_len as usize;
            if levels > body.len() || levels > h.uncompressed {
                return Err("levels past the page");
            }
            let values = body.slice(levels..);
            let values = if compressed && codec != Compression::UNCOMPRESSED {
                unpack(values, h.uncompressed - levels, want.saturating_sub(levels))?
            } else if levels + values.len() == h.uncompressed {
                values
            } else {
                return Err("page size disagrees with its header");
            };
            let mut buf = Vec::with_capacity(levels + values.len());
            buf.extend_from_slice(&body[..levels]);
            buf.extend_from_slice(&values);
            Page::DataPageV2 {
                buf: buf.into(),
                num_values: h.values,
                encoding,
                num_nulls: nulls,
                num_rows: rows,
                def_levels_byte_len: def_len,
                rep_levels_byte_len: rep_len,
                is_compressed: compressed,
                statistics: None,
            }
        }
        Kind::Dictionary { encoding, sorted } => Page::DictionaryPage {
            buf: unpack(body, h.uncompressed, usize::MAX)?,
            num_values: h.values,
            encoding,
            is_sorted: sorted,
        },
    })
}

/// The first `want` bytes at least of the LZ4 block `src` (`size` bytes whole).
fn lz4(src: &[u8], size: usize, want: usize) -> Result<Bytes, Skip> {
    if size > src.len().saturating_mul(LZ4_MAX_RATIO).saturating_add(16) {
        return Err("page larger than its bytes can hold");
    }
    let (input, expect) = match prefix(src, want) {
        Some((end, out)) if out < size => (&src[..end], out),
        _ => (src, size),
    };
    let out = lz4_flex::block::decompress(input, expect).map_err(|_| "page does not decompress")?;
    if out.len() != expect {
        return Err("page size disagrees with its header");
    }
    Ok(out.into())
}

/// Where the LZ4 block `src` can be cut so that it decompresses to at least `want` bytes: the
/// end of the first sequence's literals at or past them (a block may end after any sequence's
/// literals), with the bytes it then decompresses to. `None`: no such place before the end.
fn prefix(src: &[u8], want: usize) -> Option<(usize, usize)> {
    let (mut at, mut out) = (0usize, 0usize);
    let more = |at: &mut usize| -> Option<usize> {
        let mut n = 0usize;
        loop {
            let b = *src.get(*at)?;
            *at += 1;
            n = n.checked_add(usize::from(b))?;
            if b != 255 {
                return Some(n);
            }
        }
    };
    loop {
        let token = *src.get(at)?;
        at += 1;
        let mut literals = usize::from(token >> 4);
        if literals == 15 {
            literals += more(&mut at)?;
        }
        at = at.checked_add(literals)?;
        out = out.checked_add(literals)?;
        if at >= src.len() {
            return None;
        }
        if out >= want {
            return Some((at, out));
        }
        at += 2;
        let mut matched = usize::from(token & 15) + 4;
        if matched == 19 {
            matched += more(&mut at)?;
        }
        out = out.checked_add(matched)?;
    }
}

/// What a page header says.
struct Header {
    kind: Kind,
    uncompressed: usize,
    compressed: usize,
    values: u32,
}

enum Kind {
    Data {
        encoding: Encoding,
        def_encoding: Encoding,
        rep_encoding: Encoding,
    },
    DataV2 {
        encoding: Encoding,
        nulls: u32,
        rows: u32,
        def_len: u32,
        rep_len: u32,
        compressed: bool,
    },
    Dictionary {
        encoding: Encoding,
        sorted: bool,
    },
}

/// Thrift compact types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const I32: u8 = 5;
const STRUCT: u8 = 12;

impl Header {
    /// `PageHeader` (parquet.thrift): 1 type, 2 uncompressed size, 3 compressed size, 4 crc,
    /// 5 data page, 6 index page, 7 dictionary page, 8 data page v2.
    fn parse(r: &mut Compact) -> Result<Self, Skip> {
        let (mut page_type, mut uncompressed, mut compressed) = (None, None, None);
        let (mut v1, mut v2, mut dict) = (None, None, None);
        let mut last = 0;
        while let Some((id, ty)) = r.field(&mut last)? {
            match (id, ty) {
                (1, I32) => page_type = Some(r.i32()?),
                (2, I32) => uncompressed = Some(r.size()?),
                (3, I32) => compressed = Some(r.size()?),
                (5, STRUCT) => v1 = Some(r.fields(1)?),
                (7, STRUCT) => dict = Some(r.fields(1)?),
                (8, STRUCT) => v2 = Some(r.fields(1)?),
                _ => r.skip(ty, 0)?,
            }
        }
        let (Some(page_type), Some(uncompressed), Some(compressed)) =
            (page_type, uncompressed, compressed)
        else {
            return Err("page header incomplete");
        };
        let need = |f: &Fields, id: usize| f.get(id).ok_or("page header incomplete");
        let count = |f: &Fields, id: usize| {
            u32::try_from(need(f, id)?).map_err(|_| "negative count in a page header")
        };
        let (kind, f) = match page_type {
            0 => {
                let f = v1.ok_or("data page without its header")?;
                let kind = Kind::Data {
                    encoding: encoding(need(&f, 2)?)?,
                    def_encoding: encoding(need(&f, 3)?)?,
                    rep_encoding: encoding(need(&f, 4)?)?,
                };
                (kind, f)
            }
            3 => {
                let f = v2.ok_or("data page without its header")?;
                let kind = Kind::DataV2 {
                    encoding: encoding(need(&f, 4)?)?,
                    nulls: count(&f, 2)?,
                    rows: count(&f, 3)?,
                    def_len: count(&f, 5)?,
                    rep_len: count(&f, 6)?,
                    compressed: f.flag(7).unwrap_or(true),
                };
                (kind, f)
            }
            2 => {
                let f = dict.ok_or("dictionary page without its header")?;
                let kind = Kind::Dictionary {
                    encoding: encoding(need(&f, 2)?)?,
                    sorted: f.flag(3).unwrap_or(false),
                };
                (kind, f)
            }
            _ => return Err("page type not read here"),
        };
        Ok(Self {
            kind,
            uncompressed,
            compressed,
            values: count(&f, 1)?,
        })
    }
}

/// The encodings read here, by their number in parquet.thrift (`BIT_PACKED` as some writers
/// name the levels of a column that has none).
fn encoding(n: i64) -> Result<Encoding, Skip> {
    #[allow(deprecated)]
    Ok(match n {
        0 => Encoding::PLAIN,
        2 => Encoding::PLAIN_DICTIONARY,
        3 => Encoding::RLE,
        4 => Encoding::BIT_PACKED,
        8 => Encoding::RLE_DICTIONARY,
        _ => return Err("encoding not read here"),
    })
}

/// The integer and boolean fields of a page header's inner struct, by field id (1 to 8).
#[derive(Default)]
struct Fields {
    ints: [Option<i64>; 9],
    flags: [Option<bool>; 9],
}

impl Fields {
    fn get(&self, id: usize) -> Option<i64> {
        self.ints.get(id).copied().flatten()
    }

    fn flag(&self, id: usize) -> Option<bool> {
        self.flags.get(id).copied().flatten()
    }
}

/// A reader of the Thrift compact protocol over one page's bytes.
struct Compact<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Compact<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    fn byte(&mut self) -> Result<u8, Skip> {
        let b = *self.buf.get(self.at).ok_or("page header cut short")?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Skip> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("page header number too long")
    }

    /// A zigzag-encoded integer.
    fn int(&mut self) -> Result<i64, Skip> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i64, Skip> {
        let v = self.int()?;
        i32::try_from(v).map_err(|_| "page header number out of range")?;
        Ok(v)
    }

    /// A page size: not negative.
    fn size(&mut self) -> Result<usize, Skip> {
        usize::try_from(self.i32()?).map_err(|_| "negative size in a page header")
    }

    /// The next field's id and type, `None` at the end of the struct.
    fn field(&mut self, last: &mut i64) -> Result<Option<(i64, u8)>, Skip> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = i64::from(b >> 4);
        // Field ids are 16-bit: a longer one is damage (and must not overflow the next delta).
        let id = if delta == 0 {
            self.int()?
        } else {
            *last + delta
        };
        i16::try_from(id).map_err(|_| "page header field id out of range")?;
        *last = id;
        Ok(Some((id, b & 0x0f)))
    }

    /// A struct's integer and boolean fields numbered up to 8; the rest are skipped.
    fn fields(&mut self, depth: u8) -> Result<Fields, Skip> {
        let mut f = Fields::default();
        let mut last = 0;
        while let Some((id, ty)) = self.field(&mut last)? {
            let slot = usize::try_from(id).ok().filter(|&i| i < f.ints.len());
            match (slot, ty) {
                (Some(i), I32) => f.ints[i] = Some(self.i32()?),
                (Some(i), BOOL_TRUE | BOOL_FALSE) => f.flags[i] = Some(ty == BOOL_TRUE),
                _ => self.skip(ty, depth + 1)?,
            }
        }
        Ok(f)
    }

    /// Skips a value of type `ty` (a field's value: booleans are in the type).
    fn skip(&mut self, ty: u8, depth: u8) -> Result<(), Skip> {
        if depth > MAX_DEPTH {
            return Err("page header nested too deep");
        }
        match ty {
            BOOL_TRUE | BOOL_FALSE => {}
            3 => self.at_least(1)?,
            4..=6 => {
                self.varint()?;
            }
            7 => self.at_least(8)?,
            8 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "page header length")?;
                self.at_least(len)?;
            }
            9 | 10 => {
                let head = self.byte()?;
                let mut n = u64::from(head >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                self.elements(n, head & 0x0f, depth)?;
            }
            11 => {
                let n = self.varint()?;
                if n > 0 {
                    let types = self.byte()?;
                    // Each entry takes two bytes at least.
                    if n > self.left() / 2 {
                        return Err("page header cut short");
                    }
                    for _ in 0..n {
                        self.element(types >> 4, depth)?;
                        self.element(types & 0x0f, depth)?;
                    }
                }
            }
            STRUCT => {
                let mut last = 0;
                while let Some((_, t)) = self.field(&mut last)? {
                    self.skip(t, depth + 1)?;
                }
            }
            _ => return Err("page header type unknown"),
        }
        Ok(())
    }

    /// `n` elements of a list or set: each takes a byte at least, so more than are left is
    /// damage found before any is read.
    fn elements(&mut self, n: u64, ty: u8, depth: u8) -> Result<(), Skip> {
        if n > self.left() {
            return Err("page header cut short");
        }
        (0..n).try_for_each(|_| self.element(ty, depth))
    }

    /// One element of a container: a boolean there is a byte of its own.
    fn element(&mut self, ty: u8, depth: u8) -> Result<(), Skip> {
        match ty {
            BOOL_TRUE | BOOL_FALSE => self.at_least(1),
            _ => self.skip(ty, depth + 1),
        }
    }

    fn left(&self) -> u64 {
        (self.buf.len() - self.at) as u64
    }

    fn at_least(&mut self, n: usize) -> Result<(), Skip> {
        if n > self.buf.len() - self.at {
            return Err("page header cut short");
        }
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A block cut where `prefix` says decompresses to exactly the start of the whole.
        #[test]
        fn a_cut_block_decompresses_to_the_start_of_the_whole(
            words in proptest::collection::vec(0usize..40, 1..3000),
            want in 0usize..40_000,
        ) {
            let text: Vec<u8> = words
                .iter()
                .flat_map(|&w| format!("街道{w}号{};", w * 7 % 13).into_bytes())
                .collect();
            let block = lz4_flex::block::compress(&text);
            let whole = lz4(&block, text.len(), usize::MAX).unwrap();
            prop_assert_eq!(&whole[..], &text[..]);
            let part = lz4(&block, text.len(), want).unwrap();
            prop_assert!(part.len() >= want.min(text.len()));
            prop_assert_eq!(&part[..], &text[..part.len()]);
        }

        /// Any bytes at all: refused or read, never a panic.
        #[test]
        fn any_bytes_are_refused_or_read(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let b = Bytes::from(bytes);
            let _ = read(&b, Compression::LZ4_RAW, Want::Whole);
            let _ = read(&b, Compression::UNCOMPRESSED, Want::Rows { upto: 1, of: 9 });
        }
    }

    #[test]
    fn a_field_id_past_16_bits_is_refused() {
        // Field id i64::MAX (long form, an i32), then a field one past it (short form).
        let mut header = vec![
            0x05, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        header.extend([0x00, 0x15, 0x02, 0x00]);
        let got = read(&Bytes::from(header), Compression::LZ4_RAW, Want::Whole);
        assert_eq!(got.unwrap_err(), "page header field id out of range");
    }

    #[test]
    fn a_block_saying_it_is_huge_is_refused_before_allocating() {
        let block = lz4_flex::block::compress(b"hello hello hello hello");
        assert_eq!(
            lz4(&block, usize::MAX / 2, usize::MAX).unwrap_err(),
            "page larger than its bytes can hold"
        );
    }
}
