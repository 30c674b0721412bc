//! [`ExecError`]: the errors the executor composes itself while running a plan (the
//! backends' own errors are relayed as they came), with their MySQL code and SQLSTATE
//! through [`protocol::ClientError`].

use std::borrow::Cow;

use protocol::ClientError;

/// An error the executor answers a client itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The statement ran past its time limit (MariaDB's answer).
    #[error("Query execution was interrupted (max_statement_time exceeded)")]
    TimeLimit,
    /// The statement was killed (`KILL QUERY`) before it reached a backend.
    #[error("Query execution was interrupted")]
    Interrupted,
    /// `SET dbmesh_transaction_mode` inside a transaction.
    #[error("Transaction characteristics can't be changed while a transaction is in progress")]
    TransactionInProgress,
    /// A row-lock wait of a transaction on several data sources passed the distributed
    /// lock-wait bound: MariaDB's deadlock error, since the whole transaction was rolled back
    /// and the client should retry it.
    #[error("Deadlock found when trying to get lock; try restarting transaction (dbmesh: a row-lock wait of a transaction on several data sources passed the distributed lock-wait bound, which may be a deadlock across servers; the whole transaction was rolled back)")]
    DistributedLockWait,
    /// A distributed transaction cannot start.
    #[error("dbmesh: distributed transactions are unavailable: {0}")]
    XaUnavailable(String),
    /// A participant's connection was lost before the commit, and its server rolled the
    /// branch back: so was every other branch.
    #[error("dbmesh: the transaction was rolled back on every data source: a participant's connection was lost")]
    ParticipantLost,
    /// An UPDATE would move rows to another shard outside `xa` mode.
    #[error("Updating the sharding column {table}.{column} to a value on another shard moves rows there, which needs transaction_mode 'xa' (this session's is 'local'); delete and re-insert the rows instead")]
    RowMoveNeedsXa { table: String, column: String },
    /// The rows one shard returned for a move passed the memory limit.
    #[error("the rows this UPDATE moves from one shard need more than {0} bytes of memory (proxy.merge_memory_limit)")]
    MoveMemory(usize),
    /// The delete of a move removed other rows than the read locked.
    #[error("dbmesh: moving rows of {table}: the delete removed {deleted} rows where the locking read found {read} (a condition that is not deterministic); the statement was undone")]
    MoveMismatch {
        table: String,
        read: u64,
        deleted: u64,
    },
    /// A moved column came in a character set the proxy cannot name.
    #[error("This version of dbmesh doesn't yet support 'moving rows whose column {column} is sent in collation {collation}'")]
    MoveCharset { column: String, collation: u16 },
    /// A connection a move uses is no longer held.
    #[error("dbmesh: a connection of the row move is gone")]
    MoveConnectionGone,
    /// The copies of a broadcast table changed different numbers of rows.
    #[error("dbmesh: the copies of broadcast table {table} diverge (rows changed per data source: {changed}); {rolled_back}, repair the copies")]
    BroadcastDivergence {
        table: String,
        changed: String,
        rolled_back: &'static str,
    },
}

impl ClientError for ExecError {
    fn code(&self) -> u16 {
        match self {
            ExecError::Interrupted => 1317,                // ER_QUERY_INTERRUPTED
            ExecError::TimeLimit => 1969,                  // ER_STATEMENT_TIMEOUT
            ExecError::DistributedLockWait => 1213,        // ER_LOCK_DEADLOCK
            ExecError::TransactionInProgress => 1568,      // ER_CANT_CHANGE_TX_CHARACTERISTICS
            ExecError::XaUnavailable(_) => 1399,           // ER_XAER_RMFAIL
            ExecError::ParticipantLost => 1402,            // ER_XA_RBROLLBACK
            ExecError::BroadcastDivergence { .. } => 1105, // ER_UNKNOWN_ERROR
            ExecError::RowMoveNeedsXa { .. } | ExecError::MoveCharset { .. } => 1235, // ER_NOT_SUPPORTED_YET
            ExecError::MoveMemory(_) => 1038, // ER_OUT_OF_SORTMEMORY
            ExecError::MoveMismatch { .. } | ExecError::MoveConnectionGone => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            ExecError::TimeLimit | ExecError::Interrupted => "70100",
            ExecError::DistributedLockWait => "40001",
            ExecError::TransactionInProgress => "25001",
            ExecError::XaUnavailable(_) => "XAE07",
            ExecError::ParticipantLost => "XA100",
            ExecError::BroadcastDivergence { .. }
            | ExecError::MoveMismatch { .. }
            | ExecError::MoveConnectionGone => "HY000",
            ExecError::RowMoveNeedsXa { .. } | ExecError::MoveCharset { .. } => "42000",
            ExecError::MoveMemory(_) => "HY001",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        self.to_string().into()
    }
}
