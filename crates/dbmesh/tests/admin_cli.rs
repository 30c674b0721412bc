//! The command line (`check`) and the admin HTTP listener (`/health`, `/metrics`, `/reload`,
//! SIGHUP, and who may use it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{one_backend, passthrough_rules, Proxy, ADMIN_TOKEN, FREE_PORTS};
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
    // The pool served the session's statements and the health checks: one connection, or two
    // when a health check ran while a statement held the first (a loaded machine). The idle
    // session holds none: at most a health check in flight has one in use.
    let open = value("dbmesh_backend_connections{data_source=\"main\",state=\"open\"}");
    assert!(
        (1.0..=2.0).contains(&open),
        "{open} open backend connections"
    );
    assert!(value("dbmesh_backend_connections{data_source=\"main\",state=\"in_use\"}") <= 1.0);
    assert_eq!(value("dbmesh_session_pinned{reason=\"transaction\"}"), 0.0);
    let hits = value("dbmesh_plan_cache_hits_total ");
    assert!(hits >= 2.0, "repeated statements hit the plan cache");
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
    // Each reload starts a new plan cache; the counter goes on from where it was.
    let (_, metrics) = proxy.http("GET", "/metrics");
    let hits_after: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dbmesh_plan_cache_hits_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hits_after >= hits, "{hits_after} < {hits}");
    assert!(metrics.contains("dbmesh_rules_version 3\n"), "{metrics}");
    conn.disconnect().await.unwrap();
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// Rules over `backend` with free ports and `extra` in `[proxy]`, and no admin token unless
/// `extra` sets one.
fn rules_without_token(backend: &testkit::Backend, db: &str, extra: &str) -> String {
    passthrough_rules(backend, "bank", db, &format!("{FREE_PORTS}\n{extra}"))
}

/// Changes need the token as a bearer credential, in a POST that no web page sent; status
/// endpoints stay open.
#[test]
fn admin_changes_need_the_token_and_no_browser() {
    let backend = one_backend();
    let db = testkit::unique_name("adminauth");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let auth = ("Authorization", bearer.as_str());
    for path in ["/reload", "/primary?data_source=main&address=127.0.0.1:1"] {
        assert_eq!(proxy.http_with("POST", path, &[]).0, 401, "{path}");
        let wrong = ("Authorization", "Bearer test-admin-token-0123456780");
        assert_eq!(proxy.http_with("POST", path, &[wrong]).0, 401, "{path}");
        let basic = ("Authorization", "Basic dGVzdDp0ZXN0");
        assert_eq!(proxy.http_with("POST", path, &[basic]).0, 401, "{path}");
        // A browser's request carries Origin or Sec-Fetch-Site: refused even with the token
        // (a page could have learnt it nowhere, but it must not matter).
        let origin = ("Origin", "http://attacker.example");
        assert_eq!(proxy.http_with("POST", path, &[auth, origin]).0, 403);
        let site = ("Sec-Fetch-Site", "cross-site");
        assert_eq!(proxy.http_with("POST", path, &[auth, site]).0, 403);
        // Changes are POSTs only.
        assert_eq!(proxy.http_with("GET", path, &[auth]).0, 405, "{path}");
    }
    let typed = ("Sec-Fetch-Site", "none");
    let (code, body) = proxy.http_with("POST", "/reload", &[auth, typed]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(proxy.http_with("GET", "/health", &[]).0, 200);
    assert_eq!(proxy.http_with("GET", "/metrics", &[]).0, 200);
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// Without a configured token the admin API changes nothing; `DBMESH_ADMIN_TOKEN` sets one
/// (and wins over the rule file's); status endpoints can require it too.
#[test]
fn admin_token_from_the_environment_and_none_means_no_changes() {
    let backend = one_backend();
    let db = testkit::unique_name("admintoken");
    let any = ("Authorization", "Bearer anything-at-all-0123456789");
    let proxy = Proxy::start_raw(&rules_without_token(&backend, &db, ""), &[]);
    let (code, body) = proxy.http_with("POST", "/reload", &[any]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("admin_token"), "{body}");
    drop(proxy);

    let env_token = "from-the-environment-0123456789";
    let rules = rules_without_token(
        &backend,
        &db,
        &format!("admin_token = \"{ADMIN_TOKEN}\"\nadmin_status_public = false"),
    );
    let proxy = Proxy::start_raw(&rules, &[("DBMESH_ADMIN_TOKEN", env_token)]);
    let from_env = format!("Bearer {env_token}");
    let from_file = format!("Bearer {ADMIN_TOKEN}");
    let env_auth = ("Authorization", from_env.as_str());
    assert_eq!(proxy.http_with("POST", "/reload", &[env_auth]).0, 200);
    let file_auth = ("Authorization", from_file.as_str());
    assert_eq!(proxy.http_with("POST", "/reload", &[file_auth]).0, 401);
    for path in ["/health", "/metrics"] {
        assert_eq!(proxy.http_with("GET", path, &[]).0, 401, "{path}");
        assert_eq!(proxy.http_with("GET", path, &[env_auth]).0, 200, "{path}");
    }
    drop(proxy);

    // A token anyone could guess is no token: the proxy refuses to start with it.
    let out = Command::new(env!("CARGO_BIN_EXE_dbmesh"))
        .args(["serve", "--config", "/nonexistent/rules.toml"])
        .env("DBMESH_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("DBMESH_ADMIN_TOKEN must be at least 16"),
        "{stderr}"
    );
    let rules = rules_without_token(&backend, &db, "admin_token = \"short\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    let out = dbmesh(&["check", "--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("proxy.admin_token"), "{stderr}");
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// `/primary` takes only a server the rule file names for that data source: any other
/// address is refused before the proxy connects anywhere (it used to log in to whatever
/// address it was given).
#[test]
fn primary_switch_accepts_only_a_configured_server() {
    let backend = one_backend();
    let db = testkit::unique_name("adminprimary");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let elsewhere = listener.local_addr().unwrap();
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=main&address={elsewhere}"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("not a server of data source 'main'"),
        "{body}"
    );
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=nope&address={}", backend.address()),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(proxy.http("POST", "/primary?data_source=main").0, 400);
    assert_eq!(
        listener.accept().map_err(|e| e.kind()).unwrap_err(),
        std::io::ErrorKind::WouldBlock,
        "the proxy connected to an address it was given"
    );
    // The configured primary itself is accepted (a switch back after a failover).
    let (code, body) = proxy.http(
        "POST",
        &format!("/primary?data_source=main&address={}", backend.address()),
    );
    assert_eq!(code, 200, "{body}");
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// A reload answers what changed, what it applied and what needs a restart (a new `listen`
/// used to get a plain `200 reloaded` while the proxy stayed on the old port), and logs
/// every reload with the old and new rules version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_what_changed_and_what_needs_a_restart() {
    let backend = one_backend();
    let db = testkit::unique_name("adminreload");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();
    let changed = good.replace("\nlisten = \"127.0.0.1:0\"", "\nlisten = \"127.0.0.1:1\"")
        + "\n[tables.ledger]\nkind = \"single\"\ndata_source = \"main\"\n";
    std::fs::write(&proxy.config_path, &changed).unwrap();
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    assert!(
        lines[0].starts_with("reloaded: rules version 1 -> 2 (sha256 "),
        "{body}"
    );
    assert!(lines.contains(&"applied: tables.ledger added"), "{body}");
    assert!(
        lines.contains(
            &"warning: needs a restart, the old value stays in force until then: \
              proxy.listen: \"127.0.0.1:0\" -> \"127.0.0.1:1\""
        ),
        "{body}"
    );
    // Still serving where it was.
    let mut conn = proxy.conn(Some("bank")).await;
    conn.query_drop("SELECT 1").await.unwrap();

    // The same file again: nothing changed, the version still counts the reload.
    let (code, body) = proxy.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("rules version 2 -> 3"), "{body}");
    assert!(body.contains("nothing changed"), "{body}");

    // A rejected reload is logged too, whatever set it off.
    std::fs::write(
        &proxy.config_path,
        changed.replace("kind = \"single\"", "kind = \"x\""),
    )
    .unwrap();
    assert_eq!(proxy.http("POST", "/reload").0, 400);
    let log = proxy.log();
    let reloaded = log
        .lines()
        .find(|l| l.contains("rules reloaded") && l.contains("new_version=2"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(reloaded.contains("old_version=1"), "{reloaded}");
    assert!(reloaded.contains("trigger=\"POST /reload\""), "{reloaded}");
    assert!(reloaded.contains("tables.ledger added"), "{reloaded}");
    assert!(
        log.lines()
            .any(|l| l.contains(" WARN ") && l.contains("proxy.listen")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" ERROR ") && l.contains("reload rejected")),
        "{log}"
    );
    drop(conn);
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

#[test]
fn help_names_ports_environment_endpoints_and_exit_codes() {
    let out = dbmesh(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "127.0.0.1:3307",
        "127.0.0.1:9307",
        "RUST_LOG",
        "DBMESH_ADMIN_TOKEN",
        "GET /health",
        "GET /metrics",
        "POST /reload",
        "POST\n/primary",
        "Exit status",
        "status",
        "reload",
    ] {
        assert!(help.contains(needle), "{needle:?} missing in\n{help}");
    }
    let out = dbmesh(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--config <CONFIG>",
        "The rule file",
        "--listen",
        "--admin-listen",
        "--log-format",
    ] {
        assert!(help.contains(needle), "{needle:?} missing in\n{help}");
    }
    // A usage error exits with 2.
    assert_eq!(dbmesh(&["serve"]).status.code(), Some(2));
}

#[test]
fn explain_prints_each_route_once() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sharding-rules/mod.toml");
    let out = dbmesh(&[
        "explain",
        "--config",
        rules,
        "SELECT order_id, COUNT(*) FROM t_order GROUP BY order_id",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    // Merge steps in a DBA's terms, not the planner's (`group by [Item(0)]; Item(1) Count`).
    assert!(
        lines[0].starts_with("select (merge: group by col 1; col 2: sum of the shards' COUNTs;"),
        "{stdout}"
    );
    assert_eq!(lines[1], "data_source\tdatabase\tsql", "{stdout}");
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[2].starts_with("ds_0\tshop_0\t(SELECT order_id"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("ds_1\tshop_1\t(SELECT order_id"),
        "{stdout}"
    );
}

/// `--listen` / `--admin-listen` win over the rule file (which here names addresses already
/// taken), and `dbmesh status` / `dbmesh reload` talk to the admin listener with the rule
/// file's token.
#[test]
fn listen_overrides_and_the_status_and_reload_commands() {
    let backend = one_backend();
    let db = testkit::unique_name("admincmd");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let rules = passthrough_rules(
        &backend,
        "bank",
        &db,
        &format!(
            "listen = \"{}\"\nadmin_listen = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"",
            taken.local_addr().unwrap(),
            taken_admin.local_addr().unwrap()
        ),
    );
    let proxy = Proxy::start_raw_with_args(
        &rules,
        &["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        &[],
    );
    assert_ne!(proxy.port, taken.local_addr().unwrap().port());
    let admin = format!("127.0.0.1:{}", proxy.admin_port);
    let config = proxy.config_path.to_str().unwrap();

    let out = dbmesh(&["status", "--config", config, "--admin-listen", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.starts_with("ok\n"), "{stdout}");
    assert!(stdout.contains("rules: version 1, sha256 "), "{stdout}");

    let out = dbmesh(&["reload", "--config", config, "--admin-listen", &admin]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("reloaded: rules version 1 -> 2"),
        "{stdout}"
    );
    assert!(stdout.contains("nothing changed"), "{stdout}");

    // Without a token, reload refuses before asking; a proxy that is gone is an error.
    let out = dbmesh(&["reload", "--admin-listen", &admin]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no admin token"), "{stderr}");
    drop(proxy);
    let out = dbmesh(&["status", "--admin-listen", &admin]);
    assert_eq!(out.status.code(), Some(1));
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}
