//! A test executor that answers from recorded outputs of real machines, so a collector's parsing is
//! tested on fixtures without a live target (the part `PROCFS_ROOT` plays in Vector's collectors).

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
    files: HashMap<String, Vec<u8>>,
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
            .insert(path.to_string(), content.as_ref().to_vec());
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
            Some(b) => RResult::ROk(RVec::from(b.clone())),
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
