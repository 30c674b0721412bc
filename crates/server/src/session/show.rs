//! SHOW / DESCRIBE through the logical view: the statement runs on one backend, and its small
//! result is rewritten so clients see logical names (`payment`, not `payment_3`; `Tables_in_bank`,
//! not `Tables_in_bank_0`), with the logical tables listed by SHOW TABLES even where the default
//! data source holds none of their rows.

use protocol::buf::Reader;
use protocol::packets::{is_err, is_terminator, OkPacket};
use protocol::response::{read_result_header, ResultHeader};
use protocol::resultset::{write_binary_result, write_prepare_ok, write_text_result, ColumnDef};
use protocol::ServerError;
use router::Plan;
use sql::{Lexer, Tok, Token};
use tokio::io::{AsyncRead, AsyncWrite};

use executor::Flow;

use super::Session;
use crate::intercept::{like_matches, string_value};

/// SHOW output is small; past this many rows it is refused rather than buffered.
const MAX_SHOW_ROWS: usize = 100_000;

pub(super) type Row = Vec<Option<Vec<u8>>>;

/// How the client asked: the result is written in that protocol.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// COM_QUERY: a text result.
    Query,
    /// COM_STMT_PREPARE: the prepare answer, with the result's columns.
    Prepare { statement_id: u32 },
    /// COM_STMT_EXECUTE: a binary result.
    Execute,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Runs a SHOW / DESCRIBE plan (as text on its backend, whichever way the client asked:
    /// the rewrite works on text values) and answers as `asked`. A prepared SHOW never reaches
    /// a backend as the client's statement, whose answer would name physical tables and the
    /// physical database.
    pub(super) async fn run_show(&mut self, plan: &Plan, original_sql: &str, asked: Asked) -> Flow {
        match self.show_result(plan, original_sql).await {
            Ok(Some((defs, rows))) => self.answer_show(&defs, rows, asked).await,
            Ok(None) => self.ok().await,
            Err(flow) => flow,
        }
    }

    /// Writes a SHOW result (see [`Self::show_result`]) as `asked`.
    pub(super) async fn answer_show(
        &mut self,
        defs: &[ColumnDef],
        rows: Vec<Row>,
        asked: Asked,
    ) -> Flow {
        let deprecate_eof = self.deprecate_eof();
        let status = self.exec.client_status();
        let packets = &mut self.client.packets;
        match asked {
            Asked::Query => write_text_result(packets, defs, rows, deprecate_eof, status),
            Asked::Prepare { statement_id } => {
                write_prepare_ok(packets, statement_id, defs, deprecate_eof, status)
            }
            Asked::Execute => {
                if let Err(e) = write_binary_result(packets, defs, &rows, deprecate_eof, status) {
                    return self
                        .error(ServerError::internal(format!("dbmesh: SHOW result: {e}")))
                        .await;
                }
            }
        }
        self.flush().await
    }

    /// The rewritten result of a SHOW plan; `None` when the backend answered OK. On failure
    /// the client has its answer.
    pub(super) async fn show_result(
        &mut self,
        plan: &Plan,
        original_sql: &str,
    ) -> Result<Option<(Vec<ColumnDef>, Vec<Row>)>, Flow> {
        let target = &plan.targets[0];
        let logical_db = self.exec.state.database.clone().unwrap_or_default();
        let snapshot = self.ctx.snapshot.load_full();
        let conn = match self.exec.backend(&snapshot, &target.data_source).await {
            Ok(conn) => conn,
            Err(e) => return Err(self.error(e.to_server_error()).await),
        };
        let physical_db = conn.state().database.clone().unwrap_or_default();
        let result = async {
            conn.send_command_with(|b| {
                b.extend_from_slice(&[protocol::constants::com::QUERY]);
                b.extend_from_slice(&protocol::text::encode(&target.sql));
            })
            .await?;
            let lost = |error| backend::BackendError::Lost {
                source_name: target.data_source.clone(),
                error,
            };
            let header = read_result_header(conn.packets()).await.map_err(lost)?;
            let columns = match header {
                ResultHeader::Columns(c) => c,
                ResultHeader::Ok(_) => return Ok(None),
                ResultHeader::Err(error) => {
                    return Err(backend::BackendError::Server {
                        source_name: target.data_source.clone(),
                        error,
                    })
                }
            };
            let mut rows: Vec<Row> = Vec::new();
            loop {
                let packet = conn.packets().read_packet(usize::MAX).await.map_err(lost)?;
                if is_terminator(&packet) {
                    conn.status = OkPacket::decode(&packet).map_err(lost)?.status;
                    break;
                }
                if is_err(&packet) {
                    let error = ServerError::decode(&packet).map_err(lost)?;
                    return Err(backend::BackendError::Server {
                        source_name: target.data_source.clone(),
                        error,
                    });
                }
                let mut r = Reader::new(&packet);
                let row = (0..columns.len())
                    .map(|_| r.lenenc_bytes_or_null().map(|v| v.map(<[u8]>::to_vec)))
                    .collect::<Result<Row, _>>()
                    .map_err(lost)?;
                if rows.len() < MAX_SHOW_ROWS {
                    rows.push(row);
                }
            }
            Ok(Some((columns, rows)))
        }
        .await;
        let (columns, mut rows) = match result {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e @ backend::BackendError::Server { .. }) => {
                return Err(self.error(e.to_server_error()).await)
            }
            Err(e) => return Err(self.backend_lost(&target.data_source, e).await),
        };
        let mut defs: Vec<ColumnDef> = match columns.iter().map(|c| ColumnDef::decode(c)).collect()
        {
            Ok(d) => d,
            Err(e) => {
                let lost = backend::BackendError::Lost {
                    source_name: target.data_source.clone(),
                    error: e,
                };
                return Err(self.backend_lost(&target.data_source, lost).await);
            }
        };
        for def in &mut defs {
            // `Tables_in_bank_0`, or `Tables_in_bank_0 (pay%)` with LIKE.
            let rest = def
                .name
                .strip_prefix("Tables_in_")
                .and_then(|n| n.strip_prefix(physical_db.as_str()))
                .filter(|rest| rest.is_empty() || rest.starts_with(" ("));
            if let Some(rest) = rest {
                def.name = format!("Tables_in_{logical_db}{rest}");
                def.org_name = def.name.clone();
            }
            if def.schema == physical_db {
                def.schema = logical_db.clone();
            }
        }
        for row in &mut rows {
            for value in row.iter_mut().flatten() {
                rename_value(value, &plan.rename);
            }
        }
        if !plan.add_tables.is_empty() {
            let like = like_pattern(original_sql);
            for table in &plan.add_tables {
                let present = rows
                    .iter()
                    .any(|r| r.first().and_then(|v| v.as_deref()) == Some(table.as_bytes()));
                if !present && like.as_deref().is_none_or(|p| like_matches(p, table)) {
                    let mut row: Row = vec![Some(table.clone().into_bytes())];
                    row.resize(defs.len(), Some(b"BASE TABLE".to_vec()));
                    rows.push(row);
                }
            }
            rows.sort_by(|a, b| a.first().cmp(&b.first()));
            rows.dedup_by(|a, b| a.first() == b.first());
        }
        Ok(Some((defs, rows)))
    }
}

/// Replaces a physical table name by its logical one: a whole value (SHOW TABLES, SHOW INDEX)
/// or a quoted name inside SHOW CREATE TABLE's text.
fn rename_value(value: &mut Vec<u8>, renames: &[(String, String)]) {
    for (physical, logical) in renames {
        if value.as_slice() == physical.as_bytes() {
            *value = logical.clone().into_bytes();
            return;
        }
        let quoted = format!("`{physical}`");
        if let Some(text) = std::str::from_utf8(value)
            .ok()
            .filter(|t| t.contains(&quoted))
        {
            *value = text.replace(&quoted, &format!("`{logical}`")).into_bytes();
        }
    }
}

/// The pattern of a trailing `LIKE '...'`, if any.
fn like_pattern(sql: &str) -> Option<String> {
    let mut lexer = Lexer::new(sql);
    let mut last: [Option<Token>; 2] = [None, None];
    while let Some(t) = lexer.next_token() {
        if t.kind != Tok::Semicolon {
            last = [last[1], Some(t)];
        }
    }
    let [Some(like), Some(pattern)] = last else {
        return None;
    };
    let word = sql.get(like.start..like.end)?;
    if like.kind != Tok::Word || !word.eq_ignore_ascii_case("LIKE") {
        return None;
    }
    match pattern.kind {
        Tok::Str(_) => string_value(sql.get(pattern.start..pattern.end)?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_whole_values_and_quoted_names() {
        let renames = vec![("payment_3".to_string(), "payment".to_string())];
        let mut v = b"payment_3".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"payment");
        let mut v = b"CREATE TABLE `payment_3` (\n  `id` int)".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"CREATE TABLE `payment` (\n  `id` int)");
        let mut v = b"payment_30".to_vec();
        rename_value(&mut v, &renames);
        assert_eq!(v, b"payment_30");
    }

    #[test]
    fn finds_like_patterns() {
        assert_eq!(like_pattern("SHOW TABLES LIKE 'p%'"), Some("p%".into()));
        assert_eq!(
            like_pattern("show full tables from bank like \"a_\";"),
            Some("a_".into())
        );
        assert_eq!(like_pattern("SHOW TABLES"), None);
        assert_eq!(
            like_pattern(r"SHOW TABLES LIKE 'o''k\'s\_%'"),
            Some(r"o'k's\_%".into())
        );
        // Only a trailing LIKE: a condition further on is not the pattern.
        assert_eq!(
            like_pattern("SHOW TABLES WHERE a LIKE 'x' AND b = 'y'"),
            None
        );
        assert_eq!(
            like_pattern("SHOW TABLES LIKE 'p%' -- pattern"),
            Some("p%".into())
        );
    }
}
