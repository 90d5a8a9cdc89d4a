//! One partition's window state as bytes, and back: what a checkpoint
//! keeps of the window operator. Each source partition is encoded on its
//! own, so its state can be restored, or later moved to another process,
//! alone.
//!
//! The encoding is compact, because a checkpoint of a million open windows
//! is encoded (in a forked child, `checkpoint::forked`) and written while
//! later checkpoints wait their turn: numbers are LEB128 varints, signed ones
//! zigzag-coded, and most are deltas (sorted integer keys from the previous
//! key, pane starts in panes from the previous pane, offsets and event
//! timestamps from the previous one). What the operator can recompute is
//! not stored: a pane's first window end (from its start and the window
//! spec), and a key's next cleanup and its entry in the cleanup set (the
//! expiry of its oldest pane or session, with the rare exceptions written
//! out). A pane without buffered events costs one flag bit.
//!
//! Layout: version (u32 LE), watermark (i64 LE), the window spec, the
//! column types, how keys are written, then every key (in key order, so
//! equal state gives equal bytes) with its panes or sessions, then the
//! timers, the cleanup exceptions and the pending re-fires. Checksums are
//! the checkpoint file's job (`checkpoint::encode_file`).

use super::{KeyState, Pane, PartitionState, WindowOperator, last_window_end};
use crate::plugin::{CallSite, Failure, PluginError};
use crate::record::Key;
use crate::types::{Column, Events, FieldType, Window};
use crate::window::WindowSpec;
use crate::window::state::{PaneState, Reduce};
use std::collections::{BTreeSet, VecDeque};

/// The snapshot encoding's version.
const SNAPSHOT_VERSION: u32 = 3;

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

/// Pane flags.
const HAS_ACC: u8 = 1;
const ADD_REFUSED: u8 = 2;
const BROKEN: u8 = 4;
const HAS_EVENTS: u8 = 8;

/// How keys are written: without a tag when they are all of one kind.
const KEYS_INT: u8 = 0;
const KEYS_STR: u8 = 1;
const KEYS_MIXED: u8 = 2;

fn zigzag(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn unzigzag(x: u64) -> i64 {
    ((x >> 1) as i64) ^ -((x & 1) as i64)
}

fn type_tag(t: FieldType) -> u8 {
    match t {
        FieldType::F64 => 0,
        FieldType::I64 => 1,
        FieldType::String => 2,
        FieldType::Bool => 3,
    }
}

/// When a key's oldest pane or session expires: the cleanup the operator
/// schedules for it (see `WindowOperator::clean`).
fn derived_cleanup(spec: WindowSpec, lateness: i64, key_state: &KeyState) -> Option<i64> {
    let end = match (key_state.panes.front(), key_state.sessions.first()) {
        (Some(pane), _) => last_window_end(spec, pane.start),
        (None, Some((w, _))) => w.end,
        (None, None) => return None,
    };
    Some(end.saturating_sub(1).saturating_add(lateness))
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    key_kind: u8,
    /// The previous integer key, start, offset written: the base of deltas.
    prev_key: i64,
    prev_start: i64,
    prev_offset: i64,
}

impl Writer<'_> {
    fn u8(&mut self, x: u8) {
        self.out.push(x);
    }
    fn var(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.out.push(x as u8 | 0x80);
            x >>= 7;
        }
        self.out.push(x as u8);
    }
    fn signed(&mut self, x: i64) {
        self.var(zigzag(x));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.var(b.len() as u64);
        self.out.extend_from_slice(b);
    }
    fn key(&mut self, key: &Key) {
        match key {
            Key::Int(i) => {
                if self.key_kind == KEYS_MIXED {
                    self.u8(0);
                }
                self.signed(i.wrapping_sub(self.prev_key));
                self.prev_key = *i;
            }
            Key::Str(s) => {
                if self.key_kind == KEYS_MIXED {
                    self.u8(1);
                }
                self.bytes(s.as_bytes());
            }
        }
    }
    /// A set sorted by time: how its keys are written, then time deltas
    /// and keys. Its keys are expected to be of the partition's key kind;
    /// if one is not, the set is written again with tagged keys.
    fn keyed_set<'k>(&mut self, n: usize, set: impl Iterator<Item = &'k (i64, Key)> + Clone) {
        let (mark, kind) = (self.out.len(), self.key_kind);
        for kind in [kind, KEYS_MIXED] {
            self.out.truncate(mark);
            self.key_kind = kind;
            self.u8(kind);
            self.var(n as u64);
            let mut prev_at = 0i64;
            self.prev_key = 0;
            let mut fits = true;
            for (at, key) in set.clone() {
                fits &= match key {
                    Key::Int(_) => kind != KEYS_STR,
                    Key::Str(_) => kind != KEYS_INT,
                };
                self.signed(at.wrapping_sub(prev_at));
                prev_at = *at;
                self.key(key);
            }
            if fits {
                break;
            }
        }
        self.key_kind = kind;
    }
    fn events(&mut self, events: &Events, base: i64) {
        self.var(events.timestamps.len() as u64);
        let mut prev = base;
        for &t in &events.timestamps {
            self.signed(t.wrapping_sub(prev));
            prev = t;
        }
        for column in &events.columns {
            match column {
                Column::F64(v) => v.iter().for_each(|x| self.out.extend_from_slice(&x.to_le_bytes())),
                Column::I64(v) => {
                    let mut prev = 0i64;
                    for &x in v {
                        self.signed(x.wrapping_sub(prev));
                        prev = x;
                    }
                }
                Column::String(v) => v.iter().for_each(|s| self.bytes(s.as_bytes())),
                Column::Bool(v) => v.iter().for_each(|b| self.u8(u8::from(*b))),
            }
        }
    }
    /// A pane's or session's contents; `base` is the start its event
    /// timestamps are written from.
    fn contents(&mut self, pane: &PaneState, base: i64) {
        let has_events = !pane.events.timestamps.is_empty();
        let flags = if pane.acc.is_some() { HAS_ACC } else { 0 }
            | if pane.add_refused { ADD_REFUSED } else { 0 }
            | if pane.broken.is_some() { BROKEN } else { 0 }
            | if has_events { HAS_EVENTS } else { 0 };
        self.u8(flags);
        self.signed(pane.first_offset.wrapping_sub(self.prev_offset));
        self.prev_offset = pane.first_offset;
        if let Some(acc) = &pane.acc {
            self.bytes(acc);
        }
        if let Some(error) = &pane.broken {
            self.bytes(error.plugin.as_bytes());
            self.bytes(error.failure.to_string().as_bytes());
        }
        if has_events {
            self.events(&pane.events, base);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    partition: i32,
    key_kind: u8,
    prev_key: i64,
    prev_start: i64,
    prev_offset: i64,
}

impl<'a> Reader<'a> {
    fn new(partition: i32, bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, partition, key_kind: KEYS_INT, prev_key: 0, prev_start: 0, prev_offset: 0 }
    }
    /// The version (checked), watermark, window spec and column types.
    fn header(&mut self) -> Result<(i64, WindowSpec, Vec<FieldType>), SnapshotError> {
        let version = u32::from_le_bytes(self.array()?);
        if version != SNAPSHOT_VERSION {
            return Err(
                self.invalid(format!("version {version}; this weir reads version {SNAPSHOT_VERSION}"))
            );
        }
        let watermark = i64::from_le_bytes(self.array()?);
        let spec = read_spec(self)?;
        let types = read_types(self)?;
        Ok((watermark, spec, types))
    }
    fn truncated(&self) -> SnapshotError {
        SnapshotError::Truncated { partition: self.partition }
    }
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        if self.bytes.len() < n {
            return Err(self.truncated());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn invalid(&self, reason: impl Into<String>) -> SnapshotError {
        SnapshotError::Invalid { partition: self.partition, reason: reason.into() }
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        let (&first, rest) = self.bytes.split_first().ok_or_else(|| self.truncated())?;
        self.bytes = rest;
        Ok(first)
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
    fn var(&mut self) -> Result<u64, SnapshotError> {
        let mut x = 0u64;
        let mut shift = 0;
        loop {
            let b = self.u8()?;
            // The tenth byte holds the last bit of a u64.
            if shift == 63 && b > 1 {
                return Err(self.invalid("a number of more than 64 bits"));
            }
            x |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(x);
            }
            shift += 7;
        }
    }
    fn signed(&mut self) -> Result<i64, SnapshotError> {
        Ok(unzigzag(self.var()?))
    }
    /// A positive number that fits an i64.
    fn positive(&mut self, what: &str) -> Result<i64, SnapshotError> {
        match i64::try_from(self.var()?) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.invalid(format!("{what} that is not a positive number"))),
        }
    }
    /// A count, checked against what is left (each item takes at least
    /// `min_size` bytes), so a damaged count cannot ask for a huge
    /// allocation.
    fn len(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = self.var()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min_size.max(1)) <= self.bytes.len() => Ok(n),
            _ => Err(self.truncated()),
        }
    }
    fn slice(&mut self) -> Result<&[u8], SnapshotError> {
        let n = self.len(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, SnapshotError> {
        let bytes = self.slice()?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.invalid("text that is not UTF-8"))
    }
    fn key(&mut self) -> Result<Key, SnapshotError> {
        let is_int = match self.key_kind {
            KEYS_INT => true,
            KEYS_STR => false,
            _ => match self.u8()? {
                0 => true,
                1 => false,
                other => return Err(self.invalid(format!("key tag {other}"))),
            },
        };
        if is_int {
            let key = self.prev_key.wrapping_add(self.signed()?);
            self.prev_key = key;
            Ok(Key::Int(key))
        } else {
            Ok(Key::Str(self.string()?))
        }
    }
    fn keyed_set(&mut self) -> Result<BTreeSet<(i64, Key)>, SnapshotError> {
        let key_kind = self.key_kind;
        self.key_kind = self.u8()?;
        if self.key_kind > KEYS_MIXED {
            return Err(self.invalid(format!("key kind {}", self.key_kind)));
        }
        let n = self.len(2)?;
        let mut entries = Vec::with_capacity(n);
        let mut at = 0i64;
        self.prev_key = 0;
        for _ in 0..n {
            at = at.wrapping_add(self.signed()?);
            entries.push((at, self.key()?));
        }
        self.key_kind = key_kind;
        // Written in order, so this is a bulk build, not a sort.
        Ok(BTreeSet::from_iter(entries))
    }
    fn events(&mut self, types: &[FieldType], base: i64, events: &mut Events) -> Result<(), SnapshotError> {
        let rows = self.len(1)?;
        events.timestamps.reserve(rows);
        let mut prev = base;
        for _ in 0..rows {
            prev = prev.wrapping_add(self.signed()?);
            events.timestamps.push(prev);
        }
        for (column, &ty) in events.columns.iter_mut().zip(types) {
            match (column, ty) {
                (Column::F64(v), FieldType::F64) => {
                    let raw = self.take(rows.saturating_mul(8))?;
                    v.extend(raw.chunks_exact(8).map(|c| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(c);
                        f64::from_le_bytes(b)
                    }));
                }
                (Column::I64(v), FieldType::I64) => {
                    let mut prev = 0i64;
                    for _ in 0..rows {
                        prev = prev.wrapping_add(self.signed()?);
                        v.push(prev);
                    }
                }
                (Column::String(v), FieldType::String) => {
                    for _ in 0..rows {
                        v.push(self.string()?);
                    }
                }
                (Column::Bool(v), FieldType::Bool) => {
                    for _ in 0..rows {
                        v.push(self.flag()?);
                    }
                }
                (column, ty) => {
                    return Err(self.invalid(format!("a {} column for {ty} values", column.ty())));
                }
            }
        }
        Ok(())
    }
    /// A pane's or session's contents, into `pane` (empty, with columns of
    /// `types`).
    fn contents(
        &mut self,
        types: &[FieldType],
        base: i64,
        pane: &mut PaneState,
    ) -> Result<(), SnapshotError> {
        let flags = self.u8()?;
        if flags & !(HAS_ACC | ADD_REFUSED | BROKEN | HAS_EVENTS) != 0 {
            return Err(self.invalid(format!("pane flags {flags:#x}")));
        }
        pane.first_offset = self.prev_offset.wrapping_add(self.signed()?);
        self.prev_offset = pane.first_offset;
        if flags & HAS_ACC != 0 {
            pane.acc = Some(self.slice()?.to_vec());
        }
        pane.add_refused = flags & ADD_REFUSED != 0;
        if flags & BROKEN != 0 {
            let plugin = self.string()?;
            let reason = self.string()?;
            let call = CallSite { function: "merge", key: None, window: None };
            pane.broken = Some(Box::new(PluginError { plugin, call, failure: Failure::Returned(reason) }));
        }
        if flags & HAS_EVENTS != 0 {
            self.events(types, base, &mut pane.events)?;
        }
        Ok(())
    }
}

/// Sorts by key: LSD radix sort on the key's bits, 11 at a time, skipping
/// the digits all keys share (keys 0..1M take 2 passes).
fn radix_sort<T: Copy>(items: &mut Vec<(i64, T)>) {
    const BITS: u32 = 11;
    const DIGITS: usize = 64_usize.div_ceil(BITS as usize);
    const MASK: u64 = (1 << BITS) - 1;
    // Flipping the sign bit orders i64 as u64.
    let bits = |k: i64| (k as u64) ^ (1 << 63);
    let digit = |k: i64, d: usize| ((bits(k) >> (BITS as usize * d)) & MASK) as usize;
    let mut counts = vec![[0usize; 1 << BITS]; DIGITS];
    for &(k, _) in items.iter() {
        for (d, count) in counts.iter_mut().enumerate() {
            count[digit(k, d)] += 1;
        }
    }
    let Some(&first) = items.first() else { return };
    let mut scratch = Vec::new();
    for (d, count) in counts.iter().enumerate() {
        if count.contains(&items.len()) {
            continue;
        }
        let mut offsets = [0usize; 1 << BITS];
        let mut sum = 0;
        for (o, &c) in offsets.iter_mut().zip(count) {
            *o = sum;
            sum += c;
        }
        scratch.resize(items.len(), first);
        for &item in items.iter() {
            let at = &mut offsets[digit(item.0, d)];
            scratch[*at] = item;
            *at += 1;
        }
        std::mem::swap(items, &mut scratch);
    }
}

/// The window spec, as the snapshot's header holds it.
fn write_spec(w: &mut Writer<'_>, spec: WindowSpec) {
    match spec {
        WindowSpec::Tumbling { size } => {
            w.u8(0);
            w.var(size as u64);
        }
        WindowSpec::Sliding { size, slide } => {
            w.u8(1);
            w.var(size as u64);
            w.var(slide as u64);
        }
        WindowSpec::Session { gap } => {
            w.u8(2);
            w.var(gap as u64);
        }
    }
}

fn read_spec(r: &mut Reader<'_>) -> Result<WindowSpec, SnapshotError> {
    Ok(match r.u8()? {
        0 => WindowSpec::Tumbling { size: r.positive("a window size")? },
        1 => WindowSpec::Sliding { size: r.positive("a window size")?, slide: r.positive("a slide")? },
        2 => WindowSpec::Session { gap: r.positive("a session gap")? },
        other => return Err(r.invalid(format!("window kind {other}"))),
    })
}

fn read_types(r: &mut Reader<'_>) -> Result<Vec<FieldType>, SnapshotError> {
    let n = r.len(1)?;
    (0..n)
        .map(|_| match r.u8()? {
            0 => Ok(FieldType::F64),
            1 => Ok(FieldType::I64),
            2 => Ok(FieldType::String),
            3 => Ok(FieldType::Bool),
            other => Err(r.invalid(format!("column type {other}"))),
        })
        .collect()
}

impl WindowOperator {
    /// The source partitions that hold window state.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }

    /// Appends `partition`'s window state to `out` (nothing is held for a
    /// partition without state: it restores as empty).
    pub fn snapshot_partition(&self, partition: i32, out: &mut Vec<u8>) {
        let state = self.partitions.get(&partition);
        // Keys in order, so equal state gives equal bytes (and sorted
        // integer keys are small deltas). Integer keys, the usual ones, are
        // radix-sorted by value: a comparison sort of a million keys
        // spread over the map takes a hundred milliseconds or more.
        let map = state.map(|s| &s.keys);
        let all_int = map.is_none_or(|m| m.keys().all(|k| matches!(k, Key::Int(_))));
        let mut ints: Vec<(i64, &KeyState)> = Vec::new();
        let mut others: Vec<(&Key, &KeyState)> = Vec::new();
        if all_int {
            ints = map
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| if let Key::Int(i) = k { Some((*i, v)) } else { None })
                .collect();
            radix_sort(&mut ints);
        } else {
            others = map.into_iter().flatten().collect();
            others.sort_unstable_by(|a, b| a.0.cmp(b.0));
        }
        let key_kind = match (others.first(), others.last()) {
            (Some((Key::Int(_), _)), Some((Key::Str(_), _))) => KEYS_MIXED,
            (Some((Key::Str(_), _)), _) => KEYS_STR,
            _ => KEYS_INT,
        };
        let n = ints.len() + others.len();
        // Room for a typical state, so the buffer seldom grows.
        let sets = state.map_or(0, |s| s.timers.len() + s.refires.len());
        out.reserve(64 + n * 32 + sets * 4);
        let mut w = Writer { out, key_kind, prev_key: 0, prev_start: 0, prev_offset: 0 };
        w.out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        w.out.extend_from_slice(&self.watermark(partition).to_le_bytes());
        write_spec(&mut w, self.spec);
        w.var(self.types.len() as u64);
        self.types.iter().for_each(|&t| w.u8(type_tag(t)));
        w.u8(key_kind);
        w.var(n as u64);
        let mut scheduled = 0;
        // In key order, the key states are all over the map: each is a
        // cache miss. Touching the one a few keys ahead lets the misses
        // overlap instead of coming one after the other.
        const AHEAD: usize = 8;
        let touch = |k: &KeyState| std::hint::black_box(k.panes.len() + k.sessions.len());
        for (i, &(key, key_state)) in ints.iter().enumerate() {
            if let Some(&(_, next)) = ints.get(i + AHEAD) {
                touch(next);
            }
            scheduled += self.write_key_state(&mut w, &Key::Int(key), key_state);
        }
        for (i, &(key, key_state)) in others.iter().enumerate() {
            if let Some(&(_, next)) = others.get(i + AHEAD) {
                touch(next);
            }
            scheduled += self.write_key_state(&mut w, key, key_state);
        }
        let Some(state) = state else {
            (0..3).for_each(|_| w.keyed_set(0, std::iter::empty()));
            return;
        };
        w.keyed_set(state.timers.len(), state.timers.iter());
        // Each key's own cleanup is in the set (`schedule_cleanup` puts it
        // there): only the others, left by cleanups rescheduled sooner,
        // are written. Equal counts mean there are none.
        if state.cleanups.len() == scheduled {
            w.keyed_set(0, std::iter::empty());
        } else {
            let own =
                |(at, key): &&(i64, Key)| state.keys.get(key).is_some_and(|k| k.cleanup_at == Some(*at));
            let others: Vec<&(i64, Key)> = state.cleanups.iter().filter(|e| !own(e)).collect();
            w.keyed_set(others.len(), others.iter().copied());
        }
        w.keyed_set(state.refires.len(), state.refires.iter());
    }

    /// Writes one key and its panes or sessions; returns 1 if the key has a
    /// cleanup scheduled (so it is in the cleanup set).
    fn write_key_state(&self, w: &mut Writer<'_>, key: &Key, key_state: &KeyState) -> usize {
        let (spec, pane) = (self.spec, self.pane);
        w.key(key);
        let entries = match spec {
            WindowSpec::Session { .. } => key_state.sessions.len(),
            _ => key_state.panes.len(),
        };
        let derived = derived_cleanup(spec, self.lateness, key_state);
        let own = key_state.cleanup_at != derived;
        w.var(((entries as u64) << 1) | u64::from(own));
        if own {
            match key_state.cleanup_at {
                Some(at) => {
                    w.u8(1);
                    w.signed(at.wrapping_sub(derived.unwrap_or(0)));
                }
                None => w.u8(0),
            }
        }
        match spec {
            WindowSpec::Session { .. } => {
                for (window, contents) in &key_state.sessions {
                    w.signed(window.start.wrapping_sub(w.prev_start));
                    w.prev_start = window.start;
                    w.var(window.end.wrapping_sub(window.start) as u64);
                    w.contents(contents, window.start);
                }
            }
            _ => {
                // Pane starts are multiples of the pane length.
                for p in &key_state.panes {
                    let index = p.start.div_euclid(pane);
                    w.signed(index.wrapping_sub(w.prev_start));
                    w.prev_start = index;
                    w.contents(&p.contents, p.start);
                }
            }
        }
        usize::from(key_state.cleanup_at.is_some())
    }

    /// Restores `partition`'s window state and watermark from a snapshot,
    /// replacing what it held. A partition without open windows keeps its
    /// watermark all the same: its fired windows must stay fired.
    pub fn restore_partition(&mut self, partition: i32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let (watermark, mut state) = self.decode(partition, bytes)?;
        state.watermark = watermark;
        let old = if state.keys.is_empty() && state.timers.is_empty() && watermark == i64::MIN {
            self.partitions.remove(&partition)
        } else {
            self.partitions.insert(partition, state)
        };
        // The state replaced gives its panes to the pool, for new windows.
        for key_state in old.into_iter().flat_map(|s| s.keys.into_values()) {
            let sessions = key_state.sessions.into_iter().map(|(_, c)| c);
            for mut contents in key_state.panes.into_iter().map(|p| p.contents).chain(sessions) {
                if self.pool.len() >= super::POOL_LIMIT {
                    return Ok(());
                }
                contents.reset();
                self.pool.push(contents);
            }
        }
        Ok(())
    }

    /// A partition snapshot read back: the watermark and the state. The
    /// snapshot must be of this operator's windows and columns.
    fn decode(&mut self, partition: i32, bytes: &[u8]) -> Result<(i64, PartitionState), SnapshotError> {
        let mut r = Reader::new(partition, bytes);
        let (watermark, spec, types) = r.header()?;
        if spec != self.spec {
            return Err(r.invalid(format!("it holds {spec} windows, not {}", self.spec)));
        }
        if types != self.types {
            return Err(r.invalid(format!("its columns are {types:?}, not {:?}", self.types)));
        }
        r.key_kind = r.u8()?;
        if r.key_kind > KEYS_MIXED {
            return Err(r.invalid(format!("key kind {}", r.key_kind)));
        }
        let (lateness, pane) = (self.lateness, self.pane);
        let n = r.len(2)?;
        let mut state = PartitionState {
            watermark,
            keys: super::KeyMap::with_capacity_and_hasher(n, Default::default()),
            ..PartitionState::default()
        };
        let mut cleanups = Vec::with_capacity(n);
        for _ in 0..n {
            let key = r.key()?;
            let head = r.var()?;
            let (entries, own) = (head >> 1, head & 1 == 1);
            let own_cleanup = if own {
                match r.flag()? {
                    true => Some(r.signed()?),
                    false => None,
                }
            } else {
                None
            };
            let entries = usize::try_from(entries).ok().filter(|&e| e <= r.bytes.len() / 2);
            let entries = entries.ok_or_else(|| r.truncated())?;
            let mut key_state = KeyState::default();
            match spec {
                WindowSpec::Session { .. } => {
                    key_state.sessions.reserve_exact(entries);
                    for _ in 0..entries {
                        let start = r.prev_start.wrapping_add(r.signed()?);
                        r.prev_start = start;
                        let length = r.positive("a session length")?;
                        let end = start
                            .checked_add(length)
                            .ok_or_else(|| r.invalid("a session past the end of time"))?;
                        let mut contents = self.fresh_contents();
                        r.contents(&types, start, &mut contents)?;
                        key_state.sessions.push((Window { start, end }, contents));
                    }
                }
                _ => {
                    key_state.panes = VecDeque::with_capacity(entries);
                    for _ in 0..entries {
                        let index = r.prev_start.wrapping_add(r.signed()?);
                        r.prev_start = index;
                        let start = index
                            .checked_mul(pane)
                            .ok_or_else(|| r.invalid("a pane past the end of time"))?;
                        let mut contents = self.fresh_contents();
                        r.contents(&types, start, &mut contents)?;
                        let first_end = self.first_window_end(start);
                        key_state.panes.push_back(Pane { start, first_end, contents });
                    }
                }
            }
            let derived = derived_cleanup(spec, lateness, &key_state);
            key_state.cleanup_at = match (own, own_cleanup) {
                (false, _) => derived,
                (true, Some(delta)) => Some(derived.unwrap_or(0).wrapping_add(delta)),
                (true, None) => None,
            };
            if let Some(at) = key_state.cleanup_at {
                cleanups.push((at, key.clone()));
            }
            if state.keys.insert(key, key_state).is_some() {
                return Err(r.invalid("a key held twice"));
            }
        }
        state.timers = r.keyed_set()?;
        // A key's panes have one timer, at its next window (a snapshot from
        // before that rule may hold one per window: the earliest counts, and
        // firing skips the others).
        for (at, key) in &state.timers {
            if let Some(k) = state.keys.get_mut(key)
                && !k.panes.is_empty()
            {
                k.timer_at = Some(k.timer_at.map_or(*at, |t| t.min(*at)));
            }
        }
        let others = r.keyed_set()?;
        cleanups.extend(others);
        // Mostly in order already (keys in order, equal times), which the
        // sort of `from_iter` takes in one pass.
        state.cleanups = BTreeSet::from_iter(cleanups);
        state.refires = r.keyed_set()?;
        if !r.bytes.is_empty() {
            return Err(r.invalid(format!("{} bytes after the end", r.bytes.len())));
        }
        Ok((watermark, state))
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
    // The header says which windows and columns it holds: decode it with
    // an operator of those.
    let (_, spec, types) = Reader::new(partition, bytes).header()?;
    let inputs = (0..types.len()).collect();
    let mut op = WindowOperator::new(spec, 0, Reduce::Apply, types, inputs);
    let (watermark, state) = op.decode(partition, bytes)?;
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

#[cfg(test)]
impl WindowOperator {
    /// A partition's bookkeeping besides the panes' contents (watermark,
    /// timers, cleanups, re-fires, each key's cleanup and pane bounds), for
    /// tests to check that a restore rebuilt it exactly.
    pub(crate) fn bookkeeping(&self, partition: i32) -> String {
        let Some(state) = self.partitions.get(&partition) else { return String::new() };
        let mut keys: Vec<_> = state
            .keys
            .iter()
            .map(|(key, k)| {
                let panes: Vec<_> =
                    k.panes.iter().map(|p| (p.start, p.first_end, p.contents.first_offset)).collect();
                let sessions: Vec<_> =
                    k.sessions.iter().map(|(w, c)| (w.start, w.end, c.first_offset)).collect();
                (key, k.cleanup_at, panes, sessions)
            })
            .collect();
        keys.sort();
        format!(
            "watermark {} timers {:?} cleanups {:?} refires {:?} keys {keys:?}",
            state.watermark, state.timers, state.cleanups, state.refires
        )
    }
}

#[cfg(test)]
mod tests {
    use super::radix_sort;
    use crate::decode::Batch;
    use crate::record::Key;
    use crate::testing::{Lcg, NativeMax};
    use crate::types::{Column, Field, FieldType};
    use crate::window::{Reduce, WindowOperator, WindowSpec};

    #[test]
    fn keys_of_both_kinds_survive_a_snapshot_in_the_key_list_and_in_the_sets() {
        let spec = WindowSpec::Sliding { size: 100, slide: 50 };
        let new_operator = || WindowOperator::new(spec, 30, Reduce::Apply, vec![FieldType::F64], vec![0]);
        let mut op = new_operator();
        let mut batch = Batch::new(&[Field { name: "t".into(), ty: FieldType::F64 }]);
        for (i, key) in
            [Key::Int(-3), Key::Str("a".into()), Key::Int(7), Key::Str("b".into())].into_iter().enumerate()
        {
            batch.partitions.push(0);
            batch.offsets.push(i as i64);
            batch.keys.push(Some(key));
            batch.timestamps.push(1_000 + 20 * i as i64);
            let Column::F64(t) = &mut batch.columns[0] else { unreachable!() };
            t.push(i as f64);
        }
        op.process(&batch, 0..2, &mut NativeMax::new());
        // Integer keys only in the key list, but a string key in a set
        // (no operator does this; the encoding must not depend on it).
        if let Some(state) = op.partitions.get_mut(&0) {
            state.refires.insert((1_050, Key::Str("gone".into())));
        }
        let check = |op: &WindowOperator| {
            let mut bytes = vec![];
            op.snapshot_partition(0, &mut bytes);
            let mut restored = new_operator();
            restored.restore_partition(0, &bytes).unwrap();
            let mut again = vec![];
            restored.snapshot_partition(0, &mut again);
            assert!(again == bytes);
            assert_eq!(restored.bookkeeping(0), op.bookkeeping(0));
        };
        check(&op);
        let mut op = new_operator();
        op.process(&batch, 0..1, &mut NativeMax::new());
        if let Some(state) = op.partitions.get_mut(&0) {
            state.refires.insert((1_050, Key::Str("gone".into())));
        }
        check(&op);
        op.process(&batch, 1..4, &mut NativeMax::new());
        check(&op);
    }

    #[test]
    fn radix_sort_orders_any_keys_as_a_comparison_sort_does() {
        let mut rng = Lcg(7);
        for n in [0usize, 1, 2, 100, 5000] {
            for spread in [1u64 << 8, 1 << 24, u64::MAX] {
                let mut keys: Vec<(i64, usize)> =
                    (0..n).map(|i| ((rng.next() % spread) as i64 - (spread / 2) as i64, i)).collect();
                keys.extend([(i64::MIN, n), (i64::MAX, n + 1), (-1, n + 2), (0, n + 3)]);
                let mut expected = keys.clone();
                expected.sort();
                radix_sort(&mut keys);
                assert_eq!(
                    keys.iter().map(|k| k.0).collect::<Vec<_>>(),
                    expected.iter().map(|k| k.0).collect::<Vec<_>>()
                );
            }
        }
    }
}
