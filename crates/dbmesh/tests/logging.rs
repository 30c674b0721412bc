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
