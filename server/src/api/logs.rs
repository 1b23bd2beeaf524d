//! The change log and the error log.

use axum::extract::Path;
use axum::response::Response;
use serde_json::Value;

use super::{ok_json, page, ApiError, ApiResult, AppStateRef, QueryMap};
use crate::store;

type HostPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

pub fn host_path(p: HostPath) -> Result<String, ApiError> {
    p.map(|Path(h)| h)
        .map_err(|e| ApiError::bad_request("bad_path", format!("bad path: {e}")))
}

pub async fn host_changes(state: AppStateRef, hostname: HostPath, query: QueryMap) -> ApiResult {
    let hostname = host_path(hostname)?;
    let (limit, before) = page(query)?;
    let Some(id) = store::host_id(&state.db, &hostname).await? else {
        return Err(ApiError::not_found(
            "unknown_host",
            format!("no host named {hostname:?}"),
        ));
    };
    let rows = store::changes(&state.db, Some(id), limit, before).await?;
    Ok(ok_json(Value::Array(rows)))
}

pub async fn all_changes(state: AppStateRef, query: QueryMap) -> ApiResult {
    let (limit, before) = page(query)?;
    let rows = store::changes(&state.db, None, limit, before).await?;
    Ok(ok_json(Value::Array(rows)))
}

pub async fn errors(state: AppStateRef, query: QueryMap) -> Result<Response, ApiError> {
    let (limit, before) = page(query)?;
    let rows = store::errors(&state.db, limit, before).await?;
    Ok(ok_json(Value::Array(rows)))
}
