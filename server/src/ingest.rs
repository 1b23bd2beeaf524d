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

use crate::auth::PendingNonce;
use crate::db::{self, Batch, Db};
use crate::report::{is_placeholder, Checked};
use crate::webhooks::{Change, Subscriptions};

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
    /// The key that signed the request is no longer active (revoked, or removed with its host)
    /// though it was when the request was verified: 401, nothing changed.
    KeyInactive,
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
            Outcome::Replayed | Outcome::KeyInactive => (
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
    /// The rest is read only for the search words and the failure table, so that the report's
    /// transaction need not read them again.
    address: Option<String>,
    /// It has rows in `host_failures` (collectors that failed in its last report).
    failing: bool,
    /// Its hand-entered fields (`search::FIELD_COLUMNS`), those that are set.
    fields: Vec<String>,
}

impl HostRow {
    /// A host created by this report: nothing stored yet.
    fn new(id: i64, hostname: String) -> HostRow {
        HostRow {
            id,
            hostname,
            last_report_at: None,
            machine_id: None,
            serial: None,
            system_uuid: None,
            address: None,
            failing: false,
            fields: Vec::new(),
        }
    }
}

/// Applies a report, retrying when a concurrent transaction won a race (a name or report id
/// taken between our read and our write). `nonce` is the request's, recorded in the same
/// transaction: a nonce seen before is a replay and nothing is applied; so is a request whose key
/// is no longer active (the nonce is recorded only while the key that signed it is).
///
/// One transaction per report. On SQLite the server goes through [`Writer`], which commits
/// several reports in one transaction; this is the path for PostgreSQL and for tests.
pub async fn ingest(
    db: &Db,
    checked: &Checked,
    nonce: Option<&PendingNonce>,
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
    nonce: Option<&PendingNonce>,
    scope: WriteScope,
) -> Result<Outcome, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut subscriptions = Subscriptions::default();
    let (outcome, keep) = ingest_in(&mut tx, db, &mut subscriptions, checked, nonce, scope).await?;
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
/// (up to [`GROUP_MAX`]) in one transaction, with one `COMMIT` (one sync of the WAL) for all. No
/// report waits for company: the group is whatever queued while the previous one committed. Every
/// report's answer is sent only after its group's `COMMIT` succeeded; if the `COMMIT` (or the
/// transaction) fails, every report of the group gets the error (503: nothing of it is stored).
/// A group is first applied without savepoints; if one of its reports fails or is refused (its
/// writes must not be kept), the transaction is rolled back and the group applied again with each
/// report inside its own savepoint: the failed report is rolled back to it and answered with its
/// error (or refusal), the others of its group are unaffected.
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
    nonce: Option<PendingNonce>,
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
        nonce: Option<PendingNonce>,
        scope: WriteScope,
    ) -> Result<Outcome, sqlx::Error> {
        let Some(queue) = &self.queue else {
            return ingest(&self.db, &checked, nonce.as_ref(), scope).await;
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
    // Optimistic first: no savepoints (each costs two statements and a copy of every page the
    // report changes). A report that fails or is refused cannot be undone alone then: the whole
    // group is rolled back and applied again, a savepoint each. Nothing was answered yet.
    let mut end = run_group(db, &jobs, false).await;
    if matches!(end, GroupEnd::Again) {
        tracing::debug!(
            reports = count,
            "a report of the group failed or was refused: the group again, a savepoint each"
        );
        end = run_group(db, &jobs, true).await;
    }
    let (committed, answers) = match end {
        GroupEnd::Committed { answers, changed } => {
            if changed {
                // the webhook events the group put in the outbox are there now
                crate::webhooks::wake();
            }
            (Ok(()), answers)
        }
        GroupEnd::Alone(answer) => (Ok(()), vec![Some(answer)]),
        GroupEnd::Failed(why) => (Err(why), Vec::new()),
        GroupEnd::Again => (Err("the group could not be applied".to_owned()), Vec::new()),
    };
    if count > 1 {
        tracing::debug!(reports = count, ok = committed.is_ok(), "group committed");
    }
    let mut answers = answers.into_iter();
    for job in jobs {
        let answer = match (&committed, answers.next().flatten()) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(lost("the transaction of this report's group failed")),
            (Err(why), _) => Err(lost(&format!("the group's transaction failed: {why}"))),
        };
        let _ = job.done.send(answer);
    }
}

/// How a group's transaction ended.
enum GroupEnd {
    /// Committed; each report's answer (`None`: lost with its savepoint).
    Committed {
        answers: Vec<Option<Result<Outcome, sqlx::Error>>>,
        changed: bool,
    },
    /// A group of one whose report failed or was refused: rolled back, and this is its answer.
    Alone(Result<Outcome, sqlx::Error>),
    /// Not committed (nothing of the group is stored): why.
    Failed(String),
    /// Without savepoints, a report failed or was refused: rolled back, to be run again with them.
    Again,
}

/// Applies a group in one transaction, each report in a savepoint of its own with `savepoints`.
async fn run_group(db: &Db, jobs: &[Job], savepoints: bool) -> GroupEnd {
    let mut tx = match db.begin_write().await {
        Ok(tx) => tx,
        Err(e) => return GroupEnd::Failed(e.to_string()),
    };
    let mut answers = Vec::with_capacity(jobs.len());
    // read once for the group: nothing else writes while its transaction holds the write lock
    let mut subscriptions = Subscriptions::default();
    let mut broken = None;
    let mut any_changed = false;
    for job in jobs {
        if broken.is_some() {
            answers.push(None);
            continue;
        }
        let nonce = job.nonce.as_ref();
        if savepoints {
            if let Err(e) = sqlx::query("SAVEPOINT report").execute(&mut *tx).await {
                broken = Some(e.to_string());
                answers.push(None);
                continue;
            }
        }
        let result = ingest_in(
            &mut tx,
            db,
            &mut subscriptions,
            &job.checked,
            nonce,
            job.scope,
        )
        .await;
        let kept = match &result {
            Ok((_, Keep::Commit { changed })) => Some(*changed),
            _ => None,
        };
        if !savepoints {
            let Some(changed) = kept else {
                // this report's writes cannot be undone alone: none of the group's are kept
                let _ = tx.rollback().await;
                if jobs.len() > 1 {
                    return GroupEnd::Again;
                }
                return GroupEnd::Alone(result.map(|(outcome, _)| outcome));
            };
            any_changed |= changed;
            answers.push(Some(result.map(|(outcome, _)| outcome)));
            continue;
        }
        let end = if kept.is_some() {
            "RELEASE report"
        } else {
            "ROLLBACK TO report"
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
            answers.push(None);
            continue;
        }
        any_changed |= kept.unwrap_or(false);
        answers.push(Some(result.map(|(outcome, _)| outcome)));
    }
    let committed = match broken {
        Some(why) => Err(why),
        None => tx.commit().await.map_err(|e| e.to_string()),
    };
    match committed {
        Ok(()) => GroupEnd::Committed {
            answers,
            changed: any_changed,
        },
        Err(why) => GroupEnd::Failed(why),
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
    // The hosts row is locked (PostgreSQL); the hand-entered fields and the failure flag come
    // along for the search words and the failure table.
    let lock = match db.backend {
        db::Backend::Sqlite => "",
        db::Backend::Postgres => " FOR UPDATE OF h",
    };
    let sql = format!(
        "SELECT h.id, h.hostname, h.last_report_at, h.machine_id, h.serial, h.system_uuid, \
         h.address, f.owner, f.location, f.rack, f.tags, f.notes, \
         CASE WHEN EXISTS (SELECT 1 FROM host_failures x WHERE x.host_id = h.id) \
              THEN 'yes' ELSE 'no' END AS failing \
         FROM hosts h LEFT JOIN host_fields f ON f.host_id = h.id \
         WHERE lower(h.hostname) = lower($1){lock}"
    );
    let Some(r) = sqlx::query(&sql)
        .bind(hostname)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for c in crate::search::FIELD_COLUMNS {
        if let Some(v) = r.try_get::<Option<String>, _>(c)? {
            fields.push(v);
        }
    }
    Ok(Some(HostRow {
        id: r.try_get("id")?,
        hostname: r.try_get("hostname")?,
        last_report_at: r.try_get("last_report_at")?,
        machine_id: r.try_get("machine_id")?,
        serial: r.try_get("serial")?,
        system_uuid: r.try_get("system_uuid")?,
        address: r.try_get("address")?,
        failing: r.try_get::<String, _>("failing")? == "yes",
        fields,
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
    subscriptions: &mut Subscriptions,
    checked: &Checked,
    nonce: Option<&PendingNonce>,
    scope: WriteScope,
) -> Result<(Outcome, Keep), sqlx::Error> {
    let report = &checked.report;
    let now = crate::clock::now();
    // The nonce (only while the key that signed the request is active: the request was
    // verified with a secret `auth::KeyCache` may hold), and the answer to this report_id if it
    // was seen before, in one statement. No row back: a replayed nonce or an inactive key
    // (nothing inserted).
    let seen = match nonce {
        Some(pending) => {
            let (seen_at, expires_at) = crate::auth::nonce_times(pending.timestamp);
            let row = sqlx::query(concat!(
                crate::auth::report_nonce_insert!(),
                " RETURNING (SELECT status FROM reports WHERE report_id = $6) AS status, \
                 (SELECT body FROM reports WHERE report_id = $6) AS body"
            ))
            .bind(&pending.nonce)
            .bind(seen_at)
            .bind(expires_at)
            .bind(&pending.key)
            .bind(&pending.sealed)
            .bind(&report.report_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                if crate::auth::key_active(&mut *tx, pending).await? {
                    tracing::warn!("request refused: nonce replayed");
                    return Ok((Outcome::Replayed, Keep::Discard));
                }
                tracing::warn!(key = %pending.key, "request refused: the key is no longer active");
                return Ok((Outcome::KeyInactive, Keep::Discard));
            };
            row
        }
        None => {
            sqlx::query(
                "SELECT (SELECT status FROM reports WHERE report_id = $1) AS status, \
                 (SELECT body FROM reports WHERE report_id = $1) AS body",
            )
            .bind(&report.report_id)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    if let Some(status) = seen.try_get::<Option<i64>, _>("status")? {
        tracing::info!(status, "report seen before, answering as the first time");
        let outcome = Outcome::Repeat {
            status: u16::try_from(status).unwrap_or(500),
            body: seen
                .try_get::<Option<String>, _>("body")?
                .unwrap_or_default(),
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
    let mut created = false;
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
            // the whole hosts row at once: `apply` has nothing to update
            let ident = &checked.identity;
            let row = sqlx::query(
                "INSERT INTO hosts (hostname, created_at, last_report_at, last_report_id, \
                 machine_id, serial, system_uuid) VALUES ($1, $2, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&report.hostname)
            .bind(now)
            .bind(&report.report_id)
            .bind(ident.machine_id.clone().flatten())
            .bind(ident.serial.clone().flatten())
            .bind(ident.system_uuid.clone().flatten())
            .fetch_one(&mut *tx)
            .await?;
            created = true;
            (
                HostRow::new(row.try_get("id")?, report.hostname.clone()),
                "created",
                201,
            )
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

    // The search index follows what a search can find: names, identity, non-volatile components.
    let ident = &checked.identity;
    let identity_moved = [
        (&ident.machine_id, &host.machine_id),
        (&ident.serial, &host.serial),
        (&ident.system_uuid, &host.system_uuid),
    ]
    .iter()
    .any(|(new, old)| new.as_ref().is_some_and(|v| v.as_ref() != old.as_ref()));
    let target = Target {
        host: &host,
        created,
        reindex: status == 201 || outcome == "renamed" || identity_moved,
    };
    // The writes nobody reads back go out together at the end (`db::Batch`).
    let mut batch = Batch::default();
    let (changed, resend) = apply(
        &mut *tx,
        &mut batch,
        db.backend,
        subscriptions,
        now,
        target,
        checked,
    )
    .await?;

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
    // The answer, with which host the report went to and its last change row: the past is
    // rebuilt from these.
    batch.push(
        "INSERT INTO reports (report_id, hostname, received_at, status, body, host_id, last_change_id) \
         VALUES ($1, $2, $3, $4, $5, $6, (SELECT COALESCE(MAX(id), 0) FROM changes WHERE host_id = $6))",
        vec![
            report.report_id.as_str().into(),
            host.hostname.as_str().into(),
            now.into(),
            i64::from(status).into(),
            body.into(),
            host.id.into(),
        ],
    );
    batch.run(&mut *tx).await?;
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

/// Adds one row of the error log to a batch ([`log_error`]'s statement).
fn error_row(
    batch: &mut Batch,
    now: i64,
    code: &str,
    hostname: Option<&str>,
    report_id: Option<&str>,
    plugin: Option<&str>,
    message: &str,
) {
    batch.push(
        ERROR_INSERT,
        vec![
            now.into(),
            code.into(),
            hostname.into(),
            report_id.into(),
            plugin.into(),
            message.into(),
        ],
    );
}

const ERROR_INSERT: &str =
    "INSERT INTO errors (at, code, hostname, report_id, plugin, message) VALUES ($1, $2, $3, $4, $5, $6)";

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
    sqlx::query(ERROR_INSERT)
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

/// The host a report is applied to, and what `apply` must do besides the report's data.
struct Target<'a> {
    host: &'a HostRow,
    /// Created by this report: its `hosts` row is complete, nothing else of it is stored.
    created: bool,
    /// Rewrite its search words even if no component changed (new, renamed, identity moved).
    reindex: bool,
}

/// A component as stored before the report.
struct Stored {
    data: String,
    volatile: bool,
    /// The report has it (changed or not).
    wanted: bool,
}

async fn apply(
    conn: &mut AnyConnection,
    batch: &mut Batch,
    backend: db::Backend,
    subscriptions: &mut Subscriptions,
    now: i64,
    target: Target<'_>,
    checked: &Checked,
) -> Result<(bool, Vec<String>), sqlx::Error> {
    let Target {
        host,
        created,
        reindex,
    } = target;
    let report = &checked.report;
    let id = &checked.identity;

    // Identity columns: a field no collector declared keeps its value. (A created host's row was
    // inserted whole.)
    if !created {
        batch.push(
            "UPDATE hosts SET last_report_at = $1, last_report_id = $2, \
             machine_id = CASE WHEN $3 = 1 THEN $4 ELSE machine_id END, \
             serial = CASE WHEN $5 = 1 THEN $6 ELSE serial END, \
             system_uuid = CASE WHEN $7 = 1 THEN $8 ELSE system_uuid END \
             WHERE id = $9",
            vec![
                now.into(),
                report.report_id.as_str().into(),
                i64::from(id.machine_id.is_some()).into(),
                id.machine_id.clone().flatten().into(),
                i64::from(id.serial.is_some()).into(),
                id.serial.clone().flatten().into(),
                i64::from(id.system_uuid.is_some()).into(),
                id.system_uuid.clone().flatten().into(),
                host.id.into(),
            ],
        );
    }

    // The dashboard's failing collectors: those that failed in this, now the last, report.
    if host.failing {
        batch.push(
            "DELETE FROM host_failures WHERE host_id = $1",
            vec![host.id.into()],
        );
    }
    let failed: BTreeSet<&str> = checked
        .failures
        .iter()
        .map(|(p, _, _)| p.as_str())
        .collect();
    if !failed.is_empty() {
        batch.for_host_texts(
            backend,
            "INSERT INTO host_failures (host_id, plugin) SELECT $1, j.value FROM {rows}",
            host.id,
            &failed,
        );
    }
    for (plugin, kind, message) in &checked.failures {
        error_row(
            batch,
            now,
            "plugin_failed",
            Some(&host.hostname),
            Some(&report.report_id),
            Some(plugin),
            &format!("collector {plugin} failed ({kind}): {message}; its data was left as it was"),
        );
    }

    // What is stored, by kind then item. A new host has nothing; a report without data changes
    // nothing, and needs it only for the search words. One row, a JSON array, instead of a row
    // per component (each row is a message from sqlx's worker thread).
    let mut stored: HashMap<String, HashMap<String, Stored>> = HashMap::new();
    if !created && (!checked.plugins.is_empty() || reindex) {
        let row = match backend {
            db::Backend::Sqlite => "json_array(kind, item, data, volatile)",
            db::Backend::Postgres => "json_build_array(kind, item, data, volatile)",
        };
        let sql = format!(
            "SELECT {} AS rows FROM components WHERE host_id = $1",
            backend.json_agg(row)
        );
        let text: Option<String> = sqlx::query(&sql)
            .bind(host.id)
            .fetch_one(&mut *conn)
            .await?
            .try_get("rows")?;
        let rows: Vec<(String, String, String, i64)> = match text {
            Some(text) => serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into()))?,
            None => Vec::new(),
        };
        for (kind, item, data, volatile) in rows {
            let stored_one = Stored {
                data,
                volatile: volatile != 0,
                wanted: false,
            };
            stored.entry(kind).or_default().insert(item, stored_one);
        }
    }
    let stored_kinds: HashSet<String> = stored.keys().cloned().collect();
    let d = desired(checked, &stored_kinds);
    let unknown = |kind: &str, item: &str| {
        !d.unknown.is_empty() && d.unknown.contains(&(kind.to_owned(), item.to_owned()))
    };

    let mut changes: Vec<Change> = Vec::new();
    // (wanted, its JSON text) of each component to write
    let mut upserts: Vec<(&Wanted, String)> = Vec::new();
    for w in &d.wanted {
        let new_text = serde_json::to_string(&w.value).unwrap_or_default();
        let mut old = stored
            .get_mut(w.kind.as_str())
            .and_then(|items| items.get_mut(w.item.as_str()));
        if let Some(s) = old.as_mut().filter(|_| unknown(&w.kind, &w.item)) {
            // an unknown item counts as not stored (never compared): overwritten as added
            s.wanted = true;
            s.volatile = w.volatile;
            old = None;
        }
        match old {
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
            Some(old) => {
                old.wanted = true;
                // Same text is the common case and needs no parse; a different text may still
                // be the same value (key order), so compare values then.
                let same = old.data == new_text
                    || serde_json::from_str::<Value>(&old.data).is_ok_and(|v| v == w.value);
                if !same {
                    if !w.volatile {
                        changes.push(Change {
                            kind: &w.kind,
                            item: &w.item,
                            action: "changed",
                            old: Some(old.data.clone()),
                            new: Some(new_text.clone()),
                        });
                    }
                    old.volatile = w.volatile;
                    upserts.push((w, new_text));
                }
            }
        }
    }
    // What is left of an owned kind was not in the report: removed.
    let mut removed: Vec<(&str, &str, &str)> = Vec::new();
    for (kind, items) in &stored {
        if !d.owned.contains(kind) {
            continue;
        }
        for (item, s) in items {
            if !s.wanted && !unknown(kind, item) {
                removed.push((kind, item, &s.data));
            }
        }
    }
    removed.sort_unstable();
    if !removed.is_empty() {
        let sql = format!(
            "DELETE FROM components WHERE host_id = $1 AND (kind, item) IN \
             (SELECT j.value ->> 0, j.value ->> 1 FROM {})",
            backend.json_rows(2, false)
        );
        let keys: Vec<(&str, &str)> = removed.iter().map(|(k, i, _)| (*k, *i)).collect();
        batch.push(sql, vec![host.id.into(), json_text(&keys).into()]);
    }
    for (kind, item, old) in &removed {
        changes.push(Change {
            kind,
            item,
            action: "removed",
            old: Some((*old).to_owned()),
            new: None,
        });
    }

    if !upserts.is_empty() {
        // `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT
        let sql = format!(
            "INSERT INTO components (host_id, updated_at, kind, item, data, volatile) \
             SELECT $1, $2, j.value ->> 0, j.value ->> 1, j.value ->> 2, CAST(j.value ->> 3 AS BIGINT) \
             FROM {} WHERE true \
             ON CONFLICT (host_id, kind, item) DO UPDATE SET data = excluded.data, \
             updated_at = excluded.updated_at, volatile = excluded.volatile",
            backend.json_rows(3, false)
        );
        let rows: Vec<(&str, &str, &str, i64)> = upserts
            .iter()
            .map(|(w, text)| {
                (
                    w.kind.as_str(),
                    w.item.as_str(),
                    text.as_str(),
                    i64::from(w.volatile),
                )
            })
            .collect();
        batch.push(
            sql,
            vec![host.id.into(), now.into(), json_text(&rows).into()],
        );
    }

    if !changes.is_empty() {
        // in the order of the array: the change rows' ids follow it
        let sql = format!(
            "INSERT INTO changes (host_id, report_id, at, component, item, action, old_value, new_value) \
             SELECT $1, $2, $3, j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4 \
             FROM {}",
            backend.json_rows(4, false)
        );
        let rows: Vec<_> = changes
            .iter()
            .map(|c| (c.kind, c.item, c.action, c.old.as_deref(), c.new.as_deref()))
            .collect();
        batch.push(
            sql,
            vec![
                host.id.into(),
                report.report_id.as_str().into(),
                now.into(),
                json_text(&rows).into(),
            ],
        );
    }
    let changed = !changes.is_empty();
    if changed {
        tracing::debug!(changes = changes.len(), "change log written");
        // the webhook events of these rows, in the same transaction: both or neither
        crate::webhooks::enqueue(
            &mut *conn,
            subscriptions,
            now,
            &host.hostname,
            &report.report_id,
            &changes,
        )
        .await?;
    }

    // Lists sent as unchanged: the same as last seen when the digest is the stored one (then they
    // count as seen now); otherwise left as they are, and the client is asked for them in full.
    let mut stored_digests: HashMap<String, Option<String>> = HashMap::new();
    if !created && !d.unchanged.is_empty() {
        for r in sqlx::query("SELECT kind, digest FROM part_lists WHERE host_id = $1")
            .bind(host.id)
            .fetch_all(&mut *conn)
            .await?
        {
            stored_digests.insert(r.try_get("kind")?, r.try_get("digest")?);
        }
    }
    // (kind, why unavailable, digest) of every list the report leaves: one row per kind
    let mut lists: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    let mut resend = Vec::new();
    for l in &d.lists {
        lists.push((&l.kind, l.unavailable.as_deref(), l.digest.as_deref()));
    }
    for (kind, digest) in &d.unchanged {
        let stored = stored_digests.get(kind).and_then(Option::as_deref);
        if stored == Some(digest.as_str()) {
            lists.push((kind, None, None));
        } else {
            tracing::info!(list = %kind, "an unchanged list's digest is not the stored one: asking for it in full");
            resend.push(kind.clone());
        }
    }
    // a kind named twice: the last one holds (as when each was written in turn)
    let mut seen = HashSet::new();
    let mut lists: Vec<_> = lists
        .into_iter()
        .rev()
        .filter(|(kind, _, _)| seen.insert(*kind))
        .collect();
    lists.reverse();

    // Part lists: when each was last seen, its digest, and since when it could not be seen.
    if !lists.is_empty() {
        let sql = format!(
            "INSERT INTO part_lists (host_id, kind, unavailable, unavailable_since, last_seen_at, last_seen_report_id, digest) \
             SELECT $1, j.value ->> 0, j.value ->> 1, \
                    CASE WHEN j.value ->> 1 IS NULL THEN NULL ELSE $2 END, \
                    CASE WHEN j.value ->> 1 IS NULL THEN $2 ELSE NULL END, \
                    CASE WHEN j.value ->> 1 IS NULL THEN $3 ELSE NULL END, \
                    j.value ->> 2 \
             FROM {} WHERE true \
             ON CONFLICT (host_id, kind) DO UPDATE SET unavailable = excluded.unavailable, \
             unavailable_since = CASE WHEN excluded.unavailable IS NULL THEN NULL \
                 ELSE COALESCE(part_lists.unavailable_since, excluded.unavailable_since) END, \
             last_seen_at = CASE WHEN excluded.unavailable IS NULL THEN excluded.last_seen_at \
                 ELSE part_lists.last_seen_at END, \
             last_seen_report_id = CASE WHEN excluded.unavailable IS NULL THEN excluded.last_seen_report_id \
                 ELSE part_lists.last_seen_report_id END, \
             digest = COALESCE(excluded.digest, part_lists.digest)",
            backend.json_rows(4, false)
        );
        batch.push(
            sql,
            vec![
                host.id.into(),
                now.into(),
                report.report_id.as_str().into(),
                json_text(&lists).into(),
            ],
        );
    }
    // A list no collector reports any more is gone with its parts.
    let gone: Vec<&str> = d
        .owned
        .iter()
        .filter(|k| k.contains('.') && !lists.iter().any(|l| l.0 == k.as_str()))
        .map(String::as_str)
        .collect();
    if !gone.is_empty() && !created {
        batch.for_host_texts(
            backend,
            "DELETE FROM part_lists WHERE host_id = $1 AND kind IN (SELECT j.value FROM {rows})",
            host.id,
            &gone,
        );
    }

    // Identity values new to this host: flag (never merge) other hosts that share them. One
    // statement for the values to check, up to 10 other hosts each.
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
    let mut asked: Vec<(&str, &str)> = Vec::new();
    for (column, new, old) in checks {
        let Some(Some(value)) = new else { continue };
        if old == Some(value) || is_placeholder(value) {
            continue;
        }
        asked.push((column, value));
    }
    if !asked.is_empty() {
        let sql = asked
            .iter()
            .enumerate()
            .map(|(i, (column, _))| {
                format!(
                    "SELECT '{column}' AS k, hostname FROM (SELECT hostname FROM hosts \
                     WHERE {column} = ${} AND id <> $1 ORDER BY hostname LIMIT 10) AS s{i}",
                    i + 2
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
            + " ORDER BY k, hostname";
        let mut q = sqlx::query(&sql).bind(host.id);
        for (_, value) in &asked {
            q = q.bind(*value);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        for (column, value) in asked {
            let mut others = Vec::new();
            for r in &rows {
                if r.try_get::<String, _>("k")? == column {
                    others.push(r.try_get::<String, _>("hostname")?);
                }
            }
            if others.is_empty() {
                continue;
            }
            let message = format!(
                "host {:?} shares {column} {value:?} with {}: flagged, not merged",
                host.hostname,
                others.join(", ")
            );
            tracing::warn!(host = %host.hostname, column, value = %value, "identity shared with other hosts");
            error_row(
                batch,
                now,
                "identity_shared",
                Some(&host.hostname),
                Some(&report.report_id),
                None,
                &message,
            );
        }
    }

    // The search words, from what this transaction knows the host has now (the stored
    // components it kept, the report's, its row and fields): nothing is read back.
    if changed || reindex {
        let mut tokens = BTreeSet::new();
        let now_or = |new: Option<&Option<String>>, old: &Option<String>| match new {
            Some(v) => v.clone(),
            None => old.clone(),
        };
        let hints = [
            now_or(id.machine_id.as_ref(), &host.machine_id),
            now_or(id.serial.as_ref(), &host.serial),
            now_or(id.system_uuid.as_ref(), &host.system_uuid),
            host.address.clone(),
        ];
        crate::search::tokens_of_host(
            &host.hostname,
            hints.iter().map(Option::as_deref),
            &mut tokens,
        );
        let gone: HashSet<(&str, &str)> = removed.iter().map(|(k, i, _)| (*k, *i)).collect();
        for w in &d.wanted {
            let volatile = stored
                .get(w.kind.as_str())
                .and_then(|items| items.get(w.item.as_str()))
                .filter(|s| s.wanted)
                .map_or(w.volatile, |s| s.volatile);
            if !volatile {
                crate::search::tokens_of_component(&w.kind, &w.item, &w.value, &mut tokens);
            }
        }
        for (kind, items) in &stored {
            for (item, s) in items {
                if s.wanted || s.volatile || gone.contains(&(kind.as_str(), item.as_str())) {
                    continue;
                }
                let value = serde_json::from_str::<Value>(&s.data).unwrap_or(Value::Null);
                crate::search::tokens_of_component(kind, item, &value, &mut tokens);
            }
        }
        for f in &host.fields {
            crate::search::tokens_of_text(f, &mut tokens);
        }
        crate::search::plan_tokens(&mut *conn, batch, host.id, tokens, created).await?;
    }
    Ok((changed, resend))
}

/// The JSON text of rows bound as one parameter (see `Backend::json_rows`).
fn json_text<T: serde::Serialize + ?Sized>(rows: &T) -> String {
    serde_json::to_string(rows).unwrap_or_default()
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
