//! Prepared statements belong to the session, not to a backend connection: the client sees
//! statement ids the proxy hands out, and each statement remembers where it is prepared
//! (data source → the backend's statement id). Executions whose target does not depend on the
//! bound parameters are relayed with only the statement id patched, so the binary protocol's
//! hot path decodes no parameters.

use std::collections::HashMap;

use bytes::BytesMut;
use protocol::constants::com;
use protocol::response::ResponseKind;
use protocol::ServerError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};

/// One prepared statement of a session.
pub(super) struct Prepared {
    /// Where every execution goes.
    data_source: String,
    /// The backend's statement id on this session's connection to `data_source`.
    backend_id: u32,
}

/// The session's statements by the ids the client knows.
#[derive(Default)]
pub(super) struct Statements {
    by_id: HashMap<u32, Prepared>,
    next_id: u32,
}

impl Statements {
    pub fn clear(&mut self) {
        self.by_id.clear();
    }
}

/// MySQL's answer to an unknown statement id.
fn unknown_statement(id: u32, command: &str) -> ServerError {
    ServerError::new(
        1243,
        "HY000",
        format!("Unknown prepared statement handler ({id}) given to {command}"),
    )
}

fn statement_id(packet: &[u8]) -> Option<u32> {
    let b = packet.get(1..5)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn stmt_prepare(&mut self, packet: &[u8]) -> Flow {
        let data_source = self
            .ctx
            .snapshot
            .load()
            .rules
            .schema
            .default_data_source
            .clone();
        self.statements.next_id = self.statements.next_id.wrapping_add(1).max(1);
        let client_statement_id = self.statements.next_id;
        let kind = ResponseKind::Prepare {
            client_statement_id,
        };
        match self.forward_to(&data_source, packet, kind).await {
            Ok(outcome) => {
                if let Some(info) = outcome.prepared {
                    self.statements.by_id.insert(
                        client_statement_id,
                        Prepared {
                            data_source,
                            backend_id: info.statement_id,
                        },
                    );
                }
                Flow::Continue
            }
            Err(flow) => flow,
        }
    }

    /// COM_STMT_EXECUTE, COM_STMT_FETCH, COM_STMT_RESET: relayed with the backend's statement
    /// id in place of the client's.
    pub(super) async fn stmt_relay(&mut self, mut packet: BytesMut, kind: ResponseKind) -> Flow {
        let command = packet[0];
        let Some((data_source, backend_id)) = self.lookup(&packet) else {
            let id = statement_id(&packet).unwrap_or(0);
            return self.error(unknown_statement(id, com::name(command))).await;
        };
        packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
        match self.forward_to(&data_source, &packet, kind).await {
            Ok(_) => Flow::Continue,
            Err(flow) => flow,
        }
    }

    /// COM_STMT_SEND_LONG_DATA: no response, not even for errors.
    pub(super) async fn stmt_send_long_data(&mut self, mut packet: BytesMut) -> Flow {
        let Some((data_source, backend_id)) = self.lookup(&packet) else {
            return Flow::Continue;
        };
        packet[1..5].copy_from_slice(&backend_id.to_le_bytes());
        match self.conn_for(&data_source).await {
            Ok(index) => self.send_on(index, &packet).await,
            Err(_) => Flow::Continue,
        }
    }

    /// COM_STMT_CLOSE: no response.
    pub(super) async fn stmt_close(&mut self, packet: &[u8]) -> Flow {
        let Some(id) = statement_id(packet) else {
            return Flow::Continue;
        };
        let Some(prepared) = self.statements.by_id.remove(&id) else {
            return Flow::Continue;
        };
        let Some(index) = self
            .held
            .iter()
            .position(|h| h.data_source == prepared.data_source)
        else {
            return Flow::Continue;
        };
        let mut close = [com::STMT_CLOSE, 0, 0, 0, 0];
        close[1..5].copy_from_slice(&prepared.backend_id.to_le_bytes());
        self.send_on(index, &close).await
    }

    fn lookup(&self, packet: &[u8]) -> Option<(String, u32)> {
        let prepared = self.statements.by_id.get(&statement_id(packet)?)?;
        Some((prepared.data_source.clone(), prepared.backend_id))
    }
}
