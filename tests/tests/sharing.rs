//! The governed exchange end to end: apply, approve with masks and a row filter, look up,
//! verify, refuse, revoke; answers equal a reference computed from the Parquet files directly.

use arrow::array::AsArray;
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::audit_service_client::AuditServiceClient;
use citybrain_proto::v1::data_service_client::DataServiceClient;
use citybrain_proto::v1::sharing_service_client::SharingServiceClient;
use citybrain_tests::{TestHub, authed, read_all, residents};
use citybrain_types::Role;
use tonic::Code;

const PURPOSE: &str = "最低生活保障资格审核";

fn apply_req(table: &str, columns: &[&str], mode: pb::Mode) -> pb::ApplyRequest {
    pb::ApplyRequest {
        table: table.into(),
        columns: columns.iter().map(|c| (*c).into()).collect(),
        purpose: PURPOSE.into(),
        business_system: "民政救助管理系统".into(),
        service_matter: "低保申请审核".into(),
        days: 30,
        mode: mode.into(),
    }
}

fn lookup(table: &str, key: &str, purpose: &str) -> pb::LookupRequest {
    pb::LookupRequest {
        table: table.into(),
        key: key.into(),
        purpose: purpose.into(),
    }
}

#[tokio::test]
async fn apply_approve_lookup_verify_revoke() {
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let steward = hub.token("public-security", Role::Steward);
    let mut sharing = SharingServiceClient::new(hub.channel().await);
    let mut data = DataServiceClient::new(hub.channel().await);

    // Deny by default: no grant, no data.
    let all = residents(&hub);
    let inside = all.iter().find(|r| r.town == "桂城街道").unwrap();
    let outside = all.iter().find(|r| r.town != "桂城街道").unwrap();
    let err = data
        .lookup(authed(
            &consumer,
            lookup("population.residents", &inside.id, PURPOSE),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(!err.message().contains(&inside.name));

    let app = sharing
        .apply(authed(
            &consumer,
            apply_req(
                "population.residents",
                &["id_number", "name", "birth_date", "town", "phone"],
                pb::Mode::Read,
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let app = app.application.unwrap();
    assert_eq!(app.status, "pending");
    let pending = sharing
        .list_applications(authed(
            &steward,
            pb::ListApplicationsRequest {
                pending_for_my_department: true,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.applications.len(), 1);

    // A bad row filter refuses the whole approval.
    let mut decide = pb::DecideRequest {
        application_id: app.id.clone(),
        approve: true,
        reason: "低保审核需要".into(),
        columns: vec![
            "id_number".into(),
            "name".into(),
            "birth_date".into(),
            "town".into(),
        ],
        masks: vec![
            pb::Mask {
                column: "id_number".into(),
                kind: "keep".into(),
                keep_first: 6,
                keep_last: 4,
            },
            pb::Mask {
                column: "name".into(),
                kind: "first_char".into(),
                ..Default::default()
            },
        ],
        row_filter: "twon = '桂城街道'".into(),
        ..Default::default()
    };
    let err = sharing
        .decide(authed(&steward, decide.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("row_filter"), "{}", err.message());
    decide.row_filter = "town = '桂城街道'".into();
    let grant = sharing
        .decide(authed(&steward, decide))
        .await
        .unwrap()
        .into_inner()
        .grant
        .unwrap();

    // Lookup: the reference row, filtered and masked as granted; the phone was narrowed away.
    let got = data
        .lookup(authed(
            &consumer,
            lookup("population.residents", &inside.id, PURPOSE),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.columns, vec!["id_number", "name", "birth_date", "town"]);
    assert_eq!(got.rows.len(), 1);
    let v: Vec<&str> = got.rows[0]
        .values
        .iter()
        .map(|v| v.value.as_str())
        .collect();
    let masked_id = format!("{}********{}", &inside.id[..6], &inside.id[14..]);
    let first: String = inside.name.chars().take(1).collect();
    let masked_name = format!("{first}{}", "*".repeat(inside.name.chars().count() - 1));
    assert_eq!(
        v,
        vec![
            masked_id.as_str(),
            masked_name.as_str(),
            inside.birth.as_str(),
            "桂城街道"
        ]
    );
    let text = format!("{got:?}");
    assert!(
        !text.contains(&inside.id) && !text.contains(&inside.name),
        "raw values never leave"
    );

    // Outside the row filter the row does not exist for this consumer.
    let hidden = data
        .lookup(authed(
            &consumer,
            lookup("population.residents", &outside.id, PURPOSE),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(hidden.rows.is_empty());

    // Verify: per-field answers, no values.
    let verify = |key: &str, claims: Vec<(&str, &str)>| pb::VerifyRequest {
        table: "population.residents".into(),
        key: key.into(),
        purpose: PURPOSE.into(),
        claims: claims
            .into_iter()
            .map(|(c, v)| pb::Claim {
                column: c.into(),
                value: v.into(),
            })
            .collect(),
    };
    let r = data
        .verify(authed(
            &consumer,
            verify(
                &inside.id,
                vec![
                    ("name", &inside.name),
                    ("birth_date", &inside.birth),
                    ("name", "查无此人"),
                ],
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.key_found);
    let m: Vec<i32> = r.results.iter().map(|c| c.r#match).collect();
    assert_eq!(
        m,
        vec![
            pb::Match::Yes as i32,
            pb::Match::Yes as i32,
            pb::Match::No as i32
        ]
    );
    let r = data
        .verify(authed(
            &consumer,
            verify(&outside.id, vec![("name", &outside.name)]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.key_found, "a filtered-out row is 'no such key'");
    assert_eq!(r.results[0].r#match, pb::Match::No as i32);
    let err = data
        .verify(authed(
            &consumer,
            verify(&inside.id, vec![("phone", "13800000000")]),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "ungranted columns cannot be probed"
    );

    // Refusals: malformed key (before any data), another purpose, another department.
    let mut bad = inside.id.clone().into_bytes();
    bad[17] = if bad[17] == b'0' { b'1' } else { b'0' };
    let err = data
        .lookup(authed(
            &consumer,
            lookup(
                "population.residents",
                std::str::from_utf8(&bad).unwrap(),
                PURPOSE,
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("check character"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains(&inside.id[..14]));
    let err = data
        .lookup(authed(
            &consumer,
            lookup("population.residents", &inside.id, "招商引资"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let health = hub.token("health", Role::Consumer);
    let err = data
        .lookup(authed(
            &health,
            lookup("population.residents", &inside.id, PURPOSE),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The lookup is audited with grant, purpose, columns and a keyed hash of the key.
    let auditor = hub.token("audit", Role::Auditor);
    let found = AuditServiceClient::new(hub.channel().await)
        .search_calls(authed(
            &auditor,
            pb::SearchCallsRequest {
                method: "DataService/Lookup".into(),
                key: inside.id.clone(),
                outcome: "ok".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.calls.len(), 1, "who looked up this person");
    let rec = &found.calls[0];
    assert_eq!(rec.grant_id, grant.id);
    assert_eq!(rec.purpose, PURPOSE);
    assert_eq!(rec.columns, vec!["id_number", "name", "birth_date", "town"]);
    assert!(!format!("{rec:?}").contains(&inside.id));

    // Revoked: the next call is refused.
    sharing
        .revoke(authed(
            &steward,
            pb::RevokeRequest {
                grant_id: grant.id.clone(),
                reason: "复核".into(),
            },
        ))
        .await
        .unwrap();
    let err = data
        .lookup(authed(
            &consumer,
            lookup("population.residents", &inside.id, PURPOSE),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("revoked"));
}

#[tokio::test]
async fn unconditional_granted_at_once_not_shared_refused_quota_enforced() {
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let mut sharing = SharingServiceClient::new(hub.channel().await);
    let mut data = DataServiceClient::new(hub.channel().await);

    let r = sharing
        .apply(authed(
            &consumer,
            apply_req(
                "legal.entities",
                &["credit_code", "name", "status"],
                pb::Mode::Read,
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.application.unwrap().status, "approved");
    assert!(r.grant.is_some());
    let firms = read_all(&hub.tables_dir().join("legal/entities"));
    let b = &firms[0];
    let (code, name) = (
        b.column_by_name("credit_code")
            .unwrap()
            .as_string::<i32>()
            .value(5)
            .to_owned(),
        b.column_by_name("name")
            .unwrap()
            .as_string::<i32>()
            .value(5)
            .to_owned(),
    );
    let got = data
        .lookup(authed(&consumer, lookup("legal.entities", &code, PURPOSE)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.rows.len(), 1);
    assert_eq!(got.rows[0].values[0].value, code);
    assert_eq!(got.rows[0].values[1].value, name);
    assert_eq!(got.rows[0].values.len(), 3);

    let err = sharing
        .apply(authed(
            &consumer,
            apply_req(
                "hrss.social_insurance",
                &["id_number", "monthly_base"],
                pb::Mode::Read,
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("monthly_base") && err.message().contains("not shared"),
        "{}",
        err.message()
    );

    // A verify grant with a quota of two calls a day.
    let health = hub.token("health", Role::Consumer);
    let app = sharing
        .apply(authed(
            &health,
            apply_req(
                "population.residents",
                &["name", "birth_date"],
                pb::Mode::Verify,
            ),
        ))
        .await
        .unwrap()
        .into_inner()
        .application
        .unwrap();
    let steward = hub.token("public-security", Role::Steward);
    sharing
        .decide(authed(
            &steward,
            pb::DecideRequest {
                application_id: app.id,
                approve: true,
                max_calls_per_day: 2,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let someone = residents(&hub).remove(0);
    let verify = pb::VerifyRequest {
        table: "population.residents".into(),
        key: someone.id.clone(),
        purpose: PURPOSE.into(),
        claims: vec![pb::Claim {
            column: "name".into(),
            value: someone.name.clone(),
        }],
    };
    let err = data
        .lookup(authed(
            &health,
            lookup("population.residents", &someone.id, PURPOSE),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::PermissionDenied,
        "a verify grant opens no rows"
    );
    for _ in 0..2 {
        let r = data
            .verify(authed(&health, verify.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.results[0].r#match, pb::Match::Yes as i32);
    }
    let err = data
        .verify(authed(&health, verify.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
}
