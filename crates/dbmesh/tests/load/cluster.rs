//! The servers and proxies of a rebalancing test: a source mariadbd (row binlog) holding
//! `ds_0`, `ds_1` and the meta data source, a destination mariadbd (row binlog too, for the
//! reverse flow) holding `ds_2`, and proxies on one meta database, all serving the load's
//! tables with slices 00-49 on ds_0 and 50-99 on ds_1.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backend::ConnectOptions;
use binlog::{Follower, FollowerHandle, FollowerOptions, TableRef, Value};
use mysql_async::prelude::Queryable;

use super::Placement;
use crate::common::{self, Backend, Proxy, PASSWORD, USER};

/// Generous: CI runs the suite on two loaded cores.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

pub struct Cluster {
    pub source: Backend,
    pub destination: Backend,
    /// The databases of ds_0, ds_1, ds_2 and meta.
    pub dbs: Vec<String>,
    pub proxies: Vec<Proxy>,
    pub meta: meta::Meta,
}

impl Cluster {
    /// Starts the servers and `proxies` proxies (numbered from 1), creates the load's tables
    /// with `accounts` accounts, and waits until every proxy is registered.
    pub async fn start(prefix: &str, proxies: u8, accounts: i64) -> Cluster {
        let server = |id: u32| {
            Backend::managed(
                testkit::MariaDb::builder()
                    .row_binlog(id)
                    .start()
                    .expect("a mariadbd starts"),
            )
        };
        let (source, destination) = (server(1), server(2));
        let dbs: Vec<String> = ["0", "1", "2", "meta"]
            .iter()
            .map(|p| testkit::unique_name(&format!("{prefix}_{p}")))
            .collect();
        let mut cluster = Cluster {
            meta: meta::Meta::with_options(
                options("meta", &source, Some(&dbs[3])),
                Duration::from_secs(10),
            ),
            source,
            destination,
            dbs,
            proxies: Vec::new(),
        };
        for number in 1..=proxies {
            cluster.proxies.push(Proxy::start(&cluster.rules(number)));
        }
        let mut conn = cluster.proxies[0].conn(Some("bank")).await;
        super::create_bank(&mut conn, accounts).await;
        cluster.until_every_proxy(|r| r.map_version == 0).await;
        cluster
    }

    /// The rule file of proxy `number`.
    pub fn rules(&self, number: u8) -> String {
        let mut text = format!(
            "[proxy]\ncreate_databases = true\nnumber = {number}\nmeta_data_source = \"meta\"\n\n\
             [[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
             [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n"
        );
        for (name, server, db) in [
            ("meta", &self.source, &self.dbs[3]),
            ("ds_0", &self.source, &self.dbs[0]),
            ("ds_1", &self.source, &self.dbs[1]),
            ("ds_2", &self.destination, &self.dbs[2]),
        ] {
            text += &format!(
                "[data_sources.{name}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\n\
                 database = \"{db}\"\n\n",
                server.address(),
                server.user(),
                server.password()
            );
        }
        text + &super::table_rules("ds_{0..2}", "\"00-49\" = \"ds_0\", \"50-99\" = \"ds_1\"")
    }

    /// Connection options of data source `name` (its server, no database).
    pub fn options(&self, name: &str) -> ConnectOptions {
        let server = if name == "ds_2" {
            &self.destination
        } else {
            &self.source
        };
        options(name, server, None)
    }

    /// The proxies' client ports.
    pub fn ports(&self) -> Vec<u16> {
        self.proxies.iter().map(|p| p.port).collect()
    }

    /// Waits until every live proxy's registry row satisfies `ok`; the time it took.
    pub async fn until_every_proxy(&mut self, ok: impl Fn(&meta::ProxyRecord) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let rows = meta::proxies::list(&mut self.meta)
                .await
                .expect("read the registry");
            let live: Vec<_> = rows.iter().filter(|r| r.live).collect();
            if live.len() == self.proxies.len() && live.iter().all(|r| ok(r)) {
                return started.elapsed();
            }
            assert!(started.elapsed() < EVENTUALLY, "proxies: {rows:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Copies the accounts of `slices` from ds_1 to ds_2 and starts the follower that keeps
    /// ds_2 caught up with ds_1's changes to those slices (of both tables). The copy is a
    /// snapshot only while nothing writes: call it before the load starts.
    pub async fn copy_and_follow(&self, slices: Range<u8>) -> FollowerHandle {
        let condition = format!("uid % 100 BETWEEN {} AND {}", slices.start, slices.end - 1);
        let rows: Vec<(i64, i64)> = common::direct(&self.source)
            .await
            .query(format!(
                "SELECT uid, balance FROM {}.account WHERE {condition}",
                self.dbs[1]
            ))
            .await
            .expect("read the moving rows");
        let values: Vec<String> = rows.iter().map(|(u, b)| format!("({u}, {b})")).collect();
        common::direct(&self.destination)
            .await
            .query_drop(format!(
                "INSERT INTO {}.account VALUES {}",
                self.dbs[2],
                values.join(",")
            ))
            .await
            .expect("copy the moving rows");
        let source = self.options("ds_1");
        let from = binlog::check_source(&source)
            .await
            .expect("the source can be followed");
        let (source_db, destination_db) = (self.dbs[1].clone(), self.dbs[2].clone());
        let route: binlog::Route = Arc::new(move |table, schema, row| {
            if table.database != source_db {
                return None;
            }
            let uid = schema.columns.iter().position(|c| c == "uid")?;
            match row[uid] {
                Value::Int(uid) if slices.contains(&(uid.rem_euclid(100) as u8)) => {
                    Some(TableRef {
                        database: destination_db.clone(),
                        table: table.table.clone(),
                    })
                }
                _ => None,
            }
        });
        Follower::start(FollowerOptions {
            source,
            destination: self.options("ds_2"),
            from,
            server_id: 1001,
            route,
        })
    }

    /// Where the rows must be once `moved` (slices of ds_1; empty for none) is on ds_2.
    pub fn placement(&self, moved: Range<u8>) -> Placement<'_> {
        let mut ranges = vec![(0, 49, "ds_0")];
        if moved.is_empty() {
            ranges.push((50, 99, "ds_1"));
        } else {
            if moved.start > 50 {
                ranges.push((50, moved.start - 1, "ds_1"));
            }
            ranges.push((moved.start, moved.end - 1, "ds_2"));
            if moved.end <= 99 {
                ranges.push((moved.end, 99, "ds_1"));
            }
        }
        Placement::new(
            [
                ("ds_0".to_string(), (&self.source, self.dbs[0].clone())),
                ("ds_1".to_string(), (&self.source, self.dbs[1].clone())),
                ("ds_2".to_string(), (&self.destination, self.dbs[2].clone())),
            ]
            .into(),
            &ranges,
        )
    }

    /// Deletes the rows of `slices` from ds_1 (what a cleanup does once they are on ds_2).
    pub async fn delete_from_source(&self, slices: Range<u8>) {
        let condition = format!("uid % 100 BETWEEN {} AND {}", slices.start, slices.end - 1);
        common::direct(&self.source)
            .await
            .query_drop(format!(
                "DELETE FROM {db}.account WHERE {condition}; DELETE FROM {db}.entry WHERE {condition}",
                db = self.dbs[1]
            ))
            .await
            .expect("delete the source's copy");
    }

    /// A fence on `slices` of the load's tables, as of map version `map_version`.
    pub async fn fence(&mut self, slices: &str, map_version: u64) -> u64 {
        let fenced: BTreeMap<String, meta::SliceSet> = super::TABLES
            .iter()
            .map(|t| (t.to_string(), slices.parse().expect("slices")))
            .collect();
        meta::fence::set(
            &mut self.meta,
            &fenced,
            map_version,
            Duration::from_secs(30),
            "test",
        )
        .await
        .expect("set the fence")
    }
}

fn options(name: &str, server: &Backend, db: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        found_rows: true,
        ..ConnectOptions::plaintext(
            name,
            &server.address(),
            server.user(),
            server.password(),
            db,
        )
    }
}
