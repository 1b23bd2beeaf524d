//! The database: chosen from the URL scheme, opened through sqlx's `Any` driver, migrated from the
//! SQL files under `server/migrations/<backend>/` (compiled into the binary).
//!
//! One code base serves SQLite and PostgreSQL because every query sticks to the common dialect
//! (`$N` placeholders, `ON CONFLICT`, BIGINT and TEXT columns); the few differences (row locks,
//! pragmas, key types in the schema) are looked up on [`Backend`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

/// Which server sits behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names, or an error that says which schemes are known.
    pub fn from_url(url: &str) -> anyhow::Result<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or(url);
            bail!("unsupported database url scheme {scheme:?}: use sqlite://PATH or postgres://...")
        }
    }

    /// The clause that locks the rows a `SELECT` reads until the transaction ends. SQLite needs
    /// none: its single writer connection serialises every write transaction.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    fn migrations(self) -> &'static [(i64, &'static str, &'static str)] {
        match self {
            Backend::Sqlite => &[
                (
                    1,
                    "init",
                    include_str!("../migrations/sqlite/0001_init.sql"),
                ),
                (
                    2,
                    "contract_and_trust",
                    include_str!("../migrations/sqlite/0002_contract_and_trust.sql"),
                ),
            ],
            Backend::Postgres => &[
                (
                    1,
                    "init",
                    include_str!("../migrations/postgres/0001_init.sql"),
                ),
                (
                    2,
                    "contract_and_trust",
                    include_str!("../migrations/postgres/0002_contract_and_trust.sql"),
                ),
            ],
        }
    }
}

/// The path of a `sqlite://PATH` URL (`sqlite:///abs/path` or `sqlite://relative/path`).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Connection pools. On SQLite, `write` holds one connection (SQLite has one writer; queuing in the
/// pool is cheaper than retrying `SQLITE_BUSY`) and `read` several; on PostgreSQL both are one pool.
#[derive(Clone)]
pub struct Db {
    pub backend: Backend,
    pub read: AnyPool,
    pub write: AnyPool,
}

impl Db {
    /// Opens (and for SQLite creates) the database; does not migrate.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        match backend {
            Backend::Sqlite => {
                let path = sqlite_path(url).with_context(|| {
                    format!("sqlite url {url:?} names no file: use sqlite://PATH")
                })?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the database directory {}", dir.display())
                    })?;
                }
                let full = format!("sqlite://{}?mode=rwc", path.display());
                let options = AnyConnectOptions::from_str(&full)
                    .with_context(|| format!("bad sqlite url {url:?}"))?;
                let pool = |n: u32| {
                    AnyPoolOptions::new()
                        .max_connections(n)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(|conn, _meta| {
                            Box::pin(async move {
                                for pragma in [
                                    "PRAGMA journal_mode = WAL",
                                    "PRAGMA synchronous = NORMAL",
                                    "PRAGMA busy_timeout = 10000",
                                    "PRAGMA foreign_keys = ON",
                                    "PRAGMA cache_size = -16000",
                                ] {
                                    conn.execute(pragma).await?;
                                }
                                Ok(())
                            })
                        })
                };
                let write = pool(1)
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("cannot open sqlite database {}", path.display()))?;
                let read = pool(max_connections.max(1))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open sqlite database {}", path.display()))?;
                Ok(Db {
                    backend,
                    read,
                    write,
                })
            }
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url).context("bad postgres url")?;
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(2))
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await
                    .context("cannot connect to postgres")?;
                Ok(Db {
                    backend,
                    read: pool.clone(),
                    write: pool,
                })
            }
        }
    }

    /// Applies the migrations this database has not seen yet; returns how many it applied.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        let mut conn = self
            .write
            .acquire()
            .await
            .context("cannot reach the database")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("cannot create the schema_migrations table")?;
        let done: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await
            .context("cannot read the schema_migrations table")?
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<_, _>>()?;
        drop(conn);
        let mut applied = 0;
        for (version, name, sql) in self.backend.migrations() {
            if done.contains(version) {
                continue;
            }
            let mut tx = self.write.begin().await?;
            for statement in split_statements(sql) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("migration {version} ({name}) failed"))?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(*version)
            .bind(*name)
            .bind(crate::clock::now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::info!(version, name, "migration applied");
            applied += 1;
        }
        Ok(applied)
    }
}

/// Splits a migration file into statements: `;` ends one; `--` comments are dropped.
fn split_statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether an error is a lost race (unique key taken, serialization failure, deadlock) that a
/// retry of the whole transaction resolves.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    match err.as_database_error() {
        Some(e) => {
            e.is_unique_violation()
                || matches!(
                    e.code().as_deref(),
                    Some("40001" | "40P01" | "5" | "6" | "517")
                )
        }
        None => false,
    }
}

/// The default master-key file for a database URL: next to the SQLite file, or in the working
/// directory for PostgreSQL.
pub fn default_master_key(url: &str) -> PathBuf {
    match sqlite_path(url) {
        Some(p) => {
            let mut s = p.into_os_string();
            s.push(".master-key");
            PathBuf::from(s)
        }
        None => Path::new("auto-server.master-key").to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_backend() {
        assert_eq!(
            Backend::from_url("sqlite://x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::from_url("mysql://h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("unsupported database url scheme \"mysql\"")));
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite:///tmp/a.db"),
            Some(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(
            sqlite_path("sqlite://a.db?mode=rwc"),
            Some(PathBuf::from("a.db"))
        );
        assert_eq!(
            default_master_key("sqlite:///tmp/a.db"),
            PathBuf::from("/tmp/a.db.master-key")
        );
    }

    #[test]
    fn migrations_split_into_statements() {
        let s = split_statements("-- c\nCREATE TABLE a (x BIGINT);\n\nCREATE INDEX i ON a (x);\n");
        assert_eq!(s.len(), 2);
    }
}
