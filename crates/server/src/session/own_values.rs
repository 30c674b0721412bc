//! The session's own `LAST_INSERT_ID()` (`@@identity`, `@@last_insert_id`), `ROW_COUNT()`
//! and `FOUND_ROWS()` wherever a statement uses them: the pooled connection that runs it may
//! have served another client last, so the session puts the values it kept in their place
//! (see `sql::replace_session_values`), leaves them to a connection it kept for the purpose
//! (a pin), or refuses the statement.

use bytes::{BufMut, BytesMut};
use protocol::constants::com;
use protocol::ServerError;
use sql::{Replacement, SessionValue, Unreplaceable};
use tokio::io::{AsyncRead, AsyncWrite};

use super::pin::PinReason;
use super::Session;

fn name(value: SessionValue) -> &'static str {
    match value {
        SessionValue::LastInsertId => "LAST_INSERT_ID()",
        SessionValue::RowCount => "ROW_COUNT()",
        SessionValue::FoundRows => "FOUND_ROWS()",
    }
}

/// Why a prepared statement cannot use them: each execution runs on whichever connection.
pub(super) fn refused_in_prepared(sql: &str) -> Option<ServerError> {
    match sql::replace_session_values(sql, Err) {
        Err(Unreplaceable::Refused(value) | Unreplaceable::LaterStatement(value)) => {
            Some(ServerError::not_supported(format!(
                "{} in a prepared statement (its executions run on shared connections; \
                 use the text protocol, or the OK packet's last insert id)",
                name(value)
            )))
        }
        Ok(_) => None,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// After `LAST_INSERT_ID(expr)` (which pins the connection) on a session that only used
    /// the default data source, the backend holds the session's value.
    pub(super) fn backend_holds_last_insert_id(&self) -> bool {
        let default = self.default_data_source();
        !self.answers_last_insert_id
            && self.pins & PinReason::LastInsertId.bit() != 0
            && self.held.iter().all(|h| h.data_source == default)
    }

    /// The COM_QUERY `packet` with the session's own values in place (`None`: unchanged).
    /// Called before the statement begins, while they are still the previous statement's.
    pub(super) fn with_own_values(&self, packet: &[u8]) -> Result<Option<BytesMut>, ServerError> {
        let text = String::from_utf8_lossy(&packet[1..]);
        let holds_insert_id = self.backend_holds_last_insert_id();
        let found_rows_pinned = self.pins & PinReason::FoundRows.bit() != 0;
        let replaced = sql::replace_session_values(&text, |value| match value {
            SessionValue::LastInsertId if holds_insert_id => Ok(Replacement::Keep),
            SessionValue::LastInsertId => Ok(Replacement::With(format!(
                "CAST({} AS UNSIGNED)",
                self.last_insert_id
            ))),
            SessionValue::RowCount => Ok(Replacement::With(format!(
                "CAST({} AS SIGNED)",
                self.row_count
            ))),
            SessionValue::FoundRows if found_rows_pinned => Ok(Replacement::Keep),
            // The rows of the session's previous SELECT are not counted.
            SessionValue::FoundRows => Err(()),
        });
        match replaced {
            Ok(None) => Ok(None),
            Ok(Some(text)) => {
                let mut p = BytesMut::with_capacity(1 + text.len());
                p.put_u8(com::QUERY);
                p.put_slice(text.as_bytes());
                Ok(Some(p))
            }
            Err(Unreplaceable::Refused(())) => Err(ServerError::not_supported(
                "FOUND_ROWS() without SQL_CALC_FOUND_ROWS in the session's previous query \
                 (the connection that ran the previous SELECT serves other sessions)",
            )),
            Err(Unreplaceable::LaterStatement(value)) => Err(ServerError::not_supported(format!(
                "{} after the first statement of a multi-statement text",
                name(value)
            ))),
        }
    }
}
