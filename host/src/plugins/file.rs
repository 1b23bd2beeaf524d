//! `plugins.toml`: which collectors the host loads (fixed keys; see `docs/contracts.md`).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The timeout of a collector that `plugins.toml` gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    dirs: Vec<PathBuf>,
    /// In the file's order: collectors are started in it.
    #[serde(default)]
    plugins: indexmap::IndexMap<String, RawPlugin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    path: PathBuf,
    symbol: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    timeout: Option<String>,
    #[serde(default)]
    options: Option<toml::Table>,
    isolation: Option<crate::Isolation>,
}

fn yes() -> bool {
    true
}

/// Where a plugin came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `[plugins.NAME]` table.
    Configured,
    /// A `*.so` found in one of the `dirs`.
    DropIn,
}

/// One plugin to load, with every path made absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// The table key, or for a drop-in the file stem without `lib` (replaced by the plugin's own
    /// name once it is loaded).
    pub name: String,
    pub path: PathBuf,
    pub symbol: Option<String>,
    pub enabled: bool,
    pub timeout: Duration,
    /// The `options` table as JSON text, `{}` when absent.
    pub options_json: String,
    pub origin: Origin,
    /// Overrides the config's `isolation` for this plugin.
    pub isolation: Option<crate::Isolation>,
}

/// The parsed file: the configured plugins and the drop-in directories.
#[derive(Debug, Clone)]
pub struct PluginsFile {
    pub path: PathBuf,
    pub configured: Vec<PluginSpec>,
    pub dirs: Vec<PathBuf>,
}

impl PluginsFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read plugins file {}", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut configured = Vec::new();
        for (name, p) in raw.plugins {
            let timeout = match &p.timeout {
                Some(t) => humantime::parse_duration(t).with_context(|| {
                    format!(
                        "{}: plugins.{name}.timeout {t:?} is not a duration",
                        path.display()
                    )
                })?,
                None => DEFAULT_TIMEOUT,
            };
            if timeout.is_zero() {
                bail!(
                    "{}: plugins.{name}.timeout must be above zero",
                    path.display()
                );
            }
            let options_json = match &p.options {
                Some(t) => serde_json::to_string(t).with_context(|| {
                    format!(
                        "{}: plugins.{name}.options is not JSON-compatible",
                        path.display()
                    )
                })?,
                None => "{}".to_string(),
            };
            configured.push(PluginSpec {
                name,
                path: base.join(&p.path),
                symbol: p.symbol,
                enabled: p.enabled,
                timeout,
                options_json,
                origin: Origin::Configured,
                isolation: p.isolation,
            });
        }
        let dirs = raw.dirs.iter().map(|d| base.join(d)).collect();
        Ok(Self {
            path: path.to_path_buf(),
            configured,
            dirs,
        })
    }

    /// Every plugin to load, in the order they are loaded and started: the configured ones in the
    /// file's order (a collector listed first starts first: list the slow ones first), then each
    /// `*.so` of the drop-in directories
    /// (sorted by file name; a file already named by a `[plugins]` table is not loaded twice).
    /// A drop-in directory that does not exist is skipped with a warning.
    pub fn specs(&self) -> Vec<PluginSpec> {
        let mut specs = self.configured.clone();
        for dir in &self.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "drop-in directory skipped");
                    continue;
                }
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "so"))
                .collect();
            found.sort();
            for path in found {
                if specs.iter().any(|s| same_file(&s.path, &path)) {
                    continue;
                }
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = stem.strip_prefix("lib").unwrap_or(&stem).to_string();
                specs.push(PluginSpec {
                    name,
                    path,
                    symbol: None,
                    enabled: true,
                    timeout: DEFAULT_TIMEOUT,
                    options_json: "{}".to_string(),
                    origin: Origin::DropIn,
                    isolation: None,
                });
            }
        }
        specs
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// toml's errors span several lines with a caret drawing; the user gets one line.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| "|^ ".contains(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collectors start in the file's order (the slow ones listed first finish sooner), not in
    /// the names' order.
    #[test]
    fn plugins_come_in_the_order_the_file_lists_them() {
        let f = PluginsFile::parse(
            r#"
            [plugins.packages]
            path = "p.so"
            [plugins.nic]
            path = "n.so"
            [plugins.zeta]
            path = "z.so"
            [plugins.board]
            path = "b.so"
            "#,
            Path::new("/etc/auto/plugins.toml"),
        )
        .expect("valid file");
        let names: Vec<String> = f.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["packages", "nic", "zeta", "board"]);
    }

    #[test]
    fn paths_are_relative_to_the_file_and_defaults_apply() {
        let f = PluginsFile::parse(
            r#"
            dirs = ["plugins.d"]
            [plugins.cpu]
            path = "target/release/libcollector_cpu.so"
            [plugins.disk]
            path = "/opt/disk.so"
            symbol = "disk_v1"
            enabled = false
            timeout = "1500ms"
            options = { devices = ["sda"], deep = true }
            "#,
            Path::new("/etc/auto/plugins.toml"),
        )
        .expect("valid file");
        assert_eq!(f.dirs, vec![PathBuf::from("/etc/auto/plugins.d")]);
        let cpu = &f.configured[0];
        assert_eq!(cpu.name, "cpu");
        assert_eq!(
            cpu.path,
            PathBuf::from("/etc/auto/target/release/libcollector_cpu.so")
        );
        assert_eq!(cpu.timeout, DEFAULT_TIMEOUT);
        assert!(cpu.enabled);
        assert_eq!(cpu.options_json, "{}");
        let disk = &f.configured[1];
        assert_eq!(disk.symbol.as_deref(), Some("disk_v1"));
        assert!(!disk.enabled);
        assert_eq!(disk.timeout, Duration::from_millis(1500));
        let opts: serde_json::Value = serde_json::from_str(&disk.options_json).expect("json");
        assert_eq!(opts["devices"][0], "sda");
        assert_eq!(opts["deep"], true);
    }

    #[test]
    fn bad_files_give_one_line_naming_the_file() {
        for (text, needle) in [
            ("[plugins.cpu]\npath = 3\n", "invalid type"),
            (
                "[plugins.cpu]\npath = \"x.so\"\ntimeout = \"soon\"\n",
                "plugins.cpu.timeout",
            ),
            (
                "[plugins.cpu]\npath = \"x.so\"\ncolour = 1\n",
                "unknown field",
            ),
        ] {
            let err = PluginsFile::parse(text, Path::new("/x/plugins.toml"))
                .expect_err("must fail")
                .to_string();
            assert!(err.contains("/x/plugins.toml"), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
