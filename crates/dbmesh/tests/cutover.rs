//! The proxies' side of a rebalancing cutover, driven by hand through the `meta` crate (as
//! the rebalancer drives it): two proxies register, honour a fence on moving slices (a write
//! there waits, a write elsewhere does not, a transaction in flight delays the
//! acknowledgement until it ends), switch to the new slice-map version together, and keep it
//! across a reload and for a proxy started later.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{one_backend, Backend, Proxy, PASSWORD, USER};
use mysql_async::prelude::*;

/// Generous: CI runs the suite on two loaded cores.
const EVENTUALLY: Duration = Duration::from_secs(30);

fn rules(server: &Backend, meta_db: &str, dbs: &[String], number: u8) -> String {
    let mut rules = format!(
        "[proxy]\ncreate_databases = true\nnumber = {number}\nmeta_data_source = \"meta\"\n\n\
         [[users]]\nname = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n\
         [schema]\nname = \"bank\"\ndefault_data_source = \"ds_0\"\n\n"
    );
    let sources = std::iter::once(("meta".to_string(), meta_db.to_string())).chain(
        dbs.iter()
            .enumerate()
            .map(|(i, db)| (format!("ds_{i}"), db.clone())),
    );
    for (name, db) in sources {
        rules += &format!(
            "[data_sources.{name}]\naddress = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ndatabase = \"{db}\"\n\n",
            server.address(),
            server.user(),
            server.password()
        );
    }
    rules += "[tables.payment]\nkind = \"sharded\"\ncolumn = \"uid\"\nalgorithm = \"uid_slice\"\n\
              nodes = \"ds_{0..2}\"\nslices = { \"00-49\" = \"ds_0\", \"50-99\" = \"ds_1\" }\n";
    rules
}

fn meta_of(server: &Backend, meta_db: &str) -> meta::Meta {
    let options = backend::ConnectOptions {
        found_rows: true,
        ..backend::ConnectOptions::plaintext(
            "meta",
            &server.address(),
            server.user(),
            server.password(),
            Some(meta_db),
        )
    };
    meta::Meta::with_options(options, Duration::from_secs(10))
}

/// Waits until `ok` holds for the registry's rows of proxies `numbers`.
async fn until_proxies(
    meta: &mut meta::Meta,
    numbers: &[u16],
    what: &str,
    ok: impl Fn(&meta::ProxyRecord) -> bool,
) -> Vec<meta::ProxyRecord> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let rows = meta::proxies::list(meta).await.expect("read the registry");
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| numbers.contains(&r.number))
            .cloned()
            .collect();
        if mine.len() == numbers.len() && mine.iter().all(|r| r.live && ok(r)) {
            return mine;
        }
        assert!(Instant::now() < deadline, "{what}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn value_on(server: &Backend, db: &str, uid: i64) -> Option<i64> {
    let mut conn = common::direct(server).await;
    conn.query_first(format!("SELECT amount FROM {db}.payment WHERE uid = {uid}"))
        .await
        .expect("read the backend")
}

fn metric(proxy: &Proxy, name: &str) -> Option<f64> {
    let (_, body) = proxy.http("GET", "/metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fence_holds_moving_slices_until_every_proxy_serves_the_new_map() {
    let server = one_backend();
    let meta_db = testkit::unique_name("cut_meta");
    let dbs: Vec<String> = (0..3)
        .map(|i| testkit::unique_name(&format!("cut_{i}")))
        .collect();
    let a = Proxy::start(&rules(&server, &meta_db, &dbs, 1));
    let b = Proxy::start(&rules(&server, &meta_db, &dbs, 2));
    let mut meta = meta_of(&server, &meta_db);
    let mut ca = a.conn(Some("bank")).await;
    ca.query_drop("CREATE TABLE payment (uid BIGINT PRIMARY KEY, amount BIGINT NOT NULL)")
        .await
        .expect("create");
    ca.query_drop("INSERT INTO payment VALUES (10, 100), (55, 550), (56, 560), (60, 600)")
        .await
        .expect("insert");
    let registered = until_proxies(&mut meta, &[1, 2], "both proxies register", |r| {
        r.map_version == 0
    })
    .await;
    assert_eq!(registered.len(), 2);

    // A transaction in flight on a moving slice, opened before the fence.
    let mut in_flight = b.conn(Some("bank")).await;
    in_flight.query_drop("BEGIN").await.expect("begin");
    in_flight
        .query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 56")
        .await
        .expect("update in flight");

    let fenced: BTreeMap<String, meta::SliceSet> =
        [("payment".to_string(), "50-59".parse().expect("slices"))].into();
    let epoch = meta::fence::set(&mut meta, &fenced, 0, Duration::from_secs(60), "test")
        .await
        .expect("set the fence");
    until_proxies(&mut meta, &[1], "proxy 1 acknowledges the fence", |r| {
        r.fence_epoch >= epoch
    })
    .await;
    // Proxy 2 holds the transaction: it has not acknowledged, and will not while it is open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = meta::proxies::list(&mut meta).await.expect("registry");
    let two = rows.iter().find(|r| r.number == 2).expect("proxy 2");
    assert!(
        two.fence_epoch < epoch,
        "acknowledged with a transaction in flight: {two:?}"
    );
    // The transaction goes on (it began before the fence) and commits on the source.
    in_flight
        .query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 56")
        .await
        .expect("the transaction in flight goes on");
    in_flight.query_drop("COMMIT").await.expect("commit");
    until_proxies(&mut meta, &[1, 2], "both acknowledge the fence", |r| {
        r.fence_epoch >= epoch
    })
    .await;
    assert_eq!(value_on(&server, &dbs[1], 56).await, Some(562));

    // A write to a moving slice waits; a write to a staying one does not.
    let mut writer = a.conn(Some("bank")).await;
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        writer
            .query_drop("UPDATE payment SET amount = amount + 5 WHERE uid = 55")
            .await
            .map(|_| started.elapsed())
    });
    let deadline = Instant::now() + EVENTUALLY;
    while metric(&a, "dbmesh_fenced_statements") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the write to slice 55 never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ca.query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 10")
        .await
        .expect("a staying slice is written");
    // A staying slice of the fenced node (ds_1.payment) waits as well: the fence is per node.
    let mut staying = a.conn(Some("bank")).await;
    let staying = tokio::spawn(async move {
        staying
            .query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 60")
            .await
    });
    let deadline = Instant::now() + EVENTUALLY;
    while metric(&a, "dbmesh_fenced_statements") != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "the write to slice 60 never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if waiting.is_finished() {
        panic!("the fenced write did not wait: {:?}", waiting.await);
    }

    // The move: the rows of slices 50-59 to ds_2, then the next map version under the fence.
    let mut direct = common::direct(&server).await;
    direct
        .query_drop(format!(
            "INSERT INTO {}.payment SELECT * FROM {}.payment WHERE uid % 100 BETWEEN 50 AND 59; \
             DELETE FROM {}.payment WHERE uid % 100 BETWEEN 50 AND 59",
            dbs[2], dbs[1], dbs[1]
        ))
        .await
        .expect("move the rows");
    let slices: BTreeMap<String, String> =
        [("00-49", "ds_0"), ("50-59", "ds_2"), ("60-99", "ds_1")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    let map = meta::SliceMapVersion {
        version: 1,
        tables: [("payment".to_string(), slices)].into(),
    };
    meta::slice_map::write(&mut meta, &map, "test", Some(epoch))
        .await
        .expect("write map version 1");
    let waited = tokio::time::timeout(EVENTUALLY, waiting)
        .await
        .expect("the fenced write ends")
        .expect("task")
        .expect("the fenced write succeeds, by the new map");
    println!("the fenced write waited {waited:?}");
    tokio::time::timeout(EVENTUALLY, staying)
        .await
        .expect("the staying write ends")
        .expect("task")
        .expect("the staying write succeeds");
    until_proxies(&mut meta, &[1, 2], "both serve map version 1", |r| {
        r.map_version == 1
    })
    .await;
    assert!(meta::fence::release(&mut meta, epoch)
        .await
        .expect("release"));
    assert_eq!(value_on(&server, &dbs[2], 55).await, Some(555));
    assert_eq!(value_on(&server, &dbs[1], 55).await, None);
    assert_eq!(value_on(&server, &dbs[0], 10).await, Some(101));
    assert_eq!(value_on(&server, &dbs[1], 60).await, Some(601));
    assert_eq!(metric(&a, "dbmesh_slice_map_version"), Some(1.0));

    // Proxy 2 routes by the new map; a reload does not undo it, nor does a restart.
    let mut cb = b.conn(Some("bank")).await;
    cb.query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 56")
        .await
        .expect("update through proxy 2");
    assert_eq!(value_on(&server, &dbs[2], 56).await, Some(563));
    let (code, body) = b.http("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    cb.query_drop("UPDATE payment SET amount = amount + 1 WHERE uid = 56")
        .await
        .expect("update after the reload");
    assert_eq!(value_on(&server, &dbs[2], 56).await, Some(564));
    let c = Proxy::start(&rules(&server, &meta_db, &dbs, 3));
    let mut cc = c.conn(Some("bank")).await;
    let total: Option<i64> = cc
        .query_first("SELECT SUM(amount) FROM payment WHERE uid IN (55, 56)")
        .await
        .expect("read through a proxy started later");
    assert_eq!(total, Some(555 + 564));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_fence_lets_the_waiting_writes_run_on_the_source() {
    let server = one_backend();
    let meta_db = testkit::unique_name("abort_meta");
    let dbs: Vec<String> = (0..3)
        .map(|i| testkit::unique_name(&format!("abort_{i}")))
        .collect();
    let a = Proxy::start(&rules(&server, &meta_db, &dbs, 1));
    let mut meta = meta_of(&server, &meta_db);
    let mut ca = a.conn(Some("bank")).await;
    ca.query_drop("CREATE TABLE payment (uid BIGINT PRIMARY KEY, amount BIGINT NOT NULL)")
        .await
        .expect("create");
    ca.query_drop("INSERT INTO payment VALUES (55, 550)")
        .await
        .expect("insert");
    until_proxies(&mut meta, &[1], "the proxy registers", |r| {
        r.map_version == 0
    })
    .await;
    let fenced: BTreeMap<String, meta::SliceSet> =
        [("payment".to_string(), "50-59".parse().expect("slices"))].into();
    let epoch = meta::fence::set(&mut meta, &fenced, 0, Duration::from_secs(60), "test")
        .await
        .expect("set the fence");
    assert!(
        meta::fence::set(&mut meta, &fenced, 0, Duration::from_secs(60), "other")
            .await
            .is_err(),
        "a second fence while one is in force"
    );
    until_proxies(&mut meta, &[1], "the proxy acknowledges", |r| {
        r.fence_epoch >= epoch
    })
    .await;
    // A transaction begun under the fence waits at its first statement on a moving slice.
    let mut writer = a.conn(Some("bank")).await;
    let waiting = tokio::spawn(async move {
        writer.query_drop("BEGIN").await?;
        writer
            .query_drop("UPDATE payment SET amount = amount + 5 WHERE uid = 55")
            .await?;
        writer.query_drop("COMMIT").await
    });
    let deadline = Instant::now() + EVENTUALLY;
    while metric(&a, "dbmesh_fenced_statements") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the write to slice 55 never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The cutover gives up: the map stays, the write runs on the source.
    assert!(meta::fence::release(&mut meta, epoch)
        .await
        .expect("release"));
    tokio::time::timeout(EVENTUALLY, waiting)
        .await
        .expect("the waiting write ends")
        .expect("task")
        .expect("the waiting write succeeds");
    assert_eq!(value_on(&server, &dbs[1], 55).await, Some(555));
    // A map version needs the fence it names in force.
    let map = meta::SliceMapVersion {
        version: 1,
        tables: [(
            "payment".to_string(),
            [("00-99".to_string(), "ds_0".to_string())].into(),
        )]
        .into(),
    };
    let refused = meta::slice_map::write(&mut meta, &map, "test", Some(epoch)).await;
    assert!(
        matches!(refused, Err(meta::MetaError::Conflict(_))),
        "{refused:?}"
    );
    assert_eq!(
        meta::slice_map::latest_version(&mut meta)
            .await
            .expect("version"),
        0
    );
}
