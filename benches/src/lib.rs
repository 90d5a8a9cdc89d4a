//! Benchmarks of weir's plugin overhead (`benches/plugin_overhead.rs`), and
//! the few helpers they share: deterministic inputs and engines built with
//! the switches being measured.

use weir::plugin::types::{Column, Events};
use weir::plugin::{BenchSwitches, EngineConfig, EngineError, PluginEngine};

/// The timestamps' span, in milliseconds: every event falls in `[0, 1000)`,
/// the window the benchmarks pass.
pub const WINDOW_MILLIS: i64 = 1_000;

/// `n` temperatures in kelvin, in `[333, 383)` on a micro-kelvin grid,
/// the same for the same `seed`: splitmix64, with no crate needed.
pub fn temperatures(n: usize, seed: u64) -> Vec<f64> {
    const STEPS: u64 = 50_000_000;
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            // At most 49.999999 above 333, so never 383 itself.
            333.0 + (z % STEPS) as f64 * 1e-6
        })
        .collect()
}

/// One key's batch of events: the temperatures as the single f64 column,
/// timestamps spread evenly over `[0, WINDOW_MILLIS)`.
pub fn events(temps: &[f64]) -> Events {
    let n = temps.len().max(1) as i64;
    Events {
        timestamps: (0..temps.len() as i64).map(|i| i * WINDOW_MILLIS / n).collect(),
        columns: vec![Column::F64(temps.to_vec())],
    }
}

/// An engine for the benchmarks: no disk cache, 64 pool slots, and the
/// two switches under test (weir's `bench` feature).
pub fn engine(pooling: bool, epoch_interruption: bool) -> Result<PluginEngine, EngineError> {
    let config = EngineConfig { max_instances: 64, cache_dir: None };
    PluginEngine::with_bench_switches(config, BenchSwitches { pooling, epoch_interruption })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperatures_are_deterministic_and_in_range() {
        let a = temperatures(10_000, 42);
        assert_eq!(a, temperatures(10_000, 42));
        assert_ne!(a, temperatures(10_000, 43));
        assert!(a.iter().all(|t| (333.0..383.0).contains(t)), "out of [333, 383)");
        let (lo, hi) = a.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        assert!(lo < 334.0 && hi > 382.0, "poorly spread: [{lo}, {hi}]");
    }

    #[test]
    fn events_fall_in_the_window() {
        let e = events(&temperatures(200, 1));
        assert_eq!(e.timestamps.len(), 200);
        assert!(e.timestamps.iter().all(|t| (0..WINDOW_MILLIS).contains(t)));
        assert!(e.timestamps.windows(2).all(|w| w[0] <= w[1]));
    }
}
