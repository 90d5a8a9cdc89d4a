//! Checkpoints: where a job's state is kept so that a restarted job goes on
//! where it stopped. This module holds the storage (behind one trait: a local
//! folder or a folder in HDFS) and the file format (versioned and
//! checksummed, made complete by a manifest written last).

mod file;
pub mod forked;
mod format;
mod hdfs;
mod storage;

pub use file::FileStorage;
pub use format::{
    CHECKPOINT_VERSION, Checkpoint, Manifest, ManifestEntry, ReadError, checkpoint_ids, decode_file,
    encode_file, latest_complete, read_complete, write_complete, write_files, write_manifest,
};
pub use hdfs::{DEFAULT_CALL_TIMEOUT, HdfsStorage};
pub use storage::{
    CheckpointStorage, StorageError, StorageUrl, open_storage, open_storage_with, parse_storage_url,
};

#[cfg(test)]
mod tests;
