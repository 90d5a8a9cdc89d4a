//! One trait for where checkpoints live, so a job's checkpoint code does not
//! care whether it writes to a local folder or (later) to HDFS.

use std::path::PathBuf;

/// A place that holds checkpoint files under relative, `/`-separated paths.
/// Writes are atomic: a reader sees a whole file or none.
pub trait CheckpointStorage: Send + Sync {
    /// Writes `bytes` at `path`, creating folders as needed, replacing any
    /// file there; atomic (a temporary file, then a rename).
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// The whole file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError>;

    /// The names of the entries of folder `dir` (`""` for the root), sorted;
    /// empty if the folder does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;

    /// Removes folder `dir` and everything in it; nothing if it is missing.
    fn remove_dir(&self, dir: &str) -> Result<(), StorageError>;

    /// Where this storage is, for messages: its URL.
    fn url(&self) -> &str;
}

/// A storage call that failed, naming the storage and the path.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL names no storage weir has.
    #[error("checkpoint storage '{url}': {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong, and what to write instead.
        reason: String,
    },
    /// The storage's root could not be opened or created.
    #[error("checkpoint storage {url}: cannot open {}", root.display())]
    Open {
        /// The storage's URL.
        url: String,
        /// Its root folder.
        root: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or folder operation failed.
    #[error("checkpoint storage {url}: cannot {action} {path}")]
    Io {
        /// The storage's URL.
        url: String,
        /// `read`, `write`, `list` or `remove`.
        action: &'static str,
        /// The path inside the storage.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A storage URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// `file:///path`: a local folder.
    File {
        /// The folder, absolute.
        path: String,
    },
}

impl StorageError {
    /// What is wrong, without the URL (for messages that name the field).
    pub fn reason(&self) -> String {
        match self {
            StorageError::Url { reason, .. } => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// Checks a storage URL: `file:///absolute/path` for a local folder. The
/// HDFS NameNode's web UI port, 9870, is recognised as a mistake for its
/// RPC port.
pub fn parse_storage_url(url: &str) -> Result<StorageUrl, StorageError> {
    let bad = |reason: &str| StorageError::Url { url: url.to_string(), reason: reason.to_string() };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file URL needs an absolute path, as in file:///var/lib/weir/checkpoints"));
        }
        return Ok(StorageUrl::File { path: path.to_string() });
    }
    if let Some(rest) = url.strip_prefix("hdfs://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.rsplit_once(':').is_some_and(|(_, port)| port == "9870") {
            return Err(bad("9870 is the NameNode's web UI port; checkpoints talk to its RPC port \
                 (fs.defaultFS in core-site.xml, often 8020 or 9000), as in hdfs://namenode:8020/weir"));
        }
        return Err(bad("hdfs:// storage is not built yet; use a file:/// URL"));
    }
    Err(bad("expected a file:///absolute/path URL"))
}

/// Opens the storage a URL names (see [`parse_storage_url`]); a local
/// folder is created if missing.
pub fn open_storage(url: &str) -> Result<Box<dyn CheckpointStorage>, StorageError> {
    match parse_storage_url(url)? {
        StorageUrl::File { path } => Ok(Box::new(super::FileStorage::open(url, &path)?)),
    }
}
