//! The web pages under `/ui/`: server-rendered HTML (askama templates in `server/templates/`,
//! checked at compile time), one small stylesheet embedded in the binary, no script needed,
//! nothing fetched from elsewhere.
//!
//! The door: a session cookie (see [`crate::users`]), never an API signature. `/ui/login` and
//! `/ui/static/*` are open; every other page needs a session; every POST needs the session's CSRF
//! token in its form (`csrf`), and every POST but logout needs an admin. Every page answers with a
//! strict Content-Security-Policy (`'self'` only, no inline script or style).

mod admin;
mod charts;
mod pages;

use std::net::IpAddr;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::AppState;
use crate::users::{self, Role, Session};

/// The client's address (inserted by the connection loop), for the login rate limit.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

pub const SESSION_COOKIE: &str = "auto_session";
const LOGIN_COOKIE: &str = "auto_login";

/// Whether a path belongs to the pages (served without an API signature).
pub fn is_page_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// `k=v&k=v`, form-encoded.
pub fn query_string(pairs: &[(String, String)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(to_ui))
        .route("/ui", get(to_ui))
        .route("/ui/", get(pages::dashboard))
        .route("/ui/login", get(login_form).post(login_post))
        .route("/ui/logout", post(logout))
        .route("/ui/static/{file}", get(asset))
        .route("/ui/hosts", get(pages::inventory))
        .route("/ui/hosts/export", get(pages::export))
        .route("/ui/hosts/{hostname}", get(pages::host))
        .route("/ui/hosts/{hostname}/diff", get(pages::diff))
        .route("/ui/hosts/{hostname}/fields", post(admin::fields_post))
        .route("/ui/changes", get(pages::changes))
        .route("/ui/errors", get(pages::errors))
        .route("/ui/admin/keys", get(admin::keys).post(admin::keys_post))
        .route("/ui/admin/hosts", get(admin::hosts).post(admin::hosts_post))
        .route("/ui/admin/users", get(admin::users).post(admin::users_post))
        .route_layer(axum::middleware::from_fn_with_state(state, require_session))
}

async fn to_ui() -> Response {
    redirect("/ui/")
}

pub fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// What every page's header needs.
pub struct Nav {
    pub user: String,
    pub admin: bool,
    pub csrf: String,
    pub active: &'static str,
}

impl Nav {
    pub fn new(s: &Session, active: &'static str) -> Nav {
        Nav {
            user: s.user.clone(),
            admin: s.role == Role::Admin,
            csrf: s.csrf.clone(),
            active,
        }
    }
}

/// Security headers every page carries.
fn harden(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'; connect-src 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A rendered page, or a plain 500 when the template fails (it cannot: checked at build time,
/// but rendering a value can still fail on a formatter).
pub fn html(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => harden(
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page rendering failed").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub nav: Option<Nav>,
    pub title: String,
    pub message: String,
}

/// A page that only says something (refusals, errors, not found).
pub fn message(status: StatusCode, nav: Option<Nav>, title: &str, message: &str) -> Response {
    html(
        status,
        &MessagePage {
            nav,
            title: title.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// A failure of a page's handler, rendered as a page.
pub struct PageError(pub Response);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> PageError {
        tracing::error!(error = %e, "database request failed (page)");
        let mut r = message(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "Database unavailable",
            "The database cannot answer now. Try again in a moment.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        PageError(r)
    }
}

impl From<crate::api::ApiError> for PageError {
    fn from(e: crate::api::ApiError) -> PageError {
        match e {
            crate::api::ApiError::Db(e) => e.into(),
            crate::api::ApiError::Problem { status, detail, .. } => {
                PageError(message(status, None, "Cannot show this", &detail))
            }
        }
    }
}

pub type PageResult = Result<Response, PageError>;

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the cookie gets `Secure`: the server is told so, or a proxy says it came over TLS.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session gate of every page (see the module's docs).
async fn require_session(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/" || path == "/ui" || path == "/ui/login" || path.starts_with("/ui/static/") {
        return next.run(request).await;
    }
    let token = cookie(request.headers(), SESSION_COOKIE);
    let session = match &token {
        Some(t) => match users::session(&state.db, t).await {
            Ok(s) => s,
            Err(e) => return PageError::from(e).0,
        },
        None => None,
    };
    let Some(session) = session else {
        if request.method() == Method::GET {
            let target = request
                .uri()
                .path_and_query()
                .map_or("/ui/".to_owned(), |p| p.as_str().to_owned());
            return redirect(&format!(
                "/ui/login?{}",
                query_string(&[("next".into(), target)])
            ));
        }
        return message(
            StatusCode::UNAUTHORIZED,
            None,
            "Not logged in",
            "Log in first (your session may have expired).",
        );
    };
    let (mut parts, body) = request.into_parts();
    if parts.method == Method::POST {
        let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    Some(Nav::new(&session, "")),
                    "Bad form",
                    "The form could not be read.",
                )
            }
        };
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let csrf_ok = form
            .iter()
            .any(|(k, v)| k == "csrf" && users::same_secret(v, &session.csrf));
        if !csrf_ok {
            tracing::warn!(user = %session.user, path, "form refused: bad CSRF token");
            return message(
                StatusCode::FORBIDDEN,
                Some(Nav::new(&session, "")),
                "Form expired",
                "This form is not from your current session. Reload the page and try again.",
            );
        }
        if path != "/ui/logout" && session.role != Role::Admin {
            return message(
                StatusCode::FORBIDDEN,
                Some(Nav::new(&session, "")),
                "Admins only",
                "Only an admin may change this.",
            );
        }
        parts.extensions.insert(session);
        if let Some(t) = token {
            parts.extensions.insert(SessionToken(t));
        }
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    if path.starts_with("/ui/admin") && session.role != Role::Admin {
        return message(
            StatusCode::FORBIDDEN,
            Some(Nav::new(&session, "")),
            "Admins only",
            "This page is for admins. Your account may read everything else.",
        );
    }
    parts.extensions.insert(session);
    next.run(Request::from_parts(parts, body)).await
}

/// The raw token of the request's session (for logout).
#[derive(Clone)]
struct SessionToken(String);

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    title: String,
    csrf: String,
    next: String,
    error: String,
    user: String,
}

type Pairs =
    Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn param(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Only a path on the pages is a place to go after login.
fn safe_next(next: &str) -> String {
    if next.starts_with("/ui/") && !next.starts_with("//") && !next.contains('\\') {
        next.to_owned()
    } else {
        "/ui/".to_owned()
    }
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    error: &str,
    user: &str,
) -> Response {
    let csrf = users::random_token();
    let mut r = html(
        status,
        &LoginPage {
            nav: None,
            title: "Log in".into(),
            csrf: csrf.clone(),
            next: safe_next(next),
            error: error.to_owned(),
            user: user.to_owned(),
        },
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &csrf,
            "/ui/login",
            3600,
            secure(state, headers),
        ),
    );
    r
}

async fn login_form(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Pairs,
) -> PageResult {
    let pairs = q.map(|axum::extract::Query(p)| p).unwrap_or_default();
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        if users::session(&state.db, &t).await?.is_some() {
            return Ok(redirect(&safe_next(&param(&pairs, "next"))));
        }
    }
    Ok(login_page(
        &state,
        &headers,
        StatusCode::OK,
        &param(&pairs, "next"),
        "",
        "",
    ))
}

async fn login_post(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> PageResult {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (user, password, next, csrf) = (
        param(&form, "user"),
        param(&form, "password"),
        param(&form, "next"),
        param(&form, "csrf"),
    );
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !users::same_secret(&csrf, &expected) {
        return Ok(login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &next,
            "The login form expired: try again.",
            &user,
        ));
    }
    let address = addr.map_or("unknown".to_owned(), |a| a.0 .0.to_string());
    let ttl = state.config.session_ttl_secs;
    match users::login(&state.db, &user, &password, &address, ttl).await? {
        users::Login::Ok(token) => {
            let mut r = redirect(&safe_next(&next));
            let secure = secure(&state, &headers);
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, "/", ttl, secure),
            );
            r.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, "", "/ui/login", 0, secure),
            );
            Ok(r)
        }
        users::Login::Refused => Ok(login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &next,
            "Wrong user name or password.",
            &user,
        )),
        users::Login::Throttled => Ok(login_page(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            "Too many failed logins: wait 15 minutes and try again.",
            &user,
        )),
    }
}

async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    token: Option<axum::Extension<SessionToken>>,
) -> PageResult {
    if let Some(axum::Extension(SessionToken(t))) = token {
        users::logout(&state.db, &t).await?;
    }
    let mut r = redirect("/ui/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, secure(&state, &headers)),
    );
    Ok(r)
}

const CSS: &str = include_str!("../../ui/ui.css");

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    match file.as_str() {
        "ui.css" => harden(
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                CSS,
            )
                .into_response(),
        ),
        _ => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

/// A value as a cell's text: strings as they are, `*_bytes` numbers in binary units too,
/// arrays joined, flat objects as `key=value`.
pub fn show(name: &str, v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => match n.as_u64() {
            Some(b) if name.ends_with("_bytes") => human_bytes(b),
            _ => n.to_string(),
        },
        Value::Array(items) => items
            .iter()
            .map(|i| show(name, i))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", show(k, v)))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_show_generically() {
        assert_eq!(
            show("size_bytes", &serde_json::json!(34_359_738_368u64)),
            "32 GiB"
        );
        assert_eq!(
            show(
                "addresses",
                &serde_json::json!([{"address": "10.0.0.1", "prefix_len": 24}])
            ),
            "address=10.0.0.1 prefix_len=24"
        );
        assert_eq!(show("up", &serde_json::json!(true)), "yes");
    }

    #[test]
    fn next_stays_on_the_pages() {
        assert_eq!(safe_next("/ui/hosts?q=a"), "/ui/hosts?q=a");
        assert_eq!(safe_next("https://evil.example/"), "/ui/");
        assert_eq!(safe_next("//evil.example/ui/"), "/ui/");
    }
}
