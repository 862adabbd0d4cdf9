//! The data root: an object store and the prefix the hub's datasets live under.

use crate::{Error, Result};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use std::path::Path;
use std::sync::Arc;

/// Where the hub's Parquet datasets live.
#[derive(Clone)]
pub struct DataRoot {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    /// The same store when the root is a local directory, for reads from the page cache.
    local: Option<Arc<object_store::local::LocalFileSystem>>,
}

impl std::fmt::Debug for DataRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataRoot").field("url", &self.url).finish()
    }
}

impl DataRoot {
    /// A data root from a URL (`file:///srv/data`) or a local path.
    pub fn parse(url_or_path: &str) -> Result<Self> {
        let err = |reason: String| Error::Root {
            url: url_or_path.to_owned(),
            reason,
        };
        if !url_or_path.contains("://") {
            return Self::local(Path::new(url_or_path));
        }
        let url = url::Url::parse(url_or_path).map_err(|e| err(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| err("not a local file URL".into()))?;
            return Self::local(&path);
        }
        let (store, prefix) = object_store::parse_url(&url).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            store: Arc::from(store),
            prefix,
            url: url_or_path.to_owned(),
            local: None,
        })
    }

    /// A data root on a local directory (created if missing).
    pub fn local(dir: &Path) -> Result<Self> {
        let err = |reason: String| Error::Root {
            url: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let abs = dir.canonicalize().map_err(|e| err(e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&abs)
            .map_err(|e| err(e.to_string()))?;
        let store = Arc::new(store);
        Ok(Self {
            store: store.clone(),
            prefix: ObjectPath::default(),
            url: format!("file://{}", abs.display()),
            local: Some(store),
        })
    }

    /// The object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The object path of a dataset (a relative `a/b` path from the catalog).
    pub fn dataset_path(&self, dataset: &str) -> ObjectPath {
        dataset
            .split('/')
            .fold(self.prefix.clone(), |p, seg| p.join(seg))
    }

    /// The file an object is stored in, when the root is a local directory.
    pub(crate) fn local_file(&self, location: &ObjectPath) -> Option<std::path::PathBuf> {
        self.local.as_ref()?.path_to_filesystem(location).ok()
    }

    /// The URL as configured, for operators' logs.
    pub fn url(&self) -> &str {
        &self.url
    }
}
