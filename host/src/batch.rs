//! Many commands in one SSH `exec` (ssh mode's prefetch): a POSIX shell script that runs the
//! commands side by side, each in its own `sh -c` under `timeout` (where the host has it: the
//! command is killed on the host at its timeout), and then prints each one's exit code and byte
//! counts on a marker line followed by its raw stdout and stderr. An SSH channel carries bytes
//! exactly, so no encoding (salt mode's batch hex-encodes: Salt returns text).
//!
//! Needs `sh`, `mktemp`, `cat`, `wc` on the host (POSIX); `timeout` (coreutils, busybox) is used
//! when present.

use std::time::Duration;

use crate::learn::shell_quote;

const MARKER: &str = "@@auto-client-batch";

/// Exit code of a command `timeout` killed (GNU and busybox `timeout` both say 124).
pub const TIMED_OUT: i32 = 124;

/// What one command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i32>,
    /// `timeout` killed it at its time limit.
    pub timed_out: bool,
}

/// The script that runs `commands` (each with its timeout) and reports on each.
pub fn script(commands: &[(String, Duration)], nonce: &str) -> String {
    let mut s = String::from(
        "__b=$(mktemp -d) || { echo 'auto-client: mktemp failed' >&2; exit 97; }\n\
         trap 'rm -rf \"$__b\"' EXIT\n\
         if command -v timeout >/dev/null 2>&1; then __k=1; else __k=0; fi\n\
         __t() { __s=$1; shift; if [ $__k = 1 ]; then timeout -k 1 \"$__s\" \"$@\"; else \"$@\"; fi; }\n",
    );
    for (i, (command, timeout)) in commands.iter().enumerate() {
        let secs = timeout.as_secs().max(1);
        s.push_str(&format!(
            "( __t {secs} sh -c {quoted} >\"$__b/o{i}\" 2>\"$__b/e{i}\" </dev/null; echo $? >\"$__b/r{i}\" ) &\n",
            quoted = shell_quote(command),
        ));
    }
    s.push_str("wait\n");
    for i in 0..commands.len() {
        s.push_str(&format!(
            "printf '{MARKER}-{nonce} {i} %s %s %s %s\\n' \"$(cat \"$__b/r{i}\")\" $__k \
             $(wc -c <\"$__b/o{i}\") $(wc -c <\"$__b/e{i}\"); cat \"$__b/o{i}\" \"$__b/e{i}\"\n"
        ));
    }
    s
}

/// The script's stdout as one output per command, in order; `None` where a block is missing or
/// malformed (that command then runs on its own).
pub fn parse(stdout: &[u8], n: usize, nonce: &str) -> Vec<Option<Output>> {
    let mut out: Vec<Option<Output>> = vec![None; n];
    let prefix = format!("{MARKER}-{nonce} ");
    let mut rest = stdout;
    while let Some(start) = find(rest, prefix.as_bytes()) {
        rest = &rest[start + prefix.len()..];
        let Some(eol) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let header = String::from_utf8_lossy(&rest[..eol]).into_owned();
        rest = &rest[eol + 1..];
        let fields: Vec<&str> = header.split_whitespace().collect();
        let [index, code, killable, out_len, err_len] = fields[..] else {
            continue;
        };
        let (Ok(index), Ok(out_len), Ok(err_len)) = (
            index.parse::<usize>(),
            out_len.parse::<usize>(),
            err_len.parse::<usize>(),
        ) else {
            continue;
        };
        if rest.len() < out_len + err_len {
            break;
        }
        let code = code.parse::<i32>().ok();
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(Output {
                stdout: rest[..out_len].to_vec(),
                stderr: rest[out_len..out_len + err_len].to_vec(),
                exit_code: code,
                timed_out: killable == "1" && code == Some(TIMED_OUT),
            });
        }
        rest = &rest[out_len + err_len..];
    }
    out
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

    fn run_locally(commands: &[(String, Duration)]) -> Vec<Option<Output>> {
        let nonce = nonce();
        let out = Command::new("sh")
            .arg("-c")
            .arg(script(commands, &nonce))
            .output()
            .expect("sh runs");
        assert!(out.status.success(), "{out:?}");
        parse(&out.stdout, commands.len(), &nonce)
    }

    #[test]
    fn outputs_codes_and_bytes_come_back_exactly() {
        let s = Duration::from_secs(5);
        let commands = vec![
            ("printf 'a\\n\\n'".to_string(), s),
            ("echo err >&2; exit 3".to_string(), s),
            (
                "printf '\\000\\377@@auto-client-batch-x 0 0 1 9 9\\n'".to_string(),
                s,
            ),
            ("cat -- '/nonexistent/it'\\''s'".to_string(), s),
            ("exit 0".to_string(), s),
        ];
        let got = run_locally(&commands);
        let o = |i: usize| got[i].clone().expect("block present");
        assert_eq!(o(0).stdout, b"a\n\n");
        assert_eq!(o(0).exit_code, Some(0));
        assert_eq!(
            (o(1).stderr.as_slice(), o(1).exit_code),
            (&b"err\n"[..], Some(3))
        );
        assert_eq!(o(2).stdout, b"\x00\xff@@auto-client-batch-x 0 0 1 9 9\n");
        assert!(String::from_utf8_lossy(&o(3).stderr).contains("No such file"));
        assert_ne!(o(3).exit_code, Some(0));
        assert_eq!((o(4).stdout.len(), o(4).exit_code), (0, Some(0)));
        assert!(got.iter().flatten().all(|o| !o.timed_out));
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_timeout_and_the_others_are_kept() {
        let commands = vec![
            ("sleep 30".to_string(), Duration::from_secs(1)),
            ("echo fine".to_string(), Duration::from_secs(5)),
        ];
        let got = run_locally(&commands);
        let hung = got[0].clone().expect("block present");
        assert!(hung.timed_out, "{hung:?}");
        assert_eq!(got[1].clone().expect("block").stdout, b"fine\n");
    }

    #[test]
    fn a_cut_short_output_gives_none_for_the_missing_blocks() {
        let nonce = "n1";
        let mut text = format!("{MARKER}-{nonce} 0 0 1 3 0\nabc").into_bytes();
        text.extend_from_slice(format!("{MARKER}-{nonce} 1 0 1 10 0\nshort").as_bytes());
        let got = parse(&text, 3, nonce);
        assert_eq!(got[0].clone().expect("first").stdout, b"abc");
        assert!(got[1].is_none() && got[2].is_none());
    }
}
