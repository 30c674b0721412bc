//! The backend connections a session holds: at most one per data source, acquired on first use
//! and brought to the session's state. Between statements they go back to the pool unless
//! something pins them to the session ([`crate::pin`]); pinned connections are reset before
//! they return to the pool. Relaying a command to one of them lives here too.
//!
//! Connections are found by their data source, never by position: one statement's access
//! decides which server of a data source it uses (a replica for a read a replica may serve,
//! else the primary), and while connections stay past a statement (pins, a transaction) reads
//! use the primary, so one connection per data source is all a session needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendError, Cluster, Gtid, PooledConn, Server, WantedState};
use protocol::constants::{com, status};
use protocol::response::{relay_response, RelayError, RelayOutcome, ResponseKind};
use protocol::{ClientError, ProtocolError};
use rules::{ReadYourWrites, ReplicationConfig, Rules};

use crate::access::Access;
use crate::transaction::xa_unavailable;
use crate::{answer_error, client_error, Client, Diagnostic, Executor, Flow, Snapshot};

/// The connection state the client chose, which its backend connections follow.
#[derive(Debug, Clone)]
pub struct ClientState {
    /// The logical database the client selected.
    pub database: Option<String>,
    /// `SET NAMES` arguments every backend connection must carry for this session.
    pub charset: &'static str,
    pub multi_statements: bool,
}

/// Which server of its data source a held connection is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    /// A replica: the connection only ever serves reads.
    Replica,
}

/// A backend connection held by a session.
pub(crate) struct HeldConn {
    pub data_source: String,
    pub conn: PooledConn,
    /// The server the connection is to.
    server: Arc<Server>,
    pub role: Role,
    /// The data source has replicas and a statement that may have written ran here: before
    /// the connection goes back, the session notes the write for its later reads.
    wrote: bool,
    /// The last response here carried warnings or an error, to collect before the
    /// connection serves anything else.
    pub diagnostics: bool,
    /// With autocommit off, a statement ran here whose answer's status flags the proxy did
    /// not read (a merged or scattered result, an error): it may have opened a transaction,
    /// so the connection stays with the session until its status is known again.
    pub unsure: bool,
}

/// The connections a session holds, by data source.
#[derive(Default)]
pub(crate) struct Held {
    conns: Vec<HeldConn>,
}

impl Held {
    pub fn get(&self, data_source: &str) -> Option<&HeldConn> {
        self.conns.iter().find(|h| h.data_source == data_source)
    }

    pub fn get_mut(&mut self, data_source: &str) -> Option<&mut HeldConn> {
        self.conns.iter_mut().find(|h| h.data_source == data_source)
    }

    /// Takes the connection to `data_source` out of the session; dropped, it closes.
    pub fn take(&mut self, data_source: &str) -> Option<HeldConn> {
        let at = self
            .conns
            .iter()
            .position(|h| h.data_source == data_source)?;
        Some(self.conns.swap_remove(at))
    }

    pub(crate) fn insert(&mut self, held: HeldConn) -> &mut HeldConn {
        self.conns.push(held);
        let last = self.conns.len() - 1;
        &mut self.conns[last]
    }

    pub fn iter(&self) -> impl Iterator<Item = &HeldConn> {
        self.conns.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut HeldConn> {
        self.conns.iter_mut()
    }

    /// The data sources held, in no particular order.
    pub fn data_sources(&self) -> Vec<String> {
        self.conns.iter().map(|h| h.data_source.clone()).collect()
    }

    pub fn any_in_transaction(&self) -> bool {
        self.conns.iter().any(|h| h.conn.in_transaction())
    }

    /// Whether a connection to a data source not in `branches` has a transaction open.
    pub fn any_in_transaction_outside(&self, branches: &[String]) -> bool {
        self.conns
            .iter()
            .any(|h| h.conn.in_transaction() && !branches.contains(&h.data_source))
    }

    fn drain(&mut self) -> std::vec::Drain<'_, HeldConn> {
        self.conns.drain(..)
    }
}

/// A session's last write to a data source with replicas: its reads of that data source must
/// see it.
pub(crate) struct Write {
    data_source: String,
    /// The write's transaction id, when the server has GTIDs and it could be read.
    gtid: Option<Gtid>,
    at: Instant,
}

/// Where a read of a data source with replicas goes.
enum ReadFrom {
    Primary,
    /// Any replica; with a GTID, one that has applied it (waiting for it if needed).
    Replica(Option<Gtid>),
}

/// The state a connection to `data_source` must have for a session with these settings; the
/// physical database is the data source's own when the logical schema is selected.
fn wanted_state<'a>(
    rules: &'a Rules,
    client: &'a ClientState,
    data_source: &str,
) -> WantedState<'a> {
    let database = client.database.as_deref().and_then(|logical| {
        if logical == rules.schema.name {
            rules
                .data_sources
                .get(data_source)
                .map(|ds| ds.database.as_str())
        } else {
            Some(logical)
        }
    });
    WantedState {
        database,
        charset: client.charset,
        multi_statements: client.multi_statements,
    }
}

impl Executor {
    /// The connection to `data_source`, acquired if needed and brought to the session state:
    /// to a replica when the statement is a read a replica may serve, else to the primary.
    pub(crate) async fn conn_for(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
    ) -> Result<&mut HeldConn, BackendError> {
        if !Arc::ptr_eq(&self.names, &snapshot.names) {
            self.names = snapshot.names.clone();
        }
        if self.held.get(data_source).is_some() {
            let want = wanted_state(&snapshot.rules, &self.state, data_source);
            let writes = self.access == Access::Write && replicated(snapshot, data_source);
            let held = self
                .held
                .get_mut(data_source)
                .expect("held: looked up above");
            if let Err(e) = held.conn.sync_state(want, &self.replay).await {
                if !matches!(e, BackendError::Server { .. }) {
                    self.held.take(data_source);
                }
                return Err(e);
            }
            held.server.note_query();
            held.wrote |= writes && held.role == Role::Primary;
            held.unsure |= self.reported.status & status::AUTOCOMMIT == 0;
            self.enlist(snapshot, data_source).await?;
            return Ok(self.held.get_mut(data_source).expect("held: synced above"));
        }
        let cluster = snapshot.clusters.get(data_source).cloned().ok_or_else(|| {
            BackendError::Unreachable {
                source_name: data_source.to_string(),
                reason: "the data source is not in the current rules".into(),
            }
        })?;
        let rules = &snapshot.rules;
        if self.access == Access::ReplicaRead && cluster.has_replicas() {
            if let ReadFrom::Replica(gtid) = self.read_from(data_source, &rules.replication) {
                if self.replica_conn(&cluster, rules, gtid).await {
                    return Ok(self.held.get_mut(data_source).expect("held: a replica's"));
                }
            }
        }
        let server = cluster.primary().clone();
        let open = self.transaction_open();
        let autocommit_off = self.reported.status & status::AUTOCOMMIT == 0;
        let mut conn = server
            .acquire(self.found_rows, self.cancel.interrupted(data_source))
            .await?;
        // A new connection joins the session: same state, same session variables, same open
        // transaction as the connections the session already holds.
        let want = wanted_state(rules, &self.state, data_source);
        conn.sync_state(want, &self.replay).await?;
        let xa = self.transaction_mode(rules) == rules::TransactionMode::Xa;
        self.transaction.join(&mut conn, open, xa).await?;
        server.note_query();
        self.cancel.using(server.pool(), conn.connection_id);
        self.held.insert(HeldConn {
            data_source: data_source.to_string(),
            conn,
            server,
            role: Role::Primary,
            wrote: self.access == Access::Write && cluster.has_replicas(),
            diagnostics: false,
            unsure: autocommit_off,
        });
        self.enlist(snapshot, data_source).await?;
        Ok(self
            .held
            .get_mut(data_source)
            .expect("held: inserted above"))
    }

    /// Where a replica-safe read of `data_source` goes, given the session's last write there.
    fn read_from(&self, data_source: &str, replication: &ReplicationConfig) -> ReadFrom {
        let Some(write) = self.writes.iter().find(|w| w.data_source == data_source) else {
            return ReadFrom::Replica(None);
        };
        match write.gtid {
            Some(gtid) if replication.read_your_writes == ReadYourWrites::Gtid => {
                ReadFrom::Replica(Some(gtid))
            }
            _ => {
                let window = Duration::from_millis(replication.read_your_writes_window_ms);
                if write.at.elapsed() < window {
                    ReadFrom::Primary
                } else {
                    ReadFrom::Replica(None)
                }
            }
        }
    }

    /// Holds a connection to a replica of `cluster` that has applied `gtid` (waiting up to
    /// `gtid_wait_ms` for it), trying each healthy replica at most once and taking out those
    /// that cannot be reached. False: read from the primary.
    async fn replica_conn(&mut self, cluster: &Cluster, rules: &Rules, gtid: Option<Gtid>) -> bool {
        let replication = &rules.replication;
        let mut tried = 0u64;
        while let Some(choice) = cluster.pick_replica(tried, gtid.as_ref()) {
            tried |= 1 << choice.index.min(63);
            let server = cluster.replica(choice.index).clone();
            let mut conn = match server.pool().acquire(self.found_rows).await {
                Ok(conn) => conn,
                Err(e) => {
                    if !matches!(e, BackendError::PoolExhausted { .. }) {
                        server.mark_down(&e);
                    }
                    continue;
                }
            };
            let want = wanted_state(rules, &self.state, cluster.name());
            if let Err(e) = conn.sync_state(want, &self.replay).await {
                if !matches!(e, BackendError::Server { .. }) {
                    server.mark_down(&e);
                }
                continue;
            }
            if let (Some(gtid), false) = (gtid, choice.has_write) {
                let wait = format!(
                    "SELECT MASTER_GTID_WAIT('{gtid}', {})",
                    replication.gtid_wait_ms as f64 / 1000.0
                );
                match conn.query(&wait).await {
                    Ok(r)
                        if r.rows
                            .first()
                            .and_then(|row| row.first())
                            .cloned()
                            .flatten()
                            == Some("0".into()) =>
                    {
                        server.note_applied(&gtid);
                    }
                    // Not applied in time: the primary has it.
                    Ok(_) => {
                        conn.release();
                        return false;
                    }
                    Err(e) => {
                        if !matches!(e, BackendError::Server { .. }) {
                            server.mark_down(&e);
                        }
                        continue;
                    }
                }
            }
            server.note_query();
            self.cancel.using(server.pool(), conn.connection_id);
            self.held.insert(HeldConn {
                data_source: cluster.name().to_string(),
                conn,
                server,
                role: Role::Replica,
                wrote: false,
                diagnostics: false,
                unsure: false,
            });
            return true;
        }
        false
    }

    /// After a statement (and after its diagnostics were collected): for each held primary
    /// connection a write went through, outside a transaction, remember the write so the
    /// session's reads find it: its GTID (`@@last_gtid`), or on servers without GTIDs the
    /// time, so reads use the primary for a while.
    pub async fn note_writes(&mut self) {
        for data_source in self.held.data_sources() {
            let Some(held) = self.held.get_mut(&data_source) else {
                continue;
            };
            if !held.wrote || held.conn.in_transaction() {
                continue;
            }
            held.wrote = false;
            let gtid = match held.conn.query("SELECT @@last_gtid").await {
                Ok(r) => r
                    .rows
                    .first()
                    .and_then(|row| row.first())
                    .and_then(|v| v.as_deref())
                    .and_then(Gtid::parse),
                Err(e) => {
                    tracing::debug!(conn = self.session, error = %e, "reading @@last_gtid failed");
                    if !matches!(e, BackendError::Server { .. }) {
                        self.held.take(&data_source);
                        continue;
                    }
                    None
                }
            };
            tracing::debug!(conn = self.session, data_source, gtid = ?gtid, "write noted for read-your-writes");
            self.writes.retain(|w| w.data_source != data_source);
            self.writes.push(Write {
                data_source,
                gtid,
                at: Instant::now(),
            });
        }
    }

    /// Records the status flags an answer on the connection to `data_source` ended with.
    pub(crate) fn note_status(&mut self, data_source: &str, status: u16) {
        if let Some(held) = self.held.get_mut(data_source) {
            held.conn.status = status;
            held.unsure = false;
        }
    }

    /// Whether a held connection's transaction state is unknown
    /// ([`refresh_transaction_state`](Self::refresh_transaction_state) has something to do).
    pub fn has_unsure_transaction_state(&self) -> bool {
        self.held.iter().any(|h| h.unsure)
    }

    /// Reads the status flags of every held connection whose transaction state is unknown,
    /// with a COM_PING (its OK carries them and it changes nothing), so a connection goes
    /// back to the pool exactly when it holds no transaction. One that fails is dropped.
    pub async fn refresh_transaction_state(&mut self) {
        for data_source in self.held.data_sources() {
            let Some(held) = self.held.get_mut(&data_source) else {
                continue;
            };
            if !held.unsure {
                continue;
            }
            match held.conn.ping().await {
                Ok(()) => held.unsure = false,
                Err(e) => {
                    tracing::warn!(conn = self.session, error = %e, "reading a connection's transaction state failed");
                    self.held.take(&data_source);
                }
            }
        }
    }

    /// Whether [`note_writes`](Self::note_writes) has anything to do.
    pub fn has_unnoted_writes(&self) -> bool {
        self.held.iter().any(|h| h.wrote)
    }

    /// Whether a held connection's last response left diagnostics to collect.
    pub fn has_uncollected_diagnostics(&self) -> bool {
        !self.merge_warnings.is_empty() || self.held.iter().any(|h| h.diagnostics)
    }

    /// Reads `SHOW WARNINGS` on every held connection whose last response carried warnings
    /// or an error. A connection that fails here is dropped; its diagnostics are lost, the
    /// statement's own answer already went out.
    pub async fn collect_diagnostics(&mut self) -> Vec<Diagnostic> {
        let mut collected = std::mem::take(&mut self.merge_warnings);
        for data_source in self.held.data_sources() {
            let Some(held) = self.held.get_mut(&data_source) else {
                continue;
            };
            if !held.diagnostics {
                continue;
            }
            held.diagnostics = false;
            match held.conn.query("SHOW WARNINGS").await {
                Ok(result) => {
                    collected.extend(result.rows.into_iter().map(|row| {
                        let cell = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
                        let code = cell(1).parse().unwrap_or(0);
                        let message = cell(2);
                        Diagnostic {
                            level: cell(0),
                            code,
                            message: self.names.in_message(code, &message).into_owned(),
                        }
                    }));
                }
                Err(e) => {
                    tracing::debug!(conn = self.session, error = %e, "SHOW WARNINGS failed");
                    if !matches!(e, BackendError::Server { .. }) {
                        self.held.take(&data_source);
                    }
                }
            }
        }
        collected
    }

    /// Returns every held connection to its pool as it is: the statement is over and nothing
    /// pins them, so they carry only state the next borrower's `sync_state` accounts for.
    /// Connections a cancel is interrupting are closed instead: one could otherwise reach
    /// another session and be interrupted there.
    pub(crate) fn release_unpinned(&mut self) {
        let clean = self.cancel.release();
        for held in self.held.drain() {
            if clean {
                held.conn.release();
            }
        }
    }

    /// Resets every held connection and returns it to its pool (or closes it if the reset
    /// fails).
    pub async fn release_all(&mut self) {
        // A distributed transaction still open (a client gone, a reset) is rolled back.
        if let Err(e) = self.finish_distributed(false).await {
            tracing::warn!(conn = self.session, error = %e.message, "rolling back a distributed transaction failed");
        }
        for mut held in self.held.drain() {
            if held.conn.reset().await.is_ok() && self.cancel.release() {
                held.conn.release();
            }
        }
        self.cancel.release();
    }

    /// The statement was abandoned midway (its client left): every held connection is in
    /// the middle of an answer nobody will read, so each is closed, which also rolls back
    /// whatever transaction it held. The caller has interrupted their statements first.
    pub fn abandon(&mut self) {
        drop(self.held.drain());
        self.cancel.release();
    }

    /// The backend threads of the held connections to the data sources of `targets`, to
    /// interrupt their statements.
    pub(crate) fn threads_of(&self, targets: &[&router::Target]) -> Vec<(Arc<backend::Pool>, u32)> {
        self.held
            .iter()
            .filter(|h| targets.iter().any(|t| t.data_source == h.data_source))
            .map(|h| (h.server.pool().clone(), h.conn.connection_id))
            .collect()
    }

    /// Whether the session holds a connection to `data_source`.
    pub fn holds(&self, data_source: &str) -> bool {
        self.held.get(data_source).is_some()
    }

    /// Whether every connection the session holds is to `data_source`.
    pub fn holds_only(&self, data_source: &str) -> bool {
        self.held.iter().all(|h| h.data_source == data_source)
    }

    /// Drops the connection to `data_source` without returning it to the pool: its state is
    /// not known any more, so it must not serve anyone else.
    pub fn discard(&mut self, data_source: &str) {
        self.held.take(data_source);
    }

    /// The backend connection to `data_source`, acquired if needed and brought to the
    /// session's state, for what the session runs there itself (prepared statements, SHOW
    /// through the logical view, column lists).
    pub async fn backend(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
    ) -> Result<&mut PooledConn, BackendError> {
        Ok(&mut self.conn_for(snapshot, data_source).await?.conn)
    }

    /// The id `sql` has on the connection to `data_source`, prepared now if it has none. A
    /// connection lost while preparing is dropped; when it was a replica's, the replica is out
    /// and another server is tried.
    pub async fn prepared_id(
        &mut self,
        snapshot: &Snapshot,
        data_source: &str,
        sql: &str,
    ) -> Result<u32, BackendError> {
        loop {
            let held = self.conn_for(snapshot, data_source).await?;
            let role = held.role;
            match held.conn.prepare(sql).await {
                Ok(id) => return Ok(id),
                Err(e @ BackendError::Server { .. }) => return Err(e),
                Err(e) if role == Role::Replica => self.replica_failed(data_source, &e),
                Err(e) => {
                    self.held.take(data_source);
                    return Err(e);
                }
            }
        }
    }

    /// Closes statement `sql` on the connection to `data_source`, if the session holds one.
    pub async fn close_prepared<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        sql: &str,
    ) -> Flow {
        let Some(held) = self.held.get_mut(data_source) else {
            return Flow::Continue;
        };
        if let Err(e) = held.conn.close_prepared(sql).await {
            return self.backend_lost(client, data_source, e).await;
        }
        Flow::Continue
    }

    /// Sends `packet` to a connection to `data_source` and relays the response.
    pub async fn forward<C: Client>(
        &mut self,
        client: &mut C,
        snapshot: &Snapshot,
        data_source: &str,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Flow> {
        if let Err(e) = self.conn_for(snapshot, data_source).await {
            return Err(answer_error(client, &e.to_server_error()).await);
        }
        self.relay_on(client, data_source, packet, kind).await
    }

    /// Sends `packet` on the held connection to `data_source` and relays the response.
    pub async fn relay_on<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Flow> {
        self.relay(client, data_source, packet, kind, false)
            .await
            .map_err(|flow| flow.unwrap_or(Flow::Close))
    }

    /// Like [`relay_on`](Self::relay_on) for a read, except that when the held connection
    /// to `data_source` is to a replica that fails before any of its answer reached the
    /// client, the replica is taken out and `Err(None)` asks the caller to run the read again
    /// (on another replica or the primary).
    pub async fn relay_read<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Option<Flow>> {
        let retry = self.on_replica(data_source);
        self.relay(client, data_source, packet, kind, retry).await
    }

    async fn relay<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        packet: &[u8],
        kind: ResponseKind,
        retry: bool,
    ) -> Result<RelayOutcome, Option<Flow>> {
        let deprecate_eof = client.deprecate_eof();
        // Errors, statement OKs and COM_STATISTICS carry no status flags.
        let reports_status = !matches!(kind, ResponseKind::Prepare { .. } | ResponseKind::Raw);
        let answered = client.packets().seq();
        let Some(held) = self.held.get_mut(data_source) else {
            return Err(Some(
                answer_error(
                    client,
                    &protocol::ServerError::internal("dbmesh: no connection"),
                )
                .await,
            ));
        };
        let conn = &mut held.conn;
        let (cancel, names) = (&self.cancel, &self.names);
        let error_for = |e: &protocol::ServerError| client_error(cancel, names, e);
        // A branch starting with this statement: one text, `XA START …;` first, so the server
        // runs the statement only if the branch started (it stops a text at its first error).
        let start = self.transaction.take_start(data_source);
        let with_start;
        let packet = match &start {
            Some(start) => {
                with_start = [
                    &[com::QUERY][..],
                    start.sql().as_bytes(),
                    b";",
                    packet.get(1..).unwrap_or_default(),
                ]
                .concat();
                &with_start[..]
            }
            None => packet,
        };
        let error = 'sent: {
            if let Err(e) = conn.send_command(packet).await {
                break 'sent e;
            }
            if let Some(start) = start {
                match conn.read_ok().await {
                    Ok(_) => self.transaction.started(start, &self.cancel),
                    Err(BackendError::Server { error, .. }) => {
                        tracing::warn!(conn = self.session, data_source, %error, "XA START failed");
                        self.held.take(data_source);
                        let e = xa_unavailable(data_source, format!("XA START failed: {error}"));
                        return Err(Some(answer_error(client, &e.to_server_error()).await));
                    }
                    Err(e) => break 'sent e,
                }
            }
            match relay_response(
                conn.packets(),
                client.packets(),
                kind,
                deprecate_eof,
                &error_for,
            )
            .await
            {
                Ok(outcome) => {
                    if reports_status && outcome.error.is_none() {
                        self.reported.status = outcome.status;
                        conn.status = outcome.status;
                        held.unsure = false;
                    }
                    if outcome.last_insert_id != 0 {
                        self.reported.last_insert_id = outcome.last_insert_id;
                    }
                    held.diagnostics = outcome.warnings > 0 || outcome.error.is_some();
                    self.reported.backend_statements = self.reported.backend_statements.max(1);
                    self.reported.rows = if outcome.result_set {
                        outcome.rows.unwrap_or(0)
                    } else {
                        outcome.affected_rows
                    };
                    if let (None, true, Some(rows)) =
                        (&outcome.error, outcome.result_set, outcome.rows)
                    {
                        self.reported.found_rows = rows;
                    }
                    self.reported.row_count = match (&outcome.error, outcome.result_set) {
                        (None, false) => outcome.affected_rows as i64,
                        _ => -1,
                    };
                    if let Some(err) = &outcome.error {
                        client.count_error(err.code);
                    }
                    return Ok(outcome);
                }
                Err(RelayError::Client(_)) => {
                    // The client left mid-response; the rest of it is unread, so the
                    // backend connection cannot be reused.
                    self.held.take(data_source);
                    return Err(Some(Flow::Close));
                }
                Err(RelayError::Backend(error)) => BackendError::Lost {
                    source_name: conn.source_name().to_string(),
                    error,
                },
            }
        };
        if retry && client.packets().seq() == answered {
            self.replica_failed(data_source, &error);
            return Err(None);
        }
        Err(Some(self.backend_lost(client, data_source, error).await))
    }

    /// Sends a command that has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA) on the
    /// held connection to `data_source`.
    pub async fn send_on<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        packet: &[u8],
    ) -> Flow {
        let Some(held) = self.held.get_mut(data_source) else {
            return Flow::Continue;
        };
        if let Err(e) = held.conn.send_command(packet).await {
            return self.backend_lost(client, data_source, e).await;
        }
        Flow::Continue
    }

    /// A backend connection died: its session state (transaction, variables, prepared
    /// statements) is gone, so after the error the client connection is closed too, as a
    /// direct connection to a crashed server would be. Other sessions are unaffected. A
    /// replica's connection carried no such state (it serves single reads), so there the
    /// statement fails and the session goes on; the replica gets no more reads until a check
    /// passes.
    pub async fn backend_lost<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        error: BackendError,
    ) -> Flow {
        tracing::warn!(conn = self.session, %error, "backend connection lost");
        let replica = match self.held.take(data_source) {
            Some(held) => {
                held.server.mark_down(&error);
                held.role == Role::Replica
            }
            None => false,
        };
        client.send_error(&error.to_server_error());
        let flushed = client.packets().flush().await;
        if replica && flushed.is_ok() {
            return Flow::Continue;
        }
        Flow::Close
    }

    /// [`backend_lost`](Self::backend_lost) for a broken packet stream.
    pub(crate) async fn stream_lost<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        error: ProtocolError,
    ) -> Flow {
        let lost = BackendError::Lost {
            source_name: data_source.to_string(),
            error,
        };
        self.backend_lost(client, data_source, lost).await
    }

    /// A backend error during a statement: a server error is the client's answer; a lost
    /// connection ends the session (its state on that backend is gone).
    pub async fn fail_backend<C: Client>(
        &mut self,
        client: &mut C,
        data_source: &str,
        e: BackendError,
    ) -> Flow {
        match e {
            BackendError::Server { .. } => answer_error(client, &e.to_server_error()).await,
            other => self.backend_lost(client, data_source, other).await,
        }
    }

    /// A replica read failed before any of its answer reached the client: the replica is
    /// taken out and the connection dropped, so the statement can run again elsewhere.
    pub fn replica_failed(&mut self, data_source: &str, error: &BackendError) {
        tracing::info!(conn = self.session, %error, "replica read failed; retrying elsewhere");
        if let Some(held) = self.held.take(data_source) {
            held.server.mark_down(error);
        }
    }

    /// Whether the held connection to `data_source` is to a replica.
    pub fn on_replica(&self, data_source: &str) -> bool {
        self.held
            .get(data_source)
            .is_some_and(|h| h.role == Role::Replica)
    }
}

/// Whether `data_source` has replicas in `snapshot`'s rules.
fn replicated(snapshot: &Snapshot, data_source: &str) -> bool {
    snapshot
        .clusters
        .get(data_source)
        .is_some_and(|c| c.has_replicas())
}
