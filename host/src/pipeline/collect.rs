//! Where operators put their output: the collector writes each record to
//! its sink (results, dead letters, late events), counts it in the run
//! summary, and shows it to the caller. A sink error (or, with `[function]
//! on_failure = "fail"`, a function's) is kept, and the loop stops at the
//! end of the step that hit it.

use super::dead_letter;
use super::{Emitted, PipelineError, RunSummary, Sinks};
use crate::job::OnFailure;
use crate::plugin::PluginError;
use crate::record::Key;
use crate::sink::{Sink, SinkError};
use crate::types::Window;
use serde_json::Value;

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
}

impl Collector<'_> {
    /// An output record made from `partition`'s input.
    pub fn output(
        &mut self,
        partition: i32,
        key: Option<&Key>,
        window: Option<Window>,
        refire: bool,
        record: &Value,
    ) {
        self.summary.outputs += 1;
        let result = send(Some(&mut self.sinks.output), partition, key, record, "output");
        self.keep(result);
        (self.on_emit)(Emitted { key, window, record, refire });
    }

    /// A record that could not be decoded.
    pub fn undecodable(&mut self, partition: i32, offset: i64, payload: &[u8], reason: &str) {
        let letter = dead_letter::record(self.source, partition, offset, payload, reason);
        self.dead_letter(partition, &letter);
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
            let letter = dead_letter::record(self.source, partition, offset, payload, &reason);
            self.dead_letter(partition, &letter);
        }
    }

    /// A window the function failed on.
    pub fn failed_window(&mut self, partition: i32, key: &Key, window: Window, error: &PluginError) {
        self.summary.failed += 1;
        if self.fails(error) {
            return;
        }
        tracing::warn!("{error}");
        let letter =
            dead_letter::window(self.source, partition, self.key_field, key, window, &error.to_string());
        self.dead_letter(partition, &letter);
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
        let letter =
            dead_letter::late(self.source, partition, offset, payload, event_time, watermark, lateness);
        let result = send(self.sinks.late.as_mut(), partition, None, &letter, "late event");
        self.keep(result);
    }

    fn dead_letter(&mut self, partition: i32, letter: &Value) {
        self.summary.dead_letters += 1;
        let result = send(self.sinks.dead_letter.as_mut(), partition, None, letter, "dead letter");
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
/// it when there is none.
fn send(
    sink: Option<&mut Box<dyn Sink>>,
    partition: i32,
    key: Option<&Key>,
    record: &Value,
    what: &str,
) -> Result<(), SinkError> {
    let text = record.to_string();
    match sink {
        Some(sink) => {
            let key_text = key.map(|k| match k {
                Key::Int(i) => i.to_string(),
                Key::Str(s) => s.clone(),
            });
            sink.send_from(partition, key_text.as_deref().map(str::as_bytes), text.as_bytes())
        }
        None => {
            tracing::warn!("{what} (no output configured for it): {text}");
            Ok(())
        }
    }
}
