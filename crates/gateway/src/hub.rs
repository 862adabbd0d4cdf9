//! The hub's state shared by every service: catalog, engine, sign-in and counters.

use crate::call::CallContext;
use crate::guard::{AuditSink, Counters};
use crate::{Error, Result};
use citybrain_audit::AuditLog;
use citybrain_auth::{Authenticator, Principal};
use citybrain_catalog::Catalog;
use citybrain_catalog::TableManifest;
use citybrain_engine::Engine;
use citybrain_governance::Governance;
use citybrain_governance::{Grant, Policy};
use citybrain_query::{Analytics, Limits as SqlLimits};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::Request;

/// Most compiled policies kept.
const POLICIES: usize = 10_000;

/// The hub's state shared by every service.
pub struct Hub {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) auth: Authenticator,
    pub(crate) counters: Arc<Counters>,
    pub(crate) audit: AuditLog,
    pub(crate) governance: Arc<Governance>,
    pub(crate) mask_secret: [u8; 32],
    pub(crate) sink: Arc<dyn AuditSink>,
    pub(crate) analytics: Arc<Analytics>,
    /// Compiled policies by grant id, reused while the grant and its table are unchanged.
    policies: Mutex<HashMap<String, (TableManifest, Arc<Policy>)>>,
}

impl Hub {
    /// A hub over its parts, with governed SQL under default limits.
    pub fn new(
        catalog: Arc<Catalog>,
        engine: Arc<Engine>,
        auth: Authenticator,
        audit: AuditLog,
        governance: Arc<Governance>,
        mask_secret: [u8; 32],
    ) -> Result<Self> {
        let analytics = Arc::new(Analytics::new(engine.clone(), SqlLimits::default())?);
        Ok(Self {
            catalog,
            engine,
            analytics,
            policies: Mutex::new(HashMap::new()),
            auth,
            counters: Arc::new(Counters::default()),
            sink: Arc::new(audit.clone()),
            audit,
            governance,
            mask_secret,
        })
    }

    /// Governed SQL under other limits (memory per query, answer size, metadata cache, cores).
    pub fn with_sql_limits(mut self, limits: SqlLimits) -> Result<Self> {
        self.analytics = Arc::new(Analytics::new(self.engine.clone(), limits)?);
        Ok(self)
    }

    /// Sends call records to another sink than the audit log. For benchmarks that compare the
    /// durable log with a sink of their own; a hub that serves departments never does this.
    pub fn with_audit_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sink = sink;
        self
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The serving counters (calls, shed, panics, deadlines).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// A grant compiled for its table. Compiling parses and plans the row filter, so the result
    /// is kept; a grant's terms do not change after its decision, and revocation and expiry are
    /// checked on every call before a policy is asked for.
    pub(crate) fn policy(&self, grant: Grant, manifest: &TableManifest) -> Result<Arc<Policy>> {
        let mut cache = self.policies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, p)) = cache.get(&grant.id)
            && p.grant == grant
            && m == manifest
        {
            return Ok(p.clone());
        }
        if cache.len() >= POLICIES {
            // Grants of the past (revoked, expired, superseded) are not kept forever.
            cache.clear();
        }
        let id = grant.id.clone();
        let p = Arc::new(Policy::compile(grant, manifest, &self.mask_secret)?);
        cache.insert(id, (manifest.clone(), p.clone()));
        Ok(p)
    }

    /// An active table's manifest and the caller's usable grant of it for `purpose` (the grant
    /// problem, if any, is left to the caller to raise after judging the keys): from memory
    /// while the database is unchanged, else one trip to it.
    pub(crate) async fn table_and_grant(
        &self,
        dept: &str,
        table: &str,
        purpose: &str,
    ) -> Result<(TableManifest, citybrain_governance::Result<Grant>)> {
        let gov = self.governance.clone();
        if let Some((manifest, grant)) = gov.remembered_table_and_grant(dept, table, purpose) {
            return Ok((manifest, Ok(grant)));
        }
        let (dept, table, purpose) = (dept.to_owned(), table.to_owned(), purpose.to_owned());
        self.blocking(move || gov.table_and_grant(&dept, &table, &purpose))
            .await
    }

    /// The verified caller of a request, also noted for the call's audit record.
    pub(crate) fn principal<T>(&self, req: &Request<T>) -> Result<Principal> {
        let header = req
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap_or("\u{0}"));
        let p = self.auth.verify_header(header)?;
        CallContext::of(req).principal(&p);
        Ok(p)
    }

    /// Runs blocking work (SQLite) off the async workers.
    pub(crate) async fn blocking<T, E, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Into<Error> + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
            .map_err(Into::into)
    }
}
