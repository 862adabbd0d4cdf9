//! `citybrain sharing …` and `citybrain data …`: the sharing workflow and governed data calls.

use crate::Result;
use crate::cli::{DataCommand, SharingCommand};
use crate::commands::{authed, channel};
use crate::error::Error;
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::data_service_client::DataServiceClient;
use citybrain_proto::v1::sharing_service_client::SharingServiceClient;

fn mode(s: &str) -> i32 {
    match s {
        "verify" => pb::Mode::Verify,
        "aggregate" => pb::Mode::Aggregate,
        _ => pb::Mode::Read,
    }
    .into()
}

/// Parses `column=keep:6:4`, `column=first_char`, `column=year`, `column=hash`, `column=null`.
fn parse_mask(spec: &str) -> Result<pb::Mask> {
    let bad = || {
        Error::Usage(format!(
            "--mask '{spec}': expected column=keep:FIRST:LAST, first_char, year, hash or null"
        ))
    };
    let (column, kind) = spec.split_once('=').ok_or_else(bad)?;
    let mut parts = kind.split(':');
    let kind = parts.next().ok_or_else(bad)?;
    let mut num =
        || -> Result<u32> { parts.next().map_or(Ok(0), |n| n.parse().map_err(|_| bad())) };
    let (keep_first, keep_last) = (num()?, num()?);
    Ok(pb::Mask {
        column: column.to_owned(),
        kind: kind.to_owned(),
        keep_first,
        keep_last,
    })
}

fn print_app(a: &pb::Application) {
    println!(
        "{} {:<9} {} → {} [{}] purpose={:?} days={} {}",
        a.id,
        a.status,
        a.consumer_department,
        a.table,
        a.columns.join(","),
        a.purpose,
        a.days,
        if a.grant_id.is_empty() {
            String::new()
        } else {
            format!("grant={}", a.grant_id)
        }
    );
}

fn print_grant(g: &pb::Grant) {
    let cols: Vec<String> = g
        .columns
        .iter()
        .map(|c| match &c.mask {
            Some(m) if m.kind == "keep" => {
                format!("{}(keep {}/{})", c.name, m.keep_first, m.keep_last)
            }
            Some(m) => format!("{}({})", c.name, m.kind),
            None => c.name.clone(),
        })
        .collect();
    let state = if g.revoked_at.is_empty() {
        format!("until {}", g.expires_at)
    } else {
        format!("REVOKED {}", g.revoked_at)
    };
    println!(
        "{} {} → {} [{}] filter={:?} purpose={:?} {}",
        g.id,
        g.table,
        g.consumer_department,
        cols.join(", "),
        g.row_filter,
        g.purpose,
        state
    );
}

/// An application and the grant it produced, if any.
fn print_outcome(app: Option<&pb::Application>, grant: Option<&pb::Grant>) {
    app.into_iter().for_each(print_app);
    grant.into_iter().for_each(print_grant);
}

/// Runs a sharing subcommand.
pub async fn sharing(cmd: SharingCommand) -> Result<()> {
    match cmd {
        SharingCommand::Apply {
            client,
            table,
            columns,
            purpose,
            business_system,
            service_matter,
            days,
            mode: m,
        } => {
            let mut api = SharingServiceClient::new(channel(&client).await?);
            let r = api
                .apply(authed(
                    &client,
                    pb::ApplyRequest {
                        table,
                        columns,
                        purpose,
                        business_system,
                        service_matter,
                        days,
                        mode: mode(&m),
                    },
                )?)
                .await?
                .into_inner();
            print_outcome(r.application.as_ref(), r.grant.as_ref());
        }
        SharingCommand::Applications { client, pending } => {
            let mut api = SharingServiceClient::new(channel(&client).await?);
            let r = api
                .list_applications(authed(
                    &client,
                    pb::ListApplicationsRequest {
                        pending_for_my_department: pending,
                    },
                )?)
                .await?
                .into_inner();
            r.applications.iter().for_each(print_app);
        }
        SharingCommand::Decide {
            client,
            application,
            reject,
            reason,
            columns,
            masks,
            row_filter,
            days,
            max_calls_per_day,
            max_rows_per_day,
            min_group_size,
        } => {
            let masks = masks
                .iter()
                .map(|m| parse_mask(m))
                .collect::<Result<Vec<_>>>()?;
            let mut api = SharingServiceClient::new(channel(&client).await?);
            let r = api
                .decide(authed(
                    &client,
                    pb::DecideRequest {
                        application_id: application,
                        approve: !reject,
                        reason,
                        columns,
                        masks,
                        row_filter,
                        days,
                        max_calls_per_day,
                        max_rows_per_day,
                        min_group_size,
                    },
                )?)
                .await?
                .into_inner();
            print_outcome(r.application.as_ref(), r.grant.as_ref());
        }
        SharingCommand::Grants {
            client,
            on_my_tables,
        } => {
            let mut api = SharingServiceClient::new(channel(&client).await?);
            let r = api
                .list_grants(authed(&client, pb::ListGrantsRequest { on_my_tables })?)
                .await?
                .into_inner();
            r.grants.iter().for_each(print_grant);
        }
        SharingCommand::Revoke {
            client,
            grant,
            reason,
        } => {
            let mut api = SharingServiceClient::new(channel(&client).await?);
            let r = api
                .revoke(authed(
                    &client,
                    pb::RevokeRequest {
                        grant_id: grant,
                        reason,
                    },
                )?)
                .await?
                .into_inner();
            if let Some(g) = &r.grant {
                print_grant(g);
            }
        }
    }
    Ok(())
}

/// Runs a data subcommand.
pub async fn data(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Lookup {
            client,
            table,
            key,
            purpose,
        } => {
            let mut api = DataServiceClient::new(channel(&client).await?);
            let r = api
                .lookup(authed(
                    &client,
                    pb::LookupRequest {
                        table,
                        key,
                        purpose,
                    },
                )?)
                .await?
                .into_inner();
            crate::commands::print_rows(&r.columns, &r.rows);
            println!("{} rows (grant {})", r.rows.len(), r.grant_id);
        }
        DataCommand::Verify {
            client,
            table,
            key,
            purpose,
            claims,
        } => {
            let claims = claims
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(col, v)| pb::Claim {
                            column: col.to_owned(),
                            value: v.to_owned(),
                        })
                        .ok_or_else(|| {
                            Error::Usage(format!("--claim '{c}': expected column=value"))
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let mut api = DataServiceClient::new(channel(&client).await?);
            let r = api
                .verify(authed(
                    &client,
                    pb::VerifyRequest {
                        table,
                        key,
                        purpose,
                        claims,
                    },
                )?)
                .await?
                .into_inner();
            if !r.key_found {
                println!("no such key");
            }
            for c in &r.results {
                let m = if c.r#match == pb::Match::Yes as i32 {
                    "match"
                } else {
                    "no match"
                };
                println!("{:<20} {m}", c.column);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_specs() {
        let m = parse_mask("id_number=keep:6:4").unwrap();
        assert_eq!(
            (
                m.column.as_str(),
                m.kind.as_str(),
                m.keep_first,
                m.keep_last
            ),
            ("id_number", "keep", 6, 4)
        );
        assert_eq!(parse_mask("name=first_char").unwrap().kind, "first_char");
        assert!(parse_mask("name").is_err());
        assert!(parse_mask("id=keep:x:4").is_err());
    }
}
