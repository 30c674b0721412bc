//! A bounded pool of backend connections for one data source.
//!
//! Why not bb8: a proxy pool must keep connections that differ in connect-time capabilities
//! (CLIENT_FOUND_ROWS) apart, know each connection's session state, and discard rather than
//! recycle a connection whose response was not fully read; bb8's `ManageConnection` can
//! express health but not "return only if clean", and its waiting is not FIFO-fair. The pool
//! here is small: a FIFO semaphore bounds the connections handed out, and a guard returns a
//! connection only when its borrower says it is clean.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::conn::{BackendConn, ConnectOptions};
use crate::BackendError;

thread_local! {
    /// The worker (event loop) this thread runs, see [`set_worker`].
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Tells the pool which worker event loop the calling thread runs. A connection's socket is
/// registered with the event loop that opened it, so the pool hands a borrower a connection
/// opened on its own worker when it has one (using another's works, with cross-thread
/// wake-ups).
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

fn current_worker() -> usize {
    WORKER.with(|w| w.get())
}

/// Idle connections older than this are pinged before reuse: the server may have closed them.
const REVALIDATE_AFTER: Duration = Duration::from_secs(30);

/// Counts for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub open: usize,
    pub idle: usize,
    pub in_use: usize,
    pub max: usize,
}

struct Idle {
    conn: BackendConn,
    worker: usize,
    since: Instant,
}

pub struct Pool {
    options: ConnectOptions,
    max: usize,
    min_idle: usize,
    acquire_timeout: Duration,
    permits: Arc<Semaphore>,
    /// Idle connections, by their CLIENT_FOUND_ROWS flag, with their worker and idle time.
    idle: Mutex<[Vec<Idle>; 2]>,
    open: AtomicUsize,
}

impl Pool {
    /// A pool of at most `max` connections that keeps `min_idle` idle ones open (see
    /// [`keep_min_idle`](Self::keep_min_idle)).
    pub fn new(
        options: ConnectOptions,
        max: usize,
        min_idle: usize,
        acquire_timeout: Duration,
    ) -> Arc<Pool> {
        let max = max.max(1);
        Arc::new(Pool {
            options,
            max,
            min_idle: min_idle.min(max),
            acquire_timeout,
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::new([Vec::new(), Vec::new()]),
            open: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.options.source_name
    }

    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// How this pool's connections are opened.
    pub fn options(&self) -> ConnectOptions {
        self.options.clone()
    }

    /// Closes every idle connection: the server is gone or restarted, so they are dead.
    pub fn discard_idle(&self) {
        let mut idle = self.lock_idle();
        let closed: usize = idle.iter().map(Vec::len).sum();
        idle.iter_mut().for_each(Vec::clear);
        self.open.fetch_sub(closed, Ordering::Relaxed);
    }

    pub fn stats(&self) -> PoolStats {
        let idle = self.lock_idle().iter().map(Vec::len).sum();
        let open = self.open.load(Ordering::Relaxed);
        PoolStats {
            open,
            idle,
            in_use: open.saturating_sub(idle),
            max: self.max,
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, [Vec<Idle>; 2]> {
        // A panic while holding this lock cannot leave the vectors inconsistent.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Borrows a connection, waiting in FIFO order up to the acquire timeout.
    pub async fn acquire(self: &Arc<Self>, found_rows: bool) -> Result<PooledConn, BackendError> {
        self.acquire_unless(found_rows, std::future::pending())
            .await
    }

    /// [`acquire`](Self::acquire), unless `stop` yields while it waits for a free connection:
    /// then `stop`'s error (a statement interrupted while it waited: killed, or past its time
    /// limit). `stop` is not polled when a connection is free at once.
    pub async fn acquire_unless(
        self: &Arc<Self>,
        found_rows: bool,
        stop: impl Future<Output = BackendError>,
    ) -> Result<PooledConn, BackendError> {
        // The common case, a free permit, arms no timer.
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return self.checkout(permit, found_rows).await;
        }
        let started = Instant::now();
        let waited = tokio::select! {
            waited = tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned()) => waited,
            stopped = stop => return Err(stopped),
        };
        let permit = waited
            .map_err(|_| BackendError::PoolExhausted {
                source_name: self.options.source_name.clone(),
                max: self.max,
                waited_ms: started.elapsed().as_millis() as u64,
            })?
            .expect("the pool never closes its semaphore");
        self.checkout(permit, found_rows).await
    }

    /// A connection for the holder of `permit`: an idle one (of the same worker if possible),
    /// or a new one.
    async fn checkout(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        found_rows: bool,
    ) -> Result<PooledConn, BackendError> {
        loop {
            let candidate = {
                let mut idle = self.lock_idle();
                let kind = usize::from(found_rows);
                let worker = current_worker();
                let popped = match idle[kind].iter().rposition(|i| i.worker == worker) {
                    Some(at) => Some(idle[kind].swap_remove(at)),
                    None => idle[kind].pop(),
                };
                if popped.is_none() && !idle[1 - kind].is_empty() {
                    // Keep the total at most `max`: a connection of the other kind makes room.
                    idle[1 - kind].remove(0);
                    self.open.fetch_sub(1, Ordering::Relaxed);
                }
                popped
            };
            match candidate {
                Some(Idle {
                    mut conn, since, ..
                }) => {
                    if conn.peer_closed()
                        || (since.elapsed() > REVALIDATE_AFTER && conn.ping().await.is_err())
                    {
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                    return Ok(PooledConn {
                        conn: Some(conn),
                        pool: self.clone(),
                        _permit: permit,
                    });
                }
                None => {
                    let mut options = self.options.clone();
                    options.found_rows = found_rows;
                    let mut conn = BackendConn::connect(&options).await?;
                    conn.worker = current_worker();
                    self.open.fetch_add(1, Ordering::Relaxed);
                    return Ok(PooledConn {
                        conn: Some(conn),
                        pool: self.clone(),
                        _permit: permit,
                    });
                }
            }
        }
    }

    /// Opens connections until `min_idle` are idle (within `max`), so statements after a
    /// quiet period do not wait for connects. The health checker calls it after each check
    /// the server passes.
    pub async fn keep_min_idle(self: &Arc<Self>) -> Result<(), BackendError> {
        while self.stats().idle < self.min_idle {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return Ok(());
            };
            let conn = BackendConn::connect(&self.options).await?;
            self.open.fetch_add(1, Ordering::Relaxed);
            self.lock_idle()[0].push(Idle {
                conn,
                worker: current_worker(),
                since: Instant::now(),
            });
            drop(permit);
        }
        Ok(())
    }

    /// A connection if one can be had without waiting: `None` when every connection the
    /// pool may open is in use (or awaited).
    pub async fn try_acquire(
        self: &Arc<Self>,
        found_rows: bool,
    ) -> Option<Result<PooledConn, BackendError>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.checkout(permit, found_rows).await)
    }

    /// The health check, within the pool's bound: pings an idle connection (or a new one when
    /// none is idle) and returns the server's version. Idle connections that fail the ping
    /// (the server restarted) are closed and the next one tried. `None` when every connection
    /// is in use or awaited: the data source is serving them, and a check must not take one
    /// more.
    pub async fn check(self: &Arc<Self>) -> Result<Option<String>, BackendError> {
        let mut failure = None;
        for _ in 0..=self.stats().idle {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                return Ok(None);
            };
            let found_rows = {
                let idle = self.lock_idle();
                idle[0].is_empty() && !idle[1].is_empty()
            };
            let mut conn = self.checkout(permit, found_rows).await?;
            match conn.ping().await {
                Ok(()) => {
                    let version = conn.server_version.clone();
                    conn.release();
                    return Ok(Some(version));
                }
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.expect("at least one connection was tried"))
    }
}

/// A borrowed connection. Dropping it closes the connection; [`release`](Self::release)
/// returns it to the pool, which the borrower may do only when no response is pending and the
/// session state it carries is tracked.
pub struct PooledConn {
    conn: Option<BackendConn>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledConn {
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            let kind = usize::from(conn.found_rows);
            let worker = conn.worker;
            self.pool.lock_idle()[kind].push(Idle {
                conn,
                worker,
                since: Instant::now(),
            });
        }
    }
}

impl Deref for PooledConn {
    type Target = BackendConn;
    fn deref(&self) -> &BackendConn {
        self.conn.as_ref().expect("present until release or drop")
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut BackendConn {
        self.conn.as_mut().expect("present until release or drop")
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
