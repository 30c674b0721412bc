//! Real clients, unchanged, through the proxy: the `mariadb` CLI, PyMySQL and
//! mysql-connector-python, sysbench in both prepared and plain mode, and TLS with both auth
//! plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{one_backend, passthrough_rules, server_code, sysbench, Proxy, PASSWORD, USER};
use mysql_async::prelude::*;

fn mariadb_cli(port: u16, args: &[&str], sql: &str) -> std::process::Output {
    Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{USER}"),
            &format!("-p{PASSWORD}"),
            "--batch",
        ])
        .args(args)
        .args(["-e", sql])
        .output()
        .expect("run the mariadb client")
}

#[test]
fn mariadb_cli_scripted_session() {
    let backend = one_backend();
    let db = testkit::unique_name("cli");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let out = mariadb_cli(
        proxy.port,
        &["bank"],
        "CREATE TABLE acct (id INT PRIMARY KEY, owner VARCHAR(20), balance DECIMAL(10,2));
         INSERT INTO acct VALUES (1, 'ann', 10.50), (2, 'bob', 20.00);
         START TRANSACTION; UPDATE acct SET balance = balance - 5 WHERE id = 1;
         UPDATE acct SET balance = balance + 5 WHERE id = 2; COMMIT;
         START TRANSACTION; DELETE FROM acct; ROLLBACK;
         SELECT id, owner, balance FROM acct ORDER BY id;
         SELECT DATABASE();",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "id\towner\tbalance\n1\tann\t5.50\n2\tbob\t25.00\nDATABASE()\nbank\n"
    );
    // The CLI's own `use` command and `status` (which queries DATABASE() and more).
    let out = mariadb_cli(proxy.port, &[], "use bank\nSELECT COUNT(*) FROM acct;");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "COUNT(*)\n2\n");
    // An error in a script: the CLI reports the server's code and stops.
    let out = mariadb_cli(proxy.port, &["bank"], "SELECT * FROM nope;");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR 1146 (42S02)"));
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

#[test]
fn python_drivers() {
    let backend = one_backend();
    let db = testkit::unique_name("py");
    let proxy = Proxy::start(&passthrough_rules(&backend, "bank", &db, ""));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/pymysql_client.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(proxy.port.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

#[test]
fn sysbench_read_write_in_prepared_and_plain_mode_has_no_errors() {
    let backend = one_backend();
    let db = testkit::unique_name("sb");
    let proxy = Proxy::start(&passthrough_rules(&backend, "sbtest", &db, ""));
    sysbench(proxy.port, 4, &["oltp_read_write", "prepare"]);
    for mode in ["auto", "disable"] {
        let out = sysbench(
            proxy.port,
            4,
            &[
                "--threads=4",
                "--time=3",
                &format!("--db-ps-mode={mode}"),
                "oltp_read_write",
                "run",
            ],
        );
        let line = |key: &str| {
            out.lines()
                .find(|l| l.trim_start().starts_with(key))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("ignored errors:").contains(" 0 "),
            "mode {mode}: {out}"
        );
        assert!(!out.contains("FATAL"), "mode {mode}: {out}");
        let transactions: u64 = line("transactions:")
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(transactions > 10, "mode {mode}: {out}");
    }
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

/// A self-signed certificate for 127.0.0.1, written next to the rule file.
fn write_cert(dir: &std::path::Path) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_both_auth_plugins() {
    let backend = one_backend();
    let db = testkit::unique_name("tls");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let rules = passthrough_rules(&backend, "bank", &db, &format!("[proxy.tls]\ncert = \"{cert}\"\nkey = \"{key}\""))
        + "\n[[users]]\nname = \"sha2\"\npassword = \"sha2pass\"\nauth_plugin = \"caching_sha2_password\"\n";
    let proxy = Proxy::start(&rules);
    let tls = mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true);

    // mysql_native_password over TLS.
    let mut conn = mysql_async::Conn::new(proxy.opts(Some("bank")).ssl_opts(Some(tls.clone())))
        .await
        .unwrap();
    let cipher: Vec<(String, String)> = conn
        .query("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    assert_eq!(
        cipher.len(),
        1,
        "the backend leg is plain; the query itself works over TLS"
    );
    conn.disconnect().await.unwrap();

    // caching_sha2_password: the client starts with mysql_native_password and is switched;
    // over TLS the proxy asks for full authentication, in the clear fast-path scrambles.
    for with_tls in [true, false] {
        let opts = proxy
            .opts(Some("bank"))
            .user(Some("sha2"))
            .pass(Some("sha2pass"))
            .ssl_opts(with_tls.then(|| tls.clone()));
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .unwrap_or_else(|e| panic!("tls={with_tls}: {e}"));
        let one: i64 = conn.query_first("SELECT 1").await.unwrap().unwrap();
        assert_eq!(one, 1);
        conn.disconnect().await.unwrap();
        let wrong = proxy
            .opts(None)
            .user(Some("sha2"))
            .pass(Some("bad"))
            .ssl_opts(with_tls.then(|| tls.clone()));
        assert_eq!(
            server_code(mysql_async::Conn::new(wrong).await.unwrap_err()).0,
            1045
        );
    }

    // The mariadb CLI over TLS.
    let out = mariadb_cli(proxy.port, &["--ssl", "bank"], "SELECT 42");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n42\n");
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_can_be_required() {
    let backend = one_backend();
    let db = testkit::unique_name("tlsreq");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path());
    let rules = passthrough_rules(
        &backend,
        "bank",
        &db,
        &format!("[proxy.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nrequire = true"),
    );
    let proxy = Proxy::start(&rules);
    assert_eq!(
        server_code(mysql_async::Conn::new(proxy.opts(None)).await.unwrap_err()).0,
        3159
    );
    let tls = mysql_async::SslOpts::default().with_danger_accept_invalid_certs(true);
    let mut conn = mysql_async::Conn::new(proxy.opts(None).ssl_opts(Some(tls)))
        .await
        .unwrap();
    conn.query_drop("DO 1").await.unwrap();
    backend
        .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
        .unwrap();
}

/// 256 sysbench threads share a pool of 16 backend connections: transactions complete
/// (deadlocks, which sysbench retries, are the only errors it tolerates) and the backend never
/// sees more than 16 connections of the proxy.
#[test]
fn sysbench_256_threads_through_a_16_connection_pool() {
    let backend = one_backend();
    let db = testkit::unique_name("sb256");
    let rules = passthrough_rules(&backend, "sbtest", &db, "")
        + "\n[data_sources.main.pool]\nmax = 16\nacquire_timeout_ms = 30000\n";
    let proxy = Proxy::start(&rules);
    sysbench(proxy.port, 4, &["oltp_read_write", "prepare"]);
    let done = std::sync::atomic::AtomicBool::new(false);
    let count_sql =
        format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{db}'");
    let (out, peak) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut peak = 0usize;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let n = backend.sql(&count_sql).unwrap_or_default();
                peak = peak.max(n.trim().parse().unwrap_or(0));
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        });
        let out = sysbench(
            proxy.port,
            4,
            &["--threads=256", "--time=5", "oltp_read_write", "run"],
        );
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (out, watcher.join().unwrap())
    });
    assert!(!out.contains("FATAL"), "{out}");
    let transactions: u64 = out
        .lines()
        .find(|l| l.trim_start().starts_with("transactions:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(transactions > 0, "{out}");
    assert!(
        peak > 0 && peak <= 16,
        "{peak} backend connections for a pool of 16"
    );
    println!(
        "256 threads, pool 16: {transactions} transactions in 5 s, peak {peak} backend connections"
    );
    backend.sql(&format!("DROP DATABASE `{db}`")).unwrap();
}
