//! [`XaError`]: why a distributed transaction did not commit, or how its commit ended in
//! doubt, each with the MySQL error a client gets.

use std::borrow::Cow;

use protocol::{is_deadlock, ClientError, ServerError};

use crate::failpoint::Failpoint;

/// Why a commit, rollback or recovery step failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum XaError {
    /// A participant failed `XA END` / `XA PREPARE`; every branch was rolled back.
    #[error("the transaction was rolled back on every data source: preparing it on data source '{data_source}' failed: {error}")]
    PrepareFailed {
        data_source: String,
        /// The participant's error (its own code when it was the server's).
        error: ServerError,
    },
    /// The decision could not be written as commit: this proxy's lease on its transactions
    /// expired, or recovery had already decided rollback for it. Every branch was rolled back.
    #[error("the transaction was rolled back on every data source: {reason}")]
    Aborted { reason: String },
    /// The decision log could not be reached before anything was written; every branch was
    /// rolled back.
    #[error("the transaction was rolled back on every data source: the decision log is unavailable: {reason}")]
    LogUnavailable { reason: String },
    /// The decision write was sent but its outcome could not be read back: the branches stay
    /// prepared and recovery finishes them by the logged decision.
    #[error("the outcome of the transaction is not known yet (decision log: {reason}); recovery will complete or roll it back on every data source")]
    OutcomeUnknown { reason: String },
    /// The meta data source failed outside a commit (registration, recovery).
    #[error("the meta data source '{source_name}' failed: {reason}")]
    Meta { source_name: String, reason: String },
    /// A participant failed outside the prepare phase (XA START, XA RECOVER, a rollback).
    #[error("data source '{data_source}': {reason}")]
    Participant { data_source: String, reason: String },
    /// The caller used the transaction out of order (a branch started twice, a connection
    /// for a data source that is not a participant).
    #[error("dbmesh XA misuse: {0}")]
    Usage(String),
    /// Another proxy registered under this proxy's name (a newer incarnation) while this
    /// one was alive: two live proxies share a name, so this one refuses distributed
    /// transactions until it is restarted under a name of its own.
    #[error("distributed transactions are refused: another proxy registered under this proxy's name '{name}' (incarnation {incarnation}) on the meta data source while this one ran; two live proxies share proxy.number: give each its own and restart this one")]
    LeaseTaken { name: String, incarnation: u32 },
    /// A failpoint fired (builds with the `failpoints` feature only).
    #[error("failpoint {0:?} fired")]
    Failpoint(Failpoint),
}

/// What the client of a transaction that did not commit sees.
impl ClientError for XaError {
    fn code(&self) -> u16 {
        match self {
            // A branch rolled back by a deadlock: the client gets 1213 so it retries as after
            // any deadlock.
            XaError::PrepareFailed { error, .. } if is_deadlock(error.code) => 1213,
            // ER_XA_RBROLLBACK: "Transaction branch was rolled back".
            XaError::PrepareFailed { .. }
            | XaError::Aborted { .. }
            | XaError::LogUnavailable { .. } => 1402,
            // ER_ERROR_DURING_COMMIT.
            XaError::OutcomeUnknown { .. } => 1180,
            // ER_XAER_RMFAIL.
            XaError::Usage(_) | XaError::LeaseTaken { .. } => 1399,
            XaError::Meta { .. } | XaError::Participant { .. } | XaError::Failpoint(_) => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self.code() {
            1213 => "40001",
            1402 => "XA100",
            1399 => "XAE07",
            _ => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        format!("dbmesh: {self}").into()
    }
}

impl XaError {
    /// Whether every branch is known to be rolled back.
    pub fn rolled_back(&self) -> bool {
        matches!(
            self,
            XaError::PrepareFailed { .. }
                | XaError::Aborted { .. }
                | XaError::LogUnavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_xa_codes_and_deadlocks_stay_retryable() {
        let deadlock = XaError::PrepareFailed {
            data_source: "ds_1".into(),
            error: ServerError::new(1614, "XA102", "XA_RBDEADLOCK"),
        };
        assert_eq!((deadlock.code(), deadlock.sqlstate()), (1213, "40001"));
        let other = XaError::PrepareFailed {
            data_source: "ds_1".into(),
            error: ServerError::new(1105, "HY000", "boom"),
        };
        let packet = other.to_server_error();
        assert_eq!((packet.code, &packet.sqlstate), (1402, b"XA100"));
        assert!(packet.message.contains("ds_1"));
        let unknown = XaError::OutcomeUnknown {
            reason: "timeout".into(),
        };
        assert_eq!((unknown.code(), unknown.sqlstate()), (1180, "HY000"));
        assert!(!unknown.rolled_back());
        assert!(other.rolled_back());
    }
}
