//! The command line: raw clap [`Args`], merged with the config file into checked settings.
//! Precedence: flag, then environment variable (`AUTO_SERVER_*`), then config file, then default.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::Deserialize;

/// The documented example config, printed by `auto-server default-config`.
pub const EXAMPLE_CONFIG: &str = include_str!("../auto-server.example.toml");

pub const DEFAULT_DB: &str = "sqlite://auto-server.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Parser)]
#[command(name = "auto-server", version, about = "The CMDB API of auto-client")]
pub struct Args {
    /// Config file (TOML; see `auto-server default-config`).
    #[arg(long, global = true, env = "AUTO_SERVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database URL: sqlite://PATH (created on first start) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "AUTO_SERVER_DB", value_name = "URL")]
    pub db: Option<String>,
    /// File holding the master key that encrypts the API keys (created mode 0600 on first use;
    /// default: next to the SQLite file, or ./auto-server.master-key for PostgreSQL).
    #[arg(
        long,
        global = true,
        env = "AUTO_SERVER_MASTER_KEY",
        value_name = "FILE"
    )]
    pub master_key: Option<PathBuf>,
    /// Log filter, RUST_LOG syntax (default: info).
    #[arg(long, global = true, env = "AUTO_SERVER_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API (migrates the database first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage the API keys agents sign their requests with.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage hosts registered for ssh/salt collection.
    Hosts {
        #[command(subcommand)]
        command: HostsCommand,
    },
    /// Print the documented example config file.
    DefaultConfig,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stdout).
    #[arg(long, env = "AUTO_SERVER_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Accept unsigned requests: for a local trial only.
    #[arg(long, env = "AUTO_SERVER_NO_AUTH")]
    pub no_auth: bool,
    /// Largest request body, in bytes (default 1048576); larger is refused with 413.
    #[arg(long, env = "AUTO_SERVER_MAX_BODY_BYTES", value_name = "N")]
    pub max_body_bytes: Option<usize>,
    /// Deepest JSON nesting in a report (default 32).
    #[arg(long, env = "AUTO_SERVER_MAX_JSON_DEPTH", value_name = "N")]
    pub max_json_depth: Option<usize>,
    /// Longest JSON string in a report, in bytes (default 8192).
    #[arg(long, env = "AUTO_SERVER_MAX_STRING_BYTES", value_name = "N")]
    pub max_string_bytes: Option<usize>,
    /// How far a request's timestamp may be from the server's clock, either way (default 300).
    #[arg(long, env = "AUTO_SERVER_CLOCK_SKEW_SECS", value_name = "SECONDS")]
    pub clock_skew_secs: Option<i64>,
    /// Database connections (readers on SQLite, which has one writer; default 8).
    #[arg(long, env = "AUTO_SERVER_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret on stdout (shown once; the HMAC key is its text).
    Create { name: String },
    /// List the keys (names and dates, never secrets).
    List,
    /// Revoke a key: requests signed with it are refused.
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Register a host (or change its address) for ssh/salt collection.
    Add {
        hostname: String,
        /// Address to reach the host at (name or IP).
        #[arg(long)]
        address: String,
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
    },
}

/// The config file's keys: one per flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub db: Option<String>,
    pub master_key: Option<PathBuf>,
    pub log: Option<String>,
    pub listen: Option<String>,
    pub no_auth: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub max_string_bytes: Option<usize>,
    pub clock_skew_secs: Option<i64>,
    pub max_connections: Option<u32>,
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
    }
}

/// Settings every database command shares.
#[derive(Debug, Clone)]
pub struct Common {
    pub db: String,
    pub master_key: PathBuf,
    pub log: String,
}

/// Checked settings of `serve`.
#[derive(Debug, Clone)]
pub struct Serve {
    pub listen: String,
    pub max_connections: u32,
    pub config: crate::api::ServeConfig,
}

pub fn common(args: &Args, file: &FileConfig) -> Common {
    let db = args
        .db
        .clone()
        .or_else(|| file.db.clone())
        .unwrap_or_else(|| DEFAULT_DB.to_owned());
    let master_key = args
        .master_key
        .clone()
        .or_else(|| file.master_key.clone())
        .unwrap_or_else(|| crate::db::default_master_key(&db));
    let log = args
        .log
        .clone()
        .or_else(|| file.log.clone())
        .unwrap_or_else(|| "info".to_owned());
    Common {
        db,
        master_key,
        log,
    }
}

pub fn serve(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Serve> {
    let max_body_bytes = args
        .max_body_bytes
        .or(file.max_body_bytes)
        .unwrap_or(1 << 20);
    let max_depth = args.max_json_depth.or(file.max_json_depth).unwrap_or(32);
    let max_string_bytes = args
        .max_string_bytes
        .or(file.max_string_bytes)
        .unwrap_or(8192);
    let clock_skew_secs = args.clock_skew_secs.or(file.clock_skew_secs).unwrap_or(300);
    if max_body_bytes < 1024 {
        bail!("max_body_bytes {max_body_bytes} is too small: a report needs at least 1024");
    }
    if !(1..=86_400).contains(&clock_skew_secs) {
        bail!("clock_skew_secs {clock_skew_secs} must be 1 to 86400");
    }
    Ok(Serve {
        listen: args
            .listen
            .clone()
            .or_else(|| file.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        max_connections: args.max_connections.or(file.max_connections).unwrap_or(8),
        config: crate::api::ServeConfig {
            no_auth: args.no_auth || file.no_auth.unwrap_or(false),
            max_body_bytes,
            clock_skew_secs,
            limits: crate::report::Limits {
                max_depth,
                max_string_bytes,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_sets_every_key() {
        let file: FileConfig = toml::from_str(EXAMPLE_CONFIG).expect("example config parses");
        assert!(file.db.is_some() && file.listen.is_some() && file.no_auth.is_some());
        assert!(file.master_key.is_some() && file.log.is_some() && file.max_body_bytes.is_some());
        assert!(file.max_json_depth.is_some() && file.max_string_bytes.is_some());
        assert!(file.clock_skew_secs.is_some() && file.max_connections.is_some());
    }

    #[test]
    fn args_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
