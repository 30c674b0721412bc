//! The query digest (issue 25 item 1): statements counted per fingerprint, without their
//! literals, with errors, rows, backend statements and latency, readable through
//! `SHOW DBMESH DIGEST` by a user with the process privilege and through `GET /digest`, and
//! emptied by `FLUSH DBMESH DIGEST` or `POST /digest/reset`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{four_data_sources, server_code, Proxy};
use mysql_async::prelude::*;
use mysql_async::Row;

/// (count, errors, rows, max_shards) of the digest row whose fingerprint starts with `prefix`.
fn counts(rows: &[Row], prefix: &str) -> Option<(u64, u64, u64, u64)> {
    rows.iter().find_map(|r| {
        let fingerprint: String = r.get("fingerprint")?;
        fingerprint.starts_with(prefix).then(|| {
            (
                r.get("count").unwrap(),
                r.get("errors").unwrap(),
                r.get("rows").unwrap(),
                r.get("max_shards").unwrap(),
            )
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_counts_statements_by_fingerprint_without_their_literals() {
    let backend = testkit::backends(1).expect("a MariaDB backend").remove(0);
    let prefix = testkit::unique_name("digest");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let mut rules = four_data_sources(std::slice::from_ref(&backend), "bank", &dbs);
    rules += "[tables.acct]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"mod\"\n\
           nodes = \"ds_{0..3}\"\n\n\
           [[users]]\nname = \"ops\"\npassword = \"ops\"\nprocess = true\n";
    let proxy = Proxy::start(&rules);
    let mut app = proxy.conn(Some("bank")).await;
    app.query_drop("CREATE TABLE acct (uid BIGINT PRIMARY KEY, owner VARCHAR(20))")
        .await
        .unwrap();
    app.query_drop("INSERT INTO acct VALUES (1, 'alice'), (2, 'bob'), (3, 'carol')")
        .await
        .unwrap();
    app.query_drop("INSERT INTO acct VALUES (4, 'dave')")
        .await
        .unwrap();
    for uid in 1..=3 {
        let _: Vec<String> = app
            .query(format!("SELECT owner FROM acct WHERE uid = {uid}"))
            .await
            .unwrap();
    }
    let _: Vec<String> = app
        .exec("SELECT owner FROM acct WHERE uid = ?", (4,))
        .await
        .unwrap();
    let _: Vec<u64> = app
        .query("SELECT uid FROM acct WHERE uid IN (1, 2, 3, 4) ORDER BY uid")
        .await
        .unwrap();
    let _: Vec<u64> = app
        .query("SELECT uid FROM acct WHERE uid IN (2, 3) ORDER BY uid")
        .await
        .unwrap();
    app.query_drop("SELECT nosuch FROM acct WHERE uid = 9")
        .await
        .unwrap_err();

    // Only a user with the process privilege reads it.
    let err = app.query_drop("SHOW DBMESH DIGEST").await.unwrap_err();
    assert_eq!(server_code(err), (1227, "42000".into()));
    let mut ops =
        mysql_async::Conn::new(proxy.opts(Some("bank")).user(Some("ops")).pass(Some("ops")))
            .await
            .unwrap();
    let rows: Vec<Row> = ops.query("SHOW DBMESH DIGEST").await.unwrap();
    let all: Vec<String> = rows.iter().map(|r| r.get("fingerprint").unwrap()).collect();
    for secret in ["alice", "bob", "dave", "nosuch = 9", "uid = 1"] {
        assert!(
            all.iter().all(|f| !f.contains(secret)),
            "a literal ({secret}) in the digest: {all:?}"
        );
    }
    // Three texts and one execution of the same statement: one fingerprint, four runs.
    assert_eq!(
        counts(&rows, "SELECT owner FROM acct WHERE uid = ?"),
        Some((4, 0, 4, 1)),
        "{all:?}"
    );
    // IN lists of any length are one fingerprint; the scatter read took four backend
    // statements, the two-uid one two.
    assert_eq!(
        counts(&rows, "SELECT uid FROM acct WHERE uid IN (?, ...)"),
        Some((2, 0, 6, 4)),
        "{all:?}"
    );
    assert_eq!(
        counts(&rows, "INSERT INTO acct VALUES (?, ...), ..."),
        Some((1, 0, 3, 3)),
        "{all:?}"
    );
    assert_eq!(counts(&rows, "SELECT nosuch").map(|c| c.1), Some(1));

    // The same through the admin API, as JSON.
    let (code, body) = proxy.http("GET", "/digest");
    assert_eq!(code, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fingerprint"] == "SELECT owner FROM acct WHERE uid = ?")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(entry["count"], 4);
    assert!(entry["p99_ms"].as_f64().unwrap() >= entry["p50_ms"].as_f64().unwrap());
    assert!(entry["max_ms"].as_f64().unwrap() >= entry["p99_ms"].as_f64().unwrap());

    // Emptied by SQL and by the API.
    ops.query_drop("FLUSH DBMESH DIGEST").await.unwrap();
    let rows: Vec<Row> = ops.query("SHOW DBMESH DIGEST").await.unwrap();
    let left: Vec<String> = rows.iter().map(|r| r.get("fingerprint").unwrap()).collect();
    // The FLUSH itself is counted as it ends.
    assert_eq!(left, ["FLUSH DBMESH DIGEST"]);
    let (code, _) = proxy.http("POST", "/digest/reset");
    assert_eq!(code, 200);
    let (_, body) = proxy.http("GET", "/digest");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The SHOW after the FLUSH was recorded before the reset; nothing since.
    assert_eq!(json.as_array().map(Vec::len), Some(0), "{body}");

    for db in &dbs {
        let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
    }
}
