//! A data source's servers: one primary and its replicas, each a [`Server`] (a pool plus what
//! the health checker and the sessions last learnt about it).
//!
//! Reads that may go to a replica ask [`Cluster::pick_replica`]; everything else uses the
//! primary. A server is taken out when a check fails or a session's use of it fails, and put
//! back by the next successful check. A replica gets reads while both replication threads run
//! and it lags at most `max_replica_lag_secs`, and (unless the rules say `fail`) while its
//! primary is unreachable if it has applied everything it received: its data is then as fresh
//! as the last write it saw, and its staleness is the time since it lost the primary.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::conn::{BackendConn, QueryResult};
use crate::gtid::{Gtid, Position};
use crate::pool::{Pool, PooledConn};
use crate::BackendError;

/// One backend server with its pool and health.
pub struct Server {
    pool: Arc<Pool>,
    up: AtomicBool,
    /// Replicas: their link to the primary at the last check.
    link: Mutex<Link>,
    /// Replicas: `Seconds_Behind_Master` at the last check; -1 when unknown.
    lag_secs: AtomicI64,
    /// Replicas: what it is known to have applied (from checks, and from sessions' waits).
    applied: Mutex<Position>,
    queries: AtomicU64,
    errors: AtomicU64,
    /// With `follow_topology`: whether the last check found it writable and replicating from
    /// nothing ([`WRITABLE`]), not ([`NOT_WRITABLE`]) or did not ask ([`UNKNOWN`]).
    writable: AtomicU8,
    /// A primary whose data source has another writable server (split brain): it gets no
    /// statements until the health checker finds only one.
    split_brain: AtomicBool,
    /// A primary that the recorded switches have not confirmed (they were unreadable since
    /// the proxy started): the rule file may name a server switched away from, which may have
    /// diverged, so it gets no statements until they are read.
    unconfirmed: AtomicBool,
}

const UNKNOWN: u8 = 0;
const WRITABLE: u8 = 1;
const NOT_WRITABLE: u8 = 2;

/// What the metrics endpoint shows of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    pub up: bool,
    pub replicating: bool,
    /// Seconds behind the primary; `None` when unknown (not a replica, or replication stopped).
    pub lag_secs: Option<u64>,
    /// Replicas that lost their primary with everything received applied: seconds since the
    /// health checker first saw it so (the data is at least that old).
    pub stale_secs: Option<u64>,
    pub queries: u64,
    pub errors: u64,
}

impl Server {
    /// A server reached through `pool`, assumed up until a check or a use says otherwise.
    pub fn new(pool: Arc<Pool>) -> Arc<Server> {
        Arc::new(Server {
            pool,
            up: AtomicBool::new(true),
            link: Mutex::new(Link::Stopped),
            lag_secs: AtomicI64::new(-1),
            applied: Mutex::new(Position::default()),
            queries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            writable: AtomicU8::new(UNKNOWN),
            split_brain: AtomicBool::new(false),
            unconfirmed: AtomicBool::new(false),
        })
    }

    /// Whether the last check found the server up, writable (`@@read_only` off) and running
    /// no replication: a primary as a promotion leaves it. Only known with `follow_topology`.
    pub fn is_writable(&self) -> bool {
        self.is_up() && self.writable.load(Ordering::Relaxed) == WRITABLE
    }

    /// Stops (or lets again) the statements for this primary: its data source has more than
    /// one writable server. Returns whether it was stopped before.
    pub fn set_split_brain(&self, split: bool) -> bool {
        self.split_brain.swap(split, Ordering::Relaxed)
    }

    pub fn is_split_brain(&self) -> bool {
        self.split_brain.load(Ordering::Relaxed)
    }

    /// Stops (or lets again) the statements for this primary: the recorded switches, which
    /// may name another server, could not be read.
    pub fn set_unconfirmed(&self, unconfirmed: bool) {
        self.unconfirmed.store(unconfirmed, Ordering::Relaxed);
    }

    pub fn is_unconfirmed(&self) -> bool {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    pub fn address(&self) -> &str {
        self.pool.address()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Borrows a connection for a statement. While the server is marked down this fails at
    /// once ([`BackendError::Down`]) rather than costing every statement a connect or
    /// handshake timeout; the health checker (which uses the pool directly) puts it back. A
    /// connect that fails marks it down. A wait for a free connection ends with `stop`'s
    /// error if `stop` yields first ([`Pool::acquire_unless`]).
    pub async fn acquire(
        &self,
        found_rows: bool,
        stop: impl Future<Output = BackendError>,
    ) -> Result<PooledConn, BackendError> {
        if self.is_split_brain() {
            return Err(BackendError::SplitBrain {
                source_name: self.pool.name().to_string(),
            });
        }
        if self.is_unconfirmed() {
            return Err(BackendError::PrimaryUnconfirmed {
                source_name: self.pool.name().to_string(),
            });
        }
        if !self.is_up() {
            return Err(BackendError::Down {
                source_name: self.pool.name().to_string(),
            });
        }
        let result = self.pool.acquire_unless(found_rows, stop).await;
        if let Err(e @ BackendError::Unreachable { .. }) = &result {
            self.mark_down(e);
        }
        result
    }

    /// Counts one statement sent to this server.
    pub fn note_query(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    /// A session could not use this server (connect refused, connection lost): it gets no
    /// more reads until a check finds it healthy, and its idle connections are closed.
    pub fn mark_down(&self, error: &BackendError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(data_source = self.pool.name(), address = self.address(), %error, "backend taken out");
        }
        self.pool.discard_idle();
    }

    /// Whether this replica is known to have applied `gtid`.
    pub fn has_applied(&self, gtid: &Gtid) -> bool {
        self.lock_applied().covers(gtid)
    }

    /// Records that this replica has applied `gtid` (a session waited for it there).
    pub fn note_applied(&self, gtid: &Gtid) {
        self.lock_applied().advance(gtid);
    }

    fn lock_applied(&self) -> std::sync::MutexGuard<'_, Position> {
        // A panic while holding the lock cannot leave a position half-updated.
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_link(&self) -> std::sync::MutexGuard<'_, Link> {
        // A `Link` is replaced whole, never left half-written.
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a replica's link as a check found it, keeping when it lost its primary.
    fn set_link(&self, found: LinkFound) {
        let mut link = self.lock_link();
        *link = match (found, *link) {
            (LinkFound::Streaming, _) => Link::Streaming,
            (LinkFound::PrimaryLost, Link::PrimaryLost { since }) => Link::PrimaryLost { since },
            (LinkFound::PrimaryLost, _) => Link::PrimaryLost {
                since: Instant::now(),
            },
            (LinkFound::Stopped, _) => Link::Stopped,
        };
    }

    pub fn stats(&self) -> ServerStats {
        let lag = self.lag_secs.load(Ordering::Relaxed);
        let link = *self.lock_link();
        ServerStats {
            up: self.is_up(),
            replicating: link == Link::Streaming,
            lag_secs: u64::try_from(lag).ok(),
            stale_secs: match link {
                Link::PrimaryLost { since } => Some(since.elapsed().as_secs()),
                _ => None,
            },
            queries: self.queries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// Whether this replica may serve a read that must see `write` (the session's last write,
    /// if any): a streaming replica that lags at most `max_lag_secs` (it may wait for the
    /// write), or with `without_primary` one that lost its primary and has the write already
    /// (nothing more will arrive to wait for).
    fn readable(&self, max_lag_secs: u64, without_primary: bool, write: Option<&Gtid>) -> bool {
        if !self.is_up() {
            return false;
        }
        match *self.lock_link() {
            Link::Streaming => u64::try_from(self.lag_secs.load(Ordering::Relaxed))
                .is_ok_and(|lag| lag <= max_lag_secs),
            Link::PrimaryLost { .. } => {
                without_primary && write.is_none_or(|gtid| self.has_applied(gtid))
            }
            // Promoted (writable, replicating from nothing; known with `follow_topology`):
            // it holds the newest data there is, and is about to become the primary.
            Link::Stopped => self.writable.load(Ordering::Relaxed) == WRITABLE,
        }
    }

    /// Up, replicating from nothing, and holding `write` if there is one: what a replica is
    /// between an HA tool's `RESET SLAVE ALL` and its `SET GLOBAL read_only = OFF` (or after a
    /// DBA stopped it). With the primary down it may serve reads of what it applied, like a
    /// replica whose primary is lost.
    fn stopped_with(&self, write: Option<&Gtid>) -> bool {
        self.is_up()
            && matches!(*self.lock_link(), Link::Stopped)
            && write.is_none_or(|gtid| self.has_applied(gtid))
    }

    /// One health check, bounded by `timeout`: a ping, for a replica its replication state,
    /// and with `topology` whether it is writable and replicates from nothing. Updates what
    /// sessions see and logs changes. The check borrows a connection
    /// within the pool's bound, so it never opens more than `pool.max`; when every
    /// connection is in use the server is evidently serving, and the check is skipped.
    pub async fn check(&self, replica: bool, topology: bool, timeout: Duration) {
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, self.probe(replica, topology)).await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        match result {
            Ok(Probe::Busy) => {}
            Ok(Probe::Alive(status, writable)) => {
                let writable = match writable {
                    None => UNKNOWN,
                    Some(true) => WRITABLE,
                    Some(false) => NOT_WRITABLE,
                };
                self.writable.store(writable, Ordering::Relaxed);
                if let Some(status) = status {
                    self.set_link(status.link);
                    self.lag_secs.store(status.lag_secs, Ordering::Relaxed);
                    self.lock_applied().clone_from(&status.applied);
                }
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        data_source = self.pool.name(),
                        address = self.address(),
                        "backend healthy again, back in service"
                    );
                }
                if let Err(e) = self.pool.keep_min_idle().await {
                    tracing::debug!(address = self.address(), error = %e, "opening idle connections failed");
                }
            }
            Err(reason) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.writable.store(UNKNOWN, Ordering::Relaxed);
                self.set_link(LinkFound::Stopped);
                self.lag_secs.store(-1, Ordering::Relaxed);
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        data_source = self.pool.name(),
                        address = self.address(),
                        reason,
                        check_ms = started.elapsed().as_millis() as u64,
                        "backend failed its health check, taken out"
                    );
                }
                self.pool.discard_idle();
            }
        }
    }

    async fn probe(&self, replica: bool, topology: bool) -> Result<Probe, String> {
        let Some(conn) = self.pool.try_acquire(false).await else {
            return Ok(Probe::Busy);
        };
        let mut conn = conn.map_err(|e| e.to_string())?;
        let writable = if topology {
            Some(writable(&mut conn).await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        if !replica {
            if writable.is_none() {
                conn.ping().await.map_err(|e| e.to_string())?;
            }
            conn.release();
            return Ok(Probe::Alive(None, writable));
        }
        let status = conn
            .query("SHOW SLAVE STATUS")
            .await
            .map_err(|e| e.to_string())?;
        // SHOW SLAVE STATUS has the I/O thread's GTID position, not the applied one.
        let applied = conn
            .query("SELECT @@global.gtid_slave_pos")
            .await
            .map_err(|e| e.to_string())?;
        conn.release();
        let applied = applied
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten();
        Ok(Probe::Alive(
            Some(ReplicationStatus::new(
                &status,
                applied.as_deref().unwrap_or(""),
            )),
            writable,
        ))
    }
}

/// Whether the server behind `conn` is writable and runs no replication (no connection with a
/// thread running or reconnecting).
async fn writable(conn: &mut BackendConn) -> Result<bool, BackendError> {
    if !read_write(conn).await? {
        return Ok(false);
    }
    let links = replication_links(conn).await?;
    let replicating = (0..links.rows.len()).any(|row| {
        links.value(row, "Slave_IO_Running") != Some("No")
            || links.value(row, "Slave_SQL_Running") != Some("No")
    });
    Ok(!replicating)
}

/// Whether `@@global.read_only` is off on the server behind `conn`.
pub async fn read_write(conn: &mut BackendConn) -> Result<bool, BackendError> {
    let read_only = conn.query("SELECT @@global.read_only").await?;
    Ok(read_only
        .rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        == Some("0".into()))
}

/// The server's replication connections: `SHOW ALL SLAVES STATUS` (MariaDB, every named
/// connection), or `SHOW SLAVE STATUS` where that is unknown (MySQL).
pub async fn replication_links(conn: &mut BackendConn) -> Result<QueryResult, BackendError> {
    match conn.query("SHOW ALL SLAVES STATUS").await {
        Err(BackendError::Server { .. }) => conn.query("SHOW SLAVE STATUS").await,
        result => result,
    }
}

/// What a check found.
enum Probe {
    /// Every pooled connection is in use: nothing learnt, nothing changed.
    Busy,
    /// The server answered; a replica's replication state, and (with `follow_topology`)
    /// whether it is writable and replicates from nothing.
    Alive(Option<ReplicationStatus>, Option<bool>),
}

/// A replica's link to its primary, as the health checker keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Both threads run and the I/O thread is connected: `Seconds_Behind_Master` is its lag.
    Streaming,
    /// The I/O thread is (re)connecting to an unreachable primary, and the SQL thread runs
    /// with everything received applied, since `since`.
    PrimaryLost { since: Instant },
    /// A thread was stopped, or it is still applying what it received without its primary.
    Stopped,
}

/// What one check found of a replica's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkFound {
    Streaming,
    PrimaryLost,
    Stopped,
}

/// A replica's `SHOW SLAVE STATUS`, as far as routing cares.
struct ReplicationStatus {
    link: LinkFound,
    lag_secs: i64,
    applied: Position,
}

impl ReplicationStatus {
    /// From `SHOW SLAVE STATUS` and `@@gtid_slave_pos`. `Seconds_Behind_Master` is NULL
    /// while the I/O thread is not connected (`Slave_IO_Running` is `Connecting`, or briefly
    /// still `Yes` right after the primary went away).
    /// <https://mariadb.com/kb/en/show-replica-status/>
    fn new(status: &crate::conn::QueryResult, gtid_slave_pos: &str) -> ReplicationStatus {
        let column = |name| status.value(0, name);
        let lag: Option<i64> = column("Seconds_Behind_Master").and_then(|s| s.parse().ok());
        let applied = Position::parse(gtid_slave_pos);
        // Everything the I/O thread received has been applied: every GTID it received, or
        // without GTIDs, up to the binlog position it read.
        let caught_up = match column("Gtid_IO_Pos").filter(|p| !p.is_empty()) {
            Some(received) => applied.includes(&Position::parse(received)),
            None => {
                column("Master_Log_File") == column("Relay_Master_Log_File")
                    && column("Read_Master_Log_Pos") == column("Exec_Master_Log_Pos")
            }
        };
        let link = match (column("Slave_IO_Running"), column("Slave_SQL_Running")) {
            (Some("Yes"), Some("Yes")) if lag.is_some() => LinkFound::Streaming,
            (Some("Yes" | "Connecting"), Some("Yes")) if caught_up => LinkFound::PrimaryLost,
            _ => LinkFound::Stopped,
        };
        ReplicationStatus {
            link,
            lag_secs: lag.filter(|_| link == LinkFound::Streaming).unwrap_or(-1),
            applied,
        }
    }
}

/// A replica chosen for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaChoice {
    /// Index into [`Cluster::replicas`].
    pub index: usize,
    /// The replica is known to have applied the write the read must see (or there is none);
    /// otherwise the reader waits for it there.
    pub has_write: bool,
}

/// One data source: its primary and replicas.
pub struct Cluster {
    name: String,
    primary: Arc<Server>,
    replicas: Vec<(Arc<Server>, u32)>,
    max_lag_secs: u64,
    /// Replicas that lost their primary keep serving reads (`reads_when_primary_down`).
    reads_without_primary: bool,
    /// Advances with every replica read, spreading reads by weight.
    turn: AtomicUsize,
}

impl Cluster {
    /// `replicas` with their weights; `reads_without_primary`: replicas whose primary is
    /// unreachable keep serving reads of what they applied.
    pub fn new(
        name: String,
        primary: Arc<Server>,
        replicas: Vec<(Arc<Server>, u32)>,
        max_lag_secs: u64,
        reads_without_primary: bool,
    ) -> Cluster {
        Cluster {
            name,
            primary,
            replicas,
            max_lag_secs,
            reads_without_primary,
            turn: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn primary(&self) -> &Arc<Server> {
        &self.primary
    }

    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    pub fn replica(&self, index: usize) -> &Arc<Server> {
        &self.replicas[index].0
    }

    /// The replicas with their weights, in rule-file order.
    pub fn replicas(&self) -> impl Iterator<Item = (&Arc<Server>, u32)> {
        self.replicas.iter().map(|(s, w)| (s, *w))
    }

    /// A replica for a read, by weight among those that are up, replicating and not lagging
    /// (or serving without their primary and holding `write`), leaving out the indexes set in
    /// `skip` (tried already); with whether it is known to have applied `write`. `None`: read
    /// from the primary.
    pub fn pick_replica(&self, skip: u64, write: Option<&Gtid>) -> Option<ReplicaChoice> {
        let eligible = |i: usize, server: &Server, weight: u32| {
            weight > 0 && skip & (1 << i.min(63)) == 0 && self.readable(server, write)
        };
        let total: u64 = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(i, (s, w))| eligible(*i, s, *w))
            .map(|(_, (_, w))| u64::from(*w))
            .sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.turn.fetch_add(1, Ordering::Relaxed) as u64 % total;
        for (index, (server, weight)) in self.replicas.iter().enumerate() {
            if !eligible(index, server, *weight) {
                continue;
            }
            if ticket < u64::from(*weight) {
                return Some(ReplicaChoice {
                    index,
                    has_write: write.is_none_or(|gtid| server.has_applied(gtid)),
                });
            }
            ticket -= u64::from(*weight);
        }
        None
    }

    /// Whether a read of this data source can be served: its primary is up, or a replica
    /// qualifies for a read without a session write to see.
    pub fn can_read(&self) -> bool {
        self.primary.is_up()
            || self
                .replicas
                .iter()
                .any(|(s, w)| *w > 0 && self.readable(s, None))
    }

    fn readable(&self, server: &Server, write: Option<&Gtid>) -> bool {
        server.readable(self.max_lag_secs, self.reads_without_primary, write)
            || (self.reads_without_primary && !self.primary.is_up() && server.stopped_with(write))
    }

    /// Whether the proxy uses `server` now: a primary while it is up; a replica while it
    /// may serve reads (up and replicating within the lag limit, or serving without its
    /// primary as the rules allow), whatever its weight.
    pub fn in_service(&self, server: &Server, replica: bool) -> bool {
        if replica {
            self.readable(server, None)
        } else {
            server.is_up()
        }
    }

    /// Every server with whether it is a replica, for the health checker.
    pub fn servers(&self) -> impl Iterator<Item = (&Arc<Server>, bool)> {
        std::iter::once((&self.primary, false)).chain(self.replicas.iter().map(|(s, _)| (s, true)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::ConnectOptions;

    fn server(address: &str) -> Arc<Server> {
        let options = ConnectOptions {
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            ..ConnectOptions::plaintext("ds", address, "u", "", None)
        };
        Server::new(Pool::new(options, 1, 0, Duration::from_secs(1)))
    }

    fn healthy(s: &Server, lag: i64, applied: &str) {
        s.set_link(LinkFound::Streaming);
        s.lag_secs.store(lag, Ordering::Relaxed);
        *s.lock_applied() = Position::parse(applied);
    }

    fn cluster(weights: &[u32]) -> Cluster {
        let replicas = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (server(&format!("r{i}:1")), *w))
            .collect();
        Cluster::new("ds".into(), server("p:1"), replicas, 5, true)
    }

    fn counts(c: &Cluster, reads: usize, write: Option<&Gtid>) -> Vec<usize> {
        let mut counts = vec![0; c.replicas.len()];
        for _ in 0..reads {
            counts[c.pick_replica(0, write).expect("a replica").index] += 1;
        }
        counts
    }

    #[test]
    fn reads_spread_by_weight_over_healthy_replicas_only() {
        let c = cluster(&[1, 3, 0]);
        for (s, _) in c.replicas() {
            healthy(s, 0, "0-1-10");
        }
        assert_eq!(counts(&c, 400, None), vec![100, 300, 0]);
        c.replica(1).mark_down(&BackendError::Unreachable {
            source_name: "ds".into(),
            reason: "test".into(),
        });
        assert_eq!(counts(&c, 10, None), vec![10, 0, 0]);
        assert_eq!(
            c.pick_replica(1, None),
            None,
            "the only one left was skipped"
        );
    }

    #[test]
    fn lagging_or_stopped_replicas_get_no_reads() {
        let c = cluster(&[1, 1]);
        healthy(c.replica(0), 6, "");
        healthy(c.replica(1), 5, "");
        assert_eq!(counts(&c, 4, None), vec![0, 4]);
        c.replica(1).set_link(LinkFound::Stopped);
        assert_eq!(c.pick_replica(0, None), None);
    }

    /// `SHOW SLAVE STATUS` with the given thread states, lag and positions.
    fn slave_status(
        io: &str,
        sql: &str,
        lag: Option<&str>,
        read: &str,
        exec: &str,
    ) -> ReplicationStatus {
        with_gtid_io_pos(io, sql, lag, read, exec, "")
    }

    fn with_gtid_io_pos(
        io: &str,
        sql: &str,
        lag: Option<&str>,
        read: &str,
        exec: &str,
        gtid_io_pos: &str,
    ) -> ReplicationStatus {
        let columns = [
            "Slave_IO_Running",
            "Slave_SQL_Running",
            "Seconds_Behind_Master",
            "Master_Log_File",
            "Relay_Master_Log_File",
            "Read_Master_Log_Pos",
            "Exec_Master_Log_Pos",
            "Gtid_IO_Pos",
        ];
        let row = [
            Some(io),
            Some(sql),
            lag,
            Some("b.01"),
            Some("b.01"),
            Some(read),
            Some(exec),
            Some(gtid_io_pos),
        ];
        let result = crate::conn::QueryResult {
            ok: Default::default(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![row.iter().map(|v| v.map(str::to_string)).collect()],
        };
        ReplicationStatus::new(&result, "0-1-10")
    }

    #[test]
    fn a_replica_that_applied_all_it_received_has_lost_its_primary_not_stopped() {
        let link = |io, sql, lag, read, exec| slave_status(io, sql, lag, read, exec).link;
        assert_eq!(
            link("Yes", "Yes", Some("0"), "9", "9"),
            LinkFound::Streaming
        );
        assert_eq!(
            link("Connecting", "Yes", None, "9", "9"),
            LinkFound::PrimaryLost
        );
        assert_eq!(link("Yes", "Yes", None, "9", "9"), LinkFound::PrimaryLost);
        assert_eq!(
            link("Connecting", "Yes", None, "9", "5"),
            LinkFound::Stopped,
            "still applying"
        );
        assert_eq!(link("Connecting", "No", None, "9", "9"), LinkFound::Stopped);
        assert_eq!(
            link("No", "Yes", None, "9", "9"),
            LinkFound::Stopped,
            "a DBA stopped it"
        );
        assert_eq!(
            slave_status("Connecting", "Yes", None, "9", "9").lag_secs,
            -1
        );
        // With GTIDs, what was received against what was applied (`0-1-10`), whatever the
        // binlog positions say.
        let gtid = |received| with_gtid_io_pos("Connecting", "Yes", None, "9", "5", received).link;
        assert_eq!(gtid("0-1-10"), LinkFound::PrimaryLost);
        assert_eq!(gtid("0-1-11"), LinkFound::Stopped);
        assert_eq!(gtid("0-1-10,1-2-1"), LinkFound::Stopped);
    }

    #[test]
    fn replicas_without_their_primary_serve_reads_of_what_they_applied() {
        let c = cluster(&[1, 1]);
        healthy(c.replica(0), 0, "0-1-9");
        healthy(c.replica(1), 0, "0-1-10");
        c.primary().mark_down(&BackendError::Unreachable {
            source_name: "ds".into(),
            reason: "test".into(),
        });
        for (s, _) in c.replicas() {
            s.set_link(LinkFound::PrimaryLost);
        }
        assert_eq!(counts(&c, 4, None), vec![2, 2]);
        assert!(c.can_read());
        assert_eq!(c.replica(0).stats().stale_secs, Some(0));
        assert!(!c.replica(0).stats().replicating);
        // A session's write only the second has: nothing will arrive at the first to wait for.
        let write = Gtid::parse("0-1-10").unwrap();
        assert_eq!(counts(&c, 4, Some(&write)), vec![0, 4]);
        let newer = Gtid::parse("0-1-11").unwrap();
        assert_eq!(c.pick_replica(0, Some(&newer)), None);

        let strict = Cluster::new(
            "ds".into(),
            c.primary().clone(),
            c.replicas.clone(),
            5,
            false,
        );
        assert_eq!(
            strict.pick_replica(0, None),
            None,
            "reads_when_primary_down = \"fail\""
        );
        assert!(!strict.can_read());
    }

    #[test]
    fn a_choice_says_whether_the_replica_is_known_to_have_the_write() {
        let c = cluster(&[1, 1]);
        healthy(c.replica(0), 0, "0-1-9");
        healthy(c.replica(1), 0, "0-1-10");
        let write = Gtid::parse("0-1-10").unwrap();
        assert_eq!(
            counts(&c, 4, Some(&write)),
            vec![2, 2],
            "weights still decide"
        );
        let first = c.pick_replica(0, Some(&write)).unwrap();
        let second = c.pick_replica(0, Some(&write)).unwrap();
        let known = |choice: ReplicaChoice| (choice.index, choice.has_write);
        assert_eq!([known(first), known(second)], [(0, false), (1, true)]);
        c.replica(0).note_applied(&write);
        assert!(c.pick_replica(0, Some(&write)).unwrap().has_write);
        assert!(c.pick_replica(0, Some(&write)).unwrap().has_write);
    }
}
