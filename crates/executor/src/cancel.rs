//! Cancelling a session's work on its backends: the backend connections the executor is using
//! are listed here as it acquires them, so another task (a `KILL` from another session, the
//! session noticing its client has gone or its statement's time limit has passed) can
//! interrupt the statement running on them without reaching into the executor, which is busy
//! running it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backend::Pool;
use protocol::ServerError;

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
}

impl CancelReason {
    pub const ALL: [CancelReason; 4] = [
        CancelReason::Kill,
        CancelReason::ClientGone,
        CancelReason::TimeLimit,
        CancelReason::StoppedEarly,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CancelReason::Kill => "kill",
            CancelReason::ClientGone => "client_gone",
            CancelReason::TimeLimit => "time_limit",
            CancelReason::StoppedEarly => "stopped_early",
        }
    }
}

/// MariaDB's 1969 ER_STATEMENT_TIMEOUT, the answer to a statement past its time limit.
pub fn time_limit_error() -> ServerError {
    ServerError::new(
        1969,
        "70100",
        "Query execution was interrupted (max_statement_time exceeded)",
    )
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
        let threads = self.begin_cancel();
        let killed = kill_queries(session, threads).await;
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
        let threads = self.begin_cancel();
        let cancel = self.clone();
        Some(async move {
            let killed = kill_queries(session, threads).await;
            cancel.end_cancel();
            killed
        })
    }

    /// The next statement starts without the last one's time-out.
    pub fn statement_over(&self) {
        self.timed_out.store(false, Ordering::Relaxed);
    }

    /// Whether the current statement's time limit passed.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// The error the client gets for `err`: a backend's "interrupted" (1317) is the time
    /// limit's 1969 when the limit is what interrupted it.
    pub fn client_error(&self, err: &ServerError) -> Option<ServerError> {
        (err.code == 1317 && self.timed_out()).then(time_limit_error)
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

/// `KILL QUERY` of every `(pool, thread)` in `threads`: the servers at once, the threads of
/// one server one after another on one connection of its own (the pool's may all be busy, and
/// this must not wait behind the statements it interrupts). Returns how many were sent.
pub(crate) async fn kill_queries(session: u32, threads: Vec<(Arc<Pool>, u32)>) -> u64 {
    let mut by_server: Vec<(Arc<Pool>, Vec<u32>)> = Vec::new();
    for (pool, thread) in threads {
        match by_server.iter_mut().find(|(p, _)| Arc::ptr_eq(p, &pool)) {
            Some((_, ids)) => ids.push(thread),
            None => by_server.push((pool, vec![thread])),
        }
    }
    let mut kills = tokio::task::JoinSet::new();
    for (pool, ids) in by_server {
        kills.spawn(async move {
            match kill_on(&pool, &ids).await {
                Ok(()) => ids.len() as u64,
                Err(e) => {
                    tracing::warn!(session, address = pool.address(), threads = ?ids, error = %e, "KILL QUERY on the backend failed");
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

/// `KILL QUERY` of each of `threads` on a new connection to the server of `pool`.
async fn kill_on(pool: &Pool, threads: &[u32]) -> Result<(), backend::BackendError> {
    let mut conn = backend::BackendConn::connect(&pool.options()).await?;
    for thread in threads {
        match conn.query(&format!("KILL QUERY {thread}")).await {
            // The statement ended meanwhile and the connection closed: nothing to interrupt.
            Err(backend::BackendError::Server { error, .. }) if error.code == 1094 => {}
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
