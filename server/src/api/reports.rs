//! `POST /api/v1/reports`: check (off the async executor), then ingest in one transaction.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;

use super::{json_response, ApiError, ApiResult, AppStateRef};
use crate::auth::{PendingNonce, Principal, Scope};
use crate::clock::now;
use crate::ingest::{self, log_error, WriteScope};
use crate::metrics::ReportOutcome;
use crate::report;

/// A gzip body is inflated to at most this many times the body limit (a "zip bomb" is a 413).
pub const INFLATE_FACTOR: usize = 16;

/// A plain (not compressed) body up to this size is checked on the async executor; a larger or
/// compressed one on the blocking pool.
pub const INLINE_CHECK_BYTES: usize = 64 * 1024;

/// The body as JSON bytes: as sent, or inflated when `Content-Encoding: gzip` (the signature
/// covers the bytes as sent). Any other encoding is refused.
fn inflate(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            use std::io::Read;
            let mut out = Vec::with_capacity(body.len() * 4);
            let read = flate2::read::GzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Err(e) => Err(ApiError::bad_request(
                    "malformed_report",
                    format!("the gzip body cannot be inflated: {e}"),
                )),
                Ok(n) if n > limit => Err(ApiError::Problem {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "too_large",
                    detail: format!(
                        "the gzip body inflates to more than the limit of {limit} bytes"
                    ),
                }),
                Ok(_) => Ok(Bytes::from(out)),
            }
        }
        other => Err(ApiError::Problem {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_encoding",
            detail: format!("content-encoding {other:?} is not taken: send identity or gzip"),
        }),
    }
}

pub async fn post_report(
    state: AppStateRef,
    nonce: Option<Extension<PendingNonce>>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = match principal.map(|Extension(p)| p.scope) {
        None | Some(Scope::Fleet | Scope::Admin) => WriteScope::AnyHost,
        Some(Scope::Host { host_id }) => WriteScope::Host(host_id),
        Some(_) => {
            return Err(ApiError::Problem {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                detail: "this key may not send reports".into(),
            })
        }
    };
    let nonce = nonce.map(|Extension(n)| n);
    let limits = state.config.limits;
    let inflate_limit = state.config.max_body_bytes.saturating_mul(INFLATE_FACTOR);
    // Parsing and checking a large report is CPU work: not on the async executor. A small one
    // (the usual report, a few KB: tens of microseconds) is checked in place, which spares the
    // hand-off to the blocking pool and back (two thread wake-ups).
    let small = body.len() <= INLINE_CHECK_BYTES && !headers.contains_key(header::CONTENT_ENCODING);
    let checked = if small {
        inflate(&headers, body, inflate_limit).map(|body| report::check(&body, limits))?
    } else {
        tokio::task::spawn_blocking(move || {
            inflate(&headers, body, inflate_limit).map(|body| report::check(&body, limits))
        })
        .await
        .map_err(|e| ApiError::Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            detail: format!("the report check failed: {e}"),
        })??
    };
    let checked = match checked {
        Ok(c) => c,
        Err(m) => {
            // An authenticated request: its nonce and an error row, in one transaction.
            let mut tx = state.db.begin_write().await?;
            if let Some(pending) = &nonce {
                if !crate::auth::record_report_nonce(&mut tx, pending).await? {
                    // replayed, or the key is no longer active: the next request reads it again
                    state.keys.forget(&pending.key);
                    let (status, body) = ingest::Outcome::Replayed.status_and_body();
                    tx.rollback().await?;
                    let mut response = json_response(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
                        body,
                    );
                    response.extensions_mut().insert(ReportOutcome("replayed"));
                    return Ok(response);
                }
            }
            tracing::warn!(hostname = ?m.hostname, reason = %m.detail, "report refused: malformed");
            log_error(
                &mut *tx,
                now(),
                "malformed_report",
                m.hostname.as_deref(),
                m.report_id.as_deref(),
                None,
                &format!("report refused: {}", m.detail),
            )
            .await?;
            tx.commit().await?;
            return Err(ApiError::bad_request("malformed_report", m.detail));
        }
    };
    let key = nonce.as_ref().map(|n| n.key.clone());
    let outcome = state.writer.ingest(checked, nonce, scope).await?;
    if let (ingest::Outcome::KeyInactive, Some(key)) = (&outcome, key) {
        state.keys.forget(&key);
    }
    let (status, body) = outcome.status_and_body();
    let mut response = json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    );
    response
        .extensions_mut()
        .insert(ReportOutcome(crate::metrics::ingest_outcome(&outcome)));
    Ok(response)
}
