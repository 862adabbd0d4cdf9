//! The hub's audit log: one record per call, durable before the answer leaves, tamper-evident.
//!
//! Records are newline-delimited JSON in append-only segment files under the audit directory.
//! Each line carries its sequence number, the SHA-256 of the previous line and its own hash, so
//! editing, deleting, inserting or reordering a line breaks the chain. Signed checkpoints
//! (Ed25519 over the chain head) are written every second while calls arrive and whenever a
//! segment is sealed, so a rewritten chain cannot be passed off either. Records become durable
//! by group commit: calls that arrive while one `fdatasync` runs share the next, and a batch is
//! held open briefly while calls marked [`AuditLog::underway`] remain (see [`Gather`]); a call
//! alone at a quiet time commits its own record (see [`AuditLog::append`]). Any
//! write or sync error fails the log closed: every later append is refused and the hub answers
//! UNAVAILABLE.
//!
//! Keys (ID numbers, credit codes) are never stored raw: [`KeyHasher`] turns them into keyed
//! hashes (HMAC-SHA256 with a hub secret), so "who looked up this person" can be answered by
//! hashing the number the same way.

mod chain;
mod meter;
mod record;
mod search;
mod summary;
mod verify;
mod writer;

pub use chain::{
    Fault, Head, Problem, Segment, list_segments, read_segment, read_whole_lines, segment_name,
};
pub use meter::{MeterKey, Usage, day_of};
pub use record::{Body, Checkpoint, Entry, Outcome, Payload, Stored, decode, encode};
pub use search::Filter;
pub use verify::{VerifyFailure, VerifyReport, verify_dir};

use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, oneshot};

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log failed (or was closed) and accepts no more records.
    #[error("the audit log is unavailable")]
    Unavailable,
    /// At start the log holds damage that is not a torn tail: refuse to serve until an operator
    /// has looked (`citybrain audit verify`).
    #[error("audit segment {segment} is damaged at byte {offset} (record {seq}): {problem}")]
    Damaged {
        /// Segment number.
        segment: u64,
        /// Byte offset of the bad line.
        offset: usize,
        /// Sequence number the bad line should have had.
        seq: u64,
        /// What is wrong.
        problem: Problem,
    },
    /// File system error while opening or reading the log.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Switches to inject write or sync failures (tests of the fail-closed path).
#[derive(Debug, Default)]
pub struct Faults {
    /// Make the next writes fail.
    pub fail_write: AtomicBool,
    /// Make the next syncs fail.
    pub fail_sync: AtomicBool,
}

/// How to open the log.
pub struct AuditConfig {
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// Key that signs checkpoints.
    pub signing_key: SigningKey,
    /// Secret of the keyed hashes of looked-up keys.
    pub hmac_secret: [u8; 32],
    /// Segment size after which a segment is sealed and a new one started.
    pub segment_bytes: u64,
    /// Longest time between checkpoints while records arrive.
    pub checkpoint_interval: Duration,
    /// When a batch is held open for the records of calls still under way (see
    /// [`AuditLog::underway`]).
    pub gather: Gather,
    /// Failure injection.
    pub faults: Arc<Faults>,
}

impl AuditConfig {
    /// Defaults: 64 MiB segments, a checkpoint every second, batches held open as
    /// [`Gather::DEFAULT`].
    pub fn new(dir: impl Into<PathBuf>, signing_key: SigningKey, hmac_secret: [u8; 32]) -> Self {
        Self {
            dir: dir.into(),
            signing_key,
            hmac_secret,
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            gather: Gather::DEFAULT,
            faults: Arc::new(Faults::default()),
        }
    }
}

/// When the writer holds a batch open for the records of calls still under way.
///
/// Holding a batch lets the records of calls served together share one sync instead of each
/// paying for its own; it costs the calls already in the batch up to `time` (and a record that
/// just missed a batch up to `time` plus two syncs). That pays only when the machine is busy:
/// a sync's fixed cost (the flush, its interrupts, waking the writer and the callers) is CPU
/// taken from calls only when no core is free. So a batch is held only when at least
/// `min_calls` calls are under way as it starts (counted roughly: a caller whose record was
/// just taken may not have dropped its mark yet); then until none is left, for at most
/// `time`. A call counts as under way from the moment the gateway takes it until its record
/// is handed over; the gateway marks only calls answered in one message (streams may wait on
/// their client, or run far longer than a batch is held). Such a call runs start to finish on
/// one worker, so as many under way as there are cores means, roughly, that every worker is
/// busy: the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gather {
    /// Longest a batch is held open (zero: never).
    pub time: Duration,
    /// Calls under way needed to hold a batch (0: one per core of this machine; 0 counted
    /// as 1 before this default existed).
    pub min_calls: usize,
}

impl Gather {
    /// At most 2 ms, and only for a batch that starts while every core is serving a call.
    pub const DEFAULT: Gather = Gather {
        time: Duration::from_millis(2),
        min_calls: 0,
    };

    /// `min_calls` with 0 read as one per core.
    pub fn calls_needed(&self) -> usize {
        match self.min_calls {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for Gather {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What recovery at start found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records in the log.
    pub records: u64,
    /// Bytes of a torn tail cut away (moved to `segment-N.torn`).
    pub torn_bytes: u64,
}

/// Keyed hashes of looked-up keys.
#[derive(Clone)]
pub struct KeyHasher {
    secret: [u8; 32],
}

impl KeyHasher {
    /// A hasher with the hub's secret.
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// HMAC-SHA256 of the key, first 128 bits as hex.
    pub fn hash(&self, key: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        mac.update(key.as_bytes());
        record::hex(&mac.finalize().into_bytes()[..16])
    }
}

/// Id of a checkpoint signing key: `audit-` and 16 hex digits of its public key's SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    format!(
        "audit-{}",
        &record::hex(&Sha256::digest(key.as_bytes()))[..16]
    )
}

struct Shared {
    tx: mpsc::Sender<writer::Req>,
    /// The log's state, for a lone call to commit its own record (see [`AuditLog::append`]).
    state: Arc<Mutex<writer::Writer>>,
    /// Records committed by their own call.
    lone: AtomicU64,
    failed: Arc<AtomicBool>,
    underway: Arc<Marks>,
    syncs: Arc<AtomicU64>,
    hasher: KeyHasher,
    tail: broadcast::Sender<Arc<Stored>>,
    meter: Arc<Mutex<meter::Meter>>,
    dir: PathBuf,
    key: VerifyingKey,
    recovery: Recovery,
}

/// Calls under way, and the writer to wake when none is left.
pub(crate) struct Marks {
    pub(crate) count: AtomicUsize,
    /// [`Gather::calls_needed`]: calls under way for a batch to be held (at least 1).
    pub(crate) min_calls: usize,
    /// Whether the writer sleeps holding a batch open.
    pub(crate) gathering: AtomicBool,
    /// Whether the writer thread waits for a record with none in hand.
    pub(crate) idle: AtomicBool,
    /// The writer thread (set once it is started).
    writer: OnceLock<std::thread::Thread>,
}

/// A call whose record is still to come (see [`AuditLog::underway`]).
pub struct Underway {
    marks: Arc<Marks>,
}

impl Drop for Underway {
    fn drop(&mut self) {
        // The last one wakes a writer holding a batch open (it sleeps without being woken by
        // every record that arrives meanwhile); a writer doing anything else ignores it.
        if self.marks.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.marks.gathering.load(Ordering::SeqCst)
            && let Some(t) = self.marks.writer.get()
        {
            t.unpark();
        }
    }
}

/// A handle on the open log (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    shared: Arc<Shared>,
}

impl AuditLog {
    /// Opens the log: verifies the live segment record by record and each sealed one by its
    /// seal and its link to the one before (every record, the first time; see `summary`), cuts
    /// a torn tail (keeping the cut bytes beside the segment), rebuilds the meters, and starts
    /// the writer thread.
    pub fn open(cfg: AuditConfig) -> Result<Self> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| Error::io(&cfg.dir, e))?;
        let key = cfg.signing_key.verifying_key();
        let mut meter = meter::Meter::default();
        let summaries = summary::SummaryKey::new(&cfg.signing_key);
        let (head, last, recovery) = recover(&cfg.dir, &key, &summaries, &mut meter)?;
        let (segment, file, len) = match last {
            Some(last) if !last.sealed => {
                let path = cfg.dir.join(segment_name(last.number));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                (last.number, file, last.data_len)
            }
            sealed => {
                let n = sealed.map_or(1, |l| l.number + 1);
                let path = cfg.dir.join(segment_name(n));
                let file = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::io(&path, e))?;
                std::fs::File::open(&cfg.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| Error::io(&cfg.dir, e))?;
                (n, file, 0)
            }
        };
        let allocated = file
            .metadata()
            .map_err(|e| Error::io(&cfg.dir.join(segment_name(segment)), e))?
            .len();
        let failed = Arc::new(AtomicBool::new(false));
        let underway = Arc::new(Marks {
            count: AtomicUsize::new(0),
            min_calls: cfg.gather.calls_needed(),
            gathering: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            writer: OnceLock::new(),
        });
        let syncs = Arc::new(AtomicU64::new(0));
        let meter = Arc::new(Mutex::new(meter));
        let (tail, _) = broadcast::channel(4096);
        let (tx, rx) = mpsc::channel();
        let state = Arc::new(Mutex::new(writer::Writer {
            dir: cfg.dir.clone(),
            file,
            segment,
            len,
            allocated,
            head,
            last_sealed: false,
            key_id: key_id(&key),
            key: cfg.signing_key,
            segment_bytes: cfg.segment_bytes,
            checkpoint_interval: cfg.checkpoint_interval,
            last_checkpoint: Instant::now(),
            failed: failed.clone(),
            closed: false,
            last_batch: 0,
            syncs: syncs.clone(),
            faults: cfg.faults,
            meter: meter.clone(),
            tail: tail.clone(),
        }));
        let batcher = writer::Batcher {
            state: state.clone(),
            underway: underway.clone(),
            gather: cfg.gather,
        };
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || batcher.run(rx))
            .map_err(|e| Error::io(&cfg.dir, e))?;
        let _ = underway.writer.set(writer.thread().clone());
        tracing::info!(
            records = recovery.records,
            torn_bytes = recovery.torn_bytes,
            "audit log open"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                tx,
                state,
                lone: AtomicU64::new(0),
                failed,
                underway,
                syncs,
                hasher: KeyHasher::new(cfg.hmac_secret),
                tail,
                meter,
                dir: cfg.dir,
                key,
                recovery,
            }),
        })
    }

    /// Appends a record; the future resolves with its sequence number once it is durable.
    /// The record is handed to the writer before this returns, so a call may release its
    /// [`Underway`] mark as soon as it has the future.
    ///
    /// A lone call commits its own record, here on the calling thread: when the writer thread
    /// is idle, no call other than this one is marked under way and the last batch held one
    /// record, nothing could share the sync, and handing the record over would cost two
    /// thread wake-ups (the writer's, then the caller's) on top of it. The caller's thread is
    /// then held for one write and `fdatasync`; a tokio worker can spare that while no other
    /// call is being served. The last batch's size keeps this to quiet times: under load a
    /// call may find itself alone for a moment while requests wait unread, and holding its
    /// worker then cost throughput (`lookup_e2e`, 32 clients: 0.78 against 0.83 of the
    /// in-memory sink's, with 3% of calls alone).
    pub fn append(&self, entry: Entry) -> impl Future<Output = Result<u64>> + Send + use<> {
        enum Sent {
            Done(Result<u64>),
            Waiting(oneshot::Receiver<Result<u64>>),
        }
        let sent = if self.is_failed() {
            Sent::Done(Err(Error::Unavailable))
        } else if let Some(state) = self.alone() {
            Sent::Done(self.commit_own(state, entry))
        } else {
            let (reply, rx) = oneshot::channel();
            let req = writer::Req::Append {
                entry,
                reply: Some(reply),
            };
            if self.hand_over(req) {
                Sent::Waiting(rx)
            } else {
                Sent::Done(Err(Error::Unavailable))
            }
        };
        async move {
            match sent {
                Sent::Done(done) => done,
                Sent::Waiting(rx) => rx.await.map_err(|_| Error::Unavailable)?,
            }
        }
    }

    /// The log's state, held, if the calling call is alone (see [`append`](Self::append)).
    fn alone(&self) -> Option<MutexGuard<'_, writer::Writer>> {
        let marks = &self.shared.underway;
        if !marks.idle.load(Ordering::SeqCst) || marks.count.load(Ordering::SeqCst) > 1 {
            return None;
        }
        let state = match self.shared.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        (state.last_batch <= 1).then_some(state)
    }

    /// Commits a lone call's record on this thread.
    fn commit_own(&self, mut state: MutexGuard<'_, writer::Writer>, entry: Entry) -> Result<u64> {
        let done = state.commit(vec![entry]);
        if done.is_ok() {
            self.shared.lone.fetch_add(1, Ordering::Relaxed);
            // The zeros ahead run low: the writer writes more (a call that passes them would
            // write a chunk and extend the file under its own sync).
            if state.room_low() {
                self.hand_over(writer::Req::Room);
            }
        }
        done
    }

    /// Records committed by their own call, alone, rather than by the writer thread (see
    /// [`append`](Self::append)); each took one sync of [`syncs`](Self::syncs).
    pub fn lone_commits(&self) -> u64 {
        self.shared.lone.load(Ordering::SeqCst)
    }

    /// Appends a record without waiting (for calls whose answer will never be sent: the client
    /// cancelled). Returns false when the log is failed.
    pub fn submit(&self, entry: Entry) -> bool {
        !self.is_failed() && self.hand_over(writer::Req::Append { entry, reply: None })
    }

    /// Sends a request to the writer thread, which is then no longer idle: a call alone from
    /// now on must not commit ahead of it. False when the writer has stopped.
    fn hand_over(&self, req: writer::Req) -> bool {
        let sent = self.shared.tx.send(req).is_ok();
        self.shared.underway.idle.store(false, Ordering::SeqCst);
        sent
    }

    /// Marks a call under way: until the mark is dropped (once the call's record is handed
    /// to [`append`](Self::append) or [`submit`](Self::submit)) the writer expects a record
    /// soon, and may hold a batch open briefly (see [`Gather`]) so the records of calls served
    /// together share one sync instead of each paying for its own.
    pub fn underway(&self) -> Underway {
        self.shared.underway.count.fetch_add(1, Ordering::SeqCst);
        Underway {
            marks: self.shared.underway.clone(),
        }
    }

    /// Calls marked [`underway`](Self::underway) whose mark is not dropped yet.
    pub fn calls_under_way(&self) -> usize {
        self.shared.underway.count.load(Ordering::SeqCst)
    }

    /// Batches made durable since the log was opened (each one write and one sync); with
    /// [`Recovery::records`] and the meters, how many records a sync carries.
    pub fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::SeqCst)
    }

    /// Whether the log has failed closed.
    pub fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Seals the current segment and stops the writer. Later appends fail.
    pub async fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if !self.hand_over(writer::Req::Close { reply }) {
            return Err(Error::Unavailable);
        }
        // A writer holding a batch open sleeps until the last call under way is done; it
        // need not wait for that to close.
        if let Some(t) = self.shared.underway.writer.get() {
            t.unpark();
        }
        rx.await.map_err(|_| Error::Unavailable)?
    }

    /// The keyed hash of an identifier.
    pub fn hash_key(&self, key: &str) -> String {
        self.shared.hasher.hash(key)
    }

    /// New records as they become durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Stored>> {
        self.shared.tail.subscribe()
    }

    /// Calls, rows and bytes of every record ever written.
    pub fn totals(&self) -> Usage {
        self.meter().total()
    }

    /// Metering rows (empty strings match anything).
    pub fn metering(
        &self,
        dept: &str,
        table: &str,
        from_day: &str,
        to_day: &str,
    ) -> Vec<(MeterKey, Usage)> {
        self.meter().rows(dept, table, from_day, to_day)
    }

    /// Answered calls and rows under a grant on a day (`YYYY-MM-DD`, UTC): the counters grant
    /// quotas are enforced from.
    pub fn grant_usage(&self, grant_id: &str, day: &str) -> Usage {
        self.meter().grant_usage(grant_id, day)
    }

    /// Departments that have called on at least one table.
    pub fn consumer_departments(&self) -> usize {
        self.meter().departments_using_tables()
    }

    fn meter(&self) -> MutexGuard<'_, meter::Meter> {
        self.shared.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Newest-first search; `before` continues a previous page (a sequence number).
    pub fn search(
        &self,
        filter: &Filter,
        page_size: usize,
        before: Option<u64>,
    ) -> Result<(Vec<Stored>, Option<u64>)> {
        search::search(&self.shared.dir, filter, page_size, before)
    }

    /// Verifies the whole log as `audit verify` does.
    pub fn verify(&self) -> Result<VerifyReport, VerifyFailure> {
        verify_dir(&self.shared.dir, &self.shared.key, None)
    }

    /// The directory of the segment files (for read-only SQL over the log).
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What recovery found at open.
    pub fn recovery(&self) -> &Recovery {
        &self.shared.recovery
    }

    /// The checkpoint verification key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.shared.key
    }
}

/// The last segment as recovery left it.
struct LastSegment {
    number: u64,
    sealed: bool,
    /// Bytes of whole records (the rest of the file is preallocated zeros).
    data_len: u64,
}

/// Where recovery left the log: the chain head, the last segment and what was found.
type Recovered = (Head, Option<LastSegment>, Recovery);

/// Verifies the live segment and, for each sealed one, its seal and its link to the one
/// before (every record when it has no summary yet; see `summary`); cuts a torn tail of the
/// last one.
fn recover(
    dir: &Path,
    key: &VerifyingKey,
    summaries: &summary::SummaryKey,
    meter: &mut meter::Meter,
) -> Result<Recovered> {
    let segments = list_segments(dir).map_err(|e| Error::io(dir, e))?;
    let mut head = Head::default();
    let mut rec = Recovery::default();
    let mut last = None;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        if !is_last && let Some(s) = summary::load(seg, &head, key, summaries) {
            rec.records += s.records;
            meter.merge(s.meter);
            head = Head {
                seq: s.last_seq,
                hash: s.last_hash,
                checkpoint_seq: s.checkpoint_seq,
            };
            continue;
        }
        let start = head.clone();
        let bytes = read_segment(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        let damaged = |f: Fault| Error::Damaged {
            segment: seg.number,
            offset: f.offset,
            seq: f.seq,
            problem: f.problem,
        };
        let (mut share, mut records) = (meter::Meter::default(), 0);
        let mut count = |s: &Stored| {
            if let Body::Call(e) = &s.payload.body {
                share.add(e);
                records += 1;
            }
        };
        let end = match chain::scan(&bytes, &mut head, key, &mut count) {
            Ok(end) => end,
            Err(f) if is_last && chain::torn_tail(&bytes, f.offset) => {
                cut_tail(seg, &bytes, f.offset)?;
                rec.torn_bytes = (bytes.len() - f.offset) as u64;
                tracing::warn!(
                    segment = seg.number,
                    bytes = rec.torn_bytes,
                    "cut a torn tail of the audit log"
                );
                chain::ScanEnd {
                    good_len: f.offset,
                    sealed: false,
                }
            }
            Err(f) => return Err(damaged(f)),
        };
        if !is_last && !end.sealed {
            return Err(damaged(Fault {
                offset: end.good_len,
                seq: head.seq + 1,
                problem: Problem::Unsealed,
            }));
        }
        if is_last && end.sealed {
            // A crash between sealing and cutting the zeros away leaves them behind.
            cut_zeros(seg, end.good_len as u64)?;
        }
        rec.records += records;
        let share = share.snapshot();
        if is_last {
            meter.merge(share);
        } else {
            let s = summary::Summary {
                size: end.good_len as u64,
                first_seq: start.seq + 1,
                first_prev: start.hash,
                last_seq: head.seq,
                last_hash: head.hash.clone(),
                checkpoint_seq: head.checkpoint_seq,
                records,
                meter: share,
            };
            summary::store(seg, &s, summaries);
            meter.merge(s.meter);
        }
        last = Some(LastSegment {
            number: seg.number,
            sealed: end.sealed,
            data_len: end.good_len as u64,
        });
    }
    Ok((head, last, rec))
}

/// Cuts a sealed segment's preallocated zeros.
fn cut_zeros(seg: &Segment, data_len: u64) -> Result<()> {
    let io = |e| Error::io(&seg.path, e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .map_err(io)?;
    if file.metadata().map_err(io)?.len() > data_len {
        file.set_len(data_len).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Moves the bytes from `offset` to `segment-N.torn` (kept as evidence) and truncates.
fn cut_tail(seg: &Segment, bytes: &[u8], offset: usize) -> Result<()> {
    use std::io::Write;
    let torn = seg.path.with_extension("torn");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&torn)
        .map_err(|e| Error::io(&torn, e))?;
    f.write_all(&bytes[offset..])
        .map_err(|e| Error::io(&torn, e))?;
    f.sync_all().map_err(|e| Error::io(&torn, e))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&seg.path)
        .map_err(|e| Error::io(&seg.path, e))?;
    file.set_len(offset as u64)
        .map_err(|e| Error::io(&seg.path, e))?;
    file.sync_all().map_err(|e| Error::io(&seg.path, e))
}
