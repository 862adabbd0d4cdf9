//! Command-line interface: every flag has a long name and a `CITYBRAIN_*` environment variable.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// CityBrain Exchange: a city's governed data-sharing hub.
#[derive(Debug, Parser)]
#[command(name = "citybrain", version, about)]
pub struct Cli {
    /// Log output.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Logging options.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `citybrain_gateway=debug`.
    #[arg(long, env = "CITYBRAIN_LOG", default_value = "info", global = true)]
    pub log_filter: String,
    /// Log format on stderr.
    #[arg(long, env = "CITYBRAIN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve(ServeArgs),
    /// Write synthetic base libraries and departmental tables as Parquet.
    Datagen(DatagenArgs),
    /// Apply manifests to the catalog, or browse and change it through a running hub.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Print a token minted from the hub's local signing key (development and tests).
    Token(TokenArgs),
    /// Ask a running hub who the token belongs to.
    Whoami(ClientArgs),
    /// Verify, search, meter and follow the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Apply for shared tables, decide applications, list and revoke grants.
    #[command(subcommand)]
    Sharing(SharingCommand),
    /// Governed lookups and verification by key.
    #[command(subcommand)]
    Data(DataCommand),
    /// Load-test a running hub (N clients over gRPC) against SQL baselines in the same run.
    Bench(BenchArgs),
}

/// What `citybrain bench` calls.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchMode {
    /// `DataService.Lookup`.
    Lookup,
    /// `DataService.Verify` with one claimed value.
    Verify,
}

/// `citybrain bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The hub's data directory (tokens are minted from its key; keys sampled from its tables).
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Tables directory when the hub serves another data root on this machine.
    #[arg(long, env = "CITYBRAIN_BENCH_TABLES")]
    pub tables_dir: Option<PathBuf>,
    /// The hub's gRPC endpoint.
    #[arg(
        long,
        env = "CITYBRAIN_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Table to look up (must have a key column and data).
    #[arg(long, default_value = "population.residents")]
    pub table: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Measured time per path, e.g. `10s`.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Unmeasured warm-up per path.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Lookup or Verify.
    #[arg(long, value_enum, default_value = "lookup")]
    pub mode: BenchMode,
    /// Keys sampled from the files (spread over every row group).
    #[arg(long, default_value_t = 100_000)]
    pub sample: usize,
    /// Share of keys replaced by well-formed keys that are not in the table.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub absent_percent: u8,
    /// Also run the lookups through plain DataFusion SQL over the same files.
    #[arg(long)]
    pub sql_baseline: bool,
    /// Also run them through DuckDB (Python module `duckdb`; `CITYBRAIN_PYTHON` picks python).
    #[arg(long)]
    pub duckdb: bool,
    /// Write the results as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Instead of the lookup load: time these governed SQL queries over Flight SQL, one at a
    /// time, against the same query on ungoverned DataFusion (and DuckDB with `--duckdb`).
    #[arg(long = "query")]
    pub queries: Vec<String>,
    /// Runs of each query per path (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Tables the benchmark obtains read grants on (SQL mode).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "population.residents,legal.entities"
    )]
    pub grant_tables: Vec<String>,
    /// Department the load runs as (a department holds one grant per table and purpose, so a
    /// different `--columns` needs a different department).
    #[arg(long, env = "CITYBRAIN_BENCH_DEPT", default_value = "bench-load")]
    pub dept: String,
    /// Columns of `--table` the grant shows, comma-separated (default: every shareable one);
    /// the DataFusion and DuckDB baselines select the same columns.
    #[arg(long, env = "CITYBRAIN_BENCH_COLUMNS", value_delimiter = ',')]
    pub columns: Vec<String>,
}

/// `citybrain sharing …`.
#[derive(Debug, Subcommand)]
pub enum SharingCommand {
    /// Apply for columns of a table (consumer token).
    Apply {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Table name.
        #[arg(long)]
        table: String,
        /// Columns, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        columns: Vec<String>,
        /// Purpose; calls must state the same.
        #[arg(long)]
        purpose: String,
        /// Business system that will use the data.
        #[arg(long)]
        business_system: String,
        /// Service matter it supports.
        #[arg(long)]
        service_matter: String,
        /// Period wanted, days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// verify, read or aggregate.
        #[arg(long, default_value = "read", value_parser = ["verify", "read", "aggregate"])]
        mode: String,
    },
    /// List applications: the department's own, or (stewards, --pending) those waiting for it.
    Applications {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Applications waiting for the caller's department to decide.
        #[arg(long)]
        pending: bool,
    },
    /// Approve or reject a pending application (steward of the providing department).
    Decide {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Application id.
        application: String,
        /// Reject instead of approving.
        #[arg(long)]
        reject: bool,
        /// Reason (required to reject).
        #[arg(long, default_value = "")]
        reason: String,
        /// Narrow to these columns (comma-separated).
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Masks: `column=keep:FIRST:LAST`, `column=first_char`, `=year`, `=hash`, `=null`.
        #[arg(long = "mask")]
        masks: Vec<String>,
        /// SQL condition over the table's columns.
        #[arg(long, default_value = "")]
        row_filter: String,
        /// Validity in days (default: as applied).
        #[arg(long, default_value_t = 0)]
        days: u32,
        /// Calls per day (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        max_calls_per_day: u64,
        /// Rows per day (0 = unlimited).
        #[arg(long, default_value_t = 0)]
        max_rows_per_day: u64,
        /// Aggregate grants: smallest group.
        #[arg(long, default_value_t = 0)]
        min_group_size: u64,
    },
    /// List grants: held by the department, or (stewards, --on-my-tables) on its tables.
    Grants {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Grants on the caller's department's tables.
        #[arg(long)]
        on_my_tables: bool,
    },
    /// Revoke a grant (steward of the providing department).
    Revoke {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Grant id.
        grant: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// `citybrain data …`.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// The granted, masked columns of the rows with a key.
    Lookup {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Table name.
        #[arg(long)]
        table: String,
        /// ID number, credit code or address id.
        #[arg(long)]
        key: String,
        /// The grant's purpose.
        #[arg(long)]
        purpose: String,
    },
    /// Check claimed values for a key: match / no match per field, no data returned.
    Verify {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Table name.
        #[arg(long)]
        table: String,
        /// ID number, credit code or address id.
        #[arg(long)]
        key: String,
        /// The grant's purpose.
        #[arg(long)]
        purpose: String,
        /// Claims as `column=value` (repeatable).
        #[arg(long = "claim", required = true)]
        claims: Vec<String>,
    },
}

/// `citybrain audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every chain link and checkpoint signature of the log in a data directory (offline,
    /// with the public key only); exits non-zero and names the first bad record on tampering.
    Verify {
        /// State directory.
        #[command(flatten)]
        data: DataDirArgs,
        /// Only segments with records at or after this time (YYYY-MM-DD or RFC 3339, UTC).
        #[arg(long)]
        from: Option<String>,
        /// Only segments with records before this time.
        #[arg(long)]
        to: Option<String>,
    },
    /// Search recorded calls, newest first (auditor token).
    Search {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Filters.
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Most records to print.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Calls, rows and bytes by department, table and day (auditor token).
    Meter {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Department code.
        #[arg(long)]
        department: Option<String>,
        /// Table name.
        #[arg(long)]
        table: Option<String>,
        /// First day (YYYY-MM-DD).
        #[arg(long)]
        from_day: Option<String>,
        /// Last day (YYYY-MM-DD).
        #[arg(long)]
        to_day: Option<String>,
    },
    /// Run one SELECT over the log's `calls` view (auditor token).
    Sql {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// The query, e.g. "SELECT department, count(*) FROM calls GROUP BY department".
        query: String,
        /// Most rows to return.
        #[arg(long, default_value_t = 1000)]
        max_rows: u32,
    },
    /// Follow new records as they become durable (auditor token).
    Tail {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Only this department's calls.
        #[arg(long)]
        department: Option<String>,
    },
}

/// Filters of `audit search`.
#[derive(Debug, Args)]
pub struct AuditFilterArgs {
    /// Caller department.
    #[arg(long)]
    pub department: Option<String>,
    /// Table touched.
    #[arg(long)]
    pub table: Option<String>,
    /// Service/Method, e.g. CatalogService/GetTable.
    #[arg(long)]
    pub method: Option<String>,
    /// ok, denied, invalid, unauthenticated, quota, shed, timeout, cancelled, error.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Stated purpose.
    #[arg(long)]
    pub purpose: Option<String>,
    /// From (YYYY-MM-DD or RFC 3339, UTC), inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// To, exclusive.
    #[arg(long)]
    pub to: Option<String>,
    /// Who looked up this ID number or credit code.
    #[arg(long)]
    pub key: Option<String>,
}

/// Where the hub keeps its state.
#[derive(Debug, Args, Clone)]
pub struct DataDirArgs {
    /// Data directory: catalog database, signing keys and (by default) the data root.
    #[arg(long, env = "CITYBRAIN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// `citybrain serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// State directory.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Address to listen on; port 0 picks a free port (the real address is printed).
    #[arg(long, env = "CITYBRAIN_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Object store URL of the Parquet datasets (`file:///…`, a path); default `<data-dir>/tables`.
    #[arg(long, env = "CITYBRAIN_DATA_ROOT")]
    pub data_root: Option<String>,
    /// TOML file of trusted token issuers' public keys (`[[issuer]] iss, kid, alg, public_key_file`).
    #[arg(long, env = "CITYBRAIN_TRUSTED_ISSUERS")]
    pub trusted_issuers: Option<PathBuf>,
    /// On an empty data directory: generate demo data, apply the catalog, print a token per role.
    #[arg(long, env = "CITYBRAIN_DEMO")]
    pub demo: bool,
    /// Residents in the demo dataset.
    #[arg(long, env = "CITYBRAIN_DEMO_PERSONS", default_value_t = 20_000)]
    pub demo_persons: u64,
    /// Manifest directory applied with `--demo`; default: the manifests built into the binary.
    #[arg(long, env = "CITYBRAIN_CATALOG_DIR")]
    pub catalog_dir: Option<PathBuf>,
    /// Serving limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Serving limits.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest request message in bytes.
    #[arg(long, env = "CITYBRAIN_MAX_REQUEST_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_request_bytes: usize,
    /// Largest response message in bytes.
    #[arg(long, env = "CITYBRAIN_MAX_RESPONSE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Deadline of calls that set no shorter one, in milliseconds.
    #[arg(long, env = "CITYBRAIN_DEFAULT_DEADLINE_MS", default_value_t = 30_000)]
    pub default_deadline_ms: u64,
    /// API calls in progress at once; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CITYBRAIN_MAX_CONCURRENT_CALLS", default_value_t = 512)]
    pub max_concurrent_calls: usize,
    /// HTTP/2 streams per connection.
    #[arg(long, env = "CITYBRAIN_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// HTTP/2 header list size in bytes.
    #[arg(long, env = "CITYBRAIN_MAX_HEADER_LIST_BYTES", default_value_t = 16 * 1024)]
    pub max_header_list_bytes: u32,
    /// Memory one governed SQL query may use, in MiB (sorts and joins spill within it).
    #[arg(long, env = "CITYBRAIN_SQL_MEMORY_MIB", default_value_t = 512)]
    pub sql_memory_mib: usize,
    /// Largest answer one governed SQL query may return, in MiB.
    #[arg(long, env = "CITYBRAIN_SQL_ANSWER_MIB", default_value_t = 64)]
    pub sql_answer_mib: usize,
    /// Parquet metadata kept in memory for SQL, in MiB (size it to the data: ~54 MiB per
    /// 100 million residents).
    #[arg(long, env = "CITYBRAIN_SQL_METADATA_CACHE_MIB", default_value_t = 256)]
    pub sql_metadata_cache_mib: usize,
    /// Longest an audit batch waits for the records of calls still being served, in
    /// microseconds, at most 1 s (more: fewer syncs under load, each call waits up to this much
    /// longer; 0: never wait).
    #[arg(long, env = "CITYBRAIN_AUDIT_GATHER_US",
          default_value_t = citybrain_audit::Gather::DEFAULT.time.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub audit_gather_us: u64,
    /// Calls that must be under way for an audit batch to wait for their records (fewer: the
    /// batch is synced at once; 0: one per core, so a batch waits only when it starts while
    /// every worker is serving a call). A call that does not wait on I/O runs on one worker
    /// from start to record, so more than the worker count rarely are; streaming calls (Arrow
    /// Flight, the audit tail) are not counted.
    #[arg(long, env = "CITYBRAIN_AUDIT_GATHER_CALLS",
          default_value_t = citybrain_audit::Gather::DEFAULT.min_calls as u64,
          value_parser = clap::value_parser!(u64).range(0..=4096))]
    pub audit_gather_calls: u64,
}

/// `citybrain datagen`.
#[derive(Debug, Args)]
pub struct DatagenArgs {
    /// Output root directory (must not hold these datasets yet).
    #[arg(long, env = "CITYBRAIN_DATAGEN_OUT")]
    pub out: PathBuf,
    /// Residents to generate; other tables scale with it.
    #[arg(long, env = "CITYBRAIN_DATAGEN_PERSONS")]
    pub persons: u64,
    /// Seed; the same seed gives the same bytes.
    #[arg(long, env = "CITYBRAIN_DATAGEN_SEED", default_value_t = 20190601)]
    pub seed: u64,
    /// Largest number of rows per Parquet file.
    #[arg(
        long,
        env = "CITYBRAIN_DATAGEN_ROWS_PER_FILE",
        default_value_t = 2_000_000
    )]
    pub rows_per_file: u64,
    /// Rows per row group.
    #[arg(
        long,
        env = "CITYBRAIN_DATAGEN_ROW_GROUP_ROWS",
        default_value_t = 131_072
    )]
    pub row_group_rows: usize,
    /// Rows per data page: a lookup decodes one page of each column it returns, so smaller
    /// pages make lookups cheaper and the page index larger.
    #[arg(long, env = "CITYBRAIN_DATAGEN_PAGE_ROWS", default_value_t = citybrain_datagen::PAGE_ROWS)]
    pub page_rows: usize,
    /// Tables to write, by catalog name (comma-separated or repeated; default: every table).
    /// A table is the same whichever others are written with it: `--tables
    /// population.residents` gives a lookup benchmark the residents alone.
    #[arg(long, env = "CITYBRAIN_DATAGEN_TABLES", value_delimiter = ',')]
    pub tables: Vec<String>,
}

/// `citybrain catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Apply every manifest below DIR to the data directory's catalog (idempotent).
    Apply {
        /// Manifest directory.
        dir: PathBuf,
        /// State directory.
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// List tables of a running hub.
    List {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Provider department code.
        #[arg(long)]
        department: Option<String>,
        /// unconditional, conditional or not_shared.
        #[arg(long)]
        share_type: Option<String>,
        /// population, legal, map or department.
        #[arg(long)]
        library: Option<String>,
        /// Text to search for.
        #[arg(long)]
        text: Option<String>,
        /// Include deprecated tables.
        #[arg(long)]
        include_deprecated: bool,
    },
    /// Show one table.
    Get {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Table name.
        name: String,
    },
    /// Show the platform's headline figures.
    Stats {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Register a new table from a manifest file (steward of the providing department).
    Register {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Manifest file (TOML).
        manifest: PathBuf,
    },
    /// Update a table from a manifest file (steward of the providing department).
    Update {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Manifest file (TOML).
        manifest: PathBuf,
    },
    /// Deprecate a table (steward of the providing department).
    Deprecate {
        /// Connection.
        #[command(flatten)]
        client: ClientArgs,
        /// Table name.
        name: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

/// How to reach a running hub.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The hub's gRPC endpoint.
    #[arg(
        long,
        env = "CITYBRAIN_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    pub server: String,
    /// Bearer token (see `citybrain token`).
    #[arg(long, env = "CITYBRAIN_TOKEN", hide_env_values = true)]
    pub token: String,
}

/// `citybrain token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// State directory holding the signing key.
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Department code of the caller.
    #[arg(long, env = "CITYBRAIN_TOKEN_DEPT")]
    pub dept: String,
    /// consumer, steward, auditor or admin.
    #[arg(long, env = "CITYBRAIN_TOKEN_ROLE")]
    pub role: String,
    /// Subject (person or system); default `<dept>-<role>`.
    #[arg(long, env = "CITYBRAIN_TOKEN_SUBJECT")]
    pub subject: Option<String>,
    /// Lifetime, e.g. `90s`, `30m`, `1h`, `7d`.
    #[arg(long, env = "CITYBRAIN_TOKEN_TTL", default_value = "1h")]
    pub ttl: String,
}
