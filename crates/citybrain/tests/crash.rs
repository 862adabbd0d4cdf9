//! Killing the hub with SIGKILL under load, repeatedly: after each restart the audit chain
//! verifies and every call whose answer reached the client is in the log.

use citybrain_proto::v1 as pb;
use citybrain_proto::v1::catalog_service_client::CatalogServiceClient;
use citybrain_types::Role;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::Request;

const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

fn start(data: &Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .env("CITYBRAIN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the hub prints its address").unwrap();
        if let Some(a) = line.strip_prefix("citybrain listening on ") {
            break a.to_owned();
        }
    };
    (child, addr)
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_answered_call() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    citybrain::hub::prepare_demo(&data, 300, None).unwrap();
    let token = citybrain::hub::local_issuer(&data)
        .unwrap()
        .mint("civil-affairs", Role::Consumer, "loader", 600)
        .unwrap();
    let mut answered = Vec::new();
    for round in 0..3 {
        let (mut child, addr) = start(&data);
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..4 {
            let (addr, token, stop) = (addr.clone(), token.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                let Ok(mut api) = CatalogServiceClient::connect(format!("http://{addr}")).await
                else {
                    return ok;
                };
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("r{round}-t{t}-{n}");
                    n += 1;
                    let mut req = Request::new(pb::GetStatsRequest {});
                    req.metadata_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                    req.metadata_mut()
                        .insert("x-request-id", id.parse().unwrap());
                    match api.get_stats(req).await {
                        Ok(_) => ok.push(id),
                        Err(_) => break,
                    }
                }
                ok
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        signal(&child, "-KILL");
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            answered.extend(t.await.unwrap());
        }
        child.wait().unwrap();
    }
    assert!(
        answered.len() > 20,
        "the load got answers: {}",
        answered.len()
    );

    // A last start recovers, then a clean stop seals the log.
    let (mut child, _) = start(&data);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 records after the last checkpoint"));

    let log = citybrain::hub::open_audit(&data, None, citybrain_audit::Gather::DEFAULT).unwrap();
    let mut recorded = std::collections::HashSet::new();
    let (page, _) = log
        .search(&citybrain_audit::Filter::default(), 1_000_000, None)
        .unwrap();
    for s in page {
        if let citybrain_audit::Body::Call(e) = s.payload.body {
            recorded.insert(e.call_id);
        }
    }
    for id in &answered {
        assert!(
            recorded.contains(id),
            "answered call {id} is missing from the audit log"
        );
    }

    // Tampering is caught by `audit verify`, which names the record and exits non-zero.
    log.close().await.unwrap();
    let seg = citybrain_audit::list_segments(&data.join("audit"))
        .unwrap()
        .remove(0);
    let mut bytes = std::fs::read(&seg.path).unwrap();
    let pos = bytes.iter().position(|b| *b == b'r').unwrap();
    bytes[pos] = b'R';
    std::fs::write(&seg.path, bytes).unwrap();
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("segment 1, record"), "{err}");
}
