//! The write pause of a cutover under load (issue 18's targets: p99 ≤ 300 ms, max ≤ 500 ms at
//! 1,000 writes/s; an aborted cutover releases the waiting writes within 100 ms), measured on
//! the fence protocol driven by hand through `meta` as the rebalancer drives it: a binlog
//! follower keeps the destination caught up, the fence is set, every proxy acknowledges, the
//! follower reaches the source's position, the next map version is written, every proxy
//! acknowledges, the fence is released. Then a second fence is set and released (an abort).
//!
//! Prints the latencies; asserts only that nothing was lost, no client saw an error, and
//! generous bounds. `LOAD_RATE` (statements/s, default 1000) and `LOAD_SECONDS` (before and
//! after each step, default 2) make a longer run.

mod common;
mod load;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use binlog::GtidPosition;
use load::cluster::{Cluster, EVENTUALLY};
use load::{Load, LoadSpec, Outcome};

const ACCOUNTS: i64 = 400;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_and_abort_pause_writes_briefly_under_load() {
    let rate = env_or("LOAD_RATE", 1000) as u32;
    let phase = Duration::from_secs(env_or("LOAD_SECONDS", 2));
    let mut cluster = Cluster::start("pause", 2, ACCOUNTS).await;
    let mut follower = cluster.copy_and_follow(50..60).await;
    let running = Load::start(&LoadSpec {
        ports: cluster.ports(),
        clients: 16,
        statements_per_second: rate,
        accounts: ACCOUNTS,
        seed: 18,
    })
    .await;
    tokio::time::sleep(phase).await;

    // The cutover of slices 50-59 to ds_2.
    let fence_set = running.now();
    let epoch = cluster.fence("50-59", 0).await;
    let fence_acked = cluster.until_every_proxy(|r| r.fence_epoch >= epoch).await;
    let caught_up = Instant::now();
    let target: GtidPosition = binlog::check_source(&cluster.options("ds_1"))
        .await
        .expect("the source's position");
    follower
        .wait_for(&target, EVENTUALLY)
        .await
        .expect("the destination catches up");
    let caught_up = caught_up.elapsed();
    let slices: BTreeMap<String, String> =
        [("00-49", "ds_0"), ("50-59", "ds_2"), ("60-99", "ds_1")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    let map = meta::SliceMapVersion {
        version: 1,
        tables: load::TABLES
            .iter()
            .map(|t| (t.to_string(), slices.clone()))
            .collect(),
    };
    meta::slice_map::write(&mut cluster.meta, &map, "test", Some(epoch))
        .await
        .expect("write map version 1");
    let map_acked = cluster.until_every_proxy(|r| r.map_version >= 1).await;
    assert!(meta::fence::release(&mut cluster.meta, epoch)
        .await
        .expect("release"));
    let released = running.now();
    follower.stop().await.expect("the follower stops cleanly");
    tokio::time::sleep(phase).await;

    // An aborted cutover of slices 60-69: fence, acknowledgements, a wait, release.
    let abort_fence = running.now();
    let epoch = cluster.fence("60-69", 1).await;
    cluster.until_every_proxy(|r| r.fence_epoch >= epoch).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let decision = running.now();
    assert!(meta::fence::release(&mut cluster.meta, epoch)
        .await
        .expect("release"));
    let abort_released = running.now();
    tokio::time::sleep(phase).await;
    let outcome: Outcome = running.stop().await;

    let overall = outcome.latency(None);
    let cutover = outcome.latency(Some((fence_set, released)));
    let abort = outcome.latency(Some((abort_fence, abort_released)));
    let release_latency = outcome.released_after(decision);
    println!(
        "rate {rate}/s; cutover: fence acknowledged in {}, caught up in {}, map acknowledged in {}, \
         fence held {}",
        ms(fence_acked),
        ms(caught_up),
        ms(map_acked),
        ms(released - fence_set)
    );
    println!("overall: {overall}");
    println!("during the cutover: {cutover}");
    println!("during the aborted cutover: {abort}");
    println!(
        "the aborted cutover's waiting statements all answered {} after the decision",
        ms(release_latency)
    );
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(overall.count > 100, "{overall}");
    // The source keeps its copy of slices 50-59 (no cleanup here): drop it for the check.
    cluster.delete_from_source(50..60).await;
    let problems = outcome.check(&cluster.placement(50..60), ACCOUNTS).await;
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(cutover.max < Duration::from_secs(5), "{cutover}");
    assert!(release_latency < Duration::from_secs(5));
}
