//! What a pane or session holds between events and firing: either its
//! events in columns (for window functions), or an accumulator plus a small
//! buffer of events not yet added (for aggregates).

use super::WindowFunction;
use crate::plugin::PluginError;
use crate::record::Key;
use crate::types::{Column, Events, FieldType};

/// How windows are reduced, which decides what their panes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// Keep every event; `apply` the function to each fired window.
    Apply,
    /// Keep an accumulator; `add` events in batches of at most this many.
    Aggregate {
        /// Events buffered before they are added to the accumulator.
        flush_at: usize,
    },
}

/// The state of one pane (tumbling and sliding windows) or one session.
#[derive(Debug, Clone)]
pub struct PaneState {
    /// Events not yet reduced: all of them for window functions; those not
    /// yet added to `acc` for aggregates.
    pub events: Events,
    /// The accumulator, for aggregates, once something was added.
    pub acc: Option<Vec<u8>>,
    /// The function refused to `add` the buffered events. They stay
    /// buffered (never dropped), are no longer flushed early, and each
    /// firing tries them again: the windows that hold this pane fail, with
    /// the function's error, for as long as it refuses.
    pub add_refused: bool,
    /// The function refused to `merge` another session's accumulator into
    /// this one, so the accumulator is not the session's: the session's
    /// windows fail with this error. (Boxed: panes are many and this is
    /// rare, so it costs a pointer, not the error's size.)
    pub broken: Option<Box<PluginError>>,
    /// The source offset of the first event added (`i64::MAX` when none):
    /// where a replay must start to rebuild this pane. A source hands over
    /// each partition's records in offset order, so the first is the
    /// lowest, and it is set once, not per event; merged sessions keep the
    /// lower of the two.
    pub first_offset: i64,
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

/// Appends rows `range` of `from` to `to` (same column types).
pub fn append_range(to: &mut Events, from: &Events, range: std::ops::Range<usize>) {
    to.timestamps.extend_from_slice(&from.timestamps[range.clone()]);
    for (dst, src) in to.columns.iter_mut().zip(&from.columns) {
        match (dst, src) {
            (Column::F64(d), Column::F64(s)) => d.extend_from_slice(&s[range.clone()]),
            (Column::I64(d), Column::I64(s)) => d.extend_from_slice(&s[range.clone()]),
            (Column::String(d), Column::String(s)) => d.extend_from_slice(&s[range.clone()]),
            (Column::Bool(d), Column::Bool(s)) => d.extend_from_slice(&s[range.clone()]),
            _ => {}
        }
    }
}

/// Appends all of `from` to `to` (same column types).
pub fn append_events(to: &mut Events, from: &Events) {
    append_range(to, from, 0..from.timestamps.len());
}

/// Empties `events`, keeping allocations.
pub fn clear_events(events: &mut Events) {
    events.timestamps.clear();
    events.columns.iter_mut().for_each(Column::clear);
}

impl PaneState {
    /// Empty state.
    pub fn new(types: &[FieldType]) -> PaneState {
        PaneState {
            events: empty_events(types),
            acc: None,
            add_refused: false,
            broken: None,
            first_offset: i64::MAX,
        }
    }

    /// Adds the buffered events to the accumulator (aggregates only). If
    /// the function refuses, the events stay buffered and the error is
    /// returned: nothing is lost.
    pub fn flush(&mut self, function: &mut dyn WindowFunction, key: &Key) -> Result<(), PluginError> {
        if self.events.timestamps.is_empty() {
            return Ok(());
        }
        let added = match &self.acc {
            Some(acc) => function.add(&key.to_value(), acc, &self.events),
            None => {
                let empty = function.create_accumulator()?;
                function.add(&key.to_value(), &empty, &self.events)
            }
        };
        match added {
            Ok(acc) => {
                self.acc = Some(acc);
                self.add_refused = false;
                clear_events(&mut self.events);
                Ok(())
            }
            Err(e) => {
                self.add_refused = true;
                Err(e)
            }
        }
    }

    /// Folds `other` into `self` (sessions of one key that merged): events
    /// are appended; for aggregates, accumulators are merged. If `merge`
    /// is refused, the session is marked broken with the error.
    pub fn absorb(&mut self, other: PaneState, reduce: Reduce, function: &mut dyn WindowFunction, key: &Key) {
        append_events(&mut self.events, &other.events);
        self.add_refused |= other.add_refused;
        self.first_offset = self.first_offset.min(other.first_offset);
        if self.broken.is_none() {
            self.broken = other.broken;
        }
        if let Reduce::Aggregate { .. } = reduce {
            self.acc = match (self.acc.take(), other.acc) {
                (Some(a), Some(b)) => match function.merge(&key.to_value(), &a, &b) {
                    Ok(merged) => Some(merged),
                    Err(e) => {
                        self.broken.get_or_insert(Box::new(e));
                        Some(a)
                    }
                },
                (a, b) => a.or(b),
            };
        }
    }

    /// Empties the state for reuse, keeping the allocations.
    pub fn reset(&mut self) {
        clear_events(&mut self.events);
        self.acc = None;
        self.add_refused = false;
        self.broken = None;
        self.first_offset = i64::MAX;
    }

    /// Bytes held, roughly: for memory accounting.
    pub fn size(&self) -> usize {
        self.events.timestamps.capacity() * 8
            + self.events.columns.iter().map(Column::data_size).sum::<usize>()
            + self.acc.as_ref().map_or(0, Vec::capacity)
    }
}
