//! Summaries of sealed segments: what recovery learned by scanning one (where its chain starts
//! and ends, its records, its share of the meters), kept beside it as `segment-N.sum` so that
//! the next start need not parse it again. A sealed segment never changes, so a summary is
//! trusted only while the segment keeps its size, continues the chain where the segment before
//! it ended, and still ends in the signed checkpoint that sealed it; otherwise the segment is
//! scanned again and its summary rewritten. Start-up therefore checks every seal and every link
//! between segments but not every record of a sealed segment: `audit verify` does that.

use crate::chain::{Head, Segment, valid_seal};
use crate::meter::Snapshot;
use crate::record::decode;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The longest last line (a sealing checkpoint) looked for at the end of a segment.
const LAST_LINE_MAX: u64 = 64 << 10;

/// One sealed segment, summarized.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Summary {
    /// The segment's size in bytes.
    pub size: u64,
    /// Sequence number and previous hash of its first record.
    pub first_seq: u64,
    pub first_prev: String,
    /// The chain head after its last record (the sealing checkpoint).
    pub last_seq: u64,
    pub last_hash: String,
    pub checkpoint_seq: u64,
    /// Call records in it.
    pub records: u64,
    /// Its share of the meters.
    pub meter: Snapshot,
}

fn path(seg: &Segment) -> PathBuf {
    seg.path.with_extension("sum")
}

/// The segment's summary, if there is one and it still describes the segment that follows
/// `head`.
pub(crate) fn load(seg: &Segment, head: &Head, key: &VerifyingKey) -> Option<Summary> {
    let s: Summary = serde_json::from_slice(&std::fs::read(path(seg)).ok()?).ok()?;
    if s.first_seq != head.seq + 1 || s.first_prev != head.hash {
        return None;
    }
    let mut file = std::fs::File::open(&seg.path).ok()?;
    if file.metadata().ok()?.len() != s.size {
        return None;
    }
    let tail = s.size.min(LAST_LINE_MAX);
    file.seek(SeekFrom::Start(s.size - tail)).ok()?;
    let mut bytes = Vec::with_capacity(tail as usize);
    file.read_to_end(&mut bytes).ok()?;
    let body = bytes.strip_suffix(b"\n")?;
    let start = match body.iter().rposition(|b| *b == b'\n') {
        Some(nl) => nl + 1,
        None if tail == s.size => 0,
        None => return None,
    };
    let last = decode(&body[start..]).ok()?;
    let ends = last.payload.seq == s.last_seq
        && last.hash == s.last_hash
        && s.checkpoint_seq == s.last_seq
        && valid_seal(&last, key);
    ends.then_some(s)
}

/// Keeps a summary beside its segment. It is a cache: failing to write it costs the next start
/// a scan, nothing else.
pub(crate) fn store(seg: &Segment, summary: &Summary) {
    let target = path(seg);
    let temporary = target.with_extension("sum.tmp");
    let written = serde_json::to_vec(summary)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(e) = written {
        tracing::warn!(segment = seg.number, error = %e, "could not keep a segment summary");
    }
}
