//! Applies a checked report: host identity, current state, change log and error log, all in one
//! transaction. The answer is stored with the `report_id`, so a retried report is applied once and
//! answered with the first answer.
//!
//! Nothing here knows any collector: every `ok` collector's data is the contract's generic shape
//! (`auto_proto::data`), kept as components `(kind, item)`: facts under kind `PLUGIN` (item = the
//! fact's name), parts under kind `PLUGIN.LIST` (item = the part's id). A part list the collector
//! could not see (`unavailable`) keeps its stored parts, marked unknown since then; a fact that is
//! `null` with a `reasons` entry is unknown too and keeps its stored value.

use std::collections::{BTreeSet, HashMap, HashSet};

use auto_proto::data::PartList;
use auto_proto::{IngestResponse, Problem, Warning};
use serde_json::Value;
use sqlx::{Any, AnyConnection, Row};

use crate::db::{self, Db};
use crate::report::{is_placeholder, Checked};
use crate::webhooks::Change;

/// What a key may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// Any host (a fleet key: ssh or salt mode's controller, or the server without auth).
    AnyHost,
    /// Only the host with this id (an agent's own key).
    Host(i64),
}

/// What became of a report; the HTTP layer renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied: 201 (`created`) or 200 (`updated`, `renamed`).
    Applied {
        status: u16,
        response: IngestResponse,
    },
    /// The name belongs to another host: nothing stored but the error row (409).
    Conflict { detail: String },
    /// This `report_id` was seen before: its first answer, nothing changed.
    Repeat { status: u16, body: String },
    /// The request's nonce was seen before: a replay (401), nothing changed.
    Replayed,
    /// The key may not write this host (403), nothing changed.
    Forbidden { detail: String },
}

impl Outcome {
    /// The status and JSON body the client gets (and, for a stored answer, gets again).
    pub fn status_and_body(&self) -> (u16, String) {
        match self {
            Outcome::Applied { status, response } => {
                (*status, serde_json::to_string(response).unwrap_or_default())
            }
            Outcome::Conflict { detail } => (409, problem_text(409, "hostname_taken", detail)),
            Outcome::Repeat { status, body } => (*status, body.clone()),
            Outcome::Replayed => (
                401,
                problem_text(401, "unauthorized", crate::auth::UNAUTHORIZED),
            ),
            Outcome::Forbidden { detail } => (403, problem_text(403, "forbidden", detail)),
        }
    }
}

fn problem_text(status: u16, code: &str, detail: &str) -> String {
    let title = match status {
        401 => "unauthorized",
        403 => "forbidden",
        409 => "conflict",
        _ => "error",
    };
    serde_json::to_string(&Problem {
        type_: format!("urn:auto-server:problem:{code}"),
        title: title.into(),
        status,
        detail: detail.to_owned(),
        code: code.to_owned(),
    })
    .unwrap_or_default()
}

struct HostRow {
    id: i64,
    hostname: String,
    last_report_at: Option<i64>,
    machine_id: Option<String>,
    serial: Option<String>,
    system_uuid: Option<String>,
}

/// Applies a report, retrying when a concurrent transaction won a race (a name or report id
/// taken between our read and our write). `nonce` is the request's, recorded in the same
/// transaction: a nonce seen before is a replay and nothing is applied.
///
/// One transaction per report. On SQLite the server goes through [`Writer`], which commits
/// several reports in one transaction; this is the path for PostgreSQL and for tests.
pub async fn ingest(
    db: &Db,
    checked: &Checked,
    nonce: Option<(&str, i64)>,
    scope: WriteScope,
) -> Result<Outcome, sqlx::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ingest_once(db, checked, nonce, scope).await {
            Err(e) if attempt < 4 && db::is_retryable(&e) => {
                tracing::debug!(attempt, error = %e, "ingest lost a race, retrying");
            }
            other => return other,
        }
    }
}

async fn ingest_once(
    db: &Db,
    checked: &Checked,
    nonce: Option<(&str, i64)>,
    scope: WriteScope,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let (outcome, keep) = ingest_in(&mut tx, db, checked, nonce, scope).await?;
    match keep {
        Keep::Commit { changed } => {
            tx.commit().await?;
            if changed {
                // the webhook events this report put in the outbox are there now
                crate::webhooks::wake();
            }
        }
        Keep::Discard => tx.rollback().await?,
    }
    Ok(outcome)
}

/// Whether what [`ingest_in`] wrote is to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// `changed`: it wrote change rows (and with them, maybe, webhook events).
    Commit { changed: bool },
    /// Nothing of the report may be written (not even its nonce): a refused key.
    Discard,
}

/// How many reports [`Writer`] commits in one transaction at most.
pub const GROUP_MAX: usize = 64;

/// The SQLite writer: reports queue here and are applied by one task, as many as are waiting
/// (up to [`GROUP_MAX`]) in one transaction, each inside its own savepoint, with one `COMMIT` (one
/// sync of the WAL) for all. No report waits for company: the group is whatever queued while the
/// previous one committed. Every report's answer is sent only after its group's `COMMIT`
/// succeeded; if the `COMMIT` (or the transaction) fails, every report of the group gets the
/// error (503: nothing of it is stored). A report whose own statements fail is rolled back to its
/// savepoint and answered with its error; the others of its group are unaffected.
///
/// SQLite has one writer anyway (`Db::write` holds one connection), so grouping takes no
/// concurrency away; on PostgreSQL reports go one transaction each ([`ingest`]), concurrently.
#[derive(Clone)]
pub struct Writer {
    db: Db,
    queue: Option<tokio::sync::mpsc::Sender<Job>>,
}

struct Job {
    checked: Checked,
    nonce: Option<(String, i64)>,
    scope: WriteScope,
    done: tokio::sync::oneshot::Sender<Result<Outcome, sqlx::Error>>,
}

impl Writer {
    /// Starts the grouping task on SQLite (it ends when the last `Writer` is dropped).
    pub fn new(db: Db) -> Writer {
        let queue = (db.backend == db::Backend::Sqlite).then(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * GROUP_MAX);
            tokio::spawn(group_task(db.clone(), rx));
            tx
        });
        Writer { db, queue }
    }

    pub async fn ingest(
        &self,
        checked: Checked,
        nonce: Option<(String, i64)>,
        scope: WriteScope,
    ) -> Result<Outcome, sqlx::Error> {
        let Some(queue) = &self.queue else {
            let nonce = nonce.as_ref().map(|(n, ts)| (n.as_str(), *ts));
            return ingest(&self.db, &checked, nonce, scope).await;
        };
        let (done, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            checked,
            nonce,
            scope,
            done,
        };
        if queue.send(job).await.is_err() {
            return Err(lost("the writer task has stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(lost("the writer task dropped the report")))
    }
}

fn lost(why: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(why.to_owned()))
}

async fn group_task(db: Db, mut queue: tokio::sync::mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(GROUP_MAX);
    while queue.recv_many(&mut jobs, GROUP_MAX).await > 0 {
        apply_group(&db, std::mem::take(&mut jobs)).await;
    }
}

async fn apply_group(db: &Db, jobs: Vec<Job>) {
    let count = jobs.len();
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => {
            let why = e.to_string();
            for job in jobs {
                let _ = job.done.send(Err(lost(&why)));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(count);
    let mut broken = None;
    let mut any_changed = false;
    for job in jobs {
        if broken.is_some() {
            answers.push((job.done, None));
            continue;
        }
        let nonce = job.nonce.as_ref().map(|(n, ts)| (n.as_str(), *ts));
        if let Err(e) = sqlx::query("SAVEPOINT report").execute(&mut *tx).await {
            broken = Some(e.to_string());
            answers.push((job.done, None));
            continue;
        }
        let result = ingest_in(&mut tx, db, &job.checked, nonce, job.scope).await;
        let end = match &result {
            Ok((_, Keep::Commit { changed })) => {
                any_changed |= changed;
                "RELEASE report"
            }
            _ => "ROLLBACK TO report",
        };
        let mut ended = sqlx::query(end).execute(&mut *tx).await.map(|_| ());
        if ended.is_ok() && end != "RELEASE report" {
            ended = sqlx::query("RELEASE report")
                .execute(&mut *tx)
                .await
                .map(|_| ());
        }
        if let Err(e) = ended {
            // SQLite rolls a whole transaction back on some errors (a full disk, I/O): the
            // savepoint is gone, and with it everything of the group
            broken = Some(e.to_string());
            answers.push((job.done, None));
            continue;
        }
        answers.push((job.done, Some(result.map(|(outcome, _)| outcome))));
    }
    let committed = match broken {
        Some(why) => Err(why),
        None => tx.commit().await.map_err(|e| e.to_string()),
    };
    if count > 1 {
        tracing::debug!(reports = count, ok = committed.is_ok(), "group committed");
    }
    if committed.is_ok() && any_changed {
        // the webhook events the group put in the outbox are there now
        crate::webhooks::wake();
    }
    for (done, result) in answers {
        let answer = match (&committed, result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(lost("the transaction of this report's group failed")),
            (Err(why), _) => Err(lost(&format!("the group's transaction failed: {why}"))),
        };
        let _ = done.send(answer);
    }
}

enum Plan {
    Create,
    Claim(HostRow),
    Update(HostRow),
    Rename(HostRow),
    KeepOldName(HostRow),
    Conflict,
}

async fn find_host(
    conn: &mut AnyConnection,
    db: &Db,
    hostname: &str,
) -> Result<Option<HostRow>, sqlx::Error> {
    let sql = format!(
        "SELECT id, hostname, last_report_at, machine_id, serial, system_uuid FROM hosts \
         WHERE lower(hostname) = lower($1){}",
        db.backend.for_update()
    );
    let Some(r) = sqlx::query(&sql)
        .bind(hostname)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(HostRow {
        id: r.try_get("id")?,
        hostname: r.try_get("hostname")?,
        last_report_at: r.try_get("last_report_at")?,
        machine_id: r.try_get("machine_id")?,
        serial: r.try_get("serial")?,
        system_uuid: r.try_get("system_uuid")?,
    }))
}

/// Which host the report is for, by the identity rule (names compared case-insensitively).
async fn plan(conn: &mut AnyConnection, db: &Db, checked: &Checked) -> Result<Plan, sqlx::Error> {
    let report = &checked.report;
    let by_name = find_host(conn, db, &report.hostname).await?;
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    Ok(match (&report.previous_hostname, by_name) {
        (None, None) => Plan::Create,
        (None, Some(h)) if h.last_report_at.is_none() => Plan::Claim(h),
        (None, Some(_)) => Plan::Conflict,
        (Some(prev), Some(h)) if same(prev, &report.hostname) => Plan::Update(h),
        (Some(prev), None) if same(prev, &report.hostname) => Plan::Create,
        (Some(prev), by_name) => match (find_host(conn, db, prev).await?, by_name) {
            (Some(old), None) => Plan::Rename(old),
            (Some(old), Some(h)) if old.id == h.id => Plan::Update(h),
            (Some(old), Some(_)) => Plan::KeepOldName(old),
            (None, None) => Plan::Create,
            (None, Some(h)) if h.last_report_at.is_none() => Plan::Claim(h),
            (None, Some(_)) => Plan::Conflict,
        },
    })
}

#[tracing::instrument(skip_all, fields(report_id = %checked.report.report_id, hostname = %checked.report.hostname))]
async fn ingest_in(
    tx: &mut AnyConnection,
    db: &Db,
    checked: &Checked,
    nonce: Option<(&str, i64)>,
    scope: WriteScope,
) -> Result<(Outcome, Keep), sqlx::Error> {
    let report = &checked.report;
    let now = crate::clock::now();
    if let Some((nonce, timestamp)) = nonce {
        if !crate::auth::record_nonce(&mut *tx, nonce, timestamp).await? {
            tracing::warn!("request refused: nonce replayed");
            return Ok((Outcome::Replayed, Keep::Discard));
        }
    }
    if let Some(row) = sqlx::query("SELECT status, body FROM reports WHERE report_id = $1")
        .bind(&report.report_id)
        .fetch_optional(&mut *tx)
        .await?
    {
        let status: i64 = row.try_get("status")?;
        tracing::info!(status, "report seen before, answering as the first time");
        let outcome = Outcome::Repeat {
            status: u16::try_from(status).unwrap_or(500),
            body: row.try_get("body")?,
        };
        return Ok((outcome, Keep::Commit { changed: false })); // keeps the nonce
    }

    let plan = plan(&mut *tx, db, checked).await?;
    if let WriteScope::Host(allowed) = scope {
        let target = match &plan {
            Plan::Claim(h) | Plan::Update(h) | Plan::Rename(h) | Plan::KeepOldName(h) => Some(h.id),
            Plan::Create | Plan::Conflict => None,
        };
        if target != Some(allowed) {
            tracing::warn!("report refused: the key is bound to another host");
            // The transaction (and with it the nonce) is dropped: nothing is written.
            let outcome = Outcome::Forbidden {
                detail: format!(
                    "this key may only report for its own host, not for {:?}",
                    report.hostname
                ),
            };
            return Ok((outcome, Keep::Discard));
        }
    }

    let mut warnings = Vec::new();
    let (host, outcome, status) = match plan {
        Plan::Conflict => {
            let detail = format!(
                "hostname {:?} belongs to another host: nothing was stored",
                report.hostname
            );
            log_error(
                &mut *tx,
                now,
                "hostname_taken",
                Some(&report.hostname),
                Some(&report.report_id),
                None,
                &detail,
            )
            .await?;
            let outcome = Outcome::Conflict { detail };
            let (status, body) = outcome.status_and_body();
            store_answer(
                &mut *tx,
                &report.report_id,
                &report.hostname,
                now,
                status,
                &body,
            )
            .await?;
            tracing::warn!(outcome = "conflict", "report refused: hostname taken");
            return Ok((outcome, Keep::Commit { changed: false }));
        }
        Plan::Create => {
            let row = sqlx::query(
                "INSERT INTO hosts (hostname, created_at) VALUES ($1, $2) RETURNING id",
            )
            .bind(&report.hostname)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let host = HostRow {
                id: row.try_get("id")?,
                hostname: report.hostname.clone(),
                last_report_at: None,
                machine_id: None,
                serial: None,
                system_uuid: None,
            };
            (host, "created", 201)
        }
        Plan::Claim(h) => (h, "created", 201),
        Plan::Update(mut h) => {
            if h.hostname != report.hostname && h.hostname.eq_ignore_ascii_case(&report.hostname) {
                // The same DNS name in another spelling: keep the one the host reports now.
                set_hostname(&mut *tx, h.id, &report.hostname).await?;
                h.hostname = report.hostname.clone();
            }
            (h, "updated", 200)
        }
        Plan::Rename(mut h) => {
            set_hostname(&mut *tx, h.id, &report.hostname).await?;
            tracing::info!(old = %h.hostname, new = %report.hostname, "host renamed");
            h.hostname = report.hostname.clone();
            (h, "renamed", 200)
        }
        Plan::KeepOldName(h) => {
            let message = format!(
                "host {:?} asked to be renamed to {:?}, which belongs to another host: kept the old name",
                h.hostname, report.hostname
            );
            log_error(
                &mut *tx,
                now,
                "hostname_taken",
                Some(&h.hostname),
                Some(&report.report_id),
                None,
                &message,
            )
            .await?;
            warnings.push(Warning {
                code: "hostname_taken".into(),
                message,
            });
            (h, "updated", 200)
        }
    };

    let (changed, resend) = apply(&mut *tx, now, &host, checked).await?;
    // The search index follows what a search can find: names, identity, non-volatile components.
    let ident = &checked.identity;
    let identity_moved = [
        (&ident.machine_id, &host.machine_id),
        (&ident.serial, &host.serial),
        (&ident.system_uuid, &host.system_uuid),
    ]
    .iter()
    .any(|(new, old)| new.as_ref().is_some_and(|v| v.as_ref() != old.as_ref()));
    if changed || status == 201 || outcome == "renamed" || identity_moved {
        crate::search::reindex(&mut *tx, host.id).await?;
    }

    let outcome = Outcome::Applied {
        status,
        response: IngestResponse {
            outcome: outcome.into(),
            hostname: host.hostname.clone(),
            report_id: report.report_id.clone(),
            warnings,
            resend,
        },
    };
    let (status, body) = outcome.status_and_body();
    store_answer(
        &mut *tx,
        &report.report_id,
        &host.hostname,
        now,
        status,
        &body,
    )
    .await?;
    // Which host the report went to and its last change row: the past is rebuilt from these.
    sqlx::query(
        "UPDATE reports SET host_id = $1, last_change_id = \
         (SELECT COALESCE(MAX(id), 0) FROM changes WHERE host_id = $1) WHERE report_id = $2",
    )
    .bind(host.id)
    .bind(&report.report_id)
    .execute(&mut *tx)
    .await?;
    tracing::info!(status, host = %host.hostname, "report applied (kept when its transaction commits)");
    Ok((outcome, Keep::Commit { changed }))
}

async fn set_hostname(
    conn: &mut AnyConnection,
    id: i64,
    hostname: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE hosts SET hostname = $1 WHERE id = $2")
        .bind(hostname)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn store_answer(
    conn: &mut AnyConnection,
    report_id: &str,
    hostname: &str,
    now: i64,
    status: u16,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reports (report_id, hostname, received_at, status, body) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(report_id)
    .bind(hostname)
    .bind(now)
    .bind(i64::from(status))
    .bind(body)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes one row of the error log.
pub async fn log_error<'e, E>(
    executor: E,
    now: i64,
    code: &str,
    hostname: Option<&str>,
    report_id: Option<&str>,
    plugin: Option<&str>,
    message: &str,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO errors (at, code, hostname, report_id, plugin, message) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now)
    .bind(code)
    .bind(hostname)
    .bind(report_id)
    .bind(plugin)
    .bind(message)
    .execute(executor)
    .await?;
    Ok(())
}

/// One component the report says the host has now.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    pub kind: String,
    pub item: String,
    pub value: Value,
    pub volatile: bool,
}

/// What the report's `ok` collectors say, as components: the ones the host has now, the kinds
/// they speak for (anything stored of those kinds and not wanted has been removed), the items
/// they could not see (kept as they are), and the state of each part list.
/// A part list as the report leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListState {
    pub kind: String,
    /// Why it could not be seen; `None`: seen.
    pub unavailable: Option<String>,
    /// The digest of what was seen (`None`: keep the stored one).
    pub digest: Option<String>,
}

#[derive(Debug, Default)]
pub struct Desired {
    pub wanted: Vec<Wanted>,
    pub owned: HashSet<String>,
    pub unknown: HashSet<(String, String)>,
    /// The state of every list the report speaks of, seen or unavailable.
    pub lists: Vec<ListState>,
    /// Lists sent as `unchanged`, with their digest: kept as stored when the digest matches.
    pub unchanged: Vec<(String, String)>,
}

/// Turns the checked report into components. Pure: the stored kinds are passed in, so that a
/// list a collector no longer reports at all is owned (and its parts removed).
pub fn desired(checked: &Checked, stored_kinds: &HashSet<String>) -> Desired {
    let mut d = Desired::default();
    for (plugin, data) in &checked.plugins {
        d.owned.insert(plugin.clone());
        let prefix = format!("{plugin}.");
        for kind in stored_kinds.iter().filter(|k| k.starts_with(&prefix)) {
            d.owned.insert(kind.clone());
        }
        for (values, volatile) in [(&data.facts, false), (&data.volatile, true)] {
            for (name, value) in values {
                if value.is_null() {
                    if data.reasons.contains_key(name) {
                        d.unknown.insert((plugin.clone(), name.clone()));
                    }
                    continue;
                }
                d.wanted.push(Wanted {
                    kind: plugin.clone(),
                    item: name.clone(),
                    value: value.clone(),
                    volatile,
                });
            }
        }
        for (list, parts) in &data.lists {
            let kind = format!("{plugin}.{list}");
            match parts {
                PartList::Seen { parts, digest, .. } => {
                    d.owned.insert(kind.clone());
                    d.wanted.extend(parts.iter().map(|p| Wanted {
                        kind: kind.clone(),
                        item: p.id.clone(),
                        value: Value::Object(p.attrs.clone()),
                        volatile: false,
                    }));
                    d.lists.push(ListState {
                        kind,
                        unavailable: None,
                        digest: Some(digest.clone()),
                    });
                }
                PartList::Unavailable { reason } => {
                    d.owned.remove(&kind);
                    d.lists.push(ListState {
                        kind,
                        unavailable: Some(reason.clone()),
                        digest: None,
                    });
                }
                PartList::Unchanged { digest } => {
                    // kept as stored: settled in `apply` against the stored digest
                    d.owned.remove(&kind);
                    d.unchanged.push((kind, digest.clone()));
                }
            }
        }
    }
    d
}

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's bound-parameter limits.
const BATCH: usize = 200;

/// `($1, ...)` groups for a multi-row statement: `fixed` shared parameters, then `per_row` each.
pub(crate) fn values_list(rows: usize, fixed: usize, per_row: usize, shared: &str) -> String {
    let mut sql = String::new();
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        sql.push_str(shared);
        for j in 0..per_row {
            if !shared.is_empty() || j > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", fixed + i * per_row + j + 1));
        }
        sql.push(')');
    }
    sql
}

async fn apply(
    conn: &mut AnyConnection,
    now: i64,
    host: &HostRow,
    checked: &Checked,
) -> Result<(bool, Vec<String>), sqlx::Error> {
    let report = &checked.report;
    let id = &checked.identity;

    // Identity columns: a field no collector declared keeps its value.
    sqlx::query(
        "UPDATE hosts SET last_report_at = $1, last_report_id = $2, \
         machine_id = CASE WHEN $3 = 1 THEN $4 ELSE machine_id END, \
         serial = CASE WHEN $5 = 1 THEN $6 ELSE serial END, \
         system_uuid = CASE WHEN $7 = 1 THEN $8 ELSE system_uuid END \
         WHERE id = $9",
    )
    .bind(now)
    .bind(&report.report_id)
    .bind(i64::from(id.machine_id.is_some()))
    .bind(id.machine_id.clone().flatten())
    .bind(i64::from(id.serial.is_some()))
    .bind(id.serial.clone().flatten())
    .bind(i64::from(id.system_uuid.is_some()))
    .bind(id.system_uuid.clone().flatten())
    .bind(host.id)
    .execute(&mut *conn)
    .await?;

    // The dashboard's failing collectors: those that failed in this, now the last, report.
    sqlx::query("DELETE FROM host_failures WHERE host_id = $1")
        .bind(host.id)
        .execute(&mut *conn)
        .await?;
    let failed: BTreeSet<&str> = checked
        .failures
        .iter()
        .map(|(p, _, _)| p.as_str())
        .collect();
    for plugin in failed {
        sqlx::query("INSERT INTO host_failures (host_id, plugin) VALUES ($1, $2)")
            .bind(host.id)
            .bind(plugin)
            .execute(&mut *conn)
            .await?;
    }
    for (plugin, kind, message) in &checked.failures {
        log_error(
            &mut *conn,
            now,
            "plugin_failed",
            Some(&host.hostname),
            Some(&report.report_id),
            Some(plugin),
            &format!("collector {plugin} failed ({kind}): {message}; its data was left as it was"),
        )
        .await?;
    }

    let mut current: HashMap<(String, String), String> = HashMap::new();
    let mut stored_kinds = HashSet::new();
    if !checked.plugins.is_empty() {
        let rows = sqlx::query("SELECT kind, item, data FROM components WHERE host_id = $1")
            .bind(host.id)
            .fetch_all(&mut *conn)
            .await?;
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            stored_kinds.insert(kind.clone());
            current.insert((kind, r.try_get("item")?), r.try_get("data")?);
        }
    }
    let d = desired(checked, &stored_kinds);
    current.retain(|(kind, item), _| {
        d.owned.contains(kind) && !d.unknown.contains(&(kind.clone(), item.clone()))
    });

    let mut changes: Vec<Change> = Vec::new();
    let mut upserts: Vec<(&Wanted, String)> = Vec::new();
    for w in &d.wanted {
        let new_text = serde_json::to_string(&w.value).unwrap_or_default();
        match current.remove(&(w.kind.clone(), w.item.clone())) {
            None => {
                if !w.volatile {
                    changes.push(Change {
                        kind: &w.kind,
                        item: &w.item,
                        action: "added",
                        old: None,
                        new: Some(new_text.clone()),
                    });
                }
                upserts.push((w, new_text));
            }
            Some(old_text) => {
                // Same text is the common case and needs no parse; a different text may still
                // be the same value (key order), so compare values then.
                let same = old_text == new_text
                    || serde_json::from_str::<Value>(&old_text).is_ok_and(|old| old == w.value);
                if !same {
                    if !w.volatile {
                        changes.push(Change {
                            kind: &w.kind,
                            item: &w.item,
                            action: "changed",
                            old: Some(old_text),
                            new: Some(new_text.clone()),
                        });
                    }
                    upserts.push((w, new_text));
                }
            }
        }
    }
    // What is left of an owned kind was not in the report: removed.
    let mut removed: Vec<((String, String), String)> = current.into_iter().collect();
    removed.sort();
    for chunk in removed.chunks(BATCH) {
        let mut sql = String::from("DELETE FROM components WHERE host_id = $1 AND (");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!(
                "(kind = ${} AND item = ${})",
                2 + 2 * i,
                3 + 2 * i
            ));
        }
        sql.push(')');
        let mut q = sqlx::query(&sql).bind(host.id);
        for ((kind, item), _) in chunk {
            q = q.bind(kind).bind(item);
        }
        q.execute(&mut *conn).await?;
    }
    for ((kind, item), old) in &removed {
        changes.push(Change {
            kind,
            item,
            action: "removed",
            old: Some(old.clone()),
            new: None,
        });
    }

    for chunk in upserts.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO components (host_id, updated_at, kind, item, data, volatile) VALUES {} \
             ON CONFLICT (host_id, kind, item) DO UPDATE SET data = excluded.data, \
             updated_at = excluded.updated_at, volatile = excluded.volatile",
            values_list(chunk.len(), 2, 4, "$1, $2")
        );
        let mut q = sqlx::query(&sql).bind(host.id).bind(now);
        for (w, text) in chunk {
            q = q
                .bind(&w.kind)
                .bind(&w.item)
                .bind(text.as_str())
                .bind(i64::from(w.volatile));
        }
        q.execute(&mut *conn).await?;
    }

    for chunk in changes.chunks(BATCH) {
        let sql = format!(
            "INSERT INTO changes (host_id, report_id, at, component, item, action, old_value, new_value) VALUES {}",
            values_list(chunk.len(), 3, 5, "$1, $2, $3")
        );
        let mut q = sqlx::query(&sql)
            .bind(host.id)
            .bind(&report.report_id)
            .bind(now);
        for c in chunk {
            q = q
                .bind(c.kind)
                .bind(c.item)
                .bind(c.action)
                .bind(c.old.clone())
                .bind(c.new.clone());
        }
        q.execute(&mut *conn).await?;
    }
    let changed = !changes.is_empty();
    if changed {
        tracing::debug!(changes = changes.len(), "change log written");
        // the webhook events of these rows, in the same transaction: both or neither
        crate::webhooks::enqueue(&mut *conn, now, &host.hostname, &report.report_id, &changes)
            .await?;
    }

    // Lists sent as unchanged: the same as last seen when the digest is the stored one (then they
    // count as seen now); otherwise left as they are, and the client is asked for them in full.
    let mut lists = d.lists.clone();
    let mut resend = Vec::new();
    for (kind, digest) in &d.unchanged {
        let stored: Option<String> =
            sqlx::query("SELECT digest FROM part_lists WHERE host_id = $1 AND kind = $2")
                .bind(host.id)
                .bind(kind)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get("digest"))
                .transpose()?
                .flatten();
        if stored.as_deref() == Some(digest.as_str()) {
            lists.push(ListState {
                kind: kind.clone(),
                unavailable: None,
                digest: None,
            });
        } else {
            tracing::info!(list = %kind, "an unchanged list's digest is not the stored one: asking for it in full");
            resend.push(kind.clone());
        }
    }

    // Part lists: when each was last seen, its digest, and since when it could not be seen.
    for ListState {
        kind,
        unavailable,
        digest,
    } in &lists
    {
        sqlx::query(
            "INSERT INTO part_lists (host_id, kind, unavailable, unavailable_since, last_seen_at, last_seen_report_id, digest) \
             VALUES ($1, $2, $3, CASE WHEN $4 = 1 THEN $5 ELSE NULL END, CASE WHEN $4 = 1 THEN NULL ELSE $5 END, \
                     CASE WHEN $4 = 1 THEN NULL ELSE $6 END, $7) \
             ON CONFLICT (host_id, kind) DO UPDATE SET unavailable = excluded.unavailable, \
             unavailable_since = CASE WHEN $4 = 1 THEN COALESCE(part_lists.unavailable_since, excluded.unavailable_since) ELSE NULL END, \
             last_seen_at = CASE WHEN $4 = 1 THEN part_lists.last_seen_at ELSE excluded.last_seen_at END, \
             last_seen_report_id = CASE WHEN $4 = 1 THEN part_lists.last_seen_report_id ELSE excluded.last_seen_report_id END, \
             digest = COALESCE($7, part_lists.digest)",
        )
        .bind(host.id)
        .bind(kind)
        .bind(unavailable.as_deref())
        .bind(i64::from(unavailable.is_some()))
        .bind(now)
        .bind(&report.report_id)
        .bind(digest.as_deref())
        .execute(&mut *conn)
        .await?;
    }
    // A list no collector reports any more is gone with its parts.
    for kind in d.owned.iter().filter(|k| k.contains('.')) {
        if !lists.iter().any(|l| l.kind == *kind) {
            sqlx::query("DELETE FROM part_lists WHERE host_id = $1 AND kind = $2")
                .bind(host.id)
                .bind(kind)
                .execute(&mut *conn)
                .await?;
        }
    }

    // Identity values new to this host: flag (never merge) other hosts that share them.
    let checks = [
        (
            "machine_id",
            id.machine_id.as_ref(),
            host.machine_id.as_ref(),
        ),
        ("serial", id.serial.as_ref(), host.serial.as_ref()),
        (
            "system_uuid",
            id.system_uuid.as_ref(),
            host.system_uuid.as_ref(),
        ),
    ];
    for (column, new, old) in checks {
        let Some(Some(value)) = new else { continue };
        if old == Some(value) || is_placeholder(value) {
            continue;
        }
        let sql = format!("SELECT hostname FROM hosts WHERE {column} = $1 AND id <> $2 ORDER BY hostname LIMIT 10");
        let others: Vec<String> = sqlx::query(&sql)
            .bind(value)
            .bind(host.id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| r.try_get("hostname"))
            .collect::<Result<_, _>>()?;
        if !others.is_empty() {
            let message = format!(
                "host {:?} shares {column} {value:?} with {}: flagged, not merged",
                host.hostname,
                others.join(", ")
            );
            tracing::warn!(host = %host.hostname, column, value = %value, "identity shared with other hosts");
            log_error(
                &mut *conn,
                now,
                "identity_shared",
                Some(&host.hostname),
                Some(&report.report_id),
                None,
                &message,
            )
            .await?;
        }
    }
    Ok((changed, resend))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{check, Limits};

    fn checked(plugins: serde_json::Value) -> Checked {
        let body = serde_json::json!({
            "schema": 2, "report_id": "0b0e0a5e-1111-4222-8333-944455556666",
            "hostname": "web-1", "previous_hostname": null, "collected_at": "2026-11-23T09:00:00Z",
            "agent": {"version": "0.1.0", "mode": "agent"}, "plugins": plugins
        });
        let limits = Limits {
            max_depth: 32,
            max_string_bytes: 4096,
        };
        check(&serde_json::to_vec(&body).expect("json"), limits).expect("valid")
    }

    fn ok(data: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"status": "ok", "version": "1", "duration_ms": 1, "data": data})
    }

    #[test]
    fn facts_and_parts_become_components_of_generic_kinds() {
        let c = checked(serde_json::json!({
            "gpu": ok(serde_json::json!({
                "facts": {"driver": "550", "cuda": null},
                "volatile": {"idle_seconds": 3},
                "lists": {"gpus": {"key": ["serial"], "parts": [{"id": "G1", "memory_bytes": 1}]}},
                "reasons": {"cuda": "nvidia-smi says nothing"}
            }))
        }));
        let d = desired(
            &c,
            &HashSet::from(["gpu.old_list".to_owned(), "os".to_owned()]),
        );
        let items: Vec<(&str, &str, bool)> = d
            .wanted
            .iter()
            .map(|w| (w.kind.as_str(), w.item.as_str(), w.volatile))
            .collect();
        assert_eq!(
            items,
            [
                ("gpu", "driver", false),
                ("gpu", "idle_seconds", true),
                ("gpu.gpus", "G1", false)
            ]
        );
        // a null fact with a reason is unknown (kept), a list no longer reported is owned (removed)
        assert!(d.unknown.contains(&("gpu".to_owned(), "cuda".to_owned())));
        assert!(d.owned.contains("gpu.old_list") && !d.owned.contains("os"));
    }

    #[test]
    fn an_unavailable_list_is_not_owned() {
        let c = checked(serde_json::json!({
            "shelf": ok(serde_json::json!({"lists": {"slots": {"unavailable": "shelftool: not found"}}}))
        }));
        let d = desired(&c, &HashSet::from(["shelf.slots".to_owned()]));
        assert!(!d.owned.contains("shelf.slots"));
        assert_eq!(
            d.lists,
            [ListState {
                kind: "shelf.slots".to_owned(),
                unavailable: Some("shelftool: not found".to_owned()),
                digest: None,
            }]
        );
    }

    #[test]
    fn values_lists_number_their_parameters() {
        assert_eq!(
            values_list(2, 2, 2, "$1, $2"),
            "($1, $2, $3, $4),($1, $2, $5, $6)"
        );
        assert_eq!(values_list(1, 0, 2, ""), "($1, $2)");
    }
}
