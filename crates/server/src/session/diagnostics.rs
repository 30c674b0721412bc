//! The previous statement's diagnostics, kept by the session.
//!
//! A session's backend connection goes back to the pool after each statement, so by the time
//! the client asks `SHOW WARNINGS`, `SELECT @@warning_count` or `SELECT ROW_COUNT()`, the
//! connection that ran the statement may serve someone else. So when a response carries
//! warnings or an error, the session reads `SHOW WARNINGS` on that connection before letting
//! it go, and answers those questions itself, as the server would have: errors the proxy
//! raises itself are listed too, and every other statement starts a fresh list.

use protocol::resultset::{write_text_result, ColumnDef};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::intercept::Diagnostics;

/// One row of `SHOW WARNINGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Diagnostic {
    /// `Note`, `Warning` or `Error`.
    pub level: String,
    pub code: u16,
    pub message: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A statement other than a question about diagnostics begins: the list starts over.
    pub(super) fn begin_statement(&mut self) {
        self.diagnostics.clear();
        self.row_count = -1;
    }

    /// Whether a held connection's last response left diagnostics to collect.
    pub(super) fn has_uncollected_diagnostics(&self) -> bool {
        self.held.iter().any(|h| h.diagnostics)
    }

    /// Reads `SHOW WARNINGS` on every held connection whose last response carried warnings
    /// or an error. A connection that fails here is dropped; its diagnostics are lost, the
    /// statement's own answer already went out.
    pub(super) async fn collect_diagnostics(&mut self) {
        let mut index = 0;
        while index < self.held.len() {
            if !self.held[index].diagnostics {
                index += 1;
                continue;
            }
            self.held[index].diagnostics = false;
            match self.held[index].conn.query("SHOW WARNINGS").await {
                Ok(result) => {
                    let rows = result.rows.into_iter().map(|row| {
                        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                        Diagnostic {
                            level: cell(0),
                            code: cell(1).parse().unwrap_or(0),
                            message: cell(2),
                        }
                    });
                    self.diagnostics.extend(rows);
                    index += 1;
                }
                Err(e) => {
                    tracing::debug!(conn = self.connection_id, error = %e, "SHOW WARNINGS failed");
                    if matches!(e, backend::BackendError::Server { .. }) {
                        index += 1;
                    } else {
                        self.held.swap_remove(index);
                    }
                }
            }
        }
    }

    /// Answers a question about the previous statement from what the session kept.
    pub(super) async fn answer_diagnostics(&mut self, question: &Diagnostics) -> Flow {
        let deprecate_eof = self.deprecate_eof();
        let status = self.client_status();
        let errors = |d: &&Diagnostic| d.level.eq_ignore_ascii_case("Error");
        match question {
            Diagnostics::List {
                errors_only,
                offset,
                limit,
            } => {
                let columns = [
                    ColumnDef::varchar("Level", 7),
                    ColumnDef::unsigned_bigint("Code"),
                    ColumnDef::varchar("Message", 512),
                ];
                let rows: Vec<[Option<Vec<u8>>; 3]> = self
                    .diagnostics
                    .iter()
                    .filter(|d| !errors_only || errors(d))
                    .skip(usize::try_from(*offset).unwrap_or(usize::MAX))
                    .take(limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX)))
                    .map(|d| {
                        [
                            Some(d.level.clone().into_bytes()),
                            Some(d.code.to_string().into_bytes()),
                            Some(d.message.clone().into_bytes()),
                        ]
                    })
                    .collect();
                write_text_result(&mut self.client, &columns, rows, deprecate_eof, status);
            }
            Diagnostics::Count {
                errors_only,
                column,
            } => {
                let count = self
                    .diagnostics
                    .iter()
                    .filter(|d| !errors_only || errors(d))
                    .count();
                let row = [Some(count.to_string().into_bytes())];
                let columns = [ColumnDef::unsigned_bigint(column)];
                write_text_result(&mut self.client, &columns, [row], deprecate_eof, status);
            }
            Diagnostics::RowCount(column) => {
                let row = [Some(self.row_count.to_string().into_bytes())];
                let columns = [ColumnDef::bigint(column)];
                write_text_result(&mut self.client, &columns, [row], deprecate_eof, status);
                // ROW_COUNT() is itself a SELECT.
                self.row_count = -1;
            }
        }
        self.flush().await
    }
}
