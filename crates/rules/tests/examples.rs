//! Every shipped rule file in `sharding-rules/` must validate, and the
//! quickstart must describe what the README promises.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use rules::{
    load_file, Algorithm, AuthPlugin, PhysicalNode, Rules, SegmentRule, SequenceKind, ShardValue,
    SnowflakeRule, TableRoute,
};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sharding-rules")
}

fn load(name: &str) -> Rules {
    let path = rules_dir().join(name);
    load_file(&path).unwrap_or_else(|e| panic!("{name} is invalid:\n{e}"))
}

#[test]
fn every_shipped_rule_file_validates() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(rules_dir()).expect("sharding-rules/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = load_file(&path) {
                panic!("{} is invalid:\n{e}", path.display());
            }
            checked.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
    }
    checked.sort();
    for expected in [
        "consistent-hash.toml",
        "hash.toml",
        "mod.toml",
        "passthrough.toml",
        "quickstart.toml",
        "range.toml",
        "uid-slice-bank.toml",
    ] {
        assert!(
            checked.iter().any(|c| c.as_deref() == Some(expected)),
            "{expected} missing from sharding-rules/ (found {checked:?})"
        );
    }
}

#[test]
fn quickstart_layout() {
    let r = load("quickstart.toml");
    assert!(r.proxy.create_databases);
    assert_eq!(r.schema.name, "bank");
    assert_eq!(r.schema.default_data_source, "ds_default");
    assert_eq!(r.users.len(), 1);
    assert_eq!(
        (r.users[0].name.as_str(), r.users[0].password.as_str()),
        ("dbmesh", "dbmesh")
    );
    let dbs: Vec<(&str, &str, &str)> = r
        .data_sources
        .iter()
        .map(|(n, d)| (n.as_str(), d.address.as_str(), d.database.as_str()))
        .collect();
    assert_eq!(
        dbs,
        [
            ("ds_0", "127.0.0.1:3306", "bank_0"),
            ("ds_1", "127.0.0.1:3306", "bank_1"),
            ("ds_2", "127.0.0.1:3306", "bank_2"),
            ("ds_3", "127.0.0.1:3306", "bank_3"),
            ("ds_default", "127.0.0.1:3306", "bank"),
            ("meta", "127.0.0.1:3306", "dbmesh_meta"),
        ]
    );
    for d in r.data_sources.values() {
        assert_eq!((d.user.as_str(), d.password.as_str()), ("root", ""));
    }

    for t in ["customer", "account", "payment"] {
        let s = r.sharded(t).expect("sharded");
        assert_eq!(s.column(), "uid");
        assert!(matches!(s.algorithm(), Algorithm::UidSlice(_)));
        assert_eq!(s.binding_group(), Some(0));
        for (uid, ds) in [
            (0i64, "ds_0"),
            (24, "ds_0"),
            (125, "ds_1"),
            (1_000_050, "ds_2"),
            (99, "ds_3"),
        ] {
            assert_eq!(
                s.shard_for(&ShardValue::Int(uid)).expect("routable"),
                &PhysicalNode::new(ds, t),
                "{t} uid {uid}"
            );
        }
    }
    assert!(r.are_bound("customer", "payment"));
    assert!(!r.are_bound("customer", "currency"));

    match r.table_rule("currency") {
        TableRoute::Broadcast(b) => assert_eq!(b.nodes().len(), 5, "every data source but meta"),
        other => panic!("currency: {other:?}"),
    }
    assert_eq!(
        r.table_rule("branch"),
        TableRoute::Single(&PhysicalNode::new("ds_default", "branch"))
    );
    assert_eq!(
        r.table_rule("anything_else"),
        TableRoute::Default {
            data_source: "ds_default"
        }
    );

    assert_eq!(r.proxy.meta_data_source.as_deref(), Some("meta"));
    let payment_seq = r
        .sequence_for_column("payment", "payment_id")
        .expect("payment_id is generated");
    assert_eq!(payment_seq.name, "payment_seq");
    assert_eq!(
        payment_seq.kind,
        SequenceKind::Segment(SegmentRule {
            step: 1000,
            start: 1,
            max: i64::MAX as u64,
            max_range: rules::DEFAULT_SEGMENT_MAX_RANGE
        })
    );
    let account_seq = r
        .sequence_for_column("account", "account_id")
        .expect("account_id is generated");
    assert!(matches!(
        account_seq.kind,
        SequenceKind::Snowflake(SnowflakeRule {
            worker_id: None,
            ..
        })
    ));
}

#[test]
fn passthrough_sends_everything_to_the_default() {
    let r = load("passthrough.toml");
    assert!(r.tables.is_empty());
    assert_eq!(
        r.table_rule("orders"),
        TableRoute::Default {
            data_source: "main"
        }
    );
    // Defaults of every omitted field.
    assert_eq!(r.proxy.listen, "127.0.0.1:3307");
    assert_eq!(r.proxy.admin_listen, "127.0.0.1:9307");
    assert_eq!(r.proxy.max_connections, 10_000);
    assert_eq!(r.proxy.max_allowed_packet, 64 * 1024 * 1024);
    assert_eq!(r.proxy.idle_timeout_secs, 28_800);
    assert!(!r.proxy.create_databases);
    assert!(r.proxy.tls.is_none() && r.proxy.server_version.is_none());
    let ds = &r.data_sources["main"];
    assert_eq!(
        (ds.pool.max, ds.pool.min_idle, ds.pool.acquire_timeout_ms),
        (64, 0, 5_000)
    );
    assert_eq!(ds.password, "");
    assert_eq!(r.users[0].auth_plugin, None);
}

#[test]
fn uid_slice_bank_groups() {
    let r = load("uid-slice-bank.toml");
    let p = r.sharded("payment").expect("sharded");
    let group_of = |uid: i64| {
        p.shard_for(&ShardValue::Int(uid))
            .expect("routable")
            .data_source
            .clone()
    };
    assert_eq!(
        [
            group_of(29),
            group_of(30),
            group_of(59),
            group_of(60),
            group_of(79),
            group_of(80),
            group_of(199)
        ],
        ["ds_g0", "ds_g1", "ds_g1", "ds_g2", "ds_g2", "ds_g3", "ds_g3"]
    );
    let addresses: Vec<&str> = ["ds_g0", "ds_g1", "ds_g2", "ds_g3"]
        .iter()
        .map(|d| r.data_sources[*d].address.as_str())
        .collect();
    let mut distinct = addresses.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "each group on its own server: {addresses:?}"
    );
    let tls = r.proxy.tls.as_ref().expect("tls");
    assert!(tls.cert.is_absolute() && tls.cert.ends_with("sharding-rules/certs/server.pem"));
    assert!(tls.require);
    assert_eq!(
        r.users[0].auth_plugin,
        Some(AuthPlugin::CachingSha2Password)
    );
    assert_eq!(
        r.users[1].auth_plugin,
        Some(AuthPlugin::MysqlNativePassword)
    );
}

#[test]
fn algorithm_examples_route_as_documented() {
    let m = load("mod.toml");
    let o = m.sharded("t_order").expect("sharded");
    assert_eq!(
        o.shard_for(&ShardValue::Int(6)).expect("ok"),
        &PhysicalNode::new("ds_1", "t_order_0")
    );
    assert!(m.are_bound("t_order", "t_order_item"));

    let h = load("hash.toml");
    let l = h.sharded("login").expect("sharded");
    assert_eq!(l.all_nodes().len(), 8);
    assert_eq!(l.all_nodes()[5], PhysicalNode::new("ds_2", "login_5"));
    // Keys fold as a `_ci` collation compares them: MOD(CRC32('ALICE@EXAMPLE.COM'), 8) = 3,
    // whatever the case the key is written in.
    for key in ["alice@example.com", "Alice@Example.com "] {
        assert_eq!(
            l.shard_for(&ShardValue::Str(key)).expect("ok"),
            &PhysicalNode::new("ds_1", "login_3")
        );
    }

    let rg = load("range.toml");
    let e = rg.sharded("event").expect("sharded");
    assert_eq!(
        e.shard_for(&ShardValue::Int(25_000_000)).expect("ok"),
        &PhysicalNode::new("ds_1", "event_2")
    );
    assert_eq!(
        e.nodes_for_range(
            Bound::Included(ShardValue::Int(15_000_000)),
            Bound::Excluded(ShardValue::Int(20_000_000))
        )
        .expect("ok"),
        [1]
    );

    let c = load("consistent-hash.toml");
    let s = c.sharded("session").expect("sharded");
    assert!(matches!(s.algorithm(), Algorithm::ConsistentHash(r) if r.virtual_nodes() == 160));
}
