//! The command line (`check`) and the admin HTTP listener (`/health`, `/metrics`, `/reload`,
//! SIGHUP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{one_backend, passthrough_rules, Proxy};
use mysql_async::prelude::*;

fn dbmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dbmesh"))
        .args(args)
        .output()
        .expect("run dbmesh")
}

#[test]
fn check_accepts_every_shipped_rule_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sharding-rules");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = dbmesh(&["check", "--config", path.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} rule files found");
}

#[test]
fn check_reports_every_problem_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[users]]\nname = \"u\"\npassword = \"p\"\n[schema]\nname = \"bank\"\ndefault_data_source = \"nowhere\"\n\
         [data_sources.a]\naddress = \"127.0.0.1:3306\"\nuser = \"root\"\ndatabase = \"a\"\ntypo_field = 1\n",
    )
    .unwrap();
    let out = dbmesh(&["check", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("typo_field"), "{stderr}");
    assert!(stderr.contains("bad.toml"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_reload() {
    let backend = one_backend();
    let db = testkit::unique_name("admin");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let (code, body) = proxy.wait_health(200, Duration::from_secs(10));
    assert_eq!(code, 200, "{body}");

    let mut conn = proxy.conn(Some("bank")).await;
    for _ in 0..3 {
        conn.query_drop("SELECT 1").await.unwrap();
    }
    let _ = conn.query_drop("SELECT * FROM missing_table").await;
    // Metrics are counted after the answer is flushed; the next answer orders them.
    conn.query_drop("SELECT 1").await.unwrap();
    let (code, metrics) = proxy.http("GET", "/metrics");
    assert_eq!(code, 200);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{metrics}"))
    };
    assert!(value("dbmesh_statements_total{command=\"query\"}") >= 5.0);
    assert_eq!(value("dbmesh_errors_total{code=\"1146\"}"), 1.0);
    assert_eq!(value("dbmesh_client_connections "), 1.0);
    assert!(value("dbmesh_statement_duration_seconds_count") >= 4.0);
    // One pooled connection served the session's statements (and the health checks); the
    // idle session holds none of it.
    assert_eq!(
        value("dbmesh_backend_connections{data_source=\"main\",state=\"open\"}"),
        1.0
    );
    assert_eq!(value("dbmesh_session_pinned{reason=\"transaction\"}"), 0.0);
    assert!(
        value("dbmesh_plan_cache{stat=\"hits\"}") >= 2.0,
        "repeated statements hit the plan cache"
    );
    assert_eq!(proxy.http("GET", "/nope").0, 404);

    // A bad rule file is rejected with its messages; the old rules stay in force.
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(
        &proxy.config_path,
        good.replace("name = \"bank\"", "name = \"\"\nbogus = 1"),
    )
    .unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bogus"), "{body}");
    let dbs: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
    assert!(dbs.contains(&"bank".to_string()));

    // A good one is swapped in atomically: the logical name changes for every session.
    std::fs::write(
        &proxy.config_path,
        good.replace("name = \"bank\"", "name = \"bank2\""),
    )
    .unwrap();
    assert_eq!(proxy.http("POST", "/reload").0, 200);
    let dbs: Vec<String> = conn.query("SHOW DATABASES").await.unwrap();
    assert_eq!(
        dbs,
        vec!["bank2".to_string(), "information_schema".to_string()]
    );

    // SIGHUP does the same.
    std::fs::write(
        &proxy.config_path,
        good.replace("name = \"bank\"", "name = \"bank3\""),
    )
    .unwrap();
    proxy.sighup();
    let mut seen = Vec::new();
    for _ in 0..50 {
        seen = conn.query("SHOW DATABASES").await.unwrap();
        if seen.contains(&"bank3".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains(&"bank3".to_string()), "{seen:?}");
    conn.disconnect().await.unwrap();
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}
