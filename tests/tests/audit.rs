//! Every call is recorded with its outcome, durably, before its answer; auditors can search,
//! meter, verify and follow the log; the hub fails closed when the log cannot be written.

use citybrain::hub::HubOptions;
use citybrain_audit::Faults;
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::audit_service_client::AuditServiceClient;
use citybrain_tests::{TestHub, authed};
use citybrain_types::Role;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic::{Code, Request};

fn with_id<T>(mut req: Request<T>, id: &str) -> Request<T> {
    req.metadata_mut()
        .insert("x-request-id", id.parse().unwrap());
    req
}

/// Every record of the log, by call id, read through the auditor's API.
async fn all_records(hub: &TestHub) -> HashMap<String, pb::CallRecord> {
    let token = hub.token("audit", Role::Auditor);
    let mut api = AuditServiceClient::new(hub.channel().await);
    let mut out = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .search_calls(authed(
                &token,
                pb::SearchCallsRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for c in page.calls {
            out.insert(c.call_id.clone(), c);
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn concurrent_calls_are_each_recorded_with_their_outcome() {
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let mut api = hub.catalog().await;
        let consumer = consumer.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("load-{i}");
            let (want, got) = match i % 4 {
                0 => (
                    "ok",
                    api.get_stats(with_id(authed(&consumer, pb::GetStatsRequest {}), &id))
                        .await
                        .map(|_| ()),
                ),
                1 => (
                    "denied",
                    api.deprecate_table(with_id(
                        authed(
                            &consumer,
                            pb::DeprecateTableRequest {
                                name: "legal.entities".into(),
                                reason: "x".into(),
                            },
                        ),
                        &id,
                    ))
                    .await
                    .map(|_| ()),
                ),
                2 => (
                    "unauthenticated",
                    api.get_stats(with_id(Request::new(pb::GetStatsRequest {}), &id))
                        .await
                        .map(|_| ()),
                ),
                _ => (
                    "invalid",
                    api.get_table(with_id(
                        authed(
                            &consumer,
                            pb::GetTableRequest {
                                name: "No Such".into(),
                            },
                        ),
                        &id,
                    ))
                    .await
                    .map(|_| ()),
                ),
            };
            (id, want, got.map_err(|s| s.code()))
        }));
    }
    let mut made = Vec::new();
    for t in tasks {
        made.push(t.await.unwrap());
    }
    let records = all_records(&hub).await;
    for (id, want, got) in &made {
        let rec = records
            .get(id)
            .unwrap_or_else(|| panic!("call {id} was not recorded"));
        assert_eq!(rec.outcome, *want, "{id}: {got:?}");
        assert_eq!(rec.method.split('/').next(), Some("CatalogService"));
        if *want == "unauthenticated" {
            assert_eq!(rec.department, "");
        } else {
            assert_eq!(rec.department, "civil-affairs");
        }
    }
    let ok = records.values().find(|r| r.call_id == "load-0").unwrap();
    assert_eq!((ok.rows, ok.code), (1, 0));
    assert!(ok.bytes > 0 && ok.latency_us > 0);
    let denied = &records["load-1"];
    assert_eq!(denied.tables, vec!["legal.entities"]);
    assert_eq!(denied.code, Code::PermissionDenied as i32);
}

#[tokio::test]
async fn auditors_search_meter_verify_and_tail() {
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let auditor = hub.token("audit", Role::Auditor);
    let mut catalog = hub.catalog().await;
    let mut audit = AuditServiceClient::new(hub.channel().await);

    // Only auditors review; the refusal is itself recorded.
    let err = audit
        .verify_log(with_id(authed(&consumer, pb::VerifyLogRequest {}), "peek"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut tail = audit
        .tail_calls(authed(
            &auditor,
            pb::TailCallsRequest {
                department: "civil-affairs".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    for i in 0..3 {
        catalog
            .get_table(with_id(
                authed(
                    &consumer,
                    pb::GetTableRequest {
                        name: "population.residents".into(),
                    },
                ),
                &format!("g{i}"),
            ))
            .await
            .unwrap();
    }
    for i in 0..3 {
        let rec = tokio::time::timeout(Duration::from_secs(5), tail.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            rec.call_id,
            format!("g{i}"),
            "records arrive live, in order"
        );
        assert_eq!(rec.tables, vec!["population.residents"]);
    }

    let found = audit
        .search_calls(authed(
            &auditor,
            pb::SearchCallsRequest {
                department: "civil-affairs".into(),
                table: "population.residents".into(),
                outcome: "ok".into(),
                from: "2020-01-01".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.calls.len(), 3);
    let denied = audit
        .search_calls(authed(
            &auditor,
            pb::SearchCallsRequest {
                outcome: "denied".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        denied
            .calls
            .iter()
            .map(|c| c.call_id.as_str())
            .collect::<Vec<_>>(),
        vec!["peek"]
    );

    // "Who looked up this person": the number is validated and hashed, never stored raw.
    let err = audit
        .search_calls(authed(
            &auditor,
            pb::SearchCallsRequest {
                key: "110105194912310021".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let nobody = audit
        .search_calls(authed(
            &auditor,
            pb::SearchCallsRequest {
                key: "11010519491231002X".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(nobody.calls.is_empty());

    let meter = audit
        .get_metering(authed(
            &auditor,
            pb::GetMeteringRequest {
                department: "civil-affairs".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let residents: u64 = meter
        .rows
        .iter()
        .filter(|r| r.table == "population.residents")
        .map(|r| r.calls)
        .sum();
    assert_eq!(residents, 3);
    assert!(meter.total_calls >= 7);

    let v = audit
        .verify_log(authed(&auditor, pb::VerifyLogRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{}", v.failure);
    assert!(v.records >= 7);

    // No raw identifiers in the log files.
    let dir = hub.data_dir().join("audit");
    for e in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(!text.contains("11010519491231002X"));
    }
}

#[tokio::test]
async fn timeouts_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    citybrain::hub::prepare_demo(dir.path(), 300, None).unwrap();
    let mut opts = HubOptions::new(dir.path());
    opts.limits.default_deadline = Duration::ZERO;
    let hub = TestHub::start_with(dir, &opts).await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let err = hub
        .catalog()
        .await
        .get_stats(with_id(authed(&token, pb::GetStatsRequest {}), "slow"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    let dir = hub.stop().await;
    let hub = TestHub::start_in(dir).await;
    let records = all_records(&hub).await;
    assert_eq!(records["slow"].outcome, "timeout");
}

#[tokio::test]
async fn a_failing_log_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    citybrain::hub::prepare_demo(dir.path(), 300, None).unwrap();
    let faults = Arc::new(Faults::default());
    let mut opts = HubOptions::new(dir.path());
    opts.audit_faults = Some(faults.clone());
    let hub = TestHub::start_with(dir, &opts).await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;
    api.get_stats(with_id(authed(&token, pb::GetStatsRequest {}), "before"))
        .await
        .unwrap();

    faults.fail_sync.store(true, Ordering::SeqCst);
    let err = api
        .get_stats(with_id(authed(&token, pb::GetStatsRequest {}), "during"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    faults.fail_sync.store(false, Ordering::SeqCst);
    let err = api
        .get_stats(with_id(authed(&token, pb::GetStatsRequest {}), "after"))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unavailable,
        "stays closed: a retried fsync may have lost data"
    );

    // After a restart the log verifies; it holds the answered call and nothing half-written.
    let TestHub { dir, started } = hub;
    started.server.shutdown().await.unwrap();
    drop(started.audit);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hub = TestHub::start_in(dir).await;
    let records = all_records(&hub).await;
    assert!(records.contains_key("before"));
    assert!(!records.contains_key("during") && !records.contains_key("after"));
    let auditor = hub.token("audit", Role::Auditor);
    let v = AuditServiceClient::new(hub.channel().await)
        .verify_log(authed(&auditor, pb::VerifyLogRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{}", v.failure);
}

#[tokio::test]
async fn auditors_ask_their_own_questions_in_sql() {
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let auditor = hub.token("audit", Role::Auditor);
    let mut catalog = hub.catalog().await;
    for _ in 0..3 {
        catalog
            .get_stats(authed(&consumer, pb::GetStatsRequest {}))
            .await
            .unwrap();
    }
    catalog
        .get_stats(Request::new(pb::GetStatsRequest {}))
        .await
        .unwrap_err();
    let mut audit = AuditServiceClient::new(hub.channel().await);
    let q = |sql: &str| pb::QueryAuditRequest {
        sql: sql.into(),
        max_rows: 0,
    };
    let r = audit
        .query_sql(authed(
            &auditor,
            q("SELECT department, outcome, count(*) AS n FROM calls \
               WHERE method = 'CatalogService/GetStats' GROUP BY department, outcome ORDER BY department"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.columns, vec!["department", "outcome", "n"]);
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|row| row.values.iter().map(|v| v.value.clone()).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["".to_owned(), "unauthenticated".into(), "1".into()],
            vec!["civil-affairs".into(), "ok".into(), "3".into()]
        ]
    );

    for bad in [
        "CREATE TABLE x AS SELECT 1",
        "COPY (SELECT * FROM calls) TO '/tmp/leak.csv'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM audit_lines",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM '/etc/passwd'",
    ] {
        let err = audit.query_sql(authed(&auditor, q(bad))).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{bad}: {}",
            err.message()
        );
    }
    let err = audit
        .query_sql(authed(&consumer, q("SELECT 1")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
