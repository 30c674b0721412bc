//! The COM_STMT_* family: prepared statements belong to the session
//! ([`super::super::statements`]), which prepares them on the connections that run them.

use bytes::BytesMut;
use executor::Flow;
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::text;
use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::processes;
use crate::session::Session;

/// Runs a COM_STMT_* command.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut Session<S>,
    command: u8,
    mut packet: BytesMut,
) -> Flow {
    match command {
        com::STMT_PREPARE => {
            if let Some(replaced) = session.prepare_with_identity(&packet) {
                packet = replaced;
            }
            session.begin_statement();
            // Before anything could prepare it: KILL and process lists never reach a backend.
            let text = text::decode(&packet[1..], session.text_charset);
            if let Some(flow) = processes::refuse_prepare(session, &text).await {
                return flow;
            }
            drop(text);
            session.stmt_prepare(&packet).await
        }
        com::STMT_EXECUTE => {
            session.begin_statement();
            session.stmt_execute(packet).await
        }
        com::STMT_FETCH => session.stmt_relay(packet, ResponseKind::Fetch).await,
        com::STMT_RESET => session.stmt_relay(packet, ResponseKind::Single).await,
        com::STMT_SEND_LONG_DATA => session.stmt_send_long_data(packet).await,
        com::STMT_CLOSE => session.stmt_close(&packet).await,
        other => session.error(ServerError::unknown_command(other)).await,
    }
}
