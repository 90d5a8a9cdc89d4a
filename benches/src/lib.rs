//! What weir's benchmarks share: inputs from the readings generator
//! (`weir_devtools::readings`, the one generator of the example workload),
//! engines built with the switches being measured, the native folds the
//! plugin is compared with, and the independent oracle that checks every
//! case of the pipeline benchmark.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use weir::plugin::{BenchSwitches, EngineConfig, EngineError, PluginEngine};
use weir::types::{Column, Events};
use weir_devtools::readings::{Reading, splitmix64};

/// The timestamps' span, in milliseconds: every event falls in `[0, 1000)`,
/// the window the benchmarks pass.
pub const WINDOW_MILLIS: i64 = 1_000;

/// The temperatures of readings `first..first + n`, in kelvin in
/// `[333, 383)`.
pub fn temperatures(n: usize, first: u64) -> Vec<f64> {
    (0..n as u64).map(|i| Reading::generate(first.wrapping_add(i), 1).temperature).collect()
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

/// The component of a Python guest in `guest-functions/` (`module` is
/// relative to the repository), built for `world` by the real `weir plugin
/// build` (componentize-py), with the release `weir` that cargo builds
/// first. Kept in `target/bench-python/`, keyed by a hash of the module,
/// the helper package and the contract, so each benchmark process after the
/// first reuses it.
pub fn python_guest(module: &str, world: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in [module, "guest-functions/python/weir_guest/__init__.py", "wit/weir.wit"] {
        let path = root.join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).hash(&mut hasher);
    }
    world.hash(&mut hasher);
    // target/release/deps/<bench> → target/.
    let exe = std::env::current_exe().expect("the benchmark's path");
    let release = exe.parent().and_then(Path::parent).expect("the benchmark is in target/release/deps");
    let dir = release.join("../bench-python");
    std::fs::create_dir_all(&dir).expect("target/bench-python");
    let stem = Path::new(module).file_stem().expect("a module file").to_string_lossy().into_owned();
    let wasm = dir.join(format!("{stem}-{:016x}.wasm", hasher.finish()));
    if wasm.is_file() {
        return wasm;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "weir", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build --release -p weir failed ({status})");
    let partial = dir.join(format!("{stem}.{}.partial.wasm", std::process::id()));
    let out = Command::new(release.join("weir"))
        .args(["plugin", "build"])
        .arg(root.join(module))
        .args(["--world", world, "-o"])
        .arg(&partial)
        .output()
        .expect("run weir plugin build");
    assert!(
        out.status.success(),
        "weir plugin build {module} failed (Python 3 and componentize-py are needed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &wasm).expect("keep the component");
    wasm
}

/// The max of `values` (`-inf` for none) the plain way: a scalar fold.
pub fn max_scalar(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The max of `values` (`-inf` for none) written the way the bundled
/// guests compute it (`guest_support::max_of`): four two-lane SIMD
/// accumulators, eight values a step, then the rest one by one. On x86_64
/// the lanes are SSE2 registers (`maxpd`); elsewhere they are arrays the
/// compiler may vectorise. Inputs have no NaN, so the lanes' NaN rules do
/// not matter.
pub fn max_simd(values: &[f64]) -> f64 {
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    let mut max = lanes_max(chunks);
    for &x in rest {
        max = max.max(x);
    }
    max
}

#[cfg(target_arch = "x86_64")]
fn lanes_max(chunks: std::slice::ChunksExact<'_, f64>) -> f64 {
    use std::arch::x86_64::{_mm_loadu_pd, _mm_max_pd, _mm_set1_pd, _mm_storeu_pd};
    let mut pair = [0.0f64; 2];
    // SAFETY: SSE2 is part of every x86_64 CPU. Each chunk has 8 values, so
    // the 2 loaded at 2k are in bounds, and `pair` holds the 2 stored; both
    // instructions take unaligned addresses.
    unsafe {
        let mut acc = [_mm_set1_pd(f64::NEG_INFINITY); 4];
        for chunk in chunks {
            for (k, lane) in acc.iter_mut().enumerate() {
                *lane = _mm_max_pd(*lane, _mm_loadu_pd(chunk.as_ptr().add(2 * k)));
            }
        }
        let m = _mm_max_pd(_mm_max_pd(acc[0], acc[1]), _mm_max_pd(acc[2], acc[3]));
        _mm_storeu_pd(pair.as_mut_ptr(), m);
    }
    pair[0].max(pair[1])
}

#[cfg(not(target_arch = "x86_64"))]
fn lanes_max(chunks: std::slice::ChunksExact<'_, f64>) -> f64 {
    let mut acc = [[f64::NEG_INFINITY; 2]; 4];
    for chunk in chunks {
        for (k, lane) in acc.iter_mut().enumerate() {
            for (j, a) in lane.iter_mut().enumerate() {
                let v = chunk[2 * k + j];
                *a = if *a < v { v } else { *a };
            }
        }
    }
    acc.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The windows of a benchmark case, as the oracle computes them: starts of
/// tumbling and sliding windows are multiples of the slide (the size for
/// tumbling), and a session closes after `gap` ms without an event (an
/// event exactly `gap` after the last one starts a new session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windows {
    /// `[k·size, (k+1)·size)`.
    Tumbling {
        /// Length, ms.
        size: i64,
    },
    /// `[k·slide, k·slide + size)`.
    Sliding {
        /// Length, ms.
        size: i64,
        /// Distance between starts, ms.
        slide: i64,
    },
    /// Per key, `[first event, last event + gap)`.
    Session {
        /// The gap that closes a session, ms.
        gap: i64,
    },
}

/// A multiset digest of window results: how many, and a wrapping sum of a
/// strong hash of each whole result `(key, start, end, max bits, count)`.
/// Order does not matter, but any result on the wrong key or window, or
/// with another max or count, changes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    /// Results added.
    pub results: u64,
    /// Sum of their hashes.
    pub hash: u64,
}

impl Digest {
    /// Adds one window's result.
    pub fn add(&mut self, key: i64, start: i64, end: i64, max: f64, count: i64) {
        let mut h = 0x5EED_u64;
        for part in [key as u64, start as u64, end as u64, max.to_bits(), count as u64] {
            h = splitmix64(h ^ part);
        }
        self.results += 1;
        self.hash = self.hash.wrapping_add(h);
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} results, digest {:016x}", self.results, self.hash)
    }
}

/// One open window of the oracle: (start, end, max, count).
type Open = (i64, i64, f64, i64);

/// What a max-and-count per device should give over readings `0..n` of
/// `devices` devices, computed in one pass over the generator: readings
/// come in time order, so a device's window is complete once one of its
/// later readings falls past the window's end.
pub fn expected(n: u64, devices: u64, windows: Windows) -> Digest {
    let mut digest = Digest::default();
    let mut open: BTreeMap<i64, VecDeque<Open>> = BTreeMap::new();
    let close = |digest: &mut Digest, key: i64, (start, end, max, count): Open| {
        digest.add(key, start, end, max, count);
    };
    for i in 0..n {
        let r = Reading::generate(i, devices);
        let (key, ts, t) = (r.device_id as i64, r.execution_time, r.temperature);
        let mine = open.entry(key).or_default();
        match windows {
            Windows::Session { gap } => {
                if let Some(last) = mine.back_mut()
                    && ts < last.1
                {
                    last.1 = ts + gap;
                    last.2 = last.2.max(t);
                    last.3 += 1;
                    continue;
                }
                if let Some(done) = mine.pop_back() {
                    close(&mut digest, key, done);
                }
                mine.push_back((ts, ts + gap, t, 1));
            }
            Windows::Tumbling { size } => add_aligned(&mut digest, key, mine, ts, t, size, size),
            Windows::Sliding { size, slide } => add_aligned(&mut digest, key, mine, ts, t, size, slide),
        }
    }
    for (key, rest) in open {
        for w in rest {
            close(&mut digest, key, w);
        }
    }
    digest
}

/// Adds reading `(ts, t)` to every window `[k·slide, k·slide + size)` that
/// holds it, after closing the key's windows that end at or before `ts`.
/// `mine` is sorted by start.
fn add_aligned(
    digest: &mut Digest,
    key: i64,
    mine: &mut VecDeque<Open>,
    ts: i64,
    t: f64,
    size: i64,
    slide: i64,
) {
    while mine.front().is_some_and(|w| w.1 <= ts) {
        if let Some((start, end, max, count)) = mine.pop_front() {
            digest.add(key, start, end, max, count);
        }
    }
    let last_start = ts.div_euclid(slide) * slide;
    let mut start = last_start;
    while start + size > ts {
        start -= slide;
    }
    start += slide;
    while start <= last_start {
        match mine.iter_mut().find(|w| w.0 == start) {
            Some(w) => {
                w.2 = w.2.max(t);
                w.3 += 1;
            }
            None => mine.push_back((start, start + size, t, 1)),
        }
        start += slide;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn temperatures_come_from_the_generator() {
        let a = temperatures(10_000, 42);
        assert_eq!(a[0], Reading::generate(42, 10).temperature);
        assert_eq!(a[9_999], Reading::generate(10_041, 3).temperature);
        assert_ne!(a, temperatures(10_000, 43));
        assert!(a.iter().all(|t| (333.0..383.0).contains(t)), "out of [333, 383)");
    }

    #[test]
    fn events_fall_in_the_window() {
        let e = events(&temperatures(200, 1));
        assert_eq!(e.timestamps.len(), 200);
        assert!(e.timestamps.iter().all(|t| (0..WINDOW_MILLIS).contains(t)));
        assert!(e.timestamps.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_simd_max_is_the_max() {
        for n in [0, 1, 7, 8, 9, 200, 10_001] {
            let temps = temperatures(n, n as u64);
            assert_eq!(max_simd(&temps), max_scalar(&temps), "{n} values");
            let brute = temps.iter().copied().reduce(|a, b| if b > a { b } else { a });
            assert_eq!(Some(max_scalar(&temps)).filter(|_| n > 0), brute);
        }
        // The max in any lane, or in the remainder, is found.
        for at in 0..19 {
            let mut v = vec![1.0; 19];
            v[at] = 2.0;
            assert_eq!(max_simd(&v), 2.0, "max at {at}");
        }
    }

    /// Every window's (max, count), by assigning each reading to its
    /// windows by brute force and then merging sessions.
    fn brute_force(n: u64, devices: u64, windows: Windows) -> Digest {
        let mut by_window: HashMap<(i64, i64, i64), (f64, i64)> = HashMap::new();
        let mut by_key: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for i in 0..n {
            let r = Reading::generate(i, devices);
            let (key, ts, t) = (r.device_id as i64, r.execution_time, r.temperature);
            let mut add = |start: i64, end: i64| {
                let e = by_window.entry((key, start, end)).or_insert((f64::MIN, 0));
                e.0 = e.0.max(t);
                e.1 += 1;
            };
            match windows {
                Windows::Tumbling { size } => add(ts - ts.rem_euclid(size), ts - ts.rem_euclid(size) + size),
                Windows::Sliding { size, slide } => {
                    for start in (ts - size + 1..=ts).filter(|s| s.rem_euclid(slide) == 0) {
                        add(start, start + size);
                    }
                }
                Windows::Session { .. } => by_key.entry(key).or_default().push((ts, t)),
            }
        }
        if let Windows::Session { gap } = windows {
            for (key, list) in by_key {
                let mut session: Option<(i64, i64, f64, i64)> = None;
                for (ts, t) in list {
                    session = match session {
                        Some((s, end, m, c)) if ts < end => Some((s, ts + gap, m.max(t), c + 1)),
                        Some((s, end, m, c)) => {
                            by_window.insert((key, s, end), (m, c));
                            Some((ts, ts + gap, t, 1))
                        }
                        None => Some((ts, ts + gap, t, 1)),
                    };
                }
                if let Some((s, end, m, c)) = session {
                    by_window.insert((key, s, end), (m, c));
                }
            }
        }
        let mut digest = Digest::default();
        for ((key, start, end), (max, count)) in by_window {
            digest.add(key, start, end, max, count);
        }
        digest
    }

    #[test]
    fn the_oracle_agrees_with_brute_force() {
        for windows in [
            Windows::Tumbling { size: 1000 },
            Windows::Tumbling { size: 7 },
            Windows::Sliding { size: 1000, slide: 100 },
            Windows::Sliding { size: 30, slide: 20 },
            Windows::Session { gap: 100 },
            Windows::Session { gap: 5 },
        ] {
            for devices in [1, 10] {
                let d = expected(20_000, devices, windows);
                assert_eq!(d, brute_force(20_000, devices, windows), "{windows:?}, {devices} devices");
                let one_session = devices == 1 && windows == Windows::Session { gap: 100 };
                assert!(d.results > 10 || one_session, "{windows:?}: only {} windows", d.results);
            }
        }
        // One device reports every 5 ms: one session for a 100 ms gap, and
        // a session per reading for a 5 ms gap (a reading exactly `gap`
        // after the last one starts a new session).
        assert_eq!(expected(20_000, 1, Windows::Session { gap: 100 }).results, 1);
        assert_eq!(expected(20_000, 1, Windows::Session { gap: 5 }).results, 20_000);
        // Sessions of 100 ms over 10 devices 5 ms apart: many, not one each.
        let sessions = expected(20_000, 10, Windows::Session { gap: 100 }).results;
        assert!(sessions > 100, "{sessions} sessions");
    }

    #[test]
    fn the_digest_sees_swapped_and_changed_results() {
        let mut right = Digest::default();
        right.add(1, 0, 1000, 350.0, 10);
        right.add(2, 0, 1000, 360.0, 12);
        let mut reordered = Digest::default();
        reordered.add(2, 0, 1000, 360.0, 12);
        reordered.add(1, 0, 1000, 350.0, 10);
        assert_eq!(right, reordered);
        let mut swapped = Digest::default();
        swapped.add(1, 0, 1000, 360.0, 10);
        swapped.add(2, 0, 1000, 350.0, 12);
        assert_ne!(right, swapped, "maxima swapped between keys");
        let mut counts = Digest::default();
        counts.add(1, 0, 1000, 350.0, 12);
        counts.add(2, 0, 1000, 360.0, 10);
        assert_ne!(right, counts, "counts swapped between keys");
        let mut shifted = Digest::default();
        shifted.add(1, 1000, 2000, 350.0, 10);
        shifted.add(2, 0, 1000, 360.0, 12);
        assert_ne!(right, shifted, "a result on the wrong window");
    }
}
