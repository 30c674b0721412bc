//! The cutover of a move: its slices switch from the sources to the destination on every live
//! proxy at once, writes to them waiting (not failing) meanwhile.
//!
//! 1. `fence`: [`meta::fence::set`] on the move's tables (their binding groups);
//! 2. `fence_acknowledged`: every live proxy acknowledges the fence's epoch (its units of work
//!    begun before it have ended);
//! 3. `caught_up`: each source's `@@gtid_binlog_pos`, read now that no write reaches the
//!    moving slices, is applied on the destination by its catch-up follower;
//! 4. `map_switched`: the next slice-map version, written only while the fence is in force;
//! 5. `map_acknowledged`: every live proxy serves it;
//! 6. `released`: the fence is released; waiting writes run on the destination.
//!
//! Past a deadline at steps 2-4 (or on any error there) the fence is released and the cutover
//! aborts: writes resume on the sources, the move stays caught up and can try again. Once the
//! map is written the cutover only completes: a proxy that does not serve the new map is
//! waited for until the fence's lease, which then lapses by itself (a proxy that cannot read
//! the meta data source for its own lease fences every `uid_slice` node itself, so a slice
//! never has two owners).
//!
//! The destination's `@@gtid_binlog_pos`, read after step 3, is where the reverse flow
//! (destination to sources) starts: nothing the forward followers apply comes after it.
//!
//! The move's phase goes `verified` → `cutting_over` → `cut_over` (back to `verified` on an
//! abort), and each attempt is recorded in [`meta::cutovers`]: as `switching` with its fence
//! epoch and the reverse flow's start just before the map is written, then `completed` or
//! `aborted` with each step's duration. A driver killed midway leaves the move
//! `cutting_over`; [`recover`] settles it from the map: switched or not.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use backend::{BackendConn, ConnectOptions};
use binlog::{FollowerHandle, GtidPosition};
use meta::cutovers::CutoverRecord;
use meta::moves::Phase;
use meta::{Meta, MetaError, ProxyRecord};
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

use crate::{MovePlan, RebalanceError};

/// The bounds of a cutover.
#[derive(Debug, Clone)]
pub struct CutoverSettings {
    /// How long the fence lasts if the driver dies holding it.
    pub fence_lease: Duration,
    /// How long every live proxy has to acknowledge the fence.
    pub acknowledgements: Duration,
    /// How long the catch-up followers have to reach the sources' positions.
    pub catch_up: Duration,
}

impl Default for CutoverSettings {
    fn default() -> CutoverSettings {
        CutoverSettings {
            fence_lease: Duration::from_secs(30),
            // A proxy renews its lease every 100 ms and acknowledges as soon as its units in
            // flight end: 5 s is a transaction held open on a moving slice.
            acknowledgements: Duration::from_secs(5),
            catch_up: Duration::from_secs(5),
        }
    }
}

/// A step of the cutover, as logged, measured and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fence,
    FenceAcknowledged,
    CaughtUp,
    MapSwitched,
    MapAcknowledged,
    Released,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Fence => "fence",
            Step::FenceAcknowledged => "fence_acknowledged",
            Step::CaughtUp => "caught_up",
            Step::MapSwitched => "map_switched",
            Step::MapAcknowledged => "map_acknowledged",
            Step::Released => "released",
        }
    }
}

/// A completed cutover.
#[derive(Debug, Clone)]
pub struct CutOver {
    pub epoch: u64,
    /// The slice-map version now served.
    pub map_version: u64,
    /// Each step's duration, in order.
    pub steps: Vec<(Step, Duration)>,
    /// From setting the fence to releasing it: the longest a write waited.
    pub fence_held: Duration,
    /// The destination's position at the switch: the reverse flow's start.
    pub reverse_start: GtidPosition,
}

/// The cutover's metrics.
#[derive(Clone)]
pub struct CutoverMetrics {
    cutovers: IntCounterVec,
    fence_held: Histogram,
    steps: HistogramVec,
}

impl CutoverMetrics {
    pub fn new() -> CutoverMetrics {
        let buckets = vec![0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];
        CutoverMetrics {
            cutovers: IntCounterVec::new(
                Opts::new(
                    "dbmesh_rebalance_cutovers_total",
                    "Cutovers of rebalancing moves, by result (completed, aborted)",
                ),
                &["result"],
            )
            .expect("valid metric"),
            fence_held: Histogram::with_opts(
                HistogramOpts::new(
                    "dbmesh_rebalance_cutover_pause_seconds",
                    "How long cutovers held writes to the moving slices (fence to release)",
                )
                .buckets(buckets.clone()),
            )
            .expect("valid metric"),
            steps: HistogramVec::new(
                HistogramOpts::new(
                    "dbmesh_rebalance_cutover_step_seconds",
                    "How long each step of the cutovers took",
                )
                .buckets(buckets),
                &["step"],
            )
            .expect("valid metric"),
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.cutovers.clone()))?;
        registry.register(Box::new(self.fence_held.clone()))?;
        registry.register(Box::new(self.steps.clone()))
    }
}

impl Default for CutoverMetrics {
    fn default() -> CutoverMetrics {
        CutoverMetrics::new()
    }
}

/// What a cutover works with.
pub struct Cutover<'a> {
    pub meta: &'a mut Meta,
    pub plan: &'a MovePlan,
    /// The move's id in the meta data source (its attempts are recorded there).
    pub move_id: u64,
    /// Each source data source's connection options, by name.
    pub sources: &'a BTreeMap<String, ConnectOptions>,
    pub destination: &'a ConnectOptions,
    /// Each source's catch-up follower, by source data source name.
    pub followers: &'a mut BTreeMap<String, FollowerHandle>,
    /// Who drives it (the fence and the map name it).
    pub driver: &'a str,
    pub settings: &'a CutoverSettings,
    pub metrics: &'a CutoverMetrics,
}

/// The steps measured so far.
struct Clock {
    fence_set: Option<Instant>,
    step_began: Instant,
    steps: Vec<(Step, Duration)>,
}

impl Clock {
    fn done(&mut self, step: Step, metrics: &CutoverMetrics) {
        let took = self.step_began.elapsed();
        self.step_began = Instant::now();
        if step == Step::Fence {
            self.fence_set = Some(Instant::now());
        }
        metrics
            .steps
            .with_label_values(&[step.as_str()])
            .observe(took.as_secs_f64());
        tracing::info!(
            step = step.as_str(),
            took_ms = took.as_secs_f64() * 1e3,
            "cutover step done"
        );
        self.steps.push((step, took));
    }

    fn fence_held(&self) -> Duration {
        self.fence_set.map(|at| at.elapsed()).unwrap_or_default()
    }

    fn record(&self, cutover: &Cutover<'_>, epoch: u64) -> CutoverRecord {
        CutoverRecord {
            move_id: cutover.move_id,
            attempt: 0,
            epoch,
            result: String::new(),
            steps: self
                .steps
                .iter()
                .map(|(s, took)| (s.as_str().to_string(), *took))
                .collect(),
            fence_held: self.fence_held(),
            reason: String::new(),
            reverse_start: String::new(),
        }
    }
}

impl Cutover<'_> {
    /// Runs the cutover; see the module's doc. `Err(RebalanceError::CutoverAborted)` when it
    /// gave up and released the fence (the sources keep the slices).
    pub async fn run(mut self) -> Result<CutOver, RebalanceError> {
        let span = tracing::info_span!("rebalance_cutover", move_id = self.move_id);
        async move {
            let id = self.move_id;
            let phase = meta::moves::get(self.meta, id)
                .await?
                .ok_or_else(|| RebalanceError::refused(format!("there is no move {id}")))?
                .phase;
            if phase != Phase::Verified {
                return Err(RebalanceError::refused(format!(
                    "move {id} is {phase}: only a verified move is cut over (verify it first)"
                )));
            }
            // Connected before the fence, so that its time is not spent connecting.
            let mut positions = BTreeMap::new();
            for (name, options) in self.sources {
                positions.insert(name.clone(), BackendConn::connect(options).await?);
            }
            let mut destination = BackendConn::connect(self.destination).await?;
            let mut clock = Clock {
                fence_set: None,
                step_began: Instant::now(),
                steps: Vec::new(),
            };
            meta::moves::set_phase(self.meta, id, Phase::Verified, Phase::CuttingOver).await?;
            let fence = meta::fence::set(
                self.meta,
                &self.plan.groups,
                self.plan.from_version,
                self.settings.fence_lease,
                &fence_owner(id, self.driver),
            )
            .await;
            let epoch = match fence {
                Ok(epoch) => epoch,
                Err(e) => {
                    meta::moves::set_phase(self.meta, id, Phase::CuttingOver, Phase::Verified)
                        .await?;
                    return Err(e.into());
                }
            };
            clock.done(Step::Fence, self.metrics);
            let mut attempt = None;
            let switched = self
                .switch(
                    epoch,
                    &mut clock,
                    &mut positions,
                    &mut destination,
                    &mut attempt,
                )
                .await;
            let reverse_start = match switched {
                Ok(reverse_start) => reverse_start,
                Err((step, error)) => {
                    return Err(self.abort(epoch, &clock, step, error, attempt).await)
                }
            };
            // The map is switched: from here on the cutover only completes.
            let next = self.plan.next_map.version;
            self.until_every_proxy(|p| p.map_version >= next, self.settings.fence_lease)
                .await
                .map_err(|e| RebalanceError::CutoverStuck(e.to_string()))?;
            clock.done(Step::MapAcknowledged, self.metrics);
            meta::fence::release(self.meta, epoch).await?;
            clock.done(Step::Released, self.metrics);
            let fence_held = clock.fence_held();
            self.metrics
                .cutovers
                .with_label_values(&["completed"])
                .inc();
            self.metrics.fence_held.observe(fence_held.as_secs_f64());
            let mut record = clock.record(&self, epoch);
            record.result = "completed".into();
            record.attempt = attempt.unwrap_or_default();
            meta::cutovers::update(self.meta, &record).await?;
            meta::moves::set_phase(self.meta, id, Phase::CuttingOver, Phase::CutOver).await?;
            tracing::info!(
                epoch,
                map_version = next,
                fence_held_ms = fence_held.as_secs_f64() * 1e3,
                "cutover completed"
            );
            Ok(CutOver {
                epoch,
                map_version: next,
                steps: clock.steps,
                fence_held,
                reverse_start,
            })
        }
        .instrument(span)
        .await
    }

    /// Steps 2-4 under fence `epoch`; the destination's position once caught up. `Err` names
    /// the step that failed.
    async fn switch(
        &mut self,
        epoch: u64,
        clock: &mut Clock,
        sources: &mut BTreeMap<String, BackendConn>,
        destination: &mut BackendConn,
        attempt: &mut Option<u32>,
    ) -> Result<GtidPosition, (Step, RebalanceError)> {
        self.until_every_proxy(|p| p.fence_epoch >= epoch, self.settings.acknowledgements)
            .await
            .map_err(|e| (Step::FenceAcknowledged, e))?;
        clock.done(Step::FenceAcknowledged, self.metrics);
        for (name, conn) in sources.iter_mut() {
            let at = |e| (Step::CaughtUp, e);
            let target = binlog_position(conn).await.map_err(at)?;
            let follower = self.followers.get_mut(name).ok_or_else(|| {
                at(RebalanceError::refused(format!(
                    "no catch-up follower of data source '{name}'"
                )))
            })?;
            follower
                .wait_for(&target, self.settings.catch_up)
                .await
                .map_err(|e| at(e.into()))?;
        }
        let reverse_start = binlog_position(destination)
            .await
            .map_err(|e| (Step::CaughtUp, e))?;
        clock.done(Step::CaughtUp, self.metrics);
        let at = |e: MetaError| (Step::MapSwitched, RebalanceError::from(e));
        let mut switching = clock.record(self, epoch);
        switching.result = "switching".into();
        switching.reverse_start = reverse_start.to_string();
        *attempt = Some(
            meta::cutovers::record(self.meta, &switching)
                .await
                .map_err(at)?,
        );
        let next = self.plan.next_map.version;
        if let Err(e) =
            meta::slice_map::write(self.meta, &self.plan.next_map, self.driver, Some(epoch)).await
        {
            // A lost answer may hide a written map: only a map that is not there is given up.
            if meta::slice_map::latest_version(self.meta)
                .await
                .map_err(at)?
                < next
            {
                return Err(at(e));
            }
        }
        clock.done(Step::MapSwitched, self.metrics);
        Ok(reverse_start)
    }

    /// Releases fence `epoch` after `step` failed with `error`, records the attempt, and
    /// returns the error to report.
    async fn abort(
        &mut self,
        epoch: u64,
        clock: &Clock,
        step: Step,
        error: RebalanceError,
        attempt: Option<u32>,
    ) -> RebalanceError {
        let released = meta::fence::release(self.meta, epoch).await;
        let fence_held = clock.fence_held();
        self.metrics.cutovers.with_label_values(&["aborted"]).inc();
        self.metrics.fence_held.observe(fence_held.as_secs_f64());
        let reason = format!("{}: {error}", step.as_str());
        tracing::warn!(
            epoch,
            reason,
            fence_held_ms = fence_held.as_secs_f64() * 1e3,
            "cutover aborted: writes resume on the sources"
        );
        let mut record = clock.record(self, epoch);
        record.result = "aborted".into();
        record.reason = reason.clone();
        let recorded = match attempt {
            Some(attempt) => {
                record.attempt = attempt;
                meta::cutovers::update(self.meta, &record).await
            }
            None => meta::cutovers::record(self.meta, &record).await.map(drop),
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "the aborted cutover could not be recorded");
        }
        let id = self.move_id;
        if let Err(e) =
            meta::moves::set_phase(self.meta, id, Phase::CuttingOver, Phase::Verified).await
        {
            tracing::warn!(error = %e, "the aborted cutover's move stays cutting_over");
        }
        match released {
            Ok(_) => RebalanceError::CutoverAborted(reason),
            // The fence lapses at its lease; until then writes to the slices wait.
            Err(e) => RebalanceError::CutoverAborted(format!(
                "{reason}; and the fence could not be released ({e}): it lapses within {:?}",
                self.settings.fence_lease
            )),
        }
    }

    /// Waits until every live proxy's registry row satisfies `ok`, for at most `within`.
    async fn until_every_proxy(
        &mut self,
        ok: impl Fn(&ProxyRecord) -> bool,
        within: Duration,
    ) -> Result<(), RebalanceError> {
        let deadline = Instant::now() + within;
        loop {
            let proxies = meta::proxies::list(self.meta).await?;
            let behind: Vec<String> = proxies
                .iter()
                .filter(|p| p.live && !ok(p))
                .map(|p| format!("proxy {} ({})", p.number, p.name))
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RebalanceError::Meta(MetaError::Conflict(format!(
                    "not acknowledged within {within:?} by {}",
                    behind.join(", ")
                ))));
            }
            // The proxies poll every 10-100 ms; a tighter poll here only shortens the pause.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Who a cutover's fence names: the move first, so that [`recover`] knows it.
fn fence_owner(move_id: u64, driver: &str) -> String {
    format!("move {move_id} by {driver}")
}

/// Settles the cutover a killed driver left move `move_id` in (phase `cutting_over`): when
/// the next map version (`next_version`) was written, the move is cut over (its last
/// attempt completed); otherwise it is verified again (the attempt aborted). Either way a
/// fence of the move still in force is released. Returns the move's phase now; any other
/// phase is left as it is.
pub async fn recover(
    meta: &mut Meta,
    move_id: u64,
    next_version: u64,
) -> Result<Phase, RebalanceError> {
    let phase = meta::moves::get(meta, move_id)
        .await?
        .ok_or_else(|| RebalanceError::refused(format!("there is no move {move_id}")))?
        .phase;
    if phase != Phase::CuttingOver {
        return Ok(phase);
    }
    let fence = meta::fence::read(meta).await?;
    if fence.in_force() && fence.set_by.starts_with(&fence_owner(move_id, "")) {
        meta::fence::release(meta, fence.epoch).await?;
    }
    let switched = meta::slice_map::latest_version(meta).await? >= next_version;
    let (result, now) = if switched {
        ("completed", Phase::CutOver)
    } else {
        ("aborted", Phase::Verified)
    };
    if let Some(mut last) = meta::cutovers::list(meta, move_id).await?.pop() {
        if last.result == "switching" {
            last.result = result.into();
            last.reason = "the driver was lost during the cutover".into();
            meta::cutovers::update(meta, &last).await?;
        }
    }
    meta::moves::set_phase(meta, move_id, Phase::CuttingOver, now).await?;
    tracing::warn!(
        move_id,
        phase = %now,
        "a cutover left midway by its driver is settled"
    );
    Ok(now)
}

/// A server's `@@gtid_binlog_pos`.
async fn binlog_position(conn: &mut BackendConn) -> Result<GtidPosition, RebalanceError> {
    let result = conn.query("SELECT @@gtid_binlog_pos AS pos").await?;
    let text = result.value(0, "pos").unwrap_or_default();
    text.parse()
        .map_err(|e| RebalanceError::refused(format!("@@gtid_binlog_pos '{text}': {e}")))
}
