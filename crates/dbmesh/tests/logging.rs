//! The proxy's log: `--log-format text|json`, one event per line (also an event whose fields
//! hold line breaks), no colour codes when stderr is not a terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{one_backend, passthrough_rules, Proxy};

/// Makes the proxy log an event with a multi-line field: a SIGHUP reload of a rule file with
/// two problems (the error lists one per line). Returns the log once that event is in it.
fn log_a_multi_line_event(proxy: &Proxy) -> String {
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        good.replace(
            "default_data_source = \"main\"",
            "default_data_source = \"bogus\"",
        )
        .replace("name = \"bank\"", "name = \"\""),
    )
    .unwrap();
    proxy.sighup();
    let start = Instant::now();
    loop {
        let log = proxy.log();
        if log.contains("bogus") || start.elapsed() > Duration::from_secs(10) {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn text_log_has_one_line_per_event_and_no_colour() {
    let backend = one_backend();
    let db = testkit::unique_name("logtext");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let log = log_a_multi_line_event(&proxy);
    assert!(!log.contains('\x1b'), "ANSI codes in a file:\n{log}");
    let rejected: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("reload rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{log}");
    // Both problems on the event's own line, the break between them escaped.
    assert!(rejected[0].contains("bogus"), "{log}");
    assert!(rejected[0].contains("schema.name"), "{log}");
    assert!(rejected[0].contains("\\n"), "{log}");
    assert!(
        log.lines().all(|l| l.contains(" INFO ")
            || l.contains(" WARN ")
            || l.contains(" ERROR ")
            || l.contains(" DEBUG ")),
        "a line that is no event:\n{log}"
    );
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[test]
fn json_log_is_one_object_per_line() {
    let backend = one_backend();
    let db = testkit::unique_name("logjson");
    let proxy = Proxy::start_with_args(
        &passthrough_rules(&backend, "bank", &db, ""),
        &["--log-format", "json"],
    );
    let log = log_a_multi_line_event(&proxy);
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{log}")))
        .collect();
    let serving = events
        .iter()
        .find(|e| e["message"] == "dbmesh serving")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(serving["level"], "INFO");
    assert!(serving["listen"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(serving["timestamp"].is_string());
    let rejected = events
        .iter()
        .find(|e| e["level"] == "ERROR")
        .unwrap_or_else(|| panic!("{log}"));
    let error = rejected["error"].as_str().unwrap();
    assert!(error.contains("bogus") && error.contains('\n'), "{error}");
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// The JSON events of `target` in `proxy`'s log.
fn events_of(proxy: &Proxy, target: &str) -> Vec<serde_json::Value> {
    proxy
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["target"] == target)
        .collect()
}

/// Waits (bounded) until `proxy`'s log has `n` events of `target`.
fn until_events(proxy: &Proxy, target: &str, n: usize) -> Vec<serde_json::Value> {
    let start = Instant::now();
    loop {
        let events = events_of(proxy, target);
        if events.len() >= n || start.elapsed() > Duration::from_secs(10) {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_and_sampled_ones_are_logged_without_their_literals_unless_asked() {
    use mysql_async::prelude::*;
    let backend = one_backend();
    let db = testkit::unique_name("slowlog");
    let proxy = Proxy::start_with_args(
        &passthrough_rules(&backend, "bank", &db, "slow_statement_ms = 250"),
        &["--log-format", "json"],
    );
    let mut conn = proxy.conn(Some("bank")).await;
    let id: u32 = conn
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let _: Option<(i64, String)> = conn
        .query_first("SELECT SLEEP(0.4), 'customer 4711'")
        .await
        .unwrap();
    let _: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    let slow = until_events(&proxy, "dbmesh::slow_statement", 1);
    assert_eq!(slow.len(), 1, "{}", proxy.log());
    let event = &slow[0];
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["statement"], "SELECT SLEEP(?), ?", "{event}");
    assert_eq!(event["conn"], id);
    assert_eq!(event["user"], common::USER);
    assert_eq!(event["database"], "bank");
    assert_eq!(event["route"], "single main");
    assert_eq!(event["rows"], 1);
    assert_eq!(event["error"], 0);
    assert!(event["duration_ms"].as_f64().unwrap() >= 400.0, "{event}");
    assert!(!proxy.log().contains("customer 4711"), "{}", proxy.log());
    let (_, metrics) = proxy.http("GET", "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == "dbmesh_slow_statements_total 1"),
        "{metrics}"
    );
    // No query log by default.
    assert!(events_of(&proxy, "dbmesh::query_log").is_empty());

    // A reload turns on the query log (every statement) and the statements' text.
    let rules = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        rules.replace(
            "slow_statement_ms = 250",
            "slow_statement_ms = 0\nquery_log_every = 1\nlog_statement_text = true",
        ),
    )
    .unwrap();
    let (status, body) = proxy.http("POST", "/reload");
    assert_eq!(status, 200, "{body}");
    let _: Option<String> = conn.query_first("SELECT 'customer 4712'").await.unwrap();
    let missing = conn.query_drop("SELECT * FROM no_such_table").await;
    assert!(missing.is_err());
    let logged = until_events(&proxy, "dbmesh::query_log", 2);
    assert_eq!(logged.len(), 2, "{}", proxy.log());
    assert_eq!(logged[0]["level"], "INFO");
    assert_eq!(logged[0]["statement"], "SELECT 'customer 4712'");
    assert_eq!(logged[1]["statement"], "SELECT * FROM no_such_table");
    assert_eq!(logged[1]["error"], 1146);
    // The slow log is off now: still the one event.
    assert_eq!(events_of(&proxy, "dbmesh::slow_statement").len(), 1);
    drop(conn);
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}
