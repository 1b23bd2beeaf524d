//! The local executor: the target is this machine; commands are local processes, files are read
//! from the file system. Used in agent mode and by `collect` without `--mode`.

use std::{
    io::Read,
    os::unix::process::CommandExt,
    panic::AssertUnwindSafe,
    process::{Command, Stdio},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use abi_stable::std_types::{RResult, RStr, RString, RVec};
use plugin_api::{CommandOutput, Executor, PluginError};

/// Runs commands on this machine, each in its own process group, killed as a group at its timeout.
/// `deadline` is the collector's own: no command outlives it, whatever timeout it asks for.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    pub target_name: String,
    pub deadline: Instant,
}

/// What a command left behind, as the executor hands it to a collector (every executor's shape).
pub fn command_output(stdout: Vec<u8>, stderr: Vec<u8>, exit_code: Option<i32>) -> CommandOutput {
    CommandOutput {
        stdout: stdout.into(),
        stderr: stderr.into(),
        exit_code: exit_code.into(),
    }
}

pub fn error(kind: &str, message: impl Into<String>) -> PluginError {
    PluginError {
        kind: kind.into(),
        message: message.into().into(),
    }
}

/// Runs `f`, turning a panic into an error: these methods are called through `extern "C"` shims,
/// where an escaping panic would abort the whole process.
pub fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> RResult<T, PluginError>,
) -> RResult<T, PluginError> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => RResult::RErr(error(
            "panic",
            format!("the host's executor panicked in {what}"),
        )),
    }
}

impl LocalExecutor {
    fn budget(&self, timeout_ms: u64) -> Duration {
        let asked = Duration::from_millis(timeout_ms);
        asked.min(self.deadline.saturating_duration_since(Instant::now()))
    }
}

impl Executor for LocalExecutor {
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        guarded("run", || {
            match run_command(command.as_str(), self.budget(timeout_ms)) {
                Ok(out) => RResult::ROk(out),
                Err(e) => RResult::RErr(e),
            }
        })
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        guarded("read_file", || match std::fs::read(path.as_str()) {
            Ok(bytes) => RResult::ROk(bytes.into()),
            Err(e) => RResult::RErr(io_error(path.as_str(), &e)),
        })
    }

    fn target_name(&self) -> RString {
        self.target_name.as_str().into()
    }
}

pub fn io_error(path: &str, e: &std::io::Error) -> PluginError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => "not_found",
        std::io::ErrorKind::PermissionDenied => "permission_denied",
        _ => "io",
    };
    error(kind, format!("{path}: {e}"))
}

/// The process groups of commands still running, so none outlives the host (see [`kill_all`]).
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills every command still running: called before the host exits, so a command abandoned with
/// its collector at the very end of a run is not left behind.
pub fn kill_all() {
    for pgid in running().drain(..) {
        // SAFETY: kill has no memory-safety preconditions; -pgid names a group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Runs `sh -c command` in a new process group; at `timeout` the whole group is killed.
///
/// A command that is only words of plain characters (no quotes, globs, variables, redirections,
/// separators) means the same with or without a shell, so it is executed directly: one process
/// start fewer. A program that is not found then answers as `sh` would: exit code 127.
pub fn run_command(command: &str, timeout: Duration) -> Result<CommandOutput, PluginError> {
    let plain = !command.trim().is_empty()
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./,=:+-".contains(c));
    let cmd = if plain {
        let mut words = command.split_whitespace();
        let mut cmd = Command::new(words.next().expect("a non-empty command has a word"));
        cmd.args(words);
        cmd
    } else {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        cmd
    };
    let out = match run_process(cmd, &[], timeout, &format!("`{command}`"), false) {
        Err(e) if plain && e.message.contains("No such file or directory") => {
            let program = command.split_whitespace().next().unwrap_or_default();
            return Ok(command_output(
                Vec::new(),
                format!("sh: 1: {program}: not found\n").into_bytes(),
                Some(127),
            ));
        }
        other => other?,
    };
    Ok(command_output(out.stdout, out.stderr, out.status.code()))
}

/// What a finished process gave.
#[derive(Debug)]
pub struct ProcessOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: std::process::ExitStatus,
}

/// Runs a process in a new process group with `input` on its stdin; at `timeout` the whole group
/// is killed and the answer is a `timeout` error naming `what`. With `term_first`, the process is
/// sent SIGTERM and given a moment to clean up (a worker kills its own commands) before SIGKILL.
pub fn run_process(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
    term_first: bool,
) -> Result<ProcessOutput, PluginError> {
    if timeout.is_zero() {
        return Err(error("timeout", format!("no time left to run {what}")));
    }
    let mut child = cmd
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| error("io", format!("cannot start {what}: {e}")))?;
    let pid = child.id() as i32;
    running().push(pid);
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let err = err_reader.join().unwrap_or_default();
        let status = child.wait();
        let _ = tx.send((out, err, status));
    });
    let outcome = rx.recv_timeout(timeout);
    if outcome.is_ok() {
        running().retain(|p| *p != pid);
    }
    match outcome {
        Ok((out, err, status)) => {
            let status = status.map_err(|e| error("io", format!("waiting for {what}: {e}")))?;
            Ok(ProcessOutput {
                stdout: out,
                stderr: err,
                status,
            })
        }
        Err(_) => {
            if term_first {
                // SAFETY: kill has no memory-safety preconditions; pid is our child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
                let _ = rx.recv_timeout(Duration::from_millis(300));
            }
            // SAFETY: kill has no memory-safety preconditions; -pid names the group we created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
            // Reap it; a descendant that left the group may hold the pipes open, so do not wait long.
            let _ = rx.recv_timeout(Duration::from_secs(1));
            running().retain(|p| *p != pid);
            Err(error(
                "timeout",
                format!(
                    "{what} did not finish in {}",
                    humantime::format_duration(round_ms(timeout))
                ),
            ))
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi_stable::std_types::ROption;

    #[test]
    fn a_command_gives_its_output_and_exit_code() {
        let out =
            run_command("echo out; echo err >&2; exit 3", Duration::from_secs(5)).expect("runs");
        assert_eq!(out.stdout.as_slice(), b"out\n");
        assert_eq!(out.stderr.as_slice(), b"err\n");
        assert_eq!(out.exit_code, ROption::RSome(3));
    }

    #[test]
    fn a_plain_command_runs_without_a_shell_and_a_missing_one_answers_like_sh() {
        let out = run_command("echo plain words", Duration::from_secs(5)).expect("runs");
        assert_eq!(out.stdout.as_slice(), b"plain words\n");
        let out =
            run_command("no-such-program-xyz --flag", Duration::from_secs(5)).expect("answers");
        assert_eq!(out.exit_code, ROption::RSome(127));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-program-xyz: not found"));
        // Anything a shell would interpret still goes through sh.
        let out = run_command("echo $((1+2)) | tr 3 x", Duration::from_secs(5)).expect("runs");
        assert_eq!(out.stdout.as_slice(), b"x\n");
    }

    #[test]
    fn a_hung_command_and_its_children_are_killed_at_the_timeout() {
        let started = Instant::now();
        let err = run_command(
            "sleep 30 & sleep 30; echo never",
            Duration::from_millis(200),
        )
        .expect_err("must time out");
        assert_eq!(err.kind.as_str(), "timeout");
        assert!(
            err.message.contains("did not finish in 200ms"),
            "{}",
            err.message
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
