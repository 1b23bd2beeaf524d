//! The read side of the database: every query the API's GET handlers need, with named columns.
//! (The write side of a report is `ingest`, one transaction.) Nothing here knows a collector: a
//! host's components are grouped by their generic kinds (`PLUGIN` facts, `PLUGIN.LIST` parts).

use auto_proto::{NewHost, PendingHost};
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::clock::rfc3339;
use crate::db::Db;

fn ts(v: Option<i64>) -> Value {
    v.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn parse_json(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

const HOST_COLUMNS: &str =
    "id, hostname, address, port, created_at, last_report_at, last_report_id, \
     machine_id, serial, system_uuid";

fn host_summary(r: &AnyRow) -> Result<(i64, Map<String, Value>), sqlx::Error> {
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
    Ok((r.try_get("id")?, m))
}

/// The hosts due for collection: registered with an address, not reported since `since`.
pub async fn pending(db: &Db, since: i64) -> Result<Vec<PendingHost>, sqlx::Error> {
    sqlx::query(
        "SELECT hostname, address, port FROM hosts WHERE address IS NOT NULL \
         AND (last_report_at IS NULL OR last_report_at < $1) ORDER BY hostname",
    )
    .bind(since)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(PendingHost {
            hostname: r.try_get("hostname")?,
            address: r.try_get("address")?,
            port: u16::try_from(r.try_get::<i64, _>("port")?).unwrap_or(22),
        })
    })
    .collect()
}

/// Registers a host for ssh/salt collection, or updates its address (names match
/// case-insensitively). `true` for a new host. The input is checked by the caller.
pub async fn register_host(db: &Db, new: &NewHost) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let existing: Option<i64> =
        sqlx::query("SELECT id FROM hosts WHERE lower(hostname) = lower($1)")
            .bind(&new.hostname)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
    match existing {
        Some(id) => {
            sqlx::query("UPDATE hosts SET address = $1, port = $2 WHERE id = $3")
                .bind(&new.address)
                .bind(i64::from(new.port))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO hosts (hostname, address, port, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&new.hostname)
            .bind(&new.address)
            .bind(i64::from(new.port))
            .bind(crate::clock::now())
            .execute(&mut *tx)
            .await?;
        }
    }
    if let Some(id) = sqlx::query("SELECT id FROM hosts WHERE lower(hostname) = lower($1)")
        .bind(&new.hostname)
        .fetch_optional(&mut *tx)
        .await?
    {
        crate::search::reindex(&mut tx, id.try_get("id")?).await?;
    }
    tx.commit().await?;
    tracing::info!(hostname = %new.hostname, address = %new.address, port = new.port, created = existing.is_none(), "host registered");
    Ok(existing.is_none())
}

/// Removes a host (case-insensitive name) and, by the schema's cascades, its components, change
/// log, part lists, hand-entered fields, search words, dashboard rows and host keys. False when
/// no host has the name.
pub async fn remove_host(db: &Db, hostname: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query("DELETE FROM hosts WHERE lower(hostname) = lower($1)")
        .bind(hostname)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(hostname, removed = done > 0, "host removed");
    Ok(done > 0)
}

/// A host's id by name (case-insensitive).
pub async fn host_id(db: &Db, hostname: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT id FROM hosts WHERE lower(hostname) = lower($1)")
        .bind(hostname)
        .fetch_optional(&db.read)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()
}

fn plugin_entry<'a>(
    plugins: &'a mut Map<String, Value>,
    plugin: &str,
) -> &'a mut Map<String, Value> {
    plugins
        .entry(plugin.to_owned())
        .or_insert_with(|| json!({"facts": {}, "volatile": {}, "lists": {}}))
        .as_object_mut()
        .expect("a plugin entry is an object")
}

fn list_entry<'a>(
    plugins: &'a mut Map<String, Value>,
    kind: &str,
) -> Option<&'a mut Map<String, Value>> {
    let (plugin, list) = kind.split_once('.')?;
    plugin_entry(plugins, plugin)
        .get_mut("lists")?
        .as_object_mut()?
        .entry(list.to_owned())
        .or_insert_with(|| {
            json!({"parts": [], "unavailable": null, "unavailable_since": null, "last_seen_at": null})
        })
        .as_object_mut()
}

/// One host's current asset: its identity, and every collector's facts, volatile facts and part
/// lists (a list that could not be seen says since when, and keeps its last known parts), and
/// its hand-entered fields. With `at`, the facts and parts are those it had then
/// ([`crate::history`]; no volatile facts, no list availability) and `as_of` says when.
pub async fn host_detail(
    db: &Db,
    hostname: &str,
    at: Option<i64>,
) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {HOST_COLUMNS} FROM hosts WHERE lower(hostname) = lower($1)");
    let Some(row) = sqlx::query(&sql)
        .bind(hostname)
        .fetch_optional(&db.read)
        .await?
    else {
        return Ok(None);
    };
    let (id, mut m) = host_summary(&row)?;
    let mut plugins = Map::new();
    let rows = sqlx::query(
        "SELECT kind, item, data, volatile FROM components WHERE host_id = $1 ORDER BY kind, item",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?;
    for r in &rows {
        let kind: String = r.try_get("kind")?;
        let item: String = r.try_get("item")?;
        let value = parse_json(r.try_get("data")?);
        if kind.contains('.') {
            if let Some(list) = list_entry(&mut plugins, &kind) {
                let mut part = Map::new();
                part.insert("id".into(), Value::String(item));
                if let Value::Object(attrs) = value {
                    part.extend(attrs);
                }
                if let Some(Value::Array(parts)) = list.get_mut("parts") {
                    parts.push(Value::Object(part));
                }
            }
        } else {
            let section = if r.try_get::<i64, _>("volatile")? != 0 {
                "volatile"
            } else {
                "facts"
            };
            if let Some(Value::Object(map)) = plugin_entry(&mut plugins, &kind).get_mut(section) {
                map.insert(item, value);
            }
        }
    }
    let lists = sqlx::query(
        "SELECT kind, unavailable, unavailable_since, last_seen_at FROM part_lists WHERE host_id = $1",
    )
    .bind(id)
    .fetch_all(&db.read)
    .await?;
    for r in &lists {
        let kind: String = r.try_get("kind")?;
        if let Some(list) = list_entry(&mut plugins, &kind) {
            list.insert(
                "unavailable".into(),
                json!(r.try_get::<Option<String>, _>("unavailable")?),
            );
            list.insert(
                "unavailable_since".into(),
                ts(r.try_get("unavailable_since")?),
            );
            list.insert("last_seen_at".into(), ts(r.try_get("last_seen_at")?));
        }
    }
    m.insert("fields".into(), host_fields(db, id).await?);
    // The links to other hosts, as the current components say (also with `at`).
    let system_uuid = m["system_uuid"].as_str().map(str::to_owned);
    m.insert(
        "hypervisor".into(),
        crate::guests::hypervisor(db, id, system_uuid.as_deref()).await?,
    );
    m.insert(
        "guests_in_cmdb".into(),
        crate::guests::guests_in_cmdb(db, id).await?,
    );
    match at {
        None => {
            m.insert("plugins".into(), Value::Object(plugins));
        }
        Some(t) => {
            let past = crate::history::state(db, id, crate::history::Cut::At(t)).await?;
            m.insert("plugins".into(), crate::history::plugins(&past));
            m.insert("as_of".into(), Value::String(rfc3339(t)));
        }
    }
    Ok(Some(Value::Object(m)))
}

/// Which change rows a feed shows (every filter optional).
#[derive(Debug, Clone, Default)]
pub struct ChangeFilter {
    pub host_id: Option<i64>,
    pub component: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

fn change_json(r: &AnyRow) -> Result<Value, sqlx::Error> {
    Ok(json!({
        "id": r.try_get::<i64, _>("id")?,
        "hostname": r.try_get::<String, _>("hostname")?,
        "report_id": r.try_get::<String, _>("report_id")?,
        "at": rfc3339(r.try_get("at")?),
        "component": r.try_get::<String, _>("component")?,
        "item": r.try_get::<String, _>("item")?,
        "action": r.try_get::<String, _>("action")?,
        "old": parse_json(r.try_get("old_value")?),
        "new": parse_json(r.try_get("new_value")?),
    }))
}

/// A page of the change log, newest first, of one host or of all, filtered.
pub async fn changes(
    db: &Db,
    filter: &ChangeFilter,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Value>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT c.id, h.hostname, c.report_id, c.at, c.component, c.item, c.action, c.old_value, c.new_value \
         FROM changes c JOIN hosts h ON h.id = c.host_id WHERE c.id < $1",
    );
    enum Bind {
        Text(String),
        Int(i64),
    }
    let mut binds: Vec<Bind> = vec![Bind::Int(before.unwrap_or(i64::MAX))];
    let mut clause = |sql: &mut String, cond: &str, b: Bind| {
        binds.push(b);
        sql.push_str(&format!(" AND {cond} ${}", binds.len()));
    };
    if let Some(h) = filter.host_id {
        clause(&mut sql, "c.host_id =", Bind::Int(h));
    }
    if let Some(c) = &filter.component {
        clause(&mut sql, "c.component =", Bind::Text(c.clone()));
    }
    if let Some(a) = &filter.action {
        clause(&mut sql, "c.action =", Bind::Text(a.clone()));
    }
    if let Some(t) = filter.since {
        clause(&mut sql, "c.at >=", Bind::Int(t));
    }
    if let Some(t) = filter.until {
        clause(&mut sql, "c.at <", Bind::Int(t));
    }
    binds.push(Bind::Int(limit));
    sql.push_str(&format!(" ORDER BY c.id DESC LIMIT ${}", binds.len()));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    q.fetch_all(&db.read)
        .await?
        .iter()
        .map(change_json)
        .collect()
}

/// Parts that left one host and appeared on another: a part whose `serial` attribute was
/// removed from host A and added to host B, among the last `window` part changes (either order).
pub async fn moved_parts(db: &Db, window: i64) -> Result<Vec<Value>, sqlx::Error> {
    use std::collections::BTreeMap;
    let rows = sqlx::query(
        "SELECT c.id, h.hostname, c.at, c.component, c.item, c.action, c.old_value, c.new_value \
         FROM changes c JOIN hosts h ON h.id = c.host_id \
         WHERE c.action IN ('added', 'removed') ORDER BY c.id DESC LIMIT $1",
    )
    .bind(window)
    .fetch_all(&db.read)
    .await?;
    // (component, serial) -> (removals, additions): (hostname, at, item)
    type Seen = Vec<(String, i64, String)>;
    let mut by_serial: BTreeMap<(String, String), (Seen, Seen)> = BTreeMap::new();
    for r in &rows {
        let component: String = r.try_get("component")?;
        if !component.contains('.') {
            continue;
        }
        let action: String = r.try_get("action")?;
        let value = if action == "added" {
            parse_json(r.try_get("new_value")?)
        } else {
            parse_json(r.try_get("old_value")?)
        };
        let Some(serial) = value.get("serial").and_then(Value::as_str) else {
            continue;
        };
        if crate::report::is_placeholder(serial) {
            continue;
        }
        let entry = by_serial.entry((component, serial.to_owned())).or_default();
        let seen = (r.try_get("hostname")?, r.try_get("at")?, r.try_get("item")?);
        if action == "added" {
            entry.1.push(seen);
        } else {
            entry.0.push(seen);
        }
    }
    let mut out = Vec::new();
    for ((component, serial), (removed, added)) in by_serial {
        for (from, removed_at, from_item) in &removed {
            for (to, added_at, to_item) in &added {
                if !from.eq_ignore_ascii_case(to) {
                    out.push(json!({
                        "serial": serial, "component": component,
                        "from_host": from, "from_item": from_item, "removed_at": rfc3339(*removed_at),
                        "to_host": to, "to_item": to_item, "added_at": rfc3339(*added_at),
                    }));
                }
            }
        }
    }
    out.sort_by(|a, b| b["added_at"].as_str().cmp(&a["added_at"].as_str()));
    Ok(out)
}

/// A page of the error log, newest first; `hostname` and `code` filter it.
pub async fn errors(
    db: &Db,
    hostname: Option<&str>,
    code: Option<&str>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, code, hostname, report_id, plugin, message FROM errors \
         WHERE id < $1 AND ($2 = '' OR hostname = $2) AND ($3 = '' OR code = $3) \
         ORDER BY id DESC LIMIT $4",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(hostname.unwrap_or(""))
    .bind(code.unwrap_or(""))
    .bind(limit)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "id": r.try_get::<i64, _>("id")?,
            "at": rfc3339(r.try_get("at")?),
            "code": r.try_get::<String, _>("code")?,
            "hostname": r.try_get::<Option<String>, _>("hostname")?,
            "report_id": r.try_get::<Option<String>, _>("report_id")?,
            "plugin": r.try_get::<Option<String>, _>("plugin")?,
            "message": r.try_get::<String, _>("message")?,
        }))
    })
    .collect()
}

/// The hand-entered fields a host can have, in order.
pub const FIELDS: [&str; 5] = ["owner", "location", "rack", "tags", "notes"];

/// A host's hand-entered fields (`null` when never set) and who set them last.
pub async fn host_fields(db: &Db, host_id: i64) -> Result<Value, sqlx::Error> {
    let row = sqlx::query(
        "SELECT owner, location, rack, tags, notes, updated_at, updated_by FROM host_fields WHERE host_id = $1",
    )
    .bind(host_id)
    .fetch_optional(&db.read)
    .await?;
    let mut m = Map::new();
    for f in FIELDS {
        let v: Option<String> = match &row {
            Some(r) => r.try_get(f)?,
            None => None,
        };
        m.insert(f.into(), json!(v));
    }
    let (at, by): (Option<i64>, Option<String>) = match &row {
        Some(r) => (r.try_get("updated_at")?, r.try_get("updated_by")?),
        None => (None, None),
    };
    m.insert("updated_at".into(), ts(at));
    m.insert("updated_by".into(), json!(by));
    Ok(Value::Object(m))
}

/// The change log of a host's hand-entered fields, newest first.
pub async fn field_changes(db: &Db, host_id: i64, limit: i64) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, user_name, field, old_value, new_value FROM field_changes \
         WHERE host_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(host_id)
    .bind(limit)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({
            "id": r.try_get::<i64, _>("id")?,
            "at": rfc3339(r.try_get("at")?),
            "by": r.try_get::<String, _>("user_name")?,
            "field": r.try_get::<String, _>("field")?,
            "old": r.try_get::<Option<String>, _>("old_value")?,
            "new": r.try_get::<Option<String>, _>("new_value")?,
        }))
    })
    .collect()
}

/// Sets a host's hand-entered fields (an empty value clears one), logs each change with who
/// made it, keeps the tag table and the search words in step. Returns how many fields changed.
pub async fn set_host_fields(
    db: &Db,
    host_id: i64,
    by: &str,
    values: &[(&str, Option<String>)],
) -> Result<usize, sqlx::Error> {
    let now = crate::clock::now();
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "SELECT owner, location, rack, tags, notes FROM host_fields WHERE host_id = $1",
    )
    .bind(host_id)
    .fetch_optional(&mut *tx)
    .await?;
    let mut current: Map<String, Value> = Map::new();
    for f in FIELDS {
        let v: Option<String> = match &row {
            Some(r) => r.try_get(f)?,
            None => None,
        };
        current.insert(f.into(), json!(v));
    }
    let mut changed = 0;
    for (field, value) in values {
        if !FIELDS.contains(field) {
            continue;
        }
        let value = value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                if *field == "tags" {
                    crate::search::split_tags(v).join(", ")
                } else {
                    v.to_owned()
                }
            });
        let old = current
            .get(*field)
            .and_then(Value::as_str)
            .map(str::to_owned);
        if old == value {
            continue;
        }
        changed += 1;
        current.insert((*field).into(), json!(value));
        sqlx::query(
            "INSERT INTO field_changes (host_id, at, user_name, field, old_value, new_value) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(host_id)
        .bind(now)
        .bind(by)
        .bind(*field)
        .bind(old)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    }
    if changed == 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    let get = |f: &str| current.get(f).and_then(Value::as_str).map(str::to_owned);
    sqlx::query(
        "INSERT INTO host_fields (host_id, owner, location, rack, tags, notes, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (host_id) DO UPDATE SET \
         owner = excluded.owner, location = excluded.location, rack = excluded.rack, tags = excluded.tags, \
         notes = excluded.notes, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
    )
    .bind(host_id)
    .bind(get("owner"))
    .bind(get("location"))
    .bind(get("rack"))
    .bind(get("tags"))
    .bind(get("notes"))
    .bind(now)
    .bind(by)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM host_tags WHERE host_id = $1")
        .bind(host_id)
        .execute(&mut *tx)
        .await?;
    for tag in crate::search::split_tags(&get("tags").unwrap_or_default()) {
        sqlx::query("INSERT INTO host_tags (host_id, tag) VALUES ($1, $2)")
            .bind(host_id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
    }
    crate::search::reindex(&mut tx, host_id).await?;
    tx.commit().await?;
    tracing::info!(host_id, by, changed, "hand-entered fields changed");
    Ok(changed)
}

/// The identity columns whose shared values the dashboard lists.
const IDENTITY_COLUMNS: [&str; 3] = ["serial", "system_uuid", "machine_id"];
/// Most shared values listed per identity column.
const SHARED_GROUPS: usize = 50;

/// One chart: a fact's ten most common values over all hosts. The `volatile = 0 AND kind NOT
/// LIKE '%.%'` terms are those of the partial index `components_fact_values` (migration 8), which
/// SQLite uses only when the query repeats them; a summary fact is never volatile nor a part.
pub const CHART_SQL: &str = "SELECT data, COUNT(*) AS n FROM components \
     WHERE kind = $1 AND item = $2 AND volatile = 0 AND kind NOT LIKE '%.%' \
     GROUP BY data ORDER BY n DESC, data LIMIT 10";

/// The dashboard's figures (the same JSON for the page and `GET /api/v1/summary`).
pub async fn dashboard(
    db: &Db,
    summary: &crate::search::Summary,
    stale_days: i64,
) -> Result<Value, sqlx::Error> {
    let now = crate::clock::now();
    let today = crate::clock::start_of_day(now);
    // Each count is one range of an index (hosts_last_report_at), never a pass over the rows.
    let count = |sql: &'static str, bind: Option<i64>| async move {
        let mut q = sqlx::query(sql);
        if let Some(b) = bind {
            q = q.bind(b);
        }
        q.fetch_one(&db.read).await?.try_get::<i64, _>("n")
    };
    let total = count("SELECT COUNT(*) AS n FROM hosts", None).await?;
    let reported_today = count(
        "SELECT COUNT(*) AS n FROM hosts WHERE last_report_at >= $1",
        Some(today),
    )
    .await?;
    // stale: not seen since the cut-off, or never (crate::retention::stale_before)
    let stale_reported = count(
        "SELECT COUNT(*) AS n FROM hosts WHERE last_report_at < $1",
        Some(crate::retention::stale_before(now, stale_days)),
    )
    .await?;
    let never = count(
        "SELECT COUNT(*) AS n FROM hosts WHERE last_report_at IS NULL",
        None,
    )
    .await?;
    let mut shared = Vec::new();
    for column in IDENTITY_COLUMNS {
        // The shared values first (a pass over the column's index), placeholders left out, then
        // the hosts of the first SHARED_GROUPS of them: a placeholder serial that thousands of
        // hosts report costs one index entry each, not a row each.
        let values: Vec<String> = sqlx::query(&format!(
            "SELECT {column} AS v FROM hosts WHERE {column} IS NOT NULL \
             GROUP BY {column} HAVING COUNT(*) > 1 ORDER BY {column}"
        ))
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("v"))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|v| !crate::report::is_placeholder(v))
        .take(SHARED_GROUPS)
        .collect();
        for value in values {
            let hosts: Vec<String> = sqlx::query(&format!(
                "SELECT hostname FROM hosts WHERE {column} = $1 ORDER BY lower(hostname)"
            ))
            .bind(&value)
            .fetch_all(&db.read)
            .await?
            .iter()
            .map(|r| r.try_get("hostname"))
            .collect::<Result<_, _>>()?;
            shared.push(json!({"identity": column, "value": value, "hosts": hosts}));
        }
    }
    let failing = sqlx::query(
        "SELECT plugin, COUNT(*) AS n FROM host_failures GROUP BY plugin ORDER BY n DESC, plugin",
    )
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(json!({"collector": r.try_get::<String, _>("plugin")?, "hosts": r.try_get::<i64, _>("n")?}))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let mut charts = Map::new();
    for (name, fact) in [
        ("os", &summary.os),
        ("vendor", &summary.vendor),
        ("model", &summary.model),
        ("memory_bytes", &summary.memory_bytes),
    ] {
        let rows = sqlx::query(CHART_SQL)
            .bind(&fact.kind)
            .bind(&fact.item)
            .fetch_all(&db.read)
            .await?;
        let bars: Vec<Value> = rows
            .iter()
            .map(|r| {
                Ok(json!({"value": parse_json(r.try_get("data")?), "hosts": r.try_get::<i64, _>("n")?}))
            })
            .collect::<Result<_, sqlx::Error>>()?;
        charts.insert(name.into(), Value::Array(bars));
    }
    let recent = changes(db, &ChangeFilter::default(), 15, None).await?;
    Ok(json!({
        "hosts": total,
        "reported_today": reported_today,
        "stale": stale_reported + never,
        "never_reported": never,
        "stale_days": stale_days,
        "shared_identities": shared,
        "failing_collectors": failing,
        "charts": charts,
        "recent_changes": recent,
    }))
}
