//! The `citybrain` binary as an operator uses it: token, catalog apply, and `serve --demo` with
//! a clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

/// The repository's manifests. The crate's directory is read when the test runs (cargo sets it
/// then too): a target directory shared between checkouts may hold this binary built in another.
fn repo_catalog() -> std::path::PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&crate_dir).join("../../catalog")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("CITYBRAIN_LOG", "warn")
        .output()
        .expect("binary runs")
}

#[test]
fn token_prints_only_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&[
        "token",
        "--data-dir",
        d,
        "--dept",
        "hrss",
        "--role",
        "steward",
        "--ttl",
        "2h",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "only the token on stdout: {stdout:?}");
    let issuer = citybrain_auth::LocalIssuer::load_or_create(&dir.path().join("keys")).unwrap();
    let p = citybrain_auth::Authenticator::new([issuer.trusted_key()])
        .verify(lines[0])
        .unwrap();
    assert_eq!(p.department, "hrss");
    assert_eq!(p.role, citybrain_types::Role::Steward);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 7100..=now + 7205).contains(&p.expires_at),
        "--ttl 2h is honoured"
    );

    for bad in [
        vec!["--role", "root", "--dept", "hrss"],
        vec!["--role", "consumer", "--dept", "HRSS"],
        vec!["--role", "consumer", "--dept", "hrss", "--ttl", "soon"],
    ] {
        let mut args = vec!["token", "--data-dir", d];
        args.extend(bad.iter());
        let out = run(&args);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
    }
}

#[test]
fn catalog_apply_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cat = repo_catalog();
    let cat = cat.to_str().unwrap();
    let first = run(&["catalog", "apply", cat, "--data-dir", d]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(
        first.ends_with("18 created, 0 changed, 0 unchanged\n"),
        "{first}"
    );
    let second =
        String::from_utf8(run(&["catalog", "apply", cat, "--data-dir", d]).stdout).unwrap();
    assert!(
        second.ends_with("0 created, 0 changed, 18 unchanged\n"),
        "{second}"
    );
}

#[test]
fn a_bad_manifest_names_file_and_field_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let good = std::fs::read_to_string(repo_catalog().join("map/addresses.toml")).unwrap();
    std::fs::write(manifests.join("a-good.toml"), &good).unwrap();
    for (bad, want) in [
        (good.replace("update_cycle", "update_cylce"), "update_cylce"),
        (
            good.replace("\"monthly\"", "\"fortnightly\""),
            "fortnightly",
        ),
        (
            good.replace("key_column = \"address_id\"", "key_column = \"addr\""),
            "key_column",
        ),
        (
            good.replace(
                "name = \"map.addresses\"",
                "name = \"map.addresses\"\nname = \"x.y\"",
            ),
            "b-bad.toml",
        ),
    ] {
        std::fs::write(manifests.join("b-bad.toml"), &bad).unwrap();
        let out = run(&[
            "catalog",
            "apply",
            manifests.to_str().unwrap(),
            "--data-dir",
            d.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("b-bad.toml"), "names the file: {err}");
        assert!(err.contains(want), "names the problem ({want}): {err}");
    }
    std::fs::remove_file(manifests.join("b-bad.toml")).unwrap();
    let out = run(&[
        "catalog",
        "apply",
        manifests.to_str().unwrap(),
        "--data-dir",
        d.to_str().unwrap(),
    ]);
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.ends_with("1 created, 0 changed, 0 unchanged\n"),
        "nothing was applied before: {out}"
    );
}

#[test]
fn serve_demo_prints_address_and_tokens_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--demo-persons",
            "500",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("CITYBRAIN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addr = None;
    let mut tokens = Vec::new();
    let started = Instant::now();
    while tokens.len() < 4 && started.elapsed() < Duration::from_secs(120) {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(a) = line.strip_prefix("citybrain listening on ") {
            addr = Some(a.to_owned());
        } else if let Some(rest) = line.strip_prefix("token ") {
            tokens.push(rest.rsplit(' ').next().unwrap().to_owned());
        }
    }
    let addr = addr.expect("the real address is printed");
    assert!(!addr.ends_with(":0"));
    assert_eq!(tokens.len(), 4, "one token per role");

    let out = run(&[
        "whoami",
        "--server",
        &format!("http://{addr}"),
        "--token",
        &tokens[1],
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("public-security (steward)"));
    let out = run(&[
        "catalog",
        "stats",
        "--server",
        &format!("http://{addr}"),
        "--token",
        &tokens[0],
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("tables               18"));

    // The load generator: real gRPC lookups and the SQL baselines, as a table and as JSON.
    let json = dir.path().join("bench.json");
    let data_dir = dir.path().join("data");
    let bench = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("bench")
            .args(args)
            .arg("--server")
            .arg(format!("http://{addr}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--json")
            .arg(&json)
            .env("CITYBRAIN_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), doc)
    };
    // Two clients for a second after a second's warm-up, over 200 sampled keys.
    let short = [
        "--clients",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "1s",
        "--sample",
        "200",
    ];
    let (table, doc) = bench(&[&short[..], &["--absent-percent", "10", "--sql-baseline"]].concat());
    assert!(
        table.contains("hub Lookup (gRPC)") && table.contains("DataFusion SQL"),
        "{table}"
    );
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
        assert!(r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap());
    }

    // A narrower grant, under another department: Verify claims a granted column, and the
    // baseline selects the granted columns only.
    let (table, doc) = bench(
        &[
            &short[..],
            &["--mode", "verify", "--dept", "bench-narrow"],
            &["--columns", "id_number,town", "--sql-baseline"],
        ]
        .concat(),
    );
    assert!(table.contains("hub Verify (gRPC)"), "{table}");
    for r in doc["runs"].as_array().unwrap() {
        assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
    }

    // Governed SQL timed against ungoverned DataFusion: both answer the same rows.
    let (_, doc) = bench(&[
        "--repeat",
        "1",
        "--query",
        "SELECT town, count(*) FROM population.residents GROUP BY town",
    ]);
    let q = &doc["queries"][0];
    assert_eq!(q["hub_rows"], q["datafusion_rows"], "{q}");
    assert!(q["hub_rows"].as_u64().unwrap() > 1, "{q}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    assert!(code.success(), "clean shutdown on SIGTERM: {code:?}");
}

#[test]
fn datagen_writes_only_the_tables_asked_for_and_names_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tables");
    let o = out.to_str().unwrap();
    let only = run(&[
        "datagen",
        "--out",
        o,
        "--persons",
        "500",
        "--tables",
        "population.residents,map.addresses",
    ]);
    assert!(
        only.status.success(),
        "{}",
        String::from_utf8_lossy(&only.stderr)
    );
    let stdout = String::from_utf8(only.stdout).unwrap();
    assert!(stdout.contains("population.residents") && stdout.contains("map.addresses"));
    assert!(!stdout.contains("legal.entities"), "{stdout}");
    let mut written: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, ["map", "population"]);

    let bad = run(&[
        "datagen",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
        "--persons",
        "500",
        "--tables",
        "population.people",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("unknown table 'population.people'"), "{err}");
}
