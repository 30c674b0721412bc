//! Read/write splitting and backend high availability against real MariaDB GTID replication
//! (testkit's `ReplicaSet`): reads spread over replicas by weight, writes only on primaries,
//! read-your-writes, lagging or stopped replicas out of reads, a replica killed under sysbench
//! load, and the admin's primary switch. The proxy logs in as `testkit::APP_USER`, which the
//! replicas' `read_only` refuses writes, so a write sent to a replica would fail loudly.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sysbench, Proxy, PASSWORD, USER};
use mysql_async::prelude::*;
use testkit::replication::{ReplicaSet, APP_USER};
use testkit::MariaDb;

/// Statements per server, from the proxy's `dbmesh_backend_queries_total`, by address.
fn queries_by_server(proxy: &Proxy) -> BTreeMap<String, u64> {
    metric_by_server(proxy, "dbmesh_backend_queries_total")
}

fn metric_by_server(proxy: &Proxy, name: &str) -> BTreeMap<String, u64> {
    let (_, metrics) = proxy.http("GET", "/metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let address = l.split("address=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((address.to_string(), value as u64))
        })
        .collect()
}

/// How many statements each server got between two readings.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, server: &MariaDb) -> u64 {
    let key = server.address();
    after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
}

/// A server's global status counter (e.g. `Com_select`), read directly.
fn status(server: &MariaDb, name: &str) -> u64 {
    server
        .sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .expect("SHOW GLOBAL STATUS")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("status {name}"))
}

fn data_source(name: &str, set: &ReplicaSet, db: &str, weights: &[u32]) -> String {
    let mut text = format!(
        "[data_sources.{name}]\naddress = \"{}\"\nuser = \"{APP_USER}\"\ndatabase = \"{db}\"\n",
        set.primary().address()
    );
    for (i, weight) in weights.iter().enumerate() {
        text += &format!(
            "[[data_sources.{name}.replicas]]\naddress = \"{}\"\nweight = {weight}\n",
            set.replica(i).address()
        );
    }
    text
}

const HEAD: &str = "[proxy]\ncreate_databases = true\n\n\
    [replication]\nhealth_check_interval_ms = 200\nhealth_check_timeout_ms = 500\nmax_replica_lag_secs = 5\n\n";

/// Rules for logical schema `schema` on one data source `main`: `set`'s primary, with its
/// replicas at `weights` (fewer weights than replicas leaves the rest out).
fn one_source_rules(schema: &str, set: &ReplicaSet, db: &str, weights: &[u32]) -> String {
    format!(
        "{HEAD}{}[schema]\nname = \"{schema}\"\ndefault_data_source = \"main\"\n\n{}",
        users(),
        data_source("main", set, db, weights)
    )
}

fn users() -> String {
    format!("[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n")
}

/// Waits until `/health` says every server is in service.
fn wait_all_in_service(proxy: &Proxy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = proxy.http("GET", "/health");
        if code == 200 && body.lines().next() == Some("ok") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "servers never all in service: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/health` mentions `text` (a server taken out), returning how long it took.
fn wait_health_mentions(proxy: &Proxy, text: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (_, body) = proxy.http("GET", "/health");
        if body.contains(text) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "health never mentioned {text:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn start_sets(sets: usize, replicas: usize) -> Option<Vec<ReplicaSet>> {
    match ReplicaSet::start_many(sets, replicas) {
        Ok(s) => Some(s),
        Err(e) if e.is_unsupported() => {
            eprintln!("skipped: {e}");
            None
        }
        Err(e) => panic!("replica sets: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_by_weight_and_writes_to_the_primary() {
    let Some(mut sets) = start_sets(1, 2) else {
        return;
    };
    let set = sets.remove(0);
    let db = testkit::unique_name("rw");
    let proxy = Proxy::start(&one_source_rules("bank", &set, &db, &[1, 3]));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    for id in 0..20 {
        conn.exec_drop("INSERT INTO t VALUES (?, 0)", (id,))
            .await
            .unwrap();
    }
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    set.wait_caught_up(1, Duration::from_secs(10)).unwrap();
    wait_all_in_service(&proxy);

    // Reads spread 1:3 over the replicas; the primary serves none of them.
    let selects_on_primary = status(set.primary(), "Com_select");
    let before = queries_by_server(&proxy);
    for i in 0..400 {
        let n: i64 = conn
            .query_first(format!("SELECT COUNT(*) FROM t WHERE id >= {}", i % 7))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 20 - i64::from(i % 7));
    }
    let after = queries_by_server(&proxy);
    let (r0, r1) = (
        delta(&before, &after, set.replica(0)),
        delta(&before, &after, set.replica(1)),
    );
    eprintln!("400 reads: replica 0 (weight 1) {r0}, replica 1 (weight 3) {r1}");
    assert_eq!(r0 + r1, 400);
    assert!(
        (80..=120).contains(&r0),
        "replica 0 got {r0} of 400: {}",
        proxy.http("GET", "/metrics").1
    );
    assert_eq!(delta(&before, &after, set.primary()), 0);
    assert_eq!(status(set.primary(), "Com_select"), selects_on_primary);

    // Locking reads, reads in a transaction, side effects and the hint use the primary.
    let mut locker = proxy.conn(Some("bank")).await;
    let before = queries_by_server(&proxy);
    conn.query_drop("SELECT * FROM t WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    conn.query_drop("/* dbmesh:primary */ SELECT * FROM t WHERE id = 1")
        .await
        .unwrap();
    // A named lock pins the session to its primary connection, so even its plain reads
    // stay there afterwards.
    locker
        .query_drop("SELECT GET_LOCK('rw_test', 0)")
        .await
        .unwrap();
    locker.query_drop("SELECT COUNT(*) FROM t").await.unwrap();
    drop(locker);
    let mut tx = conn.start_transaction(Default::default()).await.unwrap();
    tx.query_drop("SELECT * FROM t WHERE id = 2").await.unwrap();
    tx.commit().await.unwrap();
    let after = queries_by_server(&proxy);
    assert_eq!(delta(&before, &after, set.replica(0)), 0);
    assert_eq!(delta(&before, &after, set.replica(1)), 0);
    assert!(delta(&before, &after, set.primary()) >= 5);

    // Read-your-writes: each write is seen by the very next read of the same session, most of
    // those reads still served by a replica (which waits for the write's GTID).
    let before = queries_by_server(&proxy);
    for id in 100..300 {
        conn.exec_drop("INSERT INTO t VALUES (?, ?)", (id, id))
            .await
            .unwrap();
        let seen: Option<i64> = conn
            .exec_first("SELECT v FROM t WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(seen, Some(i64::from(id)), "row {id} written then read");
        conn.query_drop(format!("UPDATE t SET v = v + 1 WHERE id = {id}"))
            .await
            .unwrap();
        let seen: Option<i64> = conn
            .query_first(format!("SELECT v FROM t WHERE id = {id}"))
            .await
            .unwrap();
        assert_eq!(seen, Some(i64::from(id) + 1), "row {id} updated then read");
    }
    let after = queries_by_server(&proxy);
    let on_replicas =
        delta(&before, &after, set.replica(0)) + delta(&before, &after, set.replica(1));
    eprintln!(
        "read-your-writes: {on_replicas} of 400 reads right after a write served by replicas"
    );
    assert!(on_replicas > 0, "reads after writes never used a replica");

    // Replicas that apply everything a second late (MASTER_DELAY) but count as healthy: a
    // read right after the session's write must still see it (the replica's wait for the
    // write's GTID times out, so the read goes to the primary), while the replica itself
    // does not have the row yet.
    for i in 0..2 {
        set.replica(i)
            .sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 1; START SLAVE")
            .unwrap();
    }
    wait_all_in_service(&proxy);
    for id in 1000..1010 {
        conn.exec_drop("INSERT INTO t VALUES (?, 7)", (id,))
            .await
            .unwrap();
        let seen: Option<i64> = conn
            .exec_first("SELECT v FROM t WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(seen, Some(7), "row {id} read right after its write");
        let on_replica = set
            .replica(0)
            .sql(&format!("SELECT COUNT(*) FROM `{db}`.t WHERE id = {id}"))
            .unwrap();
        assert_eq!(
            on_replica.trim(),
            "0",
            "the delay did not hold back row {id}"
        );
    }
    for i in 0..2 {
        set.replica(i)
            .sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE")
            .unwrap();
        set.wait_caught_up(i, Duration::from_secs(10)).unwrap();
    }

    // Writes never reached a replica: every transaction in a replica's binary log came from
    // the primary (server id 1; a replica logs its own writes under its own id), and the
    // application user cannot write there anyway.
    for i in 0..2 {
        let replica = set.replica(i);
        let state = replica.sql("SELECT @@gtid_binlog_state").unwrap();
        assert!(
            state
                .trim()
                .split(',')
                .all(|gtid| gtid.split('-').nth(1) == Some("1")),
            "replica {i} logged a transaction of its own: {state}"
        );
        assert!(
            state.contains("0-1-"),
            "replica {i} applied nothing: {state}"
        );
        let refused = testkit::replication::app_sql(
            replica,
            &format!("INSERT INTO `{db}`.t VALUES (9999, 0)"),
        );
        assert!(
            refused.is_err(),
            "replica {i} accepted a write from the application user"
        );
    }

    // A stopped SQL thread (lag) takes replica 0 out of reads; starting it puts it back.
    set.stop_sql_thread(0).unwrap();
    let taken_out = wait_health_mentions(&proxy, "not replicating");
    eprintln!(
        "stopped SQL thread detected after {} ms",
        taken_out.as_millis()
    );
    // Reachable, but out of reads: not up as far as the proxy is concerned.
    let up = metric_by_server(&proxy, "dbmesh_backend_up");
    assert_eq!(up[&set.replica(0).address()], 0, "{up:?}");
    assert_eq!(up[&set.replica(1).address()], 1, "{up:?}");
    let before = queries_by_server(&proxy);
    for _ in 0..40 {
        conn.query_drop("SELECT COUNT(*) FROM t").await.unwrap();
    }
    conn.query_drop("INSERT INTO t VALUES (5000, 1)")
        .await
        .unwrap();
    let seen: Option<i64> = conn
        .query_first("SELECT v FROM t WHERE id = 5000")
        .await
        .unwrap();
    assert_eq!(
        seen,
        Some(1),
        "a lagging replica must not hide the session's write"
    );
    let after = queries_by_server(&proxy);
    assert_eq!(
        delta(&before, &after, set.replica(0)),
        0,
        "the stopped replica got reads"
    );
    assert!(delta(&before, &after, set.replica(1)) >= 40);
    set.start_sql_thread(0).unwrap();
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    wait_all_in_service(&proxy);
    let before = queries_by_server(&proxy);
    for _ in 0..40 {
        conn.query_drop("SELECT COUNT(*) FROM t").await.unwrap();
    }
    let after = queries_by_server(&proxy);
    assert!(
        delta(&before, &after, set.replica(0)) > 0,
        "the replica did not come back"
    );

    // With no replica left, reads go to the primary.
    set.stop_sql_thread(0).unwrap();
    set.stop_sql_thread(1).unwrap();
    wait_health_mentions(
        &proxy,
        &format!("replica {} is not replicating", set.replica(1).address()),
    );
    wait_health_mentions(
        &proxy,
        &format!("replica {} is not replicating", set.replica(0).address()),
    );
    let before = queries_by_server(&proxy);
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 231);
    let after = queries_by_server(&proxy);
    assert_eq!(delta(&before, &after, set.primary()), 1);
    set.start_sql_thread(0).unwrap();
    set.start_sql_thread(1).unwrap();
    drop(conn);
    set.primary().sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

/// A number from sysbench's summary, e.g. `ignored errors:` or `queries:`.
fn sysbench_figure(out: &str, key: &str) -> f64 {
    out.lines()
        .find(|l| l.trim_start().starts_with(key))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
        .unwrap_or_else(|| panic!("{key} missing in {out}"))
}

/// Kills a replica in the middle of a read-only sysbench run: the proxy takes it out at its
/// first failed use and retries the reads it had not answered, so the clients see no error;
/// restarting it puts it back. Also compares read-only QPS with reads on two replicas and on
/// the primary only, same run.
#[test]
fn a_replica_killed_under_read_load_costs_no_client_errors() {
    let Some(mut sets) = start_sets(1, 2) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("sbrw");
    let proxy = Proxy::start(&one_source_rules("sbtest", &set, &db, &[1, 1]));
    let primary_only = Proxy::start(&one_source_rules("sbtest", &set, &db, &[]));
    sysbench(proxy.port, 2, &["oltp_read_only", "prepare"]);
    set.wait_caught_up(0, Duration::from_secs(30)).unwrap();
    set.wait_caught_up(1, Duration::from_secs(30)).unwrap();
    wait_all_in_service(&proxy);

    // Reads outside transactions (sysbench's --skip_trx), which replicas may serve.
    let run = |port: u16, seconds: u32| {
        sysbench(
            port,
            2,
            &[
                "--threads=4",
                &format!("--time={seconds}"),
                "--skip_trx=on",
                "--mysql-ignore-errors=all",
                "oltp_read_only",
                "run",
            ],
        )
    };
    for (name, port) in [
        ("primary only", primary_only.port),
        ("2 replicas", proxy.port),
    ] {
        let out = run(port, 4);
        eprintln!(
            "oltp_read_only --skip_trx, 4 threads, reads on {name}: {:.0} QPS",
            sysbench_figure(&out, "queries:") / 4.0
        );
    }

    let port = proxy.port;
    let load = std::thread::spawn(move || run(port, 6));
    std::thread::sleep(Duration::from_secs(2));
    set.kill_replica(1).unwrap();
    let down = format!("replica {} is down", set.replica(1).address());
    let detected = wait_health_mentions(&proxy, &down);
    let out = load.join().unwrap();
    let errors = sysbench_figure(&out, "ignored errors:");
    eprintln!(
        "replica killed under 4-thread read-only load: out of service after {} ms, {errors} client errors in {} queries",
        detected.as_millis(),
        sysbench_figure(&out, "queries:")
    );
    assert_eq!(errors, 0.0, "{out}");

    // Restarted, it is back in service and gets reads again.
    set.restart_replica(1).unwrap();
    set.wait_caught_up(1, Duration::from_secs(30)).unwrap();
    wait_all_in_service(&proxy);
    let before = queries_by_server(&proxy);
    run(proxy.port, 1);
    let after = queries_by_server(&proxy);
    assert!(
        delta(&before, &after, set.replica(1)) > 0,
        "the restarted replica got no reads"
    );

    // Without traffic, the health checker alone notices a dead replica.
    set.kill_replica(0).unwrap();
    let detected = wait_health_mentions(
        &proxy,
        &format!("replica {} is down", set.replica(0).address()),
    );
    eprintln!(
        "idle replica killed: out of service after {} ms (checks every 200 ms)",
        detected.as_millis()
    );
    assert!(detected < Duration::from_secs(2));
    set.restart_replica(0).unwrap();
    set.primary().sql(&format!("DROP DATABASE `{db}`")).unwrap();
    drop(primary_only);
}

/// Rules for schema `bank` on two data sources `ds_0` and `ds_1` (databases `{db}_0` and
/// `{db}_1`), the primary and replica of `sets[0]` and `sets[1]`, with table `acct` sharded by
/// `id` mod 4 over two tables on each, and `tables` added.
fn two_shards_rules(sets: &[ReplicaSet], db: &str, tables: &str) -> String {
    format!(
        "{HEAD}{}[schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n{}{}\
         [tables.acct]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{{0..1}}.acct_{{0..1}}\"\n{tables}",
        users(),
        data_source("ds_0", &sets[0], &format!("{db}_0"), &[1]),
        data_source("ds_1", &sets[1], &format!("{db}_1"), &[1]),
    )
}

/// Two shards, each a primary with one replica: key reads and merged scatter reads use each
/// shard's replica, writes use each shard's primary, a session reads its own writes on every
/// shard, and a stopped replica sends only its own shard's reads to that shard's primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_reads_use_each_shards_replica() {
    let Some(sets) = start_sets(2, 1) else {
        return;
    };
    let db = testkit::unique_name("shrw");
    let proxy = Proxy::start(&two_shards_rules(&sets, &db, ""));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE acct (id INT PRIMARY KEY, balance INT)")
        .await
        .unwrap();
    for id in 0..40 {
        conn.exec_drop(
            "INSERT INTO acct (id, balance) VALUES (?, ?)",
            (id, id * 10),
        )
        .await
        .unwrap();
        // Read-your-writes on whichever shard the row went to.
        let balance: Option<i64> = conn
            .exec_first("SELECT balance FROM acct WHERE id = ?", (id,))
            .await
            .unwrap();
        assert_eq!(balance, Some(i64::from(id) * 10));
    }
    for set in &sets {
        set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    }
    wait_all_in_service(&proxy);

    let before = queries_by_server(&proxy);
    for id in 0..40 {
        let balance: Option<i64> = conn
            .query_first(format!("SELECT balance FROM acct WHERE id = {id}"))
            .await
            .unwrap();
        assert_eq!(balance, Some(i64::from(id) * 10));
    }
    let top: Vec<(i64, i64)> = conn
        .query("SELECT id, balance FROM acct ORDER BY balance DESC LIMIT 3")
        .await
        .unwrap();
    assert_eq!(top, vec![(39, 390), (38, 380), (37, 370)]);
    let total: i64 = conn
        .query_first("SELECT SUM(balance) FROM acct")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, (0..40).map(|i| i * 10).sum::<i64>());
    let after = queries_by_server(&proxy);
    for set in &sets {
        assert_eq!(delta(&before, &after, set.primary()), 0);
        // 20 key reads and the two scatter reads (with their metadata probes).
        assert!(delta(&before, &after, set.replica(0)) >= 22);
    }

    // Shard 0's replica stops applying: shard 0 reads go to its primary, shard 1's still to
    // its replica.
    sets[0].stop_sql_thread(0).unwrap();
    wait_health_mentions(&proxy, "not replicating");
    let before = queries_by_server(&proxy);
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM acct")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 40);
    let after = queries_by_server(&proxy);
    assert_eq!(delta(&before, &after, sets[0].replica(0)), 0);
    assert!(delta(&before, &after, sets[0].primary()) >= 1);
    assert!(delta(&before, &after, sets[1].replica(0)) >= 1);
    assert_eq!(delta(&before, &after, sets[1].primary()), 0);
    sets[0].start_sql_thread(0).unwrap();

    // Writes reached primaries only.
    for set in &sets {
        let state = set.replica(0).sql("SELECT @@gtid_binlog_state").unwrap();
        assert!(
            state
                .trim()
                .split(',')
                .all(|gtid| gtid.split('-').nth(1) == Some("1")),
            "a replica logged a transaction of its own: {state}"
        );
    }
    drop(conn);
    for (i, set) in sets.iter().enumerate() {
        set.primary()
            .sql(&format!("DROP DATABASE `{db}_{i}`"))
            .unwrap();
    }
}

/// The sharded form of the replica kill: sysbench read-only over two shards (primary +
/// replica each) by `id`; shard 0's replica is killed mid-run. Point reads it had not answered
/// run again on shard 0's primary; merged range reads in flight on it may fail (their rows
/// were already streaming), so at most one error per client thread is allowed.
#[test]
fn a_shard_replica_killed_under_sharded_read_load() {
    let Some(mut sets) = start_sets(2, 1) else {
        return;
    };
    let db = testkit::unique_name("sbsh");
    let mut rules = format!(
        "{HEAD}{}[schema]\nname = \"sbtest\"\ndefault_data_source = \"ds_0\"\n\n{}{}",
        users(),
        data_source("ds_0", &sets[0], &format!("{db}_0"), &[1]),
        data_source("ds_1", &sets[1], &format!("{db}_1"), &[1]),
    );
    for t in 1..=2 {
        rules += &format!(
            "[tables.sbtest{t}]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{{0..1}}.sbtest{t}\"\n"
        );
    }
    // Each shard's primary gets the sysbench tables with the rows `id mod 2` puts there.
    for (i, set) in sets.iter().enumerate() {
        let shard_db = format!("{db}_{i}");
        set.primary()
            .sql(&format!("CREATE DATABASE `{shard_db}`"))
            .unwrap();
        let out = Command::new("sysbench")
            .args([
                "--db-driver=mysql",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={}", set.primary().port()),
                "--mysql-user=root",
                &format!("--mysql-db={shard_db}"),
                "--tables=2",
                "--table-size=10000",
                "oltp_read_only",
                "prepare",
            ])
            .output()
            .expect("sysbench prepare");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        set.primary()
            .sql(&format!(
                "DELETE FROM `{shard_db}`.sbtest1 WHERE id % 2 <> {i}; \
                 DELETE FROM `{shard_db}`.sbtest2 WHERE id % 2 <> {i}"
            ))
            .unwrap();
        set.wait_caught_up(0, Duration::from_secs(30)).unwrap();
    }
    let proxy = Proxy::start(&rules);
    wait_all_in_service(&proxy);
    let port = proxy.port;
    let load = std::thread::spawn(move || {
        sysbench(
            port,
            2,
            &[
                "--threads=4",
                "--time=5",
                "--skip_trx=on",
                "--mysql-ignore-errors=all",
                "oltp_read_only",
                "run",
            ],
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    sets[0].kill_replica(0).unwrap();
    let detected = wait_health_mentions(
        &proxy,
        &format!("replica {} is down", sets[0].replica(0).address()),
    );
    let out = load.join().unwrap();
    let errors = sysbench_figure(&out, "ignored errors:");
    eprintln!(
        "shard 0's replica killed under sharded read-only load: out of service after {} ms, {errors} client errors in {} queries",
        detected.as_millis(),
        sysbench_figure(&out, "queries:")
    );
    assert!(errors <= 4.0, "{out}");
    for (i, set) in sets.iter().enumerate() {
        set.primary()
            .sql(&format!("DROP DATABASE `{db}_{i}`"))
            .unwrap();
    }
}

/// After a failover the DBA performed (replica promoted), the admin switches the data source
/// to it: writes go there from then on. A replica that is still read-only is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_switches_a_data_source_to_a_promoted_replica() {
    let Some(mut sets) = start_sets(1, 2) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("switch");
    let proxy = Proxy::start(&one_source_rules("bank", &set, &db, &[1, 1]));
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    set.wait_caught_up(1, Duration::from_secs(10)).unwrap();

    // The primary dies: writes fail cleanly, reads go on from the replicas.
    set.primary_mut().kill().unwrap();
    let err = conn
        .query_drop("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(common::server_code(err).0, 1105, "{message}");
    assert!(message.contains("'main'"), "{message}");
    // Once the health checker has seen the replicas' I/O threads reconnecting (they used to
    // be taken out then, sending reads to the dead primary), they still serve reads.
    for i in 0..2 {
        let address = set.replica(i).address();
        wait_health_mentions(&proxy, &format!("replica {address} lost its primary"));
    }
    let mut conn = proxy.conn(Some("bank")).await;
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);

    // A replica that was not promoted is refused.
    let new_primary = set.replica(0).address();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=main&address={new_primary}"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let err = conn
        .query_drop("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(common::server_code(err).0, 1105);

    // Writable but still configured as a replica (its replication only stopped): refused.
    set.replica(0)
        .sql("STOP SLAVE; SET GLOBAL read_only = OFF")
        .unwrap();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=main&address={new_primary}"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("still configured as a replica"), "{body}");

    // Promoted, it takes the writes.
    set.replica(0).sql("RESET SLAVE ALL").unwrap();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=main&address={new_primary}"),
    );
    assert_eq!(code, 200, "{body}");
    conn.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    let on_new_primary = set
        .replica(0)
        .sql(&format!("SELECT COUNT(*) FROM `{db}`.t"))
        .unwrap();
    assert_eq!(on_new_primary.trim(), "2");
    let (_, metrics) = proxy.http("GET", "/metrics");
    let up = format!(
        "dbmesh_backend_up{{address=\"{new_primary}\",data_source=\"main\",role=\"primary\"}}"
    );
    assert!(metrics.contains(&up), "{up} missing in {metrics}");
    // The dead primary switched away from is no server of the proxy any more: no series.
    let old_primary = format!("address=\"{}\"", set.primary().address());
    assert!(
        !metrics.contains(&old_primary),
        "{old_primary} in {metrics}"
    );
    // A reload of the unchanged rule file keeps the switch.
    proxy.sighup();
    std::thread::sleep(Duration::from_millis(300));
    conn.query_drop("INSERT INTO t VALUES (3)").await.unwrap();
    let on_new_primary = set
        .replica(0)
        .sql(&format!("SELECT COUNT(*) FROM `{db}`.t"))
        .unwrap();
    assert_eq!(on_new_primary.trim(), "3");
}

/// One read of each kind the load runs: shard 0 and shard 1 by key (`mod` over four tables,
/// two per data source: id 2 is on `ds_1`), the single table on shard 0's data source, the
/// broadcast table.
const LOAD_READS: [&str; 4] = [
    "SELECT balance FROM acct WHERE id = 0",
    "SELECT balance FROM acct WHERE id = 2",
    "SELECT COUNT(*) FROM note",
    "SELECT COUNT(*) FROM currency",
];

/// Shard 0's primary is killed (SIGKILL) under a steady read load of both shards, a single
/// table on shard 0 and a broadcast table: its replica, which had applied every GTID, keeps
/// serving reads (its I/O thread only reconnects), so no read fails; a session reads its own
/// write there. With `reads_when_primary_down = "fail"` shard 0's reads fail with 1105, and
/// broadcast reads go to the copy on shard 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_costs_no_reads_of_its_shard() {
    let Some(mut sets) = start_sets(2, 1) else {
        return;
    };
    let db = testkit::unique_name("deadp");
    let tables = "[tables.note]\nkind = \"single\"\ndata_source = \"ds_0\"\n\
                  [tables.currency]\nkind = \"broadcast\"\n";
    let proxy = Proxy::start(&two_shards_rules(&sets, &db, tables));
    let mut writer = proxy.conn(Some("bank")).await;
    for statement in [
        "CREATE TABLE acct (id INT PRIMARY KEY, balance INT)",
        "CREATE TABLE note (id INT PRIMARY KEY)",
        "CREATE TABLE currency (code CHAR(3) PRIMARY KEY)",
        "INSERT INTO acct VALUES (0, 0), (2, 20)",
        "INSERT INTO note VALUES (1)",
        "INSERT INTO currency VALUES ('EUR'), ('USD')",
    ] {
        writer.query_drop(statement).await.unwrap();
    }
    // The writer's last write on shard 0, which it must see afterwards.
    writer
        .query_drop("UPDATE acct SET balance = 5 WHERE id = 0")
        .await
        .unwrap();
    for set in &sets {
        set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    }
    wait_all_in_service(&proxy);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rounds = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let mut conn = proxy.conn(Some("bank")).await;
        let (stop, rounds) = (stop.clone(), rounds.clone());
        load.spawn(async move {
            let mut errors = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for read in LOAD_READS {
                    if let Err(e) = conn.query_drop(read).await {
                        errors.push(format!("{read}: {e}"));
                    }
                }
                rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            errors
        });
    }
    let read_rounds = |n| {
        let target = rounds.load(std::sync::atomic::Ordering::Relaxed) + n;
        while rounds.load(std::sync::atomic::Ordering::Relaxed) < target {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    read_rounds(20);
    let killed_at = Instant::now();
    sets[0].primary_mut().kill().unwrap();
    let replica = sets[0].replica(0).address();
    let lost = format!("replica {replica} lost its primary");
    wait_health_mentions(&proxy, &lost);
    eprintln!(
        "shard 0's replica serving without its primary after {} ms",
        killed_at.elapsed().as_millis()
    );
    // Past a few health checks (every 200 ms) with the primary gone.
    std::thread::sleep(Duration::from_millis(600));
    read_rounds(40);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let errors: Vec<String> = load.join_all().await.concat();
    let total = rounds.load(std::sync::atomic::Ordering::Relaxed) * LOAD_READS.len() as u64;
    eprintln!(
        "primary killed under read load: {} read errors in {total} reads",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");

    // The replica has the writer's last write: it serves the writer's read.
    let balance: Option<i64> = writer
        .query_first("SELECT balance FROM acct WHERE id = 0")
        .await
        .unwrap();
    assert_eq!(balance, Some(5));
    // Its staleness is shown; the replica that still has its primary has none.
    let (_, metrics) = proxy.http("GET", "/metrics");
    let stale = |address: &str| {
        let line = format!("dbmesh_backend_replica_stale_seconds{{address=\"{address}\"");
        let found = metrics.lines().find(|l| l.starts_with(&line));
        found.and_then(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
    };
    assert!(stale(&replica).is_some_and(|s| s >= 0), "{metrics}");
    assert_eq!(stale(&sets[1].replica(0).address()), Some(-1), "{metrics}");

    // "fail": shard 0's reads fail with the dead primary's error; broadcast reads use shard 1.
    // (Connected first: a driver's connect-time query reads the default data source, ds_0.)
    let mut conn = proxy.conn(Some("bank")).await;
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let text = text.replacen(
        "[replication]\n",
        "[replication]\nreads_when_primary_down = \"fail\"\n",
        1,
    );
    std::fs::write(&proxy.config_path, text).unwrap();
    proxy.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    let err = loop {
        match conn.query_drop(LOAD_READS[0]).await {
            Err(e) => break e,
            Ok(()) => assert!(Instant::now() < deadline, "reads of shard 0 still served"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let message = err.to_string();
    assert_eq!(common::server_code(err).0, 1105, "{message}");
    assert!(message.contains("'ds_0'"), "{message}");
    let before = queries_by_server(&proxy);
    for _ in 0..3 {
        let n: i64 = conn.query_first(LOAD_READS[3]).await.unwrap().unwrap();
        assert_eq!(n, 2);
    }
    let after = queries_by_server(&proxy);
    assert_eq!(delta(&before, &after, sets[1].replica(0)), 3);
    sets[1]
        .primary()
        .sql(&format!("DROP DATABASE `{db}_1`"))
        .unwrap();
}

/// Three data sources (`main`, `ds_a`, `ds_meta`) on one primary with one replica, the meta
/// data source holding a segment sequence of `step` ids per block; tables `t` (main), `t_a`
/// and `t_meta` created, one row each, and the replica caught up. The databases are
/// `{db}_main`, `{db}_a` and `{db}_meta`.
async fn three_sources_on_one_server(set: &ReplicaSet, db: &str, step: u32) -> Proxy {
    start_three_sources(&three_sources_rules(set, db, step)).await
}

/// Starts a proxy on [`three_sources_rules`] and creates and fills the three tables.
async fn start_three_sources(rules: &str) -> Proxy {
    let proxy = Proxy::start(rules);
    let mut conn = proxy.conn(Some("bank")).await;
    for table in ["t", "t_a", "t_meta"] {
        conn.query_drop(format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY); INSERT INTO {table} VALUES (1)"
        ))
        .await
        .expect("create and fill a table");
    }
    proxy
}

/// The rules of [`three_sources_on_one_server`].
fn three_sources_rules(set: &ReplicaSet, db: &str, step: u32) -> String {
    let mut rules = format!(
        "{}{}[schema]\nname = \"bank\"\ndefault_data_source = \"main\"\n\n",
        HEAD.replace("[proxy]", "[proxy]\nmeta_data_source = \"ds_meta\""),
        users()
    );
    for name in ["main", "ds_a", "ds_meta"] {
        let suffix = name.trim_start_matches("ds_");
        rules += &data_source(name, set, &format!("{db}_{suffix}"), &[1]);
    }
    rules += &format!(
        "[tables.t_a]\nkind = \"single\"\ndata_source = \"ds_a\"\n\
         [tables.t_meta]\nkind = \"single\"\ndata_source = \"ds_meta\"\n\
         [sequences.txn_seq]\nkind = \"segment\"\nstep = {step}\n"
    );
    rules
}

/// The primary of all three data sources dies and the DBA promotes its replica.
fn kill_and_promote(set: &mut ReplicaSet) {
    set.wait_caught_up(0, Duration::from_secs(10))
        .expect("replica caught up");
    set.primary_mut().kill().expect("kill the primary");
    set.replica(0)
        .sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .expect("promote the replica");
}

/// Switches `data_source` to the promoted replica through the admin API.
fn switch_to_replica(proxy: &Proxy, set: &ReplicaSet, data_source: &str) {
    let address = set.replica(0).address();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source={data_source}&address={address}"),
    );
    assert_eq!(code, 200, "{body}");
}

/// Every data source switched to the promoted replica stays switched through reloads of the
/// unchanged rule file (each switch used to rebuild from the previous switch's rules, so a
/// reload kept only the last one and sent the others back to the dead primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_of_several_data_sources_survive_reloads() {
    let Some(mut sets) = start_sets(1, 1) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("switch3");
    let proxy = three_sources_on_one_server(&set, &db, 1000).await;
    kill_and_promote(&mut set);
    // A switch is recorded in the meta data source, whose primary is the dead server: the
    // meta data source must move first.
    let address = set.replica(0).address();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=ds_a&address={address}"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("switch it first"), "{body}");
    for data_source in ["ds_meta", "ds_a", "main"] {
        switch_to_replica(&proxy, &set, data_source);
    }
    let mut conn = proxy.conn(Some("bank")).await;
    for round in 2..4 {
        for table in ["t", "t_a", "t_meta"] {
            conn.query_drop(format!("INSERT INTO {table} VALUES ({round})"))
                .await
                .unwrap_or_else(|e| panic!("round {round}, {table}: {e}"));
        }
        let (code, body) = proxy.http("POST", "/reload");
        assert_eq!(code, 200, "{body}");
        let (code, body) = proxy.http("GET", "/health");
        assert!(!body.contains("down"), "{code} {body}");
    }
    for (table, suffix) in [("t", "main"), ("t_a", "a"), ("t_meta", "meta")] {
        let rows = set
            .replica(0)
            .sql(&format!("SELECT COUNT(*) FROM `{db}_{suffix}`.{table}"))
            .unwrap();
        assert_eq!(rows.trim(), "3", "{table}");
    }
}

/// Writes `id` to each of the three data sources' tables, or the first error.
async fn write_all_three(conn: &mut mysql_async::Conn, id: u64) -> Result<(), String> {
    for table in ["t", "t_a", "t_meta"] {
        conn.query_drop(format!("INSERT INTO {table} VALUES ({id})"))
            .await
            .map_err(|e| format!("{table}: {e}"))?;
    }
    Ok(())
}

/// The `dbmesh_primary_epoch` of `data_source` on `proxy`'s metrics.
fn primary_epoch(proxy: &Proxy, data_source: &str) -> Option<u64> {
    let (_, metrics) = proxy.http("GET", "/metrics");
    let series = format!("dbmesh_primary_epoch{{data_source=\"{data_source}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

/// A switch is state in the meta data source: one call by address moves every data source
/// on the dead server; a second proxy sharing `meta` follows it by itself within 2 s; a
/// reload and a restart (whose rule file still names the dead primary) keep it, and
/// sequences continue without handing out an id twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_is_recorded_and_every_proxy_follows_it() {
    let Some(mut sets) = start_sets(1, 1) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("switchrec");
    let rules = three_sources_rules(&set, &db, 2);
    let first = three_sources_on_one_server(&set, &db, 2).await;
    let mut second = Proxy::start(&rules);
    let mut ids = Vec::new();
    for proxy in [&first, &second] {
        let mut conn = proxy.conn(Some("bank")).await;
        for _ in 0..3 {
            let id: u64 = conn
                .query_first("SELECT NEXTVAL(txn_seq)")
                .await
                .unwrap()
                .unwrap();
            ids.push(id);
        }
        assert_eq!(primary_epoch(proxy, "main"), Some(0));
    }
    kill_and_promote(&mut set);
    let new_primary = set.replica(0).address();

    let (code, body) = first.http("POST", &format!("/primary?address={new_primary}"));
    let switched_at = Instant::now();
    assert_eq!(code, 200, "{body}");
    for name in ["main", "ds_a", "ds_meta"] {
        assert!(body.contains(&format!("'{name}'")), "{body}");
    }
    let mut conn = first.conn(Some("bank")).await;
    write_all_three(&mut conn, 2).await.unwrap();

    // The second proxy was told nothing: it follows the record.
    let followed = loop {
        // A new connection each time: a failed write may end the session, and the login
        // itself fails while the default data source is down.
        let written = match mysql_async::Conn::new(second.opts(Some("bank"))).await {
            Ok(mut conn) => write_all_three(&mut conn, 3).await,
            Err(e) => Err(format!("login: {e}")),
        };
        match written {
            Ok(()) => break switched_at.elapsed(),
            Err(e) => {
                assert!(
                    switched_at.elapsed() < Duration::from_secs(2),
                    "the second proxy did not follow the switch within 2 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut conn = second.conn(Some("bank")).await;
    eprintln!("the second proxy wrote to the new primary {followed:?} after the switch");
    for name in ["main", "ds_a", "ds_meta"] {
        assert_eq!(primary_epoch(&second, name), Some(1), "{name}");
    }
    let (_, health) = second.http("GET", "/health");
    assert!(
        health.contains(&format!(
            "data source 'main': writes to {new_primary}, epoch 1, switched by proxy 0"
        )),
        "{health}"
    );

    // A reload of the rule file, which still names the dead primary, keeps the switch.
    let (code, body) = second.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    write_all_three(&mut conn, 4).await.unwrap();
    drop(conn);

    // So does a restart: the first statement goes to the recorded primary.
    second.assert_alive();
    drop(second);
    let second = Proxy::start(&rules);
    let mut conn = second.conn(Some("bank")).await;
    write_all_three(&mut conn, 5).await.unwrap();
    for proxy in [&first, &second] {
        let mut conn = proxy.conn(Some("bank")).await;
        for _ in 0..3 {
            let id: u64 = conn
                .query_first("SELECT NEXTVAL(txn_seq)")
                .await
                .unwrap()
                .unwrap();
            ids.push(id);
        }
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an id handed out twice: {ids:?}");
    for (table, suffix) in [("t", "main"), ("t_a", "a"), ("t_meta", "meta")] {
        let rows = set
            .replica(0)
            .sql(&format!("SELECT COUNT(*) FROM `{db}_{suffix}`.{table}"))
            .unwrap();
        assert_eq!(rows.trim(), "5", "{table}");
    }
    let recorded = set
        .replica(0)
        .sql(&format!(
            "SELECT data_source, epoch, address FROM `{db}_meta`.dbmesh_primary ORDER BY data_source"
        ))
        .unwrap();
    assert_eq!(
        recorded.split_whitespace().collect::<Vec<_>>(),
        [
            "ds_a",
            "1",
            &new_primary,
            "ds_meta",
            "1",
            &new_primary,
            "main",
            "1",
            &new_primary
        ],
        "{recorded}"
    );
}

/// What one proxy's load saw: reads and their errors, writes and their errors, the slowest
/// failed write, when the first write after `since` succeeded, and the ids written.
#[derive(Debug, Default)]
struct LoadSeen {
    reads: u64,
    read_errors: Vec<String>,
    writes: u64,
    write_errors: u64,
    slowest_failed_write: Duration,
    first_write_after: Option<Instant>,
    ids: Vec<u64>,
    /// The ids written after the promotion (acknowledged by the promoted server).
    ids_after: Vec<u64>,
}

/// Reads `t` (on the replica while there is one) and writes a row with a sequence id to `t_a`
/// through `proxy` every few milliseconds until `stop`; `since` is read at each write to note
/// the first success after it (the promotion).
async fn run_load(
    opts: mysql_async::OptsBuilder,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    since: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
) -> LoadSeen {
    use std::sync::atomic::Ordering;
    let mut seen = LoadSeen::default();
    let mut reader = mysql_async::Conn::new(opts.clone()).await.expect("reader");
    let mut writer: Option<mysql_async::Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        seen.reads += 1;
        if let Err(e) = reader.query_drop("SELECT COUNT(*) FROM t").await {
            seen.read_errors.push(e.to_string());
            if let Ok(conn) = mysql_async::Conn::new(opts.clone()).await {
                reader = conn;
            }
        }
        let mut started = Instant::now();
        let written = async {
            if writer.is_none() {
                writer = Some(
                    mysql_async::Conn::new(opts.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            let conn = writer.as_mut().expect("connected above");
            // A failed write's time counts from here: a login waits for the default data
            // source, which is the killed one too.
            started = Instant::now();
            let id: u64 = conn
                .query_first("SELECT NEXTVAL(txn_seq)")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no id")?;
            // Clear of the row 1 the table starts with.
            conn.query_drop(format!("INSERT INTO t_a VALUES ({})", id + 1000))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<u64, String>(id)
        }
        .await;
        seen.writes += 1;
        match written {
            Ok(id) => {
                seen.ids.push(id);
                let since = *since.lock().expect("the promotion time");
                if since.is_some() {
                    seen.ids_after.push(id);
                    seen.first_write_after.get_or_insert_with(Instant::now);
                }
            }
            Err(e) => {
                assert!(!e.contains("1062"), "an id written twice: {e}");
                seen.write_errors += 1;
                seen.slowest_failed_write = seen.slowest_failed_write.max(started.elapsed());
                writer = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    seen
}

/// `[replication] follow_topology = true`: under a read and write load on two proxies, the
/// primary is killed (reads go on from the replica, writes fail fast), then promoted as an HA
/// tool does; both proxies write to it within 2 s with no admin call. The old primary,
/// restarted writable, gets no write, and no sequence id is handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_topology_moves_writes_to_the_promoted_replica_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some(mut sets) = start_sets(1, 1) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("topology");
    let rules = three_sources_rules(&set, &db, 5)
        .replace("[replication]\n", "[replication]\nfollow_topology = true\n");
    let proxies = [start_three_sources(&rules).await, Proxy::start(&rules)];
    let stop = Arc::new(AtomicBool::new(false));
    let promoted_at = Arc::new(Mutex::new(None));
    let loads: Vec<_> = proxies
        .iter()
        .map(|p| {
            tokio::spawn(run_load(
                p.opts(Some("bank")),
                stop.clone(),
                promoted_at.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    set.primary_mut().kill().unwrap();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    set.replica(0)
        .sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .unwrap();
    let promoted = Instant::now();
    *promoted_at.lock().unwrap() = Some(promoted);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The old primary comes back writable, with what it had: it must get no write.
    set.primary_mut().restart().unwrap();
    let old_rows = |set: &ReplicaSet| {
        set.primary()
            .sql(&format!("SELECT COUNT(*) FROM `{db}_a`.t_a"))
            .unwrap()
            .trim()
            .to_string()
    };
    let rows_at_restart = old_rows(&set);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ids, mut ids_after) = (Vec::new(), Vec::new());
    for (proxy, load) in proxies.iter().zip(loads) {
        let seen = load.await.unwrap();
        let switched = seen.first_write_after.map(|at| at.duration_since(promoted));
        let outage = seen.first_write_after.map(|at| at.duration_since(killed));
        eprintln!(
            "proxy: {} reads, {} read errors; {} writes, {} failed, slowest failed {:?}; \
             first write after the promotion {switched:?} after it; no write for {outage:?} \
             from the kill (the promotion came 1.5 s after it)",
            seen.reads,
            seen.read_errors.len(),
            seen.writes,
            seen.write_errors,
            seen.slowest_failed_write
        );
        assert!(seen.read_errors.is_empty(), "{:?}", seen.read_errors);
        // Generous bounds for a loaded test machine; the measured figures are printed above
        // (the targets: writes fail in < 100 ms, the switch within 2 s). A failed
        // write's speed is asserted where it is deterministic: `meta_killed_then_restarted`
        // (sequence crate) for an id, `a_data_source_marked_down_fails_each_statement_at_once`.
        assert!(
            seen.slowest_failed_write < Duration::from_secs(3),
            "{:?}",
            seen.slowest_failed_write
        );
        let switched = switched.expect("no write after the promotion");
        assert!(switched < Duration::from_secs(5), "{switched:?}");
        assert_eq!(primary_epoch(proxy, "ds_a"), Some(1));
        ids.extend(seen.ids);
        ids_after.extend(seen.ids_after);
    }
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "an id handed out twice");
    assert_eq!(
        old_rows(&set),
        rows_at_restart,
        "the old primary got writes"
    );
    // Replication is asynchronous: a write the old primary acknowledged just before it was
    // killed may never have reached the replica. Every write acknowledged after the promotion
    // is on the promoted server (a write whose client saw an error may be there or not).
    let on_new: std::collections::BTreeSet<u64> = set
        .replica(0)
        .sql(&format!("SELECT id FROM `{db}_a`.t_a WHERE id > 1"))
        .unwrap()
        .lines()
        .map(|l| l.trim().parse::<u64>().unwrap() - 1000)
        .collect();
    for id in &ids_after {
        assert!(
            on_new.contains(id),
            "id {id} was acknowledged after the promotion and is lost"
        );
    }
    eprintln!(
        "{} of {} acknowledged writes on the promoted server ({} after the promotion, all there)",
        on_new.len(),
        ids.len(),
        ids_after.len()
    );
}

/// Sequences follow a switch of the meta data source at once: blocks are reserved on the
/// promoted server from the next reservation on (they used to stay on the dead one until a
/// restart), continuing the row replicated there, so no id is handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_follow_a_switch_of_the_meta_data_source() {
    let Some(mut sets) = start_sets(1, 1) else {
        return;
    };
    let mut set = sets.remove(0);
    let db = testkit::unique_name("switchmeta");
    let proxy = three_sources_on_one_server(&set, &db, 2).await;
    let mut conn = proxy.conn(Some("bank")).await;
    let first: u64 = conn
        .query_first("SELECT NEXTVAL(txn_seq)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, 1);
    // The first block (1, 2) and the prefetched second (3, 4) are reserved on the primary
    // before it dies.
    let reserved = format!("SELECT next_value FROM `{db}_meta`.dbmesh_sequence");
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.primary().sql(&reserved).unwrap().trim() != "5" {
        assert!(
            Instant::now() < deadline,
            "the second block was never reserved"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_and_promote(&mut set);
    switch_to_replica(&proxy, &set, "ds_meta");
    let mut ids = Vec::new();
    for _ in 0..8 {
        let id: u64 = conn
            .query_first("SELECT NEXTVAL(txn_seq)")
            .await
            .unwrap()
            .unwrap();
        ids.push(id);
    }
    assert_eq!(ids, (2..=9).collect::<Vec<_>>());
    let reserved: u64 = set
        .replica(0)
        .sql(&reserved)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        reserved >= 11,
        "ids up to 9 came from blocks reserved there: {reserved}"
    );
}

/// A data source whose server accepts connections and never answers is taken out by the
/// first health check (its handshake timeout is a rule-file setting); from then on each
/// statement for it fails at once with 1105 naming it, where it used to wait out the 5 s
/// handshake timeout every time. The other data source serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_source_marked_down_fails_each_statement_at_once() {
    let backend = common::one_backend();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_address = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        // Accepts and never answers; the sockets stay open.
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let db = testkit::unique_name("silent");
    let rules = format!(
        "{}{}[schema]\nname = \"bank\"\ndefault_data_source = \"main\"\n\n\
         [data_sources.main]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n\
         [data_sources.ds_silent]\naddress = \"{silent_address}\"\nuser = \"u\"\ndatabase = \"{db}\"\n\
         pool = {{ handshake_timeout_ms = 1500 }}\n\n\
         [tables.t_silent]\nkind = \"single\"\ndata_source = \"ds_silent\"\n",
        // The health check waits longer than the handshake, so the handshake timeout is what
        // takes the server out.
        HEAD.replace("health_check_timeout_ms = 500", "health_check_timeout_ms = 3000"),
        users(),
        backend.address(),
        backend.user(),
        backend.password(),
    );
    let proxy = Proxy::start(&rules);
    wait_health_mentions(&proxy, "data source 'ds_silent': primary");
    let mut conn = proxy.conn(Some("bank")).await;
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let err = conn.query_drop("SELECT * FROM t_silent").await.unwrap_err();
        let elapsed = started.elapsed();
        let message = err.to_string();
        assert_eq!(common::server_code(err).0, 1105, "{message}");
        assert!(message.contains("'ds_silent' is down"), "{message}");
        // The address is for the log, not for clients.
        assert!(!message.contains(&silent_address.to_string()), "{message}");
        // The bound, generous against a loaded machine for what is one round trip
        // to the proxy (measured: 1-2 ms, printed), and far below the 1.5 s handshake timeout
        // each statement used to wait out (5 s by default).
        assert!(
            elapsed < Duration::from_millis(100),
            "{elapsed:?}: {message}"
        );
        slowest = slowest.max(elapsed);
    }
    eprintln!("slowest of 3 statements for a data source marked down: {slowest:?}");
    let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
    assert_eq!(one, 1);
    assert!(
        proxy.log().contains("handshake timed out after 1.5s"),
        "{}",
        proxy.log()
    );
}

/// A proxy that starts while no server of the meta data source answers cannot know whether a
/// data source was switched away from the rule file's primary, which may have come back
/// writable with diverged data: it sends that primary nothing (1105 saying why, `/health`
/// unhealthy) while reads go on from a replica, and once the meta server answers, writes go
/// to the recorded primary. (It used to write to the rule file's primary.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_without_the_recorded_primaries_writes_nowhere_until_it_reads_them() {
    let Some(mut sets) = start_sets(1, 2) else {
        return;
    };
    let set = sets.remove(0);
    let mut meta = testkit::MariaDb::start().expect("the meta server");
    let db = testkit::unique_name("unread");
    let rules = format!(
        "{}{}[schema]\nname = \"bank\"\ndefault_data_source = \"main\"\n\
         transaction_mode = \"local\"\n\n{}\
         [data_sources.ds_meta]\naddress = \"{}\"\nuser = \"{}\"\ndatabase = \"{db}_meta\"\n",
        HEAD.replace("[proxy]", "[proxy]\nmeta_data_source = \"ds_meta\""),
        users(),
        data_source("main", &set, &db, &[1, 1]),
        meta.address(),
        meta.user(),
    );
    let first = Proxy::start(&rules);
    let mut conn = first.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    set.wait_caught_up(1, Duration::from_secs(10)).unwrap();
    // Replica 0 is promoted and replica 1 follows it; the old primary stays up and writable,
    // and takes a write the new primary never sees (diverged).
    let new_primary = set.replica(0).address();
    set.replica(0)
        .sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .unwrap();
    set.replica(1)
        .sql(&format!(
            "STOP SLAVE; CHANGE MASTER TO MASTER_PORT = {}; START SLAVE",
            set.replica(0).port()
        ))
        .unwrap();
    let (code, body) = first.http(
        "POST",
        &format!("/primary?data_source=main&address={new_primary}"),
    );
    assert_eq!(code, 200, "{body}");
    conn.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    set.primary()
        .sql(&format!("INSERT INTO `{db}`.t VALUES (99)"))
        .unwrap();
    drop(conn);
    drop(first);
    let on_replica_1 = format!("SELECT MAX(id) FROM `{db}`.t");
    let deadline = Instant::now() + Duration::from_secs(10);
    while set.replica(1).sql(&on_replica_1).unwrap().trim() != "2" {
        assert!(Instant::now() < deadline, "replica 1 never got row 2");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Restarted with the meta server down and the rule file naming the old primary.
    meta.stop().unwrap();
    let second = Proxy::start(&rules);
    let mut conn = second.conn(Some("bank")).await;
    let err = conn
        .query_drop("INSERT INTO t VALUES (3)")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(common::server_code(err).0, 1105, "{message}");
    assert!(
        message.contains("'main': its primary is not confirmed"),
        "{message}"
    );
    let max: Option<i64> = conn.query_first("SELECT MAX(id) FROM t").await.unwrap();
    assert_eq!(
        max,
        Some(2),
        "read from replica 1, which follows the new primary"
    );
    let (code, health) = second.http("GET", "/health");
    assert_eq!(code, 503, "{health}");
    assert!(
        health.contains("data source 'main': primary") && health.contains("not confirmed"),
        "{health}"
    );
    // Several health-check rounds later, still nothing for the old primary.
    std::thread::sleep(Duration::from_millis(600));
    assert!(conn.query_drop("INSERT INTO t VALUES (3)").await.is_err());

    let restarted = Instant::now();
    meta.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = conn.query_drop("INSERT INTO t VALUES (3)").await {
        assert!(
            Instant::now() < deadline,
            "writes still refused after the meta server came back: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "writes went to the recorded primary {} ms after the meta server was back",
        restarted.elapsed().as_millis()
    );
    let rows = |server: &MariaDb| {
        server
            .sql(&format!(
                "SELECT GROUP_CONCAT(id ORDER BY id) FROM `{db}`.t"
            ))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(rows(set.replica(0)), "1,2,3");
    assert_eq!(rows(set.primary()), "1,99", "the old primary got a write");
    let (code, health) = second.http("GET", "/health");
    assert!(
        health.contains(&format!(
            "data source 'main': writes to {new_primary}, epoch 1"
        )),
        "{code} {health}"
    );
}

/// `follow_topology`: a replica made writable and replicating from nothing while its primary
/// still is (a promotion with the old primary running) is a split brain. The data source's
/// writes stop with 1105 saying so, neither server gets one, `dbmesh_split_brain` is 1 and
/// `/health` degraded, while reads go on from the replica; once it is read-only again, writes
/// resume on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writable_servers_stop_the_writes_until_one_is_read_only() {
    let Some(mut sets) = start_sets(1, 1) else {
        return;
    };
    let set = sets.remove(0);
    let db = testkit::unique_name("split");
    let rules = one_source_rules("bank", &set, &db, &[1])
        .replace("[replication]\n", "[replication]\nfollow_topology = true\n");
    let proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    set.wait_caught_up(0, Duration::from_secs(10)).unwrap();
    wait_all_in_service(&proxy);
    let split_brain = || {
        let (_, metrics) = proxy.http("GET", "/metrics");
        let series = "dbmesh_split_brain{data_source=\"main\"} ";
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<i64>().ok())
    };
    assert_eq!(split_brain(), Some(0));

    set.replica(0)
        .sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .unwrap();
    let took = wait_health_mentions(&proxy, "more than one writable server (split brain)");
    eprintln!(
        "split brain seen {} ms after the replica turned writable",
        took.as_millis()
    );
    let err = conn
        .query_drop("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(common::server_code(err).0, 1105, "{message}");
    assert!(
        message.contains("'main' has more than one writable server"),
        "{message}"
    );
    assert!(message.contains("split brain"), "{message}");
    assert_eq!(split_brain(), Some(1));
    let (code, health) = proxy.http("GET", "/health");
    assert_eq!(
        (code, health.lines().next()),
        (200, Some("degraded")),
        "{health}"
    );
    let before = queries_by_server(&proxy);
    let n: i64 = conn
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    let after = queries_by_server(&proxy);
    assert_eq!(
        delta(&before, &after, set.replica(0)),
        1,
        "read from the replica"
    );
    let rows = |server: &MariaDb| {
        server
            .sql(&format!(
                "SELECT GROUP_CONCAT(id ORDER BY id) FROM `{db}`.t"
            ))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!([rows(set.primary()), rows(set.replica(0))], ["1", "1"]);

    // One of them read-only again: the other is the only writable server, and writes resume.
    set.replica(0).sql("SET GLOBAL read_only = ON").unwrap();
    let fixed = Instant::now();
    let deadline = fixed + Duration::from_secs(10);
    while let Err(e) = conn.query_drop("INSERT INTO t VALUES (2)").await {
        assert!(Instant::now() < deadline, "writes never resumed: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "writes resumed {} ms after the replica turned read-only",
        fixed.elapsed().as_millis()
    );
    assert_eq!([rows(set.primary()), rows(set.replica(0))], ["1,2", "1"]);
    assert_eq!(split_brain(), Some(0));
    let (code, health) = proxy.http("GET", "/health");
    assert!(!health.contains("split brain"), "{code} {health}");
}
