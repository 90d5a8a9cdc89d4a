//! Where operators put their output: the collector writes each record to
//! its sink (results, dead letters, late events), counts it in the run
//! summary, and shows it to the caller. Records are JSON text written
//! into one reused buffer. A sink error (or, with `[function] on_failure
//! = "fail"`, a function's) is kept, and the loop stops at the end of the
//! step that hit it.

use super::dead_letter;
use super::{PipelineError, RunSummary, Sinks};
use crate::encode::write_key;
use crate::job::OnFailure;
use crate::plugin::PluginError;
use crate::record::Key;
use crate::sink::{Sink, SinkError};
use crate::types::{Column, Field, Value, Window};
use crate::window::RowsRef;

/// One fired window's output row or mapped record, as it was written.
pub struct Emitted<'a> {
    /// The record key, if any.
    pub key: Option<&'a Key>,
    /// The window, for window jobs.
    pub window: Option<Window>,
    /// The record as written: one JSON object (without a newline).
    pub record: &'a [u8],
    /// For window jobs, the function's output row the record holds, typed.
    pub row: Option<OutputRow<'a>>,
    /// True when a late event made the window fire again.
    pub refire: bool,
}

impl Emitted<'_> {
    /// The record, parsed.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(self.record)
    }
}

/// One row of a function's output, with the names of its fields.
#[derive(Debug, Clone, Copy)]
pub struct OutputRow<'a> {
    /// The function's declared outputs, in column order.
    pub fields: &'a [Field],
    /// The rows the row is one of.
    pub rows: RowsRef<'a>,
    /// The row, an index into `rows.columns`.
    pub row: usize,
}

impl OutputRow<'_> {
    fn column(&self, name: &str) -> Option<&Column> {
        let i = self.fields.iter().position(|f| f.name == name)?;
        self.rows.columns.get(i)
    }

    /// The value of output `name`.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.column(name)?.get(self.row)
    }

    /// The value of the f64 output `name`.
    pub fn f64(&self, name: &str) -> Option<f64> {
        match self.column(name)? {
            Column::F64(v) => v.get(self.row).copied(),
            _ => None,
        }
    }

    /// The value of the i64 output `name`.
    pub fn i64(&self, name: &str) -> Option<i64> {
        match self.column(name)? {
            Column::I64(v) => v.get(self.row).copied(),
            _ => None,
        }
    }
}

/// The output side of a running job, lent to its operator.
pub struct Collector<'a> {
    pub(super) sinks: &'a mut Sinks,
    pub(super) summary: &'a mut RunSummary,
    pub(super) on_emit: &'a mut dyn FnMut(Emitted<'_>),
    /// The source's name, for dead letters.
    pub(super) source: &'a str,
    /// The key's field name in output and dead-letter records.
    pub(super) key_field: &'a str,
    /// What a function failure does.
    pub(super) on_failure: OnFailure,
    pub(super) failure: Option<PipelineError>,
    /// The record being written, and its key's text (reused).
    pub(super) buffers: Buffers,
}

/// The collector's reused buffers.
#[derive(Default)]
pub struct Buffers {
    record: Vec<u8>,
    key: Vec<u8>,
}

impl<'a> Collector<'a> {
    /// A collector of `job`'s output into `sinks`, counted in `summary`;
    /// `source` names the source in dead letters.
    pub(super) fn new(
        sinks: &'a mut Sinks,
        summary: &'a mut RunSummary,
        on_emit: &'a mut dyn FnMut(Emitted<'_>),
        source: &'a str,
        key_field: &'a str,
        job: &crate::job::Job,
    ) -> Collector<'a> {
        Collector {
            sinks,
            summary,
            on_emit,
            source,
            key_field,
            on_failure: job.config.function.on_failure,
            failure: None,
            buffers: Buffers::default(),
        }
    }
}

impl Collector<'_> {
    /// An output record made from `partition`'s input, which `write`
    /// appends as JSON text to the buffer it is given.
    pub fn output(
        &mut self,
        partition: i32,
        key: Option<&Key>,
        window: Option<Window>,
        refire: bool,
        row: Option<OutputRow<'_>>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.summary.outputs += 1;
        let Buffers { record, key: key_text } = &mut self.buffers;
        record.clear();
        write(record);
        let result = send(Some(&mut self.sinks.output), partition, key, key_text, record, "output");
        self.keep(result);
        (self.on_emit)(Emitted { key, window, record: &self.buffers.record, row, refire });
    }

    /// A record that could not be decoded.
    pub fn undecodable(&mut self, partition: i32, offset: i64, payload: &[u8], reason: &str) {
        self.buffers.record.clear();
        dead_letter::record(&mut self.buffers.record, self.source, partition, offset, payload, reason);
        self.dead_letter(partition);
    }

    /// Records the function failed on (map jobs), after `attempts` calls.
    pub fn failed_batch<'p>(
        &mut self,
        records: impl Iterator<Item = (i32, i64, &'p [u8])>,
        error: &PluginError,
        attempts: u32,
    ) {
        self.summary.failed += 1;
        if self.fails(error) {
            return;
        }
        tracing::warn!("{error}");
        let reason = format!("{error} (after {attempts} attempts)");
        for (partition, offset, payload) in records {
            self.buffers.record.clear();
            dead_letter::record(&mut self.buffers.record, self.source, partition, offset, payload, &reason);
            self.dead_letter(partition);
        }
    }

    /// A window the function failed on.
    pub fn failed_window(&mut self, partition: i32, key: &Key, window: Window, error: &PluginError) {
        self.summary.failed += 1;
        if self.fails(error) {
            return;
        }
        tracing::warn!("{error}");
        self.buffers.record.clear();
        let reason = error.to_string();
        dead_letter::window(
            &mut self.buffers.record,
            self.source,
            partition,
            self.key_field,
            key,
            window,
            &reason,
        );
        self.dead_letter(partition);
    }

    /// An event too late for every window it belongs to.
    pub fn late(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        event_time: i64,
        watermark: i64,
        lateness: i64,
    ) {
        self.summary.late += 1;
        let Buffers { record, key } = &mut self.buffers;
        record.clear();
        dead_letter::late(record, self.source, partition, offset, payload, event_time, watermark, lateness);
        let result = send(self.sinks.late.as_mut(), partition, None, key, record, "late event");
        self.keep(result);
    }

    /// Sends the letter in the record buffer to the dead letters.
    fn dead_letter(&mut self, partition: i32) {
        self.summary.dead_letters += 1;
        let Buffers { record, key } = &mut self.buffers;
        let result = send(self.sinks.dead_letter.as_mut(), partition, None, key, record, "dead letter");
        self.keep(result);
    }

    /// With `on_failure = "fail"`, keeps the function's error to stop the
    /// run; true if it did.
    fn fails(&mut self, error: &PluginError) -> bool {
        if self.on_failure == OnFailure::Fail {
            self.failure.get_or_insert_with(|| PipelineError::Plugin(error.clone()));
            return true;
        }
        false
    }

    fn keep(&mut self, result: Result<(), SinkError>) {
        if let Err(e) = result {
            self.failure.get_or_insert(e.into());
        }
    }

    /// The first error since the last call, if any.
    pub(super) fn take_failure(&mut self) -> Option<PipelineError> {
        self.failure.take()
    }
}

/// Writes one JSON record made from `partition`'s input to a sink, or logs
/// it when there is none. The message key is the record key's text
/// (`key_text` is the buffer it is written to).
fn send(
    sink: Option<&mut Box<dyn Sink>>,
    partition: i32,
    key: Option<&Key>,
    key_text: &mut Vec<u8>,
    record: &[u8],
    what: &str,
) -> Result<(), SinkError> {
    match sink {
        Some(sink) => {
            let key = key.map(|k| match k {
                Key::Int(_) => {
                    key_text.clear();
                    write_key(key_text, k);
                    &key_text[..]
                }
                Key::Str(s) => s.as_bytes(),
            });
            sink.send_from(partition, key, record)
        }
        None => {
            tracing::warn!("{what} (no output configured for it): {}", String::from_utf8_lossy(record));
            Ok(())
        }
    }
}
