//! DataFusion's Parquet metadata cache, answered from the engine's footers first.
//!
//! The engine reads every file's footer and page index before a query is planned (to check the
//! files against the catalog) and keeps them for lookups. Without this, DataFusion would read the
//! same footers again and hold a second copy in its own cache, which at 100 M residents is
//! hundreds of megabytes, and which thrashes when the data's metadata outgrows the cache.
//! Files the engine does not hold fall back to a cache of DataFusion's own, bounded as configured.

use citybrain_engine::Engine;
use datafusion::common::HashMap;
use datafusion::common::TableReference;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::execution::cache::cache_manager::CachedFileMetadataEntry;
use datafusion::execution::cache::default_cache::DefaultCache;
use datafusion::execution::cache::{Cache, CacheEntryInfo};
use datafusion::object_store::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The engine's footers, then DataFusion's own bounded cache.
pub(crate) struct SharedFooters {
    engine: Arc<Engine>,
    own: DefaultCache<Path, CachedFileMetadataEntry>,
}

impl SharedFooters {
    /// Shares `engine`'s footers; others are cached up to `limit` bytes.
    pub(crate) fn new(engine: Arc<Engine>, limit: usize) -> Self {
        Self {
            engine,
            own: DefaultCache::new(limit).with_name("citybrain-sql-footers"),
        }
    }
}

impl Cache<Path, CachedFileMetadataEntry> for SharedFooters {
    /// The engine's footer of the file if it holds one. DataFusion checks the entry's size and
    /// modification time against its own listing and reads the footer itself if they differ
    /// (a file changed between the two listings: read again on each query until the engine's
    /// next listing refreshes its footer, which planning a query does).
    fn get(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        match self.engine.cached_footer(key) {
            Some((object, metadata)) => Some(CachedFileMetadataEntry::new(
                object,
                Arc::new(CachedParquetMetaData::new(metadata)),
            )),
            None => self.own.get(key),
        }
    }

    fn put(&self, key: &Path, value: CachedFileMetadataEntry) -> Option<CachedFileMetadataEntry> {
        self.own.put(key, value)
    }

    fn remove(&self, key: &Path) -> Option<CachedFileMetadataEntry> {
        self.own.remove(key)
    }

    fn contains_key(&self, key: &Path) -> bool {
        self.engine.cached_footer(key).is_some() || self.own.contains_key(key)
    }

    fn len(&self) -> usize {
        self.own.len()
    }

    fn clear(&self) {
        self.own.clear()
    }

    fn name(&self) -> String {
        self.own.name()
    }

    fn cache_limit(&self) -> usize {
        self.own.cache_limit()
    }

    fn update_cache_limit(&self, limit: usize) {
        self.own.update_cache_limit(limit)
    }

    fn cache_ttl(&self) -> Option<Duration> {
        self.own.cache_ttl()
    }

    fn update_cache_ttl(&self, ttl: Option<Duration>) {
        self.own.update_cache_ttl(ttl)
    }

    fn drop_table_entries(&self, table: &TableReference) -> datafusion::common::Result<()> {
        self.own.drop_table_entries(table)
    }

    fn list_entries(&self) -> HashMap<Path, CacheEntryInfo<CachedFileMetadataEntry>> {
        self.own.list_entries()
    }
}
