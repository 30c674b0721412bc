//! Merge throughput: a 4-shard k-way sort merge and a 4-shard group-aggregate,
//! text protocol, rows already in memory (the network is not measured).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::convert::Infallible;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use merge::{merge, Layout, Limits, Sink};
use protocol::constants::column_type;
use router::{Aggregation, Col, MergeShape, MergeSpec, Role, SortKey};
use support::{col, text_row, Mem};

const SHARDS: usize = 4;
const ROWS: usize = 25_000;

struct Count(u64);

impl Sink for Count {
    type Error = Infallible;
    async fn row(&mut self, payload: &[u8]) -> Result<(), Infallible> {
        self.0 += payload.len() as u64;
        Ok(())
    }
}

/// Rows (id, name, amount) sorted by id within each shard; ids interleave across shards.
fn shards() -> Vec<VecDeque<Vec<u8>>> {
    (0..SHARDS)
        .map(|s| {
            (0..ROWS)
                .map(|i| {
                    let id = (i * SHARDS + s).to_string();
                    let name = format!("user{}", i % 500);
                    let amount = format!("{}.{:02}", i % 1000, i % 100);
                    text_row(&[Some(&id), Some(&name), Some(&amount)])
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let layout = Layout::new(
        vec![
            col("id", column_type::LONGLONG, 0),
            col("name", column_type::VAR_STRING, 0),
            col("amount", column_type::NEWDECIMAL, 2),
        ],
        0,
        false,
    )
    .expect("layout");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let input = shards();
    let limits = Limits { memory: 256 << 20 };
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements((SHARDS * ROWS) as u64));
    group.sample_size(20);

    let sort = MergeSpec {
        shape: MergeShape {
            order_by: vec![SortKey {
                column: Col::Item(0),
                descending: false,
            }],
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    };
    group.bench_function("sort_merge_4x25k", |b| {
        b.iter(|| {
            let mut mem = Mem(input.clone());
            let mut out = Count(0);
            rt.block_on(merge(&sort, &layout, limits, &mut mem, &mut out))
                .expect("merge");
            out.0
        })
    });

    // SELECT name, COUNT(*) (id column reused as a count), SUM(amount) … GROUP BY name.
    let aggregate = MergeSpec {
        shape: MergeShape {
            aggregation: Some(Aggregation {
                group_by: vec![Col::Item(1)],
                roles: vec![(Col::Item(0), Role::Count), (Col::Item(2), Role::Sum)],
                distinct_keys: Vec::new(),
            }),
            ..MergeShape::default()
        },
        ..MergeSpec::default()
    };
    group.bench_function("group_aggregate_4x25k", |b| {
        b.iter(|| {
            let mut mem = Mem(input.clone());
            let mut out = Count(0);
            rt.block_on(merge(&aggregate, &layout, limits, &mut mem, &mut out))
                .expect("merge");
            out.0
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
