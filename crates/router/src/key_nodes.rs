//! The nodes of a sharded table that can hold the rows a key condition selects, with the
//! statement's values: equality and IN lists by the table's algorithm, integer ranges
//! intersected before the algorithm is asked, AND and OR as set operations. A value the
//! algorithm cannot place selects every data node.

use std::ops::Bound;

use rules::{ShardValue, ShardedTable};
use sql::Cond;

use crate::input::{Input, Val};

/// The value as the sharding algorithms take it; `None` for one they cannot place.
pub(crate) fn shard_value<'v>(v: &'v Val<'_>) -> Option<ShardValue<'v>> {
    match v {
        Val::Int(i) => Some(ShardValue::Int(*i)),
        Val::UInt(u) => Some(ShardValue::UInt(*u)),
        Val::Str(s) => Some(ShardValue::Str(s)),
        // A key compares with a fractional number as a DOUBLE would: such a condition is
        // not routed by key (a write routes by the value stored, see `stored`).
        Val::Double(_) | Val::Number(_) | Val::Null | Val::Unbound | Val::Unroutable(_) => None,
    }
}

fn int_of(v: &Val<'_>) -> Option<i128> {
    match v {
        Val::Int(i) => Some(i128::from(*i)),
        Val::UInt(u) => Some(i128::from(*u)),
        _ => None,
    }
}

fn value_of_int(v: i128) -> ShardValue<'static> {
    match i64::try_from(v) {
        Ok(i) => ShardValue::Int(i),
        Err(_) => ShardValue::UInt(u64::try_from(v).unwrap_or(u64::MAX)),
    }
}

/// Node indexes (ascending, distinct) of `table` that can hold rows satisfying `cond`.
pub(crate) fn matching_nodes(cond: &Cond, table: &ShardedTable, input: &Input<'_>) -> Vec<usize> {
    match cond {
        Cond::All => table.data_nodes(),
        Cond::In(slots) => {
            let mut out = Vec::with_capacity(slots.len());
            for &s in slots {
                let v = input.value(s);
                match shard_value(&v).map(|sv| table.shard_index(&sv)) {
                    Some(Ok(i)) => out.push(i),
                    // A value the rule cannot place may match rows anywhere.
                    _ => return table.data_nodes(),
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        }
        Cond::Range { lo, hi } => range_nodes(table, &[(lo, hi)], input),
        Cond::And(parts) => {
            // Intersect integer ranges before asking the algorithm (`uid >= 10 AND uid < 20`).
            let ranges: Vec<(&Bound<usize>, &Bound<usize>)> = parts
                .iter()
                .filter_map(|p| match p {
                    Cond::Range { lo, hi } => Some((lo, hi)),
                    _ => None,
                })
                .collect();
            let mut sets: Vec<Vec<usize>> = parts
                .iter()
                .filter(|p| !matches!(p, Cond::Range { .. }))
                .map(|p| matching_nodes(p, table, input))
                .collect();
            if !ranges.is_empty() {
                sets.push(range_nodes(table, &ranges, input));
            }
            let mut acc = sets.pop().unwrap_or_else(|| table.data_nodes());
            for s in sets {
                acc.retain(|i| s.contains(i));
            }
            acc
        }
        Cond::Or(parts) => {
            let mut out: Vec<usize> = parts
                .iter()
                .flat_map(|p| matching_nodes(p, table, input))
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Nodes for the intersection of ranges; integer bounds are combined first.
fn range_nodes(
    table: &ShardedTable,
    ranges: &[(&Bound<usize>, &Bound<usize>)],
    input: &Input<'_>,
) -> Vec<usize> {
    let mut lo: Bound<i128> = Bound::Unbounded;
    let mut hi: Bound<i128> = Bound::Unbounded;
    let mut others = Vec::new();
    for &(l, h) in ranges {
        let lv = bound_value(l, input);
        let hv = bound_value(h, input);
        match (lv, hv) {
            (Some(lb), Some(hb)) => {
                lo = tighter(lo, lb, true);
                hi = tighter(hi, hb, false);
            }
            _ => others.push((l, h)),
        }
    }
    let to_sv = |b: Bound<i128>| match b {
        Bound::Included(v) => Bound::Included(value_of_int(v)),
        Bound::Excluded(v) => Bound::Excluded(value_of_int(v)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let mut acc = table
        .nodes_for_range(to_sv(lo), to_sv(hi))
        .unwrap_or_else(|_| table.data_nodes());
    for (l, h) in others {
        let (lv, hv) = (bound_val(l, input), bound_val(h, input));
        let nodes = match (as_bound(&lv), as_bound(&hv)) {
            (Some(lb), Some(hb)) => table
                .nodes_for_range(lb, hb)
                .unwrap_or_else(|_| table.data_nodes()),
            _ => table.data_nodes(),
        };
        acc.retain(|i| nodes.contains(i));
    }
    acc
}

/// An integer bound, or `None` when the value is not an integer.
fn bound_value(b: &Bound<usize>, input: &Input<'_>) -> Option<Bound<i128>> {
    match b {
        Bound::Unbounded => Some(Bound::Unbounded),
        Bound::Included(s) => int_of(&input.value(*s)).map(Bound::Included),
        Bound::Excluded(s) => int_of(&input.value(*s)).map(Bound::Excluded),
    }
}

fn bound_val<'a>(b: &Bound<usize>, input: &Input<'a>) -> Bound<Val<'a>> {
    match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(s) => Bound::Included(input.value(*s)),
        Bound::Excluded(s) => Bound::Excluded(input.value(*s)),
    }
}

fn as_bound<'v>(b: &'v Bound<Val<'_>>) -> Option<Bound<ShardValue<'v>>> {
    Some(match b {
        Bound::Unbounded => Bound::Unbounded,
        Bound::Included(v) => Bound::Included(shard_value(v)?),
        Bound::Excluded(v) => Bound::Excluded(shard_value(v)?),
    })
}

/// The tighter of two lower (`lower`) or upper bounds.
fn tighter(a: Bound<i128>, b: Bound<i128>, lower: bool) -> Bound<i128> {
    let key = |x: &Bound<i128>| -> Option<(i128, i8)> {
        match x {
            Bound::Unbounded => None,
            // For a lower bound, Excluded(v) is tighter than Included(v); for an upper bound, too.
            Bound::Included(v) => Some((*v, 0)),
            Bound::Excluded(v) => Some((*v, if lower { 1 } else { -1 })),
        }
    };
    match (key(&a), key(&b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(ka), Some(kb)) => {
            let a_tighter = if lower { ka >= kb } else { ka <= kb };
            if a_tighter {
                a
            } else {
                b
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighter_bounds() {
        use Bound::*;
        assert_eq!(tighter(Unbounded, Included(5), true), Included(5));
        assert_eq!(tighter(Included(5), Excluded(5), true), Excluded(5));
        assert_eq!(tighter(Included(7), Excluded(5), true), Included(7));
        assert_eq!(tighter(Included(5), Excluded(5), false), Excluded(5));
        assert_eq!(tighter(Included(3), Excluded(5), false), Included(3));
        assert_eq!(tighter(Excluded(9), Unbounded, false), Excluded(9));
    }

    #[test]
    fn ints_round_trip_to_shard_values() {
        assert_eq!(value_of_int(-3), ShardValue::Int(-3));
        assert_eq!(
            value_of_int(i128::from(u64::MAX)),
            ShardValue::UInt(u64::MAX)
        );
    }
}
