//! Hosts: the inventory, one host's asset, registration for ssh/salt collection, the pending list.

use auto_proto::{NewHost, PendingHost};
use axum::body::Bytes;
use axum::http::StatusCode;
use serde_json::Value;

use super::logs::host_path;
use super::{json_response, ok_json, ApiError, ApiResult, AppStateRef};
use crate::clock::now;
use crate::db::Db;
use crate::report::valid_hostname;
use crate::store;

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

pub async fn list(state: AppStateRef) -> ApiResult {
    Ok(ok_json(Value::Array(store::list_hosts(&state.db).await?)))
}

pub async fn detail(
    state: AppStateRef,
    hostname: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult {
    let hostname = host_path(hostname)?;
    match store::host_detail(&state.db, &hostname).await? {
        Some(v) => Ok(ok_json(v)),
        None => Err(ApiError::not_found(
            "unknown_host",
            format!("no host named {hostname:?}"),
        )),
    }
}
