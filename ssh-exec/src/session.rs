//! One SSH connection to one host: connect (TCP, handshake, host key check, authentication),
//! then run commands and read files, one channel at a time.
//!
//! libssh2 runs in non-blocking mode throughout; every wait is a `poll(2)` on the socket bounded
//! by the deadline of the operation, so no call can outlive its timeout by more than one poll.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ssh2::{
    BlockDirections, Channel, ErrorCode, HashType, KeyboardInteractivePrompt, MethodType, Prompt,
    Session,
};

use crate::auth::SshAuth;
use crate::error::{HostKeyInfo, SshError};
use crate::known_hosts::{key_type_of, lookup_names, HostKeyPolicy, KnownHosts, Verdict};

// libssh2 error codes (libssh2.h) this module tells apart.
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// Timed-out commands whose channel is still open on the server (the command still runs there):
/// sshd allows 10 channels per connection (MaxSessions), so past this many the session is
/// marked broken and the caller reconnects.
const MAX_ABANDONED_CHANNELS: usize = 4;

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// The host's name: used in errors and looked up in known_hosts.
    pub host: String,
    /// Where to connect: an IP address or a DNS name. Also looked up in known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
}

impl SshTarget {
    /// Port 22, user root.
    pub fn new(host: impl Into<String>, address: impl Into<String>) -> SshTarget {
        SshTarget {
            host: host.into(),
            address: address.into(),
            port: 22,
            user: "root".to_string(),
        }
    }
}

/// Limits and algorithm choices for a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TCP connect + SSH handshake + host key check + authentication, all together.
    pub connect_timeout: Duration,
    /// The timeout of [`SshSession::read_file`].
    pub command_timeout: Duration,
    /// How long a timed-out command's channel gets to close before it is abandoned.
    pub close_grace: Duration,
    /// Key exchange methods in order of preference (libssh2 names).
    pub kex: String,
    /// Ciphers in order of preference (libssh2 names), both directions.
    pub ciphers: String,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            close_grace: Duration::from_millis(200),
            kex: "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,\
                  ecdh-sha2-nistp384,diffie-hellman-group14-sha256"
                .to_string(),
            ciphers: "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,\
                      chacha20-poly1305@openssh.com"
                .to_string(),
        }
    }
}

/// What a command left behind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the command was killed by a signal (or the server sent no exit status, or
    /// [`SshSession::run_with`] returned at its `done` bytes, before it).
    pub exit_code: Option<i32>,
}

/// An authenticated SSH connection to one host.
///
/// `Send + Sync`: share it (`&SshSession`, `Arc<SshSession>`) between threads; calls are
/// serialised by an internal mutex, one command at a time per host.
///
/// After a transport failure the session is *broken*: every later call fails at once with
/// [`SshError::Transport`] and the caller reconnects ([`SshSession::is_broken`]). A command
/// timeout does not break it (see [`SshSession::run`]).
pub struct SshSession {
    host: String,
    address: String,
    command_timeout: Duration,
    close_grace: Duration,
    pub(crate) inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    pub(crate) session: Session,
    /// A second handle on the session's socket, for poll(2) and shutdown on drop.
    socket: TcpStream,
    pub(crate) broken: Option<String>,
    /// Channels of timed-out commands, closed on our side, waiting for the server's close.
    abandoned: Vec<Channel>,
}

/// Why a non-blocking libssh2 call did not complete.
enum Failure {
    TimedOut,
    Ssh(ssh2::Error),
    Io(io::Error),
}

impl Failure {
    fn detail(&self) -> String {
        match self {
            Failure::TimedOut => "timed out".to_string(),
            Failure::Ssh(e) => e.message().to_string(),
            Failure::Io(e) => e.to_string(),
        }
    }
}

impl SshSession {
    /// Connect, check the host key against `known_hosts` and its policy, and authenticate.
    ///
    /// The TCP socket has TCP_NODELAY set (no Nagle/delayed-ACK stalls in the handshake). Key
    /// exchange prefers curve25519-sha256; the host key algorithm is pinned to the key types
    /// known_hosts holds for this host, so a host with several keys is checked against the one
    /// recorded.
    pub fn connect(
        target: &SshTarget,
        auth: &SshAuth,
        known_hosts: &KnownHosts,
        options: &ConnectOptions,
    ) -> Result<SshSession, SshError> {
        let start = Instant::now();
        let deadline = start + options.connect_timeout;
        let transport = |detail: String| SshError::Transport {
            host: target.host.clone(),
            address: target.address.clone(),
            detail,
        };
        let timeout = |stage: &'static str| SshError::Timeout {
            host: target.host.clone(),
            address: target.address.clone(),
            stage,
            after: start.elapsed(),
        };

        let stream = connect_tcp(target, start, deadline)?;
        stream
            .set_nodelay(true)
            .map_err(|e| transport(format!("cannot set TCP_NODELAY: {e}")))?;
        let socket = stream
            .try_clone()
            .map_err(|e| transport(format!("cannot duplicate socket: {e}")))?;
        let fd = socket.as_raw_fd();

        let mut session =
            Session::new().map_err(|e| transport(format!("cannot create session: {e}")))?;
        session.set_tcp_stream(stream);
        session.set_blocking(false);
        let probe = session.clone();
        session
            .method_pref(MethodType::Kex, &options.kex)
            .map_err(|e| transport(format!("key exchange preference {:?}: {e}", options.kex)))?;
        for method in [MethodType::CryptCs, MethodType::CryptSc] {
            session
                .method_pref(method, &options.ciphers)
                .map_err(|e| transport(format!("cipher preference {:?}: {e}", options.ciphers)))?;
        }
        let names = lookup_names(&target.host, &target.address, target.port);
        let known_types = known_hosts.key_types(&names);
        if !known_types.is_empty() {
            let methods = host_key_methods(&known_types);
            // libssh2 refuses a list with no method it supports: then negotiate freely and let
            // the known_hosts check below refuse the key
            let _ = session.method_pref(MethodType::HostKey, &methods);
        }

        retry(&probe, fd, deadline, || session.handshake()).map_err(|f| match f {
            Failure::TimedOut => timeout("handshake"),
            f => transport(format!("ssh handshake failed: {}", f.detail())),
        })?;

        check_host_key(target, &session, &names, known_hosts)?;

        authenticate(target, auth, &session, &probe, fd, deadline).map_err(|f| match f {
            AuthFailure::TimedOut => timeout("authentication"),
            AuthFailure::Transport(detail) => transport(detail),
            AuthFailure::Refused(detail) => SshError::AuthFailed {
                host: target.host.clone(),
                address: target.address.clone(),
                user: target.user.clone(),
                detail,
            },
        })?;

        Ok(SshSession {
            host: target.host.clone(),
            address: target.address.clone(),
            command_timeout: options.command_timeout,
            close_grace: options.close_grace,
            inner: Mutex::new(Inner {
                session,
                socket,
                broken: None,
                abandoned: Vec::new(),
            }),
        })
    }

    /// The target's name this session was opened for.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True once a transport error made the session unusable: reconnect.
    pub fn is_broken(&self) -> bool {
        self.lock().broken.is_some()
    }

    /// Run `command` through the login shell of the remote user (an SSH `exec` request) and
    /// collect its output.
    ///
    /// A command that has not finished at `timeout` is abandoned: its channel is closed on our
    /// side (EOF and CLOSE sent) and [`SshError::CommandTimeout`] returned. The session stays
    /// usable for further commands. The remote process is not killed (libssh2's binding cannot
    /// send a signal); it ends when it next writes to its closed output or on its own. Its
    /// channel slot on the server is held until then: after 4 such abandoned channels on one
    /// connection the session is marked broken, so the caller reconnects before sshd's limit
    /// of 10 channels per connection is reached.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<Output, SshError> {
        self.run_with(command, timeout, Watch::default())
    }

    /// [`run`](Self::run) for a command that watches its stdin: EOF is sent on it when
    /// `watch.eof_at` says (the command's own watchdog can then stop what still runs and let its
    /// output so far come back before `timeout`), and the output counts as whole once both
    /// streams hold `watch.done` (a background process the command left behind, still holding
    /// its stdout, then does not hold the call until `timeout`).
    pub fn run_with(
        &self,
        command: &str,
        timeout: Duration,
        watch: Watch<'_>,
    ) -> Result<Output, SshError> {
        let mut inner = self.lock();
        let deadline = Instant::now() + timeout;
        inner.usable().map_err(|detail| self.transport(detail))?;
        inner.reap_abandoned();
        let fd = inner.socket.as_raw_fd();
        let probe = inner.session.clone();

        let mut channel = match retry(&probe, fd, deadline, || probe.channel_session()) {
            Ok(channel) => channel,
            Err(f) => return Err(self.fail(&mut inner, f, command, timeout, "open a channel")),
        };
        if let Err(f) = retry(&probe, fd, deadline, || channel.exec(command)) {
            inner.abandon(channel, self.close_grace);
            return Err(self.fail(&mut inner, f, command, timeout, "start the command"));
        }
        match collect(&probe, fd, deadline, &mut channel, watch) {
            Ok(output) => {
                // our CLOSE answers the server's: frees the channel without a wait; a channel
                // still open there (returned at `watch.done`) is kept until the server closes it
                if retry(&probe, fd, Instant::now() + self.close_grace, || {
                    channel.close()
                })
                .is_err()
                {
                    inner.abandon(channel, self.close_grace);
                }
                Ok(output)
            }
            Err(f) => {
                inner.abandon(channel, self.close_grace);
                Err(self.fail(&mut inner, f, command, timeout, "read the output"))
            }
        }
    }

    /// The contents of a file on the host (`cat` over an exec channel: one round trip fewer
    /// than SFTP and no subsystem start; see DESIGN.md). Times out after
    /// [`ConnectOptions::command_timeout`].
    pub fn read_file(&self, path: &Path) -> Result<Vec<u8>, SshError> {
        let path_text = path.to_string_lossy();
        let command = format!("cat -- {}", shell_quote(&path_text));
        let output = self.run(&command, self.command_timeout)?;
        cat_result(&self.host, &path_text, output)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic in another caller left libssh2 in an unknown state: the session is broken
        match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                if guard.broken.is_none() {
                    guard.broken = Some("a caller panicked while using the session".to_string());
                }
                guard
            }
        }
    }

    pub(crate) fn transport(&self, detail: String) -> SshError {
        SshError::Transport {
            host: self.host.clone(),
            address: self.address.clone(),
            detail,
        }
    }

    /// Map a failed step of `run`: a timeout keeps the session, anything else breaks it.
    fn fail(
        &self,
        inner: &mut Inner,
        failure: Failure,
        command: &str,
        timeout: Duration,
        step: &str,
    ) -> SshError {
        match failure {
            Failure::TimedOut => SshError::CommandTimeout {
                host: self.host.clone(),
                command: command.to_string(),
                after: timeout,
            },
            f => {
                let detail = format!("cannot {step}: {}", f.detail());
                inner.broken = Some(detail.clone());
                self.transport(detail)
            }
        }
    }
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("host", &self.host)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for SshSession {
    fn drop(&mut self) {
        let inner = match self.inner.get_mut() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        // one non-blocking try at a polite goodbye, then shut the socket: libssh2's frees of
        // channels still open then fail fast instead of waiting for the server
        let _ = inner
            .session
            .disconnect(Some(ssh2::DisconnectCode::ByApplication), "bye", None);
        let _ = inner.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl Inner {
    pub(crate) fn usable(&self) -> Result<(), String> {
        match &self.broken {
            Some(why) => Err(format!("session unusable after an earlier error: {why}")),
            None => Ok(()),
        }
    }

    /// Send EOF and CLOSE for a channel we give up on; keep it until the server closes it too.
    fn abandon(&mut self, mut channel: Channel, grace: Duration) {
        let fd = self.socket.as_raw_fd();
        let probe = self.session.clone();
        match retry(&probe, fd, Instant::now() + grace, || channel.close()) {
            Ok(()) => {}
            Err(Failure::TimedOut) => {
                self.abandoned.push(channel);
                if self.abandoned.len() >= MAX_ABANDONED_CHANNELS && self.broken.is_none() {
                    self.broken = Some(format!(
                        "{} timed-out commands still hold their channels",
                        self.abandoned.len()
                    ));
                }
            }
            Err(f) => {
                self.broken = Some(format!("cannot close a channel: {}", f.detail()));
            }
        }
    }

    /// Drop the abandoned channels the server has closed meanwhile.
    fn reap_abandoned(&mut self) {
        self.abandoned.retain_mut(|channel| match channel.close() {
            Ok(()) => false,
            Err(e) => is_eagain(&e),
        });
    }
}

fn connect_tcp(
    target: &SshTarget,
    start: Instant,
    deadline: Instant,
) -> Result<TcpStream, SshError> {
    let transport = |detail: String| SshError::Transport {
        host: target.host.clone(),
        address: target.address.clone(),
        detail,
    };
    let addrs: Vec<SocketAddr> = (target.address.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| transport(format!("cannot resolve {}: {e}", target.address)))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, remaining) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => SshError::ConnectRefused {
            host: target.host.clone(),
            address: format!("{}:{}", target.address, target.port),
        },
        Some(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            SshError::Timeout {
                host: target.host.clone(),
                address: target.address.clone(),
                stage: "connect",
                after: start.elapsed(),
            }
        }
        Some(e) => transport(format!("cannot connect to port {}: {e}", target.port)),
        None if addrs.is_empty() => transport(format!("{} has no address", target.address)),
        None => SshError::Timeout {
            host: target.host.clone(),
            address: target.address.clone(),
            stage: "connect",
            after: start.elapsed(),
        },
    })
}

/// libssh2 host key method names for the key types known_hosts holds.
fn host_key_methods(types: &[String]) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for t in types {
        match t.as_str() {
            "ssh-rsa" => methods.extend(["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]),
            other => methods.push(other),
        }
    }
    methods.join(",")
}

fn check_host_key(
    target: &SshTarget,
    session: &Session,
    names: &[String],
    known_hosts: &KnownHosts,
) -> Result<(), SshError> {
    let transport = |detail: String| SshError::Transport {
        host: target.host.clone(),
        address: target.address.clone(),
        detail,
    };
    let (blob, _) = session
        .host_key()
        .ok_or_else(|| transport("the server sent no host key".to_string()))?;
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(|h| format!("SHA256:{}", STANDARD_NO_PAD.encode(h)))
        .unwrap_or_else(|| "SHA256:?".to_string());
    let key_type = key_type_of(blob).unwrap_or_else(|| "unknown-type".to_string());
    let mut verdict = known_hosts.verdict(names, blob);
    if verdict == Verdict::Unknown && known_hosts.policy() == HostKeyPolicy::AcceptNew {
        verdict = known_hosts.record(names, blob).map_err(|e| {
            transport(format!(
                "cannot record host key in {}: {e}",
                known_hosts.path().display()
            ))
        })?;
    }
    let key = || {
        Box::new(HostKeyInfo {
            key_type: key_type.clone(),
            fingerprint: fingerprint.clone(),
            known_hosts: known_hosts.path().to_path_buf(),
        })
    };
    match verdict {
        Verdict::Known => Ok(()),
        Verdict::Unknown => Err(SshError::HostKeyUnknown {
            host: target.host.clone(),
            address: target.address.clone(),
            key: key(),
        }),
        Verdict::Changed { line } => Err(SshError::HostKeyChanged {
            host: target.host.clone(),
            address: target.address.clone(),
            key: key(),
            line,
        }),
        Verdict::Revoked => Err(SshError::HostKeyRevoked {
            host: target.host.clone(),
            address: target.address.clone(),
            key: key(),
        }),
    }
}

enum AuthFailure {
    TimedOut,
    Transport(String),
    Refused(String),
}

impl From<Failure> for AuthFailure {
    fn from(f: Failure) -> AuthFailure {
        match f {
            Failure::TimedOut => AuthFailure::TimedOut,
            Failure::Io(e) => AuthFailure::Transport(format!("authentication: {e}")),
            Failure::Ssh(e) => match e.code() {
                ErrorCode::Session(
                    LIBSSH2_ERROR_SOCKET_SEND
                    | LIBSSH2_ERROR_SOCKET_RECV
                    | LIBSSH2_ERROR_SOCKET_DISCONNECT,
                ) => AuthFailure::Transport(format!("authentication: {}", e.message())),
                _ => AuthFailure::Refused(e.message().to_lowercase()),
            },
        }
    }
}

fn authenticate(
    target: &SshTarget,
    auth: &SshAuth,
    session: &Session,
    probe: &Session,
    fd: RawFd,
    deadline: Instant,
) -> Result<(), AuthFailure> {
    let user = target.user.as_str();
    match auth {
        SshAuth::Key(key) => match key.ed25519() {
            Some(login) => retry(probe, fd, deadline, || {
                userauth_ed25519(session, user, login)
            })?,
            None => retry(probe, fd, deadline, || {
                session.userauth_pubkey_memory(user, None, key.text(), key.passphrase())
            })?,
        },
        SshAuth::Agent => {
            let mut agent = session
                .agent()
                .map_err(|e| AuthFailure::Refused(format!("ssh-agent: {}", e.message())))?;
            agent.connect().map_err(|e| {
                AuthFailure::Refused(format!(
                    "cannot reach ssh-agent (SSH_AUTH_SOCK): {}",
                    e.message()
                ))
            })?;
            agent
                .list_identities()
                .map_err(|e| AuthFailure::Refused(format!("ssh-agent: {}", e.message())))?;
            let identities = agent
                .identities()
                .map_err(|e| AuthFailure::Refused(format!("ssh-agent: {}", e.message())))?;
            if identities.is_empty() {
                return Err(AuthFailure::Refused("ssh-agent holds no keys".to_string()));
            }
            let mut last = AuthFailure::Refused("no agent key accepted".to_string());
            let mut accepted = false;
            for identity in &identities {
                match retry(probe, fd, deadline, || agent.userauth(user, identity)) {
                    Ok(()) => {
                        accepted = true;
                        break;
                    }
                    Err(f) => match AuthFailure::from(f) {
                        AuthFailure::Refused(_) => {
                            last = AuthFailure::Refused(format!(
                                "none of the {} agent keys accepted",
                                identities.len()
                            ))
                        }
                        other => return Err(other),
                    },
                }
            }
            let _ = agent.disconnect();
            if !accepted {
                return Err(last);
            }
        }
        SshAuth::Password(secret) => {
            let password = secret.expose();
            match retry(probe, fd, deadline, || {
                session.userauth_password(user, password)
            }) {
                Ok(()) => {}
                Err(f) => match AuthFailure::from(f) {
                    // the server may take the password only as keyboard-interactive
                    AuthFailure::Refused(first) => {
                        let mut prompter = PasswordPrompter(password);
                        retry(probe, fd, deadline, || {
                            session.userauth_keyboard_interactive(user, &mut prompter)
                        })
                        .map_err(|f| match AuthFailure::from(f) {
                            AuthFailure::Refused(_) => AuthFailure::Refused(first),
                            other => other,
                        })?;
                    }
                    other => return Err(other),
                },
            }
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(AuthFailure::Refused(format!(
            "server wants more than {} authentication",
            auth.method()
        )))
    }
}

struct PasswordPrompter<'a>(&'a str);

impl KeyboardInteractivePrompt for PasswordPrompter<'_> {
    fn prompt<'a>(&mut self, _user: &str, _instr: &str, prompts: &[Prompt<'a>]) -> Vec<String> {
        prompts.iter().map(|_| self.0.to_string()).collect()
    }
}

type SignCallback = unsafe extern "C" fn(
    *mut libssh2_sys::LIBSSH2_SESSION,
    *mut *mut libc::c_uchar,
    *mut libc::size_t,
    *const libc::c_uchar,
    libc::size_t,
    *mut *mut libc::c_void,
) -> libc::c_int;

extern "C" {
    // libssh2.h; in the libssh2 that libssh2-sys builds and links, not wrapped by the ssh2 crate
    fn libssh2_userauth_publickey(
        session: *mut libssh2_sys::LIBSSH2_SESSION,
        username: *const libc::c_char,
        pubkeydata: *const libc::c_uchar,
        pubkeydata_len: libc::size_t,
        sign_callback: Option<SignCallback>,
        abstract_: *mut *mut libc::c_void,
    ) -> libc::c_int;
}

/// Public key login with an ed25519 key whose signature is made here: libssh2 is handed the
/// public key blob and a callback, never the private key (with a key text, libssh2 on OpenSSL 3
/// parses it twice per connection, each time first through OpenSSL's PEM decoders: ~20% of the
/// client's CPU per host). Same messages, same wire bytes: ssh-ed25519 signatures are
/// deterministic.
fn userauth_ed25519(
    session: &Session,
    user: &str,
    login: &crate::auth::Ed25519Login,
) -> Result<(), ssh2::Error> {
    let user = std::ffi::CString::new(user).map_err(|_| {
        ssh2::Error::new(
            ErrorCode::Session(libssh2_sys::LIBSSH2_ERROR_INVAL),
            "the user name contains a NUL byte",
        )
    })?;
    let mut signer = std::ptr::from_ref(&login.signing)
        .cast_mut()
        .cast::<libc::c_void>();
    let mut guard = session.raw();
    let raw: *mut libssh2_sys::LIBSSH2_SESSION = &mut *guard;
    // SAFETY: `raw` is the live session, locked by `guard` for the call; the strings and the blob
    // outlive the call; `signer` points at a SigningKey that outlives it, and `sign_ed25519` only
    // reads it during the call.
    let rc = unsafe {
        libssh2_userauth_publickey(
            raw,
            user.as_ptr(),
            login.public_blob.as_ptr(),
            login.public_blob.len(),
            Some(sign_ed25519),
            &mut signer,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ssh2::Error::from_session_error_raw(raw, rc))
    }
}

/// libssh2's sign callback: the raw 64-byte ed25519 signature of `data` (libssh2 wraps it in the
/// `ssh-ed25519` signature blob), in memory from `malloc`, which libssh2 frees with the session's
/// default `free`.
unsafe extern "C" fn sign_ed25519(
    _session: *mut libssh2_sys::LIBSSH2_SESSION,
    sig: *mut *mut libc::c_uchar,
    sig_len: *mut libc::size_t,
    data: *const libc::c_uchar,
    data_len: libc::size_t,
    abstract_: *mut *mut libc::c_void,
) -> libc::c_int {
    use ed25519_dalek::Signer;
    // SAFETY: `abstract_` is the `&mut signer` of `userauth_ed25519`, alive during this call.
    let key = unsafe { &*(*abstract_).cast::<ed25519_dalek::SigningKey>() };
    let message = if data.is_null() || data_len == 0 {
        &[][..]
    } else {
        // SAFETY: libssh2 hands `data_len` readable bytes at `data`.
        unsafe { std::slice::from_raw_parts(data, data_len) }
    };
    let signature = key.sign(message).to_bytes();
    // SAFETY: plain allocation; checked for null; handed over to libssh2, which frees it.
    unsafe {
        let out = libc::malloc(signature.len()).cast::<libc::c_uchar>();
        if out.is_null() {
            return libssh2_sys::LIBSSH2_ERROR_ALLOC;
        }
        std::ptr::copy_nonoverlapping(signature.as_ptr(), out, signature.len());
        *sig = out;
        *sig_len = signature.len();
    }
    0
}

/// When [`SshSession::run_with`] sends EOF on the command's stdin: asked once the command is
/// started (with no bytes) and again after each piece of its stdout (with that piece); `None`:
/// not (yet). Once sent, not asked again.
pub type EofAt<'a> = &'a mut dyn FnMut(&[u8]) -> Option<Instant>;

/// What [`SshSession::run_with`] does beyond reading the output.
#[derive(Default)]
pub struct Watch<'a> {
    pub eof_at: Option<EofAt<'a>>,
    /// The output is whole once stdout and stderr each hold these bytes (not looked for when
    /// empty): the call returns then, without waiting for the server's EOF.
    pub done: &'a [u8],
}

/// Whether `buf`, of which the bytes from `new` on arrived last, holds `needle` (looked for
/// only where it could end among the new bytes).
fn arrived(buf: &[u8], new: usize, needle: &[u8]) -> bool {
    let from = new.saturating_sub(needle.len().saturating_sub(1));
    buf[from..].windows(needle.len()).any(|w| w == needle)
}

/// Read stdout and stderr until the server's EOF (or `watch.done` on both), then the exit
/// status.
fn collect(
    probe: &Session,
    fd: RawFd,
    deadline: Instant,
    channel: &mut Channel,
    watch: Watch<'_>,
) -> Result<Output, Failure> {
    let mut output = Output::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut ask = watch.eof_at;
    let mut eof_at = ask.as_mut().and_then(|f| f(&[]));
    // whether stdout, stderr hold `watch.done`
    let mut done = [watch.done.is_empty(); 2];
    loop {
        let mut progressed = false;
        for stream_id in [0, 1] {
            let mut stream = channel.stream(stream_id);
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        progressed = true;
                        let sink = if stream_id == 0 {
                            &mut output.stdout
                        } else {
                            &mut output.stderr
                        };
                        let new = sink.len();
                        sink.extend_from_slice(&buf[..n]);
                        if stream_id == 0 {
                            if let Some(f) = ask.as_mut() {
                                eof_at = f(&buf[..n]);
                            }
                        }
                        let seen = &mut done[stream_id as usize];
                        *seen = *seen || arrived(sink, new, watch.done);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(Failure::Io(e)),
                }
            }
        }
        if !watch.done.is_empty() && done == [true, true] {
            // whole: what is still running there (left behind by the command) is not waited for;
            // nor is the exit status (libssh2 says 0 for one that has not come)
            output.exit_code = None;
            return Ok(output);
        }
        if channel.eof() {
            break;
        }
        let now = Instant::now();
        if let Some(at) = eof_at.filter(|at| now >= *at) {
            match channel.send_eof() {
                Ok(()) => {
                    eof_at = None;
                    ask = None;
                }
                // again at the next turn
                Err(e) if is_eagain(&e) => eof_at = Some(at),
                Err(e) => return Err(Failure::Ssh(e)),
            }
        }
        if !progressed {
            // wake for the EOF to send, if it is due before the deadline (one already due waits
            // for the socket like everything else: libssh2 could not send it yet)
            let until = match eof_at {
                Some(at) if at > now => at.min(deadline),
                _ => deadline,
            };
            if until < deadline {
                wait_socket(probe, fd, until).or_else(|f| match f {
                    Failure::TimedOut => Ok(()),
                    f => Err(f),
                })?;
            } else {
                wait_socket(probe, fd, deadline)?;
            }
        } else if now >= deadline {
            // output that keeps coming (a command that writes on and on) does not move the
            // deadline: the timeout is a hard cap
            return Err(Failure::TimedOut);
        }
    }
    retry(probe, fd, deadline, || channel.wait_close())?;
    let signalled = channel
        .exit_signal()
        .map(|s| s.exit_signal.is_some())
        .unwrap_or(false);
    output.exit_code = if signalled {
        None
    } else {
        channel.exit_status().ok()
    };
    Ok(output)
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

/// Call a non-blocking libssh2 operation until it completes, polling the socket in between.
fn retry<T>(
    probe: &Session,
    fd: RawFd,
    deadline: Instant,
    mut op: impl FnMut() -> Result<T, ssh2::Error>,
) -> Result<T, Failure> {
    loop {
        match op() {
            Ok(value) => return Ok(value),
            Err(e) if is_eagain(&e) => wait_socket(probe, fd, deadline)?,
            Err(e) => return Err(Failure::Ssh(e)),
        }
    }
}

/// Wait until the socket is ready the way libssh2 is blocked on, or the deadline passes.
fn wait_socket(probe: &Session, fd: RawFd, deadline: Instant) -> Result<(), Failure> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Failure::TimedOut);
    }
    // Never sleep long without asking libssh2 again: should it ever hold a complete packet in
    // its own buffer while reporting EAGAIN, the socket would stay quiet; the cap bounds that
    // stall to 100 ms (a few wake-ups a second per waiting session, nothing measurable).
    let remaining = remaining.min(Duration::from_millis(100));
    let (events, cap) = match probe.block_directions() {
        BlockDirections::Inbound => (libc::POLLIN, remaining),
        BlockDirections::Outbound => (libc::POLLOUT, remaining),
        BlockDirections::Both => (libc::POLLIN | libc::POLLOUT, remaining),
        // libssh2 did not say: look again soon
        BlockDirections::None => (libc::POLLIN, remaining.min(Duration::from_millis(5))),
    };
    let millis = i32::try_from(cap.as_millis()).unwrap_or(i32::MAX).max(1);
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, its length is 1; fd stays open while `Inner` lives.
    let rc = unsafe { libc::poll(&mut pfd, 1, millis) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(Failure::Io(e));
        }
    }
    Ok(())
}

/// What `cat -- PATH` left behind on `host`, as a file read: the bytes, or
/// [`SshError::ReadFailed`] with cat's reason ("cat: /x: No such file or directory" -> "no such file
/// or directory"). For callers that ran the `cat` themselves (in a batch of commands).
pub fn cat_result(host: &str, path: &str, output: Output) -> Result<Vec<u8>, SshError> {
    if output.exit_code == Some(0) {
        return Ok(output.stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    let detail = first
        .rsplit_once(": ")
        .map(|(_, reason)| reason)
        .unwrap_or(first);
    let detail = if detail.is_empty() {
        format!("cat exited with {:?}", output.exit_code)
    } else {
        detail.to_lowercase()
    };
    Err(SshError::ReadFailed {
        host: host.to_string(),
        path: path.to_string(),
        detail,
    })
}

/// Quote for a POSIX shell: 'it'\''s'.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/etc/os-release"), "'/etc/os-release'");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn host_key_method_names() {
        let types = vec!["ssh-ed25519".to_string(), "ssh-rsa".to_string()];
        assert_eq!(
            host_key_methods(&types),
            "ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ssh-rsa"
        );
    }

    /// A fresh key made by ssh-keygen in a directory of its own.
    fn keygen(test: &str, kind: &str, passphrase: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ssh-exec-keygen-{}-{test}-{kind}-{}",
            std::process::id(),
            passphrase.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("key");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", passphrase, "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs");
        assert!(made.success());
        path
    }

    #[test]
    fn only_openssh_ed25519_keys_are_signed_in_process() {
        let plain =
            crate::auth::PrivateKey::load(&keygen("which", "ed25519", ""), None).expect("load");
        assert!(plain.ed25519().is_some());
        let secret = crate::auth::Secret::new("correct horse".to_string());
        let locked = keygen("which", "ed25519", "correct horse");
        let decrypted = crate::auth::PrivateKey::load(&locked, Some(&secret)).expect("decrypts");
        assert!(decrypted.ed25519().is_some());
        // the others go to libssh2 as key text, as before
        let ecdsa =
            crate::auth::PrivateKey::load(&keygen("which", "ecdsa", ""), None).expect("load");
        assert!(ecdsa.ed25519().is_none());
    }

    #[test]
    fn the_sign_callback_signs_what_libssh2_hands_it_with_the_key() {
        use ed25519_dalek::Verifier;
        let path = keygen("sign", "ed25519", "");
        let key = crate::auth::PrivateKey::load(&path, None).expect("load");
        let login = key.ed25519().expect("ed25519");
        // the public blob is the one of the .pub file: what authorized_keys holds
        let pub_line = std::fs::read_to_string(path.with_extension("pub")).expect("pub");
        let b64 = pub_line.split_whitespace().nth(1).expect("base64 field");
        let from_file = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(login.public_blob, from_file);
        let data = b"session id and userauth request";
        let mut signer = std::ptr::from_ref(&login.signing)
            .cast_mut()
            .cast::<libc::c_void>();
        let (mut sig, mut sig_len) = (std::ptr::null_mut(), 0);
        // SAFETY: the arguments are what libssh2 passes; the signature is freed below with free().
        let rc = unsafe {
            sign_ed25519(
                std::ptr::null_mut(),
                &mut sig,
                &mut sig_len,
                data.as_ptr(),
                data.len(),
                &mut signer,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(sig_len, 64);
        // SAFETY: 64 bytes from malloc, freed once.
        let bytes = unsafe { std::slice::from_raw_parts(sig, sig_len) }.to_vec();
        unsafe { libc::free(sig.cast()) };
        let signature = ed25519_dalek::Signature::from_slice(&bytes).expect("64 bytes");
        let public = login.signing.verifying_key();
        assert_eq!(&from_file[from_file.len() - 32..], public.as_bytes());
        assert!(public.verify(data, &signature).is_ok());
        assert!(public.verify(b"another message", &signature).is_err());
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn session_is_send_and_sync() {
        assert_send_sync::<SshSession>();
    }
}
