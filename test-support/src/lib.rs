//! Helpers the workspace's tests share (a dev-dependency of `auto-client` and of the end-to-end
//! tests): building real binaries and plugin libraries with cargo, and plugins.toml texts of the
//! collectors.
//!
//! `cargo test` does not build the workspace's cdylib members nor other packages' binaries, so the
//! tests build what they run or load with `cargo build --message-format=json` and take the paths
//! from cargo's own messages.
//!
//! Two sets of collectors: [`SHIPPED`], the original six that most tests load, and [`ALL`], every
//! collector of the repository's plugins.toml (the six and issue 11's six), built only by the tests
//! that ask for them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

/// The six collectors the project ships, by their plugins.toml name (package `collector-NAME`).
pub const SHIPPED: [&str; 6] = ["os", "cpu", "memory", "disk", "nic", "board"];

/// Every collector of the repository's plugins.toml, in its order (the slowest first: collectors
/// start in it): the six of [`SHIPPED`] and issue 11's six (a test checks that the lists agree).
pub const ALL: [&str; 12] = [
    "packages",
    "nic",
    "disk",
    "virt",
    "controller",
    "cpu",
    "memory",
    "gpu",
    "services",
    "psu",
    "os",
    "board",
];

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test-support/ sits in the workspace")
        .to_path_buf()
}

/// What `cargo build` produced, by target name (`_` written `-`).
#[derive(Debug, Default, Clone)]
pub struct Built {
    pub bins: HashMap<String, PathBuf>,
    pub libs: HashMap<String, PathBuf>,
}

/// Serialises the builds the tests start (cargo would block on its own lock anyway).
static BUILD: Mutex<()> = Mutex::new(());

/// Runs `cargo build --message-format=json ARGS` in the workspace root (with `CARGO_TARGET_DIR`
/// set to `target_dir` when given) and collects its artifacts: executables and `.so` files.
/// Panics with cargo's stderr when the build fails.
pub fn cargo_build(args: &[&str], target_dir: Option<&Path>) -> Built {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--message-format=json")
        .args(args)
        .current_dir(workspace_root());
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    artifacts(&String::from_utf8_lossy(&out.stdout))
}

/// The artifacts named in cargo's JSON messages.
fn artifacts(messages: &str) -> Built {
    let mut built = Built::default();
    for line in messages.lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('_', "-");
        if let Some(exe) = msg["executable"].as_str() {
            built.bins.insert(name.clone(), PathBuf::from(exe));
        }
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                built.libs.insert(name.clone(), PathBuf::from(f));
            }
        }
    }
    built
}

/// `collector-NAME` of each of `names`, built in one cargo run: the libraries by package name.
fn build_collectors(names: &[&str]) -> HashMap<String, PathBuf> {
    let packages: Vec<String> = names.iter().map(|n| format!("collector-{n}")).collect();
    let mut args = vec![];
    for p in &packages {
        args.extend(["-p", p.as_str()]);
    }
    cargo_build(&args, None).libs
}

/// The library of the collector `name` (`os`, `cpu`, ..., `psu`): one of [`SHIPPED`] is built
/// with the six once per test binary, any other with all of [`ALL`] once.
pub fn shipped(name: &str) -> PathBuf {
    static SIX: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    static TWELVE: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let libs = if SHIPPED.contains(&name) {
        SIX.get_or_init(|| build_collectors(&SHIPPED))
    } else {
        TWELVE.get_or_init(|| build_collectors(&ALL))
    };
    libs.get(&format!("collector-{name}"))
        .unwrap_or_else(|| panic!("collector-{name} was not built"))
        .clone()
}

/// plugins.toml text with `names`, `[plugins.NAME]` each, with its `path` and then `extra(NAME)`.
fn plugins_toml(names: &[&str], extra: impl Fn(&str) -> String) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "[plugins.{name}]\npath = {:?}\n{}\n",
                shipped(name).display().to_string(),
                extra(name)
            )
        })
        .collect()
}

/// plugins.toml text with the six shipped collectors, `[plugins.NAME]` each, with their `path`
/// and then `extra(NAME)` (more keys of that table, e.g. `timeout = "3s"`; may be empty).
pub fn shipped_plugins_toml(extra: impl Fn(&str) -> String) -> String {
    plugins_toml(&SHIPPED, extra)
}

/// plugins.toml text with all twelve collectors of [`ALL`], as [`shipped_plugins_toml`] does.
pub fn all_plugins_toml(extra: impl Fn(&str) -> String) -> String {
    plugins_toml(&ALL, extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` is what the repository's plugins.toml loads, in its order; `SHIPPED` six of them.
    #[test]
    fn all_is_the_collectors_of_plugins_toml() {
        let toml = std::fs::read_to_string(workspace_root().join("plugins.toml"))
            .expect("read plugins.toml");
        let listed: Vec<&str> = toml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("[plugins.")?.strip_suffix(']'))
            .collect();
        assert_eq!(listed, ALL);
        assert!(
            SHIPPED.iter().all(|s| ALL.contains(s)),
            "{SHIPPED:?} in {ALL:?}"
        );
    }

    #[test]
    fn artifacts_are_taken_from_cargos_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"collector_os"},"filenames":["/t/libcollector_os.so","/t/libcollector_os.rlib"],"executable":null}
{"reason":"build-finished","success":true}
not json
{"reason":"compiler-artifact","target":{"name":"auto-client"},"filenames":["/t/auto-client"],"executable":"/t/auto-client"}"#;
        let built = artifacts(messages);
        assert_eq!(
            built.libs.get("collector-os"),
            Some(&PathBuf::from("/t/libcollector_os.so"))
        );
        assert_eq!(built.libs.len(), 1);
        assert_eq!(
            built.bins.get("auto-client"),
            Some(&PathBuf::from("/t/auto-client"))
        );
        assert_eq!(built.bins.len(), 1);
    }
}
