//! Checkpoint storage and format. The storage suite takes any
//! `CheckpointStorage`, so every storage runs the same checks.

use super::*;
use crate::testing::HdfsCluster;
use std::time::{Duration, Instant};

fn temp_storage() -> (tempfile::TempDir, Box<dyn CheckpointStorage>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/checkpoints", dir.path().display());
    let storage = open_storage(&url).unwrap();
    (dir, storage)
}

/// What every storage must do.
fn storage_suite(storage: &dyn CheckpointStorage) {
    storage.write("job/chk-1/a", b"first").unwrap();
    storage.write("job/chk-1/b", b"").unwrap();
    storage.write("job/chk-2/a", b"second").unwrap();
    assert_eq!(storage.read("job/chk-1/a").unwrap(), b"first");
    assert_eq!(storage.read("job/chk-1/b").unwrap(), b"");
    storage.write("job/chk-1/a", b"replaced").unwrap();
    assert_eq!(storage.read("job/chk-1/a").unwrap(), b"replaced");
    assert_eq!(storage.list("job").unwrap(), ["chk-1", "chk-2"]);
    assert_eq!(storage.list("job/chk-1").unwrap(), ["a", "b"], "no temporary files are left");
    assert_eq!(storage.list("nothing/here").unwrap(), Vec::<String>::new());
    assert!(storage.read("job/chk-1/missing").is_err());
    storage.remove_dir("job/chk-1").unwrap();
    assert_eq!(storage.list("job").unwrap(), ["chk-2"]);
    storage.remove_dir("job/chk-1").unwrap();
    // Write-if-absent: the first writer wins, the rest leave it as it is.
    assert!(storage.write_new("job/group/ends", b"first").unwrap());
    assert!(!storage.write_new("job/group/ends", b"second").unwrap());
    assert_eq!(storage.read("job/group/ends").unwrap(), b"first");
    assert_eq!(storage.list("job/group").unwrap(), ["ends"], "no temporary files are left");
    // Racing writers: exactly one writes.
    let wins = std::thread::scope(|s| {
        let racers: Vec<_> =
            (0..4u8).map(|i| s.spawn(move || storage.write_new("job/group/race", &[i]).unwrap())).collect();
        racers.into_iter().map(|r| r.join().unwrap()).filter(|&won| won).count()
    });
    assert_eq!(wins, 1, "one racer writes");
    assert_eq!(storage.read("job/group/race").unwrap().len(), 1);
    assert_eq!(storage.list("job/group").unwrap(), ["ends", "race"]);
    storage.remove_dir("job/group").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    storage.write("job/chk-3/big", &big).unwrap();
    assert!(storage.read("job/chk-3/big").unwrap() == big);
}

#[test]
fn file_storage_passes_the_suite() {
    let (_dir, storage) = temp_storage();
    storage_suite(storage.as_ref());
}

#[test]
fn file_storage_touches_nothing_outside_its_folder() {
    let (dir, storage) = temp_storage();
    std::fs::write(dir.path().join("outside"), b"keep").unwrap();
    for path in ["../outside", "../escaped", "/etc/weir-escape", "job/../../outside"] {
        assert!(storage.write(path, b"x").is_err(), "{path} must be refused");
        assert!(storage.read(path).is_err(), "{path} must be refused");
        assert!(storage.remove_dir(path).is_err(), "{path} must be refused");
    }
    assert_eq!(std::fs::read(dir.path().join("outside")).unwrap(), b"keep");
    assert!(!dir.path().join("escaped").exists());
    assert!(!std::path::Path::new("/etc/weir-escape").exists());
    // A symlink inside pointing out is not followed out either.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("checkpoints/link")).unwrap();
    assert!(storage.read("link/outside").is_err());
    assert!(storage.write("link/planted", b"x").is_err());
    assert!(!dir.path().join("planted").exists());
}

#[test]
fn storage_urls_say_what_is_wrong() {
    let err = |url: &str| open_storage(url).err().expect("refused").to_string();
    assert!(err("file://relative/path").contains("absolute path"), "{}", err("file://relative/path"));
    let ui = err("hdfs://namenode:9870/weir");
    assert!(ui.contains("9870 is the NameNode's web UI port") && ui.contains("RPC port"), "{ui}");
    assert!(err("hdfs://namenode/weir").contains("RPC port"), "{}", err("hdfs://namenode/weir"));
    assert!(err("hdfs://namenode:8020").contains("absolute folder path"), "{}", err("hdfs://namenode:8020"));
    assert!(err("hdfs://:8020/weir").contains("NameNode host"), "{}", err("hdfs://:8020/weir"));
    assert!(err("hdfs://namenode:http/weir").contains("NameNode host and RPC port"));
    assert!(err("s3://bucket/weir").contains("file:///") && err("s3://bucket/weir").contains("hdfs://"));
    assert_eq!(
        parse_storage_url("hdfs://namenode:8020/weir/checkpoints").unwrap(),
        StorageUrl::Hdfs { namenode: "namenode:8020".into(), path: "/weir/checkpoints".into() }
    );
}

#[test]
fn files_round_trip_and_any_damage_is_caught() {
    let payload: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
    let bytes = encode_file(&payload);
    assert_eq!(decode_file("f", &bytes).unwrap(), payload.as_slice());
    assert_eq!(decode_file("f", &encode_file(b"")).unwrap(), b"");
    // Every single flipped byte is caught.
    for i in (0..bytes.len()).step_by(97) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        assert!(decode_file("f", &bad).is_err(), "a flip at byte {i} went unnoticed");
    }
    for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(matches!(decode_file("f", &bytes[..cut]), Err(ReadError::Corrupt { .. })), "cut at {cut}");
    }
    let mut newer = bytes.clone();
    newer[8..10].copy_from_slice(&(CHECKPOINT_VERSION + 1).to_le_bytes());
    assert!(
        matches!(decode_file("f", &newer), Err(ReadError::Version { found, .. }) if found == CHECKPOINT_VERSION + 1)
    );
}

fn files(tag: u8) -> Vec<(String, Vec<u8>)> {
    vec![("partition-0".into(), vec![tag; 100]), ("partition-3".into(), vec![tag + 1; 5000])]
}

#[test]
fn a_checkpoint_is_complete_only_with_its_manifest_and_intact_files() {
    let (_dir, storage) = temp_storage();
    let storage = storage.as_ref();
    let written = write_complete(storage, "job", 7, 1_700_000_000_000, &files(1)).unwrap();
    let read = read_complete(storage, "job", 7).unwrap();
    assert_eq!(read.manifest, written);
    assert_eq!(read.files, files(1));
    // Files without a manifest: a checkpoint cut short.
    for (name, payload) in files(9) {
        storage.write(&format!("job/chk-{:020}/{name}", 8), &encode_file(&payload)).unwrap();
    }
    assert!(matches!(read_complete(storage, "job", 8), Err(ReadError::Incomplete { .. })));
    assert_eq!(checkpoint_ids(storage, "job").unwrap(), [7, 8]);
    // The newest complete one is 7.
    let latest = latest_complete(storage, "job").unwrap().expect("one");
    assert_eq!(latest.manifest.checkpoint, 7);
    // A newer complete one, then damaged: the reader falls back to 7.
    write_complete(storage, "job", 9, 1_700_000_001_000, &files(5)).unwrap();
    assert_eq!(latest_complete(storage, "job").unwrap().expect("one").manifest.checkpoint, 9);
    let path = format!("job/chk-{:020}/partition-3", 9);
    let mut bytes = storage.read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    storage.write(&path, &bytes).unwrap();
    assert!(matches!(read_complete(storage, "job", 9), Err(ReadError::Corrupt { .. })));
    let fallback = latest_complete(storage, "job").unwrap().expect("one");
    assert_eq!((fallback.manifest.checkpoint, fallback.files), (7, files(1)));
    // Truncated: also caught.
    storage.write(&path, &bytes[..middle]).unwrap();
    assert!(matches!(read_complete(storage, "job", 9), Err(ReadError::Corrupt { .. })));
    assert!(latest_complete(storage, "other-job").unwrap().is_none());
}

#[test]
fn hdfs_storage_passes_the_suite_and_holds_checkpoints_in_hdfs() {
    let cluster = HdfsCluster::start();
    let url = format!("{}/weir/checkpoints", cluster.url);
    let storage = open_storage(&url).unwrap();
    assert_eq!(storage.url(), url);
    storage_suite(storage.as_ref());
    // Paths that would leave the storage's folder are refused.
    for path in ["../outside", "/etc/weir", "job/../../outside", "job//a", "./a"] {
        assert!(storage.write(path, b"x").is_err(), "{path} must be refused");
        assert!(storage.read(path).is_err(), "{path} must be refused");
    }

    let storage = storage.as_ref();
    write_complete(storage, "job", 7, 1_700_000_000_000, &files(1)).unwrap();
    let read = read_complete(storage, "job", 7).unwrap();
    assert_eq!(read.files, files(1));
    for (name, payload) in files(9) {
        storage.write(&format!("job/chk-{:020}/{name}", 8), &encode_file(&payload)).unwrap();
    }
    assert!(matches!(read_complete(storage, "job", 8), Err(ReadError::Incomplete { .. })));
    let latest = latest_complete(storage, "job").unwrap().expect("one");
    assert_eq!((latest.manifest.checkpoint, latest.files), (7, files(1)));

    // Hadoop's own shell sees the files where the storage put them.
    let listing = cluster.fs_shell(&["-ls", "-R", "/weir/checkpoints/job"]);
    let chk7 = format!("/weir/checkpoints/job/chk-{:020}", 7);
    for name in ["MANIFEST", "partition-0", "partition-3"] {
        assert!(listing.contains(&format!("{chk7}/{name}")), "{name} missing from:\n{listing}");
    }
    assert!(!listing.contains(".tmp-"), "a temporary file was left:\n{listing}");
    let manifest = cluster.fs_shell(&["-cat", &format!("{chk7}/MANIFEST")]);
    assert!(manifest.starts_with("WEIRCKPT"), "{manifest:?}");
}

#[test]
fn hdfs_storage_fails_in_time_while_the_namenode_is_down_and_recovers() {
    let cluster = HdfsCluster::start();
    let url = format!("{}/outage", cluster.url);
    let timeout = Duration::from_secs(3);
    let storage = HdfsStorage::open(&url, cluster.namenode(), "/outage", timeout).unwrap();
    storage.write("job/a", b"before").unwrap();

    HdfsCluster::run(cluster.dir(), "stop-namenode");
    for (action, call) in [
        ("list", Box::new(|| storage.list("job").map(|_| ())) as Box<dyn Fn() -> Result<(), StorageError>>),
        ("read", Box::new(|| storage.read("job/a").map(|_| ()))),
        ("write", Box::new(|| storage.write("job/b", b"during"))),
    ] {
        let started = Instant::now();
        let err = call().expect_err("no NameNode, no answer");
        let took = started.elapsed();
        eprintln!("{action} with the NameNode down: {err} (after {took:?})");
        assert!(took < timeout + Duration::from_secs(2), "{action} took {took:?}");
        assert!(matches!(err, StorageError::Timeout { .. } | StorageError::Hdfs { .. }), "{err:?}");
        assert!(err.to_string().contains(&url), "{err}");
    }

    HdfsCluster::run(cluster.dir(), "start-namenode");
    let started = Instant::now();
    assert_eq!(storage.read("job/a").unwrap(), b"before");
    storage.write("job/c", b"after").unwrap();
    assert_eq!(storage.list("job").unwrap(), ["a", "c"]);
    eprintln!("calls after the NameNode came back took {:?}", started.elapsed());
}
