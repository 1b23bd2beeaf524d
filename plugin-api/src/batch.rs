//! Reading several files of the target with ONE `sh` command (one round trip over SSH or Salt),
//! and splitting what it prints back into one section a file.
//!
//! The script prints each file under a `==> NAME` marker line, or one line `=!> NAME REASON`
//! (`missing`, `permission denied`) when it cannot; after the files it may run commands, each
//! under its own `==> NAME` marker. [`parse_sections`] reads that back; [`run`] does both halves.
//!
//! ```
//! use plugin_api::batch::{parse_sections, Script, Section};
//!
//! let script = Script::files(["/proc/uptime", "/etc/machine-id"])
//!     .command("uname -m", "uname -m")
//!     .build();
//! assert!(script.starts_with("for f in /proc/uptime /etc/machine-id; do "));
//!
//! let sections = parse_sections("==> /proc/uptime\n4966.08 9823.38\n\n=!> /etc/machine-id missing\n");
//! assert_eq!(sections["/proc/uptime"], Section::Content("4966.08 9823.38".into()));
//! assert_eq!(sections["/etc/machine-id"], Section::Unreadable("missing".into()));
//! ```
//!
//! These are plain helpers for collector authors: nothing here crosses the plugin boundary, and
//! none of it is part of the frozen interface.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use crate::{CollectError, Target};

/// Builds the one command that reads a list of files (and optionally runs a few commands after).
///
/// Two ways of reading a file:
/// - by default with shell builtins only (`while IFS= read -r l ...; done < "$f"`), so no process
///   is forked per file; a file that `[ -r ]` says is not readable is `permission denied`;
/// - with [`Script::read_with`], by running a command per file (`cat`, `sudo -n cat`): the command
///   is tried on every file that exists and its failure is `permission denied`, since `[ -r ]`
///   cannot tell what `sudo` may read. Its output passes through `$(...)`, which drops trailing
///   newlines (the parser trims them anyway).
///
/// File names must not contain blanks: an `=!>` line ends the name at the first blank. Names and
/// the directory are quoted for the shell where they need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    dir: Option<String>,
    files: Vec<String>,
    reader: Option<String>,
    commands: Vec<(String, String)>,
}

impl Script {
    /// Reads these files, each section named by the path as given.
    pub fn files<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            dir: None,
            files: names(paths),
            reader: None,
            commands: Vec::new(),
        }
    }

    /// Reads these files of `dir`, each section named by the file's name without the directory.
    /// Where `dir` itself is missing, the script prints only `=!> DIR missing` and stops (no file
    /// and no command after it is tried).
    pub fn files_in<I, S>(dir: &str, names_in_dir: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            dir: Some(dir.to_string()),
            ..Self::files(names_in_dir)
        }
    }

    /// Reads each file with `command FILE` (e.g. `cat`, or `sudo -n cat` for files only root may
    /// read) instead of shell builtins.
    pub fn read_with(mut self, command: &str) -> Self {
        self.reader = Some(command.to_string());
        self
    }

    /// After the files, prints `==> NAME` and runs `command` (its stdout is the section).
    pub fn command(mut self, name: &str, command: &str) -> Self {
        assert!(!name.contains('\n'), "a section name is one line: {name:?}");
        self.commands.push((name.to_string(), command.to_string()));
        self
    }

    /// The `sh` command text.
    pub fn build(&self) -> String {
        let mut s = String::new();
        // With a directory, every path is "$d/$f" and sections are named by "$f".
        let path = match &self.dir {
            Some(dir) => {
                s.push_str(&format!(
                    "d={}; if [ ! -d \"$d\" ]; then printf '=!> %s missing\\n' \"$d\"; exit 0; fi; ",
                    shell_word(dir)
                ));
                "\"$p\""
            }
            None => "\"$f\"",
        };
        let files: Vec<Cow<'_, str>> = self.files.iter().map(|f| shell_word(f)).collect();
        s.push_str(&format!("for f in {}; do ", files.join(" ")));
        if self.dir.is_some() {
            s.push_str("p=\"$d/$f\"; ");
        }
        match &self.reader {
            None => s.push_str(&format!(
                "if [ -r {path} ]; then printf '==> %s\\n' \"$f\"; \
                 while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < {path}; echo; \
                 elif [ -e {path} ]; then printf '=!> %s permission denied\\n' \"$f\"; \
                 else printf '=!> %s missing\\n' \"$f\"; fi; done"
            )),
            Some(reader) => s.push_str(&format!(
                "if [ ! -e {path} ]; then printf '=!> %s missing\\n' \"$f\"; \
                 elif v=$({reader} {path} 2>/dev/null); then printf '==> %s\\n%s\\n\\n' \"$f\" \"$v\"; \
                 else printf '=!> %s permission denied\\n' \"$f\"; fi; done"
            )),
        }
        for (name, command) in &self.commands {
            if name.contains(['\'', '%', '\\']) {
                s.push_str(&format!("; printf '==> %s\\n' {}", shell_word(name)));
            } else {
                s.push_str(&format!("; printf '==> {name}\\n'"));
            }
            s.push_str(&format!("; {command}"));
        }
        s
    }
}

fn names<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items
        .into_iter()
        .map(|n| {
            let n = n.into();
            assert!(
                !n.is_empty() && !n.contains(char::is_whitespace),
                "a file name of a batch script must be a word without blanks: {n:?}"
            );
            n
        })
        .collect()
}

/// `word` as one shell word: as it is when it holds no character the shell treats specially, else
/// in single quotes (`it's` → `'it'\''s'`). The one shell quoting of the host and the collectors.
pub fn shell_word(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=%".contains(c));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', "'\\''")))
    }
}

/// One file (or command) as the script reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// What it printed, blank lines and blanks at both ends trimmed.
    Content(String),
    /// The script could not read it; the text says why (`missing`, `permission denied`).
    Unreadable(String),
}

/// Splits the script's output into its sections, keyed by the name after the marker (a path, a
/// file name within the directory, or a command's name). Lines before the first marker are
/// ignored.
pub fn parse_sections(stdout: &str) -> BTreeMap<String, Section> {
    let mut sections = BTreeMap::new();
    // Only a line that starts with `=` can be a marker: those are found in one pass over the
    // bytes, and each section's content is one slice of `stdout` (copying it line by line was a
    // quarter of the `packages` collector's own time for ~800 packages).
    let bytes = stdout.as_bytes();
    let starts =
        (0..bytes.len()).filter(|&i| bytes[i] == b'=' && (i == 0 || bytes[i - 1] == b'\n'));
    let mut current: Option<(String, usize)> = None;
    for start in starts {
        let end = stdout[start..]
            .find('\n')
            .map_or(stdout.len(), |i| start + i);
        let mut line = &stdout[start..end];
        if end < stdout.len() {
            // as `str::lines` reads a `\r\n` line end
            line = line.strip_suffix('\r').unwrap_or(line);
        }
        let (name, unreadable) = if let Some(name) = line.strip_prefix("==> ") {
            (name.trim(), None)
        } else if let Some(rest) = line.strip_prefix("=!> ") {
            let (name, why) = rest.split_once(' ').unwrap_or((rest, "unreadable"));
            (name, Some(why))
        } else {
            continue;
        };
        if let Some((name, from)) = current.take() {
            sections.insert(name, Section::Content(section_text(&stdout[from..start])));
        }
        match unreadable {
            Some(why) => {
                sections.insert(name.to_string(), Section::Unreadable(why.to_string()));
            }
            None => current = Some((name.to_string(), (end + 1).min(stdout.len()))),
        }
    }
    if let Some((name, from)) = current {
        sections.insert(name, Section::Content(section_text(&stdout[from..])));
    }
    sections
}

/// A section's lines, trimmed; `\r\n` line ends read as `\n` (as `str::lines` reads them).
fn section_text(text: &str) -> String {
    if !text.contains('\r') {
        return text.trim().to_string();
    }
    let mut joined = String::with_capacity(text.len());
    for line in text.lines() {
        joined.push_str(line);
        joined.push('\n');
    }
    joined.trim().to_string()
}

/// Runs `script` on the target and splits its output into sections.
///
/// The script's exit status is that of its last step; a failed step already shows as a `=!>`
/// section (or an empty one), so only an answer without any section is a failure: a
/// `command_failed` error that says "the `what` script printed nothing" and quotes the first line
/// of stderr.
pub fn run(
    target: &Target<'_>,
    script: &str,
    timeout: Duration,
    what: &str,
) -> Result<BTreeMap<String, Section>, CollectError> {
    let out = target.run(script, timeout)?;
    if !out.stdout.contains("==> ") && !out.stdout.contains("=!> ") {
        let first = out.stderr.lines().next().unwrap_or("").trim();
        return Err(CollectError::new(
            "command_failed",
            format!(
                "the {what} script printed nothing (exit code {:?}): {first}",
                out.exit_code
            ),
        ));
    }
    Ok(parse_sections(&out.stdout))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::testing::FixtureExecutor;

    fn sh(script: &str) -> String {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh runs");
        String::from_utf8(out.stdout).expect("text")
    }

    fn content(text: &str) -> Section {
        Section::Content(text.to_string())
    }

    fn unreadable(why: &str) -> Section {
        Section::Unreadable(why.to_string())
    }

    #[test]
    fn builtin_reader_text() {
        // The os collector's command, to the letter.
        let script = Script::files(["/proc/uptime", "/etc/machine-id"])
            .command("uname -m", "uname -m")
            .build();
        assert_eq!(
            script,
            "for f in /proc/uptime /etc/machine-id; do \
             if [ -r \"$f\" ]; then printf '==> %s\\n' \"$f\"; \
             while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$f\"; echo; \
             elif [ -e \"$f\" ]; then printf '=!> %s permission denied\\n' \"$f\"; \
             else printf '=!> %s missing\\n' \"$f\"; fi; done; \
             printf '==> uname -m\\n'; uname -m"
        );
    }

    #[test]
    fn command_reader_in_a_directory_text() {
        // The board collector's command, to the letter.
        let script = Script::files_in("/sys/class/dmi/id", ["sys_vendor", "product_uuid"])
            .read_with("sudo -n cat")
            .build();
        assert_eq!(
            script,
            "d=/sys/class/dmi/id; if [ ! -d \"$d\" ]; then printf '=!> %s missing\\n' \"$d\"; exit 0; fi; \
             for f in sys_vendor product_uuid; do p=\"$d/$f\"; \
             if [ ! -e \"$p\" ]; then printf '=!> %s missing\\n' \"$f\"; \
             elif v=$(sudo -n cat \"$p\" 2>/dev/null); then printf '==> %s\\n%s\\n\\n' \"$f\" \"$v\"; \
             else printf '=!> %s permission denied\\n' \"$f\"; fi; done"
        );
    }

    /// A directory of this machine with a few files; removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("plugin-api-batch-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            std::fs::write(dir.join("two"), "first\nsecond\n").expect("write");
            // No newline at the end: the builtin loop must still print the last line.
            std::fs::write(dir.join("partial"), "no newline").expect("write");
            std::fs::write(dir.join("empty"), "").expect("write");
            Self(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn builtin_reader_on_this_machine() {
        let scratch = Scratch::new("builtin");
        let paths: Vec<String> = ["two", "partial", "empty", "absent"]
            .iter()
            .map(|n| scratch.path(n))
            .collect();
        let sections = parse_sections(&sh(&Script::files(paths.clone())
            .command("greeting", "echo hello")
            .build()));
        assert_eq!(sections[&paths[0]], content("first\nsecond"));
        assert_eq!(sections[&paths[1]], content("no newline"));
        assert_eq!(sections[&paths[2]], content(""));
        assert_eq!(sections[&paths[3]], unreadable("missing"));
        assert_eq!(sections["greeting"], content("hello"));
        assert_eq!(sections.len(), 5);
    }

    #[test]
    fn command_reader_on_this_machine() {
        let scratch = Scratch::new("cat");
        let dir = scratch.0.to_string_lossy().into_owned();
        let script = Script::files_in(&dir, ["two", "partial", "absent"])
            .read_with("cat")
            .build();
        let sections = parse_sections(&sh(&script));
        assert_eq!(sections["two"], content("first\nsecond"));
        assert_eq!(sections["partial"], content("no newline"));
        assert_eq!(sections["absent"], unreadable("missing"));
        // A reader that fails on a file that exists reads as permission denied.
        let script = Script::files_in(&dir, ["two"]).read_with("false").build();
        assert_eq!(
            parse_sections(&sh(&script))["two"],
            unreadable("permission denied")
        );
    }

    #[test]
    fn a_missing_directory_is_one_section_and_stops() {
        let script = Script::files_in("/nonexistent-plugin-api-batch", ["a", "b"])
            .read_with("cat")
            .command("after", "echo never")
            .build();
        let sections = parse_sections(&sh(&script));
        assert_eq!(
            sections,
            BTreeMap::from([(
                "/nonexistent-plugin-api-batch".to_string(),
                unreadable("missing")
            )])
        );
    }

    #[test]
    fn names_that_need_quoting_are_quoted() {
        assert_eq!(shell_word("/proc/uptime"), "/proc/uptime");
        assert_eq!(shell_word("a$b"), "'a$b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        let scratch = Scratch::new("quote");
        std::fs::write(scratch.0.join("a$b;c"), "odd\n").expect("write");
        let path = scratch.path("a$b;c");
        let script = Script::files([path.as_str()])
            .command("100% 'quoted'", "echo done")
            .build();
        let sections = parse_sections(&sh(&script));
        assert_eq!(sections[&path], content("odd"));
        assert_eq!(sections["100% 'quoted'"], content("done"));
    }

    #[test]
    #[should_panic(expected = "without blanks")]
    fn file_names_with_blanks_are_refused() {
        let _ = Script::files(["/tmp/a b"]);
    }

    /// The parser before sections became slices of the output: line by line, each line copied.
    fn parse_sections_by_lines(stdout: &str) -> BTreeMap<String, Section> {
        let mut sections = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in stdout.lines() {
            if let Some(name) = line.strip_prefix("==> ") {
                if let Some((k, v)) = current.take() {
                    sections.insert(k, Section::Content(v.trim().to_string()));
                }
                current = Some((name.trim().to_string(), String::new()));
            } else if let Some(rest) = line.strip_prefix("=!> ") {
                if let Some((k, v)) = current.take() {
                    sections.insert(k, Section::Content(v.trim().to_string()));
                }
                let (name, why) = rest.split_once(' ').unwrap_or((rest, "unreadable"));
                sections.insert(name.to_string(), Section::Unreadable(why.to_string()));
            } else if let Some((_, text)) = current.as_mut() {
                text.push_str(line);
                text.push('\n');
            }
        }
        if let Some((k, v)) = current {
            sections.insert(k, Section::Content(v.trim().to_string()));
        }
        sections
    }

    #[test]
    fn sections_as_slices_read_as_line_by_line_did() {
        let outputs = [
            "==> /a\none\n=two\n==>three\n=!>x\n==> /b\n",
            "x\n==> /a\r\nline\r\n\r\n=!> /c gone\r\n==> d \nlast\r",
            "==> /a",
            "==> /a\n",
            "=\n==\n==> \n=!> \n=!> n\n==> /e\n\n\n  \n",
            "==> k\r\n==> k\nagain\n=!> k later\n",
            "no marker\n=at all\n",
            "==> /a\nä=ö\n=ü\n==> /ß\n€",
        ];
        for out in outputs {
            assert_eq!(parse_sections(out), parse_sections_by_lines(out), "{out:?}");
        }
        let packages = (0..500)
            .map(|i| format!("Package: p{i}\nVersion: 1.{i}\nStatus: install ok installed\n"))
            .collect::<String>();
        let out = format!("==> dpkg-status\n{packages}=!> rpm missing\n==> end\n");
        assert_eq!(parse_sections(&out), parse_sections_by_lines(&out));
    }

    #[test]
    fn parses_sections_unreadable_and_trailing_content() {
        let out = "noise before\n==> /a\n  one\ntwo  \n\n=!> /b permission denied\n=!> /c\n==> uname -m\nx86_64";
        let sections = parse_sections(out);
        assert_eq!(sections["/a"], content("one\ntwo"));
        assert_eq!(sections["/b"], unreadable("permission denied"));
        assert_eq!(sections["/c"], unreadable("unreadable"));
        assert_eq!(sections["uname -m"], content("x86_64"));
        assert_eq!(sections.len(), 4);
        assert!(parse_sections("").is_empty());
    }

    #[test]
    fn run_fails_only_without_any_section() {
        let script = Script::files(["/a"]).build();
        let sections = FixtureExecutor::new("t")
            .command_output(&script, "=!> /a missing\n", "", Some(1))
            .with_target(|t| run(t, &script, Duration::from_secs(1), "test"))
            .expect("one section is an answer");
        assert_eq!(sections["/a"], unreadable("missing"));

        let err = FixtureExecutor::new("t")
            .command_output(&script, "", "sh: 1: oops\nmore\n", Some(2))
            .with_target(|t| run(t, &script, Duration::from_secs(1), "test"))
            .expect_err("nothing printed");
        assert_eq!(err.kind, "command_failed");
        assert_eq!(
            err.message,
            "the test script printed nothing (exit code Some(2)): sh: 1: oops"
        );
    }
}
