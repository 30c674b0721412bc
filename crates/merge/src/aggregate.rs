//! GROUP BY and aggregates across shards: partial groups from every shard are
//! combined in a hash table (bounded by the memory limit), then finished
//! (AVG, DISTINCT aggregates, expressions), filtered by HAVING, deduplicated,
//! sorted and limited.

use std::collections::{HashMap, HashSet};

use router::{Aggregation, Col, DistinctFn, MergeSpec, Role};

use crate::decimal::Decimal;
use crate::eval::{arithmetic, eval, truth};
use crate::group_concat::{Call, Elements};
use crate::row::{encode_row, OutCell, Row};
use crate::value::{compare, group_key, to_f64, Kind, Value};
use crate::{Layout, MergeError, Warning};

/// The running combination of one role column in one group.
#[derive(Debug)]
enum Acc {
    Count(i128),
    Sum(Value),
    /// The best value so far and its encoded cell.
    Extreme(Option<(Value, Vec<u8>)>),
    /// Distinct argument tuples (normalised) and, for one argument, its value.
    Distinct(HashMap<Vec<u8>, Value>),
    /// BIT_AND / BIT_OR / BIT_XOR so far.
    Bits(u64),
    /// GROUP_CONCAT's elements so far.
    Concat(Elements),
    /// GROUP_CONCAT's result (`None`: NULL).
    Joined(Option<Vec<u8>>),
    /// Derived when the group is finished (AVG, expressions).
    Derived,
}

struct Group {
    first: Row,
    accs: Vec<Acc>,
}

/// Combines partial groups.
pub(crate) struct Aggregator<'a> {
    layout: &'a Layout,
    agg: &'a Aggregation,
    /// Role per column index (`None`: keeps the group's first value).
    roles: Vec<Option<&'a Role>>,
    /// The GROUP_CONCAT call per column index.
    calls: Vec<Option<Call<'a>>>,
    group_cols: Vec<usize>,
    groups: HashMap<Vec<u8>, usize>,
    list: Vec<Group>,
    memory: usize,
    limit: usize,
}

impl<'a> Aggregator<'a> {
    pub(crate) fn new(
        layout: &'a Layout,
        agg: &'a Aggregation,
        limit: usize,
    ) -> Result<Self, MergeError> {
        let mut roles = vec![None; layout.columns.len()];
        let mut calls: Vec<Option<Call<'a>>> = Vec::new();
        calls.resize_with(layout.columns.len(), || None);
        for (col, role) in &agg.roles {
            let c = layout.index(*col);
            if let Some(slot) = roles.get_mut(c) {
                *slot = Some(role);
            }
            if let (Role::GroupConcat(g), Some(slot)) = (role, calls.get_mut(c)) {
                *slot = Some(Call::new(g, layout)?);
            }
        }
        Ok(Aggregator {
            group_cols: agg.group_by.iter().map(|c| layout.index(*c)).collect(),
            layout,
            agg,
            roles,
            groups: HashMap::new(),
            list: Vec::new(),
            memory: 0,
            limit,
            calls,
        })
    }

    pub(crate) fn add(&mut self, row: Row) -> Result<(), MergeError> {
        let mut key = Vec::new();
        for &c in &self.group_cols {
            group_key(self.layout.kinds[c], &row.value(c, self.layout), &mut key);
        }
        let index = match self.groups.get(&key) {
            Some(&i) => i,
            None => {
                self.memory += key.len() * 2 + row.footprint() + self.roles.len() * 48 + 64;
                self.check_memory()?;
                let accs = self.roles.iter().map(|r| new_acc(*r)).collect();
                self.groups.insert(key, self.list.len());
                self.list.push(Group {
                    first: row.clone(),
                    accs,
                });
                self.list.len() - 1
            }
        };
        let layout = self.layout;
        let group = &mut self.list[index];
        for (c, role) in self.roles.iter().enumerate() {
            let Some(role) = role else { continue };
            let acc = &mut group.accs[c];
            match (role, acc) {
                (Role::Count, Acc::Count(n)) => {
                    if let Value::Int(v) = row.value(c, layout) {
                        *n += v;
                    }
                }
                (Role::Sum, Acc::Sum(total)) => {
                    let v = row.value(c, layout);
                    if v != Value::Null {
                        *total = if *total == Value::Null {
                            v
                        } else {
                            add(std::mem::replace(total, Value::Null), v)?
                        };
                    }
                }
                (Role::Min | Role::Max, Acc::Extreme(best)) => {
                    let v = row.value(c, layout);
                    if v == Value::Null {
                        continue;
                    }
                    let better = match best {
                        None => true,
                        Some((b, _)) => {
                            let o = compare(layout.kinds[c], &v, b);
                            if matches!(role, Role::Min) {
                                o.is_lt()
                            } else {
                                o.is_gt()
                            }
                        }
                    };
                    if better {
                        let encoded = row.encoded(c).unwrap_or_default().to_vec();
                        *best = Some((v, encoded));
                    }
                }
                (Role::Bits(function), Acc::Bits(bits)) => {
                    // A shard's result is an unsigned 64-bit integer, never NULL.
                    let Value::Int(v) = row.value(c, layout) else {
                        return Err(MergeError::Malformed(
                            "a bitwise aggregate that is no integer",
                        ));
                    };
                    let v = u64::try_from(v)
                        .map_err(|_| MergeError::Malformed("a bitwise aggregate beyond 64 bits"))?;
                    *bits = function.fold(*bits, v);
                }
                (Role::GroupConcat(_), Acc::Concat(elements)) => {
                    if let Some(call) = &self.calls[c] {
                        self.memory += elements.add(call, &row, layout)?;
                    }
                }
                (Role::Distinct { args, .. }, Acc::Distinct(seen)) => {
                    let mut key = Vec::new();
                    let mut value = Value::Null;
                    let mut has_null = false;
                    for a in args {
                        let i = layout.index(*a);
                        let v = row.value(i, layout);
                        has_null |= v == Value::Null;
                        group_key(layout.kinds[i], &v, &mut key);
                        value = v;
                    }
                    if !has_null && !seen.contains_key(&key) {
                        self.memory += key.len() * 2 + 64;
                        seen.insert(key, value);
                    }
                }
                _ => {}
            }
        }
        self.check_memory()
    }

    fn check_memory(&self) -> Result<(), MergeError> {
        if self.memory > self.limit {
            return Err(MergeError::MemoryLimit(self.limit));
        }
        Ok(())
    }

    /// Joins every group's GROUP_CONCATs, in the order MariaDB computes groups (by their
    /// keys), which numbers the rows its cut warnings name; returns the warnings.
    fn join_concats(&mut self) -> Result<Vec<Warning>, MergeError> {
        let layout = self.layout;
        if self.calls.iter().all(Option::is_none) {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        let group_cols = &self.group_cols;
        let list = &self.list;
        order.sort_by(|&a, &b| {
            for &c in group_cols {
                let o = compare(
                    layout.kinds[c],
                    &list[a].first.value(c, layout),
                    &list[b].first.value(c, layout),
                );
                if o.is_ne() {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        });
        let mut counters = vec![0u64; self.calls.len()];
        let mut warnings = Vec::new();
        for g in order {
            for (c, call) in self.calls.iter().enumerate() {
                let Some(call) = call else { continue };
                let acc = &mut self.list[g].accs[c];
                if let Acc::Concat(elements) = std::mem::replace(acc, Acc::Derived) {
                    let (joined, warning) = elements.join(call, layout, c, &mut counters[c])?;
                    self.memory += joined.as_ref().map_or(0, Vec::len);
                    *acc = Acc::Joined(joined);
                    warnings.extend(warning);
                }
            }
            self.check_memory()?;
        }
        Ok(warnings)
    }

    /// The finished groups after HAVING, DISTINCT, ORDER BY and LIMIT, encoded, how many
    /// there were before OFFSET and LIMIT, and the warnings of their GROUP_CONCATs.
    pub(crate) fn finish(mut self, spec: &MergeSpec) -> Result<FinishedGroups, MergeError> {
        let warnings = self.join_concats()?;
        let layout = self.layout;
        let scalar = self.agg.group_by.is_empty();
        let mut finished: Vec<Vec<Finished>> = Vec::with_capacity(self.list.len().max(1));
        if scalar && self.list.is_empty() {
            // Aggregates over no rows: one row, COUNT 0 and everything else NULL.
            let row: Vec<Finished> = self
                .roles
                .iter()
                .map(|r| match r {
                    Some(Role::Count) => Finished::Value(Value::Int(0)),
                    Some(Role::Distinct {
                        function: DistinctFn::Count,
                        ..
                    }) => Finished::Value(Value::Int(0)),
                    Some(Role::Bits(function)) => {
                        Finished::Value(Value::Int(i128::from(function.identity())))
                    }
                    _ => Finished::Value(Value::Null),
                })
                .collect();
            finished.push(self.derive(row)?);
        }
        let groups = std::mem::take(&mut self.list);
        for group in groups {
            let mut row = Vec::with_capacity(self.roles.len());
            for (c, acc) in group.accs.into_iter().enumerate() {
                row.push(match acc {
                    Acc::Count(n) => Finished::Value(Value::Int(n)),
                    Acc::Sum(v) => Finished::Value(v),
                    Acc::Extreme(None) => Finished::Value(Value::Null),
                    Acc::Extreme(Some((v, encoded))) => Finished::Encoded(v, encoded),
                    Acc::Distinct(seen) => {
                        Finished::Value(fold_distinct(self.roles[c], seen, layout, c)?)
                    }
                    Acc::Bits(bits) => Finished::Value(Value::Int(i128::from(bits))),
                    Acc::Joined(joined) => {
                        Finished::Value(joined.map_or(Value::Null, Value::Bytes))
                    }
                    Acc::Concat(_) | Acc::Derived => Finished::Value(Value::Null),
                });
            }
            for (c, cell) in row.iter_mut().enumerate() {
                if self.roles[c].is_none() {
                    *cell = match group.first.encoded(c) {
                        Some(e) => Finished::Encoded(group.first.value(c, layout), e.to_vec()),
                        None => Finished::Value(Value::Null),
                    };
                }
            }
            finished.push(self.derive(row)?);
        }
        let shape = &spec.shape;
        let value_of = |row: &[Finished], c: Col| {
            row.get(layout.index(c))
                .map_or(Value::Null, Finished::value)
        };
        if let Some(h) = &shape.having {
            let mut kept = Vec::with_capacity(finished.len());
            for row in finished {
                if truth(&eval(h, &|c| value_of(&row, c))?) == Some(true) {
                    kept.push(row);
                }
            }
            finished = kept;
        }
        if shape.distinct {
            let mut seen = HashSet::new();
            finished.retain(|row| {
                let mut key = Vec::new();
                for (c, cell) in row.iter().take(layout.visible).enumerate() {
                    group_key(layout.kinds[c], &cell.value(), &mut key);
                }
                seen.insert(key)
            });
        }
        // Without ORDER BY, MariaDB returns groups in group-key order.
        let keys: Vec<(usize, bool)> = if shape.order_by.is_empty() {
            self.group_cols
                .iter()
                .map(|&c| (c, false))
                .take_while(|&(c, _)| crate::value::sortable(&layout.columns[c]))
                .collect()
        } else {
            shape
                .order_by
                .iter()
                .map(|k| (layout.index(k.column), k.descending))
                .collect()
        };
        if !keys.is_empty() {
            finished.sort_by(|a, b| {
                for &(c, desc) in &keys {
                    let o = compare(layout.kinds[c], &a[c].value(), &b[c].value());
                    let o = if desc { o.reverse() } else { o };
                    if o.is_ne() {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        let skip = usize::try_from(spec.offset).unwrap_or(usize::MAX);
        let take = spec
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let total = finished.len() as u64;
        let mut out = Vec::new();
        for row in finished.into_iter().skip(skip).take(take) {
            let cells: Vec<OutCell<'_>> = row
                .iter()
                .map(|f| match f {
                    Finished::Encoded(_, e) => OutCell::Encoded(e),
                    Finished::Value(v) => OutCell::Value(v.clone()),
                })
                .collect();
            let mut payload = Vec::new();
            encode_row(layout, &cells, &mut payload)?;
            out.push(payload);
        }
        Ok(FinishedGroups {
            rows: out,
            groups: total,
            warnings,
        })
    }

    /// Fills the derived columns (AVG, expressions) of a finished row.
    fn derive(&self, mut row: Vec<Finished>) -> Result<Vec<Finished>, MergeError> {
        let layout = self.layout;
        for (c, role) in self.roles.iter().enumerate() {
            if let Some(Role::Avg { sum, count }) = role {
                let s = row[layout.index(*sum)].value();
                let n = row[layout.index(*count)].value();
                row[c] = Finished::Value(average(s, n, layout.kinds[c], layout.scale(c))?);
            }
        }
        for (c, role) in self.roles.iter().enumerate() {
            if let Some(Role::Computed(e)) = role {
                let v = eval(e, &|col| {
                    row.get(layout.index(col))
                        .map_or(Value::Null, Finished::value)
                })?;
                row[c] = Finished::Value(v);
            }
        }
        Ok(row)
    }
}

fn new_acc(role: Option<&Role>) -> Acc {
    match role {
        Some(Role::Count) => Acc::Count(0),
        Some(Role::Sum) => Acc::Sum(Value::Null),
        Some(Role::Min | Role::Max) => Acc::Extreme(None),
        Some(Role::Distinct { .. }) => Acc::Distinct(HashMap::new()),
        Some(Role::Bits(function)) => Acc::Bits(function.identity()),
        Some(Role::GroupConcat(_)) => Acc::Concat(Elements::default()),
        Some(Role::Avg { .. } | Role::Computed(_)) | None => Acc::Derived,
    }
}

/// What [`Aggregator::finish`] gives.
pub(crate) struct FinishedGroups {
    /// The client's rows, encoded.
    pub rows: Vec<Vec<u8>>,
    /// The groups before OFFSET and LIMIT.
    pub groups: u64,
    pub warnings: Vec<Warning>,
}

/// A cell of a finished group.
#[derive(Debug, Clone)]
enum Finished {
    Value(Value),
    /// A value kept with its encoding (group keys, MIN/MAX).
    Encoded(Value, Vec<u8>),
}

impl Finished {
    fn value(&self) -> Value {
        match self {
            Finished::Value(v) | Finished::Encoded(v, _) => v.clone(),
        }
    }
}

/// The sum of two partial sums.
fn add(a: Value, b: Value) -> Result<Value, MergeError> {
    arithmetic(a, router::BinOp::Plus, b)
}

/// `sum / count` typed as the AVG column: DECIMAL to its scale, DOUBLE otherwise.
fn average(sum: Value, count: Value, kind: Kind, scale: u32) -> Result<Value, MergeError> {
    let n = match count {
        Value::Int(n) if n > 0 => n,
        _ => return Ok(Value::Null),
    };
    Ok(match (kind, sum) {
        (_, Value::Null) => Value::Null,
        (Kind::Decimal, Value::Int(s)) => Decimal::from_int(s)
            .checked_div(Decimal::from_int(n), scale)?
            .map_or(Value::Null, Value::Decimal),
        (Kind::Decimal, Value::Decimal(s)) => s
            .checked_div(Decimal::from_int(n), scale)?
            .map_or(Value::Null, Value::Decimal),
        (_, s) => Value::Double(to_f64(&s) / n as f64),
    })
}

/// COUNT/SUM/AVG over the distinct values of a group.
fn fold_distinct(
    role: Option<&Role>,
    seen: HashMap<Vec<u8>, Value>,
    layout: &Layout,
    c: usize,
) -> Result<Value, MergeError> {
    let Some(Role::Distinct { function, .. }) = role else {
        return Ok(Value::Null);
    };
    let count = seen.len() as i128;
    if *function == DistinctFn::Count {
        return Ok(Value::Int(count));
    }
    let mut total = Value::Null;
    for v in seen.into_values() {
        // Strings and temporal values add as numbers, as SUM() reads them.
        let v = match v {
            Value::Bytes(b) => Value::Double(to_f64(&Value::Bytes(b))),
            other => other,
        };
        total = if total == Value::Null {
            v
        } else {
            add(total, v)?
        };
    }
    match function {
        DistinctFn::Sum => Ok(total),
        _ => average(total, Value::Int(count), layout.kinds[c], layout.scale(c)),
    }
}
