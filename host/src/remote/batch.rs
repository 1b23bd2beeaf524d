//! Many commands in one SSH `exec` (ssh mode's prefetch): a POSIX shell script that starts the
//! commands side by side, each with its stdout and stderr in files, under one watchdog that kills
//! what is still running at the time limit; then it prints one marker line with every exit code
//! and the outputs through one `cat`, each followed by a separator line that holds the batch's
//! nonce (a copy of one small file: no `stat` for byte counts). An SSH channel carries bytes
//! exactly, so nothing is encoded (salt mode's batch hex-encodes: Salt returns text).
//!
//! The outputs are files of a directory that `mktemp -d` makes in the first of `$TMPDIR` (where
//! the login sets it), `/dev/shm` (tmpfs) and `/tmp` that exists and takes a 4 KiB write (a
//! full place is skipped, its directory removed): a batch creates and removes about 20 files,
//! which cost the host ~0.9 ms of CPU more on an ext4 `/tmp` (six collectors' batch, 201
//! alternating runs: 14.7 against 13.8 ms).
//!
//! Made to fork little on the host (a script of 9 commands costs ~20 ms of the host's CPU; the
//! same with `timeout` and a `cat`/`wc` per output cost 50–60 ms): the commands themselves, the
//! watchdog's `sleep`, `mktemp`, one `cat`, the exit trap's `rm`. A file read of the kernel's own
//! (`cat -- /proc/NAME`, not a process's directory: [`direct_read`]) starts no `cat` of its own:
//! the final `cat` reads the file itself, after a builtin test for it (a `cat` a read cost ~1.2
//! ms of the host's CPU, `stat` ~2 ms). Needs `sh`, `mktemp`, `sleep`, `cat` (coreutils or
//! busybox); where any is missing the batch fails and the collectors run their commands one by
//! one. Started by bash where there is a dash, the script moves to dash first ([`IN_DASH`]).
//!
//! The time limit is a hard cap (issue 14: batches ran 20.9 s against 12 s). At the limit the
//! watchdog freezes each command's whole process tree top down (`kill -STOP`, then its children
//! from `/proc/PID/task/*/children`, else `pgrep -P`, so nothing forks meanwhile), kills every process of it
//! (`kill -9`: grandchildren too, not only children), then wakes the script (`USR1`: a `wait`
//! returns at a trapped signal). From then on the script waits only for commands that have ended
//! (a zombie in `/proc/PID/stat`), after one second's grace at most: a process the kernel cannot
//! kill yet (state D: a hung NFS mount, a stuck driver) is reported as killed instead of holding
//! the batch, and the outputs so far come back. The direct reads come after the watchdog, and are
//! only of files the kernel makes up on the spot (`/proc/cpuinfo`, `/proc/sys/...`), never of a
//! process's `/proc/PID` (which can block on that process's memory lock) or anything on a disk.

use std::time::Duration;

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

/// The script that runs `commands` side by side, killing what still runs after `limit`.
pub fn script(commands: &[String], limit: Duration, nonce: &str) -> String {
    format!("{IN_DASH}{}", body(commands, limit, nonce))
}

/// [`script`] without its first line: what runs in any POSIX shell (bash where there is no dash).
fn body(commands: &[String], limit: Duration, nonce: &str) -> String {
    // First the C locale for every command (as the local executor runs them): English messages
    // whatever the login's LANG or LANGUAGE (`learn::cat_read` reads cat's), no locale files
    // loaded. Then the outputs' directory: the first of $TMPDIR (where the login sets it),
    // /dev/shm (tmpfs: no journal for the ~20 files a batch creates and removes; /tmp is a disk
    // on many hosts) and /tmp where `mktemp -d` works and a page (4 KiB) can be written: a full
    // place (a container's 64 MiB /dev/shm filled by a database) would lose every output. A
    // probe of 256 KiB cost ~1 ms of the host's CPU, more than /dev/shm saves; a place with
    // less room left than the outputs need still loses them.
    let mut s = String::from(
        "LC_ALL=C; export LC_ALL\n\
         __b=; for __t in ${TMPDIR:+\"$TMPDIR\"} /dev/shm /tmp; do \
         [ -d \"$__t\" ] && [ -w \"$__t\" ] || continue; \
         __c=$(mktemp -d -p \"$__t\" 2>/dev/null) || continue; \
         if printf '%4096s' '' 2>/dev/null >\"$__c/p\"; then __b=$__c; break; fi; \
         rm -rf \"$__c\"; done\n\
         [ -n \"$__b\" ] || { echo 'auto-client: no temporary directory to write in ($TMPDIR, /dev/shm, /tmp)' >&2; exit 97; }\n\
         trap 'rm -rf \"$__b\"' EXIT\n\
         __k=0; __g=0; trap '__k=1' USR1\n",
    );
    // each command's file if the batch reads it directly, else None: it runs
    let reads: Vec<Option<&str>> = commands.iter().map(|c| direct_read(c)).collect();
    let mut pids = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        if reads[i].is_some() {
            continue;
        }
        // a subshell each: `exit` or `cd` in one does not touch the others
        s.push_str(&format!(
            "( {command}\n) >\"$__b/o{i}\" 2>\"$__b/e{i}\" </dev/null &\n__p{i}=$!\n"
        ));
        pids.push(format!("$__p{i}"));
    }
    let pids = pids.join(" ");
    // The watchdog is forked without the EXIT trap, which is armed again right after: bash runs
    // an EXIT trap when a TERM kills it, and the `kill $__w` below can reach the watchdog before
    // it has set its own TERM trap; with the parent's trap it would remove the batch directory
    // before the `cat` (issue 14: the host then ran every command one by one).
    // __f: freeze a process's tree top down and list it in __a. Children from
    // /proc/PID/task/*/children (read by a builtin: a pgrep per process cost 0.3 s on a loaded
    // machine), else pgrep -P. A `for` list is expanded before its loop runs, so the recursion's
    // own use of __t, __l, __c does not disturb its caller's loops.
    s.push_str(&format!(
        "trap - EXIT\n\
         ( trap 'kill $__s 2>/dev/null; exit 0' TERM; sleep {secs} & __s=$!; wait $__s; \
         : >\"$__b/k\"; __a=; \
         __f() {{ kill -STOP $1 2>/dev/null && __a=\"$__a $1\"; \
         if [ -e /proc/$1/task/$1/children ]; then for __t in /proc/$1/task/*/children; do \
         __l=; read -r __l <$__t; for __c in $__l; do __f $__c; done; done; \
         else for __c in $(pgrep -P $1); do __f $__c; done; fi; }}; \
         for __q in {pids}; do __f $__q; done; kill -9 $__a {pids}; kill -USR1 $$ \
         ) >/dev/null 2>&1 </dev/null &\n__w=$!\n\
         trap 'rm -rf \"$__b\"' EXIT\n",
        secs = limit.as_millis().div_ceil(1000).max(1),
    ));
    // __x PID: its exit code in __r. Once the watchdog has fired (a `wait` it interrupted gives
    // 128 + USR1), wait only for a process that has ended (a zombie, or gone from /proc); one
    // that has not after a grace of 10 × 0.1 s for the whole batch (the kills to land) counts as
    // killed: 137. bash's `wait` gives -1 for a child its SIGCHLD handler reaped while the USR1
    // trap ran (the status is lost: 8 runs in 60 on a loaded machine); after the watchdog's
    // `kill -9` that child was killed by it: 137 too.
    s.push_str(
        "__x() { if [ $__k = 0 ]; then wait $1; __r=$?; \
         if [ $__k = 0 ] || [ $__r -ne 138 ]; then return; fi; fi; \
         while :; do __t=; read -r __t 2>/dev/null </proc/$1/stat || break; \
         __t=${__t##*) }; case $__t in Z*) break;; esac; \
         if [ $__g -lt 10 ]; then __g=$((__g + 1)); sleep 0.1; else __r=137; return; fi; done; \
         wait $1; __r=$?; [ $__r -ge 0 ] || __r=137; }\n",
    );
    for (i, read) in reads.iter().enumerate() {
        if read.is_none() {
            s.push_str(&format!("__x $__p{i}; __r{i}=$__r\n"));
        }
    }
    s.push_str("kill $__w 2>/dev/null; wait $__w\n");
    s.push_str("if [ -e \"$__b/k\" ]; then __k=1; else __k=0; fi\n");
    // The list for the one `cat`: each output, then the separator file. __d PATH FILE: whether
    // cat can read PATH; if not, cat's own words into FILE (the read's stderr), for
    // `learn::cat_read` to classify.
    s.push_str(&format!(
        "printf '{MARKER}-{nonce}-end\\n' >\"$__b/m\"; : >\"$__b/n\"; set --\n\
         __d() {{ if [ -d \"$1\" ]; then __y='Is a directory'; elif [ -r \"$1\" ]; then return 0; \
         elif [ -e \"$1\" ]; then __y='Permission denied'; else __y='No such file or directory'; fi; \
         printf 'cat: %s: %s\\n' \"$1\" \"$__y\" >\"$2\"; return 1; }}\n"
    ));
    for (i, read) in reads.iter().enumerate() {
        match read {
            Some(path) => s.push_str(&format!(
                "if __d {path} \"$__b/e{i}\"; then __r{i}=0; set -- \"$@\" {path} \"$__b/m\" \"$__b/n\" \"$__b/m\"; \
                 else __r{i}=1; set -- \"$@\" \"$__b/n\" \"$__b/m\" \"$__b/e{i}\" \"$__b/m\"; fi\n"
            )),
            None => s.push_str(&format!(
                "set -- \"$@\" \"$__b/o{i}\" \"$__b/m\" \"$__b/e{i}\" \"$__b/m\"\n"
            )),
        }
    }
    let codes: Vec<String> = (0..commands.len()).map(|i| format!("$__r{i}")).collect();
    s.push_str(&format!(
        "printf '%s\\n' \"{MARKER}-{nonce} $__k {}\"\n",
        codes.join(" ")
    ));
    s.push_str("cat \"$@\"\n");
    s
}

/// The script's stdout as one output per command, in order; all `None` when the report is
/// missing or malformed (the commands then run one by one).
pub fn parse(stdout: &[u8], n: usize, nonce: &str) -> Vec<Option<Output>> {
    parse_all(stdout, n, nonce).unwrap_or_else(|| vec![None; n])
}

fn parse_all(stdout: &[u8], n: usize, nonce: &str) -> Option<Vec<Option<Output>>> {
    let prefix = format!("{MARKER}-{nonce} ");
    let start = find(stdout, prefix.as_bytes())? + prefix.len();
    let rest = &stdout[start..];
    let eol = rest.iter().position(|&b| b == b'\n')?;
    let header = String::from_utf8_lossy(&rest[..eol]);
    let mut fields = header.split_whitespace();
    let killed = fields.next()? == "1";
    let codes: Vec<Option<i32>> = fields.map(|f| f.parse().ok()).collect();
    if codes.len() != n {
        return None;
    }
    // every output is followed by the separator line
    let separator = format!("{MARKER}-{nonce}-end\n");
    let mut blob = &rest[eol + 1..];
    let mut take = || -> Option<Vec<u8>> {
        let at = find(blob, separator.as_bytes())?;
        let piece = blob[..at].to_vec();
        blob = &blob[at + separator.len()..];
        Some(piece)
    };
    codes
        .into_iter()
        .map(|code| {
            Some(Some(Output {
                stdout: take()?,
                stderr: take()?,
                exit_code: code,
                // SIGKILL: 128 + 9
                timed_out: killed && code == Some(137),
            }))
        })
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A fresh marker suffix, so that no command's output can pass for a marker line.
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
    use std::process::Command;

    fn run_locally(commands: &[&str], limit: Duration) -> Vec<Option<Output>> {
        run_locally_with(commands, limit, |_| {})
    }

    /// [`run_locally`] with the shell's environment set by `env` first (a login's TMPDIR, LANG).
    fn run_locally_with(
        commands: &[&str],
        limit: Duration,
        env: impl FnOnce(&mut Command),
    ) -> Vec<Option<Output>> {
        let nonce = nonce();
        let commands: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(script(&commands, limit, &nonce));
        env(&mut sh);
        let out = sh.output().expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        parse(&out.stdout, commands.len(), &nonce)
    }

    /// Where a command's stdout went: the batch directory is in /dev/shm (tmpfs) unless the
    /// login's TMPDIR names another place that exists and has room; it is gone after the batch.
    #[test]
    fn outputs_are_kept_in_dev_shm_or_tmpdir_and_removed() {
        // None where the command's output was lost
        let where_stdout_goes = |tmpdir: Option<&str>| -> Option<String> {
            let got = run_locally_with(
                &["readlink /proc/self/fd/1"],
                Duration::from_secs(5),
                |sh| {
                    match tmpdir {
                        Some(dir) => sh.env("TMPDIR", dir),
                        None => sh.env_remove("TMPDIR"),
                    };
                },
            );
            let got = got[0].clone()?;
            let path = String::from_utf8(got.stdout).expect("utf-8");
            Some(path.trim().to_string()).filter(|p| !p.is_empty())
        };
        let probe = format!("/dev/shm/.batch-probe-{}", std::process::id());
        let writable = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        let path = where_stdout_goes(None).expect("output");
        let expected = if writable { "/dev/shm/" } else { "/tmp/" };
        assert!(path.starts_with(expected), "{path}");
        assert!(path.ends_with("/o0"), "{path}");
        let dir = std::path::Path::new(&path).parent().expect("dir");
        assert!(!dir.exists(), "{} is left behind", dir.display());

        let own = std::env::temp_dir().join(format!("batch-tmpdir-{}", std::process::id()));
        std::fs::create_dir_all(&own).expect("mkdir");
        let path = where_stdout_goes(Some(own.to_str().expect("utf-8"))).expect("output");
        assert!(path.starts_with(own.to_str().expect("utf-8")), "{path}");
        assert_eq!(
            std::fs::read_dir(&own).expect("read").count(),
            0,
            "left behind"
        );
        std::fs::remove_dir(&own).expect("rmdir");

        // a TMPDIR that does not exist: the next place
        let path = where_stdout_goes(Some("/nonexistent-tmpdir")).expect("output");
        assert!(path.starts_with(expected), "{path}");

        // a TMPDIR that is full (a 64 KiB tmpfs filled up, as root): the next place, nothing left
        // there but the filling
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped the full TMPDIR: mounting a tmpfs needs root");
            return;
        }
        let small = std::env::temp_dir().join(format!("batch-full-{}", std::process::id()));
        std::fs::create_dir_all(&small).expect("mkdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&small)
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mount a tmpfs on {}", small.display());
        // filled up: the write stops at the tmpfs's size with ENOSPC
        let _ = std::fs::write(small.join("fill"), vec![0u8; 128 << 10]);
        let path = where_stdout_goes(Some(small.to_str().expect("utf-8")));
        let left = std::fs::read_dir(&small).expect("read").count() - 1;
        let _ = Command::new("umount").arg(&small).status();
        let _ = std::fs::remove_dir(&small);
        let path = path.expect("the output is not lost in the full place");
        assert!(path.starts_with(expected), "{path}");
        assert_eq!(left, 0, "the full place was left with a directory");
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

    #[test]
    fn a_hanging_command_is_killed_at_the_limit_and_the_others_are_kept() {
        let got = run_locally(
            &["echo started; sleep 30", "echo fine"],
            Duration::from_secs(1),
        );
        let hung = got[0].clone().expect("block present");
        assert!(hung.timed_out, "{hung:?}");
        assert_eq!(hung.stdout, b"started\n");
        let fine = got[1].clone().expect("block present");
        assert_eq!(
            (fine.stdout.as_slice(), fine.timed_out),
            (&b"fine\n"[..], false)
        );
    }

    /// The limit is a hard cap: a command whose work is in grandchildren (a shell that runs a
    /// shell that sleeps, a pipeline in a subshell) is killed whole at the limit, under sh and
    /// bash, and the batch ends within the limit and a small bound; nothing of it is left running.
    #[test]
    fn the_whole_tree_of_a_hanging_command_is_killed_at_the_limit() {
        for (shell, script) in [
            ("sh", script as fn(&[String], Duration, &str) -> String),
            ("bash", body),
        ] {
            let marker = format!("41.{}{}", std::process::id(), shell.len());
            let hang = format!(
                "echo before; sh -c 'sleep {marker}; :' & (sleep {marker} | cat) & sleep {marker}; wait"
            );
            let nonce = nonce();
            let commands = vec![hang, "echo fine".to_string()];
            let started = std::time::Instant::now();
            let out = Command::new(shell)
                .arg("-c")
                .arg(script(&commands, Duration::from_secs(1), &nonce))
                .output()
                .expect("shell runs");
            let took = started.elapsed();
            assert!(out.status.success(), "{shell}: {out:?}");
            let got = parse(&out.stdout, 2, &nonce);
            let hung = got[0].clone().expect("block present");
            assert!(hung.timed_out, "{shell}: {hung:?}");
            assert_eq!(hung.stdout, b"before\n");
            assert_eq!(
                got[1].clone().expect("block present").stdout,
                b"fine\n".to_vec()
            );
            assert!(
                took < Duration::from_millis(2500),
                "{shell}: a 1 s limit took {took:?}"
            );
            let left = Command::new("pgrep")
                .args(["-f", &format!("sleep {marker}")])
                .output()
                .expect("pgrep runs");
            assert!(
                left.stdout.is_empty(),
                "{shell}: left running: {}",
                String::from_utf8_lossy(&left.stdout)
            );
        }
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
            let out = Command::new(shell)
                .arg("-c")
                .arg(script(&commands, Duration::from_secs(5), &nonce))
                .output()
                .expect("shell runs");
            let got = parse(&out.stdout, 1, &nonce)[0]
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
        let commands = vec![hang, "echo fine".to_string()];
        // without the line that moves to dash: bash where there is no dash
        let script = body(&commands, Duration::from_secs(1), &nonce);
        let runs: Vec<_> = (0..30)
            .map(|_| {
                Command::new("bash")
                    .arg("-c")
                    .arg(&script)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .expect("bash runs")
            })
            .collect();
        let wrong: Vec<_> = runs
            .into_iter()
            .map(|run| run.wait_with_output().expect("bash ends"))
            .map(|out| parse(&out.stdout, 2, &nonce))
            .filter_map(|got| {
                let hung = got[0].clone()?;
                let fine = got[1].clone()?;
                let whole = hung.timed_out
                    && hung.exit_code == Some(137)
                    && hung.stdout == b"before\n"
                    && fine.exit_code == Some(0);
                (!whole).then_some((hung.exit_code, hung.timed_out))
            })
            .collect();
        assert!(wrong.is_empty(), "of 30 runs these were wrong: {wrong:?}");
    }

    /// Under bash, the watchdog killed as soon as the commands are done must not run the batch's
    /// EXIT trap (removing the directory before the `cat`): run the batch of quick
    /// commands many times; every run gives every output. Without the fix about 1 in 5 runs
    /// lost its outputs on this machine.
    #[test]
    fn the_watchdog_stopped_early_never_removes_the_batch_directory_under_bash() {
        let nonce = nonce();
        let commands = vec!["echo a".to_string(), "true".to_string()];
        let script = body(&commands, Duration::from_secs(5), &nonce);
        let runs = 300;
        let mut lost = Vec::new();
        for run in 0..runs {
            let out = Command::new("bash")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("bash runs");
            let got = parse(&out.stdout, commands.len(), &nonce);
            let whole = out.status.success()
                && got[0].as_ref().is_some_and(|o| o.stdout == b"a\n")
                && got[1].as_ref().is_some_and(|o| o.exit_code == Some(0));
            if !whole {
                lost.push((run, String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
        assert!(
            lost.is_empty(),
            "{} of {runs} runs lost their outputs, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }

    #[test]
    fn a_cut_short_or_foreign_output_gives_none() {
        let nonce = "n1";
        let end = format!("{MARKER}-{nonce}-end\n");
        let cut = format!("{MARKER}-{nonce} 0 0 0\nabc{end}{end}ab").into_bytes();
        assert!(parse(&cut, 2, nonce).iter().all(Option::is_none));
        let other = format!("{MARKER}-other 0 0\nabc{end}{end}").into_bytes();
        assert!(parse(&other, 1, nonce).iter().all(Option::is_none));
        let foreign_end =
            format!("{MARKER}-{nonce} 0 0\nabc{MARKER}-other-end\n{end}").into_bytes();
        assert!(parse(&foreign_end, 1, nonce).iter().all(Option::is_none));
        let good = format!("motd\n{MARKER}-{nonce} 0 0\nabc{end}err{end}").into_bytes();
        let got = parse(&good, 1, nonce)[0].clone().expect("parsed");
        assert_eq!((got.stdout, got.stderr), (b"abc".to_vec(), b"err".to_vec()));
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
