//! `citybrain audit …`: offline verification and the auditor's client commands.

use crate::Result;
use crate::cli::AuditCommand;
use crate::commands::{authed, channel};
use crate::error::Error;
use crate::hub::{AUDIT_DIR, AUDIT_KEY, KEYS_DIR};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::audit_service_client::AuditServiceClient;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey;

/// Runs one audit subcommand.
pub async fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { data, from, to } => verify(&data.data_dir, from, to),
        AuditCommand::Search {
            client,
            filter,
            limit,
        } => {
            let mut api = AuditServiceClient::new(channel(&client).await?);
            let mut token = String::new();
            let mut printed = 0u32;
            while printed < limit {
                let page = api
                    .search_calls(authed(
                        &client,
                        pb::SearchCallsRequest {
                            department: filter.department.clone().unwrap_or_default(),
                            table: filter.table.clone().unwrap_or_default(),
                            method: filter.method.clone().unwrap_or_default(),
                            outcome: filter.outcome.clone().unwrap_or_default(),
                            purpose: filter.purpose.clone().unwrap_or_default(),
                            from: filter.from.clone().unwrap_or_default(),
                            to: filter.to.clone().unwrap_or_default(),
                            key: filter.key.clone().unwrap_or_default(),
                            page_size: (limit - printed).min(500),
                            page_token: token.clone(),
                        },
                    )?)
                    .await?
                    .into_inner();
                for c in &page.calls {
                    print_record(c);
                    printed += 1;
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            Ok(())
        }
        AuditCommand::Meter {
            client,
            department,
            table,
            from_day,
            to_day,
        } => {
            let mut api = AuditServiceClient::new(channel(&client).await?);
            let m = api
                .get_metering(authed(
                    &client,
                    pb::GetMeteringRequest {
                        department: department.unwrap_or_default(),
                        table: table.unwrap_or_default(),
                        from_day: from_day.unwrap_or_default(),
                        to_day: to_day.unwrap_or_default(),
                    },
                )?)
                .await?
                .into_inner();
            println!(
                "{:<10} {:<20} {:<32} {:>8} {:>10} {:>12}",
                "day", "department", "table", "calls", "rows", "bytes"
            );
            for r in &m.rows {
                let table = if r.table.is_empty() { "-" } else { &r.table };
                println!(
                    "{:<10} {:<20} {:<32} {:>8} {:>10} {:>12}",
                    r.day, r.department, table, r.calls, r.rows, r.bytes
                );
            }
            println!(
                "all time: {} calls, {} rows, {} bytes",
                m.total_calls, m.total_rows, m.total_bytes
            );
            Ok(())
        }
        AuditCommand::Sql {
            client,
            query,
            max_rows,
        } => {
            let mut api = AuditServiceClient::new(channel(&client).await?);
            let r = api
                .query_sql(authed(
                    &client,
                    pb::QueryAuditRequest {
                        sql: query,
                        max_rows,
                    },
                )?)
                .await?
                .into_inner();
            crate::commands::print_rows(&r.columns, &r.rows);
            if r.truncated {
                println!("(more rows than --max-rows {max_rows})");
            }
            Ok(())
        }
        AuditCommand::Tail { client, department } => {
            let mut api = AuditServiceClient::new(channel(&client).await?);
            let mut stream = api
                .tail_calls(authed(
                    &client,
                    pb::TailCallsRequest {
                        department: department.unwrap_or_default(),
                    },
                )?)
                .await?
                .into_inner();
            while let Some(rec) = stream.message().await? {
                print_record(&rec);
            }
            Ok(())
        }
    }
}

fn print_record(c: &pb::CallRecord) {
    let dept = if c.department.is_empty() {
        "-"
    } else {
        &c.department
    };
    println!(
        "{:>8} {} {:<16} {:<32} {:<15} rows={} bytes={} {}µs tables=[{}] purpose={:?}",
        c.seq,
        c.time,
        dept,
        c.method,
        c.outcome,
        c.rows,
        c.bytes,
        c.latency_us,
        c.tables.join(","),
        c.purpose
    );
}

fn verify(data_dir: &std::path::Path, from: Option<String>, to: Option<String>) -> Result<()> {
    let pem_path = data_dir.join(KEYS_DIR).join(format!("{AUDIT_KEY}.pub.pem"));
    let pem = std::fs::read_to_string(&pem_path).map_err(|source| Error::Io {
        what: format!("read {}", pem_path.display()),
        source,
    })?;
    let key = VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| Error::Usage(format!("{}: {e}", pem_path.display())))?;
    let bound = |s: Option<String>, default: i64| -> Result<i64> {
        match s {
            None => Ok(default),
            Some(t) => citybrain_types::parse_utc_micros(&t).ok_or_else(|| {
                Error::Usage(format!("'{t}': expected YYYY-MM-DD or RFC 3339 (UTC)"))
            }),
        }
    };
    let range = if from.is_some() || to.is_some() {
        Some((bound(from, i64::MIN)?, bound(to, i64::MAX)?))
    } else {
        None
    };
    match citybrain_audit::verify_dir(&data_dir.join(AUDIT_DIR), &key, range) {
        Ok(r) => {
            println!(
                "ok: {} segments, {} records, {} signed checkpoints, last record {}; {} records after the last checkpoint",
                r.segments, r.records, r.checkpoints, r.last_seq, r.unsigned_tail
            );
            Ok(())
        }
        Err(f) => Err(Error::Tampered(f.to_string())),
    }
}
