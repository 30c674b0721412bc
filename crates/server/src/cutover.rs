//! The proxy's side of a rebalancing cutover: it registers in the meta data source, follows
//! the versioned slice map and honours the fence of moving slices, acknowledging each in its
//! registry row (see the `meta` crate for the tables and `docs/rebalancing.md`).
//!
//! - [`Gate`]: every command enters a *unit* of work (an autocommit statement, or a whole
//!   transaction), numbered by the gate's generation. A fence seen by this proxy starts a new
//!   generation: units of older generations are in flight and run on unhindered, and the
//!   fence is acknowledged once none of them is open (a transaction that wrote on a moving
//!   slice commits before the fence takes effect, never across the switch). Commands of
//!   newer units get a [`FenceCheck`]: their statements that reach a fenced node wait
//!   ([`executor::Flow::Fenced`]) until the fence is released or the map changed, then run
//!   by the map in force.
//! - While the proxy cannot be sure of the map (the meta data source unread since start, or
//!   its lease lapsed, during which a cutover may have gone on without it), every node of
//!   every `uid_slice` table is fenced for every command.
//! - [`spawn_follower`]: every [`HEARTBEAT`], renews the lease, reads the fence and then the
//!   newest map version (in that order: a fence seen lapsed is released only after a map
//!   written before it lapsed is seen), applies them and acknowledges.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use executor::{FenceCheck, FencedNode};
use meta::{FenceRecord, Meta};
use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};
use rules::{Algorithm, Rules, TableRule};
use tokio::sync::{watch, Notify};

use crate::Context;

/// How often a proxy renews its lease and reads the fence and the map: the bound on how long
/// a cutover waits for each proxy to see its fence.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
/// How often a proxy reads the fence and the map while a fence is in force here: statements
/// wait on it, and the new map or the release (an abort) lets them go at the next read. The
/// lease is still renewed every [`HEARTBEAT`] only.
pub const FENCED_HEARTBEAT: Duration = Duration::from_millis(10);
/// A proxy whose lease was not renewed for this long counts as gone for cutovers, and fences
/// every `uid_slice` table itself until it renews.
pub const LEASE: Duration = Duration::from_secs(5);
/// Bound on each statement on the meta data source.
const META_TIMEOUT: Duration = Duration::from_secs(2);

/// The fence state of this proxy, and the units of work in flight.
pub struct Gate {
    state: Mutex<GateState>,
    /// Advances with every change that may let a waiting statement go on.
    changes: watch::Sender<u64>,
    /// Signalled when a unit ends, for the acknowledgement of a fence.
    unit_ended: Notify,
    metrics: FenceMetrics,
}

struct GateState {
    generation: u64,
    /// Open units by generation.
    open: BTreeMap<u64, usize>,
    /// The fence in force here: its epoch, the generation it began, its check.
    fence: Option<(u64, u64, FenceCheck)>,
    /// The map is not known to be the newest: every `uid_slice` node is fenced.
    unsure: Option<FenceCheck>,
    /// The slice-map version served.
    map_version: u64,
}

/// One unit of work of a session: a statement, or a transaction from its first statement to
/// its end.
pub struct Unit {
    gate: Arc<Gate>,
    generation: u64,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let mut state = self.gate.lock();
        if let Some(n) = state.open.get_mut(&self.generation) {
            *n -= 1;
            if *n == 0 {
                state.open.remove(&self.generation);
            }
        }
        drop(state);
        self.gate.unit_ended.notify_waiters();
    }
}

/// The fence's metrics.
struct FenceMetrics {
    waiting: IntGauge,
    wait_seconds: Histogram,
    map_version: IntGauge,
}

impl FenceMetrics {
    fn new() -> FenceMetrics {
        FenceMetrics {
            waiting: IntGauge::new(
                "dbmesh_fenced_statements",
                "Statements waiting now for the fence of moving slices",
            )
            .expect("valid metric"),
            wait_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "dbmesh_fence_wait_seconds",
                    "How long statements waited for the fence of moving slices",
                )
                .buckets(vec![
                    0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )
            .expect("valid metric"),
            map_version: IntGauge::new(
                "dbmesh_slice_map_version",
                "The slice-map version this proxy serves (0: the rule file's)",
            )
            .expect("valid metric"),
        }
    }
}

impl Gate {
    /// A gate serving slice-map `map_version`; `sure` false when the newest map is unknown
    /// (the meta data source was not read), with `rules` giving the nodes to fence meanwhile.
    pub fn new(rules: &Rules, map_version: u64, sure: bool, registry: &Registry) -> Arc<Gate> {
        let metrics = FenceMetrics::new();
        for collector in [
            Box::new(metrics.waiting.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.wait_seconds.clone()),
            Box::new(metrics.map_version.clone()),
        ] {
            if let Err(e) = registry.register(collector) {
                tracing::warn!(error = %e, "cannot register a fence metric");
            }
        }
        metrics.map_version.set(map_version as i64);
        Arc::new(Gate {
            state: Mutex::new(GateState {
                generation: 0,
                open: BTreeMap::new(),
                fence: None,
                unsure: (!sure).then(|| every_slice(rules, map_version)),
                map_version,
            }),
            changes: watch::channel(0).0,
            unit_ended: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// A new unit of work, of the current generation.
    pub fn enter(self: &Arc<Self>) -> Unit {
        let mut state = self.lock();
        let generation = state.generation;
        *state.open.entry(generation).or_default() += 1;
        Unit {
            gate: self.clone(),
            generation,
        }
    }

    /// What the next command of `unit` must respect, and a receiver that tells when that may
    /// have changed (taken first, so no change is missed).
    pub fn check(&self, unit: &Unit) -> (Option<FenceCheck>, watch::Receiver<u64>) {
        let changes = self.changes.subscribe();
        let state = self.lock();
        let check = match (&state.unsure, &state.fence) {
            (Some(every), _) => Some(every.clone()),
            (None, Some((_, since, check))) if unit.generation >= *since => Some(check.clone()),
            _ => None,
        };
        (check, changes)
    }

    /// Waits for a change after a statement answered [`executor::Flow::Fenced`].
    pub async fn wait(&self, mut changes: watch::Receiver<u64>) {
        self.metrics.waiting.inc();
        let started = Instant::now();
        // Only an error: the gate is gone, which it never is while a session holds it.
        let _ = changes.changed().await;
        self.metrics.waiting.dec();
        self.metrics
            .wait_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// How long the follower waits between rounds: [`FENCED_HEARTBEAT`] while a fence is in
    /// force here (statements may be waiting on it), else [`HEARTBEAT`].
    pub fn round_interval(&self) -> Duration {
        if self.lock().fence.is_some() {
            FENCED_HEARTBEAT
        } else {
            HEARTBEAT
        }
    }

    /// The slice-map version served.
    pub fn map_version(&self) -> u64 {
        self.lock().map_version
    }

    /// The map version `version` is served from now on (the snapshot is in place).
    pub(crate) fn map_applied(&self, version: u64) {
        let mut state = self.lock();
        state.map_version = version;
        state.fence = None;
        if let Some(unsure) = &mut state.unsure {
            unsure.map_version = version;
        }
        drop(state);
        self.metrics.map_version.set(version as i64);
        self.changed();
    }

    /// The fence of `epoch` on `nodes` is in force here from now on; earlier units are in
    /// flight. Returns whether it is new.
    fn fence(&self, epoch: u64, nodes: Vec<FencedNode>) -> bool {
        let mut state = self.lock();
        if state.fence.as_ref().is_some_and(|(e, _, _)| *e == epoch) {
            return false;
        }
        state.generation += 1;
        let check = FenceCheck {
            map_version: state.map_version,
            nodes: nodes.into(),
        };
        state.fence = Some((epoch, state.generation, check));
        drop(state);
        self.changed();
        true
    }

    /// No fence is in force here any more.
    fn release(&self) {
        if self.lock().fence.take().is_some() {
            self.changed();
        }
    }

    /// Every `uid_slice` node is fenced (`true`) or follows the fence and map again.
    fn set_unsure(&self, unsure: Option<&Rules>) {
        let mut state = self.lock();
        let version = state.map_version;
        let was = state.unsure.is_some();
        state.unsure = unsure.map(|rules| every_slice(rules, version));
        let now = state.unsure.is_some();
        drop(state);
        if was != now {
            self.changed();
        }
    }

    /// Whether no unit older than the fence of `epoch` is open (it may be acknowledged).
    fn drained(&self, epoch: u64) -> bool {
        let state = self.lock();
        match &state.fence {
            Some((e, since, _)) if *e == epoch => state.open.range(..*since).next().is_none(),
            _ => true,
        }
    }
}

/// A check fencing every node of every `uid_slice` table of `rules`.
fn every_slice(rules: &Rules, map_version: u64) -> FenceCheck {
    let mut nodes = Vec::new();
    for rule in rules.tables.values() {
        if let TableRule::Sharded(t) = rule {
            if matches!(t.algorithm(), Algorithm::UidSlice(_)) {
                for n in t.all_nodes() {
                    push_node(&mut nodes, &n.data_source, &n.table);
                }
            }
        }
    }
    FenceCheck {
        map_version,
        nodes: nodes.into(),
    }
}

fn push_node(nodes: &mut Vec<FencedNode>, data_source: &str, table: &str) {
    let node = FencedNode {
        data_source: data_source.to_string(),
        table: table.to_string(),
    };
    if !nodes.contains(&node) {
        nodes.push(node);
    }
}

/// The physical tables that own the slices `fence` names under `rules`: for each table named,
/// every table of its binding group. `Err` names a table the rules do not shard by slices
/// (the proxy then cannot honour the fence and does not acknowledge it).
pub fn fenced_nodes(rules: &Rules, fence: &FenceRecord) -> Result<Vec<FencedNode>, String> {
    let mut nodes = Vec::new();
    for (name, slices) in &fence.tables {
        let table = rules
            .sharded(name)
            .ok_or_else(|| format!("'{name}' is not a sharded table here"))?;
        let members: Vec<&str> = match table.binding_group() {
            Some(g) => rules.binding_groups[g]
                .tables
                .iter()
                .map(String::as_str)
                .collect(),
            None => vec![table.name()],
        };
        for member in members {
            let Some(t) = rules.sharded(member) else {
                continue;
            };
            let Algorithm::UidSlice(map) = t.algorithm() else {
                return Err(format!("'{member}' is not sharded by uid_slice here"));
            };
            for slice in slices.iter() {
                if let Some(n) = t.node(map.node_of_slice(slice)) {
                    push_node(&mut nodes, &n.data_source, &n.table);
                }
            }
        }
    }
    Ok(nodes)
}

/// This proxy's registration and acknowledgements.
struct Follower {
    ctx: Arc<Context>,
    meta: Meta,
    number: u16,
    name: String,
    incarnation: Option<u64>,
    /// When the last renewal that succeeded was sent: the lease runs from there at most.
    renewed: Option<Instant>,
    /// The fence epoch acknowledged.
    acked: u64,
    /// The fence seen but not yet acknowledged (units in flight).
    pending: Option<u64>,
    /// The map version and fence epoch last written to the registry.
    written: (u64, u64),
}

impl Follower {
    /// Renews this proxy's registration `incarnation` with the map version and fence it
    /// acknowledges now; `false` when the registration is no longer this proxy's.
    async fn heartbeat(&mut self, incarnation: u64) -> Result<bool, String> {
        let acknowledgements = (self.ctx.gate.map_version(), self.acked);
        let renewed = meta::proxies::heartbeat(
            &mut self.meta,
            self.number,
            incarnation,
            LEASE,
            acknowledgements.0,
            acknowledgements.1,
        )
        .await
        .map_err(|e| e.to_string())?;
        if renewed {
            self.written = acknowledgements;
        }
        Ok(renewed)
    }

    /// One round: renew, read the fence and the map, apply, acknowledge. `Err` when the
    /// meta data source failed (the round is retried at the next heartbeat).
    async fn round(&mut self) -> Result<(), String> {
        let ctx = self.ctx.clone();
        let gate = &ctx.gate;
        let sent = Instant::now();
        // Rounds come every FENCED_HEARTBEAT under a fence; the lease needs no more than one
        // renewal per HEARTBEAT, acknowledgements are written at once.
        let renewal_due = self.renewed.is_none_or(|at| at.elapsed() >= HEARTBEAT)
            || (gate.map_version(), self.acked) != self.written;
        let renewed = match self.incarnation {
            Some(_) if !renewal_due => true,
            Some(incarnation) => self.heartbeat(incarnation).await?,
            None => false,
        };
        if !renewed {
            let incarnation = meta::proxies::register(
                &mut self.meta,
                self.number,
                &self.name,
                LEASE,
                gate.map_version(),
            )
            .await
            .map_err(|e| e.to_string())?;
            tracing::info!(
                number = self.number,
                incarnation,
                "registered in the meta data source"
            );
            self.incarnation = Some(incarnation);
            self.acked = 0;
            self.written = (gate.map_version(), 0);
        }
        if renewal_due {
            self.renewed = Some(sent);
        }
        // The fence first, then the map: see the module's doc.
        let fence = meta::fence::read(&mut self.meta)
            .await
            .map_err(|e| e.to_string())?;
        let latest = meta::slice_map::latest_version(&mut self.meta)
            .await
            .map_err(|e| e.to_string())?;
        if latest > gate.map_version() {
            let map = meta::slice_map::latest(&mut self.meta)
                .await
                .map_err(|e| e.to_string())?;
            self.ctx.follow_slice_map(map)?;
        }
        let served = gate.map_version();
        if fence.in_force() && fence.map_version >= served {
            if self.pending != Some(fence.epoch) && self.acked != fence.epoch {
                let rules = self.ctx.snapshot.load().rules.clone();
                let nodes = fenced_nodes(&rules, &fence).map_err(|e| {
                    format!("the fence of epoch {} cannot be honoured: {e}", fence.epoch)
                })?;
                if gate.fence(fence.epoch, nodes) {
                    tracing::info!(
                        epoch = fence.epoch,
                        set_by = fence.set_by,
                        "fence in force: writes to the moving slices wait"
                    );
                }
                self.pending = Some(fence.epoch);
            }
        } else {
            gate.release();
            self.pending = None;
            self.acked = fence.epoch;
        }
        gate.set_unsure(None);
        if let Some(incarnation) = self.incarnation {
            if (gate.map_version(), self.acked) != self.written {
                self.heartbeat(incarnation).await?;
            }
        }
        Ok(())
    }

    /// Acknowledges the pending fence once its units in flight ended; whether it did.
    fn settle_pending(&mut self) -> bool {
        match self.pending {
            Some(epoch) if self.ctx.gate.drained(epoch) => {
                self.pending = None;
                self.acked = epoch;
                true
            }
            _ => false,
        }
    }

    /// Whether the lease may have lapsed: no renewal sent within it succeeded.
    fn lapsed(&self) -> bool {
        self.renewed.is_none_or(|sent| sent.elapsed() >= LEASE)
    }
}

/// Runs this proxy's registration and its following of the fence and the slice map, for the
/// life of the process, when the rules name a meta data source.
pub fn spawn_follower(ctx: Arc<Context>) {
    let rules = ctx.snapshot.load().rules.clone();
    let Ok(meta) = Meta::new(&rules, META_TIMEOUT) else {
        return;
    };
    let number = u16::from(rules.proxy.number);
    let name = format!(
        "dbmesh-{number} pid {} on {}",
        std::process::id(),
        rules.proxy.listen
    );
    let mut follower = Follower {
        ctx,
        meta,
        number,
        name,
        incarnation: None,
        renewed: None,
        acked: 0,
        pending: None,
        written: (0, 0),
    };
    tokio::spawn(async move {
        loop {
            // The meta data source's primary may have been switched.
            let rules = follower.ctx.snapshot.load().rules.clone();
            if let Some((_, ds)) = meta::data_source(&rules) {
                follower.meta.set_address(&ds.address);
            }
            if let Err(e) = follower.round().await {
                tracing::warn!(error = e, "the proxy registry could not be updated");
                if follower.lapsed() {
                    follower.ctx.gate.set_unsure(Some(&rules));
                }
            }
            let next = tokio::time::Instant::now() + follower.ctx.gate.round_interval();
            // A fence is acknowledged as soon as its units in flight end: the next round
            // starts at once then.
            let mut acknowledge = false;
            while follower.pending.is_some() && tokio::time::Instant::now() < next {
                let gate = follower.ctx.gate.clone();
                let ended = gate.unit_ended.notified();
                if follower.settle_pending() {
                    acknowledge = true;
                    break;
                }
                let _ = tokio::time::timeout_at(next, ended).await;
            }
            if acknowledge {
                continue;
            }
            tokio::time::sleep_until(next).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let text = r#"
[[users]]
name = "app"
password = "secret"

[schema]
name = "bank"
default_data_source = "ds_0"

[data_sources.ds_0]
address = "127.0.0.1:1"
user = "u"
database = "d0"

[data_sources.ds_1]
address = "127.0.0.1:1"
user = "u"
database = "d1"

[tables.payment]
kind = "sharded"
column = "uid"
algorithm = "uid_slice"
nodes = "ds_{0..1}"
slices = { "00-49" = "ds_0", "50-99" = "ds_1" }

[tables.ledger]
kind = "sharded"
column = "uid"
algorithm = "uid_slice"
nodes = "ds_{0..1}.ledger"
slices = { "00-49" = "ds_0", "50-99" = "ds_1" }

[[binding_groups]]
tables = ["payment", "ledger"]
"#;
        rules::parse_str(text, std::path::Path::new("t.toml")).expect("valid rules")
    }

    fn fence(slices: &str) -> FenceRecord {
        FenceRecord {
            epoch: 7,
            tables: [("payment".to_string(), slices.parse().expect("slices"))].into(),
            remaining: Some(Duration::from_secs(1)),
            ..FenceRecord::default()
        }
    }

    #[test]
    fn a_fence_names_the_owners_of_its_slices_in_the_whole_binding_group() {
        let nodes = fenced_nodes(&rules(), &fence("50-59")).expect("nodes");
        let names: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}.{}", n.data_source, n.table))
            .collect();
        assert_eq!(names, ["ds_1.payment", "ds_1.ledger"]);
        let both = fenced_nodes(&rules(), &fence("45-55")).expect("nodes");
        assert_eq!(both.len(), 4);
        let mut unknown = fence("1");
        unknown.tables = [("nope".to_string(), "1".parse().expect("slices"))].into();
        assert!(fenced_nodes(&rules(), &unknown).is_err());
    }

    #[test]
    fn units_in_flight_pass_and_delay_the_acknowledgement_newer_ones_are_checked() {
        let rules = rules();
        let gate = Gate::new(&rules, 0, true, &Registry::new());
        let before = gate.enter();
        assert!(gate.check(&before).0.is_none(), "no fence, no check");
        assert_eq!(gate.round_interval(), HEARTBEAT);
        assert!(gate.fence(7, fenced_nodes(&rules, &fence("50-59")).expect("nodes")));
        assert_eq!(
            gate.round_interval(),
            FENCED_HEARTBEAT,
            "a fence in force is followed closely"
        );
        assert!(
            !gate.fence(7, Vec::new()),
            "the same epoch again changes nothing"
        );
        assert!(gate.check(&before).0.is_none(), "a unit in flight runs on");
        let after = gate.enter();
        let check = gate.check(&after).0.expect("a newer unit is checked");
        assert_eq!(check.nodes.len(), 2);
        assert!(
            !gate.drained(7),
            "a unit in flight delays the acknowledgement"
        );
        drop(before);
        assert!(gate.drained(7));
        gate.map_applied(1);
        assert!(gate.check(&after).0.is_none(), "a new map ends the fence");
        assert_eq!(gate.round_interval(), HEARTBEAT);
        assert_eq!(gate.map_version(), 1);
    }

    #[test]
    fn an_unsure_map_fences_every_uid_slice_node_for_everyone() {
        let rules = rules();
        let gate = Gate::new(&rules, 0, false, &Registry::new());
        let unit = gate.enter();
        let (check, changes) = gate.check(&unit);
        assert_eq!(check.expect("fenced").nodes.len(), 4);
        gate.set_unsure(None);
        assert!(changes.has_changed().expect("gate alive"));
        assert!(gate.check(&unit).0.is_none());
    }
}
