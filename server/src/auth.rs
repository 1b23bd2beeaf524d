//! Request authentication: the HMAC scheme of `auto_proto::sign`, a time window in both
//! directions and a nonce store in the database (so a restart does not reopen the window for
//! replays). Also the body-size limit, which has to be enforced before the body is hashed.

use std::sync::Arc;

use auto_proto::sign;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::{problem, AppState};

/// Paths anyone may read without a signature: liveness, and the API's own description (it holds
/// no data, and tools that check the API need it).
pub const PUBLIC_PATHS: [&str; 2] = ["/healthz", "/api/v1/openapi.json"];

const REPORTS_PATH: &str = "/api/v1/reports";

/// The detail of a 401 for a nonce seen before.
pub const REPLAYED: &str = "the nonce was used before: a replayed request";

/// A verified request's nonce, not recorded yet: `POST /api/v1/reports` records it inside the
/// report's transaction ([`crate::ingest::ingest`]); every other path records it here.
#[derive(Debug, Clone)]
pub struct PendingNonce(pub String);

/// Records a nonce; `false` when it was seen before (a replay).
pub async fn record_nonce<'e, E>(executor: E, nonce: &str) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "INSERT INTO nonces (nonce, seen_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
    )
    .bind(nonce)
    .bind(crate::clock::now())
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(reason: &str) -> Response {
    problem(StatusCode::UNAUTHORIZED, "bad_signature", reason)
}

/// A refused body is still read (and dropped) up to this many times the limit, for at most
/// `DRAIN_TIME`, so that a client still sending it reads the 413 instead of a reset connection.
const DRAIN_FACTOR: usize = 16;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// The body if it fits in `limit` bytes; `None` if it does not (after draining what the client
/// still sends, within `DRAIN_FACTOR` and `DRAIN_TIME`) or cannot be read.
async fn read_limited(mut body: Body, limit: usize, declared: Option<usize>) -> Option<Bytes> {
    use axum::body::HttpBody;
    async fn next(body: &mut Body) -> Option<Result<Bytes, ()>> {
        let frame =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        Some(
            frame
                .map(|f| f.into_data().unwrap_or_default())
                .map_err(drop),
        )
    }
    let mut seen = 0usize;
    if declared.is_none_or(|n| n <= limit) {
        let mut kept: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
        loop {
            match next(&mut body).await {
                None => return Some(Bytes::from(kept)),
                Some(Err(())) => return None,
                Some(Ok(data)) => {
                    seen += data.len();
                    if seen > limit {
                        break;
                    }
                    kept.extend_from_slice(&data);
                }
            }
        }
    }
    // too large: drop the rest as it comes, within bounds, then answer
    let cap = limit.saturating_mul(DRAIN_FACTOR);
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(data)) = next(&mut body).await {
            seen += data.len();
            if seen > cap {
                break;
            }
        }
    })
    .await;
    None
}

/// Reads the body (at most the limit), then checks the signature unless the path is public or the
/// server runs without auth.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = header(&parts.headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    let public = PUBLIC_PATHS.contains(&parts.uri.path());

    // Header checks first: they cost nothing and need no body.
    let key = if state.config.no_auth || public {
        None
    } else {
        match check_headers(&state, &parts.headers).await {
            Ok(k) => Some(k),
            Err(response) => return response,
        }
    };

    let bytes: Bytes = match read_limited(body, limit, declared).await {
        Some(b) => b,
        None => {
            state.log_too_large(&parts.uri, declared).await;
            return too_large();
        }
    };

    if let Some((name, secret, timestamp, nonce, given)) = key {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if !sign::verify(
            &secret,
            parts.method.as_str(),
            path,
            timestamp,
            &nonce,
            &bytes,
            &given,
        ) {
            tracing::warn!(key = %name, path, "request refused: signature does not match");
            return unauthorized(
                "the signature does not match the request (method, path, timestamp, nonce or body)",
            );
        }
        let nonce = nonce.to_ascii_lowercase();
        if parts.method == Method::POST && parts.uri.path() == REPORTS_PATH {
            // Recorded in the report's own transaction: one write to the database, not two.
            parts.extensions.insert(PendingNonce(nonce));
        } else {
            match record_nonce(&state.db.write, &nonce).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(key = %name, "request refused: nonce replayed");
                    return unauthorized(REPLAYED);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot record a nonce");
                    return problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "database_unavailable",
                        "cannot record the request's nonce",
                    );
                }
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

type Verified = (String, Vec<u8>, i64, String, String);

async fn check_headers(state: &AppState, headers: &HeaderMap) -> Result<Verified, Response> {
    let (Some(name), Some(ts), Some(nonce), Some(sig)) = (
        header(headers, sign::HEADER_KEY),
        header(headers, sign::HEADER_TIMESTAMP),
        header(headers, sign::HEADER_NONCE),
        header(headers, sign::HEADER_SIGNATURE),
    ) else {
        return Err(unauthorized(
            "the request is not signed: x-auto-key, x-auto-timestamp, x-auto-nonce and x-auto-signature are required",
        ));
    };
    let Ok(timestamp) = ts.parse::<i64>() else {
        return Err(unauthorized("x-auto-timestamp is not unix seconds"));
    };
    let skew = state.config.clock_skew_secs;
    let now = crate::clock::now();
    if timestamp < now - skew {
        return Err(unauthorized(&format!(
            "the timestamp is {} s old, more than the allowed {skew} s: check the client's clock",
            now - timestamp
        )));
    }
    if timestamp > now + skew {
        return Err(unauthorized(&format!(
            "the timestamp is {} s in the future, more than the allowed {skew} s: check the client's clock",
            timestamp - now
        )));
    }
    if nonce.len() < 32 || nonce.len() > 128 || !nonce.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(unauthorized(
            "x-auto-nonce must be 32 to 128 hex digits (16 random bytes or more)",
        ));
    }
    let Some(master) = &state.master else {
        return Err(unauthorized("the server has no master key"));
    };
    match crate::keys::secret(&state.db, master, name).await {
        Ok(Some(secret)) => Ok((
            name.to_owned(),
            secret,
            timestamp,
            nonce.to_owned(),
            sig.to_owned(),
        )),
        Ok(None) => {
            tracing::warn!(key = %name, "request refused: unknown or revoked key");
            Err(unauthorized(&format!("no active key named {name:?}")))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the keys");
            Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "cannot read the keys",
            )
            .into_response())
        }
    }
}

/// Forgets nonces older than the window: a request that old is refused by its timestamp anyway.
pub async fn prune_nonces(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let cutoff = crate::clock::now() - state.config.clock_skew_secs - 60;
        match sqlx::query("DELETE FROM nonces WHERE seen_at < $1")
            .bind(cutoff)
            .execute(&state.db.write)
            .await
        {
            Ok(done) => tracing::debug!(pruned = done.rows_affected(), "nonces pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune nonces"),
        }
    }
}
