//! Sharding through the real proxy: 2 MariaDB servers x 2 databases x 2 tables, a binding
//! group sharded by `uid` (mod 8), a broadcast table and a single table. Data is loaded
//! through the proxy and its physical placement checked directly on the backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{server_code, Proxy};
use mysql_async::prelude::*;

struct Cluster {
    servers: Vec<testkit::Backend>,
    dbs: Vec<String>,
    proxy: Proxy,
}

/// ds_0, ds_1 on server 0; ds_2, ds_3 on server 1; each with payment_0/1 and account_0/1.
fn cluster() -> Cluster {
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let prefix = testkit::unique_name("shard");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let mut rules = common::four_data_sources(&servers, "bank", &dbs);
    rules += "[tables.payment]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"mod\"\nnodes = \"ds_{0..3}.payment_{0..1}\"\n\n\
              [tables.account]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"mod\"\nnodes = \"ds_{0..3}.account_{0..1}\"\n\n\
              [[binding_groups]]\ntables = [\"payment\", \"account\"]\n\n\
              [tables.currency]\nkind = \"broadcast\"\n\n\
              [tables.branch]\nkind = \"single\"\ndata_source = \"ds_1\"\n";
    let proxy = Proxy::start(&rules);
    Cluster {
        servers,
        dbs,
        proxy,
    }
}

impl Cluster {
    /// Runs SQL directly on the server holding data source `ds`.
    fn direct(&self, ds: usize, sql: &str) -> String {
        self.servers[ds / 2]
            .sql(&format!("USE `{}`; {sql}", self.dbs[ds]))
            .unwrap()
    }

    fn drop_all(&self) {
        for (i, db) in self.dbs.iter().enumerate() {
            let _ = self.servers[i / 2].sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
        }
    }
}

async fn schema(conn: &mut mysql_async::Conn) {
    conn.query_drop(
        "CREATE TABLE payment (id BIGINT PRIMARY KEY, uid BIGINT NOT NULL, amount DECIMAL(12,2))",
    )
    .await
    .unwrap();
    conn.query_drop("CREATE TABLE account (seq BIGINT AUTO_INCREMENT PRIMARY KEY, uid BIGINT NOT NULL UNIQUE, name VARCHAR(40))")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE currency (code CHAR(3) PRIMARY KEY, rate DECIMAL(10,4))")
        .await
        .unwrap();
    conn.query_drop("CREATE TABLE branch (id INT PRIMARY KEY, city VARCHAR(40))")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_land_where_the_rules_say_and_are_found_again() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    // DDL fanned out: every physical table exists.
    for ds in 0..4 {
        let tables = c.direct(ds, "SHOW TABLES");
        for t in [
            "payment_0",
            "payment_1",
            "account_0",
            "account_1",
            "currency",
        ] {
            assert!(
                tables.lines().any(|l| l == t),
                "ds_{ds} lacks {t}: {tables}"
            );
        }
    }
    assert!(c.direct(1, "SHOW TABLES").lines().any(|l| l == "branch"));
    assert!(!c.direct(0, "SHOW TABLES").lines().any(|l| l == "branch"));

    // One multi-row INSERT spanning every shard is split per shard.
    let values: Vec<String> = (0..200)
        .map(|i| format!("({i}, {}, {}.50)", i * 7 + 3, i))
        .collect();
    conn.query_drop(format!(
        "INSERT INTO payment (id, uid, amount) VALUES {}",
        values.join(",")
    ))
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 200);
    for i in 0..200u64 {
        let uid = i * 7 + 3;
        let node = (uid % 8) as usize;
        let (ds, table) = (node / 2, format!("payment_{}", node % 2));
        let found = c.direct(ds, &format!("SELECT id FROM {table} WHERE uid = {uid}"));
        assert_eq!(
            found.trim(),
            i.to_string(),
            "uid {uid} belongs in ds_{ds}.{table}"
        );
        // Through the proxy, in both protocols.
        let text: Option<u64> = conn
            .query_first(format!("SELECT id FROM payment WHERE uid = {uid}"))
            .await
            .unwrap();
        assert_eq!(text, Some(i));
        let bin: Option<u64> = conn
            .exec_first("SELECT id FROM payment WHERE uid = ?", (uid,))
            .await
            .unwrap();
        assert_eq!(bin, Some(i));
    }
    // Every row lives in exactly one physical table.
    let mut total = 0;
    for ds in 0..4 {
        for t in 0..2 {
            total += c
                .direct(ds, &format!("SELECT COUNT(*) FROM payment_{t}"))
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    assert_eq!(total, 200);

    // IN lists and a scatter read without ordering.
    let mut ids: Vec<u64> = conn
        .query("SELECT id FROM payment WHERE uid IN (3, 10, 17, 24)")
        .await
        .unwrap();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    let all: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    assert_eq!(all.len(), 200);

    // Scatter UPDATE sums affected rows; a point UPDATE touches one shard.
    conn.query_drop("UPDATE payment SET amount = amount + 1 WHERE amount < 10")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 10);
    conn.exec_drop("UPDATE payment SET amount = ? WHERE uid = ?", ("99.00", 10))
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 1);

    // Binding tables joined on the key stay on one shard.
    conn.query_drop("INSERT INTO account (uid, name) VALUES (3, 'ann'), (10, 'bob')")
        .await
        .unwrap();
    let joined: Vec<(String, String)> = conn
        .query("SELECT a.name, CAST(p.amount AS CHAR) FROM account a JOIN payment p ON a.uid = p.uid WHERE a.uid = 10")
        .await
        .unwrap();
    assert_eq!(joined, vec![("bob".to_string(), "99.00".to_string())]);

    // A broadcast table is written everywhere and read from one copy.
    conn.query_drop("INSERT INTO currency VALUES ('EUR', 1.0800), ('CNY', 0.1400)")
        .await
        .unwrap();
    for ds in 0..4 {
        assert_eq!(c.direct(ds, "SELECT COUNT(*) FROM currency").trim(), "2");
    }
    let rate: String = conn
        .query_first("SELECT CAST(rate AS CHAR) FROM currency WHERE code = 'EUR'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rate, "1.0800");

    // A single table lives on its data source only.
    conn.query_drop("INSERT INTO branch VALUES (1, 'Hangzhou')")
        .await
        .unwrap();
    assert_eq!(c.direct(1, "SELECT city FROM branch").trim(), "Hangzhou");

    // Moving a row to another shard by updating its key is refused, never half-done.
    let err = conn
        .query_drop("UPDATE payment SET uid = 4 WHERE uid = 3")
        .await
        .unwrap_err();
    assert_ne!(server_code(err).0, 0);
    let still: Option<u64> = conn
        .query_first("SELECT id FROM payment WHERE uid = 3")
        .await
        .unwrap();
    assert_eq!(still, Some(0));
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_span_shards_and_a_failed_split_insert_leaves_nothing() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    // A client transaction over two shards: rolled back, nothing stays anywhere.
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (1, 1, 1.00)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (2, 2, 2.00)")
        .await
        .unwrap();
    let inside: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    assert_eq!(
        inside.len(),
        2,
        "the session sees its own writes on both shards"
    );
    conn.query_drop("ROLLBACK").await.unwrap();
    let after: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    assert!(after.is_empty(), "{after:?}");
    // Committed: both stay.
    conn.query_drop("START TRANSACTION").await.unwrap();
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (1, 1, 1.00)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (2, 2, 2.00)")
        .await
        .unwrap();
    conn.query_drop("COMMIT").await.unwrap();
    assert_eq!(c.direct(0, "SELECT COUNT(*) FROM payment_1").trim(), "1");
    assert_eq!(c.direct(1, "SELECT COUNT(*) FROM payment_0").trim(), "1");

    // A split INSERT whose rows hit a duplicate key on one shard: no shard keeps any row.
    let err = conn
        .query_drop(
            "INSERT INTO payment (id, uid, amount) VALUES (10, 5, 0), (11, 6, 0), (2, 2, 0)",
        )
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1062);
    let ids: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    let mut ids = ids;
    ids.sort();
    assert_eq!(ids, vec![1, 2]);

    // LAST_INSERT_ID() after an INSERT that ran on another shard than the default one.
    conn.query_drop("INSERT INTO account (uid, name) VALUES (5, 'five')")
        .await
        .unwrap();
    let generated = conn.last_insert_id().expect("an AUTO_INCREMENT id");
    assert!(generated > 0);
    let lid: u64 = conn
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lid, generated,
        "the id generated on ds_2, not the default data source's 0"
    );

    // Session variables reach every shard's connection.
    conn.query_drop("SET @marker = 42").await.unwrap();
    for uid in [1u64, 2, 3, 4] {
        let v: Option<i64> = conn
            .query_first(format!(
                "SELECT @marker FROM payment WHERE uid = {uid} UNION ALL SELECT @marker LIMIT 1"
            ))
            .await
            .unwrap();
        assert_eq!(v, Some(42), "uid {uid}");
    }
    conn.disconnect().await.unwrap();
    c.drop_all();
}

/// BEGIN, COMMIT, ROLLBACK and SET prepared in the binary protocol (sysbench prepares them, so
/// do some drivers) act on every shard the session touches, as their text does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_transaction_statements_span_shards() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    // `exec_drop` prepares each statement and runs it with COM_STMT_EXECUTE.
    conn.exec_drop("BEGIN", ()).await.unwrap();
    for (id, uid) in [(1u64, 1u64), (2, 2), (3, 3)] {
        conn.exec_drop(
            "INSERT INTO payment (id, uid, amount) VALUES (?, ?, 1.00)",
            (id, uid),
        )
        .await
        .unwrap();
    }
    conn.exec_drop("ROLLBACK", ()).await.unwrap();
    for ds in 0..4 {
        for table in ["payment_0", "payment_1"] {
            assert_eq!(
                c.direct(ds, &format!("SELECT COUNT(*) FROM {table}"))
                    .trim(),
                "0",
                "ds_{ds}.{table} kept a rolled-back row"
            );
        }
    }

    // Committed through a prepared COMMIT: every shard keeps its row, and no shard commits
    // before the COMMIT (another session sees nothing until then).
    conn.exec_drop("START TRANSACTION", ()).await.unwrap();
    for (id, uid) in [(1u64, 1u64), (2, 2)] {
        conn.exec_drop(
            "INSERT INTO payment (id, uid, amount) VALUES (?, ?, 1.00)",
            (id, uid),
        )
        .await
        .unwrap();
    }
    let mut other = c.proxy.conn(Some("bank")).await;
    let seen: Vec<u64> = other.query("SELECT id FROM payment").await.unwrap();
    assert!(seen.is_empty(), "uncommitted rows visible: {seen:?}");
    conn.exec_drop("COMMIT", ()).await.unwrap();
    let mut seen: Vec<u64> = other.query("SELECT id FROM payment").await.unwrap();
    seen.sort();
    assert_eq!(seen, vec![1, 2]);

    // A prepared SET reaches every shard's connection too.
    conn.exec_drop("SET @@session.sql_mode = 'ANSI_QUOTES'", ())
        .await
        .unwrap();
    for uid in [1u64, 2, 3, 4] {
        let mode: String = conn
            .query_first(format!(
                "SELECT @@sql_mode FROM payment WHERE uid = {uid} UNION ALL SELECT @@sql_mode LIMIT 1"
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(mode, "ANSI_QUOTES", "uid {uid}");
    }

    // Parameters in a session statement, and statements the binary protocol cannot run.
    let err = conn
        .exec_drop("SET @@session.sql_mode = ?", ("",))
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1235);
    let err = conn.prep("USE bank").await.unwrap_err();
    assert_eq!(server_code(err).0, 1295);
    conn.query_drop("SELECT 1").await.unwrap();
    conn.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_route_and_unsupported_constructs() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    let rows: Vec<(String, String)> = conn
        .query("EXPLAIN ROUTE SELECT * FROM payment WHERE uid = 9")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "ds_0");
    assert!(rows[0].1.contains("payment_1"), "{rows:?}");
    let rows: Vec<(String, String)> = conn
        .query("EXPLAIN ROUTE SELECT * FROM payment")
        .await
        .unwrap();
    assert_eq!(rows.len(), 8);

    // The logical view: SHOW TABLES, SHOW CREATE TABLE, DESCRIBE name logical tables only.
    let tables: Vec<String> = conn.query("SHOW TABLES").await.unwrap();
    assert_eq!(tables, vec!["account", "branch", "currency", "payment"]);
    let like: Vec<String> = conn.query("SHOW TABLES LIKE 'pay%'").await.unwrap();
    assert_eq!(like, vec!["payment"]);
    let (name, ddl): (String, String) = conn
        .query_first("SHOW CREATE TABLE payment")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "payment");
    assert!(ddl.starts_with("CREATE TABLE `payment` ("), "{ddl}");
    let columns: Vec<mysql_async::Row> = conn.query("DESCRIBE payment").await.unwrap();
    assert_eq!(columns.len(), 3);
    let header = conn
        .query_iter("SHOW TABLES")
        .await
        .unwrap()
        .columns()
        .unwrap()[0]
        .name_str()
        .to_string();
    assert_eq!(header, "Tables_in_bank");

    // An INSERT without a column list is routed by the table's column order, read from the
    // table SHOW CREATE TABLE shows (see `inserts_without_a_column_list_…` below).
    conn.query_drop("INSERT INTO payment VALUES (1, 1, 1.00)")
        .await
        .unwrap();
    assert_eq!(
        c.direct(0, "SELECT uid FROM payment_1 WHERE id = 1").trim(),
        "1"
    );

    // Ordering across shards is merged; a construct that cannot be merged is a clean 1235,
    // never a partial answer.
    conn.query_drop(
        "INSERT INTO payment (id, uid, amount) VALUES (901, 1, 5.00), (902, 2, 17.50), \
         (903, 3, 0.25), (904, 4, 17.50), (905, 5, 99.99), (906, 6, 1.00)",
    )
    .await
    .unwrap();
    let amounts: Vec<String> = conn
        .query("SELECT CAST(amount AS CHAR) FROM payment ORDER BY amount DESC, id")
        .await
        .unwrap();
    let mut expected = amounts.clone();
    expected.sort_by(|a, b| {
        b.parse::<f64>()
            .unwrap()
            .total_cmp(&a.parse::<f64>().unwrap())
    });
    assert!(amounts.len() > 1);
    assert_eq!(amounts, expected);
    // Prepared, with a parameter, where a data source holds two of the tables (one UNION of
    // both parts, each repeating the parameter): the client still sees one parameter.
    let above: Vec<u64> = conn
        .exec(
            "SELECT id FROM payment WHERE amount > ? ORDER BY amount DESC, id",
            ("1.00",),
        )
        .await
        .unwrap();
    assert_eq!(above, vec![905, 902, 904, 901]);
    let err = conn
        .query_drop("SELECT STDDEV(id) FROM payment")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));

    // One shard failing fails the merged statement with its error, naming the data source;
    // the connection stays usable.
    c.direct(3, "ALTER TABLE payment_1 ADD COLUMN extra INT");
    let err = conn
        .query_drop("SELECT extra FROM payment ORDER BY id")
        .await
        .unwrap_err();
    let mysql_async::Error::Server(e) = err else {
        panic!("expected a server error, got {err:?}")
    };
    assert_eq!(e.code, 1054, "{}", e.message);
    assert!(e.message.contains("(on data source ds_"), "{}", e.message);
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));

    // The CLI's explain shows the same route.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dbmesh"))
        .args(["explain", "--config"])
        .arg(&c.proxy.config_path)
        .arg("SELECT * FROM payment WHERE uid = 9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ds_0") && stdout.contains("payment_1"),
        "{stdout}"
    );
    conn.disconnect().await.unwrap();
    c.drop_all();
}

/// A direct connection to server `i` of the cluster, in database `db`.
async fn direct_conn(c: &Cluster, i: usize, db: &str) -> mysql_async::Conn {
    let s = &c.servers[i];
    let address = s.address();
    let (host, port) = address.rsplit_once(':').unwrap();
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_owned())
        .tcp_port(port.parse().unwrap())
        .prefer_socket(false)
        .user(Some(s.user()))
        .pass(Some(s.password()))
        .db_name(Some(db));
    mysql_async::Conn::new(opts).await.unwrap()
}

/// A result as text: column names, then each row's values (`NULL` for NULL).
fn text_rows(result: &[mysql_async::Row]) -> Vec<Vec<String>> {
    result
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match &row[i] {
                    mysql_async::Value::NULL => "NULL".to_owned(),
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    mysql_async::Value::Int(v) => v.to_string(),
                    mysql_async::Value::UInt(v) => v.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .collect()
}

async fn columns_and_rows(
    conn: &mut mysql_async::Conn,
    sql: &str,
) -> (Vec<String>, Vec<Vec<String>>) {
    let mut result = conn.query_iter(sql).await.unwrap();
    let columns = result
        .columns()
        .map(|c| c.iter().map(|c| c.name_str().into_owned()).collect())
        .unwrap_or_default();
    let rows: Vec<mysql_async::Row> = result.collect().await.unwrap();
    (columns, text_rows(&rows))
}

/// The same logical schema as the cluster's, in one database of one server: what a single
/// MariaDB holding it answers.
const REFERENCE_SCHEMA: &[&str] = &[
    "CREATE TABLE payment (id BIGINT PRIMARY KEY, uid BIGINT NOT NULL, amount DECIMAL(12,2))",
    "CREATE TABLE account (seq BIGINT AUTO_INCREMENT PRIMARY KEY, uid BIGINT NOT NULL UNIQUE, name VARCHAR(40))",
    "CREATE TABLE currency (code CHAR(3) PRIMARY KEY, rate DECIMAL(10,4))",
    "CREATE TABLE branch (id INT PRIMARY KEY, city VARCHAR(40))",
    "ALTER TABLE payment ADD FOREIGN KEY (uid) REFERENCES account (uid)",
    "CREATE INDEX by_amount ON payment (amount, uid)",
    "CREATE TABLE note (id INT PRIMARY KEY, body TEXT, KEY (body(10)))",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn information_schema_answers_like_one_server_holding_the_logical_schema() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    let reference = testkit::unique_name("ref");
    c.servers[0]
        .sql(&format!("CREATE DATABASE `{reference}`"))
        .unwrap();
    let mut direct = direct_conn(&c, 0, &reference).await;
    for ddl in REFERENCE_SCHEMA {
        conn.query_drop(*ddl).await.unwrap();
        direct.query_drop(*ddl).await.unwrap();
    }

    // The queries ORMs and tools introspect a schema with, on the logical schema through the
    // proxy and on the reference database directly: the same columns and rows (statistics,
    // times and constraint names, which differ between physical tables, are not compared).
    let queries = [
        "SELECT TABLE_NAME, TABLE_TYPE, ENGINE, TABLE_COLLATION FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME",
        "SELECT table_name, table_type FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name LIKE 'pay%'",
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}' \
         AND TABLE_NAME = 'payment'",
        "SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' \
         AND TABLE_NAME = 'payment' ORDER BY ORDINAL_POSITION",
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION, COLUMN_TYPE, IS_NULLABLE, \
         COLUMN_KEY, EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}' \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
        "SELECT TABLE_NAME, COUNT(*) AS n FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = '{db}' GROUP BY TABLE_NAME ORDER BY n DESC, TABLE_NAME LIMIT 3",
        "SELECT TABLE_SCHEMA, TABLE_NAME, INDEX_SCHEMA, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, \
         NON_UNIQUE, SUB_PART FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '{db}' \
         ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, \
         REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
         WHERE TABLE_SCHEMA = '{db}' ORDER BY TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_NAME",
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_TYPE FROM \
         information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = '{db}' \
         ORDER BY TABLE_NAME, CONSTRAINT_TYPE",
        "SELECT CONSTRAINT_SCHEMA, UNIQUE_CONSTRAINT_SCHEMA, TABLE_NAME, REFERENCED_TABLE_NAME, \
         UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = '{db}'",
        "SELECT t.TABLE_NAME, c.COLUMN_NAME FROM information_schema.TABLES t \
         JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = t.TABLE_SCHEMA \
         AND c.TABLE_NAME = t.TABLE_NAME WHERE t.TABLE_SCHEMA = '{db}' \
         AND c.COLUMN_KEY = 'PRI' ORDER BY 1, 2",
        "SELECT TABLE_SCHEMA TABLE_CAT, NULL TABLE_SCHEM, TABLE_NAME, \
         IF(TABLE_TYPE = 'BASE TABLE', 'TABLE', TABLE_TYPE) AS TABLE_TYPE, TABLE_COMMENT REMARKS \
         FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE '%' \
         ORDER BY TABLE_TYPE, TABLE_SCHEMA, TABLE_NAME",
        "SELECT DISTINCT TABLE_SCHEMA FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA IN ('{db}', 'information_schema') AND COLUMN_NAME = 'uid'",
    ];
    for q in queries {
        let (columns, mut rows) = columns_and_rows(&mut conn, &q.replace("{db}", "bank")).await;
        let (want_columns, want) =
            columns_and_rows(&mut direct, &q.replace("{db}", &reference)).await;
        let mut want: Vec<Vec<String>> = want
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.replace(&reference, "bank"))
                    .collect()
            })
            .collect();
        assert!(!want.is_empty(), "{q}");
        assert_eq!(columns, want_columns, "{q}");
        if !q.contains("ORDER BY") {
            rows.sort();
            want.sort();
        }
        assert_eq!(rows, want, "{q}");
    }
    // The same through a prepared statement (binary rows), with the schema as a parameter.
    let sql = "SELECT TABLE_NAME, COLUMN_NAME, ORDINAL_POSITION FROM information_schema.COLUMNS \
               WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION";
    let got: Vec<(String, String, u64)> = conn.exec(sql, ("bank",)).await.unwrap();
    let want: Vec<(String, String, u64)> = direct.exec(sql, (&reference,)).await.unwrap();
    assert_eq!(got, want);
    assert!(got.iter().any(|(t, _, _)| t == "payment"));

    // Only the logical schema and information_schema are databases; shard databases are not.
    let schemata: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        .await
        .unwrap();
    assert_eq!(schemata, vec!["bank", "information_schema"]);
    let in_shards: u64 = conn
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA IN ('{}')",
            c.dbs.join("', '")
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(in_shards, 0);
    let schemas: Vec<String> = conn
        .query("SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES")
        .await
        .unwrap();
    assert!(schemas.contains(&"bank".to_owned()), "{schemas:?}");
    assert!(
        schemas.contains(&"information_schema".to_owned()),
        "{schemas:?}"
    );
    assert!(!schemas.iter().any(|s| c.dbs.contains(s)), "{schemas:?}");
    // A physical table name is no table of the logical schema.
    let physical: Option<u64> = conn
        .query_first(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank' \
             AND TABLE_NAME = 'payment_1'",
        )
        .await
        .unwrap();
    assert_eq!(physical, Some(0));

    // With information_schema the current database, its tables are presented only when
    // qualified: unqualified ones are refused rather than shown with physical names.
    conn.query_drop("USE information_schema").await.unwrap();
    let err = conn
        .query_drop("SELECT TABLE_NAME FROM TABLES WHERE TABLE_SCHEMA = 'bank'")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1235, "42000".into()));
    let tables: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank'")
        .await
        .unwrap();
    assert_eq!(
        tables,
        Some(
            REFERENCE_SCHEMA
                .iter()
                .filter(|d| d.starts_with("CREATE TABLE"))
                .count() as u64
        )
    );
    conn.query_drop("USE bank").await.unwrap();

    // What the proxy cannot present is refused, never answered with physical names.
    for sql in [
        // Django's get_constraints: a join on CONSTRAINT_NAME pairs rows of different tables.
        "SELECT kc.constraint_name, kc.column_name, c.constraint_type \
         FROM information_schema.key_column_usage AS kc, information_schema.table_constraints AS c \
         WHERE kc.table_schema = DATABASE() AND c.table_schema = kc.table_schema \
         AND c.constraint_name = kc.constraint_name AND kc.table_name = 'payment'",
        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()",
        "SELECT TABLE_NAME FROM information_schema.VIEWS",
        "INSERT INTO note (id, body) SELECT ORDINAL_POSITION, COLUMN_NAME \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'bank'",
        "SELECT JSON_ARRAYAGG(TABLE_NAME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bank'",
    ] {
        let err = conn.query_drop(sql).await.unwrap_err();
        assert_eq!(server_code(err), (1235, "42000".into()), "{sql}");
    }
    // information_schema about no database, and about other databases, is unchanged.
    let charsets: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM information_schema.CHARACTER_SETS")
        .await
        .unwrap();
    assert!(charsets.unwrap() >= 1);
    let routines: Vec<String> = conn
        .query(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql'",
        )
        .await
        .unwrap();
    let direct_routines: Vec<String> = direct
        .query(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql'",
        )
        .await
        .unwrap();
    assert_eq!(routines, direct_routines);
    let engines: Vec<String> = conn
        .query("SELECT ENGINE FROM information_schema.ENGINES WHERE SUPPORT <> 'NO'")
        .await
        .unwrap();
    assert!(engines.iter().any(|e| e == "InnoDB"));

    direct.disconnect().await.unwrap();
    conn.disconnect().await.unwrap();
    let _ = c.servers[0].sql(&format!("DROP DATABASE IF EXISTS `{reference}`"));
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_without_a_column_list_land_on_their_shards() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    // Text, multi-row: each row to the shard of its uid (uid mod 8: ds = node / 2, table =
    // node % 2).
    conn.query_drop("INSERT INTO payment VALUES (1, 3, 1.50), (2, 10, 2.50), (3, 13, 3.50)")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 3);
    // Prepared, executed twice.
    for (id, uid) in [(4u64, 17u64), (5, 30)] {
        conn.exec_drop("INSERT INTO payment VALUES (?, ?, ?)", (id, uid, "4.25"))
            .await
            .unwrap();
    }
    // REPLACE, and a broadcast table (every copy).
    conn.query_drop("REPLACE INTO payment VALUES (6, 7, 6.00)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO currency VALUES ('EUR', 1.0800)")
        .await
        .unwrap();
    let placed = |id: u64, uid: u64| {
        let node = (uid % 8) as usize;
        let found = c.direct(
            node / 2,
            &format!("SELECT uid FROM payment_{} WHERE id = {id}", node % 2),
        );
        assert_eq!(
            found.trim(),
            uid.to_string(),
            "id {id} (uid {uid}) on node {node}"
        );
    };
    for (id, uid) in [(1, 3), (2, 10), (3, 13), (4, 17), (5, 30), (6, 7)] {
        placed(id, uid);
    }
    let mut total = 0;
    for ds in 0..4 {
        for t in 0..2 {
            total += c
                .direct(ds, &format!("SELECT COUNT(*) FROM payment_{t}"))
                .trim()
                .parse::<u64>()
                .unwrap();
        }
        assert_eq!(
            c.direct(
                ds,
                "SELECT CAST(rate AS CHAR) FROM currency WHERE code = 'EUR'"
            )
            .trim(),
            "1.0800"
        );
    }
    assert_eq!(total, 6);

    // A row of another width: MariaDB's error.
    let err = conn
        .query_drop("INSERT INTO payment VALUES (7, 9)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1136, "21S01".into()));

    // DDL through the proxy: the new column order is read again.
    conn.query_drop("ALTER TABLE payment ADD COLUMN memo VARCHAR(20) FIRST")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO payment VALUES ('first', 8, 21, 1.00)")
        .await
        .unwrap();
    placed(8, 21);
    let err = conn
        .query_drop("INSERT INTO payment VALUES (9, 22, 1.00)")
        .await
        .unwrap_err();
    assert_eq!(server_code(err), (1136, "21S01".into()));

    // DDL behind the proxy's back, on every physical table: a row of the new width makes the
    // proxy read the column list again.
    for ds in 0..4 {
        for t in 0..2 {
            c.direct(ds, &format!("ALTER TABLE payment_{t} DROP COLUMN memo"));
        }
    }
    conn.query_drop("INSERT INTO payment VALUES (10, 23, 1.00)")
        .await
        .unwrap();
    placed(10, 23);
    let amount: Option<String> = conn
        .query_first("SELECT CAST(amount AS CHAR) FROM payment WHERE uid = 23")
        .await
        .unwrap();
    assert_eq!(amount.as_deref(), Some("1.00"));
    conn.disconnect().await.unwrap();
    c.drop_all();
}

/// Loads payments for uids 0..16 (two per node): `id = uid * 10 + k`, amount `id`.
async fn payments(conn: &mut mysql_async::Conn) {
    let rows: Vec<String> = (0..16u64)
        .flat_map(|uid| (0..2).map(move |k| (uid * 10 + k, uid)))
        .map(|(id, uid)| format!("({id}, {uid}, {id}.00)"))
        .collect();
    conn.query_drop(format!(
        "INSERT INTO payment (id, uid, amount) VALUES {}",
        rows.join(", ")
    ))
    .await
    .unwrap();
}

/// Rows as text, in the order received (`None` as "NULL").
async fn prepared_rows<P: Into<mysql_async::Params> + Send>(
    conn: &mut mysql_async::Conn,
    sql: &str,
    params: P,
) -> Vec<Vec<String>> {
    let rows: Vec<mysql_async::Row> = conn
        .exec(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    text_rows(&rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_reads_of_several_tables_of_one_data_source_are_merged() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    payments(&mut conn).await;

    // uid 0 lives in ds_0.payment_0, uid 1 in ds_0.payment_1: one data source, one UNION ALL.
    let cases: [(&str, Vec<Vec<&str>>); 5] = [
        (
            "SELECT COUNT(*) FROM payment WHERE uid IN (0, 1)",
            vec![vec!["4"]],
        ),
        (
            "SELECT uid, SUM(amount) FROM payment WHERE uid IN (0, 1) GROUP BY uid ORDER BY uid",
            vec![vec!["0", "1.00"], vec!["1", "21.00"]],
        ),
        (
            "SELECT DISTINCT uid FROM payment WHERE uid IN (0, 1) ORDER BY uid",
            vec![vec!["0"], vec!["1"]],
        ),
        (
            "SELECT id FROM payment WHERE uid IN (0, 1) ORDER BY id DESC LIMIT 3",
            vec![vec!["11"], vec!["10"], vec!["1"]],
        ),
        (
            "SELECT id FROM payment WHERE uid IN (0, 1) ORDER BY id",
            vec![vec!["0"], vec!["1"], vec!["10"], vec!["11"]],
        ),
    ];
    for (sql, expected) in &cases {
        let text = text_rows(&conn.query::<mysql_async::Row, _>(*sql).await.unwrap());
        assert_eq!(&text, expected, "text: {sql}");
        assert_eq!(
            &prepared_rows(&mut conn, sql, ()).await,
            expected,
            "prepared: {sql}"
        );
    }
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_scatter_reads_bind_limit_offset_and_having_at_execute() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    payments(&mut conn).await;

    let ids = |rows: Vec<Vec<String>>| -> Vec<String> {
        rows.into_iter().map(|r| r[0].clone()).collect()
    };
    let sql = "SELECT id FROM payment ORDER BY id LIMIT ?";
    assert_eq!(
        ids(prepared_rows(&mut conn, sql, (3,)).await),
        ["0", "1", "10"]
    );
    let sql = "SELECT id FROM payment ORDER BY id LIMIT ?, ?";
    assert_eq!(
        ids(prepared_rows(&mut conn, sql, (2, 3)).await),
        ["10", "11", "20"]
    );
    let sql = "SELECT id FROM payment ORDER BY id DESC LIMIT ? OFFSET ?";
    assert_eq!(
        ids(prepared_rows(&mut conn, sql, (2, 1)).await),
        ["150", "141"]
    );
    // The same statement again with other values: nothing of the first execution sticks.
    assert_eq!(ids(prepared_rows(&mut conn, sql, (1, 0)).await), ["151"]);
    let sql = "SELECT uid FROM payment WHERE amount > ? GROUP BY uid HAVING SUM(amount) > ? ORDER BY uid LIMIT ?";
    assert_eq!(
        ids(prepared_rows(&mut conn, sql, (5, 250, 2)).await),
        ["13", "14"]
    );
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_broadcast_table_report_one_copys_rows_and_refuse_diverged_copies() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    // Four copies (one per data source); the client sees what one server would say.
    conn.query_drop(
        "INSERT INTO currency VALUES ('EUR', 1.0000), ('USD', 1.1000), ('GBP', 0.8000)",
    )
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 3);
    conn.query_drop("UPDATE currency SET rate = 1.2000 WHERE code = 'USD'")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    conn.exec_drop(
        "UPDATE currency SET rate = ? WHERE code = ?",
        ("0.9000", "GBP"),
    )
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    conn.exec_drop("DELETE FROM currency WHERE code = ?", ("GBP",))
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 1);
    let count: Option<i64> = conn.query_first("SELECT ROW_COUNT()").await.unwrap();
    assert_eq!(count, Some(1));

    // A copy changed behind the proxy's back: the write is refused and undone on every copy.
    c.direct(2, "DELETE FROM currency WHERE code = 'USD'");
    let err = conn
        .query_drop("UPDATE currency SET rate = 2.0000 WHERE code LIKE 'USD'")
        .await
        .unwrap_err();
    let msg = format!("{err:?}");
    assert_eq!(server_code(err), (1105, "HY000".to_owned()));
    assert!(
        msg.contains("ds_2 0") && msg.contains("statement was rolled back"),
        "{msg}"
    );
    for ds in [0, 1, 3] {
        assert_eq!(
            c.direct(ds, "SELECT rate FROM currency WHERE code = 'USD'")
                .trim(),
            "1.2000",
            "ds_{ds}"
        );
    }
    // Inside the client's transaction, the transaction is rolled back (its other writes too).
    conn.query_drop("BEGIN").await.unwrap();
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (1, 1, 1.00)")
        .await
        .unwrap();
    let err = conn
        .exec_drop("DELETE FROM currency WHERE code = ?", ("USD",))
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1105);
    conn.query_drop("COMMIT").await.unwrap();
    let payments: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    assert!(payments.is_empty(), "{payments:?}");
    assert_eq!(c.direct(0, "SELECT COUNT(*) FROM currency").trim(), "2");
    let (_, metrics) = c.proxy.http("GET", "/metrics");
    assert!(
        metrics.contains("dbmesh_broadcast_divergences_total{table=\"currency\"} 2"),
        "{metrics}"
    );
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_show_statements_name_logical_tables_and_the_logical_database() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;

    for sql in [
        "SHOW TABLES",
        "SHOW FULL TABLES",
        "SHOW TABLES LIKE 'pay%'",
        "SHOW CREATE TABLE payment",
        "SHOW COLUMNS FROM payment",
        "SHOW INDEX FROM payment",
        "DESCRIBE account",
    ] {
        let text: Vec<mysql_async::Row> = conn.query(sql).await.unwrap();
        let prepared: Vec<mysql_async::Row> = conn
            .exec(sql, ())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let names = |rows: &[mysql_async::Row]| -> Vec<String> {
            rows.first()
                .map(|r| {
                    r.columns_ref()
                        .iter()
                        .map(|c| c.name_str().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert_eq!(names(&prepared), names(&text), "{sql}");
        assert_eq!(text_rows(&prepared), text_rows(&text), "{sql}");
        let all = format!("{:?} {:?}", names(&prepared), text_rows(&prepared));
        for physical in &c.dbs {
            assert!(!all.contains(physical.as_str()), "{sql}: {all}");
        }
        assert!(!all.contains("payment_"), "{sql}: {all}");
    }
    // The column names a prepare announces are the logical ones too.
    let stmt = conn.prep("SHOW FULL TABLES").await.unwrap();
    let columns: Vec<String> = stmt
        .columns()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    assert_eq!(columns, ["Tables_in_bank", "Table_type"]);
    // SHOW TABLE STATUS: integers and dates in their binary forms.
    let text: Vec<mysql_async::Row> = conn.query("SHOW TABLE STATUS").await.unwrap();
    let binary: Vec<mysql_async::Row> = conn.exec("SHOW TABLE STATUS", ()).await.unwrap();
    let first = |rows: &[mysql_async::Row]| -> Vec<(String, Option<u64>)> {
        rows.iter()
            .map(|r| {
                (
                    r.get::<String, _>(0).unwrap(),
                    r.get::<Option<u64>, _>("Rows").unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(first(&binary), first(&text));
    // As on MariaDB, SHOW takes no parameters.
    let err = conn
        .prep("SHOW COLUMNS FROM payment LIKE ?")
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1064);
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_locking_reads_and_update_modifiers_reach_the_shards() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    payments(&mut conn).await;

    let reads: [(&str, Vec<Vec<&str>>); 3] = [
        (
            "SELECT id FROM payment WHERE uid = 3 ORDER BY id LOCK IN SHARE MODE",
            vec![vec!["30"], vec!["31"]],
        ),
        (
            "select count(*) from payment where uid in (0, 1, 2) lock in share mode",
            vec![vec!["6"]],
        ),
        (
            "SELECT id FROM payment ORDER BY id DESC LIMIT 2 LOCK IN SHARE MODE",
            vec![vec!["151"], vec!["150"]],
        ),
    ];
    conn.query_drop("BEGIN").await.unwrap();
    for (sql, expected) in &reads {
        let text = text_rows(&conn.query::<mysql_async::Row, _>(*sql).await.unwrap());
        assert_eq!(&text, expected, "text: {sql}");
        assert_eq!(
            &prepared_rows(&mut conn, sql, ()).await,
            expected,
            "prepared: {sql}"
        );
    }
    // The shared lock is held: another session cannot change the row until COMMIT.
    let mut other = c.proxy.conn(Some("bank")).await;
    other
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await
        .unwrap();
    let err = other
        .query_drop("UPDATE payment SET amount = 0 WHERE uid = 3")
        .await
        .unwrap_err();
    assert_eq!(server_code(err).0, 1205);
    conn.query_drop("COMMIT").await.unwrap();

    // UPDATE IGNORE reaches the shard's physical table (sqlparser alone took IGNORE for the
    // table's name and sent the statement unrouted to the default data source).
    conn.query_drop("UPDATE IGNORE payment SET amount = 7.00 WHERE uid = 5")
        .await
        .unwrap();
    assert_eq!(conn.affected_rows(), 2);
    conn.exec_drop(
        "UPDATE LOW_PRIORITY payment SET amount = ? WHERE uid = ?",
        ("8.00", 6),
    )
    .await
    .unwrap();
    assert_eq!(conn.affected_rows(), 2);
    assert_eq!(
        c.direct(2, "SELECT SUM(amount) FROM payment_1 WHERE uid = 5")
            .trim(),
        "14.00"
    );
    conn.disconnect().await.unwrap();
    other.disconnect().await.unwrap();
    c.drop_all();
}

/// The known parser gaps of docs/compatibility.md: each is a clean syntax error, in both
/// protocols, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parser_gaps_are_clean_syntax_errors() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    for sql in [
        "SELECT * FROM payment WHERE uid = 7 FOR UPDATE WAIT 5",
        "SELECT * FROM payment WHERE uid = 7 LOCK IN SHARE MODE NOWAIT",
        "SELECT * FROM payment WHERE uid IN (SELECT uid FROM account WHERE uid = 7 LOCK IN SHARE MODE)",
        "SELECT * FROM payment WHERE uid = 7 LIMIT ROWS EXAMINED 1000",
        "SELECT * FROM payment FOR SYSTEM_TIME AS OF TIMESTAMP '2020-01-01 00:00:00' WHERE uid = 7",
        "SELECT id FROM payment WHERE uid = 7 INTO @x",
        "SELECT * FROM payment WHERE uid = 7 AND amount SOUNDS LIKE 'x'",
        "SELECT EXTRACT(YEAR_MONTH FROM '2020-01-02') FROM payment WHERE uid = 7",
        "TABLE payment",
        "SELECT * FROM payment WHERE uid = 7 PROCEDURE ANALYSE()",
    ] {
        let err = conn.query_drop(sql).await.unwrap_err();
        assert_eq!(server_code(err), (1064, "42000".to_owned()), "text: {sql}");
        let err = conn.prep(sql).await.unwrap_err();
        assert_eq!(server_code(err), (1064, "42000".to_owned()), "prepare: {sql}");
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "after {sql}");
    }
    conn.disconnect().await.unwrap();
    c.drop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_statements_are_counted_by_what_the_merge_did() {
    let c = cluster();
    let mut conn = c.proxy.conn(Some("bank")).await;
    schema(&mut conn).await;
    conn.query_drop("INSERT INTO payment (id, uid, amount) VALUES (1, 1, 1), (2, 2, 2), (3, 3, 3)")
        .await
        .unwrap();
    let metric = |name: &str| -> f64 {
        let (_, body) = c.proxy.http("GET", "/metrics");
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
    };
    let series = |kind: &str| format!("dbmesh_merged_statements_total{{kind=\"{kind}\"}}");
    // Every series is there from the start.
    for kind in ["set_operation", "group", "distinct", "sort", "concatenate"] {
        assert_eq!(metric(&series(kind)), 0.0, "{kind}");
    }
    let _: Vec<u64> = conn.query("SELECT id FROM payment").await.unwrap();
    let _: Vec<u64> = conn
        .query("SELECT id FROM payment ORDER BY uid")
        .await
        .unwrap();
    let _: Vec<u64> = conn
        .query("SELECT id FROM payment ORDER BY uid DESC LIMIT 2")
        .await
        .unwrap();
    let _: Vec<u64> = conn.query("SELECT COUNT(*) FROM payment").await.unwrap();
    let _: Vec<u64> = conn
        .query("SELECT DISTINCT uid FROM payment")
        .await
        .unwrap();
    let _: Vec<u64> = conn
        .query("SELECT uid FROM payment INTERSECT SELECT uid FROM account")
        .await
        .unwrap();
    // One shard: no merge.
    let _: Vec<u64> = conn
        .query("SELECT id FROM payment WHERE uid = 1")
        .await
        .unwrap();
    assert_eq!(metric(&series("concatenate")), 1.0);
    assert_eq!(metric(&series("sort")), 2.0);
    assert_eq!(metric(&series("group")), 1.0);
    assert_eq!(metric(&series("distinct")), 1.0);
    assert_eq!(metric(&series("set_operation")), 1.0);
    c.drop_all();
}
