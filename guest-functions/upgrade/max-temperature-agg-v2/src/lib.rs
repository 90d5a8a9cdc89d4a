//! A test guest: `max-temperature-agg` 0.2.0, the same results as 0.1.0
//! with a new accumulator layout (state version 1: the count first, then
//! the maximum). It migrates 0.1.0's accumulators (state version 0: the
//! maximum first), so a job upgraded from 0.1.0 keeps its window state.
//! Were the host to skip the migration, every window would read a count
//! as its maximum.
//!
//! Its `migrate_fails` parameter makes `migrate` fail, for the host's
//! tests: `refuse` returns an error, `trap` panics.

/// Readings above this are not counted: none, in this version.
const IGNORE_ABOVE: f64 = f64::INFINITY;

include!("agg.rs");
