//! The command line (raw `Args`, clap derive) and `auto-client.toml`, merged into a checked `Config`.
//! Precedence: flag, then environment variable, then the config file, then the default.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::{plugins::file::one_line, Mode};

/// The documented example config, shipped in the repository and printed by `default-config`.
pub const EXAMPLE_CONFIG: &str = include_str!("../auto-client.example.toml");

#[derive(Debug, Parser)]
#[command(
    name = "auto-client",
    version,
    about = "Collects server assets for the CMDB through collector plugins"
)]
pub struct Args {
    /// Config file (default: ./auto-client.toml, then /etc/auto-client/auto-client.toml, if present).
    #[arg(long, global = true, env = "AUTO_CLIENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// plugins.toml: which collectors to load (default: the config's `plugins`, else ./plugins.toml).
    #[arg(long, global = true, env = "AUTO_CLIENT_PLUGINS")]
    pub plugins: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Collect and print the reports; needs no API.
    Collect(CollectArgs),
    /// The main job: collect, sign, report to the API (once, or every --interval).
    Run(RunArgs),
    /// List every plugin with its path, symbol, version and load status.
    Plugins {
        #[arg(long, value_enum, default_value_t = Format::Table, env = "AUTO_CLIENT_FORMAT")]
        format: Format,
    },
    /// Print the documented example config.
    DefaultConfig,
    /// Signed GET of an API path, printed as JSON (e.g. /api/v1/hosts/web-01/changes).
    Api(ApiArgs),
    /// Install the agent on ssh mode's targets over SFTP, enable its timer, run it once.
    Deploy(Box<crate::deploy::DeployArgs>),
    /// Internal: run one collector in this process for an isolating parent (see `worker`).
    #[command(name = "__worker", hide = true)]
    Worker {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        symbol: String,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(long)]
        target: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Table,
}

/// Targets and SSH settings, shared by `collect` and `run` (ssh and salt mode).
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct RemoteArgs {
    /// Targets for ssh or salt mode, comma-separated: NAME, NAME=ADDRESS or NAME=ADDRESS:PORT.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "hosts_file",
        env = "AUTO_CLIENT_HOSTS"
    )]
    pub hosts: Vec<String>,
    /// A file of targets, one a line: `NAME [ADDRESS [PORT]]`; `#` comments.
    #[arg(long, env = "AUTO_CLIENT_HOSTS_FILE")]
    pub hosts_file: Option<PathBuf>,
    /// Hosts collected at once in ssh and salt mode (default 32).
    #[arg(long, env = "AUTO_CLIENT_WORKERS")]
    pub workers: Option<usize>,
    /// SSH user (default root).
    #[arg(long, env = "AUTO_CLIENT_SSH_USER")]
    pub ssh_user: Option<String>,
    /// SSH port when a target names none (default 22).
    #[arg(long, env = "AUTO_CLIENT_SSH_PORT")]
    pub ssh_port: Option<u16>,
    /// SSH private key (default ~/.ssh/id_ed25519).
    #[arg(long, env = "AUTO_CLIENT_SSH_IDENTITY")]
    pub ssh_identity: Option<PathBuf>,
    /// A file holding the SSH password (never give a password on the command line).
    #[arg(long, env = "AUTO_CLIENT_SSH_PASSWORD_FILE")]
    pub ssh_password_file: Option<PathBuf>,
    /// known_hosts to verify host keys against (default ~/.ssh/known_hosts).
    #[arg(long, env = "AUTO_CLIENT_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// strict (default): unknown or changed host keys are refused; accept-new: trust on first use.
    #[arg(long, env = "AUTO_CLIENT_HOST_KEY_POLICY")]
    pub host_key_policy: Option<String>,
    /// salt mode: the `salt` command, whose #! line names the Python that has Salt.
    #[arg(long, env = "AUTO_CLIENT_SALT_COMMAND")]
    pub salt_command: Option<PathBuf>,
    /// salt mode: the master's configuration directory (default /etc/salt).
    #[arg(long, env = "AUTO_CLIENT_SALT_CONFIG_DIR")]
    pub salt_config_dir: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
pub struct CollectArgs {
    #[arg(long, value_enum, env = "AUTO_CLIENT_MODE")]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// json: one report per line (JSON Lines); table: readable.
    #[arg(long, value_enum, default_value_t = Format::Json, env = "AUTO_CLIENT_FORMAT")]
    pub format: Format,
    /// none, process, or dropins (drop-in plugins in worker processes; the default).
    #[arg(long, value_enum, env = "AUTO_CLIENT_ISOLATION")]
    pub isolation: Option<crate::Isolation>,
}

#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    #[arg(long, value_enum, env = "AUTO_CLIENT_MODE")]
    pub mode: Option<Mode>,
    #[command(flatten)]
    pub api: ApiFlags,
    /// Keep running: collect and report every DURATION (e.g. 1h, 15m).
    #[arg(long, env = "AUTO_CLIENT_INTERVAL")]
    pub interval: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Where the last hostname the API accepted is kept.
    #[arg(long, env = "AUTO_CLIENT_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Where undelivered reports wait.
    #[arg(long, env = "AUTO_CLIENT_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Also log to this directory (rotated daily).
    #[arg(long, env = "AUTO_CLIENT_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// none, process, or dropins (drop-in plugins in worker processes).
    #[arg(long, value_enum, env = "AUTO_CLIENT_ISOLATION")]
    pub isolation: Option<crate::Isolation>,
    /// Agent mode: write a node_exporter textfile here after every cycle (written atomically).
    #[arg(long, env = "AUTO_CLIENT_TEXTFILE")]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
pub struct ApiArgs {
    /// The path, starting with /api/v1/.
    pub path: String,
    #[command(flatten)]
    pub api: ApiFlags,
}

/// The API and its key: declared once, used by `run` and `api`.
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct ApiFlags {
    /// The auto-server base URL, e.g. http://cmdb.example:8080.
    #[arg(long, env = "AUTO_CLIENT_API")]
    pub api: Option<String>,
    /// The key's name, as `auto-server keys create NAME` made it.
    #[arg(long, env = "AUTO_CLIENT_KEY_ID")]
    pub key_id: Option<String>,
    /// A file (mode 0600) holding the key's secret.
    #[arg(long, env = "AUTO_CLIENT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

/// `auto-client.toml`. Relative paths are relative to the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub plugins: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub api: Option<String>,
    pub interval: Option<String>,
    pub workers: Option<usize>,
    pub key_id: Option<String>,
    pub key_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub spool_dir: Option<PathBuf>,
    pub spool_max_reports: Option<usize>,
    /// Every how many reports the agent sends its long part lists whole (else by digest).
    pub full_report_every: Option<u32>,
    pub spool_max_bytes: Option<u64>,
    pub log_dir: Option<PathBuf>,
    /// Agent mode: the node_exporter textfile (see `agent::textfile`).
    pub textfile: Option<PathBuf>,
    pub strict_permissions: Option<bool>,
    pub isolation: Option<crate::Isolation>,
    #[serde(default)]
    pub ssh: crate::remote::ssh::SshSettings,
    #[serde(default)]
    pub salt: crate::remote::salt::SaltSettings,
}

impl ConfigFile {
    /// Reads the config named on the command line (it must exist), else the first default found.
    pub fn discover(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>)> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => ["auto-client.toml", "/etc/auto-client/auto-client.toml"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok((Self::default(), None));
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut file = Self::parse(&text, &path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in [
            &mut file.plugins,
            &mut file.key_file,
            &mut file.cert_file,
            &mut file.spool_dir,
            &mut file.log_dir,
            &mut file.textfile,
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        Ok((file, Some(path)))
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "config file {}: {}",
                path.display(),
                one_line(&e.to_string())
            )
        })
    }
}

/// Parses a duration flag like `15m`, naming the flag on error.
pub fn parse_duration(what: &str, text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text)
        .with_context(|| format!("{what} {text:?} is not a duration (try 30s, 15m, 1h)"))?;
    if d.is_zero() {
        bail!("{what} must be above zero");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses() {
        let file = ConfigFile::parse(EXAMPLE_CONFIG, Path::new("auto-client.example.toml"))
            .expect("the example config parses");
        assert_eq!(file.mode, Some(Mode::Agent));
        assert!(file.api.is_some());
    }

    #[test]
    fn an_unknown_key_names_the_file() {
        let err = ConfigFile::parse("colour = 1\n", Path::new("/etc/a.toml"))
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("/etc/a.toml") && err.contains("unknown field"),
            "{err}"
        );
    }
}
