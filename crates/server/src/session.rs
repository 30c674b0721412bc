//! One client session: reads commands, answers what concerns the logical schema itself, and
//! relays the rest to a backend connection.
//!
//! For now a session pins one backend connection of the default data source from its first
//! statement to its end (so user variables, transactions and prepared statements behave as on
//! a direct connection); the connection is reset before it returns to the pool. Statement
//! routing and multiplexing replace the pin where the session state allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendError, PooledConn, SessionState};
use bytes::BytesMut;
use protocol::constants::{caps, com, set_names_for_collation, status};
use protocol::framing::PacketConn;
use protocol::handshake::ChangeUser;
use protocol::packets::OkPacket;
use protocol::response::{relay_response, RelayError, ResponseKind};
use protocol::resultset::{write_end_of_rows, write_text_result, ColumnDef};
use protocol::{ProtocolError, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::handshake::{authenticate, unknown_database, Login};
use crate::intercept::{
    intercept, like_matches, physical_database, visible_databases, Intercepted,
};
use crate::Context;

/// What the command loop does after a command.
enum Flow {
    Continue,
    /// End the session (COM_QUIT, a lost client, or a state the client must not continue from).
    Close,
}

pub(crate) struct Session<S> {
    client: PacketConn<S>,
    ctx: Arc<Context>,
    connection_id: u32,
    host: String,
    user: String,
    capabilities: u32,
    handshake_collation: u8,
    nonce: [u8; 20],
    tls: bool,
    /// The logical database the client selected.
    database: Option<String>,
    /// What the backend connection must carry for this session.
    state: SessionState,
    backend: Option<PooledConn>,
    /// Status flags to report in locally generated OK packets.
    status: u16,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(crate) fn new(
        client: PacketConn<S>,
        login: Login,
        connection_id: u32,
        host: String,
        ctx: Arc<Context>,
    ) -> Self {
        let snapshot = ctx.snapshot.load();
        let physical = login
            .database
            .as_deref()
            .and_then(|db| physical_database(&snapshot.rules, db))
            .map(str::to_string);
        Session {
            client,
            connection_id,
            host,
            user: login.user,
            capabilities: login.capabilities,
            handshake_collation: login.collation,
            nonce: login.nonce,
            tls: login.tls,
            database: login.database,
            state: SessionState {
                database: physical,
                charset: set_names_for_collation(login.collation),
                multi_statements: login.capabilities & caps::MULTI_STATEMENTS != 0,
            },
            backend: None,
            status: status::AUTOCOMMIT,
            ctx,
        }
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & caps::DEPRECATE_EOF != 0
    }

    pub(crate) async fn run(mut self) {
        let mut last_activity = Instant::now();
        let idle_timer = tokio::time::sleep(Duration::from_secs(
            self.ctx.snapshot.load().rules.proxy.idle_timeout_secs,
        ));
        tokio::pin!(idle_timer);
        loop {
            let (max_packet, idle) = {
                let snapshot = self.ctx.snapshot.load();
                (
                    snapshot.rules.proxy.max_allowed_packet,
                    Duration::from_secs(snapshot.rules.proxy.idle_timeout_secs),
                )
            };
            // One timer per session, pushed back lazily: arming a fresh timeout for every
            // statement showed up in profiles of the pass-through path.
            let outcome = {
                let read = self.client.read_packet(max_packet);
                tokio::pin!(read);
                loop {
                    tokio::select! {
                        biased;
                        result = &mut read => break Some(result),
                        _ = idle_timer.as_mut() => {
                            let deadline = last_activity + idle;
                            if Instant::now() >= deadline {
                                break None;
                            }
                            idle_timer.as_mut().reset(deadline.into());
                        }
                    }
                }
            };
            let packet = match outcome {
                Some(Ok(p)) => p,
                Some(Err(ProtocolError::Closed)) | Some(Err(ProtocolError::Io(_))) => break,
                Some(Err(e)) => {
                    // Oversized or out-of-order packets leave the stream unusable: answer, close.
                    self.send_error(&e.to_server_error());
                    let _ = self.client.flush().await;
                    break;
                }
                None => {
                    let err = ServerError::new(
                        4031,
                        "HY000",
                        "The client was disconnected by the server because of inactivity.",
                    );
                    self.send_error(&err);
                    let _ = self.client.flush().await;
                    break;
                }
            };
            let Some(&command) = packet.first() else {
                self.send_error(&ServerError::new(1047, "08S01", "Empty command packet"));
                if self.client.flush().await.is_err() {
                    break;
                }
                continue;
            };
            self.ctx.metrics.statement(command);
            let started = Instant::now();
            let span = tracing::debug_span!(
                "statement",
                conn = self.connection_id,
                command = com::name(command),
                route = tracing::field::Empty
            );
            let flow = self.dispatch(command, packet).instrument(span).await;
            last_activity = Instant::now();
            self.ctx
                .metrics
                .statement_seconds
                .observe((last_activity - started).as_secs_f64());
            if let Flow::Close = flow {
                break;
            }
        }
        self.finish().await;
    }

    /// Returns the backend connection to the pool if it can be cleaned, else closes it.
    async fn finish(&mut self) {
        if let Some(mut backend) = self.backend.take() {
            if backend.reset().await.is_ok() {
                backend.release();
            }
        }
        self.client.shutdown().await;
    }

    async fn dispatch(&mut self, command: u8, packet: BytesMut) -> Flow {
        match command {
            com::QUERY => match intercept(&packet[1..]) {
                Some(Intercepted::Use(db)) => self.use_database(&db).await,
                Some(Intercepted::ShowDatabases(like)) => {
                    self.show_databases(like.as_deref()).await
                }
                Some(Intercepted::SelectDatabase(column)) => self.select_database(&column).await,
                None => self.forward(&packet, ResponseKind::Query).await,
            },
            com::INIT_DB => {
                let db = String::from_utf8_lossy(&packet[1..]).into_owned();
                self.use_database(&db).await
            }
            com::PING => self.ok().await,
            com::QUIT => Flow::Close,
            com::FIELD_LIST => self.forward(&packet, ResponseKind::FieldList).await,
            com::STATISTICS => self.forward(&packet, ResponseKind::Raw).await,
            com::STMT_PREPARE => self.forward(&packet, ResponseKind::Prepare).await,
            com::STMT_EXECUTE => {
                let cursor = packet.get(5).is_some_and(|&flags| flags != 0);
                self.forward(&packet, ResponseKind::Execute { cursor })
                    .await
            }
            com::STMT_FETCH => self.forward(&packet, ResponseKind::Fetch).await,
            com::STMT_RESET => self.forward(&packet, ResponseKind::Single).await,
            com::STMT_SEND_LONG_DATA | com::STMT_CLOSE => self.forward_no_response(&packet).await,
            com::SET_OPTION => self.set_option(&packet).await,
            com::RESET_CONNECTION => self.reset_connection().await,
            com::CHANGE_USER => self.change_user(&packet).await,
            other => {
                self.send_error(&ServerError::unknown_command(other));
                self.flush().await
            }
        }
    }

    fn send_error(&mut self, err: &ServerError) {
        self.ctx.metrics.error(err.code);
        self.client.write_with(|b| err.encode(b));
    }

    async fn flush(&mut self) -> Flow {
        match self.client.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn ok(&mut self) -> Flow {
        let ok = OkPacket {
            status: self.status,
            ..OkPacket::default()
        };
        self.client.write_with(|b| ok.encode(0, b));
        self.flush().await
    }

    async fn error(&mut self, err: ServerError) -> Flow {
        self.send_error(&err);
        self.flush().await
    }

    async fn use_database(&mut self, db: &str) -> Flow {
        let physical = physical_database(&self.ctx.snapshot.load().rules, db).map(str::to_string);
        match physical {
            Some(physical) => {
                self.database = Some(db.to_string());
                self.state.database = Some(physical);
                self.ok().await
            }
            None => self.error(unknown_database(db)).await,
        }
    }

    async fn show_databases(&mut self, like: Option<&str>) -> Flow {
        let rules = self.ctx.snapshot.load().rules.clone();
        let header = match like {
            Some(p) => format!("Database ({p})"),
            None => "Database".to_string(),
        };
        let rows: Vec<[Option<Vec<u8>>; 1]> = visible_databases(&rules)
            .into_iter()
            .filter(|db| like.is_none_or(|p| like_matches(p, db)))
            .map(|db| [Some(db.into_bytes())])
            .collect();
        let deprecate_eof = self.deprecate_eof();
        write_text_result(
            &mut self.client,
            &[ColumnDef::varchar(&header, 64)],
            rows,
            deprecate_eof,
            self.status,
        );
        self.flush().await
    }

    async fn select_database(&mut self, column: &str) -> Flow {
        let row = [self.database.clone().map(String::into_bytes)];
        let deprecate_eof = self.deprecate_eof();
        write_text_result(
            &mut self.client,
            &[ColumnDef::varchar(column, 64)],
            [row],
            deprecate_eof,
            self.status,
        );
        self.flush().await
    }

    async fn set_option(&mut self, packet: &[u8]) -> Flow {
        match packet.get(1..3) {
            Some([0, 0]) => self.state.multi_statements = true,
            Some([1, 0]) => self.state.multi_statements = false,
            _ => {
                return self
                    .error(ServerError::unknown_command(com::SET_OPTION))
                    .await
            }
        }
        let deprecate_eof = self.deprecate_eof();
        write_end_of_rows(&mut self.client, deprecate_eof, 0, self.status);
        self.flush().await
    }

    async fn reset_connection(&mut self) -> Flow {
        if let Some(backend) = self.backend.as_mut() {
            if backend.reset().await.is_err() {
                self.backend = None;
            }
        }
        self.state.charset = set_names_for_collation(self.handshake_collation);
        self.state.multi_statements = self.capabilities & caps::MULTI_STATEMENTS != 0;
        self.status = status::AUTOCOMMIT;
        self.ok().await
    }

    async fn change_user(&mut self, packet: &[u8]) -> Flow {
        let request = match ChangeUser::decode(&packet[1..], self.capabilities) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .error(ServerError::new(
                        1043,
                        "08S01",
                        format!("Bad handshake: {e}"),
                    ))
                    .await
            }
        };
        let rules = self.ctx.snapshot.load().rules.clone();
        let plugin = request
            .auth_plugin
            .clone()
            .unwrap_or_else(|| protocol::auth::MYSQL_NATIVE_PASSWORD.to_string());
        let verdict = authenticate(
            &mut self.client,
            &rules,
            &request.user,
            &self.host,
            &plugin,
            request.auth_response.clone(),
            &self.nonce,
            self.tls,
        )
        .await;
        if let Err(err) = verdict {
            self.ctx.metrics.auth_failures.inc();
            // As MySQL does, a failed change of user ends the connection.
            self.send_error(&err);
            let _ = self.client.flush().await;
            return Flow::Close;
        }
        let physical = match &request.database {
            Some(db) => match physical_database(&rules, db) {
                Some(p) => Some(p.to_string()),
                None => {
                    self.send_error(&unknown_database(db));
                    let _ = self.client.flush().await;
                    return Flow::Close;
                }
            },
            None => None,
        };
        if let Some(mut backend) = self.backend.take() {
            if backend.reset().await.is_ok() {
                backend.release();
            }
        }
        self.user = request.user;
        self.database = request.database;
        self.state.database = physical;
        if let Some(collation) = request.collation {
            self.handshake_collation = collation;
        }
        self.state.charset = set_names_for_collation(self.handshake_collation);
        self.state.multi_statements = self.capabilities & caps::MULTI_STATEMENTS != 0;
        self.status = status::AUTOCOMMIT;
        self.ok().await
    }

    /// The pinned backend connection, acquired on first use and brought to the session state.
    async fn ensure_backend(&mut self) -> Result<(), BackendError> {
        if self.backend.is_none() {
            let pool = self.ctx.snapshot.load().default_pool().clone();
            let conn = pool
                .acquire(self.capabilities & caps::FOUND_ROWS != 0)
                .await?;
            self.backend = Some(conn);
        }
        let backend = self.backend.as_mut().expect("set above");
        if let Err(e) = backend.sync_state(&self.state).await {
            if !matches!(e, BackendError::Server { .. }) {
                self.backend = None;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Sends a command to the backend and relays its response.
    async fn forward(&mut self, packet: &[u8], kind: ResponseKind) -> Flow {
        let deprecate_eof = self.deprecate_eof();
        if let Err(e) = self.ensure_backend().await {
            return self.error(e.to_server_error()).await;
        }
        let backend = self.backend.as_mut().expect("ensured above");
        if let Err(e) = backend.send_command(packet).await {
            return self.backend_lost(e).await;
        }
        let result = relay_response(backend.packets(), &mut self.client, kind, deprecate_eof).await;
        match result {
            Ok(outcome) => {
                self.status = outcome.status;
                backend.status = outcome.status;
                if let Some(err) = outcome.error {
                    self.ctx.metrics.error(err.code);
                }
                Flow::Continue
            }
            Err(RelayError::Client(_)) => {
                // The client left mid-response; the rest of it is unread, so the backend
                // connection cannot be reused.
                self.backend = None;
                Flow::Close
            }
            Err(RelayError::Backend(error)) => {
                let source_name = backend.source_name().to_string();
                self.backend_lost(BackendError::Lost { source_name, error })
                    .await
            }
        }
    }

    async fn forward_no_response(&mut self, packet: &[u8]) -> Flow {
        if self.ensure_backend().await.is_err() {
            // These commands have no response, so an error cannot be reported either.
            return Flow::Continue;
        }
        let backend = self.backend.as_mut().expect("ensured above");
        if let Err(e) = backend.send_command(packet).await {
            return self.backend_lost(e).await;
        }
        Flow::Continue
    }

    /// The backend connection died: its session state (transaction, variables, prepared
    /// statements) is gone, so after the error the client connection is closed too, as a
    /// direct connection to a crashed server would be. Other sessions are unaffected.
    async fn backend_lost(&mut self, error: BackendError) -> Flow {
        tracing::warn!(conn = self.connection_id, %error, "backend connection lost");
        self.backend = None;
        self.send_error(&error.to_server_error());
        let _ = self.client.flush().await;
        Flow::Close
    }
}
