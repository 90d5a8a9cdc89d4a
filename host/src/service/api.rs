//! The HTTP API of `weir serve` (JSON under `/api/`, see `docs/API.md`).
//! Every error is a 4xx or 5xx with `{"error": "…"}`; a refused request
//! changes nothing.

use super::ServiceError;
use super::auth::Token;
use super::jobs::Jobs;
use super::store::{PluginStore, Uploaded};
use crate::plugin::PluginEngine;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, StringRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};

/// The largest plugin upload: room for a CPython component (about 18 MB).
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// What the handlers share.
pub struct Host {
    store: Mutex<PluginStore>,
    jobs: Arc<Jobs>,
    engine: PluginEngine,
    token: Token,
    /// Where savepoints go: `<data>/savepoints`.
    savepoints: std::path::PathBuf,
}

impl Host {
    /// The host over a data dir: its plugin store, and its jobs (those
    /// that were running start again).
    pub fn open(
        data_dir: &std::path::Path,
        engine: PluginEngine,
        token: Token,
    ) -> Result<Arc<Host>, ServiceError> {
        let store = PluginStore::open(&data_dir.join("plugins"))?;
        let jobs = Jobs::open(&data_dir.join("jobs"), engine.clone(), &store)?;
        let savepoints = data_dir.join("savepoints");
        Ok(Arc::new(Host { store: Mutex::new(store), jobs, engine, token, savepoints }))
    }

    /// Stops every job for a shutdown (they resume at the next start).
    pub fn shutdown(&self) {
        self.jobs.shutdown();
    }

    fn store(&self) -> MutexGuard<'_, PluginStore> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ServiceError> {
        let header = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.token.check(header)
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// A refused body (too large, not UTF-8), as a JSON error.
fn body_error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

type Reply = Result<Response, Response>;

fn fail(e: ServiceError) -> Response {
    e.into_response()
}

/// Runs blocking work (compiling a component, building a job, reading or
/// writing checkpoint storage) off the async workers, on a plain thread:
/// outside the runtime's context, so that storage clients with runtimes of
/// their own (HDFS) may block on them.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Response> {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("weir-request".into()).spawn(move || {
        let _ = done.send(work());
    });
    if let Err(e) = spawned {
        return Err(fail(ServiceError::Internal(format!("cannot start a thread for the request: {e}"))));
    }
    match result.await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(ServiceError::Internal("the request's work failed (its thread ended)".into()))),
    }
}

/// The web dashboard: one page that polls the JSON API (no token needed:
/// it only reads).
const DASHBOARD: &str = include_str!("dashboard.html");

/// The routes.
pub fn router(host: Arc<Host>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route(
            "/api/plugins",
            get(list_plugins).post(upload_plugin).layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES)),
        )
        .route("/api/plugins/{reference}", get(get_plugin).delete(delete_plugin))
        .route(
            "/api/jobs",
            get(list_jobs).post(submit_job).layer(DefaultBodyLimit::max(super::jobs::MAX_JOB_BYTES)),
        )
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/jobs/{id}/savepoint", post(savepoint_job))
        .route("/api/jobs/{id}/shadow", post(shadow_job))
        .route("/api/jobs/{id}/upgrade", post(upgrade_job))
        .fallback(|| async { fail(ServiceError::NotFound("no such endpoint (see docs/API.md)".into())) })
        .with_state(host)
}

async fn dashboard() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], DASHBOARD)
        .into_response()
}

async fn health(State(host): State<Arc<Host>>) -> Json<serde_json::Value> {
    let jobs = host.jobs.list();
    let running = jobs.iter().filter(|j| j.state == super::jobs::JobState::Running).count();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "jobs": jobs.len(),
        "running": running,
        "embedded_broker": host.jobs.embedded_bootstrap(),
    }))
}

async fn list_plugins(State(host): State<Arc<Host>>) -> Response {
    Json(host.store().list()).into_response()
}

async fn upload_plugin(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let bytes = body.map_err(|e| {
        body_error(e.status(), format!("the upload was refused: {e} (the limit is {MAX_PLUGIN_BYTES} bytes)"))
    })?;
    if bytes.is_empty() {
        return Err(fail(ServiceError::BadRequest(
            "the upload is empty: send the .wasm file as the body".into(),
        )));
    }
    let (stored, uploaded) = blocking(move || {
        let engine = host.engine.clone();
        host.store().upload(&engine, &bytes)
    })
    .await?;
    let status = match uploaded {
        Uploaded::Stored => StatusCode::CREATED,
        Uploaded::AlreadyStored => StatusCode::OK,
    };
    let mut answer = serde_json::to_value(&stored)
        .map_err(|e| fail(ServiceError::Internal(format!("cannot encode the plugin: {e}"))))?;
    answer["already_stored"] = json!(uploaded == Uploaded::AlreadyStored);
    Ok((status, Json(answer)).into_response())
}

async fn get_plugin(State(host): State<Arc<Host>>, Path(reference): Path<String>) -> Reply {
    let store = host.store();
    match store.resolve(&reference).map_err(fail)? {
        Some(plugin) => Ok(Json(plugin).into_response()),
        None => Err(fail(ServiceError::NotFound(format!("no plugin {reference:?} in the store")))),
    }
}

async fn delete_plugin(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    if !reference.contains('@') {
        return Err(fail(ServiceError::BadRequest(format!(
            "name the version to delete: {reference}@<version> (weir plugin list shows them)"
        ))));
    }
    let mut store = host.store();
    let Some(plugin) = store.resolve(&reference).map_err(fail)? else {
        return Err(fail(ServiceError::NotFound(format!("no plugin {reference:?} in the store"))));
    };
    if let Some(job) = host.jobs.uses(&plugin) {
        return Err(fail(ServiceError::Conflict(format!(
            "{} is used by running job {job}: cancel the job first",
            plugin.reference()
        ))));
    }
    store.delete(&plugin).map_err(fail)?;
    Ok(Json(plugin).into_response())
}

async fn list_jobs(State(host): State<Arc<Host>>) -> Response {
    Json(host.jobs.list()).into_response()
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    until_end: bool,
    /// A savepoint's URL (or absolute path) to start from.
    #[serde(default)]
    from_savepoint: Option<String>,
}

async fn submit_job(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    query: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<String, StringRejection>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let Query(query) = query.map_err(|e| body_error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let text = body.map_err(|e| body_error(e.status(), format!("the job file was refused: {e}")))?;
    let record = blocking(move || {
        let store = host.store();
        host.jobs.submit(&text, query.until_end, query.from_savepoint.as_deref(), &store)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

async fn get_job(State(host): State<Arc<Host>>, Path(id): Path<String>) -> Reply {
    Ok(Json(host.jobs.get(&id).map_err(fail)?).into_response())
}

async fn cancel_job(State(host): State<Arc<Host>>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let record = blocking(move || host.jobs.cancel(&id)).await?;
    Ok(Json(record).into_response())
}

/// A counter: its name, its help text, and how to read it from a job.
type Series = (&'static str, &'static str, fn(&super::jobs::JobRecord) -> u64);

/// The job counters in Prometheus' text format, one series per job
/// (labels `job`, its name, and `id`).
async fn metrics(State(host): State<Arc<Host>>) -> Response {
    let jobs = host.jobs.list();
    let mut text = String::new();
    let series: [Series; 11] = [
        ("records_total", "Records read from the job's source.", |j| j.metrics.counts.records),
        ("events_total", "Events decoded and processed.", |j| j.metrics.counts.events),
        ("outputs_total", "Output records written.", |j| j.metrics.counts.outputs),
        ("windows_fired_total", "Windows fired (first firings).", |j| j.metrics.counts.windows),
        ("windows_refired_total", "Windows fired again for late events.", |j| j.metrics.counts.refired),
        ("late_events_total", "Events too late for any window.", |j| j.metrics.counts.late),
        ("dead_letters_total", "Records sent to the dead letters.", |j| j.metrics.counts.dead_letters),
        ("function_failures_total", "Windows or batches the function failed on.", |j| {
            j.metrics.counts.failed
        }),
        ("checkpoints_total", "Checkpoints completed.", |j| j.metrics.counts.checkpoints),
        ("checkpoints_failed_total", "Checkpoints that failed while the job went on.", |j| {
            j.metrics.counts.failed_checkpoints
        }),
        ("restarts_total", "Restarts after failures.", |j| j.metrics.restarts),
    ];
    for (name, help, value) in series {
        text.push_str(&format!("# HELP weir_job_{name} {help}\n# TYPE weir_job_{name} counter\n"));
        for job in &jobs {
            text.push_str(&format!("weir_job_{name}{{{}}} {}\n", labels(job), value(job)));
        }
    }
    let gauges: [Gauge; 4] = [
        (
            "watermark_lag_ms",
            "Wall-clock now minus the job's watermark, in ms (running jobs with one).",
            |j| j.metrics.counts.watermark_lag_ms,
        ),
        ("last_checkpoint_duration_ms", "How long the last completed checkpoint took, in ms.", |j| {
            j.metrics.counts.last_checkpoint_duration_ms.and_then(|v| i64::try_from(v).ok())
        }),
        ("last_checkpoint_bytes", "The bytes the last completed checkpoint wrote.", |j| {
            j.metrics.counts.last_checkpoint_bytes.and_then(|v| i64::try_from(v).ok())
        }),
        (
            "owned_partitions",
            "The source partitions this host owns of a scale_out job's consumer group.",
            |j| j.metrics.counts.group.as_ref().map(|g| g.partitions.len() as i64),
        ),
    ];
    for (name, help, value) in gauges {
        text.push_str(&format!("# HELP weir_job_{name} {help}\n# TYPE weir_job_{name} gauge\n"));
        for job in &jobs {
            if let Some(value) = value(job) {
                text.push_str(&format!("weir_job_{name}{{{}}} {value}\n", labels(job)));
            }
        }
    }
    plugin_call_histogram(&mut text, &jobs);
    text.push_str("# HELP weir_job_running Whether the job is running (1) or ended (0).\n");
    text.push_str("# TYPE weir_job_running gauge\n");
    for job in &jobs {
        let running = u8::from(job.state == super::jobs::JobState::Running);
        text.push_str(&format!("weir_job_running{{{}}} {running}\n", labels(job)));
    }
    let plugins = host.store().list().len();
    text.push_str(
        "# HELP weir_plugins_stored Plugins in the host's store.\n# TYPE weir_plugins_stored gauge\n",
    );
    text.push_str(&format!("weir_plugins_stored {plugins}\n"));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// A gauge: its name, its help text, and how to read it from a job (none:
/// no sample for that job).
type Gauge = (&'static str, &'static str, fn(&super::jobs::JobRecord) -> Option<i64>);

/// `weir_job_plugin_call_seconds`: each job's plugin call times, as a
/// Prometheus histogram (cumulative buckets, `+Inf`, sum and count).
fn plugin_call_histogram(text: &mut String, jobs: &[super::jobs::JobRecord]) {
    let name = "weir_job_plugin_call_seconds";
    text.push_str(&format!("# HELP {name} How long each call into the job's plugin took.\n"));
    text.push_str(&format!("# TYPE {name} histogram\n"));
    for job in jobs {
        let calls = &job.metrics.counts.plugin_calls;
        let labels = labels(job);
        for (i, bound) in crate::plugin::CALL_BUCKETS_US.iter().enumerate() {
            // A record written before the histogram existed has no buckets.
            let count = calls.buckets.get(i).copied().unwrap_or(0);
            let le = *bound as f64 / 1e6;
            text.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {count}\n"));
        }
        text.push_str(&format!("{name}_bucket{{{labels},le=\"+Inf\"}} {}\n", calls.count));
        text.push_str(&format!("{name}_sum{{{labels}}} {}\n", calls.sum_ns as f64 / 1e9));
        text.push_str(&format!("{name}_count{{{labels}}} {}\n", calls.count));
    }
}

/// A job's labels, escaped as the text format wants.
fn labels(job: &super::jobs::JobRecord) -> String {
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("job=\"{}\",id=\"{}\"", escape(&job.name), escape(&job.id))
}

#[derive(Deserialize)]
struct SavepointQuery {
    /// Stop the job with the savepoint.
    #[serde(default)]
    stop: bool,
}

async fn savepoint_job(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<SavepointQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let Query(query) = query.map_err(|e| body_error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let (job, savepoint) = blocking(move || host.jobs.savepoint(&id, query.stop, &host.savepoints)).await?;
    Ok(Json(json!({ "job": job, "savepoint": savepoint })).into_response())
}

#[derive(Deserialize)]
struct ShadowQuery {
    /// The candidate version: `name@version`, `name`, or a built-in.
    plugin: String,
    /// How long to run, as in job files (`30s`).
    duration: String,
}

/// Runs a candidate version beside the job's own and reports how their
/// windows differ (`weir upgrade --shadow`).
async fn shadow_job(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<ShadowQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let Query(query) = query.map_err(|e| body_error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let duration = crate::duration::parse_duration(&query.duration)
        .map_err(|e| body_error(StatusCode::BAD_REQUEST, format!("duration: {e}")))?;
    if duration > super::jobs::MAX_SHADOW {
        let most = super::jobs::MAX_SHADOW;
        return Err(body_error(
            StatusCode::BAD_REQUEST,
            format!("a shadow run lasts at most {most:?}, not {duration:?}"),
        ));
    }
    let report = blocking(move || {
        // The store is locked to resolve the versions, not for the run.
        let versions = host.jobs.versions(&id, &query.plugin, &host.store())?;
        host.jobs.shadow(&id, versions, duration)
    })
    .await?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
struct UpgradeQuery {
    /// The new version: `name@version`, `name`, or a built-in.
    plugin: String,
}

/// Switches a job to another version of its function at a savepoint
/// (`weir upgrade --switch`).
async fn upgrade_job(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<UpgradeQuery>, axum::extract::rejection::QueryRejection>,
) -> Reply {
    host.authorize(&headers).map_err(fail)?;
    let Query(query) = query.map_err(|e| body_error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let (job, savepoint) = blocking(move || {
        let store = host.store();
        host.jobs.upgrade(&id, &query.plugin, &store, &host.savepoints)
    })
    .await?;
    Ok(Json(json!({ "job": job, "savepoint": savepoint })).into_response())
}
