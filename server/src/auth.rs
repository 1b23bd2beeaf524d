//! Request authentication: the HMAC scheme of `auto_proto::sign`, a time window in both
//! directions and a nonce store in the database (so a restart does not reopen the window for
//! replays). Also the body-size limit, which has to be enforced before the body is hashed.

use std::sync::Arc;

use auto_proto::sign;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::api::{problem, AppState};

/// Paths anyone may read without a signature: liveness, readiness, and the API's own description
/// (they hold no data, and tools that check the API need it); `/metrics` has its own rule
/// (loopback or a bearer token, [`crate::metrics`]).
pub const PUBLIC_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"];

const REPORTS_PATH: &str = "/api/v1/reports";

/// The one detail every authentication failure answers with (code `unauthorized`): which check
/// failed (unknown key, bad signature, stale timestamp, replayed nonce) goes to the server log
/// only, so that a client learns nothing, not even whether a key name exists.
pub const UNAUTHORIZED: &str =
    "the request is not authenticated: check the key name, its secret and the client's clock";

/// What a verified request may do, from its key's scope. The middleware inserts it into the
/// request's extensions (with `--no-auth`: a `Fleet` principal named `-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key: String,
    pub scope: Scope,
}

/// A key's scope (`api_keys.scope`, `api_keys.host_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// ssh/salt controllers and admins: may report for any host and register hosts.
    Fleet,
    /// An agent's own key: may report for this one host only (bound to its id, so a rename by the
    /// identity rule keeps the binding).
    Host { host_id: i64 },
    /// Dashboards and exports: `GET` only.
    Read,
    /// What a fleet key may, and edit hosts' hand-entered fields
    /// (`PUT /api/v1/hosts/{hostname}/fields`): an admin's scripts.
    Admin,
}

impl Scope {
    /// The scope a stored key has; `None` for a value this version does not know (refused).
    pub fn from_row(scope: &str, host_id: Option<i64>) -> Option<Scope> {
        match (scope, host_id) {
            ("fleet", _) => Some(Scope::Fleet),
            ("read", _) => Some(Scope::Read),
            ("admin", _) => Some(Scope::Admin),
            ("host", Some(host_id)) => Some(Scope::Host { host_id }),
            _ => None,
        }
    }
}

/// A verified request's nonce and timestamp, not recorded yet: `POST /api/v1/reports` records it
/// inside the report's transaction; every other path records it in the middleware. With the key
/// that signed it: the report's transaction records the nonce only while that key is still
/// active ([`record_report_nonce`]), since the secret it was verified with may have come from
/// [`crate::keys::KeyCache`].
#[derive(Debug, Clone)]
pub struct PendingNonce {
    pub nonce: String,
    pub timestamp: i64,
    /// The key's name.
    pub key: String,
    /// The key's sealed secret as stored (`api_keys.secret_enc`) when the request was verified:
    /// a key removed and created again under the same name is another key.
    pub sealed: String,
}

/// The accepted clock skew, in seconds, for the nonce expiry [`record_nonce`] computes; set once
/// by `serve` from `--clock-skew-secs`.
static CLOCK_SKEW_SECS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(300);

/// How long past its window a nonce is kept: covers a clock step and the gap between the
/// timestamp check and the insert.
pub const NONCE_MARGIN_SECS: i64 = 5;

pub fn set_clock_skew(secs: i64) {
    CLOCK_SKEW_SECS.store(secs, std::sync::atomic::Ordering::Relaxed);
}

/// When a nonce stamped `timestamp` may be forgotten: once its timestamp has left the window a
/// request is accepted in, `timestamp + skew`, and never before `now + skew` (a timestamp in the
/// past is refused from `timestamp + skew` on, but keeping it for the full window costs nothing
/// and survives a clock step back), plus a margin.
pub fn nonce_expiry(timestamp: i64, now: i64, skew: i64) -> i64 {
    timestamp
        .max(now)
        .saturating_add(skew)
        .saturating_add(NONCE_MARGIN_SECS)
}

/// `(seen_at, expires_at)` of a nonce stamped `timestamp` recorded now.
pub fn nonce_times(timestamp: i64) -> (i64, i64) {
    let now = crate::clock::now();
    let skew = CLOCK_SKEW_SECS.load(std::sync::atomic::Ordering::Relaxed);
    (now, nonce_expiry(timestamp, now, skew))
}

/// Records a nonce with its expiry; `false` when it was seen before (a replay). Takes any
/// executor: the pool, or `&mut *tx` for a [`crate::db::WriteTx`].
pub async fn record_nonce<'e, E>(
    executor: E,
    nonce: &str,
    timestamp: i64,
) -> Result<bool, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (seen_at, expires_at) = nonce_times(timestamp);
    let done = sqlx::query(
        "INSERT INTO nonces (nonce, seen_at, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (nonce) DO NOTHING",
    )
    .bind(nonce)
    .bind(seen_at)
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The nonce insert of a report request: `$1`, `$2`, `$3` the nonce, its `seen_at` and
/// `expires_at`, written only while the key named `$4` is active with the sealed secret `$5`
/// ([`key_active`] reads the same condition). A macro, so that `ingest` can append its
/// `RETURNING` clause with `concat!`.
macro_rules! report_nonce_insert {
    () => {
        "INSERT INTO nonces (nonce, seen_at, expires_at) SELECT $1, $2, $3 \
         WHERE EXISTS (SELECT 1 FROM api_keys WHERE name = $4 AND secret_enc = $5 \
         AND revoked_at IS NULL) ON CONFLICT (nonce) DO NOTHING"
    };
}
pub(crate) use report_nonce_insert;

/// Records a report request's nonce if the key that signed it is still active; `false` when the
/// nonce was seen before or the key is no longer active (nothing written).
pub async fn record_report_nonce(
    conn: &mut sqlx::AnyConnection,
    pending: &PendingNonce,
) -> Result<bool, sqlx::Error> {
    let (seen_at, expires_at) = nonce_times(pending.timestamp);
    let done = sqlx::query(report_nonce_insert!())
        .bind(&pending.nonce)
        .bind(seen_at)
        .bind(expires_at)
        .bind(&pending.key)
        .bind(&pending.sealed)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether the key that signed a request is still the active key of its name (the condition of
/// [`report_nonce_insert`]).
pub async fn key_active(
    conn: &mut sqlx::AnyConnection,
    pending: &PendingNonce,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT 1 FROM api_keys WHERE name = $1 AND secret_enc = $2 AND revoked_at IS NULL",
    )
    .bind(&pending.key)
    .bind(&pending.sealed)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The answer to every authentication failure: one status, one code, one detail. `reason` (and
/// whatever the caller logs) stays in the server log, rate-limited.
fn unauthorized(reason: &str) -> Response {
    refused_log(StatusCode::UNAUTHORIZED, reason);
    problem(StatusCode::UNAUTHORIZED, "unauthorized", UNAUTHORIZED)
}

fn forbidden(detail: &str) -> Response {
    problem(StatusCode::FORBIDDEN, "forbidden", detail)
}

/// 503 with `Retry-After`: the database cannot be read or written now; the client retries.
fn database_unavailable(detail: &str) -> Response {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        detail,
    );
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("30"),
    );
    response
        .extensions_mut()
        .insert(crate::metrics::DatabaseFailed);
    response
}

/// At most this many lines a second about refused unauthenticated requests; the rest are counted
/// and the count logged with the next line that gets through. A flood of forged requests costs
/// the log a few lines a second, and the database nothing.
const REFUSED_LINES_PER_SEC: u64 = 10;

struct RefusedLog {
    second: std::sync::atomic::AtomicI64,
    in_second: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

static REFUSED: RefusedLog = RefusedLog {
    second: std::sync::atomic::AtomicI64::new(0),
    in_second: std::sync::atomic::AtomicU64::new(0),
    suppressed: std::sync::atomic::AtomicU64::new(0),
};

/// Logs a refused request (before or without authentication), rate-limited.
pub fn refused_log(status: StatusCode, reason: &str) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = crate::clock::now();
    if REFUSED.second.swap(now, Relaxed) != now {
        REFUSED.in_second.store(0, Relaxed);
    }
    if REFUSED.in_second.fetch_add(1, Relaxed) >= REFUSED_LINES_PER_SEC {
        REFUSED.suppressed.fetch_add(1, Relaxed);
        return;
    }
    let suppressed = REFUSED.suppressed.swap(0, Relaxed);
    tracing::warn!(
        status = status.as_u16(),
        reason,
        suppressed,
        "request refused"
    );
}

/// A refused body is still read (and dropped) up to this many times the limit, for at most
/// `DRAIN_TIME`, so that a client still sending it reads the 413 instead of a reset connection.
const DRAIN_FACTOR: usize = 16;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// When the body of a request must be in: inserted into the request's extensions by the
/// connection loop (`--body-timeout-secs` after its headers).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub tokio::time::Instant);

/// Why a body was not read.
enum BodyError {
    /// Larger than the limit (413).
    TooLarge,
    /// Not in before the deadline (408).
    TooSlow,
    /// The connection failed while reading it.
    Broken,
}

/// The body if it fits in `limit` bytes and is in before `deadline`; if it is too large, what the
/// client still sends is drained (within `DRAIN_FACTOR` and `DRAIN_TIME`) before answering.
async fn read_limited(
    mut body: Body,
    limit: usize,
    declared: Option<usize>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Bytes, BodyError> {
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
        let read_all = async {
            let mut kept: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0));
            loop {
                match next(&mut body).await {
                    None => return Ok(Bytes::from(kept)),
                    Some(Err(())) => return Err(BodyError::Broken),
                    Some(Ok(data)) => {
                        seen += data.len();
                        if seen > limit {
                            return Err(BodyError::TooLarge);
                        }
                        kept.extend_from_slice(&data);
                    }
                }
            }
        };
        let read = match deadline {
            Some(d) => tokio::time::timeout_at(d, read_all)
                .await
                .unwrap_or(Err(BodyError::TooSlow)),
            None => read_all.await,
        };
        match read {
            Err(BodyError::TooLarge) => {}
            other => return other,
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
    Err(BodyError::TooLarge)
}

/// Authenticates a request before anything is written for it: header checks (format, time
/// window), then the body (at most the limit: a larger one is refused with 413 whatever the key,
/// so that 413 says nothing about key names), then the key and the signature. A request that
/// fails any of these gets a generic 401 (or 413), a rate-limited log line, and no database write.
/// A verified request gets a [`Principal`]; a `read` key may only `GET`; the nonce is recorded
/// here, or for `POST /api/v1/reports` in the report's own transaction ([`PendingNonce`]).
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let too_large = || {
        refused_log(StatusCode::PAYLOAD_TOO_LARGE, "body over the limit");
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = header(&parts.headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    let public = PUBLIC_PATHS.contains(&parts.uri.path());
    let deadline = parts.extensions.get::<BodyDeadline>().map(|d| d.0);
    let body_refused = |e: BodyError| match e {
        BodyError::TooLarge => too_large(),
        BodyError::TooSlow => {
            refused_log(
                StatusCode::REQUEST_TIMEOUT,
                "body not in before the body timeout",
            );
            problem(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
        }
        BodyError::Broken => {
            refused_log(StatusCode::BAD_REQUEST, "the body could not be read");
            problem(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the body could not be read",
            )
        }
    };

    // The web pages have their own door (a session cookie, `ui.rs`): never a signature.
    let page = crate::ui::is_page_path(parts.uri.path());
    if state.config.no_auth || public || page {
        let bytes = match read_limited(body, limit, declared, deadline).await {
            Ok(b) => b,
            Err(e) => return body_refused(e),
        };
        if state.config.no_auth && !page {
            // --no-auth opens everything, the admin's writes too (a local trial).
            parts.extensions.insert(Principal {
                key: "-".to_owned(),
                scope: Scope::Admin,
            });
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }

    // Header checks first: they cost nothing, need no body and tell nothing about keys.
    let signed = match check_headers(&state, &parts.headers) {
        Ok(s) => s,
        Err(response) => return response,
    };
    let bytes = match read_limited(body, limit, declared, deadline).await {
        Ok(b) => b,
        Err(e) => return body_refused(e),
    };
    let Some(master) = &state.master else {
        return unauthorized("the server has no master key");
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let verified = |key: &crate::keys::ActiveKey| {
        sign::verify(
            &key.secret,
            parts.method.as_str(),
            path,
            signed.timestamp,
            &signed.nonce,
            &bytes,
            &signed.signature,
        )
    };
    let reports = parts.uri.path() == REPORTS_PATH;
    // A report's key may come from the cache: the report's transaction records its nonce only
    // while the key is still active (`PendingNonce`), so a revoked key is refused at once. Any
    // other request reads its key from the database.
    let report_post = reports && parts.method == Method::POST;
    let cached = if report_post {
        state.keys.get(&signed.key).filter(|k| verified(k))
    } else {
        None
    };
    let key = match cached {
        Some(k) => k,
        None => {
            let key = match crate::keys::lookup(&state.db, master, &signed.key).await {
                Ok(Some(k)) => std::sync::Arc::new(k),
                Ok(None) => {
                    state.keys.forget(&signed.key);
                    return unauthorized(&format!("no active key named {:?}", signed.key));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the keys");
                    return database_unavailable("cannot read the keys");
                }
            };
            if !verified(&key) {
                state.keys.forget(&signed.key);
                return unauthorized(&format!(
                    "key {:?}: the signature does not match the request",
                    signed.key
                ));
            }
            if report_post {
                state.keys.insert(&signed.key, key.clone());
            }
            key
        }
    };
    let reads_only = matches!(parts.method, Method::GET | Method::HEAD);
    if key.scope == Scope::Read && !reads_only {
        tracing::warn!(key = %signed.key, method = %parts.method, "request refused: a read key may only GET");
        return forbidden("this key may only read (GET)");
    }
    if matches!(key.scope, Scope::Host { .. }) && !reads_only && !reports {
        tracing::warn!(key = %signed.key, method = %parts.method, path = parts.uri.path(), "request refused: a host key may only send its host's reports");
        return forbidden("this key may only send its own host's reports");
    }
    let nonce = signed.nonce.to_ascii_lowercase();
    if parts.method == Method::POST && reports {
        // Recorded in the report's own transaction: one write to the database, not two.
        parts.extensions.insert(PendingNonce {
            nonce,
            timestamp: signed.timestamp,
            key: signed.key.clone(),
            sealed: key.sealed.clone(),
        });
    } else {
        match record_nonce(&state.db.write, &nonce, signed.timestamp).await {
            Ok(true) => {}
            Ok(false) => {
                return unauthorized(&format!("key {:?}: nonce replayed", signed.key));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record a nonce");
                return database_unavailable("cannot record the request's nonce");
            }
        }
    }
    parts.extensions.insert(Principal {
        key: signed.key,
        scope: key.scope,
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The signature headers of a request, checked for form and time window (not verified yet).
struct Signed {
    key: String,
    timestamp: i64,
    nonce: String,
    signature: String,
}

#[allow(clippy::result_large_err)] // a refusal is answered at once, never stored
fn check_headers(state: &AppState, headers: &HeaderMap) -> Result<Signed, Response> {
    let (Some(name), Some(ts), Some(nonce), Some(sig)) = (
        header(headers, sign::HEADER_KEY),
        header(headers, sign::HEADER_TIMESTAMP),
        header(headers, sign::HEADER_NONCE),
        header(headers, sign::HEADER_SIGNATURE),
    ) else {
        return Err(unauthorized(
            "the request is not signed (x-auto-* headers missing)",
        ));
    };
    let Ok(timestamp) = ts.parse::<i64>() else {
        return Err(unauthorized("x-auto-timestamp is not unix seconds"));
    };
    let skew = state.config.clock_skew_secs;
    let now = crate::clock::now();
    if timestamp < now - skew {
        return Err(unauthorized(&format!(
            "key {name:?}: the timestamp is {} s old, more than the allowed {skew} s",
            now - timestamp
        )));
    }
    if timestamp > now + skew {
        return Err(unauthorized(&format!(
            "key {name:?}: the timestamp is {} s in the future, more than the allowed {skew} s",
            timestamp - now
        )));
    }
    if nonce.len() < 32 || nonce.len() > 128 || !nonce.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(unauthorized("x-auto-nonce is not 32 to 128 hex digits"));
    }
    Ok(Signed {
        key: name.to_owned(),
        timestamp,
        nonce: nonce.to_owned(),
        signature: sig.to_owned(),
    })
}

/// Forgets the nonces whose own timestamp has left the window (`expires_at`, see
/// [`nonce_expiry`]): a request that old is refused by its timestamp anyway.
pub async fn prune_nonces(state: Arc<AppState>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(crate::clock::now())
            .execute(&state.db.write)
            .await
        {
            Ok(done) => tracing::debug!(pruned = done.rows_affected(), "nonces pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune nonces"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_outlives_its_own_window() {
        // stamped at the edge of the future window: valid until now + 2 x skew
        assert_eq!(nonce_expiry(1300, 1000, 300), 1600 + NONCE_MARGIN_SECS);
        // stamped in the past: kept for a full window from now
        assert_eq!(nonce_expiry(800, 1000, 300), 1300 + NONCE_MARGIN_SECS);
    }

    #[test]
    fn scopes_read_back_from_their_rows() {
        assert_eq!(Scope::from_row("fleet", None), Some(Scope::Fleet));
        assert_eq!(Scope::from_row("read", None), Some(Scope::Read));
        assert_eq!(
            Scope::from_row("host", Some(7)),
            Some(Scope::Host { host_id: 7 })
        );
        assert_eq!(Scope::from_row("host", None), None);
        assert_eq!(Scope::from_row("admin", None), Some(Scope::Admin));
        assert_eq!(Scope::from_row("root", None), None);
    }
}
