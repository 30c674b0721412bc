//! The rebalancer's cutover driver (`rebalance::cutover`) against two real proxies under
//! continuous writes: it switches both proxies with a short pause and loses nothing; a proxy
//! that does not acknowledge the fence in time makes it abort, releasing the fence, and the
//! writes go on on the source.

mod common;
mod load;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use load::cluster::Cluster;
use load::{Load, LoadSpec};
use meta::cutovers::CutoverRecord;
use meta::moves::Phase;
use mysql_async::prelude::Queryable;
use rebalance::cutover::{CutOver, Cutover, CutoverMetrics, CutoverSettings};
use rebalance::{MovePlan, RebalanceError};

const ACCOUNTS: i64 = 200;

/// The plan moving slices 50-59 to ds_2, recorded as a move and marked verified (the copy
/// and the follower are the test's own: `Cluster::copy_and_follow`).
async fn plan(cluster: &mut Cluster) -> (MovePlan, u64) {
    let rules = rules::parse_str(&cluster.rules(1), Path::new("rules.toml")).expect("rules");
    let map = meta::slice_map::latest(&mut cluster.meta)
        .await
        .expect("the slice map");
    let plan = MovePlan::build(&rules, &map, "50-59".parse().expect("slices"), "ds_2", &[])
        .expect("a plan");
    let id = meta::moves::create(
        &mut cluster.meta,
        &plan.new_move(),
        "test",
        Duration::from_secs(60),
    )
    .await
    .expect("record the move");
    for (from, to) in [
        (Phase::Copying, Phase::CatchingUp),
        (Phase::CatchingUp, Phase::Verified),
    ] {
        meta::moves::set_phase(&mut cluster.meta, id, from, to)
            .await
            .expect("phase");
    }
    (plan, id)
}

async fn phase(cluster: &mut Cluster, id: u64) -> Phase {
    meta::moves::get(&mut cluster.meta, id)
        .await
        .expect("read the move")
        .expect("the move")
        .phase
}

/// Runs the driver's cutover of `plan` (move `id`) from ds_1 to ds_2.
async fn cut_over(
    cluster: &mut Cluster,
    plan: &MovePlan,
    id: u64,
    followers: &mut BTreeMap<String, binlog::FollowerHandle>,
    settings: &CutoverSettings,
) -> Result<CutOver, RebalanceError> {
    let sources = [("ds_1".to_string(), cluster.options("ds_1"))].into();
    let destination = cluster.options("ds_2");
    Cutover {
        meta: &mut cluster.meta,
        plan,
        move_id: id,
        sources: &sources,
        destination: &destination,
        followers,
        driver: "test",
        settings,
        metrics: &CutoverMetrics::new(),
    }
    .run()
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_switches_every_proxy_under_load_and_loses_nothing() {
    let mut cluster = Cluster::start("drive", 2, ACCOUNTS).await;
    let follower = cluster.copy_and_follow(50..60).await;
    let (plan, id) = plan(&mut cluster).await;
    let running = Load::start(&LoadSpec {
        ports: cluster.ports(),
        clients: 8,
        statements_per_second: 500,
        accounts: ACCOUNTS,
        seed: 7,
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut followers = BTreeMap::from([("ds_1".to_string(), follower)]);
    let began = running.now();
    let cut = cut_over(
        &mut cluster,
        &plan,
        id,
        &mut followers,
        &CutoverSettings::default(),
    )
    .await
    .expect("the cutover completes");
    let ended = running.now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = running.stop().await;
    println!("{cut:?}");
    println!(
        "during the cutover: {}",
        outcome.latency(Some((began, ended)))
    );
    assert_eq!(cut.map_version, 1);
    assert!(!cut.reverse_start.is_empty(), "{cut:?}");
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let proxies = meta::proxies::list(&mut cluster.meta)
        .await
        .expect("registry");
    assert!(
        proxies.iter().all(|p| p.live && p.map_version == 1),
        "{proxies:?}"
    );
    let fence = meta::fence::read(&mut cluster.meta).await.expect("fence");
    assert!(!fence.in_force(), "{fence:?}");
    let attempts = meta::cutovers::list(&mut cluster.meta, id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].result, "completed");
    assert_eq!(attempts[0].steps.len(), 6, "{attempts:?}");
    assert_eq!(attempts[0].reverse_start, cut.reverse_start.to_string());
    assert_eq!(phase(&mut cluster, id).await, Phase::CutOver);
    for (_, follower) in followers {
        follower.stop().await.expect("the follower ran cleanly");
    }
    cluster.delete_from_source(50..60).await;
    let problems = outcome.check(&cluster.placement(50..60), ACCOUNTS).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(cut.fence_held < Duration::from_secs(5), "{cut:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_does_not_acknowledge_in_time_aborts_the_cutover() {
    let mut cluster = Cluster::start("stuck", 2, ACCOUNTS).await;
    let follower = cluster.copy_and_follow(50..60).await;
    let (plan, id) = plan(&mut cluster).await;
    // A transaction on a moving slice, open through proxy 2 across the whole deadline.
    let mut open = cluster.proxies[1].conn(Some("bank")).await;
    open.query_drop("BEGIN").await.expect("begin");
    open.query_drop("UPDATE account SET balance = balance - 5 WHERE uid = 55")
        .await
        .expect("update in the transaction");
    let mut followers = BTreeMap::from([("ds_1".to_string(), follower)]);
    let settings = CutoverSettings {
        acknowledgements: Duration::from_secs(1),
        ..CutoverSettings::default()
    };
    let aborted = cut_over(&mut cluster, &plan, id, &mut followers, &settings).await;
    let error = aborted.expect_err("the cutover aborts");
    assert!(
        matches!(&error, RebalanceError::CutoverAborted(reason) if reason.contains("proxy 2")),
        "{error}"
    );
    // Writes resume on the source: the transaction commits there, a new write follows it.
    open.query_drop("COMMIT")
        .await
        .expect("commit on the source");
    let mut other = cluster.proxies[0].conn(Some("bank")).await;
    other
        .query_drop("UPDATE account SET balance = balance + 5 WHERE uid = 55")
        .await
        .expect("a write after the abort");
    let fence = meta::fence::read(&mut cluster.meta).await.expect("fence");
    assert!(!fence.in_force(), "{fence:?}");
    assert_eq!(
        meta::slice_map::latest_version(&mut cluster.meta)
            .await
            .expect("version"),
        0
    );
    let attempts = meta::cutovers::list(&mut cluster.meta, id)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].result, "aborted");
    assert!(
        attempts[0].reason.contains("fence_acknowledged"),
        "{attempts:?}"
    );
    assert_eq!(phase(&mut cluster, id).await, Phase::Verified);
    let balance: Option<i64> = common::direct(&cluster.source)
        .await
        .query_first(format!(
            "SELECT balance FROM {}.account WHERE uid = 55",
            cluster.dbs[1]
        ))
        .await
        .expect("read the source");
    assert_eq!(balance, Some(load::OPENING_BALANCE));
    // The destination follows the source still: a second attempt completes.
    let cut = cut_over(&mut cluster, &plan, id, &mut followers, &settings)
        .await
        .expect("the second attempt completes");
    assert_eq!(cut.map_version, 1);
    let moved: Option<i64> = common::direct(&cluster.destination)
        .await
        .query_first(format!(
            "SELECT balance FROM {}.account WHERE uid = 55",
            cluster.dbs[2]
        ))
        .await
        .expect("read the destination");
    assert_eq!(moved, Some(load::OPENING_BALANCE));
    assert_eq!(phase(&mut cluster, id).await, Phase::CutOver);
    for (_, follower) in followers {
        follower.stop().await.expect("the follower ran cleanly");
    }
}

/// A driver killed during a cutover leaves the move `cutting_over` with its fence: `recover`
/// releases the fence and settles the move by the map, before and after the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_left_by_a_dead_driver_is_settled_by_the_map() {
    let mut cluster = Cluster::start("dead", 1, 10).await;
    let (plan, id) = plan(&mut cluster).await;
    let next = plan.next_map.version;
    let switching = CutoverRecord {
        move_id: id,
        attempt: 0,
        epoch: 0,
        result: "switching".into(),
        steps: Vec::new(),
        fence_held: Duration::ZERO,
        reason: String::new(),
        reverse_start: "0-2-5".into(),
    };
    let dead_driver = format!("move {id} by a dead driver");
    for map_written in [false, true] {
        meta::moves::set_phase(&mut cluster.meta, id, Phase::Verified, Phase::CuttingOver)
            .await
            .expect("phase");
        let epoch = meta::fence::set(
            &mut cluster.meta,
            &plan.groups,
            0,
            Duration::from_secs(60),
            &dead_driver,
        )
        .await
        .expect("the dead driver's fence");
        meta::cutovers::record(&mut cluster.meta, &switching)
            .await
            .expect("record");
        if map_written {
            meta::slice_map::write(&mut cluster.meta, &plan.next_map, "dead", Some(epoch))
                .await
                .expect("the map");
        }
        let settled = rebalance::cutover::recover(&mut cluster.meta, id, next)
            .await
            .expect("recover");
        let fence = meta::fence::read(&mut cluster.meta).await.expect("fence");
        assert!(!fence.in_force(), "{fence:?}");
        let last = meta::cutovers::list(&mut cluster.meta, id)
            .await
            .expect("attempts")
            .pop()
            .expect("an attempt");
        if map_written {
            assert_eq!(settled, Phase::CutOver);
            assert_eq!(last.result, "completed");
            assert_eq!(last.reverse_start, "0-2-5");
        } else {
            assert_eq!(settled, Phase::Verified, "the sources keep the slices");
            assert_eq!(last.result, "aborted");
        }
    }
    // The proxy follows the map and the fence's release; a settled move is left as it is.
    cluster.until_every_proxy(|r| r.map_version == next).await;
    assert_eq!(
        rebalance::cutover::recover(&mut cluster.meta, id, next)
            .await
            .expect("recover"),
        Phase::CutOver
    );
}
