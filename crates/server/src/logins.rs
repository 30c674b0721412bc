//! Connections still logging in. Each has one deadline for its whole login, and at most
//! `proxy.max_authenticating` log in at once: one more closes the connection that has been
//! logging in longest. Sockets that connect and never authenticate therefore hold no
//! session slot, cost bounded memory, and cannot keep a real client (whose login takes a few
//! round trips) from logging in: it would take `max_authenticating` newer sockets, all
//! opened while that client logs in, to push it out.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The connections logging in, oldest first.
#[derive(Default)]
pub(crate) struct Logins {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    next_id: u64,
    /// Each login's id and the signal that closes it, in the order they started.
    waiting: VecDeque<(u64, Arc<Notify>)>,
}

impl Logins {
    /// Starts a login that must finish within `timeout`, closing the oldest logins beyond
    /// `max - 1` to make room.
    pub(crate) fn begin(self: &Arc<Self>, max: usize, timeout: Duration) -> LoginTicket {
        let evicted = Arc::new(Notify::new());
        let mut queue = self.lock();
        while queue.waiting.len() >= max.max(1) {
            if let Some((_, oldest)) = queue.waiting.pop_front() {
                // Stored as a permit if that login is between two awaits.
                oldest.notify_one();
            }
        }
        let id = queue.next_id;
        queue.next_id += 1;
        queue.waiting.push_back((id, evicted.clone()));
        LoginTicket {
            logins: self.clone(),
            id,
            evicted,
            deadline: Instant::now() + timeout,
        }
    }

    /// How many connections are logging in.
    #[cfg(test)]
    fn in_progress(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is only pushed and popped whole; a panic cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One connection's login in progress; dropping it ends the login (done or abandoned).
pub(crate) struct LoginTicket {
    logins: Arc<Logins>,
    id: u64,
    evicted: Arc<Notify>,
    deadline: Instant,
}

/// Why a login step was cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The login's deadline passed.
    TimedOut,
    /// Newer logins needed its place.
    Evicted,
}

impl LoginTicket {
    /// Runs one step of the login, cut short when the deadline passes or the login is
    /// evicted.
    pub(crate) async fn bound<T>(&self, step: impl Future<Output = T>) -> Result<T, Cut> {
        tokio::select! {
            done = step => Ok(done),
            _ = tokio::time::sleep_until(self.deadline) => Err(Cut::TimedOut),
            _ = self.evicted.notified() => Err(Cut::Evicted),
        }
    }
}

impl Drop for LoginTicket {
    fn drop(&mut self) {
        let mut queue = self.logins.lock();
        if let Some(at) = queue.waiting.iter().position(|(id, _)| *id == self.id) {
            queue.waiting.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_login_past_the_cap_evicts_the_oldest() {
        let logins = Arc::new(Logins::default());
        let first = logins.begin(2, Duration::from_secs(60));
        let second = logins.begin(2, Duration::from_secs(60));
        let third = logins.begin(2, Duration::from_secs(60));
        assert_eq!(logins.in_progress(), 2);
        let never = std::future::pending::<()>();
        assert_eq!(first.bound(never).await, Err(Cut::Evicted));
        assert_eq!(second.bound(async { 7 }).await, Ok(7));
        drop(second);
        drop(first);
        assert_eq!(logins.in_progress(), 1);
        drop(third);
        assert_eq!(logins.in_progress(), 0);
    }

    #[tokio::test]
    async fn the_deadline_covers_every_step_together() {
        let logins = Arc::new(Logins::default());
        let started = Instant::now();
        let ticket = logins.begin(10, Duration::from_secs(1));
        let step = tokio::time::sleep(Duration::from_millis(100));
        assert_eq!(ticket.bound(step).await, Ok(()));
        // The next step gets what is left of the second, not a second of its own.
        assert_eq!(
            ticket.bound(std::future::pending::<()>()).await,
            Err(Cut::TimedOut)
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(1), "{took:?}");
        assert!(took < Duration::from_millis(1900), "{took:?}");
    }
}
