//! salt mode: the executor runs commands on minions through the Salt master (`salt-exec`: one
//! long-lived Python helper using Salt's LocalClient).
//!
//! A Salt job costs far more than a command (publish, fork on the minion, the return), so the
//! commands the collectors will ask for are learned by a dry run, run on every minion as ONE Salt
//! job (`prefetch`), and the collectors' calls are answered from it (see `collect_fleet`).

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use anyhow::{Context, Result};
use plugin_api::{CommandOutput, Executor, Executor_TO, PluginError};
use salt_exec::{SaltClient, SaltConfig, SaltError};
use serde::Deserialize;

use crate::{
    plugins::executor::{command_output, error, guarded},
    plugins::runner::MakeExecutor,
    remote::learn::{self, cat_command, cat_read},
    remote::{Connector, HostFailure, RemoteTarget},
    Mode,
};

/// The `[salt]` table of auto-client.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaltSettings {
    /// The `salt` command (its `#!` line names the Python that has Salt); default: `salt` on PATH.
    pub salt_command: Option<PathBuf>,
    /// The master's configuration directory (default /etc/salt).
    pub config_dir: Option<PathBuf>,
    /// How long one batch of commands may take on the minions (default 20s).
    pub batch_timeout: Option<String>,
}

pub struct SaltConnector {
    client: Arc<SaltClient>,
    batch_timeout: Duration,
}

impl SaltConnector {
    pub fn new(s: &SaltSettings) -> Result<Self> {
        let salt = match &s.salt_command {
            Some(p) => p.clone(),
            None => find_on_path("salt").context(
                "salt mode: no `salt` command on PATH (set --salt-command or [salt] salt_command)",
            )?,
        };
        let config_dir = s
            .config_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/salt"));
        let config = SaltConfig::from_salt_command(&salt, &config_dir)
            .map_err(|e| anyhow::anyhow!("salt mode: {e}"))?;
        let client = SaltClient::new(config).map_err(|e| {
            anyhow::anyhow!(
                "salt mode: cannot reach the Salt master ({}): {e}",
                config_dir.display()
            )
        })?;
        let batch_timeout = match &s.batch_timeout {
            Some(t) => crate::config::parse_duration("salt batch_timeout", t)?,
            None => Duration::from_secs(20),
        };
        // once per process: `run --interval` keeps this connector, and its helper, for every cycle
        tracing::info!(config_dir = %config_dir.display(), "salt helper started");
        Ok(Self {
            client: Arc::new(client),
            batch_timeout,
        })
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

impl Connector for SaltConnector {
    fn connect(&self, target: &RemoteTarget) -> Result<MakeExecutor, HostFailure> {
        let minion = minion_of(target);
        let (client, name) = (Arc::clone(&self.client), target.name.clone());
        Ok(Arc::new(move |deadline| {
            Executor_TO::from_value(
                SaltExecutor {
                    client: Arc::clone(&client),
                    minion: minion.clone(),
                    name: name.clone(),
                    deadline,
                },
                TD_Opaque,
            )
        }))
    }

    fn mode(&self) -> Mode {
        Mode::Salt
    }

    /// The learned commands run on every minion as ONE Salt job, and the collectors' calls are
    /// answered from it. A command the dry run did not predict (one that depends on real output)
    /// is still run, live, on its own (coalesced across minions by salt-exec).
    fn prefetch(&self, targets: &[RemoteTarget], learned: &[learn::Ask], _shortest: Duration) {
        let commands: Vec<String> = learned.iter().map(|a| a.command.clone()).collect();
        let minions: Vec<String> = targets.iter().map(minion_of).collect();
        let started = Instant::now();
        match self
            .client
            .prefetch(&minions, &commands, self.batch_timeout)
        {
            Ok(()) => tracing::info!(
                minions = minions.len(),
                commands = commands.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "ran the collectors' commands as one Salt job"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the batch job failed: collecting command by command")
            }
        }
    }

    fn finish(&self) {
        tracing::info!(
            jobs = self.client.jobs(),
            "salt jobs published for the fleet"
        );
        self.client.clear_prefetched();
    }
}

/// The minion id is the target's name, unless the target maps it (`name=minion-id`).
fn minion_of(target: &RemoteTarget) -> String {
    if target.address != target.name {
        target.address.clone()
    } else {
        target.name.clone()
    }
}

/// One collector call's view of a minion.
struct SaltExecutor {
    client: Arc<SaltClient>,
    minion: String,
    name: String,
    deadline: Instant,
}

fn salt_error(e: &SaltError) -> PluginError {
    error(e.kind(), e.to_string())
}

impl SaltExecutor {
    fn run_budgeted(
        &self,
        command: &str,
        timeout: Duration,
    ) -> Result<salt_exec::Output, PluginError> {
        let budget = timeout.min(self.deadline.saturating_duration_since(Instant::now()));
        if budget.is_zero() {
            return Err(error(
                "timeout",
                format!("no time left to run `{command}` on {}", self.name),
            ));
        }
        self.client
            .run(&self.minion, command, budget)
            .map_err(|e| salt_error(&e))
    }
}

impl Executor for SaltExecutor {
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        guarded("run", || {
            match self.run_budgeted(command.as_str(), Duration::from_millis(timeout_ms)) {
                Ok(out) => RResult::ROk(command_output(out.stdout, out.stderr, out.exit_code)),
                Err(e) => RResult::RErr(e),
            }
        })
    }

    /// A file read is a `cat` command, so that it is learned and prefetched like the others.
    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        guarded("read_file", || {
            let command = cat_command(path.as_str());
            match self.run_budgeted(&command, Duration::from_secs(30)) {
                Ok(out) => match cat_read(
                    &self.name,
                    path.as_str(),
                    &out.stdout,
                    &out.stderr,
                    out.exit_code,
                ) {
                    Ok(bytes) => RResult::ROk(RVec::from(bytes)),
                    Err(e) => RResult::RErr(e),
                },
                Err(e) => RResult::RErr(e),
            }
        })
    }

    fn target_name(&self) -> RString {
        self.name.as_str().into()
    }
}
