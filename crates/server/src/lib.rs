//! The frontend: accepts MySQL clients, authenticates them, and runs one session task per
//! client. The rule set is an immutable [`Snapshot`] behind an `ArcSwap`; each statement loads
//! the current one, so a reload swaps routing atomically while statements in flight finish on
//! the snapshot they started with.

mod handshake;
pub mod health;
mod intercept;
mod logins;
pub mod metrics;
mod processes;
mod registry;
mod session;
pub mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use backend::ConnectOptions;
use protocol::framing::PacketConn;
use rules::Rules;
use sequence::Sequences;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use executor::{Snapshot, PLAN_CACHE_CAPACITY};
pub use metrics::Metrics;

/// Everything sessions share.
pub struct Context {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
    /// The version string clients see: the backend's unless configured.
    pub server_version: String,
    /// Global sequences, or why they are unavailable (e.g. the meta data source was down at
    /// start).
    pub sequences: Result<Arc<Sequences>, String>,
    /// Every client session, under the ids their greetings gave.
    sessions: Arc<registry::Registry>,
    /// One permit per logged-in session (`proxy.max_connections`).
    connection_slots: Arc<Semaphore>,
    /// Connections still logging in (`proxy.max_authenticating`, `proxy.login_timeout_ms`).
    logins: Arc<logins::Logins>,
    /// The rules as last read from the file and the admin's primary switches on top of them.
    /// The lock also orders reloads and switches, so neither undoes the other.
    switches: Mutex<Switches>,
}

/// The admin's primary switches and the rule file they apply to.
struct Switches {
    /// The rules as the file says, before any switch.
    file_rules: Arc<Rules>,
    /// Data source → the address it was switched to, applied to every rule set loaded until
    /// the rule file itself names that primary.
    primaries: BTreeMap<String, String>,
}

impl Context {
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        tls: Option<TlsAcceptor>,
        server_version: String,
        sequences: Result<Arc<Sequences>, String>,
    ) -> Arc<Context> {
        let max = snapshot.rules.proxy.max_connections;
        let number = snapshot.rules.proxy.number;
        let snapshot_rules = snapshot.rules.clone();
        Arc::new(Context {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            tls,
            server_version,
            sequences,
            sessions: Arc::new(registry::Registry::new(number)),
            connection_slots: Arc::new(Semaphore::new(max)),
            logins: Arc::default(),
            switches: Mutex::new(Switches {
                file_rules: snapshot_rules,
                primaries: BTreeMap::new(),
            }),
        })
    }

    /// Swaps in new rules read from the rule file (with the admin's primary switches);
    /// statements in flight finish on the old snapshot. Returns the rules the file gave
    /// before, for telling what changed.
    pub fn reload(&self, rules: Rules) -> Arc<Rules> {
        let mut switches = self.lock_switches();
        let previous = std::mem::replace(&mut switches.file_rules, Arc::new(rules));
        self.apply(&mut switches);
        previous
    }

    /// Builds and swaps in the snapshot of the file's rules with every primary switch. Always
    /// from the file's rules: switches applied to an earlier snapshot would look like the
    /// file naming the new primaries, and be dropped.
    fn apply(&self, switches: &mut Switches) {
        let mut rules = Rules::clone(&switches.file_rules);
        switches.primaries.retain(|name, address| {
            let Some(ds) = rules.data_sources.get_mut(name) else {
                return false;
            };
            if ds.address == *address {
                // The rule file names the new primary now; nothing left to override.
                return false;
            }
            ds.replicas.retain(|r| r.address != *address);
            ds.address = address.clone();
            true
        });
        if let Ok(sequences) = &self.sequences {
            sequences.follow(&rules);
        }
        let previous = self.snapshot.load_full();
        self.snapshot
            .store(Arc::new(Snapshot::build(rules, Some(&previous))));
        // The old plan cache's last hits, before it goes with its snapshot.
        self.metrics
            .count_plan_cache(&previous.plan_cache_counted, previous.router.cache_stats());
    }

    fn lock_switches(&self) -> std::sync::MutexGuard<'_, Switches> {
        self.switches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `address` the primary of `data_source` (after a failover the DBA performed):
    /// writes go there from the next statement on, and the old primary gets no more
    /// statements (it may have diverged). Refused unless the server answers and is writable
    /// (`@@read_only` off), so writes never go to a replica that was not promoted.
    /// Only a server the rule file names for that data source (its primary or a replica) is
    /// accepted, and checked before any connection is opened: the switch never makes the
    /// proxy log in to an address a request made up.
    pub async fn switch_primary(&self, data_source: &str, address: &str) -> Result<(), String> {
        let rules = self.lock_switches().file_rules.clone();
        let ds = rules
            .data_sources
            .get(data_source)
            .ok_or_else(|| format!("no data source '{data_source}'"))?;
        if ds.address != address && ds.replicas.iter().all(|r| r.address != address) {
            return Err(format!(
                "{address} is not a server of data source '{data_source}' in the rule file \
                 (its primary or one of its replicas)"
            ));
        }
        let mut options = ConnectOptions::for_data_source(data_source, ds);
        options.address = address.to_string();
        let mut conn = backend::BackendConn::connect(&options)
            .await
            .map_err(|e| e.to_string())?;
        let read_only = conn
            .query("SELECT @@global.read_only")
            .await
            .map_err(|e| e.to_string())?;
        if read_only
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            != Some("0".into())
        {
            return Err(format!(
                "{address} is read-only: promote it first (STOP SLAVE; SET GLOBAL read_only = OFF)"
            ));
        }
        let mut switches = self.lock_switches();
        switches
            .primaries
            .insert(data_source.to_string(), address.to_string());
        self.apply(&mut switches);
        drop(switches);
        tracing::warn!(data_source, address, "primary switched by the admin");
        Ok(())
    }

    /// Refreshes the backend and plan-cache metrics (called when metrics are scraped).
    pub fn update_pool_metrics(&self) {
        let snapshot = self.snapshot.load();
        self.metrics
            .set_servers(snapshot.clusters.values().map(|c| c.as_ref()));
        self.metrics
            .count_plan_cache(&snapshot.plan_cache_counted, snapshot.router.cache_stats());
    }
}

/// Accepts clients on `listener` until `shutdown` completes, one task per client, spread
/// round-robin over the `workers` event loops (the caller's runtime when there are none). A
/// failing client ends only its own task; accept errors back off briefly.
///
/// Why several single-threaded event loops rather than one work-stealing runtime: a session
/// is one task that alternates between two sockets, and keeping it, its sockets and its
/// wake-ups on one thread cut the proxy's CPU per point select by about a quarter in
/// measurements (see docs/benchmarks.md).
pub async fn run(
    listener: TcpListener,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()>,
    workers: &[tokio::runtime::Handle],
) {
    tokio::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                let _ = stream.set_nodelay(true);
                if workers.is_empty() {
                    tokio::spawn(serve_client(stream, peer, ctx));
                    continue;
                }
                // A socket belongs to the event loop that registered it: hand the worker the
                // plain socket and let it register it.
                let Ok(std_stream) = stream.into_std() else {
                    continue;
                };
                next = (next + 1) % workers.len();
                workers[next].spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std_stream) {
                        serve_client(stream, peer, ctx).await;
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_client(stream: TcpStream, peer: std::net::SocketAddr, ctx: Arc<Context>) {
    // A session slot is taken only once the client has logged in (connections that never do
    // must not hold one), but when none is free the client hears so at once, as from MySQL.
    if ctx.connection_slots.available_permits() == 0 {
        ctx.metrics.client_connections_rejected.inc();
        handshake::refuse_too_many(PacketConn::new(stream)).await;
        return;
    }
    let ticket = {
        let proxy = &ctx.snapshot.load().rules.proxy;
        ctx.logins.begin(
            proxy.max_authenticating,
            Duration::from_millis(proxy.login_timeout_ms),
        )
    };
    let port = stream.local_addr().map_or(0, |a| a.port());
    let registered = ctx.sessions.register(peer.to_string(), port);
    ctx.metrics.client_connections_total.inc();
    ctx.metrics.client_connections.inc();
    handshake::accept(stream, peer, registered.entry.clone(), ticket, &ctx).await;
    ctx.metrics.client_connections.dec();
}
