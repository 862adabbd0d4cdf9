//! The subcommands.

use crate::Result;
use crate::cli::{CatalogCommand, ClientArgs, DatagenArgs, ServeArgs, TokenArgs};
use crate::error::Error;
use crate::hub::{self, DEMO_CALLERS, HubOptions};
use citybrain_audit::Gather;
use citybrain_gateway::{Limits, SqlLimits};
use citybrain_proto::v1 as pb;
use citybrain_proto::v1::catalog_service_client::CatalogServiceClient;
use citybrain_proto::v1::identity_service_client::IdentityServiceClient;
use citybrain_types::Role;
use std::time::{Duration, Instant};
use tonic::Request;
use tonic::transport::{Channel, Endpoint};

/// `citybrain serve`: runs until SIGINT or SIGTERM, then shuts down in order.
pub async fn serve(args: ServeArgs) -> Result<()> {
    if args.demo && args.data_root.is_some() {
        return Err(Error::Usage(
            "--demo writes its data under --data-dir; do not combine it with --data-root".into(),
        ));
    }
    if args.demo
        && let Some(report) = hub::prepare_demo(
            &args.data.data_dir,
            args.demo_persons,
            args.catalog_dir.as_deref(),
        )?
    {
        println!(
            "demo data ready: {} residents, {} tables in the catalog",
            args.demo_persons,
            report.created.len()
        );
    }
    let limits = Limits {
        max_request_bytes: args.limits.max_request_bytes,
        max_response_bytes: args.limits.max_response_bytes,
        default_deadline: Duration::from_millis(args.limits.default_deadline_ms),
        max_concurrent_calls: args.limits.max_concurrent_calls,
        max_concurrent_streams: args.limits.max_concurrent_streams,
        max_header_list_bytes: args.limits.max_header_list_bytes,
        ..Limits::default()
    };
    let opts = HubOptions {
        data_dir: args.data.data_dir.clone(),
        data_root: args.data_root.clone(),
        trusted_issuers: args.trusted_issuers.clone(),
        listen: args.listen,
        limits,
        audit_faults: None,
        audit_gather: Gather {
            time: Duration::from_micros(args.limits.audit_gather_us),
            min_calls: args.limits.audit_gather_calls as usize,
        },
        audit_sink: None,
        sql_limits: SqlLimits {
            query_memory_bytes: args.limits.sql_memory_mib << 20,
            max_answer_bytes: args.limits.sql_answer_mib << 20,
            metadata_cache_bytes: args.limits.sql_metadata_cache_mib << 20,
            ..SqlLimits::default()
        },
    };
    let signals = ShutdownSignals::register()?;
    let started = hub::start(&opts).await?;
    let addr = started.server.local_addr();
    println!("citybrain listening on {addr}");
    if args.demo {
        for (role, dept) in DEMO_CALLERS {
            let subject = format!("demo-{}", role.as_str());
            let token = started.issuer.mint(dept, *role, &subject, 12 * 3600)?;
            println!("token {} ({dept}): {token}", role.as_str());
        }
        println!(
            "try: grpcurl -plaintext -H \"authorization: Bearer <token>\" {addr} citybrain.v1.CatalogService/GetStats"
        );
    }
    signals.wait().await;
    tracing::info!("shutting down: no new calls; waiting for calls in progress");
    started.shutdown().await?;
    tracing::info!("stopped; audit log sealed");
    Ok(())
}

/// SIGINT and SIGTERM, registered before the hub announces itself, so a signal sent right after
/// the "listening" line is never lost to the default action.
struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let io = |source| Error::Io {
                what: "install signal handlers".into(),
                source,
            };
            Ok(Self {
                term: signal(SignalKind::terminate()).map_err(io)?,
                int: signal(SignalKind::interrupt()).map_err(io)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `citybrain datagen`.
pub fn datagen(args: DatagenArgs) -> Result<()> {
    let mut cfg = citybrain_datagen::Config::new(&args.out, args.persons);
    cfg.seed = args.seed;
    cfg.rows_per_file = args.rows_per_file;
    cfg.row_group_rows = args.row_group_rows;
    cfg.page_rows = args.page_rows;
    cfg.tables = args.tables;
    cfg.progress = true;
    let started = Instant::now();
    let summary = citybrain_datagen::generate(&cfg)?;
    let secs = started.elapsed().as_secs_f64();
    println!("{:<28} {:>14} {:>6}", "table", "rows", "files");
    for t in &summary {
        println!("{:<28} {:>14} {:>6}", t.name, t.rows, t.files);
    }
    let rows: u64 = summary.iter().map(|t| t.rows).sum();
    println!(
        "{rows} rows in {secs:.1} s ({:.0} rows/s) into {}",
        rows as f64 / secs.max(1e-9),
        args.out.display()
    );
    Ok(())
}

/// `citybrain token`: prints the token and nothing else on stdout.
pub fn token(args: TokenArgs) -> Result<()> {
    let role: Role = args
        .role
        .parse()
        .map_err(|e: citybrain_types::Error| Error::Usage(e.to_string()))?;
    citybrain_types::validate_dept_code(&args.dept).map_err(|e| Error::Usage(e.to_string()))?;
    let ttl = parse_ttl(&args.ttl)?;
    let issuer = hub::local_issuer(&args.data.data_dir)?;
    let subject = args
        .subject
        .unwrap_or_else(|| format!("{}-{}", args.dept, role.as_str()));
    println!("{}", issuer.mint(&args.dept, role, &subject, ttl)?);
    Ok(())
}

/// Parses a token lifetime, `90s`, `30m`, `1h`, `7d`, into seconds (more than zero).
pub fn parse_ttl(s: &str) -> Result<u64> {
    match parse_secs("--ttl", s)? {
        0 => Err(Error::Usage(format!(
            "--ttl '{s}': a token must live longer than 0s"
        ))),
        n => Ok(n),
    }
}

/// Parses the value of `flag`, `0s`, `90s`, `30m`, `1h`, `7d`, into seconds.
pub fn parse_secs(flag: &str, s: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "{flag} '{s}': expected a number with s, m, h or d, e.g. 30s"
        ))
    };
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

pub(crate) async fn channel(c: &ClientArgs) -> Result<Channel> {
    let err = |reason: String| Error::Connect {
        server: c.server.clone(),
        reason,
    };
    Endpoint::from_shared(c.server.clone())
        .map_err(|e| err(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| err(e.to_string()))
}

pub(crate) fn authed<T>(c: &ClientArgs, msg: T) -> Result<Request<T>> {
    let mut req = Request::new(msg);
    let value = format!("Bearer {}", c.token)
        .parse()
        .map_err(|_| Error::Usage("--token is not a valid header value".into()))?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

/// `citybrain whoami`.
pub async fn whoami(c: ClientArgs) -> Result<()> {
    let mut client = IdentityServiceClient::new(channel(&c).await?);
    let me = client
        .who_am_i(authed(&c, pb::WhoAmIRequest {})?)
        .await?
        .into_inner();
    println!(
        "{} of {} ({}), issued by {}, expires {}",
        me.subject, me.department, me.role, me.issuer, me.expires_at
    );
    Ok(())
}

/// `citybrain catalog …`.
pub async fn catalog(cmd: CatalogCommand) -> Result<()> {
    match cmd {
        CatalogCommand::Apply { dir, data } => {
            let manifests = citybrain_catalog::load_dir(&dir)?;
            let report = hub::open_catalog(&data.data_dir)?.apply(&manifests)?;
            for (what, names) in [
                ("created", &report.created),
                ("changed", &report.changed),
                ("unchanged", &report.unchanged),
            ] {
                for n in names {
                    println!("{what:<9} {n}");
                }
            }
            println!(
                "{} created, {} changed, {} unchanged",
                report.created.len(),
                report.changed.len(),
                report.unchanged.len()
            );
            Ok(())
        }
        CatalogCommand::List {
            client,
            department,
            share_type,
            library,
            text,
            include_deprecated,
        } => {
            let share_type = match share_type.as_deref() {
                None => 0,
                Some(s) => {
                    let st: citybrain_types::ShareType = s
                        .parse()
                        .map_err(|e: citybrain_types::Error| Error::Usage(e.to_string()))?;
                    citybrain_gateway::share_type_to_wire(st)
                }
            };
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let mut token = String::new();
            println!(
                "{:<36} {:<12} {:<14} {:>12}  title",
                "table", "share", "provider", "records"
            );
            loop {
                let page = api
                    .list_tables(authed(
                        &client,
                        pb::ListTablesRequest {
                            department: department.clone().unwrap_or_default(),
                            share_type,
                            library: library.clone().unwrap_or_default(),
                            text: text.clone().unwrap_or_default(),
                            include_deprecated,
                            page_size: 100,
                            page_token: token.clone(),
                        },
                    )?)
                    .await?
                    .into_inner();
                for t in &page.tables {
                    print_row(t);
                }
                if page.next_page_token.is_empty() {
                    println!("{} tables", page.total);
                    return Ok(());
                }
                token = page.next_page_token;
            }
        }
        CatalogCommand::Get { client, name } => {
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let t = api
                .get_table(authed(&client, pb::GetTableRequest { name })?)
                .await?
                .into_inner()
                .table
                .unwrap_or_default();
            print_table(&t);
            Ok(())
        }
        CatalogCommand::Stats { client } => {
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let s = api
                .get_stats(authed(&client, pb::GetStatsRequest {})?)
                .await?
                .into_inner()
                .stats
                .unwrap_or_default();
            println!("source departments   {}", s.source_departments);
            println!("tables               {}", s.tables);
            println!("data items           {}", s.data_items);
            println!("records              {}", s.records);
            println!("share rate           {:.1}%", s.share_rate * 100.0);
            println!("consumer departments {}", s.consumer_departments);
            println!(
                "calls                {} ({} shed at the concurrency limit)",
                s.calls, s.calls_shed
            );
            println!(
                "tables with data     {} ({} unavailable)",
                s.tables_with_data, s.tables_unavailable
            );
            Ok(())
        }
        CatalogCommand::Register { client, manifest } => {
            let spec = read_spec(&manifest)?;
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let t = api
                .register_table(authed(
                    &client,
                    pb::RegisterTableRequest { spec: Some(spec) },
                )?)
                .await?
                .into_inner()
                .table
                .unwrap_or_default();
            println!("registered {} (version {})", name_of(&t), t.version);
            Ok(())
        }
        CatalogCommand::Update { client, manifest } => {
            let spec = read_spec(&manifest)?;
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let r = api
                .update_table(authed(
                    &client,
                    pb::UpdateTableRequest { spec: Some(spec) },
                )?)
                .await?
                .into_inner();
            let t = r.table.unwrap_or_default();
            let what = if r.changed { "updated" } else { "unchanged" };
            println!("{what} {} (version {})", name_of(&t), t.version);
            Ok(())
        }
        CatalogCommand::Deprecate {
            client,
            name,
            reason,
        } => {
            let mut api = CatalogServiceClient::new(channel(&client).await?);
            let t = api
                .deprecate_table(authed(&client, pb::DeprecateTableRequest { name, reason })?)
                .await?
                .into_inner()
                .table
                .unwrap_or_default();
            println!("deprecated {} (version {})", name_of(&t), t.version);
            Ok(())
        }
    }
}

/// Prints rows as tab-separated text under a header line.
pub(crate) fn print_rows(columns: &[String], rows: &[pb::Row]) {
    println!("{}", columns.join("\t"));
    for row in rows {
        let v: Vec<&str> = row
            .values
            .iter()
            .map(|v| if v.is_null { "NULL" } else { v.value.as_str() })
            .collect();
        println!("{}", v.join("\t"));
    }
}

fn read_spec(path: &std::path::Path) -> Result<pb::TableSpec> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("read {}", path.display()),
        source,
    })?;
    let label = path.display().to_string();
    let m = citybrain_catalog::parse_manifest(&label, &text)?;
    Ok(citybrain_gateway::spec_to_wire(&m))
}

fn name_of(t: &pb::Table) -> &str {
    t.spec.as_ref().map(|s| s.name.as_str()).unwrap_or_default()
}

fn share_word(v: i32) -> &'static str {
    match pb::ShareType::try_from(v) {
        Ok(pb::ShareType::Unconditional) => "unconditional",
        Ok(pb::ShareType::Conditional) => "conditional",
        Ok(pb::ShareType::NotShared) => "not_shared",
        _ => "?",
    }
}

fn print_row(t: &pb::Table) {
    let s = t.spec.clone().unwrap_or_default();
    let provider = s.provider.map(|p| p.code).unwrap_or_default();
    let records = match pb::DataState::try_from(t.data_state) {
        Ok(pb::DataState::Available) => t.records.to_string(),
        Ok(pb::DataState::Unavailable) => "unavailable".into(),
        _ => "-".into(),
    };
    println!(
        "{:<36} {:<12} {:<14} {:>12}  {}",
        s.name,
        share_word(s.share_type),
        provider,
        records,
        s.title
    );
}

fn print_table(t: &pb::Table) {
    let s = t.spec.clone().unwrap_or_default();
    let provider = s.provider.unwrap_or_default();
    println!("{} — {} / {}", s.name, s.title, s.title_en);
    println!("resource code  {}", s.resource_code);
    println!("provider       {} ({})", provider.name, provider.code);
    println!("library        {}", s.library);
    println!(
        "share type     {} {}",
        share_word(s.share_type),
        s.share_condition
    );
    println!("update cycle   {}", s.update_cycle);
    println!("key column     {}", s.key_column);
    println!(
        "status         {} (version {}, updated {})",
        t.status, t.version, t.updated_at
    );
    print!("records        ");
    print_row_state(t);
    println!("abstract       {}", s.r#abstract);
    for c in &s.columns {
        println!(
            "  {:<24} {:<8} {:<13} {:<10} {}",
            c.name,
            c.data_type,
            share_word(c.share_type),
            c.sensitivity,
            c.title
        );
    }
}

fn print_row_state(t: &pb::Table) {
    match pb::DataState::try_from(t.data_state) {
        Ok(pb::DataState::Available) => println!("{}", t.records),
        Ok(pb::DataState::Unavailable) => println!("unavailable (see GetTableData)"),
        _ => println!("no data in the hub"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_name_their_flag_and_a_token_must_live() {
        assert_eq!(parse_secs("--warmup", "0s").unwrap(), 0);
        assert_eq!(parse_secs("--duration", "90s").unwrap(), 90);
        assert_eq!(parse_ttl("2h").unwrap(), 7200);
        assert_eq!(parse_ttl("7d").unwrap(), 7 * 86_400);
        for (flag, bad) in [("--warmup", "3"), ("--duration", "xs"), ("--warmup", "")] {
            let err = parse_secs(flag, bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{flag} '{bad}'")), "{err}");
        }
        let err = parse_ttl("0s").unwrap_err().to_string();
        assert!(err.contains("--ttl '0s'"), "{err}");
    }
}
