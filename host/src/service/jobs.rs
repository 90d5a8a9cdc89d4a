//! The host's jobs: each submitted job is checked as `weir run` checks a
//! job file (and more: its paths must be absolute, its plugin stored or
//! built in), kept under `<data>/jobs/<id>/`, and run on a thread of its
//! own with the job's restart strategy. A job that was running when the
//! host stopped runs again when it starts (from its newest checkpoint, if
//! it has `[checkpoint]`); a cancelled, finished or failed one stays so.

use super::ServiceError;
use super::store::{PluginStore, StoredPlugin, write_atomically};
use crate::job::{Job, JobConfig, SinkKind, SourceKind};
use crate::kafka::{BrokerSpec, Cluster, KafkaConfig};
use crate::pipeline::{
    LiveMetrics, MetricsSnapshot, Pipeline, RestoreFrom, RunOptions, RunSummary, ShadowReport,
    copy_savepoint, run_with_restarts,
};
use crate::plugin::PluginEngine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Running (or waiting to restart after a failure).
    Running,
    /// Its bounded input ended and every window fired.
    Finished,
    /// It failed, and its restart strategy gave up.
    Failed,
    /// Cancelled by a user.
    Cancelled,
    /// Stopped with a savepoint (`weir savepoint --stop`); submit it again
    /// with `--from-savepoint` to go on.
    Stopped,
}

/// A job as the host keeps it (`job.json`) and shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id, given at submission.
    pub id: String,
    /// The job's `name`.
    pub name: String,
    /// The plugin, as resolved at submission: `name@version` of a stored
    /// one, or a built-in's name.
    pub plugin: String,
    /// The stored plugin's sha256 (none for a built-in).
    pub plugin_sha256: Option<String>,
    /// Whether the job stops at the end of its input (`weir submit
    /// --until-end`).
    pub until_end: bool,
    /// When it was submitted, ms since the Unix epoch.
    pub submitted_ms: i64,
    /// Its state.
    pub state: JobState,
    /// Why it failed.
    pub error: Option<String>,
    /// When it ended, ms since the Unix epoch.
    pub ended_ms: Option<i64>,
    /// Its counters, live while it runs, then as they were at its end.
    #[serde(default)]
    pub metrics: JobMetrics,
    /// The savepoint it started from, if any.
    #[serde(default)]
    pub from_savepoint: Option<String>,
    /// The savepoints taken of it (their storage URLs), oldest first.
    #[serde(default)]
    pub savepoints: Vec<String>,
}

/// A job's counters: live while it runs (since the host started it), then
/// as they were when it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobMetrics {
    /// What its runs read, fired, wrote and checkpointed.
    #[serde(flatten)]
    pub counts: MetricsSnapshot,
    /// Restarts after failures.
    pub restarts: u64,
}

/// A job the host knows, with what its runner shares.
struct Entry {
    record: Mutex<JobRecord>,
    stop: Arc<AtomicBool>,
    /// Set by a cancel (a stop for a shutdown leaves the job running on
    /// disk, to resume).
    cancelled: AtomicBool,
    /// Set by a stop with a savepoint.
    stopping: AtomicBool,
    /// Asks the run for a checkpoint now (a savepoint).
    checkpoint_now: Arc<AtomicBool>,
    /// The job's checkpoint storage URL, if it has `[checkpoint]`.
    storage: Mutex<Option<String>>,
    metrics: Arc<LiveMetrics>,
    restarts: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every job of the host.
pub struct Jobs {
    dir: PathBuf,
    engine: PluginEngine,
    jobs: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// The host's embedded broker, made for the first job that asks for
    /// one and shared by all (`weir produce --brokers <its address>` feeds it).
    embedded: Mutex<Option<Cluster>>,
}

/// The longest job file accepted.
pub const MAX_JOB_BYTES: usize = 1 << 20;

impl Jobs {
    /// Opens the registry in `dir` and starts again the jobs that were
    /// running; `store` resolves their plugins.
    pub fn open(dir: &Path, engine: PluginEngine, store: &PluginStore) -> Result<Arc<Jobs>, ServiceError> {
        std::fs::create_dir_all(dir).map_err(|e| ServiceError::io("create the job registry", dir, e))?;
        let jobs = Arc::new(Jobs {
            dir: dir.to_path_buf(),
            engine,
            jobs: Mutex::new(BTreeMap::new()),
            embedded: Mutex::new(None),
        });
        let entries = std::fs::read_dir(dir).map_err(|e| ServiceError::io("read", dir, e))?;
        let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        folders.sort();
        for folder in folders {
            let meta = folder.join("job.json");
            let Ok(bytes) = std::fs::read(&meta) else { continue };
            let record: JobRecord = serde_json::from_slice(&bytes).map_err(|e| {
                ServiceError::Internal(format!("the job record {} is damaged: {e}", meta.display()))
            })?;
            let running = record.state == JobState::Running;
            let entry = Arc::new(Entry::new(record));
            lock(&jobs.jobs).insert(lock(&entry.record).id.clone(), entry.clone());
            if running {
                let resumed = std::fs::read_to_string(folder.join("job.toml"))
                    .map_err(|e| ServiceError::io("read", &folder.join("job.toml"), e))
                    .and_then(|text| prepare(&text, store, Some(&pin(&lock(&entry.record)))))
                    .and_then(|(job, _)| jobs.start(&entry, job, RestoreFrom::Latest));
                if let Err(e) = resumed {
                    jobs.end(&entry, JobState::Failed, Some(format!("cannot resume after a restart: {e}")));
                }
            }
        }
        Ok(jobs)
    }

    /// Checks and starts a job given as TOML text.
    pub fn submit(
        &self,
        text: &str,
        until_end: bool,
        from_savepoint: Option<&str>,
        store: &PluginStore,
    ) -> Result<JobRecord, ServiceError> {
        if text.len() > MAX_JOB_BYTES {
            return Err(ServiceError::BadRequest(format!("the job file is over {MAX_JOB_BYTES} bytes")));
        }
        let (job, plugin) = prepare(text, store, None)?;
        let from_savepoint = match from_savepoint {
            None => None,
            Some(_) if job.config.checkpoint.is_none() => {
                return Err(ServiceError::BadRequest(
                    "--from-savepoint: the job has no [checkpoint] section to go on with".into(),
                ));
            }
            Some(location) => Some(savepoint_url(location)?),
        };
        // The plugin fits the job (world, inputs, parameters), or the
        // submission fails now, with the reason.
        let pipeline = Pipeline::build(job.clone(), &self.engine)
            .map_err(|e| ServiceError::BadRequest(error_chain(&e)))?;
        // From a savepoint, the plugin must be able to take its window
        // state over (an upgrade is checked, migration and all, now).
        if let Some(url) = &from_savepoint {
            pipeline.check_savepoint(url).map_err(|e| ServiceError::BadRequest(error_chain(&e)))?;
        }
        if let Some(running) =
            self.list().into_iter().find(|r| r.name == job.config.name && r.state == JobState::Running)
        {
            return Err(ServiceError::Conflict(format!(
                "a job named '{}' is running (id {}): cancel it first, or give this one another name",
                running.name, running.id
            )));
        }
        let record = JobRecord {
            id: new_id(),
            name: job.config.name.clone(),
            plugin: plugin
                .as_ref()
                .map_or_else(|| job.config.function.plugin.clone(), StoredPlugin::reference),
            plugin_sha256: plugin.map(|p| p.sha256),
            until_end,
            submitted_ms: crate::time::now_ms(),
            state: JobState::Running,
            error: None,
            ended_ms: None,
            metrics: JobMetrics::default(),
            from_savepoint: from_savepoint.clone(),
            savepoints: Vec::new(),
        };
        let folder = self.dir.join(&record.id);
        std::fs::create_dir_all(&folder).map_err(|e| ServiceError::io("create", &folder, e))?;
        write_atomically(&folder.join("job.toml"), text.as_bytes())?;
        let entry = Arc::new(Entry::new(record.clone()));
        self.save(&lock(&entry.record))?;
        lock(&self.jobs).insert(record.id.clone(), entry.clone());
        let restore = from_savepoint.map_or(RestoreFrom::Latest, RestoreFrom::Savepoint);
        if let Err(e) = self.start(&entry, job, restore) {
            self.end(&entry, JobState::Failed, Some(e.to_string()));
            return Err(e);
        }
        Ok(record)
    }

    /// Takes a savepoint of a running job with `[checkpoint]`: a checkpoint
    /// now (or, with `stop`, the last one of its run, which then ends),
    /// copied to `<savepoints>/<id>/sp-<ms>`, where the job's retention
    /// never removes it. Returns the job and the savepoint's URL.
    pub fn savepoint(
        &self,
        id: &str,
        stop: bool,
        savepoints: &Path,
    ) -> Result<(JobRecord, String), ServiceError> {
        let entry = self.entry(id)?;
        let (state, name) = {
            let record = lock(&entry.record);
            (record.state, record.name.clone())
        };
        if state != JobState::Running {
            return Err(ServiceError::Conflict(format!(
                "job {id} is not running: it is {}",
                state_name(state)
            )));
        }
        let Some(storage) = lock(&entry.storage).clone() else {
            return Err(ServiceError::BadRequest(format!(
                "job {id} has no [checkpoint] section: a savepoint is a checkpoint, so add one"
            )));
        };
        let target = savepoints.join(id).join(format!("sp-{}", crate::time::now_ms()));
        let url = format!("file://{}", target.display());
        if stop {
            entry.stopping.store(true, Ordering::SeqCst);
            entry.stop.store(true, Ordering::SeqCst);
            entry.join();
        } else {
            let before = entry.metrics.snapshot().checkpoints;
            entry.checkpoint_now.store(true, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + SAVEPOINT_WAIT;
            while entry.metrics.snapshot().checkpoints <= before {
                if lock(&entry.record).state != JobState::Running || std::time::Instant::now() > deadline {
                    entry.checkpoint_now.store(false, Ordering::SeqCst);
                    return Err(ServiceError::Conflict(format!(
                        "job {id} completed no checkpoint within {SAVEPOINT_WAIT:?} (or ended): no savepoint taken"
                    )));
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        copy_savepoint(&storage, &name, &url)
            .map_err(|e| ServiceError::Internal(format!("cannot take the savepoint: {}", error_chain(&e))))?;
        let record = {
            let mut record = lock(&entry.record);
            record.savepoints.push(url.clone());
            record.clone()
        };
        self.save(&record)?;
        Ok((entry.view(), url))
    }

    /// Runs `plugin` (a stored `name@version`, or a built-in) beside a
    /// running job's own version for `duration`, on the job's input from
    /// its latest checkpoint, writing nothing, and compares their windows
    /// (`weir upgrade --shadow`). The job itself goes on untouched.
    /// `versions` are the job as it runs and as it would with the
    /// candidate ([`Jobs::versions`]).
    pub fn shadow(
        &self,
        id: &str,
        versions: (Job, Job),
        duration: std::time::Duration,
    ) -> Result<ShadowReport, ServiceError> {
        if duration > MAX_SHADOW {
            return Err(ServiceError::BadRequest(format!(
                "a shadow run lasts at most {MAX_SHADOW:?}, not {duration:?}"
            )));
        }
        let entry = self.entry(id)?;
        let (old, new) = versions;
        let embedded = self.embedded_for(&old)?;
        let scratch = self.dir.join(id).join(format!("shadow-{}", crate::time::now_ms()));
        let report =
            crate::pipeline::shadow(&old, &new, &self.engine, embedded, &scratch, duration, &entry.stop);
        let _ = std::fs::remove_dir_all(&scratch);
        report.map_err(|e| ServiceError::BadRequest(format!("the shadow run failed: {}", error_chain(&e))))
    }

    /// Switches a running job to `plugin` at a checkpoint: checks that the
    /// new version can take the job's state over, stops the job with a
    /// savepoint, and submits it again with the new version from that
    /// savepoint (`weir upgrade --switch`). Returns the new job and the
    /// savepoint's URL; the old job ends stopped.
    pub fn upgrade(
        &self,
        id: &str,
        plugin: &str,
        store: &PluginStore,
        savepoints: &Path,
    ) -> Result<(JobRecord, String), ServiceError> {
        let entry = self.entry(id)?;
        let (_, new) = self.versions(id, plugin, store)?;
        // The new version must take over the job's state as it is now,
        // migration and all (a savepoint of it, tried on a spare
        // instance), before the job is stopped.
        let pipeline = Pipeline::build(new.clone(), &self.engine)
            .map_err(|e| ServiceError::BadRequest(error_chain(&e)))?;
        let (_, now) = self.savepoint(id, false, savepoints)?;
        pipeline.check_savepoint(&now).map_err(|e| ServiceError::BadRequest(error_chain(&e)))?;
        let path = self.dir.join(id).join("job.toml");
        let original = std::fs::read_to_string(&path).map_err(|e| ServiceError::io("read", &path, e))?;
        let (until_end, current) = {
            let record = lock(&entry.record);
            (record.until_end, pin(&record))
        };
        let (_, savepoint) = self.savepoint(id, true, savepoints)?;
        match self.submit(&with_plugin(&original, plugin)?, until_end, Some(&savepoint), store) {
            Ok(record) => Ok((record, savepoint)),
            // Refused all the same (the state changed since the check):
            // the old version goes on from the savepoint, losing nothing.
            Err(refused) => {
                let back = with_plugin(&original, &current)
                    .and_then(|text| self.submit(&text, until_end, Some(&savepoint), store));
                let then = match back {
                    Ok(record) => {
                        format!("job {} goes on with {} from savepoint {savepoint}", record.id, record.plugin)
                    }
                    Err(e) => format!(
                        "and the old version could not go on ({e}): submit it from savepoint {savepoint}"
                    ),
                };
                Err(ServiceError::BadRequest(format!(
                    "the switch to {plugin} was refused: {refused}; {then}"
                )))
            }
        }
    }

    /// A running job as it runs, and as it would with `plugin` (a stored
    /// `name@version`, `name`, or a built-in): both checked, the new one
    /// against the job.
    pub fn versions(&self, id: &str, plugin: &str, store: &PluginStore) -> Result<(Job, Job), ServiceError> {
        let entry = self.entry(id)?;
        let (state, current) = {
            let record = lock(&entry.record);
            (record.state, pin(&record))
        };
        if state != JobState::Running {
            return Err(ServiceError::Conflict(format!(
                "job {id} is not running: it is {}",
                state_name(state)
            )));
        }
        if lock(&entry.storage).is_none() {
            return Err(ServiceError::BadRequest(format!(
                "job {id} has no [checkpoint] section: an upgrade goes through its checkpoints, so add one"
            )));
        }
        let path = self.dir.join(id).join("job.toml");
        let text = std::fs::read_to_string(&path).map_err(|e| ServiceError::io("read", &path, e))?;
        let (old, _) = prepare(&text, store, Some(&current))?;
        let (new, _) = prepare(&text, store, Some(plugin))?;
        let build = |job: &Job| {
            Pipeline::build(job.clone(), &self.engine).map_err(|e| ServiceError::BadRequest(error_chain(&e)))
        };
        let (running, candidate) = (build(&old)?, build(&new)?);
        // What its checkpoints would refuse, refused before any runs.
        crate::pipeline::upgrade_from(running.facts(), candidate.facts()).map_err(|reason| {
            ServiceError::BadRequest(format!("job {id} cannot be upgraded to {plugin}: {reason}"))
        })?;
        Ok((old, new))
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let mut list: Vec<JobRecord> = lock(&self.jobs).values().map(|e| e.view()).collect();
        list.sort_by(|a, b| a.submitted_ms.cmp(&b.submitted_ms).then_with(|| a.id.cmp(&b.id)));
        list
    }

    /// One job.
    pub fn get(&self, id: &str) -> Result<JobRecord, ServiceError> {
        Ok(self.entry(id)?.view())
    }

    /// Cancels a running job and waits for it to stop.
    pub fn cancel(&self, id: &str) -> Result<JobRecord, ServiceError> {
        let entry = self.entry(id)?;
        if lock(&entry.record).state != JobState::Running {
            let state = lock(&entry.record).state;
            return Err(ServiceError::Conflict(format!(
                "job {id} is not running: it is {}",
                state_name(state)
            )));
        }
        entry.cancelled.store(true, Ordering::SeqCst);
        entry.stop.store(true, Ordering::SeqCst);
        entry.join();
        Ok(entry.view())
    }

    /// Whether a running job uses this stored plugin.
    pub fn uses(&self, plugin: &StoredPlugin) -> Option<String> {
        let reference = plugin.reference();
        self.list().into_iter().find(|r| r.state == JobState::Running && r.plugin == reference).map(|r| r.id)
    }

    /// Stops every job for a shutdown, leaving them running on disk so
    /// that the next start resumes them; waits for each to end its run
    /// (a job with checkpoints takes its last one).
    pub fn shutdown(&self) {
        let entries: Vec<Arc<Entry>> = lock(&self.jobs).values().cloned().collect();
        for entry in &entries {
            entry.stop.store(true, Ordering::SeqCst);
        }
        for entry in &entries {
            entry.join();
        }
    }

    /// The embedded broker's address, once a job made one.
    pub fn embedded_bootstrap(&self) -> Option<String> {
        lock(&self.embedded).as_ref().map(|c| c.bootstrap().to_string())
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, ServiceError> {
        lock(&self.jobs)
            .get(id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("no job with id {id:?}")))
    }

    fn save(&self, record: &JobRecord) -> Result<(), ServiceError> {
        let text = serde_json::to_vec_pretty(record)
            .map_err(|e| ServiceError::Internal(format!("cannot encode a job record: {e}")))?;
        write_atomically(&self.dir.join(&record.id).join("job.json"), &text)
    }

    /// Records the end of a job's run.
    fn end(&self, entry: &Entry, state: JobState, error: Option<String>) {
        let mut record = lock(&entry.record);
        record.state = state;
        record.error = error;
        record.ended_ms = Some(crate::time::now_ms());
        record.metrics = entry.live_metrics();
        if let Err(e) = self.save(&record) {
            tracing::error!("job {}: {e}", record.id);
        }
    }

    /// The embedded broker, if the job asks for one.
    fn embedded_for(&self, job: &Job) -> Result<Option<Cluster>, ServiceError> {
        let brokers = [job.config.source.brokers.as_deref(), job.config.sink.brokers.as_deref()];
        let kafka = job.config.source.kind == SourceKind::Kafka || job.config.sink.kind == SinkKind::Kafka;
        let wants = kafka
            && brokers
                .iter()
                .any(|b| matches!(b.unwrap_or("embedded").parse::<BrokerSpec>(), Ok(BrokerSpec::Embedded)));
        if !wants {
            return Ok(None);
        }
        let mut embedded = lock(&self.embedded);
        if embedded.is_none() {
            let cluster = Cluster::embedded(KafkaConfig::default())
                .map_err(|e| ServiceError::Internal(format!("cannot start the embedded broker: {e}")))?;
            tracing::info!("embedded broker (memory only) at {}", cluster.bootstrap());
            *embedded = Some(cluster);
        }
        Ok(embedded.clone())
    }

    fn start(self: &Jobs, entry: &Arc<Entry>, job: Job, restore: RestoreFrom) -> Result<(), ServiceError> {
        let embedded = self.embedded_for(&job)?;
        *lock(&entry.storage) = job.config.checkpoint.as_ref().map(|c| c.storage.clone());
        let engine = self.engine.clone();
        let until_end = lock(&entry.record).until_end;
        let id = lock(&entry.record).id.clone();
        let runner = entry.clone();
        // The runner records the end through a registry of its own: the
        // thread outlives this call.
        let registry = Registry { dir: self.dir.clone() };
        let thread = std::thread::Builder::new()
            .name(format!("job-{id}"))
            .spawn(move || {
                let options = RunOptions {
                    stop: runner.stop.clone(),
                    metrics: Some(runner.metrics.clone()),
                    checkpoint_now: runner.checkpoint_now.clone(),
                    restore,
                    ..RunOptions::default()
                };
                let restarted = runner.clone();
                let result = run_with_restarts(
                    &job,
                    &engine,
                    until_end,
                    embedded,
                    &options,
                    &mut |_| {},
                    &mut |restart| {
                        restarted.restarts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "job {}: the run failed: {}; restarting",
                            job.config.name,
                            restart.error
                        );
                    },
                );
                registry.finish(&runner, result);
            })
            .map_err(|e| ServiceError::Internal(format!("cannot start a thread for the job: {e}")))?;
        *lock(&entry.thread) = Some(thread);
        Ok(())
    }
}

/// What a runner thread needs to record its job's end.
struct Registry {
    dir: PathBuf,
}

impl Registry {
    fn finish(&self, entry: &Entry, result: Result<RunSummary, crate::pipeline::PipelineError>) {
        let stopping = entry.stopping.load(Ordering::SeqCst);
        let shutdown =
            entry.stop.load(Ordering::SeqCst) && !entry.cancelled.load(Ordering::SeqCst) && !stopping;
        let mut record = lock(&entry.record);
        record.metrics = entry.live_metrics();
        match result {
            Ok(_) => {
                if entry.cancelled.load(Ordering::SeqCst) {
                    record.state = JobState::Cancelled;
                } else if stopping {
                    record.state = JobState::Stopped;
                } else if !shutdown {
                    record.state = JobState::Finished;
                }
            }
            Err(e) if entry.cancelled.load(Ordering::SeqCst) => {
                record.state = JobState::Cancelled;
                record.error = Some(error_chain(&e));
            }
            Err(e) if !shutdown => {
                record.state = JobState::Failed;
                record.error = Some(error_chain(&e));
            }
            // Stopped by the host's shutdown: it resumes at the next start.
            Err(_) => {}
        }
        if record.state != JobState::Running {
            record.ended_ms = Some(crate::time::now_ms());
        }
        let text = match serde_json::to_vec_pretty(&*record) {
            Ok(text) => text,
            Err(e) => return tracing::error!("job {}: cannot encode its record: {e}", record.id),
        };
        if let Err(e) = write_atomically(&self.dir.join(&record.id).join("job.json"), &text) {
            tracing::error!("job {}: {e}", record.id);
        }
    }
}

impl Entry {
    fn new(record: JobRecord) -> Entry {
        Entry {
            metrics: Arc::new(LiveMetrics::default()),
            restarts: AtomicU64::new(0),
            record: Mutex::new(record),
            stop: Arc::new(AtomicBool::new(false)),
            cancelled: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            checkpoint_now: Arc::new(AtomicBool::new(false)),
            storage: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// The record, with the live counters.
    fn view(&self) -> JobRecord {
        let mut record = lock(&self.record).clone();
        if record.state == JobState::Running {
            record.metrics = self.live_metrics();
        }
        record
    }

    fn live_metrics(&self) -> JobMetrics {
        JobMetrics { counts: self.metrics.snapshot(), restarts: self.restarts.load(Ordering::Relaxed) }
    }

    fn join(&self) {
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Checks a submitted job file and points its plugin at the store: a
/// stored `name@version` (or the newest `name`), else a built-in of that
/// name. `pinned` is the plugin a resumed job was submitted with.
/// What a job record runs: its stored plugin's `name@version`, or, for a
/// built-in, `builtin:<name>` (a stored plugin of the same name does not
/// replace the built-in a job runs).
fn pin(record: &JobRecord) -> String {
    match record.plugin_sha256 {
        Some(_) => record.plugin.clone(),
        None => format!("{BUILTIN}{}", record.plugin),
    }
}

/// How [`pin`] marks a built-in.
const BUILTIN: &str = "builtin:";

/// Parses and checks a submitted job file; `pinned` (see [`pin`]), when
/// given, replaces its `function.plugin`.
fn prepare(
    text: &str,
    store: &PluginStore,
    pinned: Option<&str>,
) -> Result<(Job, Option<StoredPlugin>), ServiceError> {
    let origin = "the submitted job";
    // Parsed once as a job file is, for the field-named errors.
    let job =
        Job::parse(text, origin, Path::new("/")).map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    let mut config: JobConfig = job.config;
    check_absolute(&config)?;
    let reference = pinned.unwrap_or(&config.function.plugin).to_string();
    if let Some(name) = reference.strip_prefix(BUILTIN) {
        config.function.plugin = name.to_string();
        let job = Job::from_config(config, origin, Path::new("/"))
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        return Ok((job, None));
    }
    if reference.ends_with(".wasm") || reference.contains('/') {
        return Err(ServiceError::BadRequest(format!(
            "{origin}: field 'function.plugin': {reference:?} is a file; a submitted job names a stored plugin \
             (name@version, or name for its newest version): upload it with `weir plugin upload` first"
        )));
    }
    let stored =
        store.resolve(&reference).map_err(|e| ServiceError::BadRequest(format!("function.plugin: {e}")))?;
    match &stored {
        Some(plugin) => config.function.plugin = store.path_of(plugin).display().to_string(),
        None if !reference.contains('@') && crate::plugin::builtin::builtin(&reference).is_some() => {
            config.function.plugin = reference;
        }
        None => {
            let names: Vec<String> = store.list().iter().map(StoredPlugin::reference).collect();
            return Err(ServiceError::BadRequest(format!(
                "{origin}: field 'function.plugin': no plugin {reference:?} in the host's store (stored: {}; \
                 built in: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") },
                crate::plugin::builtin::builtin_names()
            )));
        }
    }
    let job = Job::from_config(config, origin, Path::new("/"))
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
    Ok((job, stored))
}

/// Refuses relative paths: a submitted job has no folder of its own.
fn check_absolute(config: &JobConfig) -> Result<(), ServiceError> {
    let mut paths: Vec<(&str, &Path)> = Vec::new();
    if let Some(path) = &config.source.path {
        paths.push(("source.path", path));
    }
    if config.sink.kind == SinkKind::File {
        if let Some(path) = &config.sink.path {
            paths.push(("sink.path", path));
        }
        if let Some(path) = &config.sink.dead_letter {
            paths.push(("sink.dead_letter", Path::new(path)));
        }
        if let Some(path) = &config.time.late_output {
            paths.push(("time.late_output", Path::new(path)));
        }
    }
    for (field, path) in paths {
        if !path.is_absolute() {
            return Err(ServiceError::BadRequest(format!(
                "the submitted job: field '{field}': {} is a relative path; a job submitted to a host has no \
                 folder of its own, so give the absolute path",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The longest shadow run.
pub const MAX_SHADOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// `text`, a job file, with `function.plugin` set to `plugin`.
fn with_plugin(text: &str, plugin: &str) -> Result<String, ServiceError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| ServiceError::Internal(format!("the stored job file does not parse: {e}")))?;
    let function = table
        .get_mut("function")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| ServiceError::Internal("the stored job file has no [function]".into()))?;
    function.insert("plugin".into(), toml::Value::String(plugin.to_string()));
    Ok(table.to_string())
}

/// How long a savepoint (without a stop) waits for its checkpoint.
const SAVEPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A state as the API writes it.
fn state_name(state: JobState) -> String {
    serde_json::to_value(state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A savepoint's location as a storage URL: a URL as given, an absolute
/// path as a `file://` one.
fn savepoint_url(location: &str) -> Result<String, ServiceError> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    if Path::new(location).is_absolute() {
        return Ok(format!("file://{location}"));
    }
    Err(ServiceError::BadRequest(format!(
        "--from-savepoint: {location} is a relative path: give the savepoint's URL (weir savepoint prints it) \
         or an absolute path"
    )))
}

/// A new job id: 16 hex digits from the system's random source.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    let random =
        std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        // No random source: the time and a counter still give unique ids.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = (crate::time::now_ms() as u64) << 16 | COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes = n.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An error with its causes, on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}
