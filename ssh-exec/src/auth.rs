//! Credentials: a private key file, the ssh-agent, or a password. Secrets never come from argv.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::SetupError;

/// A password or passphrase, read from a file or an environment variable (never from argv).
///
/// `Debug` does not print it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret held by a program (from a vault, a prompt...).
    pub fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The first line of a file, without its line ending.
    pub fn from_file(path: &Path) -> Result<Secret, SetupError> {
        let text = std::fs::read_to_string(path).map_err(|source| SetupError::Read {
            what: "secret file",
            path: path.to_path_buf(),
            source,
        })?;
        let line = text.lines().next().unwrap_or("").to_string();
        if line.is_empty() {
            return Err(SetupError::Empty {
                what: format!("secret file {}", path.display()),
            });
        }
        Ok(Secret(line))
    }

    /// The value of an environment variable.
    pub fn from_env(var: &str) -> Result<Secret, SetupError> {
        let value = std::env::var(var).map_err(|_| SetupError::EnvMissing {
            var: var.to_string(),
        })?;
        if value.is_empty() {
            return Err(SetupError::Empty {
                what: format!("environment variable {var}"),
            });
        }
        Ok(Secret(value))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A private key file, read once (and, for a passphrase-protected OpenSSH key, decrypted once)
/// and held in memory for every connection.
///
/// OpenSSH-format keys are decrypted here; a legacy PEM key with a passphrase is handed to
/// libssh2 with its passphrase on each connection.
#[derive(Clone)]
pub struct PrivateKey {
    path: PathBuf,
    text: Secret,
    passphrase: Option<Secret>,
    ed25519: Option<Arc<Ed25519Login>>,
}

/// An OpenSSH ed25519 key, ready to sign logins in process: its public key blob (the wire form
/// the server looks up in authorized_keys) and the signing key.
pub(crate) struct Ed25519Login {
    pub(crate) public_blob: Vec<u8>,
    pub(crate) signing: ed25519_dalek::SigningKey,
}

/// The in-process signer of a decrypted OpenSSH key, where it is ed25519.
fn ed25519_login(key: &ssh_key::PrivateKey) -> Option<Arc<Ed25519Login>> {
    let pair = key.key_data().ed25519()?;
    Some(Arc::new(Ed25519Login {
        public_blob: key.public_key().to_bytes().ok()?,
        signing: ed25519_dalek::SigningKey::from(&pair.private),
    }))
}

/// The key type an OpenSSH private key file names in its clear header (the public key's type,
/// e.g. `ecdsa-sha2-nistp256`), where the file is that format at all.
fn openssh_key_type(text: &str) -> Option<String> {
    use base64::Engine;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let mut rest = blob.strip_prefix(b"openssh-key-v1\0")?;
    // cipher, KDF, KDF options, the number of keys; then the first public key's blob
    for _ in 0..3 {
        wire_string(&mut rest)?;
    }
    wire_u32(&mut rest)?;
    crate::known_hosts::key_type_of(wire_string(&mut rest)?)
}

/// The next big-endian u32 of an SSH wire encoding.
fn wire_u32(rest: &mut &[u8]) -> Option<u32> {
    let (head, tail) = rest.split_at_checked(4)?;
    *rest = tail;
    Some(u32::from_be_bytes(head.try_into().ok()?))
}

/// The next length-prefixed string of an SSH wire encoding.
fn wire_string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = wire_u32(rest)? as usize;
    let (value, tail) = rest.split_at_checked(len)?;
    *rest = tail;
    Some(value)
}

impl PrivateKey {
    /// Read `path`; decrypt it with `passphrase` if it is an encrypted OpenSSH key.
    pub fn load(path: &Path, passphrase: Option<&Secret>) -> Result<PrivateKey, SetupError> {
        let text = std::fs::read_to_string(path).map_err(|source| SetupError::Read {
            what: "private key",
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |detail: String| SetupError::Key {
            path: path.to_path_buf(),
            detail,
        };
        if !text.contains("BEGIN OPENSSH PRIVATE KEY") {
            return Ok(PrivateKey {
                path: path.to_path_buf(),
                text: Secret(text),
                passphrase: passphrase.cloned(),
                ed25519: None,
            });
        }
        let key = match ssh_key::PrivateKey::from_openssh(&text) {
            Ok(key) => key,
            // ssh-key refuses some keys OpenSSH and libssh2 read: an ECDSA key whose private
            // scalar OpenSSH wrote one byte short (its top byte zero: one key in 256) is "length
            // invalid". Only ed25519 keys are signed in process; any other type goes to libssh2
            // as the file says, as every key did before, with its passphrase.
            Err(e) => match openssh_key_type(&text) {
                Some(kind) if kind != "ssh-ed25519" => {
                    return Ok(PrivateKey {
                        path: path.to_path_buf(),
                        text: Secret(text),
                        passphrase: passphrase.cloned(),
                        ed25519: None,
                    })
                }
                _ => return Err(bad(format!("not a valid OpenSSH private key: {e}"))),
            },
        };
        if !key.is_encrypted() {
            return Ok(PrivateKey {
                path: path.to_path_buf(),
                ed25519: ed25519_login(&key),
                text: Secret(text),
                passphrase: None,
            });
        }
        let passphrase = passphrase
            .ok_or_else(|| bad("the key is encrypted and no passphrase was given".to_string()))?;
        let key = key
            .decrypt(passphrase.expose())
            .map_err(|_| bad("wrong passphrase".to_string()))?;
        let plain = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| bad(format!("cannot re-encode the decrypted key: {e}")))?;
        Ok(PrivateKey {
            path: path.to_path_buf(),
            ed25519: ed25519_login(&key),
            text: Secret(plain.to_string()),
            passphrase: None,
        })
    }

    /// The file the key came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn text(&self) -> &str {
        self.text.expose()
    }

    pub(crate) fn passphrase(&self) -> Option<&str> {
        self.passphrase.as_ref().map(Secret::expose)
    }

    /// Set for an OpenSSH ed25519 key: the login is signed in process.
    pub(crate) fn ed25519(&self) -> Option<&Ed25519Login> {
        self.ed25519.as_deref()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// How to log in.
#[derive(Debug, Clone)]
pub enum SshAuth {
    /// A private key (ed25519, ecdsa, rsa) loaded with [`PrivateKey::load`].
    Key(PrivateKey),
    /// Every identity the ssh-agent at `SSH_AUTH_SOCK` holds, in its order.
    Agent,
    /// Password authentication (or keyboard-interactive answering every prompt with it).
    Password(Secret),
}

impl SshAuth {
    /// Convenience: [`PrivateKey::load`] wrapped in [`SshAuth::Key`].
    pub fn key_file(path: &Path, passphrase: Option<&Secret>) -> Result<SshAuth, SetupError> {
        PrivateKey::load(path, passphrase).map(SshAuth::Key)
    }

    /// One word for error messages.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            SshAuth::Key(_) => "publickey",
            SshAuth::Agent => "agent",
            SshAuth::Password(_) => "password",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway key made by `ssh-keygen -t ecdsa` (the 441st of a loop that looked for one)
    /// whose P-256 private scalar OpenSSH wrote in 31 bytes: its top byte is zero, as in one key
    /// in 256. ssh-key cannot read it; libssh2 can (`tests/it`: a login with it).
    const SHORT_SCALAR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ecdsa-p256-short-scalar"
    );

    #[test]
    fn an_ecdsa_key_ssh_key_cannot_read_goes_to_libssh2() {
        let text = std::fs::read_to_string(SHORT_SCALAR).expect("fixture");
        assert!(
            ssh_key::PrivateKey::from_openssh(&text).is_err(),
            "the case this covers: ssh-key refuses the key"
        );
        assert_eq!(
            openssh_key_type(&text).as_deref(),
            Some("ecdsa-sha2-nistp256")
        );
        let key = PrivateKey::load(Path::new(SHORT_SCALAR), None).expect("loads");
        assert!(key.ed25519().is_none());
        assert_eq!(key.text(), text);
    }

    #[test]
    fn a_file_that_is_no_openssh_key_is_still_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("ssh-exec-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, text) in [
            ("garbage", "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"),
            ("empty", "-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            let e = PrivateKey::load(&path, None).expect_err(name);
            assert!(
                e.to_string().contains("not a valid OpenSSH private key"),
                "{name}: {e}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
