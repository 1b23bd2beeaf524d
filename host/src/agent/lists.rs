//! Long part lists that did not change are not sent again: the agent keeps the digest of every
//! list of the last report the API accepted (`CERT.lists`, beside the cert file) and sends a list
//! whose digest is the same as `{"unchanged": DIGEST}` (report schema 2). Every `full_every`-th
//! report is sent whole, and so is any list the server names in `resend` (it did not hold that
//! digest). Lists shorter than `MIN_PARTS` always go whole: not worth the state.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use auto_proto::{data::list_digest, PluginReport, Report};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Lists with fewer parts always travel in full.
pub const MIN_PARTS: usize = 32;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// `PLUGIN.LIST` → digest, as the server last accepted them.
    digests: BTreeMap<String, String>,
    /// Reports sent since the last whole one.
    since_full: u32,
}

pub struct ListState {
    path: PathBuf,
    full_every: u32,
}

impl ListState {
    pub fn new(cert_path: &Path, full_every: u32) -> Self {
        let mut name = cert_path.as_os_str().to_owned();
        name.push(".lists");
        ListState {
            path: PathBuf::from(name),
            full_every: full_every.max(1),
        }
    }

    fn load(&self) -> State {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, state: &State) {
        let tmp = self.path.with_extension("lists.tmp");
        let written = serde_json::to_vec(state)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            // Losing it costs one whole report, nothing else.
            tracing::warn!(path = %self.path.display(), error = %e, "cannot keep the list digests");
        }
    }

    /// The report to send: `report` with every long list whose digest the server holds replaced
    /// by `{"unchanged": DIGEST}`, unless a whole report is due.
    pub fn slim(&self, report: &Report) -> Report {
        let state = self.load();
        if state.since_full + 1 >= self.full_every || state.digests.is_empty() {
            return report.clone();
        }
        let mut out = report.clone();
        let mut slimmed = 0;
        for (plugin, part) in out.plugins.iter_mut() {
            let PluginReport::Ok { data, .. } = part else {
                continue;
            };
            let Some(lists) = data.get_mut("lists").and_then(Value::as_object_mut) else {
                continue;
            };
            for (name, list) in lists.iter_mut() {
                let long = list
                    .get("parts")
                    .and_then(Value::as_array)
                    .is_some_and(|p| p.len() >= MIN_PARTS);
                if !long {
                    continue;
                }
                let digest = list_digest(list);
                if state.digests.get(&format!("{plugin}.{name}")) == Some(&digest) {
                    *list = json!({ "unchanged": digest });
                    slimmed += 1;
                }
            }
        }
        if slimmed > 0 {
            tracing::debug!(lists = slimmed, "unchanged lists sent by their digest");
        }
        out
    }

    /// After the server accepted `sent` (slimmed) for `whole`: keep the digests of the lists it
    /// now holds, forget the ones it asked for again.
    pub fn accepted(&self, whole: &Report, sent: &Report, resend: &[String]) {
        let mut state = self.load();
        let was_whole = whole == sent;
        state.since_full = if was_whole { 0 } else { state.since_full + 1 };
        state.digests.clear();
        for (plugin, part) in &whole.plugins {
            let PluginReport::Ok { data, .. } = part else {
                continue;
            };
            let Some(lists) = data.get("lists").and_then(Value::as_object) else {
                continue;
            };
            for (name, list) in lists {
                let kind = format!("{plugin}.{name}");
                if list.get("parts").is_some() && !resend.contains(&kind) {
                    state.digests.insert(kind, list_digest(list));
                }
            }
        }
        if !resend.is_empty() {
            tracing::info!(lists = ?resend, "the server asked for lists in full: they go whole next time");
        }
        self.save(&state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(parts: usize) -> Report {
        let parts: Vec<Value> = (0..parts)
            .map(|i| json!({"id": format!("p{i}"), "version": "1"}))
            .collect();
        serde_json::from_value(json!({
            "schema": 2, "report_id": "r", "hostname": "h", "previous_hostname": null,
            "collected_at": "2026-12-01T00:00:00Z", "agent": {"version": "0", "mode": "agent"},
            "plugins": {"packages": {"status": "ok", "version": "1", "duration_ms": 1, "data": {
                "lists": {"packages": {"key": ["name"], "parts": parts}}}}}
        }))
        .expect("a report")
    }

    fn list(r: &Report) -> Value {
        let PluginReport::Ok { data, .. } = &r.plugins["packages"] else {
            panic!("ok")
        };
        data["lists"]["packages"].clone()
    }

    #[test]
    fn a_long_list_goes_by_digest_after_it_was_accepted_and_whole_every_n() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = ListState::new(&dir.path().join("cert"), 3);
        let whole = report(100);
        // nothing known yet: whole
        let sent = state.slim(&whole);
        assert_eq!(sent, whole);
        state.accepted(&whole, &sent, &[]);
        // known: by digest
        let sent = state.slim(&whole);
        assert_eq!(
            list(&sent),
            json!({"unchanged": list_digest(&list(&whole))})
        );
        state.accepted(&whole, &sent, &[]);
        let sent = state.slim(&whole);
        assert_ne!(sent, whole);
        state.accepted(&whole, &sent, &[]);
        // one report in three goes whole
        assert_eq!(state.slim(&whole), whole);
        // a changed list goes whole
        state.accepted(&whole, &whole, &[]);
        let changed = report(101);
        assert_eq!(state.slim(&changed), changed);
        // the server asked for it: whole next time
        state.accepted(&whole, &state.slim(&whole), &["packages.packages".into()]);
        assert_eq!(state.slim(&whole), whole);
        // short lists always whole
        let short = report(5);
        state.accepted(&short, &short, &[]);
        assert_eq!(state.slim(&short), short);
    }
}
