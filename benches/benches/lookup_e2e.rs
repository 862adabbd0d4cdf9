//! End to end: governed `Lookup` throughput and latency through real gRPC with the durable audit
//! log, beside the same hub whose records go to an in-memory sink defined only here. Both hubs
//! serve copies of the same data and grant, in the same run, alternating, so the ratio is what
//! durability costs.
//!
//! Two loads: a closed loop (every client sends again as soon as it is answered: throughput under
//! load, where latency is mostly queueing) and an open loop at a fixed rate below
//! saturation (latency counted from when each call was due: what durability adds to a call).
//! With the open loop, the disk alone: records due at the open loop's rate, written and synced
//! as the log does and counted from when due, a round after each round of the sinks; its p99 is
//! a floor under the durable log's p99 in the open loop. With the closed loop, the CPU one write
//! and sync cost, timed alone after its rounds: times the durable log's syncs a second, it is
//! the least part of the machine syncing took (the writer thread's own CPU, in its column, is
//! the most: it also encodes, chains and hands back the records). The rest of the throughput
//! lost is mostly cores left idle (the `idle` column) while every client waits for a sync; more
//! clients (or a longer gather) fill them, so how much a closed loop loses depends on how many
//! clients it has.
//!
//! `cargo bench -p citybrain-benches --bench lookup_e2e` (env: CITYBRAIN_BENCH_PERSONS, default
//! 200000; CITYBRAIN_BENCH_SECS per round, default 4; CITYBRAIN_BENCH_ROUNDS per sink and load,
//! default 3; CITYBRAIN_BENCH_CLIENTS, default 32; CITYBRAIN_BENCH_RATE of the open loop,
//! default 1000 lookups/s; CITYBRAIN_BENCH_GATHER_US and CITYBRAIN_BENCH_GATHER_CALLS, the
//! durable log's batch gathering, default as the hub's).

use citybrain::hub::{self, HubOptions};
use citybrain_audit::{AuditLog, Entry, Gather};
use citybrain_gateway::AuditSink;
use citybrain_governance::{ApplyRequest, Decision, Governance, Mask, Mode};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::data_service_client::DataServiceClient;
use futures::future::BoxFuture;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The hubs run on the allocator the `citybrain` binary uses.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PURPOSE: &str = "最低生活保障资格审核";

/// Bytes of one record in [`disk_floor`] and [`sync_cpu_us`], about a lookup's audit record.
const LINE: usize = 600;

/// The baseline sink: counts records, keeps nothing, never waits.
struct MemorySink(AtomicU64);

impl AuditSink for MemorySink {
    fn is_failed(&self) -> bool {
        false
    }
    fn append(&self, _entry: Entry) -> BoxFuture<'static, citybrain_audit::Result<u64>> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(n) })
    }
    fn submit(&self, _entry: Entry) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed);
        true
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Makes every file under `dir` durable.
fn sync_dir(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            sync_dir(&e.path());
        } else {
            std::fs::File::open(e.path()).unwrap().sync_all().unwrap();
        }
    }
}

/// About `n` keys spread evenly over the dataset, so over every row group.
fn keys(tables: &Path, n: usize) -> Vec<String> {
    let ids =
        citybrain_datagen::read_strings(&tables.join("population/residents"), "id_number").unwrap();
    let step = (ids.len() / n.max(1)).max(1);
    ids.into_iter().step_by(step).take(n).collect()
}

struct Round {
    calls: u64,
    errors: u64,
    secs: f64,
    latencies_us: Vec<u64>,
    /// CPU of the whole process (hubs and clients) over the round, µs.
    cpu_us: u64,
    /// CPU of the durable log's writer thread over the round, µs.
    writer_us: u64,
    /// Batches the durable log made durable over the round.
    syncs: u64,
    /// Of those, records committed by their own call, alone.
    lone: u64,
    /// The machine's CPU time over the round, all cores, and the part of it idle or waiting
    /// for I/O, in ticks.
    ticks: (u64, u64),
}

/// The machine's CPU time so far, all cores (`/proc/stat`), and the part of it idle or
/// waiting for I/O, in ticks. A round whose load keeps every core busy leaves little idle;
/// much idle means the clients were waiting, not the cores.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    (total, idle)
}

/// CPU time (user + system) in µs: of this process, and of its threads named `thread`.
/// `/proc` counts in USER_HZ (100 a second on Linux), so a round of seconds has plenty.
fn cpu_us(thread: &str) -> (u64, u64) {
    fn ticks(stat: &str) -> Option<(String, u64)> {
        let (head, tail) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let f: Vec<&str> = tail.split_whitespace().collect();
        // After the name: state is field 3 of the line, utime 14 and stime 15.
        let t = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        Some((comm, t))
    }
    let read = |p: &Path| std::fs::read_to_string(p).ok().and_then(|s| ticks(&s));
    let all = read(Path::new("/proc/self/stat")).map_or(0, |(_, t)| t);
    let mut named = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            if let Some((comm, t)) = read(&task.path().join("stat"))
                && comm == thread
            {
                named += t;
            }
        }
    }
    (all * 10_000, named * 10_000)
}

async fn load(
    audit: Option<AuditLog>,
    url: String,
    token: String,
    keys: Arc<Vec<String>>,
    clients: u64,
    secs: u64,
    rate: Option<f64>,
) -> Round {
    // As `citybrain bench`: a connection per 8 clients. One connection for all would make its
    // two connection tasks (client's and hub's) the bottleneck, not the hub's serving.
    let mut channels = Vec::new();
    for _ in 0..clients.div_ceil(8).max(1) {
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .tcp_nodelay(true)
            .connect()
            .await
            .unwrap();
        channels.push(channel);
    }
    let (cpu0, writer0) = cpu_us("audit-writer");
    let syncs0 = audit.as_ref().map_or(0, |a| a.syncs());
    let lone0 = audit.as_ref().map_or(0, |a| a.lone_commits());
    let ticks0 = machine_ticks();
    let start = Instant::now();
    let stop = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let channel = channels[c as usize % channels.len()].clone();
            let (token, keys) = (token.clone(), keys.clone());
            tokio::spawn(async move {
                let mut api = DataServiceClient::new(channel);
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, c as usize * 7919);
                let mut sent = 0u64;
                while Instant::now() < stop {
                    // Open loop: this client's calls are due at fixed times. A call that is
                    // late because the previous one was slow counts from when it was due, so
                    // slow answers are not hidden by sending later; one sent on time counts
                    // from its send (the timer wakes up to 1 ms after the due time).
                    let due = match rate {
                        Some(r) => {
                            let due =
                                start + Duration::from_secs_f64((sent * clients + c) as f64 / r);
                            if Instant::now() < due {
                                tokio::time::sleep_until(due.into()).await;
                                Instant::now()
                            } else {
                                due
                            }
                        }
                        None => Instant::now(),
                    };
                    sent += 1;
                    i = (i + 104_729) % keys.len();
                    let mut req = tonic::Request::new(pb::LookupRequest {
                        table: "population.residents".into(),
                        key: keys[i].clone(),
                        purpose: PURPOSE.into(),
                    });
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                    match api.lookup(req).await {
                        Ok(_) => lat.push(due.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut round = Round {
        calls: 0,
        errors: 0,
        secs: 0.0,
        latencies_us: Vec::new(),
        cpu_us: 0,
        writer_us: 0,
        syncs: 0,
        lone: 0,
        ticks: (0, 0),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        round.calls += lat.len() as u64;
        round.errors += errors;
        round.latencies_us.extend(lat);
    }
    round.secs = start.elapsed().as_secs_f64();
    let (cpu1, writer1) = cpu_us("audit-writer");
    round.cpu_us = cpu1 - cpu0;
    round.writer_us = writer1 - writer0;
    round.syncs = audit.as_ref().map_or(0, |a| a.syncs()) - syncs0;
    round.lone = audit.as_ref().map_or(0, |a| a.lone_commits()) - lone0;
    let ticks1 = machine_ticks();
    round.ticks = (
        ticks1.0.saturating_sub(ticks0.0),
        ticks1.1.saturating_sub(ticks0.1),
    );
    round
}

/// Prints one table: each sink's rate and latency over its rounds, then the ratios; with
/// `sync_cpu` (µs, from [`sync_cpu_us`]), the least share of the machine the durable log's
/// syncs took, beside the share of throughput it lost.
fn report(
    title: &str,
    persons: u64,
    rounds: u64,
    secs: u64,
    results: &[(&str, Round)],
    sync_cpu: Option<f64>,
) {
    println!("lookup_e2e: {persons} residents, {title}, {rounds} x {secs} s per sink");
    println!(
        "{:<20} {:>10} {:>8} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10} {:>10} {:>7} {:>6}",
        "sink",
        "lookups/s",
        "calls",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "cpu/call",
        "writer",
        "per sync",
        "alone",
        "idle"
    );
    let mut summary = Vec::new();
    for label in ["durable audit log", "in-memory sink"] {
        let picked: Vec<&Round> = results
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, r)| r)
            .collect();
        let calls: u64 = picked.iter().map(|r| r.calls).sum();
        let secs_total: f64 = picked.iter().map(|r| r.secs).sum();
        let errors: u64 = picked.iter().map(|r| r.errors).sum();
        let mut lat: Vec<u64> = picked
            .iter()
            .flat_map(|r| r.latencies_us.iter().copied())
            .collect();
        lat.sort_unstable();
        let rate = calls as f64 / secs_total;
        let per_call = |us: u64| format!("{:.0} µs", us as f64 / calls.max(1) as f64);
        let syncs: u64 = picked.iter().map(|r| r.syncs).sum();
        let lone: u64 = picked.iter().map(|r| r.lone).sum();
        println!(
            "{:<20} {:>10.0} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10} {:>10} {:>10} {:>7} {:>6}",
            label,
            rate,
            calls,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            pct(&lat, 0.999),
            errors,
            per_call(picked.iter().map(|r| r.cpu_us).sum()),
            per_call(picked.iter().map(|r| r.writer_us).sum()),
            if syncs == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}", calls as f64 / syncs as f64)
            },
            if syncs == 0 {
                "-".to_owned()
            } else {
                format!("{:.0}%", 100.0 * lone as f64 / calls.max(1) as f64)
            },
            {
                let (total, idle) = picked
                    .iter()
                    .fold((0, 0), |(t, i), r| (t + r.ticks.0, i + r.ticks.1));
                format!("{:.0}%", 100.0 * idle as f64 / total.max(1) as f64)
            }
        );
        summary.push(Summary {
            rate,
            p50: pct(&lat, 0.5),
            p99: pct(&lat, 0.99),
            syncs_per_s: syncs as f64 / secs_total,
        });
    }
    let ratio = summary[0].rate / summary[1].rate;
    println!(
        "durable / in-memory throughput: {ratio:.3}; added by durability: p50 {:.2} ms, p99 {:.2} ms",
        summary[0].p50 - summary[1].p50,
        summary[0].p99 - summary[1].p99
    );
    if let Some(cpu) = sync_cpu {
        let cores = machine_cores();
        let syncs = summary[0].syncs_per_s;
        println!(
            "a {LINE}-byte write and sync alone: {cpu:.0} µs of CPU; the durable log's \
             {syncs:.0} syncs/s took at least {:.1}% of the machine's {cores} cores, against \
             {:.1}% of throughput lost",
            100.0 * syncs * cpu / 1e6 / cores as f64,
            100.0 * (1.0 - ratio)
        );
    }
}

/// One sink's figures over its rounds, for the lines under the table.
struct Summary {
    rate: f64,
    p50: f64,
    p99: f64,
    syncs_per_s: f64,
}

/// The machine's cores, as `/proc/stat` lists them: the cores [`machine_ticks`] sums over.
fn machine_cores() -> usize {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.strip_prefix("cpu")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .count()
        .max(1)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

fn main() {
    let persons = env("CITYBRAIN_BENCH_PERSONS", 200_000);
    let secs = env("CITYBRAIN_BENCH_SECS", 4);
    let clients = env("CITYBRAIN_BENCH_CLIENTS", 32);
    let rounds = env("CITYBRAIN_BENCH_ROUNDS", 3);
    let paced = env("CITYBRAIN_BENCH_RATE", 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The clients run on threads of their own, as a separate process's would: a hub worker
    // busy with a call (or held by a lone call's sync) must not hold up a client's send.
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let clients_on = client_rt.handle().clone();
    rt.block_on(async move {
        let base = tempfile::tempdir().unwrap();
        let (a, b) = (base.path().join("durable"), base.path().join("memory"));
        hub::prepare_demo(&a, persons, None).unwrap();
        {
            let catalog = Arc::new(hub::open_catalog(&a).unwrap());
            let gov = Governance::open(&a.join(hub::CATALOG_FILE), catalog).unwrap();
            let (app, _) = gov
                .apply(
                    "civil-affairs",
                    "bench",
                    ApplyRequest {
                        table: "population.residents".into(),
                        columns: vec![
                            "id_number".into(),
                            "name".into(),
                            "birth_date".into(),
                            "town".into(),
                        ],
                        purpose: PURPOSE.into(),
                        business_system: "bench".into(),
                        service_matter: "bench".into(),
                        days: 30,
                        mode: Mode::Read,
                    },
                )
                .unwrap();
            let d = Decision {
                approve: true,
                reason: "bench".into(),
                columns: vec![],
                masks: vec![
                    ("id_number".into(), Mask::Keep { first: 6, last: 4 }),
                    ("name".into(), Mask::FirstChar),
                ],
                row_filter: None,
                days: 0,
                max_calls_per_day: 0,
                max_rows_per_day: 0,
                min_group_size: 0,
            };
            gov.decide("public-security", "bench", &app.id, d).unwrap();
        }
        copy_dir(&a, &b);
        // Setup leaves megabytes of dirty pages; a journal commit forced by an audit sync that
        // grows its file would write them out first, and time the setup instead of the hub.
        sync_dir(&a);
        sync_dir(&b);
        let keys = Arc::new(keys(&a.join(hub::TABLES_DIR), 5_000));
        let mut opts = HubOptions::new(&a);
        opts.audit_gather = Gather {
            time: Duration::from_micros(env(
                "CITYBRAIN_BENCH_GATHER_US",
                Gather::DEFAULT.time.as_micros() as u64,
            )),
            min_calls: env(
                "CITYBRAIN_BENCH_GATHER_CALLS",
                Gather::DEFAULT.min_calls as u64,
            ) as usize,
        };
        let durable = hub::start(&opts).await.unwrap();
        let mut opts = HubOptions::new(&b);
        opts.audit_sink = Some(Arc::new(MemorySink(AtomicU64::new(0))));
        let memory = hub::start(&opts).await.unwrap();
        let token = durable
            .issuer
            .mint(
                "civil-affairs",
                citybrain_types::Role::Consumer,
                "bench",
                3600,
            )
            .unwrap();
        let token_b = memory
            .issuer
            .mint(
                "civil-affairs",
                citybrain_types::Role::Consumer,
                "bench",
                3600,
            )
            .unwrap();
        let urls = [
            (
                Some(durable.audit.clone()),
                "durable audit log",
                format!("http://{}", durable.server.local_addr()),
                token,
            ),
            (
                None,
                "in-memory sink",
                format!("http://{}", memory.server.local_addr()),
                token_b,
            ),
        ];
        // One load against one hub, on the clients' runtime.
        let run = |(audit, _, url, t): &(Option<AuditLog>, &str, String, String),
                   secs: u64,
                   pace: Option<f64>| {
            let round = load(
                audit.clone(),
                url.clone(),
                t.clone(),
                keys.clone(),
                clients,
                secs,
                pace,
            );
            clients_on.spawn(round)
        };
        // Warm both, then alternate so drift hits both alike.
        for hub in &urls {
            run(hub, 1, None).await.unwrap();
        }
        for (title, pace) in [
            (
                format!("closed loop: {clients} clients, each sends when answered"),
                None,
            ),
            (
                format!("open loop: {paced} lookups/s due at fixed times from {clients} clients"),
                Some(paced as f64),
            ),
        ] {
            let mut results: Vec<(&str, Round)> = Vec::new();
            let mut disk = Vec::new();
            for _ in 0..rounds {
                for hub in &urls {
                    results.push((hub.1, run(hub, secs, pace).await.unwrap()));
                }
                if pace.is_some() {
                    // The disk alone, a round of it after each round of the sinks: here its
                    // syncs can be slow for a second or more at a stretch (one stretch held
                    // syncs of 10 to 33 ms), and a floor timed once, apart, may miss a stretch
                    // that the durable log's rounds met.
                    let (dir, n) = (a.clone(), (paced * secs).max(1000) as usize);
                    let lat = tokio::task::spawn_blocking(move || disk_floor(&dir, paced, n));
                    disk.extend(lat.await.unwrap());
                }
            }
            // What a sync costs the CPU, timed once the closed loop's rounds are done, with the
            // hubs idle: its share of the machine is part of what that load's throughput lost.
            let sync_cpu = if pace.is_none() {
                let dir = a.clone();
                tokio::task::spawn_blocking(move || sync_cpu_us(&dir, 2_000))
                    .await
                    .unwrap()
            } else {
                None
            };
            report(&title, persons, rounds, secs, &results, sync_cpu);
            if !disk.is_empty() {
                disk.sort_unstable();
                println!(
                    "the disk alone: {LINE}-byte records due at {paced}/s, written into \
                     preallocated zeros and synced, counted from when due, a round after each \
                     round above ({} in all): p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
                    disk.len(),
                    pct(&disk, 0.5),
                    pct(&disk, 0.99),
                    pct(&disk, 0.999)
                );
            }
        }
        durable.shutdown().await.unwrap();
        memory.server.shutdown().await.unwrap();
    });
}

/// The disk's own cost of making records durable, in the same run and on the same file system as
/// the durable hub's log: `n` records of 600 bytes due at `rate` a second, written into
/// preallocated zeros and made durable by `fdatasync`, as the log does. Each is counted from when
/// it was due, as the open loop counts its calls, so a slow sync also delays the records due
/// behind it; those due by the time a write starts go in it together, as group commit takes
/// them. Latencies in µs. Their p99 is a floor under the durable hub's p99 in the open loop.
fn disk_floor(dir: &Path, rate: u64, n: usize) -> Vec<u64> {
    let (path, file) = zeroed(dir, n * LINE);
    let records = vec![b'x'; n * LINE];
    let gap = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let start = Instant::now();
    let due = |i: usize| start + gap.mul_f64(i as f64);
    let mut lat = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        // On time, a record counts from its write, as a call sent on time counts from its send.
        let mut from = due(i);
        if let Some(wait) = from.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
            from = Instant::now();
        }
        let now = Instant::now();
        let end = (i + 1..n).find(|&k| due(k) > now).unwrap_or(n);
        file.write_all_at(&records[i * LINE..end * LINE], (i * LINE) as u64)
            .unwrap();
        file.sync_data().unwrap();
        let done = Instant::now();
        lat.push((done - from).as_micros() as u64);
        lat.extend((i + 1..end).map(|k| (done - due(k)).as_micros() as u64));
        i = end;
    }
    std::fs::remove_file(&path).unwrap();
    lat
}

/// The file `disk-floor` under `dir`, `bytes` of zeros synced, as the log preallocates its live
/// segment. One at a time: [`disk_floor`] and [`sync_cpu_us`] never run together.
fn zeroed(dir: &Path, bytes: usize) -> (PathBuf, std::fs::File) {
    let path = dir.join("disk-floor");
    let file = std::fs::File::create(&path).unwrap();
    file.write_all_at(&vec![0u8; bytes], 0).unwrap();
    file.sync_all().unwrap();
    (path, file)
}

/// The calling thread's time on a CPU so far, in ns (`/proc/thread-self/schedstat`): finer than
/// the clock ticks of `/proc/…/stat`, and it counts the kernel's work inside the thread's calls.
/// None where the kernel keeps no such count.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
}

/// The CPU one write and sync cost here, in µs: `n` records of [`LINE`] bytes written one at a
/// time into preallocated zeros, each made durable by `fdatasync` as the log makes a batch
/// durable, on one thread while the hubs are idle. Under load a sync costs more than this: the
/// log writes a batch, not one record, and the callers a sync wakes, interrupts and the kernel's
/// own threads are not charged to this one; so the share of the machine it gives is a floor.
/// None where the thread's CPU time cannot be read (or reads as none spent).
fn sync_cpu_us(dir: &Path, n: usize) -> Option<f64> {
    let (path, file) = zeroed(dir, n * LINE);
    let record = [b'x'; LINE];
    let start = thread_cpu_ns();
    for i in 0..n {
        file.write_all_at(&record, (i * LINE) as u64).unwrap();
        file.sync_data().unwrap();
    }
    let end = thread_cpu_ns();
    std::fs::remove_file(&path).unwrap();
    let spent = end?.checked_sub(start?).filter(|&ns| ns > 0)?;
    Some(spent as f64 / 1000.0 / n as f64)
}
