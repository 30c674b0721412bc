//! `dbmesh check --connect`: the rule file against live servers. Each problem is printed with
//! its data source and makes the command fail; a good configuration passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{one_backend, PASSWORD, USER};

/// Runs `dbmesh check --connect` on `rules`: (success, stdout, stderr).
fn check_connect(rules: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dbmesh"))
        .args(["check", "--connect", "--config", path.to_str().unwrap()])
        .output()
        .expect("run dbmesh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `[data_sources.NAME]` on `address` as `user`/`password`, database `database`.
fn data_source(name: &str, address: &str, user: &str, password: &str, database: &str) -> String {
    format!(
        "[data_sources.{name}]\naddress = \"{address}\"\nuser = \"{user}\"\npassword = \"{password}\"\ndatabase = \"{database}\"\n\n"
    )
}

/// A rule file over `data_sources` (text), table `t` sharded by `id mod 2` over `ds_0.t_0`
/// and `ds_1.t_1`, broadcast table `currency` on both.
fn rules(data_sources: &str) -> String {
    format!(
        "[[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"app\"\ndefault_data_source = \"ds_0\"\n\n{data_sources}\
         [tables.t]\nkind = \"sharded\"\ncolumn = \"id\"\nalgorithm = \"mod\"\n\
         nodes = [\"ds_0.t_0\", \"ds_1.t_1\"]\n\n\
         [tables.currency]\nkind = \"broadcast\"\ndata_sources = [\"ds_0\", \"ds_1\"]\n"
    )
}

#[test]
fn a_good_configuration_passes() {
    let backend = one_backend();
    let db = testkit::unique_name("chkgood");
    for shard in 0..2 {
        backend
            .sql(&format!(
                "CREATE DATABASE `{db}_{shard}`;\
                 CREATE TABLE `{db}_{shard}`.t_{shard} (id BIGINT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(10));\
                 CREATE TABLE `{db}_{shard}`.currency (code CHAR(3) PRIMARY KEY)"
            ))
            .unwrap();
    }
    // Rows (and so AUTO_INCREMENT values) differ between shards; definitions do not.
    backend
        .sql(&format!("INSERT INTO `{db}_1`.t_1 (v) VALUES ('a'), ('b')"))
        .unwrap();
    let (user, password, address) = (backend.user(), backend.password(), backend.address());
    let (ok, stdout, stderr) = check_connect(&rules(
        &(data_source("ds_0", &address, user, password, &format!("{db}_0"))
            + &data_source("ds_1", &address, user, password, &format!("{db}_1"))),
    ));
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("servers: OK (2 servers logged in to, 4 physical tables compared"),
        "{stdout}"
    );
    backend
        .sql(&format!("DROP DATABASE `{db}_0`; DROP DATABASE `{db}_1`"))
        .unwrap();
}

#[test]
fn each_problem_is_reported_with_its_data_source() {
    let backend = one_backend();
    let db = testkit::unique_name("chkbad");
    let weak = testkit::unique_name("weak");
    // ds_1's shard of `t` has another column type; its copy of `currency` is missing.
    backend
        .sql(&format!(
            "CREATE DATABASE `{db}_0`; CREATE DATABASE `{db}_1`; CREATE DATABASE `{db}_weak`;\
             CREATE TABLE `{db}_0`.t_0 (id BIGINT PRIMARY KEY, v VARCHAR(10));\
             CREATE TABLE `{db}_1`.t_1 (id BIGINT PRIMARY KEY, v VARCHAR(20));\
             CREATE TABLE `{db}_0`.currency (code CHAR(3) PRIMARY KEY)"
        ))
        .unwrap();
    for host in ["%", "127.0.0.1", "localhost"] {
        backend
            .sql(&format!(
                "CREATE USER '{weak}'@'{host}'; GRANT SELECT ON `{db}_weak`.* TO '{weak}'@'{host}'"
            ))
            .unwrap();
    }
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (user, password, address) = (backend.user(), backend.password(), backend.address());
    // A replica must be named apart from its primary: the same server under another name.
    let replica = format!("localhost:{}", backend.port());
    let data_sources = data_source("ds_0", &address, user, password, &format!("{db}_0"))
        + &data_source("ds_1", &address, user, password, &format!("{db}_1"))
        + &data_source(
            "wrong_password",
            &address,
            user,
            "not-the-password",
            &format!("{db}_0"),
        )
        + &data_source(
            "unreachable",
            &closed.to_string(),
            user,
            password,
            &format!("{db}_0"),
        )
        + &data_source(
            "no_database",
            &address,
            user,
            password,
            &format!("{db}_missing"),
        )
        + &data_source("weak", &address, &weak, "", &format!("{db}_weak"))
        + &format!("[[data_sources.weak.replicas]]\naddress = \"{replica}\"\n\n")
        + &data_source(
            "not_a_replica",
            &address,
            user,
            password,
            &format!("{db}_weak"),
        )
        + &format!("[[data_sources.not_a_replica.replicas]]\naddress = \"{replica}\"\n\n");
    let (ok, stdout, stderr) = check_connect(&rules(&data_sources));
    assert!(!ok, "{stdout}{stderr}");
    let line_of = |data_source: &str, needle: &str| {
        let prefix = format!("data source '{data_source}' (");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no line for {data_source} with {needle:?} in\n{stderr}"
        );
    };
    line_of("wrong_password", "cannot log in");
    line_of("wrong_password", "1045");
    line_of("unreachable", &format!("primary {closed}): cannot connect"));
    line_of(
        "no_database",
        &format!("database '{db}_missing' does not exist"),
    );
    line_of(
        "weak",
        &format!(
            "primary {address}): user '{weak}' lacks INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX"
        ),
    );
    line_of(
        "weak",
        &format!("replica {replica}): SHOW SLAVE STATUS refused"),
    );
    line_of(
        "not_a_replica",
        &format!("replica {replica}): is not a replica"),
    );
    line_of(
        "ds_1",
        &format!("table {db}_1.t_1 of tables.t differs from {db}_0.t_0 on data source 'ds_0'"),
    );
    line_of("ds_1", "varchar(20)");
    line_of(
        "ds_1",
        &format!("table {db}_1.currency of tables.currency is missing"),
    );
    assert!(
        !stderr.contains("data source 'ds_0' ("),
        "ds_0 is fine:\n{stderr}"
    );
    assert!(stderr.contains("problem(s) found"), "{stderr}");

    for host in ["%", "127.0.0.1", "localhost"] {
        backend
            .sql(&format!("DROP USER '{weak}'@'{host}'"))
            .unwrap();
    }
    backend
        .sql(&format!(
            "DROP DATABASE `{db}_0`; DROP DATABASE `{db}_1`; DROP DATABASE `{db}_weak`"
        ))
        .unwrap();
}
