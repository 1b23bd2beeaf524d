//! ssh mode: the executor over one SSH connection per host (`ssh-exec`, libssh2).
//!
//! Each SSH request is a round trip and a channel's worth of client CPU, so the commands the
//! collectors will ask for (learned once by a dry run, `learn`) run on each host in ONE `exec` as
//! soon as it is connected (`batch`), and the collectors' calls are answered from those outputs; a
//! command that was not learned, or whose block did not come back, runs on its own.

use std::{
    collections::HashMap,
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
use serde::Deserialize;
use ssh_exec::{
    ConnectOptions, HostKeyPolicy, KnownHosts, Secret, SshAuth, SshError, SshSession, SshTarget,
    Watch,
};

use crate::{
    plugins::executor::{command_output, error, guarded},
    plugins::runner::MakeExecutor,
    remote::batch,
    remote::learn::{self, cat_command, cat_read},
    remote::pace::{Pacer, Signal},
    remote::{Connector, HostFailure, RemoteTarget},
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
    /// What runs on each host right after it is connected (see the module doc); unset: nothing.
    prefetch: std::sync::OnceLock<Prefetch>,
    /// How many handshakes may be under way: follows how fast they complete (`pace`).
    pacer: Pacer,
}

/// The learned commands, worked out once per fleet.
struct Prefetch {
    commands: Vec<String>,
    /// Each command's own timeout (capped by the shortest collector timeout).
    timeouts: Vec<Duration>,
    /// When the batch's watchdog kills what still runs: the longest of the commands' timeouts.
    limit: Duration,
}

/// How long past its limit and `batch::SLACK` a batch may take: the EOF that fires the host's
/// watchdog, its kills and its grace for processes slow to die (1 s at most, see `batch`), the
/// outputs' way back. Past it the batch is given up (the host, or the link to it, does not
/// answer): its learned commands are answered as timeouts, also those that had not started.
const BATCH_GRACE: Duration = Duration::from_secs(2);

/// Runs `commands` on `session` as one batch: each stopped at its own timeout in `timeouts`, the
/// whole at `limit` and `batch::SLACK` (the EOF that fires the host's watchdog, when
/// `batch::Clock` says), given up past that and `BATCH_GRACE`. What came back, the clock that
/// timed it (for `batch::settle`) and the batch's nonce (for `batch::parse`).
fn run_batch(
    session: &SshSession,
    commands: &[String],
    timeouts: &[Duration],
    limit: Duration,
) -> (Result<ssh_exec::Output, SshError>, batch::Clock, String) {
    let nonce = batch::nonce();
    let script = batch::script(commands, &nonce);
    let done = batch::done(&nonce);
    let mut clock = batch::Clock::new(commands, timeouts, limit, &nonce);
    let mut eof_at = |new: &[u8]| clock.eof_at(new);
    let watch = Watch {
        eof_at: Some(&mut eof_at),
        done: done.as_bytes(),
    };
    let ran = session.run_with(&script, limit + batch::SLACK + BATCH_GRACE, watch);
    (ran, clock, nonce)
}

/// What the batch gave on one host.
#[derive(Default)]
struct Prefetched {
    outputs: HashMap<String, batch::Output>,
    /// The batch did not come back within its limit and grace: why (each learned command is then
    /// a timeout, not run again on its own).
    lost: Option<String>,
    /// The learned commands (to tell them from others when the batch was lost).
    learned: Vec<String>,
}

/// How to log in to the targets, from `[ssh]` and the flags: what ssh mode and `deploy` share.
pub struct SshSetup {
    pub auth: SshAuth,
    pub known_hosts: KnownHosts,
    pub options: ConnectOptions,
    pub user: String,
    pub port: u16,
}

impl SshSetup {
    pub fn new(s: &SshSettings) -> Result<Self> {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let e = |e: ssh_exec::SetupError| anyhow::anyhow!("{e}");
        let auth = if let Some(path) = &s.password_file {
            SshAuth::Password(Secret::from_file(path).map_err(e)?)
        } else if let Some(var) = &s.password_env {
            SshAuth::Password(Secret::from_env(var).map_err(e)?)
        } else if s.agent.unwrap_or(false) {
            SshAuth::Agent
        } else {
            let key = s
                .identity_file
                .clone()
                .unwrap_or_else(|| home.join(".ssh/id_ed25519"));
            if !key.is_file() {
                anyhow::bail!(
                    "ssh identity file {} does not exist (set --ssh-identity or [ssh] identity_file)",
                    key.display()
                );
            }
            let passphrase = match &s.passphrase_file {
                Some(p) => Some(Secret::from_file(p).map_err(e)?),
                None => None,
            };
            SshAuth::key_file(&key, passphrase.as_ref()).map_err(e)?
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
            known_hosts,
            options,
            user: s.user.clone().unwrap_or_else(|| "root".to_string()),
            port: s.port.unwrap_or(22),
        })
    }
}

impl SshConnector {
    pub fn new(s: &SshSettings) -> Result<Self> {
        let SshSetup {
            auth,
            known_hosts,
            options,
            user,
            port,
        } = SshSetup::new(s)?;
        Ok(Self {
            auth,
            known_hosts: Arc::new(known_hosts),
            options: options.clone(),
            user,
            port,
            prefetch: std::sync::OnceLock::new(),
            // the pool of `--workers` bounds it too; the window only grows while in use
            pacer: Pacer::new(4096, options.connect_timeout),
        })
    }

    /// Run the learned commands on a freshly connected host; what came back, by command.
    fn run_prefetch(&self, session: &SshSession, host: &str) -> Prefetched {
        let Some(prefetch) = self.prefetch.get().filter(|p| !p.commands.is_empty()) else {
            return Prefetched::default();
        };
        let started = Instant::now();
        let (ran, clock, nonce) = run_batch(
            session,
            &prefetch.commands,
            &prefetch.timeouts,
            prefetch.limit,
        );
        match ran {
            Ok(out) => {
                let ran = started.elapsed();
                let outputs = batch::settle(
                    &out.stdout,
                    &out.stderr,
                    prefetch.commands.len(),
                    &nonce,
                    &clock,
                );
                if outputs.iter().all(Option::is_none) {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    tracing::warn!(host, exit_code = ?out.exit_code, stderr = %stderr.lines().next().unwrap_or(""),
                        took_ms = ran.as_millis() as u64,
                        "the batch of the collectors' commands failed: running them one by one");
                    return Prefetched::default();
                }
                let killed = outputs.iter().flatten().filter(|o| o.timed_out).count();
                let outputs: HashMap<String, batch::Output> = prefetch
                    .commands
                    .iter()
                    .zip(outputs)
                    .filter_map(|(command, o)| Some((command.clone(), o?)))
                    .collect();
                tracing::debug!(
                    host,
                    commands = prefetch.commands.len(),
                    answered = outputs.len(),
                    killed_at_limit = killed,
                    limit_ms = prefetch.limit.as_millis() as u64,
                    bytes = out.stdout.len(),
                    took_ms = ran.as_millis() as u64,
                    parse_ms = (started.elapsed() - ran).as_millis() as u64,
                    "ran the collectors' commands in one request"
                );
                Prefetched {
                    outputs,
                    ..Prefetched::default()
                }
            }
            Err(SshError::CommandTimeout { after, .. }) => {
                tracing::warn!(
                    host,
                    limit_ms = prefetch.limit.as_millis() as u64,
                    took_ms = started.elapsed().as_millis() as u64,
                    "the batch of the collectors' commands did not come back in time: its commands are timeouts"
                );
                Prefetched {
                    lost: Some(format!(
                        "the batch of the collectors' commands did not come back within {after:?}"
                    )),
                    learned: prefetch.commands.clone(),
                    ..Prefetched::default()
                }
            }
            Err(e) => {
                tracing::warn!(host, error = %e, took_ms = started.elapsed().as_millis() as u64,
                    "the batch of the collectors' commands failed: running them one by one");
                Prefetched::default()
            }
        }
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
        let started = Instant::now();
        let connected =
            SshSession::connect(&ssh_target, &self.auth, &self.known_hosts, &self.options);
        let took = started.elapsed();
        self.pacer.signal(
            started,
            match &connected {
                Ok(_) => Signal::Done(took),
                Err(SshError::Timeout { .. }) => Signal::TimedOut,
                Err(_) => Signal::Neutral,
            },
        );
        let session = connected.map_err(|e| HostFailure {
            kind: e.kind().to_string(),
            message: e.to_string(),
        })?;
        tracing::debug!(
            took_ms = took.as_millis() as u64,
            window = self.pacer.limit(),
            "connected"
        );
        let prefetched = Arc::new(self.run_prefetch(&session, &target.name));
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "connected and prefetched"
        );
        let session = Arc::new(session);
        let name = target.name.clone();
        Ok(Arc::new(move |deadline| {
            Executor_TO::from_value(
                SshExecutor {
                    session: Arc::clone(&session),
                    prefetched: Arc::clone(&prefetched),
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

    fn pacer(&self) -> Option<&Pacer> {
        Some(&self.pacer)
    }

    /// The batch's watchdog kills at the longest of the commands' timeouts, each capped by the
    /// shortest collector timeout (as no collector would wait longer; a file read counts as that).
    fn prefetch(&self, _targets: &[RemoteTarget], learned: &[learn::Ask], shortest: Duration) {
        let mut p = Prefetch {
            commands: Vec::with_capacity(learned.len()),
            timeouts: Vec::with_capacity(learned.len()),
            limit: Duration::ZERO,
        };
        for ask in learned {
            let timeout = ask.timeout.unwrap_or(shortest).min(shortest);
            p.limit = p.limit.max(timeout);
            p.timeouts.push(timeout);
            p.commands.push(ask.command.clone());
        }
        let _ = self.prefetch.set(p);
    }
}

/// One collector call's view of a host's SSH session.
struct SshExecutor {
    session: Arc<SshSession>,
    /// The batch's outputs, by command.
    prefetched: Arc<Prefetched>,
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

/// A batched command's output as the executor gives it.
fn from_batch(
    name: &str,
    command: &str,
    out: &batch::Output,
) -> RResult<CommandOutput, PluginError> {
    if out.timed_out {
        return RResult::RErr(error(
            "timeout",
            format!("ssh {name}: command timed out (killed on the host): {command}"),
        ));
    }
    RResult::ROk(command_output(
        out.stdout.clone(),
        out.stderr.clone(),
        out.exit_code,
    ))
}

impl SshExecutor {
    /// The batch's answer to `command`, if it has one (a lost batch answers a timeout).
    fn batched(&self, command: &str) -> Option<RResult<CommandOutput, PluginError>> {
        if let Some(out) = self.prefetched.outputs.get(command) {
            return Some(from_batch(&self.name, command, out));
        }
        let lost = self.prefetched.lost.as_ref()?;
        self.prefetched
            .learned
            .iter()
            .any(|c| c == command)
            .then(|| {
                RResult::RErr(error(
                    "timeout",
                    format!("ssh {}: {lost}: {command}", self.name),
                ))
            })
    }
}

impl Executor for SshExecutor {
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        guarded("run", || {
            if let Some(answer) = self.batched(command.as_str()) {
                return answer;
            }
            tracing::debug!(
                command = command.as_str(),
                "not prefetched: running it on its own"
            );
            let budget = Duration::from_millis(timeout_ms)
                .min(self.deadline.saturating_duration_since(Instant::now()));
            if budget.is_zero() {
                return RResult::RErr(error(
                    "timeout",
                    format!("no time left to run `{}`", command.as_str()),
                ));
            }
            // as a batch of one, so that the host kills it at its timeout (a plain `exec` that
            // times out is only abandoned: libssh2 cannot signal the remote process)
            // its budget counted from when it starts there (the batch's slack is for the login)
            let commands = [command.as_str().to_string()];
            let (ran, clock, nonce) = run_batch(&self.session, &commands, &[budget], budget);
            if let Ok(out) = ran {
                match batch::parse(&out.stdout, &out.stderr, 1, &nonce).pop() {
                    // killed though no EOF of ours was due (a wrapper that ends stdin at once):
                    // the command as it is, below
                    Some(Some(one)) if one.timed_out && !clock.eof_was_due() => {}
                    // run, or killed at its budget (from its start there, or from ours at the
                    // latest: a login slower than the slack)
                    Some(Some(one)) => return from_batch(&self.name, command.as_str(), &one),
                    // the batch ran (its start line came) but not to the command's end: not
                    // again without a watchdog
                    _ if batch::started(&out.stdout, &nonce) => {
                        return RResult::RErr(error(
                            "io",
                            format!(
                                "ssh {}: `{}` ended the shell it ran in before its output was whole",
                                self.name,
                                command.as_str()
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            // no batch on this host (no POSIX shell?), or it failed: the command as it is
            let budget = budget.min(self.deadline.saturating_duration_since(Instant::now()));
            if budget.is_zero() {
                return RResult::RErr(error(
                    "timeout",
                    format!("ssh {}: command timed out: {}", self.name, command.as_str()),
                ));
            }
            match self.session.run(command.as_str(), budget) {
                Ok(out) => RResult::ROk(command_output(out.stdout, out.stderr, out.exit_code)),
                Err(e) => RResult::RErr(ssh_error(&e)),
            }
        })
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        guarded("read_file", || {
            let command = cat_command(path.as_str());
            if self.prefetched.lost.is_some() {
                if let Some(RResult::RErr(e)) = self.batched(&command) {
                    return RResult::RErr(e);
                }
            }
            let batched = self
                .prefetched
                .outputs
                .get(&command)
                .filter(|out| !out.timed_out);
            let read = match batched {
                Some(out) => cat_read(
                    &self.name,
                    path.as_str(),
                    &out.stdout,
                    &out.stderr,
                    out.exit_code,
                ),
                None => {
                    tracing::debug!(
                        path = path.as_str(),
                        "not prefetched: reading it on its own"
                    );
                    // through `run`, so it too runs under the host's watchdog
                    match self.run(RStr::from_str(&command), 30_000) {
                        RResult::ROk(out) => cat_read(
                            &self.name,
                            path.as_str(),
                            &out.stdout,
                            &out.stderr,
                            out.exit_code.into_option(),
                        ),
                        RResult::RErr(e) => Err(e),
                    }
                }
            };
            match read {
                Ok(bytes) => RResult::ROk(RVec::from(bytes)),
                Err(e) => RResult::RErr(e),
            }
        })
    }

    fn target_name(&self) -> RString {
        self.name.as_str().into()
    }
}
