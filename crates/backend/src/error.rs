//! Backend errors, each mapped to the MySQL error the client will see.

use protocol::{ProtocolError, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("data source '{source_name}' ({address}) is unreachable: {reason}")]
    Unreachable {
        source_name: String,
        address: String,
        reason: String,
    },
    #[error("data source '{source_name}' ({address}) is down: it failed its last health check or connection attempt; statements to it fail at once until a check passes")]
    Down {
        source_name: String,
        address: String,
    },
    #[error("data source '{source_name}' ({address}): TLS failed: {reason}")]
    Tls {
        source_name: String,
        address: String,
        reason: String,
    },
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

impl BackendError {
    /// The error packet a client gets for this failure.
    pub fn to_server_error(&self) -> ServerError {
        match self {
            BackendError::PoolExhausted { .. } => {
                ServerError::new(1040, "08004", format!("dbmesh: {self}"))
            }
            BackendError::Server { error, .. } => error.clone(),
            _ => ServerError::internal(format!("dbmesh: {self}")),
        }
    }
}
