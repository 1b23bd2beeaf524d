//! ssh mode: the executor over one SSH connection per host (`ssh-exec`, libssh2).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{ROption, RResult, RStr, RString, RVec},
};
use anyhow::{Context, Result};
use plugin_api::{CommandOutput, Executor, Executor_TO, PluginError};
use serde::Deserialize;
use ssh_exec::{
    ConnectOptions, HostKeyPolicy, KnownHosts, Secret, SshAuth, SshError, SshSession, SshTarget,
};

use crate::{
    executor::{error, guarded},
    remote::{Connector, HostFailure, RemoteTarget},
    runner::MakeExecutor,
    Mode,
};

/// The `[ssh]` table of auto-client.toml (each key also a flag; see `config::RemoteArgs`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key (default ~/.ssh/id_ed25519).
    pub identity_file: Option<PathBuf>,
    pub passphrase_file: Option<PathBuf>,
    /// Password login: from a file, or from an environment variable; never from the command line.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// Use the identities of the ssh-agent at SSH_AUTH_SOCK.
    pub agent: Option<bool>,
    pub known_hosts: Option<PathBuf>,
    /// `strict` (default) or `accept-new` (trust on first use, then strict).
    pub host_key_policy: Option<String>,
    pub connect_timeout: Option<String>,
}

pub struct SshConnector {
    auth: SshAuth,
    known_hosts: Arc<KnownHosts>,
    options: ConnectOptions,
    user: String,
    port: u16,
}

impl SshConnector {
    pub fn new(s: &SshSettings) -> Result<Self> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let auth = if let Some(path) = &s.password_file {
            SshAuth::Password(Secret::from_file(path).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else if let Some(var) = &s.password_env {
            SshAuth::Password(Secret::from_env(var).map_err(|e| anyhow::anyhow!("{e}"))?)
        } else if s.agent.unwrap_or(false) {
            SshAuth::Agent
        } else {
            let key = s
                .identity_file
                .clone()
                .unwrap_or_else(|| home.join(".ssh/id_ed25519"));
            let passphrase = match &s.passphrase_file {
                Some(p) => Some(Secret::from_file(p).map_err(|e| anyhow::anyhow!("{e}"))?),
                None => None,
            };
            if !key.is_file() {
                anyhow::bail!("ssh identity file {} does not exist (set --ssh-identity or [ssh] identity_file)", key.display());
            }
            SshAuth::key_file(&key, passphrase.as_ref()).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        let policy = match s.host_key_policy.as_deref().unwrap_or("strict") {
            "strict" => HostKeyPolicy::Strict,
            "accept-new" => HostKeyPolicy::AcceptNew,
            other => anyhow::bail!("host key policy {other:?}: expected strict or accept-new"),
        };
        let known = s
            .known_hosts
            .clone()
            .unwrap_or_else(|| home.join(".ssh/known_hosts"));
        let known_hosts = KnownHosts::load(&known, policy)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("known_hosts {}", known.display()))?;
        let mut options = ConnectOptions::default();
        if let Some(t) = &s.connect_timeout {
            options.connect_timeout = crate::config::parse_duration("ssh connect_timeout", t)?;
        }
        Ok(Self {
            auth,
            known_hosts: Arc::new(known_hosts),
            options,
            user: s.user.clone().unwrap_or_else(|| "root".to_string()),
            port: s.port.unwrap_or(22),
        })
    }
}

impl Connector for SshConnector {
    fn connect(&self, target: &RemoteTarget) -> Result<MakeExecutor, HostFailure> {
        let ssh_target = SshTarget {
            host: target.name.clone(),
            address: target.address.clone(),
            port: target.port.unwrap_or(self.port),
            user: self.user.clone(),
        };
        let session =
            SshSession::connect(&ssh_target, &self.auth, &self.known_hosts, &self.options)
                .map_err(|e| HostFailure {
                    kind: e.kind().to_string(),
                    message: e.to_string(),
                })?;
        let session = Arc::new(session);
        let name = target.name.clone();
        Ok(Arc::new(move |deadline| {
            Executor_TO::from_value(
                SshExecutor {
                    session: Arc::clone(&session),
                    name: name.clone(),
                    deadline,
                },
                TD_Opaque,
            )
        }))
    }

    fn mode(&self) -> Mode {
        Mode::Ssh
    }
}

/// One collector call's view of a host's SSH session.
struct SshExecutor {
    session: Arc<SshSession>,
    name: String,
    deadline: Instant,
}

fn ssh_error(e: &SshError) -> PluginError {
    let kind = match e {
        SshError::CommandTimeout { .. } | SshError::Timeout { .. } => "timeout",
        _ => e.kind(),
    };
    error(kind, e.to_string())
}

impl Executor for SshExecutor {
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        guarded("run", || {
            let budget = Duration::from_millis(timeout_ms)
                .min(self.deadline.saturating_duration_since(Instant::now()));
            if budget.is_zero() {
                return RResult::RErr(error(
                    "timeout",
                    format!("no time left to run `{}`", command.as_str()),
                ));
            }
            match self.session.run(command.as_str(), budget) {
                Ok(out) => RResult::ROk(CommandOutput {
                    stdout: RVec::from(out.stdout),
                    stderr: RVec::from(out.stderr),
                    exit_code: match out.exit_code {
                        Some(c) => ROption::RSome(c),
                        None => ROption::RNone,
                    },
                }),
                Err(e) => RResult::RErr(ssh_error(&e)),
            }
        })
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        guarded("read_file", || {
            match self.session.read_file(Path::new(path.as_str())) {
                Ok(bytes) => RResult::ROk(RVec::from(bytes)),
                Err(e) => {
                    let text = e.to_string();
                    let kind = if text.contains("No such file") {
                        "not_found".to_string()
                    } else if text.contains("Permission denied") {
                        "permission_denied".to_string()
                    } else {
                        ssh_error(&e).kind.into_string()
                    };
                    RResult::RErr(error(&kind, text))
                }
            }
        })
    }

    fn target_name(&self) -> RString {
        self.name.as_str().into()
    }
}
