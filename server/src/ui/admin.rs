//! The admins' pages: keys, registered hosts, users, and the hand-entered fields' form. The
//! session gate has already checked the session, its CSRF token and the admin role for every
//! POST; the handlers only check their input.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use sqlx::Row;

use super::{html, redirect, Nav, PageResult};
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::users::{self, Role, Session};

fn form(body: &Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field(form: &[(String, String)], name: &str) -> String {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

pub async fn fields_post(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    Path(hostname): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = form(&body);
    let id = crate::api::host_id_or_404(&state.db, &hostname).await?;
    let values: Vec<(&str, Option<String>)> = crate::store::FIELDS
        .iter()
        .filter(|f| form.iter().any(|(k, _)| k == *f))
        .map(|f| {
            let v = field(&form, f);
            (*f, Some(v.chars().take(4000).collect::<String>()))
        })
        .collect();
    crate::store::set_host_fields(&state.db, id, &s.user, &values).await?;
    Ok(redirect(&format!(
        "/ui/hosts/{}#fields",
        super::pages::url_segment(&hostname)
    )))
}

pub struct KeyView {
    pub name: String,
    pub scope: String,
    pub created: String,
    pub state: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Option<Nav>,
    title: String,
    keys: Vec<KeyView>,
    secret: String,
    secret_name: String,
    error: String,
    can_create: bool,
}

async fn keys_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    secret: (String, String),
    error: String,
) -> PageResult {
    let keys = crate::keys::list(&state.db)
        .await
        .map_err(|e| {
            super::PageError(super::message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Database unavailable",
                &e.to_string(),
            ))
        })?
        .into_iter()
        .map(|k| KeyView {
            scope: match &k.hostname {
                Some(h) => format!("{} ({h})", k.scope),
                None => k.scope.clone(),
            },
            created: rfc3339(k.created_at),
            state: k
                .revoked_at
                .map_or("active".to_owned(), |t| format!("revoked {}", rfc3339(t))),
            active: k.revoked_at.is_none(),
            name: k.name,
        })
        .collect();
    Ok(html(
        status,
        &KeysPage {
            nav: Some(Nav::new(s, "keys")),
            title: "API keys".into(),
            keys,
            secret_name: secret.0,
            secret: secret.1,
            error,
            can_create: state.master.is_some(),
        },
    ))
}

pub async fn keys(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
) -> PageResult {
    keys_page(
        &state,
        &s,
        StatusCode::OK,
        Default::default(),
        String::new(),
    )
    .await
}

pub async fn keys_post(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    body: Bytes,
) -> PageResult {
    let form = form(&body);
    let name = field(&form, "name");
    if field(&form, "action") == "revoke" {
        return match crate::keys::revoke(&state.db, &name).await {
            Ok(()) => {
                tracing::info!(user = %s.user, key = %name, "key revoked on the pages");
                Ok(redirect("/ui/admin/keys"))
            }
            Err(e) => {
                keys_page(
                    &state,
                    &s,
                    StatusCode::BAD_REQUEST,
                    Default::default(),
                    format!("{e:#}"),
                )
                .await
            }
        };
    }
    let Some(master) = &state.master else {
        return keys_page(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            Default::default(),
            "this server runs without a master key (--no-auth): keys cannot be made".into(),
        )
        .await;
    };
    let host = field(&form, "host");
    let request = match (field(&form, "scope").as_str(), host.is_empty()) {
        ("fleet", true) => crate::keys::ScopeRequest::Fleet,
        ("read", true) => crate::keys::ScopeRequest::Read,
        ("admin", true) => crate::keys::ScopeRequest::Admin,
        ("host", false) => crate::keys::ScopeRequest::Host(&host),
        ("host", true) => {
            return keys_page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                Default::default(),
                "a host key needs a host name".into(),
            )
            .await
        }
        _ => {
            return keys_page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                Default::default(),
                "a host name is for host keys only".into(),
            )
            .await
        }
    };
    match crate::keys::create(&state.db, master, &name, request).await {
        Ok(secret) => {
            tracing::info!(user = %s.user, key = %name, "key created on the pages");
            keys_page(&state, &s, StatusCode::OK, (name, secret), String::new()).await
        }
        Err(e) => {
            keys_page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                Default::default(),
                format!("{e:#}"),
            )
            .await
        }
    }
}

#[derive(Template)]
#[template(path = "admin_hosts.html")]
struct HostsPage {
    nav: Option<Nav>,
    title: String,
    hosts: Vec<(String, String, String, String)>,
    message: String,
    error: String,
}

async fn hosts_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: String,
    error: String,
) -> PageResult {
    let hosts = sqlx::query(
        "SELECT hostname, address, port, last_report_at FROM hosts WHERE address IS NOT NULL ORDER BY lower(hostname)",
    )
    .fetch_all(&state.db.read)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get::<String, _>("hostname")?,
            r.try_get::<Option<String>, _>("address")?.unwrap_or_default(),
            r.try_get::<i64, _>("port")?.to_string(),
            r.try_get::<Option<i64>, _>("last_report_at")?
                .map_or("never".to_owned(), rfc3339),
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(html(
        status,
        &HostsPage {
            nav: Some(Nav::new(s, "admin_hosts")),
            title: "Registered hosts".into(),
            hosts,
            message,
            error,
        },
    ))
}

pub async fn hosts(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
) -> PageResult {
    hosts_page(&state, &s, StatusCode::OK, String::new(), String::new()).await
}

pub async fn hosts_post(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    body: Bytes,
) -> PageResult {
    let form = form(&body);
    let port = field(&form, "port");
    let port = if port.is_empty() {
        Some(22)
    } else {
        port.parse::<u16>().ok()
    };
    let Some(port) = port else {
        return hosts_page(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            String::new(),
            "port must be 1 to 65535".into(),
        )
        .await;
    };
    let new = auto_proto::NewHost {
        hostname: field(&form, "hostname"),
        address: field(&form, "address"),
        port,
    };
    match crate::api::register_host(&state.db, &new).await? {
        Ok(created) => {
            tracing::info!(user = %s.user, host = %new.hostname, "host registered on the pages");
            let what = if created { "registered" } else { "updated" };
            hosts_page(
                &state,
                &s,
                StatusCode::OK,
                format!("Host {} {what}.", new.hostname),
                String::new(),
            )
            .await
        }
        Err(e) => hosts_page(&state, &s, StatusCode::BAD_REQUEST, String::new(), e).await,
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    nav: Option<Nav>,
    title: String,
    users: Vec<(String, String, String, i64, bool)>,
    message: String,
    error: String,
}

async fn users_page(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    message: String,
    error: String,
) -> PageResult {
    let list = users::list(&state.db).await.map_err(|e| {
        super::PageError(super::message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Database unavailable",
            &e.to_string(),
        ))
    })?;
    Ok(html(
        status,
        &UsersPage {
            nav: Some(Nav::new(s, "users")),
            title: "Users".into(),
            users: list
                .into_iter()
                .map(|u| {
                    let me = u.name == s.user;
                    (u.name, u.role, rfc3339(u.created_at), u.sessions, me)
                })
                .collect(),
            message,
            error,
        },
    ))
}

pub async fn users(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
) -> PageResult {
    users_page(&state, &s, StatusCode::OK, String::new(), String::new()).await
}

pub async fn users_post(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    body: Bytes,
) -> PageResult {
    let form = form(&body);
    let name = field(&form, "name");
    let result = if field(&form, "action") == "remove" {
        if name == s.user {
            Err(anyhow::anyhow!("you cannot remove yourself"))
        } else {
            users::remove(&state.db, &name)
                .await
                .map(|()| format!("User {name} removed."))
        }
    } else {
        let role = Role::parse(&field(&form, "role")).unwrap_or(Role::Viewer);
        let password = form
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        users::add(&state.db, &name, role, &password)
            .await
            .map(|()| format!("User {name} added ({}).", role.as_str()))
    };
    match result {
        Ok(m) => {
            tracing::info!(user = %s.user, target = %name, "users changed on the pages");
            users_page(&state, &s, StatusCode::OK, m, String::new()).await
        }
        Err(e) => {
            users_page(
                &state,
                &s,
                StatusCode::BAD_REQUEST,
                String::new(),
                format!("{e:#}"),
            )
            .await
        }
    }
}
