//! The sharing workflow and the compiled policy.

use arrow::array::{AsArray, Date32Array, RecordBatch, StringArray};
use citybrain_catalog::{Catalog, load_dir};
use citybrain_governance::{
    AppStatus, ApplyRequest, Decision, Error, Governance, Mask, Mode, Policy,
};
use std::path::Path;
use std::sync::Arc;

fn setup() -> (tempfile::TempDir, Governance) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("catalog.db");
    let catalog = Arc::new(Catalog::open(&db).unwrap());
    // Read when the test runs (cargo sets it then too): a target directory shared between
    // checkouts may hold this binary built in another.
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let manifests = load_dir(&Path::new(&crate_dir).join("../../catalog")).unwrap();
    catalog.apply(&manifests).unwrap();
    let gov = Governance::open(&db, catalog).unwrap();
    (dir, gov)
}

fn req(table: &str, columns: &[&str], mode: Mode) -> ApplyRequest {
    ApplyRequest {
        table: table.into(),
        columns: columns.iter().map(|c| (*c).into()).collect(),
        purpose: "最低生活保障资格审核".into(),
        business_system: "民政救助管理系统".into(),
        service_matter: "低保申请".into(),
        days: 90,
        mode,
    }
}

fn approve() -> Decision {
    Decision {
        approve: true,
        reason: "ok".into(),
        columns: vec![],
        masks: vec![],
        row_filter: None,
        days: 0,
        max_calls_per_day: 0,
        max_rows_per_day: 0,
        min_group_size: 0,
    }
}

#[test]
fn share_types_decide_what_happens() {
    let (_d, gov) = setup();
    let (app, grant) = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "legal.entities",
                &["credit_code", "name", "status"],
                Mode::Read,
            ),
        )
        .unwrap();
    assert_eq!(
        app.status,
        AppStatus::Approved,
        "unconditional columns are granted at once"
    );
    assert!(grant.is_some());

    let (app, grant) = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "legal.entities",
                &["credit_code", "legal_rep_id"],
                Mode::Read,
            ),
        )
        .unwrap();
    assert_eq!(
        app.status,
        AppStatus::Pending,
        "a conditional column waits for the steward"
    );
    assert!(grant.is_none());

    let err = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "hrss.social_insurance",
                &["id_number", "monthly_base"],
                Mode::Read,
            ),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("monthly_base") && m.contains("社会保险法")),
        "{err}"
    );
    let err = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "justice.community_corrections",
                &["id_number"],
                Mode::Verify,
            ),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("not shared") && m.contains("社区矫正法")),
        "{err}"
    );
    let err = gov
        .apply(
            "civil-affairs",
            "u1",
            req("legal.entities", &["credit_code", "ceo"], Mode::Read),
        )
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }));
}

#[test]
fn stewards_approve_narrowed_masked_filtered_or_reject() {
    let (_d, gov) = setup();
    let (app, _) = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "population.residents",
                &["id_number", "name", "birth_date", "phone"],
                Mode::Read,
            ),
        )
        .unwrap();
    assert_eq!(gov.pending_for("public-security").unwrap().len(), 1);
    assert!(gov.pending_for("hrss").unwrap().is_empty());

    let err = gov.decide("hrss", "s", &app.id, approve()).unwrap_err();
    assert!(
        matches!(err, Error::Denied(_)),
        "only the provider's stewards decide"
    );

    for (filter, field) in [
        ("nope = 1", "row_filter"),
        ("town +", "row_filter"),
        ("birth_date", "row_filter"),
    ] {
        let d = Decision {
            row_filter: Some(filter.into()),
            ..approve()
        };
        let err = gov.decide("public-security", "s", &app.id, d).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { field: f, .. } if f == field),
            "{filter}: {err}"
        );
    }
    let d = Decision {
        columns: vec!["id_number".into(), "ethnicity".into()],
        ..approve()
    };
    assert!(
        matches!(
            gov.decide("public-security", "s", &app.id, d),
            Err(Error::Invalid { .. })
        ),
        "cannot widen"
    );
    assert_eq!(
        gov.pending_for("public-security").unwrap().len(),
        1,
        "nothing applied half"
    );

    let d = Decision {
        columns: vec!["id_number".into(), "name".into(), "birth_date".into()],
        masks: vec![
            ("id_number".into(), Mask::Keep { first: 6, last: 4 }),
            ("name".into(), Mask::FirstChar),
            ("birth_date".into(), Mask::Year),
        ],
        row_filter: Some("town = '桂城街道'".into()),
        max_calls_per_day: 1000,
        ..approve()
    };
    let (app, grant) = gov.decide("public-security", "s", &app.id, d).unwrap();
    assert_eq!(app.status, AppStatus::Approved);
    let grant = grant.unwrap();
    assert_eq!(grant.terms.columns.len(), 3);
    assert_eq!(gov.grants_of("civil-affairs").unwrap().len(), 1);
    assert_eq!(gov.grants_on("public-security").unwrap().len(), 1);

    // The grant works for its purpose only; revoked, it stops working.
    let g = gov
        .usable_grant(
            "civil-affairs",
            "population.residents",
            "最低生活保障资格审核",
        )
        .unwrap();
    assert_eq!(g.id, grant.id);
    let err = gov
        .usable_grant("civil-affairs", "population.residents", "招商引资")
        .unwrap_err();
    assert!(err.to_string().contains("is for purpose"), "{err}");
    let err = gov
        .usable_grant("health", "population.residents", "最低生活保障资格审核")
        .unwrap_err();
    assert!(err.to_string().contains("holds no grant"), "{err}");
    assert!(matches!(
        gov.revoke("hrss", &grant.id, "x"),
        Err(Error::Denied(_))
    ));
    gov.revoke("public-security", &grant.id, "audit finding 2026-17")
        .unwrap();
    let err = gov
        .usable_grant(
            "civil-affairs",
            "population.residents",
            "最低生活保障资格审核",
        )
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    let (app2, _) = gov
        .apply(
            "civil-affairs",
            "u1",
            req("population.residents", &["name"], Mode::Verify),
        )
        .unwrap();
    let d = Decision {
        approve: false,
        reason: String::new(),
        ..approve()
    };
    assert!(
        matches!(
            gov.decide("public-security", "s", &app2.id, d),
            Err(Error::Invalid { .. })
        ),
        "reason needed"
    );
    let d = Decision {
        approve: false,
        reason: "no legal basis stated".into(),
        ..approve()
    };
    let (app2, grant2) = gov.decide("public-security", "s", &app2.id, d).unwrap();
    assert_eq!(app2.status, AppStatus::Rejected);
    assert!(grant2.is_none());
}

#[test]
fn the_policy_filters_first_then_masks() {
    let (_d, gov) = setup();
    let (app, _) = gov
        .apply(
            "civil-affairs",
            "u1",
            req(
                "population.residents",
                &["id_number", "name", "birth_date"],
                Mode::Read,
            ),
        )
        .unwrap();
    let d = Decision {
        masks: vec![
            ("id_number".into(), Mask::Keep { first: 6, last: 4 }),
            ("name".into(), Mask::FirstChar),
        ],
        row_filter: Some("town = '桂城街道' AND birth_date < DATE '2000-01-01'".into()),
        ..approve()
    };
    let (_, grant) = gov.decide("public-security", "s", &app.id, d).unwrap();
    let m = gov.table("population.residents").unwrap();
    let policy = Policy::compile(grant.unwrap(), &m, b"secret").unwrap();
    let schema = policy.table_schema().clone();
    let n = schema.fields().len();
    let mut cols: Vec<arrow::array::ArrayRef> = Vec::new();
    for f in schema.fields() {
        cols.push(match f.name().as_str() {
            "id_number" => Arc::new(StringArray::from(vec![
                "440605198001010011",
                "440605199001010021",
                "440605201001010031",
            ])),
            "name" => Arc::new(StringArray::from(vec!["陈大文", "李小红", "王小明"])),
            "birth_date" => Arc::new(Date32Array::from(vec![3652, 7305, 14610])),
            "town" => Arc::new(StringArray::from(vec!["桂城街道", "大沥镇", "桂城街道"])),
            _ => Arc::new(StringArray::from(vec!["x", "x", "x"])),
        });
    }
    assert_eq!(cols.len(), n);
    let batch = RecordBatch::try_new(schema, cols).unwrap();
    let out = policy.apply(&batch).unwrap();
    assert_eq!(
        out.num_rows(),
        1,
        "only the Guicheng resident born before 2000"
    );
    assert_eq!(
        out.column(0).as_string::<i32>().value(0),
        "440605********0011"
    );
    assert_eq!(out.column(1).as_string::<i32>().value(0), "陈**");
    assert_eq!(
        out.schema().fields().len(),
        3,
        "ungranted columns are not there at all"
    );
}

#[test]
fn a_remembered_grant_lasts_only_while_the_database_is_unchanged() {
    let (dir, gov) = setup();
    let purpose = "最低生活保障资格审核";
    let cols = ["credit_code", "name", "status"];
    let grant_now = |gov: &Governance| {
        gov.apply(
            "civil-affairs",
            "u1",
            req("legal.entities", &cols, Mode::Read),
        )
        .unwrap()
        .1
        .expect("an unconditional table is granted at once")
    };
    let remembered = || gov.remembered_table_and_grant("civil-affairs", "legal.entities", purpose);
    let read = || {
        gov.table_and_grant("civil-affairs", "legal.entities", purpose)
            .unwrap()
            .1
    };

    let grant = grant_now(&gov);
    assert!(remembered().is_none(), "nothing read yet");
    assert_eq!(read().unwrap().id, grant.id);
    assert_eq!(remembered().unwrap().1.id, grant.id);

    // Another process revokes (its own connections to the same file): seen at once.
    let db = dir.path().join("catalog.db");
    let other = Governance::open(&db, Arc::new(Catalog::open(&db).unwrap())).unwrap();
    other
        .revoke("market-regulation", &grant.id, "audit finding")
        .unwrap();
    assert!(
        remembered().is_none(),
        "a revocation elsewhere is seen at once"
    );
    assert!(matches!(read(), Err(Error::Denied(_))));

    // A revocation through this hub's own connection.
    let grant = grant_now(&gov);
    assert_eq!(read().unwrap().id, grant.id);
    assert!(remembered().is_some());
    gov.revoke("market-regulation", &grant.id, "no longer needed")
        .unwrap();
    assert!(remembered().is_none(), "a revocation here is seen at once");

    // A catalog change (the table deprecated by its steward).
    let grant = grant_now(&gov);
    assert_eq!(read().unwrap().id, grant.id);
    assert!(remembered().is_some());
    Catalog::open(&db)
        .unwrap()
        .deprecate("legal.entities", "replaced")
        .unwrap();
    assert!(remembered().is_none());
    assert!(matches!(
        gov.table_and_grant("civil-affairs", "legal.entities", purpose),
        Err(Error::Conflict(_))
    ));
}

#[test]
fn a_remembered_grant_is_answered_while_other_calls_read_the_database() {
    let (_dir, gov) = setup();
    let purpose = "最低生活保障资格审核";
    gov.apply(
        "civil-affairs",
        "u1",
        req("legal.entities", &["credit_code", "name"], Mode::Read),
    )
    .unwrap()
    .1
    .expect("an unconditional table is granted at once");
    let read = |gov: &Governance| {
        gov.table_and_grant("civil-affairs", "legal.entities", purpose)
            .unwrap()
            .1
            .unwrap()
    };
    let grant = read(&gov);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Other calls keep the database connections busy reading (a cold grant, a catalog
        // answer), as they do under load.
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = gov.usable_grant("civil-affairs", "legal.entities", purpose);
                let _ = gov.table("legal.entities");
            }
        });
        // Stops the reader however this thread leaves the scope (a panic included).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stopping = Stop(&stop);
        let answers: Vec<_> = (0..20_000)
            .map(|_| gov.remembered_table_and_grant("civil-affairs", "legal.entities", purpose))
            .collect();
        drop(stopping);
        let missed = answers
            .iter()
            .filter(|a| a.as_ref().map(|(_, g)| &g.id) != Some(&grant.id))
            .count();
        assert_eq!(
            missed, 0,
            "a busy connection must not send a remembered call back to the database"
        );
    });
}
