//! A batch of decoded records in columns, reused across polls so the hot
//! path does not allocate per event.

use crate::record::Key;
use crate::types::{Column, Field};

/// Decoded records: for row `i`, `partitions[i]`, `keys[i]`, `timestamps[i]`
/// and `columns[c][i]` for each declared field `c` (the job's field order).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Source partition of each record.
    pub partitions: Vec<i32>,
    /// Source offset of each record.
    pub offsets: Vec<i64>,
    /// The record key (`None` for jobs without a key: a map job).
    pub keys: Vec<Option<Key>>,
    /// Event time (or processing time) in ms.
    pub timestamps: Vec<i64>,
    /// One column per declared field.
    pub columns: Vec<Column>,
}

impl Batch {
    /// An empty batch for the given fields.
    pub fn new(fields: &[Field]) -> Batch {
        Batch { columns: fields.iter().map(|f| Column::empty(f.ty)).collect(), ..Batch::default() }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Keeps the first `len` records, dropping the rest.
    pub fn truncate(&mut self, len: usize) {
        self.partitions.truncate(len);
        self.offsets.truncate(len);
        self.keys.truncate(len);
        self.timestamps.truncate(len);
        for column in &mut self.columns {
            match column {
                Column::F64(v) => v.truncate(len),
                Column::I64(v) => v.truncate(len),
                Column::String(v) => v.truncate(len),
                Column::Bool(v) => v.truncate(len),
            }
        }
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.partitions.clear();
        self.offsets.clear();
        self.keys.clear();
        self.timestamps.clear();
        self.columns.iter_mut().for_each(Column::clear);
    }
}
