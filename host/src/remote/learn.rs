//! The dry run (ssh and salt mode): which commands will the collectors ask a target for?
//!
//! Every loaded collector runs once against a [`Recorder`], an executor that records each command
//! (and each file read, as a `cat` command) and answers as a machine that has nothing would. What
//! it records is what a remote executor runs on every target in ONE round trip before the
//! collectors start (`batch` over SSH, one Salt job in salt mode); the collectors are then
//! answered from those outputs. A command a collector asks only after seeing real output is not
//! learned: it still runs, on its own. So a collector should ask its commands whatever earlier ones
//! gave where it can (nic asks for the speeds first).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RResult, RStr, RString, RVec},
};
use plugin_api::{CommandOutput, Executor, Executor_TO, PluginError};

use crate::{
    plugins::executor::{command_output, error},
    plugins::registry::PluginRegistry,
    plugins::runner::MakeExecutor,
};

/// A command the collectors will ask for, and the timeout they give it (`None`: a file read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub command: String,
    pub timeout: Option<Duration>,
}

/// The commands (file reads as [`cat_command`]s) the loaded collectors ask for first, in order,
/// without repeats.
pub fn dry_run(registry: &PluginRegistry) -> Vec<Ask> {
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let make: MakeExecutor = {
        let recorded = Arc::clone(&recorded);
        Arc::new(move |_deadline| {
            Executor_TO::from_value(
                Recorder {
                    recorded: Arc::clone(&recorded),
                },
                TD_Opaque,
            )
        })
    };
    let pool = crate::pool::Pool::new("dry-run", registry.loaded.len());
    // the collectors fail against a machine that has nothing: not worth a warning each
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        crate::plugins::runner::collect_all(&registry.loaded, &make, &pool)
    });
    let list = recorded.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for ask in &list {
        tracing::debug!(command = %ask.command, timeout = ?ask.timeout, "learned by the dry run");
    }
    list
}

/// How a file read travels when it is batched: `cat -- 'PATH'`.
pub fn cat_command(path: &str) -> String {
    format!("cat -- {}", shell_quote(path))
}

/// `text` as one single-quoted POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn record(recorded: &Mutex<Vec<Ask>>, ask: Ask) {
    let mut r = recorded.lock().unwrap_or_else(|p| p.into_inner());
    if !r.iter().any(|a| a.command == ask.command) {
        r.push(ask);
    }
}

/// Records what a collector asks for and answers as a machine that has nothing would.
struct Recorder {
    recorded: Arc<Mutex<Vec<Ask>>>,
}

impl Executor for Recorder {
    fn run(&self, command: RStr<'_>, timeout_ms: u64) -> RResult<CommandOutput, PluginError> {
        record(
            &self.recorded,
            Ask {
                command: command.as_str().to_string(),
                timeout: Some(Duration::from_millis(timeout_ms)),
            },
        );
        RResult::ROk(command_output(Vec::new(), b"dry run\n".to_vec(), Some(127)))
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        record(
            &self.recorded,
            Ask {
                command: cat_command(path.as_str()),
                timeout: None,
            },
        );
        RResult::RErr(error("not_found", "dry run"))
    }

    fn target_name(&self) -> RString {
        "dry-run".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(cat_command("/proc/cpuinfo"), "cat -- '/proc/cpuinfo'");
    }
}
