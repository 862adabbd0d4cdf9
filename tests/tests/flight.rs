//! Arrow Flight end to end: governed SQL over Flight SQL and batch matching over DoExchange,
//! against the real server, compared with references computed from the Parquet files with the
//! grant applied by hand, and a set of bypass attempts that must return no more than the
//! reference or be refused.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetTables, CommandStatementQuery, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, Ticket};
use citybrain::hub::{HubOptions, prepare_demo};
use citybrain_gateway::{PURPOSE_HEADER, SqlLimits};
use citybrain_proto::v1 as pb;
use citybrain_tests::{Resident, TestHub, authed, read_all, residents};
use citybrain_types::Role;
use futures::TryStreamExt;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const PURPOSE: &str = "企业法定代表人身份核查";
const STATS: &str = "人口分布统计";
const TOWN: &str = "桂城街道";

/// (credit code, legal representative's ID number)
fn entities(hub: &TestHub) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in read_all(&hub.tables_dir().join("legal/entities")) {
        let codes = b.column_by_name("credit_code").unwrap().as_string::<i32>();
        let reps = b.column_by_name("legal_rep_id").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((codes.value(i).into(), reps.value(i).into()));
        }
    }
    out
}

fn first_char(s: &str) -> String {
    let mut c = s.chars();
    let f = c.next().unwrap();
    std::iter::once(f).chain(c.map(|_| '*')).collect()
}

fn keep(s: &str, first: usize, last: usize) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i < first || i >= n - last { c } else { '*' })
        .collect()
}

/// The consumer's view of a resident under the read grant.
fn granted_row(r: &Resident) -> Vec<String> {
    vec![
        r.id.clone(),
        first_char(&r.name),
        r.birth[..4].to_owned(),
        r.town.clone(),
        keep(&r.phone, 3, 4),
    ]
}

fn pct(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn flight_request<T>(msg: T, token: &str, purpose: Option<&str>) -> Request<T> {
    let mut req = authed(token, msg);
    if let Some(p) = purpose {
        req.metadata_mut()
            .insert(PURPOSE_HEADER, pct(p).parse().unwrap());
    }
    req
}

/// Every cell of an answer as text, row by row.
fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<ArrayRef> = b
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                cols.iter()
                    .map(|c| {
                        let s = c.as_string::<i32>();
                        if s.is_null(r) {
                            "NULL".into()
                        } else {
                            s.value(r).to_owned()
                        }
                    })
                    .collect(),
            );
        }
    }
    out
}

struct Sql {
    channel: Channel,
    token: String,
    purpose: Option<String>,
}

impl Sql {
    async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>, Status> {
        let mut c = FlightServiceClient::new(self.channel.clone());
        let cmd = CommandStatementQuery {
            query: sql.into(),
            transaction_id: None,
        };
        let desc = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let p = self.purpose.as_deref();
        let info = c
            .get_flight_info(flight_request(desc, &self.token, p))
            .await?
            .into_inner();
        let ticket: Ticket = info.endpoint[0].ticket.clone().unwrap();
        let stream = c
            .do_get(flight_request(ticket, &self.token, p))
            .await?
            .into_inner();
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
            .try_collect()
            .await
            .map_err(|e| Status::internal(e.to_string()))
    }

    async fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        rows_of(&self.run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}")))
    }

    async fn count(&self, sql: &str) -> i64 {
        self.rows(sql).await[0][0].parse().unwrap()
    }

    async fn refused(&self, sql: &str) -> Status {
        match self.run(sql).await {
            Ok(b) => panic!("{sql} answered {:?}", rows_of(&b)),
            Err(s) => s,
        }
    }
}

/// Residents (read, masked, row-filtered) and legal entities (read) for PURPOSE.
async fn grant_read(hub: &TestHub) {
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let apply = |table: &str, cols: &[&str]| pb::ApplyRequest {
        table: table.into(),
        columns: cols.iter().map(|c| (*c).into()).collect(),
        purpose: PURPOSE.into(),
        business_system: "企业登记协查系统".into(),
        service_matter: "法定代表人身份核查".into(),
        days: 30,
        mode: pb::Mode::Read.into(),
    };
    let mask = |column: &str, kind: &str, first: u32, last: u32| pb::Mask {
        column: column.into(),
        kind: kind.into(),
        keep_first: first,
        keep_last: last,
    };
    hub.apply_and_decide(
        &consumer,
        apply(
            "population.residents",
            &["id_number", "name", "birth_date", "town", "phone"],
        ),
        "public-security",
        pb::DecideRequest {
            approve: true,
            reason: "协查需要".into(),
            masks: vec![
                mask("name", "first_char", 0, 0),
                mask("birth_date", "year", 0, 0),
                mask("phone", "keep", 3, 4),
            ],
            row_filter: format!("town = '{TOWN}'"),
            ..Default::default()
        },
    )
    .await;
    hub.apply_and_decide(
        &consumer,
        apply(
            "legal.entities",
            &["credit_code", "name", "legal_rep_id", "town", "status"],
        ),
        "market-regulation",
        pb::DecideRequest {
            approve: true,
            reason: "协查需要".into(),
            ..Default::default()
        },
    )
    .await;
}

/// Residents by town, gender and birth date, aggregate only, groups of at least 20 people.
async fn grant_aggregate(hub: &TestHub) {
    hub.apply_and_decide(
        &hub.token("civil-affairs", Role::Consumer),
        pb::ApplyRequest {
            table: "population.residents".into(),
            columns: vec!["town".into(), "gender".into(), "birth_date".into()],
            purpose: STATS.into(),
            business_system: "民政统计系统".into(),
            service_matter: "人口分布统计".into(),
            days: 30,
            mode: pb::Mode::Aggregate.into(),
        },
        "public-security",
        pb::DecideRequest {
            approve: true,
            reason: "统计需要".into(),
            min_group_size: 20,
            ..Default::default()
        },
    )
    .await;
}

/// No raw value of a hidden column, a masked column or a hidden row appears in `text`.
fn assert_no_leak(text: &str, all: &[Resident]) {
    for r in all {
        if r.name.chars().count() >= 2 {
            assert!(
                !text.contains(&r.name),
                "raw name {} leaked: {text}",
                r.name
            );
        }
        assert!(!text.contains(&r.phone), "raw phone leaked: {text}");
        if r.ethnicity.chars().count() >= 2 {
            assert!(!text.contains(&r.ethnicity), "ethnicity leaked: {text}");
        }
        if r.town != TOWN {
            assert!(!text.contains(&r.id), "hidden row's id leaked: {text}");
        }
        assert!(!text.contains(&r.birth), "raw birth date leaked: {text}");
    }
}

#[tokio::test]
async fn governed_sql_equals_reference_and_resists_bypass() {
    let hub = TestHub::demo().await;
    grant_read(&hub).await;
    let all = residents(&hub);
    let visible: Vec<&Resident> = all.iter().filter(|r| r.town == TOWN).collect();
    let hidden = all.iter().find(|r| r.town != TOWN).unwrap();
    let n = visible.len() as i64;
    assert!(n > 10 && (n as usize) < all.len());
    let sql = Sql {
        channel: hub.channel().await,
        token: hub.token("civil-affairs", Role::Consumer),
        purpose: Some(PURPOSE.into()),
    };
    let mut reference: Vec<Vec<String>> = visible.iter().map(|r| granted_row(r)).collect();
    reference.sort();
    let mut everything = String::new();

    // The whole granted view, by name and by *: the reference, nothing more.
    let got = sql
        .rows("SELECT id_number, name, birth_date, town, phone FROM population.residents ORDER BY id_number")
        .await;
    assert_eq!(got, reference);
    let star = sql
        .run("SELECT * FROM population.residents ORDER BY id_number")
        .await
        .unwrap();
    let names: Vec<String> = star[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id_number", "name", "birth_date", "town", "phone"]);
    assert_eq!(rows_of(&star), reference);
    everything.push_str(&format!("{got:?}"));

    // Ungranted columns: directly, aliased, other case, quoted, qualified.
    for q in [
        "SELECT ethnicity FROM population.residents",
        "SELECT r.ethnicity AS e FROM population.residents r",
        "SELECT ETHNICITY FROM population.residents",
        "SELECT \"ethnicity\" FROM population.residents",
        "SELECT \"Name\" FROM population.residents",
        "SELECT count(*) FROM population.residents WHERE gender = '男'",
        "SELECT household_address FROM population.residents",
    ] {
        let s = sql.refused(q).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{q}: {s:?}");
        everything.push_str(s.message());
    }

    // Row filter: nothing a caller writes brings hidden rows back.
    for q in [
        format!("SELECT count(*) FROM population.residents WHERE town = '{TOWN}' OR 1=1"),
        "SELECT count(*) FROM (SELECT id_number FROM population.residents UNION SELECT id_number FROM population.residents)".into(),
        "SELECT count(*) FROM population.residents a JOIN population.residents b ON a.id_number = b.id_number".into(),
        "WITH x AS (SELECT * FROM population.residents) SELECT count(*) FROM x".into(),
        "SELECT max(rn) FROM (SELECT row_number() OVER (ORDER BY id_number) AS rn FROM population.residents)".into(),
        format!("SELECT count(*) FROM population.residents WHERE 1 / (CASE WHEN id_number = '{}' THEN 0 ELSE 1 END) = 1", hidden.id),
        format!("SELECT count(*) FROM population.residents WHERE CAST(CASE WHEN id_number = '{}' THEN 'x' ELSE '1' END AS INT) = 1", hidden.id),
    ] {
        assert_eq!(sql.count(&q).await, n, "{q}");
    }
    for q in [
        format!("SELECT count(*) FROM population.residents WHERE id_number = '{}'", hidden.id),
        format!("SELECT count(*) FROM population.residents WHERE town <> '{TOWN}'"),
        "SELECT count(*) FROM population.residents a WHERE EXISTS (SELECT 1 FROM population.residents b WHERE b.id_number = a.id_number AND b.town <> a.town)".into(),
    ] {
        assert_eq!(sql.count(&q).await, 0, "{q}");
    }

    // Masked columns: filtering, LIKE, MIN/MAX and sorting see masked values only.
    let someone = visible
        .iter()
        .find(|r| r.name.chars().count() >= 2)
        .unwrap();
    for q in [
        format!(
            "SELECT count(*) FROM population.residents WHERE name = '{}'",
            someone.name
        ),
        format!(
            "SELECT count(*) FROM population.residents WHERE name LIKE '{}%'",
            someone.name
        ),
        format!(
            "SELECT count(*) FROM population.residents WHERE phone = '{}'",
            someone.phone
        ),
        format!(
            "SELECT count(*) FROM population.residents WHERE birth_date = '{}'",
            someone.birth
        ),
    ] {
        assert_eq!(sql.count(&q).await, 0, "{q}");
    }
    for q in [
        "SELECT min(name), max(name), min(phone), max(phone), min(birth_date) FROM population.residents",
        "SELECT name, phone FROM population.residents ORDER BY name, phone",
        "SELECT substr(name, 2, 1), count(*) FROM population.residents GROUP BY 1",
    ] {
        everything.push_str(&format!("{:?}", sql.rows(q).await));
    }

    // Residents joined to legal entities by legal representative, counted by town.
    let visible_ids: BTreeSet<&str> = visible.iter().map(|r| r.id.as_str()).collect();
    let expected = entities(&hub)
        .iter()
        .filter(|(_, rep)| visible_ids.contains(rep.as_str()))
        .count();
    assert!(expected > 0);
    let got = sql
        .rows(
            "SELECT r.town, count(*) FROM legal.entities e \
             JOIN population.residents r ON e.legal_rep_id = r.id_number \
             GROUP BY r.town ORDER BY r.town",
        )
        .await;
    assert_eq!(got, vec![vec![TOWN.to_owned(), expected.to_string()]]);

    // Anything but a query is refused, and says so.
    for q in [
        "EXPLAIN SELECT * FROM population.residents",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO population.residents (town) VALUES ('x')",
        "DROP TABLE population.residents",
        "SET datafusion.execution.batch_size = 1",
        "COPY (SELECT 1) TO 'x.csv'",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/'",
    ] {
        let s = sql.refused(q).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{q}: {s:?}");
    }
    assert_no_leak(&everything, &all);

    // No purpose, another purpose, another department: nothing to read.
    let no_purpose = Sql {
        purpose: None,
        ..sql_clone(&sql)
    };
    let s = no_purpose
        .refused("SELECT count(*) FROM population.residents")
        .await;
    assert_eq!(s.code(), Code::PermissionDenied);
    let other = Sql {
        purpose: Some("别的用途".into()),
        ..sql_clone(&sql)
    };
    let s = other
        .refused("SELECT count(*) FROM population.residents")
        .await;
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("population.residents"),
        "{}",
        s.message()
    );
    let stranger = Sql {
        token: hub.token("education", Role::Consumer),
        ..sql_clone(&sql)
    };
    let s = stranger
        .refused("SELECT count(*) FROM legal.entities")
        .await;
    assert_eq!(s.code(), Code::InvalidArgument);
    let steward = Sql {
        token: hub.token("public-security", Role::Steward),
        ..sql_clone(&sql)
    };
    assert_eq!(
        steward.refused("SELECT 1").await.code(),
        Code::PermissionDenied
    );

    // A generic client browses what it may see, and prepared statements answer the same.
    let mut client = FlightSqlServiceClient::new(hub.channel().await);
    client.set_header("authorization", format!("Bearer {}", sql.token));
    client.set_header(PURPOSE_HEADER, pct(PURPOSE));
    let info = client.get_catalogs().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(rows_of(&batches), vec![vec!["citybrain".to_owned()]]);
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(
        rows_of(&batches),
        vec![
            vec!["citybrain".to_owned(), "legal".to_owned()],
            vec!["citybrain".to_owned(), "population".to_owned()]
        ]
    );
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("population".into()),
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(batches[0].num_rows(), 1);
    let schema_bytes = batches[0].column(4).as_binary::<i32>().value(0).to_vec();
    let schema = Schema::try_from(arrow_flight::IpcMessage(schema_bytes.into())).unwrap();
    let cols: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(cols, ["id_number", "name", "birth_date", "town", "phone"]);
    let mut prepared = client
        .prepare(
            "SELECT id_number, name, birth_date, town, phone FROM population.residents ORDER BY id_number".into(),
            None,
        )
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(rows_of(&batches), reference);
    prepared.close().await.unwrap();

    // Every SQL call is in the audit log with the tables and grants it used.
    let mut audit =
        citybrain_proto::v1::audit_service_client::AuditServiceClient::new(hub.channel().await);
    let found = audit
        .search_calls(authed(
            &hub.token("audit", Role::Auditor),
            pb::SearchCallsRequest {
                table: "legal.entities".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        found.calls.iter().any(|c| c.method.ends_with("/DoGet")
            && c.tables.contains(&"population.residents".to_owned())
            && c.outcome == "ok"),
        "{:?}",
        found.calls
    );
    hub.stop().await;
}

fn sql_clone(s: &Sql) -> Sql {
    Sql {
        channel: s.channel.clone(),
        token: s.token.clone(),
        purpose: s.purpose.clone(),
    }
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let stream = client.do_get(ep.ticket.unwrap()).await.unwrap();
        out.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    out
}

#[tokio::test]
async fn aggregate_grant_answers_only_large_groups() {
    let hub = TestHub::demo().await;
    grant_aggregate(&hub).await;
    let all = residents(&hub);
    let sql = Sql {
        channel: hub.channel().await,
        token: hub.token("civil-affairs", Role::Consumer),
        purpose: Some(STATS.into()),
    };
    // Reference: residents by town, groups of 20 or more.
    let mut by_town: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &all {
        *by_town.entry(r.town.as_str()).or_default() += 1;
    }
    let expected: Vec<Vec<String>> = by_town
        .iter()
        .filter(|(_, n)| **n >= 20)
        .map(|(t, n)| vec![(*t).to_owned(), n.to_string()])
        .collect();
    assert!(!expected.is_empty());
    let got = sql
        .rows("SELECT town, count(*) FROM population.residents GROUP BY town ORDER BY town")
        .await;
    assert_eq!(got, expected);
    let by_gender = sql
        .rows("SELECT gender, count(*) AS n FROM population.residents WHERE town = '桂城街道' GROUP BY gender HAVING count(*) > 0 ORDER BY gender LIMIT 5")
        .await;
    let mut ref_gender: BTreeMap<&str, usize> = BTreeMap::new();
    for r in all.iter().filter(|r| r.town == TOWN) {
        *ref_gender.entry(r.gender.as_str()).or_default() += 1;
    }
    let ref_gender: Vec<Vec<String>> = ref_gender
        .iter()
        .filter(|(_, n)| **n >= 20)
        .map(|(g, n)| vec![(*g).to_owned(), n.to_string()])
        .collect();
    assert_eq!(by_gender, ref_gender);

    // Narrowing to one person answers nothing: the group is too small to leave.
    let one = &all[7];
    for q in [
        format!(
            "SELECT count(*) FROM population.residents WHERE birth_date = DATE '{}' AND town = '{}' AND gender = '{}'",
            one.birth, one.town, one.gender
        ),
        format!(
            "SELECT b.birth_date, count(*) FROM population.residents a CROSS JOIN population.residents b \
             WHERE b.birth_date = DATE '{}' AND b.town = '{}' AND b.gender = '{}' GROUP BY b.birth_date",
            one.birth, one.town, one.gender
        ),
        "SELECT birth_date, count(*) FROM population.residents GROUP BY birth_date HAVING count(*) < 3".into(),
    ] {
        assert_eq!(sql.rows(&q).await, Vec::<Vec<String>>::new(), "{q}");
    }

    // Row-level reads and value-revealing shapes are refused.
    for q in [
        "SELECT * FROM population.residents",
        "SELECT town FROM population.residents",
        "SELECT min(birth_date) FROM population.residents",
        "SELECT town, max(birth_date) FROM population.residents GROUP BY town",
        "SELECT (SELECT max(birth_date) FROM population.residents) AS m, count(*) FROM population.residents GROUP BY 1",
        "WITH x AS (SELECT town FROM population.residents) SELECT town, count(*) FROM x GROUP BY town",
        "SELECT town, count(*) FROM (SELECT town, count(*) AS c FROM population.residents GROUP BY town) t GROUP BY town",
        "SELECT town, sum(rn) FROM (SELECT town, row_number() OVER () AS rn FROM population.residents) GROUP BY town",
        "SELECT town, count(*) FROM population.residents WHERE birth_date IN (SELECT birth_date FROM population.residents WHERE gender = '男') GROUP BY town",
        // One person's value inside a large group: FILTER, computed arguments, grouping sets.
        "SELECT count(*) FILTER (WHERE gender = '男') FROM population.residents",
        "SELECT sum(CASE WHEN gender = '男' THEN 1 ELSE 0 END) FROM population.residents",
        "SELECT town, count(*) FROM population.residents GROUP BY ROLLUP(town)",
        "SELECT substr(town, 1, 1), count(*) FROM population.residents GROUP BY 1",
        // Conditions that could fail on one row (and so tell that it exists).
        "SELECT count(*) FROM population.residents WHERE CAST(CASE WHEN gender = '男' THEN town END AS INT) = 0",
        "SELECT count(*) FROM population.residents WHERE town = 5",
        "SELECT town, count(*) FROM population.residents GROUP BY town HAVING 1 / (count(*) - 1) > 0",
    ] {
        let s = sql.refused(q).await;
        assert_eq!(s.code(), Code::PermissionDenied, "{q}: {s:?}");
    }
    // The id number was never granted.
    let s = sql
        .refused(
            "SELECT town, count(*) FROM population.residents WHERE id_number = '1' GROUP BY town",
        )
        .await;
    assert_eq!(s.code(), Code::InvalidArgument);
    hub.stop().await;
}

async fn exchange(
    hub: &TestHub,
    token: &str,
    command: &str,
    keys: Vec<String>,
) -> Result<Vec<RecordBatch>, Status> {
    let schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, false)]));
    let batches: Vec<RecordBatch> = keys
        .chunks(10_000)
        .map(|c| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(c.to_vec())) as ArrayRef],
            )
            .unwrap()
        })
        .collect();
    let data: Vec<arrow_flight::FlightData> = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(command.to_owned())))
        .build(futures::stream::iter(batches.into_iter().map(Ok)))
        .try_collect()
        .await
        .unwrap();
    let mut c = FlightServiceClient::new(hub.channel().await);
    let req = flight_request(futures::stream::iter(data), token, None);
    let out = c.do_exchange(req).await?.into_inner();
    FlightRecordBatchStream::new_from_flight_data(out.map_err(FlightError::from))
        .try_collect()
        .await
        .map_err(|e| Status::internal(e.to_string()))
}

#[tokio::test]
async fn batch_match_over_flight_equals_reference_and_sql() {
    let hub = TestHub::demo().await;
    grant_read(&hub).await;
    let all = residents(&hub);
    let consumer = hub.token("civil-affairs", Role::Consumer);
    let command = format!(r#"{{"table": "population.residents", "purpose": "{PURPOSE}"}}"#);
    // Half inside the row filter, half outside (hidden rows look like absent keys).
    let inside: Vec<&Resident> = all.iter().filter(|r| r.town == TOWN).take(40).collect();
    let outside: Vec<&Resident> = all.iter().filter(|r| r.town != TOWN).take(40).collect();
    let mut keys: Vec<String> = inside
        .iter()
        .chain(&outside)
        .map(|r| r.id.clone())
        .collect();
    keys.reverse();
    let got = exchange(&hub, &consumer, &command, keys.clone())
        .await
        .unwrap();
    let names: Vec<String> = got[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["key", "id_number", "name", "birth_date", "town", "phone"]
    );
    let mut rows = rows_of(&got);
    rows.sort();
    let mut expected: Vec<Vec<String>> = inside
        .iter()
        .map(|r| {
            let mut row = vec![r.id.clone()];
            row.extend(granted_row(r));
            row
        })
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
    assert_no_leak(&format!("{rows:?}"), &all);

    // The SQL path agrees for the same grant.
    let sql = Sql {
        channel: hub.channel().await,
        token: consumer.clone(),
        purpose: Some(PURPOSE.into()),
    };
    let list: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    let via_sql = sql
        .rows(&format!(
            "SELECT id_number, name, birth_date, town, phone FROM population.residents WHERE id_number IN ({}) ORDER BY id_number",
            list.join(",")
        ))
        .await;
    let via_match: Vec<Vec<String>> = rows.iter().map(|r| r[1..].to_vec()).collect();
    assert_eq!(via_sql, via_match);

    // A malformed key is refused before any data is read, naming its position.
    let mut bad = keys.clone();
    let wrong = if bad[3].ends_with('0') { "1" } else { "0" };
    bad[3].replace_range(17..18, wrong);
    let s = exchange(&hub, &consumer, &command, bad).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("key[3]"), "{}", s.message());

    // Too many keys, a bad command, no grant: clear refusals.
    let many: Vec<String> = (0..100_001).map(|_| keys[0].clone()).collect();
    let s = exchange(&hub, &consumer, &command, many).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("100000"), "{}", s.message());
    let s = exchange(&hub, &consumer, "not json", keys.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let stranger = hub.token("education", Role::Consumer);
    let s = exchange(&hub, &stranger, &command, keys.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied);
    let s = exchange(&hub, "not-a-token", &command, keys.clone())
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    hub.stop().await;
}

#[tokio::test]
async fn sql_memory_and_answer_limits_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    prepare_demo(dir.path(), citybrain_tests::TEST_PERSONS, None).unwrap();
    let mut opts = HubOptions::new(dir.path());
    opts.sql_limits = SqlLimits {
        query_memory_bytes: 256 << 10,
        max_answer_bytes: 64 << 10,
        ..SqlLimits::default()
    };
    let hub = TestHub::start_with(dir, &opts).await;
    grant_read(&hub).await;
    let sql = Sql {
        channel: hub.channel().await,
        token: hub.token("civil-affairs", Role::Consumer),
        purpose: Some(PURPOSE.into()),
    };
    // Small answers still work under the limits.
    assert!(sql.count("SELECT count(*) FROM population.residents").await > 0);
    // A large answer is refused, not truncated.
    let s = sql
        .refused("SELECT a.id_number, b.id_number FROM population.residents a CROSS JOIN population.residents b")
        .await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("larger than 64 KiB"),
        "{}",
        s.message()
    );
    // A query whose working set exceeds the pool fails with the limit named.
    let s = sql
        .refused("SELECT a.id_number, array_agg(b.name) FROM population.residents a CROSS JOIN population.residents b GROUP BY a.id_number")
        .await;
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("MiB") || s.message().contains("KiB"),
        "{}",
        s.message()
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_deprecated_table_leaves_the_callers_other_tables_queryable() {
    let hub = TestHub::demo().await;
    grant_read(&hub).await;
    let sql = Sql {
        channel: hub.channel().await,
        token: hub.token("civil-affairs", Role::Consumer),
        purpose: Some(PURPOSE.into()),
    };
    assert!(sql.count("SELECT count(*) FROM legal.entities").await > 0);
    // The steward withdraws one table (its own connection to the catalog file).
    citybrain_catalog::Catalog::open(&hub.data_dir().join("catalog.db"))
        .unwrap()
        .deprecate("legal.entities", "replaced")
        .unwrap();
    assert!(sql.count("SELECT count(*) FROM population.residents").await > 0);
    let s = sql.refused("SELECT count(*) FROM legal.entities").await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    hub.stop().await;
}

/// The data paths read only the columns a grant shows or its row filter reads. A filter on a
/// column the grant does not show must still see that column's values, on every path.
#[tokio::test]
async fn a_row_filter_on_a_column_not_shown_still_decides_every_data_path() {
    use citybrain_proto::v1::data_service_client::DataServiceClient;
    let hub = TestHub::demo().await;
    let consumer = hub.token("civil-affairs", Role::Consumer);
    hub.apply_and_decide(
        &consumer,
        pb::ApplyRequest {
            table: "population.residents".into(),
            columns: vec!["id_number".into(), "name".into()],
            purpose: PURPOSE.into(),
            business_system: "企业登记协查系统".into(),
            service_matter: "法定代表人身份核查".into(),
            days: 30,
            mode: pb::Mode::Read.into(),
        },
        "public-security",
        pb::DecideRequest {
            approve: true,
            reason: "协查需要".into(),
            row_filter: format!("town = '{TOWN}'"),
            ..Default::default()
        },
    )
    .await;
    let all = residents(&hub);
    let inside: Vec<&Resident> = all.iter().filter(|r| r.town == TOWN).take(5).collect();
    let outside: Vec<&Resident> = all.iter().filter(|r| r.town != TOWN).take(5).collect();
    let mut data = DataServiceClient::new(hub.channel().await);
    for (r, visible) in inside
        .iter()
        .map(|r| (r, true))
        .chain(outside.iter().map(|r| (r, false)))
    {
        let got = data
            .lookup(authed(
                &consumer,
                pb::LookupRequest {
                    table: "population.residents".into(),
                    key: r.id.clone(),
                    purpose: PURPOSE.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.columns, ["id_number", "name"]);
        let rows: Vec<Vec<String>> = got
            .rows
            .iter()
            .map(|row| row.values.iter().map(|v| v.value.clone()).collect())
            .collect();
        let expected = if visible {
            vec![vec![r.id.clone(), r.name.clone()]]
        } else {
            vec![]
        };
        assert_eq!(rows, expected, "lookup of a resident of {}", r.town);
        let verified = data
            .verify(authed(
                &consumer,
                pb::VerifyRequest {
                    table: "population.residents".into(),
                    key: r.id.clone(),
                    purpose: PURPOSE.into(),
                    claims: vec![pb::Claim {
                        column: "name".into(),
                        value: r.name.clone(),
                    }],
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            verified.key_found, visible,
            "verify of a resident of {}",
            r.town
        );
        let matched = if visible {
            pb::Match::Yes
        } else {
            pb::Match::No
        };
        assert_eq!(verified.results[0].r#match, matched as i32);
    }

    let command = format!(r#"{{"table": "population.residents", "purpose": "{PURPOSE}"}}"#);
    let keys: Vec<String> = inside
        .iter()
        .chain(&outside)
        .map(|r| r.id.clone())
        .collect();
    let got = exchange(&hub, &consumer, &command, keys).await.unwrap();
    let mut rows = rows_of(&got);
    rows.sort();
    let mut expected: Vec<Vec<String>> = inside
        .iter()
        .map(|r| vec![r.id.clone(), r.id.clone(), r.name.clone()])
        .collect();
    expected.sort();
    assert_eq!(rows, expected);
    hub.stop().await;
}
