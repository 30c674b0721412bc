//! The copy: for each source data source, a consistent snapshot, then every moving row of
//! its physical tables in primary-key chunks to the destination, each chunk in one
//! destination transaction and recorded in the move state (its cursor) before the next.
//!
//! # The snapshot and the XA transactions of the sources
//!
//! The catch-up replays the source's binlog from a position at or before the snapshot.
//! dbmesh's distributed transactions are XA transactions on each source, binlogged as an
//! `XA PREPARE` group with the rows and a later `XA COMMIT`; a follower that meets the commit
//! of a prepare it never read cannot know the rows and stops. So, per source:
//!
//! 1. read P0 = `@@gtid_binlog_pos`;
//! 2. `XA RECOVER` must be empty, else wait a few milliseconds and go back to 1 (bounded by
//!    [`CopySettings::xa_wait`]);
//! 3. `START TRANSACTION WITH CONSISTENT SNAPSHOT`, and its exact position Ps from
//!    `binlog_snapshot_file`/`_position` through `BINLOG_GTID_POS` (Ps ≥ P0).
//!
//! The catch-up starts at P0. An XA transaction prepared after P0 has its prepare in the
//! stream: it is followed normally. One prepared before P0 was no longer prepared at step 2,
//! so it had committed (or rolled back) before step 3: its outcome is in the snapshot, and
//! its `XA COMMIT`, if the stream meets it at all, lies before Ps. The follower therefore
//! ignores the outcome of an unknown XA transaction before Ps
//! (`FollowerSettings::ignore_unknown_xa_before`) and still stops on one after Ps, which
//! cannot happen unless the reasoning above is broken.
//!
//! # Resuming
//!
//! A rebalancer killed while copying resumes with a new snapshot for the remaining chunks
//! (after each table's saved cursor); the catch-up still starts at the first snapshot's P0,
//! the oldest. Replay converges whatever the mix of snapshots: every change after P0 is
//! applied again as a full-row REPLACE or a DELETE by key, the last one for each row
//! winning. A chunk committed on the destination but not recorded (killed in between) is
//! copied again with REPLACE, harmlessly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{quote_literal, BackendConn, ConnectOptions};
use binlog::GtidPosition;
use meta::moves::{self, ChunkRecord, MoveRecord, NodeState};
use meta::Meta;
use rules::Rules;
use tracing::Instrument;

use crate::plan::{ident, MovePlan, PhysicalTable, SourcePart, TableMove};
use crate::rows::{TableColumns, MAX_READ_BYTES};
use crate::throttle::{Throttle, ThrottleSettings};
use crate::{RebalanceError, RebalanceMetrics};

/// How the copy goes.
#[derive(Debug, Clone)]
pub struct CopySettings {
    /// Rows per chunk (one destination transaction, one saved cursor).
    pub chunk_rows: usize,
    /// The largest statement sent to the destination; a chunk is split into several.
    pub max_statement_bytes: usize,
    pub throttle: ThrottleSettings,
    /// How long a source may keep XA transactions prepared before the snapshot is given up.
    pub xa_wait: Duration,
}

impl Default for CopySettings {
    fn default() -> Self {
        CopySettings {
            chunk_rows: 1000,
            max_statement_bytes: 1 << 20,
            throttle: ThrottleSettings::default(),
            xa_wait: Duration::from_secs(10),
        }
    }
}

/// Rows copied and to copy, for progress shown while the copy runs.
#[derive(Debug, Default)]
pub struct CopyProgress {
    pub rows_copied: AtomicU64,
    pub rows_total: AtomicU64,
}

/// What the copy works on: the move, its state, where it is recorded and who drives it.
pub struct CopyJob<'a> {
    pub rules: &'a Rules,
    pub plan: &'a MovePlan,
    pub record: &'a MoveRecord,
    pub meta: &'a mut Meta,
    pub driver: &'a str,
    pub settings: &'a CopySettings,
    pub metrics: &'a RebalanceMetrics,
    pub progress: Arc<CopyProgress>,
}

/// How dbmesh's rebalancer reaches data source `name`'s primary, with every statement's
/// time unbounded (a chunk or a count may take long on a big table).
pub(crate) fn data_source_options(
    rules: &Rules,
    name: &str,
) -> Result<ConnectOptions, RebalanceError> {
    let ds = rules
        .data_source(name)
        .ok_or_else(|| RebalanceError::refused(format!("no data source '{name}' in the rules")))?;
    Ok(ConnectOptions {
        statement_timeout: None,
        ..ConnectOptions::for_data_source(name, ds)
    })
}

/// The replicas the rules name for data source `name`, reached with its login.
fn replica_options(rules: &Rules, name: &str) -> Vec<ConnectOptions> {
    let Some(ds) = rules.data_source(name) else {
        return Vec::new();
    };
    ds.replicas
        .iter()
        .map(|r| ConnectOptions {
            address: r.address.clone(),
            ..ConnectOptions::for_data_source(name, ds)
        })
        .collect()
}

/// A session that copies as a replica applies: no foreign-key actions (a REPLACE must not
/// cascade), strict, an explicit 0 stays 0 in an AUTO_INCREMENT column, times in UTC, no
/// statement time limit.
pub(crate) async fn destination_session(
    options: &ConnectOptions,
) -> Result<BackendConn, RebalanceError> {
    let mut conn = BackendConn::connect(options).await?;
    conn.query(
        "SET SESSION foreign_key_checks = 0, time_zone = '+00:00', \
         sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO', max_statement_time = 0",
    )
    .await?;
    Ok(conn)
}

/// A session that reads the source: times in UTC (TIMESTAMP values as stored), no statement
/// time limit, REPEATABLE READ (a consistent snapshot needs it).
pub(crate) async fn source_session(
    options: &ConnectOptions,
) -> Result<BackendConn, RebalanceError> {
    let mut conn = BackendConn::connect(options).await?;
    conn.query(
        "SET SESSION time_zone = '+00:00', max_statement_time = 0; \
         SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    )
    .await?;
    Ok(conn)
}

/// Copies every part of the plan not finished yet in `job.record`. Each source is checked
/// first (`binlog::check_source`: log_bin, ROW, FULL images), and the destination tables
/// are created (or found equal) before any row moves.
pub async fn copy(job: CopyJob<'_>) -> Result<(), RebalanceError> {
    let CopyJob {
        rules,
        plan,
        record,
        meta,
        driver,
        settings,
        metrics,
        progress,
    } = job;
    let sources = plan.source_data_sources();
    for source in &sources {
        binlog::check_source(&data_source_options(rules, source)?).await?;
    }
    let destination = data_source_options(rules, plan.destination_data_source())?;
    let mut dst = destination_session(&destination).await?;
    create_destination_tables(rules, plan, &mut dst).await?;
    let node = |part: &SourcePart| {
        record
            .nodes
            .iter()
            .find(|n| n.source_node == part.source.node_name())
            .cloned()
    };
    for (_, part) in plan.parts() {
        if let Some(state) = node(part) {
            progress
                .rows_total
                .fetch_add(state.rows_total, Ordering::Relaxed);
            progress
                .rows_copied
                .fetch_add(state.rows_copied, Ordering::Relaxed);
        }
    }
    let mut throttle = Throttle::new(settings.throttle.clone(), metrics.clone());
    for source in &sources {
        let pending: Vec<(&TableMove, &SourcePart, NodeState)> = plan
            .parts()
            .filter(|(_, p)| p.source.data_source == *source)
            .filter_map(|(t, p)| node(p).map(|n| (t, p, n)))
            .filter(|(_, _, n)| !n.done)
            .collect();
        if pending.is_empty() {
            continue;
        }
        let span = tracing::info_span!("rebalance_copy", move_id = record.id, source = %source);
        async {
            let options = data_source_options(rules, source)?;
            let mut src = source_session(&options).await?;
            let (start, snapshot) = take_snapshot(&mut src, source, settings.xa_wait).await?;
            moves::record_snapshot(
                meta,
                record.id,
                source,
                &start.to_string(),
                &snapshot.to_string(),
            )
            .await?;
            tracing::info!(%start, %snapshot, tables = pending.len(), "snapshot taken");
            let replicas = replica_options(rules, source);
            for (table, part, state) in pending {
                let mut node = NodeCopy {
                    src: &mut src,
                    dst: &mut dst,
                    table,
                    part,
                    state,
                    meta: &mut *meta,
                    move_id: record.id,
                    driver,
                    settings,
                    metrics,
                    progress: &progress,
                    throttle: &mut throttle,
                    replicas: &replicas,
                };
                node.run().await?;
            }
            src.query("COMMIT").await?;
            Ok::<(), RebalanceError>(())
        }
        .instrument(span)
        .await?;
    }
    Ok(())
}

/// Takes a consistent snapshot on `src` while no XA transaction is prepared there: the
/// position to start the catch-up from (P0) and the snapshot's (Ps). See the module
/// documentation.
pub(crate) async fn take_snapshot(
    src: &mut BackendConn,
    source: &str,
    xa_wait: Duration,
) -> Result<(GtidPosition, GtidPosition), RebalanceError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(2);
    let start = loop {
        let start = single(src, "SELECT @@gtid_binlog_pos").await?;
        if src.query("XA RECOVER").await?.rows.is_empty() {
            break start;
        }
        if started.elapsed() >= xa_wait {
            return Err(RebalanceError::XaPrepared {
                source_name: source.to_string(),
                waited: xa_wait,
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    };
    src.query("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await?;
    let status = src.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await?;
    let value = |name: &str| {
        status
            .rows
            .iter()
            .find(|r| r.first().cloned().flatten().as_deref() == Some(name))
            .and_then(|r| r.get(1).cloned().flatten())
            .unwrap_or_default()
    };
    let (file, offset) = (
        value("binlog_snapshot_file"),
        value("binlog_snapshot_position"),
    );
    let snapshot = single(
        src,
        &format!(
            "SELECT BINLOG_GTID_POS({}, {})",
            quote_literal(&file),
            offset.parse::<u64>().unwrap_or(0)
        ),
    )
    .await?;
    Ok((start.parse()?, snapshot.parse()?))
}

/// The one value `sql` returns; an error if it is NULL.
async fn single(conn: &mut BackendConn, sql: &str) -> Result<String, RebalanceError> {
    conn.query(sql)
        .await?
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .ok_or_else(|| {
            RebalanceError::refused(format!(
                "data source '{}' answered NULL to {sql}",
                conn.source_name()
            ))
        })
}

/// `SHOW CREATE TABLE`'s text without the table's name and its AUTO_INCREMENT counter: what
/// must be equal on both sides.
fn definition_body(ddl: &str) -> String {
    let body = ddl.split_once('(').map_or(ddl, |(_, rest)| rest);
    body.split(' ')
        .filter(|word| !word.starts_with("AUTO_INCREMENT="))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn show_create(
    conn: &mut BackendConn,
    table: &PhysicalTable,
) -> Result<Option<String>, RebalanceError> {
    match conn
        .query(&format!("SHOW CREATE TABLE {}", table.sql_name()))
        .await
    {
        Ok(result) => Ok(result
            .rows
            .first()
            .and_then(|r| r.get(1).cloned().flatten())),
        // ER_NO_SUCH_TABLE
        Err(backend::BackendError::Server { error, .. }) if error.code == 1146 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates each destination table from its source's definition (`CREATE TABLE IF NOT
/// EXISTS`, the destination database too); an existing one must have the same definition.
async fn create_destination_tables(
    rules: &Rules,
    plan: &MovePlan,
    dst: &mut BackendConn,
) -> Result<(), RebalanceError> {
    for (table, part) in plan.parts() {
        let options = data_source_options(rules, &part.source.data_source)?;
        let mut src = BackendConn::connect(&options).await?;
        let Some(ddl) = show_create(&mut src, &part.source).await? else {
            return Err(RebalanceError::refused(format!(
                "the source table {} does not exist",
                part.source.node_name()
            )));
        };
        let target = &table.destination;
        dst.query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            ident(&target.database)
        ))
        .await?;
        let body = ddl.split_once('(').map_or("", |(_, rest)| rest);
        dst.query(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({body}",
            target.sql_name()
        ))
        .await?;
        let existing = show_create(dst, target).await?.unwrap_or_default();
        if definition_body(&existing) != definition_body(&ddl) {
            return Err(RebalanceError::SchemaDiffers {
                source_table: part.source.node_name(),
                destination: target.node_name(),
                source_ddl: ddl,
                destination_ddl: existing,
            });
        }
    }
    Ok(())
}

/// The copy of one source physical table within its source's snapshot.
struct NodeCopy<'a> {
    src: &'a mut BackendConn,
    dst: &'a mut BackendConn,
    table: &'a TableMove,
    part: &'a SourcePart,
    state: NodeState,
    meta: &'a mut Meta,
    move_id: u64,
    driver: &'a str,
    settings: &'a CopySettings,
    metrics: &'a RebalanceMetrics,
    progress: &'a CopyProgress,
    throttle: &'a mut Throttle,
    replicas: &'a [ConnectOptions],
}

impl NodeCopy<'_> {
    async fn run(&mut self) -> Result<(), RebalanceError> {
        let source = &self.part.source;
        let name = source.node_name();
        let columns = TableColumns::read(self.src, source).await?;
        let predicate = self.table.predicate(self.part.slices);
        if self.state.cursor.is_none() && self.state.rows_total == 0 {
            let total: u64 = single(
                self.src,
                &format!(
                    "SELECT COUNT(*) FROM {} WHERE {predicate}",
                    source.sql_name()
                ),
            )
            .await?
            .parse()
            .unwrap_or(0);
            moves::set_rows_total(self.meta, self.move_id, &name, total).await?;
            self.progress.rows_total.fetch_add(total, Ordering::Relaxed);
        }
        let mut cursor: Option<Vec<String>> = self
            .state
            .cursor
            .as_deref()
            .map(|text| text.split(", ").map(str::to_string).collect());
        let mut seq = self.state.chunks;
        loop {
            self.throttle.wait_for_load(self.src, self.replicas).await?;
            let after = cursor
                .as_ref()
                .map_or_else(String::new, |key| format!(" AND {}", columns.after(key)));
            let rows = self
                .src
                .query_raw(
                    &format!(
                        "SELECT {} FROM {} WHERE {predicate}{after} ORDER BY {} LIMIT {}",
                        columns.select_list(),
                        source.sql_name(),
                        columns.key_order(),
                        self.settings.chunk_rows
                    ),
                    MAX_READ_BYTES,
                )
                .await?;
            if rows.exceeded {
                return Err(RebalanceError::refused(format!(
                    "a chunk of {} rows of {name} holds more than {} MiB: copy with a smaller --chunk-rows",
                    self.settings.chunk_rows,
                    MAX_READ_BYTES >> 20
                )));
            }
            let Some(last) = rows.rows.last() else {
                break;
            };
            let last_key = columns.key_of(last)?;
            let statements = columns.replace_statements(
                &self.table.destination,
                &rows,
                self.settings.max_statement_bytes,
            )?;
            let span = tracing::debug_span!("rebalance_chunk", table = %name, seq = seq + 1, rows = rows.rows.len());
            async {
                self.dst.query("BEGIN").await?;
                for sql in &statements {
                    self.dst.query(sql).await?;
                }
                self.dst.query("COMMIT").await
            }
            .instrument(span)
            .await?;
            seq += 1;
            let chunk = ChunkRecord {
                source_node: name.clone(),
                seq,
                after_key: cursor.as_ref().map(|k| k.join(", ")),
                last_key: last_key.join(", "),
                rows: rows.rows.len() as u64,
            };
            moves::record_chunk(self.meta, self.move_id, self.driver, &chunk)
                .await
                .map_err(RebalanceError::lease)?;
            let n = rows.rows.len();
            self.metrics
                .rows_copied
                .with_label_values(&[&name])
                .inc_by(n as u64);
            self.metrics.chunks_copied.with_label_values(&[&name]).inc();
            self.progress
                .rows_copied
                .fetch_add(n as u64, Ordering::Relaxed);
            cursor = Some(last_key);
            if n < self.settings.chunk_rows {
                break;
            }
            self.throttle.take(n).await;
        }
        moves::finish_node(self.meta, self.move_id, &name).await?;
        tracing::info!(table = %name, chunks = seq, "copied");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_compare_without_name_and_counter() {
        let a = "CREATE TABLE `payment` (\n  `uid` bigint(20) NOT NULL,\n  PRIMARY KEY (`uid`)\n) ENGINE=InnoDB AUTO_INCREMENT=17 DEFAULT CHARSET=utf8mb4";
        let b = "CREATE TABLE `payment_9` (\n  `uid` bigint(20) NOT NULL,\n  PRIMARY KEY (`uid`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        assert_eq!(definition_body(a), definition_body(b));
        let c = b.replace("NOT NULL", "DEFAULT NULL");
        assert_ne!(definition_body(a), definition_body(&c));
    }
}
