//! The Grafana dashboard (deploy/grafana) and the Prometheus alert rules (deploy/prometheus)
//! query only series a running proxy exports from its start, and the metrics they rely on
//! behave as they say: counters are counters, error codes and the rules version are there
//! before anything happened. (`promtool check rules` runs in scripts/test.sh.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{one_backend, passthrough_rules, Proxy};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

/// Every `dbmesh_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("dbmesh_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        if name.len() > "dbmesh_".len() {
            names.insert(name);
        }
    }
    names
}

/// Whether `metrics` (the exposition format) holds a series of `name`.
fn has_series(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|l| {
        l.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
    })
}

#[test]
fn dashboard_and_alerts_query_only_exported_series() {
    let dashboard = std::fs::read_to_string(format!("{DEPLOY}/grafana/dbmesh.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queries = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries += target["expr"].as_str().unwrap();
            queries += "\n";
        }
    }
    let alerts = std::fs::read_to_string(format!("{DEPLOY}/prometheus/dbmesh-alerts.yml")).unwrap();
    let dashboard_names = metric_names(&queries);
    let alert_names = metric_names(&alerts);
    assert!(dashboard_names.len() >= 12, "{dashboard_names:?}");
    assert!(alert_names.len() >= 8, "{alert_names:?}");

    // A fresh proxy with a replica (its families have series only where replicas are
    // configured; this one is the primary under another name, so it is out of service).
    let backend = one_backend();
    let db = testkit::unique_name("deploy");
    let rules = passthrough_rules(&backend, "bank", &db, "")
        + &format!(
            "[[data_sources.main.replicas]]\naddress = \"localhost:{}\"\n",
            backend.port()
        );
    let proxy = Proxy::start(&rules);
    let (_, metrics) = proxy.http("GET", "/metrics");
    let missing: Vec<&String> = dashboard_names
        .union(&alert_names)
        .filter(|name| !has_series(&metrics, name))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?}\n{metrics}");

    // Counters are counters, errors are there before the first one, and the rule file in
    // force is named in the metrics and in /health alike.
    for counter in [
        "dbmesh_plan_cache_hits_total",
        "dbmesh_plan_cache_misses_total",
        "dbmesh_errors_total",
        "dbmesh_statements_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {counter} counter")),
            "{counter}\n{metrics}"
        );
    }
    for code in ["1040", "1064", "1105", "1213", "1235"] {
        assert!(
            metrics.contains(&format!("dbmesh_errors_total{{code=\"{code}\"}} 0")),
            "{code}\n{metrics}"
        );
    }
    assert!(metrics.contains("dbmesh_rules_version 1\n"), "{metrics}");
    let sha = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dbmesh_rules_info{sha256=\""))
        .and_then(|l| l.split('"').next())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(sha.len(), 16, "{sha}");
    let (_, health) = proxy.http("GET", "/health");
    assert!(
        health.contains(&format!("rules: version 1, sha256 {sha}")),
        "{health}"
    );
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}
