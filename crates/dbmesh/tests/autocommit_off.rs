//! Sessions with autocommit off (PyMySQL's default, SQLAlchemy, JDBC pools): a session keeps
//! its backend connections only while a transaction is actually open, as the servers report
//! it (`SERVER_STATUS_IN_TRANS`), and a transaction opened implicitly keeps its snapshot on
//! every shard it touched until COMMIT or ROLLBACK.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{one_backend, passthrough_rules, Proxy, RawClient};
use mysql_async::prelude::*;

const IN_TRANS: u16 = 0x0001;
const AUTOCOMMIT: u16 = 0x0002;

/// `dbmesh_session_pinned{reason}` once it equals `want`, or what it is after 10 s: a session
/// counts its pins after it has answered, so the answer can arrive first.
fn pinned(proxy: &Proxy, reason: &str, want: i64) -> i64 {
    let key = format!("dbmesh_session_pinned{{reason=\"{reason}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = proxy.http("GET", "/metrics");
        let got = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"));
        if got == want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status flags of a response's last packet (an OK, or a classic EOF).
fn status_of(last: &[u8]) -> u16 {
    match last[0] {
        0xfe => u16::from_le_bytes([last[3], last[4]]),
        0x00 => {
            // Skip the affected rows and last insert id (length-encoded integers).
            let mut at = 1;
            for _ in 0..2 {
                at += match last[at] {
                    0xfc => 3,
                    0xfd => 4,
                    0xfe => 9,
                    _ => 1,
                };
            }
            u16::from_le_bytes([last[at], last[at + 1]])
        }
        _ => panic!("no status in an error: {:?}", String::from_utf8_lossy(last)),
    }
}

/// 300 PyMySQL clients with its defaults (autocommit off, sent at connect) on a pool of 16
/// connections: all connected at once, each runs a read, a write and a COMMIT, then waits
/// for the others while staying connected. Pinned from connect to close, the 17th client
/// would wait for a connection no session gives back and fail; following the servers'
/// transaction state, every client succeeds and the idle sessions hold nothing.
#[test]
fn pymysql_default_clients_share_a_small_pool() {
    let backend = one_backend();
    let db = testkit::unique_name("acoff");
    let rules = passthrough_rules(&backend, "bank", &db, "")
        + "\n[data_sources.main.pool]\nmax = 16\nacquire_timeout_ms = 20000\n";
    let proxy = Proxy::start(&rules);
    let setup = r#"
import sys, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="dbmesh", password="dbmesh", database="bank")
cur = c.cursor()
cur.execute("CREATE TABLE hits (id INT PRIMARY KEY, n INT)")
cur.executemany("INSERT INTO hits VALUES (%s, 0)", [(i,) for i in range(300)])
c.commit()
"#;
    run_python(setup, &proxy, &[]);
    // Each client: connect (PyMySQL sends SET AUTOCOMMIT = 0), read, write, commit; then all
    // of them stay connected and idle until the parent reads the proxy's metrics (the file
    // `release` appears), so the idle sessions are counted with every client still there.
    let clients = r#"
import sys, os, time, threading, pymysql
port, n, ready, release = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
errors, conns, lock = [], [], threading.Lock()
connected = threading.Barrier(n)
def client(i):
    try:
        c = pymysql.connect(host="127.0.0.1", port=port, user="dbmesh", password="dbmesh",
                            database="bank", connect_timeout=60, read_timeout=60)
        connected.wait(120)
        cur = c.cursor()
        cur.execute("SELECT @@autocommit")
        assert cur.fetchone() == (0,), "autocommit"
        cur.execute("SELECT n FROM hits WHERE id = %s", (i,))
        (n0,) = cur.fetchone()
        cur.execute("UPDATE hits SET n = n + 1 WHERE id = %s", (i,))
        assert c.get_server_info() and c.server_status & 1, "in a transaction before COMMIT"
        c.commit()
        assert not c.server_status & 1, "no transaction after COMMIT"
        cur.execute("SELECT n FROM hits WHERE id = %s", (i,))
        assert cur.fetchone() == (n0 + 1,)
        c.commit()
        with lock:
            conns.append(c)
    except Exception as e:
        with lock:
            errors.append(f"client {i}: {e!r}")
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads: t.start()
for t in threads: t.join()
open(ready, "w").write(str(len(conns)))
deadline = time.time() + 120
while not os.path.exists(release) and time.time() < deadline:
    time.sleep(0.05)
for c in conns: c.close()
if errors:
    print(len(errors), "clients failed:", "\n".join(errors[:10]))
    sys.exit(1)
"#;
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let release = dir.path().join("release");
    let mut child = std::process::Command::new("python3")
        .args(["-c", clients, &proxy.port.to_string(), "300"])
        .arg(&ready)
        .arg(&release)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !ready.exists() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let connected = std::fs::read_to_string(&ready).unwrap_or_default();
    let (_, metrics) = proxy.http("GET", "/metrics");
    let transaction_pins = pinned(&proxy, "transaction", 0);
    std::fs::write(&release, "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        proxy.log()
    );
    assert_eq!(connected, "300", "clients done and still connected");
    assert_eq!(
        transaction_pins, 0,
        "idle sessions after COMMIT hold nothing"
    );
    let open: i64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("dbmesh_backend_connections{data_source=\"main\",state=\"open\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no open backend connections in {metrics}"));
    assert!(
        (1..=16).contains(&open),
        "the pool's 16 connections served them all: {open}"
    );
    let total: String = backend
        .sql(&format!("SELECT SUM(n) FROM `{db}`.hits"))
        .unwrap();
    assert_eq!(total.trim(), "300");
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

fn run_python(script: &str, proxy: &Proxy, args: &[&str]) {
    let out = std::process::Command::new("python3")
        .args(["-c", script, &proxy.port.to_string()])
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A table sharded over four data sources on two servers, one row per shard.
struct Shards {
    /// Dropped (killed) first, so no transaction of its sessions holds a lock that the
    /// databases' DROP would wait for.
    proxy: Proxy,
    _databases: Databases,
}

/// Drops the test's databases.
struct Databases {
    servers: Vec<testkit::Backend>,
    dbs: Vec<String>,
}

impl Shards {
    async fn new() -> Shards {
        let servers = testkit::backends(2).expect("two MariaDB servers");
        let prefix = testkit::unique_name("acoff");
        let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
        let rules = common::four_data_sources(&servers, "bank", &dbs)
            + "[tables.acct]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
               nodes = \"ds_{0..3}.acct\"\n";
        let proxy = Proxy::start(&rules);
        let mut setup = proxy.conn(Some("bank")).await;
        setup
            .query_drop("CREATE TABLE acct (id INT PRIMARY KEY, v INT)")
            .await
            .unwrap();
        setup
            .query_drop("INSERT INTO acct VALUES (0, 10), (1, 10), (2, 10), (3, 10)")
            .await
            .unwrap();
        Shards {
            proxy,
            _databases: Databases { servers, dbs },
        }
    }

    async fn total(conn: &mut mysql_async::Conn) -> i64 {
        conn.query_first("SELECT SUM(v) FROM acct")
            .await
            .unwrap()
            .unwrap()
    }
}

impl Drop for Databases {
    fn drop(&mut self) {
        for (i, db) in self.dbs.iter().enumerate() {
            let _ = self.servers[i / 2].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

/// With autocommit off, a read on every shard opens a REPEATABLE READ transaction on each:
/// another session's committed writes on two shards stay invisible to it until COMMIT, and
/// the transaction pins the session only while it is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implicit_transaction_keeps_its_snapshot_on_every_shard() {
    let s = Shards::new().await;
    let mut a = s.proxy.conn(Some("bank")).await;
    let mut b = s.proxy.conn(Some("bank")).await;
    a.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(pinned(&s.proxy, "transaction", 0), 0, "no transaction yet");
    let in_trans: (i64, i64) = a
        .query_first("SELECT @@autocommit, @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_trans, (0, 0));
    assert_eq!(Shards::total(&mut a).await, 40);
    assert_eq!(pinned(&s.proxy, "transaction", 1), 1, "the read opened one");
    // Rows 1 and 2: ds_1 on the first server, ds_2 on the second.
    b.query_drop("UPDATE acct SET v = v + 5 WHERE id IN (1, 2)")
        .await
        .unwrap();
    assert_eq!(Shards::total(&mut b).await, 50);
    assert_eq!(Shards::total(&mut a).await, 40, "a's snapshot holds");
    let v: Vec<i64> = a.query("SELECT v FROM acct WHERE id = 2").await.unwrap();
    assert_eq!(v, [10]);
    let in_trans: i64 = a
        .query_first("SELECT @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_trans, 1);
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(pinned(&s.proxy, "transaction", 0), 0, "COMMIT ended it");
    assert_eq!(Shards::total(&mut a).await, 50, "a new snapshot");
    a.query_drop("ROLLBACK").await.unwrap();
    // A statement that opens no transaction keeps nothing.
    a.query_drop("SELECT 1").await.unwrap();
    assert_eq!(pinned(&s.proxy, "transaction", 0), 0);
}

/// The same through the prepared protocol, and a write: uncommitted, it is seen inside the
/// transaction only; after ROLLBACK it is gone, and after COMMIT everyone sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_follow_the_implicit_transaction() {
    let s = Shards::new().await;
    let mut a = s.proxy.conn(Some("bank")).await;
    let mut b = s.proxy.conn(Some("bank")).await;
    a.query_drop("SET autocommit = 0").await.unwrap();
    let read = "SELECT v FROM acct WHERE id = ?";
    let first: i64 = a.exec_first(read, (3,)).await.unwrap().unwrap();
    assert_eq!(first, 10);
    assert_eq!(pinned(&s.proxy, "transaction", 1), 1);
    b.exec_drop("UPDATE acct SET v = 20 WHERE id = ?", (3,))
        .await
        .unwrap();
    let again: i64 = a.exec_first(read, (3,)).await.unwrap().unwrap();
    assert_eq!(again, 10, "the snapshot holds for prepared reads");
    a.exec_drop("UPDATE acct SET v = v + 1 WHERE id = ?", (0,))
        .await
        .unwrap();
    let outside: i64 = b.exec_first(read, (0,)).await.unwrap().unwrap();
    assert_eq!(outside, 10, "uncommitted");
    a.query_drop("ROLLBACK").await.unwrap();
    assert_eq!(pinned(&s.proxy, "transaction", 0), 0);
    let inside: i64 = a.exec_first(read, (0,)).await.unwrap().unwrap();
    assert_eq!(inside, 10, "rolled back");
    a.exec_drop("UPDATE acct SET v = v + 1 WHERE id = ?", (0,))
        .await
        .unwrap();
    a.query_drop("COMMIT").await.unwrap();
    assert_eq!(pinned(&s.proxy, "transaction", 0), 0);
    let committed: i64 = b.exec_first(read, (0,)).await.unwrap().unwrap();
    assert_eq!(committed, 11);
    let now: i64 = a.exec_first(read, (3,)).await.unwrap().unwrap();
    assert_eq!(now, 20, "a new transaction, a new snapshot");
    a.query_drop("COMMIT").await.unwrap();
}

/// The status flags a client sees are the server's: autocommit off in every answer, "in
/// transaction" from the statement that opened one until COMMIT, also on answers from a
/// shard the transaction had not touched yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_flags_follow_the_implicit_transaction() {
    let s = Shards::new().await;
    let port = s.proxy.port;
    tokio::task::spawn_blocking(move || {
        let mut c = RawClient::login(port, Some("bank"));
        let flags = |c: &mut RawClient, sql: &str| status_of(&c.query(sql));
        assert_eq!(
            flags(&mut c, "SET autocommit = 0") & (IN_TRANS | AUTOCOMMIT),
            0
        );
        assert_eq!(
            flags(&mut c, "SELECT 1") & IN_TRANS,
            0,
            "no table, no transaction"
        );
        assert_eq!(
            flags(&mut c, "SELECT v FROM acct WHERE id = 1") & IN_TRANS,
            IN_TRANS
        );
        assert_eq!(
            flags(&mut c, "SELECT v FROM acct WHERE id = 2") & IN_TRANS,
            IN_TRANS,
            "a shard joining the open transaction"
        );
        assert_eq!(flags(&mut c, "SELECT 1") & IN_TRANS, IN_TRANS);
        assert_eq!(flags(&mut c, "COMMIT") & (IN_TRANS | AUTOCOMMIT), 0);
        assert_eq!(flags(&mut c, "SET autocommit = 1") & AUTOCOMMIT, AUTOCOMMIT);
    })
    .await
    .unwrap();
}
