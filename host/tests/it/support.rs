//! Helpers shared by the host's integration tests: building real plugin libraries with cargo,
//! writing a plugins.toml, and running the real `auto-client` binary.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde_json::Value;

pub const AUTO_CLIENT: &str = env!("CARGO_BIN_EXE_auto-client");

pub use test_support::{workspace_root, SHIPPED};

/// Builds with cargo (see `test_support::cargo_build`) and returns the `.so` of each package
/// built, by package name. `cargo test` does not build cdylib members, so tests build what they load.
pub fn build_cdylibs(args: &[&str], target_dir: Option<&Path>) -> HashMap<String, PathBuf> {
    test_support::cargo_build(args, target_dir).libs
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
    test_support::shipped_plugins_toml(|_| String::new())
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
