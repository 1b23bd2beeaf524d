//! Which host runs which: a virtual machine linked to its hypervisor host when both are in the
//! CMDB. The `virt` collector lists a hypervisor's guests in its part list `guests`, each part's id
//! being the guest's SMBIOS system UUID (report schema 2); a guest's own report declares the same
//! UUID as its `system_uuid` identity hint (stored lower-cased in `hosts.system_uuid`).
//!
//! This is the one place the server reads a collector's list by name ([`GUEST_LIST`]): the link is
//! part of the contract (docs/report-schema.md, "Guests and their hypervisor"). Both directions are
//! index look-ups: the guest → hypervisor side by the partial index `components_guest_uuid`
//! (migration 9: only `virt.guests` rows), the hypervisor → guests side by the components' primary
//! key `(host_id, kind, item)` and then `hosts_system_uuid`. Nothing is stored: the links are what
//! the current components say, so a guest removed from its hypervisor's list loses its link with
//! the report that removed it. A list that could not be seen keeps its stored parts, and so its links.
//!
//! Byte order: QEMU writes the UUID to SMBIOS as 2.6+ wants and the guest reads it back as the
//! hypervisor wrote it; a guest whose tables predate SMBIOS 2.6 (and a VMware guest against
//! vCenter's text) reads the first three fields byte-swapped. Such a match is made too, and
//! answered with `uuid_match: byte_swapped` (an exact one: `exact`).

use serde_json::{json, Value};
use sqlx::Row;

use crate::db::Db;
use crate::report::is_placeholder;

/// The component kind of the `virt` collector's list `guests`.
pub const GUEST_LIST: &str = "virt.guests";

/// Host names per `IN (...)` look-up: well under both backends' parameter limits.
const CHUNK: usize = 400;

/// `uuid` (lower case, with dashes) with the bytes of its first three fields reversed: the text
/// the same 16 bytes give when read with the other SMBIOS byte order. `None` when not a UUID.
pub fn byte_swapped(uuid: &str) -> Option<String> {
    let parts: Vec<&str> = uuid.split('-').collect();
    let ok = parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return None;
    }
    let swap = |field: &str| -> String {
        let bytes: Vec<&str> = (0..field.len())
            .step_by(2)
            .map(|i| &field[i..i + 2])
            .collect();
        bytes.into_iter().rev().collect()
    };
    Some(format!(
        "{}-{}-{}-{}-{}",
        swap(parts[0]),
        swap(parts[1]),
        swap(parts[2]),
        parts[3],
        parts[4]
    ))
}

fn guest_attrs(data: Option<String>) -> (Value, Value) {
    let v: Value = data
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (v["name"].clone(), v["state"].clone())
}

/// The host whose guest list names this host's system UUID, as `{hostname, guest_name, state,
/// uuid_match}`, or `null`. Where several hypervisors list it (a definition left behind by a
/// migration), a running one first, then an exact match, then by name.
pub async fn hypervisor(
    db: &Db,
    host_id: i64,
    system_uuid: Option<&str>,
) -> Result<Value, sqlx::Error> {
    let Some(uuid) = system_uuid
        .map(|u| u.trim().to_ascii_lowercase())
        .filter(|u| !is_placeholder(u))
    else {
        return Ok(Value::Null);
    };
    let swapped = byte_swapped(&uuid).filter(|s| *s != uuid);
    let sql = format!(
        "SELECT h.hostname, c.item, c.data FROM components c JOIN hosts h ON h.id = c.host_id \
         WHERE c.kind = '{GUEST_LIST}' AND c.item IN ($1, $2) AND c.host_id <> $3 ORDER BY h.hostname"
    );
    let rows = sqlx::query(&sql)
        .bind(&uuid)
        .bind(swapped.as_deref().unwrap_or(&uuid))
        .bind(host_id)
        .fetch_all(&db.read)
        .await?;
    let mut found = Vec::new();
    for r in &rows {
        let hostname: String = r.try_get("hostname")?;
        let item: String = r.try_get("item")?;
        let (name, state) = guest_attrs(r.try_get("data")?);
        let exact = item == uuid;
        found.push((
            state != "running",
            !exact,
            hostname.clone(),
            json!({
                "hostname": hostname,
                "guest_name": name,
                "state": state,
                "uuid_match": if exact { "exact" } else { "byte_swapped" },
            }),
        ));
    }
    found.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
    Ok(found.into_iter().next().map_or(Value::Null, |f| f.3))
}

/// For a host with a guest list: the guests that are hosts of the CMDB, as `[{system_uuid,
/// hostname, guest_name, state, uuid_match}]` by host name; `null` for a host without one.
pub async fn guests_in_cmdb(db: &Db, host_id: i64) -> Result<Value, sqlx::Error> {
    let has_list = sqlx::query("SELECT 1 AS one FROM part_lists WHERE host_id = $1 AND kind = $2")
        .bind(host_id)
        .bind(GUEST_LIST)
        .fetch_optional(&db.read)
        .await?
        .is_some();
    if !has_list {
        return Ok(Value::Null);
    }
    let rows = sqlx::query("SELECT item, data FROM components WHERE host_id = $1 AND kind = $2")
        .bind(host_id)
        .bind(GUEST_LIST)
        .fetch_all(&db.read)
        .await?;
    // Each candidate text → (the guest's UUID as listed, exact?, name, state).
    let mut wanted: std::collections::HashMap<String, (String, bool, Value, Value)> =
        std::collections::HashMap::new();
    for r in &rows {
        let item: String = r.try_get("item")?;
        let uuid = item.to_ascii_lowercase();
        if is_placeholder(&uuid) {
            continue;
        }
        let (name, state) = guest_attrs(r.try_get("data")?);
        if let Some(s) = byte_swapped(&uuid).filter(|s| *s != uuid) {
            wanted
                .entry(s)
                .or_insert((uuid.clone(), false, name.clone(), state.clone()));
        }
        wanted.insert(uuid.clone(), (uuid, true, name, state));
    }
    let keys: Vec<&String> = wanted.keys().collect();
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT hostname, system_uuid FROM hosts WHERE id <> $1 AND system_uuid IN ({})",
            params.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(host_id);
        for k in chunk {
            q = q.bind(k.as_str());
        }
        for r in q.fetch_all(&db.read).await? {
            let hostname: String = r.try_get("hostname")?;
            let system_uuid: String = r.try_get("system_uuid")?;
            if let Some((listed, exact, name, state)) = wanted.get(&system_uuid) {
                out.push((
                    hostname.to_ascii_lowercase(),
                    json!({
                        "system_uuid": listed,
                        "hostname": hostname,
                        "guest_name": name,
                        "state": state,
                        "uuid_match": if *exact { "exact" } else { "byte_swapped" },
                    }),
                ));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Array(out.into_iter().map(|(_, v)| v).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_swapped_reverses_the_first_three_fields() {
        // The same 16 bytes read with the pre-2.6 and the 2.6+ SMBIOS byte order.
        assert_eq!(
            byte_swapped("4c4c4544-0036-3210-805a-b7c04f4d3632").as_deref(),
            Some("44454c4c-3600-1032-805a-b7c04f4d3632")
        );
        let u = "c7a5fdbd-edaf-9455-926a-d65c16db1809";
        assert_eq!(
            byte_swapped(&byte_swapped(u).expect("uuid")).as_deref(),
            Some(u)
        );
        assert_eq!(byte_swapped("not-a-uuid"), None);
        assert_eq!(byte_swapped("c7a5fdbdedaf9455926ad65c16db1809"), None);
    }
}
