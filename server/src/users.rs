//! People who use the web pages: accounts (argon2id password hashes), sessions kept in the
//! database (so several server processes share them), the login rate limit, and CSRF tokens.
//!
//! API keys never open a session and a session never signs an API request: the two doors are
//! apart (`auth.rs` for `/api/v1/*`, [`crate::ui`] for `/ui/*`).

use anyhow::{bail, Context};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::db::Db;

/// What a person may do on the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also registers hosts, creates and revokes keys, edits hand-entered fields, manages users.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Failed logins allowed per user name in [`LOGIN_WINDOW_SECS`], and per client address.
pub const MAX_FAILURES_PER_USER: i64 = 5;
pub const MAX_FAILURES_PER_ADDRESS: i64 = 20;
pub const LOGIN_WINDOW_SECS: i64 = 900;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 8;

pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'@'));
    if !ok {
        bail!("user name {name:?} must be 1 to 64 characters of a-z, A-Z, 0-9, '-', '_', '.', '@'");
    }
    Ok(())
}

pub fn check_password(password: &str) -> anyhow::Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    if password.len() > 1024 {
        bail!("the password must be at most 1024 bytes");
    }
    Ok(())
}

/// An argon2id PHC string (argon2's default parameters: m = 19 MiB, t = 2, p = 1).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the user does not exist, so that a wrong name costs as long
/// as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub async fn add(db: &Db, name: &str, role: Role, password: &str) -> anyhow::Result<()> {
    check_name(name)?;
    check_password(password)?;
    let hash = hash_password(password)?;
    let now = crate::clock::now();
    let done = sqlx::query(
        "INSERT INTO users (name, role, password_hash, created_at, password_changed_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(hash)
    .bind(now)
    .execute(&db.write)
    .await
    .context("cannot store the user")?;
    if done.rows_affected() == 0 {
        bail!("user {name:?} exists already");
    }
    Ok(())
}

/// One account, as `users list` and the users page show it.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub sessions: i64,
}

pub async fn list(db: &Db) -> anyhow::Result<Vec<UserRow>> {
    let rows = sqlx::query(
        "SELECT u.name, u.role, u.created_at, \
         (SELECT COUNT(*) FROM sessions s WHERE s.user_name = u.name AND s.expires_at > $1) AS n \
         FROM users u ORDER BY lower(u.name)",
    )
    .bind(crate::clock::now())
    .fetch_all(&db.read)
    .await
    .context("cannot list the users")?;
    rows.iter()
        .map(|r| {
            Ok(UserRow {
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                created_at: r.try_get("created_at")?,
                sessions: r.try_get("n")?,
            })
        })
        .collect()
}

/// Removes a user and their sessions.
pub async fn remove(db: &Db, name: &str) -> anyhow::Result<()> {
    let mut tx = db
        .begin_write()
        .await
        .context("cannot reach the database")?;
    sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM users WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        bail!("no user named {name:?}");
    }
    tx.commit().await.context("cannot remove the user")?;
    Ok(())
}

/// Sets a new password and ends every session of the user.
pub async fn set_password(db: &Db, name: &str, password: &str) -> anyhow::Result<()> {
    check_password(password)?;
    let hash = hash_password(password)?;
    let mut tx = db
        .begin_write()
        .await
        .context("cannot reach the database")?;
    let done = sqlx::query(
        "UPDATE users SET password_hash = $1, password_changed_at = $2 WHERE name = $3",
    )
    .bind(hash)
    .bind(crate::clock::now())
    .bind(name)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        bail!("no user named {name:?}");
    }
    sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("cannot store the password")?;
    Ok(())
}

/// A logged-in person, from a valid session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the system's random source");
    hex::encode(b)
}

/// What a login attempt came to.
pub enum Login {
    /// The session token for the cookie.
    Ok(String),
    Refused,
    /// Too many failures lately for this user or address.
    Throttled,
}

/// Checks a name and password (rate-limited per user and per address, in the database so that
/// every server process counts the same failures) and opens a session.
pub async fn login(
    db: &Db,
    name: &str,
    password: &str,
    address: &str,
    ttl_secs: i64,
) -> Result<Login, sqlx::Error> {
    let now = crate::clock::now();
    let since = now - LOGIN_WINDOW_SECS;
    let user_subject = format!("user:{}", name.to_ascii_lowercase());
    let addr_subject = format!("addr:{address}");
    let count = |subject: String| async move {
        sqlx::query("SELECT COUNT(*) AS n FROM login_failures WHERE subject = $1 AND at > $2")
            .bind(subject)
            .bind(since)
            .fetch_one(&db.read)
            .await
            .and_then(|r| r.try_get::<i64, _>("n"))
    };
    if count(user_subject.clone()).await? >= MAX_FAILURES_PER_USER
        || count(addr_subject.clone()).await? >= MAX_FAILURES_PER_ADDRESS
    {
        tracing::warn!(user = name, address, "login throttled");
        return Ok(Login::Throttled);
    }
    let row = sqlx::query("SELECT name, password_hash FROM users WHERE lower(name) = lower($1)")
        .bind(name)
        .fetch_optional(&db.read)
        .await?;
    let (stored_name, hash) = match &row {
        Some(r) => (
            Some(r.try_get::<String, _>("name")?),
            r.try_get("password_hash")?,
        ),
        None => (None, dummy_hash().to_owned()),
    };
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = stored_name.filter(|_| ok) else {
        let mut tx = db.begin_write().await?;
        for subject in [&user_subject, &addr_subject] {
            sqlx::query("INSERT INTO login_failures (subject, at) VALUES ($1, $2)")
                .bind(subject)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM login_failures WHERE at < $1")
            .bind(since)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(user = name, address, "login refused");
        return Ok(Login::Refused);
    };
    let token = random_token();
    let mut tx = db.begin_write().await?;
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash(&token))
    .bind(&user)
    .bind(random_token())
    .bind(now)
    .bind(now + ttl_secs)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM login_failures WHERE subject = $1")
        .bind(&user_subject)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user, address, "login");
    Ok(Login::Ok(token))
}

/// The session a cookie's token opens, if it has not expired.
pub async fn session(db: &Db, token: &str) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT s.user_name, s.csrf, u.role FROM sessions s \
         JOIN users u ON u.name = s.user_name WHERE s.id_hash = $1 AND s.expires_at > $2",
    )
    .bind(token_hash(token))
    .bind(crate::clock::now())
    .fetch_optional(&db.read)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Session {
        user: r.try_get("user_name")?,
        role: Role::parse(&r.try_get::<String, _>("role")?).unwrap_or(Role::Viewer),
        csrf: r.try_get("csrf")?,
    }))
}

pub async fn logout(db: &Db, token: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(token_hash(token))
        .execute(&db.write)
        .await?;
    Ok(())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Reads a password from standard input: one line (a terminal gets a prompt and no echo).
pub fn read_password(prompt: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "garbage"));
    }

    #[test]
    fn names_and_passwords_are_checked() {
        assert!(check_name("alice").is_ok() && check_name("a b").is_err());
        assert!(check_password("short").is_err() && check_password("long enough").is_ok());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
