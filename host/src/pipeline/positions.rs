//! How far the job has read each source partition: the offsets to commit,
//! once the output of those records is flushed.

/// Per partition, the offset of the next record to read (the last one
/// handed over + 1).
#[derive(Debug, Default, Clone)]
pub struct ReadPositions {
    next: Vec<(i32, i64)>,
    /// Index of the partition seen last: records come in runs of one
    /// partition, so the lookup is usually this one compare.
    last: usize,
}

impl ReadPositions {
    /// Notes that the record at `offset` of `partition` was handed over.
    #[inline]
    pub fn advance(&mut self, partition: i32, offset: i64) {
        let i = match self.next.get(self.last) {
            Some(&(p, _)) if p == partition => self.last,
            _ => match self.next.iter().position(|&(p, _)| p == partition) {
                Some(i) => i,
                None => {
                    self.next.push((partition, offset + 1));
                    self.next.len() - 1
                }
            },
        };
        self.last = i;
        let next = &mut self.next[i].1;
        *next = (*next).max(offset + 1);
    }

    /// What to commit: each partition's next offset, held back to
    /// `held(partition)` where the operator still needs older records.
    pub fn to_commit(&self, held: impl Fn(i32) -> Option<i64>) -> Vec<(i32, i64)> {
        self.next.iter().map(|&(p, next)| (p, held(p).map_or(next, |h| h.min(next)))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_the_next_offset_per_partition_and_holds_back() {
        let mut read = ReadPositions::default();
        for (p, o) in [(0, 5), (0, 6), (2, 10), (0, 7), (2, 9), (1, 0)] {
            read.advance(p, o);
        }
        assert_eq!(read.to_commit(|_| None), [(0, 8), (2, 11), (1, 1)]);
        assert_eq!(read.to_commit(|p| (p == 2).then_some(4)), [(0, 8), (2, 4), (1, 1)]);
        // Held back further than read: never past what was read.
        assert_eq!(read.to_commit(|p| (p == 1).then_some(9)), [(0, 8), (2, 11), (1, 1)]);
    }
}
