//! Hosts: the inventory, one host's asset, registration for ssh/salt collection, the pending list.

use auto_proto::{NewHost, PendingHost};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use super::logs::host_path;
use super::{json_response, ok_json, ApiError, ApiResult, AppStateRef};
use crate::clock::now;
use crate::db::Db;
use crate::report::valid_hostname;
use crate::{history, search, store};

pub async fn pending(state: AppStateRef) -> ApiResult {
    let since = crate::clock::start_of_day(now());
    let hosts = store::pending(&state.db, since).await?;
    Ok(ok_json(serde_json::to_value(hosts).unwrap_or_default()))
}

fn valid_address(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 253
        && a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'))
}

/// Checks a host to register: `Err` names the bad field.
pub fn check_new_host(new: &NewHost) -> Result<(), String> {
    if !valid_hostname(&new.hostname) {
        return Err(format!(
            "hostname {:?} is not a host name (1 to 253 of a-z, 0-9, '.', '-', '_')",
            new.hostname
        ));
    }
    if !valid_address(&new.address) {
        return Err(format!(
            "address {:?} is not a host name or ip address",
            new.address
        ));
    }
    if new.port == 0 {
        return Err("port must be 1 to 65535".into());
    }
    Ok(())
}

pub async fn add(state: AppStateRef, body: Bytes) -> ApiResult {
    let new: NewHost = auto_proto::data::parse_strict(&body)
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
        .map_err(|e| {
            ApiError::bad_request("malformed_host", format!("body is not a new host: {e}"))
        })?;
    check_new_host(&new).map_err(|e| ApiError::bad_request("malformed_host", e))?;
    let created = store::register_host(&state.db, &new).await?;
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
    Ok(json_response(
        status,
        serde_json::to_string(&body).unwrap_or_default(),
    ))
}

/// Registers a host (`auto-server hosts add`). `Ok(Err(_))` is bad input; `Ok(Ok(true))` a new host.
pub async fn register_host(db: &Db, new: &NewHost) -> Result<Result<bool, String>, sqlx::Error> {
    if let Err(e) = check_new_host(new) {
        return Ok(Err(e));
    }
    store::register_host(db, new).await.map(Ok)
}

type Pairs =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn pairs(q: Pairs) -> Result<Vec<(String, String)>, ApiError> {
    q.map(|axum::extract::Query(p)| p)
        .map_err(|e| ApiError::bad_request("bad_query", format!("bad query string: {e}")))
}

/// Whether the client asked for CSV (`Accept: text/csv`, or `?format=csv`).
fn wants_csv(headers: &HeaderMap, pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(k, v)| k == "format" && v == "csv")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))
}

/// The inventory's answer for a query: JSON (an array; the next page's cursor in
/// `X-Next-Cursor` and a `Link: rel="next"`) or CSV. The pages' exports call this too.
pub async fn export_response(
    state: &crate::api::AppState,
    pairs: &[(String, String)],
    csv: bool,
    base_path: &str,
) -> ApiResult {
    let query = search::Query::parse(pairs)?;
    let page = search::run(
        &state.db,
        &state.config.summary,
        state.config.stale_days,
        &query,
    )
    .await?;
    let mut response = if csv {
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"hosts.csv\"",
                ),
            ],
            search::to_csv(&page.rows),
        )
            .into_response()
    } else {
        ok_json(Value::Array(
            page.rows
                .into_iter()
                .map(|r| Value::Object(r.summary))
                .collect(),
        ))
    };
    if let Some(next) = page.next {
        let mut qs: Vec<(String, String)> = query
            .to_pairs()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        if let Some(l) = query.limit {
            qs.push(("limit".into(), l.to_string()));
        }
        qs.push(("cursor".into(), next.clone()));
        let link = format!(
            "<{base_path}?{}>; rel=\"next\"",
            crate::ui::query_string(&qs)
        );
        let h = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&next) {
            h.insert("x-next-cursor", v);
        }
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    Ok(response)
}

pub async fn list(state: AppStateRef, headers: HeaderMap, q: Pairs) -> ApiResult {
    let pairs = pairs(q)?;
    export_response(&state, &pairs, wants_csv(&headers, &pairs), "/api/v1/hosts").await
}

/// A host's id by name, or the 404 problem.
pub async fn host_id_or_404(db: &Db, hostname: &str) -> Result<i64, ApiError> {
    store::host_id(db, hostname)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_host", format!("no host named {hostname:?}")))
}

/// `?at=` as a time: RFC 3339, or a date (`YYYY-MM-DD`, the end of that day UTC).
pub fn parse_at(v: &str) -> Result<i64, ApiError> {
    crate::clock::parse_rfc3339(v)
        .or_else(|| crate::clock::parse_rfc3339(&format!("{v}T23:59:59Z")))
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_query",
                format!("query parameter at={v:?}: expected YYYY-MM-DD or an RFC 3339 time"),
            )
        })
}

pub async fn detail(
    state: AppStateRef,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    q: Pairs,
) -> ApiResult {
    let hostname = host_path(hostname)?;
    let pairs = pairs(q)?;
    let at = match pairs.iter().find(|(k, _)| k == "at") {
        Some((_, v)) => Some(parse_at(v)?),
        None => None,
    };
    match store::host_detail(&state.db, &hostname, at).await? {
        Some(v) => Ok(ok_json(v)),
        None => Err(ApiError::not_found(
            "unknown_host",
            format!("no host named {hostname:?}"),
        )),
    }
}

pub async fn reports(
    state: AppStateRef,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult {
    let hostname = host_path(hostname)?;
    let id = host_id_or_404(&state.db, &hostname).await?;
    let rows = history::reports(&state.db, id, 1000).await?;
    Ok(ok_json(Value::Array(
        rows.iter().map(|r| r.to_json()).collect(),
    )))
}

/// The difference between the host after two of its reports.
pub async fn diff_value(db: &Db, hostname: &str, from: &str, to: &str) -> Result<Value, ApiError> {
    let id = host_id_or_404(db, hostname).await?;
    let find = |rid: &str| {
        let rid = rid.to_owned();
        async move {
            history::report(db, id, &rid).await?.ok_or_else(|| {
                ApiError::not_found(
                    "unknown_report",
                    format!("host {hostname:?} has no applied report {rid:?}"),
                )
            })
        }
    };
    let a = find(from).await?;
    let b = find(to).await?;
    let sa = history::state(db, id, history::Cut::AfterChange(a.last_change_id)).await?;
    let sb = history::state(db, id, history::Cut::AfterChange(b.last_change_id)).await?;
    Ok(json!({
        "hostname": hostname,
        "from": a.to_json(),
        "to": b.to_json(),
        "changes": history::diff(&sa, &sb),
    }))
}

pub async fn diff(
    state: AppStateRef,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    q: Pairs,
) -> ApiResult {
    let hostname = host_path(hostname)?;
    let pairs = pairs(q)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty() && v.len() <= 64)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "bad_query",
                    format!("query parameter {name} (a report id) is required"),
                )
            })
    };
    let (from, to) = (get("from")?, get("to")?);
    Ok(ok_json(diff_value(&state.db, &hostname, &from, &to).await?))
}

pub async fn fields(
    state: AppStateRef,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult {
    let hostname = host_path(hostname)?;
    let id = host_id_or_404(&state.db, &hostname).await?;
    let mut v = store::host_fields(&state.db, id).await?;
    v["changes"] = Value::Array(store::field_changes(&state.db, id, 1000).await?);
    Ok(ok_json(v))
}

pub async fn summary(state: AppStateRef) -> ApiResult {
    Ok(ok_json(
        store::dashboard(&state.db, &state.config.summary, state.config.stale_days).await?,
    ))
}
