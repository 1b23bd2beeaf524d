//! A host as it was: the current components with the change log's later rows undone, newest
//! first (an `added` row is taken away, a `removed` or `changed` row puts its old value back).
//! Reports are not stored as snapshots: the change log already says everything a snapshot would,
//! and each report row keeps the last change id it wrote (`reports.last_change_id`), so "after
//! report R" is "undo every change row above R's". Volatile facts are never logged, so the past
//! has none.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sqlx::Row;

use crate::clock::rfc3339;
use crate::db::Db;

/// A host's change-logged components: `(kind, item)` → value.
pub type State = BTreeMap<(String, String), Value>;

/// Where to cut the change log.
#[derive(Debug, Clone, Copy)]
pub enum Cut {
    /// As it was at this time (changes stamped later are undone).
    At(i64),
    /// Right after the change row with this id (later rows are undone).
    AfterChange(i64),
}

fn parse(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// The host's components after the cut.
pub async fn state(db: &Db, host_id: i64, cut: Cut) -> Result<State, sqlx::Error> {
    let mut state = State::new();
    for r in
        sqlx::query("SELECT kind, item, data FROM components WHERE host_id = $1 AND volatile = 0")
            .bind(host_id)
            .fetch_all(&db.read)
            .await?
    {
        state.insert(
            (r.try_get("kind")?, r.try_get("item")?),
            parse(r.try_get("data")?),
        );
    }
    let (sql, bound) = match cut {
        Cut::At(t) => (
            "SELECT component, item, action, old_value FROM changes WHERE host_id = $1 AND at > $2 ORDER BY id DESC",
            t,
        ),
        Cut::AfterChange(id) => (
            "SELECT component, item, action, old_value FROM changes WHERE host_id = $1 AND id > $2 ORDER BY id DESC",
            id,
        ),
    };
    for r in sqlx::query(sql)
        .bind(host_id)
        .bind(bound)
        .fetch_all(&db.read)
        .await?
    {
        let key = (r.try_get("component")?, r.try_get("item")?);
        match r.try_get::<String, _>("action")?.as_str() {
            "added" => {
                state.remove(&key);
            }
            _ => {
                state.insert(key, parse(r.try_get("old_value")?));
            }
        }
    }
    Ok(state)
}

/// What changed from `a` to `b`, one entry per fact or part, in `(kind, item)` order.
pub fn diff(a: &State, b: &State) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, old) in a {
        match b.get(key) {
            None => out.push((key, "removed", old.clone(), Value::Null)),
            Some(new) if new != old => out.push((key, "changed", old.clone(), new.clone())),
            Some(_) => {}
        }
    }
    for (key, new) in b {
        if !a.contains_key(key) {
            out.push((key, "added", Value::Null, new.clone()));
        }
    }
    out.sort_by(|x, y| x.0.cmp(y.0));
    out.into_iter()
        .map(|((kind, item), action, old, new)| {
            json!({"component": kind, "item": item, "action": action, "old": old, "new": new})
        })
        .collect()
}

/// A state in the shape of `HostDetail.plugins` (no volatile facts; lists have no availability).
pub fn plugins(state: &State) -> Value {
    let mut plugins = Map::new();
    for ((kind, item), value) in state {
        let (plugin, list) = match kind.split_once('.') {
            Some((p, l)) => (p, Some(l)),
            None => (kind.as_str(), None),
        };
        let entry = plugins
            .entry(plugin.to_owned())
            .or_insert_with(|| json!({"facts": {}, "volatile": {}, "lists": {}}));
        match list {
            None => {
                entry["facts"][item] = value.clone();
            }
            Some(list) => {
                let l = &mut entry["lists"][list];
                if l.is_null() {
                    *l = json!({"parts": [], "unavailable": null, "unavailable_since": null, "last_seen_at": null});
                }
                let mut part = Map::new();
                part.insert("id".into(), Value::String(item.clone()));
                if let Value::Object(attrs) = value {
                    part.extend(attrs.clone());
                }
                if let Some(parts) = l["parts"].as_array_mut() {
                    parts.push(Value::Object(part));
                }
            }
        }
    }
    Value::Object(plugins)
}

/// One report a host sent that was applied.
#[derive(Debug, Clone)]
pub struct ReportRef {
    pub report_id: String,
    pub received_at: i64,
    pub last_change_id: i64,
}

impl ReportRef {
    pub fn to_json(&self) -> Value {
        json!({"report_id": self.report_id, "received_at": rfc3339(self.received_at)})
    }
}

/// The host's applied reports, newest first (at most `limit`).
pub async fn reports(db: &Db, host_id: i64, limit: i64) -> Result<Vec<ReportRef>, sqlx::Error> {
    sqlx::query(
        "SELECT report_id, received_at, last_change_id FROM reports WHERE host_id = $1 \
         ORDER BY received_at DESC, last_change_id DESC LIMIT $2",
    )
    .bind(host_id)
    .bind(limit)
    .fetch_all(&db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(ReportRef {
            report_id: r.try_get("report_id")?,
            received_at: r.try_get("received_at")?,
            last_change_id: r.try_get::<Option<i64>, _>("last_change_id")?.unwrap_or(0),
        })
    })
    .collect()
}

/// One report of this host, by id.
pub async fn report(
    db: &Db,
    host_id: i64,
    report_id: &str,
) -> Result<Option<ReportRef>, sqlx::Error> {
    sqlx::query(
        "SELECT report_id, received_at, last_change_id FROM reports WHERE host_id = $1 AND report_id = $2",
    )
    .bind(host_id)
    .bind(report_id)
    .fetch_optional(&db.read)
    .await?
    .map(|r| {
        Ok(ReportRef {
            report_id: r.try_get("report_id")?,
            received_at: r.try_get("received_at")?,
            last_change_id: r.try_get::<Option<i64>, _>("last_change_id")?.unwrap_or(0),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_what_left_and_what_came() {
        let k = |kind: &str, item: &str| (kind.to_owned(), item.to_owned());
        let a: State = [
            (k("mem.modules", "A1"), json!({"size_bytes": 1})),
            (k("mem.modules", "A2"), json!({"size_bytes": 1})),
            (k("os", "kernel"), json!("6.1")),
        ]
        .into();
        let b: State = [
            (k("mem.modules", "A1"), json!({"size_bytes": 1})),
            (k("os", "kernel"), json!("6.2")),
            (k("os", "arch"), json!("x86_64")),
        ]
        .into();
        let d = diff(&a, &b);
        let actions: Vec<(&str, &str)> = d
            .iter()
            .map(|c| {
                (
                    c["item"].as_str().unwrap_or(""),
                    c["action"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [("A2", "removed"), ("arch", "added"), ("kernel", "changed")]
        );
        let p = plugins(&b);
        assert_eq!(p["mem"]["lists"]["modules"]["parts"][0]["id"], "A1");
        assert_eq!(p["os"]["facts"]["kernel"], "6.2");
    }
}
