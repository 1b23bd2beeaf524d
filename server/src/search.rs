//! The inventory's search and filters, shared by `GET /api/v1/hosts` and the inventory page.
//!
//! Search: every host has a set of lower-cased words in `search_tokens` — its name (and the
//! name's dot-separated labels), identity hints, every fact and every part attribute (whole
//! values and their words), and its hand-entered fields — rewritten by [`reindex`] when the host
//! changed. A query word matches a host when one of its words starts with it: a range scan on the
//! table's primary key `(token, host_id)`, the same on SQLite and PostgreSQL (`COLLATE "C"`, so
//! that the range is byte order there too). Several query words must all match.
//!
//! The summary columns (OS, vendor, model, memory) are facts named in `server/ui/summary.toml`
//! (embedded; `[summary]` in the config file overrides it): nothing here knows a collector.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use crate::api::ApiError;
use crate::clock::rfc3339;
use crate::db::Db;

/// Longest word kept in the index (longer values are cut to their words).
const MAX_TOKEN: usize = 96;
/// Most words one host keeps.
const MAX_TOKENS_PER_HOST: usize = 4000;

/// Adds a value's words: the whole value (lower-cased), and its words split at spaces and
/// punctuation (`.` `:` `-` `_` stay inside words: MACs, IPs, versions, serials).
pub fn tokens_of_text(text: &str, out: &mut BTreeSet<String>) {
    let lower = text.trim().to_lowercase();
    if lower.is_empty() {
        return;
    }
    if lower.len() <= MAX_TOKEN {
        out.insert(lower.clone());
    }
    for word in lower.split(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | ':' | '-' | '_')))
    {
        let word = word.trim_matches(|c| matches!(c, '.' | ':' | '-' | '_'));
        if !word.is_empty() && word.len() <= MAX_TOKEN {
            out.insert(word.to_owned());
        }
    }
}

pub fn tokens_of_value(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => tokens_of_text(s, out),
        Value::Number(n) => {
            out.insert(n.to_string());
        }
        Value::Array(items) => items.iter().for_each(|i| tokens_of_value(i, out)),
        Value::Object(m) => m.values().for_each(|i| tokens_of_value(i, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

/// The words of a host's name (and its dot-separated labels) and of its identity hints and
/// address.
pub fn tokens_of_host<'a>(
    hostname: &str,
    hints: impl IntoIterator<Item = Option<&'a str>>,
    out: &mut BTreeSet<String>,
) {
    tokens_of_text(hostname, out);
    for label in hostname.split('.') {
        tokens_of_text(label, out);
    }
    for v in hints.into_iter().flatten() {
        tokens_of_text(v, out);
    }
}

/// The words of one non-volatile component: a part's id (kinds with a dot are part lists) and
/// its value.
pub fn tokens_of_component(kind: &str, item: &str, value: &Value, out: &mut BTreeSet<String>) {
    if kind.contains('.') {
        tokens_of_text(item, out);
    }
    tokens_of_value(value, out);
}

/// The hand-entered fields whose words are indexed, in the order of `host_fields`' columns.
pub const FIELD_COLUMNS: [&str; 5] = ["owner", "location", "rack", "tags", "notes"];

/// Rewrites one host's search words from what is stored now (inside the caller's transaction).
pub async fn reindex(conn: &mut AnyConnection, host_id: i64) -> Result<(), sqlx::Error> {
    let mut tokens = BTreeSet::new();
    if let Some(h) = sqlx::query(
        "SELECT hostname, machine_id, serial, system_uuid, address FROM hosts WHERE id = $1",
    )
    .bind(host_id)
    .fetch_optional(&mut *conn)
    .await?
    {
        let hostname: String = h.try_get("hostname")?;
        let mut hints = Vec::new();
        for c in ["machine_id", "serial", "system_uuid", "address"] {
            hints.push(h.try_get::<Option<String>, _>(c)?);
        }
        tokens_of_host(&hostname, hints.iter().map(Option::as_deref), &mut tokens);
    }
    for r in
        sqlx::query("SELECT kind, item, data FROM components WHERE host_id = $1 AND volatile = 0")
            .bind(host_id)
            .fetch_all(&mut *conn)
            .await?
    {
        let kind: String = r.try_get("kind")?;
        let item: String = r.try_get("item")?;
        let value =
            serde_json::from_str::<Value>(&r.try_get::<String, _>("data")?).unwrap_or(Value::Null);
        tokens_of_component(&kind, &item, &value, &mut tokens);
    }
    if let Some(f) =
        sqlx::query("SELECT owner, location, rack, tags, notes FROM host_fields WHERE host_id = $1")
            .bind(host_id)
            .fetch_optional(&mut *conn)
            .await?
    {
        for c in FIELD_COLUMNS {
            if let Some(v) = f.try_get::<Option<String>, _>(c)? {
                tokens_of_text(&v, &mut tokens);
            }
        }
    }
    write_tokens(conn, host_id, tokens, false).await
}

/// Makes a host's stored search words `tokens` (the first [`MAX_TOKENS_PER_HOST`] in byte
/// order), writing only the difference: the words it had and no longer has are deleted, the new
/// ones inserted (a host whose parts changed a little keeps almost all its rows). `new_host`: the
/// host was created in this transaction and has no words yet (nothing is read). Three statements
/// at most, one for a new host, whatever the number of words.
pub async fn write_tokens(
    conn: &mut AnyConnection,
    host_id: i64,
    tokens: BTreeSet<String>,
    new_host: bool,
) -> Result<(), sqlx::Error> {
    let mut batch = crate::db::Batch::default();
    plan_tokens(&mut *conn, &mut batch, host_id, tokens, new_host).await?;
    batch.run(conn).await
}

/// [`write_tokens`], its writes added to `batch` (the stored words are read now).
pub async fn plan_tokens(
    conn: &mut AnyConnection,
    batch: &mut crate::db::Batch,
    host_id: i64,
    mut tokens: BTreeSet<String>,
    new_host: bool,
) -> Result<(), sqlx::Error> {
    if let Some(first_dropped) = tokens.iter().nth(MAX_TOKENS_PER_HOST).cloned() {
        let _ = tokens.split_off(&first_dropped);
    }
    let backend = crate::db::Backend::of(conn);
    let mut gone = Vec::new();
    if !new_host {
        // one row, a JSON array, instead of a row per word (a host has hundreds)
        let sql = format!(
            "SELECT {} AS tokens FROM search_tokens WHERE host_id = $1",
            backend.json_agg("token")
        );
        let stored: Option<String> = sqlx::query(&sql)
            .bind(host_id)
            .fetch_one(&mut *conn)
            .await?
            .try_get("tokens")?;
        let stored: Vec<String> = match stored {
            Some(text) => serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))?,
            None => Vec::new(),
        };
        for token in stored {
            if !tokens.remove(&token) {
                gone.push(token);
            }
        }
    }
    if !gone.is_empty() {
        batch.for_host_texts(
            backend,
            "DELETE FROM search_tokens WHERE host_id = $1 AND token IN (SELECT j.value FROM {rows})",
            host_id,
            &gone,
        );
    }
    if !tokens.is_empty() {
        // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT
        batch.for_host_texts(
            backend,
            "INSERT INTO search_tokens (host_id, token) SELECT $1, j.value FROM {rows} WHERE true \
             ON CONFLICT DO NOTHING",
            host_id,
            &tokens,
        );
    }
    Ok(())
}

/// Indexes the hosts that have no search words yet (a database from before migration 3).
pub async fn backfill(db: &Db) -> Result<usize, sqlx::Error> {
    let ids: Vec<i64> = sqlx::query(
        "SELECT id FROM hosts h WHERE NOT EXISTS (SELECT 1 FROM search_tokens t WHERE t.host_id = h.id)",
    )
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| r.try_get("id"))
    .collect::<Result<_, _>>()?;
    for chunk in ids.chunks(200) {
        let mut tx = db.begin_write().await?;
        for id in chunk {
            reindex(&mut tx, *id).await?;
        }
        tx.commit().await?;
    }
    Ok(ids.len())
}

/// A fact named `PLUGIN.FACT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactRef {
    pub kind: String,
    pub item: String,
}

impl<'de> Deserialize<'de> for FactRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FactRef, D::Error> {
        let s = String::deserialize(d)?;
        match s.split_once('.') {
            Some((k, i)) if !k.is_empty() && !i.is_empty() && !i.contains('.') => Ok(FactRef {
                kind: k.to_owned(),
                item: i.to_owned(),
            }),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} is not PLUGIN.FACT"
            ))),
        }
    }
}

/// Which facts the summary columns show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub os: FactRef,
    pub os_version: FactRef,
    pub vendor: FactRef,
    pub model: FactRef,
    pub memory_bytes: FactRef,
}

pub const DEFAULT_SUMMARY: &str = include_str!("../ui/summary.toml");

impl Default for Summary {
    fn default() -> Summary {
        toml::from_str(DEFAULT_SUMMARY).expect("the embedded summary.toml parses")
    }
}

/// What the inventory is asked for: search, filters, sort, page.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub q: String,
    pub os: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub memory_min_gib: Option<i64>,
    pub memory_max_gib: Option<i64>,
    pub seen_after: Option<i64>,
    pub seen_before: Option<i64>,
    pub stale: Option<bool>,
    pub errors: Option<bool>,
    pub tag: Option<String>,
    pub sort: Sort,
    pub desc: bool,
    pub cursor: Option<String>,
    /// `None`: every matching host (the bare `GET /api/v1/hosts`, and the exports).
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Hostname,
    LastSeen,
    Os,
    Vendor,
    Model,
    Memory,
}

impl Sort {
    pub const ALL: [(&'static str, Sort); 6] = [
        ("hostname", Sort::Hostname),
        ("last_seen", Sort::LastSeen),
        ("os", Sort::Os),
        ("vendor", Sort::Vendor),
        ("model", Sort::Model),
        ("memory", Sort::Memory),
    ];

    pub fn name(self) -> &'static str {
        Sort::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("hostname", |(n, _)| n)
    }
}

fn day(text: &str, end: bool) -> Option<i64> {
    crate::clock::parse_rfc3339(text).or_else(|| {
        crate::clock::parse_rfc3339(&format!("{text}T00:00:00Z")).map(|t| {
            if end {
                t + 86_400
            } else {
                t
            }
        })
    })
}

impl Query {
    /// From query-string pairs (the API's and the page's names are the same).
    pub fn parse(pairs: &[(String, String)]) -> Result<Query, ApiError> {
        let bad = |name: &str, v: &str, what: &str| {
            ApiError::bad_request("bad_query", format!("query parameter {name}={v:?}: {what}"))
        };
        let mut q = Query::default();
        for (k, v) in pairs {
            let v = v.trim();
            let text = || (!v.is_empty()).then(|| v.to_owned());
            let flag = |name: &str| match v {
                "" => Ok(None),
                "true" | "1" | "yes" => Ok(Some(true)),
                "false" | "0" | "no" => Ok(Some(false)),
                _ => Err(bad(name, v, "expected true or false")),
            };
            let gib = |name: &str| {
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (0..=1 << 30).contains(n))
                    .map(Some)
                    .ok_or_else(|| bad(name, v, "expected a whole number of GiB"))
            };
            let date = |name: &str, end: bool| {
                if v.is_empty() {
                    return Ok(None);
                }
                day(v, end)
                    .map(Some)
                    .ok_or_else(|| bad(name, v, "expected YYYY-MM-DD or an RFC 3339 time"))
            };
            match k.as_str() {
                "q" => {
                    if v.len() > 256 {
                        return Err(bad("q", v, "at most 256 bytes"));
                    }
                    q.q = v.to_owned();
                }
                "os" => q.os = text(),
                "vendor" => q.vendor = text(),
                "model" => q.model = text(),
                "memory_min_gib" => q.memory_min_gib = gib(k)?,
                "memory_max_gib" => q.memory_max_gib = gib(k)?,
                "seen_after" => q.seen_after = date(k, false)?,
                "seen_before" => q.seen_before = date(k, true)?,
                "stale" => q.stale = flag(k)?,
                "errors" => q.errors = flag(k)?,
                "tag" => q.tag = text().map(|t| t.to_lowercase()),
                "sort" if !v.is_empty() => {
                    q.sort = Sort::ALL
                        .iter()
                        .find(|(n, _)| *n == v)
                        .map(|(_, s)| *s)
                        .ok_or_else(|| {
                            bad(
                                "sort",
                                v,
                                "expected hostname, last_seen, os, vendor, model or memory",
                            )
                        })?;
                }
                "order" => match v {
                    "" | "asc" => q.desc = false,
                    "desc" => q.desc = true,
                    _ => return Err(bad("order", v, "expected asc or desc")),
                },
                "cursor" => q.cursor = text(),
                "limit" => {
                    q.limit = Some(
                        v.parse::<i64>()
                            .ok()
                            .filter(|n| (1..=1000).contains(n))
                            .ok_or_else(|| bad("limit", v, "expected 1 to 1000"))?,
                    )
                }
                _ => {}
            }
        }
        if let Some(c) = &q.cursor {
            if decode_cursor(c).is_none() {
                return Err(bad("cursor", c, "not a cursor this server gave"));
            }
        }
        Ok(q)
    }

    /// The query string that asks for the same set (without cursor and limit).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        let mut push = |k: &'static str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                p.push((k, v));
            }
        };
        push("q", Some(self.q.clone()));
        push("os", self.os.clone());
        push("vendor", self.vendor.clone());
        push("model", self.model.clone());
        push("memory_min_gib", self.memory_min_gib.map(|n| n.to_string()));
        push("memory_max_gib", self.memory_max_gib.map(|n| n.to_string()));
        push(
            "seen_after",
            self.seen_after.map(|t| rfc3339(t)[..10].to_owned()),
        );
        push(
            "seen_before",
            self.seen_before
                .map(|t| rfc3339(t - 86_400)[..10].to_owned()),
        );
        push("stale", self.stale.map(|b| b.to_string()));
        push("errors", self.errors.map(|b| b.to_string()));
        push("tag", self.tag.clone());
        if self.sort != Sort::Hostname {
            push("sort", Some(self.sort.name().to_owned()));
        }
        if self.desc {
            push("order", Some("desc".to_owned()));
        }
        p
    }
}

/// A cursor is the last row's sort key and id, as hex of a JSON pair.
fn encode_cursor(key: &Value, id: i64) -> String {
    hex::encode(json!([key, id]).to_string())
}

fn decode_cursor(c: &str) -> Option<(Value, i64)> {
    let bytes = hex::decode(c).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let id = v.get(1)?.as_i64()?;
    let key = v.get(0)?.clone();
    (key.is_string() || key.is_i64()).then_some((key, id))
}

/// Query parameters, numbered as they are pushed.
#[derive(Default)]
struct Params(Vec<Value>);

impl Params {
    fn push(&mut self, v: impl Into<Value>) -> String {
        self.0.push(v.into());
        format!("${}", self.0.len())
    }
}

/// One row of the inventory.
#[derive(Debug, Clone)]
pub struct HostRow {
    pub summary: Map<String, Value>,
}

/// A page of hosts, and the cursor of the next page (when there is one).
pub struct Page {
    pub rows: Vec<HostRow>,
    pub next: Option<String>,
}

/// Runs an inventory query.
pub async fn run(
    db: &Db,
    summary: &Summary,
    stale_days: i64,
    query: &Query,
) -> Result<Page, sqlx::Error> {
    let mut p = Params::default();
    let mut fact = |f: &FactRef| {
        let k = p.push(f.kind.clone());
        let i = p.push(f.item.clone());
        format!("(SELECT c.data FROM components c WHERE c.host_id = h.id AND c.kind = {k} AND c.item = {i})")
    };
    let os = fact(&summary.os);
    let os_version = fact(&summary.os_version);
    let vendor = fact(&summary.vendor);
    let model = fact(&summary.model);
    let memory = fact(&summary.memory_bytes);
    let now = crate::clock::now();
    let stale_before = crate::retention::stale_before(now, stale_days);
    let sb = p.push(stale_before);
    let inner = format!(
        "SELECT h.id, h.hostname, h.address, h.port, h.created_at, h.last_report_at, h.last_report_id, \
         h.machine_id, h.serial, h.system_uuid, {os} AS os, {os_version} AS os_version, {vendor} AS vendor, \
         {model} AS model, {memory} AS memory, \
         f.owner, f.location, f.rack, f.tags, f.notes, \
         CASE WHEN EXISTS (SELECT 1 FROM errors e WHERE e.report_id = h.last_report_id AND e.code = 'plugin_failed') THEN 1 ELSE 0 END AS failing, \
         CASE WHEN h.last_report_at IS NULL OR h.last_report_at < {sb} THEN 1 ELSE 0 END AS stale \
         FROM hosts h LEFT JOIN host_fields f ON f.host_id = h.id"
    );
    let inner_param_count = p.0.len();
    let mut wh: Vec<String> = Vec::new();
    for word in query.q.split_whitespace().take(8) {
        let w = word.to_lowercase();
        let lo = p.push(w.clone());
        let hi = p.push(format!("{w}\u{10FFFF}"));
        wh.push(format!(
            "t.id IN (SELECT s.host_id FROM search_tokens s WHERE s.token >= {lo} AND s.token < {hi})"
        ));
    }
    let json_text = |s: &str| Value::String(s.to_owned()).to_string();
    if let Some(v) = &query.os {
        wh.push(format!("t.os = {}", p.push(json_text(v))));
    }
    if let Some(v) = &query.vendor {
        wh.push(format!("t.vendor = {}", p.push(json_text(v))));
    }
    if let Some(v) = &query.model {
        wh.push(format!("t.model = {}", p.push(json_text(v))));
    }
    if let Some(n) = query.memory_min_gib {
        wh.push(format!("CAST(t.memory AS BIGINT) >= {}", p.push(n << 30)));
    }
    if let Some(n) = query.memory_max_gib {
        wh.push(format!("CAST(t.memory AS BIGINT) <= {}", p.push(n << 30)));
    }
    if let Some(t) = query.seen_after {
        wh.push(format!("t.last_report_at >= {}", p.push(t)));
    }
    if let Some(t) = query.seen_before {
        wh.push(format!("t.last_report_at < {}", p.push(t)));
    }
    if let Some(b) = query.stale {
        wh.push(format!("t.stale = {}", i64::from(b)));
    }
    if let Some(b) = query.errors {
        wh.push(format!("t.failing = {}", i64::from(b)));
    }
    if let Some(tag) = &query.tag {
        let v = p.push(tag.clone());
        wh.push(format!(
            "t.id IN (SELECT g.host_id FROM host_tags g WHERE g.tag = {v})"
        ));
    }
    // Sort key: text keys never NULL (''), numbers never NULL (-1), so the cursor compares.
    let (key, numeric) = match query.sort {
        Sort::Hostname => ("lower(t.hostname)", false),
        Sort::LastSeen => ("COALESCE(t.last_report_at, -1)", true),
        Sort::Os => ("COALESCE(t.os, '')", false),
        Sort::Vendor => ("COALESCE(t.vendor, '')", false),
        Sort::Model => ("COALESCE(t.model, '')", false),
        Sort::Memory => ("COALESCE(CAST(t.memory AS BIGINT), -1)", true),
    };
    let (cmp, dir) = if query.desc {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((k, id)) = query.cursor.as_deref().and_then(decode_cursor) {
        let kv = match (numeric, k) {
            (true, Value::Number(n)) => p.push(n.as_i64().unwrap_or(-1)),
            (false, Value::String(s)) => p.push(s),
            (true, _) => p.push(-1),
            (false, _) => p.push(""),
        };
        let iv = p.push(id);
        wh.push(format!(
            "({key} {cmp} {kv} OR ({key} = {kv} AND t.id {cmp} {iv}))"
        ));
    }
    // Two steps: the ids in order (only the columns a filter or the sort names are computed, and
    // SQLite stops at the limit), then the summary columns of those ids alone.
    let inner_params = p.0.len().min(inner_param_count);
    let mut sql = format!("SELECT t.id, {key} AS sort_key FROM ({inner}) t");
    if !wh.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&wh.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {key} {dir}, t.id {dir}"));
    if let Some(limit) = query.limit {
        sql.push_str(&format!(" LIMIT {}", limit + 1));
    }
    let rows = bind_all(&sql, &p.0).fetch_all(&db.read).await?;
    let mut ids: Vec<i64> = Vec::with_capacity(rows.len());
    let mut next = None;
    for (i, r) in rows.iter().enumerate() {
        if query.limit.is_some_and(|l| i as i64 >= l) {
            let last = &rows[i - 1];
            let key = if numeric {
                json!(last.try_get::<i64, _>("sort_key")?)
            } else {
                json!(last.try_get::<String, _>("sort_key")?)
            };
            next = Some(encode_cursor(&key, last.try_get("id")?));
            break;
        }
        ids.push(r.try_get("id")?);
    }
    let mut by_id: std::collections::HashMap<i64, HostRow> =
        std::collections::HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
        let sql = format!("{inner} WHERE h.id IN ({})", list.join(","));
        for r in bind_all(&sql, &p.0[..inner_params])
            .fetch_all(&db.read)
            .await?
        {
            by_id.insert(r.try_get("id")?, row_summary(&r)?);
        }
    }
    let out = ids.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok(Page { rows: out, next })
}

fn bind_all<'q>(
    sql: &'q str,
    params: &[Value],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut q = sqlx::query(sql);
    for v in params {
        q = match v {
            Value::String(s) => q.bind(s.clone()),
            Value::Number(n) => q.bind(n.as_i64().unwrap_or(0)),
            _ => q.bind(Option::<String>::None),
        };
    }
    q
}

fn parse_json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn row_summary(r: &sqlx::any::AnyRow) -> Result<HostRow, sqlx::Error> {
    let ts = |v: Option<i64>| v.map_or(Value::Null, |t| Value::String(rfc3339(t)));
    let mut m = Map::new();
    m.insert(
        "hostname".into(),
        json!(r.try_get::<String, _>("hostname")?),
    );
    m.insert(
        "address".into(),
        json!(r.try_get::<Option<String>, _>("address")?),
    );
    m.insert("port".into(), json!(r.try_get::<i64, _>("port")?));
    m.insert("created_at".into(), ts(Some(r.try_get("created_at")?)));
    m.insert("last_report_at".into(), ts(r.try_get("last_report_at")?));
    m.insert(
        "last_report_id".into(),
        json!(r.try_get::<Option<String>, _>("last_report_id")?),
    );
    for field in ["machine_id", "serial", "system_uuid"] {
        m.insert(field.into(), json!(r.try_get::<Option<String>, _>(field)?));
    }
    for field in ["os", "os_version", "vendor", "model"] {
        let v = parse_json(r.try_get(field)?);
        m.insert(field.into(), if v.is_string() { v } else { Value::Null });
    }
    let mem = parse_json(r.try_get("memory")?);
    m.insert(
        "memory_bytes".into(),
        if mem.is_u64() { mem } else { Value::Null },
    );
    for field in ["owner", "location", "rack", "notes"] {
        m.insert(field.into(), json!(r.try_get::<Option<String>, _>(field)?));
    }
    let tags: Vec<String> = r
        .try_get::<Option<String>, _>("tags")?
        .map(|t| split_tags(&t))
        .unwrap_or_default();
    m.insert("tags".into(), json!(tags));
    m.insert(
        "has_errors".into(),
        json!(r.try_get::<i64, _>("failing")? != 0),
    );
    m.insert("stale".into(), json!(r.try_get::<i64, _>("stale")? != 0));
    Ok(HostRow { summary: m })
}

/// Tags as typed: separated by commas or spaces, lower-cased, each once.
pub fn split_tags(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.split([',', ' '])
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 64 && seen.insert(t.clone()))
        .collect()
}

/// The CSV columns of an export, in order (the JSON export has the same members).
pub const CSV_COLUMNS: [&str; 19] = [
    "hostname",
    "os",
    "os_version",
    "vendor",
    "model",
    "memory_bytes",
    "serial",
    "system_uuid",
    "machine_id",
    "address",
    "last_report_at",
    "stale",
    "has_errors",
    "owner",
    "location",
    "rack",
    "tags",
    "notes",
    "created_at",
];

fn csv_field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    // a leading = + - @ would be a formula to a spreadsheet
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The rows as CSV (RFC 4180, CRLF line ends, a header line).
pub fn to_csv(rows: &[HostRow]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        let line: Vec<String> = CSV_COLUMNS
            .iter()
            .map(|c| csv_field(r.summary.get(*c).unwrap_or(&Value::Null)))
            .collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_macs_and_addresses_whole() {
        let mut t = BTreeSet::new();
        tokens_of_value(
            &json!({"mac": "3C:EC:EF:00:01:02", "addresses": [{"address": "10.0.1.10", "prefix_len": 24}],
                    "model": "Intel(R) Xeon(R) Silver 4210R", "up": true}),
            &mut t,
        );
        for w in [
            "3c:ec:ef:00:01:02",
            "10.0.1.10",
            "24",
            "xeon",
            "4210r",
            "intel",
        ] {
            assert!(t.contains(w), "{w} in {t:?}");
        }
        assert!(!t.contains("true"));
    }

    #[test]
    fn queries_parse_and_cursors_round_trip() {
        let pairs = |s: &[(&str, &str)]| {
            s.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let q = Query::parse(&pairs(&[
            ("q", "web"),
            ("sort", "memory"),
            ("order", "desc"),
            ("limit", "5"),
            ("stale", "true"),
        ]))
        .expect("parses");
        assert_eq!(
            (q.sort, q.desc, q.limit, q.stale),
            (Sort::Memory, true, Some(5), Some(true))
        );
        assert!(Query::parse(&pairs(&[("limit", "0")])).is_err());
        assert!(Query::parse(&pairs(&[("sort", "nope")])).is_err());
        assert!(Query::parse(&pairs(&[("cursor", "zz")])).is_err());
        let c = encode_cursor(&json!("web-1"), 7);
        assert_eq!(decode_cursor(&c), Some((json!("web-1"), 7)));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut m = Map::new();
        m.insert("hostname".into(), json!("a"));
        m.insert("notes".into(), json!("=cmd, \"x\""));
        m.insert("tags".into(), json!(["p", "q"]));
        let csv = to_csv(&[HostRow { summary: m }]);
        let line = csv.lines().nth(1).expect("a row");
        assert!(line.starts_with("a,"), "{line}");
        assert!(line.contains("\"'=cmd, \"\"x\"\"\""), "{line}");
        assert!(line.contains("\"p,q\""), "{line}");
    }
}
