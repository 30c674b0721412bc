//! Global sequences through the proxy: `SELECT NEXTVAL(seq)`, `NEXT VALUE FOR`, the range
//! form, and errors; ids are unique across two proxies sharing one meta database. Sequences
//! filling a column: omitted / NULL / 0 ids filled in before routing (text and prepared),
//! `LAST_INSERT_ID()`, a table sharded by its generated id loaded by four proxies, a proxy
//! killed mid-load and restarted, an unreachable meta data source, a 32-bit range running out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{one_backend, passthrough_rules, server_code, Proxy};
use mysql_async::prelude::*;

/// `rules` for proxy number `number`: proxies sharing a meta data source each have their own
/// (it names their distributed transactions there; see `proxy.number`).
fn numbered(rules: &str, number: u32) -> String {
    assert!(rules.starts_with("[proxy]\n"), "rules begin with [proxy]");
    rules.replacen("[proxy]\n", &format!("[proxy]\nnumber = {number}\n"), 1)
}

fn rules(backend: &testkit::Backend, db: &str) -> String {
    passthrough_rules(backend, "bank", db, "meta_data_source = \"main\"")
        + "\n[sequences.order_seq]\nkind = \"segment\"\nstep = 100\n\n[sequences.event_seq]\nkind = \"snowflake\"\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextval_is_unique_across_proxies_and_reports_errors() {
    let backend = one_backend();
    let db = testkit::unique_name("seq");
    let a = Proxy::start(&numbered(&rules(&backend, &db), 1));
    let b = Proxy::start(&numbered(&rules(&backend, &db), 2));
    let mut ca = a.conn(Some("bank")).await;
    let mut cb = b.conn(Some("bank")).await;
    let mut seen = std::collections::HashSet::new();
    let mut last_a = 0u64;
    for _ in 0..300 {
        let x: u64 = ca
            .query_first("SELECT NEXTVAL(order_seq)")
            .await
            .unwrap()
            .unwrap();
        let y: u64 = cb
            .query_first("SELECT NEXT VALUE FOR order_seq")
            .await
            .unwrap()
            .unwrap();
        assert!(x > last_a, "ids from one proxy increase");
        last_a = x;
        assert!(seen.insert(x) && seen.insert(y), "duplicate id {x} or {y}");
    }
    let (first, last): (u64, u64) = ca
        .query_first("SELECT NEXTVAL(order_seq, 1000)")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last - first + 1, 1000);
    assert!((first..=last).all(|id| !seen.contains(&id)));
    // The range form is bounded (max_range, default 1000000), before the meta data source
    // is asked: one call cannot use up the sequence for every proxy.
    let err = ca
        .query_drop("SELECT NEXTVAL(order_seq, 1099511627776)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1105, "HY000".into()));
    let next: u64 = ca
        .query_first("SELECT NEXTVAL(order_seq, 1000000)")
        .await
        .unwrap()
        .map(|(_, last): (u64, u64)| last)
        .unwrap();
    assert!(next < 2_000_000, "{next}");
    let e1: u64 = ca
        .query_first("SELECT NEXTVAL(event_seq)")
        .await
        .unwrap()
        .unwrap();
    let e2: u64 = cb
        .query_first("SELECT NEXTVAL(event_seq)")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        e1, e2,
        "snowflake ids of two proxies (distinct leased worker ids)"
    );
    let err = ca
        .query_drop("SELECT NEXTVAL(no_such_seq)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (4091, "42S02".into()));
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// One MariaDB holding a logical database `shop`: `t_order` sharded by its generated id
/// (`order_id mod 4` over ds_0/ds_1 × t_order_0/t_order_1, filled by segment sequence
/// `order_seq`), `event` and `tiny` on the default data source ds_0, filled by a snowflake
/// sequence and by a segment sequence with only eight ids left below 2^31.
struct Shop {
    backend: testkit::Backend,
    prefix: String,
}

impl Shop {
    fn new(backend: testkit::Backend) -> Shop {
        Shop {
            backend,
            prefix: testkit::unique_name("gen"),
        }
    }

    /// The rule file; `order_step` ids are reserved per round trip to the meta data source.
    fn rules(&self, order_step: u32) -> String {
        let b = &self.backend;
        let mut rules = String::from(
            "[proxy]\ncreate_databases = true\nmeta_data_source = \"meta\"\n\n\
             [[users]]\nname = \"dbmesh\"\npassword = \"dbmesh\"\n\n\
             [schema]\nname = \"shop\"\ndefault_data_source = \"ds_0\"\n\n",
        );
        for (name, db) in [("meta", "meta"), ("ds_0", "0"), ("ds_1", "1")] {
            rules += &format!(
                "[data_sources.{name}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\
                 database = \"{}_{db}\"\n\n",
                b.address(),
                b.user(),
                b.password(),
                self.prefix
            );
        }
        rules + &format!(
            "[tables.t_order]\nkind = \"sharded\"\ncolumn = \"order_id\"\nalgorithm = \"mod\"\n\
             nodes = \"ds_{{0..1}}.t_order_{{0..1}}\"\n\n\
             [sequences.order_seq]\nkind = \"segment\"\ntable = \"t_order\"\n\
             column = \"order_id\"\nstep = {order_step}\n\n\
             [sequences.event_seq]\nkind = \"snowflake\"\ntable = \"event\"\ncolumn = \"event_id\"\n\n\
             [sequences.tiny_seq]\nkind = \"segment\"\ntable = \"tiny\"\ncolumn = \"id\"\n\
             start = 2147483640\nmax = 2147483647\nstep = 4\n"
        )
    }

    /// Runs SQL directly on the backend, in the database of data source ds_`ds`.
    fn direct(&self, ds: usize, sql: &str) -> String {
        self.backend
            .sql(&format!("USE `{}_{ds}`; {sql}", self.prefix))
            .unwrap()
    }

    /// `SELECT <what> FROM` every physical table of t_order, as one UNION ALL.
    fn every_order(&self, what: &str) -> String {
        (0..4)
            .map(|node| {
                format!(
                    "SELECT {what} FROM `{}_{}`.t_order_{}",
                    self.prefix,
                    node / 2,
                    node % 2
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    /// Rows of t_order (order_id, item) per node, read directly from the backend; asserts
    /// that every row is on the node its id maps to.
    fn orders_by_node(&self) -> Vec<Vec<(u64, String)>> {
        (0..4)
            .map(|node| {
                let rows: Vec<(u64, String)> = self
                    .direct(
                        node / 2,
                        &format!("SELECT order_id, item FROM t_order_{}", node % 2),
                    )
                    .lines()
                    .map(|l| {
                        let (id, item) = l.split_once('\t').unwrap();
                        (id.parse().unwrap(), item.to_owned())
                    })
                    .collect();
                for (id, item) in &rows {
                    assert_eq!(id % 4, node as u64, "{item} with id {id} is on node {node}");
                }
                rows
            })
            .collect()
    }

    /// (rows, distinct ids, rows off their shard) over every physical table of t_order.
    fn order_census(&self) -> (u64, u64, u64) {
        let misplaced: Vec<String> = (0..4)
            .map(|node| {
                format!(
                    "SELECT COUNT(*) AS n FROM `{}_{}`.t_order_{} WHERE MOD(order_id, 4) <> {node}",
                    self.prefix,
                    node / 2,
                    node % 2
                )
            })
            .collect();
        let out = self
            .backend
            .sql(&format!(
                "SELECT COUNT(*), COUNT(DISTINCT order_id) FROM ({}) u; SELECT SUM(n) FROM ({}) m",
                self.every_order("order_id"),
                misplaced.join(" UNION ALL ")
            ))
            .unwrap();
        let numbers: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        (numbers[0], numbers[1], numbers[2])
    }

    fn drop_all(&self) {
        for db in ["meta", "0", "1"] {
            let _ = self
                .backend
                .sql(&format!("DROP DATABASE IF EXISTS `{}_{db}`", self.prefix));
        }
    }
}

async fn last_insert_id(conn: &mut mysql_async::Conn) -> u64 {
    conn.query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filled_ids_route_rows_and_are_the_last_insert_id() {
    let shop = Shop::new(one_backend());
    let proxy = Proxy::start(&shop.rules(100));
    let mut conn = proxy.conn(Some("shop")).await;
    conn.query_drop(
        "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, item VARCHAR(20) NOT NULL)",
    )
    .await
    .unwrap();
    conn.query_drop("CREATE TABLE event (event_id BIGINT PRIMARY KEY, kind VARCHAR(20))")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE tiny (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();

    // Omitted, NULL, 0: one id each, reported in the OK packet and by LAST_INSERT_ID().
    let mut single = Vec::new();
    for (sql, item) in [
        ("INSERT INTO t_order (item) VALUES ('omitted')", "omitted"),
        (
            "INSERT INTO t_order (order_id, item) VALUES (NULL, 'null')",
            "null",
        ),
        (
            "INSERT INTO t_order (order_id, item) VALUES (0, 'zero')",
            "zero",
        ),
        ("INSERT INTO t_order SET item = 'set'", "set"),
    ] {
        conn.query_drop(sql).await.unwrap();
        let id = conn.last_insert_id().expect("an id in the OK packet");
        assert_eq!(last_insert_id(&mut conn).await, id, "{sql}");
        single.push((id, item.to_owned()));
    }
    // Multi-row: one id per row, LAST_INSERT_ID() the first, rows split by their ids' shards.
    let values: Vec<String> = (0..10).map(|i| format!("('multi {i}')")).collect();
    conn.query_drop(format!(
        "INSERT INTO t_order (item) VALUES {}",
        values.join(", ")
    ))
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 10);
    let first = conn.last_insert_id().unwrap();
    assert_eq!(last_insert_id(&mut conn).await, first);
    // An explicit id is kept and routed as given.
    conn.query_drop("INSERT INTO t_order (order_id, item) VALUES (7000001, 'explicit')")
        .await
        .unwrap();
    // Without a column list the ids go where the table's column order puts them.
    conn.query_drop("INSERT INTO t_order VALUES (NULL, 'no list'), (0, 'no list 2')")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 2);
    single.push((conn.last_insert_id().unwrap(), "no list".to_owned()));
    conn.exec_drop(
        "INSERT INTO t_order VALUES (?, ?)",
        (None::<u64>, "p no list"),
    )
    .await
    .unwrap();
    single.push((conn.last_insert_id().unwrap(), "p no list".to_owned()));
    // Prepared: `?` bound to NULL or 0, or the column omitted; executed twice (the backend
    // statement is prepared once, the ids are parameters).
    let mut prepared = Vec::new();
    for round in 0..2 {
        for (sql, id, item) in [
            (
                "INSERT INTO t_order (order_id, item) VALUES (?, ?)",
                None,
                "p-null",
            ),
            (
                "INSERT INTO t_order (order_id, item) VALUES (?, ?)",
                Some(0u64),
                "p-zero",
            ),
        ] {
            let item = format!("{item} {round}");
            conn.exec_drop(sql, (id, &item)).await.unwrap();
            prepared.push((conn.last_insert_id().unwrap(), item));
        }
        let item = format!("p-omitted {round}");
        conn.exec_drop(
            "INSERT INTO t_order (item) VALUES (?), (?)",
            (&item, "p-second"),
        )
        .await
        .unwrap();
        let id = conn.last_insert_id().unwrap();
        assert_eq!(last_insert_id(&mut conn).await, id);
        prepared.push((id, item));
    }
    // INSERT … SELECT without the filled column would insert rows without ids: refused.
    let err = conn
        .query_drop("INSERT INTO t_order (item) SELECT kind FROM event")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));

    let by_node = shop.orders_by_node();
    let all: Vec<&(u64, String)> = by_node.iter().flatten().collect();
    assert_eq!(all.len(), 4 + 10 + 1 + 3 + 2 * 4);
    let id_of = |item: &str| {
        all.iter()
            .find(|(_, i)| i == item)
            .map(|(id, _)| *id)
            .unwrap_or_else(|| panic!("{item} not found"))
    };
    for (id, item) in single.iter().chain(&prepared) {
        assert_eq!(id_of(item), *id, "{item}");
    }
    for i in 0..10u64 {
        assert_eq!(
            id_of(&format!("multi {i}")),
            first + i,
            "segment ids are consecutive"
        );
    }
    assert_eq!(id_of("explicit"), 7000001);
    let nodes_used = by_node.iter().filter(|rows| !rows.is_empty()).count();
    assert_eq!(nodes_used, 4, "ids spread over every shard");

    // A table on the default data source, filled by a snowflake sequence: on a fresh session
    // that used no other data source, LAST_INSERT_ID() is still the filled id.
    let mut fresh = proxy.conn(Some("shop")).await;
    fresh
        .query_drop("INSERT INTO event (kind) VALUES ('login'), ('logout')")
        .await
        .unwrap();
    let event_id = fresh.last_insert_id().unwrap();
    assert_eq!(last_insert_id(&mut fresh).await, event_id);
    assert!(event_id > 1 << 22, "a snowflake id: {event_id}");
    let stored = shop.direct(0, "SELECT event_id FROM event WHERE kind = 'login'");
    assert_eq!(stored.trim(), event_id.to_string());

    // A segment sequence for an INT column: its eight ids up to 2^31-1, then error 4084
    // and no row.
    for v in 0..8 {
        fresh
            .query_drop(format!("INSERT INTO tiny (v) VALUES ({v})"))
            .await
            .unwrap();
    }
    assert_eq!(fresh.last_insert_id(), Some(2147483647));
    let err = fresh
        .query_drop("INSERT INTO tiny (v) VALUES (8)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (4084, "HY000".into()));
    assert_eq!(
        shop.direct(0, "SELECT COUNT(*), MIN(id), MAX(id) FROM tiny")
            .trim(),
        "8\t2147483640\t2147483647"
    );

    // PyMySQL's and mysql-connector's lastrowid (text and prepared cursors).
    let script = r#"
import sys, pymysql, mysql.connector
port = int(sys.argv[1])
def check(cur, rowid, item):
    cur.execute("SELECT order_id FROM t_order WHERE item = %s", (item,))
    assert list(cur.fetchall()) == [(rowid,)], (item, rowid)
conn = pymysql.connect(host="127.0.0.1", port=port, user="dbmesh", password="dbmesh",
                       database="shop", autocommit=True)
cur = conn.cursor()
cur.execute("INSERT INTO t_order (item) VALUES ('pymysql'), ('pymysql 2')")
check(cur, cur.lastrowid, "pymysql")
conn = mysql.connector.connect(host="127.0.0.1", port=port, user="dbmesh", password="dbmesh",
                               database="shop", autocommit=True)
cur = conn.cursor(prepared=True)
cur.execute("INSERT INTO t_order (order_id, item) VALUES (%s, %s)", (None, "connector"))
rowid = cur.lastrowid
check(conn.cursor(), rowid, "connector")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &proxy.port.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    shop.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_meta_data_source_is_a_clear_error() {
    let backend = one_backend();
    let db = testkit::unique_name("seqdown");
    // The meta data source is a port nothing listens on.
    let rules = passthrough_rules(&backend, "bank", &db, "meta_data_source = \"meta\"")
        + "\n[data_sources.meta]\naddress = \"127.0.0.1:1\"\nuser = \"root\"\ndatabase = \"meta\"\n\
           \n[sequences.ledger_seq]\nkind = \"segment\"\ntable = \"ledger\"\ncolumn = \"id\"\n";
    let proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE ledger (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = conn
        .query_drop("INSERT INTO ledger (note) VALUES ('x')")
        .await
        .unwrap_err();
    let message = err.to_string();
    assert_eq!(server_code(err), (1105, "HY000".into()));
    assert!(
        message.contains("'meta'") || message.contains(" meta"),
        "names the data source: {message}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        backend
            .sql(&format!("SELECT COUNT(*) FROM `{db}`.ledger"))
            .unwrap()
            .trim(),
        "0"
    );
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// Rows per multi-row INSERT of the load tests.
const BATCH: usize = 250;

/// `statements` INSERTs of `BATCH` rows without the id column, tagged `(proxy, task)`;
/// returns the rows the proxy acknowledged (it stops at the first error).
async fn insert_load(
    opts: mysql_async::OptsBuilder,
    proxy: u32,
    task: u32,
    statements: Option<usize>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    let row = format!("({proxy}, {task})");
    let sql = format!(
        "INSERT INTO t_order (proxy, task) VALUES {}",
        vec![row.as_str(); BATCH].join(",")
    );
    let mut acked = 0;
    let mut done = 0;
    while statements.is_none_or(|n| done < n) && !stop.load(Ordering::Relaxed) {
        if conn.query_drop(&sql).await.is_err() {
            break;
        }
        acked += conn.affected_rows();
        done += 1;
    }
    acked
}

const LOAD_TABLE: &str =
    "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, proxy TINYINT NOT NULL, task TINYINT NOT NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_proxies_insert_a_million_rows_with_unique_ids_on_their_shards() {
    const PROXIES: u32 = 4;
    const TASKS: u32 = 8;
    const ROWS: usize = 1_000_000;
    let shop = Shop::new(one_backend());
    let rules = shop.rules(1000);
    let proxies: Vec<Proxy> = (0..PROXIES)
        .map(|n| Proxy::start(&numbered(&rules, n)))
        .collect();
    proxies[0]
        .conn(Some("shop"))
        .await
        .query_drop(LOAD_TABLE)
        .await
        .unwrap();
    let per_task = ROWS / BATCH / (PROXIES * TASKS) as usize;
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (p, proxy) in proxies.iter().enumerate() {
        for t in 0..TASKS {
            let opts = proxy.opts(Some("shop"));
            tasks.push(tokio::spawn(insert_load(
                opts,
                p as u32,
                t,
                Some(per_task),
                stop.clone(),
            )));
        }
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let statements = ROWS / BATCH;
    println!(
        "{PROXIES} proxies x {TASKS} clients: {ROWS} rows in {statements} INSERTs of {BATCH} rows \
         in {elapsed:.2} s: {:.0} rows/s, {:.0} statements/s",
        ROWS as f64 / elapsed,
        statements as f64 / elapsed
    );
    assert_eq!(acked, ROWS as u64, "every statement succeeded");
    let (rows, distinct, misplaced) = shop.order_census();
    assert_eq!(rows, ROWS as u64, "row count on the backends");
    assert_eq!(distinct, rows, "every id is unique");
    assert_eq!(misplaced, 0, "every row is on the shard its id maps to");
    shop.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_killed_mid_load_and_restarted_reuses_no_id() {
    let shop = Shop::new(one_backend());
    let rules = shop.rules(100);
    let mut victim = Some(Proxy::start(&numbered(&rules, 1)));
    let survivor = Proxy::start(&numbered(&rules, 2));
    let mut conn = survivor.conn(Some("shop")).await;
    conn.query_drop(LOAD_TABLE).await.unwrap();
    conn.query_drop("CREATE TABLE event (event_id BIGINT PRIMARY KEY, proxy TINYINT NOT NULL)")
        .await
        .unwrap();
    let events = |proxy: &Proxy, tag: u32| {
        let opts = proxy.opts(Some("shop"));
        async move {
            let mut c = mysql_async::Conn::new(opts).await.unwrap();
            let rows = vec![format!("({tag})"); 200].join(",");
            c.query_drop(format!("INSERT INTO event (proxy) VALUES {rows}"))
                .await
                .unwrap();
        }
    };
    let load = |proxy: &Proxy, tag: u32, stop: &Arc<AtomicBool>| -> Vec<_> {
        (0..2)
            .map(|t| {
                tokio::spawn(insert_load(
                    proxy.opts(Some("shop")),
                    tag,
                    t,
                    None,
                    stop.clone(),
                ))
            })
            .collect()
    };
    // Proxy 0 (the victim) and 1 (the survivor) insert; the victim is killed mid-load.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_victim = Arc::new(AtomicBool::new(false));
    events(victim.as_ref().unwrap(), 0).await;
    let victim_tasks = load(victim.as_ref().unwrap(), 0, &stop_victim);
    let survivor_tasks = load(&survivor, 1, &stop);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    drop(victim.take()); // SIGKILL: no clean shutdown, blocks and lease left behind
    let mut acked = 0;
    for t in victim_tasks {
        acked += t.await.unwrap();
    }
    assert!(acked > 0, "the victim inserted before it was killed");
    // Restarted on the same rules (tag 2), it continues next to the survivor.
    let restarted = Proxy::start(&numbered(&rules, 1));
    events(&restarted, 2).await;
    let restarted_tasks = load(&restarted, 2, &stop);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for t in survivor_tasks.into_iter().chain(restarted_tasks) {
        acked += t.await.unwrap();
    }

    let (rows, distinct, misplaced) = shop.order_census();
    assert_eq!(distinct, rows, "no id was handed out twice");
    assert_eq!(misplaced, 0);
    // A statement in flight when the victim died may have committed without an answer.
    assert!(
        (acked..=acked + 2 * BATCH as u64).contains(&rows),
        "{rows} rows for {acked} acknowledged"
    );
    let range = |tag: u32| -> (u64, u64) {
        let out = shop
            .backend
            .sql(&format!(
                "SELECT MIN(order_id), MAX(order_id) FROM ({}) u WHERE proxy = {tag}",
                shop.every_order("order_id, proxy")
            ))
            .unwrap();
        let (lo, hi) = out.trim().split_once('\t').unwrap();
        (lo.parse().unwrap(), hi.parse().unwrap())
    };
    let (_, victim_max) = range(0);
    let (restarted_min, _) = range(2);
    assert!(
        restarted_min > victim_max,
        "the restarted proxy starts above every block reserved before: {restarted_min} <= {victim_max}"
    );
    // Snowflake ids: the dead proxy's worker-id lease has not expired, so the restarted one
    // leases another worker id.
    let workers = shop.direct(
        0,
        "SELECT proxy, COUNT(*), COUNT(DISTINCT event_id), MIN((event_id >> 12) & 1023), \
         MAX((event_id >> 12) & 1023) FROM event GROUP BY proxy ORDER BY proxy",
    );
    let lines: Vec<Vec<&str>> = workers.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{workers}");
    for l in &lines {
        assert_eq!((l[1], l[2]), ("200", "200"), "{workers}");
        assert_eq!(l[3], l[4], "one worker id per proxy: {workers}");
    }
    assert_ne!(lines[0][3], lines[1][3], "distinct worker ids: {workers}");
    shop.drop_all();
}
