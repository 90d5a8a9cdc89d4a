//! Scale-out: several `weir run --until-end` processes of one job
//! (`[source] scale_out`) share a topic's partitions as the members of one
//! consumer group, against a broker in its own process, with their
//! checkpoints in one shared folder. Members join while others run (so
//! partitions move while windows are open) and one is killed with SIGKILL
//! mid-run; the rest take its partitions over from its checkpoints and
//! end by themselves once every partition is read to its end. The output
//! topics (results, late records, dead letters) must then hold exactly
//! what one process wrote alone: the same multiset, nothing missing,
//! nothing twice.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::host::Server;
use support::kafka::{kept, start_dev_broker, topic_values, weir_ok};
use support::{Child, Lcg, start_tansu, weir_command};

/// Readings 5 ms apart, keyed by device, up to 200 ms out of order, one in
/// 300 far behind (late, or within the allowed lateness), and a bad line
/// every 2,000.
fn write_input(path: &Path, n: usize) {
    support::write_readings(path, n, 23, 48, 2000);
}

/// A sliding-window job reading `readings` and writing `<name>-out`,
/// `<name>-late` and `<name>-dead`, with `extra` sections.
fn job(dir: &Path, name: &str, brokers: &str, source_extra: &str, extra: &str) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n[source]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"readings\"\n\
         start = \"earliest\"\n{source_extra}\n[format]\nkey = \"device_id\"\ntimestamp = \"execution_time\"\n\
         fields = {{ temperature = \"f64\" }}\n[time]\nmax_out_of_orderness = \"300ms\"\nallowed_lateness = \"500ms\"\n\
         idle_timeout = \"1h\"\nlate_output = \"{name}-late\"\n[window]\ntype = \"sliding\"\nsize = \"2s\"\n\
         slide = \"1s\"\n[function]\nplugin = \"max-temperature-agg\"\n[sink]\ntype = \"kafka\"\n\
         brokers = \"{brokers}\"\ntopic = \"{name}-out\"\ndead_letter = \"{name}-dead\"\n{extra}"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A `weir run` process and what it has said on stderr so far.
struct Member {
    child: Child,
    log: Arc<Mutex<String>>,
    /// A phrase that gets the process killed with SIGKILL the moment it
    /// writes a line containing it (by the thread that reads its stderr,
    /// so that the kill lands while the process is still at what the line
    /// says).
    kill_on: Arc<Mutex<Option<&'static str>>>,
}

impl Member {
    fn start(dir: &Path, job: &Path) -> Member {
        Member::start_killed_on(dir, job, None)
    }

    /// Starts a member that is killed on its first line with `phrase`.
    fn start_killed_on(dir: &Path, job: &Path, phrase: Option<&'static str>) -> Member {
        let mut child = weir_command(dir)
            .args(["run", job.to_str().unwrap(), "--until-end"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let into = log.clone();
        let pid = child.id() as i32;
        let kill_on = Arc::new(Mutex::new(phrase));
        let trigger = kill_on.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if trigger.lock().unwrap().is_some_and(|phrase| line.contains(phrase)) {
                    // SAFETY: a signal to a child of this test, which is
                    // not reaped before this thread reads its end.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let mut log = into.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Member { child: Child(child), log, kill_on }
    }

    /// From now on, the process is killed on its first line with `phrase`.
    fn kill_on(&self, phrase: &'static str) {
        *self.kill_on.lock().unwrap() = Some(phrase);
    }

    fn text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Each "owns partitions [..] (gained [..])" line: what the member
    /// owned, and what it had just gained.
    fn ownership(&self) -> Vec<(Vec<i32>, Vec<i32>)> {
        let list = |text: &str| -> Vec<i32> {
            text.split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .map(|n| n.parse().unwrap())
                .collect()
        };
        self.text()
            .lines()
            .filter_map(|l| {
                let rest = l.split("owns partitions ").nth(1)?;
                let (owned, gained) = rest.split_once(" (gained ")?;
                Some((list(owned), list(gained)))
            })
            .collect()
    }

    /// Waits until `done` holds for the member's ownership lines.
    fn wait_for(&self, what: &str, done: impl Fn(&[(Vec<i32>, Vec<i32>)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !done(&self.ownership()) {
            assert!(Instant::now() < deadline, "{what}: not within 120 s:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end by itself; its exit status.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "a member did not end within {limit:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Consumer settings that make each partition a slow read (one small
/// batch per fetch, a pause when the prefetch queue is full), so that a
/// run lasts long enough for members to join and be killed in the middle
/// of it: the output does not depend on how fast records arrive.
const SLOW_READS: &str = "[source.kafka]\n\"queued.min.messages\" = 1\n\"queued.max.messages.kbytes\" = 1\n\
                          \"fetch.queue.backoff.ms\" = 40\n\"max.partition.fetch.bytes\" = 1\n\
                          \"heartbeat.interval.ms\" = 500\n";

/// How soon the group gives a silent member's partitions away, unless a
/// test says otherwise.
const SESSION_MS: u32 = 6000;

/// A broker in its own process with topic `readings` (6 partitions) full
/// of the input, the output topics of jobs `clean` and `group`, and the
/// clean run's output, written by one process alone.
struct Setup {
    /// The broker's process, kept running.
    _broker: Box<dyn std::any::Any>,
    brokers: String,
    /// The group's job file.
    group: PathBuf,
}

/// Where the group's broker and checkpoints are.
enum Place {
    /// `weir dev-broker`, checkpoints in a local folder.
    DevBroker,
    /// `weir dev-broker`, checkpoints in this HDFS.
    DevBrokerAndHdfs(String),
    /// tansu (SQLite), checkpoints in a local folder.
    Tansu,
    /// tansu (SQLite), checkpoints in this HDFS.
    TansuAndHdfs(String),
}

/// The group checkpoints every `interval`, and its members' sessions last
/// `session_ms`; `checkpoint_extra` ends its `[checkpoint]` section.
fn setup(
    dir: &Path,
    place: &Place,
    sink_extra: &str,
    interval: &str,
    session_ms: u32,
    checkpoint_extra: &str,
) -> Setup {
    let (broker, brokers, storage): (Box<dyn std::any::Any>, String, String) = match place {
        Place::DevBroker => {
            let (broker, brokers) = start_dev_broker(dir);
            let storage = format!("file://{}", dir.join("shared-checkpoints").display());
            (Box::new(broker), brokers, storage)
        }
        Place::DevBrokerAndHdfs(hdfs) => {
            let (broker, brokers) = start_dev_broker(dir);
            (Box::new(broker), brokers, format!("{hdfs}/weir"))
        }
        Place::Tansu | Place::TansuAndHdfs(_) => {
            let tansu = start_tansu();
            // Sequenced sinks read back records with headers.
            tansu.index_headers();
            let brokers = tansu.bootstrap.clone();
            let storage = match place {
                Place::TansuAndHdfs(hdfs) => format!("{hdfs}/weir"),
                _ => format!("file://{}", dir.join("shared-checkpoints").display()),
            };
            (Box::new(tansu), brokers, storage)
        }
    };
    write_input(&dir.join("input.jsonl"), 36_000);
    weir_ok(dir, &["topic", "create", "--brokers", &brokers, "--topic", "readings", "--partitions", "6"]);
    for name in ["clean", "group"] {
        for (kind, partitions) in [("out", "6"), ("dead", "2"), ("late", "2")] {
            let topic = format!("{name}-{kind}");
            weir_ok(
                dir,
                &["topic", "create", "--brokers", &brokers, "--topic", &topic, "--partitions", partitions],
            );
        }
    }
    // Small batches (a paced producer), so that slow reads are slow.
    let produce = ["produce", "--brokers", &brokers, "--topic", "readings", "--input", "input.jsonl"];
    weir_ok(dir, &[&produce[..], &["--key", "device_id", "--rate", "6000"]].concat());
    let lines = std::fs::read_to_string(dir.join("input.jsonl")).unwrap().lines().count();
    assert_eq!(kept(dir, &brokers, "readings"), lines, "the input topic holds every line");

    // One process alone, the reference.
    let clean = job(dir, "clean", &brokers, "", "");
    weir_ok(dir, &["run", clean.to_str().unwrap(), "--until-end"]);

    // Dead members' checkpoints go 4 s after their newest: while the
    // tests run, so that a wrong removal shows in the output.
    let extra = format!(
        "{sink_extra}\n[checkpoint]\nstorage = \"{storage}\"\ninterval = \"{interval}\"\nmode = \"exactly-once\"\n\
         cleanup_delay = \"4s\"\n{checkpoint_extra}"
    );
    let source = format!("scale_out = true\n{SLOW_READS}\"session.timeout.ms\" = {session_ms}\n");
    let group = job(dir, "group", &brokers, &source, &extra);
    Setup { _broker: broker, brokers, group }
}

/// The group's output topics hold exactly the clean run's records.
fn assert_same_output(dir: &Path, brokers: &str, members: &[&Member]) {
    let logs = || members.iter().map(|m| m.text()).collect::<Vec<_>>().join("\n----\n");
    assert_same_output_as(dir, brokers, &logs);
}

/// [`assert_same_output`], showing `logs()` when it fails.
fn assert_same_output_as(dir: &Path, brokers: &str, logs: &dyn Fn() -> String) {
    for kind in ["out", "late", "dead"] {
        let (clean, group) = (format!("clean-{kind}"), format!("group-{kind}"));
        kept(dir, brokers, &clean);
        kept(dir, brokers, &group);
        let expected = topic_values(dir, brokers, &clean);
        assert!(!expected.is_empty(), "the clean run wrote no {kind} records");
        let got = topic_values(dir, brokers, &group);
        let missing = expected.iter().filter(|l| got.binary_search(l).is_err()).count();
        assert!(
            got == expected,
            "{kind}: the group wrote {} records against {} by one process ({missing} missing)\n{}",
            got.len(),
            expected.len(),
            logs()
        );
    }
}

/// The partitions a member owned last.
fn last_owned(member: &Member) -> Vec<i32> {
    member.ownership().last().map(|(owned, _)| owned.clone()).unwrap_or_default()
}

/// How many sessions each of `members` has started so far.
fn sessions(members: &[&Member]) -> Vec<usize> {
    members.iter().map(|m| m.ownership().len()).collect()
}

/// Whether `members` gained every one of `partitions` in sessions after
/// the first `since[i]` of member `i`.
fn taken_over(members: &[&Member], since: &[usize], partitions: &[i32]) -> bool {
    let taken: Vec<i32> = members
        .iter()
        .zip(since)
        .flat_map(|(m, &since)| m.ownership().into_iter().skip(since).flat_map(|(_, gained)| gained))
        .collect();
    partitions.iter().all(|p| taken.contains(p))
}

#[test]
fn members_that_join_and_die_mid_run_write_exactly_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    join_and_kill(dir.path(), &Place::DevBroker);
}

#[test]
fn on_tansu_with_hdfs_checkpoints_members_that_join_and_die_write_exactly_what_one_process_writes() {
    let hdfs = weir_devtools::hdfs::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let killed = join_and_kill(dir.path(), &Place::TansuAndHdfs(hdfs.url.clone()));
    // The group's state is in HDFS, as HDFS's own shell lists it.
    let listed = hdfs.fs_shell(&["-ls", "-R", "/weir/group"]);
    for part in
        ["/weir/group/members/", "/weir/group/group/ends", "/weir/group/group/finished-5", "/MANIFEST"]
    {
        assert!(listed.contains(part), "{part} is not in HDFS:\n{listed}");
    }
    // No complete checkpoint of the killed member is left.
    let kept = format!("/weir/{killed}/chk-");
    let left: Vec<&str> =
        listed.lines().filter(|l| l.contains(&kept) && l.trim_end().ends_with("/MANIFEST")).collect();
    assert!(left.is_empty(), "the killed member's checkpoints are still there: {left:?}");
}

/// Three members of the group on `place`: two join while the first runs,
/// and one of them is killed with SIGKILL mid-run; the rest end by
/// themselves with exactly one process's output.
/// Returns the killed member's folder in the group's storage.
fn join_and_kill(dir: &Path, place: &Place) -> String {
    // Checkpoints 2 s apart, and the kill 0.8 to 1.8 s after the member's
    // first one: it has written output past its newest checkpoint, which
    // the survivors must skip (at 300 ms apart, a kill may land before
    // any new output, and then prove less).
    let Setup { _broker, brokers, group } = setup(dir, place, "", "2s", SESSION_MS, "");
    let mut first = Member::start(dir, &group);
    first.wait_for("the first member owns every partition", |lines| {
        lines.iter().any(|(owned, _)| owned.len() == 6)
    });
    // Two more join while the first is under way: partitions move with
    // their windows open.
    let mut doomed = Member::start(dir, &group);
    let mut third = Member::start(dir, &group);
    doomed.wait_for("the second member gains partitions", |lines| {
        lines.iter().any(|(owned, _)| !owned.is_empty())
    });
    std::thread::sleep(Duration::from_millis(800 + Lcg(7).below(1_000)));
    let before = sessions(&[&first, &third]);
    doomed.child.0.kill().unwrap();
    doomed.child.0.wait().unwrap();
    let lost = last_owned(&doomed);
    assert!(!lost.is_empty(), "the killed member owned nothing:\n{}", doomed.text());

    for member in [&mut first, &mut third] {
        let status = member.wait(Duration::from_secs(240));
        assert!(status.success(), "a member failed:\n{}", member.text());
    }
    assert!(
        taken_over(&[&first, &third], &before, &lost),
        "partitions {lost:?} of the killed member were not taken over:\n{}\n{}",
        first.text(),
        third.text()
    );
    // What the takeover found: records the killed member wrote after its
    // newest checkpoint, which the survivors' replays made again.
    let ahead = ahead_in(&first.text()) + ahead_in(&third.text());
    eprintln!("the killed member owned {lost:?}; the survivors skipped {ahead} records it had written");
    // The survivors checkpointed the killed member's partitions further,
    // so its checkpoints are not needed: a member that starts later (and
    // finds the run finished) removes them. (On tansu the kill may land
    // before the killed member's first checkpoint: then it has none.)
    let folder = member_folder(&doomed);
    let mut later = Member::start(dir, &group);
    assert!(later.wait(Duration::from_secs(60)).success(), "a later member failed:\n{}", later.text());
    if let Place::DevBroker = place {
        assert!(
            later.text().contains(&format!("removed the checkpoints of {folder} up to")),
            "the killed member's checkpoints ({folder}) were not removed:\n{}",
            later.text()
        );
        let left = std::fs::read_dir(dir.join("shared-checkpoints").join(&folder)).unwrap();
        let left: Vec<_> = left.map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{folder} still holds {left:?}");
    }
    assert_same_output(dir, &brokers, &[&first, &third, &doomed, &later]);
    // On the dev broker the kill lands after the killed member wrote past
    // its newest checkpoint, so the survivors' skipping is proven. On
    // tansu it lands earlier (its restore reads the output topics back
    // slowly): that case proves the takeover through HDFS.
    if let Place::DevBroker = place {
        assert!(
            ahead > 0,
            "the killed member wrote nothing past its newest checkpoint: the kill proved nothing"
        );
    }
    folder
}

#[test]
fn members_killed_as_they_gain_partitions_and_while_they_hand_them_over_leave_exactly_one_processs_output() {
    // Checkpoints in HDFS: a hand-over takes long enough there (a few
    // NameNode and DataNode round trips per file) for a kill to land in it.
    let hdfs = weir_devtools::hdfs::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let Setup { _broker, brokers, group } =
        setup(dir, &Place::DevBrokerAndHdfs(hdfs.url.clone()), "", "300ms", SESSION_MS, "");
    let mut first = Member::start(dir, &group);
    first.wait_for("the first member owns every partition", |lines| {
        lines.iter().any(|(owned, _)| owned.len() == 6)
    });
    // The second member dies as soon as it has restored what the first
    // handed it, before its first checkpoint; the first takes it back
    // once the dead member's session ends.
    let before = sessions(&[&first]);
    let mut gainer = Member::start_killed_on(dir, &group, Some("owns partitions"));
    gainer.child.0.wait().unwrap();
    let lost = last_owned(&gainer);
    assert!(!lost.is_empty(), "the second member was killed before it owned anything:\n{}", gainer.text());
    first.wait_for("the first member takes the dead member's partitions back", |lines| {
        taken_over(&[&first], &before, &lost) && lines.last().is_some_and(|(owned, _)| owned.len() == 6)
    });
    // Then the first dies in its next hand-over, to two members joining.
    first.kill_on("handing over partitions");
    let mut third = Member::start(dir, &group);
    let mut fourth = Member::start(dir, &group);
    first.child.0.wait().unwrap();
    let text = first.text();
    let Some((_, handing)) = text.rsplit_once("handing over partitions") else {
        panic!("the first member died otherwise:\n{text}");
    };
    // Killed before it wrote the hand-over's manifest, or at least
    // before it said so.
    assert!(
        !handing.contains("handed over partitions"),
        "the first member finished its hand-over before the kill landed:\n{text}"
    );
    let lost_first = last_owned(&first);

    for member in [&mut third, &mut fourth] {
        let status = member.wait(Duration::from_secs(240));
        assert!(status.success(), "a member failed:\n{}", member.text());
    }
    let all: Vec<i32> = (0..6).collect();
    assert!(
        taken_over(&[&third, &fourth], &[0, 0], &all),
        "the last members did not take every partition over:\n{}\n{}",
        third.text(),
        fourth.text()
    );
    eprintln!(
        "killed: the second member owning {lost:?} before its first checkpoint, the first owning \
         {lost_first:?} during its hand-over"
    );
    assert_same_output(dir, &brokers, &[&first, &gainer, &third, &fourth]);
}

/// The records restores found written past their checkpoints, from the
/// sequenced sinks' "N records written after the checkpoint" lines.
/// The folder of `member`'s checkpoints in the group's storage, as it logs
/// it (`group/members/<name>`).
fn member_folder(member: &Member) -> String {
    let text = member.text();
    let line = text.lines().find(|l| l.contains("member group/members/"));
    let name = line.and_then(|l| l.split("member ").nth(1)?.split(':').next());
    name.unwrap_or_else(|| panic!("no member folder in its log:\n{text}")).to_string()
}

fn ahead_in(log: &str) -> u64 {
    let phrase = " records written after the checkpoint, not to be written again";
    log.lines()
        .filter_map(|l| l.split(phrase).next().filter(|_| l.contains(phrase)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The NameNode goes away just as a second member joins, so the first
/// one's hand-over and the joiner's restore meet a dead storage, and comes
/// back 8 s later: the storage calls fail in time (`storage_timeout`),
/// the runs start again by their `[restart]` strategy as new members, and
/// the output is exactly one process's.
#[test]
fn a_namenode_outage_during_a_hand_over_loses_and_repeats_nothing() {
    let hdfs = weir_devtools::hdfs::HdfsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let checkpoint_extra = "storage_timeout = \"2s\"\ntolerable_failures = 3\n\
                            [restart]\nstrategy = \"fixed-delay\"\nattempts = 1000\ndelay = \"500ms\"\n";
    let Setup { _broker, brokers, group } =
        setup(dir, &Place::DevBrokerAndHdfs(hdfs.url.clone()), "", "300ms", SESSION_MS, checkpoint_extra);
    let mut first = Member::start(dir, &group);
    first.wait_for("the first member owns every partition", |lines| {
        lines.iter().any(|(owned, _)| owned.len() == 6)
    });
    weir_devtools::hdfs::HdfsCluster::run(hdfs.dir(), "stop-namenode");
    let mut second = Member::start(dir, &group);
    std::thread::sleep(Duration::from_secs(8));
    weir_devtools::hdfs::HdfsCluster::run(hdfs.dir(), "start-namenode");
    for member in [&mut first, &mut second] {
        let status = member.wait(Duration::from_secs(300));
        assert!(status.success(), "a member failed:\n{}", member.text());
    }
    let logs = format!("{}\n----\n{}", first.text(), second.text());
    assert!(logs.contains("(is the NameNode up and reachable?)"), "the outage was never met:\n{logs}");
    assert_same_output(dir, &brokers, &[&first, &second]);
}

#[test]
fn a_member_suspended_past_its_session_writes_nothing_for_the_partitions_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    suspend_one(dir.path(), &Place::DevBroker);
}

/// On tansu the checkpoints are in a local folder: its coordinator (0.6)
/// drops a member that rejoins a rebalance later than the session timeout,
/// and a member handing partitions over rejoins once their checkpoint is
/// written, which an HDFS under a loaded machine's CI took 30 s to do
/// (docs/SCALING.md). The HDFS tests above cover that storage.
#[test]
fn on_tansu_a_member_suspended_past_its_session_writes_nothing_for_the_partitions_it_lost() {
    let dir = tempfile::tempdir().unwrap();
    suspend_one(dir.path(), &Place::Tansu);
}

/// Three members of the group on `place`; one is suspended with SIGSTOP
/// until the others have taken its partitions over, then resumed. All end
/// by themselves with exactly one process's output.
fn suspend_one(dir: &Path, place: &Place) {
    // A long linger: the suspended member's producer holds records queued
    // and unsent when it stops.
    let Setup { _broker, brokers, group } =
        setup(dir, place, "[sink.kafka]\n\"linger.ms\" = 1500\n", "300ms", SESSION_MS, "");
    let mut first = Member::start(dir, &group);
    first.wait_for("the first member owns every partition", |lines| {
        lines.iter().any(|(owned, _)| owned.len() == 6)
    });
    let mut paused = Member::start(dir, &group);
    let mut third = Member::start(dir, &group);
    paused.wait_for("the second member gains partitions", |lines| {
        lines.iter().any(|(owned, _)| !owned.is_empty())
    });
    std::thread::sleep(Duration::from_millis(500 + Lcg(11).below(1_000)));
    let pid = paused.child.0.id() as i32;
    // SAFETY: signals to a child process of this test.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let before = sessions(&[&first, &third]);
    let lost = last_owned(&paused);
    // Past its session: the others take its partitions over.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !taken_over(&[&first, &third], &before, &lost) {
        assert!(
            Instant::now() < deadline,
            "partitions {lost:?} were not taken over:\n{}\n{}",
            first.text(),
            third.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);

    for member in [&mut first, &mut paused, &mut third] {
        let status = member.wait(Duration::from_secs(240));
        assert!(status.success(), "a member failed:\n{}", member.text());
    }
    assert_same_output(dir, &brokers, &[&first, &paused, &third]);
    assert!(
        paused.text().contains("joins the group again"),
        "the suspended member did not notice it lost its lease:\n{}",
        paused.text()
    );
}

#[test]
fn a_scale_out_job_on_two_hosts_shows_what_each_owns_and_writes_exactly_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let Setup { _broker, brokers, group } = setup(dir, &Place::DevBroker, "", "300ms", SESSION_MS, "");
    let hosts = [Server::start(&dir.join("host-a")), Server::start(&dir.join("host-b"))];
    let ids: Vec<String> = hosts
        .iter()
        .map(|h| h.ok(&["submit", "--until-end", group.to_str().unwrap()]).trim().to_string())
        .collect();
    let logs = || hosts.iter().map(|h| h.log()).collect::<Vec<_>>().join("\n----\n");
    let owned = |i: usize| -> Option<Vec<i64>> {
        let job = hosts[i].job(&ids[i]);
        let partitions = job["metrics"]["group"]["partitions"].as_array()?;
        Some(partitions.iter().map(|p| p.as_i64().unwrap()).collect())
    };
    // While both run, each host's API shows what it owns: together, every
    // partition of the topic once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let shares = loop {
        if let (Some(a), Some(b)) = (owned(0), owned(1)) {
            let mut all = [a.clone(), b.clone()].concat();
            all.sort_unstable();
            if !a.is_empty() && !b.is_empty() && all == (0..6).collect::<Vec<i64>>() {
                break [a, b];
            }
        }
        assert!(Instant::now() < deadline, "the hosts never shared the partitions:\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    // As /metrics and each member's log say.
    for (i, host) in hosts.iter().enumerate() {
        let mut response = ureq::get(format!("{}/metrics", host.url)).call().unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        let line = format!("weir_job_owned_partitions{{job=\"group\",id=\"{}\"}} ", ids[i]);
        let count = text.lines().find_map(|l| l.strip_prefix(line.as_str())?.parse::<usize>().ok());
        assert!(count.is_some_and(|n| (1..6).contains(&n)), "no owned partitions in /metrics:\n{text}");
        let member = hosts[i].job(&ids[i])["metrics"]["group"]["member"].as_str().unwrap().to_string();
        assert!(host.log().contains(&member), "host {i} never named its member {member}:\n{}", host.log());
    }
    eprintln!("the hosts owned {:?} and {:?}", shares[0], shares[1]);
    // Both end by themselves, with the run's counts.
    let deadline = Instant::now() + Duration::from_secs(240);
    for (host, id) in hosts.iter().zip(&ids) {
        let job = loop {
            let job = host.job(id);
            if job["state"] != "running" {
                break job;
            }
            assert!(Instant::now() < deadline, "job {id} did not end:\n{}", host.log());
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(job["state"], "finished", "{job}\n{}", host.log());
        assert!(job["metrics"]["records"].as_u64().unwrap() > 0, "a host counted no records: {job}");
        assert!(job["metrics"]["checkpoints"].as_u64().unwrap() > 0, "a host counted no checkpoints: {job}");
    }
    assert_same_output_as(dir, &brokers, &logs);
}

#[test]
fn a_bounded_member_ends_when_partitions_are_empty_and_a_later_one_finds_the_run_finished() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_broker, brokers) = start_dev_broker(dir);
    // Two devices on a topic of eight partitions: at least six are empty,
    // and an empty partition never sends a record to say it is read.
    let mut text = String::new();
    for i in 0..600i64 {
        let device = 1 + i % 2;
        let ts = 1_700_000_000_000 + 10 * i;
        text.push_str(&format!(
            "{{\"device_id\": {device}, \"temperature\": {}, \"execution_time\": {ts}}}\n",
            300 + i % 97
        ));
        if i % 200 == 199 {
            // Late by far more than the allowed lateness, and bad.
            let late = ts - 5_000;
            text.push_str(&format!(
                "{{\"device_id\": {device}, \"temperature\": 1, \"execution_time\": {late}}}\n"
            ));
            text.push_str(&format!(
                "{{\"device_id\": {device}, \"temperature\": \"hot\", \"execution_time\": {ts}}}\n"
            ));
        }
    }
    std::fs::write(dir.join("input.jsonl"), text).unwrap();
    weir_ok(dir, &["topic", "create", "--brokers", &brokers, "--topic", "readings", "--partitions", "8"]);
    for name in ["clean", "group"] {
        for kind in ["out", "dead", "late"] {
            let topic = format!("{name}-{kind}");
            weir_ok(dir, &["topic", "create", "--brokers", &brokers, "--topic", &topic, "--partitions", "2"]);
        }
    }
    weir_ok(
        dir,
        &[
            "produce",
            "--brokers",
            &brokers,
            "--topic",
            "readings",
            "--input",
            "input.jsonl",
            "--key",
            "device_id",
        ],
    );
    let clean = job(dir, "clean", &brokers, "", "");
    weir_ok(dir, &["run", clean.to_str().unwrap(), "--until-end"]);
    let storage = format!("file://{}", dir.join("shared-checkpoints").display());
    let extra =
        format!("[checkpoint]\nstorage = \"{storage}\"\ninterval = \"300ms\"\nmode = \"exactly-once\"\n");
    let group = job(dir, "group", &brokers, "scale_out = true\n", &extra);
    let mut member = Member::start(dir, &group);
    let status = member.wait(Duration::from_secs(60));
    assert!(status.success(), "the member failed:\n{}", member.text());
    for p in 0..8 {
        let finished = dir.join(format!("shared-checkpoints/group/group/finished-{p}"));
        assert!(finished.exists(), "partition {p} is not recorded finished:\n{}", member.text());
    }
    assert_same_output(dir, &brokers, &[&member]);
    // The run is over for the group: a member started now reads nothing
    // and ends at once.
    let mut later = Member::start(dir, &group);
    let status = later.wait(Duration::from_secs(60));
    assert!(status.success(), "the later member failed:\n{}", later.text());
    assert!(later.text().contains("0 records read"), "the later member read again:\n{}", later.text());
    assert_same_output(dir, &brokers, &[&member, &later]);
}
