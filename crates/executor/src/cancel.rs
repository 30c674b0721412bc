//! Cancelling a session's work on its backends: the backend connections the executor is using
//! are listed here as it acquires them, so another task (a `KILL` from another session, the
//! session's own end) can interrupt the statement running on them without reaching into the
//! executor, which is busy running it.

use std::sync::{Arc, Mutex, MutexGuard};

use backend::Pool;

/// The backend connections one executor is using, and whether a cancel is interrupting them.
#[derive(Default)]
pub struct Cancel {
    threads: Mutex<Threads>,
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
    /// (`KILL QUERY <thread>` on a connection of its own to that server). `session` names the
    /// session in the log.
    pub async fn cancel(&self, session: u32) {
        let threads = {
            let mut threads = lock(&self.threads);
            threads.cancelling += 1;
            threads.using.clone()
        };
        for (pool, thread) in threads {
            if let Err(e) = kill_query(&pool, thread).await {
                tracing::warn!(session, address = pool.address(), thread, error = %e, "KILL QUERY on the backend failed");
            }
        }
        lock(&self.threads).cancelling -= 1;
    }
}

/// `KILL QUERY thread` on a new connection to the server of `pool` (the pool's own may all be
/// busy, and this must not wait behind the statement it interrupts).
async fn kill_query(pool: &Pool, thread: u32) -> Result<(), backend::BackendError> {
    let mut conn = backend::BackendConn::connect(&pool.options()).await?;
    match conn.query(&format!("KILL QUERY {thread}")).await {
        // The statement ended meanwhile and the connection closed: nothing to interrupt.
        Err(backend::BackendError::Server { error, .. }) if error.code == 1094 => Ok(()),
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}
