//! Deterministic clocks and randomness for plugin calls, so that replaying a
//! call (after a restart from a checkpoint) gives byte-identical output.
//!
//! Before each guest call the instance sets a [`CallContext`], derived only
//! from the call's arguments:
//!
//! - **Clocks.** The wall clock reads the call's event time (see
//!   [`CallContext`] for which); the monotonic clock reads the same instant
//!   in nanoseconds. Neither moves during a call, so a guest measuring how
//!   long something took sees zero. Both resolutions are 1 ms, the
//!   precision of event time.
//! - **Random.** `wasi:random/random` (the "secure" stream) and
//!   `wasi:random/insecure` are SplitMix64 streams restarted at every call
//!   from a hash of the call's keys, windows, ranges or ends, timestamps and
//!   accumulators. They are **not** cryptographic, on purpose: a plugin has
//!   no secrets to keep, and a guest asking for "secure" random gets these
//!   deterministic bytes. `wasi:random/insecure-seed` is one fixed value:
//!   the interface is meant to be read once per instance (std seeds its
//!   `HashMap`s from it), so a per-call value would only make the first
//!   call special.
//!
//! The clocks go through `WasiCtxBuilder` and share a [`CallClock`] cell
//! with the store. The random interfaces are defined again over wasmtime-
//! wasi's own (shadowed) definitions, so that their state lives in the store
//! and can be reseeded without allocating.

use crate::types::{Accumulators, Param, Value, Window};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wasmtime::component::{HasData, Linker};
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// What one guest call sees of time and randomness.
///
/// `now_ms` is event time in milliseconds since the Unix epoch:
/// - `apply`, `apply-many`, `get-result`, `get-results`: the largest window
///   end in the call minus 1 ms, the watermark that fired the window;
/// - `add`, `add-many`, `map`: the largest event timestamp in the batch;
/// - `describe`, `configure`, `create-accumulator`, `merge`: 0 (the epoch).
///
/// Times before the epoch read as the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallContext {
    /// The clocks' reading, in event-time milliseconds.
    pub(crate) now_ms: i64,
    /// Where the random streams start.
    pub(crate) seed: u64,
}

impl CallContext {
    /// Before any call: the epoch, and a fixed seed.
    pub(crate) const EPOCH: CallContext = CallContext { now_ms: 0, seed: 0 };

    /// `configure`: the epoch, random from the parameters.
    pub(crate) fn configure(params: &[Param]) -> CallContext {
        let mut h = Hash::new("configure");
        for p in params {
            h.str(&p.name);
            h.value(&p.value);
        }
        CallContext { now_ms: 0, seed: h.finish() }
    }

    /// A call whose clock is the watermark that fired `windows`.
    pub(crate) fn fired(h: Hash, windows: &[Window]) -> CallContext {
        let end = windows.iter().map(|w| w.end).max().unwrap_or(0);
        CallContext { now_ms: end.saturating_sub(1), seed: h.finish() }
    }

    /// A call whose clock is the latest of `timestamps`.
    pub(crate) fn batch(h: Hash, timestamps: &[i64]) -> CallContext {
        CallContext { now_ms: timestamps.iter().copied().max().unwrap_or(0), seed: h.finish() }
    }

    /// A call with no event time of its own: the epoch.
    pub(crate) fn timeless(h: Hash) -> CallContext {
        CallContext { now_ms: 0, seed: h.finish() }
    }
}

/// A stable, fast hash of a call's arguments (FxHash's step, SplitMix64's
/// finish): the same on every run and machine, unlike std's `RandomState`.
/// Column values are left out: timestamps and counts already tell calls
/// apart, and hashing every string would cost as much as the call.
pub(crate) struct Hash(u64);

impl Hash {
    /// A hash that starts from the function's name, so that calls of
    /// different functions with the same arguments differ.
    pub(crate) fn new(function: &str) -> Hash {
        let mut h = Hash(0);
        h.str(function);
        h
    }

    pub(crate) fn u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    /// Timestamps are on every call's path: four independent lanes let the
    /// CPU overlap the multiplies instead of waiting on one chain.
    pub(crate) fn i64s(&mut self, xs: &[i64]) {
        self.u64(xs.len() as u64);
        let mut lanes = [Hash(1), Hash(2), Hash(3), Hash(4)];
        let mut chunks = xs.chunks_exact(4);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                lane.u64(x as u64);
            }
        }
        for (lane, &x) in lanes.iter_mut().zip(chunks.remainder()) {
            lane.u64(x as u64);
        }
        for lane in lanes {
            self.u64(lane.0);
        }
    }

    pub(crate) fn u32s(&mut self, xs: &[u32]) {
        self.u64(xs.len() as u64);
        for &x in xs {
            self.u64(u64::from(x));
        }
    }

    pub(crate) fn ranges(&mut self, ranges: &[crate::types::RowRange]) {
        self.u64(ranges.len() as u64);
        for r in ranges {
            self.u64(u64::from(r.start) << 32 | u64::from(r.end));
        }
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.u64(u64::from_le_bytes(word));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.u64(u64::from_le_bytes(last));
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub(crate) fn value(&mut self, v: &Value) {
        match v {
            Value::F64(x) => {
                self.u64(1);
                self.u64(x.to_bits());
            }
            Value::I64(x) => {
                self.u64(2);
                self.u64(*x as u64);
            }
            Value::String(s) => {
                self.u64(3);
                self.str(s);
            }
            Value::Bool(b) => {
                self.u64(4);
                self.u64(u64::from(*b));
            }
        }
    }

    pub(crate) fn values(&mut self, vs: &[Value]) {
        self.u64(vs.len() as u64);
        for v in vs {
            self.value(v);
        }
    }

    pub(crate) fn window(&mut self, w: Window) {
        self.u64(w.start as u64);
        self.u64(w.end as u64);
    }

    pub(crate) fn windows(&mut self, ws: &[Window]) {
        self.u64(ws.len() as u64);
        for &w in ws {
            self.window(w);
        }
    }

    pub(crate) fn accumulators(&mut self, accs: &Accumulators) {
        self.bytes(&accs.bytes);
        self.u32s(&accs.ends);
    }

    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

/// SplitMix64's output function: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SplitMix64's step.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The clocks' reading for the current call, shared by the store's clocks
/// and the instance that sets it.
#[derive(Debug, Default)]
pub(crate) struct CallClock {
    now_ms: AtomicI64,
}

impl CallClock {
    pub(crate) fn set(&self, now_ms: i64) {
        // One thread sets it and the same thread's guest call reads it:
        // no ordering with other memory is needed.
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    fn since_epoch(&self) -> Duration {
        Duration::from_millis(self.now_ms.load(Ordering::Relaxed).max(0) as u64)
    }
}

/// Event time has millisecond precision.
const RESOLUTION: Duration = Duration::from_millis(1);

/// `wasi:clocks/wall-clock`: the call's event time.
pub(crate) struct WallClock(pub(crate) Arc<CallClock>);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        RESOLUTION
    }

    fn now(&self) -> Duration {
        self.0.since_epoch()
    }
}

/// `wasi:clocks/monotonic-clock`: the call's event time in nanoseconds.
/// It stands still within a call; between calls it follows event time, so
/// it can go back (a window fired after a later batch was added).
pub(crate) struct MonotonicClock(pub(crate) Arc<CallClock>);

impl HostMonotonicClock for MonotonicClock {
    fn resolution(&self) -> u64 {
        RESOLUTION.as_nanos() as u64
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.since_epoch().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Keeps the two random streams apart though they share the call's seed.
const SECURE_SALT: u64 = 0x243f_6a88_85a3_08d3;
const INSECURE_SALT: u64 = 0x1319_8a2e_0370_7344;

/// What `wasi:random/insecure-seed` always returns.
const INSECURE_SEED: (u64, u64) = (0x7765_6972_2d73_6565, 0x642d_6669_7865_6421);

/// The most bytes one `get-random-bytes` call may ask for, as wasmtime-wasi
/// allows: the bytes are built on the host before they reach the guest.
const MAX_RANDOM_BYTES: u64 = 64 << 20;

/// The random streams of one store, restarted by [`CallRandom::reseed`]
/// before each call. Not cryptographic, on purpose (see the module docs).
#[derive(Debug)]
pub(crate) struct CallRandom {
    secure: u64,
    insecure: u64,
}

impl CallRandom {
    pub(crate) fn new(seed: u64) -> CallRandom {
        let mut r = CallRandom { secure: 0, insecure: 0 };
        r.reseed(seed);
        r
    }

    pub(crate) fn reseed(&mut self, seed: u64) {
        self.secure = seed ^ SECURE_SALT;
        self.insecure = seed ^ INSECURE_SALT;
    }
}

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(GOLDEN_GAMMA);
    mix(*state)
}

fn fill(state: &mut u64, len: u64) -> wasmtime::Result<Vec<u8>> {
    if len > MAX_RANDOM_BYTES {
        wasmtime::bail!("asked for {len} random bytes, over the limit of {MAX_RANDOM_BYTES}");
    }
    // Within the limit, so it fits a usize on every host weir builds for.
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let word = next(state).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&word[..take]);
    }
    Ok(out)
}

impl random::Host for CallRandom {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        fill(&mut self.secure, len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(next(&mut self.secure))
    }
}

impl insecure::Host for CallRandom {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        fill(&mut self.insecure, len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(next(&mut self.insecure))
    }
}

impl insecure_seed::Host for CallRandom {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok(INSECURE_SEED)
    }
}

/// The `HasData` of the deterministic random interfaces.
struct DeterministicRandom;

impl HasData for DeterministicRandom {
    type Data<'a> = &'a mut CallRandom;
}

/// Replaces wasmtime-wasi's `wasi:random` interfaces in `linker` with the
/// deterministic ones. Call after `add_to_linker_sync`.
pub(crate) fn add_to_linker(linker: &mut Linker<super::store::StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    random::add_to_linker::<_, DeterministicRandom>(linker, |s| &mut s.random)?;
    insecure::add_to_linker::<_, DeterministicRandom>(linker, |s| &mut s.random)?;
    insecure_seed::add_to_linker::<_, DeterministicRandom>(linker, |s| &mut s.random)?;
    linker.allow_shadowing(false);
    Ok(())
}
