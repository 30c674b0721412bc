//! Connection multiplexing through the real proxy: thousands of client sessions on a small
//! backend pool, session state that travels with the session, and the situations that pin a
//! backend connection to a session (each test fails if the connection were released).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{direct, one_backend, passthrough_rules, server_code, Backend, Proxy};
use mysql_async::prelude::*;

/// A proxy on one data source whose pool holds at most `max` connections.
fn proxy_with_pool(backend: &Backend, physical: &str, max: usize) -> Proxy {
    let rules = passthrough_rules(backend, "bank", physical, "worker_threads = 1")
        + &format!("\n[data_sources.main.pool]\nmax = {max}\nacquire_timeout_ms = 30000\n");
    Proxy::start(&rules)
}

/// The proxy's connections on the backend: those with the data source's database selected.
async fn backend_connections(direct: &mut mysql_async::Conn, physical: &str) -> u64 {
    direct
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ?",
            (physical,),
        )
        .await
        .unwrap()
        .unwrap()
}

/// How many client connections this test may open: `wanted`, or fewer when the open-files
/// limit (raised to its hard limit first, with `prlimit`) cannot hold the clients' sockets and
/// the proxy's. The proxy inherits the limit.
fn client_budget(wanted: usize) -> usize {
    let soft_and_hard = || -> (usize, usize) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let line = limits.lines().find(|l| l.starts_with("Max open files"));
        let mut fields = line
            .into_iter()
            .flat_map(|l| l.split_whitespace().skip(3))
            .map(|v| v.parse().unwrap_or(usize::MAX));
        (fields.next().unwrap_or(1024), fields.next().unwrap_or(1024))
    };
    let (soft, hard) = soft_and_hard();
    if soft < hard {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    let (soft, _) = soft_and_hard();
    let budget = wanted.min(soft.saturating_sub(200));
    if budget < wanted {
        println!("open-files limit {soft}: running {budget} clients instead of {wanted}");
    }
    budget
}

/// Opens `n` client sessions, a bounded number of logins at a time.
async fn open_clients(proxy: &Proxy, n: usize) -> Vec<mysql_async::Conn> {
    let logins = Arc::new(tokio::sync::Semaphore::new(128));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let opts = proxy.opts(Some("bank"));
            let logins = logins.clone();
            tokio::spawn(async move {
                let _permit = logins.acquire().await.unwrap();
                mysql_async::Conn::new(opts)
                    .await
                    .expect("login through dbmesh")
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_sessions_share_sixteen_backend_connections() {
    let clients = client_budget(5000);
    let backend = one_backend();
    let db = testkit::unique_name("mux");
    let proxy = proxy_with_pool(&backend, &db, 16);
    let mut setup = proxy.conn(Some("bank")).await;
    setup
        .query_drop("CREATE TABLE hits (id BIGINT PRIMARY KEY, n INT)")
        .await
        .unwrap();
    drop(setup);

    let started = Instant::now();
    let conns = open_clients(&proxy, clients).await;
    let connected = started.elapsed();

    // Watch the backend while the load runs.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, done, db) = (peak.clone(), done.clone(), db.clone());
        let mut watch = direct(&backend).await;
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let now = backend_connections(&mut watch, &db).await;
                peak.fetch_max(now, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let load_started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            tokio::spawn(async move {
                let id = i as i64;
                conn.exec_drop("INSERT INTO hits VALUES (?, ?)", (id, 1))
                    .await
                    .unwrap();
                conn.query_drop(format!("UPDATE hits SET n = n + 1 WHERE id = {id}"))
                    .await
                    .unwrap();
                let n: i64 = conn
                    .exec_first("SELECT n FROM hits WHERE id = ?", (id,))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(n, 2);
                conn
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    let load = load_started.elapsed();
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();

    let mut check = direct(&backend).await;
    let rows: i64 = check
        .query_first(format!("SELECT COUNT(*) FROM `{db}`.hits WHERE n = 2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows, clients as i64);
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "{clients} sessions: logins {connected:?}, {} statements in {load:?}, \
         at most {peak} backend connections",
        clients * 3
    );
    assert!(peak <= 16, "{peak} backend connections for a pool of 16");
    assert!(peak >= 1, "the watcher saw the proxy's connections");
    let (_, metrics) = proxy.http("GET", "/metrics");
    assert!(
        metrics.contains("dbmesh_session_pinned{reason=\"transaction\"} 0"),
        "{metrics}"
    );
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_cost_little_memory_and_no_backend_connection() {
    let clients = client_budget(5000);
    let backend = one_backend();
    let db = testkit::unique_name("idle");
    let proxy = proxy_with_pool(&backend, &db, 16);
    let mut first = proxy.conn(Some("bank")).await;
    first.query_drop("SELECT 1").await.unwrap();
    let (before, _) = proxy.memory_kib();

    let mut conns = open_clients(&proxy, clients).await;
    for conn in &mut conns {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    // Let freed buffers settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = proxy.memory_kib();
    let per_client = after.saturating_sub(before) as f64 / clients as f64;
    let mut watch = direct(&backend).await;
    let backend_count = backend_connections(&mut watch, &db).await;
    println!(
        "{clients} idle sessions: RSS {before} KiB -> {after} KiB, {per_client:.1} KiB per idle \
         session, {backend_count} backend connections"
    );
    assert!(backend_count <= 16, "{backend_count} backend connections");
    assert!(per_client <= 64.0, "{per_client:.1} KiB per idle session");
    for conn in conns {
        conn.disconnect().await.unwrap();
    }
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// Two sessions with different character sets, sql_mode and time zones, interleaved on the
/// one backend connection a pool of 1 has: each sees its own settings, and a third session
/// with none sees the server's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_travels_with_the_session() {
    let backend = one_backend();
    let db = testkit::unique_name("state");
    let proxy = proxy_with_pool(&backend, &db, 1);
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = proxy.conn(Some("bank")).await;
    let mut plain = proxy.conn(Some("bank")).await;
    a.query_drop("SET NAMES latin1").await.unwrap();
    b.query_drop("SET NAMES utf8mb4").await.unwrap();
    a.query_drop("SET sql_mode = 'PIPES_AS_CONCAT'")
        .await
        .unwrap();
    b.query_drop("SET sql_mode = ''").await.unwrap();
    a.query_drop("SET time_zone = '+05:00'").await.unwrap();
    b.query_drop("SET time_zone = '-03:00'").await.unwrap();
    let defaults: (String, String) = plain
        .query_first("SELECT @@sql_mode, @@time_zone")
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let row: (String, String, String, String) = a
            .query_first(
                "SELECT @@character_set_client, 'x' || 'y', @@time_zone, \
                 DATE_FORMAT(FROM_UNIXTIME(0), '%H')",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row,
            ("latin1".into(), "xy".into(), "+05:00".into(), "05".into())
        );
        let row: (String, String, String, String) = b
            .query_first(
                "SELECT @@character_set_client, 'x' || 'y', @@time_zone, \
                 DATE_FORMAT(FROM_UNIXTIME(0), '%H')",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            row,
            ("utf8mb4".into(), "0".into(), "-03:00".into(), "21".into())
        );
        let now: (String, String) = plain
            .query_first("SELECT @@sql_mode, @@time_zone")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now, defaults);
    }

    // Prepared statements follow their session onto the shared connection.
    let sa = a.prep("SELECT ? + 1").await.unwrap();
    let sb = b.prep("SELECT CONCAT(?, '!')").await.unwrap();
    for i in 0..3 {
        let x: i64 = a.exec_first(&sa, (i,)).await.unwrap().unwrap();
        assert_eq!(x, i + 1);
        let s: String = b.exec_first(&sb, ("hi",)).await.unwrap().unwrap();
        assert_eq!(s, "hi!");
    }
    a.close(sa).await.unwrap();
    let s: String = b.exec_first(&sb, ("again",)).await.unwrap().unwrap();
    assert_eq!(s, "again!");
    let same = b.prep("SELECT ? + 1").await.unwrap();
    let x: i64 = b.exec_first(&same, (41,)).await.unwrap().unwrap();
    assert_eq!(x, 42);
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// `pool.min_idle` connections are opened before any client asks, and kept: the first
/// statements find them ready instead of paying for a connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keeps_min_idle_connections_open() {
    let backend = one_backend();
    let db = testkit::unique_name("minidle");
    let rules = passthrough_rules(&backend, "bank", &db, "")
        + "\n[data_sources.main.pool]\nmax = 8\nmin_idle = 3\n";
    let proxy = Proxy::start(&rules);
    let gauge = |state: &str| -> i64 {
        let (_, metrics) = proxy.http("GET", "/metrics");
        let name = format!("dbmesh_backend_connections{{data_source=\"main\",state=\"{state}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name)?.parse().ok())
            .unwrap_or(-1)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while gauge("idle") < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "idle connections: {}",
            gauge("idle")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut conn = proxy.conn(Some("bank")).await;
    for _ in 0..5 {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    assert_eq!(gauge("open"), 3, "statements reused the idle connections");
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// Warnings, errors and the affected-row count of a session's last statement stay that
/// session's, although the backend connection that ran it (the only one of a pool of 1) has
/// since run another session's statements: `SHOW WARNINGS`, `SHOW ERRORS`, the counts and
/// `ROW_COUNT()` answer as a direct connection would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_stay_with_their_session() {
    let backend = one_backend();
    let db = testkit::unique_name("diag");
    let proxy = proxy_with_pool(&backend, &db, 1);
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = proxy.conn(Some("bank")).await;
    a.query_drop("CREATE TABLE t (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO t VALUES (1, 0), (2, 0), (3, 0)")
        .await
        .unwrap();

    type Warning = (String, u32, String);
    let x: i64 = a
        .query_first("SELECT CAST('12abc' AS SIGNED)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x, 12);
    b.query_drop("SELECT 1").await.unwrap();
    let warnings: Vec<Warning> = a.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!((warnings[0].0.as_str(), warnings[0].1), ("Warning", 1292));
    assert!(warnings[0].2.contains("12abc"), "{warnings:?}");
    let count: u64 = a
        .query_first("SELECT @@warning_count")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 1);
    let count: u64 = a
        .query_first("SHOW COUNT(*) WARNINGS")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 1);
    let none: Vec<Warning> = b.query("SHOW WARNINGS").await.unwrap();
    assert!(none.is_empty(), "{none:?}");

    let err = a
        .query_drop("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(common::server_code(err).0, 1146);
    b.query_drop("SELECT 2").await.unwrap();
    let errors: Vec<Warning> = a.query("SHOW ERRORS").await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].0.as_str(), errors[0].1), ("Error", 1146));
    let count: u64 = a
        .query_first("SELECT @@error_count")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 1);
    // A new statement starts a new list.
    a.query_drop("SELECT 3").await.unwrap();
    let none: Vec<Warning> = a.query("SHOW WARNINGS").await.unwrap();
    assert!(none.is_empty(), "{none:?}");

    a.query_drop("UPDATE t SET v = v + 1").await.unwrap();
    b.query_drop("INSERT INTO t VALUES (9, 9)").await.unwrap();
    let rows: i64 = a.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
    assert_eq!(rows, 3);
    let rows: i64 = a.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
    assert_eq!(rows, -1, "ROW_COUNT() after a SELECT");
    let rows: i64 = b.query_first("SELECT ROW_COUNT()").await.unwrap().unwrap();
    assert_eq!(rows, 1);
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// With one pooled connection for two clients, every use of `LAST_INSERT_ID()`,
/// `@@identity`, `ROW_COUNT()` and `FOUND_ROWS()` in any statement (executable comments
/// included) sees the session's own value, under the name the client wrote; the connection
/// only ever holds the last client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_functions_see_the_sessions_own_values() {
    let backend = one_backend();
    let db = testkit::unique_name("ownvalues");
    let proxy = proxy_with_pool(&backend, &db, 1);
    let mut a = proxy.conn(Some("bank")).await;
    let mut b = proxy.conn(Some("bank")).await;
    a.query_drop("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    a.query_drop("INSERT INTO t (v) VALUES (1), (2), (3)")
        .await
        .unwrap();
    b.query_drop("SELECT 1").await.unwrap();
    a.query_drop("INSERT INTO t (v) VALUES (4)").await.unwrap();
    a.query_drop("UPDATE t SET v = 0 WHERE id <= 2")
        .await
        .unwrap();

    // B's own: no insert yet, and its previous statement was a SELECT.
    let first = |rows: Vec<mysql_async::Row>| {
        let row = rows.into_iter().next().unwrap();
        let name = row.columns_ref()[0].name_str().into_owned();
        (name, row.get::<i64, _>(0).unwrap())
    };
    let rows = b.query("SELECT ROW_COUNT() AS n").await.unwrap();
    assert_eq!(first(rows), ("n".into(), -1));
    for (sql, name) in [
        ("SELECT LAST_INSERT_ID() AS id", "id"),
        ("SELECT @@identity", "@@identity"),
        ("SELECT last_insert_id()+0", "last_insert_id()+0"),
        (
            "SELECT @@session.last_insert_id",
            "@@session.last_insert_id",
        ),
        ("SELECT /*M! LAST_INSERT_ID() + */ 0 AS x", "x"),
    ] {
        let rows = b.query(sql).await.unwrap();
        assert_eq!(first(rows), (name.into(), 0), "{sql}");
    }
    let n: i64 = b
        .query_first("SELECT COUNT(*) FROM t WHERE id > LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 4);
    let found: i64 = b.query_first("SELECT FOUND_ROWS()").await.unwrap().unwrap();
    assert_eq!(found, 1, "FOUND_ROWS() after B's one-row SELECT");

    // A's own, after B used the connection.
    let rows = a.query("SELECT ROW_COUNT() + 0").await.unwrap();
    assert_eq!(first(rows), ("ROW_COUNT() + 0".into(), 2));
    let (identity, id): (u64, u64) = a
        .query_first("SELECT @@IDENTITY, LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((identity, id), (4, 4));
    a.query_drop("SELECT CAST('1x' AS SIGNED)").await.unwrap();
    // A prepared statement runs on whichever connection: refused, never another's value.
    let err = a.prep("SELECT LAST_INSERT_ID() + ?").await.unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));

    // COM_RESET_CONNECTION clears them, and the diagnostics, as on MySQL.
    a.query_drop("SELECT CAST('1x' AS SIGNED)").await.unwrap();
    a.reset().await.unwrap();
    let warnings: Vec<(String, u32, String)> = a.query("SHOW WARNINGS").await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let (id, rows): (u64, i64) = a
        .query_first("SELECT LAST_INSERT_ID(), ROW_COUNT()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id, rows), (0, 0));
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}

/// A `SET` the proxy's parser cannot read keeps its connection (it could not be recorded or
/// replayed), and MariaDB's `/*M! … */` comments are code for the pin scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_unread_set_and_mariadb_executable_comments() {
    let mut p = Pair::new().await;
    // `:=` in a SET of a system variable is beyond sqlparser.
    p.a.query_drop("SET SESSION sql_mode := 'NO_ZERO_DATE'")
        .await
        .unwrap();
    p.assert_pinned("unread_set", 1);
    p.a.query_drop("SELECT 1 /*M!100000 , @v := 5 */")
        .await
        .unwrap();
    p.assert_pinned("user_variables", 1);
    p.interleave().await;
    let v: i64 = p.a.query_first("SELECT @v").await.unwrap().unwrap();
    assert_eq!(v, 5);
    let mode: String = p.a.query_first("SELECT @@sql_mode").await.unwrap().unwrap();
    assert_eq!(mode, "NO_ZERO_DATE");
    p.end_interleave().await;
}

/// Sessions `a` (the one whose state matters) and `other` through a proxy whose pool has 2
/// connections, with tables `t` and `u`.
struct Pair {
    backend: Backend,
    db: String,
    proxy: Proxy,
    a: mysql_async::Conn,
    other: mysql_async::Conn,
}

impl Pair {
    async fn new() -> Pair {
        let backend = one_backend();
        let db = testkit::unique_name("pin");
        let proxy = proxy_with_pool(&backend, &db, 2);
        let mut a = proxy.conn(Some("bank")).await;
        a.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
            .await
            .unwrap();
        a.query_drop("CREATE TABLE u (id INT PRIMARY KEY)")
            .await
            .unwrap();
        let other = proxy.conn(Some("bank")).await;
        Pair {
            backend,
            db,
            proxy,
            a,
            other,
        }
    }

    /// The other session takes a connection and keeps it (its transaction pins it): the idle
    /// one `a` would have released if it were not pinned. `a` then runs on its own connection
    /// only if it kept it.
    async fn interleave(&mut self) {
        self.other.query_drop("BEGIN").await.unwrap();
        self.other.query_drop("SELECT 1").await.unwrap();
    }

    async fn end_interleave(&mut self) {
        self.other.query_drop("COMMIT").await.unwrap();
    }

    /// `dbmesh_session_pinned{reason}`.
    /// Waits for the gauge to show `want` sessions pinned for `reason`: a session counts its
    /// pins after it has answered, so the answer can arrive first.
    fn assert_pinned(&self, reason: &str, want: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = self.pinned(reason);
        while got != want && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            got = self.pinned(reason);
        }
        assert_eq!(got, want, "sessions pinned for {reason}");
    }

    fn pinned(&self, reason: &str) -> i64 {
        let (_, metrics) = self.proxy.http("GET", "/metrics");
        let key = format!("dbmesh_session_pinned{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    }

    async fn count(&mut self) -> i64 {
        self.a
            .query_first("SELECT COUNT(*) FROM t")
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self
            .backend
            .sql(&format!("DROP DATABASE IF EXISTS `{}`", self.db));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_transaction_rows_are_seen_inside_only() {
    let mut p = Pair::new().await;
    p.a.query_drop("BEGIN").await.unwrap();
    p.a.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    p.assert_pinned("transaction", 1);
    p.interleave().await;
    let outside: i64 = p
        .other
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((p.count().await, outside), (1, 0));
    p.end_interleave().await;
    p.a.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(p.count().await, 0);
    p.assert_pinned("transaction", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_autocommit_off_keeps_the_transaction() {
    let mut p = Pair::new().await;
    p.a.query_drop("SET autocommit = 0").await.unwrap();
    p.a.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    p.interleave().await;
    assert_eq!(p.count().await, 1);
    p.end_interleave().await;
    p.a.query_drop("ROLLBACK").await.unwrap();
    p.a.query_drop("SET autocommit = 1").await.unwrap();
    assert_eq!(p.count().await, 0);
    p.assert_pinned("transaction", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_user_variables() {
    let mut p = Pair::new().await;
    p.a.query_drop("SET @x = 42").await.unwrap();
    p.a.query_drop("SELECT 7 INTO @y").await.unwrap();
    p.interleave().await;
    let vars: (i64, i64) = p.a.query_first("SELECT @x, @y").await.unwrap().unwrap();
    assert_eq!(vars, (42, 7));
    p.assert_pinned("user_variables", 1);
    p.end_interleave().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_temporary_tables() {
    let mut p = Pair::new().await;
    p.a.query_drop("CREATE TEMPORARY TABLE scratch (v INT)")
        .await
        .unwrap();
    p.a.query_drop("INSERT INTO scratch VALUES (5)")
        .await
        .unwrap();
    p.interleave().await;
    let v: i64 =
        p.a.query_first("SELECT v FROM scratch")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(v, 5);
    p.assert_pinned("temporary_tables", 1);
    p.end_interleave().await;
}

/// Only the connection holding a named lock can release it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_get_lock() {
    let mut p = Pair::new().await;
    let lock = p.db.clone();
    let got: i64 =
        p.a.query_first(format!("SELECT GET_LOCK('{lock}', 0)"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(got, 1);
    p.interleave().await;
    let released: i64 =
        p.a.query_first(format!("SELECT RELEASE_LOCK('{lock}')"))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(released, 1);
    p.assert_pinned("get_lock", 1);
    p.end_interleave().await;
}

/// Under LOCK TABLES, a table not locked cannot be read on the locking connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_lock_tables_until_unlock() {
    let mut p = Pair::new().await;
    p.a.query_drop("LOCK TABLES t READ").await.unwrap();
    p.interleave().await;
    let err = p.a.query_drop("SELECT * FROM u").await.unwrap_err();
    assert_eq!(server_code(err).0, 1100, "table u was not locked");
    p.assert_pinned("lock_tables", 1);
    p.end_interleave().await;
    p.a.query_drop("UNLOCK TABLES").await.unwrap();
    p.assert_pinned("lock_tables", 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn found_rows_of_sql_calc_found_rows_needs_no_pin() {
    let mut p = Pair::new().await;
    p.a.query_drop("INSERT INTO t VALUES (1), (2), (3), (4), (5)")
        .await
        .unwrap();
    let _: Vec<i64> =
        p.a.query("SELECT SQL_CALC_FOUND_ROWS id FROM t LIMIT 1")
            .await
            .unwrap();
    // The other client's statements on the one pooled connection change the backend's
    // FOUND_ROWS(); the session kept its own.
    p.interleave().await;
    p.end_interleave().await;
    let found: i64 =
        p.a.query_first("SELECT FOUND_ROWS()")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(found, 5);
}

/// `LAST_INSERT_ID(expr)` in a SELECT: only its connection knows the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_last_insert_id_expr() {
    let mut p = Pair::new().await;
    let _: Option<i64> = p.a.query_first("SELECT LAST_INSERT_ID(77)").await.unwrap();
    p.interleave().await;
    let id: i64 =
        p.a.query_first("SELECT LAST_INSERT_ID()")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(id, 77);
    p.assert_pinned("last_insert_id", 1);
    p.end_interleave().await;
}

/// Every step of an XA branch runs on the connection that started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_xa_until_commit() {
    let mut p = Pair::new().await;
    let xid = p.db.clone();
    p.a.query_drop(format!("XA START '{xid}'")).await.unwrap();
    p.a.query_drop("INSERT INTO u VALUES (9)").await.unwrap();
    p.a.query_drop(format!("XA END '{xid}'")).await.unwrap();
    p.a.query_drop(format!("XA PREPARE '{xid}'")).await.unwrap();
    // Prepared, the branch is no open transaction any more: only the XA pin keeps its
    // connection from the other session, and the commit must run where the branch is.
    p.assert_pinned("xa", 1);
    p.interleave().await;
    p.a.query_drop(format!("XA COMMIT '{xid}'")).await.unwrap();
    let committed: i64 =
        p.a.query_first("SELECT COUNT(*) FROM u WHERE id = 9")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(committed, 1);
    p.end_interleave().await;
    p.assert_pinned("xa", 0);
}

/// Parameter data sent with COM_STMT_SEND_LONG_DATA waits in the backend's statement: the
/// connection stays with the session until the execute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_long_data_until_execute() {
    let mut p = Pair::new().await;
    p.a.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    let stmt = p.a.prep("INSERT INTO blobs VALUES (?, ?)").await.unwrap();
    // mysql_async sends values above its long-data threshold with COM_STMT_SEND_LONG_DATA.
    let big = vec![b'z'; 4 << 20];
    p.a.exec_drop(&stmt, (1, big.clone())).await.unwrap();
    let len: i64 =
        p.a.query_first("SELECT LENGTH(b) FROM blobs WHERE id = 1")
            .await
            .unwrap()
            .unwrap();
    assert_eq!(len, big.len() as i64);
    p.assert_pinned("long_data", 0);
}

/// `SET TRANSACTION` without a scope applies to the session's next transaction only: that
/// transaction honours it, nobody else's statement does (the connection that carries it stays
/// with the session), and the transaction after it is back to the session's defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_next_transaction_characteristics() {
    let mut p = Pair::new().await;
    p.a.query_drop("SET TRANSACTION READ ONLY").await.unwrap();
    p.assert_pinned("next_transaction", 1);
    // Released to the pool, the connection would make the next borrower's write fail with
    // 1792 (a read-only transaction).
    p.other
        .query_drop("INSERT INTO u VALUES (1)")
        .await
        .unwrap();
    p.a.query_drop("BEGIN").await.unwrap();
    let err =
        p.a.query_drop("INSERT INTO t VALUES (1)")
            .await
            .unwrap_err();
    assert_eq!(
        server_code(err).0,
        1792,
        "the next transaction is read-only"
    );
    p.a.query_drop("ROLLBACK").await.unwrap();
    p.assert_pinned("next_transaction", 0);
    p.a.query_drop("BEGIN").await.unwrap();
    p.a.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    p.a.query_drop("COMMIT").await.unwrap();
    // A failed autocommitted write does not consume it, as on a server; the connection
    // stays with the session until a transaction ends.
    p.a.query_drop("SET TRANSACTION READ ONLY").await.unwrap();
    let err =
        p.a.query_drop("INSERT INTO t VALUES (3)")
            .await
            .unwrap_err();
    assert_eq!(server_code(err).0, 1792);
    let err =
        p.a.query_drop("INSERT INTO t VALUES (3)")
            .await
            .unwrap_err();
    assert_eq!(server_code(err).0, 1792);
    p.other
        .query_drop("INSERT INTO u VALUES (2)")
        .await
        .unwrap();
    p.a.query_drop("BEGIN").await.unwrap();
    p.a.query_drop("COMMIT").await.unwrap();
    p.a.query_drop("INSERT INTO t VALUES (4)").await.unwrap();
    p.other
        .query_drop("INSERT INTO u VALUES (3)")
        .await
        .unwrap();
    assert_eq!(p.count().await, 2);
    p.assert_pinned("next_transaction", 0);
}

/// Reads one response packet of the raw client.
async fn raw_packet(raw: &mut backend::BackendConn) -> bytes::BytesMut {
    raw.packets().read_packet(1 << 24).await.unwrap()
}

/// COM_STMT_FETCH of `rows` rows from statement `id`: the first column of each binary row as
/// a 32-bit integer, and the terminator's status flags.
async fn fetch(raw: &mut backend::BackendConn, id: u32, rows: u32) -> (Vec<i32>, u16) {
    use bytes::BufMut;
    raw.send_command_with(|b| {
        b.put_u8(protocol::constants::com::STMT_FETCH);
        b.put_u32_le(id);
        b.put_u32_le(rows);
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    loop {
        let packet = raw_packet(raw).await;
        match packet[0] {
            // A binary row: header, NULL bitmap (one byte for one column), the INT value.
            0x00 => ids.push(i32::from_le_bytes(packet[2..6].try_into().unwrap())),
            0xFE => return (ids, u16::from_le_bytes([packet[3], packet[4]])),
            other => panic!("unexpected packet {other:#x}: {packet:?}"),
        }
    }
}

/// A server-side cursor (COM_STMT_EXECUTE with a cursor flag, then COM_STMT_FETCH) lives on
/// the connection that opened it: the session keeps that connection while another session
/// takes the pool's other one, and fetches every row in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_cursor_fetches_from_the_connection_that_opened_it() {
    use bytes::BufMut;
    use protocol::constants::{com, status};
    let mut p = Pair::new().await;
    p.a.query_drop("INSERT INTO t VALUES (1), (2), (3), (4), (5)")
        .await
        .unwrap();
    // mysql_async cannot open cursors: a raw client speaks the protocol to the proxy.
    let mut raw = backend::BackendConn::connect(&backend::ConnectOptions::plaintext(
        "raw client",
        &format!("127.0.0.1:{}", p.proxy.port),
        common::USER,
        common::PASSWORD,
        Some("bank"),
    ))
    .await
    .unwrap();
    let id = raw.prepare("SELECT id FROM t ORDER BY id").await.unwrap();
    raw.send_command_with(|b| {
        b.put_u8(com::STMT_EXECUTE);
        b.put_u32_le(id);
        b.put_u8(1); // CURSOR_TYPE_READ_ONLY
        b.put_u32_le(1);
    })
    .await
    .unwrap();
    assert_eq!(raw_packet(&mut raw).await[..], [1], "one column");
    raw_packet(&mut raw).await; // its definition
    let end = raw_packet(&mut raw).await;
    assert_eq!(end[0], 0xFE);
    let flags = u16::from_le_bytes([end[3], end[4]]);
    assert_ne!(flags & status::CURSOR_EXISTS, 0, "a cursor is open");
    p.assert_pinned("cursor", 1);

    // The other session takes a connection and keeps it: released, the cursor's connection
    // would be the one it took.
    p.interleave().await;
    let (first, flags) = fetch(&mut raw, id, 2).await;
    assert_eq!((first, flags & status::LAST_ROW_SENT), (vec![1, 2], 0));
    let (rest, flags) = fetch(&mut raw, id, 10).await;
    assert_eq!(rest, vec![3, 4, 5]);
    assert_ne!(flags & status::LAST_ROW_SENT, 0);
    p.end_interleave().await;
}
