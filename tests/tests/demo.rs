//! The demo start: realistic data in the catalog, headline figures from the data, health and
//! reflection for generic clients.

use citybrain::hub::embedded_manifests;
use citybrain_proto::v1 as pb;
use citybrain_tests::{TEST_PERSONS, TestHub, authed};
use citybrain_types::{Role, ShareType};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::collections::HashSet;
use std::path::Path;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

/// Rows of a dataset, read straight from the Parquet footers (independently of the hub).
fn rows_on_disk(root: &Path, dataset: &str) -> u64 {
    std::fs::read_dir(root.join(dataset))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            SerializedFileReader::new(std::fs::File::open(p).unwrap())
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows() as u64
        })
        .sum()
}

#[tokio::test]
async fn stats_are_counted_from_catalog_and_data() {
    let hub = TestHub::demo().await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;
    let stats = api
        .get_stats(authed(&token, pb::GetStatsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();

    let manifests = embedded_manifests().unwrap();
    let depts: HashSet<_> = manifests.iter().map(|m| m.provider_code.as_str()).collect();
    assert_eq!(stats.tables, manifests.len() as u64);
    assert_eq!(stats.source_departments, depts.len() as u64);
    let items: usize = manifests.iter().map(|m| m.columns.len()).sum();
    assert_eq!(stats.data_items, items as u64);

    let (mut all, mut shareable) = (0u64, 0u64);
    for m in &manifests {
        if let Some(ds) = &m.dataset {
            let n = rows_on_disk(&hub.tables_dir(), ds);
            all += n;
            if m.share_type != ShareType::NotShared {
                shareable += n;
            }
        }
    }
    assert!(all > TEST_PERSONS, "every generated table counts");
    assert_eq!(stats.records, all);
    assert!((stats.share_rate - shareable as f64 / all as f64).abs() < 1e-9);
    assert_eq!(stats.tables_with_data, 6);
    assert_eq!(stats.tables_unavailable, 0);
    assert_eq!(
        stats.calls, 0,
        "calls are counted from the audit log: none recorded yet"
    );

    // The residents table reports the generated count.
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
    assert_eq!(t.records, TEST_PERSONS);
    assert_eq!(t.data_state, pb::DataState::Available as i32);
    let data = api
        .get_table_data(authed(
            &token,
            pb::GetTableDataRequest {
                name: "population.residents".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(data.records, TEST_PERSONS);
    assert!(data.files >= 1 && data.bytes > 0);
    let again = api
        .get_stats(authed(&token, pb::GetStatsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert_eq!(again.calls, 3, "every earlier call was recorded");
}

#[tokio::test]
async fn health_and_reflection_answer_without_a_token() {
    let hub = TestHub::demo().await;
    let mut health = HealthClient::new(hub.channel().await);
    for service in [
        "",
        "citybrain.v1.CatalogService",
        "citybrain.v1.IdentityService",
    ] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
    }

    let mut refl = ServerReflectionClient::new(hub.channel().await);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: HashSet<_> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "citybrain.v1.CatalogService",
        "citybrain.v1.IdentityService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(want), "{want} in {names:?}");
    }
}
