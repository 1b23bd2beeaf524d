//! Helpers shared by the host's integration tests: building real plugin libraries with cargo,
//! writing a plugins.toml, and running the real `auto-client` binary.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

pub const AUTO_CLIENT: &str = env!("CARGO_BIN_EXE_auto-client");

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Serialises the builds the tests start (cargo would block on its own lock anyway).
static BUILD: Mutex<()> = Mutex::new(());

/// Runs `cargo build --message-format=json` and returns the `.so` of each package built, by
/// package name. `cargo test` does not build cdylib members, so tests build what they load.
pub fn build_cdylibs(args: &[&str], target_dir: Option<&Path>) -> HashMap<String, PathBuf> {
    let _guard = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let mut cmd = Command::new(cargo());
    cmd.arg("build").arg("--message-format=json").args(args);
    cmd.current_dir(workspace_root());
    if let Some(dir) = target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut libs = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                libs.insert(name.replace('_', "-"), PathBuf::from(f));
            }
        }
    }
    libs
}

/// The six shipped collectors, built once per test run.
fn shipped_plugins() -> &'static HashMap<String, PathBuf> {
    static LIBS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    LIBS.get_or_init(|| {
        let names: Vec<String> = SHIPPED.iter().map(|n| format!("collector-{n}")).collect();
        let mut args = vec![];
        for n in &names {
            args.extend(["-p", n.as_str()]);
        }
        build_cdylibs(&args, None)
    })
}

pub const SHIPPED: [&str; 6] = ["os", "cpu", "memory", "disk", "nic", "board"];

pub fn shipped(name: &str) -> PathBuf {
    shipped_plugins()
        .get(&format!("collector-{name}"))
        .unwrap_or_else(|| panic!("collector-{name} was not built"))
        .clone()
}

/// The misbehaving test plugin (`test-plugins/misbehave`), built once per test run.
pub fn misbehave() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        build_cdylibs(&["-p", "test-plugin-misbehave"], None)
            .remove("test-plugin-misbehave")
            .expect("test-plugin-misbehave was built")
    })
    .clone()
}

/// A plugins.toml entry.
pub fn entry(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[plugins.{name}]\npath = {:?}\n{extra}\n",
        path.display().to_string()
    )
}

/// A `[plugins.NAME]` entry for the misbehaving plugin doing `behaviour`.
pub fn misbehaving(name: &str, behaviour: &str, extra: &str) -> String {
    entry(
        name,
        &misbehave(),
        &format!("symbol = \"misbehave_v1\"\noptions = {{ behaviour = {behaviour:?} }}\n{extra}"),
    )
}

/// The shipped six as plugins.toml entries.
pub fn shipped_entries() -> String {
    SHIPPED.iter().map(|n| entry(n, &shipped(n), "")).collect()
}

/// What a run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one report of a one-target `collect --format json`.
    pub fn report(&self) -> Value {
        let line = self
            .stdout
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no report on stdout; stderr:\n{}", self.stderr));
        serde_json::from_str(line).unwrap_or_else(|e| panic!("report is not JSON ({e}): {line}"))
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Writes `plugins_toml` into a fresh directory and runs `auto-client --plugins it ARGS`.
pub fn run_with(dir: &Path, plugins_toml: &str, args: &[&str]) -> Run {
    let path = dir.join("plugins.toml");
    std::fs::write(&path, plugins_toml).expect("write plugins.toml");
    Command::new(AUTO_CLIENT)
        .arg("--plugins")
        .arg(&path)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("auto-client runs")
        .into()
}

pub fn collect(plugins_toml: &str) -> (Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = run_with(dir.path(), plugins_toml, &["collect", "--format", "json"]);
    (run, dir)
}
