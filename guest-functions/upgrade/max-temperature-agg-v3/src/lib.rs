//! A test guest: `max-temperature-agg` 0.3.0, 0.2.0 (the same state
//! layout, state version 1, and the same migration from 0.1.0's) with a
//! deliberate change of results: it ignores readings above 382.0, as a
//! plugin author might to drop a faulty sensor's spikes. A shadow run of
//! it beside 0.1.0 differs on exactly the windows holding such a reading.
//!
//! Its `migrate_fails` parameter makes `migrate` fail, as 0.2.0's does.

/// Readings above this are not counted.
const IGNORE_ABOVE: f64 = 382.0;

include!("../../max-temperature-agg-v2/src/agg.rs");
