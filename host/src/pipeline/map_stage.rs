//! The operator of map jobs: one `map` call per batch, writing each input
//! record back out with the function's output fields set. A failed call is
//! tried again `retries` times, waiting `retry_backoff`, doubling; if it
//! still fails, each record is mapped on its own, so that only the records
//! the function fails on go to the dead letters (with the reason and the
//! number of attempts).

use super::collect::Collector;
use super::operator::Operator;
use super::payloads::Payloads;
use crate::decode::Batch;
use crate::plugin::{Mapped, PluginError, PluginInstance};
use crate::types::{Column, Events, Field, FieldType};
use crate::window::empty_events;
use std::ops::Range;
use std::time::Duration;

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
    /// Retries of a failed batch call before it is narrowed down.
    retries: u32,
    /// The wait before the first retry; doubled for each further one.
    backoff: Duration,
}

impl<F: MapFunction> MapStage<F> {
    /// A stage calling `function`, fed from batch columns `inputs`, whose
    /// output fields are `outputs`.
    pub fn new(function: F, inputs: Vec<usize>, input_types: Vec<FieldType>, outputs: Vec<Field>) -> Self {
        MapStage { function, inputs, input_types, outputs, retries: 0, backoff: Duration::ZERO }
    }

    /// Tries a failed call again `retries` times, waiting `backoff` before
    /// the first retry and twice as long before each next one (`[function]
    /// retries` and `retry_backoff`).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        (self.retries, self.backoff) = (retries, backoff);
        self
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

    /// The plugin's input columns for row `row` of a batch alone.
    fn row_events(&self, batch: &Batch, row: usize) -> Events {
        let mut events = empty_events(&self.input_types);
        events.timestamps.push(batch.timestamps[row]);
        for (dst, &src) in events.columns.iter_mut().zip(&self.inputs) {
            *dst = one_row(&batch.columns[src], row);
        }
        events
    }

    /// Writes the output records of a successful call over `rows` (the
    /// batch rows it was given, in order).
    fn emit(
        &self,
        batch: &Batch,
        payloads: &Payloads,
        rows: &[usize],
        mapped: &Mapped,
        out: &mut Collector<'_>,
    ) {
        for (i, &local) in mapped.rows.iter().enumerate() {
            let Some(&row) = rows.get(local as usize) else { continue };
            let record = remap(payloads.get(row), &self.outputs, &mapped.columns, i);
            // Writing a JSON value to a Vec cannot fail.
            let write = |buffer: &mut Vec<u8>| {
                let _ = serde_json::to_writer(buffer, &record);
            };
            out.output(batch.partitions[row], batch.keys[row].as_ref(), None, false, None, write);
        }
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
        let all: Vec<usize> = (0..batch.len()).collect();
        let mut wait = self.backoff;
        let mut error = match self.function.map(&events) {
            Ok(mapped) => return self.emit(batch, payloads, &all, &mapped, out),
            Err(e) => e,
        };
        for retry in 1..=self.retries {
            tracing::warn!(
                "{error}; retrying the batch of {} records ({retry} of {})",
                batch.len(),
                self.retries
            );
            // The loop waits: a function that fails for a while (a
            // resource it reads, a deadline on a loaded machine) gets time.
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
            match self.function.map(&events) {
                Ok(mapped) => return self.emit(batch, payloads, &all, &mapped, out),
                Err(e) => error = e,
            }
        }
        // Still failing: one call per record pins the failure on the
        // records that cause it; the rest are written as usual.
        let attempts = self.retries + 2;
        if batch.len() == 1 {
            let records = std::iter::once((batch.partitions[0], batch.offsets[0], payloads.get(0)));
            return out.failed_batch(records, &error, attempts - 1);
        }
        for row in 0..batch.len() {
            match self.function.map(&self.row_events(batch, row)) {
                Ok(mapped) => self.emit(batch, payloads, &[row], &mapped, out),
                Err(e) => {
                    let record = (batch.partitions[row], batch.offsets[row], payloads.get(row));
                    out.failed_batch(std::iter::once(record), &e, attempts);
                }
            }
        }
    }
}

/// Row `row` of a column, as a column of one value.
fn one_row(column: &Column, row: usize) -> Column {
    match column {
        Column::F64(v) => Column::F64(v[row..=row].to_vec()),
        Column::I64(v) => Column::I64(v[row..=row].to_vec()),
        Column::String(v) => Column::String(v[row..=row].to_vec()),
        Column::Bool(v) => Column::Bool(v[row..=row].to_vec()),
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
