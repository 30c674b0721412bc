//! The backend connections a session holds: at most one per data source, acquired on first use
//! and brought to the session's state. Between statements they go back to the pool unless
//! something pins them to the session ([`super::pin`]); pinned connections are reset before
//! they return to the pool. Relaying a command to one of them lives here too.

use backend::{BackendError, PooledConn, SessionState};
use protocol::constants::caps;
use protocol::response::{relay_response, RelayError, RelayOutcome, ResponseKind};
use rules::Rules;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};

/// A backend connection held by a session.
pub(super) struct Held {
    pub data_source: String,
    pub conn: PooledConn,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// The physical database a connection to `data_source` must have selected for this
    /// session: the data source's own database when the logical schema is selected.
    fn database_on(&self, rules: &Rules, data_source: &str) -> Option<String> {
        let logical = self.database.as_deref()?;
        if logical == rules.schema.name {
            rules
                .data_sources
                .get(data_source)
                .map(|ds| ds.database.clone())
        } else {
            Some(logical.to_string())
        }
    }

    fn wanted_state(&self, rules: &Rules, data_source: &str) -> SessionState {
        SessionState {
            database: self.database_on(rules, data_source),
            charset: self.charset,
            multi_statements: self.multi_statements,
        }
    }

    /// Index in `held` of a connection to `data_source`, acquired if needed and brought to
    /// the session state.
    pub(super) async fn conn_for(&mut self, data_source: &str) -> Result<usize, BackendError> {
        let snapshot = self.ctx.snapshot.load();
        let want = self.wanted_state(&snapshot.rules, data_source);
        let index = match self.held.iter().position(|h| h.data_source == data_source) {
            Some(i) => i,
            None => {
                let pool = snapshot.pools.get(data_source).cloned().ok_or_else(|| {
                    BackendError::Unreachable {
                        source_name: data_source.to_string(),
                        address: String::new(),
                        reason: "the data source is not in the current rules".into(),
                    }
                })?;
                let mut conn = pool
                    .acquire(self.capabilities & caps::FOUND_ROWS != 0)
                    .await?;
                // A new connection joins the session: same state, same session variables,
                // same open transaction as the connections the session already holds.
                conn.sync_state(&want, &self.replay).await?;
                if self.in_transaction {
                    conn.query("BEGIN").await?;
                }
                self.held.push(Held {
                    data_source: data_source.to_string(),
                    conn,
                });
                return Ok(self.held.len() - 1);
            }
        };
        if let Err(e) = self.held[index].conn.sync_state(&want, &self.replay).await {
            if !matches!(e, BackendError::Server { .. }) {
                self.held.swap_remove(index);
            }
            return Err(e);
        }
        Ok(index)
    }

    /// Returns every held connection to its pool as it is: the statement is over and nothing
    /// pins them, so they carry only state the next borrower's `sync_state` accounts for.
    pub(super) fn release_unpinned(&mut self) {
        for held in self.held.drain(..) {
            held.conn.release();
        }
    }

    /// Resets every held connection and returns it to its pool (or closes it if the reset
    /// fails).
    pub(super) async fn release_all(&mut self) {
        for mut held in self.held.drain(..) {
            if held.conn.reset().await.is_ok() {
                held.conn.release();
            }
        }
    }

    /// Sends `packet` to a connection to `data_source` and relays the response.
    pub(super) async fn forward_to(
        &mut self,
        data_source: &str,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Flow> {
        let index = match self.conn_for(data_source).await {
            Ok(i) => i,
            Err(e) => return Err(self.error(e.to_server_error()).await),
        };
        self.relay_on(index, packet, kind).await
    }

    /// Sends `packet` on held connection `index` and relays the response.
    pub(super) async fn relay_on(
        &mut self,
        index: usize,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Flow> {
        let deprecate_eof = self.deprecate_eof();
        // Errors, statement OKs and COM_STATISTICS carry no status flags.
        let reports_status = !matches!(kind, ResponseKind::Prepare { .. } | ResponseKind::Raw);
        let conn = &mut self.held[index].conn;
        if let Err(e) = conn.send_command(packet).await {
            return Err(self.backend_lost(index, e).await);
        }
        match relay_response(conn.packets(), &mut self.client, kind, deprecate_eof).await {
            Ok(outcome) => {
                if reports_status && outcome.error.is_none() {
                    self.status = outcome.status;
                    conn.status = outcome.status;
                }
                if outcome.last_insert_id != 0 {
                    self.last_insert_id = outcome.last_insert_id;
                }
                if let Some(err) = &outcome.error {
                    self.ctx.metrics.error(err.code);
                }
                Ok(outcome)
            }
            Err(RelayError::Client(_)) => {
                // The client left mid-response; the rest of it is unread, so the backend
                // connection cannot be reused.
                self.held.swap_remove(index);
                Err(Flow::Close)
            }
            Err(RelayError::Backend(error)) => {
                let source_name = conn.source_name().to_string();
                Err(self
                    .backend_lost(index, BackendError::Lost { source_name, error })
                    .await)
            }
        }
    }

    /// Sends a command that has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
    pub(super) async fn send_on(&mut self, index: usize, packet: &[u8]) -> Flow {
        if let Err(e) = self.held[index].conn.send_command(packet).await {
            return self.backend_lost(index, e).await;
        }
        Flow::Continue
    }

    /// A backend connection died: its session state (transaction, variables, prepared
    /// statements) is gone, so after the error the client connection is closed too, as a
    /// direct connection to a crashed server would be. Other sessions are unaffected.
    pub(super) async fn backend_lost(&mut self, index: usize, error: BackendError) -> Flow {
        tracing::warn!(conn = self.connection_id, %error, "backend connection lost");
        self.held.swap_remove(index);
        self.send_error(&error.to_server_error());
        let _ = self.client.flush().await;
        Flow::Close
    }
}
