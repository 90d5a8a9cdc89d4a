//! What a window holds between events and firing: either the window's
//! events in columns (for window functions), or an accumulator plus a small
//! buffer of events not yet added (for aggregate functions).

use crate::plugin::types::{Column, Events, FieldType};
use crate::plugin::{PluginError, PluginInstance};
use crate::record::Key;

/// How windows are reduced, which decides what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Keep every event; call `apply` once per fired window.
    Window,
    /// Keep an accumulator; `add` events in batches of at most this many.
    Aggregate {
        /// Events buffered before they are added to the accumulator.
        flush_at: usize,
    },
}

/// The contents of one pane or session.
#[derive(Debug, Clone)]
pub struct Contents {
    /// Events not yet reduced: all of them for window functions; those not
    /// yet added to `acc` for aggregates.
    pub events: Events,
    /// The accumulator, for aggregate functions, once something was added.
    pub acc: Option<Vec<u8>>,
}

/// An empty `Events` with columns of the given types.
pub fn empty_events(types: &[FieldType]) -> Events {
    Events { timestamps: Vec::new(), columns: types.iter().map(|t| Column::empty(*t)).collect() }
}

/// Appends row `row` of `from` (the job's columns) to `to`, taking the
/// columns the plugin reads, in its order (`inputs[i]` is the job column of
/// plugin input `i`).
#[inline]
pub fn push_row(to: &mut Events, ts: i64, from: &[Column], inputs: &[usize], row: usize) {
    to.timestamps.push(ts);
    for (dst, &src) in to.columns.iter_mut().zip(inputs) {
        match (dst, &from[src]) {
            (Column::F64(d), Column::F64(s)) => d.push(s[row]),
            (Column::I64(d), Column::I64(s)) => d.push(s[row]),
            (Column::String(d), Column::String(s)) => d.push(s[row].clone()),
            (Column::Bool(d), Column::Bool(s)) => d.push(s[row]),
            // Types were checked against the plugin before any data.
            _ => {}
        }
    }
}

/// Appends all of `from` to `to` (same column types).
pub fn append_events(to: &mut Events, from: &Events) {
    to.timestamps.extend_from_slice(&from.timestamps);
    for (dst, src) in to.columns.iter_mut().zip(&from.columns) {
        match (dst, src) {
            (Column::F64(d), Column::F64(s)) => d.extend_from_slice(s),
            (Column::I64(d), Column::I64(s)) => d.extend_from_slice(s),
            (Column::String(d), Column::String(s)) => d.extend_from_slice(s),
            (Column::Bool(d), Column::Bool(s)) => d.extend_from_slice(s),
            _ => {}
        }
    }
}

/// Empties `events`, keeping allocations.
pub fn clear_events(events: &mut Events) {
    events.timestamps.clear();
    events.columns.iter_mut().for_each(Column::clear);
}

impl Contents {
    /// Empty contents.
    pub fn new(types: &[FieldType]) -> Contents {
        Contents { events: empty_events(types), acc: None }
    }

    /// Adds buffered events to the accumulator (aggregates only).
    pub fn flush(&mut self, plugin: &mut PluginInstance, key: &Key) -> Result<(), PluginError> {
        if self.events.timestamps.is_empty() {
            return Ok(());
        }
        let acc = match self.acc.take() {
            Some(acc) => acc,
            None => plugin.create_accumulator()?,
        };
        let added = plugin.add(&key.to_value(), &acc, &self.events);
        clear_events(&mut self.events);
        self.acc = Some(added?);
        Ok(())
    }

    /// Folds `other` into `self` (same key): events are appended; for
    /// aggregates, accumulators are merged.
    pub fn absorb(
        &mut self,
        other: Contents,
        reduce: Reduce,
        plugin: &mut PluginInstance,
        key: &Key,
    ) -> Result<(), PluginError> {
        append_events(&mut self.events, &other.events);
        if let Reduce::Aggregate { .. } = reduce {
            self.acc = match (self.acc.take(), other.acc) {
                (Some(a), Some(b)) => Some(plugin.merge(&key.to_value(), &a, &b)?),
                (a, b) => a.or(b),
            };
        }
        Ok(())
    }

    /// Empties the contents for reuse, keeping the allocations.
    pub fn reset(&mut self) {
        clear_events(&mut self.events);
        self.acc = None;
    }

    /// Bytes held, roughly: for memory accounting.
    pub fn size(&self) -> usize {
        self.events.timestamps.capacity() * 8
            + self.events.columns.iter().map(Column::data_size).sum::<usize>()
            + self.acc.as_ref().map_or(0, Vec::capacity)
    }
}
