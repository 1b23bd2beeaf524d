//! Retention: what the database forgets, and when. One [`Policy`] (resolved once in `cli.rs`)
//! is applied by `auto-server prune [--dry-run]` and, every `prune_interval_secs`, by `serve`.
//!
//! - A host is **stale** when it has not reported for `stale_days` (or never reported):
//!   [`stale_before`] is the one cut-off the inventory's `stale` field, its filter and the
//!   dashboard use.
//! - With `remove_stale_after_days`, a host not seen for that long (its last report, or its
//!   registration when it never reported) is removed with everything keyed by its id: components,
//!   part lists, change log, hand-entered fields, search words and report rows. Its error-log
//!   rows (keyed by name) stay, subject to `error_log_days`, and one `stale_host_removed` row says
//!   it went. A host with an active host-scoped key is never removed (the key would go with it):
//!   revoke the key first. A removed host that reports again is a new host (`201`).
//! - `change_log_days`, `report_bodies_days`, `error_log_days`: rows older than that go. Report
//!   rows (each applied report's stored answer and its place in the change log, which the pages'
//!   as-of and diff use) are kept no longer than the change log, and each host's newest report
//!   row is kept whatever its age.
//! - Nonces go once their window has passed (also every `nonce_prune_secs`, `auth.rs`).
//!
//! Deletes run in batches of [`BATCH_ROWS`] rows, one short write transaction each, so that the
//! single SQLite writer is never held for long while reports arrive.
//!
//! Not for: backups (`main.rs` `backup`), or anything a report writes.

use std::time::Duration;

use sqlx::Row;

use crate::db::Db;

/// Rows deleted per write transaction.
pub const BATCH_ROWS: i64 = 500;

/// The retention settings, checked (`cli::retention`). `None`: kept for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub stale_days: i64,
    pub remove_stale_after_days: Option<i64>,
    pub change_log_days: Option<i64>,
    pub report_bodies_days: Option<i64>,
    pub error_log_days: Option<i64>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            stale_days: 7,
            remove_stale_after_days: None,
            change_log_days: None,
            report_bodies_days: None,
            error_log_days: None,
        }
    }
}

impl Policy {
    /// The age past which report rows go: `report_bodies_days`, but never longer than the change
    /// log is kept (a report row whose change rows are gone would give a wrong diff).
    pub fn report_rows_days(&self) -> Option<i64> {
        match (self.report_bodies_days, self.change_log_days) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }
}

/// A host whose last report is before this time (or that never reported) is stale.
pub fn stale_before(now: i64, stale_days: i64) -> i64 {
    now - stale_days * 86_400
}

/// Apply the policy, or only count what it would remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    /// Remove, pausing this long between two batches (lets waiting reports have the writer).
    Apply {
        pause: Duration,
    },
}

/// One table's line of a pass: how many rows went (or would go), and by which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub table: &'static str,
    /// `None`: the rule is off.
    pub rows: Option<u64>,
    pub rule: String,
}

/// What one pass removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    pub lines: Vec<Line>,
    /// Hosts past `remove_stale_after_days` kept because an active host key is bound to them.
    pub kept_for_key: u64,
}

impl Pass {
    /// Rows removed (or that would be) over every table.
    pub fn total(&self) -> u64 {
        self.lines.iter().filter_map(|l| l.rows).sum()
    }

    pub fn rows(&self, table: &str) -> Option<u64> {
        self.lines
            .iter()
            .find(|l| l.table == table)
            .and_then(|l| l.rows)
    }
}

/// The hosts past `remove_stale_after_days` (cut-off `$1`), without an active host key.
const REMOVABLE: &str =
    "(h.last_report_at < $1 OR (h.last_report_at IS NULL AND h.created_at < $1)) \
     AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.host_id = h.id AND k.revoked_at IS NULL)";

/// The same hosts, kept because a key is bound to them.
const KEPT_FOR_KEY: &str =
    "(h.last_report_at < $1 OR (h.last_report_at IS NULL AND h.created_at < $1)) \
     AND EXISTS (SELECT 1 FROM api_keys k WHERE k.host_id = h.id AND k.revoked_at IS NULL)";

fn days(n: i64) -> i64 {
    n * 86_400
}

async fn count(db: &Db, sql: &str, binds: &[i64]) -> Result<u64, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    let n: i64 = q.fetch_one(&db.read).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Deletes `DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {pred} LIMIT
/// BATCH_ROWS)` until a batch removes fewer than a batch; returns the rows removed.
async fn delete_batched(
    db: &Db,
    table: &str,
    key: &str,
    pred: &str,
    binds: &[i64],
    pause: Duration,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "DELETE FROM {table} WHERE {key} IN \
         (SELECT {key} FROM {table} WHERE {pred} LIMIT {BATCH_ROWS})"
    );
    let mut total = 0;
    loop {
        let mut tx = db.begin_write().await?;
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let done = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        total += done;
        if done < BATCH_ROWS as u64 {
            return Ok(total);
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Applies `policy` at time `now` (or counts, in a dry run), table by table.
pub async fn run(db: &Db, policy: &Policy, now: i64, mode: Mode) -> Result<Pass, sqlx::Error> {
    let pause = match mode {
        Mode::DryRun => None,
        Mode::Apply { pause } => Some(pause),
    };
    let mut pass = Pass::default();

    // Hosts first: an age rule below must not count rows that go with their host.
    let remove_cut = policy.remove_stale_after_days.map(|d| now - days(d));
    let not_removed = |column: &str| match remove_cut {
        Some(_) => format!(
            " AND {column} NOT IN (SELECT h.id FROM hosts h WHERE {})",
            REMOVABLE.replace("$1", "$2")
        ),
        None => String::new(),
    };
    match (remove_cut, policy.remove_stale_after_days) {
        (Some(cut), Some(d)) => {
            pass.kept_for_key = count(
                db,
                &format!("SELECT COUNT(*) FROM hosts h WHERE {KEPT_FOR_KEY}"),
                &[cut],
            )
            .await?;
            let (hosts, with) = match pause {
                None => {
                    let of = |table: &str| {
                        format!(
                            "SELECT COUNT(*) FROM {table} WHERE host_id IN \
                             (SELECT h.id FROM hosts h WHERE {REMOVABLE})"
                        )
                    };
                    let hosts = count(
                        db,
                        &format!("SELECT COUNT(*) FROM hosts h WHERE {REMOVABLE}"),
                        &[cut],
                    )
                    .await?;
                    let with = [
                        count(db, &of("components"), &[cut]).await?,
                        count(db, &of("changes"), &[cut]).await?,
                        count(db, &of("reports"), &[cut]).await?,
                    ];
                    (hosts, with)
                }
                Some(pause) => remove_hosts(db, cut, now, d, pause).await?,
            };
            pass.lines.push(Line {
                table: "hosts",
                rows: Some(hosts),
                rule: format!(
                    "not seen for {d} days (with their {} components, {} change rows, {} report rows)",
                    with[0], with[1], with[2]
                ),
            });
        }
        _ => pass.lines.push(Line {
            table: "hosts",
            rows: None,
            rule: "kept (remove_stale_after_days is not set)".into(),
        }),
    }

    let rules: [(&'static str, &str, Option<i64>, String, String); 3] = [
        (
            "changes",
            "id",
            policy.change_log_days,
            format!("at < $1{}", not_removed("host_id")),
            "change_log_days".into(),
        ),
        (
            "reports",
            "report_id",
            policy.report_rows_days(),
            format!(
                "received_at < $1 AND (host_id IS NULL OR (received_at < \
                 (SELECT MAX(r2.received_at) FROM reports r2 WHERE r2.host_id = reports.host_id){}))",
                not_removed("host_id")
            ),
            "report_bodies_days".into(),
        ),
        (
            "errors",
            "id",
            policy.error_log_days,
            "at < $1".into(),
            "error_log_days".into(),
        ),
    ];
    for (table, key, age, pred, setting) in rules {
        let Some(age) = age else {
            pass.lines.push(Line {
                table,
                rows: None,
                rule: format!("kept ({setting} is not set)"),
            });
            continue;
        };
        let mut binds = vec![now - days(age)];
        if let Some(cut) = remove_cut.filter(|_| pred.contains("$2")) {
            binds.push(cut);
        }
        let rows = match pause {
            None => {
                count(
                    db,
                    &format!("SELECT COUNT(*) FROM {table} WHERE {pred}"),
                    &binds,
                )
                .await?
            }
            Some(pause) => delete_batched(db, table, key, &pred, &binds, pause).await?,
        };
        let mut rule = format!("older than {age} days");
        if table == "reports" {
            rule.push_str(", each host's newest kept");
        }
        pass.lines.push(Line {
            table,
            rows: Some(rows),
            rule,
        });
    }

    let rows = match pause {
        None => {
            count(
                db,
                "SELECT COUNT(*) FROM nonces WHERE expires_at < $1",
                &[now],
            )
            .await?
        }
        Some(pause) => {
            delete_batched(db, "nonces", "nonce", "expires_at < $1", &[now], pause).await?
        }
    };
    pass.lines.push(Line {
        table: "nonces",
        rows: Some(rows),
        rule: "window passed".into(),
    });
    Ok(pass)
}

/// Removes the removable hosts one by one, each in its own transaction that checks again that it
/// is still removable (it may have reported since it was listed). Returns the hosts removed and
/// their components, change rows and report rows.
async fn remove_hosts(
    db: &Db,
    cut: i64,
    now: i64,
    after_days: i64,
    pause: Duration,
) -> Result<(u64, [u64; 3]), sqlx::Error> {
    let mut removed = 0;
    let mut with = [0u64; 3];
    loop {
        let ids: Vec<(i64, String)> = sqlx::query(&format!(
            "SELECT h.id, h.hostname FROM hosts h WHERE {REMOVABLE} ORDER BY h.id LIMIT {BATCH_ROWS}"
        ))
        .bind(cut)
        .fetch_all(&db.read)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("hostname")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let listed = ids.len();
        for (id, hostname) in ids {
            // One transaction per host: count what goes with it, then delete it if it is still
            // removable (it may have reported since it was listed).
            let mut tx = db.begin_write().await?;
            let mut n = [0u64; 3];
            for (i, table) in ["components", "changes", "reports"].iter().enumerate() {
                let c: i64 =
                    sqlx::query(&format!("SELECT COUNT(*) FROM {table} WHERE host_id = $1"))
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get(0)?;
                n[i] = u64::try_from(c).unwrap_or(0);
            }
            sqlx::query("DELETE FROM reports WHERE host_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let gone = sqlx::query(&format!(
                "DELETE FROM hosts WHERE id = $2 AND id IN (SELECT h.id FROM hosts h WHERE {REMOVABLE})"
            ))
            .bind(cut)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if gone == 0 {
                tx.rollback().await?;
                continue;
            }
            crate::ingest::log_error(
                &mut *tx,
                now,
                "stale_host_removed",
                Some(&hostname),
                None,
                None,
                &format!(
                    "host {hostname:?} removed: no report for {after_days} days (remove_stale_after_days)"
                ),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(host = %hostname, "stale host removed");
            removed += 1;
            for i in 0..3 {
                with[i] += n[i];
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        if listed < BATCH_ROWS as usize {
            return Ok((removed, with));
        }
    }
}

/// `serve`'s pruning: a pass every `every`, pausing between batches; errors are logged and the
/// next pass tries again.
pub async fn every(db: Db, policy: Policy, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mode = Mode::Apply {
            pause: Duration::from_millis(20),
        };
        match run(&db, &policy, crate::clock::now(), mode).await {
            Ok(pass) if pass.total() > 0 => {
                let per: Vec<String> = pass
                    .lines
                    .iter()
                    .filter_map(|l| {
                        l.rows
                            .filter(|n| *n > 0)
                            .map(|n| format!("{}={n}", l.table))
                    })
                    .collect();
                tracing::info!(rows = pass.total(), tables = %per.join(" "), "retention: pruned");
            }
            Ok(_) => tracing::debug!("retention: nothing to prune"),
            Err(e) => tracing::warn!(error = %e, "retention: cannot prune"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_rows_never_outlive_the_change_log() {
        let p = |r, c| Policy {
            report_bodies_days: r,
            change_log_days: c,
            ..Policy::default()
        };
        assert_eq!(p(Some(30), Some(90)).report_rows_days(), Some(30));
        assert_eq!(p(Some(120), Some(90)).report_rows_days(), Some(90));
        assert_eq!(p(None, Some(90)).report_rows_days(), Some(90));
        assert_eq!(p(Some(30), None).report_rows_days(), Some(30));
        assert_eq!(p(None, None).report_rows_days(), None);
    }

    #[test]
    fn stale_is_a_cut_off_in_days() {
        assert_eq!(stale_before(10 * 86_400, 7), 3 * 86_400);
    }
}
