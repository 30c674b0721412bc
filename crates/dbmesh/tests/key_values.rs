//! A write is routed by the value MariaDB stores in the sharding column, whatever type the
//! client sent it as: DOUBLE parameters (mysql2 binds every JavaScript number so), decimal
//! text and string parameters, decimal and DOUBLE literals, integers into a string column.
//! Every algorithm; the stored values are compared with what MariaDB itself stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Proxy, PASSWORD, USER};
use mysql_async::prelude::*;
use mysql_async::Value;

/// (table, the rule's algorithm lines) for integer sharding columns over ds_0 and ds_1.
const INT_TABLES: [(&str, &str); 5] = [
    ("t_mod", "algorithm = \"mod\"\nnodes = \"ds_{0..1}.t_mod_{0..1}\""),
    ("t_hash", "algorithm = \"hash\"\nnodes = \"ds_{0..1}.t_hash_{0..1}\""),
    ("t_range", "algorithm = \"range\"\nnodes = \"ds_{0..1}\"\nboundaries = [25]"),
    ("t_ch", "algorithm = \"consistent_hash\"\nnodes = \"ds_{0..1}.t_ch_{0..1}\""),
    (
        "t_uid",
        "algorithm = \"uid_slice\"\nnodes = \"ds_{0..1}\"\n[tables.t_uid.slices]\n\"00-24\" = \"ds_0\"\n\"25-99\" = \"ds_1\"",
    ),
];

/// (tag, the INSERT's value expression, its parameter) for the integer columns.
fn int_rows() -> Vec<(u32, &'static str, Option<Value>)> {
    vec![
        (1, "?", Some(Value::Double(26.0))),
        (2, "?", Some(Value::Double(24.5))),
        (3, "?", Some(Value::Double(27.5))),
        (4, "?", Some(Value::Bytes(b"30.5".to_vec()))),
        (5, "?", Some(Value::Bytes(b"1e1".to_vec()))),
        (6, "?", Some(Value::Float(12.0))),
        (7, "32.5", None),
        (8, "34.5e0", None),
        (9, "'35.5'", None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_route_by_the_value_mariadb_stores() {
    let backend = common::one_backend();
    let prefix = testkit::unique_name("keyval");
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\n\n[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    for i in 0..2 {
        rules += &format!(
            "[data_sources.ds_{i}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{prefix}_{i}\"\n\n",
            backend.address(),
            backend.user(),
            backend.password()
        );
    }
    for (table, algorithm) in INT_TABLES {
        rules += &format!("[tables.{table}]\nkind = \"sharded\"\ncolumn = \"k\"\n{algorithm}\n\n");
    }
    rules += "[tables.s_hash]\nkind = \"sharded\"\ncolumn = \"k\"\ncolumn_type = \"string\"\n\
              algorithm = \"hash\"\nnodes = \"ds_{0..1}.s_hash_{0..1}\"\n";
    let proxy = Proxy::start(&rules);
    let mut conn = proxy.conn(Some("bank")).await;
    let mut direct = common::direct(&backend).await;
    direct
        .query_drop(format!(
            "USE `{prefix}_0`; CREATE TABLE reference (k BIGINT, tag INT)"
        ))
        .await
        .unwrap();

    for (table, _) in INT_TABLES {
        conn.query_drop(format!(
            "CREATE TABLE {table} (k BIGINT PRIMARY KEY, tag INT)"
        ))
        .await
        .unwrap();
        direct.query_drop("DELETE FROM reference").await.unwrap();
        for (tag, expr, param) in int_rows() {
            let params: Vec<Value> = param.into_iter().collect();
            let sql = |t: &str| format!("INSERT INTO {t} (k, tag) VALUES ({expr}, {tag})");
            conn.exec_drop(sql(table), params.clone())
                .await
                .unwrap_or_else(|e| panic!("{table}, tag {tag}: {e}"));
            direct.exec_drop(sql("reference"), params).await.unwrap();
        }
        // Each row is found again by a point read routed by the key MariaDB stored.
        let stored: Vec<(i64, u32)> = direct
            .query("SELECT k, tag FROM reference ORDER BY tag")
            .await
            .unwrap();
        assert_eq!(stored.len(), int_rows().len());
        for (k, tag) in stored {
            let found: Option<u32> = conn
                .exec_first(format!("SELECT tag FROM {table} WHERE k = ?"), (k,))
                .await
                .unwrap();
            assert_eq!(found, Some(tag), "{table}: the row stored with k = {k}");
        }
    }

    // A string column: integers and integral DOUBLEs are stored as their digits.
    conn.query_drop("CREATE TABLE s_hash (k VARCHAR(40) PRIMARY KEY, tag INT)")
        .await
        .unwrap();
    for (tag, param) in [
        (1, Value::Double(26.0)),
        (2, Value::Int(-7)),
        (3, Value::UInt(42)),
    ] {
        conn.exec_drop("INSERT INTO s_hash (k, tag) VALUES (?, ?)", (param, tag))
            .await
            .unwrap();
    }
    conn.query_drop("INSERT INTO s_hash (k, tag) VALUES (99, 4)")
        .await
        .unwrap();
    for (k, tag) in [("26", 1), ("-7", 2), ("42", 3), ("99", 4)] {
        let found: Option<u32> = conn
            .exec_first("SELECT tag FROM s_hash WHERE k = ?", (k,))
            .await
            .unwrap();
        assert_eq!(found, Some(tag), "s_hash: the row stored with k = '{k}'");
    }
    // What the proxy cannot know for certain is refused, naming the value.
    for (param, what) in [
        (Value::Double(0.5), "floating-point value 0.5"),
        (Value::Bytes(b"7abc".to_vec()), "'7abc'"),
    ] {
        let table = if what.contains("7abc") {
            "t_mod"
        } else {
            "s_hash"
        };
        match conn
            .exec_drop(
                format!("INSERT INTO {table} (k, tag) VALUES (?, 0)"),
                (param,),
            )
            .await
        {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!((e.code, e.state.as_str()), (1235, "42000"), "{}", e.message);
                assert!(e.message.contains(what), "{}", e.message);
            }
            other => panic!("{table}: expected error 1235, got {other:?}"),
        }
    }
    drop(conn);
    for i in 0..2 {
        backend
            .sql(&format!("DROP DATABASE IF EXISTS `{prefix}_{i}`"))
            .unwrap();
    }
}
