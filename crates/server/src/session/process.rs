//! The session's side of statements about sessions ([`crate::processes`]): none of them
//! reaches a backend.

use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::processes::{about_sessions, AboutSessions};

/// 1295 ER_UNSUPPORTED_PS, as MariaDB answers statements it cannot prepare.
fn not_preparable() -> ServerError {
    ServerError::new(
        1295,
        "HY000",
        "This command is not supported in the prepared statement protocol yet",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Answers COM_QUERY text about sessions; `None` when the text is about something else.
    pub(super) async fn query_about_sessions(&mut self, text: &str) -> Option<Flow> {
        let about = about_sessions(text)?;
        Some(match about {
            AboutSessions::Refused(err) => self.error(err).await,
            AboutSessions::Kill(_) => self.error(ServerError::not_supported("KILL")).await,
            AboutSessions::ShowProcessList { .. } | AboutSessions::ProcessListQuery => {
                self.error(ServerError::not_supported("the process list"))
                    .await
            }
        })
    }

    /// Refuses COM_STMT_PREPARE of a statement about sessions; `None` for other statements.
    pub(super) async fn prepare_about_sessions(&mut self, text: &str) -> Option<Flow> {
        Some(match about_sessions(text)? {
            AboutSessions::Refused(err) => self.error(err).await,
            _ => self.error(not_preparable()).await,
        })
    }
}
