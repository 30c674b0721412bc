//! [`Mover`]: this process driving one move, holding its driver's lease in the meta data
//! source (renewed in the background; a lost lease stops the work). It starts or resumes
//! the move, copies, runs the catch-up and saves its positions every second until told to
//! stop or until another process asks for a cutover or an abort through the move state.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use binlog::FollowerMetrics;
use meta::moves::{self, MoveRecord, Request};
use meta::{slice_map, Meta, MetaError, Phase, SliceSet};
use rules::Rules;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::catch_up::{start_followers, SourceFollower};
use crate::copy::{copy, CopyJob, CopyProgress, CopySettings};
use crate::progress::ProgressView;
use crate::{MovePlan, RebalanceError, RebalanceMetrics};

/// What the DBA asked to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRequest {
    pub slices: SliceSet,
    /// `ds_4`, or `ds_4.table` when the data source holds several nodes of a table.
    pub destination: String,
    /// The tables whose binding groups move; empty for every `uid_slice` table.
    pub tables: Vec<String>,
}

/// How a move is driven.
#[derive(Debug, Clone)]
pub struct MoveSettings {
    pub copy: CopySettings,
    /// The driver's lease: another process may take the move over this long after this one
    /// stopped renewing it.
    pub lease: Duration,
    /// How long each meta statement may take.
    pub meta_timeout: Duration,
    /// How often the catch-up's positions are saved.
    pub checkpoint_every: Duration,
}

impl Default for MoveSettings {
    fn default() -> Self {
        MoveSettings {
            copy: CopySettings::default(),
            lease: Duration::from_secs(15),
            meta_timeout: Duration::from_secs(10),
            checkpoint_every: Duration::from_secs(1),
        }
    }
}

/// The plan of a recorded move: made again from the rules and the slice-map version the
/// move was planned from.
pub async fn plan_of(
    rules: &Rules,
    meta: &mut Meta,
    record: &MoveRecord,
) -> Result<MovePlan, RebalanceError> {
    let map = slice_map::read(meta, record.from_version).await?;
    let scope: Vec<String> = record.tables.keys().cloned().collect();
    MovePlan::build(rules, &map, record.slices, &record.destination, &scope)
}

/// Move `id`, or the newest move in progress.
pub async fn find_move(meta: &mut Meta, id: Option<u64>) -> Result<MoveRecord, RebalanceError> {
    let found = match id {
        Some(id) => moves::get(meta, id).await?,
        None => moves::current(meta).await?,
    };
    found.ok_or_else(|| {
        RebalanceError::refused(match id {
            Some(id) => format!("there is no move {id}"),
            None => "no move is in progress (name one with --id)".into(),
        })
    })
}

/// Why [`Mover::catch_up`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUpEnd {
    /// The stop future completed (Ctrl-C, SIGTERM): positions saved.
    Stopped,
    /// Another process asked for this through the move state.
    Requested(Request),
}

/// One process driving one move.
pub struct Mover {
    pub rules: Rules,
    pub plan: MovePlan,
    pub id: u64,
    /// Who drives it (host and process), as the move state shows.
    pub driver: String,
    pub meta: Meta,
    pub settings: MoveSettings,
    pub metrics: RebalanceMetrics,
    pub follower_metrics: FollowerMetrics,
    lease_lost: watch::Receiver<Option<String>>,
    lease_keeper: JoinHandle<()>,
}

impl Drop for Mover {
    fn drop(&mut self) {
        self.lease_keeper.abort();
    }
}

impl Mover {
    /// Starts the move `request` asks for, or resumes the one in progress with the same
    /// slices and destination (taking its driver's lease, which must have lapsed or be
    /// this driver's).
    pub async fn begin(
        rules: Rules,
        request: &MoveRequest,
        driver: &str,
        settings: MoveSettings,
    ) -> Result<Mover, RebalanceError> {
        let mut meta = Meta::new(&rules, settings.meta_timeout)?;
        let same = moves::list(&mut meta).await?.into_iter().rev().find(|m| {
            !m.phase.is_finished()
                && m.slices == request.slices
                && m.destination == request.destination
                && (request.tables.is_empty()
                    || request.tables.iter().all(|t| m.tables.contains_key(t)))
        });
        let (id, plan) = match same {
            Some(record) => {
                moves::take_driver(&mut meta, record.id, driver, settings.lease).await?;
                let plan = plan_of(&rules, &mut meta, &record).await?;
                tracing::info!(move_id = record.id, phase = %record.phase, "resuming the move");
                (record.id, plan)
            }
            None => {
                let map = slice_map::latest(&mut meta).await?;
                let plan = MovePlan::build(
                    &rules,
                    &map,
                    request.slices,
                    &request.destination,
                    &request.tables,
                )?;
                let id = moves::create(&mut meta, &plan.new_move(), driver, settings.lease).await?;
                tracing::info!(move_id = id, %plan, "move recorded");
                (id, plan)
            }
        };
        Ok(Mover::driving(rules, meta, id, plan, driver, settings))
    }

    /// Drives the recorded move `id` (or the newest in progress): takes its driver's lease.
    pub async fn attach(
        rules: Rules,
        id: Option<u64>,
        driver: &str,
        settings: MoveSettings,
    ) -> Result<Mover, RebalanceError> {
        let mut meta = Meta::new(&rules, settings.meta_timeout)?;
        let record = find_move(&mut meta, id).await?;
        moves::take_driver(&mut meta, record.id, driver, settings.lease).await?;
        let plan = plan_of(&rules, &mut meta, &record).await?;
        Ok(Mover::driving(
            rules, meta, record.id, plan, driver, settings,
        ))
    }

    fn driving(
        rules: Rules,
        meta: Meta,
        id: u64,
        plan: MovePlan,
        driver: &str,
        settings: MoveSettings,
    ) -> Mover {
        let (lost_tx, lease_lost) = watch::channel(None);
        let keeper_meta = Meta::new(&rules, settings.meta_timeout);
        let lease = settings.lease;
        let keeper_driver = driver.to_string();
        let lease_keeper = tokio::spawn(async move {
            let Ok(mut meta) = keeper_meta else { return };
            let mut tick = tokio::time::interval(lease / 3);
            loop {
                tick.tick().await;
                match moves::checkpoint(&mut meta, id, &keeper_driver, lease, &[]).await {
                    Ok(()) => {}
                    Err(MetaError::Conflict(reason)) => {
                        lost_tx.send_replace(Some(reason));
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "renewing the move's lease failed"),
                }
            }
        });
        Mover {
            rules,
            plan,
            id,
            driver: driver.to_string(),
            meta,
            settings,
            metrics: RebalanceMetrics::new(),
            follower_metrics: FollowerMetrics::new(),
            lease_lost,
            lease_keeper,
        }
    }

    /// The move as recorded now.
    pub async fn record(&mut self) -> Result<MoveRecord, RebalanceError> {
        find_move(&mut self.meta, Some(self.id)).await
    }

    fn check_lease(&self) -> Result<(), RebalanceError> {
        match self.lease_lost.borrow().clone() {
            Some(reason) => Err(RebalanceError::LeaseLost(reason)),
            None => Ok(()),
        }
    }

    /// Copies what is left to copy (nothing once the move is past `copying`), then moves it
    /// to `catching_up`.
    pub async fn copy(&mut self, progress: Arc<CopyProgress>) -> Result<(), RebalanceError> {
        let record = self.record().await?;
        if record.phase != Phase::Copying {
            return Ok(());
        }
        copy(CopyJob {
            rules: &self.rules,
            plan: &self.plan,
            record: &record,
            meta: &mut self.meta,
            driver: &self.driver,
            settings: &self.settings.copy,
            metrics: &self.metrics,
            progress,
        })
        .await?;
        self.check_lease()?;
        moves::set_phase(&mut self.meta, self.id, Phase::Copying, Phase::CatchingUp).await?;
        Ok(())
    }

    /// Starts the catch-up followers from the saved positions.
    pub async fn start_catch_up(&mut self) -> Result<Vec<SourceFollower>, RebalanceError> {
        let record = self.record().await?;
        start_followers(&self.rules, &self.plan, &record, &self.follower_metrics)
    }

    /// Saves each follower's processed position (and renews the lease); the move as
    /// recorded then.
    pub async fn checkpoint(
        &mut self,
        followers: &[SourceFollower],
    ) -> Result<MoveRecord, RebalanceError> {
        self.check_lease()?;
        let positions: Vec<(String, String)> = followers
            .iter()
            .map(|f| {
                (
                    f.data_source.clone(),
                    f.handle.processed().borrow().to_string(),
                )
            })
            .collect();
        self.save_positions(&positions).await?;
        self.record().await
    }

    /// Saves `(data source, processed position)` pairs and renews the lease.
    async fn save_positions(
        &mut self,
        positions: &[(String, String)],
    ) -> Result<(), RebalanceError> {
        moves::checkpoint(
            &mut self.meta,
            self.id,
            &self.driver,
            self.settings.lease,
            positions,
        )
        .await
        .map_err(RebalanceError::lease)
    }

    /// Keeps the destination caught up, saving positions every second and calling
    /// `on_tick` with the progress, until `stop` completes or another process requests a
    /// cutover or an abort; the followers are handed back running (to be stopped, or to go
    /// on into a cutover). A follower that fails ends it with its error, the others stopped.
    pub async fn catch_up(
        &mut self,
        mut followers: Vec<SourceFollower>,
        stop: impl Future<Output = ()>,
        mut on_tick: impl FnMut(&ProgressView),
    ) -> Result<(CatchUpEnd, Vec<SourceFollower>), RebalanceError> {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.settings.checkpoint_every);
        loop {
            let stopped = tokio::select! {
                _ = tick.tick() => false,
                _ = &mut stop => true,
            };
            if let Some(at) = followers.iter().position(|f| f.handle.is_finished()) {
                let ended = followers.remove(at);
                let outcome = ended.handle.stop().await;
                let _ = self.checkpoint(&followers).await;
                for follower in followers {
                    let _ = follower.handle.stop().await;
                }
                return Err(match outcome {
                    Err(error) => error.into(),
                    Ok(at) => RebalanceError::refused(format!(
                        "the catch-up of '{}' stopped at {at}",
                        ended.data_source
                    )),
                });
            }
            let record = self.checkpoint(&followers).await?;
            on_tick(&self.view(&record, &followers, None));
            if stopped {
                return Ok((CatchUpEnd::Stopped, followers));
            }
            if let Some(request) = record.requested {
                return Ok((CatchUpEnd::Requested(request), followers));
            }
        }
    }

    /// The progress of `record` with the followers' lag and the copy's counts.
    pub fn view(
        &self,
        record: &MoveRecord,
        followers: &[SourceFollower],
        copy: Option<(&CopyProgress, Option<f64>)>,
    ) -> ProgressView {
        let (rows_copied, rows_total) = match copy {
            Some((progress, _)) => (
                progress.rows_copied.load(Ordering::Relaxed),
                progress.rows_total.load(Ordering::Relaxed),
            ),
            None => (
                record.nodes.iter().map(|n| n.rows_copied).sum(),
                record.nodes.iter().map(|n| n.rows_total).sum(),
            ),
        };
        let lags: Vec<binlog::Lag> = followers.iter().map(|f| *f.handle.lag().borrow()).collect();
        ProgressView {
            id: record.id,
            phase: record.phase,
            rows_copied,
            rows_total,
            rate: copy.and_then(|(_, rate)| rate),
            lag_seconds: lags.iter().map(|l| l.seconds).max(),
            lag_transactions: lags.iter().map(|l| l.transactions).sum::<Option<u64>>(),
        }
    }

    /// Stops `followers`, saves where they stopped and releases the driver's lease.
    pub async fn stop(mut self, followers: Vec<SourceFollower>) -> Result<(), RebalanceError> {
        let mut positions = Vec::new();
        let mut failed = None;
        for follower in followers {
            match follower.handle.stop().await {
                Ok(position) => positions.push((follower.data_source, position.to_string())),
                Err(error) => failed = failed.or(Some(error)),
            }
        }
        if !positions.is_empty() {
            self.save_positions(&positions).await?;
        }
        moves::release_driver(&mut self.meta, self.id, &self.driver).await?;
        match failed {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}
