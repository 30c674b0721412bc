//! The frontend: accepts MySQL clients, authenticates them, and runs one session task per
//! client. The rule set is an immutable [`Snapshot`] behind an `ArcSwap`; each statement loads
//! the current one, so a reload swaps routing atomically while statements in flight finish on
//! the snapshot they started with.

pub mod cutover;
pub mod digest;
mod distributed;
mod error;
mod handshake;
pub mod health;
mod intercept;
mod logins;
pub mod metrics;
pub mod primaries;
mod processes;
pub mod query_log;
mod registry;
mod session;
pub mod tls;
mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use backend::ConnectOptions;
pub use primaries::{PrimaryRecord, PrimaryRecords};
use protocol::framing::PacketConn;
use rules::Rules;
use sequence::Sequences;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

pub use distributed::Xa;
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
    /// Distributed transactions, when the rules' transaction mode is `xa` and the coordinator
    /// started (sessions without it refuse to start a transaction in `xa` mode).
    pub xa: Option<Xa>,
    /// Every client session, under the ids their greetings gave.
    sessions: Arc<registry::Registry>,
    /// One permit per logged-in session (`proxy.max_connections`).
    connection_slots: Arc<Semaphore>,
    /// Connections still logging in (`proxy.max_authenticating`, `proxy.login_timeout_ms`).
    logins: Arc<logins::Logins>,
    /// The rules as last read from the file and the recorded primaries on top of them.
    /// The lock also orders reloads and switches, so neither undoes the other.
    switches: Mutex<Switches>,
    /// The fence of moving slices and the units of work in flight (see [`cutover`]).
    pub gate: Arc<cutover::Gate>,
}

/// The recorded primaries and the rule file they apply to.
struct Switches {
    /// The rules as the file says, before any switch.
    file_rules: Arc<Rules>,
    /// Data source → its recorded primary (see [`primaries`]), applied to every rule set
    /// loaded: a switch is state, which no rule-file edit undoes.
    records: PrimaryRecords,
    /// Why the records could not be read since the proxy started. Meanwhile the primary of
    /// every data source with replicas is unconfirmed and gets no statements: the rule
    /// file's may be a server switched away from, come back writable with diverged data.
    unread: Option<String>,
    /// The newest slice map read from the meta data source (version 0: the rule file's),
    /// applied to every rule set loaded: a cutover is state, which no rule-file edit undoes.
    slice_map: meta::SliceMapVersion,
}

/// What a [`Context`] starts from: the rules it serves and the services built for them at start.
pub struct ContextParts {
    /// The rules to serve: the file's with the recorded primaries applied.
    pub snapshot: Snapshot,
    /// The rules as the file says, before any recorded primary (see [`primaries::apply`]).
    pub file_rules: Rules,
    /// Data source → its recorded primary, or why they could not be read: then no primary
    /// gets a statement until they are.
    pub records: Result<PrimaryRecords, String>,
    pub metrics: Arc<Metrics>,
    pub tls: Option<TlsAcceptor>,
    /// The version string clients see.
    pub server_version: String,
    /// Global sequences, or why they are unavailable.
    pub sequences: Result<Arc<Sequences>, String>,
    /// The distributed-transaction coordinator, when it started.
    pub xa: Option<Xa>,
    /// The newest slice map of the meta data source (already applied to `snapshot`), or why
    /// it could not be read: then every `uid_slice` table's statements wait until it is.
    pub slice_map: Result<meta::SliceMapVersion, String>,
}

impl Context {
    /// A context serving `parts.snapshot`, built from the rule file with the recorded primaries.
    pub fn new(parts: ContextParts) -> Arc<Context> {
        let ContextParts {
            snapshot,
            file_rules,
            records,
            metrics,
            tls,
            server_version,
            sequences,
            xa,
            slice_map,
        } = parts;
        let max = snapshot.rules.proxy.max_connections;
        let number = snapshot.rules.proxy.number;
        let (records, unread) = match records {
            Ok(records) => (records, None),
            Err(e) => (PrimaryRecords::new(), Some(e)),
        };
        confirm_primaries(&snapshot, unread.is_none());
        metrics.set_primary_epochs(&file_rules, &records);
        let (slice_map, sure) = match slice_map {
            Ok(map) => (map, true),
            Err(_) => (meta::SliceMapVersion::default(), false),
        };
        let mut snapshot = snapshot;
        snapshot.slice_map_version = slice_map.version;
        let gate = cutover::Gate::new(&snapshot.rules, slice_map.version, sure, metrics.registry());
        Arc::new(Context {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            tls,
            server_version,
            sequences,
            xa,
            sessions: Arc::new(registry::Registry::new(number)),
            connection_slots: Arc::new(Semaphore::new(max)),
            logins: Arc::default(),
            switches: Mutex::new(Switches {
                file_rules: Arc::new(file_rules),
                records,
                unread,
                slice_map,
            }),
            gate,
        })
    }

    /// Swaps in new rules read from the rule file (with the recorded primaries and slice
    /// map); statements in flight finish on the old snapshot. Returns the rules the file gave
    /// before, for telling what changed; `Err` (nothing changes) when the slice map in force
    /// does not fit the new rules (a moved table or its destination node is gone).
    pub fn reload(&self, rules: Rules) -> Result<Arc<Rules>, String> {
        let mut switches = self.lock_switches();
        apply_slice_map(&rules, &switches.slice_map).map_err(|e| {
            format!(
                "the slice map in force (version {}) does not fit the new rules: {e}",
                switches.slice_map.version
            )
        })?;
        let previous = std::mem::replace(&mut switches.file_rules, Arc::new(rules));
        self.apply(&switches);
        Ok(previous)
    }

    /// Serves slice-map `map` from now on, if it is newer than the one served: the next
    /// statements route by it (a map never goes back to an older version). `Err` when it does
    /// not fit the rules (the proxy keeps its map and does not acknowledge the new one).
    pub fn follow_slice_map(&self, map: meta::SliceMapVersion) -> Result<(), String> {
        let mut switches = self.lock_switches();
        if map.version <= switches.slice_map.version {
            return Ok(());
        }
        apply_slice_map(&switches.file_rules, &map).map_err(|e| {
            format!(
                "slice map version {} does not fit the rules: {e}",
                map.version
            )
        })?;
        let version = map.version;
        switches.slice_map = map;
        self.apply(&switches);
        drop(switches);
        self.gate.map_applied(version);
        tracing::warn!(
            version,
            "slice map switched by its version in the meta data source"
        );
        Ok(())
    }

    /// Builds and swaps in the snapshot of the file's rules with every recorded primary and
    /// the slice map. Always from the file's rules, never from an earlier snapshot's.
    fn apply(&self, switches: &Switches) {
        let mut rules = match apply_slice_map(&switches.file_rules, &switches.slice_map) {
            Ok(rules) => rules,
            // Checked before the file's rules or the map were taken.
            Err(e) => {
                tracing::error!(
                    error = e,
                    "the slice map does not fit the rules; nothing changed"
                );
                return;
            }
        };
        primaries::apply(&mut rules, &switches.records);
        self.metrics
            .set_primary_epochs(&switches.file_rules, &switches.records);
        if let Ok(sequences) = &self.sequences {
            sequences.follow(&rules);
        }
        let previous = self.snapshot.load_full();
        if let Some(xa) = &self.xa {
            if previous.rules.data_sources != rules.data_sources {
                xa.recover_over(&rules);
            }
        }
        let mut snapshot = Snapshot::build(rules, Some(&previous));
        snapshot.slice_map_version = switches.slice_map.version;
        confirm_primaries(&snapshot, switches.unread.is_none());
        self.snapshot.store(Arc::new(snapshot));
        // The old plan cache's last hits, before it goes with its snapshot.
        self.metrics
            .count_plan_cache(&previous.plan_cache_counted, previous.router.cache_stats());
    }

    fn lock_switches(&self) -> std::sync::MutexGuard<'_, Switches> {
        self.switches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `address` the primary of `data_source`, or without one of every data source the
    /// rule file gives that server (as primary or replica) which does not write to it yet:
    /// after a failover the DBA or an HA tool performed. Writes go there from the next
    /// statement on, and the old primary gets no more statements (it may have diverged).
    /// Refused unless the server answers, is writable (`@@read_only` off) and replicates from
    /// nothing, so writes never go to a replica that was not promoted. Only a server the rule
    /// file names for the data source is accepted, checked before any connection is opened:
    /// the switch never makes the proxy log in to an address a request made up.
    ///
    /// Each switch is recorded in the meta data source (if one is configured) with the next
    /// epoch, compare-and-set, so other proxies follow it and reloads and restarts keep it.
    /// Returns the data sources switched.
    pub async fn switch_primary(
        &self,
        data_source: Option<&str>,
        address: &str,
        set_by: &str,
    ) -> Result<Vec<String>, String> {
        let file = self.lock_switches().file_rules.clone();
        let in_force = self.snapshot.load().rules.clone();
        let names_server = |ds: &rules::DataSourceConfig| {
            ds.address == address || ds.replicas.iter().any(|r| r.address == address)
        };
        let names: Vec<String> = match data_source {
            Some(name) => {
                let ds = file
                    .data_sources
                    .get(name)
                    .ok_or_else(|| format!("no data source '{name}'"))?;
                if !names_server(ds) {
                    return Err(format!(
                        "{address} is not a server of data source '{name}' in the rule file \
                         (its primary or one of its replicas)"
                    ));
                }
                vec![name.to_string()]
            }
            None => file
                .data_sources
                .iter()
                .filter(|(name, ds)| {
                    names_server(ds)
                        && in_force
                            .data_sources
                            .get(*name)
                            .is_some_and(|now| now.address != address)
                })
                .map(|(name, _)| name.clone())
                .collect(),
        };
        let Some(first) = names.first() else {
            return Err(format!(
                "no data source of the rule file has {address} among its servers and writes \
                 elsewhere"
            ));
        };
        let mut options = ConnectOptions::for_data_source(first, &file.data_sources[first]);
        options.address = address.to_string();
        let mut conn = backend::BackendConn::connect(&options)
            .await
            .map_err(|e| e.to_string())?;
        primaries::check_writable(&mut conn, address).await?;
        drop(conn);
        // The meta data source's primary once this switch is done holds the records.
        let meta_address = in_force.proxy.meta_data_source.as_ref().map(|meta| {
            if names.contains(meta) {
                address.to_string()
            } else {
                in_force.data_sources[meta].address.clone()
            }
        });
        let mut switched = Vec::new();
        let mut failure = None;
        for name in &names {
            let known = self
                .lock_switches()
                .records
                .get(name)
                .map_or(0, |r| r.epoch);
            let record = match &meta_address {
                Some(meta_address) => {
                    primaries::write(&in_force, meta_address, name, known, address, set_by).await
                }
                None => Ok(PrimaryRecord {
                    epoch: known + 1,
                    address: address.to_string(),
                    set_by: set_by.to_string(),
                    set_at: None,
                }),
            };
            match record {
                Ok(record) => {
                    tracing::warn!(
                        data_source = name,
                        address,
                        epoch = record.epoch,
                        set_by,
                        "primary switched"
                    );
                    let mut switches = self.lock_switches();
                    primaries::merge(&mut switches.records, [(name.clone(), record)].into());
                    switched.push(name.clone());
                }
                Err(e) => {
                    failure = Some(format!(
                        "data source '{name}': the switch could not be recorded in the meta \
                         data source (if its primary is down, switch it first, or switch by \
                         address alone): {e}"
                    ));
                    break;
                }
            }
        }
        if !switched.is_empty() {
            self.apply(&self.lock_switches());
        }
        match failure {
            None => Ok(switched),
            Some(e) if switched.is_empty() => Err(e),
            Some(e) => Err(format!("{e} (switched before it: {})", switched.join(", "))),
        }
    }

    /// Applies the primaries recorded in the meta data source that are newer than those in
    /// force (another proxy's switch), from every server of it that answers.
    pub async fn follow_primaries(&self) {
        let file = self.lock_switches().file_rules.clone();
        let in_force = self.snapshot.load().rules.clone();
        let timeout = Duration::from_millis(in_force.replication.health_check_timeout_ms);
        let found = match primaries::read(&in_force, &file, timeout).await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = e, "primary records unreadable");
                return;
            }
        };
        let mut switches = self.lock_switches();
        let changed = primaries::merge(&mut switches.records, found);
        if let Some(unread) = switches.unread.take() {
            tracing::warn!(
                unreadable_at_start = unread,
                "primary records read: the primaries are confirmed and get statements again"
            );
        } else if changed.is_empty() {
            return;
        }
        for name in &changed {
            let record = &switches.records[name];
            tracing::warn!(
                data_source = name,
                address = record.address,
                epoch = record.epoch,
                set_by = record.set_by,
                "primary switched by its record in the meta data source"
            );
        }
        self.apply(&switches);
    }

    /// With `replication.follow_topology`: each data source writes to the one of its servers
    /// that the last health checks found writable and replicating from nothing (switching to
    /// it as [`Self::switch_primary`] does, recorded, when it is not the primary in force),
    /// and stops its writes while there are several (split brain). A former primary is no
    /// server of the data source once switched away from, so it gets no writes when it comes
    /// back writable.
    pub async fn follow_topology(&self) {
        let snapshot = self.snapshot.load_full();
        let rules = &snapshot.rules;
        if !rules.replication.follow_topology {
            return;
        }
        let set_by = format!("proxy {} (follow_topology)", rules.proxy.number);
        // The meta data source first: the others' switches are recorded there.
        let meta = rules.proxy.meta_data_source.as_deref();
        let mut clusters: Vec<_> = snapshot.clusters.values().collect();
        clusters.sort_by_key(|c| Some(c.name()) != meta);
        for cluster in clusters {
            let writable: Vec<String> = cluster
                .servers()
                .filter(|(server, _)| server.is_writable())
                .map(|(server, _)| server.address().to_string())
                .collect();
            let split = writable.len() > 1;
            if cluster.primary().set_split_brain(split) != split {
                if split {
                    tracing::error!(
                        data_source = cluster.name(),
                        servers = writable.join(", "),
                        "split brain: more than one writable server; writes stop"
                    );
                } else {
                    tracing::warn!(
                        data_source = cluster.name(),
                        "split brain over: writes resume"
                    );
                }
            }
            let [only] = writable.as_slice() else {
                continue;
            };
            if only == cluster.primary().address() {
                continue;
            }
            match self
                .switch_primary(Some(cluster.name()), only, &set_by)
                .await
            {
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    data_source = cluster.name(),
                    address = only,
                    error = e,
                    "following the promotion failed; the next check tries again"
                ),
            }
        }
    }

    /// Each data source's primary in force, with its recorded epoch and who set it (`None`:
    /// the rule file's, never switched).
    pub fn primaries(&self) -> Vec<(String, String, Option<PrimaryRecord>)> {
        let records = self.lock_switches().records.clone();
        let rules = self.snapshot.load().rules.clone();
        rules
            .data_sources
            .iter()
            .map(|(name, ds)| (name.clone(), ds.address.clone(), records.get(name).cloned()))
            .collect()
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

pub use meta::slice_map::apply as apply_slice_map;

/// Lets every primary of `snapshot` take statements, or (`confirmed` false: the recorded
/// switches are unread) none of a data source that could have been switched: one with
/// replicas, since a switch goes only to a server the rule file names for the data source.
fn confirm_primaries(snapshot: &Snapshot, confirmed: bool) {
    for cluster in snapshot.clusters.values() {
        cluster
            .primary()
            .set_unconfirmed(!confirmed && cluster.has_replicas());
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
