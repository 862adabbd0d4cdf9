//! Summaries of sealed segments: what recovery learned by scanning one (where its chain starts
//! and ends, its records, its share of the meters), kept beside it as `segment-N.sum` so that
//! the next start need not parse it again. A summary carries an HMAC under a key derived from
//! the audit signing key, so only the hub that can sign the log can write one it will accept
//! (a forged count would otherwise move grant quotas). It is trusted only while the segment
//! keeps its size, the summary continues the chain where the one before it ended, and the
//! segment still ends in the signed checkpoint that sealed it; otherwise the segment is scanned
//! again and its summary rewritten. Start-up therefore does not read a summarized segment's
//! other records: a record edited in place there is found by `audit verify`, not at start.

use crate::chain::{Head, Segment, valid_seal};
use crate::meter::Snapshot;
use crate::record::{decode, hex};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// The key summaries are authenticated with, derived from the audit signing key.
pub(crate) struct SummaryKey([u8; 32]);

impl SummaryKey {
    pub(crate) fn new(signing: &SigningKey) -> Self {
        let mut h = Sha256::new();
        h.update(b"citybrain audit segment summary\n");
        h.update(signing.to_bytes());
        Self(h.finalize().into())
    }

    fn mac(&self, body: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(body);
        hex(&mac.finalize().into_bytes())
    }
}

/// The segment's summary, if there is one and it still describes the segment that follows
/// `head`.
pub(crate) fn load(
    seg: &Segment,
    head: &Head,
    key: &VerifyingKey,
    mac: &SummaryKey,
) -> Option<Summary> {
    // First line: the HMAC of the rest.
    let file = std::fs::read(path(seg)).ok()?;
    let nl = file.iter().position(|b| *b == b'\n')?;
    let (tag, body) = (&file[..nl], &file[nl + 1..]);
    if !subtle_eq(tag, mac.mac(body).as_bytes()) {
        return None;
    }
    let s: Summary = serde_json::from_slice(body).ok()?;
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
pub(crate) fn store(seg: &Segment, summary: &Summary, mac: &SummaryKey) {
    let target = path(seg);
    let temporary = target.with_extension("sum.tmp");
    let written = serde_json::to_vec(summary)
        .map_err(std::io::Error::other)
        .map(|body| [mac.mac(&body).into_bytes(), b"\n".to_vec(), body].concat())
        .and_then(|bytes| std::fs::write(&temporary, bytes))
        .and_then(|()| std::fs::rename(&temporary, &target));
    if let Err(e) = written {
        tracing::warn!(segment = seg.number, error = %e, "could not keep a segment summary");
    }
}

/// Equality of two tags without an early exit.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
