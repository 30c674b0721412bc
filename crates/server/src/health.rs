//! The backend health checker: every `replication.health_check_interval_ms` it checks every
//! server of the current rules at once (a ping; for replicas their replication state), so a
//! dead server is taken out within one interval plus one check timeout even when no session
//! uses it, and put back by the first check it passes. After each round it reads the primaries
//! recorded in the meta data source, so this proxy follows another's switch within an interval.

use std::sync::Arc;
use std::time::Duration;

use crate::Context;

/// One round: checks every primary and replica concurrently and waits for all.
pub async fn check_backends(ctx: &Context) {
    let snapshot = ctx.snapshot.load_full();
    let timeout = Duration::from_millis(snapshot.rules.replication.health_check_timeout_ms);
    let topology = snapshot.rules.replication.follow_topology;
    let mut checks = tokio::task::JoinSet::new();
    for cluster in snapshot.clusters.values() {
        for (server, replica) in cluster.servers() {
            let server = server.clone();
            checks.spawn(async move { server.check(replica, topology, timeout).await });
        }
    }
    checks.join_all().await;
}

/// Checks in the background, forever, at the interval of the rules in force.
pub fn spawn_health_checks(ctx: Arc<Context>) {
    tokio::spawn(async move {
        loop {
            check_backends(&ctx).await;
            ctx.follow_primaries().await;
            ctx.follow_topology().await;
            let interval = ctx
                .snapshot
                .load()
                .rules
                .replication
                .health_check_interval_ms;
            tokio::time::sleep(Duration::from_millis(interval)).await;
        }
    });
}

/// What `/health` reports: servers out of service. A down or unconfirmed primary makes the
/// proxy unhealthy (its writes fail); a down or lagging replica only degrades it (reads go
/// elsewhere), as does one serving reads without its primary (its data gets older).
#[derive(Debug, Default)]
pub struct Verdict {
    pub primaries_down: Vec<String>,
    pub replicas_out: Vec<String>,
    /// Data sources whose writes stop: more than one writable server (`follow_topology`).
    pub split_brains: Vec<String>,
    /// Data sources whose primary gets no statements: the recorded primaries are unreadable
    /// since the proxy started (it may not be the primary any more).
    pub primaries_unconfirmed: Vec<String>,
}

pub fn verdict(ctx: &Context) -> Verdict {
    let snapshot = ctx.snapshot.load();
    let max_lag = snapshot.rules.replication.max_replica_lag_secs;
    let mut verdict = Verdict::default();
    for cluster in snapshot.clusters.values() {
        if cluster.primary().is_split_brain() {
            verdict.split_brains.push(format!(
                "data source '{}': more than one writable server (split brain), writes stopped",
                cluster.name()
            ));
        }
        if cluster.primary().is_unconfirmed() {
            verdict.primaries_unconfirmed.push(format!(
                "data source '{}': primary {} not confirmed: the primaries recorded in the meta \
                 data source have been unreadable since start, statements to it stopped",
                cluster.name(),
                cluster.primary().address()
            ));
        }
        for (server, replica) in cluster.servers() {
            let stats = server.stats();
            let name = cluster.name();
            let address = server.address();
            if !replica {
                if !stats.up {
                    verdict
                        .primaries_down
                        .push(format!("data source '{name}': primary {address} is down"));
                }
            } else if !stats.up {
                verdict
                    .replicas_out
                    .push(format!("data source '{name}': replica {address} is down"));
            } else if let Some(stale) = stats.stale_secs {
                verdict.replicas_out.push(format!(
                    "data source '{name}': replica {address} lost its primary, its data is {stale} s old"
                ));
            } else if !stats.replicating {
                verdict.replicas_out.push(format!(
                    "data source '{name}': replica {address} is not replicating"
                ));
            } else if let Some(lag) = stats.lag_secs.filter(|&lag| lag > max_lag) {
                verdict.replicas_out.push(format!(
                    "data source '{name}': replica {address} lags {lag} s (max {max_lag} s)"
                ));
            }
        }
    }
    verdict
}

/// One line per data source for `/health`: its primary in force and the switch that put it
/// there.
pub fn primaries(ctx: &Context) -> Vec<String> {
    ctx.primaries()
        .into_iter()
        .map(|(name, address, record)| match record {
            Some(r) => format!(
                "data source '{name}': writes to {address}, epoch {}, switched by {} at {}",
                r.epoch,
                r.set_by,
                r.set_at
                    .as_deref()
                    .unwrap_or("(not recorded: no meta data source)")
            ),
            None => format!(
                "data source '{name}': writes to {address}, epoch 0 (the rule file's primary)"
            ),
        })
        .collect()
}
