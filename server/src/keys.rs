//! API keys: each agent's HMAC secret, stored encrypted under the server's master key.
//!
//! HMAC verification needs the secret itself, so a hash would be useless. The secret is sealed
//! with ChaCha20-Poly1305 under a 32-byte master key that lives in a file of its own (mode 0600,
//! created on first use, next to the SQLite file by default): a copy of the database alone does
//! not give the keys away. The key's name is the AEAD's associated data, so a sealed secret cannot
//! be moved to another name.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sqlx::Row;

use crate::auth::Scope;
use crate::db::Db;

/// The server's master key, loaded from its file.
#[derive(Clone)]
pub struct MasterKey(ChaCha20Poly1305);

impl MasterKey {
    /// Reads the master-key file, or creates it (mode 0600) with a fresh random key.
    pub fn load_or_create(path: &Path) -> anyhow::Result<MasterKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text.trim()).with_context(|| {
                format!("master key file {} is not 64 hex digits", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>()?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create master key file {}", path.display()))?;
                writeln!(file, "{}", hex::encode(key))
                    .with_context(|| format!("cannot write master key file {}", path.display()))?;
                tracing::info!(path = %path.display(), "master key created");
                Ok(MasterKey(ChaCha20Poly1305::new(Key::from_slice(&key))))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot read master key file {}", path.display()))
            }
        }
    }

    fn parse(text: &str) -> Option<MasterKey> {
        let bytes = hex::decode(text).ok()?;
        (bytes.len() == 32).then(|| MasterKey(ChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    pub(crate) fn seal(&self, name: &str, secret: &str) -> anyhow::Result<String> {
        let nonce = random_bytes::<12>()?;
        let sealed = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot encrypt the secret of key {name:?}"))?;
        Ok(format!("{}{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// The secret of a sealed key, or `None` when it does not open under this master key.
    pub fn open(&self, name: &str, sealed_hex: &str) -> Option<Vec<u8>> {
        let bytes = hex::decode(sealed_hex).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(12);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .ok()
    }
}

pub fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).context("the system random source failed")?;
    Ok(buf)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        bail!("key name {name:?} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_', '.'");
    }
    Ok(())
}

/// Makes a key with a scope and returns its secret (64 hex digits; the HMAC key is this text's
/// bytes). A host key is bound to the host's id: the host is registered (without an address) if
/// no host has that name yet, and a rename keeps the binding.
pub async fn create(
    db: &Db,
    master: &MasterKey,
    name: &str,
    scope: ScopeRequest<'_>,
) -> anyhow::Result<String> {
    check_name(name)?;
    let secret = hex::encode(random_bytes::<32>()?);
    let sealed = master.seal(name, &secret)?;
    let mut tx = db
        .begin_write()
        .await
        .context("cannot reach the database")?;
    let (scope_name, host_id) = match scope {
        ScopeRequest::Fleet => ("fleet", None),
        ScopeRequest::Read => ("read", None),
        ScopeRequest::Admin => ("admin", None),
        ScopeRequest::Host(hostname) => {
            if !crate::report::valid_hostname(hostname) {
                bail!("{hostname:?} is not a valid host name");
            }
            sqlx::query(
                "INSERT INTO hosts (hostname, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(hostname)
            .bind(crate::clock::now())
            .execute(&mut *tx)
            .await
            .context("cannot register the host")?;
            let id: i64 = sqlx::query("SELECT id FROM hosts WHERE lower(hostname) = lower($1)")
                .bind(hostname)
                .fetch_one(&mut *tx)
                .await
                .context("cannot read the host")?
                .try_get(0)?;
            ("host", Some(id))
        }
    };
    let done = sqlx::query(
        "INSERT INTO api_keys (name, secret_enc, created_at, scope, host_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(sealed)
    .bind(crate::clock::now())
    .bind(scope_name)
    .bind(host_id)
    .execute(&mut *tx)
    .await
    .context("cannot store the key")?;
    if done.rows_affected() == 0 {
        bail!("key {name:?} exists already: revoke it or choose another name");
    }
    tx.commit().await.context("cannot store the key")?;
    Ok(secret)
}

/// The scope asked for on the command line (a host by name; stored as its id).
#[derive(Debug, Clone, Copy)]
pub enum ScopeRequest<'a> {
    Fleet,
    Host(&'a str),
    Read,
    Admin,
}

/// One key, as `keys list` shows it.
#[derive(Debug)]
pub struct KeyRow {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub scope: String,
    /// The bound host's current name (host keys).
    pub hostname: Option<String>,
}

/// Every key: name, created, revoked, scope and bound host (never secrets).
pub async fn list(db: &Db) -> anyhow::Result<Vec<KeyRow>> {
    let rows = sqlx::query(
        "SELECT k.name, k.created_at, k.revoked_at, k.scope, h.hostname \
         FROM api_keys k LEFT JOIN hosts h ON h.id = k.host_id ORDER BY k.name",
    )
    .fetch_all(&db.read)
    .await
    .context("cannot list the keys")?;
    rows.iter()
        .map(|r| {
            Ok(KeyRow {
                name: r.try_get(0)?,
                created_at: r.try_get(1)?,
                revoked_at: r.try_get(2)?,
                scope: r.try_get(3)?,
                hostname: r.try_get(4)?,
            })
        })
        .collect()
}

/// Revokes a key: requests signed with it are refused from now on. The name stays taken.
pub async fn revoke(db: &Db, name: &str) -> anyhow::Result<()> {
    let done =
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
            .bind(crate::clock::now())
            .bind(name)
            .execute(&db.write)
            .await
            .context("cannot revoke the key")?;
    if done.rows_affected() == 0 {
        bail!("no active key named {name:?}");
    }
    Ok(())
}

/// An active key's secret and scope, for verifying a request.
pub struct ActiveKey {
    pub secret: Vec<u8>,
    pub scope: Scope,
    /// Its sealed secret as stored: which key of that name it is (a name freed by its host's
    /// removal may be given to a new key).
    pub sealed: String,
}

/// At most this many keys are kept in a [`KeyCache`] (one per agent with a host key: a fleet of
/// this many agents verifies without reading the keys table); past it, the cache starts empty
/// again.
pub const KEY_CACHE_MAX: usize = 16_384;

/// The keys that verified a report request lately, by name: the next report signed with one is
/// verified without reading `api_keys` or opening the sealed secret. Only a key whose signature
/// verified is put in (a request with an unknown name or a bad signature cannot fill it). The
/// cache never decides that a key is active: the report's transaction records the request's
/// nonce only while the key's row is still active and holds the same sealed secret
/// (`auth::record_report_nonce`, the nonce statement of `ingest`), so a key revoked by any
/// process, the pages or `auto-server keys revoke`, is refused from the next report on; the
/// refusal drops the entry. Other requests read the key from the database each time.
#[derive(Default)]
pub struct KeyCache {
    keys: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<ActiveKey>>>,
}

impl KeyCache {
    pub fn get(&self, name: &str) -> Option<std::sync::Arc<ActiveKey>> {
        self.keys.lock().ok()?.get(name).cloned()
    }

    pub fn insert(&self, name: &str, key: std::sync::Arc<ActiveKey>) {
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= KEY_CACHE_MAX && !keys.contains_key(name) {
                keys.clear();
            }
            keys.insert(name.to_owned(), key);
        }
    }

    pub fn forget(&self, name: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(name);
        }
    }
}

/// The active key of that name; `None` when there is none, it does not open under the master key,
/// or its scope is unknown to this version (each logged).
pub async fn lookup(
    db: &Db,
    master: &MasterKey,
    name: &str,
) -> Result<Option<ActiveKey>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT secret_enc, scope, host_id FROM api_keys WHERE name = $1 AND revoked_at IS NULL",
    )
    .bind(name)
    .fetch_optional(&db.read)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: String = row.try_get(0)?;
    let scope_name: String = row.try_get(1)?;
    let host_id: Option<i64> = row.try_get(2)?;
    let Some(scope) = Scope::from_row(&scope_name, host_id) else {
        tracing::error!(key = %name, scope = %scope_name, "stored key has an unknown scope: refused");
        return Ok(None);
    };
    let Some(secret) = master.open(name, &sealed) else {
        tracing::error!(key = %name, "stored key does not open under the master key: wrong master key file?");
        return Ok(None);
    };
    Ok(Some(ActiveKey {
        secret,
        scope,
        sealed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_under_its_name() {
        let master = MasterKey::parse(&"ab".repeat(32)).expect("valid key");
        let sealed = master.seal("agent", "s3cret").expect("seals");
        assert_eq!(master.open("agent", &sealed), Some(b"s3cret".to_vec()));
        assert_eq!(master.open("other", &sealed), None);
        assert!(!sealed.contains(&hex::encode("s3cret")));
    }
}
