//! Column lists the router asks for ([`router::RouteError::ColumnsNeeded`]): an INSERT without
//! a column list is routed by the table's column order, and `SELECT *` over
//! `information_schema` is spelled out for the logical view. The session reads the list from
//! the data source the router names (`information_schema.COLUMNS`, in `ORDINAL_POSITION`
//! order, without invisible columns, as `INSERT … VALUES` counts them), gives it to the
//! router, which keeps it for the life of its rules (a reload starts afresh), and routes
//! again. DDL run through the proxy makes the router forget every list ([`Session`] calls
//! [`router::Router::forget_columns`] after it); a list gone stale by DDL run elsewhere shows
//! as a row of another width, which is read again once before the error is believed.

use router::{ColumnSource, RouteError, Router};
use tokio::io::{AsyncRead, AsyncWrite};

use executor::Flow;

use super::Session;
use crate::error::SessionError;
use crate::Snapshot;

/// Lists one statement may need (e.g. `*` over several tables of information_schema).
const MAX_LISTS: usize = 8;

/// `s` as an SQL string literal.
fn string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The query reading the column list of `from`.
fn columns_query(from: &ColumnSource) -> String {
    format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {} \
         AND TABLE_NAME = {} AND EXTRA NOT LIKE '%INVISIBLE%' ORDER BY ORDINAL_POSITION",
        string(&from.database),
        string(&from.table)
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Runs `route` on the snapshot's router, reading the column lists it asks for first.
    /// The outer error means the client already has its answer (reading a list failed).
    pub(super) async fn route_with_columns<T>(
        &mut self,
        snapshot: &Snapshot,
        route: impl Fn(&Router) -> Result<T, RouteError>,
    ) -> Result<Result<T, RouteError>, Flow> {
        let mut read: Vec<ColumnSource> = Vec::new();
        loop {
            let from = match route(&snapshot.router) {
                Err(RouteError::ColumnsNeeded { from }) => from,
                // A list learned before this statement may be stale: read it again, once.
                Err(RouteError::ColumnCount { from, .. }) if !read.contains(&from) => from,
                other => return Ok(other),
            };
            if read.len() >= MAX_LISTS || read.contains(&from) {
                return Ok(Err(RouteError::Internal(format!(
                    "the column list of {}.{} was read but not used",
                    from.database, from.table
                ))));
            }
            let columns = self.read_columns(&from).await?;
            snapshot.router.learn_columns(from.clone(), columns);
            read.push(from);
        }
    }

    /// The column list of `from`, read on a connection to its data source.
    async fn read_columns(&mut self, from: &ColumnSource) -> Result<Vec<String>, Flow> {
        let snapshot = self.ctx.snapshot.load_full();
        let conn = match self.exec.backend(&snapshot, &from.data_source).await {
            Ok(conn) => conn,
            Err(e) => return Err(self.error(e).await),
        };
        match conn.query(&columns_query(from)).await {
            Ok(result) => {
                let columns: Vec<String> = result
                    .rows
                    .into_iter()
                    .filter_map(|row| row.into_iter().next().flatten())
                    .collect();
                if columns.is_empty() {
                    let missing = SessionError::NoSuchTable {
                        database: from.database.clone(),
                        table: from.table.clone(),
                        data_source: from.data_source.clone(),
                    };
                    return Err(self.error(missing).await);
                }
                Ok(columns)
            }
            Err(e @ backend::BackendError::Server { .. }) => Err(self.error(e).await),
            Err(e) => Err(self.backend_lost(&from.data_source, e).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_names_in_the_query() {
        let from = ColumnSource {
            data_source: "ds_0".into(),
            database: "bank_0".into(),
            table: "it's".into(),
        };
        assert_eq!(
            columns_query(&from),
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'bank_0' \
             AND TABLE_NAME = 'it''s' AND EXTRA NOT LIKE '%INVISIBLE%' ORDER BY ORDINAL_POSITION"
        );
    }
}
