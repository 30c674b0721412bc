//! The proxy is the server its clients see: KILL and the process lists act on the proxy's own
//! sessions and never reach a backend, where the proxy's account sees (and may kill) every
//! connection of the server, other applications' included.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{direct, one_backend, passthrough_rules, server_code, Proxy, RawClient};
use mysql_async::prelude::*;
use mysql_async::{Row, Value};

/// Every value of `rows` as text, for looking for what must not be there.
fn rows_text(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        for i in 0..row.len() {
            match row.as_ref(i) {
                Some(Value::Bytes(b)) => out += &String::from_utf8_lossy(b),
                Some(v) => out += &v.as_sql(true),
                None => {}
            }
            out.push('\t');
        }
        out.push('\n');
    }
    out
}

/// The process-list forms a client can send, in the text and the binary protocol.
const PROCESS_LISTS: [&str; 4] = [
    "SHOW PROCESSLIST",
    "SHOW FULL PROCESSLIST",
    "SELECT * FROM information_schema.PROCESSLIST",
    "SELECT ID, USER, INFO FROM information_schema.PROCESSLIST WHERE INFO IS NOT NULL",
];

/// A direct connection to the backend runs a statement while a proxy client sends every
/// process-list form and every KILL form at that connection's id: no answer shows the
/// backend's connections or statements, no KILL reaches the backend (the statement runs to
/// its end, the connection survives), and COM_PROCESS_KILL / COM_PROCESS_INFO do not either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_process_lists_never_reach_the_backend() {
    let backend = one_backend();
    let db = testkit::unique_name("nokill");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let mut client = proxy.conn(Some("bank")).await;

    let mut victim = direct(&backend).await;
    let victim_id: u64 = victim
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let running = tokio::spawn(async move {
        let slept: Option<(String, u32)> = victim
            .query_first("SELECT 'secret-marker', SLEEP(2)")
            .await
            .unwrap();
        (victim, slept)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    for sql in PROCESS_LISTS {
        let shown = match client.query::<Row, _>(sql).await {
            Ok(rows) => rows_text(&rows),
            Err(e) => format!("{:?}", server_code(e)),
        };
        let prepared = match client.exec::<Row, _, _>(sql, ()).await {
            Ok(rows) => rows_text(&rows),
            Err(e) => format!("{:?}", server_code(e)),
        };
        for answer in [shown, prepared] {
            assert!(!answer.contains("secret-marker"), "{sql}: {answer}");
            assert!(!answer.contains(backend.user()), "{sql}: {answer}");
        }
    }
    for sql in [
        format!("KILL {victim_id}"),
        format!("KILL QUERY {victim_id}"),
        format!("KILL HARD CONNECTION {victim_id}"),
        format!("/*!50000 KILL */ {victim_id}"),
    ] {
        client.query_drop(&sql).await.unwrap_err();
        client.exec_drop(&sql, ()).await.unwrap_err();
    }
    let mut raw = RawClient::login(proxy.port, Some("bank"));
    let mut kill = vec![protocol::constants::com::PROCESS_KILL];
    kill.extend_from_slice(&(victim_id as u32).to_le_bytes());
    raw.write_packet(0, &kill);
    let (_, answer) = raw.read_packet().expect("an answer to COM_PROCESS_KILL");
    assert_eq!(answer[0], 0xff, "COM_PROCESS_KILL of a backend id fails");

    let (mut victim, slept) = running.await.unwrap();
    assert_eq!(slept, Some(("secret-marker".into(), 0)), "not interrupted");
    let alive: Option<u32> = victim.query_first("SELECT 1").await.unwrap();
    assert_eq!(alive, Some(1));
    let _ = backend.sql(&format!("DROP DATABASE IF EXISTS `{db}`"));
}
