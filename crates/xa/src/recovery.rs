//! Recovery: finishing the transactions whose coordinator is gone.
//!
//! A round ([`Recoverer::run_once`]) runs `XA RECOVER` on every server of the data sources
//! (once per server: several data sources may share one, and XA is per server) and, for each
//! dbmesh transaction found prepared:
//!
//! - leaves it alone if its owner is alive: the lease is valid, or it is this proxy's own
//!   transaction still being committed;
//! - otherwise fixes its outcome in the decision log ([`crate::log`]: commit if the owner
//!   logged a commit, else a rollback row that the owner can no longer override), and applies
//!   it to every prepared branch with `XA COMMIT` / `XA ROLLBACK`. "Unknown xid" from those
//!   is never taken as done without `XA RECOVER` confirming the branch is gone (a branch still
//!   attached to a live connection answers "unknown xid" while prepared). Any number of
//!   recoverers may run at once: they all read the same outcome, and whichever resolves a
//!   branch first, the others see it gone.
//!
//! Then, if every server answered, decision rows read before the scan whose transaction has
//! no prepared branch anywhere are deleted: every participant is resolved.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backend::{BackendConn, BackendError, ConnectOptions};
use tokio::task::JoinHandle;

use crate::coordinator::{is_prepared, recover, Shared, UNKNOWN_XID, XA_RB};
use crate::failpoint::Failpoint;
use crate::log::{Claim, Outcome};
use crate::xid::{Gtrid, Xid};
use crate::{Coordinator, XaError};

/// What one recovery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Branches this round committed.
    pub committed: usize,
    /// Branches this round rolled back.
    pub rolled_back: usize,
    /// Branches left prepared: their owner is alive, or resolving them failed this round.
    pub in_doubt: usize,
    /// Servers that could not be scanned (`address: reason`).
    pub unreachable: Vec<String>,
    /// Decision rows deleted.
    pub forgotten: usize,
}

/// Resolves the prepared branches of gone coordinators, on behalf of one coordinator.
pub struct Recoverer {
    shared: Arc<Shared>,
    /// One data source per server address.
    servers: Vec<ConnectOptions>,
    /// Decision rows younger than this are kept even when no branch is prepared.
    forget_after: Duration,
}

impl Recoverer {
    /// A recoverer of `coordinator` over the servers of `data_sources` (each server once).
    /// Decision rows are kept at least `forget_after` (a decision write that timed out may
    /// still arrive at the server for a while).
    pub fn new(
        coordinator: &Coordinator,
        data_sources: impl IntoIterator<Item = ConnectOptions>,
        forget_after: Duration,
    ) -> Recoverer {
        let mut seen = HashSet::new();
        let servers = data_sources
            .into_iter()
            .filter(|ds| seen.insert(ds.address.clone()))
            .collect();
        Recoverer {
            shared: coordinator.shared(),
            servers,
            forget_after,
        }
    }

    /// Runs [`Recoverer::run_once`] every `every`, forever (until the handle is aborted).
    pub fn spawn(self, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                match self.run_once().await {
                    Ok(report) if report != RecoveryReport::default() => {
                        tracing::info!(?report, "XA recovery round")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "XA recovery round failed"),
                }
                tokio::time::sleep(every).await;
            }
        })
    }

    /// One recovery round over every server.
    pub async fn run_once(&self) -> Result<RecoveryReport, XaError> {
        let mut report = RecoveryReport::default();
        let decided_before = self.shared.log.decisions(self.forget_after).await?;
        let mut scanned: Vec<(&ConnectOptions, BackendConn, Vec<Xid>)> = Vec::new();
        for server in &self.servers {
            match scan(server).await {
                Ok((conn, xids)) => scanned.push((server, conn, xids)),
                Err(e) => report.unreachable.push(format!("{}: {e}", server.address)),
            }
        }
        let prepared_gtrids: HashSet<String> = scanned
            .iter()
            .flat_map(|(_, _, xids)| xids.iter().map(|x| x.gtrid.clone()))
            .collect();
        // Begin times of the branches left prepared, for the in-doubt metrics.
        let mut left_begun_ms = Vec::new();

        // Branches by transaction: (server index, xid).
        let mut by_gtrid: BTreeMap<String, Vec<(usize, Xid)>> = BTreeMap::new();
        for (at, (_, _, xids)) in scanned.iter().enumerate() {
            for xid in xids {
                by_gtrid
                    .entry(xid.gtrid.clone())
                    .or_default()
                    .push((at, xid.clone()));
            }
        }
        for (gtrid, branches) in by_gtrid {
            let Some(parsed) = Gtrid::parse(&gtrid) else {
                continue;
            };
            let mine = parsed.owner == self.shared.owner();
            if mine && self.shared.is_in_flight(&gtrid) {
                report.in_doubt += branches.len();
                left_begun_ms.extend(branches.iter().map(|_| parsed.begun_ms));
                continue;
            }
            let claim = if mine {
                Claim::Abandoned
            } else {
                Claim::OwnerGone(&parsed.owner)
            };
            let Some(outcome) = self.shared.log.settle(&gtrid, claim).await? else {
                report.in_doubt += branches.len();
                left_begun_ms.extend(branches.iter().map(|_| parsed.begun_ms));
                continue;
            };
            self.shared.hit(Failpoint::RecoveryDecided)?;
            tracing::info!(
                gtrid,
                ?outcome,
                branches = branches.len(),
                "XA recovery resolves a transaction"
            );
            for (i, (at, xid)) in branches.iter().enumerate() {
                let conn = &mut scanned[*at].1;
                match resolve(conn, xid, outcome).await {
                    Ok(true) => {
                        self.shared.metrics.recovered_branch(outcome);
                        match outcome {
                            Outcome::Commit => report.committed += 1,
                            Outcome::Rollback => report.rolled_back += 1,
                        }
                    }
                    // Resolved by someone else meanwhile.
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%xid, error = %e, "XA recovery could not resolve a branch");
                        report.in_doubt += 1;
                        left_begun_ms.push(parsed.begun_ms);
                    }
                }
                if i == 0 {
                    self.shared.hit(Failpoint::RecoveryResolvedOne)?;
                }
            }
        }

        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let oldest_ms = left_begun_ms
            .iter()
            .map(|begun| now_ms.saturating_sub(*begun))
            .max()
            .unwrap_or(0);
        self.shared
            .metrics
            .set_in_doubt(report.in_doubt, oldest_ms / 1000);

        if report.unreachable.is_empty() {
            let done: Vec<String> = decided_before
                .into_iter()
                .filter(|g| !prepared_gtrids.contains(g))
                .collect();
            self.shared.log.forget(&done).await?;
            report.forgotten = done.len();
        }
        Ok(report)
    }
}

/// Connects to `server` and lists its prepared dbmesh branches.
async fn scan(server: &ConnectOptions) -> Result<(BackendConn, Vec<Xid>), BackendError> {
    let mut conn = BackendConn::connect(server).await?;
    let xids = recover(&mut conn).await?;
    Ok((conn, xids))
}

/// Applies `outcome` to the prepared branch `xid`: `Ok(true)` if this call resolved it,
/// `Ok(false)` if it was already gone (confirmed by `XA RECOVER`).
async fn resolve(conn: &mut BackendConn, xid: &Xid, outcome: Outcome) -> Result<bool, XaError> {
    let verb = match outcome {
        Outcome::Commit => "COMMIT",
        Outcome::Rollback => "ROLLBACK",
    };
    let failed = |e: BackendError| XaError::Participant {
        data_source: xid.bqual.clone(),
        reason: format!("XA {verb} of {xid}: {e}"),
    };
    match conn.query(&format!("XA {verb} {}", xid.sql())).await {
        Ok(_) => Ok(true),
        // The branch is gone, rolled back: what MariaDB answers for a branch that changed
        // nothing, whether it is committed or rolled back.
        Err(BackendError::Server { error, .. }) if XA_RB.contains(&error.code) => {
            if outcome == Outcome::Commit {
                tracing::warn!(%xid, %error, "XA COMMIT answered rolled back (a branch without changes)");
            }
            Ok(true)
        }
        Err(BackendError::Server { error, .. }) if error.code == UNKNOWN_XID => {
            if is_prepared(conn, &xid.sql()).await.map_err(failed)? {
                // Still attached to a live connection somewhere: try again next round.
                Err(XaError::Participant {
                    data_source: xid.bqual.clone(),
                    reason: format!("{xid} is prepared but held by another connection"),
                })
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(failed(e)),
    }
}
