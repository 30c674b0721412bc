//! The previous statement's diagnostics, kept by the session.
//!
//! A session's backend connection goes back to the pool after each statement, so by the time
//! the client asks `SHOW WARNINGS`, `SELECT @@warning_count` or `SELECT ROW_COUNT()`, the
//! connection that ran the statement may serve someone else. So when a response carries
//! warnings or an error, the executor reads `SHOW WARNINGS` on that connection before letting
//! it go ([`executor::Executor::collect_diagnostics`]), and the session answers those
//! questions itself, as the server would have: errors the proxy raises itself are listed too,
//! and every other statement starts a fresh list.

use executor::{Diagnostic, Flow};
use protocol::resultset::{write_text_result, ColumnDef};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::intercept::Diagnostics;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A statement other than a question about diagnostics begins: the list starts over.
    pub(super) fn begin_statement(&mut self) {
        self.client.diagnostics.clear();
        self.exec.reported.row_count = -1;
    }

    /// Answers a question about the previous statement from what the session kept.
    pub(super) async fn answer_diagnostics(&mut self, question: &Diagnostics) -> Flow {
        let deprecate_eof = self.deprecate_eof();
        let status = self.exec.client_status();
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
                    .client
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
                write_text_result(
                    &mut self.client.packets,
                    &columns,
                    rows,
                    deprecate_eof,
                    0,
                    status,
                );
            }
            Diagnostics::Count {
                errors_only,
                column,
            } => {
                let count = self
                    .client
                    .diagnostics
                    .iter()
                    .filter(|d| !errors_only || errors(d))
                    .count();
                let row = [Some(count.to_string().into_bytes())];
                let columns = [ColumnDef::unsigned_bigint(column)];
                write_text_result(
                    &mut self.client.packets,
                    &columns,
                    [row],
                    deprecate_eof,
                    0,
                    status,
                );
            }
            Diagnostics::RowCount(column) => {
                let row = [Some(self.exec.reported.row_count.to_string().into_bytes())];
                let columns = [ColumnDef::bigint(column)];
                write_text_result(
                    &mut self.client.packets,
                    &columns,
                    [row],
                    deprecate_eof,
                    0,
                    status,
                );
                // ROW_COUNT() is itself a SELECT.
                self.exec.reported.row_count = -1;
            }
        }
        self.flush().await
    }
}
