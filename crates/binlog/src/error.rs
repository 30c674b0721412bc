//! The one error type of the crate: what went wrong following a source or applying its
//! changes, with the MySQL code and SQLSTATE a client (the admin API, the CLI) is shown.

use std::borrow::Cow;

use backend::BackendError;
use protocol::{ClientError, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum BinlogError {
    /// The source server is not set up to be followed (log_bin, binlog_format, ...).
    #[error("data source '{source_name}' cannot be followed: {setting} is {value}, it must be {wanted} ({fix})")]
    SourceSetting {
        source_name: String,
        setting: &'static str,
        value: String,
        wanted: &'static str,
        fix: &'static str,
    },
    /// A connection failed or a server answered an error.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The source refused the dump request or broke off the stream with an error (e.g. the
    /// position's binlog files were purged: 1236).
    #[error("data source '{source_name}' refused the binlog stream: {error}")]
    Dump {
        source_name: String,
        error: ServerError,
    },
    /// Bytes that do not decode as the binlog format says.
    #[error("binlog of data source '{source_name}': malformed {what}")]
    Malformed { source_name: String, what: String },
    /// A binlog feature this follower does not decode; the fix is named.
    #[error("binlog of data source '{source_name}': {what} is not supported: {fix}")]
    Unsupported {
        source_name: String,
        what: String,
        fix: String,
    },
    /// A table the follower cannot apply changes of idempotently.
    #[error("table `{database}`.`{table}` has no primary key: its rows cannot be followed (add a primary key)")]
    NoPrimaryKey { database: String, table: String },
    /// The table's definition on the source no longer matches the rows the binlog holds
    /// (it was altered since the event was written).
    #[error("table `{database}`.`{table}`: the binlog has {logged} columns, the source's definition {defined}: it was altered while being followed")]
    SchemaChanged {
        database: String,
        table: String,
        logged: usize,
        defined: usize,
    },
    /// One source transaction holds more than the follower may keep in memory.
    #[error("a transaction of data source '{source_name}' ({gtid}) holds more than {limit} bytes of row images, the follower's limit")]
    TransactionTooLarge {
        source_name: String,
        gtid: String,
        limit: usize,
    },
    /// A follower did not reach a position in time.
    #[error("the follower did not apply the source through {target} within {waited:?} (it is at {processed})")]
    Timeout {
        waited: std::time::Duration,
        target: String,
        processed: String,
    },
    /// A text that is not a MariaDB GTID list.
    #[error("'{0}' is not a MariaDB GTID list (domain-server-sequence, comma-separated)")]
    BadPosition(String),
}

impl BinlogError {
    /// Whether trying again with new connections may succeed: the server went away or
    /// restarted, a lock wait or deadlock rolled the destination's transaction back.
    pub fn is_transient(&self) -> bool {
        match self {
            BinlogError::Backend(BackendError::Server { error, .. })
            | BinlogError::Dump { error, .. } => matches!(
                error.code,
                // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, ER_SERVER_SHUTDOWN,
                // ER_CONNECTION_KILLED, ER_QUERY_INTERRUPTED, ER_CON_COUNT_ERROR
                1205 | 1213 | 1053 | 1927 | 1317 | 1040
            ),
            BinlogError::Backend(
                BackendError::Unreachable { .. }
                | BackendError::Lost { .. }
                | BackendError::Down { .. }
                | BackendError::PoolExhausted { .. },
            ) => true,
            _ => false,
        }
    }
}

impl ClientError for BinlogError {
    fn code(&self) -> u16 {
        match self {
            BinlogError::Backend(e) => e.code(),
            BinlogError::Dump { error, .. } => error.code,
            // ER_NOT_SUPPORTED_YET
            BinlogError::Unsupported { .. } | BinlogError::NoPrimaryKey { .. } => 1235,
            // ER_WRONG_ARGUMENTS
            BinlogError::BadPosition(_) => 1210,
            // ER_UNKNOWN_ERROR
            _ => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            BinlogError::Backend(e) => e.sqlstate(),
            BinlogError::Dump { error, .. } => error.sqlstate_str(),
            BinlogError::Unsupported { .. } | BinlogError::NoPrimaryKey { .. } => "42000",
            _ => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            BinlogError::Backend(e) => e.client_message(),
            _ => format!("dbmesh: {self}").into(),
        }
    }
}
