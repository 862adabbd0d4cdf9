//! The writer thread: group commit, rotation, checkpoints, fail-closed on I/O errors.
//!
//! Hot path: every call's answer waits for the batch its record is in to be written and
//! `fdatasync`'d. Calls that arrive while one batch syncs form the next batch, so many calls
//! share one sync. The log's state ([`Writer`]) sits behind a mutex: the writer thread
//! ([`Batcher`]) takes it for each batch, and a call alone at a quiet time takes it itself and
//! commits its own record (see [`crate::AuditLog::append`]).
//!
//! The live segment is preallocated: zero bytes are written and synced ahead of the records in
//! chunks, so a batch overwrites blocks the file already has and its `fdatasync` flushes data
//! only. Appending to the end instead makes every sync also write the file's metadata (the new
//! size and blocks; a journal commit where the file system journals), which costs more, and
//! more again under load (see the `audit_sync` benchmark). A sealed segment is cut back to its
//! records.

use crate::chain::{Head, segment_name};
use crate::meter::Meter;
use crate::record::{Body, Checkpoint, Entry, Payload, Stored, checkpoint_message, encode, hex};
use crate::{Error, Faults, Gather, Marks, Result};
use ed25519_dalek::{Signer, SigningKey};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Largest number of records in one batch.
const MAX_BATCH: usize = 4096;

/// Zero bytes written ahead of the records at a time (at most one segment's size).
const PREALLOC_BYTES: u64 = 1024 * 1024;

// Appends are the common request; boxing their entry would allocate once more per record.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Req {
    Append {
        entry: Entry,
        reply: Option<oneshot::Sender<Result<u64>>>,
    },
    Close {
        reply: oneshot::Sender<Result<()>>,
    },
    /// Wakes an idle writer to write zeros ahead (a lone call's commit used them up).
    Room,
}

pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) file: File,
    pub(crate) segment: u64,
    /// Bytes of records in the live segment.
    pub(crate) len: u64,
    /// Size of the live segment file: records, then zeros.
    pub(crate) allocated: u64,
    pub(crate) head: Head,
    pub(crate) last_sealed: bool,
    pub(crate) key: SigningKey,
    pub(crate) key_id: String,
    pub(crate) segment_bytes: u64,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) last_checkpoint: Instant,
    pub(crate) failed: Arc<AtomicBool>,
    /// Sealed by [`crate::AuditLog::close`]: no more records.
    pub(crate) closed: bool,
    /// Records in the last batch committed.
    pub(crate) last_batch: usize,
    /// Batches made durable.
    pub(crate) syncs: Arc<AtomicU64>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) meter: Arc<Mutex<Meter>>,
    pub(crate) tail: broadcast::Sender<Arc<Stored>>,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The writer thread: takes records off the channel in batches and commits each batch.
pub(crate) struct Batcher {
    pub(crate) state: Arc<Mutex<Writer>>,
    /// Calls whose records are still to come.
    pub(crate) underway: Arc<Marks>,
    /// When a batch is held open for them. Without it, under load each sync carries the
    /// one or two records that arrived during the last one, and a sync's fixed cost (a write,
    /// a flush, waking the writer and the callers) is paid per call.
    pub(crate) gather: Gather,
}

/// Holds the log's state, also after a panic while another held it: a batch changes the
/// state only once it is durable, so there is nothing half-done to trip on.
pub(crate) fn held(state: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Batcher {
    pub(crate) fn run(self, rx: Receiver<Req>) {
        let mut batch = Vec::new();
        loop {
            let first = match rx.try_recv() {
                Ok(r) => Ok(r),
                Err(TryRecvError::Empty) => {
                    // Nothing waits: top up the zeros now rather than inside a call's batch.
                    held(&self.state).keep_room();
                    // From here until a record arrives, a lone call may commit its own. A
                    // sender clears the flag after sending: looking again after setting it
                    // means a record sent before then is not left waiting behind lone calls.
                    self.underway.idle.store(true, Ordering::SeqCst);
                    let r = match rx.try_recv() {
                        Ok(r) => Ok(r),
                        Err(TryRecvError::Empty) => rx.recv().map_err(|_| ()),
                        Err(TryRecvError::Disconnected) => Err(()),
                    };
                    self.underway.idle.store(false, Ordering::SeqCst);
                    r
                }
                Err(TryRecvError::Disconnected) => Err(()),
            };
            let Ok(first) = first else {
                // Every handle is gone: seal what we have so the tail is signed.
                let _ = held(&self.state).seal();
                return;
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.gather(&rx, &mut batch);
            let mut entries = Vec::with_capacity(batch.len());
            let mut replies = Vec::with_capacity(batch.len());
            let mut close = None;
            for r in batch.drain(..) {
                match r {
                    Req::Append { entry, reply } => {
                        entries.push(entry);
                        replies.push(reply);
                    }
                    Req::Close { reply } => close = Some(reply),
                    // Nothing to do here: zeros are topped up once the channel is empty.
                    Req::Room => {}
                }
            }
            if !entries.is_empty() {
                let done = held(&self.state).commit(entries);
                // Answered outside the lock: waking the callers is the slow part.
                for (i, reply) in replies.into_iter().enumerate() {
                    if let Some(r) = reply {
                        let _ = r.send(
                            done.as_ref()
                                .map(|first| first + i as u64)
                                .map_err(|_| Error::Unavailable),
                        );
                    }
                }
            }
            if let Some(reply) = close {
                let sealed = {
                    let mut w = held(&self.state);
                    w.closed = true;
                    w.seal()
                };
                let _ = reply.send(sealed);
                return;
            }
        }
    }

    /// Holds the batch open while calls are under way, for at most `gather.time`, when at
    /// least `min_calls` are at the start. Stops as soon as none is left (the last mark wakes
    /// the writer) or a close is asked for ([`crate::AuditLog::close`] wakes it too), and when
    /// it wakes to find the batch full.
    ///
    /// Once held, the batch waits for every call, not only while `min_calls` remain: on two
    /// workers the count swings between one and two all the time, and stopping at one ended
    /// batches early enough to cost more syncs (100 M residents, 32 clients: about 18,000
    /// against 13,000 per 10 s) and throughput.
    ///
    /// The writer sleeps meanwhile rather than waiting on the channel: waiting on it would
    /// wake the writer, and cost every sender a wake-up call, once per record that arrives.
    fn gather(&self, rx: &Receiver<Req>, batch: &mut Vec<Req>) {
        let under_way = || self.underway.count.load(Ordering::SeqCst);
        if self.gather.time.is_zero() || under_way() < self.underway.min_calls {
            return;
        }
        let Some(until) = Instant::now().checked_add(self.gather.time) else {
            return;
        };
        self.underway.gathering.store(true, Ordering::SeqCst);
        loop {
            // Read before draining: a call hands over its record before dropping its mark, so
            // when none is left, every record they sent is in the channel now.
            let none_left = under_way() == 0;
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if none_left
                || batch.len() >= MAX_BATCH
                || left.is_zero()
                || batch.iter().any(|r| matches!(r, Req::Close { .. }))
            {
                break;
            }
            std::thread::park_timeout(left);
        }
        self.underway.gathering.store(false, Ordering::SeqCst);
    }
}

impl Writer {
    /// Chains the records, writes them as one batch and makes them durable, then meters them
    /// and sends them to the tail. `Ok` holds the sequence number of the first (the rest
    /// follow in order); `Err` means none was written: the log is closed or has failed, now
    /// or before.
    pub(crate) fn commit(&mut self, entries: Vec<Entry>) -> Result<u64> {
        if self.closed || self.failed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable);
        }
        let first = self.head.seq + 1;
        self.last_batch = entries.len();
        let mut buf = Vec::with_capacity(entries.len() * 512);
        let mut head = self.head.clone();
        let mut staged = Vec::with_capacity(entries.len());
        for entry in entries {
            let payload = Payload {
                seq: head.seq + 1,
                prev: head.hash.clone(),
                body: Body::Call(entry),
            };
            let (line, hash) = encode(&payload);
            buf.extend_from_slice(&line);
            head.seq = payload.seq;
            head.hash = hash.clone();
            staged.push(Stored { payload, hash });
        }
        if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
            self.checkpoint_line(&mut buf, &mut head, false);
        }
        if let Err(e) = self.write_durably(&buf) {
            self.fail(&e);
            return Err(Error::Unavailable);
        }
        self.head = head;
        self.last_sealed = false;
        let mut meter = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        for stored in staged {
            if let Body::Call(e) = &stored.payload.body {
                meter.add(e);
            }
            let _ = self.tail.send(Arc::new(stored));
        }
        drop(meter);
        if self.len >= self.segment_bytes
            && let Err(e) = self.rotate()
        {
            self.fail(&e);
        }
        Ok(first)
    }

    /// After any write or sync error the log stops: Linux may have dropped the dirty pages, so
    /// a retry could "succeed" with records lost. The hub then refuses to serve.
    fn fail(&mut self, e: &std::io::Error) {
        if self.failed.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::error!(error = %e, segment = self.segment, "audit log write failed; refusing service");
        // Best effort: leave no partial line behind.
        let _ = self.file.set_len(self.len);
        self.allocated = self.len;
    }

    fn checkpoint_line(&mut self, buf: &mut Vec<u8>, head: &mut Head, seals: bool) {
        let mut checkpoint = Checkpoint {
            time_us: now_us(),
            segment: self.segment,
            seals,
            key_id: self.key_id.clone(),
            sig: String::new(),
        };
        let sig = self
            .key
            .sign(&checkpoint_message(head.seq + 1, &head.hash, &checkpoint));
        checkpoint.sig = hex(&sig.to_bytes());
        let payload = Payload {
            seq: head.seq + 1,
            prev: head.hash.clone(),
            body: Body::Checkpoint(checkpoint),
        };
        let (line, hash) = encode(&payload);
        buf.extend_from_slice(&line);
        head.seq = payload.seq;
        head.hash = hash;
        head.checkpoint_seq = payload.seq;
        self.last_checkpoint = Instant::now();
    }

    fn write_durably(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.faults.fail_write.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected write failure"));
        }
        self.file.write_all_at(buf, self.len)?;
        let end = self.len + buf.len() as u64;
        if end > self.allocated {
            // The batch outgrew the zeros: more go behind it, under the same sync.
            self.write_zeros(end)?;
        }
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.len = end;
        Ok(())
    }

    /// Bytes of zeros written ahead at a time: at most a segment, at least a block.
    fn chunk(&self) -> u64 {
        PREALLOC_BYTES.min(self.segment_bytes).max(4096)
    }

    /// Writes one chunk of zeros from `from` (not synced).
    fn write_zeros(&mut self, from: u64) -> std::io::Result<()> {
        let target = from + self.chunk();
        let zeros = vec![0u8; self.chunk() as usize];
        let mut at = from;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.allocated = target;
        Ok(())
    }

    /// Whether less than half a chunk of zeros is left ahead of the records.
    pub(crate) fn room_low(&self) -> bool {
        self.allocated.saturating_sub(self.len) < self.chunk() / 2
    }

    /// While no call waits: extends the zeros when less than half a chunk is left.
    fn keep_room(&mut self) {
        if self.closed || self.failed.load(Ordering::SeqCst) || !self.room_low() {
            return;
        }
        let topped = self
            .write_zeros(self.allocated.max(self.len))
            .and_then(|()| self.file.sync_data());
        if let Err(e) = topped {
            self.fail(&e);
        }
    }

    /// Writes a sealing checkpoint (unless the segment is already sealed).
    fn seal(&mut self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable);
        }
        if self.last_sealed {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut head = self.head.clone();
        self.checkpoint_line(&mut buf, &mut head, true);
        let sealed = self.write_durably(&buf).and_then(|()| {
            // A sealed segment holds its records only.
            self.file.set_len(self.len)?;
            self.file.sync_all()?;
            self.allocated = self.len;
            Ok(())
        });
        match sealed {
            Ok(()) => {
                self.head = head;
                self.last_sealed = true;
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(Error::Unavailable)
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.seal()
            .map_err(|_| std::io::Error::other("could not seal the segment"))?;
        let next = self.segment + 1;
        let path = self.dir.join(segment_name(next));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = file;
        self.segment = next;
        self.len = 0;
        self.allocated = 0;
        // A new segment is not sealed, even though the chain head is a sealing checkpoint.
        self.last_sealed = false;
        Ok(())
    }
}
