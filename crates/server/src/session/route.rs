//! Running routed statements: the router turns SQL into a [`Plan`]; this module runs it on the
//! session's backend connections and gives the client one answer.
//!
//! - one target: the response is relayed as it arrives (the pass-through hot path sends the
//!   client's own packet when the SQL is unchanged);
//! - DML/DDL on several targets: run on each (DML inside one transaction per target unless the
//!   client's own transaction is open), affected rows summed into one OK;
//! - a read of a broadcast table: any one copy;
//! - a plain scatter read: the shards' rows one after another;
//! - a read with ORDER BY, LIMIT, aggregates, GROUP BY or DISTINCT across shards: merged
//!   ([`super::merge`]);
//! - session statements (SET, BEGIN/COMMIT/ROLLBACK, savepoints) run on every held connection
//!   and are replayed on connections acquired later, so all of a session's connections agree.

use std::borrow::Cow;

use backend::BackendError;
use bytes::{BufMut, BytesMut};
use protocol::constants::{com, status};
use protocol::packets::OkPacket;
use protocol::response::{
    drain_after_header, read_result_header, relay_rows, ResponseKind, ResultHeader, RowsEnd,
};
use protocol::resultset::{write_end_of_rows, write_text_result, ColumnDef};
use protocol::stmt::Execute;
use protocol::text::{self, Charset};
use protocol::ServerError;
use router::{Combine, IdStyle, Plan, RouteError, SessionStatement, StatementKind, Target};
use tokio::io::{AsyncRead, AsyncWrite};

use super::access::{self, Access};
use super::fill::IdRequest;
use super::pin;
use super::show::Asked;
use super::{Flow, Session};
use crate::intercept::unqualified_system_tables;

/// The client-facing error for a routing failure.
pub(super) fn route_error(e: &RouteError) -> ServerError {
    ServerError::new(e.code(), e.sqlstate(), e.message())
}

/// The one data source every statement of a multi-statement text goes to, if there is one
/// and each statement there needs one target only (session statements included: they run on
/// the default data source like any other statement of the text).
fn multi_statement_target(snapshot: &crate::Snapshot, text: &str) -> Option<String> {
    let plans = snapshot.router.route_multi(text).ok()?;
    if plans.len() < 2 {
        return None;
    }
    let default = &snapshot.rules.schema.default_data_source;
    let mut target: Option<&str> = None;
    for plan in &plans {
        let ds = match (&plan.kind, plan.targets.as_slice()) {
            (StatementKind::Session(SessionStatement::Set(_)), _) => default.as_str(),
            (StatementKind::Session(_), _) => return None,
            (_, [only]) => only.data_source.as_str(),
            (_, [first, ..]) if plan.combine == Combine::AnyOne => first.data_source.as_str(),
            _ => return None,
        };
        match target {
            None => target = Some(ds),
            Some(t) if t == ds => {}
            Some(_) => return None,
        }
    }
    target.map(str::to_string)
}

/// The character set a SET statement gives the client's statements, if it changes it; an
/// error for one the proxy cannot read, or cannot tell before the server runs the statement.
fn charset_change(statement: &str) -> Result<Option<Charset>, ServerError> {
    match sql::client_charset(statement) {
        None => Ok(None),
        Some(sql::ClientCharset::Named(name)) => crate::handshake::lexing(&name).map(Some),
        Some(sql::ClientCharset::Unknown) => Err(ServerError::not_supported(
            "setting the client character set to DEFAULT or an expression",
        )),
    }
}

/// What to send each target.
#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    /// COM_QUERY; `original` is the client's packet, sent as-is when a target's SQL is the
    /// client's text unchanged.
    Text { original: &'a [u8], text: &'a str },
    /// COM_STMT_EXECUTE of a statement the session prepares on each target as needed.
    Execute { exec: &'a Execute },
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// COM_QUERY.
    pub(super) async fn query(&mut self, packet: &[u8]) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let text = text::decode(&packet[1..], self.text_charset);
        let items = pin::items(&text);
        self.pins = pin::scan(&items).apply(self.pins);
        if let Some(err) = unqualified_system_tables(self.state.database.as_deref(), &text) {
            return self.error(err).await;
        }
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route(&text, &[]))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let plan = match routed {
            Ok(plan) => plan,
            Err(RouteError::IdsNeeded {
                sequence, count, ..
            }) => {
                let request = IdRequest {
                    sequence: &sequence,
                    count,
                };
                self.access = Access::Write;
                return self.query_filled(&snapshot, packet, &text, request).await;
            }
            Err(e) => {
                if let Some(data_source) = multi_statement_target(&snapshot, &text) {
                    return self
                        .forward_multi(&data_source, packet, &text, &snapshot)
                        .await;
                }
                return self.error(route_error(&e)).await;
            }
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            let route: Vec<String> = plan
                .describe()
                .into_iter()
                .map(|(ds, sql)| format!("{ds}: {sql}"))
                .collect();
            tracing::Span::current().record(
                "route",
                tracing::field::display(format!("{} [{}]", plan.combine, route.join("; "))),
            );
        }
        self.access = self.effective_access(access::classify(&plan.kind, &text, &items));
        if let StatementKind::Session(statement) = &plan.kind {
            return self.session_statement(statement, packet, &text).await;
        }
        self.pins = pin::unread_set(&plan.kind, &text).apply(self.pins);
        if plan.kind == StatementKind::Show && plan.targets.len() == 1 {
            return self.run_show(&plan, &text, Asked::Query).await;
        }
        let request = Request::Text {
            original: packet,
            text: &text,
        };
        let flow = self.run_plan(&plan, request).await;
        if plan.kind == StatementKind::Ddl {
            // The definition of a table may have changed: column lists are read again.
            snapshot.router.forget_columns();
        }
        flow
    }

    /// A multi-statement text whose statements all go to one data source: sent there as one
    /// text (the client's own packet when no statement needed rewriting), so its results come
    /// back in order as from a single server.
    async fn forward_multi(
        &mut self,
        data_source: &str,
        packet: &[u8],
        text: &str,
        snapshot: &crate::Snapshot,
    ) -> Flow {
        // Several statements in one text run on the primary, as writes.
        self.access = Access::Write;
        let statements = sql::split(text);
        let mut physical = Vec::with_capacity(statements.len());
        let mut settings = Vec::new();
        let mut ddl = false;
        for statement in &statements {
            match snapshot.router.route(statement, &[]) {
                Ok(plan) => {
                    ddl |= plan.kind == StatementKind::Ddl;
                    if let StatementKind::Session(SessionStatement::Set(_)) = plan.kind {
                        settings.push(*statement);
                    }
                    match plan.targets.first() {
                        Some(t) => physical.push(t.sql.clone()),
                        None => physical.push(statement.to_string()),
                    }
                }
                Err(e) => return self.error(route_error(&e)).await,
            }
        }
        let mut charset = None;
        for statement in &settings {
            match charset_change(statement) {
                Ok(change) => charset = change.or(charset),
                Err(e) => return self.error(e).await,
            }
        }
        let unchanged = physical.iter().zip(&statements).all(|(p, s)| p == s);
        let request = if unchanged {
            BytesMut::from(packet)
        } else {
            let joined = physical.join(";\n");
            let mut p = BytesMut::with_capacity(1 + joined.len());
            p.put_u8(com::QUERY);
            p.put_slice(&text::encode(&joined));
            p
        };
        let outcome = self
            .forward_to(data_source, &request, ResponseKind::Query)
            .await;
        if ddl {
            snapshot.router.forget_columns();
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(flow) => return flow,
        };
        if settings.is_empty() {
            return Flow::Continue;
        }
        let Some(index) = self.held.iter().position(|h| h.data_source == data_source) else {
            return Flow::Continue;
        };
        if outcome.error.is_some() {
            // Which of the text's SET statements ran is unknown: the connection's state is
            // not tracked any more, so it must not serve anyone else.
            self.held.swap_remove(index);
            return Flow::Continue;
        }
        for statement in settings {
            self.record_setting(statement);
        }
        if let Some(charset) = charset {
            self.text_charset = charset;
        }
        Flow::Continue
    }

    /// A session statement (`SET …`) ran on every held connection: later connections replay it.
    fn record_setting(&mut self, statement: &str) {
        backend::record_setting(&mut self.replay, statement);
        for held in &mut self.held {
            held.conn.note_setting(statement);
        }
    }

    /// Runs a plan that has targets.
    pub(super) async fn run_plan(&mut self, plan: &Plan, request: Request<'_>) -> Flow {
        let kind = match request {
            Request::Text { .. } => ResponseKind::Query,
            Request::Execute { exec } => ResponseKind::Execute {
                cursor: exec.flags != 0,
            },
        };
        match &plan.combine {
            Combine::Single => self.run_one(&plan.targets[0], request, kind).await,
            Combine::AnyOne => {
                // Prefer a copy on a connection the session already holds (its transaction),
                // then one whose data source can serve a read (a dead primary without a
                // replica serving in its place fails every read).
                let snapshot = self.ctx.snapshot.load();
                let readable = |t: &&Target| {
                    snapshot
                        .clusters
                        .get(&t.data_source)
                        .is_some_and(|c| c.can_read())
                };
                let target = plan
                    .targets
                    .iter()
                    .find(|t| self.held.iter().any(|h| h.data_source == t.data_source))
                    .or_else(|| plan.targets.iter().find(readable))
                    .unwrap_or(&plan.targets[0]);
                drop(snapshot);
                self.run_one(target, request, kind).await
            }
            Combine::SumAffected | Combine::EveryCopy(_) => {
                self.run_sum_affected(plan, request, None).await
            }
            Combine::Merge(spec) if spec.is_concat() => self.run_concat(plan, request).await,
            Combine::Merge(spec) => self.run_merge(plan, spec, request).await,
        }
    }

    /// A connection for `target` and the packet to send it; on failure the client has its
    /// answer and the returned flow says how the session goes on.
    pub(super) async fn target_request<'r>(
        &mut self,
        target: &Target,
        request: Request<'r>,
    ) -> Result<(usize, Cow<'r, [u8]>), Flow> {
        loop {
            let index = match self.conn_for(&target.data_source).await {
                Ok(i) => i,
                Err(e) => return Err(self.error(e.to_server_error()).await),
            };
            match self.build_request(index, target, request).await {
                Ok(packet) => return Ok((index, packet)),
                Err(Some(flow)) => return Err(flow),
                // A replica failed while the statement was prepared there; it is out now.
                Err(None) => continue,
            }
        }
    }

    /// Sends one target its request and relays the response; a read that a failing replica
    /// did not answer runs once more elsewhere.
    async fn run_one(&mut self, target: &Target, request: Request<'_>, kind: ResponseKind) -> Flow {
        loop {
            let (index, packet) = match self.target_request(target, request).await {
                Ok(r) => r,
                Err(flow) => return flow,
            };
            match self.relay_read(index, &packet, kind).await {
                Ok(_) => return Flow::Continue,
                Err(Some(flow)) => return flow,
                // The replica is out now, so the next attempt goes elsewhere.
                Err(None) => continue,
            }
        }
    }

    /// The packet for `target` on held connection `index`, preparing the statement there
    /// first for an execute. `Err(None)`: a replica failed and is out; try again.
    async fn build_request<'r>(
        &mut self,
        index: usize,
        target: &Target,
        request: Request<'r>,
    ) -> Result<Cow<'r, [u8]>, Option<Flow>> {
        match request {
            Request::Text { original, text } => {
                if target.sql == text {
                    return Ok(Cow::Borrowed(original));
                }
                let mut p = Vec::with_capacity(1 + target.sql.len());
                p.push(com::QUERY);
                p.extend_from_slice(&text::encode(&target.sql));
                Ok(Cow::Owned(p))
            }
            Request::Execute { exec } => {
                let backend_id = match self.held[index].conn.prepare(&target.sql).await {
                    Ok(id) => id,
                    Err(e) => {
                        if self.on_replica(index) && !matches!(e, BackendError::Server { .. }) {
                            self.replica_failed(index, &e);
                            return Err(None);
                        }
                        return Err(Some(self.fail_backend(index, e).await));
                    }
                };
                let subset;
                let exec = match &target.params {
                    None => exec,
                    Some(indexes) => {
                        subset = Execute {
                            statement_id: exec.statement_id,
                            flags: exec.flags,
                            types: indexes
                                .iter()
                                .filter_map(|&i| exec.types.get(i).copied())
                                .collect(),
                            values: indexes
                                .iter()
                                .filter_map(|&i| exec.values.get(i).cloned())
                                .collect(),
                        };
                        &subset
                    }
                };
                let mut p = BytesMut::new();
                exec.encode(backend_id, &mut p);
                Ok(Cow::Owned(p.into()))
            }
        }
    }

    /// DML or DDL on one or more targets: affected rows summed into one OK (one copy's for
    /// [`Combine::EveryCopy`]), whose last insert id is `insert_id` when given (the first id a
    /// sequence filled in). DML on several targets runs inside a transaction on each (unless
    /// the client's transaction is already open, or autocommit is off), rolled back everywhere
    /// if any target fails or the copies of a broadcast table diverge.
    pub(super) async fn run_sum_affected(
        &mut self,
        plan: &Plan,
        request: Request<'_>,
        insert_id: Option<u64>,
    ) -> Flow {
        let dml = matches!(
            plan.kind,
            StatementKind::Insert | StatementKind::Update | StatementKind::Delete
        );
        // BEGIN would commit the open transaction of a session with autocommit off.
        let wrap = dml && !self.in_transaction_now() && plan.targets.len() > 1;
        let copies = match &plan.combine {
            Combine::EveryCopy(table) => Some(table.as_str()),
            _ => None,
        };
        let mut counts: Vec<u64> = Vec::with_capacity(plan.targets.len());
        let mut indexes = Vec::with_capacity(plan.targets.len());
        for target in &plan.targets {
            match self.conn_for(&target.data_source).await {
                Ok(i) => indexes.push(i),
                Err(e) => return self.error(e.to_server_error()).await,
            }
        }
        let mut begun: Vec<usize> = Vec::new();
        let mut total = OkPacket::default();
        let mut failure: Option<ServerError> = None;
        for (target, &index) in plan.targets.iter().zip(&indexes) {
            if wrap && !begun.contains(&index) {
                if let Err(e) = self.held[index].conn.query("BEGIN").await {
                    failure = Some(e.to_server_error());
                    break;
                }
                begun.push(index);
            }
            let packet = match self.build_request(index, target, request).await {
                Ok(p) => p,
                // Writes use the primary, so there is nothing to retry.
                Err(flow) => return flow.unwrap_or(Flow::Close),
            };
            let conn = &mut self.held[index].conn;
            if let Err(e) = conn.send_command(&packet).await {
                return self.fail_backend(index, e).await;
            }
            match conn.read_query_result().await {
                Ok(result) => {
                    counts.push(result.ok.affected_rows);
                    if result.ok.warnings > 0 {
                        self.held[index].diagnostics = true;
                    }
                    // Every copy warns about the same rows: one copy's warnings are the answer's.
                    if copies.is_none() || counts.len() == 1 {
                        total.affected_rows += result.ok.affected_rows;
                        total.warnings = total.warnings.saturating_add(result.ok.warnings);
                    }
                    if total.last_insert_id == 0 {
                        total.last_insert_id = result.ok.last_insert_id;
                    }
                }
                Err(e @ backend::BackendError::Server { .. }) => {
                    failure = Some(e.to_server_error());
                    break;
                }
                Err(e) => return self.fail_backend(index, e).await,
            }
        }
        let diverged = match copies {
            Some(table) if failure.is_none() => self.divergence(table, plan, &counts, !wrap),
            _ => None,
        };
        // Inside the client's transaction the statement cannot be undone alone: the whole
        // transaction is, as MariaDB does on a deadlock.
        let client_rollback = diverged.is_some() && !wrap;
        let rollback = if client_rollback {
            (0..self.held.len()).collect()
        } else {
            begun
        };
        failure = failure.or(diverged);
        let finish = if failure.is_some() {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        for &index in &rollback {
            if let Err(e) = self.held[index].conn.query(finish).await {
                // A failed COMMIT after others succeeded cannot be undone without distributed
                // transactions; report it rather than claim success.
                failure.get_or_insert(e.to_server_error());
            }
        }
        if client_rollback {
            self.in_transaction = false;
        }
        if let Some(err) = failure {
            return self.error(err).await;
        }
        total.status = self.client_status();
        self.status = total.status;
        if let Some(id) = insert_id {
            total.last_insert_id = id;
        }
        if total.last_insert_id != 0 {
            self.last_insert_id = total.last_insert_id;
        }
        self.row_count = total.affected_rows as i64;
        self.client.write_with(|b| total.encode(0, b));
        self.flush().await
    }

    /// The error for copies of broadcast table `table` that changed different numbers of rows
    /// (`counts`, one per target of `plan`), logged and counted; `None` when they agree. The
    /// caller rolls the statement back (the client's whole transaction when `in_transaction`):
    /// an answer from one copy would hide that the others hold other rows, and every later
    /// read could see either.
    fn divergence(
        &self,
        table: &str,
        plan: &Plan,
        counts: &[u64],
        in_transaction: bool,
    ) -> Option<ServerError> {
        if counts.windows(2).all(|w| w[0] == w[1]) {
            return None;
        }
        let changed: Vec<String> = plan
            .targets
            .iter()
            .zip(counts)
            .map(|(t, n)| format!("{} {n}", t.data_source))
            .collect();
        let changed = changed.join(", ");
        tracing::error!(table, changed, "copies of a broadcast table diverge");
        self.ctx.metrics.broadcast_divergence(table);
        let rolled_back = if in_transaction {
            "the transaction was rolled back"
        } else {
            "the statement was rolled back"
        };
        Some(ServerError::new(
            1105,
            "HY000",
            format!(
                "dbmesh: the copies of broadcast table {table} diverge (rows changed per data \
                 source: {changed}); {rolled_back}, repair the copies"
            ),
        ))
    }

    /// A scatter read without ordering: every target's rows, one target after another.
    ///
    /// A session has one connection per data source, so targets on the same data source (two
    /// physical tables in one database) run one after the other on it: the targets go out in
    /// waves, each wave holding at most one target per data source, and within a wave every
    /// data source works concurrently.
    async fn run_concat(&mut self, plan: &Plan, request: Request<'_>) -> Flow {
        loop {
            let flow = self.concat_once(plan, request).await;
            if !std::mem::take(&mut self.retry_read) {
                return flow;
            }
        }
    }

    async fn concat_once(&mut self, plan: &Plan, request: Request<'_>) -> Flow {
        let mut waves: Vec<Vec<&Target>> = Vec::new();
        for target in &plan.targets {
            let free = waves
                .iter()
                .position(|w| w.iter().all(|t| t.data_source != target.data_source));
            match free {
                Some(w) => waves[w].push(target),
                None => waves.push(vec![target]),
            }
        }
        let deprecate_eof = self.deprecate_eof();
        let mut warnings: u16 = 0;
        for (wave_number, wave) in waves.iter().enumerate() {
            let mut indexes = Vec::with_capacity(wave.len());
            for target in wave {
                let (index, packet) = match self.target_request(target, request).await {
                    Ok(r) => r,
                    Err(flow) => return flow,
                };
                if let Err(e) = self.held[index].conn.send_command(&packet).await {
                    if wave_number == 0 && self.retry_scatter(index, &indexes, &e) {
                        return Flow::Continue;
                    }
                    return self.fail_backend(index, e).await;
                }
                indexes.push(index);
            }
            let mut headers = Vec::with_capacity(indexes.len());
            for &index in &indexes {
                match read_result_header(self.held[index].conn.packets()).await {
                    Ok(h) => headers.push(h),
                    Err(error) => {
                        let source_name = self.held[index].data_source.clone();
                        let lost = backend::BackendError::Lost { source_name, error };
                        // Before the first wave's columns nothing reached the client.
                        if wave_number == 0 && self.retry_scatter(index, &indexes, &lost) {
                            return Flow::Continue;
                        }
                        return self.backend_lost(index, lost).await;
                    }
                }
            }
            let failed = headers.iter().find_map(|h| match h {
                ResultHeader::Err(e) => Some(e.clone()),
                ResultHeader::Ok(_) => Some(ServerError::not_supported(
                    "a statement without a result set on several shards",
                )),
                ResultHeader::Columns(_) => None,
            });
            if let Some(err) = failed {
                for (h, &index) in headers.iter().zip(&indexes) {
                    if let Err(error) = drain_after_header(self.held[index].conn.packets(), h).await
                    {
                        let source_name = self.held[index].data_source.clone();
                        let lost = backend::BackendError::Lost { source_name, error };
                        return self.backend_lost(index, lost).await;
                    }
                }
                // Before the first wave's rows this is the whole answer; later, an error packet in
                // place of a row ends the result, as a server's mid-result error does.
                return self.error(err).await;
            }
            if wave_number == 0 {
                let Some(ResultHeader::Columns(columns)) = headers.first() else {
                    return self
                        .error(ServerError::internal("scatter without targets"))
                        .await;
                };
                self.client
                    .write_with(|b| protocol::buf::put_lenenc_int(b, columns.len() as u64));
                for c in columns {
                    self.client.write_packet(c);
                }
                if !deprecate_eof {
                    let status = self.client_status();
                    self.client
                        .write_with(|b| protocol::packets::encode_eof(0, status, b));
                }
            }
            for (pos, &index) in indexes.iter().enumerate() {
                let held = &mut self.held[index];
                match relay_rows(held.conn.packets(), &mut self.client).await {
                    Ok(RowsEnd::Done(ok)) => warnings = warnings.saturating_add(ok.warnings),
                    Ok(RowsEnd::Err(err)) => {
                        // The error ends the result for the client; the other shards' rows
                        // are read and dropped so their connections stay usable.
                        self.ctx.metrics.error(err.code);
                        for &other in &indexes[pos + 1..] {
                            let conn = self.held[other].conn.packets();
                            if protocol::response::drain_rows(conn).await.is_err() {
                                return Flow::Close;
                            }
                        }
                        return self.flush().await;
                    }
                    Err(protocol::response::RelayError::Client(_)) => return Flow::Close,
                    Err(protocol::response::RelayError::Backend(error)) => {
                        let source_name = held.data_source.clone();
                        let lost = backend::BackendError::Lost { source_name, error };
                        return self.backend_lost(index, lost).await;
                    }
                }
            }
        }
        let status = self.client_status();
        write_end_of_rows(&mut self.client, deprecate_eof, warnings, status);
        self.flush().await
    }

    /// Status flags for answers the proxy composes: autocommit and whether a transaction is
    /// open on any held connection.
    pub(super) fn client_status(&self) -> u16 {
        let mut flags = self.status & !(status::IN_TRANS | status::MORE_RESULTS_EXISTS);
        if self.in_transaction || self.held.iter().any(|h| h.conn.in_transaction()) {
            flags |= status::IN_TRANS;
        }
        flags
    }

    /// SET, transaction control, USE, EXPLAIN ROUTE.
    pub(super) async fn session_statement(
        &mut self,
        statement: &SessionStatement,
        packet: &[u8],
        text: &str,
    ) -> Flow {
        match statement {
            SessionStatement::Use(db) => self.use_database(db).await,
            SessionStatement::ExplainRoute(sql) => self.explain_route(sql).await,
            SessionStatement::Set(_) => {
                let charset = match charset_change(text) {
                    Ok(charset) => charset,
                    Err(e) => return self.error(e).await,
                };
                let flow = self.everywhere(packet, text).await;
                if !matches!(flow, Flow::Continue) || !self.last_statement_ok {
                    return flow;
                }
                if let Some(charset) = charset {
                    self.text_charset = charset;
                }
                if sql::strip_leading_words(text, &["SET", "TRANSACTION"]).is_some() {
                    self.next_transaction = Some(super::NextTransaction {
                        statement: text.to_string(),
                        declared_now: true,
                        begun: false,
                    });
                    self.pins |= pin::PinReason::NextTransaction.bit();
                } else {
                    self.record_setting(text);
                }
                flow
            }
            SessionStatement::Begin => {
                let flow = self.everywhere(packet, text).await;
                if self.last_statement_ok {
                    self.in_transaction = true;
                }
                flow
            }
            SessionStatement::Commit | SessionStatement::Rollback => {
                let flow = self.everywhere(packet, text).await;
                self.in_transaction = false;
                flow
            }
            SessionStatement::Savepoint(_)
            | SessionStatement::ReleaseSavepoint(_)
            | SessionStatement::RollbackToSavepoint(_) => self.everywhere(packet, text).await,
        }
    }

    /// Runs a session statement on every held connection, relaying the answer of one of them:
    /// the default data source's (acquired if none is held). The other connections run it
    /// first, so the client's answer comes when every shard is done: a COMMIT answered earlier
    /// let the client's next read, on another session, miss a shard's committed rows.
    async fn everywhere(&mut self, packet: &[u8], text: &str) -> Flow {
        let default = self.default_data_source();
        self.last_statement_ok = false;
        let index = match self.conn_for(&default).await {
            Ok(i) => i,
            Err(e) => return self.error(e.to_server_error()).await,
        };
        let mut lost = None;
        for (i, held) in self.held.iter_mut().enumerate() {
            if i == index {
                continue;
            }
            match held.conn.query(text).await {
                Ok(_) | Err(backend::BackendError::Server { .. }) => {}
                Err(e) => {
                    lost = Some((i, e));
                    break;
                }
            }
        }
        if let Some((i, e)) = lost {
            return self.backend_lost(i, e).await;
        }
        let outcome = match self.relay_on(index, packet, ResponseKind::Query).await {
            Ok(o) => o,
            Err(flow) => return flow,
        };
        self.last_statement_ok = outcome.error.is_none();
        Flow::Continue
    }

    /// `EXPLAIN ROUTE <statement>`: one row per target.
    async fn explain_route(&mut self, sql: &str) -> Flow {
        let snapshot = self.ctx.snapshot.load_full();
        let routed = match self
            .route_with_columns(&snapshot, |router| router.route(sql, &[]))
            .await
        {
            Ok(routed) => routed,
            Err(flow) => return flow,
        };
        let plan = match routed {
            Ok(plan) => plan,
            // Shown with real ids (taken and then skipped, a gap like any unused id).
            Err(RouteError::IdsNeeded {
                sequence, count, ..
            }) => {
                let request = IdRequest {
                    sequence: &sequence,
                    count,
                };
                match self
                    .route_filling(&snapshot, sql, &[], request, IdStyle::Literal)
                    .await
                {
                    Ok((plan, _)) => plan,
                    Err(e) => return self.error(e).await,
                }
            }
            Err(e) => return self.error(route_error(&e)).await,
        };
        let rows: Vec<[Option<Vec<u8>>; 2]> = if plan.targets.is_empty() {
            vec![[
                Some(b"(proxy)".to_vec()),
                Some(format!("{}", plan.kind).into_bytes()),
            ]]
        } else {
            plan.describe()
                .into_iter()
                .map(|(ds, sql)| [Some(ds.into_bytes()), Some(text::encode(&sql).into_owned())])
                .collect()
        };
        let columns = [
            ColumnDef::varchar("data_source", 64),
            ColumnDef::varchar("sql", 65535),
        ];
        let deprecate_eof = self.deprecate_eof();
        let status = self.client_status();
        write_text_result(&mut self.client, &columns, rows, deprecate_eof, status);
        self.flush().await
    }

    /// A backend error during a multi-target statement: a server error is the client's
    /// answer; a lost connection ends the session (its state on that backend is gone).
    pub(super) async fn fail_backend(&mut self, index: usize, e: backend::BackendError) -> Flow {
        match e {
            backend::BackendError::Server { .. } => self.error(e.to_server_error()).await,
            other => self.backend_lost(index, other).await,
        }
    }
}
