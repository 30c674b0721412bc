//! The one error type of the fixture. Messages are written for a person reading a failed test:
//! they name the server, the command and, for startup failures, include the server's own log.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while starting, driving or stopping a test backend.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the fixture was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A MariaDB program the fixture needs is not installed.
    #[error(
        "cannot find `{name}` (looked in PATH and {searched}); install the Debian packages \
         mariadb-server and mariadb-client, or set DBMESH_TEST_BACKENDS to use running servers"
    )]
    BinaryNotFound {
        /// The program, e.g. `mariadbd`.
        name: String,
        /// The extra directories searched.
        searched: String,
    },

    /// Creating the cached template data directory failed.
    #[error(
        "cannot create the MariaDB template data dir {dir}: {reason}\n--- output ---\n{output}"
    )]
    Template {
        /// The template directory being built.
        dir: PathBuf,
        /// What failed.
        reason: String,
        /// Output of the failing program (install-db or the server's log).
        output: String,
    },

    /// `mariadbd` exited or did not become ready in time.
    #[error(
        "mariadbd on 127.0.0.1:{port} failed to start: {reason}\n--- end of its log ---\n{log}"
    )]
    Startup {
        /// The TCP port it was started on.
        port: u16,
        /// What went wrong (exit status, timeout, ...).
        reason: String,
        /// The server's log file (stdout and stderr); removed with the instance's temp dir.
        log_path: PathBuf,
        /// The last lines of that log.
        log: String,
    },

    /// A statement run with the `mariadb` command-line client failed.
    #[error("SQL on {address} failed ({status}): {stderr}\n--- statements ---\n{statements}")]
    Sql {
        /// `host:port` of the server.
        address: String,
        /// The client's exit status.
        status: String,
        /// The client's standard error, usually `ERROR nnnn (SQLSTATE) at line n: ...`.
        stderr: String,
        /// The statements that were sent.
        statements: String,
    },

    /// The operation needs a server process owned by the fixture, but the backend is external
    /// (from `DBMESH_TEST_BACKENDS`).
    #[error(
        "{operation} is not supported on the external backend {address} (DBMESH_TEST_BACKENDS)"
    )]
    Unsupported {
        /// What was asked, e.g. `kill`.
        operation: &'static str,
        /// `host:port` of the external server.
        address: String,
    },

    /// Replication between fixture servers did not reach the wanted state (threads running,
    /// replica caught up) in time; `reason` includes the replica's `SHOW SLAVE STATUS` errors.
    #[error("replication on {address}: {reason}")]
    Replication {
        /// `host:port` of the replica.
        address: String,
        /// What was waited for and what the replica reported.
        reason: String,
    },

    /// A network namespace of the fixture could not be set up or changed (`ip`, `nft`); the
    /// machine may lack the tools, root or the kernel support (tests then skip).
    #[error("network fixture: `{command}` failed: {reason}")]
    Network {
        /// The command that failed.
        command: String,
        /// Its standard error or why it could not run.
        reason: String,
    },

    /// `DBMESH_TEST_BACKENDS` names fewer servers than a test needs.
    #[error("the test needs {wanted} backends but DBMESH_TEST_BACKENDS names {available}")]
    NotEnoughBackends {
        /// How many the test asked for.
        wanted: usize,
        /// How many the variable lists.
        available: usize,
    },

    /// An environment variable of the fixture has a value it cannot use.
    #[error("{var}={value:?}: {reason}")]
    BadEnv {
        /// The variable's name.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

impl FixtureError {
    /// True when the error only says that the backend is external and cannot be killed,
    /// stopped or restarted (or that too few external backends were given): tests then skip.
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            FixtureError::Unsupported { .. } | FixtureError::NotEnoughBackends { .. }
        )
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        FixtureError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Attach a context string to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, FixtureError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T, FixtureError> {
        self.map_err(|e| FixtureError::io(context(), e))
    }
}
