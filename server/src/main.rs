//! `auto-server`: the CMDB API of auto-client. It accepts signed reports, enforces host identity,
//! keeps each host's current assets, a change log and an error log, and tells ssh/salt collectors
//! which hosts are due. SQLite is the embedded default; PostgreSQL is chosen by URL.
//!
//! Not for: collecting anything itself, or talking to hosts. Exit codes: 0 done, 1 the command
//! failed (a key that exists, a bad host), 2 fatal (usage, config, database unreachable).

use std::io::Write;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use auto_server::cli::{Args, Command, HostsCommand, KeysCommand, UsersCommand, WebhooksCommand};
use auto_server::{
    api, auth, cli, clock, db, error, keys, retention, search, store, ui, users, webhooks,
};

/// mimalloc instead of glibc's malloc: the ingest allocates and frees many small values per report
/// (JSON values, rows, strings) across threads, and glibc's free lists cost about a fifth of the
/// server's CPU in a profile of `scripts/bench-server.sh` (ARCHITECTURE.md, "Dependencies").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An error and the exit code it means.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fatal(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

fn failed(error: anyhow::Error) -> Failure {
    Failure { code: 1, error }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("auto-server: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(args: Args) -> Result<(), Failure> {
    let file = cli::FileConfig::load(args.config.as_deref()).map_err(fatal)?;
    let common = cli::common(&args, &file);
    let filter = EnvFilter::try_new(&common.log)
        .with_context(|| format!("bad log filter {:?}", common.log))
        .map_err(fatal)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(path) = std::env::var_os(clock::TEST_CLOCK_ENV) {
        if !cfg!(debug_assertions) && !args.allow_test_clock {
            return Err(fatal(anyhow::anyhow!(
                "{} is set: the test clock is for tests and benchmarks; a release build uses it only with --allow-test-clock",
                clock::TEST_CLOCK_ENV
            )));
        }
        tracing::warn!(file = ?path, "TEST CLOCK: the server's time is read from this file");
        clock::use_test_clock(path.into());
    }
    if let Command::DefaultConfig = args.command {
        print!("{}", cli::EXAMPLE_CONFIG);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(fatal)?;
    runtime.block_on(run_async(args, file, common))
}

async fn open(common: &cli::Common, max_connections: u32) -> Result<db::Db, Failure> {
    let db = db::Db::connect(&common.db, max_connections)
        .await
        .map_err(fatal)?;
    db.migrate().await.map_err(fatal)?;
    Ok(db)
}

async fn run_async(args: Args, file: cli::FileConfig, common: cli::Common) -> Result<(), Failure> {
    match args.command {
        Command::Serve(serve_args) => {
            let settings = cli::serve(&serve_args, &file).map_err(fatal)?;
            serve(common, settings).await
        }
        Command::Migrate => {
            let db = db::Db::connect(&common.db, 1).await.map_err(fatal)?;
            let n = db.migrate().await.map_err(fatal)?;
            eprintln!("auto-server: {n} migration(s) applied");
            Ok(())
        }
        Command::Keys { command } => {
            let db = open(&common, 2).await?;
            match command {
                KeysCommand::Create { name, scope, host } => {
                    let request = match (scope, host.as_deref()) {
                        (cli::KeyScope::Host, Some(h)) => keys::ScopeRequest::Host(h),
                        (cli::KeyScope::Host, None) => {
                            return Err(fatal(anyhow::anyhow!(
                                "a --scope host key needs --host HOSTNAME"
                            )))
                        }
                        (_, Some(_)) => {
                            return Err(fatal(anyhow::anyhow!(
                                "--host is for --scope host keys only"
                            )))
                        }
                        (cli::KeyScope::Fleet, None) => keys::ScopeRequest::Fleet,
                        (cli::KeyScope::Read, None) => keys::ScopeRequest::Read,
                        (cli::KeyScope::Admin, None) => keys::ScopeRequest::Admin,
                    };
                    let master =
                        keys::MasterKey::load_or_create(&common.master_key).map_err(fatal)?;
                    let secret = keys::create(&db, &master, &name, request)
                        .await
                        .map_err(failed)?;
                    let what = match request {
                        keys::ScopeRequest::Host(h) => format!("host key for {h:?}"),
                        keys::ScopeRequest::Fleet => "fleet key".to_owned(),
                        keys::ScopeRequest::Read => "read key".to_owned(),
                        keys::ScopeRequest::Admin => "admin key".to_owned(),
                    };
                    eprintln!(
                        "auto-server: {what} {name:?} created; its secret follows, shown once"
                    );
                    println!("{secret}");
                }
                KeysCommand::List => {
                    let mut out = std::io::stdout().lock();
                    for key in keys::list(&db).await.map_err(failed)? {
                        let state = key.revoked_at.map_or("active".to_owned(), |t| {
                            format!("revoked {}", clock::rfc3339(t))
                        });
                        let scope = match &key.hostname {
                            Some(h) => format!("{} {h}", key.scope),
                            None => key.scope.clone(),
                        };
                        let _ = writeln!(
                            out,
                            "{}\t{scope}\tcreated {}\t{state}",
                            key.name,
                            clock::rfc3339(key.created_at)
                        );
                    }
                }
                KeysCommand::Revoke { name } => {
                    keys::revoke(&db, &name).await.map_err(failed)?;
                    eprintln!("auto-server: key {name:?} revoked");
                }
            }
            Ok(())
        }
        Command::Hosts {
            command:
                HostsCommand::Add {
                    hostname,
                    address,
                    port,
                },
        } => {
            let db = open(&common, 2).await?;
            let new = auto_proto::NewHost {
                hostname,
                address,
                port,
            };
            match api::register_host(&db, &new)
                .await
                .map_err(|e| fatal(e.into()))?
            {
                Ok(created) => {
                    let what = if created { "registered" } else { "updated" };
                    eprintln!(
                        "auto-server: host {:?} {what} at {}:{}",
                        new.hostname, new.address, new.port
                    );
                    Ok(())
                }
                Err(detail) => Err(failed(anyhow::anyhow!(detail))),
            }
        }
        Command::Hosts {
            command: HostsCommand::Remove { hostname },
        } => {
            let db = open(&common, 2).await?;
            if store::remove_host(&db, &hostname)
                .await
                .map_err(|e| fatal(e.into()))?
            {
                eprintln!("auto-server: host {hostname:?} removed");
                Ok(())
            } else {
                Err(failed(anyhow::anyhow!("no host named {hostname:?}")))
            }
        }
        Command::Users { command } => {
            let db = open(&common, 2).await?;
            match command {
                UsersCommand::Add { name, role } => {
                    let role = match role {
                        cli::UserRole::Viewer => users::Role::Viewer,
                        cli::UserRole::Admin => users::Role::Admin,
                    };
                    users::check_name(&name).map_err(failed)?;
                    let password =
                        users::read_password(&format!("password for {name}: ")).map_err(failed)?;
                    users::add(&db, &name, role, &password)
                        .await
                        .map_err(failed)?;
                    eprintln!("auto-server: user {name:?} added ({})", role.as_str());
                }
                UsersCommand::List => {
                    let mut out = std::io::stdout().lock();
                    for u in users::list(&db).await.map_err(failed)? {
                        let _ = writeln!(
                            out,
                            "{}\t{}\tcreated {}\t{} session(s)",
                            u.name,
                            u.role,
                            clock::rfc3339(u.created_at),
                            u.sessions
                        );
                    }
                }
                UsersCommand::Remove { name } => {
                    users::remove(&db, &name).await.map_err(failed)?;
                    eprintln!("auto-server: user {name:?} removed");
                }
                UsersCommand::Passwd { name } => {
                    let password = users::read_password(&format!("new password for {name}: "))
                        .map_err(failed)?;
                    users::set_password(&db, &name, &password)
                        .await
                        .map_err(failed)?;
                    eprintln!("auto-server: password of {name:?} changed; their sessions ended");
                }
            }
            Ok(())
        }
        Command::Prune {
            dry_run,
            retention: flags,
        } => {
            let policy = cli::retention(&flags, &file).map_err(fatal)?;
            let db = open(&common, 2).await?;
            let mode = if dry_run {
                retention::Mode::DryRun
            } else {
                retention::Mode::Apply {
                    pause: Duration::ZERO,
                }
            };
            let pass = retention::run(&db, &policy, clock::now(), mode)
                .await
                .context("cannot prune")
                .map_err(failed)?;
            print_pass(&pass, dry_run);
            Ok(())
        }
        Command::Backup { file: target } => backup(&common, &target).await,
        Command::Webhooks { command } => {
            let db = open(&common, 2).await?;
            webhooks_command(&db, &common, command).await
        }
        Command::DefaultConfig => Ok(()),
    }
}

/// `prune`'s table: one line per table, rows removed (or that would be) and the rule.
fn print_pass(pass: &retention::Pass, dry_run: bool) {
    let mut out = std::io::stdout().lock();
    let verb = if dry_run { "would remove" } else { "removed" };
    let _ = writeln!(out, "{:<8} {:>12}  rule", "table", verb);
    for line in &pass.lines {
        let rows = line.rows.map_or("-".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "{:<8} {rows:>12}  {}", line.table, line.rule);
    }
    if pass.kept_for_key > 0 {
        let _ = writeln!(
            out,
            "{} host(s) past remove_stale_after_days kept: an active host key is bound to them (revoke it to let them go)",
            pass.kept_for_key
        );
    }
    if dry_run {
        let _ = writeln!(out, "dry run: nothing was removed");
    }
}

/// `backup FILE`: `VACUUM INTO` a new file (SQLite reads one consistent snapshot while the
/// server keeps writing), then `PRAGMA integrity_check` on the copy and fsync.
async fn backup(common: &cli::Common, target: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    if db::Backend::from_url(&common.db).map_err(fatal)? == db::Backend::Postgres {
        return Err(fatal(anyhow::anyhow!(
            "backup is for SQLite; for PostgreSQL use pg_dump --format=custom (README, \"Backup and restore\")"
        )));
    }
    let source = db::sqlite_path(&common.db)
        .with_context(|| format!("sqlite url {:?} names no file", common.db))
        .map_err(fatal)?;
    if !source.is_file() {
        return Err(fatal(anyhow::anyhow!(
            "no database at {}: nothing to back up",
            source.display()
        )));
    }
    // Reserve the name: an existing file (or symlink) is refused, never overwritten; VACUUM INTO
    // accepts the empty file.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .with_context(|| format!("cannot create the backup file {}", target.display()))
        .map_err(failed)?;
    let result = async {
        let db = db::Db::connect(&common.db, 1).await?;
        let text = target
            .to_str()
            .context("the backup file's path is not UTF-8")?;
        sqlx::query("VACUUM INTO $1")
            .bind(text)
            .execute(&db.read)
            .await
            .context("VACUUM INTO failed")?;
        let check = db::Db::connect(&format!("sqlite://{text}"), 1).await?;
        let verdict: String = sqlx::Row::try_get(
            &sqlx::query("PRAGMA integrity_check")
                .fetch_one(&check.read)
                .await?,
            0,
        )?;
        check.read.close().await;
        check.write.close().await;
        anyhow::ensure!(verdict == "ok", "integrity check of the copy: {verdict}");
        std::fs::File::open(target)?.sync_all()?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(target);
        return Err(failed(
            e.context(format!("backup to {} failed", target.display())),
        ));
    }
    eprintln!(
        "auto-server: backup written to {} (integrity ok); keep the master key {} with it",
        target.display(),
        common.master_key.display()
    );
    Ok(())
}

async fn webhooks_command(
    db: &db::Db,
    common: &cli::Common,
    command: WebhooksCommand,
) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match command {
        WebhooksCommand::Add {
            url,
            secret_file,
            component,
            action,
            host,
        } => {
            webhooks::check_url(&url).map_err(fatal)?;
            let filter = webhooks::Filter::new(&component, &action, &host).map_err(fatal)?;
            let secret = webhooks::read_secret(&secret_file).map_err(fatal)?;
            let master = keys::MasterKey::load_or_create(&common.master_key).map_err(fatal)?;
            let id = webhooks::add(db, &master, &url, &secret, &filter)
                .await
                .map_err(failed)?;
            eprintln!("auto-server: webhook {id} added for {url}");
            let _ = writeln!(out, "{id}");
        }
        WebhooksCommand::List => {
            for w in webhooks::list(db).await.map_err(failed)? {
                let or_all = |v: &[String]| {
                    if v.is_empty() {
                        "*".to_owned()
                    } else {
                        v.join(",")
                    }
                };
                let _ = writeln!(
                    out,
                    "{}\t{}\tcomponent={}\taction={}\thost={}\tpending={}\tdelivered={}\tfailed={}\tcreated {}",
                    w.id,
                    w.url,
                    or_all(&w.filter.components),
                    or_all(&w.filter.actions),
                    w.filter.host,
                    w.pending,
                    w.delivered,
                    w.failed,
                    clock::rfc3339(w.created_at)
                );
            }
        }
        WebhooksCommand::Remove { id } => {
            webhooks::remove(db, id).await.map_err(failed)?;
            eprintln!("auto-server: webhook {id} removed");
        }
        WebhooksCommand::Log { id, limit } => {
            for a in webhooks::log(db, id, limit.clamp(1, 100_000))
                .await
                .map_err(failed)?
            {
                let result = match (a.status, &a.error) {
                    (Some(s), None) => format!("status={s}"),
                    (Some(s), Some(_)) => format!("status={s} error=\"HTTP {s}\""),
                    (None, Some(e)) => format!("error={e:?}"),
                    (None, None) => "status=?".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "{}\twebhook={}\tevent={}\tattempt={}\t{result}\t{}ms\tevent_state={}\tworker={}",
                    clock::rfc3339(a.at),
                    a.webhook_id,
                    a.event_id,
                    a.attempt,
                    a.duration_ms,
                    a.final_state,
                    a.worker
                );
            }
        }
    }
    Ok(())
}

async fn serve(common: cli::Common, settings: cli::Serve) -> Result<(), Failure> {
    let db = open(&common, settings.max_connections).await?;
    let master = if settings.config.no_auth {
        tracing::warn!("AUTHENTICATION IS OFF (--no-auth): anyone who reaches this port can write to the inventory; use it for a local trial only");
        None
    } else {
        Some(keys::MasterKey::load_or_create(&common.master_key).map_err(fatal)?)
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))
        .map_err(fatal)?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")
        .map_err(fatal)?;
    let metrics = match db::sqlite_path(&common.db) {
        Some(file) => auto_server::metrics::Metrics::with_space_check(
            file.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf(),
            settings.config.max_body_bytes as u64,
        ),
        None => auto_server::metrics::Metrics::default(),
    };
    let state = Arc::new(api::AppState {
        writer: auto_server::ingest::Writer::new(db.clone()),
        db,
        config: settings.config,
        master,
        metrics: Arc::new(metrics),
        keys: Default::default(),
    });
    auth::set_clock_skew(state.config.clock_skew_secs);
    match search::backfill(&state.db).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(hosts = n, "search index built for hosts that had none"),
        Err(e) => tracing::warn!(error = %e, "cannot build the search index"),
    }
    tokio::spawn(auth::prune_nonces(state.clone(), settings.nonce_prune));
    tokio::spawn(retention::every(
        state.db.clone(),
        settings.retention,
        settings.prune_interval,
    ));
    tokio::spawn(webhooks::run(
        state.db.clone(),
        settings.webhooks,
        common.master_key.clone(),
    ));
    let backend = format!("{:?}", state.db.backend).to_ascii_lowercase();
    tracing::info!(%addr, backend, auth = !state.config.no_auth, "auto-server listening");
    println!("auto-server listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let metrics = state.metrics.clone();
    serve_connections(
        listener,
        api::router(state),
        settings.net,
        metrics,
        shutdown(),
    )
    .await;
    tracing::info!("auto-server stopped");
    Ok(())
}

/// What the connection loop and its watchdog know of one connection. Times are milliseconds since
/// the connection was accepted, plus one (0 means none).
struct ConnWatch {
    start: std::time::Instant,
    /// The last byte read or written.
    last_io: AtomicU64,
    /// The first byte of a request head not yet handed to the router (0: not waiting for one).
    head_started: AtomicU64,
    /// Requests being handled.
    in_flight: AtomicUsize,
    /// Wakes the watchdog when a request head starts: it may be sleeping out the (longer)
    /// keep-alive timeout, and must now keep the header timeout.
    head_began: tokio::sync::Notify,
}

impl ConnWatch {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn saw_bytes(&self, read: bool) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if read
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self
                .head_started
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.head_began.notify_one();
        }
    }

    /// `None` while the connection may stay open (and when to look again), or why it is closed.
    fn verdict(&self, limits: &cli::NetLimits) -> Result<Duration, &'static str> {
        let now = self.now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2);
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // the router owns the request (its body has its own deadline)
            return Ok(limits.keep_alive);
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let (since, limit, why) = if head != 0 {
            (head, ms(limits.header_timeout), "header timeout")
        } else {
            (
                self.last_io.load(Ordering::Relaxed),
                ms(limits.keep_alive),
                "idle (keep-alive timeout)",
            )
        };
        let age = now.saturating_sub(since);
        if age >= limit {
            Err(why)
        } else {
            Ok(Duration::from_millis(limit - age + 10))
        }
    }
}

/// A TCP stream that tells its [`ConnWatch`] when bytes move.
struct WatchedIo {
    inner: tokio::net::TcpStream,
    watch: Arc<ConnWatch>,
}

impl tokio::io::AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.saw_bytes(true);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.saw_bytes(false);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.saw_bytes(false);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Marks a request handled when dropped (done or cancelled).
struct InFlight(Arc<ConnWatch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        let now = self.0.now();
        self.0.last_io.store(now, Ordering::Relaxed);
    }
}

/// The accept loop (axum::serve has no timeouts and no cap): at most `max_clients` connections,
/// one more gets a 503 and is closed; a connection that takes longer than the header timeout to
/// send a request head, or sits idle longer than the keep-alive timeout, is closed; each request
/// carries its body deadline ([`auth::BodyDeadline`]). On `stop`, no more connections are
/// accepted and the open ones finish their requests (30 s at most).
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: cli::NetLimits,
    metrics: Arc<auto_server::metrics::Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_clients));
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors, most likely: wait for some to close
                    auth::refused_log(axum::http::StatusCode::SERVICE_UNAVAILABLE, &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let stopping = stopping.clone();
                let open = metrics.connection_opened();
                tokio::spawn(async move {
                    serve_connection(stream, peer, router, limits, stopping).await;
                    drop(open);
                    drop(permit);
                });
            }
            Err(_) => {
                metrics.connection_refused();
                auth::refused_log(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "too many connections ({}): {peer} refused",
                        limits.max_clients
                    ),
                );
                tokio::spawn(refuse_connection(stream));
            }
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    let all = u32::try_from(limits.max_clients).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open 30 s after the stop: closed");
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    router: axum::Router,
    limits: cli::NetLimits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let watch = Arc::new(ConnWatch {
        start: std::time::Instant::now(),
        last_io: AtomicU64::new(1),
        head_started: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        head_began: tokio::sync::Notify::new(),
    });
    let io = hyper_util::rt::TokioIo::new(WatchedIo {
        inner: stream,
        watch: watch.clone(),
    });
    let service_watch = watch.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut router = router.clone();
            service_watch.in_flight.fetch_add(1, Ordering::Relaxed);
            service_watch.head_started.store(0, Ordering::Relaxed);
            let guard = InFlight(service_watch.clone());
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(auth::BodyDeadline(
                tokio::time::Instant::now() + limits.body_timeout,
            ));
            request.extensions_mut().insert(ui::ClientAddr(peer.ip()));
            async move {
                let response = tower_service::Service::call(&mut router, request).await;
                drop(guard);
                response
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = async {
        loop {
            match watch.verdict(&limits) {
                Ok(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = watch.head_began.notified() => {}
                    }
                }
                Err(why) => return why,
            }
        }
    };
    tokio::pin!(watchdog);
    let mut graceful = false;
    loop {
        tokio::select! {
            done = &mut connection => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            why = &mut watchdog => {
                tracing::debug!(why, "connection closed");
                return;
            }
            changed = stopping.changed(), if !graceful => {
                graceful = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The answer to one connection too many: 503, `Retry-After`, closed; never left waiting.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = error::problem_body(
        503,
        "too_many_connections",
        "the server has as many connections as it takes: retry later",
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        // read what the client sent first, so that closing does not reset the connection
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
