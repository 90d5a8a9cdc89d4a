//! The checkpoint file format, and what makes a checkpoint complete.
//!
//! Every file is `WEIRCKPT`, a format version (u16), the payload's length
//! (u64), the payload, and the SHA-256 of everything before it; all
//! integers little-endian. A checkpoint is a folder
//! `<job>/chk-<id, 20 digits>/` of such files, made complete by its
//! `MANIFEST`, written last, which lists each file with its size and hash.
//! A reader trusts nothing the manifest does not vouch for: a checkpoint
//! without a manifest, or with a file that does not match it, is not
//! complete, and the one before it is used.

use super::storage::{CheckpointStorage, StorageError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version this weir writes and reads.
pub const CHECKPOINT_VERSION: u16 = 1;

const MAGIC: &[u8; 8] = b"WEIRCKPT";
const HEADER: usize = 8 + 2 + 8;
const TRAILER: usize = 32;
const MANIFEST: &str = "MANIFEST";

/// What makes a checkpoint complete: the files it holds, each with its
/// size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version.
    pub version: u16,
    /// The job's name.
    pub job: String,
    /// The checkpoint's id: they increase over a job's life.
    pub checkpoint: u64,
    /// When it was taken, in ms since the Unix epoch.
    pub created_ms: i64,
    /// Its files.
    pub files: Vec<ManifestEntry>,
}

/// One file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Its name in the checkpoint's folder.
    pub name: String,
    /// Its size in bytes, as written.
    pub size: u64,
    /// The SHA-256 of its bytes, in hex.
    pub sha256: String,
}

/// A complete checkpoint, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its manifest.
    pub manifest: Manifest,
    /// Each file's name and payload, in the manifest's order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No manifest: the checkpoint was never completed.
    #[error("checkpoint {path} is incomplete: it has no MANIFEST")]
    Incomplete {
        /// The checkpoint's folder.
        path: String,
    },
    /// A file does not match its manifest or its own checksum.
    #[error("checkpoint file {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What does not match.
        reason: String,
    },
    /// Written by another version of the format.
    #[error("checkpoint file {path} has format version {found}; this weir reads version {expected}")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u16,
        /// The version this weir reads.
        expected: u16,
    },
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `payload` in the checkpoint file format.
pub fn encode_file(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// The payload of a checkpoint file, checked: magic, version, length and
/// checksum. `path` names it in errors.
pub fn decode_file<'a>(path: &str, bytes: &'a [u8]) -> Result<&'a [u8], ReadError> {
    let corrupt = |reason: String| ReadError::Corrupt { path: path.to_string(), reason };
    if bytes.len() < HEADER + TRAILER || &bytes[..8] != MAGIC {
        return Err(corrupt(format!("not a weir checkpoint file ({} bytes)", bytes.len())));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version != CHECKPOINT_VERSION {
        return Err(ReadError::Version {
            path: path.to_string(),
            found: version,
            expected: CHECKPOINT_VERSION,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[10..18]);
    let len = u64::from_le_bytes(len);
    let body_end = HEADER as u64 + len;
    if body_end + TRAILER as u64 != bytes.len() as u64 {
        return Err(corrupt(format!("says {len} bytes of payload, but the file has {}", bytes.len())));
    }
    let body_end = body_end as usize;
    if Sha256::digest(&bytes[..body_end]).as_slice() != &bytes[body_end..] {
        return Err(corrupt("checksum mismatch".into()));
    }
    Ok(&bytes[HEADER..body_end])
}

/// A checkpoint's folder.
fn folder(job: &str, checkpoint: u64) -> String {
    format!("{job}/chk-{checkpoint:020}")
}

/// Writes a checkpoint: every file first, then the manifest that makes it
/// complete. A crash before the manifest leaves an incomplete checkpoint,
/// which readers skip.
pub fn write_complete(
    storage: &dyn CheckpointStorage,
    job: &str,
    checkpoint: u64,
    created_ms: i64,
    files: &[(String, Vec<u8>)],
) -> Result<Manifest, StorageError> {
    let entries = write_files(storage, job, checkpoint, files)?;
    write_manifest(storage, job, checkpoint, created_ms, entries)
}

/// The first half of [`write_complete`]: writes a checkpoint's files (not
/// yet complete) and returns their manifest entries.
pub fn write_files(
    storage: &dyn CheckpointStorage,
    job: &str,
    checkpoint: u64,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<ManifestEntry>, StorageError> {
    let dir = folder(job, checkpoint);
    let mut entries = Vec::with_capacity(files.len());
    for (name, payload) in files {
        let bytes = encode_file(payload);
        storage.write(&format!("{dir}/{name}"), &bytes)?;
        entries.push(ManifestEntry {
            name: name.clone(),
            size: bytes.len() as u64,
            sha256: hex(&Sha256::digest(&bytes)),
        });
    }
    Ok(entries)
}

/// The second half of [`write_complete`]: the manifest that makes the
/// checkpoint whose files are `entries` complete.
pub fn write_manifest(
    storage: &dyn CheckpointStorage,
    job: &str,
    checkpoint: u64,
    created_ms: i64,
    entries: Vec<ManifestEntry>,
) -> Result<Manifest, StorageError> {
    let dir = folder(job, checkpoint);
    let manifest = Manifest {
        version: CHECKPOINT_VERSION,
        job: job.to_string(),
        checkpoint,
        created_ms,
        files: entries,
    };
    let json = serde_json::to_vec(&manifest).unwrap_or_default();
    storage.write(&format!("{dir}/{MANIFEST}"), &encode_file(&json))?;
    Ok(manifest)
}

/// Reads a complete checkpoint: its manifest and every file's payload, each
/// checked against the manifest and its own checksum.
pub fn read_complete(
    storage: &dyn CheckpointStorage,
    job: &str,
    checkpoint: u64,
) -> Result<Checkpoint, ReadError> {
    let dir = folder(job, checkpoint);
    let manifest_path = format!("{dir}/{MANIFEST}");
    if !storage.list(&dir)?.iter().any(|n| n == MANIFEST) {
        return Err(ReadError::Incomplete { path: dir });
    }
    let bytes = storage.read(&manifest_path)?;
    let json = decode_file(&manifest_path, &bytes)?;
    let manifest: Manifest = serde_json::from_slice(json)
        .map_err(|e| ReadError::Corrupt { path: manifest_path.clone(), reason: e.to_string() })?;
    if manifest.job != job || manifest.checkpoint != checkpoint {
        let reason = format!("it is checkpoint {} of job '{}'", manifest.checkpoint, manifest.job);
        return Err(ReadError::Corrupt { path: manifest_path, reason });
    }
    let mut files = Vec::with_capacity(manifest.files.len());
    for entry in &manifest.files {
        let path = format!("{dir}/{}", entry.name);
        let bytes = storage.read(&path)?;
        let corrupt = |reason: String| ReadError::Corrupt { path: path.clone(), reason };
        if bytes.len() as u64 != entry.size {
            return Err(corrupt(format!("{} bytes, but the manifest says {}", bytes.len(), entry.size)));
        }
        if hex(&Sha256::digest(&bytes)) != entry.sha256 {
            return Err(corrupt("its hash does not match the manifest".into()));
        }
        files.push((entry.name.clone(), decode_file(&path, &bytes)?.to_vec()));
    }
    Ok(Checkpoint { manifest, files })
}

/// The ids of a job's checkpoints (complete or not), oldest first.
pub fn checkpoint_ids(storage: &dyn CheckpointStorage, job: &str) -> Result<Vec<u64>, StorageError> {
    let mut ids: Vec<u64> =
        storage.list(job)?.iter().filter_map(|n| n.strip_prefix("chk-")?.parse().ok()).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// The newest complete checkpoint of a job, skipping (and logging) any
/// newer one that is incomplete or corrupt; `None` if there is none.
pub fn latest_complete(
    storage: &dyn CheckpointStorage,
    job: &str,
) -> Result<Option<Checkpoint>, StorageError> {
    for id in checkpoint_ids(storage, job)?.into_iter().rev() {
        match read_complete(storage, job, id) {
            Ok(found) => return Ok(Some(found)),
            Err(ReadError::Storage(e)) => return Err(e),
            Err(e) => tracing::warn!("{e}; using an older checkpoint"),
        }
    }
    Ok(None)
}
