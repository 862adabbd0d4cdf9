//! `citybrain bench`: a load generator for a running hub, with baselines in the same run.
//!
//! It mints its own tokens from the hub's data directory (a dev tool on the hub's machine),
//! obtains a read grant for a benchmark purpose, samples keys spread over the table's files, then
//! runs N concurrent clients over real gRPC for a fixed time and reports latency percentiles,
//! throughput and errors. With `--sql-baseline` the same lookups run through plain DataFusion SQL
//! over the same files (in this process, default settings and with the metadata cache sized to
//! the data and bloom filters off); with `--duckdb` through DuckDB (Python), when installed.

use crate::cli::{BenchArgs, BenchMode};
use crate::commands::parse_secs;
use crate::hub::{TABLES_DIR, local_issuer, open_catalog};
use crate::{Error, Result};
use arrow::array::{Array, AsArray};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::data_service_client::DataServiceClient;
use citybrain_proto::v1::sharing_service_client::SharingServiceClient;
use citybrain_types::{CitizenId, Role, ShareType};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

/// The purpose of the benchmark's grants and calls.
pub(crate) const PURPOSE: &str = "benchmark load test";

/// One measured run.
#[derive(Debug, serde::Serialize)]
struct Run {
    name: String,
    calls: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    seconds: f64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn summarize(name: &str, mut lat: Vec<u32>, errors: BTreeMap<String, u64>, secs: f64) -> Run {
    lat.sort_unstable();
    let ok = lat.len() as u64;
    Run {
        name: name.to_owned(),
        calls: ok + errors.values().sum::<u64>(),
        ok,
        errors,
        seconds: secs,
        per_second: ok as f64 / secs,
        p50_ms: percentile(&lat, 0.50),
        p90_ms: percentile(&lat, 0.90),
        p99_ms: percentile(&lat, 0.99),
        p999_ms: percentile(&lat, 0.999),
    }
}

/// Keys spread over every row group of every file (a few rows from each), each with the key
/// that follows it in its file (`None` for a file's last row).
fn sample_keys(dir: &Path, key: &str, want: usize) -> Result<Vec<(String, Option<String>)>> {
    let io = |what: String| move |e: std::io::Error| Error::Io { what, source: e };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(format!("read {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    let bad = |e: parquet::errors::ParquetError| Error::Usage(format!("sampling keys: {e}"));
    let mut groups = 0usize;
    for f in &files {
        let file = std::fs::File::open(f).map_err(io(format!("open {}", f.display())))?;
        groups += ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(bad)?
            .metadata()
            .num_row_groups();
    }
    let per_group = want.div_ceil(groups.max(1)).max(1);
    let mut keys = Vec::with_capacity(want);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for f in &files {
        let file = std::fs::File::open(f).map_err(io(format!("open {}", f.display())))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(bad)?;
        let md = builder.metadata().clone();
        let descr = md.file_metadata().schema_descr();
        let Some(col) = (0..descr.num_columns()).find(|c| descr.column(*c).name() == key) else {
            return Err(Error::Usage(format!("{} has no column {key}", f.display())));
        };
        let mut selectors = Vec::new();
        for g in 0..md.num_row_groups() {
            let rows = md.row_group(g).num_rows() as usize;
            let take = per_group.min(rows);
            let stride = rows / take.max(1);
            for t in 0..take {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let off = (seed >> 33) as usize % stride.max(1);
                selectors.push((g, t * stride + off));
            }
        }
        // (row group, row) → a selection over the file's rows.
        let mut sel = Vec::new();
        let mut pos = 0usize;
        let starts: Vec<usize> = (0..md.num_row_groups())
            .scan(0usize, |acc, g| {
                let s = *acc;
                *acc += md.row_group(g).num_rows() as usize;
                Some(s)
            })
            .collect();
        let file_rows = md.file_metadata().num_rows() as usize;
        // Rows selected per sample: the sampled row and, inside the file, the one after it.
        let mut taken = Vec::new();
        for (g, at) in selectors {
            let row = starts[g] + at;
            if row < pos {
                continue;
            }
            if row > pos {
                sel.push(RowSelector::skip(row - pos));
            }
            let n = if row + 1 < file_rows { 2 } else { 1 };
            sel.push(RowSelector::select(n));
            taken.push(n);
            pos = row + n;
        }
        let reader = builder
            .with_projection(ProjectionMask::roots(descr, [col]))
            .with_row_selection(RowSelection::from(sel))
            .build()
            .map_err(bad)?;
        let mut values = Vec::new();
        for b in reader {
            let b = b.map_err(|e| Error::Usage(format!("sampling keys: {e}")))?;
            let c = b.column(0).as_string::<i32>();
            values.extend((0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_owned())));
        }
        let mut values = values.into_iter();
        for n in taken {
            let k = values.next().flatten();
            let next = if n == 2 {
                values.next().flatten()
            } else {
                None
            };
            if let Some(k) = k {
                keys.push((k, next));
            }
        }
    }
    Ok(keys)
}

/// A well-formed key that certainly no row has: one strictly between `key` and `next`, two
/// neighbours in a sorted file of unique keys. For an ID number, the same area and birth date
/// with the next order code; `None` when there is no gap (a full cell) or no neighbour. Other
/// keys get a suffix, which the hub refuses as malformed.
fn absent_between(key: &str, next: Option<&str>) -> Option<String> {
    let Ok(id) = CitizenId::parse(key) else {
        return Some(format!("{key}~absent"));
    };
    let area: u32 = key[..6].parse().ok()?;
    let order: u16 = key[14..17].parse().ok()?;
    let gap = CitizenId::from_parts(
        area,
        id.birth_date(),
        order.checked_add(1).filter(|o| *o <= 999)?,
    );
    (gap.as_str() < next?).then(|| gap.as_str().to_owned())
}

async fn channels(server: &str, n: usize) -> Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let ch = Endpoint::from_shared(server.to_owned())
            .map_err(|e| Error::Usage(format!("--server: {e}")))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| Error::Connect {
                server: server.to_owned(),
                reason: e.to_string(),
            })?;
        out.push(ch);
    }
    Ok(out)
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

fn progress(label: &str, secs: u64) -> ProgressBar {
    let pb = ProgressBar::new(secs);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_owned());
    pb
}

/// Runs `f` on a thread of its own, on a one-thread runtime, and waits for what it returns.
///
/// The hub's clients run here. On a runtime with a worker per core, the load generator spreads
/// over every core and competes with the server it measures for them, and each call's wake-ups
/// hop between threads. At 100 M residents on two cores, the two ways alternating against one
/// server, three runs each: one client p50 0.48–0.54 ms on one thread against 0.52–0.61 ms,
/// and 32 clients 7.9–9.5k calls/s against 5.8–8.0k/s. The in-process DataFusion baseline
/// keeps the whole runtime, as a server would.
async fn on_client_thread<F, Fut, T>(f: F) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let io = |source| Error::Io {
        what: "starting the benchmark's client thread".into(),
        source,
    };
    std::thread::Builder::new()
        .name("bench-clients".into())
        .spawn(move || {
            let out = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(io)
                .and_then(|rt| rt.block_on(f()));
            let _ = tx.send(out);
        })
        .map_err(io)?;
    rx.await
        .map_err(|_| Error::Usage("the benchmark's client thread stopped".into()))?
}

/// Runs `call` from `clients` tasks for `warmup + secs`, measuring after the warm-up.
async fn drive<F, Fut>(label: &str, clients: usize, warmup: Duration, secs: u64, call: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now() + warmup;
    let end = start + Duration::from_secs(secs);
    let pb = progress(label, secs);
    let ticker = {
        let pb = pb.clone();
        tokio::spawn(async move {
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let done = Instant::now().saturating_duration_since(start).as_secs();
                pb.set_position(done.min(secs));
            }
        })
    };
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), BTreeMap::<String, u64>::new());
            let mut n = c as u64 * 7919;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let r = call(c, n).await;
                n += 1;
                if t0 < start {
                    continue;
                }
                match r {
                    Ok(()) => lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Err(code) => *errors.entry(code).or_default() += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut lat, mut errors) = (Vec::new(), BTreeMap::new());
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            for (k, v) in e {
                *errors.entry(k).or_insert(0) += v;
            }
        }
    }
    ticker.abort();
    pb.finish_and_clear();
    summarize(label, lat, errors, secs as f64)
}

/// `citybrain bench`.
pub async fn bench(a: BenchArgs) -> Result<()> {
    let secs = match parse_secs("--duration", &a.duration)? {
        0 => {
            return Err(Error::Usage(
                "--duration: a run must last longer than 0s".into(),
            ));
        }
        n => n,
    };
    let warmup = Duration::from_secs(parse_secs("--warmup", &a.warmup)?);
    let catalog = open_catalog(&a.data.data_dir)?;
    let manifest = catalog.get(&a.table)?.manifest;
    let key = manifest
        .key_column
        .clone()
        .ok_or_else(|| Error::Usage(format!("{} has no key column", a.table)))?;
    let dataset = manifest
        .dataset
        .clone()
        .ok_or_else(|| Error::Usage(format!("{} holds no data", a.table)))?;
    let tables_root = a
        .tables_dir
        .clone()
        .unwrap_or_else(|| a.data.data_dir.join(TABLES_DIR));
    let dir = dataset_dir(&tables_root, &dataset);

    // Tokens and a read grant for the benchmark purpose.
    let issuer = local_issuer(&a.data.data_dir)?;
    let consumer = issuer.mint(&a.dept, Role::Consumer, "bench", 24 * 3600)?;
    let chans = channels(&a.server, 1).await?;
    let granted = grant(
        &chans[0], &catalog, &issuer, &consumer, &a.table, &a.columns,
    )
    .await?;
    let claim = granted
        .iter()
        .find(|c| **c != key)
        .cloned()
        .unwrap_or_else(|| key.clone());
    // What the baselines select: what the grant shows.
    let select = if a.columns.is_empty() {
        "*".to_owned()
    } else {
        granted.join(", ")
    };
    if !a.queries.is_empty() {
        for t in &a.grant_tables {
            grant(&chans[0], &catalog, &issuer, &consumer, t, &[]).await?;
        }
        return crate::bench_sql::sql_bench(&a, &chans[0], &consumer, &catalog, &tables_root).await;
    }

    eprintln!("sampling {} keys from {}", a.sample, dir.display());
    let sampled = sample_keys(&dir, &key, a.sample)?;
    if sampled.is_empty() {
        return Err(Error::Usage("no keys found in the table's files".into()));
    }
    let gaps: Vec<String> = sampled
        .iter()
        .filter_map(|(k, next)| absent_between(k, next.as_deref()))
        .collect();
    let mut keys: Vec<String> = sampled.into_iter().map(|(k, _)| k).collect();
    let absent = (keys.len() * a.absent_percent as usize / 100).min(keys.len());
    if absent > 0 && gaps.is_empty() {
        return Err(Error::Usage(
            "--absent-percent: no two sampled neighbours leave room for an absent key".into(),
        ));
    }
    let step = keys.len() / absent.max(1);
    for i in 0..absent {
        keys[i * step] = gaps[i % gaps.len()].clone();
    }
    let keys = Arc::new(keys);
    let mut runs = Vec::new();

    let hub_label = match a.mode {
        BenchMode::Lookup => "hub Lookup (gRPC)",
        BenchMode::Verify => "hub Verify (gRPC)",
    };
    {
        let (keys, server, table, token, mode, claim) = (
            keys.clone(),
            a.server.clone(),
            a.table.clone(),
            consumer.clone(),
            a.mode,
            claim.clone(),
        );
        let clients = a.clients;
        drop(chans);
        let run = on_client_thread(move || async move {
            let chans = Arc::new(channels(&server, clients.div_ceil(8).max(1)).await?);
            Ok(drive(hub_label, clients, warmup, secs, move |c, n| {
                let key = keys[(n as usize * 2654435761) % keys.len()].clone();
                let mut client = DataServiceClient::new(chans[c % chans.len()].clone());
                let (table, token, claim) = (table.clone(), token.clone(), claim.clone());
                async move {
                    let r = match mode {
                        BenchMode::Lookup => client
                            .lookup(authed(
                                &token,
                                pb::LookupRequest {
                                    table,
                                    key,
                                    purpose: PURPOSE.into(),
                                },
                            ))
                            .await
                            .map(|_| ()),
                        BenchMode::Verify => client
                            .verify(authed(
                                &token,
                                pb::VerifyRequest {
                                    table,
                                    key,
                                    purpose: PURPOSE.into(),
                                    claims: vec![pb::Claim {
                                        column: claim,
                                        value: "x".into(),
                                    }],
                                },
                            ))
                            .await
                            .map(|_| ()),
                    };
                    r.map_err(|s| format!("{:?}", s.code()))
                }
            })
            .await)
        })
        .await?;
        runs.push(run);
    }

    if a.sql_baseline {
        for (label, tuned) in [
            ("DataFusion SQL (default)", false),
            ("DataFusion SQL (tuned)", true),
        ] {
            let ctx = datafusion_ctx(tuned)?;
            let path = format!("{}/", dir.display());
            ctx.register_parquet("t", &path, ParquetReadOptions::default())
                .await
                .map_err(|e| Error::Usage(format!("datafusion: {e}")))?;
            let (ctx, keys, key) = (Arc::new(ctx), keys.clone(), key.clone());
            let select = select.clone();
            let run = drive(label, a.clients, warmup, secs, move |_c, n| {
                let k = keys[(n as usize * 2654435761) % keys.len()].clone();
                let (ctx, key, select) = (ctx.clone(), key.clone(), select.clone());
                async move {
                    let df = ctx
                        .sql(&format!("SELECT {select} FROM t WHERE {key} = '{k}'"))
                        .await
                        .map_err(|e| e.to_string())?;
                    df.collect().await.map(|_| ()).map_err(|e| e.to_string())
                }
            })
            .await;
            runs.push(run);
        }
    }
    if a.duckdb {
        runs.push(duckdb_run(
            &dir, &key, &select, &keys, a.clients, warmup, secs,
        )?);
    }

    print_table(&runs);
    if let Some(path) = &a.json {
        let doc = serde_json::json!({
            "table": a.table,
            "clients": a.clients,
            "duration_s": secs,
            "keys": keys.len(),
            "absent_percent": a.absent_percent,
            "runs": runs,
        });
        write_json(path, &doc)?;
    }
    if runs[0].ok == 0 {
        return Err(Error::Usage(format!(
            "no call succeeded against the hub: {:?}",
            runs[0].errors
        )));
    }
    Ok(())
}

fn print_table(runs: &[Run]) {
    println!(
        "{:<28} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "path", "calls", "per s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors", "vs hub"
    );
    let base = runs.first().map_or(1.0, |r| r.per_second.max(1e-9));
    for r in runs {
        println!(
            "{:<28} {:>9} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>9.3}x",
            r.name,
            r.calls,
            r.per_second,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.errors.values().sum::<u64>(),
            r.per_second / base
        );
    }
}

/// Where a dataset (`population/residents`) lives under the tables root.
pub(crate) fn dataset_dir(tables_root: &Path, dataset: &str) -> PathBuf {
    dataset
        .split('/')
        .fold(tables_root.to_path_buf(), |p, s| p.join(s))
}

/// A plain DataFusion session: default settings, or tuned as the hub tunes its own (bloom
/// filters not read, 1 GiB Parquet metadata cache).
pub(crate) fn datafusion_ctx(tuned: bool) -> Result<SessionContext> {
    let mut config = SessionConfig::new();
    let mut runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new();
    if tuned {
        config.options_mut().execution.parquet.bloom_filter_on_read = false;
        runtime = runtime.with_metadata_cache_limit(1 << 30);
    }
    let runtime = runtime
        .build_arc()
        .map_err(|e| Error::Usage(format!("datafusion: {e}")))?;
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Writes a JSON report.
pub(crate) fn write_json(path: &Path, doc: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(doc).unwrap_or_default()).map_err(|e| {
        Error::Io {
            what: format!("write {}", path.display()),
            source: e,
        }
    })
}

/// Runs a DuckDB script with `$CITYBRAIN_PYTHON` (default `python3`) and returns its standard
/// output; a failure names the script's last error line.
pub(crate) fn run_duckdb(script: &str, args: &[String]) -> Result<Vec<u8>> {
    let python = std::env::var("CITYBRAIN_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .map_err(|e| Error::Io {
            what: format!("run {python}"),
            source: e,
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Usage(format!(
            "DuckDB baseline failed (is duckdb installed for {python}?): {}",
            err.lines().last().unwrap_or_default()
        )));
    }
    Ok(out.stdout)
}

/// DuckDB through Python, when the module is installed: the same keys, threads and duration.
fn duckdb_run(
    dir: &Path,
    key: &str,
    select: &str,
    keys: &[String],
    clients: usize,
    warmup: Duration,
    secs: u64,
) -> Result<Run> {
    let keys_file =
        std::env::temp_dir().join(format!("citybrain-bench-keys-{}", std::process::id()));
    std::fs::write(&keys_file, keys.join("\n")).map_err(|e| Error::Io {
        what: "write keys".into(),
        source: e,
    })?;
    let script = r#"
import duckdb, json, sys, threading, time
path, key, keys_file, clients, warm, secs, select = sys.argv[1:8]
keys = open(keys_file).read().split("\n")
clients, warm, secs = int(clients), float(warm), float(secs)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW t AS SELECT {select} FROM read_parquet('{path}/*.parquet')")
start = time.perf_counter() + warm
end = start + secs
lat, errors = [], [0]
lock = threading.Lock()
def worker(c):
    cur = con.cursor()
    n = c * 7919
    mine = []
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        k = keys[(n * 2654435761) % len(keys)]
        n += 1
        try:
            cur.execute(f"SELECT * FROM t WHERE {key} = ?", [k]).fetchall()
        except Exception:
            errors[0] += 1
            continue
        if t0 >= start:
            mine.append(int((time.perf_counter() - t0) * 1e6))
    with lock:
        lat.extend(mine)
threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"lat": lat, "errors": errors[0]}))
"#;
    eprintln!("running DuckDB (python) for {}s", secs + warmup.as_secs());
    let out = run_duckdb(
        script,
        &[
            dir.display().to_string(),
            key.to_owned(),
            keys_file.display().to_string(),
            clients.to_string(),
            warmup.as_secs().to_string(),
            secs.to_string(),
            select.to_owned(),
        ],
    );
    let _ = std::fs::remove_file(&keys_file);
    let out = out?;
    #[derive(serde::Deserialize)]
    struct Out {
        lat: Vec<u32>,
        errors: u64,
    }
    let o: Out = serde_json::from_slice(&out)
        .map_err(|e| Error::Usage(format!("DuckDB baseline output: {e}")))?;
    let mut errors = BTreeMap::new();
    if o.errors > 0 {
        errors.insert("error".to_owned(), o.errors);
    }
    Ok(summarize("DuckDB (python)", o.lat, errors, secs as f64))
}

/// A read grant on `table` for the benchmark purpose, approved by its provider's steward: of
/// `columns`, or of every shareable column when none is named. Returns the columns asked for.
async fn grant(
    channel: &Channel,
    catalog: &citybrain_catalog::Catalog,
    issuer: &citybrain_auth::LocalIssuer,
    consumer: &str,
    table: &str,
    columns: &[String],
) -> Result<Vec<String>> {
    let manifest = catalog.get(table)?.manifest;
    let steward = issuer.mint(&manifest.provider_code, Role::Steward, "bench", 24 * 3600)?;
    let mut sharing = SharingServiceClient::new(channel.clone());
    let columns: Vec<String> = if columns.is_empty() {
        manifest
            .columns
            .iter()
            .filter(|c| c.share_type != ShareType::NotShared)
            .map(|c| c.name.clone())
            .collect()
    } else {
        columns.to_vec()
    };
    let applied = sharing
        .apply(authed(
            consumer,
            pb::ApplyRequest {
                table: table.to_owned(),
                columns: columns.clone(),
                purpose: PURPOSE.into(),
                business_system: "citybrain bench".into(),
                service_matter: "load test".into(),
                days: 1,
                mode: pb::Mode::Read.into(),
            },
        ))
        .await?
        .into_inner();
    if applied.grant.is_none()
        && let Some(app) = applied.application
    {
        sharing
            .decide(authed(
                &steward,
                pb::DecideRequest {
                    application_id: app.id,
                    approve: true,
                    reason: "load test".into(),
                    ..Default::default()
                },
            ))
            .await?;
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(area: u32, (y, m, d): (i32, u32, u32), order: u16) -> String {
        let birth = citybrain_types::Date::from_ymd(y, m, d).unwrap();
        CitizenId::from_parts(area, birth, order)
            .as_str()
            .to_owned()
    }

    #[test]
    fn an_absent_key_lies_strictly_between_neighbours_or_is_not_made() {
        let day = (1990, 5, 17);
        let (a, b) = (id(440605, day, 12), id(440605, day, 15));
        let gap = absent_between(&a, Some(&b)).unwrap();
        assert_eq!(gap, id(440605, day, 13));
        assert!(a < gap && gap < b);
        assert!(
            CitizenId::parse(&gap).is_ok(),
            "well-formed, so it is looked up"
        );

        let full = (id(440605, day, 12), id(440605, day, 13));
        assert_eq!(absent_between(&full.0, Some(&full.1)), None, "a full run");
        let last = id(440605, day, 999);
        let next_day = id(440605, (1990, 5, 18), 1);
        assert_eq!(absent_between(&last, Some(&next_day)), None);
        assert_eq!(absent_between(&a, None), None, "no neighbour, no certainty");
        assert_eq!(
            absent_between(&a, Some(&id(440606, (1935, 1, 1), 1))),
            Some(id(440605, day, 13)),
            "the next cell starts later"
        );
        assert_eq!(
            absent_between("91440605MA4UXXXX1X", None).as_deref(),
            Some("91440605MA4UXXXX1X~absent")
        );
    }
}
