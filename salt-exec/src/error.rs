//! The one error type of this crate: every variant names the minion it is about (where there is one)
//! and prints as one lower-case line a user can act on.

use std::time::Duration;

/// What went wrong running something through Salt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaltError {
    /// The minion answered neither the job nor a `saltutil.find_job` probe: it is stopped, cut off
    /// from the master, or its key was accepted but it never connected.
    #[error(
        "minion {minion} is unreachable: no answer to the job nor to a probe within {waited:?}"
    )]
    MinionUnreachable { minion: String, waited: Duration },
    /// The master has no accepted key by that id.
    #[error("minion {minion} is unknown to the salt master (no accepted key by that id)")]
    UnknownMinion { minion: String },
    /// The command (or the whole batch it ran in) did not finish in time; the minion is alive.
    #[error("minion {minion}: `{command}` did not finish in {timeout:?}")]
    Timeout {
        minion: String,
        command: String,
        timeout: Duration,
    },
    /// The minion could not run the function at all (an exception in the Salt module, a file that
    /// cannot be read, ...). A command that ran and exited non-zero is not this: that is an
    /// [`Output`](crate::Output) with its exit code.
    #[error("minion {minion}: {what} failed: {message}")]
    CommandFailed {
        minion: String,
        what: String,
        message: String,
    },
    /// Salt itself failed: the master cannot be contacted, the job could not be published.
    #[error("salt error: {message}")]
    Salt { message: String },
    /// The helper process (Python with Salt) could not start or died.
    #[error("salt helper: {message}")]
    Helper { message: String },
    /// The minion's return did not have the shape the function promises.
    #[error("minion {minion}: unexpected return from salt: {detail}")]
    BadReturn { minion: String, detail: String },
}

impl SaltError {
    /// A stable machine-readable name for the kind of error, for reports and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SaltError::MinionUnreachable { .. } => "minion_unreachable",
            SaltError::UnknownMinion { .. } => "unknown_minion",
            SaltError::Timeout { .. } => "timeout",
            SaltError::CommandFailed { .. } => "command_failed",
            SaltError::Salt { .. } => "salt_error",
            SaltError::Helper { .. } => "helper_failed",
            SaltError::BadReturn { .. } => "bad_return",
        }
    }

    /// The minion the error is about, when it is about one.
    pub fn minion(&self) -> Option<&str> {
        match self {
            SaltError::MinionUnreachable { minion, .. }
            | SaltError::UnknownMinion { minion }
            | SaltError::Timeout { minion, .. }
            | SaltError::CommandFailed { minion, .. }
            | SaltError::BadReturn { minion, .. } => Some(minion),
            SaltError::Salt { .. } | SaltError::Helper { .. } => None,
        }
    }
}
