//! The function a window operator reduces windows with, as the operator
//! sees it: a handful of calls, whole windows or batches at a time.
//!
//! A WebAssembly plugin implements it (`plugin::PluginInstance`); so can
//! plain Rust code, for tests and built-in reducers. The operator never
//! knows which, so its oracle tests run without building any guest.

use crate::plugin::PluginError;
use crate::types::{Accumulators, Events, RowRange, Rows, RowsMany, Value, Window};

/// The calls of a window function (`apply`) or of an aggregate
/// (`create-accumulator`, `add`, `merge`, `get-result`), single and
/// batched, with the meaning the WIT contract gives them. A function
/// implements the calls of its kind; the operator only makes those.
///
/// Batched calls pass many windows or accumulators in flat buffers: window
/// `i` covers the rows (or accumulators) at `ranges[i]`, and ranges may
/// overlap, so the windows of a sliding window share their panes; `add_many`
/// cuts its events by `ends` (item `i` is rows `[ends[i - 1], ends[i])`).
/// Any error fails the whole batched call; the operator then retries item
/// by item with the single calls, to pin the failure on its window.
pub trait WindowFunction {
    /// The rows of one window of one key.
    fn apply(&mut self, key: &Value, window: Window, events: &Events) -> Result<Rows, PluginError>;

    /// The rows of many windows: window `i` is `keys[i]`, `windows[i]` and
    /// the events at rows `ranges[i]`.
    fn apply_many(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Result<RowsMany, PluginError>;

    /// A new, empty accumulator.
    fn create_accumulator(&mut self) -> Result<Vec<u8>, PluginError>;

    /// `accumulator` with `events` (all of key `key`) added.
    fn add(&mut self, key: &Value, accumulator: &[u8], events: &Events) -> Result<Vec<u8>, PluginError>;

    /// One accumulator from two of the same key.
    fn merge(&mut self, key: &Value, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginError>;

    /// The rows of one window from its accumulator.
    fn get_result(&mut self, key: &Value, window: Window, accumulator: &[u8]) -> Result<Rows, PluginError>;

    /// Accumulator `i` with the events at rows `[ends[i - 1], ends[i])`
    /// added.
    fn add_many(
        &mut self,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Result<Accumulators, PluginError>;

    /// The rows of many windows: window `i` merges the accumulators at
    /// `ranges[i]`.
    fn get_results(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Result<RowsMany, PluginError>;

    /// An accumulator saved by state version `from_version` of this
    /// function, in its current layout (a plugin upgrade); the error says
    /// why not. A function with one layout only has nothing to migrate
    /// from.
    fn migrate(&mut self, _accumulator: &[u8], from_version: u32) -> Result<Vec<u8>, String> {
        Err(format!("this function has no state version {from_version} to migrate from"))
    }
}
