//! The errors: one enum per failure a caller can act on, each naming the host.

use std::path::PathBuf;
use std::time::Duration;

/// Why a connection, a command or a file read on one host failed.
///
/// Every variant names the host (`host`: the target's name, `address`: where it was reached) and
/// displays as one lower-case line. The variants are the kinds a caller maps, for example to a
/// report's `error.kind`.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// Nothing listens on the port (TCP RST): the host is up, its sshd is not.
    #[error("ssh {host} ({address}): connection refused")]
    ConnectRefused { host: String, address: String },

    /// TCP connect, SSH handshake or authentication did not finish within the connect timeout.
    #[error("ssh {host} ({address}): {stage} timed out after {after:?}")]
    Timeout {
        host: String,
        address: String,
        /// "connect", "handshake" or "authentication"
        stage: &'static str,
        after: Duration,
    },

    /// The server refused every credential offered.
    #[error("ssh {host} ({address}): authentication failed for user {user}: {detail}")]
    AuthFailed {
        host: String,
        address: String,
        user: String,
        detail: String,
    },

    /// The host's key is in no line of known_hosts (and the policy is strict).
    #[error("ssh {host} ({address}): host key unknown: {} {} is not in {}", key.key_type, key.fingerprint, key.known_hosts.display())]
    HostKeyUnknown {
        host: String,
        address: String,
        key: Box<HostKeyInfo>,
    },

    /// known_hosts holds another key for this host: refused, whatever the policy.
    #[error("ssh {host} ({address}): host key changed: got {} {}, {} line {line} holds another key", key.key_type, key.fingerprint, key.known_hosts.display())]
    HostKeyChanged {
        host: String,
        address: String,
        key: Box<HostKeyInfo>,
        /// The first known_hosts line with another key for this host.
        line: usize,
    },

    /// known_hosts marks the presented key `@revoked`.
    #[error("ssh {host} ({address}): host key revoked: {} {} is marked @revoked in {}", key.key_type, key.fingerprint, key.known_hosts.display())]
    HostKeyRevoked {
        host: String,
        address: String,
        key: Box<HostKeyInfo>,
    },

    /// The command did not finish in time; its channel was closed (see [`crate::SshSession::run`]).
    #[error("ssh {host}: command timed out after {after:?}: {command}")]
    CommandTimeout {
        host: String,
        command: String,
        after: Duration,
    },

    /// `read_file` ran, but the file could not be read (missing, a directory, no permission).
    #[error("ssh {host}: cannot read {path}: {detail}")]
    ReadFailed {
        host: String,
        path: String,
        detail: String,
    },

    /// Anything else on the wire: name resolution, unreachable network, a reset connection, a
    /// protocol error, a session broken by an earlier failure.
    #[error("ssh {host} ({address}): {detail}")]
    Transport {
        host: String,
        address: String,
        detail: String,
    },
}

impl SshError {
    /// The target's name this error is about.
    pub fn host(&self) -> &str {
        match self {
            SshError::ConnectRefused { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::AuthFailed { host, .. }
            | SshError::HostKeyUnknown { host, .. }
            | SshError::HostKeyChanged { host, .. }
            | SshError::HostKeyRevoked { host, .. }
            | SshError::CommandTimeout { host, .. }
            | SshError::ReadFailed { host, .. }
            | SshError::Transport { host, .. } => host,
        }
    }

    /// A stable snake_case name of the kind, for reports and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::ConnectRefused { .. } => "connect_refused",
            SshError::Timeout { .. } => "timeout",
            SshError::AuthFailed { .. } => "auth_failed",
            SshError::HostKeyUnknown { .. } => "host_key_unknown",
            SshError::HostKeyChanged { .. } => "host_key_changed",
            SshError::HostKeyRevoked { .. } => "host_key_revoked",
            SshError::CommandTimeout { .. } => "command_timeout",
            SshError::ReadFailed { .. } => "read_failed",
            SshError::Transport { .. } => "transport",
        }
    }
}

/// The key a host presented, for host key errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyInfo {
    /// e.g. `ssh-ed25519`
    pub key_type: String,
    /// OpenSSH style: `SHA256:` and unpadded base64
    pub fingerprint: String,
    /// The known_hosts file it was checked against.
    pub known_hosts: PathBuf,
}

/// A problem with local set-up, found before any host is contacted.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file this crate was told to read (known_hosts, a password or passphrase file).
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A private key that cannot be used: not a key, encrypted without a passphrase, wrong passphrase.
    #[error("private key {}: {detail}", path.display())]
    Key { path: PathBuf, detail: String },
    /// A secret was to come from an environment variable that is unset or not UTF-8.
    #[error("environment variable {var} is not set (or not valid UTF-8)")]
    EnvMissing { var: String },
    /// A secret file or variable is empty.
    #[error("{what} is empty")]
    Empty { what: String },
}
