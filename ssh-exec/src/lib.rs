//! Run commands and read files on remote hosts over SSH, from a thread pool.
//!
//! One [`SshSession`] is one authenticated SSH connection to one host. It is `Send + Sync`: calls
//! from several threads are serialised inside (one channel at a time per connection), so a
//! fan-out keeps one session per host and hands it to whichever worker collects from that host.
//! [`KnownHosts`] is parsed once and shared by every connection; the [`HostKeyPolicy`] is strict
//! or trust-on-first-use, never accept-all. Every wait is bounded: connect, handshake and
//! authentication by [`ConnectOptions::connect_timeout`], each command by its own timeout.
//!
//! What it is not for: interactive shells, port forwarding. Files go up over SFTP
//! ([`SshSession::sftp`], for `auto-client deploy`). It knows nothing about
//! plugins, reports or HTTP; the host's executor wraps it.
//!
//! The SSH protocol comes from libssh2 (the `ssh2` crate, libssh2 1.11 vendored, OpenSSL for
//! crypto); `DESIGN.md` beside this crate says why, with measurements.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Duration;
//! use ssh_exec::{ConnectOptions, HostKeyPolicy, KnownHosts, SshAuth, SshSession, SshTarget};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let known_hosts = KnownHosts::load("/tmp/auto-testbed/known_hosts", HostKeyPolicy::Strict)?;
//! let auth = SshAuth::key_file(Path::new("/tmp/auto-testbed/id_ed25519"), None)?;
//! let target = SshTarget::new("node-001", "10.251.0.2");
//! let session = SshSession::connect(&target, &auth, &known_hosts, &ConnectOptions::default())?;
//! let out = session.run("uname -r", Duration::from_secs(5))?;
//! println!("{} {:?}", String::from_utf8_lossy(&out.stdout), out.exit_code);
//! # Ok(())
//! # }
//! ```

mod auth;
mod error;
mod known_hosts;
mod session;
mod sftp;

pub use auth::{PrivateKey, Secret, SshAuth};
pub use error::{HostKeyInfo, SetupError, SshError};
pub use known_hosts::{HostKeyPolicy, KnownHosts};
pub use session::{cat_result, ConnectOptions, EofAt, Output, SshSession, SshTarget, Watch};
pub use sftp::{Sftp, SftpError, SftpStat};
