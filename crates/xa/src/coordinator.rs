//! The two-phase commit coordinator.
//!
//! One [`Coordinator`] per proxy holds the lease on the proxy's transactions and the decision
//! log; each distributed transaction is a [`Transaction`] it begins. The transaction does not
//! own connections: the caller (the executor) keeps its connection per data source and lends
//! them as [`Participant`]s to [`Transaction::enlist`], [`Transaction::commit`] and
//! [`Transaction::rollback`].
//!
//! A commit goes through explicit phases, one function each:
//!
//! 1. **prepare**: `XA END` + `XA PREPARE` on every participant, the statements sent to all of
//!    them before any answer is read (the round trips overlap);
//! 2. **decide**: the commit decision written to the meta data source, one round trip, valid
//!    only while this proxy's lease is ([`crate::log`]);
//! 3. **commit**: `XA COMMIT` on every participant, again all sent before any answer is read;
//!    an "unknown xid" answer counts only once `XA RECOVER` confirms the branch is gone;
//! 4. **forget**: the decision row is deleted in the background, batched with others.
//!
//! A failed prepare rolls every branch back; a transaction on one data source is committed
//! with `XA END` + `XA COMMIT … ONE PHASE` in one round trip, with no log write. After any
//! error the caller must close the participants' connections: a server rolls back the
//! unprepared branch of a closed connection, and recovery resolves the prepared ones.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend::{BackendConn, BackendError, ConnectOptions};
use protocol::ClientError;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::failpoint::Failpoint;
use crate::log::{Decision, DecisionLog, Outcome, WriteError};
use crate::metrics::{CommitResult, XaMetrics};
use crate::xid::{Gtrid, Owner, Xid};
use crate::XaError;

/// MariaDB's ER_XAER_NOTA: "Unknown XID".
pub(crate) const UNKNOWN_XID: u16 = 1397;
/// The XA_RB* answers: the branch is rolled back, and the server says why (rolled back,
/// timeout, deadlock). MariaDB answers 1402 to committing or rolling back a prepared branch
/// that changed nothing.
pub(crate) const XA_RB: [u16; 3] = [1402, 1613, 1614];

/// How a [`Coordinator`] runs.
#[derive(Clone)]
pub struct CoordinatorOptions {
    /// This proxy's name in xids and in the lease table (1 to 24 characters of
    /// `A-Z a-z 0-9 _ . -`), unique among the proxies sharing a meta data source. A proxy
    /// restarted under the same name recovers its previous run's transactions at once;
    /// under a new name, once the old lease expires. Default `<host>-<pid>`.
    pub owner: String,
    /// A lease not renewed for this long is gone, and its transactions recoverable by any
    /// proxy. Default 10 s.
    pub lease: Duration,
    /// How often the lease is renewed. Default 2 s.
    pub heartbeat: Duration,
    /// Connections to the meta data source for decisions. Default 8.
    pub log_connections: usize,
    /// Bound on each statement to the meta data source. Default 5 s.
    pub query_timeout: Duration,
    pub metrics: XaMetrics,
    #[cfg(feature = "failpoints")]
    pub failpoints: crate::Failpoints,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            owner: default_owner(),
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_secs(2),
            log_connections: 8,
            query_timeout: Duration::from_secs(5),
            metrics: XaMetrics::new(),
            #[cfg(feature = "failpoints")]
            failpoints: crate::Failpoints::default(),
        }
    }
}

/// `<host>-<pid>`, within the 24 characters an owner name may have.
fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(14)
        .collect();
    let host = if host.is_empty() {
        "dbmesh".into()
    } else {
        host
    };
    format!("{host}-{:x}", std::process::id())
}

/// What a coordinator's transactions, heartbeat and recovery share.
pub(crate) struct Shared {
    pub(crate) log: DecisionLog,
    name: String,
    lease: Duration,
    /// The current incarnation; replaced when the lease was lost.
    owner: Mutex<Owner>,
    /// The newer incarnation another proxy registered under this proxy's name (0: none):
    /// two live proxies share the name. This one then refuses distributed transactions for
    /// good rather than take the lease back, which would make each fail the other's.
    taken_by: AtomicU32,
    sequence: AtomicU64,
    /// Gtrids of transactions begun and not yet finished or dropped: recovery leaves them.
    in_flight: Mutex<HashSet<String>>,
    forget: mpsc::UnboundedSender<String>,
    pub(crate) metrics: XaMetrics,
    #[cfg(feature = "failpoints")]
    pub(crate) failpoints: crate::Failpoints,
}

impl Shared {
    pub(crate) fn owner(&self) -> Owner {
        self.owner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn is_in_flight(&self, gtrid: &str) -> bool {
        self.lock_in_flight().contains(gtrid)
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fires failpoint `point` if armed (never, without the `failpoints` feature).
    #[cfg(feature = "failpoints")]
    pub(crate) fn hit(&self, point: Failpoint) -> Result<(), XaError> {
        self.failpoints.hit(point)
    }

    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    pub(crate) fn hit(&self, _point: Failpoint) -> Result<(), XaError> {
        Ok(())
    }

    #[cfg(feature = "failpoints")]
    fn armed(&self, point: Failpoint) -> bool {
        self.failpoints.is_armed(point)
    }

    #[cfg(not(feature = "failpoints"))]
    #[inline(always)]
    fn armed(&self, _point: Failpoint) -> bool {
        false
    }

    /// Why this proxy refuses distributed transactions, if another proxy took its name.
    pub(crate) fn lease_taken(&self) -> Option<XaError> {
        match self.taken_by.load(Ordering::Relaxed) {
            0 => None,
            incarnation => Some(XaError::LeaseTaken {
                name: self.name.clone(),
                incarnation,
            }),
        }
    }

    /// Renews the lease; a lease found expired is replaced by a new incarnation (the old
    /// one's transactions can no longer commit and are left to recovery), unless another
    /// proxy registered a newer incarnation of this name: then this proxy stops.
    async fn heartbeat(&self) {
        if self.taken_by.load(Ordering::Relaxed) != 0 {
            return;
        }
        let owner = self.owner();
        match self.log.renew(&owner, self.lease).await {
            Ok(true) => {}
            Ok(false) => {
                match self.log.incarnation(&self.name).await {
                    Ok(Some(newer)) if newer > owner.incarnation => {
                        self.taken_by.store(newer, Ordering::Relaxed);
                        self.metrics.set_lease_taken();
                        tracing::error!(%owner, newer, "another proxy registered under this proxy's name on the meta data source (two live proxies share proxy.number): this proxy refuses distributed transactions until it is restarted with its own number");
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%owner, error = %e, "cannot read the XA lease's holder");
                        return;
                    }
                }
                tracing::warn!(%owner, "XA lease expired before renewal; registering a new incarnation");
                match self.log.register(&self.name, self.lease).await {
                    Ok(new) => {
                        *self.owner.lock().unwrap_or_else(PoisonError::into_inner) = new;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot register a new XA incarnation"),
                }
            }
            Err(e) => tracing::warn!(%owner, error = %e, "cannot renew the XA lease"),
        }
    }
}

/// A proxy's coordinator of distributed transactions. Dropping it stops the heartbeat
/// without releasing the lease (like a crash: the lease expires);
/// [`Coordinator::shutdown`] releases it.
pub struct Coordinator {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

impl Coordinator {
    /// Opens the decision log on `meta` (creating its tables), registers a new incarnation of
    /// `options.owner` and starts renewing its lease. Must run on a tokio runtime.
    pub async fn start(
        meta: ConnectOptions,
        options: CoordinatorOptions,
    ) -> Result<Coordinator, XaError> {
        if options.heartbeat.is_zero() || options.heartbeat * 2 > options.lease {
            return Err(XaError::Usage(format!(
                "the XA lease ({:?}) must be at least twice the heartbeat ({:?}), or one late renewal loses it",
                options.lease, options.heartbeat
            )));
        }
        let log =
            DecisionLog::open(meta, options.log_connections.max(1), options.query_timeout).await?;
        let owner = log.register(&options.owner, options.lease).await?;
        tracing::info!(%owner, "XA coordinator registered");
        let (forget, forgotten) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            log,
            name: options.owner,
            lease: options.lease,
            owner: Mutex::new(owner),
            taken_by: AtomicU32::new(0),
            sequence: AtomicU64::new(0),
            in_flight: Mutex::new(HashSet::new()),
            forget,
            metrics: options.metrics,
            #[cfg(feature = "failpoints")]
            failpoints: options.failpoints,
        });
        let heartbeat = tokio::spawn({
            let shared = Arc::clone(&shared);
            let every = options.heartbeat;
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    shared.heartbeat().await;
                }
            }
        });
        let forgetter = tokio::spawn(forget_decisions(Arc::downgrade(&shared), forgotten));
        Ok(Coordinator {
            shared,
            tasks: [heartbeat, forgetter],
        })
    }

    /// A new distributed transaction, with no participant yet.
    pub fn begin(&self) -> Transaction {
        let begun_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let gtrid = Gtrid {
            owner: self.shared.owner(),
            sequence: self.shared.sequence.fetch_add(1, Ordering::Relaxed),
            begun_ms,
        };
        let text = gtrid.to_string();
        self.shared.lock_in_flight().insert(text.clone());
        Transaction {
            shared: Arc::clone(&self.shared),
            gtrid: text,
            branches: Vec::new(),
            phase: Phase::Active,
        }
    }

    /// This proxy's current incarnation.
    pub fn owner(&self) -> Owner {
        self.shared.owner()
    }

    /// The metrics this coordinator updates.
    pub fn metrics(&self) -> &XaMetrics {
        &self.shared.metrics
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Stops the heartbeat and ends the lease now, so other proxies may recover whatever
    /// this one left prepared without waiting for it to expire.
    pub async fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Err(e) = self.shared.log.release(&self.shared.owner()).await {
            tracing::warn!(error = %e, "cannot release the XA lease");
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Deletes decision rows of fully committed transactions, many per statement. A row left
/// behind (a crash, an error) is deleted by recovery later.
async fn forget_decisions(
    shared: std::sync::Weak<Shared>,
    mut forgotten: mpsc::UnboundedReceiver<String>,
) {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    while forgotten.recv_many(&mut batch, BATCH).await > 0 {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(e) = shared.log.forget(&batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "cannot delete XA decision rows; recovery will");
        }
        batch.clear();
    }
}

/// Where a transaction is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Statements run in the branches.
    Active,
    /// `XA END` + `XA PREPARE` sent.
    Preparing,
    /// Every branch prepared; the decision is being written.
    Deciding,
    /// The commit decision is durable; `XA COMMIT` sent.
    Committing,
    /// Every branch committed (or left to recovery with a commit decision).
    Committed,
    /// The branches are being rolled back.
    RollingBack,
    /// Every branch rolled back (or left to recovery without a commit decision).
    RolledBack,
}

/// A connection the caller lends for one data source's branch.
pub struct Participant<'c> {
    pub data_source: &'c str,
    pub conn: &'c mut BackendConn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    /// `XA START` run: statements may run in it.
    Active,
    /// `XA PREPARE` succeeded.
    Prepared,
    /// Committed or rolled back.
    Finished,
}

struct Branch {
    data_source: String,
    /// The xid as it follows `XA …` statements.
    xid: String,
    state: BranchState,
}

/// A branch about to start: its `XA START`, which the caller sends
/// ([`Transaction::branch_start`]).
#[derive(Debug)]
pub struct BranchStart {
    data_source: String,
    xid: String,
}

impl BranchStart {
    /// The data source whose branch this starts.
    pub fn data_source(&self) -> &str {
        &self.data_source
    }

    /// `XA START <xid>`.
    pub fn sql(&self) -> String {
        format!("XA START {}", self.xid)
    }
}

/// How a successful commit went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The global transaction id.
    pub gtrid: String,
    /// Data sources whose branch could not be committed now (connection lost): the commit
    /// decision is durable and recovery commits them.
    pub pending: Vec<String>,
}

/// One distributed transaction. Dropping it mid-protocol abandons it like a crash would.
pub struct Transaction {
    shared: Arc<Shared>,
    gtrid: String,
    branches: Vec<Branch>,
    phase: Phase,
}

impl Transaction {
    /// The global transaction id.
    pub fn gtrid(&self) -> &str {
        &self.gtrid
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether data source `data_source` has a branch in this transaction.
    pub fn is_participant(&self, data_source: &str) -> bool {
        self.branches.iter().any(|b| b.data_source == data_source)
    }

    /// Opens the branch of data source `data_source` on `conn` (`XA START`); statements of
    /// the transaction on that data source then run on `conn`.
    pub async fn enlist(&mut self, participant: Participant<'_>) -> Result<(), XaError> {
        let start = self.branch_start(participant.data_source)?;
        participant
            .conn
            .query(&start.sql())
            .await
            .map_err(|e| XaError::Participant {
                data_source: participant.data_source.to_owned(),
                reason: format!("XA START failed: {e}"),
            })?;
        self.started(start);
        Ok(())
    }

    /// The `XA START` that opens data source `data_source`'s branch, for a caller that sends
    /// it itself, ahead of the branch's first statement in the same round trip; once the
    /// server answered it with OK, [`started`](Self::started) records the branch.
    pub fn branch_start(&self, data_source: &str) -> Result<BranchStart, XaError> {
        if let Some(taken) = self.shared.lease_taken() {
            return Err(taken);
        }
        if self.phase != Phase::Active || self.is_participant(data_source) {
            return Err(XaError::Usage(format!(
                "data source '{data_source}' cannot join transaction {} (phase {:?})",
                self.gtrid, self.phase
            )));
        }
        let gtrid = Gtrid::parse(&self.gtrid).expect("the coordinator made this gtrid");
        let xid = Xid::new(&gtrid, data_source).map_err(XaError::Usage)?.sql();
        Ok(BranchStart {
            data_source: data_source.to_owned(),
            xid,
        })
    }

    /// The server answered `start`'s `XA START` with OK: its data source is a participant.
    pub fn started(&mut self, start: BranchStart) {
        self.branches.push(Branch {
            data_source: start.data_source,
            xid: start.xid,
            state: BranchState::Active,
        });
    }

    /// Commits on every participant, atomically: one participant commits in one phase;
    /// several are prepared, the decision logged, then committed. `participants` lends the
    /// connection of every enlisted data source (in any order).
    pub async fn commit(
        mut self,
        participants: &mut [Participant<'_>],
    ) -> Result<Committed, XaError> {
        let mut conns = self.pair(participants)?;
        let result = match self.branches.len() {
            0 => Ok(self.committed(Vec::new())),
            1 => self.commit_one_phase(conns[0]).await,
            _ => self.commit_two_phase(&mut conns).await,
        };
        let label = match &result {
            Ok(_) if self.branches.len() < 2 => CommitResult::OnePhase,
            Ok(_) => CommitResult::Committed,
            Err(e) if e.rolled_back() => CommitResult::RolledBack,
            Err(_) => CommitResult::Unknown,
        };
        self.shared.metrics.commit(label);
        result
    }

    /// Rolls back every branch. On an error the caller closes the connections; whatever stays
    /// prepared is rolled back by recovery (no commit decision exists).
    pub async fn rollback(mut self, participants: &mut [Participant<'_>]) -> Result<(), XaError> {
        let mut conns = self.pair(participants)?;
        self.roll_back_branches(&mut conns).await
    }

    /// The lent connections in branch order; every branch must have exactly one.
    fn pair<'p>(
        &self,
        participants: &'p mut [Participant<'_>],
    ) -> Result<Vec<&'p mut BackendConn>, XaError> {
        let mut conns: Vec<Option<&'p mut BackendConn>> =
            self.branches.iter().map(|_| None).collect();
        for p in participants.iter_mut() {
            let at = self
                .branches
                .iter()
                .position(|b| b.data_source == p.data_source)
                .ok_or_else(|| {
                    XaError::Usage(format!(
                        "data source '{}' has no branch in transaction {}",
                        p.data_source, self.gtrid
                    ))
                })?;
            if conns[at].replace(&mut *p.conn).is_some() {
                return Err(XaError::Usage(format!(
                    "data source '{}' was lent twice",
                    p.data_source
                )));
            }
        }
        conns
            .into_iter()
            .zip(&self.branches)
            .map(|(c, b)| {
                c.ok_or_else(|| {
                    XaError::Usage(format!(
                        "no connection lent for data source '{}' of transaction {}",
                        b.data_source, self.gtrid
                    ))
                })
            })
            .collect()
    }

    fn committed(&mut self, pending: Vec<String>) -> Committed {
        self.phase = Phase::Committed;
        Committed {
            gtrid: self.gtrid.clone(),
            pending,
        }
    }

    /// One participant: `XA END` + `XA COMMIT … ONE PHASE` in one round trip.
    async fn commit_one_phase(&mut self, conn: &mut BackendConn) -> Result<Committed, XaError> {
        self.phase = Phase::Committing;
        let xid = self.branches[0].xid.clone();
        let commands = [vec![
            format!("XA END {xid}"),
            format!("XA COMMIT {xid} ONE PHASE"),
        ]];
        match exchange(&mut [&mut *conn], &commands)
            .await
            .pop()
            .expect("one answer per connection")
        {
            Ok(_) => {
                self.branches[0].state = BranchState::Finished;
                Ok(self.committed(Vec::new()))
            }
            Err(BackendError::Server { error, .. }) => {
                // The branch failed or was rolled back by the server; clear what is left of it.
                let _ = self.roll_back_branches(&mut [conn]).await;
                Err(XaError::PrepareFailed {
                    data_source: self.branches[0].data_source.clone(),
                    error,
                })
            }
            Err(e) => Err(XaError::OutcomeUnknown {
                reason: format!("the only participant's connection failed during COMMIT: {e}"),
            }),
        }
    }

    async fn commit_two_phase(
        &mut self,
        conns: &mut [&mut BackendConn],
    ) -> Result<Committed, XaError> {
        match self.prepare(conns).await {
            Ok(()) => {}
            Err(failure @ XaError::Failpoint(_)) => return Err(failure),
            Err(failure) => return Err(self.abort(conns, failure).await),
        }
        self.shared.hit(Failpoint::Prepared)?;
        match self.decide().await {
            Ok(()) => {}
            Err(failure) if failure.rolled_back() => return Err(self.abort(conns, failure).await),
            Err(failure) => return Err(failure),
        }
        self.shared.hit(Failpoint::Decided)?;
        let pending = self.commit_branches(conns).await?;
        if pending.is_empty() {
            self.shared.hit(Failpoint::Committed)?;
            // Deleted in the background: the client need not wait for it.
            let _ = self.shared.forget.send(self.gtrid.clone());
        } else {
            tracing::warn!(
                gtrid = self.gtrid,
                ?pending,
                "XA commit left to recovery on some participants"
            );
        }
        Ok(self.committed(pending))
    }

    /// Rolls every branch back after `failure`, which no commit decision can override any
    /// more: a branch this cannot reach is rolled back by its server (unprepared) or by
    /// recovery (prepared, no commit row), so `failure` is what the client learns.
    async fn abort(&mut self, conns: &mut [&mut BackendConn], failure: XaError) -> XaError {
        if let Err(e) = self.roll_back_branches(conns).await {
            tracing::warn!(gtrid = self.gtrid, error = %e, "XA rollback left to the servers and recovery");
        }
        failure
    }

    /// Phase 1: `XA END` + `XA PREPARE` on every branch, all sent before any answer is read.
    /// The first failure is returned (the caller rolls everything back).
    async fn prepare(&mut self, conns: &mut [&mut BackendConn]) -> Result<(), XaError> {
        self.phase = Phase::Preparing;
        let cut = if self.shared.armed(Failpoint::PrepareSome) {
            1
        } else {
            conns.len()
        };
        let statements: Vec<Vec<String>> = self.branches[..cut]
            .iter()
            .map(|b| vec![format!("XA END {}", b.xid), format!("XA PREPARE {}", b.xid)])
            .collect();
        let answers = exchange(&mut conns[..cut], &statements).await;
        let mut failure = None;
        for (branch, answer) in self.branches.iter_mut().zip(answers) {
            match answer {
                Ok(()) => branch.state = BranchState::Prepared,
                Err(e) => {
                    let error = match e {
                        BackendError::Server { error, .. } => error,
                        other => other.to_server_error(),
                    };
                    failure.get_or_insert(XaError::PrepareFailed {
                        data_source: branch.data_source.clone(),
                        error,
                    });
                }
            }
        }
        if cut < conns.len() {
            self.shared.hit(Failpoint::PrepareSome)?;
        }
        failure.map_or(Ok(()), Err)
    }

    /// Phase 2: the commit decision, durable in the meta data source. An error that
    /// [`XaError::rolled_back`] means no commit decision exists (the caller rolls back);
    /// any other leaves the outcome to recovery.
    async fn decide(&mut self) -> Result<(), XaError> {
        self.phase = Phase::Deciding;
        let owner = Gtrid::parse(&self.gtrid)
            .expect("the coordinator made this gtrid")
            .owner;
        let participants: Vec<&str> = self
            .branches
            .iter()
            .map(|b| b.data_source.as_str())
            .collect();
        match self
            .shared
            .log
            .decide_commit(&self.gtrid, &owner, &participants)
            .await
        {
            Ok(Decision::Commit) => Ok(()),
            Ok(Decision::Refused(reason)) => Err(XaError::Aborted { reason }),
            Err(WriteError::NotSent(reason)) => Err(XaError::LogUnavailable { reason }),
            Err(WriteError::Server(error)) => Err(XaError::LogUnavailable {
                reason: error.to_string(),
            }),
            Err(WriteError::Unknown(reason)) => {
                // The write may or may not have happened: fix the outcome with a rollback
                // row unless the commit row is there, and read it back.
                tracing::warn!(
                    gtrid = self.gtrid,
                    reason,
                    "XA decision write in doubt; settling it"
                );
                match self
                    .shared
                    .log
                    .settle(&self.gtrid, crate::log::Claim::Abandoned)
                    .await
                {
                    Ok(Some(Outcome::Commit)) => Ok(()),
                    Ok(_) => Err(XaError::Aborted {
                        reason: format!("its decision could not be written ({reason})"),
                    }),
                    Err(e) => Err(XaError::OutcomeUnknown {
                        reason: e.to_string(),
                    }),
                }
            }
        }
    }

    /// Phase 3: `XA COMMIT` on every branch, all sent before any answer is read. Returns the
    /// data sources left for recovery.
    async fn commit_branches(
        &mut self,
        conns: &mut [&mut BackendConn],
    ) -> Result<Vec<String>, XaError> {
        self.phase = Phase::Committing;
        let cut = if self.shared.armed(Failpoint::CommitSome) {
            1
        } else {
            conns.len()
        };
        let statements: Vec<Vec<String>> = self.branches[..cut]
            .iter()
            .map(|b| vec![format!("XA COMMIT {}", b.xid)])
            .collect();
        let answers = exchange(&mut conns[..cut], &statements).await;
        if cut < conns.len() {
            self.shared.hit(Failpoint::CommitSome)?;
        }
        let mut pending = Vec::new();
        for ((branch, conn), answer) in self.branches.iter_mut().zip(conns.iter_mut()).zip(answers)
        {
            let done = match answer {
                Ok(()) => true,
                // MariaDB's answer for a branch that changed nothing.
                Err(BackendError::Server { error, .. }) if XA_RB.contains(&error.code) => {
                    tracing::warn!(gtrid = self.gtrid, data_source = branch.data_source, %error, "XA COMMIT answered rolled back (a branch without changes)");
                    true
                }
                Err(BackendError::Server { error, .. }) if error.code == UNKNOWN_XID => {
                    // Someone else (recovery) may have committed it, or the server may not
                    // let this connection see it: only XA RECOVER can tell.
                    matches!(is_prepared(conn, &branch.xid).await, Ok(false))
                }
                Err(e) => {
                    tracing::warn!(gtrid = self.gtrid, data_source = branch.data_source, error = %e, "XA COMMIT failed");
                    false
                }
            };
            if done {
                branch.state = BranchState::Finished;
            } else {
                pending.push(branch.data_source.clone());
            }
        }
        Ok(pending)
    }

    /// Rolls back every unfinished branch: `XA END` (its error ignored: the branch may be
    /// ended already) and `XA ROLLBACK` sent as two commands, to every participant before
    /// any answer is read.
    async fn roll_back_branches(&mut self, conns: &mut [&mut BackendConn]) -> Result<(), XaError> {
        self.phase = Phase::RollingBack;
        let mut trouble = None;
        let mut sent = Vec::with_capacity(conns.len());
        for (branch, conn) in self.branches.iter().zip(conns.iter_mut()) {
            let mut commands = Vec::new();
            if branch.state == BranchState::Active {
                commands.push(format!("XA END {}", branch.xid));
            }
            if branch.state != BranchState::Finished {
                commands.push(format!("XA ROLLBACK {}", branch.xid));
            }
            match conn.send_queries(&commands).await {
                Ok(()) => sent.push(commands.len()),
                Err(e) => {
                    trouble.get_or_insert((branch.data_source.clone(), e.to_string()));
                    sent.push(0);
                }
            }
        }
        for ((branch, conn), sent) in self.branches.iter_mut().zip(conns.iter_mut()).zip(sent) {
            for i in 0..sent {
                let last = i + 1 == sent;
                match conn.read_query_result().await {
                    Ok(_) => {}
                    Err(BackendError::Server { .. }) if !last => {}
                    // Unknown xid: the server rolled the branch back already.
                    Err(BackendError::Server { error, .. })
                        if error.code == UNKNOWN_XID || XA_RB.contains(&error.code) => {}
                    Err(e) => {
                        trouble.get_or_insert((branch.data_source.clone(), e.to_string()));
                        break;
                    }
                }
                if last {
                    branch.state = BranchState::Finished;
                }
            }
        }
        self.phase = Phase::RolledBack;
        match trouble {
            None => Ok(()),
            Some((data_source, reason)) => Err(XaError::Participant {
                data_source,
                reason: format!(
                    "XA ROLLBACK failed ({reason}); recovery rolls back what stays prepared"
                ),
            }),
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !matches!(self.phase, Phase::Committed | Phase::RolledBack) && !self.branches.is_empty()
        {
            tracing::debug!(gtrid = self.gtrid, phase = ?self.phase, "XA transaction abandoned");
        }
        self.shared.lock_in_flight().remove(&self.gtrid);
    }
}

/// Sends the commands `commands[i]` (one COM_QUERY each, not a multi-statement text: the
/// connection may not allow those) on `conns[i]` for every `i`, each connection's in one
/// write, then reads every answer: the servers work on them at the same time. A connection's
/// result is its first error.
async fn exchange(
    conns: &mut [&mut BackendConn],
    commands: &[Vec<String>],
) -> Vec<Result<(), BackendError>> {
    let mut sent = Vec::with_capacity(conns.len());
    for (conn, sqls) in conns.iter_mut().zip(commands) {
        sent.push(match conn.send_queries(sqls).await {
            Ok(()) => (sqls.len(), Ok(())),
            Err(e) => (0, Err(e)),
        });
    }
    let mut answers = Vec::with_capacity(conns.len());
    for (conn, (count, mut result)) in conns.iter_mut().zip(sent) {
        for _ in 0..count {
            match conn.read_query_result().await {
                Ok(_) => {}
                Err(e @ BackendError::Server { .. }) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        answers.push(result);
    }
    answers
}

/// Whether the server of `conn` lists the branch `xid` (its SQL form) as prepared.
pub(crate) async fn is_prepared(conn: &mut BackendConn, xid: &str) -> Result<bool, BackendError> {
    Ok(recover(conn)
        .await?
        .iter()
        .any(|listed| listed.sql() == xid))
}

/// The dbmesh branches the server of `conn` holds prepared (`XA RECOVER`).
pub(crate) async fn recover(conn: &mut BackendConn) -> Result<Vec<Xid>, BackendError> {
    let result = conn.query("XA RECOVER").await?;
    Ok((0..result.rows.len())
        .filter_map(|row| {
            Xid::from_recover_row(
                result.value(row, "formatID")?,
                result.value(row, "gtrid_length")?,
                result.value(row, "bqual_length")?,
                result.value(row, "data")?,
            )
        })
        .collect())
}
