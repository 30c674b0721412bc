//! The client matrix: real drivers with their default settings (see `clients/README.md`), each
//! on a table of the default data source and on a table sharded by `id` with rows on all four
//! shards, storing all 256 byte values and text from latin1 and gbk connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::Proxy;

/// Runs `program args… PORT TABLE` for the unsharded and the sharded table of `client`
/// through one proxy over four data sources on two servers.
fn run_client(client: &str, program: &str, args: &[&str]) -> Proxy {
    let servers = testkit::backends(2).expect("two MariaDB servers");
    let prefix = testkit::unique_name("matrix");
    let dbs: Vec<String> = (0..4).map(|i| format!("{prefix}_{i}")).collect();
    let mut rules = common::four_data_sources(&servers, "bank", &dbs);
    rules += &format!(
        "[tables.{client}_sharded]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
         nodes = \"ds_{{0..3}}.{client}_sharded\"\n"
    );
    let proxy = Proxy::start(&rules);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    // A database on the first server, for scripts that compare with MariaDB directly.
    let direct_db = format!("{prefix}_direct");
    servers[0]
        .sql(&format!("CREATE DATABASE `{direct_db}`"))
        .unwrap();
    let direct = format!(
        "{},{},{},{direct_db}",
        servers[0].port(),
        servers[0].user(),
        servers[0].password()
    );
    for table in [format!("{client}_plain"), format!("{client}_sharded")] {
        let out = Command::new(program)
            .current_dir(&dir)
            .env("DIRECT", &direct)
            .args(args)
            .arg(proxy.port.to_string())
            .arg(&table)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{client} on {table}:\nstdout:\n{}\nstderr:\n{}\nproxy log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            proxy.log()
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    servers[0]
        .sql(&format!("DROP DATABASE `{direct_db}`"))
        .unwrap();
    for (i, db) in dbs.iter().enumerate() {
        servers[i / 2]
            .sql(&format!("DROP DATABASE IF EXISTS `{db}`"))
            .unwrap();
    }
    proxy
}

#[test]
fn pymysql() {
    run_client("pymysql", "python3", &["dbapi_client.py", "pymysql"]);
}

#[test]
fn mysqlclient() {
    run_client(
        "mysqlclient",
        "python3",
        &["dbapi_client.py", "mysqlclient"],
    );
}

#[test]
fn php_pdo() {
    run_client("pdo", "php", &["pdo_client.php"]);
}

#[test]
fn perl_dbi() {
    run_client("dbi", "perl", &["dbi_client.pl"]);
}

#[test]
fn node_mysql2() {
    run_client("mysql2", "node", &["node/client.js", "mysql2"]);
}

#[test]
fn node_sequelize() {
    run_client("sequelize", "node", &["node/client.js", "sequelize"]);
}

#[test]
fn node_mariadb() {
    run_client("mariadb", "node", &["node/client.js", "mariadb"]);
}

/// npm `mariadb` `batch()` sends COM_STMT_BULK_EXECUTE, which the proxy announces: the
/// batches arrive as bulk requests, not one execute per row.
#[test]
fn node_mariadb_batch() {
    let proxy = run_client("batch", "node", &["node/batch_client.js"]);
    let (_, metrics) = proxy.http("GET", "/metrics");
    let bulk: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dbmesh_statements_total{command=\"stmt_bulk_execute\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    println!("COM_STMT_BULK_EXECUTE requests: {bulk}");
    assert!(
        bulk >= 6.0,
        "the batches were not sent as bulk requests:\n{metrics}"
    );
}
