//! Applications and grants in SQLite (the catalog's database file), and the sharing rules.

use crate::model::{
    AppStatus, Application, ApplyRequest, Decision, Grant, GrantColumn, GrantTerms, Mode,
};
use crate::policy::{compile_filter, table_schema};
use crate::{Error, Result};
use citybrain_catalog::{Catalog, TableManifest, TableStatus};
use citybrain_types::ShareType;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS applications (
    id TEXT PRIMARY KEY,
    table_name TEXT NOT NULL,
    consumer_dept TEXT NOT NULL,
    subject TEXT NOT NULL,
    columns TEXT NOT NULL,
    purpose TEXT NOT NULL,
    business_system TEXT NOT NULL,
    service_matter TEXT NOT NULL,
    days INTEGER NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    decided_by TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    grant_id TEXT
);
CREATE INDEX IF NOT EXISTS applications_table ON applications(table_name, status);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY,
    application_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    consumer_dept TEXT NOT NULL,
    terms TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoke_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS grants_consumer ON grants(consumer_dept, table_name);
";

/// Longest period a grant can run, days.
const MAX_DAYS: u32 = 366;
/// Default smallest group of an aggregate grant.
const DEFAULT_MIN_GROUP: u64 = 10;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> Result<String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Conflict(format!("no randomness: {e}")))?;
    Ok(format!(
        "{prefix}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The sharing workflow over the catalog.
pub struct Governance {
    conn: Mutex<Connection>,
    /// A connection that never writes, asked only for `PRAGMA data_version`.
    watch: Mutex<Connection>,
    catalog: Arc<Catalog>,
    usable: Mutex<Usable>,
}

/// Tables and usable grants already read, valid while the database is unchanged.
///
/// SQLite's `data_version` of a connection changes when any *other* connection commits. A
/// connection kept only for asking it therefore sees every commit: a catalog change, a decision
/// or revocation made here, or a write by another process (the CLI). Memory is trusted only
/// while that version is the one it was read under. The watching connection is never busy with
/// other work, so every call can ask it; one that had to skip the question while a connection
/// was busy would read the database, keep it busy, and make the next call skip it too.
#[derive(Default)]
struct Usable {
    version: Option<i64>,
    entries: HashMap<(String, String, String), (TableManifest, Grant)>,
}

/// Most (department, table, purpose) answers kept.
const USABLE_ENTRIES: usize = 10_000;

impl Governance {
    /// Opens the governance tables in the catalog's database file.
    pub fn open(path: &Path, catalog: Arc<Catalog>) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let watch = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        watch.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self {
            conn: Mutex::new(conn),
            watch: Mutex::new(watch),
            catalog,
            usable: Mutex::new(Usable::default()),
        })
    }

    /// The watching connection's `data_version`: it changes on every commit to the file.
    /// `None` if SQLite cannot say (memory is then not trusted).
    fn version(&self) -> Option<i64> {
        self.watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .ok()
    }

    /// What [`Governance::table_and_grant`] answered for this call before, if nothing was
    /// committed to the database since and the grant has not expired meanwhile. Cheap enough
    /// for an async task: it waits only for another call's version question.
    pub fn remembered_table_and_grant(
        &self,
        dept: &str,
        table: &str,
        purpose: &str,
    ) -> Option<(TableManifest, Grant)> {
        let version = self.version()?;
        let usable = self.usable.lock().unwrap_or_else(|p| p.into_inner());
        if usable.version != Some(version) {
            return None;
        }
        let (m, g) =
            usable
                .entries
                .get(&(dept.to_owned(), table.to_owned(), purpose.to_owned()))?;
        (g.revoked_at.is_none() && g.expires_at > now()).then(|| (m.clone(), g.clone()))
    }

    /// An active table's manifest and the grant a call on it may use ([`Governance::table`]
    /// and [`Governance::usable_grant`] in one trip); a usable grant is remembered.
    pub fn table_and_grant(
        &self,
        dept: &str,
        table: &str,
        purpose: &str,
    ) -> Result<(TableManifest, Result<Grant>)> {
        // Read the version first: a commit after it makes what is read below stale, never
        // wrongly fresh.
        let version = self.version();
        let manifest = self.table(table)?;
        let grant = self.usable_grant(dept, table, purpose);
        if let (Some(version), Ok(g)) = (version, &grant) {
            let mut usable = self.usable.lock().unwrap_or_else(|p| p.into_inner());
            if usable.version != Some(version) || usable.entries.len() >= USABLE_ENTRIES {
                usable.entries.clear();
                usable.version = Some(version);
            }
            usable.entries.insert(
                (dept.to_owned(), table.to_owned(), purpose.to_owned()),
                (manifest.clone(), g.clone()),
            );
        }
        Ok((manifest, grant))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The catalog entry of an active table.
    pub fn table(&self, name: &str) -> Result<TableManifest> {
        let e = self.catalog.get(name)?;
        if e.status != TableStatus::Active {
            return Err(Error::Conflict(format!("table '{name}' is deprecated")));
        }
        Ok(e.manifest)
    }

    /// A consumer applies. Unconditional requests are granted at once; conditional ones wait for
    /// the provider's steward; not-shared tables or columns are refused with their basis.
    pub fn apply(
        &self,
        dept: &str,
        subject: &str,
        req: ApplyRequest,
    ) -> Result<(Application, Option<Grant>)> {
        let m = self.table(&req.table)?;
        if m.share_type == ShareType::NotShared {
            return Err(Error::Denied(format!(
                "table '{}' is not shared: {}",
                m.name, m.share_condition
            )));
        }
        if req.columns.is_empty() {
            return Err(invalid("columns", "name at least one column"));
        }
        let mut seen = HashSet::new();
        let mut all_unconditional = m.share_type == ShareType::Unconditional;
        for c in &req.columns {
            let col = m.column(c).ok_or_else(|| {
                invalid("columns", format!("table '{}' has no column '{c}'", m.name))
            })?;
            if !seen.insert(c.as_str()) {
                return Err(invalid("columns", format!("column '{c}' named twice")));
            }
            match col.share_type {
                ShareType::NotShared => {
                    return Err(Error::Denied(format!(
                        "column '{c}' of '{}' is not shared{}",
                        m.name,
                        if col.description.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", col.description)
                        }
                    )));
                }
                ShareType::Conditional => all_unconditional = false,
                ShareType::Unconditional => {}
            }
        }
        for (field, v) in [
            ("purpose", &req.purpose),
            ("business_system", &req.business_system),
            ("service_matter", &req.service_matter),
        ] {
            if v.trim().is_empty() {
                return Err(invalid(field, "is required"));
            }
        }
        if req.days == 0 || req.days > MAX_DAYS {
            return Err(invalid("days", format!("1 to {MAX_DAYS}")));
        }
        let app = Application {
            id: new_id("app")?,
            request: req,
            consumer_dept: dept.to_owned(),
            subject: subject.to_owned(),
            status: AppStatus::Pending,
            reason: String::new(),
            decided_by: String::new(),
            created_at: now(),
            grant_id: None,
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        insert_app(&tx, &app)?;
        let (app, grant) = if all_unconditional {
            let terms = GrantTerms {
                columns: app
                    .request
                    .columns
                    .iter()
                    .map(|c| GrantColumn {
                        name: c.clone(),
                        mask: None,
                    })
                    .collect(),
                row_filter: None,
                purpose: app.request.purpose.clone(),
                mode: app.request.mode,
                max_calls_per_day: 0,
                max_rows_per_day: 0,
                min_group_size: if app.request.mode == Mode::Aggregate {
                    DEFAULT_MIN_GROUP
                } else {
                    0
                },
            };
            let grant = make_grant(
                &tx,
                &app,
                terms,
                app.request.days,
                "unconditional share",
                "",
            )?;
            (get_app(&tx, &app.id)?, Some(grant))
        } else {
            (app, None)
        };
        tx.commit()?;
        Ok((app, grant))
    }

    /// A steward of the providing department decides a pending application.
    pub fn decide(
        &self,
        steward_dept: &str,
        steward: &str,
        app_id: &str,
        d: Decision,
    ) -> Result<(Application, Option<Grant>)> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let app = get_app(&tx, app_id)?;
        let m = self.table(&app.request.table)?;
        if m.provider_code != steward_dept {
            return Err(Error::Denied(format!(
                "applications for '{}' are decided by stewards of '{}'",
                m.name, m.provider_code
            )));
        }
        if app.status != AppStatus::Pending {
            return Err(Error::Conflict(format!(
                "application '{app_id}' is already {}",
                app.status.as_str()
            )));
        }
        if !d.approve {
            if d.reason.trim().is_empty() {
                return Err(invalid("reason", "a rejection needs a reason"));
            }
            tx.execute(
                "UPDATE applications SET status = 'rejected', reason = ?2, decided_by = ?3 WHERE id = ?1",
                params![app_id, d.reason, steward],
            )?;
            let app = get_app(&tx, app_id)?;
            tx.commit()?;
            return Ok((app, None));
        }
        let columns = if d.columns.is_empty() {
            app.request.columns.clone()
        } else {
            d.columns.clone()
        };
        for c in &columns {
            if !app.request.columns.contains(c) {
                return Err(invalid(
                    "columns",
                    format!("'{c}' was not applied for; approval can only narrow"),
                ));
            }
        }
        let schema = table_schema(&m);
        let mut terms_columns = Vec::new();
        for c in &columns {
            let mask = d
                .masks
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, mk)| mk.clone());
            if let Some(mk) = &mask {
                let f = schema
                    .field_with_name(c)
                    .map_err(|_| invalid("masks", format!("unknown column '{c}'")))?;
                mk.check_type(c, f.data_type())?;
            }
            terms_columns.push(GrantColumn {
                name: c.clone(),
                mask,
            });
        }
        for (c, _) in &d.masks {
            if !columns.contains(c) {
                return Err(invalid(
                    "masks",
                    format!("mask for '{c}', which is not granted"),
                ));
            }
        }
        let row_filter = d
            .row_filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        if let Some(f) = row_filter {
            compile_filter(f, &schema)?;
        }
        let days = if d.days == 0 {
            app.request.days
        } else {
            d.days
        };
        if days > MAX_DAYS {
            return Err(invalid("days", format!("at most {MAX_DAYS}")));
        }
        let terms = GrantTerms {
            columns: terms_columns,
            row_filter: row_filter.map(str::to_owned),
            purpose: app.request.purpose.clone(),
            mode: app.request.mode,
            max_calls_per_day: d.max_calls_per_day,
            max_rows_per_day: d.max_rows_per_day,
            min_group_size: match (app.request.mode, d.min_group_size) {
                (Mode::Aggregate, 0) => DEFAULT_MIN_GROUP,
                (Mode::Aggregate, n) => n,
                _ => 0,
            },
        };
        let grant = make_grant(&tx, &app, terms, days, &d.reason, steward)?;
        let app = get_app(&tx, app_id)?;
        tx.commit()?;
        Ok((app, Some(grant)))
    }

    /// Applications of a consumer department, newest first.
    pub fn applications_of(&self, dept: &str) -> Result<Vec<Application>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{APP_SELECT} WHERE consumer_dept = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map([dept], app_row)?;
        rows.map(|r| r?).collect()
    }

    /// Pending applications for tables a department provides.
    pub fn pending_for(&self, provider: &str) -> Result<Vec<Application>> {
        let tables: HashSet<String> = self
            .catalog
            .all()?
            .into_iter()
            .filter(|e| e.manifest.provider_code == provider)
            .map(|e| e.manifest.name)
            .collect();
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{APP_SELECT} WHERE status = 'pending' ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([], app_row)?;
        Ok(rows
            .map(|r| r?)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|a| tables.contains(&a.request.table))
            .collect())
    }

    /// Grants held by a consumer department.
    pub fn grants_of(&self, dept: &str) -> Result<Vec<Grant>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{GRANT_SELECT} WHERE consumer_dept = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt.query_map([dept], grant_row)?;
        rows.map(|r| r?).collect()
    }

    /// Grants on tables a department provides.
    pub fn grants_on(&self, provider: &str) -> Result<Vec<Grant>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{GRANT_SELECT} ORDER BY created_at DESC, id"))?;
        let rows = stmt.query_map([], grant_row)?;
        let all = rows.map(|r| r?).collect::<Result<Vec<_>>>()?;
        drop(stmt);
        drop(conn);
        Ok(all
            .into_iter()
            .filter(|g| {
                self.catalog
                    .get(&g.table)
                    .is_ok_and(|e| e.manifest.provider_code == provider)
            })
            .collect())
    }

    /// A steward of the providing department revokes a grant; the next call is refused.
    pub fn revoke(&self, steward_dept: &str, grant_id: &str, reason: &str) -> Result<Grant> {
        if reason.trim().is_empty() {
            return Err(invalid("reason", "is required"));
        }
        let conn = self.conn();
        let g = get_grant(&conn, grant_id)?;
        let m = self.catalog.get(&g.table)?.manifest;
        if m.provider_code != steward_dept {
            return Err(Error::Denied(format!(
                "grants on '{}' are revoked by stewards of '{}'",
                m.name, m.provider_code
            )));
        }
        if g.revoked_at.is_some() {
            return Err(Error::Conflict(format!(
                "grant '{grant_id}' is already revoked"
            )));
        }
        conn.execute(
            "UPDATE grants SET revoked_at = ?2, revoke_reason = ?3 WHERE id = ?1",
            params![grant_id, now() as i64, reason],
        )?;
        get_grant(&conn, grant_id)
    }

    /// The grants a department's SQL for `purpose` may use: live `read` and `aggregate` grants
    /// for exactly that purpose, the newest per table. `verify` grants never open SQL.
    pub fn sql_grants(&self, dept: &str, purpose: &str) -> Result<Vec<Grant>> {
        if purpose.trim().is_empty() {
            return Err(Error::Denied("state the purpose of the call".into()));
        }
        let t = now();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut all = self.grants_of(dept)?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        for g in all {
            let live = g.revoked_at.is_none() && g.expires_at > t;
            if live
                && g.terms.purpose == purpose
                && g.terms.mode != Mode::Verify
                && seen.insert(g.table.clone())
            {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// The grant a call may use: the consumer's live grant of `table` for `purpose`, refused with
    /// a reason that names the grant problem (revoked, expired, other purpose) and no data.
    pub fn usable_grant(&self, dept: &str, table: &str, purpose: &str) -> Result<Grant> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "{GRANT_SELECT} WHERE consumer_dept = ?1 AND table_name = ?2 ORDER BY created_at DESC, id"
        ))?;
        let grants = stmt
            .query_map([dept, table], grant_row)?
            .map(|r| r?)
            .collect::<Result<Vec<_>>>()?;
        let t = now();
        let live: Vec<&Grant> = grants
            .iter()
            .filter(|g| g.revoked_at.is_none() && g.expires_at > t)
            .collect();
        if let Some(g) = live.iter().find(|g| g.terms.purpose == purpose) {
            return Ok((*g).clone());
        }
        if purpose.trim().is_empty() {
            return Err(Error::Denied("state the purpose of the call".into()));
        }
        if let Some(g) = live.first() {
            return Err(Error::Denied(format!(
                "grant '{}' of '{table}' is for purpose '{}', not '{purpose}'",
                g.id, g.terms.purpose
            )));
        }
        if let Some(g) = grants.iter().find(|g| g.terms.purpose == purpose) {
            return Err(Error::Denied(match g.revoked_at {
                Some(_) => format!(
                    "grant '{}' of '{table}' was revoked: {}",
                    g.id, g.revoke_reason
                ),
                None => format!("grant '{}' of '{table}' has expired", g.id),
            }));
        }
        Err(Error::Denied(format!(
            "department '{dept}' holds no grant of '{table}'"
        )))
    }
}

fn make_grant(
    tx: &rusqlite::Transaction<'_>,
    app: &Application,
    terms: GrantTerms,
    days: u32,
    note: &str,
    steward: &str,
) -> Result<Grant> {
    let created = now();
    let grant = Grant {
        id: new_id("grant")?,
        application_id: app.id.clone(),
        table: app.request.table.clone(),
        consumer_dept: app.consumer_dept.clone(),
        terms,
        created_at: created,
        expires_at: created + u64::from(days) * 86_400,
        revoked_at: None,
        revoke_reason: String::new(),
    };
    tx.execute(
        "INSERT INTO grants (id, application_id, table_name, consumer_dept, terms, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            grant.id,
            grant.application_id,
            grant.table,
            grant.consumer_dept,
            serde_json::to_string(&grant.terms).expect("terms serialise"),
            grant.created_at as i64,
            grant.expires_at as i64
        ],
    )?;
    tx.execute(
        "UPDATE applications SET status = 'approved', reason = ?2, decided_by = ?3, grant_id = ?4 WHERE id = ?1",
        params![app.id, note, steward, grant.id],
    )?;
    Ok(grant)
}

const APP_SELECT: &str =
    "SELECT id, table_name, consumer_dept, subject, columns, purpose, business_system,
    service_matter, days, mode, status, reason, decided_by, created_at, grant_id FROM applications";
const GRANT_SELECT: &str =
    "SELECT id, application_id, table_name, consumer_dept, terms, created_at,
    expires_at, revoked_at, revoke_reason FROM grants";

fn corrupt(id: &str) -> Error {
    Error::Conflict(format!("governance record '{id}' does not decode"))
}

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Application>> {
    let id: String = r.get(0)?;
    let columns: String = r.get(4)?;
    let mode: String = r.get(9)?;
    let status: String = r.get(10)?;
    let Ok(columns) = serde_json::from_str::<Vec<String>>(&columns) else {
        return Ok(Err(corrupt(&id)));
    };
    let Some(mode) = Mode::parse(&mode) else {
        return Ok(Err(corrupt(&id)));
    };
    let status = match status.as_str() {
        "pending" => AppStatus::Pending,
        "approved" => AppStatus::Approved,
        "rejected" => AppStatus::Rejected,
        _ => return Ok(Err(corrupt(&id))),
    };
    Ok(Ok(Application {
        request: ApplyRequest {
            table: r.get(1)?,
            columns,
            purpose: r.get(5)?,
            business_system: r.get(6)?,
            service_matter: r.get(7)?,
            days: r.get(8)?,
            mode,
        },
        consumer_dept: r.get(2)?,
        subject: r.get(3)?,
        status,
        reason: r.get(11)?,
        decided_by: r.get(12)?,
        created_at: r.get::<_, i64>(13)? as u64,
        grant_id: r.get(14)?,
        id,
    }))
}

fn grant_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Grant>> {
    let id: String = r.get(0)?;
    let terms: String = r.get(4)?;
    let Ok(terms) = serde_json::from_str::<GrantTerms>(&terms) else {
        return Ok(Err(corrupt(&id)));
    };
    Ok(Ok(Grant {
        application_id: r.get(1)?,
        table: r.get(2)?,
        consumer_dept: r.get(3)?,
        terms,
        created_at: r.get::<_, i64>(5)? as u64,
        expires_at: r.get::<_, i64>(6)? as u64,
        revoked_at: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        revoke_reason: r.get(8)?,
        id,
    }))
}

fn insert_app(tx: &rusqlite::Transaction<'_>, a: &Application) -> Result<()> {
    tx.execute(
        "INSERT INTO applications (id, table_name, consumer_dept, subject, columns, purpose,
            business_system, service_matter, days, mode, status, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11)",
        params![
            a.id,
            a.request.table,
            a.consumer_dept,
            a.subject,
            serde_json::to_string(&a.request.columns).expect("strings serialise"),
            a.request.purpose,
            a.request.business_system,
            a.request.service_matter,
            a.request.days,
            a.request.mode.as_str(),
            a.created_at as i64
        ],
    )?;
    Ok(())
}

fn get_app(conn: &Connection, id: &str) -> Result<Application> {
    conn.query_row(&format!("{APP_SELECT} WHERE id = ?1"), [id], app_row)
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "application",
            id: id.into(),
        })?
}

fn get_grant(conn: &Connection, id: &str) -> Result<Grant> {
    conn.query_row(&format!("{GRANT_SELECT} WHERE id = ?1"), [id], grant_row)
        .optional()?
        .ok_or_else(|| Error::NotFound {
            what: "grant",
            id: id.into(),
        })?
}
