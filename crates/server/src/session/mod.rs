//! One client session: reads commands, answers what concerns the logical schema itself, and
//! relays the rest to backend connections.
//!
//! A session borrows backend connections ([`backends`]) for one statement, or for as long as
//! something pins them ([`pin`]: a transaction, user variables, temporary tables, locks…), so
//! many sessions share a few connections while behaving as on a direct connection. Prepared
//! statements belong to the session ([`statements`]); each connection keeps those it has
//! prepared, for whichever session borrows it.

mod access;
mod backends;
mod columns;
mod diagnostics;
mod fill;
mod merge;
mod own_values;
mod pin;
mod process;
mod route;
mod show;
mod statements;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocol::constants::{caps, com, set_names_for_collation, status};
use protocol::framing::PacketConn;
use protocol::handshake::ChangeUser;
use protocol::packets::OkPacket;
use protocol::response::ResponseKind;
use protocol::resultset::{write_end_of_rows, write_text_result, ColumnDef};
use protocol::text::{self, Charset};
use protocol::{ProtocolError, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::handshake::{authenticate, handshake_charset, unknown_database, Login};
use crate::intercept::{
    intercept, like_matches, physical_database, visible_databases, Intercepted,
};
use crate::processes::{Kill, KillTarget};
use crate::registry::Entry;
use crate::Context;
pub(crate) use pin::{PinReason, Pins};

/// The connection state the client chose, which its backend connections follow.
struct ClientState {
    /// The logical database the client selected.
    database: Option<String>,
    /// `SET NAMES` arguments every backend connection must carry for this session.
    charset: &'static str,
    multi_statements: bool,
}

/// What the command loop does after a command.
enum Flow {
    Continue,
    /// End the session (COM_QUIT, a lost client, or a state the client must not continue from).
    Close,
}

pub(crate) struct Session<S> {
    client: PacketConn<S>,
    ctx: Arc<Context>,
    /// The session as the process list and KILL see it; its id is `connection_id`.
    entry: Arc<Entry>,
    connection_id: u32,
    host: String,
    user: String,
    capabilities: u32,
    handshake_collation: u8,
    /// How statements are read after the handshake (and COM_RESET_CONNECTION).
    handshake_charset: Charset,
    /// How the client's statements are read now: its `character_set_client`.
    text_charset: Charset,
    nonce: [u8; 20],
    tls: bool,
    /// What every backend connection the session uses must be brought to.
    state: ClientState,
    held: Vec<backends::Held>,
    statements: statements::Statements,
    /// Session statements (SET ...) every connection the session acquires later must replay.
    replay: Vec<String>,
    /// An explicit transaction (BEGIN) is open.
    in_transaction: bool,
    /// Whether the last session statement succeeded (so it is recorded for replay).
    last_statement_ok: bool,
    /// The id the last INSERT that generated one reported, whichever connection ran it.
    last_insert_id: u64,
    /// `LAST_INSERT_ID()` is answered from `last_insert_id` even while only the default data
    /// source was used: the proxy filled ids from a sequence, which no backend knows of.
    answers_last_insert_id: bool,
    /// Status flags to report in locally generated OK packets.
    status: u16,
    /// Why the held connections must stay with the session, besides an open transaction.
    pins: Pins,
    /// The pins last counted in the `dbmesh_session_pinned` metric, transaction included.
    counted_pins: Pins,
    /// How the current statement may use primaries and replicas.
    access: access::Access,
    /// The session's last write per data source with replicas, which its reads must see.
    writes: Vec<backends::Write>,
    /// The last statement's warnings and errors, for `SHOW WARNINGS` ([`diagnostics`]).
    diagnostics: Vec<diagnostics::Diagnostic>,
    /// What `ROW_COUNT()` answers: the last statement's affected rows, -1 after a SELECT.
    row_count: i64,
    /// Set by a scatter read whose replica failed before anything reached the client: the
    /// read runs again.
    retry_read: bool,
    /// A `SET TRANSACTION …` without scope waiting for the transaction it applies to.
    next_transaction: Option<NextTransaction>,
}

/// A one-shot `SET TRANSACTION …` (isolation level or access mode of the next transaction
/// only): run on the connections the session holds, run again on connections it acquires
/// before that transaction begins, never replayed after it ([`PinReason::NextTransaction`]).
struct NextTransaction {
    statement: String,
    /// Declared by the statement that just ran, so nothing consumed it yet.
    declared_now: bool,
    /// The transaction it applies to is open. The SET is over when that transaction ends;
    /// an autocommitted statement may consume it too (a server does when the statement
    /// succeeds and touches a table), which the proxy cannot tell, so until a transaction
    /// ends the connection stays pinned, erring towards keeping it.
    begun: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(crate) fn new(
        client: PacketConn<S>,
        login: Login,
        entry: Arc<Entry>,
        host: String,
        ctx: Arc<Context>,
    ) -> Self {
        entry.set_user(&login.user);
        entry.idle("", login.database.as_deref());
        Session {
            client,
            connection_id: entry.id,
            entry,
            host,
            user: login.user,
            capabilities: login.capabilities,
            handshake_collation: login.collation,
            handshake_charset: login.charset,
            text_charset: login.charset,
            nonce: login.nonce,
            tls: login.tls,
            state: ClientState {
                database: login.database,
                charset: set_names_for_collation(login.collation),
                multi_statements: login.capabilities & caps::MULTI_STATEMENTS != 0,
            },
            held: Vec::new(),
            statements: statements::Statements::default(),
            replay: Vec::new(),
            in_transaction: false,
            last_statement_ok: false,
            last_insert_id: 0,
            answers_last_insert_id: false,
            status: status::AUTOCOMMIT,
            pins: 0,
            counted_pins: 0,
            access: access::Access::PrimaryRead,
            writes: Vec::new(),
            diagnostics: Vec::new(),
            row_count: -1,
            retry_read: false,
            next_transaction: None,
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
                let killed = self.entry.wait_killed();
                tokio::pin!(killed);
                loop {
                    tokio::select! {
                        biased;
                        // A killed session runs nothing more, even a command already sent.
                        _ = &mut killed => break None,
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
                    let err = if self.entry.killed() {
                        process::connection_killed()
                    } else {
                        ServerError::new(
                            4031,
                            "HY000",
                            "The client was disconnected by the server because of inactivity.",
                        )
                    };
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
            let info = match command {
                com::QUERY | com::STMT_PREPARE => Some(String::from_utf8_lossy(&packet[1..])),
                _ => None,
            };
            self.entry.begin(
                process::command_name(command),
                info.as_deref(),
                self.state.database.as_deref(),
            );
            drop(info);
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
            if matches!(flow, Flow::Close) || self.entry.killed() {
                break;
            }
            if self.has_uncollected_diagnostics() {
                self.collect_diagnostics().await;
            }
            if self.has_unnoted_writes() {
                self.note_writes().await;
            }
            self.settle();
            self.entry
                .idle(&self.idle_state(), self.state.database.as_deref());
        }
        self.finish().await;
    }

    /// After a command: counts the session's pins and, when nothing pins the held
    /// connections, gives them back to the pool.
    fn settle(&mut self) {
        self.access = access::Access::PrimaryRead;
        let in_transaction = self.in_transaction_now();
        if let Some(next) = &mut self.next_transaction {
            if next.declared_now {
                next.declared_now = false;
            } else if in_transaction {
                next.begun = true;
            } else if next.begun {
                self.next_transaction = None;
                self.pins &= !PinReason::NextTransaction.bit();
            }
        }
        let mut pins = self.pins;
        if self.in_transaction_now() {
            pins |= PinReason::Transaction.bit();
        }
        if pins != self.counted_pins {
            self.ctx.metrics.set_pinned(self.counted_pins, pins);
            self.counted_pins = pins;
        }
        if pins == 0 {
            self.release_unpinned();
        }
    }

    /// A transaction is open, or autocommit is off (so the next statement opens one).
    fn in_transaction_now(&self) -> bool {
        self.client_status() & status::IN_TRANS != 0 || self.status & status::AUTOCOMMIT == 0
    }

    /// `access` as far as the session allows: inside a transaction, or while connections are
    /// pinned (their state lives on the primary's connection), reads stay on the primary.
    fn effective_access(&self, access: access::Access) -> access::Access {
        if access == access::Access::ReplicaRead && (self.pins != 0 || self.in_transaction_now()) {
            access::Access::PrimaryRead
        } else {
            access
        }
    }

    /// Returns the backend connections to the pool if they can be cleaned, else closes them.
    async fn finish(&mut self) {
        self.ctx.metrics.set_pinned(self.counted_pins, 0);
        self.release_all().await;
        self.client.shutdown().await;
    }

    async fn dispatch(&mut self, command: u8, mut packet: BytesMut) -> Flow {
        let intercepted = if command == com::QUERY {
            intercept(text::decode(&packet[1..], self.text_charset).as_bytes())
        } else {
            None
        };
        if command == com::QUERY && intercepted.is_none() {
            match self.with_own_values(&packet) {
                Ok(None) => {}
                Ok(Some(replaced)) => packet = replaced,
                Err(e) => {
                    self.begin_statement();
                    return self.error(e).await;
                }
            }
        }
        if command == com::STMT_PREPARE {
            if let Some(replaced) = self.prepare_with_identity(&packet) {
                packet = replaced;
            }
        }
        match (&intercepted, command) {
            (Some(Intercepted::Diagnostics(_)), _) => {}
            (_, com::QUERY | com::STMT_PREPARE | com::STMT_EXECUTE) => self.begin_statement(),
            _ => {}
        }
        if matches!(command, com::QUERY | com::STMT_PREPARE) {
            // Before anything could relay it: KILL and process lists never reach a backend.
            let text = text::decode(&packet[1..], self.text_charset);
            let answered = if command == com::QUERY {
                self.query_about_sessions(&text).await
            } else {
                self.prepare_about_sessions(&text).await
            };
            if let Some(flow) = answered {
                return flow;
            }
        }
        match command {
            com::QUERY => match intercepted {
                Some(Intercepted::Diagnostics(question)) => {
                    self.answer_diagnostics(&question).await
                }
                Some(Intercepted::Use(db)) => self.use_database(&db).await,
                Some(Intercepted::ShowDatabases(like)) => {
                    self.show_databases(like.as_deref()).await
                }
                Some(Intercepted::SelectDatabase(column)) => self.select_database(&column).await,
                Some(Intercepted::LastInsertId(column)) => {
                    self.select_last_insert_id(&column, &packet).await
                }
                Some(Intercepted::NextVal {
                    column,
                    sequence,
                    count,
                }) => self.next_value(&column, &sequence, count).await,
                None => self.query(&packet).await,
            },
            com::INIT_DB => {
                let db = String::from_utf8_lossy(&packet[1..]).into_owned();
                self.use_database(&db).await
            }
            com::PING => self.ok().await,
            com::PROCESS_INFO => self.show_processlist(false).await,
            com::PROCESS_KILL => match packet.get(1..5) {
                Some(id) => {
                    let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
                    let kill = Kill {
                        query_only: false,
                        target: KillTarget::Session(id.into()),
                    };
                    self.kill(kill).await
                }
                None => self.error(ServerError::unknown_command(command)).await,
            },
            com::QUIT => Flow::Close,
            com::FIELD_LIST => self.forward_default(&packet, ResponseKind::FieldList).await,
            com::STATISTICS => self.forward_default(&packet, ResponseKind::Raw).await,
            com::STMT_PREPARE => self.stmt_prepare(&packet).await,
            com::STMT_EXECUTE => self.stmt_execute(packet).await,
            com::STMT_FETCH => self.stmt_relay(packet, ResponseKind::Fetch).await,
            com::STMT_RESET => self.stmt_relay(packet, ResponseKind::Single).await,
            com::STMT_SEND_LONG_DATA => self.stmt_send_long_data(packet).await,
            com::STMT_CLOSE => self.stmt_close(&packet).await,
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
        self.diagnostics.push(diagnostics::Diagnostic {
            level: "Error".into(),
            code: err.code,
            message: err.message.to_string(),
        });
        self.client.write_with(|b| err.encode(b));
    }

    async fn flush(&mut self) -> Flow {
        match self.client.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn ok(&mut self) -> Flow {
        self.row_count = 0;
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
        if physical_database(&self.ctx.snapshot.load().rules, db).is_some() {
            // Held connections switch lazily, when they are next used.
            self.state.database = Some(db.to_string());
            self.ok().await
        } else {
            self.error(unknown_database(db)).await
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
        let row = [self.state.database.clone().map(String::into_bytes)];
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

    /// `SELECT NEXTVAL(seq)` / `NEXT VALUE FOR seq`: one id; `NEXTVAL(seq, n)`: a block of
    /// `n` consecutive ids as (first, last).
    async fn next_value(&mut self, column: &str, sequence: &str, count: Option<u64>) -> Flow {
        let sequences = match self.sequences() {
            Ok(s) => s,
            Err(err) => return self.error(err).await,
        };
        let (columns, row) = match count {
            None => match sequences.next(sequence).await {
                Ok(id) => (
                    vec![ColumnDef::unsigned_bigint(column)],
                    vec![Some(id.to_string().into_bytes())],
                ),
                Err(e) => return self.error(e.to_server_error()).await,
            },
            Some(n) => match sequences.reserve_range(sequence, n).await {
                Ok(range) => (
                    vec![
                        ColumnDef::unsigned_bigint("first"),
                        ColumnDef::unsigned_bigint("last"),
                    ],
                    vec![
                        Some(range.start.to_string().into_bytes()),
                        Some(range.end.saturating_sub(1).to_string().into_bytes()),
                    ],
                ),
                Err(e) => return self.error(e.to_server_error()).await,
            },
        };
        let deprecate_eof = self.deprecate_eof();
        write_text_result(
            &mut self.client,
            &columns,
            [row],
            deprecate_eof,
            self.status,
        );
        self.flush().await
    }

    /// `SELECT LAST_INSERT_ID()`: the id the session's last generating INSERT reported (the
    /// first filled id of a filled INSERT), whichever connection ran it. After
    /// `LAST_INSERT_ID(expr)` (which pins the connection) on a session that only used the
    /// default data source, the backend's own answer.
    async fn select_last_insert_id(&mut self, column: &str, packet: &[u8]) -> Flow {
        if self.backend_holds_last_insert_id() {
            return self.forward_default(packet, ResponseKind::Query).await;
        }
        let column_def = ColumnDef::unsigned_bigint(column);
        let row = [Some(self.last_insert_id.to_string().into_bytes())];
        let deprecate_eof = self.deprecate_eof();
        write_text_result(
            &mut self.client,
            &[column_def],
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
        self.release_all().await;
        self.reset_session_state();
        self.ok().await
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER return a session to.
    fn reset_session_state(&mut self) {
        self.state.charset = set_names_for_collation(self.handshake_collation);
        self.text_charset = self.handshake_charset;
        self.state.multi_statements = self.capabilities & caps::MULTI_STATEMENTS != 0;
        self.statements.clear();
        self.replay.clear();
        self.in_transaction = false;
        self.status = status::AUTOCOMMIT;
        self.pins = 0;
        self.next_transaction = None;
        self.last_insert_id = 0;
        self.answers_last_insert_id = false;
        self.row_count = -1;
        self.diagnostics.clear();
    }

    /// The data source of every table the rules do not name.
    fn default_data_source(&self) -> String {
        self.ctx
            .snapshot
            .load()
            .rules
            .schema
            .default_data_source
            .clone()
    }

    /// Relays a command to the default data source.
    async fn forward_default(&mut self, packet: &[u8], kind: ResponseKind) -> Flow {
        let data_source = self.default_data_source();
        match self.forward_to(&data_source, packet, kind).await {
            Ok(_) => Flow::Continue,
            Err(flow) => flow,
        }
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
        if let Some(db) = &request.database {
            if physical_database(&rules, db).is_none() {
                self.send_error(&unknown_database(db));
                let _ = self.client.flush().await;
                return Flow::Close;
            }
        }
        let collation = request.collation.unwrap_or(self.handshake_collation);
        let charset = match handshake_charset(collation) {
            Ok(charset) => charset,
            Err(err) => {
                self.send_error(&err);
                let _ = self.client.flush().await;
                return Flow::Close;
            }
        };
        self.release_all().await;
        self.user = request.user;
        self.entry.set_user(&self.user);
        self.state.database = request.database;
        self.handshake_collation = collation;
        self.handshake_charset = charset;
        self.reset_session_state();
        self.ok().await
    }
}
