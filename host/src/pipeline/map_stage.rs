//! The operator of map jobs: one `map` call per batch, writing each input
//! record back out with the function's output fields set. A failed call
//! sends the batch's records to the dead letters.

use super::collect::Collector;
use super::operator::Operator;
use super::payloads::Payloads;
use crate::decode::Batch;
use crate::plugin::{Mapped, PluginError, PluginInstance};
use crate::types::{Column, Events, Field, FieldType};
use crate::window::empty_events;
use std::ops::Range;

/// The function of a map job: a plugin instance, or plain Rust in tests.
pub trait MapFunction {
    /// The output rows of a batch: `rows[i]` is the input row of output row
    /// `i`, whose new fields are row `i` of `columns`.
    fn map(&mut self, events: &Events) -> Result<Mapped, PluginError>;
}

impl MapFunction for PluginInstance {
    fn map(&mut self, events: &Events) -> Result<Mapped, PluginError> {
        PluginInstance::map(self, events)
    }
}

/// A map function over batches.
pub struct MapStage<F> {
    function: F,
    /// Batch column feeding each plugin input.
    inputs: Vec<usize>,
    /// The plugin's input types, in its order.
    input_types: Vec<FieldType>,
    /// The function's declared outputs, in column order.
    outputs: Vec<Field>,
}

impl<F: MapFunction> MapStage<F> {
    /// A stage calling `function`, fed from batch columns `inputs`, whose
    /// output fields are `outputs`.
    pub fn new(function: F, inputs: Vec<usize>, input_types: Vec<FieldType>, outputs: Vec<Field>) -> Self {
        MapStage { function, inputs, input_types, outputs }
    }

    /// The plugin's input columns for a batch.
    fn events(&self, batch: &Batch) -> Events {
        let mut events = empty_events(&self.input_types);
        events.timestamps.extend_from_slice(&batch.timestamps);
        for (dst, &src) in events.columns.iter_mut().zip(&self.inputs) {
            *dst = batch.columns[src].clone();
        }
        events
    }
}

impl<F: MapFunction> Operator for MapStage<F> {
    fn reads_payloads(&self) -> bool {
        true
    }

    // A map has no windows, so the loop always hands it whole batches.
    fn process_batch(
        &mut self,
        batch: &Batch,
        _rows: Range<usize>,
        payloads: &Payloads,
        out: &mut Collector<'_>,
    ) {
        if batch.is_empty() {
            return;
        }
        let events = self.events(batch);
        match self.function.map(&events) {
            Ok(mapped) => {
                for (i, &row) in mapped.rows.iter().enumerate() {
                    let row = row as usize;
                    let record = remap(payloads.get(row), &self.outputs, &mapped.columns, i);
                    out.output(batch.partitions[row], batch.keys[row].as_ref(), None, false, &record);
                }
            }
            Err(error) => {
                let records = (0..batch.len())
                    .map(|row| (batch.partitions[row], batch.offsets[row], payloads.get(row)));
                out.failed_batch(records, &error);
            }
        }
    }
}

/// The input record with the map function's output fields set. (This
/// parses the payload again; map output is a record of the input's shape,
/// which the decoder's columns do not hold.)
fn remap(payload: &[u8], outputs: &[Field], columns: &[Column], row: usize) -> serde_json::Value {
    let mut object = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(serde_json::Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    for (field, column) in outputs.iter().zip(columns) {
        object.insert(field.name.clone(), column.get(row).map(|v| v.to_json()).unwrap_or_default());
    }
    serde_json::Value::Object(object)
}
