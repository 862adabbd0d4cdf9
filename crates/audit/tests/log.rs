//! The audit log: durable, chained, signed, recoverable, and every kind of tampering is caught.

use citybrain_audit::{
    AuditConfig, AuditLog, Entry, Error, Filter, Gather, Outcome, Problem, VerifyFailure,
    list_segments, read_segment, verify_dir,
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[42u8; 32])
}

fn config(dir: &Path) -> AuditConfig {
    let mut c = AuditConfig::new(dir, key(), [9u8; 32]);
    c.segment_bytes = 4 * 1024;
    c.checkpoint_interval = Duration::from_millis(0);
    c
}

fn entry(i: u64, dept: &str) -> Entry {
    Entry {
        call_id: format!("call-{i}"),
        time_us: 1_790_000_000_000_000 + i as i64 * 1_000_000,
        dept: dept.into(),
        subject: "tester".into(),
        role: "consumer".into(),
        method: "LookupService/Lookup".into(),
        tables: vec!["population.residents".into()],
        columns: vec!["name".into()],
        grant_id: Some("g-1".into()),
        purpose: "低保审核".into(),
        key_hashes: vec![format!("k{i}")],
        rows: 1,
        bytes: 100,
        outcome: if i.is_multiple_of(5) {
            Outcome::Denied
        } else {
            Outcome::Ok
        },
        code: if i.is_multiple_of(5) { 7 } else { 0 },
        latency_us: 300,
    }
}

async fn filled(dir: &Path, n: u64) -> AuditLog {
    let log = AuditLog::open(config(dir)).unwrap();
    let mut tasks = Vec::new();
    for i in 0..n {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(entry(i, if i % 2 == 0 { "hrss" } else { "health" }))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    log
}

fn verify(dir: &Path) -> Result<citybrain_audit::VerifyReport, VerifyFailure> {
    verify_dir(dir, &key().verifying_key(), None)
}

#[tokio::test]
async fn concurrent_appends_are_all_durable_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 200).await;
    log.close().await.unwrap();
    let r = verify(dir.path()).unwrap();
    assert_eq!(r.records, 200);
    assert!(r.segments > 1, "small segments rotate");
    assert_eq!(r.unsigned_tail, 0, "close seals the tail");
    assert_eq!(log.totals().calls, 200);
    assert!(
        matches!(log.append(entry(1, "x")).await, Err(Error::Unavailable)),
        "closed"
    );

    // Reopen: the chain continues, meters are rebuilt from the log.
    let log = AuditLog::open(config(dir.path())).unwrap();
    assert_eq!(log.totals().calls, 200);
    assert_eq!(log.recovery().records, 200);
    log.append(entry(999, "hrss")).await.unwrap();
    log.close().await.unwrap();
    assert_eq!(verify(dir.path()).unwrap().records, 201);
}

#[tokio::test]
async fn search_and_metering() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 50).await;
    let f = Filter {
        dept: Some("hrss".into()),
        ..Default::default()
    };
    let (page, next) = log.search(&f, 10, None).unwrap();
    assert_eq!(page.len(), 10);
    let seqs: Vec<u64> = page.iter().map(|s| s.payload.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");
    let (rest, _) = log.search(&f, 100, next).unwrap();
    assert_eq!(page.len() + rest.len(), 25);
    let f = Filter {
        key_hash: Some("k7".into()),
        ..Default::default()
    };
    assert_eq!(log.search(&f, 10, None).unwrap().0.len(), 1);
    let f = Filter {
        outcome: Some(Outcome::Denied),
        ..Default::default()
    };
    assert_eq!(log.search(&f, 100, None).unwrap().0.len(), 10);
    let rows = log.metering("hrss", "", "", "");
    assert_eq!(rows.iter().map(|(_, u)| u.calls).sum::<u64>(), 25);
    assert_eq!(log.consumer_departments(), 2);
    let h = log.hash_key("11010519491231002X");
    assert_eq!(h.len(), 32);
    assert!(!h.contains("1949"));
}

/// Rewrites the second segment with `f` and returns the verification failure.
async fn tamper(f: impl Fn(&mut Vec<Vec<u8>>)) -> VerifyFailure {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(dir.path())).unwrap();
    for i in 0..60 {
        log.append(entry(i, "hrss")).await.unwrap();
    }
    log.close().await.unwrap();
    assert!(list_segments(dir.path()).unwrap().len() > 2);
    let seg = &list_segments(dir.path()).unwrap()[1];
    let text = std::fs::read(&seg.path).unwrap();
    assert_eq!(
        text.last(),
        Some(&b'\n'),
        "a sealed segment is cut back to its records"
    );
    let mut lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    f(&mut lines);
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    std::fs::write(&seg.path, out).unwrap();
    verify(dir.path()).unwrap_err()
}

#[tokio::test]
async fn every_kind_of_tampering_is_detected() {
    // Flip a byte of a record.
    let e = tamper(|l| {
        let pos = l[2].iter().position(|b| *b == b'h').unwrap();
        l[2][pos] = b'H';
    })
    .await;
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                segment: 2,
                problem: Problem::Hash,
                ..
            }
        ),
        "{e}"
    );
    // Delete a record.
    let e = tamper(|l| {
        l.remove(3);
    })
    .await;
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                problem: Problem::Sequence { .. },
                ..
            }
        ),
        "{e}"
    );
    // Swap two records.
    let e = tamper(|l| l.swap(1, 2)).await;
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                problem: Problem::Sequence { .. },
                ..
            }
        ),
        "{e}"
    );
    // Truncate a sealed segment.
    let e = tamper(|l| {
        l.truncate(l.len() - 2);
    })
    .await;
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                segment: 2,
                problem: Problem::Unsealed,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_rewritten_chain_fails_on_its_signatures() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 60).await.close().await.unwrap();
    // Someone without the hub's key rebuilds the whole log with edited content and a valid chain.
    let forged = tempfile::tempdir().unwrap();
    let mut cfg = config(forged.path());
    cfg.signing_key = SigningKey::from_bytes(&[1u8; 32]);
    let log = AuditLog::open(cfg).unwrap();
    for i in 0..60 {
        let mut e = entry(i, "hrss");
        e.purpose = "edited".into();
        log.append(e).await.unwrap();
    }
    log.close().await.unwrap();
    for seg in list_segments(dir.path()).unwrap() {
        std::fs::remove_file(seg.path).unwrap();
    }
    for seg in list_segments(forged.path()).unwrap() {
        std::fs::copy(&seg.path, dir.path().join(seg.path.file_name().unwrap())).unwrap();
    }
    let e = verify(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                problem: Problem::Signature,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn a_checkpoint_edited_with_a_recomputed_hash_fails_its_signature() {
    let e = tamper(|l| {
        let last = l.len() - 1;
        let text = String::from_utf8(l[last].clone()).unwrap();
        assert!(text.contains("\"seals\":true"), "{text}");
        // Re-encode the sealing checkpoint as "not sealing", with a correct line hash.
        let cut = text.rfind(",\"hash\"").unwrap();
        let payload = format!("{}}}", &text[..cut]).replace("\"seals\":true", "\"seals\":false");
        let p: citybrain_audit::Payload = serde_json::from_str(&payload).unwrap();
        let (line, _) = citybrain_audit::encode(&p);
        l[last] = line[..line.len() - 1].to_vec();
    })
    .await;
    assert!(
        matches!(
            e,
            VerifyFailure::Bad {
                problem: Problem::Signature,
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn damage_before_good_records_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = filled(dir.path(), 5).await;
    drop(log);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let mut bytes = std::fs::read(&seg.path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&seg.path, bytes).unwrap();
    assert!(
        matches!(
            AuditLog::open(config(dir.path())),
            Err(Error::Damaged { .. })
        ),
        "not cut away silently"
    );
}

#[tokio::test]
async fn injected_failures_fail_closed_without_partial_lines() {
    for fail_sync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let faults = cfg.faults.clone();
        let log = AuditLog::open(cfg).unwrap();
        log.append(entry(1, "hrss")).await.unwrap();
        if fail_sync {
            faults.fail_sync.store(true, Ordering::SeqCst);
        } else {
            faults.fail_write.store(true, Ordering::SeqCst);
        }
        assert!(matches!(
            log.append(entry(2, "hrss")).await,
            Err(Error::Unavailable)
        ));
        assert!(log.is_failed());
        faults.fail_sync.store(false, Ordering::SeqCst);
        faults.fail_write.store(false, Ordering::SeqCst);
        assert!(
            matches!(log.append(entry(3, "hrss")).await, Err(Error::Unavailable)),
            "stays failed"
        );
        drop(log);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = verify(dir.path()).unwrap();
        assert_eq!(r.records, 1, "nothing half-written");
    }
}

#[tokio::test]
async fn a_batch_torn_across_pages_is_cut_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.segment_bytes = 1 << 30;
    let log = AuditLog::open(cfg).unwrap();
    for i in 0..5 {
        log.append(entry(i, "hrss")).await.unwrap();
    }
    std::mem::forget(log);
    let seg = list_segments(dir.path()).unwrap().pop().unwrap();
    let good = read_segment(&seg.path).unwrap();
    // Each append is one record and its checkpoint. A crash before the last sync: the page
    // holding the fourth and fifth records never reached the disk, the one after it did.
    let lines: Vec<&[u8]> = good.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), 10);
    let kept: usize = lines[..6].iter().map(|l| l.len()).sum();
    let lost: usize = lines[6..9].iter().map(|l| l.len()).sum();
    let mut bytes = good[..kept].to_vec();
    bytes.resize(kept + lost, 0);
    bytes.extend_from_slice(lines[9]);
    bytes.resize(bytes.len() + 4096, 0);
    std::fs::write(&seg.path, &bytes).unwrap();

    let log = AuditLog::open(config(dir.path())).expect("a torn batch is cut, not refused");
    assert_eq!(log.recovery().records, 3);
    assert_eq!(read_segment(&seg.path).unwrap(), &good[..kept]);
    log.append(entry(5, "hrss")).await.unwrap();
    log.close().await.unwrap();
    assert_eq!(verify(dir.path()).unwrap().records, 4);
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..300),
        // A torn copy of a real-looking line.
        (1usize..200).prop_map(|n| br#"{"seq":7,"prev":"00","kind":"call","call_id":"x""#
            .iter()
            .cycle()
            .take(n)
            .copied()
            .collect()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn recovery_keeps_exactly_the_valid_prefix(
        n in 1u64..30,
        junk in garbage(),
        past_the_zeros in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut cfg = config(dir.path());
            cfg.segment_bytes = 1 << 30;
            let log = AuditLog::open(cfg).unwrap();
            for i in 0..n {
                log.append(entry(i, "hrss")).await.unwrap();
            }
            // A crash: the writer never seals (its thread stays blocked; every record it was
            // handed is already durable).
            std::mem::forget(log);
            prop_assert_eq!(verify(dir.path()).unwrap().records, n, "a live segment verifies");
            let seg = list_segments(dir.path()).unwrap().pop().unwrap();
            // The live segment is records followed by preallocated zeros.
            let good = read_segment(&seg.path).unwrap();
            let mut bytes = std::fs::read(&seg.path).unwrap();
            prop_assert!(bytes.len() > good.len(), "preallocated");
            if past_the_zeros {
                bytes.extend_from_slice(&junk);
            } else {
                // A torn write lands in the zeros right after the records.
                let end = good.len() + junk.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[good.len()..end].copy_from_slice(&junk);
            }
            std::fs::write(&seg.path, &bytes).unwrap();

            let log = AuditLog::open(config(dir.path())).unwrap();
            prop_assert_eq!(log.recovery().records, n);
            prop_assert_eq!(read_segment(&seg.path).unwrap(), good);
            log.append(entry(n, "hrss")).await.unwrap();
            log.close().await.unwrap();
            prop_assert_eq!(verify(dir.path()).unwrap().records, n + 1);
            Ok(())
        })?;
    }
}

/// What the meters and the record count say, for comparing two opens of the same log.
fn meters(log: &AuditLog) -> (u64, citybrain_audit::Usage, String, citybrain_audit::Usage) {
    let days = log.metering("", "", "", "");
    let day = days[0].0.day.clone();
    (
        log.recovery().records,
        log.totals(),
        format!("{days:?}"),
        log.grant_usage("g-1", &day),
    )
}

fn summaries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sum"))
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn sealed_segments_are_read_from_their_summaries_while_they_still_match() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(dir.path())).unwrap();
    for i in 0..200 {
        log.append(entry(i, if i % 2 == 0 { "hrss" } else { "health" }))
            .await
            .unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    let segments = list_segments(dir.path()).unwrap().len();
    assert!(segments >= 4, "{segments} segments");
    // The first open scans every record and summarizes each sealed segment but the last.
    let log = AuditLog::open(config(dir.path())).unwrap();
    let scanned = meters(&log);
    assert_eq!(scanned.0, 200);
    assert_eq!(scanned.1.calls, 200);
    assert_eq!(summaries(dir.path()).len(), segments - 1);
    log.close().await.unwrap();
    drop(log);
    // The next open reads them and counts the same.
    let log = AuditLog::open(config(dir.path())).unwrap();
    assert_eq!(meters(&log), scanned);
    assert_eq!(summaries(dir.path()).len(), segments);
    log.close().await.unwrap();
    drop(log);

    // A summary that cannot be read is rebuilt by scanning its segment.
    let first = summaries(dir.path())[0].clone();
    std::fs::write(&first, b"{not json").unwrap();
    let log = AuditLog::open(config(dir.path())).unwrap();
    assert_eq!(meters(&log), scanned);
    let rebuilt = std::fs::read_to_string(&first).unwrap();
    let (tag, body) = rebuilt.split_once('\n').unwrap();
    assert_eq!(tag.len(), 64, "an HMAC line first");
    let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["first_seq"], 1);
    log.close().await.unwrap();
    drop(log);

    // A summary whose counts were edited (which would move grant quotas) fails its HMAC and is
    // rebuilt from the segment.
    let forged = rebuilt.replacen("\"calls\":", "\"calls\":1000000", 1);
    assert_ne!(forged, rebuilt);
    std::fs::write(&first, &forged).unwrap();
    let log = AuditLog::open(config(dir.path())).unwrap();
    assert_eq!(meters(&log), scanned);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), rebuilt);
    log.close().await.unwrap();
    drop(log);

    // Start-up reads a summarized segment's seal and links, not its records: a record edited in
    // place is found by `audit verify`, not at start.
    let seg = &list_segments(dir.path()).unwrap()[0];
    let mut bytes = std::fs::read(&seg.path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&seg.path, bytes).unwrap();
    let log = AuditLog::open(config(dir.path())).unwrap();
    assert_eq!(meters(&log), scanned);
    log.close().await.unwrap();
    drop(log);
    assert!(
        matches!(verify(dir.path()), Err(VerifyFailure::Bad { segment, .. }) if segment == seg.number),
        "audit verify names the edited segment"
    );

    // A summary that no longer matches its segment is not trusted: a sealed segment cut short
    // loses its seal, and the log refuses to open.
    let seg = &list_segments(dir.path()).unwrap()[1];
    let bytes = std::fs::read(&seg.path).unwrap();
    let body = &bytes[..bytes.len() - 1];
    let cut = body.iter().rposition(|b| *b == b'\n').unwrap() + 1;
    std::fs::write(&seg.path, &bytes[..cut]).unwrap();
    assert!(
        matches!(
            AuditLog::open(config(dir.path())),
            Err(Error::Damaged { segment, .. }) if segment == seg.number
        ),
        "a cut sealed segment is found at start"
    );
}

/// A log that holds a batch open for at most `time` while `min_calls` calls are under way.
fn gathering(dir: &Path, time: Duration, min_calls: usize) -> AuditLog {
    let mut c = AuditConfig::new(dir, key(), [9u8; 32]);
    c.gather = Gather { time, min_calls };
    AuditLog::open(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_calls_under_way_share_one_sync_and_a_lone_call_waits_for_none() {
    let dir = tempfile::tempdir().unwrap();
    let log = gathering(dir.path(), Duration::from_secs(60), 1);

    // Nothing else under way: the record is synced at once, not held for the gather time.
    tokio::time::timeout(Duration::from_secs(30), log.append(entry(0, "hrss")))
        .await
        .expect("a lone call's record is not held open")
        .unwrap();
    let before = log.syncs();
    assert!(before >= 1);

    // Two calls under way: the first record waits for the second, and one sync carries both.
    // Each call hands its record over, then drops its mark, as the gateway does.
    let (a, b) = (log.underway(), log.underway());
    let first = log.append(entry(1, "hrss"));
    drop(a);
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !first.is_finished(),
        "held open while another call is under way"
    );
    let second = log.append(entry(2, "health"));
    drop(b);
    tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the last call's record ends the wait")
        .unwrap();
    first.await.unwrap().unwrap();
    assert_eq!(log.syncs() - before, 1, "both records in one sync");
    log.close().await.unwrap();
    assert_eq!(verify(dir.path()).unwrap().records, 3);

    // A call that never makes its record holds a batch for the gather time only.
    let dir = tempfile::tempdir().unwrap();
    let log = gathering(dir.path(), Duration::from_millis(50), 1);
    let _forever = log.underway();
    tokio::time::timeout(Duration::from_secs(30), log.append(entry(3, "hrss")))
        .await
        .expect("held for the gather time only")
        .unwrap();
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_held_only_for_as_many_calls_as_the_gather_asks_for() {
    held_from(3, 3).await;
    // 0 asks for one call per core: every worker busy.
    let cores = std::thread::available_parallelism().unwrap().get();
    held_from(0, cores).await;
    let asked = |min_calls| Gather {
        time: Duration::from_millis(1),
        min_calls,
    };
    assert_eq!(asked(0).calls_needed(), cores);
    assert_eq!(asked(5).calls_needed(), 5);
}

/// With `min_calls` asked for, a record is synced at once while `needed - 1` other calls are
/// under way; while `needed` are, it is held until the last of them ends.
async fn held_from(min_calls: usize, needed: usize) {
    let dir = tempfile::tempdir().unwrap();
    let log = gathering(dir.path(), Duration::from_secs(60), min_calls);

    let mut marks: Vec<_> = (1..needed).map(|_| log.underway()).collect();
    tokio::time::timeout(Duration::from_secs(30), log.append(entry(0, "hrss")))
        .await
        .expect("not held for too few calls")
        .unwrap();

    marks.push(log.underway());
    let held = tokio::spawn(log.append(entry(1, "hrss")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !held.is_finished(),
        "held open for {needed} calls under way (asked for {min_calls})"
    );
    let last = marks.pop();
    drop(marks);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "held while one call is under way");
    assert_eq!(log.calls_under_way(), 1);
    drop(last);
    tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the last mark dropped ends the wait")
        .unwrap()
        .unwrap();
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_call_commits_its_own_record_at_quiet_times_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = gathering(dir.path(), Duration::from_secs(60), 1);
    // Each call hands its record over, then drops its mark, as the gateway does.
    let call = |i: u64| {
        let mark = log.underway();
        let durable = log.append(entry(i, "hrss"));
        drop(mark);
        durable
    };

    // Alone, once the writer thread has started and found nothing to do: the record is
    // durable by the time `append` returns, committed by the call itself.
    let mut appended = 0;
    let mut alone = None;
    while appended < 200 && alone.is_none() {
        alone = ready_now(call(appended));
        appended += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    alone.expect("a lone call commits its own record").unwrap();
    assert_eq!(log.lone_commits(), 1);

    // Two calls under way together: both records go to the writer, in one batch.
    let (a, b) = (log.underway(), log.underway());
    let first = log.append(entry(1000, "hrss"));
    drop(a);
    let second = log.append(entry(1001, "health"));
    drop(b);
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(log.lone_commits(), 1, "neither call was alone");

    // Right after a batch of two a call alone still goes through the writer; once a batch of
    // one has passed, the next commits its own again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    call(1002).await.unwrap();
    assert_eq!(log.lone_commits(), 1, "not a quiet time yet");
    tokio::time::sleep(Duration::from_millis(100)).await;
    call(1003).await.unwrap();
    assert_eq!(log.lone_commits(), 2, "a quiet time again");
    log.close().await.unwrap();

    // After close, a lone call is refused too.
    assert!(matches!(call(1004).await, Err(Error::Unavailable)));
    assert_eq!(verify(dir.path()).unwrap().records, appended + 4);
}

/// The output of a future that is ready when first polled.
fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
