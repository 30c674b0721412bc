//! Hot reload under load: a table's layout changes while clients run statements; every
//! statement succeeds, statements after the swap follow the new rules, and nothing is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{one_backend, Proxy};
use mysql_async::prelude::*;

fn rules(backend: &testkit::Backend, prefix: &str, ledger_on: &str) -> String {
    let mut text = String::from(
        "[proxy]\ncreate_databases = true\n\n[[users]]\nname = \"dbmesh\"\npassword = \"dbmesh\"\n\n\
         [schema]\nname = \"bank\"\ndefault_data_source = \"ds_a\"\n\n",
    );
    for ds in ["ds_a", "ds_b"] {
        text += &format!(
            "[data_sources.{ds}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{prefix}_{ds}\"\n\n",
            backend.address(),
            backend.user(),
            backend.password()
        );
    }
    text + &format!("[tables.ledger]\nkind = \"single\"\ndata_source = \"{ledger_on}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_under_load_is_atomic_and_loses_nothing() {
    let backend = one_backend();
    let prefix = testkit::unique_name("reload");
    let proxy = Proxy::start(&rules(&backend, &prefix, "ds_a"));
    for ds in ["ds_a", "ds_b"] {
        backend
            .sql(&format!(
                "CREATE TABLE `{prefix}_{ds}`.ledger (id BIGINT PRIMARY KEY, note VARCHAR(20))"
            ))
            .unwrap();
    }

    // Four clients insert rows with increasing ids as fast as they can.
    let stop = Arc::new(AtomicBool::new(false));
    let next_id = Arc::new(AtomicU64::new(1));
    let reloading = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let opts = proxy.opts(Some("bank"));
        let (stop, next_id, reloading) = (stop.clone(), next_id.clone(), reloading.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let (mut written, mut before_swap) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                conn.exec_drop("INSERT INTO ledger (id, note) VALUES (?, 'x')", (id,))
                    .await
                    .unwrap();
                // Acknowledged before the reload began, so placed by the old rules. (An id
                // taken from the counter then may be inserted only after the swap.)
                if !reloading.load(Ordering::SeqCst) {
                    before_swap.push(id.to_string());
                }
                // Reads keep working through the swap. (A row written just before it lives
                // where the old rules put it: moving rows is rebalancing's job, not a reload's.)
                let _: Option<u64> = conn
                    .query_first(format!("SELECT id FROM ledger WHERE id = {id}"))
                    .await
                    .unwrap();
                written.push(id);
            }
            (written, before_swap)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    reloading.store(true, Ordering::SeqCst);
    std::fs::write(&proxy.config_path, rules(&backend, &prefix, "ds_b")).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let after_swap = next_id.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut written, mut before_swap) = (Vec::new(), Vec::new());
    for c in clients {
        let (w, b) = c.await.unwrap();
        written.extend(w);
        before_swap.extend(b);
    }
    assert!(
        written.len() > 20 && !before_swap.is_empty(),
        "the load ran: {} statements",
        written.len()
    );

    // Every row is in exactly one of the two databases: ds_a before the swap, ds_b after it,
    // and the statements in flight around the swap in one or the other.
    let count = |ds: &str, filter: &str| -> u64 {
        backend
            .sql(&format!(
                "SELECT COUNT(*) FROM `{prefix}_{ds}`.ledger WHERE {filter}"
            ))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let total = count("ds_a", "1") + count("ds_b", "1");
    assert_eq!(total, written.len() as u64, "no row lost or duplicated");
    assert_eq!(
        count("ds_b", &format!("id IN ({})", before_swap.join(","))),
        0,
        "before the swap rows went to ds_a"
    );
    assert_eq!(
        count("ds_a", &format!("id > {}", after_swap + 8)),
        0,
        "after the swap rows go to ds_b"
    );
    assert!(count("ds_b", "1") > 0);
    for ds in ["ds_a", "ds_b"] {
        backend
            .sql(&format!("DROP DATABASE IF EXISTS `{prefix}_{ds}`"))
            .unwrap();
    }
}
