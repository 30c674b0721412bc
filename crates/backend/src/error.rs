//! Backend errors, each mapped to the MySQL error the client will see.
//!
//! Their texts name the data source, never the server's address or the backend account: they
//! reach clients. The address goes to the log with the data source (`Backend::mark_down` and
//! the pool's warnings), where a DBA can match the two.

use std::borrow::Cow;

use protocol::{ClientError, ProtocolError, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("data source '{source_name}' is unreachable: {reason}")]
    Unreachable { source_name: String, reason: String },
    #[error("data source '{source_name}' is down: it failed its last health check or connection attempt; statements to it fail at once until a check passes")]
    Down { source_name: String },
    #[error("data source '{source_name}' has more than one writable server that replicates from nothing (split brain): its writes stop until only one is")]
    SplitBrain { source_name: String },
    #[error("data source '{source_name}': its primary is not confirmed: the primaries recorded in the meta data source could not be read since dbmesh started, and the rule file's primary may be a server switched away from; statements to its primary fail until the records are read (tried after every health check)")]
    PrimaryUnconfirmed { source_name: String },
    #[error("data source '{source_name}': TLS failed: {reason}")]
    Tls { source_name: String, reason: String },
    #[error("data source '{source_name}' refused dbmesh's login: {error}")]
    AuthFailed {
        source_name: String,
        error: ServerError,
    },
    #[error("too many connections: the pool of data source '{source_name}' ({max} connections) stayed exhausted for {waited_ms} ms")]
    PoolExhausted {
        source_name: String,
        max: usize,
        waited_ms: u64,
    },
    #[error("lost connection to data source '{source_name}': {error}")]
    Lost {
        source_name: String,
        error: ProtocolError,
    },
    #[error("data source '{source_name}' answered: {error}")]
    Server {
        source_name: String,
        error: ServerError,
    },
}

/// What a client sees of a backend failure: the server's own error as it came, else the
/// failure named by its data source.
impl ClientError for BackendError {
    fn code(&self) -> u16 {
        match self {
            // ER_CON_COUNT_ERROR
            BackendError::PoolExhausted { .. } => 1040,
            BackendError::Server { error, .. } => error.code,
            // ER_UNKNOWN_ERROR
            _ => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            BackendError::PoolExhausted { .. } => "08004",
            BackendError::Server { error, .. } => error.sqlstate_str(),
            _ => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            BackendError::Server { error, .. } => error.message.clone(),
            // The reason can name the server (its certificate's names): it stays in the log.
            BackendError::Tls { source_name, .. } => format!(
                "dbmesh: data source '{source_name}': TLS to its server failed (dbmesh's log has the reason)"
            )
            .into(),
            _ => format!("dbmesh: {self}").into(),
        }
    }

    fn to_server_error(&self) -> ServerError {
        match self {
            BackendError::Server { error, .. } => error.clone(),
            _ => ServerError::new(self.code(), self.sqlstate(), self.client_message()),
        }
    }
}
