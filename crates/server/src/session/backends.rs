//! The backend connections a session holds: at most one per data source, acquired on first use
//! and brought to the session's state. Between statements they go back to the pool unless
//! something pins them to the session ([`super::pin`]); pinned connections are reset before
//! they return to the pool. Relaying a command to one of them lives here too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::{BackendError, Cluster, Gtid, PooledConn, Server, WantedState};
use protocol::constants::caps;
use protocol::response::{relay_response, RelayError, RelayOutcome, ResponseKind};
use rules::{ReadYourWrites, ReplicationConfig, Rules};
use tokio::io::{AsyncRead, AsyncWrite};

use super::access::Access;
use super::{ClientState, Flow, Session};

/// A backend connection held by a session.
pub(super) struct Held {
    pub data_source: String,
    pub conn: PooledConn,
    /// The server the connection is to.
    server: Arc<Server>,
    /// The connection is to a replica (so it only ever serves reads).
    pub replica: bool,
    /// The data source has replicas and a statement that may have written ran here: before
    /// the connection goes back, the session notes the write for its later reads.
    wrote: bool,
    /// The last response here carried warnings or an error, to collect before the
    /// connection serves anything else ([`super::diagnostics`]).
    pub diagnostics: bool,
}

/// A session's last write to a data source with replicas: its reads of that data source must
/// see it.
pub(super) struct Write {
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

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Index in `held` of a connection to `data_source`, acquired if needed and brought to
    /// the session state: to a replica when the statement is a read a replica may serve,
    /// else to the primary.
    pub(super) async fn conn_for(&mut self, data_source: &str) -> Result<usize, BackendError> {
        let snapshot = self.ctx.snapshot.load();
        if let Some(index) = self.held.iter().position(|h| h.data_source == data_source) {
            let want = wanted_state(&snapshot.rules, &self.state, data_source);
            if let Err(e) = self.held[index].conn.sync_state(want, &self.replay).await {
                if !matches!(e, BackendError::Server { .. }) {
                    self.held.swap_remove(index);
                }
                return Err(e);
            }
            let writes = self.access == Access::Write && self.replicated(data_source);
            let held = &mut self.held[index];
            held.server.note_query();
            held.wrote |= writes && !held.replica;
            return Ok(index);
        }
        let cluster = snapshot.clusters.get(data_source).cloned().ok_or_else(|| {
            BackendError::Unreachable {
                source_name: data_source.to_string(),
                address: String::new(),
                reason: "the data source is not in the current rules".into(),
            }
        })?;
        let rules = snapshot.rules.clone();
        drop(snapshot);
        if self.access == Access::ReplicaRead && cluster.has_replicas() {
            if let ReadFrom::Replica(gtid) = self.read_from(data_source, &rules.replication) {
                if let Some(index) = self.replica_conn(&cluster, &rules, gtid).await {
                    return Ok(index);
                }
            }
        }
        let server = cluster.primary().clone();
        let mut conn = server
            .acquire(self.capabilities & caps::FOUND_ROWS != 0)
            .await?;
        // A new connection joins the session: same state, same session variables, same open
        // transaction as the connections the session already holds.
        let want = wanted_state(&rules, &self.state, data_source);
        conn.sync_state(want, &self.replay).await?;
        if self.in_transaction {
            if let Some(next) = &self.next_transaction {
                conn.query(&next.statement).await?;
            }
            conn.query("BEGIN").await?;
        }
        server.note_query();
        self.entry.using(server.pool(), conn.connection_id);
        self.held.push(Held {
            data_source: data_source.to_string(),
            conn,
            server,
            replica: false,
            wrote: self.access == Access::Write && cluster.has_replicas(),
            diagnostics: false,
        });
        Ok(self.held.len() - 1)
    }

    /// Whether `data_source` has replicas in the current rules.
    fn replicated(&self, data_source: &str) -> bool {
        self.ctx
            .snapshot
            .load()
            .clusters
            .get(data_source)
            .is_some_and(|c| c.has_replicas())
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

    /// A connection to a replica of `cluster` that has applied `gtid` (waiting up to
    /// `gtid_wait_ms` for it), trying each healthy replica at most once and taking out those
    /// that cannot be reached. `None`: read from the primary.
    async fn replica_conn(
        &mut self,
        cluster: &Cluster,
        rules: &Rules,
        gtid: Option<Gtid>,
    ) -> Option<usize> {
        let replication = &rules.replication;
        let found_rows = self.capabilities & caps::FOUND_ROWS != 0;
        let mut tried = 0u64;
        while let Some(choice) = cluster.pick_replica(tried, gtid.as_ref()) {
            tried |= 1 << choice.index.min(63);
            let server = cluster.replica(choice.index).clone();
            let mut conn = match server.pool().acquire(found_rows).await {
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
                        return None;
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
            self.entry.using(server.pool(), conn.connection_id);
            self.held.push(Held {
                data_source: cluster.name().to_string(),
                conn,
                server,
                replica: true,
                wrote: false,
                diagnostics: false,
            });
            return Some(self.held.len() - 1);
        }
        None
    }

    /// After a statement (and after its diagnostics were collected): for each held primary
    /// connection a write went through, outside a transaction, remember the write so the
    /// session's reads find it: its GTID (`@@last_gtid`), or on servers without GTIDs the
    /// time, so reads use the primary for a while.
    pub(super) async fn note_writes(&mut self) {
        let mut index = 0;
        while index < self.held.len() {
            let held = &mut self.held[index];
            if !held.wrote || held.conn.in_transaction() {
                index += 1;
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
                    tracing::debug!(conn = self.connection_id, error = %e, "reading @@last_gtid failed");
                    if !matches!(e, BackendError::Server { .. }) {
                        self.held.swap_remove(index);
                        continue;
                    }
                    None
                }
            };
            let data_source = self.held[index].data_source.clone();
            tracing::debug!(conn = self.connection_id, data_source, gtid = ?gtid, "write noted for read-your-writes");
            self.writes.retain(|w| w.data_source != data_source);
            self.writes.push(Write {
                data_source,
                gtid,
                at: Instant::now(),
            });
            index += 1;
        }
    }

    /// Whether [`note_writes`](Self::note_writes) has anything to do.
    pub(super) fn has_unnoted_writes(&self) -> bool {
        self.held.iter().any(|h| h.wrote)
    }

    /// Returns every held connection to its pool as it is: the statement is over and nothing
    /// pins them, so they carry only state the next borrower's `sync_state` accounts for.
    /// Connections a KILL is interrupting are closed instead: one could otherwise reach
    /// another session and be interrupted there.
    pub(super) fn release_unpinned(&mut self) {
        let clean = self.entry.release_backends();
        for held in self.held.drain(..) {
            if clean {
                held.conn.release();
            }
        }
    }

    /// Resets every held connection and returns it to its pool (or closes it if the reset
    /// fails).
    pub(super) async fn release_all(&mut self) {
        for mut held in self.held.drain(..) {
            if held.conn.reset().await.is_ok() && self.entry.release_backends() {
                held.conn.release();
            }
        }
        self.entry.release_backends();
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
        self.relay(index, packet, kind, false)
            .await
            .map_err(|flow| flow.unwrap_or(Flow::Close))
    }

    /// Like [`relay_on`](Self::relay_on) for a read, except that when held connection
    /// `index` is to a replica that fails before any of its answer reached the client, the
    /// replica is taken out and `Err(None)` asks the caller to run the read again (on another
    /// replica or the primary).
    pub(super) async fn relay_read(
        &mut self,
        index: usize,
        packet: &[u8],
        kind: ResponseKind,
    ) -> Result<RelayOutcome, Option<Flow>> {
        let retry = self.held[index].replica;
        self.relay(index, packet, kind, retry).await
    }

    async fn relay(
        &mut self,
        index: usize,
        packet: &[u8],
        kind: ResponseKind,
        retry: bool,
    ) -> Result<RelayOutcome, Option<Flow>> {
        let deprecate_eof = self.deprecate_eof();
        // Errors, statement OKs and COM_STATISTICS carry no status flags.
        let reports_status = !matches!(kind, ResponseKind::Prepare { .. } | ResponseKind::Raw);
        let answered = self.client.seq();
        let conn = &mut self.held[index].conn;
        let error = match conn.send_command(packet).await {
            Err(e) => e,
            Ok(()) => {
                match relay_response(conn.packets(), &mut self.client, kind, deprecate_eof).await {
                    Ok(outcome) => {
                        if reports_status && outcome.error.is_none() {
                            self.status = outcome.status;
                            conn.status = outcome.status;
                        }
                        if outcome.last_insert_id != 0 {
                            self.last_insert_id = outcome.last_insert_id;
                        }
                        self.held[index].diagnostics =
                            outcome.warnings > 0 || outcome.error.is_some();
                        self.row_count = match (&outcome.error, outcome.result_set) {
                            (None, false) => outcome.affected_rows as i64,
                            _ => -1,
                        };
                        if let Some(err) = &outcome.error {
                            self.ctx.metrics.error(err.code);
                        }
                        return Ok(outcome);
                    }
                    Err(RelayError::Client(_)) => {
                        // The client left mid-response; the rest of it is unread, so the
                        // backend connection cannot be reused.
                        self.held.swap_remove(index);
                        return Err(Some(Flow::Close));
                    }
                    Err(RelayError::Backend(error)) => BackendError::Lost {
                        source_name: conn.source_name().to_string(),
                        error,
                    },
                }
            }
        };
        if retry && self.client.seq() == answered {
            self.replica_failed(index, &error);
            return Err(None);
        }
        Err(Some(self.backend_lost(index, error).await))
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
    /// direct connection to a crashed server would be. Other sessions are unaffected. A
    /// replica's connection carried no such state (it serves single reads), so there the
    /// statement fails and the session goes on; the replica gets no more reads until a check
    /// passes.
    pub(super) async fn backend_lost(&mut self, index: usize, error: BackendError) -> Flow {
        tracing::warn!(conn = self.connection_id, %error, "backend connection lost");
        let held = self.held.swap_remove(index);
        held.server.mark_down(&error);
        self.send_error(&error.to_server_error());
        let flushed = self.client.flush().await;
        if held.replica && flushed.is_ok() {
            return Flow::Continue;
        }
        Flow::Close
    }

    /// A replica read failed before any of its answer reached the client: the replica is
    /// taken out and the connection dropped, so the statement can run again elsewhere.
    pub(super) fn replica_failed(&mut self, index: usize, error: &BackendError) {
        self.replica_failed_keep(index, error);
        self.held.swap_remove(index);
    }

    /// Takes the server of held connection `index` out, leaving the connection for the
    /// caller to drop.
    pub(super) fn replica_failed_keep(&mut self, index: usize, error: &BackendError) {
        tracing::info!(conn = self.connection_id, %error, "replica read failed; retrying elsewhere");
        self.held[index].server.mark_down(error);
    }

    /// Whether held connection `index` is to a replica.
    pub(super) fn on_replica(&self, index: usize) -> bool {
        self.held[index].replica
    }
}
