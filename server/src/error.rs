//! `ApiError`: every failure a handler can have, rendered as `application/problem+json`
//! (RFC 9457) with a machine-readable `code`. A database failure is a `503` with `Retry-After`:
//! nothing was acknowledged, and the client (the agent's spool) tries again later.

use auto_proto::Problem;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// Seconds a client is asked to wait after a `503`.
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug)]
pub enum ApiError {
    /// A refusal the client can act on: status, code, one-line detail.
    Problem {
        status: StatusCode,
        code: &'static str,
        detail: String,
    },
    /// The database failed (disk full, connection lost, ...): `503` + `Retry-After`.
    Db(sqlx::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Problem {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
        }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::Problem {
            status: StatusCode::NOT_FOUND,
            code,
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::Db(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem {
                status,
                code,
                detail,
            } => problem(status, code, &detail),
            ApiError::Db(e) => {
                tracing::error!(error = %e, "database request failed");
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database cannot take this request now (nothing was stored); try again later",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
                r.extensions_mut().insert(crate::metrics::DatabaseFailed);
                r
            }
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
