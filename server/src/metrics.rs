//! `GET /metrics` (the Prometheus text exposition format, version 0.0.4) and `GET /readyz` (is the
//! database writable now?).
//!
//! Every figure belongs to this process: counters and gauges are atomics in [`Metrics`], held by
//! [`crate::api::AppState`] (no global state, nothing another server process needs; several
//! processes on one PostgreSQL are scraped one by one and summed by Prometheus). The host counts
//! are the exception: they come from the database, at most once per [`HOSTS_REFRESH`], so every
//! process reports the same value (aggregate them with `max`, not `sum`).
//!
//! Access: `/metrics` answers a client on a loopback address, or any client that sends
//! `Authorization: Bearer <metrics_token>` when the config sets `metrics_token`; anyone else gets
//! a 403. `/readyz` and `/healthz` are open (they say nothing of the inventory).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::Row;

use crate::api::AppState;

/// The host counts are read from the database at most this often (a scrape in between gets the
/// last values).
pub const HOSTS_REFRESH: Duration = Duration::from_secs(15);

/// A `/readyz` answer is reused for this long: a storm of probes costs the writer one tiny
/// transaction a second.
pub const READY_REUSE: Duration = Duration::from_secs(1);

/// The write probe gives up after this long (a writer stuck on a lock or a dead disk).
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Upper bounds (seconds) of the ingest latency histogram's buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What became of a `POST /api/v1/reports`: the `outcome` label of
/// `auto_server_reports_total`. The first five come from the ingest; the others from the checks
/// before it.
pub const OUTCOMES: [&str; 14] = [
    "created",              // 201: a new host
    "updated",              // 200: a known host
    "renamed",              // 200: a known host under its new name
    "repeat",               // a report_id seen before: its first answer, nothing changed
    "conflict",             // 409: the name belongs to another host
    "replayed",             // 401: a nonce seen before
    "forbidden",            // 403: the key may not write this host
    "malformed",            // 400: the report does not match the contract
    "unauthorized",         // 401: no, or a wrong, signature; or a key no longer active
    "too_large",            // 413
    "body_timeout",         // 408
    "unsupported_encoding", // 415
    "unavailable",          // 503: the database could not take it
    "other",                // anything else
];

/// The outcome of a report request, set on the response by the handler (the rest is read from
/// the status).
#[derive(Debug, Clone, Copy)]
pub struct ReportOutcome(pub &'static str);

/// Set on a response whose request failed on the database (counted in
/// `auto_server_database_errors_total`).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFailed;

/// This process's figures.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    reports: [AtomicU64; OUTCOMES.len()],
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    database_errors: AtomicU64,
    open_connections: AtomicI64,
    refused_connections: AtomicU64,
    hosts_total: AtomicI64,
    hosts_stale: AtomicI64,
    /// Milliseconds since `started` of the last host count, plus one (0: never).
    hosts_read_at: AtomicU64,
    hosts_refreshing: AtomicBool,
    ready: tokio::sync::Mutex<Readiness>,
    /// SQLite only: the database's directory and the free space `/readyz` asks of its filesystem.
    space: Option<(PathBuf, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            space: None,
            started: Instant::now(),
            reports: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_count: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            database_errors: AtomicU64::new(0),
            open_connections: AtomicI64::new(0),
            refused_connections: AtomicU64::new(0),
            hosts_total: AtomicI64::new(0),
            hosts_stale: AtomicI64::new(0),
            hosts_read_at: AtomicU64::new(0),
            hosts_refreshing: AtomicBool::new(false),
            ready: tokio::sync::Mutex::new(Readiness::default()),
        }
    }
}

/// An open connection: counted while it lives.
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// Figures for a server whose database lives in `dir` (SQLite): `/readyz` also fails while its
    /// filesystem has less than `min_free` bytes free. A tiny write can succeed on a full disk
    /// (SQLite reuses its WAL and free pages) while a report cannot: measured on a full tmpfs.
    pub fn with_space_check(dir: PathBuf, min_free: u64) -> Metrics {
        Metrics {
            space: Some((dir, min_free)),
            ..Metrics::default()
        }
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.open_connections.fetch_add(1, Relaxed);
        OpenConnection(self.clone())
    }

    /// A connection refused because `--max-clients` were open.
    pub fn connection_refused(&self) {
        self.refused_connections.fetch_add(1, Relaxed);
    }

    pub fn database_error(&self) {
        self.database_errors.fetch_add(1, Relaxed);
    }

    fn report(&self, outcome: &str, took: Duration) {
        let i = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.reports[i].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        if let Some(b) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            // buckets are stored per interval and summed when rendered
            self.latency_buckets[b].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_micros
            .fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Reads the host counts when the last ones are older than [`HOSTS_REFRESH`]; one refresh at a
    /// time (a scrape that finds one running uses the last values). Two indexed counts.
    async fn refresh_hosts(&self, state: &AppState) {
        let at = self.hosts_read_at.load(Relaxed);
        let fresh = u64::try_from(HOSTS_REFRESH.as_millis()).unwrap_or(u64::MAX);
        if at != 0 && self.millis().saturating_sub(at) < fresh {
            return;
        }
        if self.hosts_refreshing.swap(true, Relaxed) {
            return;
        }
        let stale_before = crate::clock::now() - state.config.stale_days * 86_400;
        let read = async {
            let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM hosts")
                .fetch_one(&state.db.read)
                .await?
                .try_get("n")?;
            let stale: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM hosts \
                 WHERE last_report_at IS NULL OR last_report_at < $1",
            )
            .bind(stale_before)
            .fetch_one(&state.db.read)
            .await?
            .try_get("n")?;
            Ok::<_, sqlx::Error>((total, stale))
        };
        match read.await {
            Ok((total, stale)) => {
                self.hosts_total.store(total, Relaxed);
                self.hosts_stale.store(stale, Relaxed);
                self.hosts_read_at.store(self.millis(), Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the hosts for /metrics");
                self.database_error();
            }
        }
        self.hosts_refreshing.store(false, Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP auto_server_build_info The running auto-server's version (always 1)."
        );
        let _ = writeln!(w, "# TYPE auto_server_build_info gauge");
        let _ = writeln!(
            w,
            "auto_server_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            w,
            "# HELP auto_server_uptime_seconds Seconds since this process started serving."
        );
        let _ = writeln!(w, "# TYPE auto_server_uptime_seconds gauge");
        let _ = writeln!(
            w,
            "auto_server_uptime_seconds {}",
            self.started.elapsed().as_secs()
        );
        let _ = writeln!(
            w,
            "# HELP auto_server_reports_total Report requests (POST /api/v1/reports) by outcome."
        );
        let _ = writeln!(w, "# TYPE auto_server_reports_total counter");
        for (i, outcome) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                w,
                "auto_server_reports_total{{outcome=\"{outcome}\"}} {}",
                self.reports[i].load(Relaxed)
            );
        }
        let _ = writeln!(
            w,
            "# HELP auto_server_ingest_duration_seconds Time from a report request's headers to its answer, every outcome."
        );
        let _ = writeln!(w, "# TYPE auto_server_ingest_duration_seconds histogram");
        let mut cumulative = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                w,
                "auto_server_ingest_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            w,
            "auto_server_ingest_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(w, "auto_server_ingest_duration_seconds_sum {sum}");
        let _ = writeln!(w, "auto_server_ingest_duration_seconds_count {count}");
        let gauge = |w: &mut String, name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(w, "# HELP {name} {help}");
            let _ = writeln!(w, "# TYPE {name} {kind}");
            let _ = writeln!(w, "{name} {value}");
        };
        gauge(
            w,
            "auto_server_hosts",
            "Hosts in the database (read at most every 15 s).",
            "gauge",
            self.hosts_total.load(Relaxed).to_string(),
        );
        gauge(
            w,
            "auto_server_hosts_stale",
            "Hosts without a report for the configured stale_days, or never reported (read at most every 15 s).",
            "gauge",
            self.hosts_stale.load(Relaxed).to_string(),
        );
        gauge(
            w,
            "auto_server_database_errors_total",
            "Requests and probes that failed on the database.",
            "counter",
            self.database_errors.load(Relaxed).to_string(),
        );
        gauge(
            w,
            "auto_server_open_connections",
            "Client connections open now (at most max_clients).",
            "gauge",
            self.open_connections.load(Relaxed).to_string(),
        );
        gauge(
            w,
            "auto_server_refused_connections_total",
            "Connections refused with 503 because max_clients were open.",
            "counter",
            self.refused_connections.load(Relaxed).to_string(),
        );
        out
    }
}

/// The outer layer of the router: counts database failures on every path, and for
/// `POST /api/v1/reports` the outcome and the latency (authentication included).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let is_report = request.method() == Method::POST && request.uri().path() == "/api/v1/reports";
    let start = Instant::now();
    let response = next.run(request).await;
    let failed = response.extensions().get::<DatabaseFailed>().is_some();
    if failed {
        state.metrics.database_error();
    }
    if is_report {
        let outcome = match response.extensions().get::<ReportOutcome>() {
            Some(ReportOutcome(o)) => *o,
            None => outcome_of_status(response.status(), failed),
        };
        state.metrics.report(outcome, start.elapsed());
    }
    response
}

fn outcome_of_status(status: StatusCode, database_failed: bool) -> &'static str {
    match status.as_u16() {
        _ if database_failed => "unavailable",
        400 => "malformed",
        401 => "unauthorized",
        403 => "forbidden",
        408 => "body_timeout",
        409 => "conflict",
        413 => "too_large",
        415 => "unsupported_encoding",
        503 => "unavailable",
        _ => "other",
    }
}

/// The label for an ingest outcome.
pub fn ingest_outcome(outcome: &crate::ingest::Outcome) -> &'static str {
    use crate::ingest::Outcome;
    match outcome {
        Outcome::Applied { response, .. } => match response.outcome.as_str() {
            "created" => "created",
            "renamed" => "renamed",
            _ => "updated",
        },
        Outcome::Conflict { .. } => "conflict",
        Outcome::Repeat { .. } => "repeat",
        Outcome::Replayed => "replayed",
        Outcome::KeyInactive => "unauthorized",
        Outcome::Forbidden { .. } => "forbidden",
    }
}

/// Whether this request may read `/metrics`: from a loopback address, or with the configured
/// bearer token (compared in constant time).
fn may_scrape(state: &AppState, headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> bool {
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    let Some(token) = &state.config.metrics_token else {
        return false;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    peer: Option<axum::Extension<crate::ui::ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    let peer = peer.map(|axum::Extension(crate::ui::ClientAddr(ip))| ip);
    if !may_scrape(&state, &headers, peer) {
        return text(
            StatusCode::FORBIDDEN,
            "/metrics is open to loopback clients, and to others with the metrics_token as a bearer token\n"
                .into(),
        );
    }
    state.metrics.refresh_hosts(&state).await;
    text(StatusCode::OK, state.metrics.render())
}

/// What `/readyz` knows: the last answer, and the probe under way (never two at once).
#[derive(Debug, Default)]
struct Readiness {
    last: Option<(Instant, Result<(), String>)>,
    running: Option<(Instant, tokio::task::JoinHandle<Result<(), String>>)>,
}

/// `GET /readyz`: 200 `ready` when a write transaction just committed, else 503 with the reason
/// on one line. One probe at a time, its answer reused for [`READY_REUSE`]. The probe is a task
/// of its own, never cancelled half-way: one that takes longer than [`READY_TIMEOUT`] is a 503,
/// and the next request waits for that same probe instead of starting another.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut ready = state.metrics.ready.lock().await;
    let result = match &ready.last {
        Some((at, result)) if at.elapsed() < READY_REUSE => result.clone(),
        _ => {
            let (started, mut handle) = match ready.running.take() {
                Some(running) => running,
                None => {
                    let probing = state.clone();
                    (
                        Instant::now(),
                        tokio::spawn(async move { probe(&probing).await }),
                    )
                }
            };
            let wait = READY_TIMEOUT.saturating_sub(started.elapsed());
            let result = match tokio::time::timeout(wait, &mut handle).await {
                Ok(Ok(result)) => result.map_err(|e| format!("database not writable: {e}")),
                Ok(Err(e)) => Err(format!(
                    "database not writable: the write probe failed: {e}"
                )),
                Err(_) => {
                    ready.running = Some((started, handle));
                    Err(format!(
                        "database not writable: the write probe took longer than {} s",
                        READY_TIMEOUT.as_secs()
                    ))
                }
            };
            if let Err(reason) = &result {
                tracing::warn!(reason, "not ready");
                state.metrics.database_error();
            }
            ready.last = Some((Instant::now(), result.clone()));
            result
        }
    };
    drop(ready);
    match result {
        Ok(()) => text(StatusCode::OK, "ready\n".into()),
        Err(reason) => {
            let mut r = text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{}\n", reason.replace('\n', " ")),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, crate::error::RETRY_AFTER_SECS.into());
            r
        }
    }
}

/// The free space check (SQLite), then the write probe.
async fn probe(state: &AppState) -> Result<(), String> {
    if let Some((dir, min_free)) = &state.metrics.space {
        let free = free_bytes(dir)
            .map_err(|e| format!("cannot read the free space of {}: {e}", dir.display()))?;
        if free < *min_free {
            return Err(format!(
                "{free} bytes free on the filesystem of {}, less than the largest report body ({min_free} bytes)",
                dir.display()
            ));
        }
    }
    write_probe(state).await.map_err(|e| e.to_string())
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir` (`statvfs`).
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL byte in the path"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `path` is a NUL-terminated string and `st` a writable statvfs for the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A real write: the write transaction every report takes (`BEGIN IMMEDIATE` on SQLite), one row
/// of `heartbeat` changed, `COMMIT`.
async fn write_probe(state: &AppState) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO heartbeat (id, at) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
    )
    .bind(crate::clock::now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_and_counts_every_report() {
        let m = Metrics::default();
        m.report("created", Duration::from_millis(3));
        m.report("created", Duration::from_millis(70));
        m.report("nonsense", Duration::from_secs(100));
        let text = m.render();
        assert!(text.contains("auto_server_reports_total{outcome=\"created\"} 2\n"));
        assert!(text.contains("auto_server_reports_total{outcome=\"other\"} 1\n"));
        assert!(text.contains("auto_server_ingest_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("auto_server_ingest_duration_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(text.contains("auto_server_ingest_duration_seconds_bucket{le=\"30\"} 2\n"));
        assert!(text.contains("auto_server_ingest_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("auto_server_ingest_duration_seconds_count 3\n"));
    }
}
