//! Webhooks: a signed HTTP POST for every change-log row that a subscription's filters select.
//!
//! Three parts, each with one job:
//! - subscriptions (`webhooks` table; [`add`], [`list`], [`remove`], run by `auto-server webhooks`):
//!   a URL, a secret sealed under the master key, and filters on the change's component (globs),
//!   action and host name (a glob);
//! - the outbox ([`enqueue`], called by the ingest inside the report's transaction): one row per
//!   (matching change, subscription) with the exact JSON body, committed or rolled back with the
//!   change rows themselves, so a crash neither loses nor invents an event;
//! - delivery ([`run`], a task of `serve`): each subscription's oldest pending event is leased
//!   (one server at a time), POSTed with an HMAC-SHA256 signature, logged in `webhook_deliveries`,
//!   and retried with capped exponential backoff and jitter until a 2xx or the last attempt.
//!
//! Not for: deciding what changed (the ingest does), or TLS: URLs are `http://` (put a local
//! TLS-originating proxy in front for an `https` receiver). The wire scheme is in
//! docs/contracts.md, "Webhooks".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::{header, Request, Uri};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::{AnyConnection, Row};

use crate::db::Db;
use crate::keys::MasterKey;

/// Largest event body, in bytes: a change whose old and new values would make it larger is sent
/// with both as `null` and `"truncated": true` (the change log has them in full).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Shortest and longest secret a subscription takes, in bytes.
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 16..=1024;
/// The three actions of the change log.
pub const ACTIONS: [&str; 3] = ["added", "removed", "changed"];
/// Headers of a delivery (lower case, as HTTP/1.1 sends them).
pub const SIGNATURE_HEADER: &str = "x-auto-signature";
pub const TIMESTAMP_HEADER: &str = "x-auto-timestamp";
pub const EVENT_HEADER: &str = "x-auto-event-id";

/// One change-log row as the ingest writes it.
#[derive(Debug)]
pub struct Change<'a> {
    pub kind: &'a str,
    pub item: &'a str,
    pub action: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// A subscription's filters. An empty list selects everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Globs over the change log's component (`memory.dimms`, `disk.*`, `os`).
    pub components: Vec<String>,
    /// `added`, `removed`, `changed`.
    pub actions: Vec<String>,
    /// A glob over the host name, case-insensitive (`*` every host).
    pub host: String,
}

impl Filter {
    /// Checks and normalises the filters given on the command line.
    pub fn new(components: &[String], actions: &[String], host: &str) -> anyhow::Result<Filter> {
        let clean = |v: &[String]| -> Vec<String> {
            v.iter()
                .flat_map(|s| s.split(','))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let components = clean(components);
        let actions = clean(actions);
        for c in &components {
            if c.len() > 200 || !c.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                bail!("component filter {c:?} must be up to 200 printable characters without spaces or commas");
            }
        }
        for a in &actions {
            if !ACTIONS.contains(&a.as_str()) {
                bail!("action {a:?} is not one of added, removed, changed");
            }
        }
        let host = host.trim();
        if host.is_empty() || host.len() > 255 || !host.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("host pattern {host:?} must be 1 to 255 printable characters without spaces");
        }
        Ok(Filter {
            components,
            actions,
            host: host.to_owned(),
        })
    }

    fn from_row(components: &str, actions: &str, host: &str) -> Filter {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        Filter {
            components: split(components),
            actions: split(actions),
            host: host.to_owned(),
        }
    }

    /// Whether the subscription wants this change of this host.
    pub fn matches(&self, host: &str, change: &Change<'_>) -> bool {
        self.matches_host(host) && self.matches_change(change)
    }

    fn matches_host(&self, host: &str) -> bool {
        glob(&self.host, host)
    }

    fn matches_change(&self, change: &Change<'_>) -> bool {
        (self.actions.is_empty() || self.actions.iter().any(|a| a == change.action))
            && (self.components.is_empty() || self.components.iter().any(|c| glob(c, change.kind)))
    }
}

/// `*` any run of characters, `?` one character, anything else itself; ASCII case-insensitive.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// Checks a receiver's URL: `http://HOST[:PORT]/PATH`.
pub fn check_url(url: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("webhook url {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => bail!("webhook url {url:?}: https is not supported; point it at a local TLS-originating proxy (http://127.0.0.1:PORT/...)"),
        _ => bail!("webhook url {url:?} must start with http://"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("webhook url {url:?} names no host");
    }
    if url.len() > 2048 {
        bail!("webhook url is longer than 2048 characters");
    }
    Ok(uri)
}

/// Reads a secret file: its text without the trailing newline, 16 to 1024 bytes.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_owned();
    if !SECRET_BYTES.contains(&secret.len()) {
        bail!(
            "the secret in {} is {} bytes: it must be 16 to 1024",
            path.display(),
            secret.len()
        );
    }
    Ok(secret)
}

fn sealing_name(url: &str) -> String {
    format!("webhook {url}")
}

/// A stored subscription, with its queue's counts.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: i64,
    pub url: String,
    pub filter: Filter,
    pub created_at: i64,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}

/// Adds a subscription; returns its id.
pub async fn add(
    db: &Db,
    master: &MasterKey,
    url: &str,
    secret: &str,
    filter: &Filter,
) -> anyhow::Result<i64> {
    check_url(url)?;
    let sealed = master.seal(&sealing_name(url), secret)?;
    let mut tx = db.begin_write().await?;
    let row = sqlx::query(
        "INSERT INTO webhooks (url, secret, components, actions, host_glob, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(url)
    .bind(sealed)
    .bind(filter.components.join(","))
    .bind(filter.actions.join(","))
    .bind(&filter.host)
    .bind(crate::clock::now())
    .fetch_one(&mut *tx)
    .await
    .context("cannot store the webhook")?;
    tx.commit().await.context("cannot store the webhook")?;
    Ok(row.try_get("id")?)
}

/// Every subscription, with how many of its events are pending, delivered and failed.
pub async fn list(db: &Db) -> anyhow::Result<Vec<Subscription>> {
    let rows = sqlx::query(
        "SELECT w.id, w.url, w.components, w.actions, w.host_glob, w.created_at, \
         (SELECT COUNT(*) FROM webhook_outbox o WHERE o.webhook_id = w.id AND o.state = 'pending') AS pending, \
         (SELECT COUNT(*) FROM webhook_outbox o WHERE o.webhook_id = w.id AND o.state = 'delivered') AS delivered, \
         (SELECT COUNT(*) FROM webhook_outbox o WHERE o.webhook_id = w.id AND o.state = 'failed') AS failed \
         FROM webhooks w ORDER BY w.id",
    )
    .fetch_all(&db.read)
    .await
    .context("cannot read the webhooks")?;
    rows.iter()
        .map(|r| {
            Ok(Subscription {
                id: r.try_get("id")?,
                url: r.try_get("url")?,
                filter: Filter::from_row(
                    &r.try_get::<String, _>("components")?,
                    &r.try_get::<String, _>("actions")?,
                    &r.try_get::<String, _>("host_glob")?,
                ),
                created_at: r.try_get("created_at")?,
                pending: r.try_get("pending")?,
                delivered: r.try_get("delivered")?,
                failed: r.try_get("failed")?,
            })
        })
        .collect()
}

/// Removes a subscription with its outbox and delivery log (pending events are dropped).
pub async fn remove(db: &Db, id: i64) -> anyhow::Result<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM webhook_outbox WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let gone = sqlx::query("DELETE FROM webhooks WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if gone == 0 {
        bail!("no webhook with id {id}");
    }
    tx.commit().await.context("cannot remove the webhook")?;
    Ok(())
}

/// One delivery attempt, as `webhooks log` prints it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub webhook_id: i64,
    pub event_id: String,
    pub attempt: i64,
    pub at: i64,
    pub status: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// What the event became: `pending` (retried later), `delivered`, `failed` (no more tries).
    pub final_state: String,
    /// The server process that made the attempt (a random id per start).
    pub worker: String,
}

/// The last `limit` delivery attempts (of one subscription with `Some(id)`), oldest first.
pub async fn log(db: &Db, webhook: Option<i64>, limit: i64) -> anyhow::Result<Vec<Attempt>> {
    let rows = sqlx::query(
        "SELECT webhook_id, event_id, attempt, at, status, error, duration_ms, final_state, worker \
         FROM webhook_deliveries WHERE ($1 = 0 OR webhook_id = $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(webhook.unwrap_or(0))
    .bind(limit)
    .fetch_all(&db.read)
    .await
    .context("cannot read the delivery log")?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(Attempt {
                webhook_id: r.try_get("webhook_id")?,
                event_id: r.try_get("event_id")?,
                attempt: r.try_get("attempt")?,
                at: r.try_get("at")?,
                status: r.try_get("status")?,
                error: r.try_get("error")?,
                duration_ms: r.try_get("duration_ms")?,
                final_state: r.try_get("final_state")?,
                worker: r.try_get("worker")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    out.reverse();
    Ok(out)
}

/// Set by the ingest when it committed events: the delivery task looks at once instead of at its
/// next poll.
static WOKEN: AtomicBool = AtomicBool::new(false);
static WAKE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells this process's delivery task that the outbox has new rows.
pub fn wake() {
    WOKEN.store(true, Ordering::Relaxed);
    WAKE.notify_one();
}

/// The subscriptions as one write transaction sees them: read at most once per transaction
/// (on SQLite a group of reports shares one; nothing else writes while it holds the write lock).
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// `(id, filter)` of every subscription; `None` until read.
    read: Option<Vec<(i64, Filter)>>,
}

impl Subscriptions {
    async fn get(&mut self, conn: &mut AnyConnection) -> Result<&[(i64, Filter)], sqlx::Error> {
        if self.read.is_none() {
            let rows = sqlx::query("SELECT id, components, actions, host_glob FROM webhooks")
                .fetch_all(&mut *conn)
                .await?;
            let mut all = Vec::with_capacity(rows.len());
            for s in &rows {
                let filter = Filter::from_row(
                    &s.try_get::<String, _>("components")?,
                    &s.try_get::<String, _>("actions")?,
                    &s.try_get::<String, _>("host_glob")?,
                );
                all.push((s.try_get("id")?, filter));
            }
            self.read = Some(all);
        }
        Ok(self.read.as_deref().unwrap_or_default())
    }
}

/// Writes the events of a report's changes into the outbox, on the report's transaction. With no
/// change nothing is read; with changes, the subscriptions (one `SELECT` per transaction: an
/// empty table when nobody subscribed) and one multi-row `INSERT` per 200 events. Returns how many
/// it wrote.
pub async fn enqueue(
    conn: &mut AnyConnection,
    subscriptions: &mut Subscriptions,
    now: i64,
    host: &str,
    report_id: &str,
    changes: &[Change<'_>],
) -> Result<usize, sqlx::Error> {
    if changes.is_empty() {
        return Ok(0);
    }
    let subscriptions = subscriptions.get(&mut *conn).await?;
    if subscriptions.is_empty() {
        return Ok(0);
    }
    let time = crate::clock::rfc3339(now);
    let mut rows: Vec<(i64, String, String)> = Vec::new();
    for (id, filter) in subscriptions {
        if !filter.matches_host(host) {
            continue;
        }
        for c in changes.iter().filter(|c| filter.matches_change(c)) {
            let event_id = event_id();
            let body = event_body(&event_id, *id, host, report_id, &time, c);
            rows.push((*id, event_id, body));
        }
    }
    let now_ms = now.saturating_mul(1000);
    for chunk in rows.chunks(200) {
        let sql = format!(
            "INSERT INTO webhook_outbox (state, created_at, next_attempt_ms, webhook_id, event_id, body) VALUES {}",
            crate::ingest::values_list(chunk.len(), 2, 3, "'pending', $1, $2")
        );
        let mut q = sqlx::query(&sql).bind(now).bind(now_ms);
        for (id, event_id, body) in chunk {
            q = q.bind(*id).bind(event_id.as_str()).bind(body.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    if !rows.is_empty() {
        tracing::debug!(events = rows.len(), "webhook events queued");
    }
    Ok(rows.len())
}

/// A random event id: 32 hex digits. (The system random source cannot fail on Linux once booted;
/// should it, the time and a counter keep ids unique in this process.)
fn event_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    match crate::keys::random_bytes::<16>() {
        Ok(b) => hex::encode(b),
        Err(_) => format!(
            "{:016x}{:016x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

/// The JSON an event is POSTed as (documented in docs/contracts.md).
pub fn event_body(
    event_id: &str,
    webhook_id: i64,
    host: &str,
    report_id: &str,
    time: &str,
    c: &Change<'_>,
) -> String {
    let value = |v: &Option<String>| -> Value {
        v.as_deref()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())))
            .unwrap_or(Value::Null)
    };
    let mut body = json!({
        "event_id": event_id,
        "webhook_id": webhook_id,
        "host": host,
        "component": c.kind,
        "item": c.item,
        "action": c.action,
        "old": value(&c.old),
        "new": value(&c.new),
        "truncated": false,
        "report_id": report_id,
        "time": time,
    });
    let text = body.to_string();
    if text.len() <= MAX_BODY_BYTES {
        return text;
    }
    body["old"] = Value::Null;
    body["new"] = Value::Null;
    body["truncated"] = Value::Bool(true);
    body.to_string()
}

/// `sha256=<hex>`: HMAC-SHA256 under the secret over `TIMESTAMP.BODY` (the timestamp's decimal
/// text, a full stop, the raw body bytes).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delivery task's settings (`serve`'s `webhook_*` keys).
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// One attempt's limit: connect, send, and the response's status line.
    pub timeout: Duration,
    /// Attempts before an event is marked failed.
    pub max_attempts: u32,
    /// The longest wait between two attempts (the wait doubles from 1 s up to it, with jitter).
    pub backoff_max: Duration,
    /// How often the outbox is looked at when nothing woke the task.
    pub poll: Duration,
}

impl Delivery {
    /// The wait before attempt `attempts + 1`: 1 s doubled per failed attempt, capped, then a
    /// random point in its upper half (so that many failed events do not retry in step).
    pub fn backoff(&self, attempts: u32, random: f64) -> Duration {
        let base = Duration::from_secs(1)
            .saturating_mul(1 << attempts.saturating_sub(1).min(20))
            .min(self.backoff_max);
        base.mul_f64(0.5 + 0.5 * random.clamp(0.0, 1.0))
    }

    /// How long a server holds an event it is POSTing: another server takes it over after that
    /// (at-least-once: a server that died mid-POST may have delivered it).
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `serve`'s delivery task: never returns. The master key opens the subscriptions' secrets; it is
/// loaded (or created) the first time a subscription exists.
pub async fn run(db: Db, settings: Delivery, master_key: std::path::PathBuf) {
    let worker = hex::encode(crate::keys::random_bytes::<8>().unwrap_or_default());
    let mut master: Option<MasterKey> = None;
    loop {
        WOKEN.store(false, Ordering::Relaxed);
        match round(&db, &settings, &master_key, &mut master, &worker).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "webhook delivery: cannot read the outbox")
            }
        }
        if !WOKEN.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(settings.poll, WAKE.notified()).await;
        }
    }
}

struct Target {
    id: i64,
    uri: Uri,
    secret: Vec<u8>,
}

/// One pass over the subscriptions: each one's due events are POSTed in order, the subscriptions
/// side by side. `Ok(true)` when something was delivered (look again at once).
async fn round(
    db: &Db,
    settings: &Delivery,
    master_key: &std::path::Path,
    master: &mut Option<MasterKey>,
    worker: &str,
) -> anyhow::Result<bool> {
    let rows = sqlx::query(
        "SELECT id, url, secret FROM webhooks w WHERE EXISTS \
         (SELECT 1 FROM webhook_outbox o WHERE o.webhook_id = w.id AND o.state = 'pending') ORDER BY id",
    )
    .fetch_all(&db.read)
    .await?;
    if rows.is_empty() {
        return Ok(false);
    }
    if master.is_none() {
        *master = Some(MasterKey::load_or_create(master_key)?);
    }
    let master = master.as_ref().expect("loaded above");
    let mut tasks = tokio::task::JoinSet::new();
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let url: String = r.try_get("url")?;
        let sealed: String = r.try_get("secret")?;
        let Some(secret) = master.open(&sealing_name(&url), &sealed) else {
            tracing::warn!(
                webhook = id,
                "webhook secret does not open under this master key: not delivered"
            );
            continue;
        };
        let uri = match check_url(&url) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(webhook = id, error = %e, "webhook url refused: not delivered");
                continue;
            }
        };
        let target = Target { id, uri, secret };
        let (db, settings, worker) = (db.clone(), *settings, worker.to_owned());
        tasks.spawn(async move { drain(&db, &settings, &target, &worker).await });
    }
    let mut delivered = false;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(n)) => delivered |= n > 0,
            Ok(Err(e)) => tracing::warn!(error = %e, "webhook delivery: database error"),
            Err(e) => tracing::error!(error = %e, "webhook delivery task failed"),
        }
    }
    Ok(delivered)
}

/// POSTs one subscription's due events in order until one fails or none is due; returns how many
/// were delivered.
async fn drain(
    db: &Db,
    settings: &Delivery,
    target: &Target,
    worker: &str,
) -> Result<usize, sqlx::Error> {
    let mut delivered = 0;
    loop {
        let now = now_ms();
        // The head of this subscription's queue: while it is pending, nothing after it is sent.
        let Some(head) = sqlx::query(
            "SELECT id, event_id, body, attempts, next_attempt_ms, leased_until_ms FROM webhook_outbox \
             WHERE webhook_id = $1 AND state = 'pending' ORDER BY id LIMIT 1",
        )
        .bind(target.id)
        .fetch_optional(&db.read)
        .await?
        else {
            return Ok(delivered);
        };
        let id: i64 = head.try_get("id")?;
        let next: i64 = head.try_get("next_attempt_ms")?;
        let leased: i64 = head.try_get("leased_until_ms")?;
        if next > now || leased > now {
            return Ok(delivered);
        }
        // The claim: one UPDATE that only succeeds while nobody holds the lease. On PostgreSQL a
        // second server's UPDATE waits for the first's row lock, then re-checks the condition on
        // the new row and updates nothing; SQLite has one writer.
        let lease_until = now + settings.lease().as_millis() as i64;
        let mut tx = db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE webhook_outbox SET leased_until_ms = $1, leased_by = $2 \
             WHERE id = $3 AND state = 'pending' AND leased_until_ms <= $4 AND next_attempt_ms <= $4",
        )
        .bind(lease_until)
        .bind(worker)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if claimed != 1 {
            return Ok(delivered);
        }
        let event_id: String = head.try_get("event_id")?;
        let body: String = head.try_get("body")?;
        let attempts: i64 = head.try_get("attempts")?;
        let attempt = attempts + 1;
        let started = std::time::Instant::now();
        let result = post(target, &event_id, body.into_bytes(), settings.timeout).await;
        let duration_ms = started.elapsed().as_millis() as i64;
        let (status, error) = match &result {
            Ok(s) if (200..300).contains(s) => (Some(i64::from(*s)), None),
            Ok(s) => (Some(i64::from(*s)), Some(format!("HTTP {s}"))),
            Err(e) => (None, Some(e.clone())),
        };
        let ok = error.is_none();
        let state = if ok {
            "delivered"
        } else if attempt >= i64::from(settings.max_attempts) {
            "failed"
        } else {
            "pending"
        };
        let wait = settings.backoff(u32::try_from(attempt).unwrap_or(u32::MAX), fastrand_f64());
        let next_ms = now_ms() + wait.as_millis() as i64;
        let mut tx = db.begin_write().await?;
        sqlx::query(
            "UPDATE webhook_outbox SET state = $1, attempts = $2, next_attempt_ms = $3, \
             leased_until_ms = 0, leased_by = NULL, \
             finished_at = CASE WHEN $1 = 'pending' THEN NULL ELSE $4 END WHERE id = $5 AND state = 'pending'",
        )
        .bind(state)
        .bind(attempt)
        .bind(next_ms)
        .bind(crate::clock::now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (outbox_id, webhook_id, event_id, attempt, at, status, error, duration_ms, final_state, worker) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(id)
        .bind(target.id)
        .bind(&event_id)
        .bind(attempt)
        .bind(crate::clock::now())
        .bind(status)
        .bind(error.as_deref())
        .bind(duration_ms)
        .bind(state)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        match (ok, state) {
            (true, _) => {
                tracing::debug!(webhook = target.id, event = %event_id, attempt, "webhook delivered");
                delivered += 1;
            }
            (false, "failed") => {
                tracing::warn!(webhook = target.id, event = %event_id, attempt, error = error.as_deref().unwrap_or(""), "webhook event failed: no more attempts");
                // the queue moves on past a failed event
            }
            (false, _) => {
                tracing::info!(webhook = target.id, event = %event_id, attempt, error = error.as_deref().unwrap_or(""), retry_in_ms = wait.as_millis() as u64, "webhook delivery failed, will retry");
                return Ok(delivered);
            }
        }
    }
}

/// A number in [0, 1) from the system random source (jitter only: a failure gives 0.5).
fn fastrand_f64() -> f64 {
    crate::keys::random_bytes::<8>()
        .map(|b| (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
        .unwrap_or(0.5)
}

/// One POST: the status code, or why there is none (the error's text, one line).
async fn post(
    target: &Target,
    event_id: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<u16, String> {
    let uri = &target.uri;
    let host = uri.host().unwrap_or("").trim_matches(['[', ']']).to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let timestamp = crate::clock::now();
    let signature = signature(&target.secret, timestamp, &body);
    let attempt = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("http handshake: {e}"))?;
        let connection = tokio::spawn(connection);
        let request = Request::post(path)
            .header(header::HOST, authority)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("auto-server/", env!("CARGO_PKG_VERSION")),
            )
            .header(EVENT_HEADER, event_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(axum::body::Body::from(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"));
        connection.abort();
        Ok::<u16, String>(response?.status().as_u16())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(kind: &'a str, action: &'static str) -> Change<'a> {
        Change {
            kind,
            item: "X",
            action,
            old: None,
            new: None,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*", ""));
        assert!(glob("web-*", "WEB-12"));
        assert!(glob("db-?", "db-1") && !glob("db-?", "db-12"));
        assert!(glob("*.dimms", "memory.dimms"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
        assert!(!glob("memory", "memory.dimms"));
    }

    #[test]
    fn filters_select_component_action_and_host() {
        let f = Filter::new(
            &["memory.dimms,disk.*".to_owned()],
            &["removed".to_owned()],
            "web-*",
        )
        .expect("valid");
        assert!(f.matches("web-1", &change("memory.dimms", "removed")));
        assert!(f.matches("web-1", &change("disk.disks", "removed")));
        assert!(!f.matches("web-1", &change("memory.dimms", "added")));
        assert!(!f.matches("web-1", &change("nic.interfaces", "removed")));
        assert!(!f.matches("db-1", &change("memory.dimms", "removed")));
        let all = Filter::new(&[], &[], "*").expect("valid");
        assert!(all.matches("any", &change("os", "changed")));
        assert!(Filter::new(&[], &["deleted".to_owned()], "*").is_err());
        assert!(Filter::new(&[], &[], "").is_err());
    }

    #[test]
    fn urls_are_http_with_a_host() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://example.com/").is_err());
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // computed independently: `printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe`
        let s = signature(b"Jefe", 1_700_000_000, b"{}");
        assert_eq!(
            s,
            "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let d = Delivery {
            timeout: Duration::from_secs(10),
            max_attempts: 10,
            backoff_max: Duration::from_secs(60),
            poll: Duration::from_secs(1),
        };
        assert_eq!(d.backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(d.backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(d.backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(d.backoff(30, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn an_oversized_event_drops_its_values() {
        let big = format!("\"{}\"", "x".repeat(MAX_BODY_BYTES));
        let c = Change {
            kind: "k",
            item: "i",
            action: "changed",
            old: Some(big),
            new: Some("1".to_owned()),
        };
        let body: Value =
            serde_json::from_str(&event_body("e", 1, "h", "r", "t", &c)).expect("json");
        assert_eq!(body["truncated"], true);
        assert_eq!(body["old"], Value::Null);
    }
}
