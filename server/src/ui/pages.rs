//! The pages everyone with a session reads. Each calls the same functions as its API endpoint
//! (`store`, `search`, `history`), so a page never shows what the API cannot.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use serde_json::Value;

use super::{charts, html, query_string, show, Nav, PageResult};
use crate::api::AppState;
use crate::clock::rfc3339;
use crate::search;
use crate::store::{self, ChangeFilter};
use crate::users::Session;

type Pairs = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn pairs(q: Pairs) -> Vec<(String, String)> {
    q.map(|Query(p)| p).unwrap_or_default()
}

fn param(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-11-23 09:41 UTC` from an RFC 3339 value.
fn when(v: &Value) -> String {
    let s = text(v);
    if s.len() >= 16 {
        format!("{} {} UTC", &s[..10], &s[11..16])
    } else {
        s
    }
}

/// A generic table: a caption, column names, rows of cell texts.
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One change row as the timeline and the feed show it.
pub struct ChangeRow {
    pub at: String,
    pub hostname: String,
    pub component: String,
    pub item: String,
    pub action: String,
    pub old: String,
    pub new: String,
}

fn change_rows(rows: &[Value]) -> Vec<ChangeRow> {
    rows.iter()
        .map(|c| {
            let item = text(&c["item"]);
            ChangeRow {
                at: when(&c["at"]),
                hostname: text(&c["hostname"]),
                component: text(&c["component"]),
                old: show(&item, &c["old"]),
                new: show(&item, &c["new"]),
                action: text(&c["action"]),
                item,
            }
        })
        .collect()
}

pub struct ErrorRow {
    pub at: String,
    pub hostname: String,
    pub code: String,
    pub plugin: String,
    pub message: String,
}

fn error_rows(rows: &[Value]) -> Vec<ErrorRow> {
    rows.iter()
        .map(|e| ErrorRow {
            at: when(&e["at"]),
            hostname: text(&e["hostname"]),
            code: text(&e["code"]),
            plugin: text(&e["plugin"]),
            message: text(&e["message"]),
        })
        .collect()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: Option<Nav>,
    title: String,
    hosts: i64,
    today: i64,
    stale: i64,
    never: i64,
    stale_days: i64,
    shared: Vec<(String, String, Vec<String>)>,
    failing: Vec<(String, i64)>,
    charts: Vec<(String, String)>,
    recent: Vec<ChangeRow>,
}

pub async fn dashboard(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
) -> PageResult {
    let d = store::dashboard(&state.db, &state.config.summary, state.config.stale_days).await?;
    let num = |k: &str| d[k].as_i64().unwrap_or(0);
    let shared = d["shared_identities"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| {
                    (
                        text(&g["identity"]).replace('_', " "),
                        text(&g["value"]),
                        g["hosts"]
                            .as_array()
                            .map(|h| h.iter().map(text).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let failing = d["failing_collectors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| (text(&f["collector"]), f["hosts"].as_i64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut chart_list = Vec::new();
    for (key, title) in [
        ("os", "Operating systems"),
        ("vendor", "Vendors"),
        ("model", "Models"),
        ("memory_bytes", "Memory size"),
    ] {
        let bars: Vec<(String, i64)> = d["charts"][key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|b| (show(key, &b["value"]), b["hosts"].as_i64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        chart_list.push((title.to_owned(), charts::bars(title, &bars)));
    }
    let recent = change_rows(d["recent_changes"].as_array().map_or(&[][..], |v| v));
    Ok(html(
        StatusCode::OK,
        &Dashboard {
            nav: Some(Nav::new(&s, "dashboard")),
            title: "Dashboard".into(),
            hosts: num("hosts"),
            today: num("reported_today"),
            stale: num("stale"),
            never: num("never_reported"),
            stale_days: state.config.stale_days,
            shared,
            failing,
            charts: chart_list,
            recent,
        },
    ))
}

pub struct InvRow {
    pub hostname: String,
    pub os: String,
    pub vendor: String,
    pub model: String,
    pub memory: String,
    pub serial: String,
    pub last_seen: String,
    pub owner: String,
    pub tags: String,
    pub flags: String,
}

/// A select's options: value and whether it is the chosen one.
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn options(values: &[(String, String)], chosen: &str) -> Vec<Opt> {
    values
        .iter()
        .map(|(v, l)| Opt {
            value: v.clone(),
            label: l.clone(),
            selected: v == chosen,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "inventory.html")]
struct Inventory {
    nav: Option<Nav>,
    title: String,
    q: String,
    os: Vec<Opt>,
    vendor: Vec<Opt>,
    memory_min: String,
    memory_max: String,
    seen_after: String,
    seen_before: String,
    stale: Vec<Opt>,
    errors: Vec<Opt>,
    tag: String,
    sort: Vec<Opt>,
    order: Vec<Opt>,
    rows: Vec<InvRow>,
    next: String,
    export_csv: String,
    export_json: String,
    api: String,
    error: String,
}

type Choices = Vec<(String, String)>;

/// The values a filter's drop-down offers, kept a minute per process (reading them costs a pass
/// over one fact of every host).
type CachedChoices = ((String, String), std::time::Instant, Choices);
static CHOICES: std::sync::Mutex<Vec<CachedChoices>> = std::sync::Mutex::new(Vec::new());

async fn distinct(state: &AppState, fact: &search::FactRef) -> Result<Choices, sqlx::Error> {
    let key = (fact.kind.clone(), fact.item.clone());
    if let Ok(cache) = CHOICES.lock() {
        if let Some((_, at, v)) = cache.iter().find(|(k, _, _)| *k == key) {
            if at.elapsed() < std::time::Duration::from_secs(60) {
                return Ok(v.clone());
            }
        }
    }
    let fresh = distinct_now(state, fact).await?;
    if let Ok(mut cache) = CHOICES.lock() {
        cache.retain(|(k, _, _)| *k != key);
        cache.push((key, std::time::Instant::now(), fresh.clone()));
    }
    Ok(fresh)
}

async fn distinct_now(state: &AppState, fact: &search::FactRef) -> Result<Choices, sqlx::Error> {
    let d = sqlx::query(
        "SELECT DISTINCT data FROM components WHERE kind = $1 AND item = $2 ORDER BY data LIMIT 100",
    )
    .bind(&fact.kind)
    .bind(&fact.item)
    .fetch_all(&state.db.read)
    .await?;
    use sqlx::Row;
    let mut out = vec![(String::new(), "any".to_owned())];
    for r in d {
        if let Ok(Value::String(s)) =
            serde_json::from_str::<Value>(&r.try_get::<String, _>("data")?)
        {
            out.push((s.clone(), s));
        }
    }
    Ok(out)
}

pub async fn inventory(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    q: Pairs,
) -> PageResult {
    let pairs = pairs(q);
    let mut with_limit = pairs.clone();
    if !with_limit.iter().any(|(k, _)| k == "limit") {
        with_limit.push(("limit".into(), "50".into()));
    }
    let (rows, next, error) = match search::Query::parse(&with_limit) {
        Ok(query) => {
            let page = search::run(
                &state.db,
                &state.config.summary,
                state.config.stale_days,
                &query,
            )
            .await?;
            (page.rows, page.next, String::new())
        }
        Err(crate::api::ApiError::Problem { detail, .. }) => (Vec::new(), None, detail),
        Err(crate::api::ApiError::Db(e)) => return Err(e.into()),
    };
    let rows = rows
        .into_iter()
        .map(|r| {
            let m = &r.summary;
            let mut flags = Vec::new();
            if m["stale"] == Value::Bool(true) {
                flags.push("stale");
            }
            if m["has_errors"] == Value::Bool(true) {
                flags.push("errors");
            }
            InvRow {
                hostname: text(&m["hostname"]),
                os: format!("{} {}", text(&m["os"]), text(&m["os_version"]))
                    .trim()
                    .to_owned(),
                vendor: text(&m["vendor"]),
                model: text(&m["model"]),
                memory: show("memory_bytes", &m["memory_bytes"]),
                serial: text(&m["serial"]),
                last_seen: when(&m["last_report_at"]),
                owner: text(&m["owner"]),
                tags: show("tags", &m["tags"]),
                flags: flags.join(", "),
            }
        })
        .collect();
    let base: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, v)| k != "cursor" && k != "limit" && !v.is_empty())
        .cloned()
        .collect();
    let next = next
        .map(|c| {
            let mut p = base.clone();
            p.push(("cursor".into(), c));
            format!("/ui/hosts?{}", query_string(&p))
        })
        .unwrap_or_default();
    let mut csv = base.clone();
    csv.push(("format".into(), "csv".into()));
    let mut json = base.clone();
    json.push(("format".into(), "json".into()));
    let p = |k: &str| param(&pairs, k);
    let yes_no = [
        (String::new(), "any".to_owned()),
        ("true".to_owned(), "yes".to_owned()),
        ("false".to_owned(), "no".to_owned()),
    ];
    let sorts: Vec<(String, String)> = search::Sort::ALL
        .iter()
        .map(|(n, _)| ((*n).to_owned(), n.replace('_', " ")))
        .collect();
    Ok(html(
        StatusCode::OK,
        &Inventory {
            nav: Some(Nav::new(&s, "hosts")),
            title: "Inventory".into(),
            q: p("q"),
            os: options(&distinct(&state, &state.config.summary.os).await?, &p("os")),
            vendor: options(
                &distinct(&state, &state.config.summary.vendor).await?,
                &p("vendor"),
            ),
            memory_min: p("memory_min_gib"),
            memory_max: p("memory_max_gib"),
            seen_after: p("seen_after"),
            seen_before: p("seen_before"),
            stale: options(&yes_no, &p("stale")),
            errors: options(&yes_no, &p("errors")),
            tag: p("tag"),
            sort: options(&sorts, &p("sort")),
            order: options(
                &[
                    ("asc".to_owned(), "ascending".to_owned()),
                    ("desc".to_owned(), "descending".to_owned()),
                ],
                &p("order"),
            ),
            rows,
            next,
            export_csv: format!("/ui/hosts/export?{}", query_string(&csv)),
            export_json: format!("/ui/hosts/export?{}", query_string(&json)),
            api: format!("/api/v1/hosts?{}", query_string(&base)),
            error,
        },
    ))
}

/// Exactly the filtered set, every page of it, as CSV or JSON: the API's own answer.
pub async fn export(State(state): State<Arc<AppState>>, q: Pairs) -> PageResult {
    let pairs: Vec<(String, String)> = pairs(q)
        .into_iter()
        .filter(|(k, _)| k != "limit" && k != "cursor")
        .collect();
    let csv = param(&pairs, "format") != "json";
    let mut r = crate::api::export_response(&state, &pairs, csv, "/api/v1/hosts").await?;
    if !csv {
        r.headers_mut().insert(
            axum::http::header::CONTENT_DISPOSITION,
            axum::http::HeaderValue::from_static("attachment; filename=\"hosts.json\""),
        );
    }
    Ok(r)
}

pub struct ListView {
    pub name: String,
    pub unavailable: String,
    pub table: Table,
}

pub struct CollectorView {
    pub name: String,
    pub facts: Vec<(String, String)>,
    pub volatile: Vec<(String, String)>,
    pub lists: Vec<ListView>,
}

/// Every collector's facts and part lists, generically: a list's columns are the union of its
/// parts' attributes (in first-seen order, `id` first).
fn collectors(plugins: &Value) -> Vec<CollectorView> {
    let mut out = Vec::new();
    let Some(map) = plugins.as_object() else {
        return out;
    };
    for (name, p) in map {
        let kv = |section: &str| -> Vec<(String, String)> {
            p[section]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), show(k, v))).collect())
                .unwrap_or_default()
        };
        let mut lists = Vec::new();
        if let Some(ls) = p["lists"].as_object() {
            for (lname, l) in ls {
                let parts = l["parts"].as_array().cloned().unwrap_or_default();
                let mut columns: Vec<String> = vec!["id".into()];
                let mut seen: BTreeSet<String> = BTreeSet::from(["id".to_owned()]);
                for part in &parts {
                    if let Some(m) = part.as_object() {
                        for k in m.keys() {
                            if seen.insert(k.clone()) {
                                columns.push(k.clone());
                            }
                        }
                    }
                }
                let rows = parts
                    .iter()
                    .map(|part| columns.iter().map(|c| show(c, &part[c])).collect())
                    .collect();
                let unavailable = match l["unavailable"].as_str() {
                    Some(why) => format!(
                        "Not seen since {}: {why}. These are the last known parts.",
                        when(&l["unavailable_since"])
                    ),
                    None => String::new(),
                };
                lists.push(ListView {
                    name: lname.clone(),
                    unavailable,
                    table: Table {
                        caption: format!("{name}: {lname} ({} parts)", parts.len()),
                        columns,
                        rows,
                    },
                });
            }
        }
        out.push(CollectorView {
            name: name.clone(),
            facts: kv("facts"),
            volatile: kv("volatile"),
            lists,
        });
    }
    out
}

pub struct FieldView {
    pub name: String,
    pub label: String,
    pub value: String,
    pub multiline: bool,
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPage {
    nav: Option<Nav>,
    title: String,
    hostname: String,
    path: String,
    identity: Vec<(String, String)>,
    /// The hypervisor this host runs on: (host name, its page, what it calls this guest).
    runs_on: Option<(String, String, String)>,
    /// For a hypervisor, its guests that are hosts here: (host name, page, name and state there).
    guests: Vec<(String, String, String)>,
    fields: Vec<FieldView>,
    fields_note: String,
    field_changes: Vec<(String, String, String, String, String)>,
    at: String,
    as_of: String,
    collectors: Vec<CollectorView>,
    changes: Vec<ChangeRow>,
    errors: Vec<ErrorRow>,
    reports: Vec<Opt>,
    reports_to: Vec<Opt>,
    admin: bool,
}

pub async fn host(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    Path(hostname): Path<String>,
    q: Pairs,
) -> PageResult {
    let pairs = pairs(q);
    let at_text = param(&pairs, "at");
    let at = if at_text.is_empty() {
        None
    } else {
        Some(crate::api::parse_at(&at_text)?)
    };
    let Some(detail) = store::host_detail(&state.db, &hostname, at).await? else {
        return Ok(super::message(
            StatusCode::NOT_FOUND,
            Some(Nav::new(&s, "hosts")),
            "No such host",
            &format!("No host is named {hostname:?}."),
        ));
    };
    let id = crate::api::host_id_or_404(&state.db, &hostname).await?;
    let name = text(&detail["hostname"]);
    let identity = [
        ("Host name", text(&detail["hostname"])),
        ("Address", text(&detail["address"])),
        ("Serial", text(&detail["serial"])),
        ("System UUID", text(&detail["system_uuid"])),
        ("Machine ID", text(&detail["machine_id"])),
        ("First known", when(&detail["created_at"])),
        ("Last report", when(&detail["last_report_at"])),
        ("Last report id", text(&detail["last_report_id"])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let guest_link = |l: &Value| {
        let host = text(&l["hostname"]);
        let mut about = [text(&l["guest_name"]), text(&l["state"])]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        if l["uuid_match"] == "byte_swapped" {
            about.push_str(" (UUID matched byte-swapped)");
        }
        let page = format!("/ui/hosts/{}", url_segment(&host));
        (host, page, about)
    };
    let runs_on = Some(&detail["hypervisor"])
        .filter(|h| h.is_object())
        .map(guest_link);
    let guests = detail["guests_in_cmdb"]
        .as_array()
        .map(|a| a.iter().map(guest_link).collect())
        .unwrap_or_default();
    let f = &detail["fields"];
    let fields = store::FIELDS
        .iter()
        .map(|n| FieldView {
            name: (*n).to_owned(),
            label: match *n {
                "tags" => "Tags (comma-separated)".to_owned(),
                other => {
                    let mut c = other.chars();
                    c.next()
                        .map(|first| first.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                }
            },
            value: text(&f[*n]),
            multiline: *n == "notes",
        })
        .collect();
    let fields_note = match f["updated_by"].as_str() {
        Some(by) => format!("Last changed by {by}, {}.", when(&f["updated_at"])),
        None => "Never set.".to_owned(),
    };
    let field_changes = store::field_changes(&state.db, id, 50)
        .await?
        .iter()
        .map(|c| {
            (
                when(&c["at"]),
                text(&c["by"]),
                text(&c["field"]),
                text(&c["old"]),
                text(&c["new"]),
            )
        })
        .collect();
    let changes = store::changes(
        &state.db,
        &ChangeFilter {
            host_id: Some(id),
            ..ChangeFilter::default()
        },
        300,
        None,
    )
    .await?;
    let errors = store::errors(&state.db, Some(&name), None, 50, None).await?;
    let reports = crate::history::reports(&state.db, id, 200).await?;
    let report_opts: Vec<(String, String)> = reports
        .iter()
        .map(|r| {
            (
                r.report_id.clone(),
                format!(
                    "{} ({})",
                    when(&Value::String(rfc3339(r.received_at))),
                    &r.report_id[..8.min(r.report_id.len())]
                ),
            )
        })
        .collect();
    let older = report_opts.get(1).map(|r| r.0.clone()).unwrap_or_default();
    let newest = report_opts.first().map(|r| r.0.clone()).unwrap_or_default();
    Ok(html(
        StatusCode::OK,
        &HostPage {
            nav: Some(Nav::new(&s, "hosts")),
            title: name.clone(),
            path: format!("/ui/hosts/{}", url_segment(&name)),
            hostname: name,
            identity,
            runs_on,
            guests,
            fields,
            fields_note,
            field_changes,
            at: at_text,
            as_of: detail["as_of"]
                .as_str()
                .map(|t| when(&Value::String(t.to_owned())))
                .unwrap_or_default(),
            collectors: collectors(&detail["plugins"]),
            changes: change_rows(&changes),
            errors: error_rows(&errors),
            reports: options(&report_opts, &older),
            reports_to: options(&report_opts, &newest),
            admin: s.role == crate::users::Role::Admin,
        },
    ))
}

/// A host name as a path segment (host names are `[A-Za-z0-9._-]`, so this only guards).
pub fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    nav: Option<Nav>,
    title: String,
    hostname: String,
    path: String,
    from: String,
    to: String,
    changes: Vec<ChangeRow>,
}

pub async fn diff(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    Path(hostname): Path<String>,
    q: Pairs,
) -> PageResult {
    let pairs = pairs(q);
    let d = crate::api::diff_value(
        &state.db,
        &hostname,
        &param(&pairs, "from"),
        &param(&pairs, "to"),
    )
    .await?;
    let name = text(&d["hostname"]);
    let mut changes = d["changes"].as_array().cloned().unwrap_or_default();
    for c in &mut changes {
        c["hostname"] = Value::String(name.clone());
    }
    let label = |r: &Value| format!("{} ({})", when(&r["received_at"]), text(&r["report_id"]));
    Ok(html(
        StatusCode::OK,
        &DiffPage {
            nav: Some(Nav::new(&s, "hosts")),
            title: format!("{name}: differences"),
            path: format!("/ui/hosts/{}", url_segment(&name)),
            hostname: name,
            from: label(&d["from"]),
            to: label(&d["to"]),
            changes: change_rows(&changes),
        },
    ))
}

pub struct MovedRow {
    pub serial: String,
    pub component: String,
    pub from_host: String,
    pub removed_at: String,
    pub to_host: String,
    pub added_at: String,
}

#[derive(Template)]
#[template(path = "changes.html")]
struct ChangesPage {
    nav: Option<Nav>,
    title: String,
    host: String,
    component: String,
    action: Vec<Opt>,
    since: String,
    until: String,
    rows: Vec<ChangeRow>,
    older: String,
    moved: Vec<MovedRow>,
    error: String,
}

pub async fn changes(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    q: Pairs,
) -> PageResult {
    let pairs = pairs(q);
    let map: std::collections::HashMap<String, String> = pairs.iter().cloned().collect();
    let before = param(&pairs, "before").parse::<i64>().ok();
    let (rows, error) = match crate::api::changes_value(&state, &map, 100, before).await {
        Ok(r) => (r, String::new()),
        Err(crate::api::ApiError::Problem { detail, .. }) => (Vec::new(), detail),
        Err(crate::api::ApiError::Db(e)) => return Err(e.into()),
    };
    let older = match rows.last().and_then(|r| r["id"].as_i64()) {
        Some(id) if rows.len() == 100 => {
            let mut p: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k != "before")
                .cloned()
                .collect();
            p.push(("before".into(), id.to_string()));
            format!("/ui/changes?{}", query_string(&p))
        }
        _ => String::new(),
    };
    let moved = store::moved_parts(&state.db, 20_000)
        .await?
        .iter()
        .take(100)
        .map(|m| MovedRow {
            serial: text(&m["serial"]),
            component: text(&m["component"]),
            from_host: text(&m["from_host"]),
            removed_at: when(&m["removed_at"]),
            to_host: text(&m["to_host"]),
            added_at: when(&m["added_at"]),
        })
        .collect();
    let actions = [
        (String::new(), "any".to_owned()),
        ("added".to_owned(), "added".to_owned()),
        ("removed".to_owned(), "removed".to_owned()),
        ("changed".to_owned(), "changed".to_owned()),
    ];
    Ok(html(
        StatusCode::OK,
        &ChangesPage {
            nav: Some(Nav::new(&s, "changes")),
            title: "Changes".into(),
            host: param(&pairs, "host"),
            component: param(&pairs, "component"),
            action: options(&actions, &param(&pairs, "action")),
            since: param(&pairs, "since"),
            until: param(&pairs, "until"),
            rows: change_rows(&rows),
            older,
            moved,
            error,
        },
    ))
}

#[derive(Template)]
#[template(path = "errors.html")]
struct ErrorsPage {
    nav: Option<Nav>,
    title: String,
    host: String,
    code: String,
    rows: Vec<ErrorRow>,
    older: String,
}

pub async fn errors(
    State(state): State<Arc<AppState>>,
    Extension(s): Extension<Session>,
    q: Pairs,
) -> PageResult {
    let pairs = pairs(q);
    let before = param(&pairs, "before").parse::<i64>().ok();
    let (host, code) = (param(&pairs, "host"), param(&pairs, "code"));
    let rows = store::errors(
        &state.db,
        Some(host.as_str()).filter(|h| !h.is_empty()),
        Some(code.as_str()).filter(|c| !c.is_empty()),
        100,
        before,
    )
    .await?;
    let older = match rows.last().and_then(|r| r["id"].as_i64()) {
        Some(id) if rows.len() == 100 => {
            let mut p: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k != "before")
                .cloned()
                .collect();
            p.push(("before".into(), id.to_string()));
            format!("/ui/errors?{}", query_string(&p))
        }
        _ => String::new(),
    };
    Ok(html(
        StatusCode::OK,
        &ErrorsPage {
            nav: Some(Nav::new(&s, "errors")),
            title: "Errors".into(),
            host,
            code,
            rows: error_rows(&rows),
            older,
        },
    ))
}
