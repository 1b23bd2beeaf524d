//! A test executor that answers from recorded outputs of real machines, so a collector's parsing is
//! tested on fixtures without a live target (the part `PROCFS_ROOT` plays in Vector's collectors).
//!
//! [`FixtureExecutor::record_command`] and [`FixtureExecutor::record_file`] record from the machine
//! the test runs on, for a collector's `live_this_machine` test.
//!
//! [`golden`] compares a collector's output on a fixture case with the `output.json` recorded in
//! that case's directory (and rewrites it with `AUTO_UPDATE_GOLDEN=1`), after checking that the
//! output follows report schema 2: the server's tests read these files as real collector output.

use std::collections::HashMap;

use abi_stable::{
    sabi_trait::TD_Opaque,
    sabi_types::RRef,
    std_types::{ROption, RResult, RStr, RString, RVec},
};

use crate::{CommandOutput, Executor, Executor_TO, PluginError, Target};

/// Answers `run` and `read_file` from a table; anything not in the table is a `not_found` error,
/// which is what a collector sees on a machine that lacks the command or the file.
#[derive(Debug, Clone, Default)]
pub struct FixtureExecutor {
    name: String,
    commands: HashMap<String, CommandOutput>,
    /// A file's content, or the error reading it gave (see [`FixtureExecutor::record_file`]).
    files: HashMap<String, Result<Vec<u8>, PluginError>>,
}

impl FixtureExecutor {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }

    /// A command that exits 0 with this stdout.
    pub fn command(self, command: &str, stdout: &str) -> Self {
        self.command_output(command, stdout, "", Some(0))
    }

    /// A command with a full answer (a failing command, say).
    pub fn command_output(
        mut self,
        command: &str,
        stdout: &str,
        stderr: &str,
        exit_code: Option<i32>,
    ) -> Self {
        self.commands.insert(
            command.to_string(),
            CommandOutput {
                stdout: RVec::from(stdout.as_bytes().to_vec()),
                stderr: RVec::from(stderr.as_bytes().to_vec()),
                exit_code: exit_code.into(),
            },
        );
        self
    }

    pub fn file(mut self, path: &str, content: impl AsRef<[u8]>) -> Self {
        self.files
            .insert(path.to_string(), Ok(content.as_ref().to_vec()));
        self
    }

    /// Runs `command` on this machine with `/bin/sh -c`, as the host's agent-mode executor does,
    /// and answers it with what it gave (stdout, stderr, exit code; no time limit).
    ///
    /// Panics when `/bin/sh` cannot be started.
    pub fn record_command(mut self, command: &str) -> Self {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(command)
            .output()
            .unwrap_or_else(|e| panic!("cannot run /bin/sh -c {command:?}: {e}"));
        self.commands.insert(
            command.to_string(),
            CommandOutput {
                stdout: RVec::from(out.stdout),
                stderr: RVec::from(out.stderr),
                exit_code: out.status.code().into(),
            },
        );
        self
    }

    /// Reads `path` on this machine and answers with its content, or with the error the host's
    /// agent-mode executor would give (`not_found`, `permission_denied`, `io`).
    pub fn record_file(mut self, path: &str) -> Self {
        let read = std::fs::read(path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => "not_found",
                std::io::ErrorKind::PermissionDenied => "permission_denied",
                _ => "io",
            };
            PluginError {
                kind: kind.into(),
                message: format!("{path}: {e}").into(),
            }
        });
        self.files.insert(path.to_string(), read);
        self
    }

    /// Hands a [`Target`] over this executor to `f`, as the host would hand it to a collector.
    pub fn with_target<R>(&self, f: impl FnOnce(&Target<'_>) -> R) -> R {
        f(&Target::new(Executor_TO::from_ptr(
            RRef::new(self),
            TD_Opaque,
        )))
    }
}

impl Executor for FixtureExecutor {
    fn run(&self, command: RStr<'_>, _timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        match self.commands.get(command.as_str()) {
            Some(out) => RResult::ROk(out.clone()),
            None => RResult::ROk(CommandOutput {
                stdout: RVec::new(),
                stderr: RVec::from(
                    format!("sh: 1: {}: not found\n", command.as_str()).into_bytes(),
                ),
                exit_code: ROption::RSome(127),
            }),
        }
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        match self.files.get(path.as_str()) {
            Some(Ok(b)) => RResult::ROk(RVec::from(b.clone())),
            Some(Err(e)) => RResult::RErr(e.clone()),
            None => RResult::RErr(PluginError {
                kind: "not_found".into(),
                message: format!("{}: No such file or directory", path.as_str()).into(),
            }),
        }
    }

    fn target_name(&self) -> RString {
        self.name.as_str().into()
    }
}

/// The environment variable that makes [`golden`] rewrite the recorded outputs.
pub const UPDATE_GOLDEN: &str = "AUTO_UPDATE_GOLDEN";

/// Checks a collector's output `data` on the fixture case in `case_dir` against
/// `case_dir/output.json`, after checking that `data` follows report schema 2
/// (`auto_proto::data::validate` with the default limits).
///
/// With `AUTO_UPDATE_GOLDEN=1` in the environment the file is (re)written instead. Panics, naming
/// the case, when the data is invalid, the file is missing or unreadable, or the data differs.
pub fn golden(case_dir: impl AsRef<std::path::Path>, data: &serde_json::Value) {
    let update = std::env::var(UPDATE_GOLDEN).is_ok_and(|v| v == "1");
    golden_with(case_dir.as_ref(), data, update);
}

fn golden_with(dir: &std::path::Path, data: &serde_json::Value, update: bool) {
    let path = dir.join("output.json");
    if let Err(e) = auto_proto::data::validate(data, &auto_proto::data::DataLimits::default()) {
        panic!(
            "{}: the output breaks report schema 2: {e}\n{data:#}",
            dir.display()
        );
    }
    let text = serde_json::to_string_pretty(data).expect("a Value serialises") + "\n";
    if update {
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let recorded = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (write it with {UPDATE_GOLDEN}=1 cargo test)",
            path.display()
        )
    });
    let recorded: serde_json::Value = serde_json::from_str(&recorded)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert!(
        recorded == *data,
        "{}: the collector's output differs from the recorded one (if the change is meant, \
         rewrite it with {UPDATE_GOLDEN}=1 cargo test)\nrecorded: {recorded:#}\nnow: {data:#}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `command`, recorded on this machine, answers through a [`Target`].
    fn recorded(command: &str) -> crate::Output {
        FixtureExecutor::new("local")
            .record_command(command)
            .with_target(|t| t.run(command, std::time::Duration::from_secs(1)))
            .expect("recorded")
    }

    #[test]
    fn record_command_keeps_stdout_stderr_and_exit_code() {
        let out = recorded("echo out; echo err >&2; exit 3");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.exit_code, Some(3));
        // Ended by a signal: no exit code.
        assert_eq!(recorded("kill -9 $$").exit_code, None);
    }

    #[test]
    fn golden_validates_compares_and_refuses_a_difference() {
        let dir = std::env::temp_dir().join(format!("plugin-api-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let data = serde_json::json!({"facts": {"core_count": 2}, "reasons": {}});
        std::fs::write(dir.join("output.json"), data.to_string()).expect("write");
        golden_with(&dir, &data, false);
        let other = serde_json::json!({"facts": {"core_count": 3}, "reasons": {}});
        let differs = std::panic::catch_unwind(|| golden_with(&dir, &other, false));
        let invalid = std::panic::catch_unwind(|| {
            golden_with(
                &dir,
                &serde_json::json!({"facts": {"core_count": -1}}),
                true,
            )
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(differs.is_err(), "a different output is refused");
        assert!(invalid.is_err(), "invalid data is refused");
    }

    #[test]
    fn record_file_keeps_content_or_error() {
        let path = std::env::temp_dir().join(format!("plugin-api-record-{}", std::process::id()));
        std::fs::write(&path, "recorded\n").expect("write");
        let path = path.to_string_lossy().into_owned();
        let exec = FixtureExecutor::new("local")
            .record_file(&path)
            .record_file("/nonexistent/plugin-api-record");
        let _ = std::fs::remove_file(&path);
        exec.with_target(|t| {
            assert_eq!(t.read_to_string(&path).expect("recorded"), "recorded\n");
            let err = t
                .read_file("/nonexistent/plugin-api-record")
                .expect_err("absent");
            assert_eq!(err.kind, "not_found");
            assert!(err.message.starts_with("/nonexistent/plugin-api-record: "));
        });
    }
}
