//! The local executor: the target is this machine; commands are local processes, files are read
//! from the file system. Used in agent mode and by `collect` without `--mode`.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    os::unix::process::CommandExt,
    panic::AssertUnwindSafe,
    process::{Command, Stdio},
    sync::Mutex,
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
/// In the C locale (`LC_ALL=C`, as Ansible's and Facter's commands run): messages in English
/// whatever the login's `LANG` or `LANGUAGE` (a collector or the host reads `No such file or
/// directory` or `Permission denied` in them), bytes passed on as they are, and no locale files
/// loaded by each command (`lsblk` 2.06 -> 1.89 ms of CPU, 401 alternating runs).
///
/// A command that is only words of plain characters (no quotes, globs, variables, redirections,
/// separators) means the same with or without a shell, so it is executed directly: one process
/// start fewer. A program that is not found then answers as `sh` would: exit code 127.
pub fn run_command(command: &str, timeout: Duration) -> Result<CommandOutput, PluginError> {
    // `NAME=value program` is an assignment to sh, not a program named `NAME=value`
    let plain = !command.trim().is_empty()
        && command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./,=:+-".contains(c))
        && !command
            .split_whitespace()
            .next()
            .is_some_and(|first| first.contains('='));
    let mut cmd = if plain {
        let mut words = command.split_whitespace();
        let mut cmd = Command::new(words.next().expect("a non-empty command has a word"));
        cmd.args(words);
        cmd
    } else {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(command);
        cmd
    };
    cmd.env("LC_ALL", "C");
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
///
/// The calling thread reads stdout and stderr itself (`poll`, with the process's pidfd for its
/// exit): no helper thread per command (the two a command had cost more than the `sh` they
/// waited for). It is done when both pipes are closed and the process has exited: a descendant
/// that keeps a pipe open keeps the command running, up to its timeout.
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
    let deadline = Instant::now() + timeout;
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
    let mut out = Pipe::new(child.stdout.take().map(OwnedFd::from));
    let mut err = Pipe::new(child.stderr.take().map(OwnedFd::from));
    let exit = pidfd_open(pid);
    let mut status = None;
    let mut failure = None;
    let done = loop {
        if status.is_none() && (exit.is_none() || !out.is_open() && !err.is_open()) {
            status = child.try_wait().ok().flatten();
        }
        if status.is_some() && !out.is_open() && !err.is_open() {
            break true;
        }
        let now = Instant::now();
        if now >= deadline {
            break false;
        }
        let mut fds: Vec<libc::pollfd> = [out.fd(), err.fd()]
            .into_iter()
            .flatten()
            .chain(
                exit.as_ref()
                    .filter(|_| status.is_none())
                    .map(|f| f.as_raw_fd()),
            )
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Without a pidfd (kernels before 5.3), a process that closed its pipes is looked at
        // again every millisecond until it has exited.
        let wait = if fds.is_empty() { TICK } else { deadline - now };
        let wait_ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                failure = Some(format!("waiting for {what}: {e}"));
                break false;
            }
            continue;
        }
        for pfd in fds.iter().filter(|p| p.revents != 0) {
            if Some(pfd.fd) == out.fd() {
                out.read_some();
            } else if Some(pfd.fd) == err.fd() {
                err.read_some();
            } else {
                status = child.try_wait().ok().flatten();
            }
        }
    };
    if done {
        running().retain(|p| *p != pid);
        return Ok(ProcessOutput {
            stdout: out.buf,
            stderr: err.buf,
            status: status.expect("done means exited"),
        });
    }
    if term_first && status.is_none() {
        // SAFETY: kill has no memory-safety preconditions; pid is our child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        reap(&mut child, Duration::from_millis(300));
    }
    // SAFETY: kill has no memory-safety preconditions; -pid names the group we created.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    // Reap it (a process in uninterruptible sleep cannot be waited for long).
    reap(&mut child, Duration::from_secs(1));
    running().retain(|p| *p != pid);
    if let Some(failure) = failure {
        return Err(error("io", failure));
    }
    Err(error(
        "timeout",
        format!(
            "{what} did not finish in {}",
            humantime::format_duration(round_ms(timeout))
        ),
    ))
}

/// How often a process is looked at when there is no pidfd to wait on.
const TICK: Duration = Duration::from_millis(1);

/// One output pipe of a command and what it gave so far.
struct Pipe {
    file: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl Pipe {
    fn new(fd: Option<OwnedFd>) -> Self {
        Self {
            file: fd.map(std::fs::File::from),
            buf: Vec::new(),
        }
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    fn fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// One read (poll said it will not block); end of file or an error closes the pipe.
    ///
    /// Into the buffer's spare room (grown by doubling, from 8 KiB, when less than 8 KiB is left),
    /// not through a zeroed chunk: zeroing a 64 KiB chunk for every read was 7.5 % of the
    /// instructions of `collect` with the twelve collectors (callgrind), more than any collector's
    /// own parsing but one.
    fn read_some(&mut self) {
        let Some(file) = self.file.as_ref() else {
            return;
        };
        if self.buf.capacity() - self.buf.len() < 8 << 10 {
            self.buf.reserve(self.buf.len().max(8 << 10));
        }
        let spare = self.buf.spare_capacity_mut();
        // SAFETY: `read` writes at most `spare.len()` bytes into `spare`, memory the vector owns.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        match usize::try_from(n) {
            Ok(0) => self.file = None,
            // SAFETY: the `n` bytes after the length were just written by `read`.
            Ok(n) => unsafe { self.buf.set_len(self.buf.len() + n) },
            Err(_) if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {
            }
            Err(_) => self.file = None,
        }
    }
}

/// A pidfd for `pid` (readable once it has exited); `None` where the kernel has none (before 5.3).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative result is a descriptor we now own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits up to `limit` for `child` to exit.
fn reap(child: &mut std::process::Child, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(TICK);
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

    /// A login's language does not reach the messages collectors read: `LANGUAGE=de` (what a
    /// German login sets beside `LANG`) makes coreutils answer in German, except in the C locale.
    #[test]
    fn commands_run_in_the_c_locale() {
        for command in ["printenv LC_ALL", "printf '%s\\n' \"$LC_ALL\""] {
            let out = run_command(command, Duration::from_secs(5)).expect("runs");
            assert_eq!(out.stdout.as_slice(), b"C\n", "{command}");
        }
        let out = run_command(
            "LANG=C.UTF-8 LANGUAGE=de cat /nonexistent-for-the-locale-test",
            Duration::from_secs(5),
        )
        .expect("runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "cat: /nonexistent-for-the-locale-test: No such file or directory\n"
        );
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
        // an assignment before the program too
        let out = run_command("WHO=sh printenv WHO", Duration::from_secs(5)).expect("runs");
        assert_eq!(
            (out.stdout.as_slice(), out.exit_code),
            (&b"sh\n"[..], ROption::RSome(0))
        );
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
    /// stdout and stderr are read side by side: a command that fills both pipes (far past their
    /// 64 KiB buffers) interleaved gets all of both, not a deadlock.
    #[test]
    fn large_outputs_on_both_pipes_are_read_whole() {
        let out = run_command(
            "i=0; while [ $i -lt 2000 ]; do printf '%0500d\\n' $i; printf '%0300d\\n' $i >&2; \
             i=$((i+1)); done",
            Duration::from_secs(20),
        )
        .expect("runs");
        let lines = |width: usize| -> Vec<u8> {
            (0..2000)
                .flat_map(|i| format!("{i:0width$}\n").into_bytes())
                .collect()
        };
        // every byte in order, across the many reads of each pipe
        assert!(out.stdout == lines(500), "stdout differs");
        assert!(out.stderr == lines(300), "stderr differs");
        assert_eq!(out.exit_code, ROption::RSome(0));
    }

    /// The command is done when its pipes are closed and it has exited: a background child that
    /// keeps stdout open holds it until the timeout; one that closed its output does not.
    #[test]
    fn a_child_holding_the_output_open_holds_the_command() {
        let err = run_command("echo started; sleep 30 &", Duration::from_millis(300))
            .expect_err("the background sleep holds stdout");
        assert_eq!(err.kind.as_str(), "timeout");
        let started = Instant::now();
        let out = run_command(
            "sleep 30 >/dev/null 2>&1 & echo started",
            Duration::from_secs(10),
        )
        .expect("the background sleep has its own output");
        assert_eq!(out.stdout.as_slice(), b"started\n");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The sleep is in the command's process group; `kill_all` in tests would kill others'.
    }
}
