//! The wire contract between `auto-client` and `auto-server`: the report document (fixed top level,
//! see `docs/contracts.md`), the bodies of the API calls the client makes, and request signing.
//!
//! Both sides depend on this crate, so the client and the server cannot drift apart. It knows nothing
//! about HTTP clients or servers, databases or plugins: types, and the signature function.

pub mod data;
pub mod sign;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the report document. Each collector's `data` follows [`data`] (schema 2,
/// `docs/report-schema.md`); schema 1 reports are refused by the server.
pub const SCHEMA: u32 = 2;

/// One target's collection: what `auto-client collect` prints and `POST /api/v1/reports` takes.
///
/// `D` is how each collector's `data` is held: a parsed [`Value`] (the server, agent mode), or, where
/// the client only passes a collector's JSON on (ssh and salt mode), its text as it came
/// (`Box<serde_json::value::RawValue>`: a few KB to ~100 KB of text instead of a tree of maps,
/// ~0.5 MB for `packages`'s 761 parts). Both serialise to the same document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report<D = Value> {
    pub schema: u32,
    /// A UUID, new for every collection, kept across retries and spooling.
    pub report_id: String,
    /// What the target calls itself now.
    pub hostname: String,
    /// The name the API knows it by (the cert file), `None` for a new host.
    pub previous_hostname: Option<String>,
    /// RFC 3339, UTC.
    pub collected_at: String,
    pub agent: AgentInfo,
    /// Keyed by the plugin's name in `plugins.toml` (or its file stem for a drop-in).
    pub plugins: BTreeMap<String, PluginReport<D>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInfo {
    pub version: String,
    /// `agent`, `ssh` or `salt`.
    pub mode: String,
}

/// One collector's part of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase", deny_unknown_fields)]
pub enum PluginReport<D = Value> {
    Ok {
        version: String,
        duration_ms: u64,
        data: D,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        duration_ms: u64,
        error: PluginFailure,
    },
}

impl<D> PluginReport<D> {
    pub fn is_ok(&self) -> bool {
        matches!(self, PluginReport::Ok { .. })
    }
}

/// Why a collector gave no data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginFailure {
    /// One lower-case word: `timeout`, `panic`, `load`, `command_failed`, `crashed`, ...
    pub kind: String,
    pub message: String,
}

/// What the API answers to an accepted report (201 or 200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// `created` (201), `updated` or `renamed` (200).
    pub outcome: String,
    /// The name the API now knows the host by: the client writes it to its cert file.
    pub hostname: String,
    pub report_id: String,
    /// For example `{"code": "hostname_taken", ...}` when a rename was refused.
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Part lists (`PLUGIN.LIST`) sent as `unchanged` whose digest is not what the server holds:
    /// they were left as they were, and the client sends them in full next time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resend: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

/// An `application/problem+json` body (RFC 9457) with a machine-readable `code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    /// For example `hostname_taken`, `bad_signature`, `malformed_report`.
    #[serde(default)]
    pub code: String,
}

/// A host due for collection, from `GET /api/v1/hosts/pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingHost {
    pub hostname: String,
    pub address: String,
    pub port: u16,
}

/// The body of `POST /api/v1/hosts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    pub hostname: String,
    pub address: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
}

fn default_ssh_port() -> u16 {
    22
}
