//! Reading a local file's byte ranges on the calling task when the page cache already holds them.
//!
//! The object store reads a local file on tokio's blocking pool: each read opens the file and
//! hands the work to another thread and back. For a point lookup whose pages are cached that
//! hand-off costs more than the read. On Linux a read with `RWF_NOWAIT` copies from the page
//! cache and refuses, instead of waiting, when a byte would have to come from the disk; only
//! then does the caller take the object store's path. Elsewhere every read takes that path.

use bytes::Bytes;
use std::ops::Range;
use std::path::PathBuf;

/// One local file, opened at its first read.
pub(crate) struct LocalFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LocalFile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    /// The bytes of every range if all of them are in the page cache; `None` if any is not, or
    /// on any problem (the object store then reads them and reports what is wrong).
    pub(crate) fn read_cached(&mut self, ranges: &[Range<u64>]) -> Option<Vec<Bytes>> {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let file = self.file.as_ref()?;
        ranges
            .iter()
            .map(|r| {
                let mut buf = vec![0u8; usize::try_from(r.end.checked_sub(r.start)?).ok()?];
                let mut done = 0;
                while done < buf.len() {
                    let n = read_cached_at(file, &mut buf[done..], r.start + done as u64).ok()?;
                    if n == 0 {
                        return None;
                    }
                    done += n;
                }
                Some(Bytes::from(buf))
            })
            .collect()
    }
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

    #[cfg(all(target_os = "linux", not(target_env = "musl")))]
    #[test]
    fn cached_ranges_read_back_exactly_and_a_range_past_the_end_is_left_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // Read once so the page cache holds it, as it does for a hub's warm data.
        assert_eq!(std::fs::read(&path).unwrap(), data);

        // A file system without `RWF_NOWAIT` reads (tmpfs on some kernels) always leaves reads
        // to the store; there is nothing to check here.
        let probe = std::fs::File::open(&path).unwrap();
        let nowait = read_cached_at(&probe, &mut [0u8; 1], 0);
        if nowait
            .is_err_and(|e| e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error()))
        {
            eprintln!("skipped: the temporary directory does not take RWF_NOWAIT reads");
            return;
        }
        let mut f = LocalFile::new(path.clone());
        let ranges = [0..10, 4_000..70_000, 99_990..100_000, 5..5];
        let got = f.read_cached(&ranges).expect("cached bytes are read here");
        for (r, b) in ranges.iter().zip(&got) {
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
        }
        let past_the_end = [4_000..5_000, 99_990..100_001];
        assert!(f.read_cached(&past_the_end).is_none());
        let mut gone = LocalFile::new(dir.path().join("missing.bin"));
        assert!(gone.read_cached(&ranges).is_none(), "a missing file");
    }
}
