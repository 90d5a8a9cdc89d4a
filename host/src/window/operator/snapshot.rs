//! One partition's window state as bytes, and back: what a checkpoint
//! keeps of the window operator. Each source partition is encoded on its
//! own, so its state can be restored, or later moved to another process,
//! alone.
//!
//! The encoding is little-endian and self-delimiting: a version, the
//! partition's own watermark (what its windows fired up to), then every key's panes or
//! sessions (their events, accumulator and flags) and the partition's
//! timers, cleanups and pending re-fires. Checksums are the checkpoint
//! file's job (`checkpoint::encode_file`).

use super::{KeyState, Pane, PartitionState, WindowOperator};
use crate::plugin::{CallSite, Failure, PluginError};
use crate::record::Key;
use crate::types::{Column, Events, Window};
use crate::window::state::PaneState;
use std::collections::BTreeSet;

/// The snapshot encoding's version.
const SNAPSHOT_VERSION: u32 = 2;

/// A partition snapshot that cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// It ends in the middle of a value.
    #[error("window state of partition {partition} is cut short")]
    Truncated {
        /// The partition.
        partition: i32,
    },
    /// A value that no snapshot holds.
    #[error("window state of partition {partition} is invalid: {reason}")]
    Invalid {
        /// The partition.
        partition: i32,
        /// What is wrong.
        reason: String,
    },
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn i64(&mut self, x: i64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn key(&mut self, key: &Key) {
        match key {
            Key::Int(i) => {
                self.u8(0);
                self.i64(*i);
            }
            Key::Str(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
        }
    }
    fn keyed_set(&mut self, set: &BTreeSet<(i64, Key)>) {
        self.len(set.len());
        for (at, key) in set {
            self.i64(*at);
            self.key(key);
        }
    }
    fn events(&mut self, events: &Events) {
        self.len(events.timestamps.len());
        for &t in &events.timestamps {
            self.i64(t);
        }
        self.len(events.columns.len());
        for column in &events.columns {
            match column {
                Column::F64(v) => {
                    self.u8(0);
                    self.len(v.len());
                    v.iter().for_each(|x| self.0.extend_from_slice(&x.to_le_bytes()));
                }
                Column::I64(v) => {
                    self.u8(1);
                    self.len(v.len());
                    v.iter().for_each(|x| self.i64(*x));
                }
                Column::String(v) => {
                    self.u8(2);
                    self.len(v.len());
                    v.iter().for_each(|s| self.bytes(s.as_bytes()));
                }
                Column::Bool(v) => {
                    self.u8(3);
                    self.len(v.len());
                    v.iter().for_each(|b| self.u8(u8::from(*b)));
                }
            }
        }
    }
    fn pane(&mut self, pane: &PaneState) {
        self.events(&pane.events);
        match &pane.acc {
            Some(acc) => {
                self.u8(1);
                self.bytes(acc);
            }
            None => self.u8(0),
        }
        self.u8(u8::from(pane.add_refused));
        match &pane.broken {
            Some(error) => {
                self.u8(1);
                self.bytes(error.plugin.as_bytes());
                self.bytes(error.failure.to_string().as_bytes());
            }
            None => self.u8(0),
        }
        self.i64(pane.first_offset);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    partition: i32,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(SnapshotError::Truncated { partition: self.partition });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn invalid(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid { partition: self.partition, reason: reason.into() }
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool, SnapshotError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(format!("flag {other}"))),
        }
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, SnapshotError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, SnapshotError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    /// A count, checked against what is left (each item takes at least
    /// `min_size` bytes), so a damaged count cannot ask for a huge
    /// allocation.
    fn len(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = u64::from_le_bytes(self.array()?);
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_size.max(1)) <= self.bytes.len() => Ok(n),
            _ => Err(SnapshotError::Truncated { partition: self.partition }),
        }
    }
    fn bytes(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let n = self.len(1)?;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Result<String, SnapshotError> {
        String::from_utf8(self.bytes()?).map_err(|_| self.invalid("text that is not UTF-8"))
    }
    fn key(&mut self) -> Result<Key, SnapshotError> {
        match self.u8()? {
            0 => Ok(Key::Int(self.i64()?)),
            1 => Ok(Key::Str(self.string()?)),
            other => Err(self.invalid(format!("key tag {other}"))),
        }
    }
    fn keyed_set(&mut self) -> Result<BTreeSet<(i64, Key)>, SnapshotError> {
        let n = self.len(9)?;
        (0..n).map(|_| Ok((self.i64()?, self.key()?))).collect()
    }
    fn events(&mut self) -> Result<Events, SnapshotError> {
        let rows = self.len(8)?;
        let timestamps = (0..rows).map(|_| self.i64()).collect::<Result<Vec<_>, _>>()?;
        let n = self.len(9)?;
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let tag = self.u8()?;
            let len = self.len(1)?;
            if len != rows {
                return Err(self.invalid(format!("a column of {len} values for {rows} rows")));
            }
            columns.push(match tag {
                0 => Column::F64((0..len).map(|_| self.f64()).collect::<Result<_, _>>()?),
                1 => Column::I64((0..len).map(|_| self.i64()).collect::<Result<_, _>>()?),
                2 => Column::String((0..len).map(|_| self.string()).collect::<Result<_, _>>()?),
                3 => Column::Bool((0..len).map(|_| self.flag()).collect::<Result<_, _>>()?),
                other => return Err(self.invalid(format!("column tag {other}"))),
            });
        }
        Ok(Events { timestamps, columns })
    }
    fn pane(&mut self) -> Result<PaneState, SnapshotError> {
        let events = self.events()?;
        let acc = if self.flag()? { Some(self.bytes()?) } else { None };
        let add_refused = self.flag()?;
        let broken = if self.flag()? {
            let plugin = self.string()?;
            let reason = self.string()?;
            let call = CallSite { function: "merge", key: None, window: None };
            Some(Box::new(PluginError { plugin, call, failure: Failure::Returned(reason) }))
        } else {
            None
        };
        let first_offset = self.i64()?;
        Ok(PaneState { events, acc, add_refused, broken, first_offset })
    }
}

impl WindowOperator {
    /// The source partitions that hold window state.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// Appends `partition`'s window state to `out` (nothing is held for a
    /// partition without state: it restores as empty).
    pub fn snapshot_partition(&self, partition: i32, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u32(SNAPSHOT_VERSION);
        w.i64(self.watermark(partition));
        let Some(state) = self.partitions.get(&partition) else {
            w.len(0);
            (0..3).for_each(|_| w.len(0));
            return;
        };
        w.len(state.keys.len());
        // Keys in order, so equal state gives equal bytes.
        let mut keys: Vec<(&Key, &KeyState)> = state.keys.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        for (key, key_state) in keys {
            w.key(key);
            w.i64(key_state.cleanup_at.unwrap_or(i64::MIN));
            w.len(key_state.panes.len());
            for pane in &key_state.panes {
                w.i64(pane.start);
                w.i64(pane.first_end);
                w.pane(&pane.contents);
            }
            w.len(key_state.sessions.len());
            for (window, contents) in &key_state.sessions {
                w.i64(window.start);
                w.i64(window.end);
                w.pane(contents);
            }
        }
        w.keyed_set(&state.timers);
        w.keyed_set(&state.cleanups);
        w.keyed_set(&state.refires);
    }

    /// Restores `partition`'s window state and watermark from a snapshot,
    /// replacing what it held. A partition without open windows keeps its
    /// watermark all the same: its fired windows must stay fired.
    pub fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let (watermark, mut state) = decode(partition, bytes)?;
        state.watermark = watermark;
        if state.keys.is_empty() && state.timers.is_empty() && watermark == i64::MIN {
            self.partitions.remove(&partition);
        } else {
            self.partitions.insert(partition, state);
        }
        Ok(())
    }
}

/// What a partition snapshot holds, counted (`weir checkpoints inspect`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The watermark the operator had fired up to.
    pub watermark: i64,
    /// Keys with open state.
    pub keys: usize,
    /// Open panes (tumbling and sliding windows).
    pub panes: usize,
    /// Open sessions.
    pub sessions: usize,
    /// Events held in panes and sessions.
    pub events: usize,
    /// Windows waiting to fire.
    pub timers: usize,
    /// Fired windows waiting to fire again for late events.
    pub refires: usize,
}

/// Counts what a partition snapshot holds, checking it as a restore would.
pub fn summarize(partition: i32, bytes: &[u8]) -> Result<SnapshotSummary, SnapshotError> {
    let (watermark, state) = decode(partition, bytes)?;
    let keys = state.keys.values();
    Ok(SnapshotSummary {
        watermark,
        keys: state.keys.len(),
        panes: keys.clone().map(|k| k.panes.len()).sum(),
        sessions: keys.clone().map(|k| k.sessions.len()).sum(),
        events: keys
            .map(|k| {
                k.panes.iter().map(|p| p.contents.events.timestamps.len()).sum::<usize>()
                    + k.sessions.iter().map(|(_, c)| c.events.timestamps.len()).sum::<usize>()
            })
            .sum(),
        timers: state.timers.len(),
        refires: state.refires.len(),
    })
}

/// A partition snapshot read back: the watermark and the state.
fn decode(partition: i32, bytes: &[u8]) -> Result<(i64, PartitionState), SnapshotError> {
    let mut r = Reader { bytes, partition };
    let version = r.u32()?;
    if version != SNAPSHOT_VERSION {
        return Err(r.invalid(format!("version {version}; this weir reads version {SNAPSHOT_VERSION}")));
    }
    let watermark = r.i64()?;
    let mut state = PartitionState::default();
    let n = r.len(10)?;
    for _ in 0..n {
        let key = r.key()?;
        let cleanup_at = Some(r.i64()?).filter(|&c| c != i64::MIN);
        let mut key_state = KeyState { cleanup_at, ..KeyState::default() };
        for _ in 0..r.len(16)? {
            let (start, first_end) = (r.i64()?, r.i64()?);
            key_state.panes.push_back(Pane { start, first_end, contents: r.pane()? });
        }
        for _ in 0..r.len(16)? {
            let window = Window { start: r.i64()?, end: r.i64()? };
            key_state.sessions.push((window, r.pane()?));
        }
        state.keys.insert(key, key_state);
    }
    state.timers = r.keyed_set()?;
    state.cleanups = r.keyed_set()?;
    state.refires = r.keyed_set()?;
    if !r.bytes.is_empty() {
        return Err(r.invalid(format!("{} bytes after the end", r.bytes.len())));
    }
    Ok((watermark, state))
}
