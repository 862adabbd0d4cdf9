//! Reading a local file's byte ranges on the calling task when the page cache already holds them.
//!
//! The object store reads a local file on tokio's blocking pool: each read opens the file and
//! hands the work to another thread and back. For a point lookup whose pages are cached that
//! hand-off costs more than the read. On Linux a read with `RWF_NOWAIT` copies from the page
//! cache and refuses, instead of waiting, when a byte would have to come from the disk; only
//! the ranges refused then take the object store's path (a batch's pages are often cached but
//! for a few). Elsewhere every read takes that path.

use bytes::Bytes;
use std::ops::Range;
use std::path::PathBuf;

/// One local file, opened at its first read.
pub(crate) struct LocalFile {
    path: PathBuf,
    /// The file and its length when opened.
    file: Option<(std::fs::File, u64)>,
}

impl LocalFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// Each range's bytes if all its bytes are in the page cache, else `None` for that range: the
    /// object store then reads it, and reports what is wrong if anything is (a range past the end
    /// of the file, say). After a problem other than a byte not cached, the rest are left to the
    /// store too.
    ///
    /// Ranges within [`NEAR`] of each other are read in one call (a batch's pages of one column
    /// are often that close): each call costs about as much as copying that many bytes more.
    pub(crate) fn read_cached(&mut self, ranges: &[Range<u64>]) -> Vec<Option<Bytes>> {
        let mut got = vec![None; ranges.len()];
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok().and_then(|f| {
                let len = f.metadata().ok()?.len();
                Some((f, len))
            });
        }
        let Some((file, len)) = self.file.as_ref() else {
            return got;
        };
        let mut order: Vec<usize> = (0..ranges.len())
            .filter(|&i| ranges[i].start <= ranges[i].end && ranges[i].end <= *len)
            .collect();
        order.sort_unstable_by_key(|&i| ranges[i].start);
        let mut next = 0;
        while next < order.len() {
            let first = &ranges[order[next]];
            let (start, mut end) = (first.start, first.end);
            let mut upto = next + 1;
            while let Some(r) = order.get(upto).map(|&i| &ranges[i]) {
                if r.start > end.saturating_add(NEAR) || r.end.max(end) - start > SPAN {
                    break;
                }
                end = end.max(r.end);
                upto += 1;
            }
            let joined = &order[next..upto];
            next = upto;
            match read_range(file, &(start..end)) {
                Ok(Some(bytes)) => {
                    for &i in joined {
                        let r = &ranges[i];
                        let at = (r.start - start) as usize..(r.end - start) as usize;
                        got[i] = Some(bytes.slice(at));
                    }
                    continue;
                }
                Ok(None) if joined.len() > 1 => {}
                Ok(None) => continue,
                Err(()) => break,
            }
            // A byte of the joined read is not cached: each range alone, so only those
            // holding such a byte are left to the store.
            for &i in joined {
                match read_range(file, &ranges[i]) {
                    Ok(bytes) => got[i] = bytes,
                    Err(()) => return got,
                }
            }
        }
        got
    }
}

/// Ranges of the page cache this close are read as one.
const NEAR: u64 = 4 << 10;

/// Ranges are joined into reads of at most this many bytes.
const SPAN: u64 = 1 << 20;

/// One range's bytes from the page cache: `None` if a byte of it is not cached (or the file has
/// become shorter); an error on any other problem.
fn read_range(file: &std::fs::File, r: &Range<u64>) -> Result<Option<Bytes>, ()> {
    let mut buf = vec![0u8; usize::try_from(r.end - r.start).map_err(|_| ())?];
    let mut done = 0;
    while done < buf.len() {
        match read_cached_at(file, &mut buf[done..], r.start + done as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(_) => return Err(()),
        }
    }
    Ok(Some(Bytes::from(buf)))
}

/// Bytes read at `offset` without waiting for the disk; an error when the read would wait.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
fn read_cached_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use rustix::io::{ReadWriteFlags, preadv2};
    let slices = &mut [std::io::IoSliceMut::new(buf)];
    Ok(preadv2(file, slices, offset, ReadWriteFlags::NOWAIT)?)
}

#[cfg(not(all(target_os = "linux", not(target_env = "musl"))))]
fn read_cached_at(_file: &std::fs::File, _buf: &mut [u8], _offset: u64) -> std::io::Result<usize> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether reads of `path` (already in the page cache) can be made with `RWF_NOWAIT`: a
    /// file system without (tmpfs on some kernels) always leaves reads to the store, and the
    /// tests below have nothing to check there.
    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    fn takes_nowait_reads(path: &std::path::Path) -> bool {
        let probe = std::fs::File::open(path).unwrap();
        let nowait = read_cached_at(&probe, &mut [0u8; 1], 0);
        let unsupported = nowait
            .is_err_and(|e| e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()));
        if unsupported {
            eprintln!("skipped: the temporary directory does not take RWF_NOWAIT reads");
        }
        !unsupported
    }

    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    #[test]
    fn cached_ranges_read_back_exactly_and_a_range_past_the_end_is_left_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // Read once so the page cache holds it, as it does for a hub's warm data.
        assert_eq!(std::fs::read(&path).unwrap(), data);
        if !takes_nowait_reads(&path) {
            return;
        }
        let mut f = LocalFile::new(path.clone());
        let ranges = [0..10, 4_000..70_000, 99_990..100_000, 5..5];
        let got = f.read_cached(&ranges);
        assert_eq!(got.len(), ranges.len());
        for (r, b) in ranges.iter().zip(&got) {
            let b = b.as_ref().expect("cached bytes are read here");
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
        }
        // Past the end, far past it (a damaged footer's length: nothing is allocated for it) and
        // backwards: each left to the store, which reports it; the ranges around are read.
        #[allow(clippy::reversed_empty_ranges)]
        let odd = [4_000..5_000, 99_990..100_001, 10..20, 0..u64::MAX, 30..20];
        let got = f.read_cached(&odd);
        let cached: Vec<bool> = got.iter().map(Option::is_some).collect();
        assert_eq!(cached, [true, false, true, false, false]);
        assert_eq!(&got[0].as_ref().unwrap()[..], &data[4_000..5_000]);
        assert_eq!(&got[2].as_ref().unwrap()[..], &data[10..20]);
        let mut gone = LocalFile::new(dir.path().join("missing.bin"));
        assert!(
            gone.read_cached(&ranges).iter().all(Option::is_none),
            "a missing file"
        );
    }

    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    #[test]
    fn only_the_ranges_not_in_the_page_cache_are_left_to_the_store() {
        use rustix::fs::{Advice, fadvise};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // Clean pages can be dropped from the cache: the second half's are, as the kernel drops
        // a hub's pages it has not read for a while. (The page cache holds a file in pieces of
        // up to 2 MiB; a piece is dropped only whole, so the half is at 4 MiB.)
        file.sync_all().unwrap();
        let half = 4 << 20;
        fadvise(&file, half, None, Advice::DontNeed).unwrap();
        if !takes_nowait_reads(&path) {
            return;
        }
        // Probed at the last page, away from every range below: a read refused still starts
        // reading ahead from where it was refused.
        if read_cached_at(&file, &mut [0u8; 1], data.len() as u64 - 1).is_ok() {
            eprintln!("skipped: the file system kept the dropped pages");
            return;
        }
        let mut f = LocalFile::new(path.clone());
        let ranges = [
            0..10,
            half + 100_000..half + 100_100,
            100..4_200,
            half - 10..half + 10,
            5..5,
        ];
        let got = f.read_cached(&ranges);
        let cached: Vec<bool> = got.iter().map(Option::is_some).collect();
        assert_eq!(cached, [true, false, true, false, true]);
        for (r, b) in ranges.iter().zip(&got) {
            if let Some(b) = b {
                assert_eq!(&b[..], &data[r.start as usize..r.end as usize], "{r:?}");
            }
        }
    }
}
