//! The merge of rows from several shards: the row decoder (text and binary protocol) and what
//! reads the values (sorting, grouping, aggregates, DISTINCT, HAVING, LIMIT). The merge is one
//! the router plans for a fixed statement (the first input byte picks it); the second byte
//! picks text or binary rows; then come each column's type, UNSIGNED flag and decimals, and
//! the rows, each as a shard number, a length and that many bytes.
#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use merge::{Layout, Limits, Shards, Sink};
use protocol::constants::{column_flag, column_type as ty};
use protocol::resultset::ColumnDef;
use router::{Combine, MergeSpec, Router};

/// SELECTs over mod.toml's sharded `t_order` (two data sources), with their select-list width.
const STATEMENTS: &[(&str, usize)] = &[
    ("SELECT order_id, status FROM t_order ORDER BY status DESC, order_id", 2),
    ("SELECT order_id FROM t_order ORDER BY user_id LIMIT 3 OFFSET 1", 1),
    (
        "SELECT status, COUNT(*), SUM(amount), MIN(order_id), MAX(created), AVG(amount) \
         FROM t_order GROUP BY status HAVING SUM(amount) > 10 ORDER BY 2 DESC",
        6,
    ),
    ("SELECT DISTINCT status, user_id FROM t_order", 2),
    ("SELECT COUNT(DISTINCT user_id), SUM(DISTINCT amount) FROM t_order", 2),
    ("SELECT user_id, COUNT(*) AS n FROM t_order GROUP BY user_id HAVING n BETWEEN 2 AND 5 OR MAX(amount) IS NULL", 2),
];

const TYPES: [u8; 16] = [
    ty::TINY,
    ty::SHORT,
    ty::LONG,
    ty::INT24,
    ty::LONGLONG,
    ty::YEAR,
    ty::FLOAT,
    ty::DOUBLE,
    ty::NEWDECIMAL,
    ty::DATE,
    ty::DATETIME,
    ty::TIMESTAMP,
    ty::TIME,
    ty::VAR_STRING,
    ty::BLOB,
    ty::ENUM,
];

fn specs() -> &'static [(MergeSpec, usize)] {
    static SPECS: OnceLock<Vec<(MergeSpec, usize)>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let mod_rules = dbmesh_fuzz::rule_sets()
            .iter()
            .find(|r| r.tables.contains_key("t_order"))
            .expect("mod.toml is among the rule sets");
        let router = Router::new(mod_rules.clone(), 0);
        STATEMENTS
            .iter()
            .map(|&(sql, width)| match router.route(sql, &[]) {
                Ok(plan) => match plan.combine {
                    Combine::Merge(spec) => {
                        let columns = width + spec.shape.hidden;
                        (*spec, columns)
                    }
                    other => panic!("{sql} does not merge: {other:?}"),
                },
                Err(e) => panic!("{sql} does not route: {e}"),
            })
            .collect()
    })
}

struct Rows(Vec<VecDeque<Vec<u8>>>);

impl Shards for Rows {
    type Error = Infallible;
    fn count(&self) -> usize {
        self.0.len()
    }
    async fn next_row(&mut self, shard: usize) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.0[shard].pop_front())
    }
}

struct Written(usize);

impl Sink for Written {
    type Error = Infallible;
    async fn row(&mut self, _payload: &[u8]) -> Result<(), Infallible> {
        self.0 += 1;
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, mode, rest @ ..] = data else {
        return;
    };
    let specs = specs();
    let (spec, width) = &specs[usize::from(*pick) % specs.len()];
    let Some((column_bytes, mut rest)) = rest.split_at_checked(width * 2) else {
        return;
    };
    let columns = column_bytes
        .chunks(2)
        .map(|c| ColumnDef {
            column_type: TYPES[usize::from(c[0] % 16)],
            flags: if c[0] & 0x10 != 0 {
                column_flag::UNSIGNED
            } else {
                0
            },
            collation: if c[0] & 0x20 != 0 { 63 } else { 45 },
            decimals: c[1],
            ..ColumnDef::varchar("c", 64)
        })
        .collect();
    let Ok(layout) = Layout::new(columns, spec.shape.hidden, mode & 1 != 0) else {
        return;
    };
    let mut shards = Rows(vec![VecDeque::new(); 3]);
    while let [shard, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        shards.0[usize::from(*shard) % 3].push_back(tail[..len].to_vec());
        rest = &tail[len..];
    }
    let limits = Limits { memory: 64 * 1024 };
    let mut sink = Written(0);
    let _ = dbmesh_fuzz::ready(merge::merge(spec, &layout, limits, &mut shards, &mut sink));
});
