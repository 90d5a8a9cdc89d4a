//! One trait for where checkpoints live, so a job's checkpoint code does not
//! care whether it writes to a local folder or to HDFS.

use std::path::PathBuf;
use std::time::Duration;

/// A place that holds checkpoint files under relative, `/`-separated paths.
/// Writes are atomic: a reader sees a whole file or none.
pub trait CheckpointStorage: Send + Sync {
    /// Writes `bytes` at `path`, creating folders as needed, replacing any
    /// file there; atomic (a temporary file, then a rename).
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError>;

    /// Writes `bytes` at `path` unless a file is there already, atomically:
    /// of writers racing for one path, exactly one writes. Returns whether
    /// this call wrote (members of a consumer group agree this way on
    /// what the first of them recorded).
    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<bool, StorageError>;

    /// The whole file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError>;

    /// The names of the entries of folder `dir` (`""` for the root), sorted;
    /// empty if the folder does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;

    /// Removes folder `dir` and everything in it; nothing if it is missing.
    /// Atomic to readers: a listing shows the folder whole or not at all
    /// (members of a group read each other's checkpoints while their
    /// retention removes old ones).
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
    /// An HDFS call failed (the NameNode or a DataNode said no, or could
    /// not be reached).
    #[error("checkpoint storage {url}: cannot {action} {path}: {message}")]
    Hdfs {
        /// The storage's URL.
        url: String,
        /// `open`, `read`, `write`, `list` or `remove`.
        action: &'static str,
        /// The path inside the storage.
        path: String,
        /// What HDFS said.
        message: String,
    },
    /// A storage call got no answer in time (for HDFS: the NameNode is down
    /// or unreachable).
    #[error(
        "checkpoint storage {url}: {action} {path} timed out after {after:?} (is the NameNode up and reachable?)"
    )]
    Timeout {
        /// The storage's URL.
        url: String,
        /// `open`, `read`, `write`, `list` or `remove`.
        action: &'static str,
        /// The path inside the storage.
        path: String,
        /// The time the call was given.
        after: Duration,
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
    /// `hdfs://host:port/path`: a folder in HDFS.
    Hdfs {
        /// The NameNode's RPC address, `host:port`.
        namenode: String,
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

/// Checks a storage URL: `file:///absolute/path` for a local folder,
/// `hdfs://host:port/absolute/path` for a folder in HDFS, the port being the
/// NameNode's RPC port. Its web UI port, 9870, is recognised as a mistake.
pub fn parse_storage_url(url: &str) -> Result<StorageUrl, StorageError> {
    let bad = |reason: &str| StorageError::Url { url: url.to_string(), reason: reason.to_string() };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad("a file URL needs an absolute path, as in file:///var/lib/weir/checkpoints"));
        }
        return Ok(StorageUrl::File { path: path.to_string() });
    }
    if let Some(rest) = url.strip_prefix("hdfs://") {
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        let Some((host, port)) = authority.rsplit_once(':') else {
            return Err(bad("an hdfs URL needs the NameNode's RPC port (fs.defaultFS in core-site.xml, \
                 often 8020 or 9000), as in hdfs://namenode:8020/weir"));
        };
        if port == "9870" {
            return Err(bad("9870 is the NameNode's web UI port; checkpoints talk to its RPC port \
                 (fs.defaultFS in core-site.xml, often 8020 or 9000), as in hdfs://namenode:8020/weir"));
        }
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(
                "an hdfs URL needs a NameNode host and RPC port, as in hdfs://namenode:8020/weir",
            ));
        }
        if path.is_empty() || path.contains(['?', '#']) {
            return Err(bad(
                "an hdfs URL needs an absolute folder path after the port, as in hdfs://namenode:8020/weir",
            ));
        }
        return Ok(StorageUrl::Hdfs { namenode: authority.to_string(), path: path.to_string() });
    }
    Err(bad("expected a file:///absolute/path or hdfs://namenode:port/absolute/path URL"))
}

/// Opens the storage a URL names (see [`parse_storage_url`]); its folder is
/// created if missing. An HDFS storage bounds each call by
/// [`DEFAULT_CALL_TIMEOUT`](super::hdfs::DEFAULT_CALL_TIMEOUT).
pub fn open_storage(url: &str) -> Result<Box<dyn CheckpointStorage>, StorageError> {
    open_storage_with(url, super::hdfs::DEFAULT_CALL_TIMEOUT)
}

/// [`open_storage`], an HDFS storage bounding each call by `call_timeout`
/// (`[checkpoint] storage_timeout`).
pub fn open_storage_with(
    url: &str,
    call_timeout: Duration,
) -> Result<Box<dyn CheckpointStorage>, StorageError> {
    match parse_storage_url(url)? {
        StorageUrl::File { path } => Ok(Box::new(super::FileStorage::open(url, &path)?)),
        StorageUrl::Hdfs { namenode, path } => {
            Ok(Box::new(super::HdfsStorage::open(url, &namenode, &path, call_timeout)?))
        }
    }
}
