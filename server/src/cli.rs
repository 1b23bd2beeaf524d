//! The command line: raw clap [`Args`], merged with the config file into checked settings.
//! Precedence: flag, then environment variable (`AUTO_SERVER_*`), then config file, then default.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// Let a release build use the test clock of AUTO_SERVER_TEST_CLOCK_FILE (benchmarks only:
    /// the server's time is then whatever that file says).
    #[arg(long, global = true, hide = true)]
    pub allow_test_clock: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API (migrates the database first).
    Serve(Box<ServeArgs>),
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
    /// Manage the people who log in to the web pages (passwords are read from standard input).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Apply the retention policy now: print, per table, the rows removed (see `serve`'s
    /// retention flags; `serve` also prunes every --prune-interval-secs).
    Prune {
        /// Print what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// Write a consistent copy of the SQLite database to FILE while the server runs (never
    /// overwrites FILE). For PostgreSQL use pg_dump (README).
    Backup { file: PathBuf },
    /// Manage webhooks: a signed HTTP POST for every change-log row a subscription selects.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Print the documented example config file.
    DefaultConfig,
}

/// The retention policy's flags (`serve` and `prune`).
#[derive(Debug, Default, clap::Args)]
pub struct RetentionArgs {
    /// Days without a report after which a host is stale (default 7).
    #[arg(long, env = "AUTO_SERVER_STALE_DAYS", value_name = "DAYS")]
    pub stale_days: Option<i64>,
    /// Days without a report after which a host is removed with its assets, change log and
    /// report rows (default: never).
    #[arg(long, env = "AUTO_SERVER_REMOVE_STALE_AFTER_DAYS", value_name = "DAYS")]
    pub remove_stale_after_days: Option<i64>,
    /// Days the change log is kept (default: for ever).
    #[arg(long, env = "AUTO_SERVER_CHANGE_LOG_DAYS", value_name = "DAYS")]
    pub change_log_days: Option<i64>,
    /// Days the report rows (stored answers, the pages' as-of and diff points) are kept; each
    /// host's newest is always kept (default: for ever, but never longer than the change log).
    #[arg(long, env = "AUTO_SERVER_REPORT_BODIES_DAYS", value_name = "DAYS")]
    pub report_bodies_days: Option<i64>,
    /// Days the error log is kept (default: for ever).
    #[arg(long, env = "AUTO_SERVER_ERROR_LOG_DAYS", value_name = "DAYS")]
    pub error_log_days: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL (http://HOST[:PORT]/PATH) to change-log events; prints its id.
    Add {
        url: String,
        /// File holding the shared secret (16 to 1024 bytes; a trailing newline is dropped),
        /// the HMAC-SHA256 key of the X-Auto-Signature header.
        #[arg(long, value_name = "FILE")]
        secret_file: PathBuf,
        /// Components to send, comma-separated globs over the change log's component
        /// (memory.dimms, disk.disks, nic.*, os); default: every component.
        #[arg(long, value_name = "GLOB,...", value_delimiter = ',')]
        component: Vec<String>,
        /// Actions to send, comma-separated: added, removed, changed; default: every action.
        #[arg(long, value_name = "ACTION,...", value_delimiter = ',')]
        action: Vec<String>,
        /// Hosts to send, a glob over the host name (case-insensitive); default: every host.
        #[arg(long, value_name = "GLOB", default_value = "*")]
        host: String,
    },
    /// List the subscriptions with their filters and pending, delivered and failed counts.
    List,
    /// Remove a subscription with its undelivered events and its delivery log.
    Remove { id: i64 },
    /// Show the delivery attempts (status or error, and what became of the event), oldest first.
    Log {
        /// Only this subscription's attempts.
        #[arg(long, value_name = "ID")]
        id: Option<i64>,
        /// The last N attempts.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; the password is read from standard input (one line), never from the
    /// command line.
    Add {
        name: String,
        /// viewer: reads everything; admin: also registers hosts, manages keys and users, edits
        /// hand-entered fields.
        #[arg(long, value_enum)]
        role: UserRole,
    },
    /// List the users (name, role, created, open sessions).
    List,
    /// Remove a user and end their sessions.
    Remove { name: String },
    /// Set a user's password (read from standard input) and end their sessions.
    Passwd { name: String },
}

/// The role of a new user (`users add --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UserRole {
    Viewer,
    Admin,
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
    /// Seconds a client has to send a request's headers once it started (default 10); then the
    /// connection is closed.
    #[arg(long, env = "AUTO_SERVER_HEADER_TIMEOUT_SECS", value_name = "SECONDS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body once its headers are in (default 30); then
    /// 408.
    #[arg(long, env = "AUTO_SERVER_BODY_TIMEOUT_SECS", value_name = "SECONDS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds a connection may sit idle (a new one before its first request, a kept-alive one
    /// between requests) before it is closed (default 15).
    #[arg(long, env = "AUTO_SERVER_KEEP_ALIVE_SECS", value_name = "SECONDS")]
    pub keep_alive_secs: Option<u64>,
    /// Most client connections open at once (default 512); one more is answered 503 and closed.
    #[arg(long, env = "AUTO_SERVER_MAX_CLIENTS", value_name = "N")]
    pub max_clients: Option<usize>,
    /// Seconds between two prunings of expired nonces (default 60).
    #[arg(long, env = "AUTO_SERVER_NONCE_PRUNE_SECS", value_name = "SECONDS")]
    pub nonce_prune_secs: Option<u64>,
    /// Hours a web session lasts after login (default 12).
    #[arg(long, env = "AUTO_SERVER_SESSION_HOURS", value_name = "HOURS")]
    pub session_hours: Option<i64>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Seconds between two retention passes (default 3600).
    #[arg(long, env = "AUTO_SERVER_PRUNE_INTERVAL_SECS", value_name = "SECONDS")]
    pub prune_interval_secs: Option<u64>,
    /// Mark session cookies Secure on every request (set this when a TLS proxy that does not
    /// send X-Forwarded-Proto sits in front; with it, `X-Forwarded-Proto: https` does the same).
    #[arg(long, env = "AUTO_SERVER_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// A bearer token that opens GET /metrics to clients not on loopback (at least 16
    /// characters; default: none, loopback only). Prefer the env var or the config file: a flag
    /// shows in the process list.
    #[arg(
        long,
        env = "AUTO_SERVER_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,
    /// Seconds one webhook POST may take (connect, send, status line; default 10).
    #[arg(long, env = "AUTO_SERVER_WEBHOOK_TIMEOUT_SECS", value_name = "SECONDS")]
    pub webhook_timeout_secs: Option<u64>,
    /// Attempts at a webhook event before it is marked failed (default 10).
    #[arg(long, env = "AUTO_SERVER_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// Longest wait between two attempts at a webhook event (default 300; the wait doubles
    /// from 1 s up to it).
    #[arg(
        long,
        env = "AUTO_SERVER_WEBHOOK_BACKOFF_MAX_SECS",
        value_name = "SECONDS"
    )]
    pub webhook_backoff_max_secs: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret on stdout (shown once; the HMAC key is its text).
    Create {
        name: String,
        /// What the key may do: fleet (report for any host, register hosts: ssh/salt
        /// controllers), host (report for the one host of --host: an agent), read (GET only),
        /// admin (what fleet may, and edit hosts' hand-entered fields).
        #[arg(long, value_enum, default_value_t = KeyScope::Fleet)]
        scope: KeyScope,
        /// The host a `--scope host` key is bound to (registered if unknown; the binding is to
        /// the host's id, so a rename keeps it).
        #[arg(long, value_name = "HOSTNAME")]
        host: Option<String>,
    },
    /// List the keys (names, dates, scope and bound host; never secrets).
    List,
    /// Revoke a key: requests signed with it are refused.
    Revoke { name: String },
}

/// The scope of a new key (`keys create --scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyScope {
    Fleet,
    Host,
    Read,
    Admin,
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
    /// Remove a host and everything stored about it (components, change log, hand-entered
    /// fields, its host keys); its report bodies and error rows stay.
    Remove { hostname: String },
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
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub keep_alive_secs: Option<u64>,
    pub max_clients: Option<usize>,
    pub nonce_prune_secs: Option<u64>,
    pub session_hours: Option<i64>,
    pub stale_days: Option<i64>,
    pub remove_stale_after_days: Option<i64>,
    pub change_log_days: Option<i64>,
    pub report_bodies_days: Option<i64>,
    pub error_log_days: Option<i64>,
    pub prune_interval_secs: Option<u64>,
    pub secure_cookies: Option<bool>,
    pub metrics_token: Option<String>,
    pub webhook_timeout_secs: Option<u64>,
    pub webhook_max_attempts: Option<u32>,
    pub webhook_backoff_max_secs: Option<u64>,
    /// The inventory's summary columns (`server/ui/summary.toml` is the default).
    pub summary: Option<crate::search::Summary>,
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
    pub net: NetLimits,
    pub nonce_prune: Duration,
    pub retention: crate::retention::Policy,
    pub prune_interval: Duration,
    pub webhooks: crate::webhooks::Delivery,
}

/// The connection limits of `serve` (see [`crate::serve_connections`]).
#[derive(Debug, Clone, Copy)]
pub struct NetLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub keep_alive: Duration,
    pub max_clients: usize,
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
    let secs = |flag: Option<u64>, file: Option<u64>, default: u64, name: &str| {
        let n = flag.or(file).unwrap_or(default);
        if !(1..=86_400).contains(&n) {
            bail!("{name} {n} must be 1 to 86400 seconds");
        }
        Ok(Duration::from_secs(n))
    };
    let max_clients = args.max_clients.or(file.max_clients).unwrap_or(512);
    if !(1..=1_000_000).contains(&max_clients) {
        bail!("max_clients {max_clients} must be 1 to 1000000");
    }
    let net = NetLimits {
        header_timeout: secs(
            args.header_timeout_secs,
            file.header_timeout_secs,
            10,
            "header_timeout_secs",
        )?,
        body_timeout: secs(
            args.body_timeout_secs,
            file.body_timeout_secs,
            30,
            "body_timeout_secs",
        )?,
        keep_alive: secs(
            args.keep_alive_secs,
            file.keep_alive_secs,
            15,
            "keep_alive_secs",
        )?,
        max_clients,
    };
    let nonce_prune = secs(
        args.nonce_prune_secs,
        file.nonce_prune_secs,
        60,
        "nonce_prune_secs",
    )?;
    let session_hours = args.session_hours.or(file.session_hours).unwrap_or(12);
    if !(1..=24 * 90).contains(&session_hours) {
        bail!("session_hours {session_hours} must be 1 to 2160");
    }
    let retention = retention(&args.retention, file)?;
    let prune_interval = secs(
        args.prune_interval_secs,
        file.prune_interval_secs,
        3600,
        "prune_interval_secs",
    )?;
    let metrics_token = args
        .metrics_token
        .clone()
        .or_else(|| file.metrics_token.clone())
        .filter(|t| !t.is_empty());
    if let Some(t) = &metrics_token {
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("metrics_token must be at least 16 printable characters without spaces");
        }
    }
    let webhook_max_attempts = args
        .webhook_max_attempts
        .or(file.webhook_max_attempts)
        .unwrap_or(10);
    if !(1..=100).contains(&webhook_max_attempts) {
        bail!("webhook_max_attempts {webhook_max_attempts} must be 1 to 100");
    }
    let webhooks = crate::webhooks::Delivery {
        timeout: secs(
            args.webhook_timeout_secs,
            file.webhook_timeout_secs,
            10,
            "webhook_timeout_secs",
        )?,
        max_attempts: webhook_max_attempts,
        backoff_max: secs(
            args.webhook_backoff_max_secs,
            file.webhook_backoff_max_secs,
            300,
            "webhook_backoff_max_secs",
        )?,
        poll: Duration::from_secs(1),
    };
    Ok(Serve {
        net,
        nonce_prune,
        retention,
        prune_interval,
        webhooks,
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
            session_ttl_secs: session_hours * 3600,
            stale_days: retention.stale_days,
            secure_cookies: args.secure_cookies || file.secure_cookies.unwrap_or(false),
            summary: file.summary.clone().unwrap_or_default(),
            metrics_token,
        },
    })
}

/// The retention policy: flags over the file over the defaults, checked.
pub fn retention(
    args: &RetentionArgs,
    file: &FileConfig,
) -> anyhow::Result<crate::retention::Policy> {
    let stale_days = args.stale_days.or(file.stale_days).unwrap_or(7);
    if !(1..=3650).contains(&stale_days) {
        bail!("stale_days {stale_days} must be 1 to 3650");
    }
    let age = |flag: Option<i64>, file: Option<i64>, name: &str| -> anyhow::Result<Option<i64>> {
        match flag.or(file) {
            Some(n) if !(1..=36_500).contains(&n) => bail!("{name} {n} must be 1 to 36500 days"),
            n => Ok(n),
        }
    };
    let remove_stale_after_days = age(
        args.remove_stale_after_days,
        file.remove_stale_after_days,
        "remove_stale_after_days",
    )?;
    if let Some(d) = remove_stale_after_days.filter(|d| *d < stale_days) {
        bail!("remove_stale_after_days {d} is less than stale_days {stale_days}: a host is removed only after it is stale");
    }
    Ok(crate::retention::Policy {
        stale_days,
        remove_stale_after_days,
        change_log_days: age(
            args.change_log_days,
            file.change_log_days,
            "change_log_days",
        )?,
        report_bodies_days: age(
            args.report_bodies_days,
            file.report_bodies_days,
            "report_bodies_days",
        )?,
        error_log_days: age(args.error_log_days, file.error_log_days, "error_log_days")?,
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
        assert!(file.header_timeout_secs.is_some() && file.body_timeout_secs.is_some());
        assert!(file.keep_alive_secs.is_some() && file.max_clients.is_some());
        assert!(file.nonce_prune_secs.is_some() && file.session_hours.is_some());
        assert!(file.stale_days.is_some() && file.secure_cookies.is_some());
        assert!(file.remove_stale_after_days.is_some() && file.change_log_days.is_some());
        assert!(file.report_bodies_days.is_some() && file.error_log_days.is_some());
        assert!(file.prune_interval_secs.is_some());
        assert!(file.summary.is_some() && file.metrics_token.is_some());
        assert!(file.webhook_timeout_secs.is_some() && file.webhook_max_attempts.is_some());
        assert!(file.webhook_backoff_max_secs.is_some());
    }

    #[test]
    fn the_packaged_config_parses_and_its_retention_is_valid() {
        let text = include_str!("../../packaging/auto-server/auto-server.toml");
        let file: FileConfig = toml::from_str(text).expect("packaged config parses");
        let policy = retention(&RetentionArgs::default(), &file).expect("valid retention");
        assert_eq!(policy.change_log_days, Some(365));
        assert_eq!(policy.report_rows_days(), Some(90));
        assert_eq!(policy.remove_stale_after_days, None);
    }

    #[test]
    fn retention_settings_are_checked() {
        let file = FileConfig {
            stale_days: Some(30),
            remove_stale_after_days: Some(10),
            ..FileConfig::default()
        };
        let err = retention(&RetentionArgs::default(), &file).map_err(|e| e.to_string());
        assert_eq!(
            err.err().as_deref(),
            Some("remove_stale_after_days 10 is less than stale_days 30: a host is removed only after it is stale")
        );
        let flags = RetentionArgs {
            change_log_days: Some(0),
            ..RetentionArgs::default()
        };
        let err = retention(&flags, &FileConfig::default()).map_err(|e| e.to_string());
        assert_eq!(
            err.err().as_deref(),
            Some("change_log_days 0 must be 1 to 36500 days")
        );
        // a flag wins over the file
        let flags = RetentionArgs {
            error_log_days: Some(5),
            ..RetentionArgs::default()
        };
        let file = FileConfig {
            error_log_days: Some(50),
            ..FileConfig::default()
        };
        assert_eq!(
            retention(&flags, &file).ok().and_then(|p| p.error_log_days),
            Some(5)
        );
    }

    #[test]
    fn the_packaged_config_parses_and_is_valid() {
        let text = include_str!("../../packaging/auto-server/auto-server.toml");
        let file: FileConfig = toml::from_str(text).expect("packaged config parses");
        assert!(file.webhook_max_attempts.is_some());
        let args = Args::parse_from(["auto-server", "serve"]);
        let Command::Serve(serve_args) = args.command else {
            panic!("serve parses")
        };
        serve(&serve_args, &file).expect("packaged config is valid");
    }

    #[test]
    fn args_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
