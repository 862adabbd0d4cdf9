//! Opening the hub's state and starting it; the demo start.

use crate::Result;
use crate::error::Error;
use citybrain_audit::{AuditConfig, AuditLog, Faults, Gather};
use citybrain_auth::{Authenticator, LocalIssuer, load_trusted_keys};
use citybrain_catalog::{ApplyReport, Catalog, TableManifest};
use citybrain_engine::{DataRoot, Engine};
use citybrain_gateway::{Hub, Limits, RunningServer, SqlLimits};
use citybrain_types::Role;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/embedded_catalog.rs"));

/// File name of the catalog database inside the data directory.
pub const CATALOG_FILE: &str = "catalog.db";
/// Directory of the signing keys inside the data directory.
pub const KEYS_DIR: &str = "keys";
/// Default data root inside the data directory.
pub const TABLES_DIR: &str = "tables";
/// Audit log segments inside the data directory.
pub const AUDIT_DIR: &str = "audit";
/// File stem of the audit checkpoint signing key in the keys directory.
pub const AUDIT_KEY: &str = "audit-signing-key";
/// File stem of the secret of keyed hashes in the keys directory.
pub const AUDIT_HMAC: &str = "audit-hmac";
/// File stem of the secret of the `hash` mask in the keys directory.
pub const MASK_SECRET: &str = "mask-hmac";

/// Everything `serve` needs.
#[derive(Clone)]
pub struct HubOptions {
    /// State directory.
    pub data_dir: PathBuf,
    /// Object store URL of the datasets; default `<data_dir>/tables`.
    pub data_root: Option<String>,
    /// Trusted issuers file.
    pub trusted_issuers: Option<PathBuf>,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Serving limits.
    pub limits: Limits,
    /// Failure injection for the audit log (tests of the fail-closed path).
    pub audit_faults: Option<Arc<Faults>>,
    /// When an audit batch waits for the records of calls still being served.
    pub audit_gather: Gather,
    /// Send call records elsewhere than the audit log (benchmarks only).
    pub audit_sink: Option<Arc<dyn citybrain_gateway::AuditSink>>,
    /// Limits of governed SQL.
    pub sql_limits: SqlLimits,
}

impl HubOptions {
    /// Defaults for a data directory, listening on `127.0.0.1:0`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            data_root: None,
            trusted_issuers: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::default(),
            audit_faults: None,
            audit_gather: Gather::DEFAULT,
            audit_sink: None,
            sql_limits: SqlLimits::default(),
        }
    }
}

/// A running hub and the local issuer that can mint tokens for it.
pub struct Started {
    /// The gRPC server.
    pub server: RunningServer,
    /// The hub's own signing key.
    pub issuer: LocalIssuer,
    /// The audit log the server writes.
    pub audit: AuditLog,
}

impl Started {
    /// Ordered shutdown: stop accepting, finish calls in progress (their records included),
    /// then seal the audit log.
    pub async fn shutdown(self) -> Result<()> {
        self.server.shutdown().await?;
        self.audit
            .close()
            .await
            .map_err(citybrain_gateway::Error::from)?;
        Ok(())
    }
}

/// Opens the audit log of a data directory.
pub fn open_audit(
    data_dir: &Path,
    faults: Option<Arc<Faults>>,
    gather: Gather,
) -> Result<AuditLog> {
    let keys = data_dir.join(KEYS_DIR);
    let mut cfg = AuditConfig::new(
        data_dir.join(AUDIT_DIR),
        citybrain_auth::ed25519_key(&keys, AUDIT_KEY)?,
        citybrain_auth::secret(&keys, AUDIT_HMAC)?,
    );
    cfg.gather = gather;
    if let Some(f) = faults {
        cfg.faults = f;
    }
    AuditLog::open(cfg).map_err(|e| citybrain_gateway::Error::from(e).into())
}

/// Opens the catalog database of a data directory (creating the directory).
pub fn open_catalog(data_dir: &Path) -> Result<Catalog> {
    std::fs::create_dir_all(data_dir).map_err(|source| Error::Io {
        what: format!("create {}", data_dir.display()),
        source,
    })?;
    Ok(Catalog::open(&data_dir.join(CATALOG_FILE))?)
}

/// The hub's signing key of a data directory (created on first use).
pub fn local_issuer(data_dir: &Path) -> Result<LocalIssuer> {
    Ok(LocalIssuer::load_or_create(&data_dir.join(KEYS_DIR))?)
}

/// Opens the state and starts serving.
pub async fn start(opts: &HubOptions) -> Result<Started> {
    let catalog = Arc::new(open_catalog(&opts.data_dir)?);
    let issuer = local_issuer(&opts.data_dir)?;
    let mut keys = vec![issuer.trusted_key()];
    if let Some(path) = &opts.trusted_issuers {
        keys.extend(load_trusted_keys(path)?);
    }
    let root = match &opts.data_root {
        Some(url) => DataRoot::parse(url)?,
        None => DataRoot::local(&opts.data_dir.join(TABLES_DIR))?,
    };
    let audit = open_audit(&opts.data_dir, opts.audit_faults.clone(), opts.audit_gather)?;
    let governance = Arc::new(
        citybrain_governance::Governance::open(&opts.data_dir.join(CATALOG_FILE), catalog.clone())
            .map_err(citybrain_gateway::Error::from)?,
    );
    let mask_secret = citybrain_auth::secret(&opts.data_dir.join(KEYS_DIR), MASK_SECRET)?;
    tracing::info!(data_root = %root.url(), keys = keys.len(), "hub state opened");
    let mut hub = Hub::new(
        catalog,
        Arc::new(Engine::new(root)),
        Authenticator::new(keys),
        audit.clone(),
        governance,
        mask_secret,
    )?
    .with_sql_limits(opts.sql_limits.clone())?;
    if let Some(sink) = &opts.audit_sink {
        hub = hub.with_audit_sink(sink.clone());
    }
    let server = citybrain_gateway::serve(hub, opts.listen, opts.limits.clone()).await?;
    Ok(Started {
        server,
        issuer,
        audit,
    })
}

/// The manifests built into the binary.
pub fn embedded_manifests() -> Result<Vec<TableManifest>> {
    Ok(citybrain_catalog::parse_all(EMBEDDED_CATALOG.iter().map(
        |(name, text)| ((*name).to_owned(), (*text).to_owned()),
    ))?)
}

/// Demo start: when the data directory has no catalog yet, generates `persons` residents (with
/// every related table) into the default data root and applies the manifests. Returns the apply
/// report, or `None` when the directory was already initialised.
pub fn prepare_demo(
    data_dir: &Path,
    persons: u64,
    catalog_dir: Option<&Path>,
) -> Result<Option<ApplyReport>> {
    if data_dir.join(CATALOG_FILE).exists() {
        return Ok(None);
    }
    let manifests = match catalog_dir {
        Some(dir) => citybrain_catalog::load_dir(dir)?,
        None => embedded_manifests()?,
    };
    let mut cfg = citybrain_datagen::Config::new(data_dir.join(TABLES_DIR), persons);
    cfg.progress = true;
    let summary = citybrain_datagen::generate(&cfg)?;
    for t in &summary {
        tracing::info!(
            table = t.name,
            rows = t.rows,
            files = t.files,
            "demo data written"
        );
    }
    let report = open_catalog(data_dir)?.apply(&manifests)?;
    Ok(Some(report))
}

/// Demo callers: one token per role, for departments of the demo catalog.
pub const DEMO_CALLERS: &[(Role, &str)] = &[
    (Role::Consumer, "civil-affairs"),
    (Role::Steward, "public-security"),
    (Role::Auditor, "audit"),
    (Role::Admin, "data-bureau"),
];
