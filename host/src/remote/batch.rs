//! Many commands in one SSH `exec` (ssh mode's prefetch): a POSIX shell script that runs the
//! commands one after another, each in a subshell, its stdout and stderr going straight to the
//! channel's two streams, each followed there by a marker line that holds the batch's nonce and
//! the command's index (and, on stdout, its exit code). An SSH channel carries bytes exactly, so
//! nothing is encoded (salt mode's batch hex-encodes: Salt returns text). No file is written on
//! the host (no `mktemp`, no `rm`, nothing left behind by a batch that is cut short), except by
//! bash before 5.1 where there is no dash (RHEL 7 and 8): it keeps the reads' here-documents in
//! temporary files of its own; where it cannot write one, those reads are asked again alone.
//! The markers are printed from two shell variables: the script's text, which a command can
//! read in `/proc/PID/cmdline`, holds none.
//!
//! Made to start few processes on the host (issue 14: every one is CPU on every server of the
//! fleet): the commands themselves and one `cat` for the file reads of the kernel's own
//! (`cat -- /proc/NAME`, not a process's directory: [`direct_read`]), which come first, each
//! followed by its marker from a here-document `cat` opens as `/proc/self/fd/N` (N from 4 to 9:
//! six reads a `cat`; `/dev/fd` is missing in some chroots). The six collectors' batch cost the
//! host 20.2 ms of CPU run side by side with its outputs in files (`mktemp`, the watchdog's
//! `sleep`, one `cat`, the exit trap's `rm`) and 15.4 ms this way, `bash -c` of each script as
//! sshd runs it (51 alternating rounds, medians; 1 ms more wall on an idle host, as the commands
//! no longer overlap). Started by bash where there is a dash, the script moves to dash first
//! ([`IN_DASH`]). A command that can start a job of its own (a background `&` in its text)
//! waits for its jobs before it ends, so that what they print is its own output; a process that
//! leaves its session's process tree (a daemon, double-forked) and prints later is not caught:
//! a collector's command must not leave one.
//!
//! The time limits are the client's: the host's watchdog is a subshell blocked in a `read` of
//! the channel's stdin, which the client ends (SSH EOF) at the running command's own timeout,
//! counted from when the marker line before it came back, or at the batch's limit and
//! [`SLACK`], whichever comes first ([`Clock`]); and so does sshd when the client is gone (a
//! dead peer leaves nothing running). Then the watchdog signals the script (`USR1`), whose trap
//! freezes the running command's whole process tree top down (`kill -STOP`, then its children
//! from `/proc/PID/task/*/children`, else `pgrep -P`, so nothing forks meanwhile) and kills
//! every process of it (`kill -9`: grandchildren too). The killed command is reported as timed
//! out (only where its own timeout stopped it: one the batch's limit stopped, or a kill no EOF
//! of ours asked for, is asked again alone, [`settle`]); the commands after it do not run (the
//! host asks them one by one, each under its own timeout). The script waits for a killed
//! command only until it has ended (a zombie in `/proc/PID/stat`), one second at most: a process
//! the kernel cannot kill yet (state D: a hung NFS mount, a stuck driver) is reported as killed
//! instead of holding the batch, and the outputs so far have already come back. The direct
//! reads come first, under the same watchdog, and are only of files the kernel makes up on the
//! spot (`/proc/cpuinfo`, `/proc/sys/...`), never of a process's `/proc/PID` (which can block on
//! that process's memory lock) or anything on a disk.
//!
//! The end: a `done` marker on both streams ([`done`]), after which the client reads no more (a
//! process a command left behind holding its stdout does not hold the batch open).

use std::time::{Duration, Instant};

const MARKER: &str = "@@auto-client-batch";

/// What one command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i32>,
    /// The watchdog killed it at the time limit.
    pub timed_out: bool,
}

/// The file a batched command only reads, where the batch can read it directly (see the module
/// docs): the `/proc/NAME...` of `cat -- /proc/NAME...` (as `learn::cat_command` writes a plain
/// path), `NAME` not a process (a number, `self`, `thread-self`).
pub fn direct_read(command: &str) -> Option<&str> {
    let path = command.strip_prefix("cat -- /proc/")?;
    let first = path.split('/').next()?;
    // a word the shell takes as it is (`shell_word` quotes every other)
    let plain = matches!(
        plugin_api::batch::shell_word(path),
        std::borrow::Cow::Borrowed(_)
    );
    let process =
        first.starts_with(|c: char| c.is_ascii_digit()) || matches!(first, "self" | "thread-self");
    (plain && !first.is_empty() && !process && !path.contains("..")).then(|| &command[7..])
}

/// The script's first line: run by bash (sshd starts the login shell, bash for root on most
/// distributions) where dash is installed, the script starts again in dash (`BASH_EXECUTION_STRING`
/// is bash's own copy of the `-c` text and is not exported, so dash does not loop). Its forks
/// are cheaper: the six collectors' batch cost 30.8 ms of CPU under bash and 23.3 ms through this
/// line (`perf stat -r 50`, six rounds alternating, medians). Where there is no dash (RHEL, whose
/// `sh` is bash) the script runs on in bash.
const IN_DASH: &str = "[ -n \"$BASH_EXECUTION_STRING\" ] && [ -x /bin/dash ] && \
    exec /bin/dash -c \"$BASH_EXECUTION_STRING\"\n";

/// The direct reads one `cat` takes: their markers come from here-documents on fds 4 to 9 (a
/// POSIX shell names fds by one digit; 0-2 are the streams, 3 the watchdog's).
const READS_PER_CAT: usize = 6;

/// The script that runs `commands` one after another until the client ends its stdin.
pub fn script(commands: &[String], nonce: &str) -> String {
    format!("{IN_DASH}{}", body(commands, nonce))
}

/// Whether the batch's start line is in its stdout (the script ran).
pub fn started(stdout: &[u8], nonce: &str) -> bool {
    find(stdout, format!("{MARKER}-{nonce}-start\n").as_bytes()).is_some()
}

/// The line that ends the batch's output, on stdout and on stderr.
pub fn done(nonce: &str) -> String {
    format!("{MARKER}-{nonce}-done\n")
}

/// [`script`] without its first line: what runs in any POSIX shell (bash where there is no dash).
fn body(commands: &[String], nonce: &str) -> String {
    // The markers are printed from two variables, so the script's own text (which a command can
    // read in /proc/PID/cmdline) never holds a marker.
    let end = "$__m-$__n-end";
    // The C locale for every command (as the local executor runs them): English messages
    // whatever the login's LANG or LANGUAGE (`learn::cat_read` reads cat's), no locale files
    // loaded. The channel's stdin moves to fd 3, the watchdog's alone: every command reads
    // /dev/null. __f: freeze a process's tree top down and list it in __a. Children from
    // /proc/PID/task/*/children (read by a builtin: a pgrep per process cost 0.3 s on a loaded
    // machine), else pgrep -P. A `for` list is expanded before its loop runs, so the
    // recursion's own use of __t, __l, __c does not disturb its caller's loops. __K: kill a
    // command's whole tree, silently (the script's stderr is the channel's). The USR1 trap (the
    // watchdog's) kills the command that runs (__p) and stops the batch (__k).
    let mut s = format!(
        "LC_ALL=C; export LC_ALL\n\
         __m={MARKER}; __n={nonce}\n\
         exec 3<&0 </dev/null\n\
         __k=0; __g=0; __p=\n\
         __f() {{ kill -STOP $1 2>/dev/null && __a=\"$__a $1\"; \
         if [ -e /proc/$1/task/$1/children ]; then for __t in /proc/$1/task/*/children; do \
         __l=; read -r __l <$__t; for __c in $__l; do __f $__c; done; done; \
         else for __c in $(pgrep -P $1); do __f $__c; done; fi; }}\n\
         __K() {{ __a=; __f $1; kill -9 $__a $1 2>/dev/null; }}\n\
         trap '__k=1; [ -z \"$__p\" ] || __K $__p 2>/dev/null' USR1\n\
         ( read -r __z; kill -USR1 $$ ) <&3 >/dev/null 2>&1 &\n\
         __w=$!\n\
         exec 3<&-\n\
         printf '%s\\n' \"$__m-$__n-start\"; printf '%s\\n' \"$__m-$__n-start\" >&2\n"
    );
    // __x PID: its exit code in __r. Once the watchdog has fired (a `wait` it interrupted gives
    // 128 + USR1; or it fired before the command's pid was known: killed here), wait only for a
    // process that has ended (a zombie, or gone from /proc); one that has not after a grace of
    // 10 × 0.1 s for the whole batch (the kills to land) counts as killed: 137. bash's `wait`
    // gives -1 for a child its SIGCHLD handler reaped while the USR1 trap ran (the status is
    // lost: 8 runs in 60 on a loaded machine); after the trap's `kill -9` that child was killed
    // by it: 137 too. __e I: command I's markers.
    s.push_str(&format!(
        "__x() {{ if [ $__k = 0 ]; then wait $1; __r=$?; \
         if [ $__k = 0 ] || [ $__r -ne 138 ]; then return; fi; else __K $1 2>/dev/null; fi; \
         while :; do __t=; read -r __t 2>/dev/null </proc/$1/stat || break; \
         __t=${{__t##*) }}; case $__t in Z*) break;; esac; \
         if [ $__g -lt 10 ]; then __g=$((__g + 1)); sleep 0.1; else __r=137; return; fi; done; \
         wait $1; __r=$?; [ $__r -ge 0 ] || __r=137; }}\n\
         __e() {{ printf '%s\\n' \"{end} $1 $__r $__k\"; printf '%s\\n' \"{end} $1\" >&2; }}\n"
    ));
    // The direct reads: __d PATH: whether cat can read PATH; if not, cat's own words on stderr
    // (for `learn::cat_read` to classify). Each read's marker comes from a here-document cat
    // opens as /proc/self/fd/N (the reads need /proc anyway; /dev/fd is missing in some
    // chroots). The cat runs under the watchdog like a command: a /proc file that blocks (a
    // hung driver's) is killed at the first command's timeout, its reads then asked alone.
    let reads: Vec<(usize, &str)> = commands
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i, direct_read(c)?)))
        .collect();
    if !reads.is_empty() {
        s.push_str(
            "__d() { if [ -d \"$1\" ]; then __y='Is a directory'; elif [ -r \"$1\" ]; then return 0; \
             elif [ -e \"$1\" ]; then __y='Permission denied'; else __y='No such file or directory'; fi; \
             printf 'cat: %s: %s\\n' \"$1\" \"$__y\" >&2; return 1; }\n",
        );
    }
    for chunk in reads.chunks(READS_PER_CAT) {
        s.push_str("[ $__k = 1 ] || {\nset --\n");
        let mut docs = String::new();
        let mut redirs = String::new();
        for (k, (i, path)) in chunk.iter().enumerate() {
            let fd = 4 + k;
            s.push_str(&format!(
                "if __d {path}; then __r{i}=0; set -- \"$@\" {path}; else __r{i}=1; fi; \
                 printf '%s\\n' \"{end} {i}\" >&2; set -- \"$@\" /proc/self/fd/{fd}\n"
            ));
            redirs.push_str(&format!(" {fd}<<__E{fd}"));
            docs.push_str(&format!("{end} {i} $__r{i} 0\n__E{fd}\n"));
        }
        // a read error half-way (none is known of these files) cuts its output short
        s.push_str(&format!(
            "cat \"$@\" 2>/dev/null{redirs} &\n{docs}__p=$!; __x $__p; __p=\n}}\n"
        ));
    }
    for (i, command) in commands.iter().enumerate() {
        if direct_read(command).is_some() {
            continue;
        }
        // A subshell each: `exit` or `cd` in one does not touch the others; none starts once
        // the watchdog has fired. A command that can start a job of its own (a background `&`)
        // waits for its jobs before it ends (an EXIT trap: its exit code stays), so that what
        // they print is its output, not the next command's; the trap costs a fork where the
        // command's last program could be exec'd, so only there.
        let wait = if starts_jobs(command) {
            "trap wait EXIT; "
        } else {
            ""
        };
        s.push_str(&format!(
            "[ $__k = 1 ] || {{ ( {wait}{command}\n) & __p=$!; __x $__p; __p=; __e {i}; }}\n"
        ));
    }
    s.push_str(
        "kill $__w 2>/dev/null\n\
         printf '%s\\n' \"$__m-$__n-done\" >&2; printf '%s\\n' \"$__m-$__n-done\"\n\
         exit 0\n",
    );
    s
}

/// Whether `command` may start a job of its own: an `&` that is not part of `&&`, `>&`, `<&` or
/// `&>` (one inside quotes counts too: it only costs the command a fork).
fn starts_jobs(command: &str) -> bool {
    let b = command.as_bytes();
    (0..b.len()).any(|i| {
        b[i] == b'&'
            && !matches!(b.get(i + 1), Some(b'&' | b'>'))
            && !matches!(i.checked_sub(1).map(|j| b[j]), Some(b'&' | b'>' | b'<'))
    })
}

/// How far past the batch's limit a command that started late (after the login and the
/// commands before it) may run to its own timeout, so that the one with the longest timeout,
/// the limit's own, is stopped by that timeout. The batch's hard cap is its limit and this.
pub const SLACK: Duration = Duration::from_secs(1);

/// When the client ends a batch's stdin (the EOF that fires the host's watchdog), fed the
/// batch's stdout as it arrives: at the running command's own timeout, counted from when the
/// marker line before it came back (the start line for the first), or at the batch's limit and
/// [`SLACK`], whichever comes first. The commands run one after another, so a command can reach
/// the limit before its own timeout (those before it took the time): such a kill says nothing
/// of the command, and the host asks it again on its own ([`Clock::killed_by_its_own_timeout`]
/// tells the two apart). The running command is the first in the batch's order whose end line
/// has not come (the direct reads, which come first, take a millisecond: they count as its).
pub struct Clock {
    start: Vec<u8>,
    end: Vec<u8>,
    /// The last bytes seen, for a marker line split between two pieces.
    tail: Vec<u8>,
    /// By command: its end line came.
    ended: Vec<bool>,
    /// The commands that run, in order: their index in the batch and their own timeout.
    runs: Vec<(usize, Duration)>,
    cap: Instant,
    /// When the last marker line came.
    since: Option<Instant>,
    /// The EOF time given last, and the command whose own timeout set it.
    last: Option<(Instant, Option<usize>)>,
}

impl Clock {
    /// `timeouts`: each command's own, in the order of `commands` (a direct read's is not used).
    pub fn new(commands: &[String], timeouts: &[Duration], limit: Duration, nonce: &str) -> Clock {
        assert_eq!(commands.len(), timeouts.len(), "a timeout for each command");
        let runs = commands
            .iter()
            .zip(timeouts)
            .enumerate()
            .filter(|(_, (command, _))| direct_read(command).is_none())
            .map(|(i, (_, timeout))| (i, *timeout))
            .collect();
        Clock {
            start: format!("{MARKER}-{nonce}-start\n").into_bytes(),
            end: format!("{MARKER}-{nonce}-end ").into_bytes(),
            tail: Vec::new(),
            ended: vec![false; commands.len()],
            runs,
            cap: Instant::now() + limit + SLACK,
            since: None,
            last: None,
        }
    }

    /// The EOF time, given the stdout that just arrived (see [`ssh_exec::EofAt`]).
    pub fn eof_at(&mut self, new: &[u8]) -> Option<Instant> {
        self.tail.extend_from_slice(new);
        let now = Instant::now();
        let mut at = 0;
        // a marker line from `at` on not yet whole: kept for the next piece
        let mut keep = None;
        while at < self.tail.len() {
            let rest = &self.tail[at..];
            let Some(next) = rest.iter().position(|&b| b == b'@') else {
                break;
            };
            let rest = &rest[next..];
            if rest.starts_with(&self.start) {
                self.since = Some(now);
            } else if rest.starts_with(&self.end) {
                let digits = &rest[self.end.len()..];
                match digits.iter().position(|b| !b.is_ascii_digit()) {
                    Some(n) if n > 0 && digits[n] == b' ' => {
                        let i = std::str::from_utf8(&digits[..n])
                            .ok()
                            .and_then(|d| d.parse::<usize>().ok());
                        if let Some(ended) = i.and_then(|i| self.ended.get_mut(i)) {
                            *ended = true;
                            self.since = Some(now);
                        }
                    }
                    Some(_) => {}
                    None => {
                        keep = Some(at + next);
                        break;
                    }
                }
            } else if self.start.starts_with(rest) || self.end.starts_with(rest) {
                keep = Some(at + next);
                break;
            }
            at += next + 1;
        }
        let from = keep.unwrap_or(self.tail.len());
        self.tail.drain(..from);
        let running = self.runs.iter().find(|(i, _)| !self.ended[*i]);
        let decided = match (self.since, running) {
            (Some(since), Some(&(i, timeout))) if since + timeout <= self.cap => {
                (since + timeout, Some(i))
            }
            _ => (self.cap, None),
        };
        self.last = Some(decided);
        Some(decided.0)
    }

    /// Whether an EOF of ours was due when last asked and is now.
    pub fn eof_was_due(&self) -> bool {
        self.last.is_some_and(|(at, _)| Instant::now() >= at)
    }

    /// Whether the command `i` (its index in the batch) was stopped at its own timeout: not at
    /// the batch's limit, nor before any EOF of ours was due (a host whose stdin ends at once,
    /// a wrapper that closes it: the host runs such a command again without the batch).
    pub fn killed_by_its_own_timeout(&self, i: usize) -> bool {
        self.eof_was_due() && self.last.is_some_and(|(_, by)| by == Some(i))
    }
}

/// [`parse`], then a command killed at the batch's limit before its own timeout is taken as not
/// answered (the host asks it on its own), as `clock` tells.
pub fn settle(
    stdout: &[u8],
    stderr: &[u8],
    n: usize,
    nonce: &str,
    clock: &Clock,
) -> Vec<Option<Output>> {
    let mut outputs = parse(stdout, stderr, n, nonce);
    for (i, o) in outputs.iter_mut().enumerate() {
        if o.as_ref().is_some_and(|o| o.timed_out) && !clock.killed_by_its_own_timeout(i) {
            *o = None;
        }
    }
    outputs
}

/// The outputs of the commands the script's streams hold whole, by index; `None` for the
/// others (not run after the watchdog fired, or the streams cut short or malformed: the host
/// runs those one by one).
pub fn parse(stdout: &[u8], stderr: &[u8], n: usize, nonce: &str) -> Vec<Option<Output>> {
    let mut outs: Vec<Option<Output>> = vec![None; n];
    let start = format!("{MARKER}-{nonce}-start\n");
    let end = format!("{MARKER}-{nonce}-end ");
    let (Some(out_at), Some(err_at)) = (
        find(stdout, start.as_bytes()),
        find(stderr, start.as_bytes()),
    ) else {
        return outs;
    };
    // stdout: "OUTPUT<end> I CODE KILLED\n" each
    for (piece, line) in pieces(&stdout[out_at + start.len()..], end.as_bytes()) {
        let mut fields = line.split(' ');
        let (Some(i), Some(code), Some(killed), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            break;
        };
        let Some(slot) = i.parse::<usize>().ok().and_then(|i| outs.get_mut(i)) else {
            break;
        };
        if slot.is_some() {
            break;
        }
        let exit_code = code.parse().ok();
        *slot = Some(Output {
            stdout: piece.to_vec(),
            stderr: Vec::new(),
            exit_code,
            // SIGKILL: 128 + 9
            timed_out: killed == "1" && exit_code == Some(137),
        });
    }
    // stderr: "ERRORS<end> I\n" each; a command whose stderr did not come whole is dropped
    let mut whole = vec![false; n];
    for (piece, line) in pieces(&stderr[err_at + start.len()..], end.as_bytes()) {
        let Some(i) = line.parse::<usize>().ok().filter(|&i| i < n && !whole[i]) else {
            break;
        };
        whole[i] = true;
        if let Some(out) = &mut outs[i] {
            out.stderr = piece.to_vec();
        }
    }
    for (out, whole) in outs.iter_mut().zip(whole) {
        if !whole {
            *out = None;
        }
    }
    outs
}

/// The pieces of a stream, each followed by `end` and the rest of that marker's line: (the
/// piece, the line), until the stream holds no whole marker line more.
fn pieces<'a>(
    mut rest: &'a [u8],
    end: &'a [u8],
) -> impl Iterator<Item = (&'a [u8], std::borrow::Cow<'a, str>)> + 'a {
    std::iter::from_fn(move || {
        let at = find(rest, end)?;
        let after = &rest[at + end.len()..];
        let eol = after.iter().position(|&b| b == b'\n')?;
        let piece = &rest[..at];
        rest = &after[eol + 1..];
        Some((piece, String::from_utf8_lossy(&after[..eol])))
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A fresh marker suffix, so that no command's output can pass for a marker line (the script
/// holds it apart from the marker's text: a command that prints the script's command line
/// prints no marker either).
pub fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn run_locally(commands: &[&str], limit: Duration) -> Vec<Option<Output>> {
        run_locally_with(commands, limit, |_| {})
    }

    /// `shell -c script` as the client runs it: stdin held open until `limit`, then closed (the
    /// SSH EOF that fires the watchdog); what came back on stdout and stderr, and the time taken.
    fn run_in(
        shell: &str,
        script: &str,
        limit: Duration,
        env: impl FnOnce(&mut Command),
    ) -> (std::process::Output, Duration) {
        let mut sh = Command::new(shell);
        sh.arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        env(&mut sh);
        let started = Instant::now();
        let mut child = sh.spawn().expect("the shell runs");
        let stdin = child.stdin.take().expect("stdin");
        let (ended, end) = std::sync::mpsc::channel::<()>();
        let closer = std::thread::spawn(move || {
            // until the limit, or until the batch has ended on its own
            let _ = end.recv_timeout(limit);
            drop(stdin);
        });
        let out = child.wait_with_output().expect("the shell ends");
        let took = started.elapsed();
        drop(ended);
        closer.join().expect("the closer ends");
        (out, took)
    }

    /// Whether a process whose command line holds `marker` still runs.
    fn assert_none_left(marker: &str, what: &str) {
        let left = Command::new("pgrep")
            .args(["-f", marker])
            .output()
            .expect("pgrep runs");
        assert!(
            left.stdout.is_empty(),
            "{what}: left running: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }

    /// [`run_locally`] with the shell's environment set by `env` first (a login's LANG).
    fn run_locally_with(
        commands: &[&str],
        limit: Duration,
        env: impl FnOnce(&mut Command),
    ) -> Vec<Option<Output>> {
        let nonce = nonce();
        let commands: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        let (out, _) = run_in("sh", &script(&commands, &nonce), limit, env);
        assert!(out.status.success(), "{out:?}");
        assert!(out.stdout.ends_with(done(&nonce).as_bytes()), "{out:?}");
        assert!(out.stderr.ends_with(done(&nonce).as_bytes()), "{out:?}");
        parse(&out.stdout, &out.stderr, commands.len(), &nonce)
    }

    /// Nothing of a batch is written on the host: its commands' stdout and stderr are the
    /// channel's streams themselves (pipes here, as sshd's), not files read back later.
    #[test]
    fn outputs_go_straight_to_the_streams() {
        let got = run_locally(
            &[
                "readlink /proc/self/fd/1 /proc/self/fd/2",
                "readlink /proc/self/fd/2 >&2",
            ],
            Duration::from_secs(5),
        );
        let o = |i: usize| got[i].clone().expect("block present");
        let streams = String::from_utf8(o(0).stdout).expect("utf-8");
        assert!(
            streams.lines().count() == 2 && streams.lines().all(|l| l.starts_with("pipe:")),
            "{streams}"
        );
        assert!(o(1).stderr.starts_with(b"pipe:"), "{:?}", o(1));
        assert!(o(1).stdout.is_empty(), "{:?}", o(1));
    }

    /// A job a command leaves running is waited for before the command ends: what it prints is
    /// that command's output, not the next one's.
    #[test]
    fn a_job_a_command_leaves_running_is_its_output() {
        let got = run_locally(
            &[
                "(sleep 0.3; echo LATE; echo LATEERR >&2) & echo first; exit 4",
                "echo second",
            ],
            Duration::from_secs(5),
        );
        let o = |i: usize| got[i].clone().expect("block present");
        assert_eq!(
            (o(0).stdout, o(0).stderr, o(0).exit_code),
            (b"first\nLATE\n".to_vec(), b"LATEERR\n".to_vec(), Some(4))
        );
        assert_eq!(o(1).stdout, b"second\n");
    }

    #[test]
    fn only_a_background_ampersand_starts_a_job() {
        for (command, jobs) in [
            ("sleep 1 & echo x", true),
            ("(a) &", true),
            ("a&", true),
            ("a && b", false),
            ("a 2>&1 >&2 <&3", false),
            ("a &>/dev/null", false),
            ("ip -d -j addr", false),
        ] {
            assert_eq!(starts_jobs(command), jobs, "{command}");
        }
    }

    /// A command that prints the script itself (its shell's command line) prints no marker: it
    /// and the commands after it come back whole.
    #[test]
    fn a_command_that_prints_the_script_prints_no_marker() {
        let got = run_locally(
            &[
                "cat /proc/$$/cmdline; cat /proc/$$/cmdline >&2",
                "echo after",
                "cat -- /proc/version",
            ],
            Duration::from_secs(5),
        );
        let o = |i: usize| got[i].clone().expect("block present");
        assert!(
            String::from_utf8_lossy(&o(0).stdout).contains("echo after"),
            "{:?}",
            o(0)
        );
        assert_eq!(o(1).stdout, b"after\n");
        assert!(o(2).stdout.starts_with(b"Linux version"), "{:?}", o(2));
    }

    /// A German login (`LANG`, `LANGUAGE=de`) would make cat's "No such file or directory"
    /// German, and a missing file then reads as an unknown error: every command runs with
    /// `LC_ALL=C`.
    #[test]
    fn commands_run_in_the_c_locale_whatever_the_login_sets() {
        let got = run_locally_with(
            &["printenv LC_ALL", "cat /nonexistent-for-the-locale-test"],
            Duration::from_secs(5),
            |sh| {
                sh.env("LANG", "C.UTF-8")
                    .env("LANGUAGE", "de")
                    .env_remove("LC_ALL");
            },
        );
        let o = |i: usize| got[i].clone().expect("block present");
        assert_eq!(o(0).stdout, b"C\n");
        assert_eq!(
            String::from_utf8_lossy(&o(1).stderr),
            "cat: /nonexistent-for-the-locale-test: No such file or directory\n"
        );
    }

    #[test]
    fn outputs_codes_and_bytes_come_back_exactly() {
        let got = run_locally(
            &[
                "printf 'a\\n\\n'",
                "echo err >&2; exit 3",
                "printf '\\000\\377@@auto-client-batch-x 0 0\\n1\\n'",
                "cat -- '/nonexistent/it'\\''s'",
                "exit 0",
                "cd /; exit 5",
            ],
            Duration::from_secs(5),
        );
        let o = |i: usize| got[i].clone().expect("block present");
        assert_eq!(o(0).stdout, b"a\n\n");
        assert_eq!(o(0).exit_code, Some(0));
        assert_eq!(
            (o(1).stderr.as_slice(), o(1).exit_code),
            (&b"err\n"[..], Some(3))
        );
        assert_eq!(o(2).stdout, b"\x00\xff@@auto-client-batch-x 0 0\n1\n");
        assert!(String::from_utf8_lossy(&o(3).stderr).contains("No such file"));
        assert_ne!(o(3).exit_code, Some(0));
        assert_eq!((o(4).stdout.len(), o(4).exit_code), (0, Some(0)));
        assert_eq!(o(5).exit_code, Some(5));
        assert!(got.iter().flatten().all(|o| !o.timed_out));
    }

    /// At the limit the command that runs is killed and reported so, what ran before it is
    /// kept, and what comes after it does not run (the host asks it on its own).
    #[test]
    fn a_hanging_command_is_killed_at_the_limit_and_the_others_are_kept_or_left() {
        let got = run_locally(
            &["echo first", "echo started; sleep 30", "echo after"],
            Duration::from_secs(1),
        );
        let first = got[0].clone().expect("block present");
        assert_eq!(
            (first.stdout.as_slice(), first.timed_out),
            (&b"first\n"[..], false)
        );
        let hung = got[1].clone().expect("block present");
        assert!(hung.timed_out, "{hung:?}");
        assert_eq!(hung.stdout, b"started\n");
        assert_eq!(got[2], None, "ran after the limit");
    }

    /// The limit is a hard cap: a command whose work is in grandchildren (a shell that runs a
    /// shell that sleeps, a pipeline in a subshell) is killed whole at the limit, under sh and
    /// bash, and the batch ends within the limit and a small bound; nothing of it is left running.
    #[test]
    fn the_whole_tree_of_a_hanging_command_is_killed_at_the_limit() {
        for (shell, script) in [
            ("sh", script as fn(&[String], &str) -> String),
            ("bash", body),
        ] {
            let marker = format!("41.{}{}", std::process::id(), shell.len());
            let hang = format!(
                "echo before; sh -c 'sleep {marker}; :' & (sleep {marker} | cat) & sleep {marker}; wait"
            );
            let nonce = nonce();
            let commands = vec!["echo fine".to_string(), hang];
            let (out, took) = run_in(
                shell,
                &script(&commands, &nonce),
                Duration::from_secs(1),
                |_| {},
            );
            assert!(out.status.success(), "{shell}: {out:?}");
            let got = parse(&out.stdout, &out.stderr, 2, &nonce);
            let hung = got[1].clone().expect("block present");
            assert!(hung.timed_out, "{shell}: {hung:?}");
            assert_eq!(hung.stdout, b"before\n");
            assert_eq!(
                got[0].clone().expect("block present").stdout,
                b"fine\n".to_vec()
            );
            assert!(
                took < Duration::from_millis(2500),
                "{shell}: a 1 s limit took {took:?}"
            );
            assert_none_left(&format!("sleep {marker}"), shell);
        }
    }

    /// A client that is gone (sshd closes the command's stdin) fires the watchdog at once: a
    /// hung command does not run on until some limit, and nothing of it is left.
    #[test]
    fn the_end_of_stdin_kills_what_runs_at_once() {
        let marker = format!("44.{}", std::process::id());
        let nonce = nonce();
        let commands = vec![format!("sh -c 'sleep {marker}; :'; echo never")];
        let (out, took) = run_in(
            "sh",
            &script(&commands, &nonce),
            Duration::from_millis(300),
            |_| {},
        );
        let got = parse(&out.stdout, &out.stderr, 1, &nonce);
        assert!(
            got[0]
                .clone()
                .is_some_and(|o| o.timed_out && o.stdout.is_empty()),
            "{got:?}"
        );
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert_none_left(&format!("sleep {marker}"), "sh");
    }

    /// Started by bash on a machine with dash, the batch runs in dash (its commands' shell is
    /// dash's process); started by dash, it stays there.
    #[test]
    fn bash_hands_the_batch_to_dash_where_there_is_one() {
        if !std::path::Path::new("/bin/dash").exists() {
            eprintln!("no /bin/dash here: the batch stays in bash");
            return;
        }
        let nonce = nonce();
        let commands = vec!["readlink /proc/$$/exe".to_string()];
        for shell in ["bash", "sh"] {
            let (out, _) = run_in(
                shell,
                &script(&commands, &nonce),
                Duration::from_secs(5),
                |_| {},
            );
            let got = parse(&out.stdout, &out.stderr, 1, &nonce)[0]
                .clone()
                .expect("block present");
            assert!(
                String::from_utf8_lossy(&got.stdout)
                    .trim_end()
                    .ends_with("/dash"),
                "{shell}: {got:?}"
            );
        }
    }

    /// bash's `wait` loses the status of a child its SIGCHLD handler reaps while the USR1 trap
    /// runs (it gives -1): many hung batches at once under bash (the load that makes the race)
    /// each report the hung command as killed at the limit. Without the fix 6 of 30 gave
    /// `exit code -1` and no time-out on this machine.
    #[test]
    fn many_hung_batches_at_once_under_bash_each_report_the_kill() {
        let marker = format!("43.{}", std::process::id());
        let hang = format!("echo before; sh -c 'sleep {marker}; :' & sleep {marker}; wait");
        let nonce = nonce();
        let commands = vec!["echo fine".to_string(), hang];
        // without the line that moves to dash: bash where there is no dash
        let script = body(&commands, &nonce);
        let mut runs: Vec<_> = (0..30)
            .map(|_| {
                Command::new("bash")
                    .arg("-c")
                    .arg(&script)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("bash runs")
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        // the limit: every client's EOF at once
        for run in &mut runs {
            drop(run.stdin.take());
        }
        let wrong: Vec<_> = runs
            .into_iter()
            .map(|run| run.wait_with_output().expect("bash ends"))
            .map(|out| parse(&out.stdout, &out.stderr, 2, &nonce))
            .filter_map(|got| {
                let fine = got[0].clone()?;
                let hung = got[1].clone()?;
                let whole = hung.timed_out
                    && hung.exit_code == Some(137)
                    && hung.stdout == b"before\n"
                    && fine.exit_code == Some(0);
                (!whole).then_some((hung.exit_code, hung.timed_out))
            })
            .collect();
        assert!(wrong.is_empty(), "of 30 runs these were wrong: {wrong:?}");
    }

    /// The client's EOF can come at any moment of a batch, also as it ends on its own: under
    /// dash and bash, every run still ends with its `done` lines, exit code 0, and every output
    /// it gives is the command's whole output or marked as killed; the commands it does not
    /// give are the last ones (not run once the watchdog fired).
    #[test]
    fn an_eof_at_any_moment_never_garbles_the_batch() {
        let nonce = nonce();
        let commands: Vec<String> = [
            "echo a",
            "printf b >&2",
            "echo c; exit 3",
            "cat -- /proc/version",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect();
        let expect = |i: usize, o: &Output| match i {
            0 => o.stdout == b"a\n" && o.stderr.is_empty() && o.exit_code == Some(0),
            1 => o.stdout.is_empty() && o.stderr == b"b" && o.exit_code == Some(0),
            2 => o.stdout == b"c\n" && o.exit_code == Some(3),
            _ => o.stdout.starts_with(b"Linux version") && o.exit_code == Some(0),
        };
        let mut wrong = Vec::new();
        let mut cut = 0;
        for run in 0..400u64 {
            let (shell, script) = if run % 2 == 0 {
                ("sh", script(&commands, &nonce))
            } else {
                ("bash", body(&commands, &nonce))
            };
            // 0 to ~12 ms: before, during and after the commands
            let eof = Duration::from_micros((run * 7919) % 12_000);
            let (out, _) = run_in(shell, &script, eof, |_| {});
            let got = parse(&out.stdout, &out.stderr, commands.len(), &nonce);
            let ended = out.status.success()
                && out.stdout.ends_with(done(&nonce).as_bytes())
                && out.stderr.ends_with(done(&nonce).as_bytes());
            // the direct read comes first; then the commands in order, the missing ones last
            let order = [3, 0, 1, 2];
            let given: Vec<bool> = order.iter().map(|&i| got[i].is_some()).collect();
            let prefix = given.windows(2).all(|w| w[0] || !w[1]);
            let right = order
                .iter()
                .all(|&i| got[i].as_ref().is_none_or(|o| o.timed_out || expect(i, o)));
            cut += usize::from(given.contains(&false));
            if !(ended && prefix && right) {
                wrong.push((run, shell, eof, got));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of 400 runs were wrong, e.g. {:?}",
            wrong.len(),
            wrong.first()
        );
        // the EOF did cut some runs short: the test saw both kinds
        assert!(cut > 0 && cut < 400, "{cut} of 400 runs were cut short");
    }

    /// The client's side of a batch on a local shell: stdout fed to a [`Clock`] as it comes,
    /// stdin closed when the clock says; the outputs as the host takes them ([`settle`]).
    fn run_clocked(
        commands: &[&str],
        timeouts: &[Duration],
        limit: Duration,
    ) -> Vec<Option<Output>> {
        use std::io::Read;
        let nonce = nonce();
        let commands: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        let mut clock = Clock::new(&commands, timeouts, limit, &nonce);
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script(&commands, &nonce))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let errors = std::thread::spawn(move || {
            let mut all = Vec::new();
            err.read_to_end(&mut all).expect("stderr");
            all
        });
        let (pieces, arrive) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 || pieces.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let mut stdout = Vec::new();
        let mut eof_at = clock.eof_at(&[]);
        loop {
            let wait = eof_at
                .filter(|_| stdin.is_some())
                .map_or(Duration::from_secs(60), |at| {
                    at.saturating_duration_since(Instant::now())
                });
            match arrive.recv_timeout(wait) {
                Ok(piece) => {
                    stdout.extend_from_slice(&piece);
                    if stdin.is_some() {
                        eof_at = clock.eof_at(&piece);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => drop(stdin.take()),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if eof_at.is_some_and(|at| Instant::now() >= at) {
                drop(stdin.take());
            }
        }
        child.wait().expect("sh ends");
        let stderr = errors.join().expect("stderr read");
        settle(&stdout, &stderr, commands.len(), &nonce, &clock)
    }

    /// One after another, a command can reach the batch's limit before its own timeout: then it
    /// is not reported as timed out (the host asks it again on its own); a command past its own
    /// timeout is, and the EOF comes at that timeout, before the batch's limit.
    #[test]
    fn a_command_is_timed_out_at_its_own_timeout_not_at_the_batchs_limit() {
        let s = Duration::from_millis;
        let commands = [
            "cat -- /proc/version",
            "sleep 0.2; echo slow",
            "echo started; sleep 30",
        ];
        // the third starts at ~0.2 s: its own timeout (3 s) would end at ~3.2, past the limit
        // and the slack (1.2 + 1 s)
        let got = run_clocked(&commands, &[s(1000), s(1000), s(3000)], s(1200));
        assert!(
            got[0]
                .as_ref()
                .is_some_and(|o| o.stdout.starts_with(b"Linux")),
            "{got:?}"
        );
        assert_eq!(
            got[1].as_ref().map(|o| o.stdout.as_slice()),
            Some(&b"slow\n"[..])
        );
        assert_eq!(
            got[2], None,
            "killed at the batch's limit, not at its own timeout"
        );
        // every timeout the limit's (as when no command asks less than the shortest collector
        // timeout): the third's own 1 s, from ~0.2 s, ends within the slack (0.8 s to spare):
        // timed out there
        let got = run_clocked(&commands, &[s(1000), s(1000), s(1000)], s(1000));
        assert!(got[2].as_ref().is_some_and(|o| o.timed_out), "{got:?}");
        // its own timeout of 0.2 s ends at ~0.4, before the limit: timed out
        let started = Instant::now();
        let got = run_clocked(&commands, &[s(1000), s(1000), s(200)], s(5000));
        let took = started.elapsed();
        let hung = got[2].clone().expect("block present");
        assert!(hung.timed_out && hung.stdout == b"started\n", "{hung:?}");
        assert!(
            took < s(2500),
            "EOF at its own timeout (~0.4 s), the batch took {took:?}"
        );
    }

    /// A host whose stdin ends at once (not by the client's EOF) kills the first command at once:
    /// that is not its timeout, so it is not reported as one (the host runs it again alone).
    #[test]
    fn a_kill_the_client_did_not_ask_for_is_no_timeout() {
        let s = Duration::from_secs;
        let nonce = "n3";
        let commands = vec!["echo started; sleep 5".to_string()];
        let mut clock = Clock::new(&commands, &[s(5)], s(10), nonce);
        // what the client had seen when the kill came: the start line and the command's output
        let start = format!("{MARKER}-{nonce}-start\n");
        clock.eof_at(format!("{start}started\n").as_bytes());
        let out = format!(
            "{start}started\n{MARKER}-{nonce}-end 0 137 1\n{}",
            done(nonce)
        );
        let err = format!("{start}{MARKER}-{nonce}-end 0\n{}", done(nonce));
        let raw = parse(out.as_bytes(), err.as_bytes(), 1, nonce);
        assert!(raw[0].as_ref().is_some_and(|o| o.timed_out), "{raw:?}");
        assert_eq!(
            settle(out.as_bytes(), err.as_bytes(), 1, nonce, &clock),
            vec![None]
        );
        // the same once its own timeout is due: a timeout
        let mut clock = Clock::new(&commands, &[Duration::ZERO], s(10), nonce);
        clock.eof_at(format!("{start}started\n").as_bytes());
        let got = settle(out.as_bytes(), err.as_bytes(), 1, nonce, &clock);
        assert!(got[0].as_ref().is_some_and(|o| o.timed_out), "{got:?}");
    }

    /// The clock reads the marker lines, also split between two pieces of stdout: the first
    /// command's time starts at the start line, each next one's at the end line before it; a
    /// timeout past the batch's limit and [`SLACK`] gives way to that.
    #[test]
    fn the_clock_follows_markers_across_pieces() {
        let nonce = "n2";
        let commands: Vec<String> = ["cat -- /proc/version", "a", "b"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let s = Duration::from_secs;
        let mut clock = Clock::new(&commands, &[s(9), s(2), s(50)], s(30), nonce);
        let cap = clock.eof_at(&[]).expect("a time");
        let start = format!("motd\n{MARKER}-{nonce}-start\n");
        let (a, b) = start.as_bytes().split_at(14);
        assert_eq!(clock.eof_at(a), Some(cap));
        let within = |at: Instant, before: Instant, own: Duration| {
            at >= before + own && at <= Instant::now() + own
        };
        // the start line whole: `a` runs (the read before it is its millisecond), its own 2 s
        let before = Instant::now();
        let own = clock.eof_at(b).expect("a time");
        assert!(own < cap && within(own, before, s(2)), "{own:?}");
        // its own timeout set the EOF, which is not due yet: no kill of `a` is its timeout now
        assert!(!clock.killed_by_its_own_timeout(1));
        // the read's end line, its index split from the rest of it
        let read_end = format!("Linux ...{MARKER}-{nonce}-end 0 0 0\n");
        let (a, b) = read_end.as_bytes().split_at(read_end.len() - 5);
        clock.eof_at(a);
        let before = Instant::now();
        let own = clock.eof_at(b).expect("a time");
        assert!(within(own, before, s(2)), "{own:?}");
        // output of `a` without a whole marker changes nothing, another nonce neither
        assert_eq!(clock.eof_at(b"@@auto-client"), Some(own));
        let a_end = format!("-batch-x-end 1 0 0\n{MARKER}-{nonce}-end 1 0 0\n");
        // `b` runs: its own 50 s end after the limit: the limit
        assert_eq!(clock.eof_at(a_end.as_bytes()), Some(cap));
        assert!(!clock.killed_by_its_own_timeout(1) && !clock.killed_by_its_own_timeout(2));

        // a command whose own timeout (none: 0) has passed was stopped by it, the others not
        let mut clock = Clock::new(&commands, &[s(9), Duration::ZERO, s(50)], s(30), nonce);
        clock.eof_at(format!("{MARKER}-{nonce}-start\n{read_end}").as_bytes());
        assert!(clock.killed_by_its_own_timeout(1) && !clock.killed_by_its_own_timeout(2));
    }

    #[test]
    fn cut_short_or_foreign_streams_give_what_came_whole() {
        let nonce = "n1";
        let start = format!("{MARKER}-{nonce}-start\n");
        let end = format!("{MARKER}-{nonce}-end");
        let done = done(nonce);
        // whole, after the login's noise on both streams
        let out = format!("motd\n{start}abc{end} 0 0 0\n{done}").into_bytes();
        let err = format!("noise\n{start}err{end} 0\n{done}").into_bytes();
        let got = parse(&out, &err, 1, nonce)[0].clone().expect("parsed");
        assert_eq!(
            (got.stdout, got.stderr, got.exit_code, got.timed_out),
            (b"abc".to_vec(), b"err".to_vec(), Some(0), false)
        );
        // killed at the limit
        let out = format!("{start}half{end} 0 137 1\n").into_bytes();
        let err = format!("{start}{end} 0\n").into_bytes();
        assert!(
            parse(&out, &err, 1, nonce)[0]
                .clone()
                .expect("parsed")
                .timed_out
        );
        // cut short: the first command whole, the second's stdout cut, the third's stderr missing
        let out = format!("{start}a{end} 0 0 0\nb{end} 1 0 0\nc{end} 2 0").into_bytes();
        let err = format!("{start}{end} 0\n{end} 1").into_bytes();
        let got = parse(&out, &err, 3, nonce);
        assert_eq!(got[0].clone().expect("whole").stdout, b"a");
        assert_eq!((got[1].clone(), got[2].clone()), (None, None));
        // another batch's markers, or none: nothing
        let out = format!("{MARKER}-other-start\nabc{MARKER}-other-end 0 0 0\n").into_bytes();
        let err = format!("{MARKER}-other-start\n{MARKER}-other-end 0\n").into_bytes();
        assert_eq!(parse(&out, &err, 1, nonce), vec![None]);
        let out = format!("{start}a{end} 0 0 0\n").into_bytes();
        assert_eq!(parse(&out, b"", 1, nonce), vec![None]);
        // an index out of range or given twice stops the reading there
        let out = format!("{start}a{end} 0 0 0\nb{end} 0 0 0\nc{end} 7 0 0\n").into_bytes();
        let err = format!("{start}{end} 0\n{end} 1\n").into_bytes();
        let got = parse(&out, &err, 2, nonce);
        assert_eq!(got[0].clone().expect("first").stdout, b"a");
        assert_eq!(got[1], None);
    }

    /// More direct reads than one `cat` takes (six) go to a second one; each read keeps its own
    /// bytes and its own error, among commands that ran as usual.
    #[test]
    fn more_direct_reads_than_one_cat_takes() {
        let files = [
            "/proc/sys/kernel/ostype",
            "/proc/sys/kernel/osrelease",
            "/proc/no-such-file-1",
            "/proc/sys/kernel/hostname",
            "/proc/version",
            "/proc/sys/kernel/pid_max",
            "/proc/sys/kernel/threads-max",
            "/proc/no-such-file-2",
            "/proc/sys/kernel/random/boot_id",
        ];
        let mut commands: Vec<String> = files.iter().map(|f| format!("cat -- {f}")).collect();
        commands.insert(4, "echo between".to_string());
        let refs: Vec<&str> = commands.iter().map(String::as_str).collect();
        let got = run_locally(&refs, Duration::from_secs(5));
        for (i, command) in commands.iter().enumerate() {
            let o = got[i]
                .clone()
                .unwrap_or_else(|| panic!("{command}: no block"));
            match command.strip_prefix("cat -- ") {
                None => assert_eq!(o.stdout, b"between\n"),
                Some(path) => match std::fs::read(path) {
                    Ok(bytes) => assert_eq!((o.stdout, o.exit_code), (bytes, Some(0)), "{command}"),
                    Err(_) => assert_eq!(
                        (String::from_utf8_lossy(&o.stderr).into_owned(), o.exit_code),
                        (format!("cat: {path}: No such file or directory\n"), Some(1)),
                        "{command}"
                    ),
                },
            }
        }
    }

    #[test]
    fn only_the_kernels_own_proc_files_are_read_directly() {
        for (command, direct) in [
            ("cat -- /proc/cpuinfo", Some("/proc/cpuinfo")),
            (
                "cat -- /proc/sys/kernel/hostname",
                Some("/proc/sys/kernel/hostname"),
            ),
            ("cat -- /proc/1/cmdline", None),
            ("cat -- /proc/self/status", None),
            ("cat -- /proc/thread-self/stat", None),
            ("cat -- /proc/../etc/passwd", None),
            ("cat -- /etc/passwd", None),
            ("cat -- '/proc/a b'", None),
            ("cat -- /proc/cpuinfo; rm -rf /", None),
            ("cat -- /proc/", None),
            ("cat /proc/cpuinfo", None),
        ] {
            assert_eq!(direct_read(command), direct, "{command}");
        }
    }

    /// A direct read gives the file's bytes as they are, or cat's words for a file it could not
    /// read (what `learn::cat_read` classifies), beside commands that ran as usual.
    #[test]
    fn direct_reads_give_the_file_or_cats_error() {
        let got = run_locally(
            &[
                "cat -- /proc/cpuinfo",
                "printf x",
                "cat -- /proc/no-such-file",
                "cat -- /proc/sys",
                "cat -- /proc/self/status",
            ],
            Duration::from_secs(5),
        );
        let o = |i: usize| got[i].clone().expect("block present");
        let cpuinfo = std::fs::read("/proc/cpuinfo").expect("cpuinfo");
        // the MHz lines move between two reads
        let same = |a: &[u8], b: &[u8]| {
            let keep = |t: &[u8]| -> Vec<String> {
                String::from_utf8_lossy(t)
                    .lines()
                    .filter(|l| !l.starts_with("cpu MHz"))
                    .map(String::from)
                    .collect()
            };
            keep(a) == keep(b)
        };
        assert!(same(&o(0).stdout, &cpuinfo), "{:?}", o(0));
        assert_eq!((o(0).exit_code, o(0).stderr.len()), (Some(0), 0));
        assert_eq!(
            (o(1).stdout.as_slice(), o(1).exit_code),
            (&b"x"[..], Some(0))
        );
        assert_eq!(o(2).exit_code, Some(1));
        assert_eq!(
            String::from_utf8_lossy(&o(2).stderr),
            "cat: /proc/no-such-file: No such file or directory\n"
        );
        assert_eq!(
            (
                String::from_utf8_lossy(&o(3).stderr).as_ref(),
                o(3).exit_code
            ),
            ("cat: /proc/sys: Is a directory\n", Some(1))
        );
        // a process's file is read by a cat of its own (here: that cat's own status)
        assert!(String::from_utf8_lossy(&o(4).stdout).contains("Name:\tcat"));
    }
}
