//! The open contract end to end: a collector built outside the workspace, dropped into an agent's
//! `plugins.d/`, reports a list of parts; the server, which has no code for it, stores every part
//! and logs exactly one change row for each part added, changed and removed.

use std::path::Path;

use serde_json::Value;

use crate::support::{self, stderr, AgentDir, Key, Server};

fn changes(server: &Server, key: &Key, host: &str) -> Vec<(String, String, String)> {
    let rows = server.get_signed(&format!("/api/v1/hosts/{host}/changes?limit=1000"), key);
    let mut v: Vec<_> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["component"] == "gpus.gpus")
        .map(|r| {
            (
                r["item"].as_str().unwrap_or("").to_owned(),
                r["action"].as_str().unwrap_or("").to_owned(),
                r["new"]["model"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn t(id: &str, action: &str, model: &str) -> (String, String, String) {
    (id.into(), action.into(), model.into())
}

#[test]
fn a_dropped_in_collectors_parts_are_stored_and_logged_one_row_each() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: &Path = tmp.path();
    let secret = Server::create_key(dir, "agents");
    let key = Key::new(dir, "agents", &secret);
    let server = Server::start(dir, 0, false);
    let parts = dir.join("gpus.txt");
    let a = AgentDir::new(
        dir,
        "a",
        &format!(
            "[plugins.gpus]\npath = \"plugins.d/libgpus.so\"\noptions = {{ parts_file = {:?} }}\n",
            parts.display().to_string()
        ),
    );
    a.set_os("kappa", "12");
    // The collector is built on its own (it is not a workspace member) and dropped in.
    let root = support::workspace_root();
    let manifest = root.join("tests/fixtures/dropin-collector/Cargo.toml");
    let built = support::cargo_build(
        &["--manifest-path", manifest.to_str().expect("utf-8")],
        Some(&root.join("target/test-fixtures/target")),
    );
    let so = built.libs.get("dropin-uptime").expect("drop-in built");
    std::fs::create_dir_all(a.dir.join("plugins.d")).expect("mkdir");
    std::fs::copy(so, a.dir.join("plugins.d/libgpus.so")).expect("copy");

    let run = |lines: &str| {
        std::fs::write(&parts, lines).expect("write parts");
        let out = a.run(&server.url, Some(&key), &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    run("GPU-1 85899345920 A100\nGPU-2 85899345920 A100\n");
    let h = server.get_signed("/api/v1/hosts/kappa", &key);
    let stored: Vec<Value> = h["plugins"]["gpus"]["lists"]["gpus"]["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(stored.len(), 2, "{h}");
    assert_eq!(stored[0]["id"], "GPU-1", "{h}");
    assert_eq!(stored[0]["size_bytes"], 85_899_345_920u64, "{h}");
    assert_eq!(
        changes(&server, &key, "kappa"),
        [t("GPU-1", "added", "A100"), t("GPU-2", "added", "A100")]
    );

    // One changed (GPU-1's model), one removed (GPU-2), one added (GPU-3): one row each.
    run("GPU-1 85899345920 A100-80G\nGPU-3 85899345920 H100\n");
    assert_eq!(
        changes(&server, &key, "kappa"),
        [
            t("GPU-1", "added", "A100"),
            t("GPU-1", "changed", "A100-80G"),
            t("GPU-2", "added", "A100"),
            t("GPU-2", "removed", ""),
            t("GPU-3", "added", "H100"),
        ]
    );
    // The same again: nothing.
    run("GPU-1 85899345920 A100-80G\nGPU-3 85899345920 H100\n");
    assert_eq!(changes(&server, &key, "kappa").len(), 5);
}
