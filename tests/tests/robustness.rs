//! Robustness: a corrupt or missing data file fails only its table with a clear status and no
//! internal detail; oversized messages are refused; the hub keeps serving.

use citybrain::hub::HubOptions;
use citybrain_proto::v1 as pb;
use citybrain_tests::{TestHub, authed};
use citybrain_types::Role;
use tonic::Code;

#[tokio::test]
async fn a_corrupt_file_fails_its_table_only() {
    let hub = TestHub::demo().await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;
    let data = |name: &str| pb::GetTableDataRequest { name: name.into() };
    api.get_table_data(authed(&token, data("population.residents")))
        .await
        .unwrap();

    // Damage the residents file while the hub runs, as a failed copy would.
    let file = hub
        .tables_dir()
        .join("population/residents/part-00000.parquet");
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 64..].fill(0xAB);
    std::fs::write(&file, &bytes).unwrap();

    let err = api
        .get_table_data(authed(&token, data("population.residents")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    assert!(
        err.message().contains("population.residents"),
        "{}",
        err.message()
    );
    assert!(err.message().contains("corrupt"), "{}", err.message());
    let dir = hub.data_dir().to_str().unwrap().to_owned();
    assert!(
        !err.message().contains(&dir) && !err.message().contains(".parquet"),
        "no paths: {}",
        err.message()
    );

    let t = api
        .get_table(authed(
            &token,
            pb::GetTableRequest {
                name: "population.residents".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(t.data_state, pb::DataState::Unavailable as i32);
    assert_eq!(t.records, 0);

    // Other tables and the figures keep working.
    api.get_table_data(authed(&token, data("legal.entities")))
        .await
        .unwrap();
    let stats = api
        .get_stats(authed(&token, pb::GetStatsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(stats.tables_unavailable, 1);
    assert_eq!(stats.tables_with_data, 5);

    // A dataset whose files are gone is a failed precondition naming the table.
    std::fs::remove_dir_all(hub.tables_dir().join("map/addresses")).unwrap();
    let err = api
        .get_table_data(authed(&token, data("map.addresses")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("map.addresses") && err.message().contains("no data files"));

    // A table without a dataset says so.
    let err = api
        .get_table_data(authed(&token, data("health.vaccinations")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn oversized_requests_are_refused_and_serving_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    citybrain::hub::prepare_demo(dir.path(), 300, None).unwrap();
    let mut opts = HubOptions::new(dir.path());
    opts.limits.max_request_bytes = 2048;
    let hub = TestHub::start_with(dir, &opts).await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;
    let big = pb::ListTablesRequest {
        text: "x".repeat(10_000),
        ..Default::default()
    };
    let err = api.list_tables(authed(&token, big)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());
    let ok = api
        .list_tables(authed(&token, pb::ListTablesRequest::default()))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().total, 18);
}
