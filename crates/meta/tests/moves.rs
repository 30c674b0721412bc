//! The move state on a real meta database: a move owns its slices until it is finished, one
//! driver at a time holds it, chunks advance the copy cursor only from where it is, and the
//! first snapshot's positions are the ones kept.

use std::collections::BTreeMap;
use std::time::Duration;

use meta::moves::{self, ChunkRecord, NewMove, Phase, Request};
use meta::{Meta, MetaError, SliceSet};

fn meta_on(server: &testkit::Backend) -> Meta {
    let db = testkit::unique_name("moves");
    server
        .sql(&format!("CREATE DATABASE {db}"))
        .expect("create the meta database");
    let options = backend::ConnectOptions {
        found_rows: true,
        ..backend::ConnectOptions::plaintext(
            "meta",
            &server.address(),
            server.user(),
            server.password(),
            Some(&db),
        )
    };
    Meta::with_options(options, Duration::from_secs(10))
}

fn new_move(slices: &str) -> NewMove {
    let slices: SliceSet = slices.parse().expect("slices");
    NewMove {
        slices,
        destination: "ds_4".into(),
        tables: BTreeMap::from([("payment".to_string(), slices)]),
        from_version: 0,
        plan: "a plan".into(),
        sources: vec!["ds_0".into(), "ds_1".into()],
        nodes: vec![
            ("ds_0.payment".into(), "ds_4.payment".into()),
            ("ds_1.payment".into(), "ds_4.payment".into()),
        ],
    }
}

fn conflict(result: Result<impl std::fmt::Debug, MetaError>) -> String {
    match result {
        Err(MetaError::Conflict(reason)) => reason,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_move_owns_its_slices_and_has_one_driver() {
    let server = testkit::backends(1).expect("a server").remove(0);
    let mut meta = meta_on(&server);
    let id = moves::create(&mut meta, &new_move("30-44"), "rebalancer-a", LEASE)
        .await
        .expect("create");
    let overlapping = conflict(moves::create(&mut meta, &new_move("40-50"), "b", LEASE).await);
    assert!(
        overlapping.contains("already moves slices 40-44 of payment"),
        "{overlapping}"
    );
    let other = moves::create(&mut meta, &new_move("45-50"), "b", LEASE)
        .await
        .expect("disjoint slices move alongside");
    assert_ne!(id, other);

    let taken = conflict(moves::take_driver(&mut meta, id, "rebalancer-b", LEASE).await);
    assert!(taken.contains("driven by rebalancer-a"), "{taken}");
    moves::take_driver(&mut meta, id, "rebalancer-a", LEASE)
        .await
        .expect("the driver takes its own lease again");
    moves::release_driver(&mut meta, id, "rebalancer-a")
        .await
        .expect("release");
    moves::take_driver(&mut meta, id, "rebalancer-b", LEASE)
        .await
        .expect("a released lease is taken over");
    let lost = conflict(moves::checkpoint(&mut meta, id, "rebalancer-a", LEASE, &[]).await);
    assert!(lost.contains("no longer holds the lease"), "{lost}");

    moves::record_snapshot(&mut meta, id, "ds_0", "0-1-10", "0-1-12")
        .await
        .expect("first snapshot");
    moves::record_snapshot(&mut meta, id, "ds_0", "0-1-20", "0-1-22")
        .await
        .expect("a later snapshot");
    moves::checkpoint(
        &mut meta,
        id,
        "rebalancer-b",
        LEASE,
        &[("ds_1".to_string(), "0-1-7".to_string())],
    )
    .await
    .expect("checkpoint");

    let chunk = |seq: u64, after: Option<&str>, last: &str| ChunkRecord {
        source_node: "ds_0.payment".into(),
        seq,
        after_key: after.map(str::to_string),
        last_key: last.into(),
        rows: 1000,
    };
    moves::record_chunk(&mut meta, id, "rebalancer-b", &chunk(1, None, "(1030)"))
        .await
        .expect("first chunk");
    moves::record_chunk(
        &mut meta,
        id,
        "rebalancer-b",
        &chunk(2, Some("(1030)"), "(2044)"),
    )
    .await
    .expect("second chunk");
    let stale = conflict(
        moves::record_chunk(
            &mut meta,
            id,
            "rebalancer-b",
            &chunk(2, Some("(1030)"), "(2044)"),
        )
        .await,
    );
    assert!(stale.contains("no longer where chunk 2 began"), "{stale}");
    let not_driver = conflict(
        moves::record_chunk(
            &mut meta,
            id,
            "rebalancer-a",
            &chunk(3, Some("(2044)"), "(3030)"),
        )
        .await,
    );
    assert!(
        not_driver.contains("no longer holds the lease"),
        "{not_driver}"
    );
    moves::set_rows_total(&mut meta, id, "ds_0.payment", 2500)
        .await
        .expect("total");
    moves::finish_node(&mut meta, id, "ds_0.payment")
        .await
        .expect("finish");

    moves::set_phase(&mut meta, id, Phase::Copying, Phase::CatchingUp)
        .await
        .expect("phase");
    let wrong = conflict(moves::set_phase(&mut meta, id, Phase::Copying, Phase::Verified).await);
    assert!(wrong.contains("is not copying"), "{wrong}");
    moves::request(&mut meta, id, Some(Request::Abort))
        .await
        .expect("request");

    let record = moves::get(&mut meta, id)
        .await
        .expect("read")
        .expect("the move");
    assert_eq!(record.phase, Phase::CatchingUp);
    assert_eq!(record.requested, Some(Request::Abort));
    assert_eq!(record.driver, "rebalancer-b");
    assert!(record.driver_remaining.is_some());
    let ds0 = &record.sources[0];
    assert_eq!(
        (ds0.start_position.as_str(), ds0.snapshot_position.as_str()),
        ("0-1-10", "0-1-12"),
        "the first snapshot's positions stay"
    );
    assert_eq!(ds0.resume_position(), "0-1-10");
    assert_eq!(record.sources[1].resume_position(), "0-1-7");
    let node = &record.nodes[0];
    assert_eq!(node.cursor.as_deref(), Some("(2044)"));
    assert_eq!(
        (node.rows_copied, node.rows_total, node.chunks),
        (2000, 2500, 2)
    );
    assert!(node.done);
    assert_eq!(record.nodes[1].cursor, None);
    let chunks = moves::chunks(&mut meta, id).await.expect("chunks");
    assert_eq!(
        chunks,
        vec![chunk(1, None, "(1030)"), chunk(2, Some("(1030)"), "(2044)")]
    );

    // Finished moves free their slices.
    assert_eq!(
        moves::current(&mut meta)
            .await
            .expect("current")
            .map(|m| m.id),
        Some(other)
    );
    moves::set_phase(&mut meta, id, Phase::CatchingUp, Phase::Aborted)
        .await
        .expect("abort");
    moves::create(&mut meta, &new_move("30-40"), "c", LEASE)
        .await
        .expect("the slices of an aborted move move again");
    assert_eq!(moves::list(&mut meta).await.expect("list").len(), 3);
}
