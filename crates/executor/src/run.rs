//! Running a routed plan on the session's connections and giving the client one answer:
//!
//! - one target: the response is relayed as it arrives (the pass-through hot path sends the
//!   client's own packet when the SQL is unchanged);
//! - DML/DDL on several targets: run on each (DML inside one transaction per target unless the
//!   client's own transaction is open), affected rows summed into one OK;
//! - a read of a broadcast table: any one copy;
//! - a plain scatter read: the shards' rows one after another;
//! - a read with ORDER BY, LIMIT, aggregates, GROUP BY or DISTINCT across shards: merged
//!   ([`crate::merged`]).

use std::borrow::Cow;

use backend::BackendError;
use bytes::BytesMut;
use protocol::constants::com;
use protocol::packets::OkPacket;
use protocol::response::{
    drain_after_header, read_result_header, relay_rows, RelayError, RelayOutcome, ResponseKind,
    ResultHeader, RowsEnd,
};
use protocol::resultset::write_end_of_rows;
use protocol::stmt::Execute;
use protocol::ServerError;
use protocol::{text, ClientError};
use router::{Combine, Plan, StatementKind, Target};
use tracing::Instrument;

use crate::cancel::{drain_or_interrupt, time_limit_error, CancelReason};
use crate::error::ExecError;
use crate::merged::MergeKind;
use crate::{answer_error, client_error, flush, Client, Executor, Flow, Snapshot};

/// What to send each target.
#[derive(Clone, Copy)]
pub enum Request<'a> {
    /// COM_QUERY; `original` is the client's packet, sent as-is when a target's SQL is the
    /// client's text unchanged.
    Text { original: &'a [u8], text: &'a str },
    /// COM_STMT_EXECUTE of a statement the session prepares on each target as needed.
    Execute { exec: &'a Execute },
}

/// Why sending a scatter read's requests stopped short of its result headers.
pub(crate) enum Stop {
    /// A replica failed before anything reached the client; it is out now: run the read
    /// again.
    Retry,
    /// The client has its answer; the session goes on as the flow says.
    Answered(Flow),
}

impl Executor {
    /// Runs a plan that has targets.
    pub async fn run_plan<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        request: Request<'_>,
    ) -> Flow {
        let targets = plan.targets.iter();
        if self.fenced(
            snapshot,
            targets.map(|t| (t.data_source.as_str(), t.sql.as_str())),
        ) {
            return Flow::Fenced;
        }
        self.reported.backend_statements = plan.targets.len() as u64;
        let kind = match request {
            Request::Text { .. } => ResponseKind::Query,
            Request::Execute { exec } => ResponseKind::Execute {
                cursor: exec.flags != 0,
            },
        };
        match &plan.combine {
            Combine::Single => {
                self.run_one(client, snapshot, plan, &plan.targets[0], request, kind)
                    .await
            }
            Combine::AnyOne => {
                // Prefer a copy on a connection the session already holds (its transaction),
                // then one whose data source can serve a read (a dead primary without a
                // replica serving in its place fails every read).
                let readable = |t: &&Target| {
                    snapshot
                        .clusters
                        .get(&t.data_source)
                        .is_some_and(|c| c.can_read())
                };
                let target = plan
                    .targets
                    .iter()
                    .find(|t| self.holds(&t.data_source))
                    .or_else(|| plan.targets.iter().find(readable))
                    .unwrap_or(&plan.targets[0]);
                self.run_one(client, snapshot, plan, target, request, kind)
                    .await
            }
            Combine::SumAffected | Combine::OneByOne | Combine::EveryCopy(_) => {
                self.run_sum_affected(client, snapshot, plan, request, None)
                    .await
            }
            Combine::Merge(spec) => {
                let kind = MergeKind::of(spec);
                client.merged(kind);
                let span =
                    tracing::debug_span!("merge", kind = kind.label(), shards = plan.targets.len());
                if spec.is_concat() {
                    self.run_concat(client, snapshot, plan, request)
                        .instrument(span)
                        .await
                } else {
                    self.run_merge(client, snapshot, plan, spec, request)
                        .instrument(span)
                        .await
                }
            }
            Combine::MoveRows(mv) => self.run_move(client, snapshot, mv).await,
        }
    }

    /// A connection for `target` and the packet to send it; on failure the client has its
    /// answer and the returned flow says how the session goes on.
    pub(crate) async fn target_request<'r, C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        target: &Target,
        request: Request<'r>,
    ) -> Result<Cow<'r, [u8]>, Flow> {
        loop {
            if let Err(e) = self.conn_for(snapshot, &target.data_source).await {
                return Err(answer_error(client, &e.to_server_error()).await);
            }
            match self.build_request(client, target, request).await {
                Ok(packet) => return Ok(packet),
                Err(Some(flow)) => return Err(flow),
                // A replica failed while the statement was prepared there; it is out now.
                Err(None) => continue,
            }
        }
    }

    /// Sends one target its request and relays the response; a read that a failing replica
    /// did not answer runs once more elsewhere.
    async fn run_one<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        target: &Target,
        request: Request<'_>,
        kind: ResponseKind,
    ) -> Flow {
        // A text goes out as the client sent it, so a branch it starts can go with it in one
        // text when the connection allows several statements per text (it follows the
        // client's CLIENT_MULTI_STATEMENTS).
        self.transaction.start_with_statement =
            matches!(request, Request::Text { .. }) && self.state.multi_statements;
        let flow = loop {
            let packet = match self.target_request(client, snapshot, target, request).await {
                Ok(p) => p,
                Err(flow) => break flow,
            };
            if self.cancel.timed_out() {
                // The time limit passed while a connection was found: nothing was sent.
                break answer_error(client, &time_limit_error()).await;
            }
            match self
                .relay_read(client, &target.data_source, &packet, kind)
                .await
            {
                Ok(outcome) => {
                    self.transaction.settle_start();
                    let read = plan.kind == StatementKind::Select;
                    self.note_found_rows(read, &target.data_source, &target.sql, &outcome)
                        .await;
                    return Flow::Continue;
                }
                Err(Some(flow)) => break flow,
                // The replica is out now, so the next attempt goes elsewhere.
                Err(None) => continue,
            }
        };
        self.transaction.settle_start();
        flow
    }

    /// `FOUND_ROWS()` after statement `sql` that `data_source` answered. The relay counted
    /// the rows of a result set; where MariaDB's count goes beyond them (an OFFSET, a limited
    /// set operation, SQL_CALC_FOUND_ROWS) the connection that ran the statement is asked,
    /// as after a text of several statements that returned rows. A `read` answered with an
    /// OK (`SELECT … INTO`) sent no row.
    pub async fn note_found_rows(
        &mut self,
        read: bool,
        data_source: &str,
        sql: &str,
        outcome: &RelayOutcome,
    ) {
        if outcome.results > 1 {
            if outcome.rows.is_none() {
                return;
            }
        } else if outcome.error.is_some() {
            return;
        } else if !outcome.result_set {
            if read {
                self.reported.found_rows = 0;
            }
            return;
        } else if !sql::found_rows_beyond_returned(sql) {
            return;
        }
        let Some(held) = self.held.get_mut(data_source) else {
            return;
        };
        let asked = held.conn.query("SELECT FOUND_ROWS()").await;
        match asked
            .ok()
            .and_then(|r| r.value(0, "FOUND_ROWS()")?.parse().ok())
        {
            Some(found) => self.reported.found_rows = found,
            // The connection's state is unknown now; the rows sent are the best answer left,
            // and the connection is not reused.
            None => self.discard(data_source),
        }
    }

    /// The packet for `target` on the held connection to its data source, preparing the
    /// statement there first for an execute. `Err(None)`: a replica failed and is out; try
    /// again.
    async fn build_request<'r, C: Client>(
        &mut self,
        client: &mut C,
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
                let data_source = &target.data_source;
                let prepared = match self.held.get_mut(data_source) {
                    Some(held) => held.conn.prepare(&target.sql).await,
                    None => Err(BackendError::Unreachable {
                        source_name: data_source.clone(),
                        reason: "no connection held".into(),
                    }),
                };
                let backend_id = match prepared {
                    Ok(id) => id,
                    Err(e) => {
                        if self.on_replica(data_source) && !matches!(e, BackendError::Server { .. })
                        {
                            self.replica_failed(data_source, &e);
                            return Err(None);
                        }
                        return Err(Some(self.fail_backend(client, data_source, e).await));
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
    /// sequence filled in). DML on several targets outside the client's transaction (autocommit
    /// on, none open) is atomic on its own: in `xa` mode, when it touches several data sources,
    /// it is a distributed transaction of its own (XA branches, two-phase commit); otherwise
    /// it runs inside a transaction on each. Either way it is rolled back everywhere if any
    /// target fails or the copies of a broadcast table diverge. [`Combine::OneByOne`] targets
    /// are statements of their own: no transaction of the proxy's joins them.
    pub async fn run_sum_affected<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        request: Request<'_>,
        insert_id: Option<u64>,
    ) -> Flow {
        let dml = is_dml(plan);
        let own_transaction = dml
            && !self.in_transaction_now()
            && plan.targets.len() > 1
            && plan.combine != Combine::OneByOne;
        let several_sources = plan
            .targets
            .iter()
            .any(|t| t.data_source != plan.targets[0].data_source);
        if !(own_transaction && several_sources && self.xa_mode(snapshot)) {
            return self
                .sum_affected(client, snapshot, plan, request, insert_id, own_transaction)
                .await;
        }
        self.transaction.implicit = true;
        let flow = self
            .sum_affected(client, snapshot, plan, request, insert_id, false)
            .await;
        self.transaction.implicit = false;
        // A statement that stopped short of its commit (a connection lost, the client gone)
        // leaves its branches open: they are rolled back, never left to a later statement.
        if let Err(e) = self.finish_distributed(false).await {
            tracing::warn!(conn = self.session, error = %e.message, "rolling back a statement's distributed transaction failed");
        }
        flow
    }

    /// [`run_sum_affected`](Self::run_sum_affected) once its transaction is chosen: `wrap`,
    /// a transaction per target data source (BEGIN … COMMIT); or, while
    /// `transaction.implicit` is set, the statement's own distributed transaction, whose
    /// branches the targets' connections joined as they were acquired.
    async fn sum_affected<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        request: Request<'_>,
        insert_id: Option<u64>,
        wrap: bool,
    ) -> Flow {
        let dml = is_dml(plan);
        let implicit = self.transaction.implicit;
        // Rolled back alone, not as part of the client's transaction.
        let own_transaction = wrap || implicit;
        let copies = match &plan.combine {
            Combine::EveryCopy(table) => Some(table.as_str()),
            _ => None,
        };
        // DDL on several targets cannot be undone: once begun it runs on every target, as
        // its client expects (a client leaving or a time limit does not cut it short).
        let _atomic = (!dml && plan.targets.len() > 1).then(|| self.cancel.atomic());
        let mut counts: Vec<u64> = Vec::with_capacity(plan.targets.len());
        for target in &plan.targets {
            if let Err(e) = self.conn_for(snapshot, &target.data_source).await {
                return answer_error(client, &e.to_server_error()).await;
            }
        }
        let mut begun: Vec<&str> = Vec::new();
        // A write on several data sources inside the client's transaction is undone alone on
        // an error, as one server undoes a failed statement: a savepoint on each data source
        // before its part. (Row-by-row bulk statements are statements of their own.)
        let statement_savepoints = dml
            && !own_transaction
            && plan.combine != Combine::OneByOne
            && plan
                .targets
                .iter()
                .any(|t| t.data_source != plan.targets[0].data_source);
        let mut saved: Vec<&str> = Vec::new();
        let mut total = OkPacket::default();
        let mut failure: Option<ServerError> = None;
        for target in &plan.targets {
            let data_source = target.data_source.as_str();
            let Some(held) = self.held.get_mut(data_source) else {
                failure = Some(ServerError::internal(
                    "dbmesh: a target's connection is gone",
                ));
                break;
            };
            // A connection lost here ends the session as one lost during the statement does
            // (its transaction is gone on that server, and the session's with it); going on
            // would let a later COMMIT commit the other data sources' part alone.
            if wrap && !begun.contains(&data_source) {
                match held.conn.query("BEGIN").await {
                    Ok(_) => begun.push(data_source),
                    Err(e @ BackendError::Server { .. }) => {
                        failure = Some(e.to_server_error());
                        break;
                    }
                    Err(e) => return self.fail_backend(client, data_source, e).await,
                }
            }
            if statement_savepoints && !saved.contains(&data_source) {
                match held
                    .conn
                    .query(&format!("SAVEPOINT {STATEMENT_SAVEPOINT}"))
                    .await
                {
                    Ok(_) => saved.push(data_source),
                    Err(e @ BackendError::Server { .. }) => {
                        failure = Some(e.to_server_error());
                        break;
                    }
                    Err(e) => return self.fail_backend(client, data_source, e).await,
                }
            }
            let packet = match self.build_request(client, target, request).await {
                Ok(p) => p,
                // Writes use the primary, so there is nothing to retry.
                Err(flow) => return flow.unwrap_or(Flow::Close),
            };
            if self.cancel.timed_out() {
                // The time limit passed: the targets not reached yet are not, and the
                // statement is rolled back where it ran.
                failure = Some(time_limit_error());
                break;
            }
            let Some(held) = self.held.get_mut(data_source) else {
                failure = Some(ServerError::internal(
                    "dbmesh: a target's connection is gone",
                ));
                break;
            };
            if let Err(e) = held.conn.send_command(&packet).await {
                return self.fail_backend(client, data_source, e).await;
            }
            match held.conn.read_query_result().await {
                Ok(result) => {
                    counts.push(result.ok.affected_rows);
                    if result.ok.warnings > 0 {
                        held.diagnostics = true;
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
                Err(e @ BackendError::Server { .. }) => {
                    failure = Some(e.to_server_error());
                    break;
                }
                Err(e) => return self.fail_backend(client, data_source, e).await,
            }
        }
        let diverged = match copies {
            Some(table) if failure.is_none() => {
                divergence(client, table, plan, &counts, !own_transaction)
            }
            _ => None,
        };
        // Inside the client's transaction the statement cannot be undone alone: the whole
        // transaction is, as MariaDB does on a deadlock.
        let client_rollback = diverged.is_some() && !own_transaction;
        let distributed = client_rollback && self.distributed_open();
        let rollback: Vec<String> = if distributed {
            Vec::new()
        } else if client_rollback {
            self.held.data_sources()
        } else {
            begun.iter().map(|d| d.to_string()).collect()
        };
        if failure.is_some() && !client_rollback {
            for data_source in &saved {
                let Some(held) = self.held.get_mut(data_source) else {
                    continue;
                };
                // A deadlock victim's server rolled its whole transaction back, savepoint
                // included; the session ends the transaction everywhere then.
                let undo = format!("ROLLBACK TO SAVEPOINT {STATEMENT_SAVEPOINT}");
                if let Err(e) = held.conn.query(&undo).await {
                    tracing::debug!(conn = self.session, data_source, error = %e, "undoing a failed statement");
                }
            }
        }
        failure = failure.or(diverged);
        if distributed {
            if let Err(e) = self.finish_distributed(false).await {
                failure = Some(e);
            }
        }
        let finish = if failure.is_some() {
            "ROLLBACK"
        } else {
            "COMMIT"
        };
        // Stopped halfway, the COMMITs would leave some targets committed and others not.
        let _finishing = self.cancel.atomic();
        if implicit {
            if let Err(e) = self.finish_distributed(failure.is_none()).await {
                failure.get_or_insert(e);
            }
        }
        for data_source in &rollback {
            let Some(held) = self.held.get_mut(data_source) else {
                continue;
            };
            if let Err(e) = held.conn.query(finish).await {
                // A failed COMMIT after others succeeded cannot be undone without distributed
                // transactions; report it rather than claim success.
                failure.get_or_insert(e.to_server_error());
            }
        }
        if client_rollback {
            self.end_transaction();
        }
        if let Some(err) = failure {
            return answer_error(client, &err).await;
        }
        total.status = self.client_status();
        self.reported.status = total.status;
        if let Some(id) = insert_id {
            total.last_insert_id = id;
        }
        if total.last_insert_id != 0 {
            self.reported.last_insert_id = total.last_insert_id;
        }
        self.reported.row_count = total.affected_rows as i64;
        self.reported.rows = total.affected_rows;
        client.packets().write_with(|b| total.encode(0, b));
        flush(client).await
    }

    /// A scatter read without ordering: every target's rows, one target after another.
    ///
    /// A session has one connection per data source, so targets on the same data source (two
    /// physical tables in one database) run one after the other on it: the targets go out in
    /// waves, each wave holding at most one target per data source, and within a wave every
    /// data source works concurrently.
    async fn run_concat<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        request: Request<'_>,
    ) -> Flow {
        loop {
            if let Some(flow) = self.concat_once(client, snapshot, plan, request).await {
                return flow;
            }
        }
    }

    /// One attempt at [`run_concat`](Self::run_concat); `None`: a replica failed before
    /// anything reached the client, run it again.
    async fn concat_once<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        plan: &Plan,
        request: Request<'_>,
    ) -> Option<Flow> {
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
        let deprecate_eof = client.deprecate_eof();
        let mut warnings: u16 = 0;
        let mut rows = 0;
        for (wave_number, wave) in waves.iter().enumerate() {
            // Before the first wave's columns nothing reached the client.
            let retry = wave_number == 0;
            let headers = match self.send_wave(client, snapshot, wave, request, retry).await {
                Ok(headers) => headers,
                Err(Stop::Retry) => return None,
                Err(Stop::Answered(flow)) => return Some(flow),
            };
            let failed = headers.iter().find_map(|h| match h {
                ResultHeader::Err(e) => Some(e.clone()),
                ResultHeader::Ok(_) => Some(ServerError::not_supported(
                    "a statement without a result set on several shards",
                )),
                ResultHeader::Columns(_) => None,
            });
            if let Some(err) = failed {
                if let Err(flow) = self.drain_headers(client, wave, &headers).await {
                    return Some(flow);
                }
                // Before the first wave's rows this is the whole answer; later, an error packet in
                // place of a row ends the result, as a server's mid-result error does.
                return Some(answer_error(client, &err).await);
            }
            if wave_number == 0 {
                let Some(ResultHeader::Columns(columns)) = headers.first() else {
                    let err = ServerError::internal("scatter without targets");
                    return Some(answer_error(client, &err).await);
                };
                let status = self.client_status();
                write_columns(client, columns, status);
            }
            for (pos, target) in wave.iter().enumerate() {
                let data_source = target.data_source.as_str();
                let Some(held) = self.held.get_mut(data_source) else {
                    return Some(Flow::Close);
                };
                let (cancel, names) = (&self.cancel, &self.names);
                let error_for = |e: &ServerError| client_error(cancel, names, e);
                match relay_rows(held.conn.packets(), client.packets(), &error_for).await {
                    Ok(RowsEnd::Done(ok, relayed)) => {
                        rows += relayed;
                        warnings = warnings.saturating_add(ok.warnings);
                        self.note_status(data_source, ok.status);
                    }
                    Ok(RowsEnd::Err(err)) => {
                        // The error ends the result for the client; the other shards' rows
                        // are read and dropped (their statements interrupted if they go on)
                        // so their connections stay usable.
                        client.count_error(err.code);
                        let rest = &wave[pos + 1..];
                        let threads = self.threads_of(rest);
                        let held = &mut self.held;
                        let drain = async {
                            for other in rest {
                                let Some(held) = held.get_mut(&other.data_source) else {
                                    return false;
                                };
                                if protocol::response::drain_rows(held.conn.packets())
                                    .await
                                    .is_err()
                                {
                                    return false;
                                }
                            }
                            true
                        };
                        let (drained, interrupted) =
                            drain_or_interrupt(self.session, threads, drain).await;
                        client.backend_cancelled(CancelReason::StoppedEarly, interrupted);
                        if !drained {
                            return Some(Flow::Close);
                        }
                        return Some(flush(client).await);
                    }
                    Err(RelayError::Client(_)) => return Some(Flow::Close),
                    Err(RelayError::Backend(error)) => {
                        return Some(self.stream_lost(client, data_source, error).await);
                    }
                }
            }
        }
        self.reported.found_rows = rows;
        self.reported.rows = rows;
        let status = self.client_status();
        write_end_of_rows(client.packets(), deprecate_eof, warnings, status);
        Some(flush(client).await)
    }

    /// Sends each target of `wave` (at most one per data source) its request and reads the
    /// first packet of each answer. With `retry`, a replica that fails before anything
    /// reached the client is taken out, the connections whose answers are pending dropped,
    /// and [`Stop::Retry`] asks the caller to run the read again.
    pub(crate) async fn send_wave<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        wave: &[&Target],
        request: Request<'_>,
        retry: bool,
    ) -> Result<Vec<ResultHeader>, Stop> {
        let mut sent: Vec<&str> = Vec::with_capacity(wave.len());
        for target in wave {
            if self.cancel.timed_out() {
                // The time limit passed: the rest of the wave is not sent (answered below).
                break;
            }
            let data_source = target.data_source.as_str();
            let packet = match self.target_request(client, snapshot, target, request).await {
                Ok(packet) => packet,
                Err(flow) => {
                    let flow = self
                        .drop_sent_answers(client, &wave[..sent.len()], flow)
                        .await;
                    return Err(Stop::Answered(flow));
                }
            };
            if sent.contains(&data_source) {
                let err = ServerError::internal("dbmesh: two scatter targets on one data source");
                let flow = answer_error(client, &err).await;
                let flow = self
                    .drop_sent_answers(client, &wave[..sent.len()], flow)
                    .await;
                return Err(Stop::Answered(flow));
            }
            let Some(held) = self.held.get_mut(data_source) else {
                return Err(Stop::Answered(Flow::Close));
            };
            if let Err(e) = held.conn.send_command(&packet).await {
                if retry && self.retry_scatter(data_source, &sent, &e) {
                    return Err(Stop::Retry);
                }
                let flow = self.fail_backend(client, data_source, e).await;
                let flow = self
                    .drop_sent_answers(client, &wave[..sent.len()], flow)
                    .await;
                return Err(Stop::Answered(flow));
            }
            sent.push(data_source);
        }
        let mut headers = Vec::with_capacity(sent.len());
        for &data_source in &sent {
            let Some(held) = self.held.get_mut(data_source) else {
                return Err(Stop::Answered(Flow::Close));
            };
            match read_result_header(held.conn.packets()).await {
                Ok(h) => headers.push(h),
                Err(error) => {
                    let lost = BackendError::Lost {
                        source_name: data_source.to_string(),
                        error,
                    };
                    if retry && self.retry_scatter(data_source, &sent, &lost) {
                        return Err(Stop::Retry);
                    }
                    // The other answers stay unread (a lost replica lets the session go on).
                    let flow = self.backend_lost(client, data_source, lost).await;
                    return Err(Stop::Answered(self.discard_sent(&sent, flow)));
                }
            }
        }
        headers.resize_with(wave.len(), || ResultHeader::Err(time_limit_error()));
        Ok(headers)
    }

    /// The wave stopped (its answer to the client already written, `flow`) after the targets in
    /// `sent` got their requests: their answers are read and dropped, statements past a short
    /// grace interrupted, so that no connection keeps an answer which the next statement to
    /// borrow it — this session's or, from the pool, another's — would read as its own. If
    /// one cannot be read, those connections are closed, and a session whose transaction
    /// lived on them ends, as when a backend connection is lost.
    async fn drop_sent_answers<C: Client>(
        &mut self,
        client: &mut C,
        sent: &[&Target],
        flow: Flow,
    ) -> Flow {
        if sent.is_empty() {
            return flow;
        }
        let threads = self.threads_of(sent);
        let held = &mut self.held;
        let drain = async {
            for target in sent {
                let held = held.get_mut(target.data_source.as_str()).ok_or(())?;
                let header = read_result_header(held.conn.packets())
                    .await
                    .map_err(|_| ())?;
                drain_after_header(held.conn.packets(), &header)
                    .await
                    .map_err(|_| ())?;
            }
            Ok::<(), ()>(())
        };
        let (drained, interrupted) = drain_or_interrupt(self.session, threads, drain).await;
        client.backend_cancelled(CancelReason::StoppedEarly, interrupted);
        if drained.is_ok() {
            return flow;
        }
        let sent: Vec<&str> = sent.iter().map(|t| t.data_source.as_str()).collect();
        self.discard_sent(&sent, flow)
    }

    /// Closes the connections of `sent`, whose answers will not be read; a session whose
    /// transaction lived on them ends (`Flow::Close`), as when a backend connection is lost.
    fn discard_sent(&mut self, sent: &[&str], flow: Flow) -> Flow {
        let in_transaction = self.in_transaction_now();
        for data_source in sent {
            self.discard(data_source);
        }
        if in_transaction {
            Flow::Close
        } else {
            flow
        }
    }

    /// Reads and drops the rest of each answer whose first packet is in `headers` (one per
    /// target of `wave`), so the connections stay usable; statements that go on past a short
    /// grace are interrupted (one shard's error fails the statement, the rest is not needed).
    pub(crate) async fn drain_headers<C: Client>(
        &mut self,
        client: &mut C,
        wave: &[&Target],
        headers: &[ResultHeader],
    ) -> Result<(), Flow> {
        let threads = self.threads_of(wave);
        let held = &mut self.held;
        let drain = async {
            for (h, target) in headers.iter().zip(wave) {
                let data_source = target.data_source.as_str();
                let Some(held) = held.get_mut(data_source) else {
                    return Err(None);
                };
                if let Err(error) = drain_after_header(held.conn.packets(), h).await {
                    return Err(Some((data_source, error)));
                }
            }
            Ok(())
        };
        let (drained, interrupted) = drain_or_interrupt(self.session, threads, drain).await;
        client.backend_cancelled(CancelReason::StoppedEarly, interrupted);
        match drained {
            Ok(()) => Ok(()),
            Err(None) => Err(Flow::Close),
            Err(Some((data_source, error))) => {
                Err(self.stream_lost(client, data_source, error).await)
            }
        }
    }

    /// A replica failed during a scatter read before any of it reached the client: takes the
    /// replica out and drops the held connections whose responses are pending (`pending`,
    /// and the failed one), so the read can run again. False when the failed connection is
    /// not a replica's.
    fn retry_scatter(&mut self, failed: &str, pending: &[&str], error: &BackendError) -> bool {
        if !self.on_replica(failed) {
            return false;
        }
        self.replica_failed(failed, error);
        for data_source in pending {
            self.discard(data_source);
        }
        true
    }
}

/// The savepoint a write on several data sources inside the client's transaction is undone
/// to when it fails.
const STATEMENT_SAVEPOINT: &str = "dbmesh_statement";

fn is_dml(plan: &Plan) -> bool {
    matches!(
        plan.kind,
        StatementKind::Insert | StatementKind::Update | StatementKind::Delete
    )
}

/// A result's column count, definitions and (for clients without DEPRECATE_EOF) EOF.
pub(crate) fn write_columns<C: Client>(client: &mut C, columns: &[Vec<u8>], status: u16) {
    let deprecate_eof = client.deprecate_eof();
    let packets = client.packets();
    packets.write_with(|b| protocol::buf::put_lenenc_int(b, columns.len() as u64));
    for c in columns {
        packets.write_packet(c);
    }
    if !deprecate_eof {
        packets.write_with(|b| protocol::packets::encode_eof(0, status, b));
    }
}

/// The error for copies of broadcast table `table` that changed different numbers of rows
/// (`counts`, one per target of `plan`), logged and counted; `None` when they agree. The
/// caller rolls the statement back (the client's whole transaction when `in_transaction`):
/// an answer from one copy would hide that the others hold other rows, and every later read
/// could see either.
fn divergence<C: Client>(
    client: &mut C,
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
    client.broadcast_divergence(table);
    let rolled_back = if in_transaction {
        "the transaction was rolled back"
    } else {
        "the statement was rolled back"
    };
    Some(
        ExecError::BroadcastDivergence {
            table: table.to_string(),
            changed,
            rolled_back,
        }
        .to_server_error(),
    )
}
