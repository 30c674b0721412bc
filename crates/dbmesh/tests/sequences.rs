//! Global sequences through the proxy: `SELECT NEXTVAL(seq)`, `NEXT VALUE FOR`, the range
//! form, and errors; ids are unique across two proxies sharing one meta database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{one_backend, passthrough_rules, server_code, Proxy};
use mysql_async::prelude::*;

fn rules(backend: &testkit::Backend, db: &str) -> String {
    passthrough_rules(backend, "bank", db, "meta_data_source = \"main\"")
        + "\n[sequences.order_seq]\nkind = \"segment\"\nstep = 100\n\n[sequences.event_seq]\nkind = \"snowflake\"\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nextval_is_unique_across_proxies_and_reports_errors() {
    let backend = one_backend();
    let db = testkit::unique_name("seq");
    let a = Proxy::start(&rules(&backend, &db));
    let b = Proxy::start(&rules(&backend, &db));
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
