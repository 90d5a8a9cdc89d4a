//! `weir serve`: a long-running host that stores uploaded plugins, runs
//! submitted jobs, and keeps both in its data dir so that a restart finds
//! them again.
//!
//! - `store.rs`: the plugin store (content-addressed, named from `describe`);
//! - `jobs.rs`: the job registry and one runner thread per job;
//! - `api.rs`: the HTTP API over both (axum);
//! - `auth.rs`: the bearer token that mutating requests need;
//! - `names.rs`: which names and versions are accepted.

pub mod api;
pub mod auth;
pub mod jobs;
pub mod names;
pub mod store;

use std::path::Path;

/// Why a request failed; each kind is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is wrong (400): a bad job file, a bad component, a bad
    /// name. The message says what to change.
    #[error("{0}")]
    BadRequest(String),
    /// No such plugin or job (404).
    #[error("{0}")]
    NotFound(String),
    /// It clashes with what is there (409): a version stored with other
    /// bytes, a plugin a job uses.
    #[error("{0}")]
    Conflict(String),
    /// No token, or a wrong one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The host failed (500): its data dir, most likely.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// A failed file operation on the data dir.
    pub fn io(action: &str, path: &Path, e: std::io::Error) -> ServiceError {
        ServiceError::Internal(format!("cannot {action} {}: {e}", path.display()))
    }
}
