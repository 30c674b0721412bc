//! Faults on the network between the proxy and a backend: a link that is cut (every packet
//! dropped, so the server falls silent), a link that loses packets, and a link that adds 200 ms
//! to every answer. Clients of the other backend keep their latency, every statement of the
//! affected backend is answered (rows or a clean error) rather than left waiting, and nothing a
//! client was told is committed is lost.
//!
//! The cut and lossy links put server 1 in a network namespace of the test's own and drop its
//! packets with nftables there (`testkit::NetNs`; needs root, `ip` and `nft`, else the tests
//! skip and say why). This kernel has no `netem` qdisc, so the slow link is a relay on loopback
//! that holds each answer 200 ms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{acct_value as value, read_latency, Proxy};
use mysql_async::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest any statement may go unanswered while a link is broken: the rule file's read
/// timeout (1 s, so a silent server is noticed within 1-2 s) plus connect and handshake
/// timeouts (500 ms each), with a wide margin for a loaded machine.
const ANSWERED_WITHIN: Duration = Duration::from_secs(20);

/// ds_0, ds_1 on server 0 and ds_2, ds_3 on server 1; `acct` sharded by `id` mod 4, so id 0 is
/// on server 0 and id 2 on server 1. `tight`: timeouts short enough that a silent server is
/// noticed in a second or two (which a link 200 ms long would fail).
fn rules(servers: &[testkit::Backend], dbs: &[String], tight: bool) -> String {
    let mut rules = common::four_data_sources(servers, "bank", dbs);
    if tight {
        for i in 0..4 {
            rules += &format!(
                "[data_sources.ds_{i}.pool]\nread_timeout_ms = 1000\nconnect_timeout_ms = 500\nhandshake_timeout_ms = 500\n\n"
            );
        }
        rules += "[replication]\nhealth_check_interval_ms = 500\nhealth_check_timeout_ms = 500\n\n";
    } else {
        rules += "[replication]\nhealth_check_timeout_ms = 5000\n\n";
    }
    rules += "[tables.acct]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{0..3}\"\n";
    rules
}

fn create_tables(servers: &[testkit::Backend], dbs: &[String]) {
    for (i, db) in dbs.iter().enumerate() {
        servers[i / 2]
            .sql(&format!(
                "CREATE DATABASE IF NOT EXISTS `{db}`; USE `{db}`; \
                 CREATE TABLE acct (id BIGINT PRIMARY KEY, v BIGINT NOT NULL)"
            ))
            .unwrap();
    }
}

/// Server 0 on loopback, server 1 in a namespace of its own; `None` (with the reason printed)
/// where the machine cannot do that or the tests run against external servers.
struct Partitionable {
    // Dropped in this order: the proxy, the servers, then the namespace they ran in.
    proxy: Proxy,
    servers: Vec<testkit::Backend>,
    dbs: Vec<String>,
    netns: testkit::NetNs,
}

fn partitionable() -> Option<Partitionable> {
    if let Some(reason) = testkit::NetNs::unavailable() {
        println!("skipped: {reason}");
        return None;
    }
    if std::env::var_os(testkit::ENV_BACKENDS).is_some() {
        println!("skipped: the test starts its own server in a network namespace");
        return None;
    }
    let netns = testkit::NetNs::create().expect("a network namespace");
    let local = testkit::MariaDb::start().expect("a MariaDB server");
    let remote = testkit::MariaDb::builder()
        .in_netns(&netns)
        .start()
        .expect("a MariaDB server in the namespace");
    let servers = vec![
        testkit::Backend::managed(local),
        testkit::Backend::managed(remote),
    ];
    let prefix = testkit::unique_name("links");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    create_tables(&servers, &dbs);
    let proxy = Proxy::start(&rules(&servers, &dbs, true));
    Some(Partitionable {
        proxy,
        servers,
        dbs,
        netns,
    })
}

/// A statement's outcome must be rows/OK or a clean error (1105 naming a data source of server
/// 1, or the connection closed as for a crashed server): never a hang, never anything else.
fn assert_clean_failure(e: &mysql_async::Error) {
    let clean = match e {
        mysql_async::Error::Server(s) => {
            s.code == 1105 && (s.message.contains("ds_2") || s.message.contains("ds_3"))
        }
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => true,
        _ => false,
    };
    assert!(
        clean,
        "a statement of the broken link failed otherwise: {e}"
    );
}

/// Writes rows `first..first + n` (step 4, so all on ds_2, server 1) one per statement on one
/// connection, `pace` apart, each within [`ANSWERED_WITHIN`]; returns the ids the proxy acknowledged and
/// those whose outcome is unknown (the statement was cut by a timeout or a lost connection).
async fn write_rows(proxy: &Proxy, first: i64, n: i64, pace: Duration) -> (Vec<i64>, Vec<i64>) {
    let (mut acknowledged, mut unknown) = (Vec::new(), Vec::new());
    let mut conn = proxy.conn(Some("bank")).await;
    for k in 0..n {
        tokio::time::sleep(pace).await;
        let id = first + 4 * k;
        let insert = conn.query_drop(format!("INSERT INTO acct (id, v) VALUES ({id}, {id})"));
        match tokio::time::timeout(ANSWERED_WITHIN, insert).await {
            Err(_) => panic!("INSERT of row {id} unanswered after {ANSWERED_WITHIN:?}"),
            Ok(Ok(())) => acknowledged.push(id),
            Ok(Err(e)) => {
                assert_clean_failure(&e);
                // Refused because the data source was down: never sent. Anything else may or
                // may not have committed, as with MySQL's 2013.
                if !e.to_string().contains("is down") {
                    unknown.push(id);
                }
                conn = proxy.conn(Some("bank")).await;
            }
        }
    }
    (acknowledged, unknown)
}

/// Once server 1 serves again through the proxy: every acknowledged row is on its shard, and no
/// row is there that the client was told failed without doubt.
async fn assert_nothing_lost(
    proxy: &Proxy,
    server: &testkit::Backend,
    db: &str,
    ids: std::ops::Range<i64>,
    acknowledged: &[i64],
    unknown: &[i64],
) {
    common::wait_for_answer(
        proxy,
        "SELECT v FROM acct WHERE id = 2",
        Some(2),
        Duration::from_secs(30),
    )
    .await;
    let stored = server
        .sql(&format!(
            "SELECT id FROM `{db}`.acct WHERE id >= {} AND id < {} ORDER BY id",
            ids.start, ids.end
        ))
        .unwrap();
    let stored: Vec<i64> = stored.lines().map(|l| l.trim().parse().unwrap()).collect();
    for id in acknowledged {
        assert!(stored.contains(id), "row {id} was acknowledged and is lost");
    }
    for id in &stored {
        assert!(
            acknowledged.contains(id) || unknown.contains(id),
            "row {id} is stored although its INSERT was refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_fails_its_statements_spares_the_others_and_loses_nothing() {
    let Some(mut c) = partitionable() else { return };
    let mut healthy = c.proxy.conn(Some("bank")).await;
    healthy
        .query_drop("INSERT INTO acct (id, v) VALUES (0, 100), (2, 2)")
        .await
        .unwrap();
    let (acknowledged_before, unknown_before) =
        write_rows(&c.proxy, 1002, 20, Duration::ZERO).await;
    assert_eq!(acknowledged_before.len(), 20, "the link is whole");
    let (before, _) = read_latency(&mut healthy, 0, 100, 20).await;

    c.netns.drop_packets(100).unwrap();
    let cut_at = Instant::now();
    // A read and writes on the cut server, each answered.
    let reader = {
        let proxy_conn = c.proxy.conn(Some("bank")).await;
        tokio::spawn(async move {
            let mut conn = proxy_conn;
            let started = Instant::now();
            let r = tokio::time::timeout(ANSWERED_WITHIN, value(&mut conn, 2)).await;
            (r, started.elapsed())
        })
    };
    let (median, slowest) = read_latency(&mut healthy, 0, 100, 60).await;
    let (read, read_took) = reader.await.unwrap();
    let read = read.unwrap_or_else(|_| {
        panic!("a read of the cut server unanswered after {ANSWERED_WITHIN:?}")
    });
    let read_error = read.expect_err("a read of a cut-off server cannot succeed");
    assert_clean_failure(&read_error);
    assert!(
        !read_error.to_string().contains(c.servers[1].host()),
        "the client is told the data source, never the server's address: {read_error}"
    );
    println!("a read of the cut server failed after {read_took:?}: {read_error}");
    let started = Instant::now();
    let (acknowledged_during, unknown_during) = write_rows(&c.proxy, 2002, 5, Duration::ZERO).await;
    println!(
        "5 writes to the cut server answered in {:?}: {} acknowledged",
        started.elapsed(),
        acknowledged_during.len()
    );
    assert!(
        acknowledged_during.is_empty(),
        "a write to a cut-off server cannot succeed"
    );
    println!(
        "reads of server 0: median {before:?} before; median {median:?}, slowest {slowest:?} while server 1 was cut off"
    );
    assert!(
        median <= before + Duration::from_millis(200),
        "reads of the healthy server slowed from {before:?} to a median of {median:?}"
    );
    assert!(
        slowest <= Duration::from_secs(3),
        "a read of the healthy server took {slowest:?}"
    );

    c.netns.heal().unwrap();
    println!("the link was cut for {:?}", cut_at.elapsed());
    let mut acknowledged = acknowledged_before;
    acknowledged.extend(acknowledged_during);
    let mut unknown = unknown_before;
    unknown.extend(unknown_during);
    assert_nothing_lost(
        &c.proxy,
        &c.servers[1],
        &c.dbs[2],
        1000..3000,
        &acknowledged,
        &unknown,
    )
    .await;
    c.proxy.assert_alive();
    healthy.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_link_answers_every_statement_and_loses_nothing() {
    let Some(mut c) = partitionable() else { return };
    let mut healthy = c.proxy.conn(Some("bank")).await;
    healthy
        .query_drop("INSERT INTO acct (id, v) VALUES (0, 100), (2, 2)")
        .await
        .unwrap();
    // One packet in five lost each way: TCP retransmits, so most statements succeed late; a
    // statement that meets a long silence fails, and the data source is out until a health
    // check passes (the writes are paced over several checks).
    c.netns.drop_packets(20).unwrap();
    let started = Instant::now();
    let (acknowledged, unknown) = write_rows(&c.proxy, 1002, 40, Duration::from_millis(100)).await;
    let took = started.elapsed();
    let (median, slowest) = read_latency(&mut healthy, 0, 100, 20).await;
    c.netns.heal().unwrap();
    println!(
        "40 writes over a link losing 20% of packets: {} acknowledged, {} of unknown outcome, in {took:?}; \
         server 0 reads meanwhile: median {median:?}, slowest {slowest:?}",
        acknowledged.len(),
        unknown.len()
    );
    assert!(
        !acknowledged.is_empty(),
        "a lossy link still carries statements"
    );
    assert_nothing_lost(
        &c.proxy,
        &c.servers[1],
        &c.dbs[2],
        1000..2000,
        &acknowledged,
        &unknown,
    )
    .await;
    c.proxy.assert_alive();
    healthy.disconnect().await.unwrap();
}

/// Relays connections from a loopback port to `target`, holding every chunk of the server's
/// answers `delay` before passing it on: a link 200 ms long one way.
async fn slow_relay(target: String, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            tokio::time::sleep(delay).await;
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = client_write.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_slowed_to_200ms_slows_only_its_own_statements() {
    let servers = testkit::backends(2).expect("two MariaDB servers");
    if let Some(reason) = testkit::skip_reason(&servers) {
        println!("{reason}");
        return;
    }
    let prefix = testkit::unique_name("slowlink");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    create_tables(&servers, &dbs);
    let relay = slow_relay(servers[1].address(), Duration::from_millis(200)).await;
    let relayed =
        testkit::Backend::external("127.0.0.1", relay, servers[1].user(), servers[1].password());
    let via_relay = [
        testkit::Backend::external(
            servers[0].host(),
            servers[0].port(),
            servers[0].user(),
            servers[0].password(),
        ),
        relayed,
    ];
    let mut proxy = Proxy::start(&rules(&via_relay, &dbs, false));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("INSERT INTO acct (id, v) VALUES (0, 100), (2, 200)")
        .await
        .unwrap();
    let (fast_median, fast_slowest) = read_latency(&mut conn, 0, 100, 20).await;
    let (slow_median, slow_slowest) = read_latency(&mut conn, 2, 200, 20).await;
    // Interleaved: a slow shard's statement does not slow the next one of a fast shard.
    let (mixed_median, _) = read_latency(&mut conn, 0, 100, 20).await;
    println!(
        "reads over the direct link: median {fast_median:?} (slowest {fast_slowest:?}); \
         over the 200 ms link: median {slow_median:?} (slowest {slow_slowest:?}); direct again: {mixed_median:?}"
    );
    assert!(slow_median >= Duration::from_millis(200), "{slow_median:?}");
    assert!(
        slow_slowest < Duration::from_secs(5),
        "a read over a 200 ms link took {slow_slowest:?}"
    );
    assert!(
        fast_median < Duration::from_millis(200),
        "reads of the direct server took a median of {fast_median:?}"
    );
    assert!(
        mixed_median < Duration::from_millis(200),
        "after reads of the slow server, reads of the direct one took {mixed_median:?}"
    );
    // Writes over the slow link commit, and a transaction across both shards too.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("UPDATE acct SET v = v - 1 WHERE id = 0")
        .await
        .unwrap();
    conn.query_drop("UPDATE acct SET v = v + 1 WHERE id = 2")
        .await
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    let sum: i64 = conn
        .query_first("SELECT SUM(v) FROM acct")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sum, 300);
    assert_eq!(value(&mut conn, 2).await.unwrap(), Some(201));
    proxy.assert_alive();
    conn.disconnect().await.unwrap();
    for (i, db) in dbs.iter().enumerate() {
        let _ = servers[i / 2].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
    }
}
