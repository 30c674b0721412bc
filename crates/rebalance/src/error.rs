//! The crate's one error type: why a move could not be planned, copied, caught up or
//! verified, with the MySQL code and SQLSTATE the CLI and the admin API show.

use std::borrow::Cow;

use backend::BackendError;
use binlog::BinlogError;
use meta::MetaError;
use protocol::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    /// The move asked for cannot be made (bad slices, a destination that is not a node of
    /// the table, slices already there, a table that is not `uid_slice`).
    #[error("cannot move: {0}")]
    Refused(String),
    /// The meta data source failed, or another process came first (a move on the same
    /// slices, the driver's lease).
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Following a source's binlog failed, or a source cannot be followed (its settings).
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    /// A source or the destination failed a statement or was lost.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The destination already has the table with another definition.
    #[error("the destination table {destination} exists with another definition than {source_table}: drop it or make it equal\n  source:      {source_ddl}\n  destination: {destination_ddl}")]
    SchemaDiffers {
        source_table: String,
        destination: String,
        source_ddl: String,
        destination_ddl: String,
    },
    /// A moving table cannot be copied by primary-key ranges.
    #[error("table {table} has no primary key: its rows cannot be copied in chunks nor followed (add a primary key)")]
    NoPrimaryKey { table: String },
    /// A source kept an XA transaction prepared past the bound: no safe snapshot position.
    #[error("data source '{source_name}' kept XA transactions prepared for {waited:?} (XA RECOVER not empty): no snapshot was taken; retry when they are resolved")]
    XaPrepared {
        source_name: String,
        waited: std::time::Duration,
    },
    /// The cutover gave up before switching the map and released the fence: the sources
    /// keep the slices, writes resume there, and the move can try again.
    #[error("the cutover was aborted at {0}; writes resume on the sources")]
    CutoverAborted(String),
    /// The map was switched but not every live proxy serves it yet: the fence stays until
    /// its lease lapses.
    #[error("the slice map was switched but the cutover could not finish: {0}")]
    CutoverStuck(String),
    /// The driver's lease of the move was lost to another process.
    #[error("{0}")]
    LeaseLost(String),
}

impl ClientError for RebalanceError {
    fn code(&self) -> u16 {
        match self {
            RebalanceError::Meta(e) => e.code(),
            RebalanceError::Binlog(e) => e.code(),
            RebalanceError::Backend(e) => e.code(),
            // ER_NOT_SUPPORTED_YET
            RebalanceError::NoPrimaryKey { .. } => 1235,
            // ER_WRONG_ARGUMENTS
            RebalanceError::Refused(_) => 1210,
            // ER_TABLE_EXISTS_ERROR
            RebalanceError::SchemaDiffers { .. } => 1050,
            // ER_UNKNOWN_ERROR
            RebalanceError::XaPrepared { .. }
            | RebalanceError::LeaseLost(_)
            | RebalanceError::CutoverAborted(_)
            | RebalanceError::CutoverStuck(_) => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            RebalanceError::Meta(e) => e.sqlstate(),
            RebalanceError::Binlog(e) => e.sqlstate(),
            RebalanceError::Backend(e) => e.sqlstate(),
            RebalanceError::NoPrimaryKey { .. } => "42000",
            RebalanceError::Refused(_) => "HY000",
            RebalanceError::SchemaDiffers { .. } => "42S01",
            RebalanceError::XaPrepared { .. }
            | RebalanceError::LeaseLost(_)
            | RebalanceError::CutoverAborted(_)
            | RebalanceError::CutoverStuck(_) => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            RebalanceError::Backend(e) => e.client_message(),
            _ => format!("dbmesh: {self}").into(),
        }
    }
}

impl RebalanceError {
    pub(crate) fn refused(reason: impl Into<String>) -> RebalanceError {
        RebalanceError::Refused(reason.into())
    }

    /// A meta error of a write guarded by the driver's lease: a conflict there means the
    /// lease was lost.
    pub(crate) fn lease(error: MetaError) -> RebalanceError {
        match error {
            MetaError::Conflict(reason) => RebalanceError::LeaseLost(reason),
            other => other.into(),
        }
    }
}
