//! A plugin instance is the window operator's function: each call goes to
//! the component, with the instance's limits and checks.

use super::{PluginError, PluginInstance};
use crate::types::{Accumulators, Events, RowRange, Rows, RowsMany, Value, Window};
use crate::window::WindowFunction;

impl WindowFunction for PluginInstance {
    fn apply(&mut self, key: &Value, window: Window, events: &Events) -> Result<Rows, PluginError> {
        PluginInstance::apply(self, key, window, events)
    }

    fn apply_many(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        events: &Events,
    ) -> Result<RowsMany, PluginError> {
        PluginInstance::apply_many(self, keys, windows, ranges, events)
    }

    fn create_accumulator(&mut self) -> Result<Vec<u8>, PluginError> {
        PluginInstance::create_accumulator(self)
    }

    fn add(&mut self, key: &Value, accumulator: &[u8], events: &Events) -> Result<Vec<u8>, PluginError> {
        PluginInstance::add(self, key, accumulator, events)
    }

    fn merge(&mut self, key: &Value, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginError> {
        PluginInstance::merge(self, key, a, b)
    }

    fn get_result(&mut self, key: &Value, window: Window, accumulator: &[u8]) -> Result<Rows, PluginError> {
        PluginInstance::get_result(self, key, window, accumulator)
    }

    fn migrate(&mut self, accumulator: &[u8], from_version: u32) -> Result<Vec<u8>, String> {
        PluginInstance::migrate(self, accumulator, from_version).map_err(|e| e.to_string())
    }

    fn add_many(
        &mut self,
        accumulators: &Accumulators,
        ends: &[u32],
        events: &Events,
    ) -> Result<Accumulators, PluginError> {
        PluginInstance::add_many(self, accumulators, ends, events)
    }

    fn get_results(
        &mut self,
        keys: &[Value],
        windows: &[Window],
        ranges: &[RowRange],
        accumulators: &Accumulators,
    ) -> Result<RowsMany, PluginError> {
        PluginInstance::get_results(self, keys, windows, ranges, accumulators)
    }
}
