//! Walking segment files: every line's own hash, the links between lines, sequence numbers and
//! checkpoint signatures. Shared by recovery at start and by `audit verify`.

use crate::record::{Body, GENESIS, LineError, Stored, checkpoint_message, decode};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::path::{Path, PathBuf};

/// A segment file `segment-NNNNNN.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its number, from 1.
    pub number: u64,
    /// Its path.
    pub path: PathBuf,
}

/// File name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("segment-{n:06}.log")
}

/// The segments in `dir`, in order.
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<Segment>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(n) = name
            .strip_prefix("segment-")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            out.push(Segment { number: n, path });
        }
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// The bytes of a segment without its unused tail.
///
/// The live segment is preallocated with zero bytes ahead of the records, so that appending a
/// batch does not change the file's size and its `fdatasync` writes the data block only, not
/// the file's metadata (size, block map; a journal commit on a journaling file system). A record
/// line ends in a newline, never in a zero byte, so the data
/// ends at the last non-zero byte.
pub fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    bytes.truncate(data_len(&bytes));
    Ok(bytes)
}

/// A segment's whole lines: [`read_segment`] without a line still being written, for readers
/// of a live log.
pub fn read_whole_lines(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = read_segment(path)?;
    bytes.truncate(bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1));
    Ok(bytes)
}

/// Length of `bytes` without trailing zero bytes.
pub fn data_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
}

/// Where the chain stands after the last verified line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last line (0 before the first).
    pub seq: u64,
    /// Hash of the last line.
    pub hash: String,
    /// Sequence number of the last signed checkpoint (0 if none).
    pub checkpoint_seq: u64,
}

impl Default for Head {
    fn default() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
            checkpoint_seq: 0,
        }
    }
}

/// What is wrong at a place in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The segment ends in the middle of a line.
    #[error("the segment ends inside a line (torn write)")]
    Torn,
    /// A line is not a record of the right shape.
    #[error("line is not a well-formed record")]
    Shape,
    /// A line's hash does not match its content.
    #[error("record content does not match its hash (edited)")]
    Hash,
    /// A line's payload does not decode.
    #[error("record payload does not decode")]
    Json,
    /// A record does not follow its predecessor's sequence number.
    #[error("sequence {got} where {expected} was expected (deleted, duplicated or reordered)")]
    Sequence {
        /// Expected.
        expected: u64,
        /// Found.
        got: u64,
    },
    /// A record does not point at its predecessor's hash.
    #[error("record does not link to its predecessor (deleted, inserted or reordered)")]
    Link,
    /// A checkpoint's signature does not verify.
    #[error("checkpoint signature does not verify (rewritten chain or wrong key)")]
    Signature,
    /// A sealed segment does not end with its sealing checkpoint.
    #[error("segment does not end with its sealing checkpoint (truncated)")]
    Unsealed,
}

/// A problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Byte offset of the bad line in its segment.
    pub offset: usize,
    /// Sequence number the bad line should have had.
    pub seq: u64,
    /// What is wrong.
    pub problem: Problem,
}

/// How a segment scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    /// Bytes of whole, verified lines.
    pub good_len: usize,
    /// Whether the last line is a sealing checkpoint.
    pub sealed: bool,
}

/// Verifies one segment's bytes, continuing from `head`, and calls `each` for every verified
/// line. Stops at the first fault.
pub fn scan(
    bytes: &[u8],
    head: &mut Head,
    key: &VerifyingKey,
    mut each: impl FnMut(&Stored),
) -> Result<ScanEnd, Fault> {
    let mut pos = 0;
    let mut sealed = false;
    while pos < bytes.len() {
        let fault = |problem| Fault {
            offset: pos,
            seq: head.seq + 1,
            problem,
        };
        let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') else {
            return Err(fault(Problem::Torn));
        };
        let stored = decode(&bytes[pos..pos + nl]).map_err(|e| {
            fault(match e {
                LineError::Shape => Problem::Shape,
                LineError::Hash => Problem::Hash,
                LineError::Json => Problem::Json,
            })
        })?;
        let p = &stored.payload;
        if p.seq != head.seq + 1 {
            return Err(fault(Problem::Sequence {
                expected: head.seq + 1,
                got: p.seq,
            }));
        }
        if p.prev != head.hash {
            return Err(fault(Problem::Link));
        }
        sealed = false;
        if let Body::Checkpoint(c) = &p.body {
            let sig = decode_sig(&c.sig).ok_or_else(|| fault(Problem::Signature))?;
            key.verify(&checkpoint_message(p.seq, &p.prev, c), &sig)
                .map_err(|_| fault(Problem::Signature))?;
            head.checkpoint_seq = p.seq;
            sealed = c.seals;
        }
        each(&stored);
        head.seq = p.seq;
        head.hash = stored.hash.clone();
        pos += nl + 1;
    }
    Ok(ScanEnd {
        good_len: pos,
        sealed,
    })
}

/// Whether `stored` is a checkpoint that seals its segment, validly signed by `key`.
pub(crate) fn valid_seal(stored: &Stored, key: &VerifyingKey) -> bool {
    let p = &stored.payload;
    let Body::Checkpoint(c) = &p.body else {
        return false;
    };
    c.seals
        && decode_sig(&c.sig).is_some_and(|sig| {
            key.verify(&checkpoint_message(p.seq, &p.prev, c), &sig)
                .is_ok()
        })
}

fn decode_sig(hex: &str) -> Option<Signature> {
    if hex.len() != 128 {
        return None;
    }
    let mut b = [0u8; 64];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Signature::from_bytes(&b))
}

/// Whether the bytes from `from` (where the last segment stops verifying) are a torn tail, to
/// be cut: no whole record with a valid hash follows, or zero bytes lie before the first one.
/// Damage followed by good records is not a torn tail and must not be cut away. But a batch is
/// written into preallocated zeros, and a crash before its sync may leave a later page of it on
/// disk without an earlier one; the writer never puts a zero byte inside a record, and nothing
/// after an unwritten gap was acknowledged (the sync that acknowledges covers every byte before).
pub fn torn_tail(bytes: &[u8], from: usize) -> bool {
    let mut at = from;
    for line in bytes[from..].split(|b| *b == b'\n') {
        if at > from && decode(line).is_ok() {
            return bytes[from..at].contains(&0);
        }
        at += line.len() + 1;
    }
    true
}
