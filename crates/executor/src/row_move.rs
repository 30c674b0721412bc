//! Moving rows to the shard of their new sharding value ([`router::RowMove`]): an UPDATE
//! of the sharding column whose new value lives on another shard than rows it changes.
//!
//! It runs in one distributed transaction (`xa` mode only; in `local` mode it is refused,
//! since a crash between the shards would lose or duplicate the rows): the statement's own
//! in autocommit mode, or the client's, where a savepoint on every data source it touches
//! undoes the statement alone when it fails, as MariaDB undoes a failed statement. In order:
//! the UPDATE as it is where the new value's shard may already hold rows; then for each
//! other shard, the rows read with `FOR UPDATE`, inserted on the new shard with the assigned
//! values (each cell as a hex string in the character set the server sent it in, so the
//! insert stores the bytes the row had), and deleted, which must delete exactly the rows
//! read. The answer is MariaDB's affected rows: the in-place UPDATE's plus the rows moved.
//! The rows one shard returns count against `proxy.merge_memory_limit`.

use std::fmt::Write;

use backend::{BackendError, RawResult};
use protocol::constants::column_type;
use protocol::packets::OkPacket;
use protocol::{ClientError, ServerError};
use router::RowMove;
use tracing::Instrument;

use crate::error::ExecError;
use crate::{answer_error, flush, Client, Executor, Flow, Snapshot};

/// The savepoint a move inside the client's transaction is undone to.
const SAVEPOINT: &str = "dbmesh_row_move";

/// Why a move stopped.
enum Failed {
    /// The client's answer; the session goes on.
    Answer(ServerError),
    /// A backend connection was lost.
    Lost(String, BackendError),
}

impl From<ExecError> for Failed {
    fn from(e: ExecError) -> Failed {
        Failed::Answer(e.to_server_error())
    }
}

fn failed(data_source: &str, e: BackendError) -> Failed {
    match e {
        BackendError::Server { .. } => Failed::Answer(e.to_server_error()),
        other => Failed::Lost(data_source.to_owned(), other),
    }
}

impl Executor {
    /// Runs a row move and answers the client.
    pub(crate) async fn run_move<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        mv: &RowMove,
    ) -> Flow {
        if !self.xa_mode(snapshot) {
            let e = ExecError::RowMoveNeedsXa {
                table: mv.table.clone(),
                column: mv.column.clone(),
            };
            return answer_error(client, &e.to_server_error()).await;
        }
        let span =
            tracing::info_span!("row_move", conn = self.session, table = %mv.table, to = %mv.to);
        let implicit = !self.in_transaction_now();
        self.transaction.implicit = implicit;
        let mut touched: Vec<String> = Vec::new();
        let mut result = self
            .move_rows(snapshot, mv, !implicit, &mut touched)
            .instrument(span.clone())
            .await;
        if implicit {
            self.transaction.implicit = false;
            let _finishing = self.cancel.atomic();
            let commit = result.is_ok();
            if let Err(e) = self.finish_distributed(commit).instrument(span).await {
                if result.is_ok() {
                    result = Err(Failed::Answer(e));
                }
            }
        } else {
            let end = match result {
                Ok(_) => "RELEASE SAVEPOINT",
                Err(_) => "ROLLBACK TO SAVEPOINT",
            };
            for data_source in &touched {
                if let Some(held) = self.held.get_mut(data_source) {
                    // After a deadlock the branch is rolled back already (the session then
                    // rolls back the whole transaction): the savepoint is gone, which is fine.
                    if let Err(e) = held.conn.query(&format!("{end} {SAVEPOINT}")).await {
                        tracing::debug!(conn = self.session, data_source, error = %e, "{end}");
                    }
                }
            }
        }
        match result {
            Ok(mut ok) => {
                client.rows_moved(ok.affected_rows);
                ok.status = self.client_status();
                self.reported.status = ok.status;
                self.reported.row_count = ok.affected_rows as i64;
                client.packets().write_with(|b| ok.encode(0, b));
                flush(client).await
            }
            Err(Failed::Answer(e)) => answer_error(client, &e).await,
            Err(Failed::Lost(data_source, e)) => self.backend_lost(client, &data_source, e).await,
        }
    }

    /// The move's statements, in order; returns the answer's affected rows and warnings.
    /// `savepoints`: inside the client's transaction, each data source touched gets one
    /// first (listed in `touched`).
    async fn move_rows(
        &mut self,
        snapshot: &Snapshot,
        mv: &RowMove,
        savepoints: bool,
        touched: &mut Vec<String>,
    ) -> Result<OkPacket, Failed> {
        let mut total = OkPacket::default();
        if let Some(t) = &mv.in_place {
            let ok = self
                .move_statement(snapshot, &t.data_source, &t.sql, savepoints, touched)
                .await?;
            total.affected_rows += ok.affected_rows;
            total.warnings = total.warnings.saturating_add(ok.warnings);
        }
        let limit = snapshot.rules.proxy.merge_memory_limit;
        for from in &mv.from {
            let data_source = from.select.data_source.as_str();
            self.move_conn(snapshot, data_source, savepoints, touched)
                .await?;
            let Some(held) = self.held.get_mut(data_source) else {
                return Err(ExecError::MoveConnectionGone.into());
            };
            let mut rows = held
                .conn
                .query_raw(&from.select.sql, limit)
                .await
                .map_err(|e| failed(data_source, e))?;
            if rows.exceeded {
                return Err(ExecError::MoveMemory(limit).into());
            }
            if rows.rows.is_empty() {
                continue;
            }
            // MariaDB prints a FLOAT with 6 digits, which does not give its value back: read
            // the rows again (locked, so the same rows) with each FLOAT as a DOUBLE, exact.
            if let Some(exact) = exact_floats(&from.select.sql, &rows) {
                let mut again = held
                    .conn
                    .query_raw(&exact, limit)
                    .await
                    .map_err(|e| failed(data_source, e))?;
                if again.exceeded {
                    return Err(ExecError::MoveMemory(limit).into());
                }
                with_exact_floats(&mut again, rows.columns.len());
                rows = again;
            }
            let insert = insert_statement(mv, &rows).map_err(Failed::Answer)?;
            let inserted = self
                .move_statement(snapshot, &mv.to, &insert, savepoints, touched)
                .await?;
            let deleted = self
                .move_statement(snapshot, data_source, &from.delete.sql, savepoints, touched)
                .await?;
            let read = rows.rows.len() as u64;
            if deleted.affected_rows != read {
                return Err(ExecError::MoveMismatch {
                    table: mv.table.clone(),
                    read,
                    deleted: deleted.affected_rows,
                }
                .into());
            }
            total.affected_rows += read;
            total.warnings = total
                .warnings
                .saturating_add(inserted.warnings)
                .saturating_add(deleted.warnings);
        }
        Ok(total)
    }

    /// The session's connection to `data_source` for a move (a branch of the distributed
    /// transaction), with the move's savepoint when `savepoints`.
    async fn move_conn(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
        savepoints: bool,
        touched: &mut Vec<String>,
    ) -> Result<(), Failed> {
        let held = self
            .conn_for(snapshot, data_source)
            .await
            .map_err(|e| failed(data_source, e))?;
        if savepoints && !touched.iter().any(|t| t == data_source) {
            held.conn
                .query(&format!("SAVEPOINT {SAVEPOINT}"))
                .await
                .map_err(|e| failed(data_source, e))?;
        }
        if !touched.iter().any(|t| t == data_source) {
            touched.push(data_source.to_owned());
        }
        Ok(())
    }

    /// Runs one statement of a move on `data_source`.
    async fn move_statement(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
        sql: &str,
        savepoints: bool,
        touched: &mut Vec<String>,
    ) -> Result<OkPacket, Failed> {
        if self.cancel.timed_out() {
            return Err(Failed::Answer(crate::cancel::time_limit_error()));
        }
        self.move_conn(snapshot, data_source, savepoints, touched)
            .await?;
        let Some(held) = self.held.get_mut(data_source) else {
            return Err(ExecError::MoveConnectionGone.into());
        };
        let result = held
            .conn
            .query(sql)
            .await
            .map_err(|e| failed(data_source, e))?;
        if result.ok.warnings > 0 {
            held.diagnostics = true;
        }
        Ok(result.ok)
    }
}

/// `INSERT INTO <new table> (<columns>) VALUES …` of the rows read, with the assigned
/// columns' values; an assigned column the rows lack is added, so the insert fails on it
/// as the UPDATE would have.
fn insert_statement(mv: &RowMove, rows: &RawResult) -> Result<String, ServerError> {
    let names: Vec<&str> = rows
        .columns
        .iter()
        .map(|c| {
            if c.org_name.is_empty() {
                c.name.as_str()
            } else {
                c.org_name.as_str()
            }
        })
        .collect();
    // The value each column gets from the assignments (the last one naming it, as MariaDB
    // applies them in order).
    let assigned = |column: &str| {
        mv.set
            .iter()
            .rev()
            .find(|(c, _)| c.eq_ignore_ascii_case(column))
            .map(|(_, v)| v.as_str())
    };
    let mut extra: Vec<(&str, &str)> = Vec::new();
    for (c, v) in &mv.set {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(c))
            && !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(c))
        {
            extra.push((c, assigned(c).unwrap_or(v)));
        }
    }
    let mut charsets = Vec::with_capacity(rows.columns.len());
    for (c, name) in rows.columns.iter().zip(&names) {
        let charset = u8::try_from(c.collation)
            .ok()
            .and_then(protocol::text::charset_of_collation)
            .ok_or_else(|| {
                ExecError::MoveCharset {
                    column: (*name).to_owned(),
                    collation: c.collation,
                }
                .to_server_error()
            })?;
        charsets.push(charset);
    }
    let mut sql = format!("INSERT INTO {} (", mv.to_table);
    let all = names.iter().copied().chain(extra.iter().map(|(c, _)| *c));
    for (i, name) in all.enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&sql::quote_ident(name));
    }
    sql.push_str(") VALUES ");
    for (r, row) in rows.rows.iter().enumerate() {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            match (assigned(names[i]), cell) {
                (Some(value), _) => sql.push_str(value),
                (None, None) => sql.push_str("NULL"),
                (None, Some(bytes)) => {
                    let _ = write!(sql, "_{} X'", charsets[i]);
                    for b in bytes {
                        let _ = write!(sql, "{b:02X}");
                    }
                    sql.push('\'');
                }
            }
        }
        for (_, value) in &extra {
            sql.push_str(", ");
            sql.push_str(value);
        }
        sql.push(')');
    }
    Ok(sql)
}

/// The move's read with each FLOAT column of `rows` also read as a DOUBLE (after the
/// table's own columns), when it has any; the read is `SELECT * …`, as the router writes it.
fn exact_floats(select: &str, rows: &RawResult) -> Option<String> {
    let rest = select.strip_prefix("SELECT * ")?;
    let casts: Vec<String> = rows
        .columns
        .iter()
        .filter(|c| c.column_type == column_type::FLOAT)
        .map(|c| format!("CAST({} AS DOUBLE)", sql::quote_ident(&c.org_name)))
        .collect();
    (!casts.is_empty()).then(|| format!("SELECT *, {} {rest}", casts.join(", ")))
}

/// Puts the DOUBLE read of each FLOAT column (the columns past the table's `n`) in its place.
fn with_exact_floats(rows: &mut RawResult, n: usize) {
    let floats: Vec<usize> = (0..n.min(rows.columns.len()))
        .filter(|&i| rows.columns[i].column_type == column_type::FLOAT)
        .collect();
    for (k, &i) in floats.iter().enumerate() {
        if let Some(c) = rows.columns.get(n + k) {
            rows.columns[i].collation = c.collation;
        }
        for row in &mut rows.rows {
            if let Some(cell) = row.get_mut(n + k).map(std::mem::take) {
                row[i] = cell;
            }
        }
    }
    rows.columns.truncate(n);
    for row in &mut rows.rows {
        row.truncate(n);
    }
}
