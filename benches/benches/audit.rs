//! Audit append: what a call waits for to make its record durable (group commit with fdatasync)
//! beside the in-memory cost of the same records (encode + hash, no I/O) in the same run; and
//! the sync itself, one record-sized write + `fdatasync` at the end of a growing file (the naive
//! log) beside the same write into zeros written ahead (what the log does).

use citybrain_audit::{AuditConfig, AuditLog, Body, Entry, Outcome, Payload, encode};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn entry(i: u64) -> Entry {
    Entry {
        call_id: format!("bench-{i}"),
        time_us: 1_790_000_000_000_000 + i as i64,
        dept: "civil-affairs".into(),
        subject: "bench".into(),
        role: "consumer".into(),
        method: "LookupService/Lookup".into(),
        tables: vec!["population.residents".into()],
        columns: vec!["name".into(), "birth_date".into()],
        grant_id: Some("g-000123".into()),
        purpose: "低保资格审核".into(),
        key_hashes: vec!["5f1c0a3e9b7d2c4f8a6e1b3d5c7f9a0e".into()],
        rows: 1,
        bytes: 180,
        outcome: Outcome::Ok,
        code: 0,
        latency_us: 250,
    }
}

fn append(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let log = rt
        .block_on(async { AuditLog::open(AuditConfig::new(dir.path(), key, [2u8; 32])).unwrap() });

    let mut g = c.benchmark_group("audit_append");
    for concurrent in [1u64, 16, 64] {
        g.throughput(Throughput::Elements(concurrent));
        g.bench_with_input(
            BenchmarkId::new("durable_group_commit", concurrent),
            &concurrent,
            |b, &n| {
                b.iter(|| {
                    rt.block_on(async {
                        let tasks: Vec<_> = (0..n)
                            .map(|i| {
                                let log = log.clone();
                                tokio::spawn(async move { log.append(entry(i)).await.unwrap() })
                            })
                            .collect();
                        for t in tasks {
                            black_box(t.await.unwrap());
                        }
                    })
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("in_memory_encode_baseline", concurrent),
            &concurrent,
            |b, &n| {
                b.iter(|| {
                    for i in 0..n {
                        let p = Payload {
                            seq: i + 1,
                            prev: "0".repeat(64),
                            body: Body::Call(entry(i)),
                        };
                        black_box(encode(&p));
                    }
                })
            },
        );
    }
    g.finish();
}

/// One 600-byte write and `fdatasync`: appended to a growing file vs written into preallocated
/// zeros. The first also writes the file's metadata (new size and blocks) on every sync.
fn sync(c: &mut Criterion) {
    use std::os::unix::fs::FileExt;
    const REGION: u64 = 64 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let line = [b'x'; 600];
    let mut g = c.benchmark_group("audit_sync");
    g.throughput(Throughput::Elements(1));
    for preallocated in [false, true] {
        let path = dir.path().join(format!("sync-{preallocated}"));
        let file = std::fs::File::create(&path).unwrap();
        let zeros = vec![0u8; 1 << 20];
        let prepare = |file: &std::fs::File| {
            file.set_len(0).unwrap();
            if preallocated {
                for at in (0..REGION).step_by(zeros.len()) {
                    file.write_all_at(&zeros, at).unwrap();
                }
            }
            file.sync_all().unwrap();
        };
        prepare(&file);
        let mut at = 0u64;
        let name = if preallocated {
            "into_preallocated_zeros"
        } else {
            "appended_naive_baseline"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                if at + line.len() as u64 > REGION {
                    prepare(&file);
                    at = 0;
                }
                file.write_all_at(&line, at).unwrap();
                file.sync_data().unwrap();
                at += line.len() as u64;
            })
        });
    }
    g.finish();
}

criterion_group!(benches, append, sync);
criterion_main!(benches);
