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

/// Longest value of a hand-entered field, in characters.
pub const MAX_FIELD_CHARS: usize = 4000;

/// The fields a `PUT /api/v1/hosts/{hostname}/fields` body sets: each a string (empty or `null`
/// clears it; `tags` may also be an array of strings), the fields it leaves out unchanged.
/// `Err` is the one-line reason, naming the field.
pub fn fields_from_body(body: &[u8]) -> Result<Vec<(&'static str, Option<String>)>, String> {
    let v = auto_proto::data::parse_strict(body)?;
    let Value::Object(m) = v else {
        return Err("the body must be a JSON object of fields".into());
    };
    if let Some(k) = m.keys().find(|k| !store::FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "{k:?} is not a hand-entered field (owner, location, rack, tags, notes)"
        ));
    }
    let mut out = Vec::new();
    for f in store::FIELDS {
        let Some(v) = m.get(f) else { continue };
        let text = match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Array(items) if f == "tags" => Some(
                items
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("tags: every tag must be a string")?
                    .join(", "),
            ),
            _ => return Err(format!("{f}: must be a string or null")),
        };
        if let Some(t) = &text {
            if t.chars().count() > MAX_FIELD_CHARS {
                return Err(format!("{f}: longer than {MAX_FIELD_CHARS} characters"));
            }
            if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                return Err(format!("{f}: control characters are not allowed"));
            }
        }
        out.push((f, text));
    }
    Ok(out)
}

/// `PUT /api/v1/hosts/{hostname}/fields`: admin keys only; each change logged with the key's
/// name (`key:NAME`).
pub async fn put_fields(
    state: AppStateRef,
    principal: Option<axum::Extension<crate::auth::Principal>>,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    body: Bytes,
) -> ApiResult {
    let by = match principal.map(|axum::Extension(p)| p) {
        Some(p) if p.scope == crate::auth::Scope::Admin => format!("key:{}", p.key),
        _ => {
            return Err(ApiError::Problem {
                status: StatusCode::FORBIDDEN,
                code: "forbidden",
                detail:
                    "only an admin key (keys create --scope admin) may edit hand-entered fields"
                        .into(),
            })
        }
    };
    let hostname = host_path(hostname)?;
    let id = host_id_or_404(&state.db, &hostname).await?;
    let values =
        fields_from_body(&body).map_err(|e| ApiError::bad_request("malformed_fields", e))?;
    let changed = store::set_host_fields(&state.db, id, &by, &values).await?;
    let mut v = store::host_fields(&state.db, id).await?;
    v["changed"] = json!(changed);
    Ok(ok_json(v))
}

pub async fn summary(state: AppStateRef) -> ApiResult {
    Ok(ok_json(
        store::dashboard(&state.db, &state.config.summary, state.config.stale_days).await?,
    ))
}
