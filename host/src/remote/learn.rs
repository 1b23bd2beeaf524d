//! The dry run (ssh and salt mode): which commands will the collectors ask a target for?
//!
//! Every loaded collector runs once against a [`Recorder`], an executor that records each command
//! (and each file read, as a `cat` command) and answers every one as a success with nothing to
//! say (exit code 0, no output; a file read gives an empty file). What
//! it records is what a remote executor runs on every target in ONE round trip before the
//! collectors start (`batch` over SSH, one Salt job in salt mode); the collectors are then
//! answered from those outputs. A command a collector asks only after seeing real output is not
//! learned: it still runs, on its own. So a collector should ask its commands whatever earlier ones
//! gave where it can (nic asks for the speeds first).
//!
//! A fallback (a command a collector asks only when its primary failed, such as nic's text form of
//! `ip` where `ip -j` is refused) is therefore NOT learned: the primary succeeded in the dry run.
//! The batch runs only primaries, and a target whose primary fails (an old host) is asked the
//! fallback in one more round trip. A collector must not take an empty successful answer for a
//! failure, or its fallback would be learned and batched on every target again.

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
        // what they gave is dropped: kept as text, not parsed
        crate::plugins::runner::collect_all::<Box<serde_json::value::RawValue>>(
            &registry.loaded,
            &make,
            &pool,
        )
    });
    let list = recorded.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for ask in &list {
        tracing::debug!(command = %ask.command, timeout = ?ask.timeout, "learned by the dry run");
    }
    list
}

/// How a file read travels when it is batched or sent on its own: `cat -- PATH`.
pub fn cat_command(path: &str) -> String {
    format!("cat -- {}", plugin_api::batch::shell_word(path))
}

/// What `cat -- PATH` left behind, as a file read: the bytes, or an error whose kind says why
/// (`not_found`, `permission_denied`, else `io`) with cat's own words. The one mapping of a remote
/// read, for ssh and salt mode alike.
pub fn cat_read(
    target: &str,
    path: &str,
    stdout: &[u8],
    stderr: &[u8],
    exit_code: Option<i32>,
) -> Result<Vec<u8>, plugin_api::PluginError> {
    if exit_code == Some(0) {
        return Ok(stdout.to_vec());
    }
    let said = String::from_utf8_lossy(stderr);
    let said = said.lines().next().unwrap_or("").trim();
    let lower = said.to_lowercase();
    let kind = if lower.contains("no such file") || lower.contains("not a directory") {
        "not_found"
    } else if lower.contains("permission denied") {
        "permission_denied"
    } else {
        "io"
    };
    let detail = if said.is_empty() {
        format!("cat exited with {exit_code:?}")
    } else {
        said.to_owned()
    };
    Err(error(
        kind,
        format!("{target}: cannot read {path}: {detail}"),
    ))
}

fn record(recorded: &Mutex<Vec<Ask>>, ask: Ask) {
    let mut r = recorded.lock().unwrap_or_else(|p| p.into_inner());
    if !r.iter().any(|a| a.command == ask.command) {
        r.push(ask);
    }
}

/// Records what a collector asks for and answers every command and file read as a success with
/// nothing in it, so that fallbacks (asked only on failure) are not learned.
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
        RResult::ROk(command_output(Vec::new(), Vec::new(), Some(0)))
    }

    fn read_file(&self, path: RStr<'_>) -> RResult<RVec<u8>, PluginError> {
        record(
            &self.recorded,
            Ask {
                command: cat_command(path.as_str()),
                timeout: None,
            },
        );
        RResult::ROk(RVec::new())
    }

    fn target_name(&self) -> RString {
        "dry-run".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_answers_success_with_nothing_and_records_each_ask_once() {
        let recorder = Recorder {
            recorded: Arc::new(Mutex::new(Vec::new())),
        };
        for _ in 0..2 {
            let out = recorder
                .run("ip -d -j addr".into(), 8000)
                .into_result()
                .expect("an answer");
            assert_eq!(out.exit_code.into_option(), Some(0));
            assert!(out.stdout.is_empty() && out.stderr.is_empty());
        }
        let file = recorder
            .read_file("/proc/cpuinfo".into())
            .into_result()
            .expect("an empty file");
        assert!(file.is_empty());
        let asked = recorder.recorded.lock().expect("lock").clone();
        assert_eq!(
            asked,
            [
                Ask {
                    command: "ip -d -j addr".into(),
                    timeout: Some(Duration::from_secs(8)),
                },
                Ask {
                    command: "cat -- /proc/cpuinfo".into(),
                    timeout: None,
                },
            ]
        );
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(cat_command("/a b/it's"), r"cat -- '/a b/it'\''s'");
        let e = cat_read(
            "h",
            "/x",
            b"",
            b"cat: /x: No such file or directory\n",
            Some(1),
        )
        .expect_err("missing");
        assert_eq!(e.kind.as_str(), "not_found");
        assert_eq!(
            e.message.as_str(),
            "h: cannot read /x: cat: /x: No such file or directory"
        );
        let e =
            cat_read("h", "/x", b"", b"cat: /x: Permission denied", Some(1)).expect_err("denied");
        assert_eq!(e.kind.as_str(), "permission_denied");
        assert_eq!(
            cat_read("h", "/x", b"ok", b"", Some(0)).ok(),
            Some(b"ok".to_vec())
        );
        assert_eq!(cat_command("/proc/cpuinfo"), "cat -- /proc/cpuinfo");
    }
}
