//! SHOW TABLES lists a table of the rules exactly when it exists, as information_schema.TABLES
//! does, in both protocols; a table whose physical tables only partly exist (a DDL fan-out
//! that half failed) is reported (warning, metric, `dbmesh check --connect`) and repaired by
//! CREATE TABLE IF NOT EXISTS / DROP TABLE IF EXISTS through the proxy.
//!
//! One server, three data sources with an uneven layout: `payment` has three shards on ds_0,
//! one on ds_1 and two on ds_2; `account` lives on ds_1 and ds_2 only; `ledger` and
//! `currency` are never created; `audit` is created by hand on some shards only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{server_code, Proxy, PASSWORD, USER};
use mysql_async::prelude::*;

struct Cluster {
    backend: testkit::Backend,
    dbs: Vec<String>,
    rules: String,
    proxy: Proxy,
}

fn cluster() -> Cluster {
    let backend = common::one_backend();
    let prefix = testkit::unique_name("shows");
    let dbs: Vec<String> = (0..3).map(|i| format!("{prefix}_{i}")).collect();
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\n\n[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    for (i, db) in dbs.iter().enumerate() {
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n",
            backend.address(),
            backend.user(),
            backend.password()
        );
    }
    rules += "[tables.payment]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = [\"ds_0.payment_{0..2}\", \"ds_1.payment_3\", \"ds_2.payment_{4..5}\"]\n\n\
              [tables.account]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = \"ds_{1..2}.account_{0..1}\"\n\n\
              [tables.ledger]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = \"ds_{0..2}.ledger\"\n\n\
              [tables.audit]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = \"ds_{0..2}.audit_0\"\n\n\
              [tables.currency]\nkind = \"broadcast\"\n\n\
              [tables.branch]\nkind = \"single\"\ndata_source = \"ds_2\"\n";
    let proxy = Proxy::start(&rules);
    Cluster {
        backend,
        dbs,
        rules,
        proxy,
    }
}

impl Cluster {
    fn direct(&self, ds: usize, sql: &str) {
        self.backend
            .sql(&format!("USE `{}`; {sql}", self.dbs[ds]))
            .unwrap();
    }

    /// `dbmesh check --connect` on the cluster's rule file: its stderr.
    fn check_connect(&self) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(&path, &self.rules).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbmesh"))
            .args(["check", "--connect", "--config", path.to_str().unwrap()])
            .output()
            .expect("run dbmesh");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for db in &self.dbs {
            let _ = self.backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

/// SHOW's first column's name and the rows' first values, in the text protocol.
async fn shown(conn: &mut mysql_async::Conn, sql: &str) -> (String, Vec<String>) {
    let mut result = conn.query_iter(sql).await.unwrap();
    let header = result
        .columns()
        .map(|c| c[0].name_str().into_owned())
        .unwrap_or_default();
    let rows: Vec<mysql_async::Row> = result.collect().await.unwrap();
    let names = rows
        .iter()
        .map(|r| r.get::<String, _>(0).unwrap())
        .collect();
    (header, names)
}

/// The same through a prepared statement (the binary protocol).
async fn shown_prepared(conn: &mut mysql_async::Conn, sql: &str) -> (String, Vec<String>) {
    let stmt = conn.prep(sql).await.unwrap();
    let header = stmt.columns()[0].name_str().into_owned();
    let rows: Vec<mysql_async::Row> = conn.exec(&stmt, ()).await.unwrap();
    let names = rows
        .iter()
        .map(|r| r.get::<String, _>(0).unwrap())
        .collect();
    (header, names)
}

/// information_schema.TABLES' names for the logical schema.
async fn information_schema(conn: &mut mysql_async::Conn) -> Vec<String> {
    conn.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank' \
         ORDER BY TABLE_NAME",
    )
    .await
    .unwrap()
}

async fn warnings(conn: &mut mysql_async::Conn) -> Vec<(String, u16, String)> {
    conn.query("SHOW WARNINGS").await.unwrap()
}

/// SQLAlchemy 1.4's `has_table` and Rails' `table_exists?` ask information_schema; SQLAlchemy
/// 2's asks `DESCRIBE` and reads 1146 as "no".
async fn has_table(conn: &mut mysql_async::Conn, table: &str) -> bool {
    let counted: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND \
             table_name = ?",
            ("bank", table),
        )
        .await
        .unwrap()
        .unwrap();
    let described = match conn.query_drop(format!("DESCRIBE `bank`.`{table}`")).await {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(server_code(e).0, 1146, "DESCRIBE {table}");
            false
        }
    };
    assert_eq!(counted == 1, described, "{table}");
    described
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tables_lists_the_tables_that_exist() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;

    // Nothing created yet: nothing listed, however asked.
    for sql in [
        "SHOW TABLES",
        "SHOW FULL TABLES",
        "SHOW FULL TABLES FROM bank",
    ] {
        assert_eq!(shown(&mut conn, sql).await.1, Vec::<String>::new(), "{sql}");
        assert_eq!(shown_prepared(&mut conn, sql).await.1, Vec::<String>::new());
    }
    assert!(information_schema(&mut conn).await.is_empty());
    assert!(!has_table(&mut conn, "payment").await);

    for sql in [
        "CREATE TABLE payment (id BIGINT PRIMARY KEY, amount DECIMAL(12,2))",
        "CREATE TABLE account (id BIGINT PRIMARY KEY, name VARCHAR(40))",
        "CREATE TABLE branch (id INT PRIMARY KEY)",
        "CREATE TABLE notes (id INT PRIMARY KEY)",
        "CREATE VIEW notes_view AS SELECT id FROM notes",
    ] {
        conn.query_drop(sql).await.unwrap();
    }
    let all = ["account", "branch", "notes", "notes_view", "payment"];
    for sql in [
        "SHOW TABLES",
        "SHOW FULL TABLES",
        "show full tables in bank;",
    ] {
        let (header, names) = shown(&mut conn, sql).await;
        assert_eq!(header, "Tables_in_bank", "{sql}");
        assert_eq!(names, all, "{sql}");
        assert_eq!(shown_prepared(&mut conn, sql).await, (header, names));
        assert_eq!(conn.get_warnings(), 0);
    }
    assert_eq!(information_schema(&mut conn).await, all);
    assert!(has_table(&mut conn, "payment").await);
    assert!(has_table(&mut conn, "account").await);
    assert!(!has_table(&mut conn, "ledger").await);
    assert!(!has_table(&mut conn, "currency").await);

    // Table_type as MariaDB gives it.
    let full: Vec<(String, String)> = conn.query("SHOW FULL TABLES").await.unwrap();
    assert_eq!(
        full.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(),
        [
            "BASE TABLE",
            "BASE TABLE",
            "BASE TABLE",
            "VIEW",
            "BASE TABLE"
        ]
    );

    // LIKE: the logical database in the header, the pattern as written.
    for (sql, header, want) in [
        (
            "SHOW TABLES LIKE 'pay%'",
            "Tables_in_bank (pay%)",
            &["payment"][..],
        ),
        ("SHOW TABLES LIKE 'ledger'", "Tables_in_bank (ledger)", &[]),
        (
            "SHOW FULL TABLES FROM bank LIKE '%o%'",
            "Tables_in_bank (%o%)",
            &["account", "notes", "notes_view"],
        ),
    ] {
        for (h, names) in [
            shown(&mut conn, sql).await,
            shown_prepared(&mut conn, sql).await,
        ] {
            assert_eq!(h, header, "{sql}");
            assert_eq!(names, want, "{sql}");
        }
    }

    // WHERE: on the logical column names, over every table, rules' included.
    for (sql, want) in [
        (
            "SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'",
            &["account", "branch", "notes", "payment"][..],
        ),
        (
            "SHOW FULL TABLES WHERE Table_type = 'VIEW'",
            &["notes_view"],
        ),
        (
            "SHOW TABLES FROM bank WHERE Tables_in_bank IN ('account', 'ledger', 'notes')",
            &["account", "notes"],
        ),
        (
            "SHOW TABLES WHERE Tables_in_bank LIKE 'pay%';",
            &["payment"],
        ),
    ] {
        let (h, names) = shown(&mut conn, sql).await;
        assert_eq!(h, "Tables_in_bank", "{sql}");
        assert_eq!(names, want, "{sql}");
        assert_eq!(shown_prepared(&mut conn, sql).await.1, want, "{sql}");
    }
    // As on MariaDB, SHOW TABLES (not FULL) has no Table_type to filter on.
    let err = conn
        .query_drop("SHOW TABLES WHERE Table_type = 'VIEW'")
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1054);

    // Dropped through the proxy: gone from both.
    conn.query_drop("DROP TABLE account").await.unwrap();
    assert_eq!(
        shown(&mut conn, "SHOW TABLES").await.1,
        ["branch", "notes", "notes_view", "payment"]
    );
    assert_eq!(
        information_schema(&mut conn).await,
        ["branch", "notes", "notes_view", "payment"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_created_table_is_reported_and_repaired() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    let definition = "(id BIGINT PRIMARY KEY, what VARCHAR(40))";
    let metric = |c: &Cluster| {
        let (_, metrics) = c.proxy.http("GET", "/metrics");
        metrics
            .lines()
            .find(|l| l.starts_with("dbmesh_table_physical_missing{table=\"audit\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };

    // A fan-out that reached ds_1 only: the physical table standing for it (on ds_0) is
    // missing, so the table does not exist, as information_schema says, with a warning.
    c.direct(1, &format!("CREATE TABLE audit_0 {definition}"));
    let (_, names) = shown(&mut conn, "SHOW TABLES").await;
    assert!(!names.contains(&"audit".to_string()), "{names:?}");
    assert_eq!(conn.get_warnings(), 1);
    let listed = warnings(&mut conn).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let (level, code, message) = &listed[0];
    assert_eq!((level.as_str(), *code), ("Warning", 1146));
    assert!(
        message.contains("'bank.audit' is missing on 2 of its 3 physical tables"),
        "{message}"
    );
    assert!(!message.contains(&c.dbs[0]), "no physical names: {message}");
    assert!(!information_schema(&mut conn)
        .await
        .contains(&"audit".into()));
    assert_eq!(metric(&c).as_deref(), Some("2"));
    let (_, names) = shown_prepared(&mut conn, "SHOW FULL TABLES").await;
    assert!(!names.contains(&"audit".to_string()));
    assert_eq!(warnings(&mut conn).await.len(), 1);

    // Now on ds_0 too: it exists, still with a warning; check --connect names the missing one.
    c.direct(0, &format!("CREATE TABLE audit_0 {definition}"));
    assert_eq!(
        shown(&mut conn, "SHOW TABLES LIKE 'aud%'").await.1,
        ["audit"]
    );
    assert_eq!(conn.get_warnings(), 1);
    assert!(information_schema(&mut conn)
        .await
        .contains(&"audit".into()));
    assert_eq!(metric(&c).as_deref(), Some("1"));
    let report = c.check_connect();
    assert!(
        report.contains("audit_0") && report.contains("missing"),
        "{report}"
    );

    // CREATE TABLE IF NOT EXISTS through the proxy creates the missing one.
    conn.query_drop(format!("CREATE TABLE IF NOT EXISTS audit {definition}"))
        .await
        .unwrap();
    assert_eq!(
        shown(&mut conn, "SHOW TABLES LIKE 'aud%'").await.1,
        ["audit"]
    );
    assert_eq!(conn.get_warnings(), 0);
    assert!(warnings(&mut conn).await.is_empty());
    assert_eq!(metric(&c).as_deref(), Some("0"));
    conn.query_drop("INSERT INTO audit (id, what) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();

    // A DROP that reached ds_0 only: not listed, warned; DROP TABLE IF EXISTS finishes it.
    c.direct(0, "DROP TABLE audit_0");
    assert!(!shown(&mut conn, "SHOW TABLES")
        .await
        .1
        .contains(&"audit".to_string()));
    assert_eq!(conn.get_warnings(), 1);
    assert_eq!(metric(&c).as_deref(), Some("1"));
    conn.query_drop("DROP TABLE IF EXISTS audit").await.unwrap();
    assert!(!shown(&mut conn, "SHOW TABLES")
        .await
        .1
        .contains(&"audit".to_string()));
    assert_eq!(conn.get_warnings(), 0);
    assert_eq!(metric(&c).as_deref(), Some("0"));
    for ds in 0..3 {
        let left = c
            .backend
            .sql(&format!(
                "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}' \
                 AND TABLE_NAME = 'audit_0'",
                c.dbs[ds]
            ))
            .unwrap();
        assert_eq!(left.trim(), "0", "ds_{ds}");
    }
}

/// `payment`'s physical tables in [`cluster`]'s layout: (data source, table).
const PAYMENT_TABLES: [(usize, &str); 6] = [
    (0, "payment_0"),
    (0, "payment_1"),
    (0, "payment_2"),
    (1, "payment_3"),
    (2, "payment_4"),
    (2, "payment_5"),
];

/// `(Name, Rows, Data_length, Index_length)` of SHOW TABLE STATUS rows, in the text or the
/// binary protocol.
async fn table_status(
    conn: &mut mysql_async::Conn,
    sql: &str,
    prepared: bool,
) -> Vec<(String, Option<u64>, Option<u64>, Option<u64>)> {
    let rows: Vec<mysql_async::Row> = if prepared {
        let stmt = conn.prep(sql).await.unwrap();
        conn.exec(&stmt, ()).await.unwrap()
    } else {
        conn.query(sql).await.unwrap()
    };
    rows.iter()
        .map(|r| {
            (
                r.get("Name").unwrap(),
                r.get("Rows").unwrap(),
                r.get("Data_length").unwrap(),
                r.get("Index_length").unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_table_status_sums_the_physical_tables_of_a_sharded_table() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE payment (id BIGINT PRIMARY KEY, note VARCHAR(200), KEY (note))")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE currency (code CHAR(3) PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE branch (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE notes (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let values: Vec<String> = (0..600)
        .map(|i| format!("({i}, REPEAT('x', {}))", 50 + i % 100))
        .collect();
    conn.query_drop(format!("INSERT INTO payment VALUES {}", values.join(", ")))
        .await
        .unwrap();
    conn.query_drop("INSERT INTO currency VALUES ('EUR'), ('USD')")
        .await
        .unwrap();
    // Statistics settled on every physical table, so the direct and the proxied reads agree.
    for (ds, table) in PAYMENT_TABLES {
        c.direct(ds, &format!("ANALYZE TABLE {table}"));
    }
    // What each server says of each physical table.
    let mut direct = common::direct(&c.backend).await;
    let (mut rows, mut data, mut index) = (0u64, 0u64, 0u64);
    for (ds, table) in PAYMENT_TABLES {
        let (r, d, i): (u64, u64, u64) = direct
            .query_first(format!(
                "SELECT TABLE_ROWS, DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = '{table}'",
                c.dbs[ds]
            ))
            .await
            .unwrap()
            .unwrap();
        rows += r;
        data += d;
        index += i;
    }
    assert!(rows > 0);
    for prepared in [false, true] {
        let all = table_status(&mut conn, "SHOW TABLE STATUS", prepared).await;
        let names: Vec<&str> = all.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            ["branch", "currency", "notes", "payment"],
            "{prepared}"
        );
        let payment = &all[3];
        assert_eq!(
            (payment.1, payment.2, payment.3),
            (Some(rows), Some(data), Some(index)),
            "payment summed over its six physical tables (prepared: {prepared})"
        );
        // A broadcast table: one copy's figures, not three.
        let (currency_rows, _): (u64, u64) = direct
            .query_first(format!(
                "SELECT TABLE_ROWS, DATA_LENGTH FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'currency'",
                c.dbs[0]
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all[1].1, Some(currency_rows));
        for (sql, want) in [
            ("SHOW TABLE STATUS LIKE 'pay%'", vec!["payment"]),
            (
                "SHOW TABLE STATUS FROM bank LIKE '%r%'",
                vec!["branch", "currency"],
            ),
            (
                "SHOW TABLE STATUS WHERE Engine = 'InnoDB' AND Name <> 'notes'",
                vec!["branch", "currency", "payment"],
            ),
            (
                "SHOW TABLE STATUS IN `bank` WHERE `Rows` > 100",
                vec!["payment"],
            ),
        ] {
            let got = table_status(&mut conn, sql, prepared).await;
            let names: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
            assert_eq!(names, want, "{sql} (prepared: {prepared})");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_maintenance_runs_on_every_physical_table() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    conn.query_drop("CREATE TABLE payment (id BIGINT PRIMARY KEY, note VARCHAR(20))")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE currency (code CHAR(3) PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO payment VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd')")
        .await
        .unwrap();
    let payments: Vec<String> = PAYMENT_TABLES
        .iter()
        .map(|(ds, t)| format!("{}.{t}", c.dbs[*ds]))
        .collect();
    let currencies: Vec<String> = (0..3).map(|ds| format!("{}.currency", c.dbs[ds])).collect();
    for prepared in [false, true] {
        for (sql, op, tables) in [
            ("ANALYZE TABLE payment", "analyze", payments.clone()),
            (
                "CHECK TABLE bank.payment EXTENDED",
                "check",
                payments.clone(),
            ),
            ("OPTIMIZE TABLE currency", "optimize", currencies.clone()),
            (
                "REPAIR NO_WRITE_TO_BINLOG TABLE payment, `currency` QUICK",
                "repair",
                {
                    let mut both = payments.clone();
                    both.extend(currencies.clone());
                    both
                },
            ),
        ] {
            let rows: Vec<(String, String, String, String)> = if prepared {
                let stmt = conn.prep(sql).await.unwrap();
                conn.exec(&stmt, ()).await.unwrap()
            } else {
                conn.query(sql).await.unwrap()
            };
            let mut got: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
            got.sort();
            got.dedup();
            let mut want = tables;
            want.sort();
            assert_eq!(got, want, "{sql} (prepared: {prepared}): {rows:?}");
            assert!(rows.iter().all(|r| r.1 == op), "{sql}: {rows:?}");
            assert!(
                rows.iter().all(|r| r.2 != "error" && r.2 != "Error"),
                "{sql}: {rows:?}"
            );
        }
    }
    let refused = conn
        .query_drop("ANALYZE TABLE mysql.user")
        .await
        .unwrap_err();
    assert_eq!(server_code(refused).0, 1235);
}
