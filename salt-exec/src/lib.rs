//! Run commands and read files on Salt minions, from the Salt master: the engine under auto-client's
//! salt mode.
//!
//! A [`SaltClient`] keeps one long-lived helper process (Python with Salt's own `LocalClient`,
//! embedded in this crate) and talks JSON lines to it, so a call costs one Salt job and no Python
//! start-up; any number of threads may call at once and their jobs run side by side.
//! [`SaltClient::run_batch`] runs many commands on many minions as ONE job, and
//! [`SaltClient::prefetch`] keeps such a batch's outputs so that later one-command
//! [`SaltClient::run`] calls are answered from them: that is what makes a fleet fast
//! (see `DESIGN.md` for the measurements).
//!
//! Not for: plugins, reports, HTTP, choosing targets. This crate knows Salt and nothing of
//! auto-client; the host wraps a [`SaltClient`] into its executor.

mod batch;
mod error;
mod helper;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::error::SaltError;
use crate::helper::Helper;

/// What a command left behind on the minion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the minion did not report one.
    pub exit_code: Option<i32>,
}

/// How to reach Salt. Fields without invariants are public; [`SaltConfig::new`] fills the defaults.
#[derive(Debug, Clone)]
pub struct SaltConfig {
    /// The Python interpreter that has Salt installed (a venv's `bin/python`, or the one in the
    /// shebang of the `salt` command: see [`SaltConfig::from_salt_command`]).
    pub python: PathBuf,
    /// The master's configuration directory, the one holding the `master` file (`salt -c DIR`).
    pub config_dir: PathBuf,
    /// For [`SaltClient::read_file`] and a [`SaltClient::run`] that is not given one.
    pub default_timeout: Duration,
    /// How long a minion that did not return in time gets to answer the `saltutil.find_job`
    /// probe that tells "alive but slow" (timeout) from "gone" (unreachable).
    pub probe_timeout: Duration,
    /// What the master may add to a command's own timeout: publishing, forking on the minion,
    /// the return's way back.
    pub grace: Duration,
    /// How long the helper may take to import Salt and connect to the master's event bus.
    pub start_timeout: Duration,
    /// How long prefetched outputs answer [`SaltClient::run`] calls.
    pub prefetch_ttl: Duration,
    /// How long a [`SaltClient::run`] that was not prefetched waits for other threads asking the
    /// same command of other minions, so that they all go as ONE job. Zero: a job per call.
    pub coalesce_window: Duration,
}

impl SaltConfig {
    pub fn new(python: impl Into<PathBuf>, config_dir: impl Into<PathBuf>) -> Self {
        SaltConfig {
            python: python.into(),
            config_dir: config_dir.into(),
            default_timeout: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(3),
            grace: Duration::from_secs(3),
            start_timeout: Duration::from_secs(30),
            prefetch_ttl: Duration::from_secs(300),
            coalesce_window: Duration::from_millis(50),
        }
    }

    /// The Python of a virtualenv Salt was pip-installed into.
    pub fn from_venv(venv: &Path, config_dir: impl Into<PathBuf>) -> Self {
        SaltConfig::new(venv.join("bin").join("python"), config_dir)
    }

    /// The Python that runs the given `salt` command, read from its `#!` line.
    pub fn from_salt_command(
        salt: &Path,
        config_dir: impl Into<PathBuf>,
    ) -> Result<Self, SaltError> {
        let text = std::fs::read(salt).map_err(|e| SaltError::Helper {
            message: format!("cannot read the salt command {}: {e}", salt.display()),
        })?;
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = String::from_utf8_lossy(first);
        let python = first
            .strip_prefix("#!")
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|p| p.contains("python"))
            .ok_or_else(|| SaltError::Helper {
                message: format!(
                    "{} does not start with a #! line naming python",
                    salt.display()
                ),
            })?;
        Ok(SaltConfig::new(python, config_dir))
    }
}

/// One minion's result.
pub type MinionResult = (String, Result<Output, SaltError>);

/// A connection to one Salt master. `Send + Sync`: share it (`Arc`) between worker threads.
#[allow(clippy::type_complexity)] // one private map, named by its comment
pub struct SaltClient {
    config: SaltConfig,
    /// Replaced by a fresh one when it has died (see `call`).
    helper: Mutex<Arc<Helper>>,
    /// (minion, command) -> when it was fetched, and what it gave
    prefetched: Mutex<HashMap<(String, String), (Instant, Result<Output, SaltError>)>>,
    /// command -> the group of minions gathering for one job of it (see `run`)
    gathering: Mutex<HashMap<String, Arc<Group>>>,
    /// Salt jobs published so far.
    jobs: AtomicU64,
}

/// The minions that asked for one command within the coalescing window, and then what the one
/// job gave them.
#[derive(Default)]
struct Group {
    state: Mutex<GroupState>,
    done: Condvar,
}

#[derive(Default)]
#[allow(clippy::type_complexity)] // named by its comment
struct GroupState {
    minions: Vec<String>,
    /// the job's result per minion, or why it could not run; `None` until it has run
    results: Option<Result<HashMap<String, Result<Output, SaltError>>, SaltError>>,
}

impl std::fmt::Debug for SaltClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Per minion, per command in the order given.
pub type BatchOutputs = HashMap<String, Vec<Result<Output, SaltError>>>;

impl SaltClient {
    /// Start the helper and connect it to the master's event bus.
    pub fn new(config: SaltConfig) -> Result<Self, SaltError> {
        if !config.config_dir.join("master").is_file() {
            return Err(SaltError::Helper {
                message: format!("no master config file in {}", config.config_dir.display()),
            });
        }
        let helper = Helper::start(&config.python, &config.config_dir, config.start_timeout)?;
        Ok(SaltClient {
            config,
            helper: Mutex::new(Arc::new(helper)),
            prefetched: Mutex::new(HashMap::new()),
            gathering: Mutex::new(HashMap::new()),
            jobs: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &SaltConfig {
        &self.config
    }

    /// The process id of the Python helper now in use.
    pub fn helper_pid(&self) -> u32 {
        lock(&self.helper).pid()
    }

    /// One request to the helper. If the helper has died (killed, out of memory, a crash in
    /// Salt), a new one is started and the request is sent to it once more; the minions may then
    /// run a command twice, which is harmless for collectors' read-only commands.
    fn call(&self, request: Value, wait: Duration) -> Result<Vec<Value>, SaltError> {
        let helper = Arc::clone(&lock(&self.helper));
        match helper.call(request.clone(), wait) {
            Err(SaltError::Helper { message }) if helper.exited() => {
                let fresh = {
                    let mut current = lock(&self.helper);
                    if Arc::ptr_eq(&current, &helper) {
                        let started = Helper::start(
                            &self.config.python,
                            &self.config.config_dir,
                            self.config.start_timeout,
                        )
                        .map_err(|e| SaltError::Helper {
                            message: format!(
                                "the helper died ({message}) and did not restart: {e}"
                            ),
                        })?;
                        *current = Arc::new(started);
                    }
                    Arc::clone(&current)
                };
                fresh.call(request, wait)
            }
            other => other,
        }
    }

    /// How many Salt jobs this client has published (`minions` lists keys without a job).
    pub fn jobs(&self) -> u64 {
        self.jobs.load(Ordering::Relaxed)
    }

    /// The ids of the minions whose keys the master has accepted.
    pub fn minions(&self) -> Result<Vec<String>, SaltError> {
        let messages = self.call(json!({"op": "minions"}), self.config.start_timeout)?;
        let mut ids = Vec::new();
        for msg in &messages {
            if let Some(list) = msg.get("minions").and_then(Value::as_array) {
                ids.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            } else if let Some(err) = salt_error(msg) {
                return Err(err);
            }
        }
        Ok(ids)
    }

    /// Run a shell command on one minion (`cmd.run_all`, `python_shell=True`, output not
    /// stripped). A command that exits non-zero is an `Ok` with its exit code. Answered from
    /// [`prefetch`](Self::prefetch)ed outputs when there are fresh ones for this minion and command.
    ///
    /// Otherwise the call waits [`coalesce_window`](SaltConfig::coalesce_window) for other threads
    /// asking the same command of other minions, and they all go as ONE job (with the first
    /// caller's timeout): a fleet's collectors that ask a command nobody predicted cost one job,
    /// not one per minion.
    pub fn run(&self, minion: &str, command: &str, timeout: Duration) -> Result<Output, SaltError> {
        if let Some(hit) = self.take_prefetched(minion, command) {
            return hit;
        }
        if self.config.coalesce_window.is_zero() {
            return self.run_one(minion, command, timeout);
        }
        let (group, leader) = {
            let mut gathering = lock(&self.gathering);
            match gathering.get(command) {
                Some(group) => {
                    // joined under the map's lock: the leader takes the list only after it has
                    // removed the group from the map, so this minion is in its job
                    lock(&group.state).minions.push(minion.to_string());
                    (Arc::clone(group), false)
                }
                None => {
                    let group = Arc::new(Group::default());
                    lock(&group.state).minions.push(minion.to_string());
                    gathering.insert(command.to_string(), Arc::clone(&group));
                    (group, true)
                }
            }
        };
        if leader {
            std::thread::sleep(self.config.coalesce_window);
            lock(&self.gathering).remove(command);
            let mut minions = std::mem::take(&mut lock(&group.state).minions);
            minions.sort();
            minions.dedup();
            let results = self
                .run_on(&minions, command, timeout)
                .map(|r| r.into_iter().collect::<HashMap<_, _>>());
            lock(&group.state).results = Some(results);
            group.done.notify_all();
        }
        let mut state = lock(&group.state);
        loop {
            match state.results.as_ref() {
                Some(Ok(per_minion)) => {
                    return per_minion.get(minion).cloned().unwrap_or_else(|| {
                        Err(SaltError::BadReturn {
                            minion: minion.to_string(),
                            detail: "no result for the minion".into(),
                        })
                    })
                }
                Some(Err(e)) => return Err(e.clone()),
                None => state = group.done.wait(state).unwrap_or_else(|p| p.into_inner()),
            }
        }
    }

    fn run_one(&self, minion: &str, command: &str, timeout: Duration) -> Result<Output, SaltError> {
        let results = self.run_on(&[minion.to_string()], command, timeout)?;
        results
            .into_iter()
            .next()
            .map(|(_, r)| r)
            .unwrap_or_else(|| {
                Err(SaltError::BadReturn {
                    minion: minion.to_string(),
                    detail: "no result for the minion".into(),
                })
            })
    }

    /// Run one command on many minions as one Salt job; one result per minion, in the order given.
    /// `Err` only when the job could not be run at all.
    pub fn run_on(
        &self,
        minions: &[String],
        command: &str,
        timeout: Duration,
    ) -> Result<Vec<MinionResult>, SaltError> {
        // The command goes as the keyword `cmd`, never as a positional argument: Salt parses a
        // positional `key=value` string as a keyword argument, so `d=/sys/...; ...` would lose it.
        let kwarg = json!({
            "cmd": command,
            "python_shell": true,
            "timeout": timeout_secs(timeout),
            "rstrip": false,
            "ignore_retcode": true,
            "output_loglevel": "quiet",
        });
        let answers = self.job(minions, "cmd.run_all", json!([]), kwarg, timeout)?;
        Ok(minions
            .iter()
            .map(|m| {
                let r = match answers.get(m) {
                    Some(Answer::Ret { ret, retcode, .. }) => {
                        cmd_output(m, command, timeout, ret, *retcode)
                    }
                    Some(other) => Err(other.to_error(m, command, timeout, &self.config)),
                    None => Err(SaltError::BadReturn {
                        minion: m.clone(),
                        detail: "no answer for the minion".into(),
                    }),
                };
                (m.clone(), r)
            })
            .collect())
    }

    /// Run several commands on several minions as ONE Salt job (a shell script that runs them in
    /// turn and prints each one's exit code, stdout and stderr). `timeout` bounds the whole batch
    /// on each minion. `Err` only when the job could not be run at all.
    pub fn run_batch(
        &self,
        minions: &[String],
        commands: &[String],
        timeout: Duration,
    ) -> Result<BatchOutputs, SaltError> {
        let nonce = nonce();
        let script = batch::script(commands, &nonce);
        let per_minion = self.run_on(minions, &script, timeout)?;
        let mut out = HashMap::new();
        for (minion, result) in per_minion {
            let results = match result {
                Ok(output) => {
                    let stdout = String::from_utf8_lossy(&output.stdout);
                    let parsed = batch::parse(&stdout, commands.len(), &nonce);
                    parsed
                        .into_iter()
                        .zip(commands)
                        .map(|(o, command)| {
                            o.ok_or_else(|| SaltError::CommandFailed {
                                minion: minion.clone(),
                                what: format!("`{command}`"),
                                message: format!(
                                    "the batch it ran in stopped early (exit code {:?}): {}",
                                    output.exit_code,
                                    first_line(&String::from_utf8_lossy(&output.stderr))
                                ),
                            })
                        })
                        .collect()
                }
                Err(SaltError::Timeout {
                    minion, timeout, ..
                }) => commands
                    .iter()
                    .map(|c| {
                        Err(SaltError::Timeout {
                            minion: minion.clone(),
                            command: c.clone(),
                            timeout,
                        })
                    })
                    .collect(),
                Err(e) => commands.iter().map(|_| Err(e.clone())).collect(),
            };
            out.insert(minion, results);
        }
        Ok(out)
    }

    /// [`run_batch`](Self::run_batch), keeping the outputs: for [`prefetch_ttl`](SaltConfig::prefetch_ttl)
    /// a [`run`](Self::run) of one of these commands on one of these minions is answered from
    /// them without a job. The way to collect a fleet: prefetch the collectors' known commands for
    /// all due minions, then let the collectors run as usual.
    pub fn prefetch(
        &self,
        minions: &[String],
        commands: &[String],
        timeout: Duration,
    ) -> Result<(), SaltError> {
        let outputs = self.run_batch(minions, commands, timeout)?;
        let now = Instant::now();
        let mut cache = lock(&self.prefetched);
        cache.retain(|_, (at, _)| now.duration_since(*at) < self.config.prefetch_ttl);
        for (minion, results) in outputs {
            for (command, result) in commands.iter().zip(results) {
                cache.insert((minion.clone(), command.clone()), (now, result));
            }
        }
        Ok(())
    }

    /// Forget every prefetched output.
    pub fn clear_prefetched(&self) {
        lock(&self.prefetched).clear();
    }

    fn take_prefetched(&self, minion: &str, command: &str) -> Option<Result<Output, SaltError>> {
        let cache = lock(&self.prefetched);
        let (at, result) = cache.get(&(minion.to_string(), command.to_string()))?;
        (at.elapsed() < self.config.prefetch_ttl).then(|| result.clone())
    }

    /// A file's bytes, read by the minion itself (`file.read`, binary), within the default timeout.
    pub fn read_file(&self, minion: &str, path: &str) -> Result<Vec<u8>, SaltError> {
        let timeout = self.config.default_timeout;
        let what = format!("reading {path}");
        let answers = self.job(
            &[minion.to_string()],
            "file.read",
            json!([path]),
            json!({"binary": true}),
            timeout,
        )?;
        match answers.get(minion) {
            Some(Answer::Ret { ret, success, .. }) => {
                if *success == Some(false) {
                    return Err(SaltError::CommandFailed {
                        minion: minion.to_string(),
                        what,
                        message: salt_message(ret),
                    });
                }
                bytes_of(ret).ok_or_else(|| SaltError::BadReturn {
                    minion: minion.to_string(),
                    detail: format!("file.read returned {}", short(ret)),
                })
            }
            Some(other) => Err(other.to_error(minion, &what, timeout, &self.config)),
            None => Err(SaltError::BadReturn {
                minion: minion.to_string(),
                detail: "no answer for the minion".into(),
            }),
        }
    }

    /// Publish one job and gather what each minion answered.
    fn job(
        &self,
        minions: &[String],
        fun: &str,
        arg: Value,
        kwarg: Value,
        timeout: Duration,
    ) -> Result<HashMap<String, Answer>, SaltError> {
        let deadline = timeout + self.config.grace;
        let request = json!({
            "op": "run",
            "tgt": minions,
            "fun": fun,
            "arg": arg,
            "kwarg": kwarg,
            "timeout": deadline.as_secs_f64(),
            "probe_timeout": self.config.probe_timeout.as_secs_f64(),
        });
        // the helper answers by deadline + probe; the rest is slack for a loaded master
        let wait = deadline + self.config.probe_timeout + Duration::from_secs(10);
        self.jobs.fetch_add(1, Ordering::Relaxed);
        let messages = self.call(request, wait)?;
        let mut answers = HashMap::new();
        for msg in messages {
            if let Some(err) = salt_error(&msg) {
                return Err(err);
            }
            let Some(minion) = msg.get("minion").and_then(Value::as_str) else {
                continue;
            };
            let answer = match msg.get("status").and_then(Value::as_str) {
                Some("ok") => Answer::Ret {
                    ret: msg.get("ret").cloned().unwrap_or(Value::Null),
                    retcode: msg
                        .get("retcode")
                        .and_then(Value::as_i64)
                        .and_then(|c| i32::try_from(c).ok()),
                    success: msg.get("success").and_then(Value::as_bool),
                },
                Some("no_return") => Answer::NoReturn,
                Some("unreachable") => Answer::Unreachable,
                Some("unknown_minion") => Answer::Unknown,
                other => Answer::Strange(format!("helper status {other:?}")),
            };
            answers.insert(minion.to_string(), answer);
        }
        Ok(answers)
    }
}

/// What the helper said about one minion.
enum Answer {
    Ret {
        ret: Value,
        retcode: Option<i32>,
        success: Option<bool>,
    },
    NoReturn,
    Unreachable,
    Unknown,
    Strange(String),
}

impl Answer {
    fn to_error(
        &self,
        minion: &str,
        command: &str,
        timeout: Duration,
        config: &SaltConfig,
    ) -> SaltError {
        let minion = minion.to_string();
        match self {
            Answer::NoReturn => SaltError::Timeout {
                minion,
                command: short_command(command),
                timeout,
            },
            Answer::Unreachable => SaltError::MinionUnreachable {
                minion,
                waited: timeout + config.grace + config.probe_timeout,
            },
            Answer::Unknown => SaltError::UnknownMinion { minion },
            Answer::Strange(detail) => SaltError::BadReturn {
                minion,
                detail: detail.clone(),
            },
            Answer::Ret { ret, .. } => SaltError::BadReturn {
                minion,
                detail: short(ret),
            },
        }
    }
}

fn salt_error(msg: &Value) -> Option<SaltError> {
    (msg.get("status").and_then(Value::as_str) == Some("error")).then(|| SaltError::Salt {
        message: first_line(
            msg.get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error"),
        ),
    })
}

/// A `cmd.run_all` return as an [`Output`], or the error it stands for.
fn cmd_output(
    minion: &str,
    command: &str,
    timeout: Duration,
    ret: &Value,
    retcode: Option<i32>,
) -> Result<Output, SaltError> {
    let Some(obj) = ret.as_object() else {
        // a string instead of a dict: the module raised (the message says why)
        return Err(SaltError::CommandFailed {
            minion: minion.to_string(),
            what: format!("`{}`", short_command(command)),
            message: salt_message(ret),
        });
    };
    let stdout = obj.get("stdout").and_then(bytes_of).unwrap_or_default();
    let stderr = obj.get("stderr").and_then(bytes_of).unwrap_or_default();
    let exit_code = obj
        .get("retcode")
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
        .or(retcode);
    // cmd.run_all's own timeout: it kills the command and says so in stdout, with exit code 1
    if exit_code == Some(1) && stderr.is_empty() && is_salt_timeout(&stdout) {
        return Err(SaltError::Timeout {
            minion: minion.to_string(),
            command: short_command(command),
            timeout,
        });
    }
    Ok(Output {
        stdout,
        stderr,
        exit_code,
    })
}

fn is_salt_timeout(stdout: &[u8]) -> bool {
    let text = String::from_utf8_lossy(stdout);
    let text = text.trim();
    text.contains(": Timed out after ") && text.ends_with("seconds") && !text.contains('\n')
}

/// A string return as its UTF-8 bytes; a bytes return (the helper sends those as hex) decoded.
fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Object(o) => o
            .get("__bytes_hex__")
            .and_then(Value::as_str)
            .and_then(batch::from_hex),
        _ => None,
    }
}

/// The line of a Salt error return that says what happened (a traceback's last line).
fn salt_message(ret: &Value) -> String {
    let text = match ret {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    let last = last.trim();
    let last = last.strip_prefix("ERROR: ").unwrap_or(last);
    truncate(last, 300)
}

fn first_line(s: &str) -> String {
    truncate(
        s.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
        300,
    )
}

fn short(v: &Value) -> String {
    truncate(&v.to_string(), 200)
}

/// A command as an error message shows it: its first line, at most 120 characters.
fn short_command(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    if first.len() < command.len() {
        format!("{} ...", truncate(first, 120))
    } else {
        truncate(first, 120)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Whole seconds for cmd.run's timeout, at least one.
fn timeout_secs(t: Duration) -> u64 {
    t.as_secs().max(1) + u64::from(t.subsec_nanos() > 0 && t.as_secs() > 0)
}

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", t, std::process::id())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salt_timeouts_are_recognised() {
        assert!(is_salt_timeout(b"sleep 5 : Timed out after 1 seconds"));
        assert!(!is_salt_timeout(b"all good"));
    }

    #[test]
    fn error_lines_are_short_and_name_the_minion() {
        let e = cmd_output(
            "m1",
            "cat /x",
            Duration::from_secs(1),
            &json!("ERROR: boom\n"),
            Some(1),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "minion m1: `cat /x` failed: boom");
        assert_eq!(e.kind(), "command_failed");
        assert_eq!(short_command("a\nb"), "a ...");
    }

    #[test]
    fn bytes_from_either_shape() {
        assert_eq!(bytes_of(&json!("hi")), Some(b"hi".to_vec()));
        assert_eq!(
            bytes_of(&json!({"__bytes_hex__": "00ff"})),
            Some(vec![0, 255])
        );
        assert_eq!(bytes_of(&json!(3)), None);
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(timeout_secs(Duration::from_millis(200)), 1);
        assert_eq!(timeout_secs(Duration::from_secs(5)), 5);
        assert_eq!(timeout_secs(Duration::from_millis(5500)), 6);
    }
}
