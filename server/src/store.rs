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
    tx.commit().await?;
    tracing::info!(hostname = %new.hostname, address = %new.address, port = new.port, created = existing.is_none(), "host registered");
    Ok(existing.is_none())
}

pub async fn list_hosts(db: &Db) -> Result<Vec<Value>, sqlx::Error> {
    let sql = format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY lower(hostname)");
    sqlx::query(&sql)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| host_summary(r).map(|(_, m)| Value::Object(m)))
        .collect()
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
/// lists (a list that could not be seen says since when, and keeps its last known parts).
pub async fn host_detail(db: &Db, hostname: &str) -> Result<Option<Value>, sqlx::Error> {
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
    m.insert("plugins".into(), Value::Object(plugins));
    Ok(Some(Value::Object(m)))
}

/// A page of the change log, newest first, of one host or of all.
pub async fn changes(
    db: &Db,
    host_id: Option<i64>,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<Value>, sqlx::Error> {
    let sql = "SELECT c.id, h.hostname, c.report_id, c.at, c.component, c.item, c.action, c.old_value, c.new_value \
         FROM changes c JOIN hosts h ON h.id = c.host_id \
         WHERE ($1 = 0 OR c.host_id = $2) AND c.id < $3 ORDER BY c.id DESC LIMIT $4";
    sqlx::query(sql)
        .bind(i64::from(host_id.is_some()))
        .bind(host_id.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| {
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
        })
        .collect()
}

/// A page of the error log, newest first.
pub async fn errors(db: &Db, limit: i64, before: Option<i64>) -> Result<Vec<Value>, sqlx::Error> {
    sqlx::query(
        "SELECT id, at, code, hostname, report_id, plugin, message FROM errors \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
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
