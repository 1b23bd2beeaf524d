//! Settings resolved once: the flags (and their environment variables) laid over
//! `auto-client.toml` over the defaults, checked, and turned into typed values (paths, durations,
//! modes, policies), the way ripgrep turns its low-level args into high-level ones. Nothing after
//! this module merges `args.x.or(file.x)` again.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{
    agent::delivery::AgentKey,
    config::{parse_duration, ApiFlags, CollectArgs, ConfigFile, RemoteArgs, RunArgs},
    plugins::registry::LoadOptions,
    remote::{salt::SaltSettings, ssh::SshSettings, RemoteTarget},
    Isolation, Mode,
};

/// What every command that loads plugins needs.
#[derive(Debug, Clone)]
pub struct Common {
    pub plugins_path: PathBuf,
    pub load: LoadOptions,
}

impl Common {
    pub fn resolve(plugins_flag: Option<PathBuf>, file: &ConfigFile) -> Common {
        Common {
            plugins_path: plugins_flag
                .or_else(|| file.plugins.clone())
                .unwrap_or_else(|| PathBuf::from("plugins.toml")),
            load: LoadOptions {
                private_copy_dir: None,
                strict_permissions: file.strict_permissions.unwrap_or(true),
                abi_cache: crate::plugins::abi_cache::default_path(),
            },
        }
    }
}

/// ssh and salt mode: targets, parallelism, and the transport's settings.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub mode: Mode,
    /// The targets named by `--hosts` or `--hosts-file` (empty: ask the API in `run`).
    pub listed: Vec<RemoteTarget>,
    pub workers: usize,
    pub ssh: SshSettings,
    pub salt: SaltSettings,
}

/// Where the collectors run.
#[derive(Debug, Clone)]
pub enum Where {
    /// This machine, with this isolation.
    Local(Isolation),
    Fleet(Box<Fleet>),
}

fn mode(flag: Option<Mode>, file: &ConfigFile) -> Mode {
    flag.or(file.mode).unwrap_or(Mode::Agent)
}

/// `--isolation` is about collectors run in this process: refused in ssh and salt mode (where
/// collectors run against a remote target), rather than silently ignored.
fn resolve_where(
    mode: Mode,
    isolation_flag: Option<Isolation>,
    remote: &RemoteArgs,
    file: &ConfigFile,
) -> Result<Where> {
    if mode == Mode::Agent {
        if !remote.hosts.is_empty() || remote.hosts_file.is_some() {
            bail!("--hosts and --hosts-file are for --mode ssh or salt, not agent mode");
        }
        return Ok(Where::Local(
            isolation_flag.or(file.isolation).unwrap_or_default(),
        ));
    }
    if isolation_flag.is_some() {
        bail!(
            "--isolation applies to agent mode only (in {} mode the collectors' commands run on the targets)",
            mode.as_str()
        );
    }
    let listed = match &remote.hosts_file {
        Some(path) => RemoteTarget::read_file(path)?,
        None => remote
            .hosts
            .iter()
            .map(|h| RemoteTarget::parse(h))
            .collect::<Result<_>>()?,
    };
    let mut ssh = file.ssh.clone();
    let r = remote.clone();
    ssh.user = r.ssh_user.or(ssh.user);
    ssh.port = r.ssh_port.or(ssh.port);
    ssh.identity_file = r.ssh_identity.or(ssh.identity_file);
    ssh.password_file = r.ssh_password_file.or(ssh.password_file);
    ssh.known_hosts = r.known_hosts.or(ssh.known_hosts);
    ssh.host_key_policy = r.host_key_policy.or(ssh.host_key_policy);
    let mut salt = file.salt.clone();
    salt.salt_command = r.salt_command.or(salt.salt_command);
    salt.config_dir = r.salt_config_dir.or(salt.config_dir);
    let workers = r.workers.or(file.workers).unwrap_or(32);
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    Ok(Where::Fleet(Box::new(Fleet {
        mode,
        listed,
        workers,
        ssh,
        salt,
    })))
}

/// `collect`.
#[derive(Debug, Clone)]
pub struct Collect {
    pub common: Common,
    pub at: Where,
}

impl Collect {
    pub fn resolve(
        plugins: Option<PathBuf>,
        args: &CollectArgs,
        file: &ConfigFile,
    ) -> Result<Self> {
        let mode = mode(args.mode, file);
        let at = resolve_where(mode, args.isolation, &args.remote, file)?;
        if let Where::Fleet(f) = &at {
            if f.listed.is_empty() {
                bail!(
                    "--mode {} needs targets: give --hosts or --hosts-file",
                    mode.as_str()
                );
            }
        }
        Ok(Collect {
            common: Common::resolve(plugins, file),
            at,
        })
    }
}

/// The API and the key requests are signed with (no `Debug`: it holds the secret).
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub key: Option<AgentKey>,
}

impl Api {
    pub fn resolve(flags: &ApiFlags, file: &ConfigFile) -> Result<Self> {
        let url = flags
            .api
            .clone()
            .or_else(|| file.api.clone())
            .context("no API URL: give --api, AUTO_CLIENT_API or `api` in the config")?;
        let key_id = flags.key_id.clone().or_else(|| file.key_id.clone());
        let key_file = flags.key_file.clone().or_else(|| file.key_file.clone());
        let key = match (key_id, key_file) {
            (Some(id), Some(path)) => Some(AgentKey::from_file(&id, &path)?),
            (None, None) => {
                tracing::warn!("no key_id and key_file: requests are sent unsigned (only a server started with --no-auth accepts them)");
                None
            }
            (Some(_), None) => bail!("key_id is set but key_file is not: give both, or neither"),
            (None, Some(_)) => bail!("key_file is set but key_id is not: give both, or neither"),
        };
        Ok(Api { url, key })
    }
}

/// `run`.
#[derive(Clone)]
pub struct Run {
    pub common: Common,
    pub at: Where,
    pub api: Api,
    pub cert_path: PathBuf,
    pub spool_dir: PathBuf,
    pub spool_max_reports: usize,
    pub spool_max_bytes: u64,
    /// Every how many reports long part lists go whole (the others send unchanged ones by digest).
    pub full_report_every: u32,
    pub interval: Option<Duration>,
    pub log_dir: Option<PathBuf>,
}

impl Run {
    pub fn resolve(plugins: Option<PathBuf>, args: &RunArgs, file: &ConfigFile) -> Result<Self> {
        let mode = mode(args.mode, file);
        let interval = match args.interval.as_deref().or(file.interval.as_deref()) {
            Some(text) => Some(parse_duration("--interval", text)?),
            None => None,
        };
        Ok(Run {
            common: Common::resolve(plugins, file),
            at: resolve_where(mode, args.isolation, &args.remote, file)?,
            api: Api::resolve(&args.api, file)?,
            cert_path: args
                .cert_file
                .clone()
                .or_else(|| file.cert_file.clone())
                .unwrap_or_else(|| PathBuf::from("/var/lib/auto-client/cert")),
            spool_dir: args
                .spool_dir
                .clone()
                .or_else(|| file.spool_dir.clone())
                .unwrap_or_else(|| PathBuf::from("/var/lib/auto-client/spool")),
            spool_max_reports: file.spool_max_reports.unwrap_or(1000),
            spool_max_bytes: file.spool_max_bytes.unwrap_or(64 << 20),
            full_report_every: file.full_report_every.unwrap_or(24).max(1),
            interval,
            log_dir: args.log_dir.clone().or_else(|| file.log_dir.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Args, Command};
    use clap::Parser;

    fn collect(argv: &[&str]) -> Result<Collect> {
        let args = Args::try_parse_from(argv).expect("parses");
        let Command::Collect(c) = args.command else {
            panic!("collect")
        };
        Collect::resolve(args.plugins, &c, &ConfigFile::default())
    }

    #[test]
    fn isolation_is_refused_where_it_does_not_apply() {
        let e = collect(&[
            "auto-client",
            "collect",
            "--mode",
            "ssh",
            "--hosts",
            "a",
            "--isolation",
            "process",
        ])
        .expect_err("refused");
        assert!(
            e.to_string()
                .contains("--isolation applies to agent mode only"),
            "{e}"
        );
        let ok =
            collect(&["auto-client", "collect", "--isolation", "process"]).expect("agent mode");
        assert!(matches!(ok.at, Where::Local(Isolation::Process)));
    }

    #[test]
    fn fleet_settings_are_resolved_once_with_flags_over_the_file() {
        let c = collect(&[
            "auto-client",
            "collect",
            "--mode",
            "salt",
            "--hosts",
            "m1,m2=minion-2",
            "--workers",
            "4",
        ])
        .expect("valid");
        let Where::Fleet(f) = c.at else {
            panic!("fleet")
        };
        assert_eq!((f.mode, f.workers, f.listed.len()), (Mode::Salt, 4, 2));
        assert_eq!(f.listed[1].address, "minion-2");
        assert!(
            collect(&["auto-client", "collect", "--mode", "ssh"]).is_err(),
            "no targets"
        );
        assert!(
            collect(&["auto-client", "collect", "--hosts", "a"]).is_err(),
            "hosts in agent mode"
        );
    }
}
