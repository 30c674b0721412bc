//! The proxy's client sessions, proxy-wide: their ids, what each is doing (for the process
//! list) and how to cancel its work on the backends (so `KILL` can interrupt its statement
//! there).
//!
//! A session's id is the connection id of its greeting: this proxy's number in the high 8 bits
//! (`proxy.number`), a counter in the low 24, skipping ids still in use when it wraps. Each
//! session updates its own [`Entry`] as it works; readers (`SHOW PROCESSLIST`, `KILL`) take a
//! short lock per entry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use executor::Cancel;
use tokio::sync::Notify;

const COUNTER_BITS: u32 = 24;
const COUNTER_MASK: u32 = (1 << COUNTER_BITS) - 1;

/// Every live session of this proxy.
pub struct Registry {
    number: u32,
    next: AtomicU32,
    sessions: Mutex<HashMap<u32, Arc<Entry>>>,
}

/// What the process list shows of a session.
#[derive(Clone)]
pub struct Shown {
    pub user: String,
    pub db: Option<String>,
    pub command: &'static str,
    /// When the current command (or the idle time) began.
    pub since: Instant,
    pub state: String,
    /// The statement being run; `None` between commands.
    pub info: Option<String>,
}

/// One session as others see it.
pub struct Entry {
    pub id: u32,
    /// The client's `host:port`.
    pub host: String,
    /// The proxy's port the client connected to (`@@port`).
    pub port: u16,
    shown: Mutex<Shown>,
    /// The session's executor's backend work, as `KILL` interrupts it.
    pub cancel: Arc<Cancel>,
    killed: AtomicBool,
    kill: Notify,
}

/// Removes its session from the registry when the session is over.
pub struct Registered {
    registry: Arc<Registry>,
    pub entry: Arc<Entry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.registry.sessions).remove(&self.entry.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    pub fn new(number: u8) -> Registry {
        Registry {
            number: u32::from(number) << COUNTER_BITS,
            next: AtomicU32::new(1),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// A new session from `host` on the proxy's `port`, not logged in yet, under a fresh id.
    pub fn register(self: &Arc<Self>, host: String, port: u16) -> Registered {
        let mut sessions = lock(&self.sessions);
        let id = loop {
            let counter = self.next.fetch_add(1, Ordering::Relaxed) & COUNTER_MASK;
            let id = self.number | counter;
            if counter != 0 && !sessions.contains_key(&id) {
                break id;
            }
        };
        let entry = Arc::new(Entry {
            id,
            host,
            port,
            shown: Mutex::new(Shown {
                user: "unauthenticated user".into(),
                db: None,
                command: "Connect",
                since: Instant::now(),
                state: String::new(),
                info: None,
            }),
            cancel: Arc::new(Cancel::default()),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        sessions.insert(id, entry.clone());
        Registered {
            registry: self.clone(),
            entry,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        let id = u32::try_from(id).ok()?;
        lock(&self.sessions).get(&id).cloned()
    }

    /// Every session, by id.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let mut all: Vec<_> = lock(&self.sessions).values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }
}

impl Entry {
    pub fn shown(&self) -> Shown {
        lock(&self.shown).clone()
    }

    pub fn user(&self) -> String {
        lock(&self.shown).user.clone()
    }

    pub fn set_user(&self, user: &str) {
        lock(&self.shown).user = user.to_string();
    }

    /// A command begins; `info` is its statement text, if it has one.
    pub fn begin(&self, command: &'static str, info: Option<&str>, db: Option<&str>) {
        let mut shown = lock(&self.shown);
        shown.command = command;
        shown.since = Instant::now();
        shown.state.clear();
        shown.state.push_str("executing");
        // The buffer is reused, so a statement costs no allocation here once it has grown.
        match (&mut shown.info, info) {
            (Some(buf), Some(text)) => {
                buf.clear();
                buf.push_str(text);
            }
            (slot, text) => *slot = text.map(str::to_string),
        }
        set_db(&mut shown, db);
    }

    /// The command is over; the session waits for the next, in `state`.
    pub fn idle(&self, state: &str, db: Option<&str>) {
        let mut shown = lock(&self.shown);
        shown.command = "Sleep";
        shown.since = Instant::now();
        shown.state.clear();
        shown.state.push_str(state);
        if let Some(info) = &mut shown.info {
            // Kept as an empty buffer for the next statement; shown as NULL.
            info.clear();
        }
        set_db(&mut shown, db);
    }

    /// Interrupts the statement the session is running on each backend connection it uses
    /// (`KILL QUERY <thread>` on a connection of its own to that server); with `connection`,
    /// also ends the session. Returns how many backend statements were interrupted.
    pub async fn kill(&self, connection: bool) -> u64 {
        if connection {
            self.killed.store(true, Ordering::Release);
            self.kill.notify_one();
        }
        self.cancel.cancel(self.id).await
    }

    /// Whether `KILL CONNECTION` ended the session.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Completes when the session is killed.
    pub async fn wait_killed(&self) {
        self.kill.notified().await;
    }
}

fn set_db(shown: &mut Shown, db: Option<&str>) {
    if shown.db.as_deref() != db {
        shown.db = db.map(str::to_string);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_proxy_number_and_skip_live_ones() {
        let registry = Arc::new(Registry::new(3));
        let a = registry.register("h:1".into(), 1);
        assert_eq!(a.entry.id, (3 << 24) | 1);
        // The counter wraps to a live id: that one is skipped.
        registry.next.store(COUNTER_MASK, Ordering::Relaxed);
        let b = registry.register("h:2".into(), 1);
        assert_eq!(b.entry.id, (3 << 24) | COUNTER_MASK);
        let c = registry.register("h:3".into(), 1);
        assert_eq!(c.entry.id, (3 << 24) | 2, "0 and the live 1 are skipped");
        drop(a);
        assert!(registry.get((3 << 24) | 1).is_none());
        assert_eq!(registry.all().len(), 2);
    }
}
