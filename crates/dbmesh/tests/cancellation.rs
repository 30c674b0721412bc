//! No backend work outlives its reason (issue 23 items 4 and 5): a client that disconnects
//! while its scatter statement runs has it interrupted on every shard at once; a read that
//! stops early (its LIMIT reached) interrupts the shards still working; and statement time
//! limits (`SET STATEMENT max_statement_time`, `SET max_statement_time`, MySQL's
//! `MAX_EXECUTION_TIME` hint, a user's default) bound the whole statement with MariaDB's 1969,
//! in the text and the binary protocol, leaving the session and its transaction as they were.
//!
//! What runs on the backends is read from the backends themselves, never through the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{server_code, Proxy, RawClient, PASSWORD, USER};
use mysql_async::prelude::*;

/// ds_0, ds_1 on server 0 and ds_2, ds_3 on server 1; `acct` sharded by `id` mod 4 with one
/// row per shard (ids 0..3). User `limited` has a default time limit of 1 s.
struct Cluster {
    servers: Vec<testkit::Backend>,
    dbs: Vec<String>,
    proxy: Proxy,
}

fn cluster() -> Option<Cluster> {
    let servers = testkit::backends(2).expect("two MariaDB servers");
    if let Some(reason) = testkit::skip_reason(&servers) {
        println!("{reason}");
        return None;
    }
    let prefix = testkit::unique_name("cancel");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let mut rules = common::four_data_sources(&servers, "bank", &dbs);
    rules +=
        "[[users]]\nname = \"limited\"\npassword = \"limited\"\nmax_statement_time_ms = 1000\n\n";
    rules += "[tables.acct]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\nnodes = \"ds_{0..3}\"\n";
    let proxy = Proxy::start(&rules);
    for (i, db) in dbs.iter().enumerate() {
        servers[i / 2]
            .sql(&format!(
                "USE `{db}`; CREATE TABLE acct (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); \
                 INSERT INTO acct VALUES ({i}, {i})"
            ))
            .unwrap();
    }
    Some(Cluster {
        servers,
        dbs,
        proxy,
    })
}

impl Cluster {
    /// A direct connection to each server, to read their process lists.
    async fn watchers(&self) -> Vec<mysql_async::Conn> {
        let mut out = Vec::new();
        for server in &self.servers {
            out.push(common::direct(server).await);
        }
        out
    }

    /// How many statements whose text contains `marker` run on the servers now, read
    /// directly from each server's process list.
    async fn running(watchers: &mut [mysql_async::Conn], marker: &str) -> u64 {
        let mut total = 0;
        for direct in watchers {
            let n: Option<u64> = direct
                .exec_first(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE INFO LIKE CONCAT('%', ?, '%') AND ID <> CONNECTION_ID()",
                    (marker,),
                )
                .await
                .unwrap();
            total += n.unwrap_or(0);
        }
        total
    }

    /// Waits until `n` statements containing `marker` run on the servers.
    async fn wait_running(&self, marker: &str, n: u64) {
        let mut watchers = self.watchers().await;
        let started = Instant::now();
        while Self::running(&mut watchers, marker).await < n {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{marker} never ran on {n} shards"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until no statement containing `marker` runs on any server; returns how long
    /// that took at most (the end of the first poll that found none). Fails when a poll
    /// begun `bound` after the start still finds one (a slow poll on a loaded machine does
    /// not count against the bound).
    async fn gone_after(
        &self,
        watchers: &mut [mysql_async::Conn],
        marker: &str,
        bound: Duration,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let polled = started.elapsed();
            if Self::running(watchers, marker).await == 0 {
                return started.elapsed();
            }
            assert!(
                polled < bound,
                "{marker} still runs on a backend {polled:?} after; the proxy's log:\n{}",
                self.proxy.log()
            );
        }
    }

    /// [`gone_after`](Self::gone_after) with connections of its own.
    async fn gone_within(&self, marker: &str, bound: Duration) -> Duration {
        let mut watchers = self.watchers().await;
        self.gone_after(&mut watchers, marker, bound).await
    }

    fn cancellations(&self, reason: &str) -> u64 {
        let (_, metrics) = self.proxy.http("GET", "/metrics");
        let line = format!("dbmesh_backend_cancellations_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in /metrics"))
    }

    async fn conn(&self, user: &str, password: &str) -> mysql_async::Conn {
        mysql_async::Conn::new(
            self.proxy
                .opts(Some("bank"))
                .user(Some(user))
                .pass(Some(password)),
        )
        .await
        .expect("login through dbmesh")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (i, db) in self.dbs.iter().enumerate() {
            let _ = self.servers[i / 2].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

/// A client that disconnects while its 4-shard `SELECT … SLEEP(8)` runs: no statement of it is
/// left on any backend soon after (typically 2-20 ms here, printed), and the cancellations
/// are counted. Of three rounds the quickest must be within the 100 ms and every one
/// within 3 s: on a loaded machine a MariaDB `KILL` of a sleeping thread was seen, rarely, to
/// take about 2 s to take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_leaves_nothing_running() {
    let Some(c) = cluster() else { return };
    let before = c.cancellations("client_gone");
    let mut measured = Vec::new();
    for round in 0..3 {
        let marker = format!("gone_{round}");
        let mut raw = RawClient::login(c.proxy.port, Some("bank"));
        let mut query = vec![protocol::constants::com::QUERY];
        query.extend_from_slice(format!("SELECT id, SLEEP(8) AS {marker} FROM acct").as_bytes());
        raw.write_packet(0, &query);
        c.wait_running(&marker, 4).await;
        let mut watchers = c.watchers().await;
        drop(raw);
        let took = c
            .gone_after(&mut watchers, &marker, Duration::from_secs(3))
            .await;
        measured.push(took);
        println!("round {round}: gone from every backend at most {took:?} after the client left");
    }
    println!("cancellation latency (client gone → no statement on any backend): {measured:?}");
    let quickest = measured.iter().min().copied().unwrap_or_default();
    assert!(
        quickest <= Duration::from_millis(100),
        "no round within 100 ms: {measured:?}"
    );
    // Counted once the interruptions are confirmed, which may be just after the statements
    // are gone.
    let counted = Instant::now();
    while c.cancellations("client_gone") < before + 12 {
        assert!(
            counted.elapsed() < Duration::from_secs(5),
            "cancellations not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The proxy's connections were recovered: the session's scatter read works at once.
    let mut conn = c.proxy.conn(Some("bank")).await;
    let ids: Vec<u64> = conn.query("SELECT id FROM acct ORDER BY id").await.unwrap();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

/// A read whose LIMIT the first shard's rows satisfy does not wait for the other shards, each
/// of which sent a first row and then sleeps: they are interrupted and the answer comes at
/// once. (Each row is larger than the server's network buffer, so it leaves the server before
/// the next row is computed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_stops_early_interrupts_the_other_shards() {
    let Some(c) = cluster() else { return };
    let before = c.cancellations("stopped_early");
    let mut conn = c.proxy.conn(Some("bank")).await;
    conn.query_drop("INSERT INTO acct VALUES (4, 4), (5, 5), (6, 6), (7, 7), (8, 8)")
        .await
        .unwrap();
    let started = Instant::now();
    let rows: Vec<(u64, String, u64)> = conn
        .query(
            "SELECT id, REPEAT('x', 40000), SLEEP(IF(id >= 5 AND id % 4 <> 0, 8, 0)) AS early_stop \
             FROM acct LIMIT 3",
        )
        .await
        .unwrap();
    let took = started.elapsed();
    println!("LIMIT 3 answered after {took:?}");
    let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(ids, vec![0, 4, 8], "ds_0's rows, read first");
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    c.gone_within("early_stop", Duration::from_secs(3)).await;
    assert!(c.cancellations("stopped_early") >= before + 3);
    let n: Option<u64> = conn.query_first("SELECT COUNT(*) FROM acct").await.unwrap();
    assert_eq!(n, Some(9), "the connections are usable");
}

async fn expect_time_limit<T: std::fmt::Debug>(
    c: &Cluster,
    outcome: Result<T, mysql_async::Error>,
    started: Instant,
    what: &str,
) {
    let took = started.elapsed();
    println!("{what}: answered after {took:?}");
    assert_eq!(
        server_code(outcome.expect_err(what)),
        (1969, "70100".to_string()),
        "{what}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{what}: answered after {took:?}; the proxy's log:\n{}",
        c.proxy.log()
    );
}

/// Every way of giving a statement a time limit, in the text and the binary protocol: past it
/// the client gets 1969, the shards' statements are interrupted, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_time_limits_bound_the_whole_statement() {
    let Some(c) = cluster() else { return };
    let before = c.cancellations("time_limit");
    let mut conn = c.proxy.conn(Some("bank")).await;

    let started = Instant::now();
    let outcome = conn
        .query_drop(
            "SET STATEMENT max_statement_time = 1 FOR SELECT id, SLEEP(6) AS lim_a FROM acct",
        )
        .await;
    expect_time_limit(&c, outcome, started, "SET STATEMENT, text").await;
    c.gone_within("lim_a", Duration::from_secs(3)).await;

    let started = Instant::now();
    let outcome = conn
        .query_drop(
            "SELECT /*+ MAX_EXECUTION_TIME(1000) */ id, SLEEP(6) AS lim_b FROM acct ORDER BY id",
        )
        .await;
    expect_time_limit(
        &c,
        outcome,
        started,
        "MAX_EXECUTION_TIME hint, text, merged",
    )
    .await;
    c.gone_within("lim_b", Duration::from_secs(3)).await;

    let started = Instant::now();
    let outcome = conn
        .exec_drop(
            "SET STATEMENT max_statement_time = 1 FOR SELECT id, SLEEP(?) AS lim_c FROM acct",
            (6,),
        )
        .await;
    expect_time_limit(&c, outcome, started, "SET STATEMENT, prepared").await;

    let started = Instant::now();
    let outcome = conn
        .exec_drop(
            "SELECT /*+ MAX_EXECUTION_TIME(1000) */ id, SLEEP(?) AS lim_d FROM acct",
            (6,),
        )
        .await;
    expect_time_limit(&c, outcome, started, "MAX_EXECUTION_TIME hint, prepared").await;
    c.gone_within("lim_d", Duration::from_secs(3)).await;

    // Statements within their limit, and statements without one, run to their end.
    let slept: Vec<(u64, u64)> = conn
        .query("SET STATEMENT max_statement_time = 5 FOR SELECT id, SLEEP(0.2) FROM acct")
        .await
        .unwrap();
    assert_eq!(slept.len(), 4);
    let slept: Vec<(u64, u64)> = conn
        .exec(
            "SELECT /*+ MAX_EXECUTION_TIME(0) */ id, SLEEP(?) FROM acct",
            (1.2,),
        )
        .await
        .unwrap();
    assert_eq!(slept.len(), 4);

    // The session's own limit, then back to none.
    conn.query_drop("SET SESSION max_statement_time = 1")
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = conn
        .query_drop("SELECT id, SLEEP(6) AS lim_e FROM acct")
        .await;
    expect_time_limit(&c, outcome, started, "SET SESSION max_statement_time, text").await;
    let started = Instant::now();
    let outcome = conn
        .exec_drop("SELECT id, SLEEP(?) AS lim_f FROM acct ORDER BY id", (6,))
        .await;
    expect_time_limit(
        &c,
        outcome,
        started,
        "SET SESSION max_statement_time, prepared, merged",
    )
    .await;
    conn.query_drop("SET max_statement_time = 0").await.unwrap();
    let slept: Vec<(u64, u64)> = conn.query("SELECT id, SLEEP(1.2) FROM acct").await.unwrap();
    assert_eq!(slept.len(), 4);

    // Inside a transaction the statement fails alone: the transaction and its write stay.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO acct VALUES (10, 10)")
        .await
        .unwrap();
    let started = Instant::now();
    let outcome = conn
        .query_drop(
            "SET STATEMENT max_statement_time = 1 FOR SELECT id, SLEEP(6) AS lim_g FROM acct",
        )
        .await;
    expect_time_limit(&c, outcome, started, "SET STATEMENT in a transaction").await;
    let n: Option<u64> = conn.query_first("SELECT COUNT(*) FROM acct").await.unwrap();
    assert_eq!(n, Some(5), "the transaction's own write is still there");
    conn.query_drop("ROLLBACK").await.unwrap();
    let n: Option<u64> = conn.query_first("SELECT COUNT(*) FROM acct").await.unwrap();
    assert_eq!(n, Some(4), "and was rolled back with it");

    // A variable SET STATEMENT cannot carry through the proxy is refused by name.
    let err = conn
        .query_drop("SET STATEMENT sort_buffer_size = 100000 FOR SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1235);

    // A user's default limit.
    let mut limited = c.conn("limited", "limited").await;
    let started = Instant::now();
    let outcome = limited
        .query_drop("SELECT id, SLEEP(6) AS lim_h FROM acct")
        .await;
    expect_time_limit(&c, outcome, started, "the user's max_statement_time_ms").await;
    c.gone_within("lim_", Duration::from_secs(3)).await;
    let one: Option<u32> = limited.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    assert!(c.cancellations("time_limit") > before);
}

/// `@@max_statement_time` is the limit the proxy holds the session to: a user's default,
/// which no backend connection was told of, as well as a value the session SET; in both
/// protocols, under the variable's own column name and type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_reports_the_time_limit_it_is_held_to() {
    let Some(c) = cluster() else { return };
    let mut limited = c.conn("limited", "limited").await;
    let mut unlimited = c.conn(USER, PASSWORD).await;
    async fn reported(conn: &mut mysql_async::Conn) -> (f64, f64) {
        let text: Option<f64> = conn
            .query_first("SELECT @@max_statement_time")
            .await
            .unwrap();
        let session: Option<f64> = conn
            .query_first("SELECT @@SESSION.max_statement_time * 2")
            .await
            .unwrap();
        (text.unwrap(), session.unwrap() / 2.0)
    }
    assert_eq!(reported(&mut limited).await, (1.0, 1.0));
    assert_eq!(reported(&mut unlimited).await, (0.0, 0.0));

    // Named and typed as MariaDB names and types the variable: DOUBLE, 6 decimals.
    let result = limited
        .query_iter("SELECT @@max_statement_time")
        .await
        .unwrap();
    let columns = result.columns().unwrap();
    assert_eq!(columns[0].name_str(), "@@max_statement_time");
    assert_eq!(
        columns[0].column_type(),
        mysql_async::consts::ColumnType::MYSQL_TYPE_DOUBLE
    );
    assert_eq!(columns[0].decimals(), 6);
    drop(result);

    limited
        .query_drop("SET max_statement_time = 2.5")
        .await
        .unwrap();
    assert_eq!(reported(&mut limited).await, (2.5, 2.5));
    limited
        .query_drop("SET SESSION max_statement_time = DEFAULT")
        .await
        .unwrap();
    assert_eq!(reported(&mut limited).await, (1.0, 1.0));

    // Prepared, the value is the backends' (which replay what the session SET), except
    // for a session with a default limit of the proxy's: a SET may replace or bring back
    // that limit between two executions of the statement, so it is refused there.
    let prepared: Option<f64> = unlimited
        .exec_first("SELECT @@max_statement_time", ())
        .await
        .unwrap();
    assert_eq!(prepared, Some(0.0));
    unlimited
        .query_drop("SET max_statement_time = 3")
        .await
        .unwrap();
    let prepared: Option<f64> = unlimited
        .exec_first("SELECT @@max_statement_time", ())
        .await
        .unwrap();
    assert_eq!(prepared, Some(3.0));
    let err = limited
        .exec_first::<f64, _, _>("SELECT @@max_statement_time", ())
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1235);
    // The global value is the server's.
    let global: Option<f64> = limited
        .query_first("SELECT @@GLOBAL.max_statement_time")
        .await
        .unwrap();
    assert_eq!(global, Some(0.0));
}

/// A statement still waiting for a pool connection, which has no backend statement to
/// interrupt, ends when its time limit passes (1969) or it is killed (1317), not when a
/// connection comes free or the pool's acquire timeout ends the wait; its session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_for_a_pool_connection_is_interrupted_too() {
    let backend = common::one_backend();
    let physical = testkit::unique_name("poolwait");
    let mut rules = common::passthrough_rules(&backend, "bank", &physical, "");
    rules += "\n[data_sources.main.pool]\nmax = 1\nacquire_timeout_ms = 30000\n";
    let proxy = Proxy::start(&rules);
    // Logging in uses the pool too: every session logs in first.
    let mut holder = proxy.conn(Some("bank")).await;
    let mut limited = proxy.conn(Some("bank")).await;
    let waiting = proxy.conn(Some("bank")).await;
    let mut killer = proxy.conn(Some("bank")).await;
    // The pool's one connection, held by an open transaction.
    holder.query_drop("BEGIN").await.unwrap();
    holder.query_drop("SELECT 1").await.unwrap();

    let started = Instant::now();
    let err = limited
        .query_drop("SET STATEMENT max_statement_time = 1 FOR SELECT 2")
        .await
        .unwrap_err();
    let waited = started.elapsed();
    println!("past its time limit while waiting for a connection: answered after {waited:?}");
    assert_eq!(server_code(err).0, 1969);
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");

    let id = waiting.id();
    let statement = tokio::spawn(async move {
        let mut waiting = waiting;
        let started = Instant::now();
        let outcome = waiting.query_drop("SELECT 3").await;
        (outcome, started.elapsed(), waiting)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kill_sent = Instant::now();
    killer.query_drop(format!("KILL QUERY {id}")).await.unwrap();
    let (outcome, _, mut waiting) = statement.await.unwrap();
    let after_kill = kill_sent.elapsed();
    println!("killed while waiting for a connection: answered {after_kill:?} after the KILL");
    assert_eq!(server_code(outcome.unwrap_err()).0, 1317);
    assert!(
        after_kill < Duration::from_secs(5),
        "answered {after_kill:?} after the KILL"
    );

    // Both sessions go on once the connection is free.
    holder.query_drop("COMMIT").await.unwrap();
    let two: Option<u32> = limited.query_first("SELECT 2").await.unwrap();
    assert_eq!(two, Some(2));
    let three: Option<u32> = waiting.query_first("SELECT 3").await.unwrap();
    assert_eq!(three, Some(3));
}
