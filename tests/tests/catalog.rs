//! Browsing and maintaining the catalog through the API: filters, paging, stewardship rules and
//! manifest validation.

use citybrain_proto::v1 as pb;
use citybrain_tests::{TestHub, authed};
use citybrain_types::Role;
use tonic::Code;

fn pension_spec() -> pb::TableSpec {
    pb::TableSpec {
        name: "hrss.pension_payments".into(),
        resource_code: "D14-00009".into(),
        title: "养老金发放信息".into(),
        title_en: "Pension payments".into(),
        provider: Some(pb::Department {
            code: "hrss".into(),
            name: "佛山市南海区人力资源和社会保障局".into(),
        }),
        r#abstract: "Monthly pension payments per retiree.".into(),
        library: "department".into(),
        key_column: "id_number".into(),
        update_cycle: "monthly".into(),
        share_type: pb::ShareType::Conditional.into(),
        share_condition: "For social assistance eligibility checks.".into(),
        columns: vec![
            pb::ColumnSpec {
                name: "id_number".into(),
                title: "公民身份号码".into(),
                data_type: "string".into(),
                share_type: pb::ShareType::Conditional.into(),
                sensitivity: "sensitive".into(),
                description: String::new(),
            },
            pb::ColumnSpec {
                name: "amount".into(),
                title: "发放金额".into(),
                data_type: "float64".into(),
                share_type: pb::ShareType::Conditional.into(),
                sensitivity: "personal".into(),
                description: String::new(),
            },
        ],
        ..Default::default()
    }
}

fn list_req() -> pb::ListTablesRequest {
    pb::ListTablesRequest::default()
}

#[tokio::test]
async fn list_filters_and_pages() {
    let hub = TestHub::demo().await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;

    let mut names = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = api
            .list_tables(authed(
                &token,
                pb::ListTablesRequest {
                    page_size: 5,
                    page_token: page_token.clone(),
                    ..list_req()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.total, 18);
        assert!(page.tables.len() <= 5);
        names.extend(page.tables.into_iter().map(|t| t.spec.unwrap().name));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(pages, 4);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "every table once, in name order");
    assert_eq!(names.len(), 18);

    let count = |req: pb::ListTablesRequest| {
        let mut api = api.clone();
        let token = token.clone();
        async move {
            api.list_tables(authed(&token, req)).await.map(|r| {
                r.into_inner()
                    .tables
                    .into_iter()
                    .map(|t| t.spec.unwrap().name)
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        count(pb::ListTablesRequest {
            department: "market-regulation".into(),
            ..list_req()
        })
        .await
        .unwrap(),
        vec!["legal.entities", "market.business_licences"]
    );
    assert_eq!(
        count(pb::ListTablesRequest {
            share_type: pb::ShareType::NotShared.into(),
            ..list_req()
        })
        .await
        .unwrap(),
        vec![
            "emergency.hazardous_chemical_sites",
            "justice.community_corrections"
        ]
    );
    assert_eq!(
        count(pb::ListTablesRequest {
            library: "population".into(),
            ..list_req()
        })
        .await
        .unwrap(),
        vec!["population.residents"]
    );
    let licences = count(pb::ListTablesRequest {
        text: "LICENCE".into(),
        ..list_req()
    })
    .await
    .unwrap();
    assert!(
        licences.contains(&"gov.e_licences".to_owned()),
        "{licences:?}"
    );
    assert!(licences.contains(&"market.business_licences".to_owned()));
    let zh = count(pb::ListTablesRequest {
        text: "电子证照".into(),
        ..list_req()
    })
    .await
    .unwrap();
    assert!(zh.contains(&"gov.e_licences".to_owned()), "{zh:?}");

    for (req, field) in [
        (
            pb::ListTablesRequest {
                page_size: 501,
                ..list_req()
            },
            "page_size",
        ),
        (
            pb::ListTablesRequest {
                page_token: "not-a-token".into(),
                ..list_req()
            },
            "page token",
        ),
        (
            pb::ListTablesRequest {
                library: "people".into(),
                ..list_req()
            },
            "library",
        ),
        (
            pb::ListTablesRequest {
                share_type: 9,
                ..list_req()
            },
            "share_type",
        ),
    ] {
        let err = count(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
}

#[tokio::test]
async fn get_names_exact_tables() {
    let hub = TestHub::demo().await;
    let token = hub.token("civil-affairs", Role::Consumer);
    let mut api = hub.catalog().await;
    let get = |name: &str| pb::GetTableRequest { name: name.into() };
    let t = api
        .get_table(authed(&token, get("legal.entities")))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    let spec = t.spec.unwrap();
    assert_eq!(spec.resource_code, "A02-00001");
    assert_eq!(spec.key_column, "credit_code");
    let rep = spec
        .columns
        .iter()
        .find(|c| c.name == "legal_rep_id")
        .unwrap();
    assert_eq!(
        rep.share_type,
        pb::ShareType::Conditional as i32,
        "column share type kept"
    );
    let none = api
        .get_table(authed(&token, get("civil.marriage_registrations")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.table.unwrap().data_state, pb::DataState::None as i32);

    let err = api
        .get_table(authed(&token, get("population.nobody")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("population.nobody"));
    // A different letter case is not silently matched to the table.
    let err = api
        .get_table(authed(&token, get("Population.Residents")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn stewards_maintain_only_their_own_tables() {
    let hub = TestHub::demo().await;
    let hrss = hub.token("hrss", Role::Steward);
    let police = hub.token("public-security", Role::Steward);
    let consumer = hub.token("hrss", Role::Consumer);
    let admin = hub.token("data-bureau", Role::Admin);
    let mut api = hub.catalog().await;
    let register = |spec: pb::TableSpec| pb::RegisterTableRequest { spec: Some(spec) };

    let err = api
        .register_table(authed(&consumer, register(pension_spec())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = api
        .register_table(authed(&police, register(pension_spec())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("hrss"), "{}", err.message());

    let t = api
        .register_table(authed(&hrss, register(pension_spec())))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(t.version, 1);
    assert_eq!(t.status, "active");
    let err = api
        .register_table(authed(&hrss, register(pension_spec())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Update: identical is a no-op; a change bumps the version.
    let update = |spec: pb::TableSpec| pb::UpdateTableRequest { spec: Some(spec) };
    let same = api
        .update_table(authed(&hrss, update(pension_spec())))
        .await
        .unwrap()
        .into_inner();
    assert!(!same.changed);
    assert_eq!(same.table.unwrap().version, 1);
    let mut changed = pension_spec();
    changed.title_en = "Pension payments (monthly)".into();
    let r = api
        .update_table(authed(&hrss, update(changed.clone())))
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed);
    assert_eq!(r.table.unwrap().version, 2);
    // Another department's steward can neither change it nor take it over.
    let err = api
        .update_table(authed(&police, update(changed.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut takeover = changed.clone();
    takeover.provider = Some(pb::Department {
        code: "public-security".into(),
        name: "x".into(),
    });
    let err = api
        .update_table(authed(&police, update(takeover)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A steward of one department is refused on another's table, which stays as it was.
    let dep = |name: &str| pb::DeprecateTableRequest {
        name: name.into(),
        reason: "replaced".into(),
    };
    let err = api
        .deprecate_table(authed(&police, dep("legal.entities")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let entities = api
        .get_table(authed(
            &police,
            pb::GetTableRequest {
                name: "legal.entities".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(entities.status, "active");
    assert_eq!(entities.version, 1);

    let err = api
        .deprecate_table(authed(
            &hrss,
            pb::DeprecateTableRequest {
                name: "hrss.pension_payments".into(),
                reason: " ".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let t = api
        .deprecate_table(authed(&hrss, dep("hrss.pension_payments")))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(t.status, "deprecated");
    assert_eq!(t.deprecation_reason, "replaced");
    let listed = |include_deprecated| pb::ListTablesRequest {
        department: "hrss".into(),
        include_deprecated,
        ..Default::default()
    };
    assert_eq!(
        api.list_tables(authed(&hrss, listed(false)))
            .await
            .unwrap()
            .into_inner()
            .total,
        1
    );
    assert_eq!(
        api.list_tables(authed(&hrss, listed(true)))
            .await
            .unwrap()
            .into_inner()
            .total,
        2
    );

    // An admin may deprecate any table.
    let t = api
        .deprecate_table(authed(&admin, dep("water.supply_accounts")))
        .await
        .unwrap()
        .into_inner()
        .table
        .unwrap();
    assert_eq!(t.status, "deprecated");
}

#[tokio::test]
async fn bad_specs_are_refused_by_field_and_nothing_is_written() {
    let hub = TestHub::demo().await;
    let hrss = hub.token("hrss", Role::Steward);
    let mut api = hub.catalog().await;
    let mut no_condition = pension_spec();
    no_condition.share_condition.clear();
    let mut too_open = pension_spec();
    too_open.columns[1].share_type = pb::ShareType::Unconditional.into();
    let mut bad_type = pension_spec();
    bad_type.columns[0].data_type = "varchar".into();
    let mut bad_key = pension_spec();
    bad_key.key_column = "idno".into();
    let mut bad_name = pension_spec();
    bad_name.name = "HRSS.Pension".into();
    let mut dup_code = pension_spec();
    dup_code.resource_code = "A01-00001".into();
    for (spec, field, code) in [
        (no_condition, "share_condition", Code::InvalidArgument),
        (too_open, "columns[1].share_type", Code::InvalidArgument),
        (bad_type, "spec.columns[0].data_type", Code::InvalidArgument),
        (bad_key, "key_column", Code::InvalidArgument),
        (bad_name, "'name'", Code::InvalidArgument),
        (dup_code, "A01-00001", Code::AlreadyExists),
    ] {
        let err = api
            .register_table(authed(&hrss, pb::RegisterTableRequest { spec: Some(spec) }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{}", err.message());
        assert!(
            err.message().contains(field),
            "'{}' should name {field}",
            err.message()
        );
    }
    let err = api
        .get_table(authed(
            &hrss,
            pb::GetTableRequest {
                name: "hrss.pension_payments".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "no refused spec was applied");
    let err = api
        .register_table(authed(&hrss, pb::RegisterTableRequest { spec: None }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
