//! Offline verification of a whole log, as `citybrain audit verify` runs it.

use crate::chain::{Fault, Head, Problem, ScanEnd, list_segments, read_segment, scan};
use crate::record::{Body, Stored, decode};
use ed25519_dalek::VerifyingKey;
use std::path::Path;

/// A log that verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: u64,
    /// Call records checked.
    pub records: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Records after the last signed checkpoint: linked, but not yet vouched for by a signature.
    pub unsigned_tail: u64,
}

/// The first bad place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// A record or link is wrong.
    #[error("segment {segment}, record {seq} (byte {offset}): {problem}")]
    Bad {
        /// Segment number.
        segment: u64,
        /// Sequence number the bad record should have.
        seq: u64,
        /// Byte offset in the segment.
        offset: usize,
        /// What is wrong.
        problem: Problem,
    },
    /// The log could not be read.
    #[error("cannot read the audit log: {0}")]
    Io(String),
}

fn time_of(s: &Stored) -> i64 {
    match &s.payload.body {
        Body::Call(e) => e.time_us,
        Body::Checkpoint(c) => c.time_us,
    }
}

/// First and last whole lines of a segment.
fn ends(bytes: &[u8]) -> Option<(Stored, Stored)> {
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let first = decode(lines.next()?).ok()?;
    let last = lines.next_back().map_or(Ok(first.clone()), decode).ok()?;
    Some((first, last))
}

/// Verifies every segment in `dir` (or, with `range` in microseconds, the segments holding
/// records in that range, starting from the chain head just before them): each line's hash, each
/// link, sequence numbers, every checkpoint signature, and that every segment but the last ends
/// with its sealing checkpoint.
pub fn verify_dir(
    dir: &Path,
    key: &VerifyingKey,
    range: Option<(i64, i64)>,
) -> Result<VerifyReport, VerifyFailure> {
    let segments = list_segments(dir).map_err(|e| VerifyFailure::Io(e.to_string()))?;
    let mut report = VerifyReport::default();
    let mut head = Head::default();
    let mut started = range.is_none();
    let mut prev_last: Option<Stored> = None;
    for (i, seg) in segments.iter().enumerate() {
        let bytes = read_segment(&seg.path).map_err(|e| VerifyFailure::Io(e.to_string()))?;
        if let Some((from, to)) = range {
            let span = ends(&bytes);
            let overlaps = span
                .as_ref()
                .is_none_or(|(f, l)| time_of(f) < to && time_of(l) >= from);
            if !overlaps && !started {
                prev_last = span.map(|(_, l)| l);
                continue;
            }
            if !started {
                started = true;
                if let Some(p) = &prev_last {
                    head = Head {
                        seq: p.payload.seq,
                        hash: p.hash.clone(),
                        checkpoint_seq: p.payload.seq,
                    };
                }
            }
            if !overlaps {
                break;
            }
        }
        let bad = |f: Fault| VerifyFailure::Bad {
            segment: seg.number,
            seq: f.seq,
            offset: f.offset,
            problem: f.problem,
        };
        let end: ScanEnd = scan(&bytes, &mut head, key, |s| match &s.payload.body {
            Body::Call(_) => report.records += 1,
            Body::Checkpoint(_) => report.checkpoints += 1,
        })
        .map_err(bad)?;
        if i + 1 < segments.len() && !end.sealed {
            return Err(bad(Fault {
                offset: end.good_len,
                seq: head.seq + 1,
                problem: Problem::Unsealed,
            }));
        }
        report.segments += 1;
    }
    report.last_seq = head.seq;
    report.unsigned_tail = head.seq - head.checkpoint_seq;
    Ok(report)
}
