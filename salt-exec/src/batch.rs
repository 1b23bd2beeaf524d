//! Several commands in one Salt job: a POSIX shell script that runs each command with its stdout and
//! stderr in files, then prints, per command, a marker line with the exit code and the two outputs
//! as hex (binary-safe, and immune to Salt stripping trailing whitespace).
//!
//! Needs `sh`, `mktemp`, `od` and `tr` on the minion (POSIX; every Linux has them).

use crate::Output;

/// The marker that starts each command's block; the nonce keeps a command's own output from
/// looking like one (its output is hex-encoded anyway, the marker guards the layout).
const MARKER: &str = "@@salt-exec";

/// The script that runs `commands` one after the other.
pub(crate) fn script(commands: &[String], nonce: &str) -> String {
    // The C locale for every command, as auto-client's local executor and ssh batch run them:
    // English messages whatever the minion's LANG or LANGUAGE.
    let mut s = String::from(
        "LC_ALL=C; export LC_ALL\n\
         __se_d=$(mktemp -d) || { echo 'salt-exec: mktemp failed' >&2; exit 97; }\n\
         trap 'rm -rf \"$__se_d\"' EXIT\n\
         __se_hex() { od -An -v -tx1 \"$1\" | tr -d ' \\n'; echo; }\n",
    );
    for (i, command) in commands.iter().enumerate() {
        // each command in its own subshell, so `exit` or `cd` in one does not touch the next
        s.push_str(&format!(
            "( {command}\n) >\"$__se_d/o\" 2>\"$__se_d/e\" </dev/null; __se_rc=$?\n\
             echo \"{MARKER}-{nonce} {i} $__se_rc\"; __se_hex \"$__se_d/o\"; __se_hex \"$__se_d/e\"\n"
        ));
    }
    s
}

/// Parse the script's stdout into one output per command, in order. `None` for a command whose
/// block is missing (the batch was cut short).
pub(crate) fn parse(stdout: &str, n: usize, nonce: &str) -> Vec<Option<Output>> {
    let mut out: Vec<Option<Output>> = vec![None; n];
    let prefix = format!("{MARKER}-{nonce} ");
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let index = fields.next().and_then(|f| f.parse::<usize>().ok());
        let code = fields.next().and_then(|f| f.parse::<i32>().ok());
        let (Some(index), Some(stdout_hex), Some(stderr_hex)) = (index, lines.next(), lines.next())
        else {
            continue;
        };
        let (Some(stdout), Some(stderr)) = (from_hex(stdout_hex), from_hex(stderr_hex)) else {
            continue;
        };
        if let Some(slot) = out.get_mut(index) {
            *slot = Some(Output {
                stdout,
                stderr,
                exit_code: code,
            });
        }
    }
    out
}

/// Decode lower- or upper-case hex; `None` on anything else.
pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(from_hex("00ff41"), Some(vec![0, 255, b'A']));
        assert_eq!(from_hex(""), Some(vec![]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }

    /// The batch of `commands` run by `sh` here, its environment set by `env` first.
    fn run_locally(
        commands: &[String],
        env: impl FnOnce(&mut std::process::Command),
    ) -> Vec<Option<Output>> {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-c").arg(script(commands, "t1"));
        env(&mut sh);
        let run = sh.output().expect("sh runs");
        let stdout = String::from_utf8(run.stdout).expect("the script prints ascii");
        parse(&stdout, commands.len(), "t1")
    }

    #[test]
    fn script_runs_and_parses_locally() {
        let commands = vec![
            "printf 'a\\n\\n'".to_string(),
            "echo oops >&2; exit 3".to_string(),
            "printf '\\000\\377'".to_string(),
            "exit 0".to_string(),
        ];
        let got = run_locally(&commands, |_| {});
        let got: Vec<Output> = got
            .into_iter()
            .map(|o| o.expect("every block present"))
            .collect();
        assert_eq!(got[0].stdout, b"a\n\n");
        assert_eq!(got[0].exit_code, Some(0));
        assert_eq!(got[1].stderr, b"oops\n");
        assert_eq!(got[1].exit_code, Some(3));
        assert_eq!(got[2].stdout, vec![0, 255]);
        assert!(got[3].stdout.is_empty());
    }

    #[test]
    fn commands_run_in_the_c_locale_whatever_the_minion_sets() {
        let commands = vec![
            "printenv LC_ALL".to_string(),
            "cat /nonexistent-for-the-locale-test".to_string(),
        ];
        let got = run_locally(&commands, |sh| {
            sh.env("LANG", "C.UTF-8")
                .env("LANGUAGE", "de")
                .env_remove("LC_ALL");
        });
        let o = |i: usize| got[i].clone().expect("block present");
        assert_eq!(o(0).stdout, b"C\n");
        assert_eq!(
            String::from_utf8_lossy(&o(1).stderr),
            "cat: /nonexistent-for-the-locale-test: No such file or directory\n"
        );
    }

    #[test]
    fn missing_blocks_are_none() {
        let got = parse("@@salt-exec-x 1 0\n41\n\n", 3, "x");
        assert!(got[0].is_none());
        assert_eq!(
            got[1].as_ref().map(|o| o.stdout.clone()),
            Some(b"A".to_vec())
        );
        assert!(got[2].is_none());
    }
}
