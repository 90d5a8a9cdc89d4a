//! Allocates without bound in `apply` once the window has more than one event, so that a test can prove the memory cap refuses it.

wit_bindgen::generate!({ world: "window-function", path: "../../../wit" });

use exports::weir::functions::{plugin, window};
use weir::functions::types::{
    Column, Descriptor, Events, Field, FieldType, FunctionKind, Param, Rows, RowsMany, Value, Window,
};

struct Hostile;

impl plugin::Guest for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            name: "memory-bomb".into(),
            version: "0.0.0".into(),
            kind: FunctionKind::Window,
            description: "hostile test guest".into(),
            inputs: vec![Field { name: "temperature".into(), ty: FieldType::F64 }],
            outputs: vec![Field { name: "out".into(), ty: FieldType::F64 }],
            params: vec![],
        }
    }

    fn configure(_params: Vec<Param>) -> Result<(), String> {
        Ok(())
    }
}

impl window::Guest for Hostile {
    fn apply(_key: Value, _window: Window, events: Events) -> Result<Rows, String> {
        if events.timestamps.len() <= 1 {
            return Ok(Rows { len: 1, columns: vec![Column::F64(vec![1.0])] });
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(std::hint::black_box(vec![0xAB; 1 << 20]));
        }
    }

    fn apply_many(
        keys: Vec<Value>,
        windows: Vec<Window>,
        ends: Vec<u32>,
        events: Events,
    ) -> Result<RowsMany, String> {
        let parts = split(&ends, &events).ok_or("ends do not fit the batch")?;
        let mut out = RowsMany { ends: Vec::with_capacity(keys.len()), columns: Vec::new() };
        let mut total = 0u32;
        for ((key, window), part) in keys.into_iter().zip(windows).zip(parts) {
            let rows = Self::apply(key, window, part)?;
            total += rows.len;
            out.ends.push(total);
            if out.columns.is_empty() {
                out.columns = rows.columns;
            } else {
                for (all, more) in out.columns.iter_mut().zip(rows.columns) {
                    match (all, more) {
                        (Column::F64(a), Column::F64(m)) => a.extend(m),
                        (Column::I64(a), Column::I64(m)) => a.extend(m),
                        (Column::String(a), Column::String(m)) => a.extend(m),
                        (Column::Bool(a), Column::Bool(m)) => a.extend(m),
                        _ => return Err("windows returned different column types".into()),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Splits a batch into the windows `ends` marks out; `None` if `ends` does
/// not fit the batch.
fn split(ends: &[u32], events: &Events) -> Option<Vec<Events>> {
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for &end in ends {
        let end = end as usize;
        if end < start || end > events.timestamps.len() {
            return None;
        }
        let columns = events
            .columns
            .iter()
            .map(|c| match c {
                Column::F64(v) => v.get(start..end).map(|s| Column::F64(s.to_vec())),
                Column::I64(v) => v.get(start..end).map(|s| Column::I64(s.to_vec())),
                Column::String(v) => v.get(start..end).map(|s| Column::String(s.to_vec())),
                Column::Bool(v) => v.get(start..end).map(|s| Column::Bool(s.to_vec())),
            })
            .collect::<Option<Vec<_>>>()?;
        out.push(Events { timestamps: events.timestamps[start..end].to_vec(), columns });
        start = end;
    }
    Some(out)
}

export!(Hostile);
