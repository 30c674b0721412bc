//! Backend error and warning texts name the logical database and tables, as one server holding
//! the logical schema would: a statement runs on the backends under physical names
//! (`<logical>_0.acct_1`), and the client must not read those. Each statement is answered by
//! the proxy and by a reference database named like the logical one, holding the same tables,
//! and the two errors must be the same code and text; in the text protocol, prepared without
//! and with parameters.
//!
//! One MariaDB; `acct` sharded by `id mod 4` over ds_0/ds_1 × two tables each; `ghost` in the
//! rules but never created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Proxy, PASSWORD, USER};
use mysql_async::prelude::*;

const ACCT: &str = "(id BIGINT PRIMARY KEY, v VARCHAR(64), UNIQUE KEY uv (v))";

struct Setup {
    /// The logical database, and the reference database of that name on the backend.
    logical: String,
    proxy: Proxy,
    reference: mysql_async::Conn,
    _backend: testkit::Backend,
}

async fn setup() -> Setup {
    let backend = common::one_backend();
    let logical = testkit::unique_name("names");
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\n\n\
         [[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"{logical}\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    for i in 0..2 {
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\
             database = \"{logical}_{i}\"\n\n",
            backend.address(),
            backend.user(),
            backend.password(),
        );
    }
    rules += "[tables.acct]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = \"ds_{0..1}.acct_{0..1}\"\n\n\
              [tables.ghost]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
              nodes = \"ds_{0..1}.ghost_{0..1}\"\n";
    let proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some(&logical)).await;
    conn.query_drop(format!("CREATE TABLE acct {ACCT}"))
        .await
        .unwrap();
    let mut reference = common::direct(&backend).await;
    reference
        .query_drop(format!(
            "CREATE DATABASE `{logical}`; USE `{logical}`; CREATE TABLE acct {ACCT}"
        ))
        .await
        .unwrap();
    Setup {
        logical,
        proxy,
        reference,
        _backend: backend,
    }
}

fn code_and_text(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// The error `sql` gets in the text protocol, prepared without parameters and prepared with
/// `params` bound, or the statement's answer if it did not fail.
async fn errors(
    conn: &mut mysql_async::Conn,
    text: &str,
    prepared: &str,
    params: Vec<mysql_async::Value>,
) -> Vec<(u16, String)> {
    let mut seen = Vec::new();
    let r = conn.query_drop(text).await;
    seen.push(r.map_or_else(code_and_text, |()| (0, format!("{text}: no error"))));
    let r = conn.exec_drop(text, ()).await;
    seen.push(r.map_or_else(code_and_text, |()| (0, format!("{text}: no error"))));
    let r = conn.exec_drop(prepared, params).await;
    seen.push(r.map_or_else(code_and_text, |()| (0, format!("{prepared}: no error"))));
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_routed_statements_read_as_one_servers() {
    let mut s = setup().await;
    let mut proxy = s.proxy.conn(Some(&s.logical)).await;
    proxy
        .query_drop("INSERT INTO acct (id, v) VALUES (1, 'one')")
        .await
        .unwrap();
    s.reference
        .query_drop("INSERT INTO acct (id, v) VALUES (1, 'one')")
        .await
        .unwrap();
    let db = &s.logical;
    let cases: [(String, String, Vec<mysql_async::Value>); 4] = [
        (
            "SELECT ANY_VALUE(v) FROM acct WHERE id = 1".into(),
            "SELECT ANY_VALUE(v) FROM acct WHERE id = ?".into(),
            vec![1.into()],
        ),
        (
            "SELECT acct.nope FROM acct WHERE id = 1".into(),
            "SELECT acct.nope FROM acct WHERE id = ?".into(),
            vec![1.into()],
        ),
        (
            "UPDATE acct SET nope = 1 WHERE id = 1".into(),
            "UPDATE acct SET nope = ? WHERE id = 1".into(),
            vec![1.into()],
        ),
        (
            format!("SELECT {db}.nofunc(v) FROM {db}.acct WHERE id = 1"),
            format!("SELECT {db}.nofunc(v) FROM {db}.acct WHERE id = ?"),
            vec![1.into()],
        ),
    ];
    for (text, prepared, params) in &cases {
        let through_proxy = errors(&mut proxy, text, prepared, params.clone()).await;
        let direct = errors(&mut s.reference, text, prepared, params.clone()).await;
        println!("{text}: {:?}", through_proxy[0]);
        assert_eq!(through_proxy, direct, "{text}");
        for (_, message) in &through_proxy {
            assert!(!message.contains(&format!("{}_", s.logical)), "{message}");
        }
    }

    // A table of the rules that was never created: the error names the logical table.
    let ghost = errors(
        &mut proxy,
        "SELECT * FROM ghost WHERE id = 1",
        "SELECT * FROM ghost WHERE id = ?",
        vec![1.into()],
    )
    .await;
    let expected = (1146, format!("Table '{}.ghost' doesn't exist", s.logical));
    assert_eq!(ghost, vec![expected.clone(), expected.clone(), expected]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_warnings_of_scattered_statements_name_logical_objects() {
    let s = setup().await;
    let mut proxy = s.proxy.conn(Some(&s.logical)).await;
    let physical = format!("{}_", s.logical);
    for sql in [
        "SELECT ANY_VALUE(v) FROM acct",
        "SELECT v FROM acct ORDER BY nope",
        "SELECT * FROM ghost",
        "UPDATE ghost SET v = 'x'",
    ] {
        let (code, message) = proxy
            .query_drop(sql)
            .await
            .map_or_else(code_and_text, |()| {
                panic!("{sql}: no error");
            });
        println!("{sql}: {code} {message}");
        assert!(!message.contains(&physical), "{sql}: {message}");
        assert!(
            !message.contains("ghost_") && !message.contains("acct_"),
            "{message}"
        );
    }

    // Notes of a DDL fan-out over tables that are not there.
    proxy
        .query_drop("DROP TABLE IF EXISTS ghost")
        .await
        .unwrap();
    let warnings: Vec<(String, u16, String)> = proxy.query("SHOW WARNINGS").await.unwrap();
    assert!(
        !warnings.is_empty(),
        "DROP TABLE IF EXISTS of a missing table leaves notes"
    );
    for (level, code, message) in &warnings {
        println!("{level} {code} {message}");
        assert_eq!(*code, 1051, "{message}");
        assert!(!message.contains(&physical), "{message}");
        assert!(
            message.contains(&format!("{}.ghost", s.logical)),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_data_in_an_error_is_left_as_it_was() {
    let mut s = setup().await;
    let mut proxy = s.proxy.conn(Some(&s.logical)).await;
    // The value is a physical table's name: in a duplicate-entry error it is the client's
    // data, which the text must show as it is.
    for conn in [&mut proxy, &mut s.reference] {
        conn.query_drop("INSERT INTO acct (id, v) VALUES (1, 'acct_1')")
            .await
            .unwrap();
    }
    let sql = "INSERT INTO acct (id, v) VALUES (5, 'acct_1')";
    let through_proxy = proxy
        .query_drop(sql)
        .await
        .map_or_else(code_and_text, |()| {
            panic!("{sql}: no error");
        });
    let direct = s
        .reference
        .query_drop(sql)
        .await
        .map_or_else(code_and_text, |()| {
            panic!("{sql}: no error");
        });
    assert_eq!(through_proxy, direct);
    assert_eq!(through_proxy.0, 1062);
}
