//! The HTTP API: the router, the shared state, and one module per resource (`reports`, `hosts`,
//! `logs`). Handlers return `Result<Response, ApiError>`; the SQL is in [`crate::store`] and
//! [`crate::ingest`]. Paths and status codes are fixed by the design; the bodies are described in
//! [`crate::openapi`].

mod hosts;
mod logs;
mod reports;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::db::Db;
pub use crate::error::{problem, ApiError};
use crate::keys::MasterKey;
use crate::report::Limits;

pub use hosts::register_host;

pub use hosts::{diff_value, export_response, host_id_or_404, parse_at};
pub use logs::changes_value;

/// What a running server is told at start.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub no_auth: bool,
    pub max_body_bytes: usize,
    pub clock_skew_secs: i64,
    pub limits: Limits,
    /// How long a web session lasts.
    pub session_ttl_secs: i64,
    /// A host not seen for this many days is stale.
    pub stale_days: i64,
    /// Session cookies always `Secure` (also set per request by `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// Which facts the inventory's summary columns show.
    pub summary: crate::search::Summary,
    /// A bearer token that opens `/metrics` to non-loopback clients (`None`: loopback only).
    pub metrics_token: Option<String>,
}

pub struct AppState {
    pub db: Db,
    /// Applies reports (on SQLite, several in one transaction: `ingest::Writer`).
    pub writer: crate::ingest::Writer,
    pub config: ServeConfig,
    /// `None` only with `--no-auth`.
    pub master: Option<MasterKey>,
    /// This process's figures for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Keys that verified report requests lately.
    pub keys: crate::keys::KeyCache,
}

pub type ApiResult = Result<Response, ApiError>;

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub(crate) fn ok_json(value: Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(crate::metrics::readyz))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/api/v1/openapi.json", get(openapi))
        // reports
        .route("/api/v1/reports", post(reports::post_report))
        // hosts
        .route("/api/v1/hosts/pending", get(hosts::pending))
        .route("/api/v1/hosts", get(hosts::list).post(hosts::add))
        .route("/api/v1/hosts/{hostname}", get(hosts::detail))
        .route("/api/v1/hosts/{hostname}/changes", get(logs::host_changes))
        .route("/api/v1/hosts/{hostname}/reports", get(hosts::reports))
        .route("/api/v1/hosts/{hostname}/diff", get(hosts::diff))
        .route(
            "/api/v1/hosts/{hostname}/fields",
            get(hosts::fields).put(hosts::put_fields),
        )
        // logs
        .route("/api/v1/changes", get(logs::all_changes))
        .route("/api/v1/changes/moved", get(logs::moved))
        .route("/api/v1/errors", get(logs::errors))
        .route("/api/v1/summary", get(hosts::summary))
        .merge(crate::ui::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
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

pub(crate) type QueryMap =
    Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// `?limit=N` (1 to 1000, default 100) and `?before=ID` (newest first, page backwards).
pub(crate) fn page(q: QueryMap) -> Result<(i64, Option<i64>), ApiError> {
    let Query(query) =
        q.map_err(|e| ApiError::bad_request("bad_query", format!("bad query string: {e}")))?;
    let bad = |name: &str, v: &str| {
        ApiError::bad_request(
            "bad_query",
            format!("query parameter {name}={v:?} must be a whole number in range"),
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

/// Keeps `State` in scope for the resource modules.
type AppStateRef = State<Arc<AppState>>;
