//! The SQLite store behind the catalog.

use crate::manifest::TableManifest;
use crate::{Error, Result};
use citybrain_types::{Library, ShareType, rfc3339};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS departments (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tables (
    name TEXT PRIMARY KEY,
    resource_code TEXT NOT NULL UNIQUE,
    provider_code TEXT NOT NULL REFERENCES departments(code),
    library TEXT NOT NULL,
    share_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'deprecated')),
    deprecation_reason TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    search TEXT NOT NULL,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tables_provider ON tables(provider_code);
CREATE TABLE IF NOT EXISTS columns (
    table_name TEXT NOT NULL REFERENCES tables(name) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    data_type TEXT NOT NULL,
    share_type TEXT NOT NULL,
    sensitivity TEXT NOT NULL,
    PRIMARY KEY (table_name, name)
);
";

/// Whether a table is in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStatus {
    /// Listed and usable.
    Active,
    /// Withdrawn by its provider; hidden from listings unless asked for.
    Deprecated,
}

impl TableStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TableStatus::Active => "active",
            TableStatus::Deprecated => "deprecated",
        }
    }
}

/// A table as the catalog holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableEntry {
    /// The steward's description.
    pub manifest: TableManifest,
    /// Active or deprecated.
    pub status: TableStatus,
    /// Why it was deprecated.
    pub deprecation_reason: String,
    /// Incremented by every change.
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// What [`Catalog::apply`] did, table names per outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// New tables.
    pub created: Vec<String>,
    /// Tables whose description changed.
    pub changed: Vec<String>,
    /// Tables already exactly as described.
    pub unchanged: Vec<String>,
}

/// Filters of [`Catalog::list`]; `None` means any.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Provider department code.
    pub department: Option<String>,
    /// Share type of the table.
    pub share_type: Option<ShareType>,
    /// Library.
    pub library: Option<Library>,
    /// Case-insensitive substring of name, titles, abstract, resource code or provider.
    pub text: Option<String>,
    /// Include deprecated tables.
    pub include_deprecated: bool,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The entries, by name.
    pub tables: Vec<TableEntry>,
    /// Token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
    /// Entries matching the filter over all pages.
    pub total: u64,
}

/// Whole-catalog counts for the platform figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogCounts {
    /// Departments providing at least one active table.
    pub source_departments: u64,
    /// Active tables.
    pub tables: u64,
    /// Columns of active tables.
    pub data_items: u64,
}

/// The catalog: one SQLite database file.
pub struct Catalog {
    conn: Mutex<Connection>,
}

impl Catalog {
    /// Opens (creating if needed) the catalog database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Catalog writes are rare and must survive a crash: fsync on every commit.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies validated manifests idempotently, in one transaction: new tables are created,
    /// changed ones updated (version + 1), equal ones left alone.
    pub fn apply(&self, manifests: &[TableManifest]) -> Result<ApplyReport> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut report = ApplyReport::default();
        for m in manifests {
            m.validate("manifest")?;
            match get_tx(&tx, &m.name)? {
                None => {
                    insert(&tx, m)?;
                    report.created.push(m.name.clone());
                }
                Some(old) if old.manifest == *m => report.unchanged.push(m.name.clone()),
                Some(old) => {
                    update(&tx, m, old.version)?;
                    report.changed.push(m.name.clone());
                }
            }
        }
        tx.commit()?;
        Ok(report)
    }

    /// Registers a new table; refuses an existing name or resource code.
    pub fn register(&self, m: &TableManifest) -> Result<TableEntry> {
        m.validate("request")?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if get_tx(&tx, &m.name)?.is_some() {
            return Err(Error::AlreadyExists {
                what: "table",
                value: m.name.clone(),
            });
        }
        insert(&tx, m)?;
        let entry = get_tx(&tx, &m.name)?.ok_or_else(|| Error::TableNotFound {
            name: m.name.clone(),
        })?;
        tx.commit()?;
        Ok(entry)
    }

    /// Replaces a table's description. Returns the entry and whether anything changed.
    pub fn update(&self, m: &TableManifest) -> Result<(TableEntry, bool)> {
        m.validate("request")?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let old = get_tx(&tx, &m.name)?.ok_or_else(|| Error::TableNotFound {
            name: m.name.clone(),
        })?;
        if old.manifest == *m {
            return Ok((old, false));
        }
        update(&tx, m, old.version)?;
        let entry = get_tx(&tx, &m.name)?.ok_or_else(|| Error::TableNotFound {
            name: m.name.clone(),
        })?;
        tx.commit()?;
        Ok((entry, true))
    }

    /// Marks a table deprecated with a reason.
    pub fn deprecate(&self, name: &str, reason: &str) -> Result<TableEntry> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tables SET status = 'deprecated', deprecation_reason = ?2,
                version = version + 1, updated_at = ?3 WHERE name = ?1",
            params![name, reason, now()],
        )?;
        if n == 0 {
            return Err(Error::TableNotFound { name: name.into() });
        }
        let entry = get_tx(&tx, name)?.ok_or_else(|| Error::TableNotFound { name: name.into() })?;
        tx.commit()?;
        Ok(entry)
    }

    /// One table by exact name.
    pub fn get(&self, name: &str) -> Result<TableEntry> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        get_tx(&tx, name)?.ok_or_else(|| Error::TableNotFound { name: name.into() })
    }

    /// Every table (active and deprecated), by name.
    pub fn all(&self) -> Result<Vec<TableEntry>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY name"))?;
        let rows = stmt.query_map([], row_to_parts)?;
        rows.map(|r| parts_to_entry(r?)).collect()
    }

    /// A page of tables matching `filter`, ordered by name. `page_token` continues a listing.
    pub fn list(
        &self,
        filter: &ListFilter,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page> {
        let after = page_token.map(decode_token).transpose()?;
        let mut clauses = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if !filter.include_deprecated {
            clauses.push("status = 'active'".to_owned());
        }
        if let Some(d) = &filter.department {
            args.push(d.clone());
            clauses.push(format!("provider_code = ?{}", args.len()));
        }
        if let Some(s) = filter.share_type {
            args.push(s.as_str().to_owned());
            clauses.push(format!("share_type = ?{}", args.len()));
        }
        if let Some(l) = filter.library {
            args.push(l.as_str().to_owned());
            clauses.push(format!("library = ?{}", args.len()));
        }
        if let Some(t) = &filter.text {
            args.push(format!("%{}%", escape_like(&t.to_lowercase())));
            clauses.push(format!("search LIKE ?{} ESCAPE '\\'", args.len()));
        }
        let filter_sql = if clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            clauses.join(" AND ")
        };
        let conn = self.conn();
        let total: i64 = conn.query_row(
            &format!("SELECT count(*) FROM tables WHERE {filter_sql}"),
            rusqlite::params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let total = total as u64;
        let mut page_args = args.clone();
        let mut sql = format!("{SELECT} WHERE {filter_sql}");
        if let Some(a) = after {
            page_args.push(a);
            sql.push_str(&format!(" AND name > ?{}", page_args.len()));
        }
        let size = page_size.clamp(1, 500);
        sql.push_str(&format!(" ORDER BY name LIMIT {}", size + 1));
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(page_args.iter()), row_to_parts)?;
        let mut tables = rows
            .map(|r| parts_to_entry(r?))
            .collect::<Result<Vec<_>>>()?;
        let next_page_token = if tables.len() > size as usize {
            tables.truncate(size as usize);
            tables.last().map(|t| encode_token(&t.manifest.name))
        } else {
            None
        };
        Ok(Page {
            tables,
            next_page_token,
            total,
        })
    }

    /// Departments, tables and data items of active tables.
    pub fn counts(&self) -> Result<CatalogCounts> {
        let conn = self.conn();
        let (departments, tables): (i64, i64) = conn.query_row(
            "SELECT count(DISTINCT provider_code), count(*) FROM tables WHERE status = 'active'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let items: i64 = conn.query_row(
            "SELECT count(*) FROM columns c JOIN tables t ON t.name = c.table_name
             WHERE t.status = 'active'",
            [],
            |r| r.get(0),
        )?;
        Ok(CatalogCounts {
            source_departments: departments as u64,
            tables: tables as u64,
            data_items: items as u64,
        })
    }
}

const SELECT: &str =
    "SELECT name, status, deprecation_reason, version, created_at, updated_at, spec FROM tables";

type Parts = (String, String, String, i64, String, String, String);

fn row_to_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<Parts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn parts_to_entry(
    (name, status, reason, version, created, updated, spec): Parts,
) -> Result<TableEntry> {
    let manifest: TableManifest =
        serde_json::from_str(&spec).map_err(|_| Error::Corrupt { name: name.clone() })?;
    let status = match status.as_str() {
        "active" => TableStatus::Active,
        "deprecated" => TableStatus::Deprecated,
        _ => return Err(Error::Corrupt { name }),
    };
    Ok(TableEntry {
        manifest,
        status,
        deprecation_reason: reason,
        version: version as u64,
        created_at: created,
        updated_at: updated,
    })
}

fn get_tx(tx: &Transaction<'_>, name: &str) -> Result<Option<TableEntry>> {
    tx.query_row(&format!("{SELECT} WHERE name = ?1"), [name], row_to_parts)
        .optional()?
        .map(parts_to_entry)
        .transpose()
}

fn insert(tx: &Transaction<'_>, m: &TableManifest) -> Result<()> {
    upsert_department(tx, m)?;
    let ts = now();
    let res = tx.execute(
        "INSERT INTO tables (name, resource_code, provider_code, library, share_type, status,
            version, created_at, updated_at, search, spec)
         VALUES (?1, ?2, ?3, ?4, ?5, 'active', 1, ?6, ?6, ?7, ?8)",
        params![
            m.name,
            m.resource_code,
            m.provider_code,
            m.library.as_str(),
            m.share_type.as_str(),
            ts,
            search_text(m),
            spec_json(m),
        ],
    );
    map_unique(res, m)?;
    write_columns(tx, m)
}

fn update(tx: &Transaction<'_>, m: &TableManifest, old_version: u64) -> Result<()> {
    upsert_department(tx, m)?;
    let res = tx.execute(
        "UPDATE tables SET resource_code = ?2, provider_code = ?3, library = ?4, share_type = ?5,
            version = ?6, updated_at = ?7, search = ?8, spec = ?9 WHERE name = ?1",
        params![
            m.name,
            m.resource_code,
            m.provider_code,
            m.library.as_str(),
            m.share_type.as_str(),
            old_version as i64 + 1,
            now(),
            search_text(m),
            spec_json(m),
        ],
    );
    map_unique(res, m)?;
    tx.execute("DELETE FROM columns WHERE table_name = ?1", [&m.name])?;
    write_columns(tx, m)
}

fn map_unique(res: rusqlite::Result<usize>, m: &TableManifest) -> Result<()> {
    match res {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(Error::AlreadyExists {
                what: "resource code",
                value: m.resource_code.clone(),
            })
        }
        other => other.map(|_| ()).map_err(Error::from),
    }
}

fn upsert_department(tx: &Transaction<'_>, m: &TableManifest) -> Result<()> {
    tx.execute(
        "INSERT INTO departments (code, name) VALUES (?1, ?2)
         ON CONFLICT(code) DO UPDATE SET name = excluded.name",
        params![m.provider_code, m.provider_name],
    )?;
    Ok(())
}

fn write_columns(tx: &Transaction<'_>, m: &TableManifest) -> Result<()> {
    let mut stmt = tx.prepare(
        "INSERT INTO columns (table_name, position, name, data_type, share_type, sensitivity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, c) in m.columns.iter().enumerate() {
        stmt.execute(params![
            m.name,
            i as i64,
            c.name,
            c.data_type.as_str(),
            c.share_type.as_str(),
            c.sensitivity.as_str()
        ])?;
    }
    Ok(())
}

fn spec_json(m: &TableManifest) -> String {
    serde_json::to_string(m).expect("a manifest always serialises")
}

fn search_text(m: &TableManifest) -> String {
    [
        m.name.as_str(),
        &m.resource_code,
        &m.title,
        &m.title_en,
        &m.summary,
        &m.provider_code,
        &m.provider_name,
    ]
    .join("\n")
    .to_lowercase()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn now() -> String {
    rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

// Page tokens are the last name of the page, hex-encoded so callers treat them as opaque.
fn encode_token(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<String> {
    if !token.len().is_multiple_of(2) || token.len() > 256 {
        return Err(Error::BadPageToken);
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).map_err(|_| Error::BadPageToken))
        .collect::<Result<Vec<u8>>>()?;
    String::from_utf8(bytes).map_err(|_| Error::BadPageToken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_manifest, tests::SAMPLE};

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn apply_is_idempotent_and_persistent() {
        let (dir, c) = catalog();
        let m = parse_manifest("m.toml", SAMPLE).unwrap();
        let r = c.apply(std::slice::from_ref(&m)).unwrap();
        assert_eq!(r.created, vec!["hrss.pension"]);
        let r = c.apply(std::slice::from_ref(&m)).unwrap();
        assert_eq!(r.unchanged, vec!["hrss.pension"]);
        let mut m2 = m.clone();
        m2.title_en = "Pension payments (monthly)".into();
        let r = c.apply(&[m2]).unwrap();
        assert_eq!(r.changed, vec!["hrss.pension"]);
        drop(c);
        let c = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let e = c.get("hrss.pension").unwrap();
        assert_eq!(e.version, 2);
        assert_eq!(e.manifest.title_en, "Pension payments (monthly)");
        assert_eq!(c.counts().unwrap().data_items, 2);
    }

    #[test]
    fn register_refuses_duplicates() {
        let (_d, c) = catalog();
        let m = parse_manifest("m.toml", SAMPLE).unwrap();
        c.register(&m).unwrap();
        assert!(matches!(
            c.register(&m),
            Err(Error::AlreadyExists { what: "table", .. })
        ));
        let mut other = m.clone();
        other.name = "hrss.other".into();
        assert!(matches!(
            c.register(&other),
            Err(Error::AlreadyExists {
                what: "resource code",
                ..
            })
        ));
    }

    #[test]
    fn list_pages_and_filters() {
        let (_d, c) = catalog();
        let base = parse_manifest("m.toml", SAMPLE).unwrap();
        let ms: Vec<_> = (0..7)
            .map(|i| {
                let mut m = base.clone();
                m.name = format!("hrss.t{i}");
                m.resource_code = format!("D14-{i:04}");
                m
            })
            .collect();
        c.apply(&ms).unwrap();
        let mut seen = Vec::new();
        let mut token = None;
        loop {
            let p = c.list(&ListFilter::default(), 3, token.as_deref()).unwrap();
            assert_eq!(p.total, 7);
            seen.extend(p.tables.into_iter().map(|t| t.manifest.name));
            token = p.next_page_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 7);
        let f = ListFilter {
            text: Some("T3".into()),
            ..Default::default()
        };
        assert_eq!(c.list(&f, 10, None).unwrap().total, 1);
        c.deprecate("hrss.t3", "replaced").unwrap();
        assert_eq!(c.list(&f, 10, None).unwrap().total, 0);
        assert!(matches!(
            c.list(&f, 10, Some("zz")),
            Err(Error::BadPageToken)
        ));
    }
}
