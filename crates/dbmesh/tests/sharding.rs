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

    // An INSERT without a column list cannot be routed (the proxy does not know where the
    // sharding column is): a clean 1235.
    assert_eq!(
        server_code(
            conn.query_drop("INSERT INTO payment VALUES (1, 1, 1.00)")
                .await
                .unwrap_err()
        )
        .0,
        1235
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
    let err = conn
        .query_drop("SELECT GROUP_CONCAT(id) FROM payment")
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
