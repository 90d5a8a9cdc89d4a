//! A live plugin instance and the calls into it, each held to the job's
//! limits. A trap kills a wasm instance, so after one the next call first
//! instantiates afresh from the pre-linked component (a few microseconds)
//! and configures it again.

use super::bindings::{aggregate, map, window};
use super::determinism::{CallContext, Hash};
use super::engine::{EPOCH_TICK, MAX_PLUGIN_MEMORY};
use super::error::{CallSite, Failure, LoadError, PluginError};
use super::legacy::LegacyLive;
use super::limits::PluginLimits;
use super::load::{Plugin, WorldPre};
use super::log::{CallLog, CappedLog};
use super::signatures;
use super::store::StoreState;
use crate::plugin::bindings::map::exports::weir::functions::map::Mapped;
use crate::types::{
    Accumulators, Column, Descriptor, Events, FieldType, FunctionKind, Param, RowRange, Rows, RowsMany,
    Value, Window,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap};

/// The bindings of a live instance.
enum Live {
    Window(window::WindowFunction),
    Aggregate(aggregate::AggregateFunction),
    Map(map::MapFunction),
    /// A component built for the 0.1.0 contract.
    Legacy(LegacyLive),
}

/// Receives what a guest wrote to stdout and stderr during a call.
pub type LogSink = Box<dyn FnMut(&str, &CallLog) + Send>;

/// Counters for one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Fresh instances made after a trap.
    pub reinstantiations: u64,
    /// Log bytes dropped over the cap.
    pub log_dropped_bytes: u64,
}

/// The upper bounds of the call-time histogram's buckets, in µs (10 µs to
/// 1 s); a call over the last goes to the overflow bucket.
pub const CALL_BUCKETS_US: [u64; 11] =
    [10, 50, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000];

/// How long plugin calls take: a histogram of atomics that a job's
/// instances share (one per worker), each adding its calls as they end.
#[derive(Debug, Default)]
pub struct CallTimes {
    /// Calls per bucket of [`CALL_BUCKETS_US`], then the overflow.
    buckets: [AtomicU64; CALL_BUCKETS_US.len() + 1],
    /// Their total time, in ns.
    sum_ns: AtomicU64,
}

/// A copy of [`CallTimes`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CallTimesSnapshot {
    /// Calls timed.
    pub count: u64,
    /// Their total time, in ns.
    pub sum_ns: u64,
    /// Cumulative: `buckets[i]` calls took at most `CALL_BUCKETS_US[i]` µs.
    pub buckets: Vec<u64>,
}

impl CallTimes {
    /// Adds one call that took `took`.
    pub fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let bucket = CALL_BUCKETS_US.partition_point(|&bound| bound.saturating_mul(1_000) < ns);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The calls so far.
    pub fn snapshot(&self) -> CallTimesSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(CALL_BUCKETS_US.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Ordering::Relaxed);
            if i < CALL_BUCKETS_US.len() {
                buckets.push(total);
            }
        }
        CallTimesSnapshot { count: total, sum_ns: self.sum_ns.load(Ordering::Relaxed), buckets }
    }
}

/// A live, configured plugin instance. Calls take `&mut self`: an instance
/// serves one thread, and a job runs one instance per worker.
///
/// Calls block. The WASI bindings are synchronous, so they must not run on
/// a tokio runtime thread: call them from a plain thread or `spawn_blocking`.
pub struct PluginInstance {
    plugin: Plugin,
    params: Vec<Param>,
    limits: PluginLimits,
    deadline_ticks: u64,
    store: Store<StoreState>,
    live: Option<Live>,
    log: CappedLog,
    log_sink: LogSink,
    stats: InstanceStats,
    /// Where each call's time goes, if anyone watches (a host's job).
    call_times: Option<Arc<CallTimes>>,
}

/// The default log sink: each line to the host log.
fn tracing_sink(plugin: String) -> LogSink {
    Box::new(move |_, log: &CallLog| {
        for line in log.text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "weir::plugin", plugin = %plugin, "{line}");
        }
        if log.dropped_bytes > 0 {
            tracing::warn!(target: "weir::plugin", plugin = %plugin, "dropped {} bytes of output over the log limit", log.dropped_bytes);
        }
    })
}

fn new_store(plugin: &Plugin, limits: &PluginLimits, log: &CappedLog) -> Store<StoreState> {
    let mut store = Store::new(plugin.engine().engine(), StoreState::new(limits.memory, log));
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store
}

fn instantiate(pre: &WorldPre, store: &mut Store<StoreState>) -> wasmtime::Result<Live> {
    Ok(match pre {
        WorldPre::Window(p) => Live::Window(p.instantiate(store)?),
        WorldPre::Aggregate(p) => Live::Aggregate(p.instantiate(store)?),
        WorldPre::Map(p) => Live::Map(p.instantiate(store)?),
        WorldPre::Legacy(p) => Live::Legacy(LegacyLive::new(p.instantiate(store)?)),
    })
}

/// The pre-linked component, whatever its world.
fn instance_pre(pre: &WorldPre) -> &wasmtime::component::InstancePre<StoreState> {
    match pre {
        WorldPre::Window(p) => p.instance_pre(),
        WorldPre::Aggregate(p) => p.instance_pre(),
        WorldPre::Map(p) => p.instance_pre(),
        WorldPre::Legacy(p) => p,
    }
}

impl PluginInstance {
    /// At load: checks every export of the plugin's world against the
    /// contract's signature (wasmtime would only do so at the first call of
    /// each), then calls `describe` on a throwaway instance.
    pub(crate) fn describe(
        engine: &super::PluginEngine,
        pre: &WorldPre,
        origin: &str,
        kind: FunctionKind,
    ) -> Result<Descriptor, LoadError> {
        let limits = PluginLimits::default();
        let log = CappedLog::new(limits.log);
        let mut store = Store::new(engine.engine(), StoreState::new(limits.memory, &log));
        store.limiter(|state| &mut state.limiter);
        if engine.epochs() {
            store.epoch_deadline_trap();
            store.set_epoch_deadline(ticks(limits.deadline));
        }
        let failed = |e: wasmtime::Error| LoadError::Descriptor {
            origin: origin.to_string(),
            problem: format!("{e:#}"),
        };
        let instance = instance_pre(pre).instantiate(&mut store).map_err(failed)?;
        let checked = match pre {
            WorldPre::Legacy(..) => signatures::check_legacy_world(&mut store, &instance, kind),
            _ => signatures::check_world(&mut store, &instance, kind),
        };
        checked.map_err(|detail| LoadError::WorldMismatch {
            origin: origin.to_string(),
            world: kind,
            detail,
        })?;
        let descriptor = match pre {
            WorldPre::Window(_) => window::WindowFunction::new(&mut store, &instance)
                .and_then(|b| b.weir_functions_plugin().call_describe(&mut store)),
            WorldPre::Aggregate(_) => aggregate::AggregateFunction::new(&mut store, &instance)
                .and_then(|b| b.weir_functions_plugin().call_describe(&mut store)),
            WorldPre::Map(_) => map::MapFunction::new(&mut store, &instance)
                .and_then(|b| b.weir_functions_plugin().call_describe(&mut store)),
            WorldPre::Legacy(..) => LegacyLive::new(instance).describe(&mut store),
        };
        descriptor.map_err(failed)
    }

    pub(crate) fn new(plugin: Plugin, params: Vec<Param>, limits: PluginLimits) -> Result<Self, PluginError> {
        let log = CappedLog::new(limits.log);
        let store = new_store(&plugin, &limits, &log);
        let sink = tracing_sink(plugin.name().to_string());
        let mut instance = PluginInstance {
            deadline_ticks: ticks(limits.deadline),
            plugin,
            params,
            limits,
            store,
            live: None,
            log,
            log_sink: sink,
            stats: InstanceStats::default(),
            call_times: None,
        };
        if instance.limits.memory > MAX_PLUGIN_MEMORY {
            return Err(instance.error(
                site("instantiate"),
                Failure::Instantiate(format!(
                    "its memory limit of {} bytes is over weir's maximum of {MAX_PLUGIN_MEMORY}",
                    instance.limits.memory
                )),
            ));
        }
        instance.ensure_live()?;
        Ok(instance)
    }

    /// The plugin this is an instance of.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The limits it runs under.
    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Its counters.
    pub fn stats(&self) -> InstanceStats {
        self.stats
    }

    /// Times each call from now on into `times` (one clock read before and
    /// after a call: calls are per batch or per round of windows).
    pub fn time_calls(&mut self, times: Arc<CallTimes>) {
        self.call_times = Some(times);
    }

    /// Sends the guest's stdout and stderr somewhere other than the host log.
    pub fn set_log_sink(&mut self, sink: LogSink) {
        self.log_sink = sink;
    }

    fn error(&self, call: CallSite, failure: Failure) -> PluginError {
        PluginError { plugin: self.plugin.name().to_string(), call, failure }
    }

    /// The host rejects what a call returned: the call failed.
    fn reject(&mut self, call: CallSite, failure: Failure) -> PluginError {
        self.stats.failures += 1;
        self.error(call, failure)
    }

    /// Makes sure there is a live, configured instance: after a trap, a
    /// fresh store and instance replace the dead ones.
    fn ensure_live(&mut self) -> Result<(), PluginError> {
        if self.live.is_some() {
            return Ok(());
        }
        if self.stats.calls > 0 {
            self.stats.reinstantiations += 1;
            self.store = new_store(&self.plugin, &self.limits, &self.log);
        }
        self.arm_deadline();
        // Start-up code and `configure` see the epoch and the params' seed.
        self.store.data_mut().begin_call(CallContext::configure(&self.params));
        let live = instantiate(self.plugin.pre(), &mut self.store).map_err(|e| {
            let failure = match self.store.data().limiter.refused {
                // A large guest (CPython's image is about 12 MiB) may need
                // more memory at start than the job's limit allows.
                Some(needed) => Failure::Instantiate(format!(
                    "it needs {needed} bytes of memory at start, over its memory limit of {} bytes: \
                     raise [function.limits] memory",
                    self.limits.memory
                )),
                None => Failure::Instantiate(format!("{e:#}")),
            };
            self.error(site("instantiate"), failure)
        })?;
        let configured = match &live {
            Live::Window(b) => b.weir_functions_plugin().call_configure(&mut self.store, &self.params),
            Live::Aggregate(b) => b.weir_functions_plugin().call_configure(&mut self.store, &self.params),
            Live::Map(b) => b.weir_functions_plugin().call_configure(&mut self.store, &self.params),
            Live::Legacy(l) => l.configure(&mut self.store, &self.params),
        };
        self.flush_log();
        match configured {
            Ok(Ok(())) => {
                self.live = Some(live);
                Ok(())
            }
            Ok(Err(message)) => Err(self.error(site("configure"), Failure::Configure(message))),
            Err(e) => {
                let failure = self.classify(e);
                Err(self.error(site("configure"), failure))
            }
        }
    }

    fn arm_deadline(&mut self) {
        if self.plugin.engine().epochs() {
            self.store.set_epoch_deadline(self.deadline_ticks);
        }
    }

    /// Instantiates the component anew through the linker, without the
    /// pre-linked instance, and drops it: only for measuring what
    /// `InstancePre` saves (the `bench` feature).
    #[cfg(feature = "bench")]
    pub fn instantiate_unlinked(plugin: &Plugin) -> wasmtime::Result<()> {
        let log = CappedLog::new(1024);
        let mut store = new_store(plugin, &PluginLimits::default(), &log);
        store.set_epoch_deadline(u64::MAX / 2);
        let component = instance_pre(plugin.pre()).component();
        plugin.engine().linker().instantiate(&mut store, component)?;
        Ok(())
    }

    fn flush_log(&mut self) {
        let log = self.log.drain();
        if !log.text.is_empty() || log.dropped_bytes > 0 {
            self.stats.log_dropped_bytes += log.dropped_bytes;
            (self.log_sink)(self.plugin.name(), &log);
        }
    }

    /// Turns a wasmtime error into what went wrong, in the user's terms.
    fn classify(&self, e: wasmtime::Error) -> Failure {
        if let Some(requested) = self.store.data().limiter.refused {
            return Failure::Memory { limit: self.limits.memory, requested };
        }
        if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return Failure::Deadline(self.limits.deadline);
        }
        let trap = e.downcast_ref::<Trap>().map(|t| t.to_string()).unwrap_or_else(|| e.to_string());
        Failure::Trap(trap)
    }

    /// Runs one call with the deadline set, the clocks and random streams
    /// set to `context`, the log drained, and a trap turned into a typed
    /// error. `call_site` is only built on failure.
    fn call<R>(
        &mut self,
        context: CallContext,
        call_site: impl FnOnce() -> CallSite,
        f: impl FnOnce(&mut Store<StoreState>, &Live) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<R, PluginError> {
        self.ensure_live()?;
        let Some(live) = &self.live else {
            return Err(self.error(call_site(), Failure::Instantiate("no live instance".into())));
        };
        self.stats.calls += 1;
        if self.plugin.engine().epochs() {
            self.store.set_epoch_deadline(self.deadline_ticks);
        }
        let state = self.store.data_mut();
        state.limiter.refused = None;
        // After `ensure_live`, whose `configure` sets its own context.
        state.begin_call(context);
        let started = self.call_times.is_some().then(Instant::now);
        let result = f(&mut self.store, live);
        if let (Some(times), Some(started)) = (&self.call_times, started) {
            times.observe(started.elapsed());
        }
        match result {
            Ok(Ok(value)) => {
                self.flush_log();
                Ok(value)
            }
            Ok(Err(message)) => {
                self.flush_log();
                self.stats.failures += 1;
                Err(self.error(call_site(), Failure::Returned(message)))
            }
            Err(e) => {
                // The instance is dead after a trap: drop it, keep the log's
                // last words for the message, and start afresh next call.
                self.live = None;
                self.stats.failures += 1;
                let last_words = self.log.drain();
                let mut failure = self.classify(e);
                if let Failure::Trap(msg) = &mut failure {
                    // A Python guest prints a traceback before it traps: its
                    // exception says more than the runtime's panic after it.
                    if let Some(exception) = python_exception(&last_words.text) {
                        msg.push_str(&format!(" (Python exception: {exception})"));
                    } else if let Some(words) = last_lines(&last_words.text) {
                        msg.push_str(&format!(" (the plugin's last output: {words})"));
                    }
                }
                self.stats.log_dropped_bytes += last_words.dropped_bytes;
                (self.log_sink)(self.plugin.name(), &last_words);
                Err(self.error(call_site(), failure))
            }
        }
    }

    fn check_rows(&mut self, rows: &Rows, call_site: impl FnOnce() -> CallSite) -> Result<(), PluginError> {
        let outputs = &self.plugin.descriptor().outputs;
        let size: usize = rows.columns.iter().map(Column::data_size).sum();
        if size > self.limits.output {
            return Err(self.reject(call_site(), Failure::OutputTooLarge { size, limit: self.limits.output }));
        }
        if let Some(problem) =
            check_columns(&rows.columns, outputs.iter().map(|f| (f.name.as_str(), f.ty)), rows.len as usize)
        {
            return Err(self.reject(call_site(), Failure::BadOutput(problem)));
        }
        Ok(())
    }

    /// `window.apply`: the output rows for one window of one key.
    pub fn apply(&mut self, key: &Value, window: Window, events: &Events) -> Result<Rows, PluginError> {
        let call_site = || CallSite { function: "apply", key: Some(key.to_string()), window: Some(window) };
        let mut h = Hash::new("apply");
        h.value(key);
        h.window(window);
        h.i64s(&events.timestamps);
        let context = CallContext::fired(h, &[window]);
        let rows = self.call(context, call_site, |store, live| match live {
            Live::Window(b) => b.weir_functions_window().call_apply(store, key, window, events),
            Live::Legacy(l) => l.apply(store, key, window, events),
            _ => Ok(Err("not a window-function".into())),
        })?;
        self.check_rows(&rows, call_site)?;
        Ok(rows)
    }

    /// `window.apply-many`: several windows in one call. Window `i` is
    /// `keys[i]`, `windows[i]` and the events at rows `ranges[i]` (ranges
    /// may overlap). Any failure fails the whole call.
    pub fn apply_many(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Result<RowsMany, PluginError> {
        let call_site = || site("apply-many");
        let mut h = Hash::new("apply-many");
        h.values(keys);
        h.windows(windows);
        h.ranges(ranges);
        h.i64s(&events.timestamps);
        let context = CallContext::fired(h, windows);
        let rows = self.call(context, call_site, |store, live| match live {
            Live::Window(b) => {
                b.weir_functions_window().call_apply_many(store, keys, windows, ranges, events)
            }
            Live::Legacy(l) => l.apply_many(store, keys, windows, ranges, events),
            _ => Ok(Err("not a window-function".into())),
        })?;
        self.check_many(&rows, keys.len(), call_site)?;
        Ok(rows)
    }

    /// `aggregate.add-many`: accumulator `i` gets the events at rows
    /// `[ends[i - 1], ends[i])`.
    pub fn add_many(
        &mut self,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Result<Accumulators, PluginError> {
        let call_site = || site("add-many");
        let mut h = Hash::new("add-many");
        h.accumulators(accumulators);
        h.u32s(ends);
        h.i64s(&events.timestamps);
        let context = CallContext::batch(h, &events.timestamps);
        let accs = self.call(context, call_site, |store, live| match live {
            Live::Aggregate(b) => {
                b.weir_functions_aggregate().call_add_many(store, accumulators, ends, events)
            }
            Live::Legacy(l) => l.add_many(store, accumulators, ends, events),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        if accs.bytes.len() > self.limits.output {
            let size = accs.bytes.len();
            return Err(self.reject(call_site(), Failure::OutputTooLarge { size, limit: self.limits.output }));
        }
        if let Some(problem) = check_ends(&accs.ends, accumulators.ends.len(), accs.bytes.len()) {
            return Err(self.reject(call_site(), Failure::BadOutput(format!("accumulators: {problem}"))));
        }
        Ok(accs)
    }

    /// `aggregate.get-results`: window `i` merges the accumulators at
    /// `ranges[i]` (ranges may overlap).
    pub fn get_results(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Result<RowsMany, PluginError> {
        let call_site = || site("get-results");
        let mut h = Hash::new("get-results");
        h.values(keys);
        h.windows(windows);
        h.ranges(ranges);
        h.accumulators(accumulators);
        let context = CallContext::fired(h, windows);
        let rows = self.call(context, call_site, |store, live| match live {
            Live::Aggregate(b) => {
                b.weir_functions_aggregate().call_get_results(store, keys, windows, ranges, accumulators)
            }
            Live::Legacy(l) => l.get_results(store, keys, windows, ranges, accumulators),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        self.check_many(&rows, keys.len(), call_site)?;
        Ok(rows)
    }

    /// Checks a batched call's rows: one end per window, ends that fit the
    /// columns, columns as declared, all within the output limit.
    fn check_many(
        &mut self,
        rows: &RowsMany,
        windows: usize,
        call_site: impl Fn() -> CallSite,
    ) -> Result<(), PluginError> {
        let size: usize = rows.columns.iter().map(Column::data_size).sum();
        if size > self.limits.output {
            return Err(self.reject(call_site(), Failure::OutputTooLarge { size, limit: self.limits.output }));
        }
        let len = rows.ends.last().copied().unwrap_or(0) as usize;
        let outputs = &self.plugin.descriptor().outputs;
        let problem = check_ends(&rows.ends, windows, len)
            .or_else(|| check_columns(&rows.columns, outputs.iter().map(|f| (f.name.as_str(), f.ty)), len));
        match problem {
            Some(problem) => Err(self.reject(call_site(), Failure::BadOutput(problem))),
            None => Ok(()),
        }
    }

    /// `aggregate.create-accumulator`.
    pub fn create_accumulator(&mut self) -> Result<Vec<u8>, PluginError> {
        self.call(
            CallContext::timeless(Hash::new("create-accumulator")),
            || site("create-accumulator"),
            |store, live| match live {
                Live::Aggregate(b) => b.weir_functions_aggregate().call_create_accumulator(store).map(Ok),
                Live::Legacy(l) => l.create_accumulator(store),
                _ => Ok(Err("not an aggregate-function".into())),
            },
        )
    }

    /// `aggregate.add`: folds a batch of one key's events into `accumulator`.
    pub fn add(&mut self, key: &Value, accumulator: &[u8], events: &Events) -> Result<Vec<u8>, PluginError> {
        let call_site = || CallSite { function: "add", key: Some(key.to_string()), window: None };
        let mut h = Hash::new("add");
        h.value(key);
        h.bytes(accumulator);
        h.i64s(&events.timestamps);
        let context = CallContext::batch(h, &events.timestamps);
        let acc = self.call(context, call_site, |store, live| match live {
            Live::Aggregate(b) => b.weir_functions_aggregate().call_add(store, accumulator, events),
            Live::Legacy(l) => l.add(store, accumulator, events),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        self.check_accumulator(acc, call_site)
    }

    /// `aggregate.merge`: one accumulator from two of the same key.
    pub fn merge(&mut self, key: &Value, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginError> {
        let call_site = || CallSite { function: "merge", key: Some(key.to_string()), window: None };
        let mut h = Hash::new("merge");
        h.value(key);
        h.bytes(a);
        h.bytes(b);
        let acc = self.call(CallContext::timeless(h), call_site, |store, live| match live {
            Live::Aggregate(bind) => bind.weir_functions_aggregate().call_merge(store, a, b),
            Live::Legacy(l) => l.merge(store, a, b),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        self.check_accumulator(acc, call_site)
    }

    /// `aggregate.get-result`: the output rows of a window from its
    /// accumulator.
    pub fn get_result(
        &mut self,
        key: &Value,
        window: Window,
        accumulator: &[u8],
    ) -> Result<Rows, PluginError> {
        let call_site =
            || CallSite { function: "get-result", key: Some(key.to_string()), window: Some(window) };
        let mut h = Hash::new("get-result");
        h.value(key);
        h.window(window);
        h.bytes(accumulator);
        let context = CallContext::fired(h, &[window]);
        let rows = self.call(context, call_site, |store, live| match live {
            Live::Aggregate(b) => {
                b.weir_functions_aggregate().call_get_result(store, accumulator, key, window)
            }
            Live::Legacy(l) => l.get_result(store, accumulator, key, window),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        self.check_rows(&rows, call_site)?;
        Ok(rows)
    }

    /// `aggregate.migrate`: an accumulator saved by state version
    /// `from_version` of this function, in its current layout. A component
    /// built for the 0.1.0 contract has no `migrate`: an error.
    pub fn migrate(&mut self, accumulator: &[u8], from_version: u32) -> Result<Vec<u8>, PluginError> {
        let call_site = || site("migrate");
        let mut h = Hash::new("migrate");
        h.bytes(accumulator);
        h.u64(u64::from(from_version));
        let acc = self.call(CallContext::timeless(h), call_site, |store, live| match live {
            Live::Aggregate(b) => b.weir_functions_aggregate().call_migrate(store, accumulator, from_version),
            Live::Legacy(_) => Ok(Err(format!(
                "it was built for weir:functions@{}, which has no migrate: rebuild it to upgrade its state",
                super::legacy::LEGACY_VERSION
            ))),
            _ => Ok(Err("not an aggregate-function".into())),
        })?;
        self.check_accumulator(acc, call_site)
    }

    /// `map.map`: the mapped (or filtered) batch.
    pub fn map(&mut self, events: &Events) -> Result<Mapped, PluginError> {
        let call_site = || site("map");
        let mut h = Hash::new("map");
        h.i64s(&events.timestamps);
        let context = CallContext::batch(h, &events.timestamps);
        let mapped = self.call(context, call_site, |store, live| match live {
            Live::Map(b) => b.weir_functions_map().call_map(store, events),
            Live::Legacy(l) => l.map(store, events),
            _ => Ok(Err("not a map-function".into())),
        })?;
        let size: usize = mapped.columns.iter().map(Column::data_size).sum::<usize>() + mapped.rows.len() * 4;
        if size > self.limits.output {
            return Err(self.reject(call_site(), Failure::OutputTooLarge { size, limit: self.limits.output }));
        }
        let n = events.timestamps.len();
        if let Some(bad) = mapped.rows.iter().find(|&&r| r as usize >= n) {
            return Err(self.error(
                call_site(),
                Failure::BadOutput(format!("row index {bad} is out of range for a batch of {n}")),
            ));
        }
        let outputs = &self.plugin.descriptor().outputs;
        if let Some(problem) =
            check_columns(&mapped.columns, outputs.iter().map(|f| (f.name.as_str(), f.ty)), mapped.rows.len())
        {
            return Err(self.reject(call_site(), Failure::BadOutput(problem)));
        }
        Ok(mapped)
    }

    fn check_accumulator(
        &mut self,
        acc: Vec<u8>,
        call_site: impl FnOnce() -> CallSite,
    ) -> Result<Vec<u8>, PluginError> {
        if acc.len() > self.limits.output {
            return Err(self.reject(
                call_site(),
                Failure::OutputTooLarge { size: acc.len(), limit: self.limits.output },
            ));
        }
        Ok(acc)
    }
}

/// The last two meaningful lines a guest wrote: for a Rust panic, the
/// "panicked at" line and its message, without the backtrace hint.
fn last_lines(text: &str) -> Option<String> {
    let mut lines: Vec<&str> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note: run with")).collect();
    let keep = lines.len().saturating_sub(2);
    lines.drain(..keep);
    (!lines.is_empty()).then(|| lines.join(" "))
}

/// The exception of the last Python traceback in `text`, with where it was
/// raised: `KeyError: 'x' (at hostile.py, line 25, in apply)`. The
/// exception is the first line after the traceback's indented frames.
fn python_exception(text: &str) -> Option<String> {
    let (_, after) = text.rsplit_once("Traceback (most recent call last):")?;
    let mut frame = None;
    for line in after.lines().skip(1) {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(place) = trimmed.strip_prefix("File ") {
                frame = Some(place);
            }
            continue;
        }
        // componentize-py files modules under numbered folders ("/0/m.py").
        let place = frame.map(|f| {
            let f = f.trim_start_matches('"');
            let (file, rest) = f.split_once('"').unwrap_or((f, ""));
            let file = file.rsplit('/').next().unwrap_or(file);
            format!(" (at {file}{rest})")
        });
        return Some(format!("{trimmed}{}", place.unwrap_or_default()));
    }
    None
}

fn site(function: &'static str) -> CallSite {
    CallSite { function, key: None, window: None }
}

/// Epoch ticks for a deadline: rounded up, plus one because the current
/// tick is already partly gone.
fn ticks(deadline: std::time::Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    (deadline.as_nanos().div_ceil(tick) as u64).saturating_add(1)
}

/// Checks the `ends` of a batched result: `count` of them, never going
/// back, the last at `len`.
fn check_ends(ends: &[u32], count: usize, len: usize) -> Option<String> {
    if ends.len() != count {
        return Some(format!("{} ends for {count} windows", ends.len()));
    }
    if ends.windows(2).any(|w| w[1] < w[0]) {
        return Some("ends go back".into());
    }
    match ends.last() {
        Some(&last) if last as usize != len => {
            Some(format!("the last end is {last}, but there are {len} rows"))
        }
        _ => None,
    }
}

/// Checks that columns match the declared outputs in number, type and
/// length; returns the problem, if any.
fn check_columns<'a>(
    columns: &[Column],
    declared: impl ExactSizeIterator<Item = (&'a str, FieldType)>,
    len: usize,
) -> Option<String> {
    if columns.len() != declared.len() {
        return Some(format!("{} columns, but it declares {} outputs", columns.len(), declared.len()));
    }
    for (column, (name, ty)) in columns.iter().zip(declared) {
        if column.ty() != ty {
            return Some(format!("output '{name}' should be {ty}, got {}", column.ty()));
        }
        if column.len() != len {
            return Some(format!("output '{name}' has {} values for {len} rows", column.len()));
        }
    }
    None
}

#[cfg(test)]
mod call_time_tests {
    use super::*;

    #[test]
    fn a_python_traceback_gives_its_exception_and_where_it_was_raised() {
        let log = "Traceback (most recent call last):\n  File \"/1/weir_guest/__init__.py\", line 327, in apply\n    \
                   return f()\n  File \"/0/hostile.py\", line 25, in apply\n    return [(r[\"x\"],)]\n\
                   KeyError: 'missing-sensor'\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\n\
                   Python function threw an unexpected exception\n";
        assert_eq!(
            python_exception(log).as_deref(),
            Some("KeyError: 'missing-sensor' (at hostile.py, line 25, in apply)")
        );
        // A chained exception: the last traceback's is the one that trapped.
        let chained = format!(
            "{log}\nDuring handling of the above exception, another exception occurred:\n\n{}",
            log.replace("KeyError: 'missing-sensor'", "ValueError: bad")
        );
        assert_eq!(
            python_exception(&chained).as_deref(),
            Some("ValueError: bad (at hostile.py, line 25, in apply)")
        );
        assert_eq!(python_exception("thread 'main' panicked at src/lib.rs:3:5:\nboom\n"), None);
    }

    #[test]
    fn calls_land_in_the_first_bucket_that_holds_them_counted_cumulatively() {
        let times = CallTimes::default();
        for us in [3, 10, 11, 700, 2_000_000] {
            times.observe(Duration::from_micros(us));
        }
        times.observe(Duration::from_nanos(10_001));
        let s = times.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.sum_ns, (3 + 10 + 11 + 700 + 2_000_000) * 1_000 + 10_001);
        // ≤10 µs, ≤50, ≤100, ≤500, ≤1 ms, …, ≤1 s; the 2 s call is over all.
        assert_eq!(s.buckets, [2, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5]);
    }
}
