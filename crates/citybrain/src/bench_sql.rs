//! `citybrain bench --query`: governed SQL over Flight SQL timed against ungoverned DataFusion
//! (configured as the hub configures its own) and DuckDB (Python) on the same files, one query at
//! a time, reporting medians.

use crate::bench_cmd::{PURPOSE, datafusion_ctx, dataset_dir, run_duckdb, write_json};
use crate::cli::BenchArgs;
use crate::{Error, Result};
use datafusion::prelude::ParquetReadOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tonic::transport::Channel;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Each query through governed Flight SQL, ungoverned DataFusion and (optionally) DuckDB.
pub(crate) async fn sql_bench(
    a: &BenchArgs,
    channel: &Channel,
    token: &str,
    catalog: &citybrain_catalog::Catalog,
    tables_root: &Path,
) -> Result<()> {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::TryStreamExt;
    let df_err = |e: datafusion::error::DataFusionError| Error::Usage(format!("datafusion: {e}"));
    let mut client = FlightSqlServiceClient::new(channel.clone());
    client.set_header("authorization", format!("Bearer {token}"));
    client.set_header(
        citybrain_gateway::PURPOSE_HEADER,
        PURPOSE.replace(' ', "%20"),
    );

    // Ungoverned DataFusion over the same files, configured as the hub configures its own.
    let ctx = datafusion_ctx(true)?;
    let mut views = Vec::new();
    for t in &a.grant_tables {
        let m = catalog.get(t)?.manifest;
        let Some(dataset) = m.dataset else { continue };
        let path = dataset_dir(tables_root, &dataset);
        if let Some((schema, _)) = t.split_once('.')
            && let Some(cat) = ctx.catalog("datafusion")
            && cat.schema(schema).is_none()
        {
            cat.register_schema(
                schema,
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )
            .map_err(df_err)?;
        }
        ctx.register_parquet(
            t.as_str(),
            &format!("{}/", path.display()),
            ParquetReadOptions::default(),
        )
        .await
        .map_err(df_err)?;
        views.push((t.clone(), path));
    }

    let mut results = Vec::new();
    for q in &a.queries {
        let (mut hub, mut df) = (Vec::new(), Vec::new());
        let (mut hub_rows, mut df_rows) = (0usize, 0usize);
        for _ in 0..a.repeat.max(1) {
            let t0 = Instant::now();
            let info = client
                .execute(q.clone(), None)
                .await
                .map_err(|e| Error::Usage(format!("hub: {e}")))?;
            let mut rows = 0;
            for ep in info.endpoint {
                let Some(ticket) = ep.ticket else { continue };
                let batches: Vec<arrow::array::RecordBatch> = client
                    .do_get(ticket)
                    .await
                    .map_err(|e| Error::Usage(format!("hub: {e}")))?
                    .try_collect()
                    .await
                    .map_err(|e| Error::Usage(format!("hub: {e}")))?;
                rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
            }
            hub.push(t0.elapsed().as_secs_f64() * 1000.0);
            hub_rows = rows;
            let t0 = Instant::now();
            let batches = ctx
                .sql(q)
                .await
                .map_err(df_err)?
                .collect()
                .await
                .map_err(df_err)?;
            df.push(t0.elapsed().as_secs_f64() * 1000.0);
            df_rows = batches.iter().map(|b| b.num_rows()).sum();
        }
        let duck = if a.duckdb {
            Some(duckdb_query(&views, q, a.repeat.max(1))?)
        } else {
            None
        };
        let (h, d) = (median(hub), median(df));
        println!(
            "{:>10.1} ms hub  {:>10.1} ms DataFusion  {} hub/DataFusion {:.2}  rows {hub_rows}/{df_rows}  {q}",
            h,
            d,
            duck.map_or("          -".to_owned(), |x| format!("{x:>10.1} ms DuckDB")),
            h / d.max(1e-9)
        );
        results.push(serde_json::json!({
            "query": q, "hub_ms": h, "datafusion_ms": d, "duckdb_ms": duck,
            "hub_rows": hub_rows, "datafusion_rows": df_rows,
        }));
    }
    if let Some(path) = &a.json {
        write_json(
            path,
            &serde_json::json!({ "repeat": a.repeat, "queries": results }),
        )?;
    }
    Ok(())
}

/// Median milliseconds of one query on DuckDB (Python) over views of the same files.
fn duckdb_query(views: &[(String, PathBuf)], sql: &str, repeat: usize) -> Result<f64> {
    let script = r#"
import duckdb, json, sys, time
views, sql, repeat = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
for name, path in views:
    schema, table = name.split(".", 1)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    con.execute(f"CREATE VIEW {schema}.{table} AS SELECT * FROM read_parquet('{path}/*.parquet')")
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    con.execute(sql).fetchall()
    times.append((time.perf_counter() - t0) * 1000)
times.sort()
print(json.dumps(times[len(times) // 2]))
"#;
    let views: Vec<(String, String)> = views
        .iter()
        .map(|(n, p)| (n.clone(), p.display().to_string()))
        .collect();
    let out = run_duckdb(
        script,
        &[
            serde_json::to_string(&views).unwrap_or_default(),
            sql.to_owned(),
            repeat.to_string(),
        ],
    )?;
    serde_json::from_slice(&out).map_err(|e| Error::Usage(format!("DuckDB output: {e}")))
}
