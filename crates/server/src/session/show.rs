//! SHOW / DESCRIBE through the logical view: the statement runs on one backend, and its small
//! result is rewritten so clients see logical names (`payment`, not `payment_3`; `Tables_in_bank`,
//! not `Tables_in_bank_0`), with the logical tables listed by SHOW TABLES even where the default
//! data source holds none of their rows.

use protocol::buf::Reader;
use protocol::packets::{is_err, is_terminator, OkPacket};
use protocol::response::{read_result_header, ResultHeader};
use protocol::resultset::{write_text_result, ColumnDef};
use protocol::ServerError;
use router::Plan;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::intercept::like_matches;

/// SHOW output is small; past this many rows it is refused rather than buffered.
const MAX_SHOW_ROWS: usize = 100_000;

type Row = Vec<Option<Vec<u8>>>;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn run_show(&mut self, plan: &Plan, original_sql: &str) -> Flow {
        let target = &plan.targets[0];
        let index = match self.conn_for(&target.data_source).await {
            Ok(i) => i,
            Err(e) => return self.error(e.to_server_error()).await,
        };
        let physical_db = self.held[index]
            .conn
            .state()
            .database
            .clone()
            .unwrap_or_default();
        let logical_db = self.state.database.clone().unwrap_or_default();
        let conn = &mut self.held[index].conn;
        let result = async {
            conn.send_command_with(|b| {
                b.extend_from_slice(&[protocol::constants::com::QUERY]);
                b.extend_from_slice(target.sql.as_bytes());
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
            Ok(None) => return self.ok().await,
            Err(e @ backend::BackendError::Server { .. }) => {
                return self.error(e.to_server_error()).await
            }
            Err(e) => return self.backend_lost(index, e).await,
        };
        let mut defs: Vec<ColumnDef> = match columns.iter().map(|c| ColumnDef::decode(c)).collect()
        {
            Ok(d) => d,
            Err(e) => {
                return self
                    .backend_lost(
                        index,
                        backend::BackendError::Lost {
                            source_name: target.data_source.clone(),
                            error: e,
                        },
                    )
                    .await
            }
        };
        for def in &mut defs {
            if let Some(db) = def.name.strip_prefix("Tables_in_") {
                if db == physical_db {
                    def.name = format!("Tables_in_{logical_db}");
                    def.org_name = def.name.clone();
                }
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
        let deprecate_eof = self.deprecate_eof();
        let status = self.client_status();
        write_text_result(&mut self.client, &defs, rows, deprecate_eof, status);
        self.flush().await
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
    let upper = sql.to_ascii_uppercase();
    let at = upper.rfind(" LIKE ")?;
    let rest = sql[at + 6..].trim().trim_end_matches(';').trim();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    rest.strip_suffix(quote)?;
    Some(sql::unquote(rest).into_owned())
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
    }
}
