//! Cancelling a session's work on its backends: the backend connections the executor is using
//! are listed here as it acquires them, so another task (a `KILL` from another session, the
//! session noticing its client has gone or its statement's time limit has passed) can
//! interrupt the statement running on them without reaching into the executor, which is busy
//! running it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use backend::{BackendError, Pool};
use protocol::{ClientError, ServerError};

use crate::error::ExecError;

/// Why backend statements were interrupted (the `reason` label of
/// `dbmesh_backend_cancellations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// `KILL [QUERY]` of the session.
    Kill,
    /// The client disconnected while the statement ran.
    ClientGone,
    /// The statement's time limit passed (`max_statement_time`, `MAX_EXECUTION_TIME`).
    TimeLimit,
    /// A merge or scatter read stopped before the shards were done (its LIMIT was reached,
    /// or one shard's error failed the statement).
    StoppedEarly,
    /// A row-lock wait of a transaction on several data sources passed the distributed
    /// lock-wait bound (`schema.distributed_lock_wait_ms`).
    LockWait,
}

impl CancelReason {
    pub const ALL: [CancelReason; 5] = [
        CancelReason::Kill,
        CancelReason::ClientGone,
        CancelReason::TimeLimit,
        CancelReason::StoppedEarly,
        CancelReason::LockWait,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CancelReason::Kill => "kill",
            CancelReason::ClientGone => "client_gone",
            CancelReason::TimeLimit => "time_limit",
            CancelReason::StoppedEarly => "stopped_early",
            CancelReason::LockWait => "lock_wait",
        }
    }
}

/// MariaDB's 1969 ER_STATEMENT_TIMEOUT, the answer to a statement past its time limit.
pub fn time_limit_error() -> ServerError {
    ExecError::TimeLimit.to_server_error()
}

/// The answer to a statement interrupted past the distributed lock-wait bound: MariaDB's
/// deadlock error, since the whole transaction is rolled back and the client should retry it.
pub fn lock_wait_deadlock_error() -> ServerError {
    ExecError::DistributedLockWait.to_server_error()
}

/// The backend connections one executor is using, and whether a cancel is interrupting them.
#[derive(Default)]
pub struct Cancel {
    threads: Mutex<Threads>,
    /// The current statement's time limit passed: the backends' "interrupted" errors are
    /// answered as 1969, and no further backend work starts for it.
    timed_out: AtomicBool,
    /// Steps that must not be cut short (COMMIT on several shards, where stopping halfway
    /// would commit some and roll back others) are running.
    atomic: AtomicU32,
    /// Data sources the session's distributed transaction has a branch on.
    branches: AtomicUsize,
    /// The current statement's row-lock wait passed the distributed lock-wait bound and was
    /// interrupted: its "interrupted" errors are answered as a deadlock (1213).
    lock_wait_passed: AtomicBool,
    /// Wakes a statement waiting for a pool connection, which has no backend statement to
    /// interrupt, when it is killed or its time limit passes.
    interrupt: Notify,
}

#[derive(Default)]
struct Threads {
    using: Vec<(Arc<Pool>, u32)>,
    /// Cancels in flight: until they are over the executor's connections must not go back to
    /// a pool, where another session could get one and be interrupted instead.
    cancelling: u32,
}

fn lock(m: &Mutex<Threads>) -> MutexGuard<'_, Threads> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks a step that must run to its end (see [`Cancel::atomic`]) while it lives.
pub(crate) struct AtomicStep(Arc<Cancel>);

impl Drop for AtomicStep {
    fn drop(&mut self) {
        self.0.atomic.fetch_sub(1, Ordering::Release);
    }
}

impl Cancel {
    /// The executor uses backend connection `thread` of `pool`.
    pub(crate) fn using(&self, pool: &Arc<Pool>, thread: u32) {
        lock(&self.threads).using.push((pool.clone(), thread));
    }

    /// The executor gives up every backend connection it used. False while a cancel is
    /// interrupting them: then they must be closed rather than go back to a pool.
    pub(crate) fn release(&self) -> bool {
        let mut threads = lock(&self.threads);
        threads.using.clear();
        threads.cancelling == 0
    }

    /// Interrupts the statement running on each backend connection the executor uses
    /// (`KILL QUERY <thread>` on a connection of its own to that server, all servers at
    /// once). `session` names the session in the log. Returns how many statements were
    /// interrupted (idle connections included: a KILL QUERY there changes nothing).
    pub async fn cancel(&self, session: u32) -> u64 {
        self.kill_all(session, Kill::Query).await
    }

    /// The client left during a statement whose connections are dropped: ends each backend
    /// connection the executor uses (`KILL CONNECTION`), so that no statement of it runs on,
    /// not even one that was still on its way when the KILL arrived (a `KILL QUERY` would
    /// find that connection idle and leave it). Returns how many connections were ended.
    pub async fn end_connections(&self, session: u32) -> u64 {
        self.kill_all(session, Kill::Connection).await
    }

    async fn kill_all(&self, session: u32, kill: Kill) -> u64 {
        self.interrupt.notify_waiters();
        let threads = self.begin_cancel();
        let killed = kill_threads(session, threads, kill).await;
        self.end_cancel();
        killed
    }

    /// A cancel starts: the connections to interrupt, which stay out of the pools until
    /// [`end_cancel`](Self::end_cancel).
    fn begin_cancel(&self) -> Vec<(Arc<Pool>, u32)> {
        let mut threads = lock(&self.threads);
        threads.cancelling += 1;
        threads.using.clone()
    }

    fn end_cancel(&self) {
        lock(&self.threads).cancelling -= 1;
    }

    /// The current statement's time limit passed: from now its interruption is answered as
    /// 1969, and the returned future interrupts its backend work (`None` while an atomic step
    /// runs, which is let finish). The future is meant to run beside the statement, which
    /// it does not hold up (a KILL can take seconds on a busy server); until it is over the
    /// statement's connections are closed rather than returned to a pool. It yields how many
    /// backend statements it interrupted.
    pub fn time_limit_passed(
        self: &Arc<Self>,
        session: u32,
    ) -> Option<impl Future<Output = u64> + Send + 'static> {
        self.timed_out.store(true, Ordering::Release);
        if self.in_atomic_step() {
            return None;
        }
        self.interrupt.notify_waiters();
        let threads = self.begin_cancel();
        let cancel = self.clone();
        Some(async move {
            let killed = kill_queries(session, threads).await;
            cancel.end_cancel();
            killed
        })
    }

    /// Yields, with the error the statement then answers, when the statement is interrupted
    /// while it waits for a pool connection: killed (`KILL QUERY`, 1317) or past its time
    /// limit (1969). `data_source` is the one it waits for.
    pub(crate) async fn interrupted(&self, data_source: &str) -> BackendError {
        let woken = self.interrupt.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if !self.timed_out() {
            woken.await;
        }
        let error = if self.timed_out() {
            time_limit_error()
        } else {
            ExecError::Interrupted.to_server_error()
        };
        BackendError::Server {
            source_name: data_source.to_string(),
            error,
        }
    }

    /// The next statement starts without the last one's time-out.
    pub fn statement_over(&self) {
        self.timed_out.store(false, Ordering::Relaxed);
    }

    /// Whether the current statement's time limit passed.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// The error the client gets for `err`: a backend's "interrupted" (1317) is a deadlock
    /// when the distributed lock-wait bound interrupted it, the time limit's 1969 when the
    /// limit did.
    pub fn client_error(&self, err: &ServerError) -> Option<ServerError> {
        if err.code != 1317 {
            return None;
        }
        if self.lock_wait_passed.load(Ordering::Acquire) {
            return Some(lock_wait_deadlock_error());
        }
        self.timed_out().then(time_limit_error)
    }

    /// The session's distributed transaction has a branch on `branches` data sources.
    pub(crate) fn set_branches(&self, branches: usize) {
        self.branches.store(branches, Ordering::Release);
    }

    /// The current statement has run for the distributed lock-wait bound. If the session's
    /// distributed transaction has branches on several data sources (so a wait of this
    /// statement may close a cycle across servers that no server sees), the returned future
    /// interrupts those of its backend statements that wait for a row lock, which are then
    /// answered as a deadlock; it yields how many it interrupted. `None` otherwise, and while
    /// an atomic step (a commit) runs. Until the future is over the connections are closed
    /// rather than returned to a pool.
    pub fn lock_wait_bound_passed(
        self: &Arc<Self>,
        session: u32,
    ) -> Option<impl Future<Output = u64> + Send + 'static> {
        if self.branches.load(Ordering::Acquire) < 2 || self.in_atomic_step() {
            return None;
        }
        let threads = self.begin_cancel();
        let cancel = self.clone();
        Some(async move {
            let interrupted = interrupt_lock_waits(session, threads, &cancel).await;
            cancel.end_cancel();
            interrupted
        })
    }

    /// Whether the distributed lock-wait bound interrupted the current statement.
    pub fn lock_wait_was_passed(&self) -> bool {
        self.lock_wait_passed.load(Ordering::Acquire)
    }

    /// The next statement starts without the last one's lock-wait interruption.
    pub fn lock_wait_over(&self) {
        self.lock_wait_passed.store(false, Ordering::Release);
    }

    /// Marks a step that must not be cut short while the returned guard lives.
    pub(crate) fn atomic(self: &Arc<Self>) -> AtomicStep {
        self.atomic.fetch_add(1, Ordering::Acquire);
        AtomicStep(self.clone())
    }

    /// Whether a step that must not be cut short is running: a client that leaves now is
    /// noticed after it.
    pub fn in_atomic_step(&self) -> bool {
        self.atomic.load(Ordering::Acquire) != 0
    }
}

/// How long the statements a read no longer needs (it stopped early) get to finish on their
/// own before they are interrupted: a shard whose last rows are on their way costs less to read
/// out than an interruption, which opens a connection.
const STOP_GRACE: Duration = Duration::from_millis(20);

/// Runs `drain`, which reads out the answers of statements the read no longer needs; when
/// it is not over within [`STOP_GRACE`], interrupts the statements of `threads` (the
/// connections it reads) so it ends promptly. Returns `drain`'s output and how many
/// statements were interrupted. Costs no timer when `drain` is over at once.
pub(crate) async fn drain_or_interrupt<F: Future>(
    session: u32,
    threads: Vec<(Arc<Pool>, u32)>,
    drain: F,
) -> (F::Output, u64) {
    tokio::pin!(drain);
    tokio::select! {
        biased;
        out = &mut drain => return (out, 0),
        _ = tokio::time::sleep(STOP_GRACE) => {}
    }
    let interrupted = kill_queries(session, threads).await;
    (drain.await, interrupted)
}

/// What a KILL sent to a backend ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// `KILL QUERY`: the statement; the connection stays usable.
    Query,
    /// `KILL CONNECTION`: the connection, so that a statement that reaches it after the KILL
    /// (sent just before, still on its way) cannot run either. For connections that are
    /// dropped anyway.
    Connection,
}

impl Kill {
    fn statement(self, thread: u32) -> String {
        match self {
            Kill::Query => format!("KILL QUERY {thread}"),
            Kill::Connection => format!("KILL CONNECTION {thread}"),
        }
    }
}

/// `KILL QUERY` of every `(pool, thread)` in `threads`: see [`kill_threads`].
pub(crate) async fn kill_queries(session: u32, threads: Vec<(Arc<Pool>, u32)>) -> u64 {
    kill_threads(session, threads, Kill::Query).await
}

/// `kill` of every `(pool, thread)` in `threads`: the servers at once, the threads of one
/// server one after another on one connection of its own (the pool's may all be busy, and
/// this must not wait behind the statements it interrupts). Returns how many were sent.
async fn kill_threads(session: u32, threads: Vec<(Arc<Pool>, u32)>, kill: Kill) -> u64 {
    let mut kills = tokio::task::JoinSet::new();
    for (pool, ids) in by_server(threads) {
        kills.spawn(async move {
            let killed = match backend::BackendConn::connect(&pool.options()).await {
                Ok(mut conn) => kill_on(&mut conn, &ids, kill).await,
                Err(e) => Err(e),
            };
            match killed {
                Ok(()) => ids.len() as u64,
                Err(e) => {
                    tracing::warn!(session, address = pool.address(), threads = ?ids, error = %e, ?kill, "KILL on the backend failed");
                    0
                }
            }
        });
    }
    let mut killed = 0;
    while let Some(done) = kills.join_next().await {
        killed += done.unwrap_or(0);
    }
    killed
}

/// `KILL QUERY` of those of `threads` that wait for a row lock (InnoDB's `LOCK WAIT`), the
/// servers at once, after marking `cancel` so their "interrupted" answers are deadlocks.
/// Where the server does not show its transactions (no PROCESS privilege), every thread of
/// `threads` on it is interrupted: the bound holds either way. Returns how many were sent.
async fn interrupt_lock_waits(
    session: u32,
    threads: Vec<(Arc<Pool>, u32)>,
    cancel: &Cancel,
) -> u64 {
    let mut waits = tokio::task::JoinSet::new();
    for (pool, ids) in by_server(threads) {
        waits.spawn(async move {
            let mut conn = backend::BackendConn::connect(&pool.options()).await?;
            let list: Vec<String> = ids.iter().map(u32::to_string).collect();
            let sql = format!(
                "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX \
                 WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id IN ({})",
                list.join(",")
            );
            let waiting = match conn.query(&sql).await {
                Ok(result) => result
                    .rows
                    .iter()
                    .filter_map(|row| row.first()?.as_deref()?.parse().ok())
                    .collect(),
                Err(backend::BackendError::Server { error, .. }) => {
                    tracing::warn!(session, address = pool.address(), %error, "cannot read InnoDB's lock waits; interrupting every statement of the transaction");
                    ids
                }
                Err(e) => return Err(e),
            };
            Ok::<_, backend::BackendError>((pool, conn, waiting))
        });
    }
    let mut found = Vec::new();
    while let Some(done) = waits.join_next().await {
        match done {
            Ok(Ok((pool, conn, waiting))) if !waiting.is_empty() => {
                found.push((pool, conn, waiting))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(session, error = %e, "reading lock waits failed"),
            Err(e) => tracing::warn!(session, error = %e, "reading lock waits failed"),
        }
    }
    if found.is_empty() {
        return 0;
    }
    cancel.lock_wait_passed.store(true, Ordering::Release);
    let mut killed = 0;
    for (pool, mut conn, waiting) in found {
        match kill_on(&mut conn, &waiting, Kill::Query).await {
            Ok(()) => killed += waiting.len() as u64,
            Err(e) => {
                tracing::warn!(session, address = pool.address(), threads = ?waiting, error = %e, "KILL QUERY on the backend failed");
            }
        }
    }
    tracing::info!(
        session,
        killed,
        "row-lock waits past the distributed lock-wait bound interrupted"
    );
    killed
}

/// `threads` grouped by their server's pool.
fn by_server(threads: Vec<(Arc<Pool>, u32)>) -> Vec<(Arc<Pool>, Vec<u32>)> {
    let mut by_server: Vec<(Arc<Pool>, Vec<u32>)> = Vec::new();
    for (pool, thread) in threads {
        match by_server.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &pool)) {
            Some((_, ids)) => ids.push(thread),
            None => by_server.push((pool, vec![thread])),
        }
    }
    by_server
}

/// `KILL QUERY` of each of `threads` on `conn`, a connection of the proxy's own to their
/// server.
async fn kill_on(
    conn: &mut backend::BackendConn,
    threads: &[u32],
    kill: Kill,
) -> Result<(), backend::BackendError> {
    for &thread in threads {
        match conn.query(&kill.statement(thread)).await {
            // The statement ended meanwhile and the connection closed: nothing to interrupt.
            Err(backend::BackendError::Server { error, .. }) if error.code == 1094 => {}
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
