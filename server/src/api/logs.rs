//! The change log and the error log.

use std::collections::HashMap;

use axum::extract::{Path, Query};
use axum::response::Response;
use serde_json::Value;

use super::{ok_json, page, ApiError, ApiResult, AppStateRef, QueryMap};
use crate::store::{self, ChangeFilter};

type HostPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

pub fn host_path(p: HostPath) -> Result<String, ApiError> {
    p.map(|Path(h)| h)
        .map_err(|e| ApiError::bad_request("bad_path", format!("bad path: {e}")))
}

fn filter_of(q: &HashMap<String, String>) -> Result<ChangeFilter, ApiError> {
    let text = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    let date = |k: &str, end: bool| -> Result<Option<i64>, ApiError> {
        match text(k) {
            None => Ok(None),
            Some(v) => crate::clock::parse_rfc3339(&v)
                .or_else(|| {
                    crate::clock::parse_rfc3339(&format!("{v}T00:00:00Z")).map(|t| {
                        if end {
                            t + 86_400
                        } else {
                            t
                        }
                    })
                })
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_query",
                        format!(
                            "query parameter {k}={v:?}: expected YYYY-MM-DD or an RFC 3339 time"
                        ),
                    )
                }),
        }
    };
    let action = text("action");
    if let Some(a) = &action {
        if !["added", "removed", "changed"].contains(&a.as_str()) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("query parameter action={a:?}: expected added, removed or changed"),
            ));
        }
    }
    Ok(ChangeFilter {
        host_id: None,
        component: text("component"),
        action,
        since: date("since", false)?,
        until: date("until", true)?,
    })
}

fn query_map(q: &QueryMap) -> HashMap<String, String> {
    q.as_ref().map(|Query(m)| m.clone()).unwrap_or_default()
}

pub async fn host_changes(state: AppStateRef, hostname: HostPath, query: QueryMap) -> ApiResult {
    let hostname = host_path(hostname)?;
    let map = query_map(&query);
    let (limit, before) = page(query)?;
    let mut filter = filter_of(&map)?;
    let Some(id) = store::host_id(&state.db, &hostname).await? else {
        return Err(ApiError::not_found(
            "unknown_host",
            format!("no host named {hostname:?}"),
        ));
    };
    filter.host_id = Some(id);
    let rows = store::changes(&state.db, &filter, limit, before).await?;
    Ok(ok_json(Value::Array(rows)))
}

/// The fleet's change feed; `host` filters by host name (an unknown name gives no rows).
pub async fn changes_value(
    state: &crate::api::AppState,
    map: &HashMap<String, String>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Value>, ApiError> {
    let mut filter = filter_of(map)?;
    if let Some(h) = map.get("host").filter(|h| !h.is_empty()) {
        match store::host_id(&state.db, h).await? {
            Some(id) => filter.host_id = Some(id),
            None => return Ok(Vec::new()),
        }
    }
    Ok(store::changes(&state.db, &filter, limit, before).await?)
}

pub async fn all_changes(state: AppStateRef, query: QueryMap) -> ApiResult {
    let map = query_map(&query);
    let (limit, before) = page(query)?;
    Ok(ok_json(Value::Array(
        changes_value(&state, &map, limit, before).await?,
    )))
}

pub async fn moved(state: AppStateRef) -> ApiResult {
    Ok(ok_json(Value::Array(
        store::moved_parts(&state.db, 20_000).await?,
    )))
}

pub async fn errors(state: AppStateRef, query: QueryMap) -> Result<Response, ApiError> {
    let map = query_map(&query);
    let (limit, before) = page(query)?;
    let text = |k: &str| map.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let rows = store::errors(&state.db, text("host"), text("code"), limit, before).await?;
    Ok(ok_json(Value::Array(rows)))
}
