//! Checkpoints in HDFS, through the NameNode's RPC port with hdfs-native (no
//! Hadoop install). hdfs-native is async; the engine loop is not, so the
//! storage owns a small current-thread tokio runtime and blocks on it for
//! each call. hdfs-native has no timeout of its own for a NameNode that does
//! not answer (it retries for minutes), so every call here is bounded by the
//! storage's `call_timeout`.

use super::storage::{CheckpointStorage, StorageError};
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long one storage call may take unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A folder in HDFS holding checkpoints.
pub struct HdfsStorage {
    url: String,
    /// The folder, absolute, without a trailing `/` (empty for the root).
    base: String,
    client: Client,
    runtime: tokio::runtime::Runtime,
    call_timeout: Duration,
    /// Numbers temporary files, so concurrent writes never share one.
    temp: AtomicU64,
}

impl HdfsStorage {
    /// Connects to the NameNode at `namenode` (`host:port`, its RPC port)
    /// and creates the folder at absolute `path` if missing; `url` names the
    /// storage in messages. Each storage call, this one included, fails with
    /// [`StorageError::Timeout`] if it takes longer than `call_timeout`.
    pub fn open(
        url: &str,
        namenode: &str,
        path: &str,
        call_timeout: Duration,
    ) -> Result<HdfsStorage, StorageError> {
        let hdfs_error = |message: String| StorageError::Hdfs {
            url: url.to_string(),
            action: "open",
            path: path.to_string(),
            message,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| hdfs_error(format!("cannot start its I/O runtime: {e}")))?;
        let client = ClientBuilder::new()
            .with_url(format!("hdfs://{namenode}"))
            .with_io_runtime(runtime.handle().clone())
            .build()
            .map_err(|e| hdfs_error(e.to_string()))?;
        let storage = HdfsStorage {
            url: url.to_string(),
            base: path.trim_end_matches('/').to_string(),
            client,
            runtime,
            call_timeout,
            temp: AtomicU64::new(0),
        };
        let base = storage.absolute("");
        storage.call("open", "", async { storage.client.mkdirs(&base, 0o755, true).await })?;
        Ok(storage)
    }

    /// The longest one storage call may take.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The absolute HDFS path of relative `path` (`""` is the folder).
    fn absolute(&self, path: &str) -> String {
        match (self.base.is_empty(), path.is_empty()) {
            (true, true) => "/".to_string(),
            (false, true) => self.base.clone(),
            (_, false) => format!("{}/{path}", self.base),
        }
    }

    /// `path` checked to stay inside the storage's folder: relative, with no
    /// `.`, `..` or empty parts.
    fn inside(&self, action: &'static str, path: &str, may_be_root: bool) -> Result<String, StorageError> {
        let fine = if path.is_empty() {
            may_be_root
        } else {
            path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        };
        if fine {
            Ok(self.absolute(path))
        } else {
            Err(self.error(action, path, "the path must be relative and stay inside the storage".into()))
        }
    }

    fn error(&self, action: &'static str, path: &str, message: String) -> StorageError {
        StorageError::Hdfs { url: self.url.clone(), action, path: path.to_string(), message }
    }

    /// Runs `work` on the storage's runtime, bounded by the call timeout.
    fn call<T>(
        &self,
        action: &'static str,
        path: &str,
        work: impl Future<Output = Result<T, HdfsError>>,
    ) -> Result<T, StorageError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would stall (or panic) the caller's runtime.
            return Err(self.error(
                action,
                path,
                "called from inside an async runtime; call it from a plain thread".into(),
            ));
        }
        match self.runtime.block_on(async { tokio::time::timeout(self.call_timeout, work).await }) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(action, path, e.to_string())),
            Err(_elapsed) => Err(StorageError::Timeout {
                url: self.url.clone(),
                action,
                path: path.to_string(),
                after: self.call_timeout,
            }),
        }
    }
}

impl HdfsStorage {
    /// Writes `bytes` to a temporary file, then renames it to `path`: over
    /// whatever is there (`overwrite`), or not, when the NameNode refuses
    /// a target that exists. Returns whether it was put there.
    fn put(&self, path: &str, bytes: &[u8], overwrite: bool) -> Result<bool, StorageError> {
        let target = self.inside("write", path, false)?;
        let n = self.temp.fetch_add(1, Ordering::Relaxed);
        let temp = format!("{target}.tmp-{}-{n}", std::process::id());
        let data = bytes::Bytes::copy_from_slice(bytes);
        let written = self.call("write", path, async {
            let options = WriteOptions::default().overwrite(true).create_parent(true);
            let mut file = self.client.create(&temp, options).await?;
            file.write_bytes(data).await?;
            file.close().await?;
            match self.client.rename(&temp, &target, overwrite).await {
                Ok(()) => Ok(true),
                Err(e) if overwrite => Err(e),
                Err(e) => match self.client.get_file_info(&target).await {
                    Ok(_) => {
                        self.client.delete(&temp, false).await?;
                        Ok(false)
                    }
                    Err(_) => Err(e),
                },
            }
        });
        if let Err(StorageError::Hdfs { .. }) = written {
            // Best effort, and bounded too: the temporary file may not exist.
            // Not after a timeout: the NameNode would not answer this either.
            let _ = self.call("write", path, async { self.client.delete(&temp, false).await });
        }
        written
    }
}

impl CheckpointStorage for HdfsStorage {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.put(path, bytes, true).map(|_| ())
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        self.put(path, bytes, false)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, StorageError> {
        let file = self.inside("read", path, false)?;
        self.call("read", path, async {
            let reader = self.client.read(&file).await?;
            let length = reader.file_length();
            if length == 0 {
                return Ok(Vec::new());
            }
            Ok(reader.read_range(0, length).await?.to_vec())
        })
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        let folder = self.inside("list", dir, true)?;
        let statuses = self.call("list", dir, async {
            match self.client.list_status(&folder, false).await {
                Err(HdfsError::FileNotFound(_)) => Ok(Vec::new()),
                other => other,
            }
        })?;
        let mut names: Vec<String> = statuses
            .iter()
            .filter_map(|status| status.path.rsplit('/').next())
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    fn remove_dir(&self, dir: &str) -> Result<(), StorageError> {
        let folder = self.inside("remove", dir, false)?;
        // `false` back from the NameNode means there was nothing to remove.
        self.call("remove", dir, async { self.client.delete(&folder, true).await }).map(|_| ())
    }

    fn url(&self) -> &str {
        &self.url
    }
}
