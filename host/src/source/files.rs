//! Several JSON-lines files read as one source, the way a topic's
//! partitions are: file `i` (in name order) is partition `i`, with its own
//! offsets (line numbers), its own watermark and its own keyed state. So,
//! as with Kafka, a key should live in one file.
//!
//! Each poll reads from one file, the next in turn, so the partitions'
//! records interleave and parallel workers all have work.

use super::file::FileSource;
use super::{Poll, RawRecord, Source, SourceError};
use std::path::{Path, PathBuf};

/// What a file source's `path` names: a folder (its files, hidden ones
/// left out), a glob (`*`, `?`, `[…]`: the files it matches), or one file.
/// Files come in name order; none at all is an error that names the path.
pub fn resolve(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let none = |reason: &str| SourceError::NoFiles { path: path.to_path_buf(), reason: reason.to_string() };
    let text = path.to_string_lossy();
    let mut files: Vec<PathBuf> = if path.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|source| SourceError::OpenFile { path: path.to_path_buf(), source })?;
        entries
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect()
    } else if is_glob(&text) {
        let matches = glob::glob(&text).map_err(|e| none(&format!("not a valid pattern: {e}")))?;
        matches.filter_map(Result::ok).filter(|p| p.is_file()).collect()
    } else {
        return Ok(vec![path.to_path_buf()]);
    };
    if files.is_empty() {
        return Err(none(if path.is_dir() { "the folder holds no files" } else { "no file matches it" }));
    }
    files.sort();
    Ok(files)
}

/// Whether a path is a glob pattern rather than a file's name.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Reads several JSON-lines files as partitions `0..n`, or some of them
/// (a worker's share).
pub struct FilesSource {
    name: String,
    /// Every file of the source (a share reads some of them).
    paths: Vec<PathBuf>,
    files: Vec<FileSource>,
    /// The partition of each file read.
    partitions: Vec<i32>,
    /// Files read to their end.
    ended: Vec<bool>,
    /// The file the next poll reads first.
    next: usize,
}

impl FilesSource {
    /// Opens `paths` as partitions `0..paths.len()`; `name` (the job's
    /// `path`: a folder or a glob) names the source in messages.
    pub fn open(name: &str, paths: &[PathBuf]) -> Result<FilesSource, SourceError> {
        let all: Vec<i32> = (0..paths.len() as i32).collect();
        FilesSource::open_partitions(name, paths, &all)
    }

    /// Opens only the files of `partitions` (file `i` of `paths` is
    /// partition `i`).
    pub fn open_partitions(
        name: &str,
        paths: &[PathBuf],
        partitions: &[i32],
    ) -> Result<FilesSource, SourceError> {
        let mut files = Vec::with_capacity(partitions.len());
        for &p in partitions {
            let Some(path) = usize::try_from(p).ok().and_then(|i| paths.get(i)) else {
                let reason = format!("partition {p} is not one of its {} files", paths.len());
                return Err(SourceError::Seek { name: name.to_string(), reason });
            };
            files.push(FileSource::open(path)?);
        }
        Ok(FilesSource {
            name: name.to_string(),
            paths: paths.to_vec(),
            ended: vec![false; files.len()],
            files,
            partitions: partitions.to_vec(),
            next: 0,
        })
    }

    /// The index of `partition` among the files read.
    fn index(&self, partition: i32) -> Option<usize> {
        self.partitions.iter().position(|&p| p == partition)
    }

    fn fail(&self, reason: String) -> SourceError {
        SourceError::Seek { name: self.name.clone(), reason }
    }
}

impl Source for FilesSource {
    fn partitions(&self) -> Vec<i32> {
        self.partitions.clone()
    }

    fn poll(
        &mut self,
        max: usize,
        wait: std::time::Duration,
        each: &mut dyn FnMut(RawRecord<'_>),
    ) -> Result<Poll, SourceError> {
        let n = self.files.len();
        for step in 0..n {
            let index = (self.next + step) % n;
            if self.ended[index] {
                continue;
            }
            let partition = self.partitions[index];
            let polled = self.files[index].poll(max, wait, &mut |record| {
                each(RawRecord { partition, ..record });
            })?;
            match polled {
                Poll::End => self.ended[index] = true,
                other => {
                    self.next = (index + 1) % n;
                    return Ok(other);
                }
            }
        }
        Ok(Poll::End)
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Files are always read from their start: nothing to commit.
    fn commit(&mut self, _next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&mut self, next_offsets: &[(i32, i64)]) -> Result<(), SourceError> {
        for &(partition, offset) in next_offsets {
            let Some(i) = self.index(partition) else {
                let files = self.files.len();
                return Err(self.fail(format!("partition {partition} is not one of its {files} files")));
            };
            self.files[i].seek(&[(0, offset)])?;
        }
        Ok(())
    }

    fn splittable(&self) -> bool {
        true
    }

    /// Each share opens its files afresh: a split comes before any poll.
    fn split(&mut self, shares: &[Vec<i32>]) -> Result<Vec<Box<dyn Source>>, SourceError> {
        shares
            .iter()
            .map(|share| {
                Ok(Box::new(FilesSource::open_partitions(&self.name, &self.paths, share)?) as Box<dyn Source>)
            })
            .collect()
    }

    /// Only a file read to its end is caught up: one whose turn has not
    /// come for a while still has records, which must not be made late.
    fn caught_up(&self, partition: i32) -> bool {
        self.index(partition).is_none_or(|i| self.ended[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, lines: &[&str]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        path
    }

    /// Every record of every file comes out once, with its file's index as
    /// its partition and its line number as its offset; polls take turns.
    #[test]
    fn each_file_is_a_partition_and_polls_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.jsonl", &["a0", "a1", "a2"]);
        let b = write(dir.path(), "b.jsonl", &["b0", "", "b2"]);
        let mut source = FilesSource::open("dir", &[a, b]).unwrap();
        assert_eq!(source.partitions(), vec![0, 1]);
        let mut polls = Vec::new();
        loop {
            let mut seen = Vec::new();
            let polled = source
                .poll(2, std::time::Duration::ZERO, &mut |r| {
                    seen.push((r.partition, r.offset, String::from_utf8_lossy(r.payload).into_owned()))
                })
                .unwrap();
            if polled == Poll::End {
                break;
            }
            polls.push(seen);
        }
        let s = |p: i32, o: i64, t: &str| (p, o, t.to_string());
        assert_eq!(
            polls,
            vec![vec![s(0, 0, "a0"), s(0, 1, "a1")], vec![s(1, 0, "b0"), s(1, 2, "b2")], vec![s(0, 2, "a2")],]
        );
        assert!(source.caught_up(0) && source.caught_up(1));
    }

    /// A file still to be read is not caught up, so it is never judged idle.
    #[test]
    fn a_file_not_yet_at_its_end_is_not_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.jsonl", &["a0"]);
        let b = write(dir.path(), "b.jsonl", &["b0"]);
        let mut source = FilesSource::open("dir", &[a, b]).unwrap();
        source.poll(10, std::time::Duration::ZERO, &mut |_| {}).unwrap();
        assert!(!source.caught_up(1), "file b was not read yet");
    }

    /// A folder gives its files in name order, hidden ones left out; a glob
    /// gives the files it matches; neither may come up empty.
    #[test]
    fn a_folder_or_a_glob_names_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["b.jsonl", "a.jsonl", "c.txt", ".hidden"] {
            write(d, name, &["{}"]);
        }
        let names = |paths: Vec<PathBuf>| -> Vec<String> {
            paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
        };
        assert_eq!(names(resolve(d).unwrap()), ["a.jsonl", "b.jsonl", "c.txt"]);
        assert_eq!(names(resolve(&d.join("*.jsonl")).unwrap()), ["a.jsonl", "b.jsonl"]);
        assert_eq!(resolve(&d.join("a.jsonl")).unwrap(), vec![d.join("a.jsonl")]);
        let error = resolve(&d.join("*.csv")).unwrap_err().to_string();
        assert!(error.contains("*.csv") && error.contains("no file matches it"), "{error}");
        let empty = d.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let error = resolve(&empty).unwrap_err().to_string();
        assert!(error.contains("the folder holds no files"), "{error}");
    }

    /// A worker's share: only its files, under their own partition numbers.
    #[test]
    fn a_share_of_the_files_keeps_their_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> =
            ["a", "b", "c"].iter().map(|n| write(dir.path(), &format!("{n}.jsonl"), &[n])).collect();
        let mut source = FilesSource::open_partitions("dir", &paths, &[2, 0]).unwrap();
        assert_eq!(source.partitions(), vec![2, 0]);
        let mut seen = Vec::new();
        while source
            .poll(10, std::time::Duration::ZERO, &mut |r| seen.push((r.partition, r.payload.to_vec())))
            .unwrap()
            != Poll::End
        {}
        assert_eq!(seen, vec![(2, b"c".to_vec()), (0, b"a".to_vec())]);
        source.seek(&[]).unwrap();
        assert!(source.seek(&[(1, 0)]).is_err(), "partition 1 is another worker's");
        assert!(FilesSource::open_partitions("dir", &paths, &[3]).is_err());
    }

    /// A seek goes to each partition's line; one to a missing partition is
    /// refused with the reason.
    #[test]
    fn seek_goes_to_each_files_line() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.jsonl", &["a0", "a1"]);
        let b = write(dir.path(), "b.jsonl", &["b0", "b1", "b2"]);
        let mut source = FilesSource::open("dir", &[a, b]).unwrap();
        source.seek(&[(0, 1), (1, 2)]).unwrap();
        let mut seen = Vec::new();
        while source.poll(10, std::time::Duration::ZERO, &mut |r| seen.push((r.partition, r.offset))).unwrap()
            != Poll::End
        {}
        assert_eq!(seen, vec![(0, 1), (1, 2)]);
        let error = source.seek(&[(2, 0)]).unwrap_err().to_string();
        assert!(error.contains("partition 2 is not one of its 2 files"), "{error}");
    }
}
