//! Applies a checked report: host identity, current state, change log and error log, all in one
//! transaction. The answer (status and body) is stored with the `report_id`, so a retried report is
//! applied once and answered with the first answer.

use std::collections::HashMap;

use auto_proto::{IngestResponse, Problem, Warning};
use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{self, Db};
use crate::report::{is_placeholder, Checked, Item};

/// The HTTP status and JSON body of an ingest.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

struct HostRow {
    id: i64,
    hostname: String,
    last_report_at: Option<i64>,
    machine_id: Option<String>,
    serial: Option<String>,
    system_uuid: Option<String>,
}

impl HostRow {
    fn from_row(r: &AnyRow) -> Result<HostRow, sqlx::Error> {
        Ok(HostRow {
            id: r.try_get(0)?,
            hostname: r.try_get(1)?,
            last_report_at: r.try_get(2)?,
            machine_id: r.try_get(3)?,
            serial: r.try_get(4)?,
            system_uuid: r.try_get(5)?,
        })
    }
}

/// Applies a report, retrying when a concurrent transaction won a race (a name or report id
/// taken between our read and our write).
#[tracing::instrument(skip_all, fields(report_id = %checked.report.report_id, hostname = %checked.report.hostname))]
/// `nonce` is the request's, when it is to be recorded in this transaction: a nonce seen before
/// is answered 401 and nothing is applied.
pub async fn ingest(
    db: &Db,
    checked: &Checked,
    nonce: Option<&str>,
) -> Result<Answer, sqlx::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match ingest_once(db, checked, nonce).await {
            Err(e) if attempt < 4 && db::is_retryable(&e) => {
                tracing::debug!(attempt, error = %e, "ingest lost a race, retrying");
            }
            other => return other,
        }
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
    tx: &mut Transaction<'static, Any>,
    db: &Db,
    hostname: &str,
) -> Result<Option<HostRow>, sqlx::Error> {
    let sql = format!(
        "SELECT id, hostname, last_report_at, machine_id, serial, system_uuid FROM hosts WHERE hostname = $1{}",
        db.backend.for_update()
    );
    sqlx::query(&sql)
        .bind(hostname)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(HostRow::from_row)
        .transpose()
}

async fn ingest_once(
    db: &Db,
    checked: &Checked,
    nonce: Option<&str>,
) -> Result<Answer, sqlx::Error> {
    let report = &checked.report;
    let now = crate::clock::now();
    let mut tx = db.write.begin().await?;
    if let Some(nonce) = nonce {
        if !crate::auth::record_nonce(&mut *tx, nonce).await? {
            tracing::warn!("request refused: nonce replayed");
            return Ok(Answer {
                status: 401,
                body: crate::api::problem_body(401, "bad_signature", crate::auth::REPLAYED),
            });
        }
    }
    if let Some(row) = sqlx::query("SELECT status, body FROM reports WHERE report_id = $1")
        .bind(&report.report_id)
        .fetch_optional(&mut *tx)
        .await?
    {
        let status: i64 = row.try_get(0)?;
        tracing::info!(status, "report seen before, answering as the first time");
        let answer = Answer {
            status: u16::try_from(status).unwrap_or(500),
            body: row.try_get(1)?,
        };
        tx.commit().await?; // keeps the nonce
        return Ok(answer);
    }

    let by_name = find_host(&mut tx, db, &report.hostname).await?;
    let plan = match (&report.previous_hostname, by_name) {
        (None, None) => Plan::Create,
        (None, Some(h)) if h.last_report_at.is_none() => Plan::Claim(h),
        (None, Some(_)) => Plan::Conflict,
        (Some(prev), Some(h)) if *prev == report.hostname => Plan::Update(h),
        (Some(prev), None) if *prev == report.hostname => Plan::Create,
        (Some(prev), by_name) => match (find_host(&mut tx, db, prev).await?, by_name) {
            (Some(old), None) => Plan::Rename(old),
            (Some(old), Some(_)) => Plan::KeepOldName(old),
            (None, None) => Plan::Create,
            (None, Some(h)) if h.last_report_at.is_none() => Plan::Claim(h),
            (None, Some(_)) => Plan::Conflict,
        },
    };

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
            let problem = Problem {
                type_: crate::api::problem_type("hostname_taken"),
                title: "hostname taken".into(),
                status: 409,
                detail,
                code: "hostname_taken".into(),
            };
            let body = serde_json::to_string(&problem).unwrap_or_default();
            store_answer(
                &mut tx,
                &report.report_id,
                &report.hostname,
                now,
                409,
                &body,
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(outcome = "conflict", "report refused: hostname taken");
            return Ok(Answer { status: 409, body });
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
                id: row.try_get(0)?,
                hostname: report.hostname.clone(),
                last_report_at: None,
                machine_id: None,
                serial: None,
                system_uuid: None,
            };
            (host, "created", 201)
        }
        Plan::Claim(h) => (h, "created", 201),
        Plan::Update(h) => (h, "updated", 200),
        Plan::Rename(mut h) => {
            sqlx::query("UPDATE hosts SET hostname = $1 WHERE id = $2")
                .bind(&report.hostname)
                .bind(h.id)
                .execute(&mut *tx)
                .await?;
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

    apply(&mut tx, now, &host, checked).await?;

    let response = IngestResponse {
        outcome: outcome.into(),
        hostname: host.hostname.clone(),
        report_id: report.report_id.clone(),
        warnings,
    };
    let body = serde_json::to_string(&response).unwrap_or_default();
    store_answer(
        &mut tx,
        &report.report_id,
        &host.hostname,
        now,
        status,
        &body,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(outcome, host = %host.hostname, "report applied");
    Ok(Answer { status, body })
}

async fn store_answer(
    tx: &mut Transaction<'static, Any>,
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
    .execute(&mut **tx)
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

struct Change<'a> {
    kind: &'a str,
    item: &'a str,
    action: &'static str,
    old: Option<String>,
    new: Option<String>,
}

/// Rows per multi-row INSERT: well under SQLite's and PostgreSQL's bound-parameter limits.
const BATCH: usize = 200;

async fn apply(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    host: &HostRow,
    checked: &Checked,
) -> Result<(), sqlx::Error> {
    let report = &checked.report;
    let id = &checked.identity;

    // Host columns: a field whose collector failed keeps its value (COALESCE with a flag).
    sqlx::query(
        "UPDATE hosts SET last_report_at = $1, last_report_id = $2, \
         uptime_seconds = CASE WHEN $3 = 1 THEN $4 ELSE uptime_seconds END, \
         machine_id = CASE WHEN $3 = 1 THEN $5 ELSE machine_id END, \
         serial = CASE WHEN $6 = 1 THEN $7 ELSE serial END, \
         system_uuid = CASE WHEN $6 = 1 THEN $8 ELSE system_uuid END \
         WHERE id = $9",
    )
    .bind(now)
    .bind(&report.report_id)
    .bind(i64::from(id.machine_id.is_some()))
    .bind(id.uptime_seconds.flatten())
    .bind(id.machine_id.clone().flatten())
    .bind(i64::from(id.serial.is_some()))
    .bind(id.serial.clone().flatten())
    .bind(id.system_uuid.clone().flatten())
    .bind(host.id)
    .execute(&mut **tx)
    .await?;

    for (plugin, kind, message) in &checked.failures {
        log_error(
            &mut **tx,
            now,
            "plugin_failed",
            Some(&host.hostname),
            Some(&report.report_id),
            Some(plugin),
            &format!("collector {plugin} failed ({kind}): {message}; its data was left as it was"),
        )
        .await?;
    }

    // Current items of the kinds this report's collectors own.
    let owned: Vec<&str> = checked
        .facts
        .iter()
        .flat_map(|(_, f)| f.owned.iter().map(String::as_str))
        .collect();
    let mut current: HashMap<(String, String), String> = HashMap::new();
    if !owned.is_empty() {
        let rows = sqlx::query("SELECT kind, item, data FROM components WHERE host_id = $1")
            .bind(host.id)
            .fetch_all(&mut **tx)
            .await?;
        for r in &rows {
            let kind: String = r.try_get(0)?;
            if owned.contains(&kind.as_str()) {
                current.insert((kind, r.try_get(1)?), r.try_get(2)?);
            }
        }
    }

    let mut changes: Vec<Change> = Vec::new();
    let mut upserts: Vec<(&Item, String)> = Vec::new();
    for (_, facts) in &checked.facts {
        for item in &facts.items {
            let new_text = serde_json::to_string(&item.value).unwrap_or_default();
            match current.remove(&(item.kind.clone(), item.item.clone())) {
                None => {
                    changes.push(Change {
                        kind: &item.kind,
                        item: &item.item,
                        action: "added",
                        old: None,
                        new: Some(new_text.clone()),
                    });
                    upserts.push((item, new_text));
                }
                Some(old_text) => {
                    // Same text is the common case and needs no parse; a different text may
                    // still be the same value (key order), so compare values then.
                    let same = old_text == new_text
                        || serde_json::from_str::<Value>(&old_text)
                            .is_ok_and(|old| old == item.value);
                    if !same {
                        changes.push(Change {
                            kind: &item.kind,
                            item: &item.item,
                            action: "changed",
                            old: Some(old_text),
                            new: Some(new_text.clone()),
                        });
                        upserts.push((item, new_text));
                    }
                }
            }
        }
    }
    // What is left of an owned kind was not in the report: removed.
    let mut removed: Vec<((String, String), String)> = current.into_iter().collect();
    removed.sort();
    for ((kind, item), old) in &removed {
        sqlx::query("DELETE FROM components WHERE host_id = $1 AND kind = $2 AND item = $3")
            .bind(host.id)
            .bind(kind)
            .bind(item)
            .execute(&mut **tx)
            .await?;
        changes.push(Change {
            kind,
            item,
            action: "removed",
            old: Some(old.clone()),
            new: None,
        });
    }

    for chunk in upserts.chunks(BATCH) {
        let mut sql =
            String::from("INSERT INTO components (host_id, kind, item, data, updated_at) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 3;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("($1, ${}, ${}, ${}, $2)", b + 3, b + 4, b + 5));
        }
        sql.push_str(
            " ON CONFLICT (host_id, kind, item) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        );
        let mut q = sqlx::query(&sql).bind(host.id).bind(now);
        for (item, text) in chunk {
            q = q.bind(&item.kind).bind(&item.item).bind(text.as_str());
        }
        q.execute(&mut **tx).await?;
    }

    for chunk in changes.chunks(BATCH) {
        let mut sql = String::from(
            "INSERT INTO changes (host_id, report_id, at, component, item, action, old_value, new_value) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 5;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, $2, $3, ${}, ${}, ${}, ${}, ${})",
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
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
        q.execute(&mut **tx).await?;
    }
    if !changes.is_empty() {
        tracing::debug!(changes = changes.len(), "change log written");
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
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if !others.is_empty() {
            let message = format!(
                "host {:?} shares {column} {value:?} with {}: flagged, not merged",
                host.hostname,
                others.join(", ")
            );
            tracing::warn!(host = %host.hostname, column, value = %value, "identity shared with other hosts");
            log_error(
                &mut **tx,
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
    Ok(())
}
