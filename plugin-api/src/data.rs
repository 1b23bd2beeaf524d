//! Building a collector's data in report schema 2, so that a collector cannot emit data the server
//! would refuse.
//!
//! Every collector's `data` has one shape (see `auto_proto::data` and `docs/report-schema.md`):
//! `facts` (change-logged values), `volatile` (stored, never change-logged: uptime), `identity`
//! (hints the server uses to recognise a host), `lists` (named lists of parts, each part with a
//! unique `id`, or `{"unavailable": why}`) and `reasons` (why a value is null). [`Data`] builds it
//! and [`Data::build`] checks it with `auto_proto::data::validate`, turning a mistake into an
//! error of kind `invalid_data` that names the field:
//!
//! ```
//! use plugin_api::data::Data;
//! use plugin_api::serde_json::json;
//!
//! let mut data = Data::new();
//! data.fact("model", "EPYC 7302")
//!     .fact("core_count", 16)
//!     .volatile("uptime_seconds", 86_400)
//!     .identity("serial", Some("PF2ABC12"))
//!     .identity("system_uuid", None)
//!     .reason("system_uuid", "/sys/class/dmi/id/product_uuid: permission denied");
//! data.list("disks", &["serial", "name"])
//!     .part("S1", json!({ "name": "sda", "serial": "S1", "size_bytes": 512_110_190_592u64 }));
//! data.unavailable("gpus", "nvidia-smi: command not found");
//! let value = data.build().expect("valid");
//! assert_eq!(value["lists"]["disks"]["parts"][0]["id"], "S1");
//!
//! // A size must be a non-negative whole number: refused, naming the field.
//! let err = Data::new().fact("size_bytes", -1).build().expect_err("negative");
//! assert_eq!(err.kind, "invalid_data");
//! assert!(err.message.starts_with(".facts.size_bytes: "), "{}", err.message);
//! ```

use serde_json::{Map, Value};

pub use auto_proto::data::{
    check, parse_strict, valid_name, validate, CollectorData, DataLimits, Invalid, Part, PartList,
    IDENTITY_FIELDS,
};

use crate::CollectError;

/// One list as it is being built.
#[derive(Debug, Clone, PartialEq)]
enum ListState {
    Seen(List),
    Unavailable(String),
}

/// A collector's data in report schema 2, being built. Methods chain (`&mut Self`); call
/// [`Data::build`] at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Data {
    facts: Map<String, Value>,
    volatile: Map<String, Value>,
    identity: Map<String, Value>,
    /// In the order the collector named them (the JSON object keeps its own order anyway).
    lists: Vec<(String, ListState)>,
    reasons: Map<String, Value>,
    /// The first mistake that cannot be put into the JSON for `validate` to find.
    error: Option<Invalid>,
}

/// A list of parts: what identifies a part (`key`), and the parts.
#[derive(Debug, Clone, PartialEq)]
pub struct List {
    name: String,
    key: Vec<String>,
    parts: Vec<Value>,
    error: Option<Invalid>,
}

impl List {
    /// Adds a part: `id` unique within the list (made of the key's attributes, e.g. the serial,
    /// else the name), `attrs` a JSON object of its attributes (`json!({...})` or a `Map`);
    /// `null` attributes are kept: they say "unknown".
    pub fn part(&mut self, id: impl Into<String>, attrs: impl Into<Value>) -> &mut Self {
        let i = self.parts.len();
        let id = Value::String(id.into());
        let part = match attrs.into() {
            // the attributes' own map, the id added (not copied into a new map: thousands of
            // parts, packages, made that a tenth of the collector's time)
            Value::Object(mut attrs) => {
                // the part's id wins over an attribute `id`, which is reported
                if attrs.insert("id".into(), id).is_some() && self.error.is_none() {
                    self.error = Some(Invalid {
                        path: format!(".lists.{}.parts[{i}].id", self.name),
                        message: "given both as the part's id and as an attribute".into(),
                    });
                }
                attrs
            }
            Value::Null => Map::from_iter([("id".to_string(), id)]),
            other => {
                if self.error.is_none() {
                    self.error = Some(Invalid {
                        path: format!(".lists.{}.parts[{i}]", self.name),
                        message: format!("attributes must be a JSON object, not {other}"),
                    });
                }
                Map::from_iter([("id".to_string(), id)])
            }
        };
        self.parts.push(Value::Object(part));
        self
    }

    /// How many parts so far.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether a part with this id was added already (ids must be unique within a list).
    pub fn has_id(&self, id: &str) -> bool {
        self.parts.iter().any(|p| p["id"] == id)
    }
}

impl Data {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fact: a value the server keeps and change-logs (`null` = unknown, say why with
    /// [`Data::reason`]). Names end in their unit: `_bytes`, `_count`, `_seconds`, `_mbps`, ...
    pub fn fact(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.facts.insert(name.to_string(), value.into());
        self
    }

    /// A volatile fact: stored, never change-logged (uptime, load).
    pub fn volatile(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.volatile.insert(name.to_string(), value.into());
        self
    }

    /// An identity hint (`hostname`, `machine_id`, `serial`, `system_uuid`). Declare it only when
    /// its source could be read: `Some(v)` is the value, `None` means "looked, there is none".
    /// Not calling this says "did not look" (the source was unreadable).
    pub fn identity(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        self.identity
            .insert(name.to_string(), value.map_or(Value::Null, Value::from));
        self
    }

    /// Why `field` (a fact, an identity hint, a list, `disk.serial`, ...) is null or missing.
    pub fn reason(&mut self, field: &str, why: impl Into<String>) -> &mut Self {
        self.reasons
            .insert(field.to_string(), Value::String(why.into()));
        self
    }

    /// The reasons given so far, by field.
    pub fn reasons(&self) -> &Map<String, Value> {
        &self.reasons
    }

    /// Starts (or continues) the list `name` whose part ids are made of the attributes `key`
    /// (in order of preference, e.g. `["serial", "name"]`); add parts to what it returns.
    /// Replaces an earlier [`Data::unavailable`] of the same name.
    pub fn list(&mut self, name: &str, key: &[&str]) -> &mut List {
        let at = match self.lists.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.lists
                    .push((name.to_string(), ListState::Unavailable(String::new())));
                self.lists.len() - 1
            }
        };
        let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        let state = &mut self.lists[at].1;
        match state {
            ListState::Seen(list) => list.key = key,
            ListState::Unavailable(_) => {
                *state = ListState::Seen(List {
                    name: name.to_string(),
                    key,
                    parts: Vec::new(),
                    error: None,
                })
            }
        }
        match state {
            ListState::Seen(list) => list,
            ListState::Unavailable(_) => unreachable!("just made a seen list"),
        }
    }

    /// The list `name` could not be seen (tool missing, no privilege): its parts are unknown,
    /// not gone. Never report such a list as an empty list.
    pub fn unavailable(&mut self, name: &str, why: impl Into<String>) -> &mut Self {
        let state = ListState::Unavailable(why.into());
        match self.lists.iter_mut().find(|(n, _)| n == name) {
            Some((_, s)) => *s = state,
            None => self.lists.push((name.to_string(), state)),
        }
        self
    }

    /// The data as JSON, without checking it (see [`Data::build`]).
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }

    /// The data as JSON, moved (not cloned: a list of thousands of parts, packages, cost the
    /// collector milliseconds that way).
    fn into_value(self) -> Value {
        let mut out = Map::new();
        for (name, map) in [
            ("facts", self.facts),
            ("volatile", self.volatile),
            ("identity", self.identity),
        ] {
            if !map.is_empty() {
                out.insert(name.into(), Value::Object(map));
            }
        }
        if !self.lists.is_empty() {
            let lists = self
                .lists
                .into_iter()
                .map(|(name, state)| {
                    let v = match state {
                        ListState::Seen(l) => {
                            let key = l.key.into_iter().map(Value::String).collect();
                            let mut m = Map::new();
                            m.insert("key".into(), Value::Array(key));
                            m.insert("parts".into(), Value::Array(l.parts));
                            Value::Object(m)
                        }
                        ListState::Unavailable(why) => serde_json::json!({ "unavailable": why }),
                    };
                    (name, v)
                })
                .collect();
            out.insert("lists".into(), Value::Object(lists));
        }
        out.insert("reasons".into(), Value::Object(self.reasons));
        Value::Object(out)
    }

    /// The data as JSON, checked against report schema 2 with the default limits. A mistake is a
    /// [`CollectError`] of kind `invalid_data` whose message starts with the path of the field
    /// (`.lists.disks.parts[2].size_bytes: -1 is negative: ... (the data breaks report schema 2)`).
    pub fn build(&self) -> Result<Value, CollectError> {
        self.clone().finish()
    }

    /// [`Data::build`] without a copy: the data is moved into the JSON (a list of thousands of
    /// parts, packages, cost the collector milliseconds to clone).
    pub fn finish(self) -> Result<Value, CollectError> {
        let first_error = self.error.clone().or_else(|| {
            self.lists.iter().find_map(|(_, s)| match s {
                ListState::Seen(l) => l.error.clone(),
                ListState::Unavailable(_) => None,
            })
        });
        let value = self.into_value();
        let checked = match first_error {
            Some(e) => Err(e),
            None => check(&value, &DataLimits::default()),
        };
        checked.map(|()| value).map_err(|e| {
            CollectError::new(
                "invalid_data",
                format!("{e} (the data breaks report schema 2)"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_full_collector_data_validates() {
        let mut d = Data::new();
        d.fact("model", "X")
            .fact("core_count", 4)
            .fact("absent", Option::<u64>::None)
            .volatile("uptime_seconds", 10u64)
            .identity("hostname", Some("web1"))
            .identity("machine_id", None)
            .reason("machine_id", "/etc/machine-id: missing");
        d.list("disks", &["serial", "name"])
            .part(
                "S1",
                json!({"name": "sda", "serial": "S1", "size_bytes": 1}),
            )
            .part("sdb", json!({"name": "sdb", "serial": null}));
        d.unavailable("modules", "dmidecode not installed");
        let v = d.build().expect("valid");
        assert_eq!(
            v,
            json!({
                "facts": {"model": "X", "core_count": 4, "absent": null},
                "volatile": {"uptime_seconds": 10},
                "identity": {"hostname": "web1", "machine_id": null},
                "lists": {
                    "disks": {"key": ["serial", "name"], "parts": [
                        {"id": "S1", "name": "sda", "serial": "S1", "size_bytes": 1},
                        {"id": "sdb", "name": "sdb", "serial": null},
                    ]},
                    "modules": {"unavailable": "dmidecode not installed"},
                },
                "reasons": {"machine_id": "/etc/machine-id: missing"},
            })
        );
        let checked = validate(&v, &DataLimits::default()).expect("valid");
        assert_eq!(checked.identity["hostname"].as_deref(), Some("web1"));
        // An empty builder is valid data too: `{"reasons": {}}`.
        assert_eq!(Data::new().build().expect("valid"), json!({"reasons": {}}));
    }

    fn refused(d: &Data) -> String {
        let e = d.build().expect_err("invalid");
        assert_eq!(e.kind, "invalid_data");
        e.message
            .strip_suffix(" (the data breaks report schema 2)")
            .expect("suffix")
            .to_string()
    }

    #[test]
    fn invalid_values_are_refused_with_their_path() {
        let mut d = Data::new();
        d.list("disks", &["name"])
            .part("a", json!({"size_bytes": 1}))
            .part("b", json!({"size_bytes": -5}));
        assert!(
            refused(&d).starts_with(".lists.disks.parts[1].size_bytes: -5 is negative"),
            "{}",
            refused(&d)
        );

        let mut d = Data::new();
        d.list("disks", &["name"])
            .part("a", json!({}))
            .part("a", json!({}));
        assert!(refused(&d).starts_with(".lists.disks.parts[1].id: \"a\" is also the id"));

        let mut d = Data::new();
        d.list("disks", &["name"]).part("a", json!([1]));
        assert!(refused(&d).starts_with(".lists.disks.parts[0]: attributes must be"));

        let mut d = Data::new();
        d.list("disks", &["name"]).part("a", json!({"id": "b"}));
        assert!(refused(&d).starts_with(".lists.disks.parts[0].id: given both"));

        assert!(refused(Data::new().fact("Model", 1)).starts_with(".facts.Model: not a name"));
        assert!(refused(Data::new().fact("core_count", "four"))
            .starts_with(".facts.core_count: expected a non-negative number"));
        assert!(refused(Data::new().identity("owner", Some("x")))
            .starts_with(".identity.owner: not an identity hint"));
        assert!(refused(Data::new().unavailable("modules", " "))
            .starts_with(".lists.modules.unavailable: expected a non-empty string"));
        assert!(refused(Data::new().fact("x", 1).volatile("x", 2))
            .starts_with(".volatile.x: is also a fact"));
    }

    #[test]
    fn a_list_is_seen_or_unavailable_whichever_came_last() {
        let mut d = Data::new();
        d.unavailable("modules", "no dmidecode");
        d.list("modules", &["slot"]).part("A1", json!({}));
        assert_eq!(d.to_value()["lists"]["modules"]["parts"][0]["id"], "A1");
        d.unavailable("modules", "gone");
        assert_eq!(
            d.to_value()["lists"]["modules"],
            json!({"unavailable": "gone"})
        );
        let mut d = Data::new();
        let list = d.list("gpus", &["id"]);
        assert!(list.is_empty());
        list.part("0", json!({}));
        assert!(list.has_id("0") && !list.has_id("1") && list.len() == 1);
        // A list seen empty is an empty list, not an unavailable one.
        let mut d = Data::new();
        d.list("gpus", &["id"]);
        assert_eq!(
            d.build().expect("valid")["lists"]["gpus"],
            json!({"key": ["id"], "parts": []})
        );
    }
}
