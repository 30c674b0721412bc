//! [`SessionError`]: the errors the frontend answers itself (login, commands, the statements
//! it answers without a backend), each with its MySQL code and SQLSTATE through the one
//! contract every crate's error meets, [`protocol::ClientError`].

use std::borrow::Cow;

use protocol::ClientError;

/// An error the frontend answers a client itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionError {
    /// Every session slot is taken (`proxy.max_connections`).
    #[error("Too many connections")]
    TooManyConnections,
    /// The client did not ask for TLS, and the rules require it.
    #[error(
        "Connections using insecure transport are prohibited while --require_secure_transport=ON."
    )]
    InsecureTransport,
    /// A login or COM_CHANGE_USER packet that cannot be read.
    #[error("Bad handshake: {0}")]
    BadHandshake(String),
    #[error("Unknown database '{0}'")]
    UnknownDatabase(String),
    #[error("Access denied for user '{user}'@'{host}' (using password: {})", if *.with_password { "YES" } else { "NO" })]
    AccessDenied {
        user: String,
        host: String,
        with_password: bool,
    },
    /// The session stayed idle past `proxy.idle_timeout_secs`.
    #[error("The client was disconnected by the server because of inactivity.")]
    Inactive,
    #[error("Empty command packet")]
    EmptyCommand,
    /// Sent before a killed session's connection closes.
    #[error("Connection was killed")]
    ConnectionKilled,
    #[error("Unknown thread id: {0}")]
    UnknownThread(u64),
    #[error("You are not owner of thread {0}")]
    NotOwner(u64),
    /// `KILL USER` of another user without the process privilege.
    #[error(
        "Access denied; you need (at least one of) the PROCESS privilege(s) for this operation"
    )]
    ProcessPrivilegeNeeded,
    /// A statement the prepared-statement protocol does not take (as MariaDB answers).
    #[error("This command is not supported in the prepared statement protocol yet")]
    NotPreparable,
    #[error("Unknown prepared statement handler ({id}) given to {command}")]
    UnknownStatement { id: u32, command: &'static str },
    /// `proxy.max_prepared_statements` reached.
    #[error("Can't create more than max_prepared_stmt_count statements (current value: {0})")]
    TooManyPrepared(usize),
    /// A COM_STMT_EXECUTE that cannot be read, or whose long data passed `max_allowed_packet`.
    #[error("Incorrect arguments to mysqld_stmt_execute: {0}")]
    BadExecute(String),
    #[error("Variable 'dbmesh_transaction_mode' can't be set to the value of '{0}' (use 'xa' or 'local')")]
    BadTransactionMode(String),
    #[error("dbmesh: transaction mode 'xa' is unavailable: the XA coordinator is not running (no proxy.meta_data_source, or it was unreachable at start)")]
    XaUnavailable,
    /// `SET autocommit` would commit a distributed transaction one branch at a time.
    #[error("dbmesh: SET autocommit inside a distributed transaction; COMMIT or ROLLBACK first")]
    AutocommitInDistributed,
    /// The table whose column list routing needs has no columns on its data source.
    #[error("Table '{database}.{table}' doesn't exist (on data source {data_source})")]
    NoSuchTable {
        database: String,
        table: String,
        data_source: String,
    },
    /// The meta data source was down at start, or no sequence is configured.
    #[error("dbmesh: sequences are unavailable: {0}")]
    SequencesUnavailable(String),
}

impl ClientError for SessionError {
    fn code(&self) -> u16 {
        match self {
            SessionError::TooManyConnections => 1040, // ER_CON_COUNT_ERROR
            SessionError::InsecureTransport => 3159,  // ER_SECURE_TRANSPORT_REQUIRED
            SessionError::BadHandshake(_) => 1043,    // ER_HANDSHAKE_ERROR
            SessionError::UnknownDatabase(_) => 1049, // ER_BAD_DB_ERROR
            SessionError::AccessDenied { .. } => 1045, // ER_ACCESS_DENIED_ERROR
            SessionError::Inactive => 4031,           // ER_CLIENT_INTERACTION_TIMEOUT
            SessionError::EmptyCommand => 1047,       // ER_UNKNOWN_COM_ERROR
            SessionError::ConnectionKilled => 1927,   // ER_CONNECTION_KILLED
            SessionError::UnknownThread(_) => 1094,   // ER_NO_SUCH_THREAD
            SessionError::NotOwner(_) => 1095,        // ER_KILL_DENIED_ERROR
            SessionError::ProcessPrivilegeNeeded => 1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR
            SessionError::NotPreparable => 1295,      // ER_UNSUPPORTED_PS
            SessionError::UnknownStatement { .. } => 1243, // ER_UNKNOWN_STMT_HANDLER
            SessionError::TooManyPrepared(_) => 1461, // ER_MAX_PREPARED_STMT_COUNT_REACHED
            SessionError::BadExecute(_) => 1210,      // ER_WRONG_ARGUMENTS
            SessionError::BadTransactionMode(_) | SessionError::XaUnavailable => 1231, // ER_WRONG_VALUE_FOR_VAR
            SessionError::AutocommitInDistributed => 1399, // ER_XAER_RMFAIL
            SessionError::NoSuchTable { .. } => 1146,      // ER_NO_SUCH_TABLE
            SessionError::SequencesUnavailable(_) => 1105, // ER_UNKNOWN_ERROR
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            SessionError::TooManyConnections => "08004",
            SessionError::BadHandshake(_) | SessionError::EmptyCommand => "08S01",
            SessionError::UnknownDatabase(_)
            | SessionError::ProcessPrivilegeNeeded
            | SessionError::TooManyPrepared(_)
            | SessionError::BadTransactionMode(_)
            | SessionError::XaUnavailable => "42000",
            SessionError::AccessDenied { .. } => "28000",
            SessionError::ConnectionKilled => "70100",
            SessionError::AutocommitInDistributed => "XAE07",
            SessionError::NoSuchTable { .. } => "42S02",
            SessionError::InsecureTransport
            | SessionError::Inactive
            | SessionError::UnknownThread(_)
            | SessionError::NotOwner(_)
            | SessionError::NotPreparable
            | SessionError::UnknownStatement { .. }
            | SessionError::BadExecute(_)
            | SessionError::SequencesUnavailable(_) => "HY000",
        }
    }

    fn client_message(&self) -> Cow<'static, str> {
        self.to_string().into()
    }
}
