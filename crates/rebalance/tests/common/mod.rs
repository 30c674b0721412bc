//! Fixture of the rebalancer's tests: a source server (binlog on, ROW, full images) holding
//! data sources ds_0 and ds_1 (two physical tables each of `acct` and of the bound `ledger`)
//! and the meta database, and a destination server holding ds_4, which owns no slice yet.

#![allow(dead_code)]

use std::path::Path;

use testkit::MariaDb;

/// A server that a rebalancing can follow.
pub fn binlog_server(server_id: u32) -> MariaDb {
    MariaDb::builder()
        .row_binlog(server_id)
        .start()
        .expect("mariadbd starts")
}

/// The databases of one test run.
pub struct Layout {
    pub meta: String,
    pub ds0: String,
    pub ds1: String,
    pub ds4: String,
}

impl Layout {
    pub fn new() -> Layout {
        Layout {
            meta: testkit::unique_name("rb_meta"),
            ds0: testkit::unique_name("rb_0"),
            ds1: testkit::unique_name("rb_1"),
            ds4: testkit::unique_name("rb_4"),
        }
    }

    /// The rule file: acct and ledger bound, slices 00-24 on ds_0's first table, 25-49 on its
    /// second, 50-74 and 75-99 on ds_1's; a broadcast table beside them.
    pub fn rules_text(&self, source: &MariaDb, destination: &MariaDb) -> String {
        let ds = |name: &str, server: &MariaDb, db: &str| {
            format!(
                "[data_sources.{name}]\naddress = \"{}\"\nuser = \"root\"\npassword = \"\"\ndatabase = \"{db}\"\ntls = \"disabled\"\n\n",
                server.address()
            )
        };
        let table = |name: &str| {
            format!(
                "[tables.{name}]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\n\
                 nodes = [\"ds_0.{name}_{{0..1}}\", \"ds_1.{name}_{{0..1}}\", \"ds_4.{name}_0\"]\n\
                 slices = {{ \"00-24\" = \"ds_0.{name}_0\", \"25-49\" = \"ds_0.{name}_1\", \"50-74\" = \"ds_1.{name}_0\", \"75-99\" = \"ds_1.{name}_1\" }}\n\n"
            )
        };
        format!(
            "[proxy]\nmeta_data_source = \"meta\"\n\n[[users]]\nname = \"app\"\npassword = \"x\"\n\n\
             [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n{}{}{}{}{}{}\
             [[binding_groups]]\ntables = [\"acct\", \"ledger\"]\n\n\
             [tables.branch]\nkind = \"broadcast\"\n",
            ds("meta", source, &self.meta),
            ds("ds_0", source, &self.ds0),
            ds("ds_1", source, &self.ds1),
            ds("ds_4", destination, &self.ds4),
            table("acct"),
            table("ledger"),
        )
    }

    pub fn rules(&self, source: &MariaDb, destination: &MariaDb) -> rules::Rules {
        rules::parse_str(
            &self.rules_text(source, destination),
            Path::new("rules.toml"),
        )
        .expect("valid rules")
    }

    /// The source physical table of `table` holding `uid`'s slice.
    pub fn node_of(&self, table: &str, uid: u64) -> String {
        let (db, n) = match uid % 100 {
            0..=24 => (&self.ds0, 0),
            25..=49 => (&self.ds0, 1),
            50..=74 => (&self.ds1, 0),
            _ => (&self.ds1, 1),
        };
        format!("{db}.{table}_{n}")
    }

    /// Creates the databases and tables and `rows` UIDs (0..rows) in acct and ledger.
    pub fn populate(&self, source: &MariaDb, rows: u64) {
        let mut sql = format!(
            "CREATE DATABASE {}; CREATE DATABASE {}; CREATE DATABASE {};",
            self.meta, self.ds0, self.ds1
        );
        for db in [&self.ds0, &self.ds1] {
            for n in 0..2 {
                sql += &format!(
                    "CREATE TABLE {db}.acct_{n} (uid BIGINT UNSIGNED PRIMARY KEY, bal BIGINT NOT NULL, \
                       note VARCHAR(40) CHARACTER SET utf8mb4 NULL, f FLOAT NULL, at TIMESTAMP(3) NULL) \
                       CHARACTER SET latin1;
                     CREATE TABLE {db}.ledger_{n} (uid BIGINT UNSIGNED NOT NULL, seq INT NOT NULL, \
                       amount DECIMAL(12,2) NOT NULL, memo BLOB NULL, PRIMARY KEY (uid, seq));"
                );
            }
            sql += &format!("CREATE TABLE {db}.branch (id INT PRIMARY KEY);");
        }
        source.sql(&sql).expect("schema");
        let mut acct: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut ledger: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for uid in 0..rows {
            acct.entry(self.node_of("acct", uid))
                .or_default()
                .push(format!(
                    "({uid}, {}, {}, {}, '2024-02-29 12:00:00.{:03}')",
                    uid * 3,
                    if uid % 7 == 0 {
                        "NULL".to_string()
                    } else {
                        format!("'é note {uid}'")
                    },
                    if uid % 5 == 0 {
                        "NULL".to_string()
                    } else {
                        format!("{}.1", uid % 97)
                    },
                    uid % 1000
                ));
            for seq in 0..2 {
                ledger
                    .entry(self.node_of("ledger", uid))
                    .or_default()
                    .push(format!(
                        "({uid}, {seq}, {}.25, {})",
                        uid + seq,
                        if seq == 0 {
                            "X'00FF'".to_string()
                        } else {
                            "NULL".to_string()
                        }
                    ));
            }
        }
        for (tables, name) in [(acct, "acct"), (ledger, "ledger")] {
            for (table, values) in tables {
                for part in values.chunks(2000) {
                    source
                        .sql(&format!("INSERT INTO {table} VALUES {}", part.join(", ")))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
            }
        }
    }
}
