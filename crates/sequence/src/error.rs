//! [`SequenceError`], what a client sees when it cannot get an id, and
//! [`StoreError`], a failed call to the meta store.
//!
//! Codes follow MariaDB's own sequences where one exists (4091 unknown sequence,
//! 4084 run out); everything about the meta data source, the clock or worker ids
//! is 1105 with a message that says which.

use std::borrow::Cow;
use std::fmt;

use protocol::ClientError;

/// Why a sequence could not hand out ids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    /// No sequence of that name (MariaDB's ER_UNKNOWN_SEQUENCES).
    #[error("Unknown SEQUENCE: '{name}'")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// A segment sequence passed its `max` (MariaDB's ER_SEQUENCE_RUN_OUT).
    #[error("Sequence '{name}' has run out (its max is {max})")]
    RunOut {
        /// The sequence.
        name: String,
        /// Its configured largest id.
        max: u64,
    },
    /// The meta data source did not answer after the configured retries, and no reserved
    /// ids are left.
    #[error("sequence '{name}': meta data source '{source_name}' is unavailable after {attempts} attempt(s): {reason}")]
    MetaUnavailable {
        /// The sequence.
        name: String,
        /// The meta data source.
        source_name: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The clock stepped backwards by more than the sequence waits out.
    #[error("snowflake sequence '{name}': the clock moved backwards by {by_ms} ms (more than the {tolerance_ms} ms it waits out); no ids until it catches up")]
    ClockMovedBackwards {
        /// The sequence.
        name: String,
        /// How far behind the last issued timestamp the clock is.
        by_ms: u64,
        /// The configured `max_clock_backward_ms`.
        tolerance_ms: u64,
    },
    /// The clock is before the epoch, 2^41 ms or more after it, or does not advance.
    #[error("snowflake sequence '{name}': {reason}")]
    ClockUnusable {
        /// The sequence.
        name: String,
        /// What is wrong with the clock.
        reason: String,
    },
    /// A snowflake sequence without a valid worker-id lease.
    #[error("snowflake sequence '{name}' has no worker id: {reason}")]
    NoWorkerId {
        /// The sequence.
        name: String,
        /// Why (no lease yet, lease lost or not renewed in time).
        reason: String,
    },
    /// An operation this kind of sequence does not offer.
    #[error("sequence '{name}': {what} is not supported by {kind} sequences")]
    NotSupported {
        /// The sequence.
        name: String,
        /// The operation.
        what: &'static str,
        /// `snowflake` or `segment`.
        kind: &'static str,
    },
    /// Asked for zero ids, or more than one call hands out.
    #[error("sequence '{name}': cannot hand out {count} ids in one call (1 to {limit})")]
    BadCount {
        /// The sequence.
        name: String,
        /// The count asked for.
        count: u64,
        /// The most one call hands out.
        limit: u64,
    },
    /// The sequences cannot be built as configured.
    #[error("sequences: {0}")]
    Config(String),
}

/// What a client that cannot get an id sees.
impl ClientError for SequenceError {
    fn code(&self) -> u16 {
        match self {
            SequenceError::Unknown { .. } => 4091,
            SequenceError::RunOut { .. } => 4084,
            SequenceError::NotSupported { .. } => 1235,
            _ => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            SequenceError::Unknown { .. } => "42S02",
            SequenceError::NotSupported { .. } => "42000",
            _ => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        self.to_string().into()
    }
}

/// A failed call to a [`crate::MetaStore`]: the data source, what went wrong, and whether a
/// retry may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    /// The meta data source.
    pub source_name: String,
    /// What went wrong (connection refused, timeout, the server's error, …).
    pub message: String,
    pub failure: StoreFailure,
}

/// What kind of failure a [`StoreError`] is, which decides how the call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// No connection could be opened (refused, timed out, login refused): a retry within
    /// the next moments fails the same way, so the caller fails now (a dead primary's
    /// writes fail fast rather than after the backoffs).
    Unreachable,
    /// The open connection broke (its server died or closed it): a new connection may work
    /// at once, so the call is retried without a pause.
    ConnectionLost,
    /// Anything else (the server's error, no answer in time): retried after a pause.
    Other,
}

impl StoreError {
    /// An error of data source `source_name`, of kind [`StoreFailure::Other`].
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source_name.into(),
            message: message.into(),
            failure: StoreFailure::Other,
        }
    }

    /// The same error, of kind `failure`.
    pub fn with_failure(self, failure: StoreFailure) -> Self {
        Self { failure, ..self }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "meta data source '{}': {}",
            self.source_name, self.message
        )
    }
}

impl std::error::Error for StoreError {}
