//! Report schema 2: the one shape every collector's `data` follows, and its validation.
//!
//! The contract is written down in `docs/report-schema.md`; this module is its executable form.
//! `auto-server` checks every `ok` collector's data with [`validate`] and needs no code of its own
//! per collector; `plugin-api`'s builder runs the same check, so a collector cannot emit data the
//! server would refuse.
//!
//! ```json
//! {
//!   "facts":    { "model": "EPYC 7302", "core_count": 16 },
//!   "volatile": { "uptime_seconds": 86400 },
//!   "identity": { "serial": "PF2ABC12", "system_uuid": null },
//!   "lists": {
//!     "modules": { "key": ["locator"], "parts": [ { "id": "DIMM_A1", "size_bytes": 17179869184 } ] },
//!     "gpus":    { "unavailable": "nvidia-smi: command not found" }
//!   },
//!   "reasons":  { "serial": "/sys/class/dmi/id/product_serial: permission denied" }
//! }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::{Map, Value};

/// The identity hints a collector may declare; the server keeps them on the host, compares them
/// across hosts (flagging, never merging) and never change-logs them twice.
pub const IDENTITY_FIELDS: [&str; 4] = ["hostname", "machine_id", "serial", "system_uuid"];

/// Longest part id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Units whose values are non-negative integers that fit in an `i64`: sizes, counts, durations.
pub const INTEGER_UNITS: [&str; 5] = ["_bytes", "_count", "_seconds", "_ms", "_kib"];
/// Units whose values are non-negative numbers: speeds, rates, power.
pub const RATE_UNITS: [&str; 7] = [
    "_mbps", "_mts", "_mhz", "_rpm", "_watts", "_percent", "_gts",
];

/// Bounds on one collector's data. The server takes them from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataLimits {
    /// Longest string value, in bytes.
    pub max_string_bytes: usize,
    /// Most parts in one list.
    pub max_parts: usize,
    /// Most facts (plus volatile facts), and most lists, in one collector's data.
    pub max_names: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_string_bytes: 4096,
            max_parts: 10_000,
            max_names: 1_000,
        }
    }
}

/// Why data does not follow the contract: the path below `data` and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// For example `.lists.disks.parts[2].size_bytes`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

/// One part: its identity within its list, and its attributes (`id` not among them).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub id: String,
    pub attrs: Map<String, Value>,
}

/// A named list of parts, or the collector's word that it could not see that list.
#[derive(Debug, Clone, PartialEq)]
pub enum PartList {
    Seen {
        /// The attributes the ids are made of, in the collector's words (`["serial", "name"]`).
        key: Vec<String>,
        parts: Vec<Part>,
        /// [`list_digest`] of the list as received.
        digest: String,
    },
    /// The list could not be seen (no privilege, tool missing): its parts are unknown, not gone.
    Unavailable { reason: String },
    /// The list is what it was in the last report the server accepted from this host: the same
    /// [`list_digest`]. Sent instead of a long list that did not change (installed packages); the
    /// server keeps what it has when the digest matches, and asks for the list in full when not.
    Unchanged { digest: String },
}

/// The digest of a seen list, as sent: `sha256:` and the hex SHA-256 of its canonical JSON text
/// (`{"key": [...], "parts": [...]}`, object keys sorted, no spaces; what `serde_json` prints for a
/// `Value`). The client and the server compute it the same way from the same JSON.
pub fn list_digest(list: &Value) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(list).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

/// One collector's checked data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectorData {
    pub facts: BTreeMap<String, Value>,
    pub volatile: BTreeMap<String, Value>,
    /// Only the hints the collector declared; `None` inside means "known to be unknown".
    pub identity: BTreeMap<String, Option<String>>,
    pub lists: BTreeMap<String, PartList>,
    pub reasons: BTreeMap<String, String>,
}

fn invalid(path: impl ToString, message: impl Into<String>) -> Invalid {
    Invalid {
        path: path.to_string(),
        message: message.into(),
    }
}

/// `[a-z][a-z0-9_]{0,63}`: fact, attribute and list names.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// What the unit suffix of a name demands of its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Non-negative integer in `i64`.
    Integer,
    /// Non-negative finite number.
    Rate,
    /// Any number in range.
    Free,
}

/// The unit class of a fact or attribute name, by its suffix.
pub fn unit_of(name: &str) -> Unit {
    if INTEGER_UNITS.iter().any(|u| name.ends_with(u)) {
        Unit::Integer
    } else if RATE_UNITS.iter().any(|u| name.ends_with(u)) {
        Unit::Rate
    } else {
        Unit::Free
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where a value is (`.lists.disks.parts[2].size_bytes`), written out only when a message names it:
/// formatting every part's path cost a collector of thousands of parts more than the checks.
#[derive(Clone, Copy)]
enum At<'a> {
    Root(&'a str),
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root(s) => f.write_str(s),
            At::Key(parent, key) => write!(f, "{parent}.{key}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn check_string(s: &str, path: &At<'_>, limits: &DataLimits) -> Result<(), Invalid> {
    if s.len() > limits.max_string_bytes {
        return Err(invalid(
            path,
            format!("longer than {} bytes", limits.max_string_bytes),
        ));
    }
    if s.contains('\0') {
        return Err(invalid(path, "contains a nul character"));
    }
    Ok(())
}

/// A scalar value under `name`: null, a boolean, a bounded string, or a number its unit allows.
fn check_scalar(name: &str, v: &Value, path: &At<'_>, limits: &DataLimits) -> Result<(), Invalid> {
    let unit = unit_of(name);
    match v {
        Value::Null => Ok(()),
        Value::Number(n) => {
            let fits = n.is_i64() || n.is_f64();
            if !fits {
                return Err(invalid(
                    path,
                    format!("{n} does not fit in a signed 64-bit integer"),
                ));
            }
            match unit {
                Unit::Integer if !n.is_i64() => Err(invalid(
                    path,
                    format!("expected a whole number (the unit of {name:?}), found {n}"),
                )),
                Unit::Integer | Unit::Rate if n.as_f64().is_some_and(|f| f < 0.0) => Err(invalid(
                    path,
                    format!("{n} is negative: {name:?} is a size, count, duration or speed"),
                )),
                _ => Ok(()),
            }
        }
        _ if unit != Unit::Free => Err(invalid(
            path,
            format!(
                "expected a non-negative number or null (the unit of {name:?}), found {}",
                kind_of(v)
            ),
        )),
        Value::Bool(_) => Ok(()),
        Value::String(s) => check_string(s, path, limits),
        Value::Array(_) | Value::Object(_) => Err(invalid(
            path,
            format!("expected a plain value, found {}", kind_of(v)),
        )),
    }
}

/// A fact or attribute value: a scalar, or an array of scalars or of flat objects of scalars
/// (an interface's addresses).
fn check_value(name: &str, v: &Value, path: &At<'_>, limits: &DataLimits) -> Result<(), Invalid> {
    let Value::Array(items) = v else {
        return check_scalar(name, v, path, limits);
    };
    if items.len() > limits.max_parts {
        return Err(invalid(
            path,
            format!(
                "has {} elements, more than the limit of {}",
                items.len(),
                limits.max_parts
            ),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let path = At::Index(path, i);
        match item {
            Value::Object(fields) => {
                for (k, x) in fields {
                    let path = At::Key(&path, k);
                    check_name(k, &path)?;
                    check_scalar(k, x, &path, limits)?;
                }
            }
            other => check_scalar(name, other, &path, limits)?,
        }
    }
    Ok(())
}

/// A fact, attribute or list name, or an error at `path`.
fn check_name(name: &str, path: &At<'_>) -> Result<(), Invalid> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(invalid(
            path,
            "not a name: 1 to 64 of a-z, 0-9, '_', starting with a letter",
        ))
    }
}

fn object<'a>(v: &'a Value, path: &At<'_>) -> Result<&'a Map<String, Value>, Invalid> {
    v.as_object()
        .ok_or_else(|| invalid(path, format!("expected an object, found {}", kind_of(v))))
}

fn named_values(
    v: Option<&Value>,
    path: &At<'_>,
    limits: &DataLimits,
) -> Result<BTreeMap<String, Value>, Invalid> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let map = object(v, path)?;
    if map.len() > limits.max_names {
        return Err(invalid(
            path,
            format!(
                "has {} names, more than the limit of {}",
                map.len(),
                limits.max_names
            ),
        ));
    }
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let path = At::Key(path, name);
        check_name(name, &path)?;
        check_value(name, value, &path, limits)?;
        out.insert(name.clone(), value.clone());
    }
    Ok(out)
}

fn part_list(
    v: &Value,
    path: &At<'_>,
    limits: &DataLimits,
    build: bool,
) -> Result<PartList, Invalid> {
    let map = object(v, path)?;
    if let Some(digest) = map.get("unchanged") {
        let path = format!("{path}.unchanged");
        match digest.as_str() {
            Some(d) if valid_digest(d) && map.len() == 1 => {
                return Ok(PartList::Unchanged {
                    digest: d.to_owned(),
                })
            }
            Some(d) if valid_digest(d) => {
                return Err(invalid(
                    path,
                    "an unchanged list has nothing but its digest",
                ))
            }
            _ => {
                return Err(invalid(
                    path,
                    "expected sha256: and 64 lower-case hex digits (the list's digest)",
                ))
            }
        }
    }
    if let Some(reason) = map.get("unavailable") {
        let Some(reason) = reason.as_str().filter(|r| !r.trim().is_empty()) else {
            return Err(invalid(
                format!("{path}.unavailable"),
                format!(
                    "expected a non-empty string (why the list could not be seen), found {}",
                    kind_of(reason)
                ),
            ));
        };
        check_string(reason, &At::Key(path, "unavailable"), limits)?;
        if let Some(extra) = map.keys().find(|k| *k != "unavailable") {
            return Err(invalid(
                format!("{path}.{extra}"),
                "an unavailable list has nothing but its reason",
            ));
        }
        return Ok(PartList::Unavailable {
            reason: reason.to_owned(),
        });
    }
    if let Some(extra) = map.keys().find(|k| !matches!(k.as_str(), "key" | "parts")) {
        return Err(invalid(
            format!("{path}.{extra}"),
            "unknown member (a list has `key` and `parts`, or only `unavailable`, or only `unchanged`)",
        ));
    }
    let key_path = At::Key(path, "key");
    let key = match map.get("key") {
        Some(Value::Array(names)) if !names.is_empty() => names
            .iter()
            .enumerate()
            .map(|(i, n)| match n.as_str() {
                Some(s) if valid_name(s) => Ok(s.to_owned()),
                _ => Err(invalid(
                    format!("{key_path}[{i}]"),
                    "expected an attribute name",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(invalid(
                key_path,
                format!(
                    "expected a non-empty array of attribute names, found {}",
                    kind_of(other)
                ),
            ))
        }
        None => {
            return Err(invalid(
                key_path,
                "missing: which attributes identify a part",
            ))
        }
    };
    let parts_path = At::Key(path, "parts");
    let items = match map.get("parts") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(invalid(
                parts_path,
                format!("expected an array, found {}", kind_of(other)),
            ))
        }
        None => return Err(invalid(parts_path, "missing")),
    };
    if items.len() > limits.max_parts {
        return Err(invalid(
            parts_path,
            format!(
                "has {} parts, more than the limit of {}",
                items.len(),
                limits.max_parts
            ),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    let mut parts = Vec::with_capacity(if build { items.len() } else { 0 });
    for (i, item) in items.iter().enumerate() {
        let path = At::Index(&parts_path, i);
        let fields = object(item, &path)?;
        let id = match fields.get("id") {
            Some(Value::String(s))
                if !s.is_empty() && s.len() <= MAX_ID_BYTES && !s.contains('\0') =>
            {
                s
            }
            Some(other) => {
                return Err(invalid(
                    format!("{path}.id"),
                    format!(
                        "expected a string of 1 to {MAX_ID_BYTES} bytes, found {}",
                        kind_of(other)
                    ),
                ))
            }
            None => return Err(invalid(format!("{path}.id"), "missing")),
        };
        if let Some(first) = seen.insert(id.as_str(), i) {
            return Err(invalid(
                format!("{path}.id"),
                format!("{id:?} is also the id of parts[{first}]: ids are unique within a list"),
            ));
        }
        let mut attrs = Map::new();
        for (name, value) in fields {
            if name == "id" {
                continue;
            }
            let path = At::Key(&path, name);
            check_name(name, &path)?;
            check_value(name, value, &path, limits)?;
            if build {
                attrs.insert(name.clone(), value.clone());
            }
        }
        if build {
            parts.push(Part {
                id: id.clone(),
                attrs,
            });
        }
    }
    // Checking only: the parts are not copied and the digest not computed.
    Ok(PartList::Seen {
        key,
        parts,
        digest: if build { list_digest(v) } else { String::new() },
    })
}

/// Checks one `ok` collector's `data` against the contract. The error's path is below `data`.
pub fn validate(data: &Value, limits: &DataLimits) -> Result<CollectorData, Invalid> {
    walk(data, limits, true)
}

/// [`validate`] without building the checked copy (no part copied, no list digest): for a
/// collector's own check of what it is about to send, which the server validates again.
pub fn check(data: &Value, limits: &DataLimits) -> Result<(), Invalid> {
    walk(data, limits, false).map(|_| ())
}

/// Checks `data`; with `build`, also returns its checked copy (else an empty one).
fn walk(data: &Value, limits: &DataLimits, build: bool) -> Result<CollectorData, Invalid> {
    let map = object(data, &At::Root(""))?;
    if let Some(extra) = map.keys().find(|k| {
        !matches!(
            k.as_str(),
            "facts" | "volatile" | "identity" | "lists" | "reasons"
        )
    }) {
        return Err(invalid(
            format!(".{extra}"),
            "unknown member: data has facts, volatile, identity, lists and reasons (report schema 2)",
        ));
    }
    let facts = named_values(map.get("facts"), &At::Root(".facts"), limits)?;
    let volatile = named_values(map.get("volatile"), &At::Root(".volatile"), limits)?;
    if let Some(both) = volatile.keys().find(|k| facts.contains_key(*k)) {
        return Err(invalid(format!(".volatile.{both}"), "is also a fact"));
    }
    let mut identity = BTreeMap::new();
    if let Some(v) = map.get("identity") {
        let at = At::Root(".identity");
        for (name, value) in object(v, &at)? {
            let path = At::Key(&at, name);
            if !IDENTITY_FIELDS.contains(&name.as_str()) {
                return Err(invalid(
                    path,
                    format!(
                        "not an identity hint (one of {})",
                        IDENTITY_FIELDS.join(", ")
                    ),
                ));
            }
            let value = match value {
                Value::Null => None,
                Value::String(s) => {
                    check_string(s, &path, limits)?;
                    let s = s.trim();
                    (!s.is_empty()).then(|| s.to_owned())
                }
                other => {
                    return Err(invalid(
                        path,
                        format!("expected a string or null, found {}", kind_of(other)),
                    ))
                }
            };
            identity.insert(name.clone(), value);
        }
    }
    let mut lists = BTreeMap::new();
    if let Some(v) = map.get("lists") {
        let at = At::Root(".lists");
        let all = object(v, &at)?;
        if all.len() > limits.max_names {
            return Err(invalid(
                ".lists",
                format!(
                    "has {} lists, more than the limit of {}",
                    all.len(),
                    limits.max_names
                ),
            ));
        }
        for (name, list) in all {
            let path = At::Key(&at, name);
            check_name(name, &path)?;
            lists.insert(name.clone(), part_list(list, &path, limits, build)?);
        }
    }
    let mut reasons = BTreeMap::new();
    if let Some(v) = map.get("reasons") {
        let at = At::Root(".reasons");
        for (name, why) in object(v, &at)? {
            let path = At::Key(&at, name);
            let Some(why) = why.as_str() else {
                return Err(invalid(
                    path,
                    format!("expected a string, found {}", kind_of(why)),
                ));
            };
            check_string(name, &path, limits)?;
            check_string(why, &path, limits)?;
            reasons.insert(name.clone(), why.to_owned());
        }
    }
    Ok(CollectorData {
        facts,
        volatile,
        identity,
        lists,
        reasons,
    })
}

/// Parses JSON text, refusing an object that names one key twice (`serde_json` would keep the
/// last silently, so `{"hostname": "a", "hostname": "b"}` would mean whatever the parser chose).
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict(&Seg::Root)
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// Where a value is in the document, as a chain of borrowed steps: written out (`$.a.b[2]`) only
/// for the message of a refused document, so that parsing a good one builds no path text.
enum Seg<'a> {
    Root,
    Key(&'a Seg<'a>, &'a str),
    Index(&'a Seg<'a>, usize),
}

impl fmt::Display for Seg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Root => f.write_str("$"),
            Seg::Key(parent, key) => write!(f, "{parent}.{key}"),
            Seg::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// A `Value` seed that refuses duplicate keys; carries the path for the message.
struct Strict<'a>(&'a Seg<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a json value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict(&Seg::Index(self.0, out.len())))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match out.entry(key) {
                serde_json::map::Entry::Occupied(e) => {
                    return Err(serde::de::Error::custom(format!(
                        "{} appears twice in one object",
                        Seg::Key(self.0, e.key())
                    )));
                }
                serde_json::map::Entry::Vacant(e) => {
                    let v = map.next_value_seed(Strict(&Seg::Key(self.0, e.key())))?;
                    e.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Result<CollectorData, String> {
        validate(&v, &DataLimits::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_example_passes() {
        let d = check(json!({
            "facts": {"model": "x", "core_count": 4, "rotational": false, "max_mhz": 2400.5},
            "volatile": {"uptime_seconds": 5},
            "identity": {"serial": " S1 ", "system_uuid": null},
            "lists": {
                "disks": {"key": ["serial", "name"], "parts": [{"id": "S1", "name": "sda", "size_bytes": 1,
                  "addresses": [{"address": "10.0.0.1", "prefix_len": 24}]}]},
                "gpus": {"unavailable": "nvidia-smi: not found"}
            },
            "reasons": {"serial": "denied"}
        }))
        .expect("valid");
        let PartList::Seen { digest, .. } = &d.lists["disks"] else {
            panic!("seen")
        };
        assert!(valid_digest(digest), "{digest}");
        assert_eq!(d.identity["serial"].as_deref(), Some("S1"));
        assert_eq!(d.identity["system_uuid"], None);
        assert!(matches!(d.lists["gpus"], PartList::Unavailable { .. }));
        let PartList::Seen { parts, .. } = &d.lists["disks"] else {
            panic!("seen")
        };
        assert_eq!(parts[0].id, "S1");
        assert!(!parts[0].attrs.contains_key("id"));
    }

    #[test]
    fn nonsense_is_refused_naming_the_field() {
        let cases = [
            (
                json!({"facts": {"size_bytes": 18446744073709551615u64}}),
                ".facts.size_bytes: 18446744073709551615 does not fit",
            ),
            (
                json!({"facts": {"size_bytes": -1}}),
                ".facts.size_bytes: -1 is negative",
            ),
            (
                json!({"facts": {"speed_mbps": -10.5}}),
                ".facts.speed_mbps: -10.5 is negative",
            ),
            (
                json!({"facts": {"size_bytes": "NaN"}}),
                ".facts.size_bytes: expected a non-negative number",
            ),
            (
                json!({"facts": {"core_count": "four"}}),
                ".facts.core_count: expected a non-negative number",
            ),
            (
                json!({"facts": {"socket_count": true}}),
                ".facts.socket_count: expected a non-negative number",
            ),
            (
                json!({"facts": {"size_bytes": 1.5}}),
                ".facts.size_bytes: expected a whole number",
            ),
            (json!({"facts": {"Bad": 1}}), ".facts.Bad: not a name"),
            (
                json!({"facts": {"x": {"y": 1}}}),
                ".facts.x: expected a plain value",
            ),
            (json!({"modules": []}), ".modules: unknown member"),
            (
                json!({"identity": {"owner": "x"}}),
                ".identity.owner: not an identity hint",
            ),
            (
                json!({"lists": {"d": {"key": ["name"], "parts": [{"id": "a"}, {"id": "a"}]}}}),
                ".lists.d.parts[1].id: \"a\" is also the id of parts[0]",
            ),
            (
                json!({"lists": {"d": {"key": ["name"], "parts": [{"name": "a"}]}}}),
                ".lists.d.parts[0].id: missing",
            ),
            (
                json!({"lists": {"d": {"parts": []}}}),
                ".lists.d.key: missing",
            ),
            (
                json!({"lists": {"d": {"unavailable": ""}}}),
                ".lists.d.unavailable: expected a non-empty string",
            ),
            (
                json!({"lists": {"d": {"key": ["n"], "parts": [{"id": "a", "mtu_bytes": -5}]}}}),
                ".lists.d.parts[0].mtu_bytes: -5 is negative",
            ),
        ];
        for (data, want) in cases {
            let got = check(data.clone()).expect_err(&data.to_string());
            assert!(got.starts_with(want), "{data}: {got}");
            // The collector's check-only pass refuses the same, with the same message.
            let only = super::check(&data, &DataLimits::default()).expect_err("refused");
            assert_eq!(only.to_string(), got);
        }
    }

    #[test]
    fn an_unchanged_list_carries_only_its_digest() {
        let list = json!({"key": ["name"], "parts": [{"id": "a", "name": "a"}]});
        let digest = list_digest(&list);
        assert!(valid_digest(&digest), "{digest}");
        // key order in the text does not matter: the digest is of the canonical value
        let reordered: Value =
            serde_json::from_str(r#"{"parts":[{"name":"a","id":"a"}],"key":["name"]}"#)
                .expect("json");
        assert_eq!(list_digest(&reordered), digest);
        let d = check(json!({"lists": {"l": {"unchanged": digest}}})).expect("valid");
        assert!(matches!(&d.lists["l"], PartList::Unchanged { digest: x } if *x == digest));
        let e = check(json!({"lists": {"l": {"unchanged": "md5:x"}}})).expect_err("bad digest");
        assert!(e.starts_with(".lists.l.unchanged: expected sha256:"), "{e}");
    }

    #[test]
    fn too_many_parts_is_refused() {
        let parts: Vec<Value> = (0..11).map(|i| json!({"id": i.to_string()})).collect();
        let limits = DataLimits {
            max_parts: 10,
            ..DataLimits::default()
        };
        let e = validate(
            &json!({"lists": {"d": {"key": ["n"], "parts": parts}}}),
            &limits,
        )
        .expect_err("cap");
        assert_eq!(
            e.to_string(),
            ".lists.d.parts: has 11 parts, more than the limit of 10"
        );
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = parse_strict(br#"{"a": 1, "b": {"c": 1, "c": 2}}"#).expect_err("dup");
        assert!(e.contains("$.b.c appears twice"), "{e}");
        assert_eq!(
            parse_strict(br#"{"a": [1, {"b": null}]}"#).expect("ok"),
            json!({"a": [1, {"b": null}]})
        );
        assert!(parse_strict(b"{} x").is_err());
    }
}
