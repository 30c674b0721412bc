//! Verification: the moving rows of every source physical table against the destination,
//! chunk by chunk in primary-key order. Each chunk's bounds are read from the source (every
//! `chunk_rows` moving rows; the last chunk is open above), then both sides compute the
//! chunk's `COUNT(*)` and `BIT_XOR` of a CRC32 per row over every written column's bytes
//! (`HEX(CAST(c AS BINARY))`, NULL marked apart from the empty string), so neither collation
//! nor character set can make different bytes look equal. A chunk that differs is checked
//! again a few times (the catch-up may be a moment behind); one that still differs is
//! reported with the keys of the rows that differ (rows on one side only, or with other
//! values), at most [`MAX_KEYS_REPORTED`] of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backend::BackendConn;
use rules::Rules;
use tracing::Instrument;

use crate::copy::{data_source_options, destination_session, source_session};
use crate::plan::{MovePlan, PhysicalTable, SourcePart, TableMove};
use crate::rows::{TableColumns, MAX_READ_BYTES};
use crate::{RebalanceError, RebalanceMetrics};

/// Differing keys reported per chunk at most.
pub const MAX_KEYS_REPORTED: usize = 100;

/// How the verification goes.
#[derive(Debug, Clone)]
pub struct VerifySettings {
    /// Source rows per checksummed chunk.
    pub chunk_rows: usize,
    /// How often a differing chunk is checked again before it is reported.
    pub rechecks: u32,
    /// The wait before each re-check.
    pub recheck_wait: Duration,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            chunk_rows: 10_000,
            rechecks: 3,
            recheck_wait: Duration::from_secs(1),
        }
    }
}

/// A chunk that differed at every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkDiff {
    /// The keys the chunk runs after and through (literals), `None` for open ends.
    pub after: Option<String>,
    pub through: Option<String>,
    pub source_rows: u64,
    pub destination_rows: u64,
    /// The keys of rows that differ, at most [`MAX_KEYS_REPORTED`].
    pub keys: Vec<String>,
}

/// One source physical table's verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub source: String,
    pub destination: String,
    pub rows: u64,
    pub chunks: u64,
    pub differing: Vec<ChunkDiff>,
}

/// The verification of a move.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub tables: Vec<TableReport>,
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether every moving row is on the destination as on its source.
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(|t| t.differing.is_empty())
    }

    /// Source rows checked.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    /// Rows checked per second.
    pub fn rows_per_second(&self) -> f64 {
        self.rows() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Verifies every part of `plan`.
pub async fn verify(
    rules: &Rules,
    plan: &MovePlan,
    settings: &VerifySettings,
    metrics: &RebalanceMetrics,
) -> Result<VerifyReport, RebalanceError> {
    let started = Instant::now();
    let destination = data_source_options(rules, plan.destination_data_source())?;
    let mut dst = destination_session(&destination).await?;
    let mut tables = Vec::new();
    for (table, part) in plan.parts() {
        let mut src =
            source_session(&data_source_options(rules, &part.source.data_source)?).await?;
        let span = tracing::info_span!("rebalance_verify", source = %part.source.node_name());
        let report = TableCheck {
            src: &mut src,
            dst: &mut dst,
            table,
            part,
            settings,
            metrics,
        }
        .run()
        .instrument(span)
        .await?;
        tables.push(report);
    }
    Ok(VerifyReport {
        tables,
        elapsed: started.elapsed(),
    })
}

struct TableCheck<'a> {
    src: &'a mut BackendConn,
    dst: &'a mut BackendConn,
    table: &'a TableMove,
    part: &'a SourcePart,
    settings: &'a VerifySettings,
    metrics: &'a RebalanceMetrics,
}

/// `COUNT(*)` and the XOR of the rows' hashes.
type Checksum = (u64, u64);

impl TableCheck<'_> {
    async fn run(mut self) -> Result<TableReport, RebalanceError> {
        let source = &self.part.source;
        let columns = TableColumns::read(self.src, source).await?;
        let predicate = self.table.predicate(self.part.slices);
        let row_hash = row_hash(&columns);
        let mut report = TableReport {
            source: source.node_name(),
            destination: self.table.destination.node_name(),
            rows: 0,
            chunks: 0,
            differing: Vec::new(),
        };
        let mut after: Option<Vec<String>> = None;
        loop {
            let through = self
                .chunk_end(&columns, &predicate, after.as_deref())
                .await?;
            let mut range = predicate.clone();
            if let Some(key) = &after {
                range += &format!(" AND {}", columns.after(key));
            }
            if let Some(key) = &through {
                range += &format!(" AND {}", columns.through(key));
            }
            let checksum = format!(
                "SELECT COUNT(*), COALESCE(BIT_XOR({row_hash}), 0) FROM {{table}} WHERE {range}"
            );
            let mut checks = 0;
            let (source_sum, destination_sum) = loop {
                let sums = self.checksums(&checksum).await?;
                if sums.0 == sums.1 || checks == self.settings.rechecks {
                    break sums;
                }
                checks += 1;
                tracing::info!(after = ?after, through = ?through, check = checks, "chunk differs; checking again");
                tokio::time::sleep(self.settings.recheck_wait).await;
            };
            report.rows += source_sum.0;
            report.chunks += 1;
            self.metrics
                .rows_verified
                .with_label_values(&[&report.source])
                .inc_by(source_sum.0);
            let equal = source_sum == destination_sum;
            self.metrics
                .chunks_verified
                .with_label_values(&[if equal { "equal" } else { "different" }])
                .inc();
            if !equal {
                let keys = self.differing_keys(&columns, &row_hash, &range).await?;
                report.differing.push(ChunkDiff {
                    after: after.as_ref().map(|k| k.join(", ")),
                    through: through.as_ref().map(|k| k.join(", ")),
                    source_rows: source_sum.0,
                    destination_rows: destination_sum.0,
                    keys,
                });
            }
            match through {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        Ok(report)
    }

    /// The key of the source's last row of the chunk after `after`, `None` when fewer than
    /// a chunk's rows are left (the chunk is open above, catching rows on the destination
    /// only).
    async fn chunk_end(
        &mut self,
        columns: &TableColumns,
        predicate: &str,
        after: Option<&[String]>,
    ) -> Result<Option<Vec<String>>, RebalanceError> {
        let range = after.map_or_else(String::new, |key| format!(" AND {}", columns.after(key)));
        let result = self
            .src
            .query_raw(
                &format!(
                    "SELECT {} FROM {} WHERE {predicate}{range} ORDER BY {} LIMIT 1 OFFSET {}",
                    columns.key_order(),
                    self.part.source.sql_name(),
                    columns.key_order(),
                    self.settings.chunk_rows.saturating_sub(1)
                ),
                MAX_READ_BYTES,
            )
            .await?;
        result
            .rows
            .first()
            .map(|row| columns.key_of_key_row(row))
            .transpose()
    }

    /// The checksum `sql` (with `{table}`) on the source and on the destination, at once.
    async fn checksums(&mut self, sql: &str) -> Result<(Checksum, Checksum), RebalanceError> {
        let on = |table: &PhysicalTable| sql.replace("{table}", &table.sql_name());
        let (source_sql, destination_sql) = (on(&self.part.source), on(&self.table.destination));
        let (a, b) = tokio::join!(
            self.src.query(&source_sql),
            self.dst.query(&destination_sql)
        );
        let sum = |result: backend::conn::QueryResult| -> Checksum {
            let cell = |i: usize| {
                result
                    .rows
                    .first()
                    .and_then(|r| r.get(i).cloned().flatten())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            (cell(0), cell(1))
        };
        Ok((sum(a?), sum(b?)))
    }

    /// The keys of the rows of `range` that differ between the sides.
    async fn differing_keys(
        &mut self,
        columns: &TableColumns,
        row_hash: &str,
        range: &str,
    ) -> Result<Vec<String>, RebalanceError> {
        let sql = |table: &PhysicalTable| {
            format!(
                "SELECT {}, {row_hash} FROM {} WHERE {range} ORDER BY {}",
                columns.key_order(),
                table.sql_name(),
                columns.key_order()
            )
        };
        let rows =
            |result: backend::RawResult| -> Result<BTreeMap<String, Vec<u8>>, RebalanceError> {
                let n = columns.key.len();
                result
                    .rows
                    .iter()
                    .map(|row| {
                        Ok((
                            columns.key_of_key_row(&row[..n])?.join(", "),
                            row[n].clone().unwrap_or_default(),
                        ))
                    })
                    .collect()
            };
        let source = rows(
            self.src
                .query_raw(&sql(&self.part.source), MAX_READ_BYTES)
                .await?,
        )?;
        let destination = rows(
            self.dst
                .query_raw(&sql(&self.table.destination), MAX_READ_BYTES)
                .await?,
        )?;
        let mut keys: Vec<String> = source
            .iter()
            .filter(|(key, hash)| destination.get(*key) != Some(hash))
            .map(|(key, _)| key.clone())
            .chain(
                destination
                    .keys()
                    .filter(|key| !source.contains_key(*key))
                    .cloned(),
            )
            .collect();
        keys.sort();
        keys.truncate(MAX_KEYS_REPORTED);
        Ok(keys)
    }
}

/// A row's hash: CRC32 over every written column's bytes in hex, `N` for NULL.
fn row_hash(columns: &TableColumns) -> String {
    let cells: Vec<String> = columns
        .names
        .iter()
        .map(|c| format!("IFNULL(HEX(CAST({c} AS BINARY)), 'N')"))
        .collect();
    format!("CRC32(CONCAT_WS(',', {}))", cells.join(", "))
}
