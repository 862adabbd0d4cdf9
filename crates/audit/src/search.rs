//! Searching the log, newest first.

use crate::chain::{list_segments, read_whole_lines};
use crate::record::{Body, Outcome, Stored, decode};
use crate::{Error, Result};
use std::path::Path;

/// What to look for; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Caller department.
    pub dept: Option<String>,
    /// A table the call touched.
    pub table: Option<String>,
    /// `Service/Method`.
    pub method: Option<String>,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Purpose (exact).
    pub purpose: Option<String>,
    /// Calls at or after, microseconds since the epoch.
    pub from_us: Option<i64>,
    /// Calls before, microseconds since the epoch.
    pub to_us: Option<i64>,
    /// Keyed hash of a looked-up key.
    pub key_hash: Option<String>,
}

impl Filter {
    fn matches(&self, s: &Stored) -> bool {
        let Body::Call(e) = &s.payload.body else {
            return false;
        };
        self.dept.as_ref().is_none_or(|d| &e.dept == d)
            && self.table.as_ref().is_none_or(|t| e.tables.contains(t))
            && self.method.as_ref().is_none_or(|m| &e.method == m)
            && self.outcome.is_none_or(|o| e.outcome == o)
            && self.purpose.as_ref().is_none_or(|p| &e.purpose == p)
            && self.from_us.is_none_or(|f| e.time_us >= f)
            && self.to_us.is_none_or(|t| e.time_us < t)
            && self
                .key_hash
                .as_ref()
                .is_none_or(|k| e.key_hashes.contains(k))
    }
}

/// Scans segments newest first. Lines that do not verify are skipped here (verification is
/// `audit verify`'s job); whole lines only, so a segment being appended to is read safely.
pub(crate) fn search(
    dir: &Path,
    filter: &Filter,
    page_size: usize,
    before: Option<u64>,
) -> Result<(Vec<Stored>, Option<u64>)> {
    let page_size = page_size.max(1);
    let mut out = Vec::new();
    for seg in list_segments(dir)
        .map_err(|e| Error::io(dir, e))?
        .iter()
        .rev()
    {
        let bytes = read_whole_lines(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        for line in bytes.split(|b| *b == b'\n').rev() {
            let Ok(s) = decode(line) else { continue };
            if before.is_some_and(|b| s.payload.seq >= b) || !filter.matches(&s) {
                continue;
            }
            out.push(s);
            if out.len() > page_size {
                out.truncate(page_size);
                let next = out.last().map(|s| s.payload.seq);
                return Ok((out, next));
            }
        }
    }
    Ok((out, None))
}
