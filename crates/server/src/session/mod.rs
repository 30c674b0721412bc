//! One client session: reads commands, answers what concerns the logical schema itself, and
//! hands routed plans to its [`Executor`], which runs them on backend connections.
//!
//! The executor borrows backend connections for one statement, or for as long as something
//! pins them (a transaction, user variables, temporary tables, locks…), so many sessions
//! share a few connections while behaving as on a direct connection. Prepared statements
//! belong to the session ([`statements`]); each connection keeps those it has prepared, for
//! whichever session borrows it.

mod columns;
mod command;
mod diagnostics;
mod fill;
mod own_values;
mod route;
mod show;
mod statements;
mod table_status;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use executor::{answer_error, Cancel, CancelReason, ClientState, Diagnostic, Executor, Flow, Pins};
use protocol::constants::{caps, com, set_names_for_collation};
use protocol::framing::PacketConn;
use protocol::response::ResponseKind;
use protocol::text::{self, Charset};
use protocol::{is_deadlock, ClientError, ProtocolError, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::error::SessionError;
use crate::handshake::Login;
use crate::registry::Entry;
use crate::watch::ClientWatch;
use crate::Context;

/// The client's side of a session: its packets, and what the session answered it.
struct ClientConn<S> {
    packets: PacketConn<S>,
    capabilities: u32,
    /// The metrics, and the snapshot whose names backends' error texts are mapped to.
    ctx: Arc<Context>,
    /// The last statement's warnings and errors, for `SHOW WARNINGS` ([`diagnostics`]).
    diagnostics: Vec<Diagnostic>,
    /// The client was answered a deadlock error: its server rolled its transaction back, so
    /// the session's distributed transaction ends too.
    deadlocked: bool,
    /// Says whether the statement's time limit interrupted it (then its "interrupted" errors
    /// are answered as 1969).
    cancel: Arc<Cancel>,
    /// Errors answered during the current statement (for the query digest), and the first
    /// one's code (for the slow and query logs).
    errors: u32,
    first_error: Option<u16>,
}

impl<S> ClientConn<S> {
    fn note_error(&mut self, code: u16) {
        self.ctx.metrics.error(code);
        self.errors += 1;
        self.first_error.get_or_insert(code);
        self.deadlocked |= is_deadlock(code);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> executor::Client for ClientConn<S> {
    type Stream = S;

    fn packets(&mut self) -> &mut PacketConn<S> {
        &mut self.packets
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & caps::DEPRECATE_EOF != 0
    }

    fn send_error(&mut self, err: &ServerError) {
        let names = self.ctx.snapshot.load().names.clone();
        let shown = executor::client_error(&self.cancel, &names, err);
        let err = shown.as_ref().unwrap_or(err);
        self.note_error(err.code);
        self.diagnostics.push(Diagnostic {
            level: "Error".into(),
            code: err.code,
            message: err.message.to_string(),
        });
        self.packets.write_with(|b| err.encode(b));
    }

    fn count_error(&mut self, code: u16) {
        self.note_error(code);
    }

    fn broadcast_divergence(&mut self, table: &str) {
        self.ctx.metrics.broadcast_divergence(table);
    }

    fn backend_cancelled(&mut self, reason: CancelReason, statements: u64) {
        self.ctx.metrics.backend_cancelled(reason, statements);
    }

    fn rows_moved(&mut self, rows: u64) {
        self.ctx.metrics.rows_moved(rows);
    }

    fn merged(&mut self, kind: executor::MergeKind) {
        self.ctx.metrics.merged(kind);
    }
}

/// The state a session starts from, and returns to on COM_RESET_CONNECTION.
fn client_state(database: Option<String>, collation: u8, capabilities: u32) -> ClientState {
    ClientState {
        database,
        charset: set_names_for_collation(collation),
        multi_statements: capabilities & caps::MULTI_STATEMENTS != 0,
    }
}

pub(crate) struct Session<S> {
    client: ClientConn<S>,
    /// Runs the session's plans on the backend connections it holds.
    exec: Executor,
    ctx: Arc<Context>,
    /// The session as the process list and KILL see it; its id is `connection_id`.
    entry: Arc<Entry>,
    connection_id: u32,
    host: String,
    user: String,
    handshake_collation: u8,
    /// How statements are read after the handshake (and COM_RESET_CONNECTION).
    handshake_charset: Charset,
    /// How the client's statements are read now: its `character_set_client`.
    text_charset: Charset,
    nonce: [u8; 20],
    tls: bool,
    statements: statements::Statements,
    /// The pins last counted in the `dbmesh_session_pinned` metric, transaction included.
    counted_pins: Pins,
    /// The session's unit of work for the fence of moving slices: its current statement, or
    /// its open transaction (see [`crate::cutover`]).
    unit: Option<crate::cutover::Unit>,
    /// The session's `max_statement_time`: how long its reads and writes may run (`None`: no
    /// limit).
    max_statement_time: Option<Duration>,
    /// Whether `max_statement_time` is the user's or the proxy's default rather than a value
    /// the session SET (which its backend connections replay, so they report it themselves).
    time_limit_is_default: bool,
    /// The current statement's route as the slow and query logs show it, when they may log
    /// it (`None`: they will not, so the route is not described).
    route_note: Option<String>,
}

/// The time limit a session of `user` starts with: the user's, else the proxy's.
fn default_time_limit(rules: &rules::Rules, user: &str) -> Option<Duration> {
    let ms = rules
        .user(user)
        .and_then(|u| u.max_statement_time_ms)
        .unwrap_or(rules.proxy.max_statement_time_ms);
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Whether a COM_QUERY's text may say something of its own time limit (a `SET STATEMENT`, a
/// hint), checked on the bytes so that most statements cost no decoding here.
fn may_name_time_limit(sql: &[u8]) -> bool {
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let head = &sql[start..];
    matches!(head.first(), Some(b'/' | b'#' | b'-'))
        || head
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"SET"))
        || head.windows(3).any(|w| w == b"/*+")
}

/// How often a statement past its time limit is interrupted again while it is not over.
const INTERRUPT_AGAIN: Duration = Duration::from_millis(250);

/// Completes when `deadline` passes; never without one.
async fn expire(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match deadline {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
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
        let state = client_state(login.database, login.collation, login.capabilities);
        let found_rows = login.capabilities & caps::FOUND_ROWS != 0;
        let max_statement_time = default_time_limit(&ctx.snapshot.load().rules, &login.user);
        Session {
            exec: Executor::new(entry.id, found_rows, state, entry.cancel.clone())
                .with_coordinator(ctx.xa.as_ref().map(|xa| xa.coordinator.clone())),
            client: ClientConn {
                packets: client,
                capabilities: login.capabilities,
                ctx: ctx.clone(),
                diagnostics: Vec::new(),
                deadlocked: false,
                errors: 0,
                first_error: None,
                cancel: entry.cancel.clone(),
            },
            connection_id: entry.id,
            entry,
            host,
            user: login.user,
            handshake_collation: login.collation,
            handshake_charset: login.charset,
            text_charset: login.charset,
            nonce: login.nonce,
            tls: login.tls,
            statements: statements::Statements::default(),
            counted_pins: 0,
            unit: None,
            max_statement_time,
            time_limit_is_default: true,
            route_note: None,
            ctx,
        }
    }

    fn deprecate_eof(&self) -> bool {
        executor::Client::deprecate_eof(&self.client)
    }

    /// Serves the client's commands until it leaves; `watch` notices it leaving while a
    /// statement runs.
    pub(crate) async fn run(mut self, watch: ClientWatch) {
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
                let read = self.client.packets.read_packet(max_packet);
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
                    self.close_with(&e.to_server_error()).await;
                    break;
                }
                None => {
                    let err = if self.entry.killed() {
                        SessionError::ConnectionKilled
                    } else {
                        SessionError::Inactive
                    };
                    self.close_with(&err).await;
                    break;
                }
            };
            let Some(&command) = packet.first() else {
                self.send_error(&SessionError::EmptyCommand.to_server_error());
                if self.client.packets.flush().await.is_err() {
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
                command::processes::command_name(command),
                info.as_deref(),
                self.exec.state.database.as_deref(),
            );
            // Its key in the query digest: statements only, not the protocol's other commands.
            // A text statement's is taken from the text the process list shows (literals
            // become `?`, so how it was decoded only matters for non-ASCII names).
            let digest_key: Option<Arc<str>> = match command {
                com::QUERY => info.as_deref().map(|text| crate::digest::key(text).into()),
                com::STMT_EXECUTE => self.statements.digest_key(&packet),
                _ => None,
            };
            let log_settings =
                crate::query_log::Settings::of(&self.ctx.snapshot.load().rules.proxy);
            let sampled = self.ctx.metrics.query_log.pick(log_settings.every);
            // The text only when the rules ask for it (it holds the literals).
            let logged_text = match (&info, log_settings.text && digest_key.is_some()) {
                (Some(text), true) => Some(text.to_string()),
                _ => None,
            };
            self.route_note = log_settings.any().then(String::new);
            drop(info);
            self.client.errors = 0;
            self.client.first_error = None;
            self.exec.reported.rows = 0;
            self.exec.reported.backend_statements = 0;
            self.exec.reported.group_concat_cuts = 0;
            let started = Instant::now();
            let span = tracing::debug_span!(
                "statement",
                conn = self.connection_id,
                command = com::name(command),
                route = tracing::field::Empty
            );
            let mut packet = packet;
            if self.unit.is_none() {
                self.unit = Some(self.ctx.gate.enter());
            }
            let flow = match self.time_limit(command, &mut packet) {
                Ok(limit) => self.supervised(command, packet, span, limit, &watch).await,
                Err(err) => {
                    self.begin_statement();
                    self.error(err).await
                }
            };
            last_activity = Instant::now();
            let took = last_activity - started;
            self.ctx
                .metrics
                .statement_seconds
                .observe(took.as_secs_f64());
            self.ctx
                .metrics
                .group_concat_cuts
                .inc_by(self.exec.reported.group_concat_cuts);
            if let Some(fingerprint) = &digest_key {
                self.ctx.metrics.digest.record(&crate::digest::Observation {
                    fingerprint,
                    duration: took,
                    error: self.client.errors > 0,
                    rows: self.exec.reported.rows,
                    shards: self.exec.reported.backend_statements,
                });
                let slow = crate::query_log::log(
                    &log_settings,
                    sampled,
                    &crate::query_log::Statement {
                        connection_id: self.connection_id,
                        user: &self.user,
                        database: self.exec.state.database.as_deref(),
                        statement: logged_text.as_deref().unwrap_or(fingerprint),
                        route: self.route_note.as_deref().unwrap_or(""),
                        rows: self.exec.reported.rows,
                        backend_statements: self.exec.reported.backend_statements,
                        duration: took,
                        error: self.client.first_error,
                    },
                );
                if slow {
                    self.ctx.metrics.slow_statements.inc();
                }
            }
            if matches!(flow, Flow::Close) || self.entry.killed() {
                break;
            }
            if std::mem::take(&mut self.client.deadlocked) {
                self.exec.roll_back_after_deadlock().await;
            }
            if self.exec.has_uncollected_diagnostics() {
                let collected = self.exec.collect_diagnostics().await;
                self.client.diagnostics.extend(collected);
            }
            if self.exec.has_unnoted_writes() {
                self.exec.note_writes().await;
            }
            if self.exec.has_unsure_transaction_state() {
                self.exec.refresh_transaction_state().await;
            }
            self.settle();
            if !self.exec.transaction_open() {
                self.unit = None;
            }
            self.entry.idle(
                &command::processes::idle_state(&self),
                self.exec.state.database.as_deref(),
            );
        }
        self.finish().await;
    }

    /// How long the command may run: for a statement a limit bounds, its own limit
    /// (`SET STATEMENT max_statement_time = N FOR`, taken off `packet`, or a
    /// `MAX_EXECUTION_TIME` hint) or else the session's; `None` for no limit.
    fn time_limit(
        &mut self,
        command: u8,
        packet: &mut BytesMut,
    ) -> Result<Option<Duration>, ServerError> {
        let limit = match command {
            com::QUERY => {
                let own = may_name_time_limit(&packet[1..]);
                if !own && self.max_statement_time.is_none() {
                    return Ok(None);
                }
                let text = text::decode(&packet[1..], self.text_charset);
                let set = if own { sql::set_statement(&text) } else { None };
                match set {
                    None => sql::time_limit(&text),
                    Some(Err(what)) => return Err(ServerError::not_supported(what)),
                    Some(Ok(set)) => {
                        // An ASCII prefix has the same length in the client's bytes.
                        if !text[..set.statement_at].is_ascii() {
                            return Err(ServerError::not_supported(
                                "SET STATEMENT with characters other than ASCII before FOR",
                            ));
                        }
                        let statement = packet.split_off(1 + set.statement_at);
                        packet.truncate(1);
                        packet.unsplit(statement);
                        return Ok(set.limit);
                    }
                }
            }
            com::STMT_EXECUTE | com::STMT_BULK_EXECUTE => {
                match self.statements.time_limit(packet) {
                    Some(limit) => limit,
                    None => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        Ok(match limit {
            sql::TimeLimit::Session => self.max_statement_time,
            sql::TimeLimit::Own(limit) => limit,
            sql::TimeLimit::Unbounded => None,
        })
    }

    /// Runs one command, watching meanwhile for the client leaving and for the statement's
    /// time `limit`. A client that leaves has its statements interrupted on the backends and
    /// their connections closed (their answers are half read), and the session ends. Past the
    /// limit the backends' statements are interrupted (beside the command, again every
    /// [`INTERRUPT_AGAIN`] while it is not over) and the command goes on to its end, which
    /// then comes at once: the client gets 1969, and the connections stay clean.
    async fn supervised(
        &mut self,
        command: u8,
        packet: BytesMut,
        span: tracing::Span,
        limit: Option<Duration>,
        watch: &ClientWatch,
    ) -> Flow {
        let cancel = self.entry.cancel.clone();
        let metrics = self.ctx.metrics.clone();
        let session = self.connection_id;
        let mut deadline = limit.map(|limit| Box::pin(tokio::time::sleep(limit)));
        let mut expired = false;
        // A statement of a distributed transaction that waits for a row lock past this bound
        // may be in a deadlock across servers, which none of them detects.
        let lock_wait = self.exec.lock_wait_bound(&self.ctx.snapshot.load().rules);
        let mut lock_watch = lock_wait.map(|bound| Box::pin(tokio::time::sleep(bound)));
        let mut lock_interrupt: Option<tokio::task::JoinHandle<u64>> = None;
        let mut watching = true;
        let finished = {
            let dispatch = self.dispatch_fenced(command, packet).instrument(span);
            tokio::pin!(dispatch);
            loop {
                tokio::select! {
                    biased;
                    flow = &mut dispatch => break Some(flow),
                    () = watch.gone(), if watching => {
                        if !cancel.in_atomic_step() {
                            break None;
                        }
                        // A COMMIT on several shards runs to its end; its answer then finds
                        // the client gone, which ends the session.
                        watching = false;
                    }
                    () = expire(&mut deadline) => {
                        if let Some(interrupt) = cancel.time_limit_passed(session) {
                            let metrics = (!expired).then(|| metrics.clone());
                            tokio::spawn(async move {
                                let interrupted = interrupt.await;
                                if let Some(metrics) = metrics {
                                    metrics.backend_cancelled(CancelReason::TimeLimit, interrupted);
                                    tracing::debug!(conn = session, interrupted, "the statement's time limit passed");
                                }
                            });
                        }
                        expired = true;
                        // A statement that reached its server just after the interruption
                        // would run on: interrupt again while the command is not over.
                        if let Some(sleep) = deadline.as_mut() {
                            sleep.as_mut().reset(tokio::time::Instant::now() + INTERRUPT_AGAIN);
                        }
                    }
                    () = expire(&mut lock_watch) => {
                        let idle = lock_interrupt.as_ref().is_none_or(|i| i.is_finished());
                        if idle && !cancel.lock_wait_was_passed() {
                            if let Some(interrupt) = cancel.lock_wait_bound_passed(session) {
                                lock_interrupt = Some(tokio::spawn(interrupt));
                            }
                        }
                        // A wait that begins later in the statement is caught one bound later.
                        if let (Some(sleep), Some(bound)) = (lock_watch.as_mut(), lock_wait) {
                            sleep.as_mut().reset(tokio::time::Instant::now() + bound);
                        }
                    }
                }
            }
        };
        if let Some(interrupt) = lock_interrupt {
            // Let it end here, so that no late KILL QUERY reaches the session's next statement.
            let interrupted = interrupt.await.unwrap_or(0);
            metrics.backend_cancelled(CancelReason::LockWait, interrupted);
        }
        cancel.lock_wait_over();
        if expired {
            cancel.statement_over();
        }
        match finished {
            Some(flow) => flow,
            None => {
                let interrupted = cancel.end_connections(session).await;
                metrics.backend_cancelled(CancelReason::ClientGone, interrupted);
                tracing::debug!(
                    conn = session,
                    interrupted,
                    "the client left during a statement"
                );
                self.exec.abandon();
                Flow::Close
            }
        }
    }

    /// Runs one command; while a fence of moving slices holds the session's unit of work, a
    /// command whose statement reaches a fenced slice waits for the fence to change and runs
    /// again, routed by the map then in force (nothing of it was sent before).
    async fn dispatch_fenced(&mut self, command: u8, mut packet: BytesMut) -> Flow {
        loop {
            let (check, changes) = match &self.unit {
                Some(unit) => self.ctx.gate.check(unit),
                None => return command::run(self, command, packet).await,
            };
            let Some(check) = check else {
                return command::run(self, command, packet).await;
            };
            let again = packet.clone();
            self.exec.set_fence(Some(check));
            let flow = command::run(self, command, packet).await;
            self.exec.set_fence(None);
            if flow != Flow::Fenced {
                return flow;
            }
            self.ctx.gate.wait(changes).await;
            packet = again;
        }
    }

    /// After a command: the executor gives back the connections nothing pins, and the
    /// session's pins are counted.
    fn settle(&mut self) {
        let pins = self.exec.settle();
        if pins != self.counted_pins {
            self.ctx.metrics.set_pinned(self.counted_pins, pins);
            self.counted_pins = pins;
        }
    }

    /// Returns the backend connections to the pool if they can be cleaned, else closes them.
    async fn finish(&mut self) {
        self.ctx.metrics.set_pinned(self.counted_pins, 0);
        self.exec.release_all().await;
        self.client.packets.shutdown().await;
    }

    fn send_error(&mut self, err: &ServerError) {
        executor::Client::send_error(&mut self.client, err);
    }

    async fn flush(&mut self) -> Flow {
        executor::flush(&mut self.client).await
    }

    async fn ok(&mut self) -> Flow {
        self.exec.ok(&mut self.client).await
    }

    /// Answers `err`, any crate's error, as its ERR packet.
    async fn error(&mut self, err: impl ClientError) -> Flow {
        answer_error(&mut self.client, &err.to_server_error()).await
    }

    /// Answers `err` and ends the session: after it the connection is not usable.
    async fn close_with(&mut self, err: &impl ClientError) -> Flow {
        self.send_error(&err.to_server_error());
        let _ = self.client.packets.flush().await;
        Flow::Close
    }

    /// The connection to `data_source` died (see [`Executor::backend_lost`]).
    async fn backend_lost(&mut self, data_source: &str, error: backend::BackendError) -> Flow {
        self.exec
            .backend_lost(&mut self.client, data_source, error)
            .await
    }

    /// What COM_RESET_CONNECTION and COM_CHANGE_USER return a session to, its backend
    /// connections given back first.
    async fn reset_session_state(&mut self) {
        let state = client_state(
            self.exec.state.database.take(),
            self.handshake_collation,
            self.client.capabilities,
        );
        self.exec.reset(state).await;
        self.max_statement_time = self.default_time_limit();
        self.time_limit_is_default = true;
        self.text_charset = self.handshake_charset;
        self.statements.clear();
        self.client.diagnostics.clear();
    }

    /// The time limit the session starts with (and returns to on `SET max_statement_time =
    /// DEFAULT`).
    fn default_time_limit(&self) -> Option<Duration> {
        default_time_limit(&self.ctx.snapshot.load().rules, &self.user)
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
        let snapshot = self.ctx.snapshot.load_full();
        let data_source = &snapshot.rules.schema.default_data_source;
        match self
            .exec
            .forward(&mut self.client, &snapshot, data_source, packet, kind)
            .await
        {
            Ok(_) => Flow::Continue,
            Err(flow) => flow,
        }
    }
}
