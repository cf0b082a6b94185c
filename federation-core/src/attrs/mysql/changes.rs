//! Change events from the database, by polling: MySQL and MariaDB have no
//! `LISTEN/NOTIFY`, and their other change streams (the binary log) need replication
//! privileges, a binlog format and a parser. Triggers append every real update or
//! delete of a record to `stackfed_changes`; each proxy polls it on a connection of its
//! own every `poll_interval_ms` (one indexed range query), so a change is seen within
//! about one interval, whoever made it.
//!
//! The log's sequence numbers are auto-increment values: they have gaps (rollbacks,
//! Galera's interleaved increments) and are *not* committed in order (a transaction
//! that took number 7 may commit after the one that took 8 was already read). So the
//! poller does not trust "everything up to the highest number seen": it re-reads every
//! entry newer than a horizon (`timeout_seconds`, the longest a statement of ours may
//! take) and forgets the ones it already reported only once they are older than that.
//! An entry committed more than a horizon after its trigger ran (only a transaction an
//! operator keeps open that long) could be missed: cached copies then live until their
//! TTL, as without a feed. Entries older than ten minutes are pruned by the pollers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use super::{column, my_error, Change, MysqlStore};
use crate::attrs::StoreError;
use crate::name::{AccountName, ContainerName};

/// At most this many log entries per query.
const PAGE: u64 = 1000;
/// How long entries stay in the log.
const RETENTION: Duration = Duration::from_secs(600);
/// How often a poller prunes the log.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The database's clock in milliseconds, as the triggers stamp entries.
const DB_NOW_MS: &str = "ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000)";

/// A log entry's change: `None` for names this build cannot read.
fn entry_change(account: Vec<u8>, container: Vec<u8>) -> Option<Change> {
    Some(Change::Record {
        account: AccountName::new(String::from_utf8(account).ok()?).ok()?,
        container: ContainerName::new(String::from_utf8(container).ok()?).ok()?,
    })
}

/// What the poller remembers between polls.
struct Cursor {
    /// Every entry at or below this number was reported or is older than the horizon.
    below: u64,
    /// Entries above `below` already reported, with when they were first seen.
    reported: BTreeMap<u64, Instant>,
}

impl Cursor {
    /// Takes one page of entries `(seq, account, container)`; returns the changes not
    /// reported before.
    fn take(&mut self, entries: Vec<(u64, Vec<u8>, Vec<u8>)>, now: Instant) -> Vec<Change> {
        let mut fresh = Vec::new();
        for (seq, account, container) in entries {
            if seq <= self.below || self.reported.insert(seq, now).is_some() {
                continue;
            }
            // An entry naming something unreadable: drop every cached record.
            fresh.push(entry_change(account, container).unwrap_or(Change::Resync));
        }
        fresh
    }

    /// Forgets the entries seen more than `horizon` ago: no entry numbered below them
    /// can still be committed (see the module docs).
    fn settle(&mut self, now: Instant, horizon: Duration) {
        let below = &mut self.below;
        self.reported.retain(|seq, seen| {
            let keep = now.saturating_duration_since(*seen) < horizon;
            if !keep {
                *below = (*below).max(*seq);
            }
            keep
        });
    }
}

impl MysqlStore {
    /// Polls the change log until dropped, calling `on_change` for each record changed
    /// since. Every (re)connection is announced as [`Change::Resync`] once the first
    /// poll has succeeded, so a caller that drops everything on `Resync` never keeps a
    /// record changed while nobody polled. Reconnects after a failure with a backoff
    /// from 50 ms up to 2 s.
    ///
    /// Spawn it on the owner of the process's background tasks; it never returns.
    pub fn watch<F>(&self, on_change: F) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        F: Fn(Change) + Send + Sync + 'static,
    {
        let opts = self.opts.clone();
        let timeout = self.timeout;
        let interval = self.poll_interval;
        async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                let e = poll_until_failure(&opts, timeout, interval, &on_change).await;
                tracing::warn!(error = %e, "MySQL change feed failed; reconnecting");
                // Whatever happens next, changes may be missed until we poll again.
                on_change(Change::Resync);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A driver call, bounded by `timeout`.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, StoreError> {
    super::bounded(timeout, what, async { f.await.map_err(my_error) }).await
}

async fn poll_until_failure<F>(
    opts: &Opts,
    timeout: Duration,
    interval: Duration,
    on_change: &F,
) -> StoreError
where
    F: Fn(Change) + Send + Sync,
{
    let mut conn = match bounded(timeout, "change feed connect", Conn::new(opts.clone())).await {
        Ok(conn) => conn,
        Err(e) => return e,
    };
    let e = poll_loop(&mut conn, timeout, interval, on_change).await;
    let _ = tokio::time::timeout(timeout, conn.disconnect()).await;
    e
}

async fn poll_loop<F>(
    conn: &mut Conn,
    timeout: Duration,
    interval: Duration,
    on_change: &F,
) -> StoreError
where
    F: Fn(Change) + Send + Sync,
{
    let horizon = timeout;
    let horizon_ms = u64::try_from(horizon.as_millis()).unwrap_or(u64::MAX);
    // Start below every entry that may still be committed late.
    let start: Result<Option<u64>, _> = bounded(
        timeout,
        "change feed start",
        conn.exec_first(
            format!(
                "SELECT CAST(COALESCE(MAX(seq), 0) AS UNSIGNED) FROM stackfed_changes
                 WHERE changed_at_ms < {DB_NOW_MS} - ?"
            ),
            (horizon_ms,),
        ),
    )
    .await;
    let mut cursor = match start {
        Ok(below) => Cursor {
            below: below.unwrap_or(0),
            reported: BTreeMap::new(),
        },
        Err(e) => return e,
    };
    let mut announced = false;
    let mut last_prune: Option<Instant> = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut from = cursor.below;
        loop {
            let rows: Result<Vec<Row>, _> = bounded(
                timeout,
                "change feed poll",
                conn.exec(
                    "SELECT seq, account, container FROM stackfed_changes
                     WHERE seq > ? ORDER BY seq LIMIT ?",
                    (from, PAGE),
                ),
            )
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return e,
            };
            let full = rows.len() as u64 >= PAGE;
            let mut entries = Vec::with_capacity(rows.len());
            for mut row in rows {
                let entry = (|| {
                    Ok::<_, StoreError>((
                        column::<u64>(&mut row, 0, "change seq")?,
                        column::<Vec<u8>>(&mut row, 1, "change account")?,
                        column::<Vec<u8>>(&mut row, 2, "change container")?,
                    ))
                })();
                match entry {
                    Ok(entry) => entries.push(entry),
                    Err(e) => return e,
                }
            }
            if let Some((last, _, _)) = entries.last() {
                from = *last;
            }
            for change in cursor.take(entries, Instant::now()) {
                on_change(change);
            }
            if !full {
                break;
            }
        }
        if !announced {
            tracing::info!(every = ?interval, "polling the MySQL change log");
            on_change(Change::Resync);
            announced = true;
        }
        cursor.settle(Instant::now(), horizon);
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            last_prune = Some(Instant::now());
            let retention_ms = u64::try_from(RETENTION.as_millis()).unwrap_or(u64::MAX);
            let pruned = bounded(
                timeout,
                "change log prune",
                conn.exec_drop(
                    format!(
                        "DELETE FROM stackfed_changes WHERE changed_at_ms < {DB_NOW_MS} - ?
                         LIMIT 10000"
                    ),
                    (retention_ms,),
                ),
            )
            .await;
            // Another proxy pruning at the same time is no failure of the feed.
            if let Err(e) = pruned {
                tracing::debug!(error = %e, "MySQL change log not pruned this time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(seq: u64, c: &str) -> (u64, Vec<u8>, Vec<u8>) {
        (seq, b"AUTH_x".to_vec(), c.as_bytes().to_vec())
    }

    #[test]
    fn late_commits_below_the_highest_number_are_still_reported() {
        let t0 = Instant::now();
        let mut cursor = Cursor {
            below: 10,
            reported: BTreeMap::new(),
        };
        // 12 is committed first; 11 (an earlier number) later; 9 is below the start.
        assert_eq!(
            cursor.take(vec![entry(9, "old"), entry(12, "b")], t0).len(),
            1
        );
        cursor.settle(t0 + Duration::from_millis(100), Duration::from_secs(5));
        let again = cursor.take(
            vec![entry(11, "a"), entry(12, "b")],
            t0 + Duration::from_millis(200),
        );
        assert_eq!(
            again,
            vec![Change::Record {
                account: AccountName::new("AUTH_x").unwrap(),
                container: ContainerName::new("a").unwrap(),
            }]
        );
        // Past the horizon the reported entries are forgotten and the floor rises.
        cursor.settle(t0 + Duration::from_secs(6), Duration::from_secs(5));
        assert_eq!((cursor.below, cursor.reported.len()), (12, 0));
        assert!(cursor.take(vec![entry(12, "b")], t0).is_empty());
        // A name that is not UTF-8 (an operator's insert): drop every cached record.
        let junk = cursor.take(vec![(13, b"AUTH_x".to_vec(), vec![0xff])], t0);
        assert_eq!(junk, vec![Change::Resync]);
    }
}
