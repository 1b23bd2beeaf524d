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
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor, Row};

/// Which server sits behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migration: version (the order, and the key in `schema_migrations`), name, SQL text.
type Migration = (i64, &'static str, &'static str);

/// Migrations whose text differs between the dialects (key types, index kinds).
const SQLITE_MIGRATIONS: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        3,
        "web_ui",
        include_str!("../migrations/sqlite/0003_web_ui.sql"),
    ),
    (
        7,
        "webhooks",
        include_str!("../migrations/sqlite/0007_webhooks.sql"),
    ),
    (
        8,
        "dashboard",
        include_str!("../migrations/sqlite/0008_dashboard.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[Migration] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        3,
        "web_ui",
        include_str!("../migrations/postgres/0003_web_ui.sql"),
    ),
    (
        7,
        "webhooks",
        include_str!("../migrations/postgres/0007_webhooks.sql"),
    ),
    (
        8,
        "dashboard",
        include_str!("../migrations/postgres/0008_dashboard.sql"),
    ),
];
/// Migrations whose text is the same on both (`migrations/common/`).
const COMMON_MIGRATIONS: &[Migration] = &[
    (
        2,
        "contract_and_trust",
        include_str!("../migrations/common/0002_contract_and_trust.sql"),
    ),
    (
        4,
        "list_digests",
        include_str!("../migrations/common/0004_list_digests.sql"),
    ),
    (
        5,
        "heartbeat",
        include_str!("../migrations/common/0005_heartbeat.sql"),
    ),
    (
        6,
        "retention",
        include_str!("../migrations/common/0006_retention.sql"),
    ),
    (
        9,
        "guest_index",
        include_str!("../migrations/common/0009_guest_index.sql"),
    ),
];

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

    /// The backend a connection talks to.
    pub fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A `FROM` item over the elements of the JSON array bound as parameter `$n`, one row each,
    /// the element as column `j.value`: an array of strings gives their text, an array of arrays
    /// gives each inner array (read its fields with `j.value ->> 0`, `->> 1`, ...: text, or NULL
    /// for a JSON `null`). One statement and one parameter for any number of rows: the SQL text
    /// is the same whatever the count, so it is prepared once per connection (a `VALUES` list of
    /// N rows is a new statement for every N).
    pub fn json_rows(self, n: usize, texts: bool) -> String {
        match (self, texts) {
            (Backend::Sqlite, _) => format!("json_each(${n}) AS j"),
            (Backend::Postgres, true) => {
                format!("json_array_elements_text(${n}::json) AS j(value)")
            }
            (Backend::Postgres, false) => format!("json_array_elements(${n}::json) AS j(value)"),
        }
    }

    /// An aggregate of `expr` over the rows as the text of a JSON array (NULL over no rows on
    /// PostgreSQL, `[]` on SQLite): one value to decode instead of a row each.
    pub fn json_agg(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_group_array({expr})"),
            Backend::Postgres => format!("CAST(json_agg({expr}) AS TEXT)"),
        }
    }

    /// Every migration of this backend, by version: its own (`migrations/sqlite/`,
    /// `migrations/postgres/`) and the shared ones (`migrations/common/`).
    fn migrations(self) -> Vec<Migration> {
        let own = match self {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let mut all: Vec<Migration> = own.iter().chain(COMMON_MIGRATIONS).copied().collect();
        all.sort_by_key(|m| m.0);
        all
    }
}

/// Creates the SQLite file mode 0600 (SQLite gives its `-wal` and `-shm` files the database
/// file's mode), and narrows the files of an older, 0644 database to 0600: they hold the
/// inventory and the sealed keys.
fn private_files(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create the database file {}", path.display()))
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot make {} private (0600)", file.display()))?;
                tracing::info!(file = %file.display(), "database file made private (0600)");
            }
        }
    }
    Ok(())
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

/// Makes SQLite allocate through the program's allocator (mimalloc, `main.rs`) instead of the C
/// library's `malloc`, and without its memory statistics (a global mutex taken on every
/// allocation). SQLite allocates and frees on every statement (the pages it journals, each
/// row's record); with glibc's `malloc` that was a tenth of the writer thread's time in a profile
/// of `scripts/bench-server.sh`. Must run before SQLite initialises (the first connection);
/// afterwards SQLite refuses the change and keeps its own allocator, which is only slower.
fn sqlite_allocator() {
    use libsqlite3_sys as ffi;
    use std::alloc::Layout;
    use std::os::raw::{c_int, c_void};

    /// Each block starts with its size (what `xSize` answers and `dealloc` needs), padded to the
    /// alignment.
    const HEADER: usize = 16;

    fn layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
    }
    unsafe extern "C" fn x_malloc(n: c_int) -> *mut c_void {
        let Some(layout) = usize::try_from(n).ok().and_then(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: the layout is non-zero (HEADER); the block is large enough for its header
        unsafe {
            let base = std::alloc::alloc(layout);
            if base.is_null() {
                return base.cast();
            }
            base.cast::<usize>().write(layout.size() - HEADER);
            base.add(HEADER).cast()
        }
    }
    unsafe extern "C" fn x_free(p: *mut c_void) {
        if p.is_null() {
            return;
        }
        // SAFETY: `p` came from x_malloc or x_realloc: its header is HEADER bytes before it
        unsafe {
            let base = p.cast::<u8>().sub(HEADER);
            let size = base.cast::<usize>().read();
            std::alloc::dealloc(
                base,
                Layout::from_size_align_unchecked(size + HEADER, HEADER),
            );
        }
    }
    unsafe extern "C" fn x_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        if p.is_null() {
            // SAFETY: as x_malloc
            return unsafe { x_malloc(n) };
        }
        let Some(new) = usize::try_from(n).ok().and_then(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `p` came from x_malloc or x_realloc (header before it); on failure the old
        // block is left as it was, as SQLite expects
        unsafe {
            let base = p.cast::<u8>().sub(HEADER);
            let size = base.cast::<usize>().read();
            let old = Layout::from_size_align_unchecked(size + HEADER, HEADER);
            let moved = std::alloc::realloc(base, old, new.size());
            if moved.is_null() {
                return moved.cast();
            }
            moved.cast::<usize>().write(new.size() - HEADER);
            moved.add(HEADER).cast()
        }
    }
    unsafe extern "C" fn x_size(p: *mut c_void) -> c_int {
        if p.is_null() {
            return 0;
        }
        // SAFETY: `p` came from x_malloc or x_realloc
        let size = unsafe { p.cast::<u8>().sub(HEADER).cast::<usize>().read() };
        c_int::try_from(size).unwrap_or(c_int::MAX)
    }
    unsafe extern "C" fn x_roundup(n: c_int) -> c_int {
        n.saturating_add(7) & !7
    }
    unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn x_shutdown(_: *mut c_void) {}

    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(x_malloc),
            xFree: Some(x_free),
            xRealloc: Some(x_realloc),
            xSize: Some(x_size),
            xRoundup: Some(x_roundup),
            xInit: Some(x_init),
            xShutdown: Some(x_shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: sqlite3_config is called before any connection is opened (else it answers
        // SQLITE_MISUSE and changes nothing); SQLite copies the methods
        let (status, malloc) = unsafe {
            (
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &methods as *const _),
            )
        };
        if status != ffi::SQLITE_OK || malloc != ffi::SQLITE_OK {
            tracing::debug!(status, malloc, "SQLite keeps its own allocator");
        }
    });
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
                sqlite_allocator();
                let path = sqlite_path(url).with_context(|| {
                    format!("sqlite url {url:?} names no file: use sqlite://PATH")
                })?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the database directory {}", dir.display())
                    })?;
                }
                private_files(&path)?;
                let full = format!("sqlite://{}?mode=rwc", path.display());
                let options = AnyConnectOptions::from_str(&full)
                    .with_context(|| format!("bad sqlite url {url:?}"))?;
                // The writer commits with `synchronous = FULL`: the WAL is synced at every commit,
                // so an acknowledged report survives a power cut too, not only a process exit
                // (`NORMAL` would keep it on a crash of the process but could lose the last
                // commits on a crash of the machine). Readers never write: `NORMAL` is enough.
                let pool = |n: u32, synchronous: &'static str| {
                    AnyPoolOptions::new()
                        .max_connections(n)
                        .min_connections(1)
                        .acquire_timeout(Duration::from_secs(30))
                        .after_connect(move |conn, _meta| {
                            Box::pin(async move {
                                for pragma in [
                                    "PRAGMA journal_mode = WAL",
                                    synchronous,
                                    "PRAGMA busy_timeout = 10000",
                                    "PRAGMA foreign_keys = ON",
                                    "PRAGMA cache_size = -16000",
                                    // the savepoint of each report in a group (ingest::Writer)
                                    // journals the pages it changes: in memory, not a temp file
                                    "PRAGMA temp_store = MEMORY",
                                ] {
                                    conn.execute(pragma).await?;
                                }
                                Ok(())
                            })
                        })
                };
                let write = pool(1, "PRAGMA synchronous = FULL")
                    .connect_with(options.clone())
                    .await
                    .with_context(|| format!("cannot open sqlite database {}", path.display()))?;
                let read = pool(max_connections.max(1), "PRAGMA synchronous = NORMAL")
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
        // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against another server doing the
        // same at the same moment: under the migration lock
        let mut tx = self
            .begin_write()
            .await
            .context("cannot reach the database")?;
        self.migration_lock(&mut tx).await?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("cannot create the schema_migrations table")?;
        tx.commit().await?;
        let mut conn = self
            .write
            .acquire()
            .await
            .context("cannot reach the database")?;
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
            if done.contains(&version) {
                continue;
            }
            let mut tx = self.begin_write().await?;
            // Several servers may start at once on one database: one applies each migration, the
            // others wait for it (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped
            // advisory lock), then see it applied and skip it.
            self.migration_lock(&mut tx).await?;
            let applied_meanwhile =
                sqlx::query("SELECT 1 FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
            if applied_meanwhile {
                tx.rollback().await?;
                continue;
            }
            for statement in split_statements(sql) {
                sqlx::query(&statement)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("migration {version} ({name}) failed"))?;
            }
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name)
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

impl Db {
    /// Serialises migrations between server processes for the rest of `tx`: a
    /// transaction-scoped advisory lock on PostgreSQL (SQLite's `BEGIN IMMEDIATE` already does).
    async fn migration_lock(&self, tx: &mut WriteTx) -> anyhow::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7243013561)")
                .execute(&mut **tx)
                .await
                .context("cannot take the migration lock")?;
        }
        Ok(())
    }
}

/// A write transaction on the write pool that never leaves a connection inside a transaction.
///
/// sqlx's own `Transaction` counts its depth on the connection and only lowers it when `COMMIT` or
/// `ROLLBACK` succeeds: after a `COMMIT` that failed (SQLite's `SQLITE_FULL` on a full disk) the
/// connection went back to the pool believing it was still in a transaction, so the next `begin`
/// issued a `SAVEPOINT` inside a transaction that nobody would ever commit, and every later
/// "commit" only released that savepoint: reports acknowledged and never stored, and the database
/// locked for every other connection. Here `BEGIN`/`COMMIT` are plain statements, and a
/// connection goes back to the pool only after a `COMMIT` (or an explicit `ROLLBACK`) succeeded;
/// otherwise it is detached from the pool and closed, which rolls back whatever it held, and the
/// pool opens a fresh one for the next write.
///
/// `&mut *tx` is an executor (`WriteTx` dereferences to the connection).
pub struct WriteTx {
    conn: Option<PoolConnection<Any>>,
}

impl Db {
    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write lock now, so the
    /// transaction never fails half-way on a lock upgrade), `BEGIN` on PostgreSQL.
    ///
    /// Cancel-safe: the connection is held by the `WriteTx` before `BEGIN` is sent, so a caller
    /// dropped while `BEGIN` waits (a client that gave up while SQLite's write lock was busy)
    /// closes it instead of handing it back to the pool inside a transaction.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let conn = self.write.acquire().await?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let mut tx = WriteTx { conn: Some(conn) };
        // on an error, whether the BEGIN took effect is unknown: dropping `tx` closes it
        (&mut *tx).execute(begin).await?;
        Ok(tx)
    }
}

impl WriteTx {
    /// Commits. `Ok` means the database acknowledged the `COMMIT` (durable, see the pragmas in
    /// [`Db::connect`]); on an error nothing of the transaction is kept and the connection is
    /// closed instead of going back to the pool.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(mut conn) = self.conn.take() else {
            return Err(sqlx::Error::PoolClosed);
        };
        match conn.execute("COMMIT").await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "COMMIT failed: the transaction is lost, its connection closed");
                discard(conn);
                Err(e)
            }
        }
    }

    /// Rolls back; the connection goes back to the pool only when the `ROLLBACK` succeeded.
    /// (Dropping a `WriteTx` rolls back too, by closing its connection.)
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        match conn.execute("ROLLBACK").await {
            Ok(_) => Ok(()),
            Err(e) => {
                discard(conn);
                Err(e)
            }
        }
    }
}

impl std::ops::Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        self.conn
            .as_deref()
            .expect("a WriteTx holds its connection until commit or drop")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn
            .as_deref_mut()
            .expect("a WriteTx holds its connection until commit or drop")
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            tracing::debug!("write transaction dropped without commit: its connection is closed");
            discard(conn);
        }
    }
}

/// Takes a connection out of its pool for good and closes it (closing rolls back any open
/// transaction: SQLite's `sqlite3_close`, PostgreSQL's end of session). The pool opens a new one
/// when it needs it.
fn discard(conn: PoolConnection<Any>) {
    let raw = conn.detach();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), raw.close()).await;
            });
        }
        Err(_) => drop(raw),
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

/// A parameter of a [`Batch`] statement.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
    OptText(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(v.to_owned())
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::OptText(v)
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::OptText(v.map(str::to_owned))
    }
}

/// Writes whose results nobody reads, run together at the end ([`Batch::run`]), in the order
/// they were pushed. On SQLite they go to the database as one multi-statement command: sqlx runs
/// every statement on its connection's worker thread, and each command is a hand-off to that
/// thread and back (two thread wake-ups), so one report's writes cost one hand-off instead of one
/// each. The text of a given sequence of statements is the same every time, so it is prepared
/// once per connection like any other. On PostgreSQL (which takes one statement per command with
/// parameters) they run one by one. A statement that fails fails the batch, and the caller rolls
/// back as it would for a single statement.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each statement's SQL (parameters numbered from `$1` in each) and its parameters.
    statements: Vec<(String, Vec<Arg>)>,
}

impl Batch {
    /// Adds a statement whose parameters are `$1` .. `$n` = `args`.
    pub fn push(&mut self, sql: impl Into<String>, args: Vec<Arg>) {
        self.statements.push((sql.into(), args));
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds `sql` for one host over a set of texts: `$1` is `host_id` and `{rows}` in `sql`
    /// becomes [`Backend::json_rows`] of `texts`, bound as one JSON array (`$2`), each text as
    /// `j.value`.
    pub fn for_host_texts<T: serde::Serialize + ?Sized>(
        &mut self,
        backend: Backend,
        sql: &str,
        host_id: i64,
        texts: &T,
    ) {
        let sql = sql.replace("{rows}", &backend.json_rows(2, true));
        let json = serde_json::to_string(texts).unwrap_or_default();
        self.push(sql, vec![Arg::Int(host_id), Arg::Text(json)]);
    }

    /// Runs every statement, in order (see [`Batch`]).
    pub async fn run(self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        if self.statements.is_empty() {
            return Ok(());
        }
        let statements = match Backend::of(conn) {
            Backend::Sqlite if self.statements.len() > 1 => {
                let mut sql = String::new();
                let mut args = Vec::new();
                for (text, mut own) in self.statements {
                    if !sql.is_empty() {
                        sql.push_str(";\n");
                    }
                    sql.push_str(&renumber(&text, args.len()));
                    args.append(&mut own);
                }
                vec![(sql, args)]
            }
            Backend::Sqlite => self.statements,
            Backend::Postgres => with_clauses(self.statements),
        };
        for (sql, args) in statements {
            let mut query = sqlx::query(&sql);
            for arg in args {
                query = match arg {
                    Arg::Int(v) => query.bind(v),
                    Arg::Text(v) => query.bind(v),
                    Arg::OptText(v) => query.bind(v),
                };
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }
}

/// PostgreSQL's form of a batch: consecutive statements joined into one statement as
/// data-modifying `WITH` clauses (`WITH w0 AS (INSERT ...), w1 AS (DELETE ...) SELECT 1`). Those
/// run on one snapshot and do not see each other's rows, so a statement that names a table an
/// earlier one of the same command writes (a delete then an insert into `host_failures`; the
/// answer row reading `changes`) starts the next command.
fn with_clauses(statements: Vec<(String, Vec<Arg>)>) -> Vec<(String, Vec<Arg>)> {
    let mut out: Vec<(String, Vec<Arg>)> = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut written: Vec<&'static str> = Vec::new();
    fn flush(clauses: &mut Vec<String>, args: &mut Vec<Arg>, out: &mut Vec<(String, Vec<Arg>)>) {
        match clauses.len() {
            0 => {}
            1 => out.push((clauses.remove(0), std::mem::take(args))),
            _ => {
                let with: Vec<String> = clauses
                    .drain(..)
                    .enumerate()
                    .map(|(i, c)| format!("w{i} AS ({c})"))
                    .collect();
                out.push((
                    format!("WITH {} SELECT 1", with.join(", ")),
                    std::mem::take(args),
                ));
            }
        }
    }
    for (sql, mut own) in statements {
        let target = written_table(&sql);
        if target.is_none() || written.iter().any(|t| names_table(&sql, t)) {
            flush(&mut clauses, &mut args, &mut out);
            written.clear();
        }
        let Some(target) = target else {
            out.push((sql, own));
            continue;
        };
        clauses.push(renumber(&sql, args.len()));
        args.append(&mut own);
        written.push(target);
    }
    flush(&mut clauses, &mut args, &mut out);
    out
}

/// The tables a batch writes, so that [`with_clauses`] can tell which statements touch which.
const BATCH_TABLES: [&str; 9] = [
    "hosts",
    "host_failures",
    "components",
    "changes",
    "part_lists",
    "errors",
    "search_tokens",
    "reports",
    "webhook_outbox",
];

/// The table an `INSERT INTO`, `UPDATE` or `DELETE FROM` statement writes, if it is one of
/// [`BATCH_TABLES`].
fn written_table(sql: &str) -> Option<&'static str> {
    let rest = sql
        .trim_start()
        .strip_prefix("INSERT INTO ")
        .or_else(|| sql.trim_start().strip_prefix("UPDATE "))
        .or_else(|| sql.trim_start().strip_prefix("DELETE FROM "))?;
    let name = rest.split([' ', '(']).next()?;
    BATCH_TABLES.iter().copied().find(|t| *t == name)
}

/// Whether `sql` names `table` as a whole word.
fn names_table(sql: &str, table: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    sql.match_indices(table).any(|(at, _)| {
        let before = sql[..at].chars().next_back();
        let after = sql[at + table.len()..].chars().next();
        !before.is_some_and(word) && !after.is_some_and(word)
    })
}

/// `sql` with every parameter `$N` written `$(N + offset)`. (The statements given to a [`Batch`]
/// hold no `$` in their literals.)
fn renumber(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[..digits].parse::<usize>() {
            out.push_str(&(n + offset).to_string());
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
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
    fn both_backends_have_the_same_migrations_in_version_order() {
        let versions = |b: Backend| b.migrations().iter().map(|m| m.0).collect::<Vec<_>>();
        let sqlite = versions(Backend::Sqlite);
        assert!(sqlite.windows(2).all(|w| w[0] < w[1]), "{sqlite:?}");
        assert_eq!(sqlite, versions(Backend::Postgres));
    }

    #[test]
    fn batch_parameters_are_renumbered_after_the_statements_before() {
        assert_eq!(
            renumber("INSERT INTO t VALUES ($1, $2, $10)", 3),
            "INSERT INTO t VALUES ($4, $5, $13)"
        );
        assert_eq!(renumber("SELECT $1", 0), "SELECT $1");
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }

    #[test]
    fn a_postgres_batch_splits_where_a_statement_names_a_table_written_before_it() {
        let st = |sql: &str, n: usize| (sql.to_owned(), vec![Arg::Int(0); n]);
        let out = with_clauses(vec![
            st("UPDATE hosts SET a = $1 WHERE id = $2", 2),
            st("DELETE FROM host_failures WHERE host_id = $1", 1),
            st("INSERT INTO host_failures (host_id, plugin) SELECT $1, j.value FROM x", 1),
            st("INSERT INTO changes (host_id) SELECT $1", 1),
            st("INSERT INTO reports (a, b) VALUES ($1, (SELECT MAX(id) FROM changes WHERE host_id = $2))", 2),
        ]);
        let texts: Vec<(&str, usize)> = out.iter().map(|(s, a)| (s.as_str(), a.len())).collect();
        assert_eq!(
            texts,
            [
                (
                    "WITH w0 AS (UPDATE hosts SET a = $1 WHERE id = $2), \
                     w1 AS (DELETE FROM host_failures WHERE host_id = $3) SELECT 1",
                    3
                ),
                (
                    "WITH w0 AS (INSERT INTO host_failures (host_id, plugin) SELECT $1, j.value FROM x), \
                     w1 AS (INSERT INTO changes (host_id) SELECT $2) SELECT 1",
                    2
                ),
                (
                    "INSERT INTO reports (a, b) VALUES ($1, (SELECT MAX(id) FROM changes WHERE host_id = $2))",
                    2
                ),
            ]
        );
        assert!(names_table("FROM changes WHERE", "changes"));
        assert!(!names_table("FROM changes_x", "changes"));
        assert!(!names_table("host_failures", "hosts"));
    }

    #[test]
    fn migrations_split_into_statements() {
        let s = split_statements("-- c\nCREATE TABLE a (x BIGINT);\n\nCREATE INDEX i ON a (x);\n");
        assert_eq!(s.len(), 2);
    }
}
