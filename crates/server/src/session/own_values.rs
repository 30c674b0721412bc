//! The session's own `LAST_INSERT_ID()` (`@@identity`, `@@last_insert_id`), `ROW_COUNT()`
//! and `FOUND_ROWS()` wherever a statement uses them: the pooled connection that runs it may
//! have served another client last, so the session puts the values it kept in their place
//! (see `sql::replace_session_values`), leaves them to a connection it kept for the purpose
//! (a pin), or refuses the statement.

use bytes::{BufMut, BytesMut};
use protocol::constants::com;
use protocol::text;
use protocol::ServerError;
use sql::{Replacement, SessionValue, Unreplaceable};
use tokio::io::{AsyncRead, AsyncWrite};

use executor::PinReason;

use super::command::processes::string_literal;
use super::Session;

/// `value` as an expression of the type MariaDB gives the function it stands for: the
/// digits of a zero-padded literal set the column's display length (BIGINT(21) for 21 digits,
/// INT(10) for 10), so drivers see the metadata the function itself would have.
fn typed_integer(value: i128, digits: usize, unsigned: bool) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let cast = if unsigned { "UNSIGNED" } else { "SIGNED" };
    format!("CAST({sign}{:0digits$} AS {cast})", value.unsigned_abs())
}

fn name(value: SessionValue) -> &'static str {
    match value {
        SessionValue::LastInsertId => "LAST_INSERT_ID()",
        SessionValue::RowCount => "ROW_COUNT()",
        SessionValue::FoundRows => "FOUND_ROWS()",
        SessionValue::ConnectionId => "CONNECTION_ID()",
        SessionValue::User => "USER()",
        SessionValue::CurrentUser => "CURRENT_USER()",
        SessionValue::Port => "@@port",
        SessionValue::MaxStatementTime => "@@max_statement_time",
    }
}

/// Why a prepared statement cannot use them: each execution runs on whichever connection.
/// `@@max_statement_time` is left to the backends, which replay what the session SET,
/// unless the session has a default limit (`has_default_limit`) that no backend knows and
/// that a SET may later replace or bring back.
pub(super) fn refused_in_prepared(sql: &str, has_default_limit: bool) -> Option<ServerError> {
    let refuse = |value| match value {
        SessionValue::MaxStatementTime if !has_default_limit => Ok(Replacement::Keep),
        other => Err(other),
    };
    match sql::replace_session_values(sql, refuse) {
        Err(Unreplaceable::Refused(value) | Unreplaceable::LaterStatement(value)) => {
            Some(ServerError::not_supported(format!(
                "{} in a prepared statement (its executions run on shared connections; \
                 use the text protocol{})",
                name(value),
                if value == SessionValue::LastInsertId {
                    ", or the OK packet's last insert id"
                } else {
                    ""
                }
            )))
        }
        Ok(_) => None,
    }
}

/// A COM_QUERY or COM_STMT_PREPARE packet holding `text` in the client's bytes.
fn packet_with(command: u8, text: &str) -> BytesMut {
    let mut p = BytesMut::with_capacity(1 + text.len());
    p.put_u8(command);
    p.put_slice(&text::encode(text));
    p
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The proxy's answer for a value that names the session or the server it sees, the
    /// same for every statement of the session: its id, the client's login, the proxy's
    /// port. `None` for the values a statement changes.
    fn identity(&self, value: SessionValue) -> Option<String> {
        match value {
            SessionValue::ConnectionId => Some(typed_integer(self.connection_id.into(), 10, true)),
            SessionValue::User => Some(string_literal(&format!("{}@{}", self.user, self.host))),
            SessionValue::CurrentUser => Some(string_literal(&format!("{}@%", self.user))),
            SessionValue::Port => Some(self.entry.port.to_string()),
            SessionValue::LastInsertId
            | SessionValue::RowCount
            | SessionValue::FoundRows
            | SessionValue::MaxStatementTime => None,
        }
    }

    /// The COM_STMT_PREPARE `packet` with the session's identity values in place (`None`:
    /// unchanged); they hold for every execution, unlike the values a statement changes,
    /// which stay for [`refused_in_prepared`].
    pub(super) fn prepare_with_identity(&self, packet: &[u8]) -> Option<BytesMut> {
        let text = text::decode(&packet[1..], self.text_charset);
        let replaced = sql::replace_session_values::<()>(&text, |value| {
            Ok(self
                .identity(value)
                .map_or(Replacement::Keep, Replacement::With))
        });
        match replaced {
            Ok(Some(text)) => Some(packet_with(com::STMT_PREPARE, &text)),
            _ => None,
        }
    }

    /// `@@max_statement_time` when the session's limit is the user's or the proxy's default,
    /// which no backend connection was told of; a limit the session SET, its connections
    /// replay and report themselves.
    fn default_time_limit_value(&self) -> Replacement {
        match self.max_statement_time {
            Some(limit) if self.time_limit_is_default => Replacement::With(format!(
                // The type MariaDB gives the variable: DOUBLE, 6 decimals.
                "CAST({} AS DOUBLE(21,6))",
                limit.as_secs_f64()
            )),
            _ => Replacement::Keep,
        }
    }

    /// After `LAST_INSERT_ID(expr)` (which pins the connection) on a session that only used
    /// the default data source, the backend holds the session's value.
    pub(super) fn backend_holds_last_insert_id(&self) -> bool {
        let default = self.default_data_source();
        !self.exec.reported.answers_last_insert_id
            && self.exec.pins() & PinReason::LastInsertId.bit() != 0
            && self.exec.holds_only(&default)
    }

    /// The COM_QUERY `packet` with the session's own values in place (`None`: unchanged).
    /// Called before the statement begins, while they are still the previous statement's.
    pub(super) fn with_own_values(&self, packet: &[u8]) -> Result<Option<BytesMut>, ServerError> {
        let text = text::decode(&packet[1..], self.text_charset);
        let holds_insert_id = self.backend_holds_last_insert_id();
        let replaced =
            sql::replace_session_values::<std::convert::Infallible>(&text, |value| match value {
                SessionValue::ConnectionId
                | SessionValue::User
                | SessionValue::CurrentUser
                | SessionValue::Port => Ok(self
                    .identity(value)
                    .map_or(Replacement::Keep, Replacement::With)),
                SessionValue::LastInsertId if holds_insert_id => Ok(Replacement::Keep),
                SessionValue::LastInsertId => Ok(Replacement::With(typed_integer(
                    self.exec.reported.last_insert_id.into(),
                    21,
                    true,
                ))),
                SessionValue::RowCount => Ok(Replacement::With(typed_integer(
                    self.exec.reported.row_count.into(),
                    21,
                    false,
                ))),
                SessionValue::FoundRows => Ok(Replacement::With(typed_integer(
                    self.exec.reported.found_rows.into(),
                    21,
                    false,
                ))),
                SessionValue::MaxStatementTime => Ok(self.default_time_limit_value()),
            });
        match replaced {
            Ok(None) => Ok(None),
            Ok(Some(text)) => Ok(Some(packet_with(com::QUERY, &text))),
            Err(Unreplaceable::Refused(never)) => match never {},
            Err(Unreplaceable::LaterStatement(value)) => Err(ServerError::not_supported(format!(
                "{} after the first statement of a multi-statement text",
                name(value)
            ))),
        }
    }
}
