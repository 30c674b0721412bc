//! INTERSECT and EXCEPT across shards ([`router::SetOp`]): every branch's rows arrive,
//! each tagged with its branch's index in a hidden column; rows equal under the columns'
//! collations (NULL equal to NULL, as MariaDB's set operations compare) are counted per
//! branch, and each distinct row is written as many times as the operation keeps it
//! (once for DISTINCT, by the counts for ALL), the first row seen standing for its equals.
//! Then ORDER BY, OFFSET and LIMIT. Everything is held until the last row: the distinct
//! rows and their counts are counted against the merge's memory limit (1038 past it), and
//! `FOUND_ROWS()` is every row of the result, as MariaDB counts a set operation's.

use std::collections::HashMap;

use router::{MergeSpec, SetOp};

use crate::value::{group_key, Value};
use crate::{compare_keys, Failure, Layout, MergeError, Merged, Output, Row, Shards, Sink};

/// Runs `op` over the shards' tagged rows into `sink`.
pub(crate) async fn run<S, K, E>(
    op: SetOp,
    spec: &MergeSpec,
    layout: &Layout,
    memory_limit: usize,
    shards: &mut S,
    sink: &mut K,
) -> Result<Merged, Failure<E>>
where
    S: Shards<Error = E>,
    K: Sink<Error = E>,
{
    let tag = layout.index(SetOp::TAG);
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut rows: Vec<(Row, Vec<u64>)> = Vec::new();
    let mut memory = 0usize;
    for shard in 0..shards.count() {
        while let Some(data) = shards.next_row(shard).await.map_err(Failure::Io)? {
            let row = Row::parse(data, layout)?;
            let branch = match row.value(tag, layout) {
                Value::Int(i) => usize::try_from(i).ok().filter(|&b| b < op.branches),
                _ => None,
            }
            .ok_or(MergeError::Malformed(
                "a set operation row without its branch",
            ))?;
            let mut key = Vec::new();
            for c in 0..layout.visible {
                group_key(layout.kinds[c], &row.value(c, layout), &mut key);
            }
            match index.get(&key) {
                Some(&i) => rows[i].1[branch] += 1,
                None => {
                    memory += key.len() * 2 + row.footprint() + 8 * op.branches + 96;
                    if memory > memory_limit {
                        return Err(MergeError::MemoryLimit(memory_limit).into());
                    }
                    let mut counts = vec![0; op.branches];
                    counts[branch] = 1;
                    index.insert(key, rows.len());
                    rows.push((row, counts));
                }
            }
        }
    }
    drop(index);
    let mut kept: Vec<(Row, u64)> = rows
        .into_iter()
        .map(|(row, counts)| (row, op.occurrences(&counts)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let found = kept.iter().map(|(_, n)| n).sum();
    let keys: Vec<(usize, bool)> = spec
        .shape
        .order_by
        .iter()
        .map(|k| (layout.index(k.column), k.descending))
        .collect();
    if !keys.is_empty() {
        let mut keyed: Vec<(Vec<Value>, (Row, u64))> = kept
            .into_iter()
            .map(|(row, n)| {
                let values = keys.iter().map(|&(c, _)| row.value(c, layout)).collect();
                (values, (row, n))
            })
            .collect();
        keyed.sort_by(|a, b| compare_keys(layout, &keys, &a.0, &b.0));
        kept = keyed.into_iter().map(|(_, r)| r).collect();
    }
    let mut out = Output {
        layout,
        skip: spec.offset,
        left: spec.limit.unwrap_or(u64::MAX),
        seen: None,
        memory: 0,
        limit: memory_limit,
        written: 0,
        count_beyond: false,
        beyond: 0,
    };
    let merged = |out: &Output<'_>| Merged {
        written: out.written,
        found,
        warnings: Vec::new(),
    };
    if out.left == 0 {
        return Ok(merged(&out));
    }
    for (row, n) in kept {
        for _ in 1..n {
            if !out.push(row.clone(), sink).await? {
                return Ok(merged(&out));
            }
        }
        if !out.push(row, sink).await? {
            break;
        }
    }
    Ok(merged(&out))
}
