//! The HTTP API: routes, handlers and `application/problem+json` errors. Paths and status codes
//! are fixed by `shared/design.md`; the bodies are described in [`crate::openapi`].

use std::collections::HashMap;
use std::sync::Arc;

use auto_proto::{NewHost, PendingHost, Problem};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::PendingNonce;
use crate::clock::{now, rfc3339};
use crate::db::Db;
use crate::ingest::{self, log_error};
use crate::keys::MasterKey;
use crate::report::{self, valid_hostname, Limits};

/// What a running server is told at start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub no_auth: bool,
    pub max_body_bytes: usize,
    pub clock_skew_secs: i64,
    pub limits: Limits,
}

pub struct AppState {
    pub db: Db,
    pub config: ServeConfig,
    /// `None` only with `--no-auth`.
    pub master: Option<MasterKey>,
}

impl AppState {
    /// A report refused for its size goes to the error log (other paths are not worth a row).
    pub async fn log_too_large(&self, uri: &Uri, declared: Option<usize>) {
        if uri.path() != "/api/v1/reports" {
            return;
        }
        let size = declared.map_or("unknown".to_owned(), |n| n.to_string());
        let message = format!(
            "report refused: body of {size} bytes is larger than the limit of {} bytes",
            self.config.max_body_bytes
        );
        tracing::warn!(size = %size, limit = self.config.max_body_bytes, "report refused: too large");
        if let Err(e) = log_error(
            &self.db.write,
            now(),
            "report_too_large",
            None,
            None,
            None,
            &message,
        )
        .await
        {
            tracing::error!(error = %e, "cannot write the error log");
        }
    }
}

pub fn problem_type(code: &str) -> String {
    format!("urn:auto-server:problem:{code}")
}

/// The JSON text of a problem.
pub fn problem_body(status: u16, code: &str, detail: &str) -> String {
    let title = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
        .to_ascii_lowercase();
    let body = Problem {
        type_: problem_type(code),
        title,
        status,
        detail: detail.to_owned(),
        code: code.to_owned(),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// An `application/problem+json` response.
pub fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        problem_body(status.as_u16(), code, detail),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn ok_json(value: Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

fn db_failure(e: sqlx::Error) -> Response {
    tracing::error!(error = %e, "database request failed");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database did not answer; try again",
    )
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/reports", post(post_report))
        .route("/api/v1/hosts/pending", get(pending_hosts))
        .route("/api/v1/hosts", get(list_hosts).post(add_host))
        .route("/api/v1/hosts/{hostname}", get(get_host))
        .route("/api/v1/hosts/{hostname}/changes", get(host_changes))
        .route("/api/v1/changes", get(all_changes))
        .route("/api/v1/errors", get(errors))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn not_found(uri: Uri) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no such path: {}", uri.path()),
    )
}

async fn method_not_allowed() -> Response {
    problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method",
    )
}

async fn healthz() -> Response {
    ok_json(json!({"status": "ok"}))
}

async fn openapi() -> Response {
    ok_json(crate::openapi::document())
}

async fn post_report(
    State(state): State<Arc<AppState>>,
    nonce: Option<Extension<PendingNonce>>,
    body: Bytes,
) -> Response {
    let nonce = nonce.map(|Extension(PendingNonce(n))| n);
    let checked = match report::check(&body, state.config.limits) {
        Ok(c) => c,
        Err(m) => {
            if let Some(n) = &nonce {
                match crate::auth::record_nonce(&state.db.write, n).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return problem(
                            StatusCode::UNAUTHORIZED,
                            "bad_signature",
                            crate::auth::REPLAYED,
                        )
                    }
                    Err(e) => return db_failure(e),
                }
            }
            tracing::warn!(hostname = ?m.hostname, reason = %m.detail, "report refused: malformed");
            let message = format!("report refused: {}", m.detail);
            if let Err(e) = log_error(
                &state.db.write,
                now(),
                "malformed_report",
                m.hostname.as_deref(),
                m.report_id.as_deref(),
                None,
                &message,
            )
            .await
            {
                tracing::error!(error = %e, "cannot write the error log");
            }
            return problem(StatusCode::BAD_REQUEST, "malformed_report", &m.detail);
        }
    };
    match ingest::ingest(&state.db, &checked, nonce.as_deref()).await {
        Ok(answer) => json_response(
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            answer.body,
        ),
        Err(e) => db_failure(e),
    }
}

async fn pending_hosts(State(state): State<Arc<AppState>>) -> Response {
    let since = crate::clock::start_of_day(now());
    let rows = sqlx::query(
        "SELECT hostname, address, port FROM hosts WHERE address IS NOT NULL \
         AND (last_report_at IS NULL OR last_report_at < $1) ORDER BY hostname",
    )
    .bind(since)
    .fetch_all(&state.db.read)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return db_failure(e),
    };
    let hosts: Result<Vec<PendingHost>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(PendingHost {
                hostname: r.try_get(0)?,
                address: r.try_get(1)?,
                port: u16::try_from(r.try_get::<i64, _>(2)?).unwrap_or(22),
            })
        })
        .collect();
    match hosts {
        Ok(h) => ok_json(serde_json::to_value(h).unwrap_or_default()),
        Err(e) => db_failure(e),
    }
}

fn valid_address(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 253
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'))
}

async fn add_host(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let new: NewHost = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "malformed_host",
                &format!("body is not a new host: {e}"),
            )
        }
    };
    match register_host(&state.db, &new).await {
        Ok(Ok(created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let body = PendingHost {
                hostname: new.hostname,
                address: new.address,
                port: new.port,
            };
            json_response(status, serde_json::to_string(&body).unwrap_or_default())
        }
        Ok(Err(detail)) => problem(StatusCode::BAD_REQUEST, "malformed_host", &detail),
        Err(e) => db_failure(e),
    }
}

/// Registers a host for ssh/salt collection, or updates its address. `Ok(Err(_))` is bad input;
/// `Ok(Ok(true))` a new host.
pub async fn register_host(db: &Db, new: &NewHost) -> Result<Result<bool, String>, sqlx::Error> {
    if !valid_hostname(&new.hostname) {
        return Ok(Err(format!(
            "hostname {:?} is not a host name (1 to 253 of a-z, 0-9, '.', '-', '_')",
            new.hostname
        )));
    }
    if !valid_address(&new.address) {
        return Ok(Err(format!(
            "address {:?} is not a host name or ip address",
            new.address
        )));
    }
    if new.port == 0 {
        return Ok(Err("port must be 1 to 65535".into()));
    }
    let mut tx = db.write.begin().await?;
    let exists = sqlx::query("SELECT id FROM hosts WHERE hostname = $1")
        .bind(&new.hostname)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    sqlx::query(
        "INSERT INTO hosts (hostname, address, port, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (hostname) DO UPDATE SET address = excluded.address, port = excluded.port",
    )
    .bind(&new.hostname)
    .bind(&new.address)
    .bind(i64::from(new.port))
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(hostname = %new.hostname, address = %new.address, port = new.port, created = !exists, "host registered");
    Ok(Ok(!exists))
}

const HOST_COLUMNS: &str =
    "id, hostname, address, port, created_at, last_report_at, last_report_id, \
     uptime_seconds, machine_id, serial, system_uuid";

fn host_summary(r: &AnyRow) -> Result<(i64, Map<String, Value>), sqlx::Error> {
    let mut m = Map::new();
    let ts = |v: Option<i64>| v.map_or(Value::Null, |t| Value::String(rfc3339(t)));
    m.insert("hostname".into(), json!(r.try_get::<String, _>(1)?));
    m.insert("address".into(), json!(r.try_get::<Option<String>, _>(2)?));
    m.insert("port".into(), json!(r.try_get::<i64, _>(3)?));
    m.insert("created_at".into(), ts(Some(r.try_get(4)?)));
    m.insert("last_report_at".into(), ts(r.try_get(5)?));
    m.insert(
        "last_report_id".into(),
        json!(r.try_get::<Option<String>, _>(6)?),
    );
    Ok((r.try_get(0)?, m))
}

async fn list_hosts(State(state): State<Arc<AppState>>) -> Response {
    let sql = format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY hostname");
    let rows = match sqlx::query(&sql).fetch_all(&state.db.read).await {
        Ok(r) => r,
        Err(e) => return db_failure(e),
    };
    let hosts: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| host_summary(r).map(|(_, m)| Value::Object(m)))
        .collect();
    match hosts {
        Ok(h) => ok_json(Value::Array(h)),
        Err(e) => db_failure(e),
    }
}

type HostPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

fn host_path(p: HostPath) -> Result<String, Box<Response>> {
    p.map(|Path(h)| h).map_err(|e| {
        Box::new(problem(
            StatusCode::BAD_REQUEST,
            "bad_path",
            &format!("bad path: {e}"),
        ))
    })
}

async fn get_host(State(state): State<Arc<AppState>>, hostname: HostPath) -> Response {
    let hostname = match host_path(hostname) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    match host_detail(&state.db, &hostname).await {
        Ok(Some(v)) => ok_json(v),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "unknown_host",
            &format!("no host named {hostname:?}"),
        ),
        Err(e) => db_failure(e),
    }
}

/// One host's current asset: its fields and every component, grouped by kind.
async fn host_detail(db: &Db, hostname: &str) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {HOST_COLUMNS} FROM hosts WHERE hostname = $1");
    let Some(row) = sqlx::query(&sql)
        .bind(hostname)
        .fetch_optional(&db.read)
        .await?
    else {
        return Ok(None);
    };
    let (id, mut m) = host_summary(&row)?;
    m.insert(
        "uptime_seconds".into(),
        json!(row.try_get::<Option<i64>, _>(7)?),
    );
    m.insert(
        "machine_id".into(),
        json!(row.try_get::<Option<String>, _>(8)?),
    );
    m.insert("serial".into(), json!(row.try_get::<Option<String>, _>(9)?));
    m.insert(
        "system_uuid".into(),
        json!(row.try_get::<Option<String>, _>(10)?),
    );
    let rows = sqlx::query(
        "SELECT kind, item, data FROM components WHERE host_id = $1 ORDER BY kind, item",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?;
    let (mut os, mut cpu, mut memory) = (Map::new(), Map::new(), Map::new());
    let (mut modules, mut disks, mut nics) = (Vec::new(), Vec::new(), Vec::new());
    let (mut board, mut plugins) = (Value::Null, Map::new());
    for r in &rows {
        let kind: String = r.try_get(0)?;
        let item: String = r.try_get(1)?;
        let text: String = r.try_get(2)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match kind.as_str() {
            "os" => drop(os.insert(item, value)),
            "cpu" => drop(cpu.insert(item, value)),
            "memory" => drop(memory.insert(item, value)),
            "memory_module" => modules.push(value),
            "disk" => disks.push(value),
            "nic" => nics.push(value),
            "board" => board = value,
            _ => drop(plugins.insert(kind, value)),
        }
    }
    memory.insert("modules".into(), Value::Array(modules));
    m.insert("os".into(), Value::Object(os));
    m.insert("cpu".into(), Value::Object(cpu));
    m.insert("memory".into(), Value::Object(memory));
    m.insert("disks".into(), Value::Array(disks));
    m.insert("nics".into(), Value::Array(nics));
    m.insert("board".into(), board);
    m.insert("plugins".into(), Value::Object(plugins));
    Ok(Some(Value::Object(m)))
}

/// `?limit=N` (1 to 1000, default 100) and `?before=ID` (newest first, page backwards).
// A refusal is built once per request; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn page(query: &HashMap<String, String>) -> Result<(i64, Option<i64>), Response> {
    let bad = |name: &str, v: &str| {
        problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            &format!("query parameter {name}={v:?} must be a whole number in range"),
        )
    };
    let limit = match query.get("limit") {
        None => 100,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(bad("limit", v)),
        },
    };
    let before = match query.get("before") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(bad("before", v)),
        },
    };
    Ok((limit, before))
}

type QueryMap = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

#[allow(clippy::result_large_err)]
fn query_map(q: QueryMap) -> Result<HashMap<String, String>, Response> {
    q.map(|Query(m)| m).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "bad_query",
            &format!("bad query string: {e}"),
        )
    })
}

async fn host_changes(
    State(state): State<Arc<AppState>>,
    hostname: HostPath,
    query: QueryMap,
) -> Response {
    let hostname = match host_path(hostname) {
        Ok(h) => h,
        Err(r) => return *r,
    };
    let q = match query_map(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let host = sqlx::query("SELECT id FROM hosts WHERE hostname = $1")
        .bind(&hostname)
        .fetch_optional(&state.db.read)
        .await;
    match host {
        Ok(Some(row)) => match row.try_get::<i64, _>(0) {
            Ok(id) => changes(&state.db, Some(id), &q).await,
            Err(e) => db_failure(e),
        },
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "unknown_host",
            &format!("no host named {hostname:?}"),
        ),
        Err(e) => db_failure(e),
    }
}

async fn all_changes(State(state): State<Arc<AppState>>, query: QueryMap) -> Response {
    match query_map(query) {
        Ok(q) => changes(&state.db, None, &q).await,
        Err(r) => r,
    }
}

fn parse_json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

async fn changes(db: &Db, host_id: Option<i64>, q: &HashMap<String, String>) -> Response {
    let (limit, before) = match page(q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let sql = "SELECT c.id, h.hostname, c.report_id, c.at, c.component, c.item, c.action, c.old_value, c.new_value \
         FROM changes c JOIN hosts h ON h.id = c.host_id \
         WHERE ($1 = 0 OR c.host_id = $2) AND c.id < $3 ORDER BY c.id DESC LIMIT $4";
    let rows = sqlx::query(sql)
        .bind(i64::from(host_id.is_some()))
        .bind(host_id.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&db.read)
        .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return db_failure(e),
    };
    let out: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>(0)?,
                "hostname": r.try_get::<String, _>(1)?,
                "report_id": r.try_get::<String, _>(2)?,
                "at": rfc3339(r.try_get(3)?),
                "component": r.try_get::<String, _>(4)?,
                "item": r.try_get::<String, _>(5)?,
                "action": r.try_get::<String, _>(6)?,
                "old": parse_json(r.try_get(7)?),
                "new": parse_json(r.try_get(8)?),
            }))
        })
        .collect();
    match out {
        Ok(v) => ok_json(Value::Array(v)),
        Err(e) => db_failure(e),
    }
}

async fn errors(State(state): State<Arc<AppState>>, query: QueryMap) -> Response {
    let q = match query_map(query) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let (limit, before) = match page(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rows = sqlx::query(
        "SELECT id, at, code, hostname, report_id, plugin, message FROM errors \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(&state.db.read)
    .await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => return db_failure(e),
    };
    let out: Result<Vec<Value>, sqlx::Error> = rows
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.try_get::<i64, _>(0)?,
                "at": rfc3339(r.try_get(1)?),
                "code": r.try_get::<String, _>(2)?,
                "hostname": r.try_get::<Option<String>, _>(3)?,
                "report_id": r.try_get::<Option<String>, _>(4)?,
                "plugin": r.try_get::<Option<String>, _>(5)?,
                "message": r.try_get::<String, _>(6)?,
            }))
        })
        .collect();
    match out {
        Ok(v) => ok_json(Value::Array(v)),
        Err(e) => db_failure(e),
    }
}
