//! The commands a client sends, one family per module, each with one entry point that takes
//! the command's packet and the session: [`query`] (COM_QUERY, including the statements the
//! proxy answers itself), [`prepared`] (the COM_STMT_* family), [`bulk`] (MariaDB's
//! COM_STMT_BULK_EXECUTE), [`connection`] (the
//! connection's own state: COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_RESET_CONNECTION,
//! COM_CHANGE_USER) and [`processes`] (COM_PROCESS_INFO, COM_PROCESS_KILL and the statements
//! about sessions). The session itself only reads packets and runs the loop around them.

mod answered;
mod bulk;
pub(super) mod connection;
mod prepared;
pub(super) mod processes;
mod query;

use bytes::BytesMut;
use executor::Flow;
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;

/// Runs one command: `packet` is the whole command packet, its first byte `command`.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    command: u8,
    packet: BytesMut,
) -> Flow {
    match command {
        com::QUERY => query::run(session, packet).await,
        com::STMT_PREPARE
        | com::STMT_EXECUTE
        | com::STMT_FETCH
        | com::STMT_RESET
        | com::STMT_SEND_LONG_DATA
        | com::STMT_CLOSE => prepared::run(session, command, packet).await,
        com::STMT_BULK_EXECUTE => bulk::run(session, packet).await,
        com::PING | com::INIT_DB | com::SET_OPTION | com::RESET_CONNECTION | com::CHANGE_USER => {
            connection::run(session, command, &packet).await
        }
        com::PROCESS_INFO | com::PROCESS_KILL => processes::run(session, command, &packet).await,
        com::FIELD_LIST => {
            session
                .forward_default(&packet, ResponseKind::FieldList)
                .await
        }
        com::STATISTICS => session.forward_default(&packet, ResponseKind::Raw).await,
        com::QUIT => Flow::Close,
        other => session.error(ServerError::unknown_command(other)).await,
    }
}
