//! From a template and a statement's literal values to a [`Plan`].
//!
//! This runs on every statement, cached or not (a miss builds the template
//! first), which is what makes the cached and uncached paths agree. Steps:
//! read the sharding values from the text (by fingerprint slot) or the bound
//! parameters; turn each key class's condition into a set of node indexes
//! with the rules' algorithms; place every table on the chosen data sources
//! (bound tables on the same node index, broadcast copies on each, single and
//! default tables only where they live) or refuse; splice physical names and
//! literal texts into the rendered statement; pick how results combine.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Bound;

use rules::{PhysicalNode, Rules, ShardValue, ShardedTable};
use sql::{Cond, Constant, Fingerprint, LiteralKind, LiteralValue, MergeExpr, Operand, Seg};

use crate::error::RouteError;
use crate::fill::{Ids, RowIds};
use crate::plan::{Combine, MergeSpec, Param, Plan, SessionStatement, StatementKind, Target};
use crate::stored::stored;
use crate::template::{MergeTemplate, Mode, Place, Routed, Template};

/// The statement being routed: its text, fingerprint, bound parameters, and
/// the ids a sequence fills in.
pub(crate) struct Input<'a> {
    pub sql: &'a str,
    pub fp: &'a Fingerprint,
    pub params: &'a [Param],
    pub ids: Ids<'a>,
}

/// A sharding value read from the statement.
#[derive(Debug)]
pub(crate) enum Val<'a> {
    Int(i64),
    UInt(u64),
    Str(Cow<'a, str>),
    /// A DOUBLE parameter (mysql2 sends every JavaScript number as one).
    Double(f64),
    /// A literal number with a fraction or an exponent, as written.
    Number(&'a str),
    Null,
    /// Not known yet: a `?` without a bound value, or an id a sequence has
    /// not given yet (COM_STMT_PREPARE).
    Unbound,
    /// Why the value cannot be used to route.
    Unroutable(String),
}

impl<'a> Input<'a> {
    /// Whether this is COM_STMT_PREPARE: parameters are not bound yet.
    pub(crate) fn preparing(&self) -> bool {
        matches!(self.ids, Ids::Prepare)
    }

    pub(crate) fn value(&self, slot: usize) -> Val<'a> {
        let Some(lit) = self.fp.literals.get(slot) else {
            return Val::Unroutable("a missing literal".into());
        };
        match lit.value(self.sql) {
            LiteralValue::Int(v) => Val::Int(v),
            LiteralValue::UInt(v) => Val::UInt(v),
            LiteralValue::Str(s) => Val::Str(s),
            LiteralValue::Number(t) => Val::Number(t),
            LiteralValue::Binary(t) => Val::Unroutable(format!("the binary literal {t}")),
            LiteralValue::Placeholder(k) => match self.params.get(k) {
                None => Val::Unbound,
                Some(Param::Null) => Val::Null,
                Some(Param::Int(v)) => Val::Int(*v),
                Some(Param::UInt(v)) => Val::UInt(*v),
                Some(Param::Double(v)) => Val::Double(*v),
                Some(Param::Bytes(b)) => match std::str::from_utf8(b) {
                    Ok(s) => Val::Str(Cow::Owned(s.to_owned())),
                    Err(_) => Val::Unroutable("a parameter that is not UTF-8 text".into()),
                },
            },
        }
    }
}

fn shard_value<'v>(v: &'v Val<'_>) -> Option<ShardValue<'v>> {
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
fn eval(cond: &Cond, table: &ShardedTable, input: &Input<'_>) -> Vec<usize> {
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
                .map(|p| eval(p, table, input))
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
            let mut out: Vec<usize> = parts.iter().flat_map(|p| eval(p, table, input)).collect();
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

/// One target being assembled: its data source and each table's physical name.
#[derive(Debug, Clone)]
struct Placed {
    ds: String,
    /// Per table: the physical name for renamed tables.
    names: Vec<Option<String>>,
    /// For a split INSERT: the rows (indexes) this target gets.
    rows: Option<Vec<usize>>,
}

struct Ctx<'a> {
    rules: &'a Rules,
    rt: &'a Routed,
}

impl<'a> Ctx<'a> {
    fn sharded(&self, table: usize) -> Result<&'a ShardedTable, RouteError> {
        match &self.rt.places[table] {
            Place::Sharded(name) => self
                .rules
                .sharded(name)
                .ok_or_else(|| RouteError::Internal(format!("sharded table {name} not in rules"))),
            _ => Err(RouteError::Internal("not a sharded table".into())),
        }
    }

    fn default_ds(&self) -> &'a str {
        &self.rules.schema.default_data_source
    }

    /// How a table is described in messages.
    fn describe(&self, t: usize) -> String {
        let name = &self.rt.names[t];
        match &self.rt.places[t] {
            Place::Sharded(_) => format!("{name} (sharded)"),
            Place::Broadcast(_) => format!("{name} (broadcast)"),
            Place::Single { data_source, .. } => format!("{name} (on {data_source})"),
            Place::Default => format!("{name} (on {})", self.default_ds()),
        }
    }

    fn mixed(&self, tables: impl IntoIterator<Item = usize>) -> RouteError {
        let mut list: Vec<String> = tables.into_iter().map(|t| self.describe(t)).collect();
        list.dedup();
        RouteError::NotSupported(format!(
            "a statement on tables that live on different data sources: {}",
            list.join(", ")
        ))
    }

    /// The physical node of a non-sharded table on data source `ds`, if it lives there.
    fn node_on(&self, t: usize, ds: &str) -> Option<Option<String>> {
        match &self.rt.places[t] {
            Place::Sharded(_) => None,
            Place::Broadcast(name) => match self.rules.table_rule(name) {
                rules::TableRoute::Broadcast(b) => b.node_on(ds).map(|n| Some(n.table.clone())),
                _ => None,
            },
            Place::Single { data_source, table } => {
                (data_source == ds).then(|| Some(table.clone()))
            }
            Place::Default => (ds == self.default_ds()).then_some(None),
        }
    }

    /// The data sources a non-sharded table lives on, in preference order.
    fn homes(&self, t: usize) -> Vec<String> {
        match &self.rt.places[t] {
            Place::Sharded(_) => Vec::new(),
            Place::Broadcast(name) => match self.rules.table_rule(name) {
                rules::TableRoute::Broadcast(b) => {
                    b.nodes().iter().map(|n| n.data_source.clone()).collect()
                }
                _ => Vec::new(),
            },
            Place::Single { data_source, .. } => vec![data_source.clone()],
            Place::Default => vec![self.default_ds().to_owned()],
        }
    }

    fn non_sharded(&self) -> Vec<usize> {
        (0..self.rt.places.len())
            .filter(|&t| !matches!(self.rt.places[t], Place::Sharded(_)))
            .collect()
    }

    /// Places the non-sharded tables on each target's data source.
    fn place_rest(
        &self,
        placed: &mut [Placed],
        sharded_tables: &[usize],
    ) -> Result<(), RouteError> {
        for t in self.non_sharded() {
            for p in placed.iter_mut() {
                match self.node_on(t, &p.ds) {
                    Some(name) => p.names[t] = name,
                    None => {
                        return Err(self.mixed(sharded_tables.iter().copied().chain([t])));
                    }
                }
            }
        }
        Ok(())
    }

    /// Node `i` of every table of a class, checked to be on one data source.
    fn place_class_node(
        &self,
        members: &[usize],
        i: usize,
        names: &mut [Option<String>],
    ) -> Result<String, RouteError> {
        let mut ds: Option<&str> = None;
        for &m in members {
            let table = self.sharded(m)?;
            let node: &PhysicalNode = table
                .node(i)
                .ok_or_else(|| self.mixed(members.iter().copied()))?;
            match ds {
                None => ds = Some(&node.data_source),
                Some(d) if d == node.data_source => {}
                Some(_) => return Err(self.mixed(members.iter().copied())),
            }
            match &names[m] {
                Some(n) if *n != node.table => {
                    return Err(RouteError::NotSupported(format!(
                        "table {} read from two different shards in one statement",
                        self.rt.names[m]
                    )))
                }
                _ => names[m] = Some(node.table.clone()),
            }
        }
        ds.map(str::to_owned)
            .ok_or_else(|| RouteError::Internal("empty key class".into()))
    }
}

/// Routes one statement from its template.
pub(crate) fn instantiate(
    rules: &Rules,
    template: &Template,
    input: &Input<'_>,
) -> Result<Plan, RouteError> {
    match template {
        Template::PassThrough(kind) => Ok(Plan::single(
            kind.clone(),
            &rules.schema.default_data_source,
            input.sql,
        )),
        Template::Set => Ok(Plan {
            kind: StatementKind::Session(SessionStatement::Set(input.sql.trim().to_owned())),
            targets: Vec::new(),
            combine: Combine::Single,
            rename: Vec::new(),
            add_tables: Vec::new(),
        }),
        Template::Fixed(plan) => Ok(plan.clone()),
        Template::Routed(rt) => routed(&Ctx { rules, rt }, input),
        Template::LogicalView(v) => crate::logical_view::instantiate(rules, v, input),
    }
}

fn routed(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Plan, RouteError> {
    let rt = ctx.rt;
    let n = rt.places.len();
    let row_ids = rt
        .fill
        .as_ref()
        .map(|f| crate::fill::assign(f, input))
        .transpose()?;
    let mut any_one = false;
    let placed: Vec<Placed> = if rt.show_tables {
        vec![Placed {
            ds: ctx.default_ds().to_owned(),
            names: vec![None; n],
            rows: None,
        }]
    } else if let Some(t) = rt.show_table {
        show_target(ctx, t)?
    } else if let Some((t, slots)) = &rt.insert_rows {
        insert_targets(ctx, *t, slots, input, row_ids.as_ref())?
    } else if rt.mode == Mode::Ddl {
        ddl_targets(ctx)?
    } else if !rt.classes.is_empty() {
        class_targets(ctx, input)?
    } else {
        let (p, one) = plain_targets(ctx)?;
        any_one = one;
        p
    };

    // Updating a sharding column: only a point update whose new key stays on its shard.
    for &(table, slot) in &rt.key_updates {
        let t = ctx.sharded(table)?;
        let err = || RouteError::ShardingKeyUpdate {
            table: rt.names[table].clone(),
            column: t.column().to_owned(),
        };
        let [only] = placed.as_slice() else {
            return Err(err());
        };
        let v = stored(t.column_type(), input.value(slot)).map_err(|_| err())?;
        let node = shard_value(&v)
            .and_then(|sv| t.shard_for(&sv).ok())
            .ok_or_else(err)?;
        if only.names[table].as_deref() != Some(node.table.as_str()) || only.ds != node.data_source
        {
            return Err(err());
        }
    }

    let mut merge: Option<(&MergeTemplate, Option<u64>)> = None;
    let combine = match (rt.mode, placed.len()) {
        (_, 0) => return Err(RouteError::Internal("no target".into())),
        (_, 1) => Combine::Single,
        (Mode::Read, _) if any_one => Combine::AnyOne,
        (Mode::Read, k) => {
            if rt.explain {
                return Err(RouteError::NotSupported(format!(
                    "EXPLAIN of a statement that runs on {k} shards (use EXPLAIN ROUTE)"
                )));
            }
            if let Some(need) = &rt.merge_need {
                return Err(RouteError::NotSupported(format!("{need} across shards")));
            }
            if rt.rows_not_sharded {
                return Err(RouteError::NotSupported(
                    "a SELECT on several shards whose rows do not each come from a sharded table \
                     (a broadcast table outside an inner join with one, or sharded tables only \
                     in subqueries or on the outer side of a LEFT JOIN): each shard would return \
                     them again"
                        .into(),
                ));
            }
            match &rt.merge {
                None => Combine::Merge(Box::default()),
                Some(Err(what)) => {
                    return Err(RouteError::NotSupported(format!("{what} across shards")))
                }
                // COM_STMT_PREPARE: the client's statement on each candidate, not the merge's
                // rewrite, so the statement prepared for the client has its parameters (those
                // in LIMIT and HAVING included, bound only at execute) and columns.
                Some(Ok(_)) if input.preparing() => Combine::Merge(Box::default()),
                Some(Ok(m)) => {
                    let (spec, limit) = merge_spec(m, input)?;
                    merge = Some((m, limit));
                    Combine::Merge(Box::new(spec))
                }
            }
        }
        (_, k) => {
            if let Some(need) = &rt.merge_need {
                let what = match rt.kind {
                    StatementKind::Insert => format!("INSERT … SELECT with {need} on {k} shards"),
                    _ => format!("{need} on {k} shards"),
                };
                return Err(RouteError::NotSupported(what));
            }
            let copies = rt.written.iter().find_map(|&t| match &rt.places[t] {
                Place::Broadcast(name) if rt.mode == Mode::Write => Some(name.clone()),
                _ => None,
            });
            copies.map_or(Combine::SumAffected, Combine::EveryCopy)
        }
    };

    let total_params = total_params(input);
    let rendered = merge.map_or(&rt.rendered, |(m, _)| &m.rendered);
    let shard_limit = merge.and_then(|(_, limit)| limit);
    let mut targets = Vec::with_capacity(placed.len());
    for p in &placed {
        let names: Vec<Option<Cow<'_, str>>> = p
            .names
            .iter()
            .map(|n| n.as_deref().map(sql::quote_ident))
            .collect();
        let mut out = String::with_capacity(input.sql.len() + 16);
        let mut used = Vec::new();
        // Head and tail hold the one row of an INSERT … SET.
        let first_row = row_ids.as_ref().map(|ids| (ids, 0));
        splice(
            &rendered.head,
            &names,
            input,
            &mut out,
            &mut used,
            shard_limit,
            first_row,
        )?;
        // Without a split, a target gets every row.
        let every_row: Vec<usize>;
        let rows = match &p.rows {
            Some(rows) => rows,
            None => {
                every_row = (0..rendered.rows.len()).collect();
                &every_row
            }
        };
        for (k, &r) in rows.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            let row = rendered
                .rows
                .get(r)
                .ok_or_else(|| RouteError::Internal("row out of range".into()))?;
            let fill = row_ids.as_ref().map(|ids| (ids, r));
            splice(row, &names, input, &mut out, &mut used, shard_limit, fill)?;
        }
        splice(
            &rendered.tail,
            &names,
            input,
            &mut out,
            &mut used,
            shard_limit,
            first_row,
        )?;
        targets.push(Target {
            data_source: p.ds.clone(),
            sql: out,
            params: params_subset(used, total_params),
        });
    }

    let mut combine = combine;
    if let (Some((m, _)), Combine::Merge(spec)) = (merge, &mut combine) {
        let first = targets.first().cloned();
        targets = union_per_data_source(targets, spec, shard_limit, total_params)?;
        if targets.len() < placed.len() {
            spec.metadata_probe = first
                .map(|t| metadata_probe(t, m, shard_limit))
                .transpose()?;
        }
    }

    let (rename, add_tables) = if rt.show_tables {
        show_tables_view(ctx)
    } else if let Some(t) = rt.show_table {
        let renamed = placed
            .first()
            .and_then(|p| p.names[t].clone())
            .filter(|phys| *phys != rt.names[t]);
        (
            renamed
                .map(|p| vec![(p, rt.names[t].clone())])
                .unwrap_or_default(),
            Vec::new(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(Plan {
        kind: rt.kind.clone(),
        targets,
        combine,
        rename,
        add_tables,
    })
}

/// The statement's `?` placeholders.
fn total_params(input: &Input<'_>) -> usize {
    input
        .fp
        .literals
        .iter()
        .filter(|l| matches!(l.kind, LiteralKind::Placeholder(_)))
        .count()
}

/// [`Target::params`] for a target whose SQL uses the parameters `used`, in order.
fn params_subset(used: Vec<usize>, total: usize) -> Option<Vec<usize>> {
    let all = used.len() == total && used.iter().enumerate().all(|(i, &k)| i == k);
    (!all).then_some(used)
}

/// A target running `rendered` (a statement without INSERT rows to split) with the
/// statement's literals and the shards' row limit.
pub(crate) fn target_of(
    data_source: &str,
    rendered: &sql::Rendered,
    input: &Input<'_>,
    shard_limit: Option<u64>,
) -> Result<Target, RouteError> {
    let mut sql = String::with_capacity(input.sql.len() + 16);
    let mut used = Vec::new();
    for segs in std::iter::once(&rendered.head)
        .chain(&rendered.rows)
        .chain(std::iter::once(&rendered.tail))
    {
        splice(segs, &[], input, &mut sql, &mut used, shard_limit, None)?;
    }
    Ok(Target {
        data_source: data_source.to_owned(),
        sql,
        params: params_subset(used, total_params(input)),
    })
}

/// Writes segments with table names, literal texts, the shards' row limit and
/// the ids of row `fill.1` filled in; records the parameter indexes of the
/// placeholders written.
fn splice(
    segs: &[Seg],
    names: &[Option<Cow<'_, str>>],
    input: &Input<'_>,
    out: &mut String,
    used: &mut Vec<usize>,
    shard_limit: Option<u64>,
    fill: Option<(&RowIds, usize)>,
) -> Result<(), RouteError> {
    for s in segs {
        match s {
            Seg::Limit => match shard_limit {
                Some(n) => out.push_str(&n.to_string()),
                None => return Err(RouteError::Internal("no shard limit".into())),
            },
            Seg::Generated => match fill {
                Some((ids, row)) => ids.write_generated(row, out, used)?,
                None => return Err(RouteError::Internal("a generated id was not filled".into())),
            },
            Seg::Text(t) => out.push_str(t),
            Seg::Slot(i) if fill.is_some_and(|(ids, _)| ids.write_slot(*i, out, used)) => {}
            Seg::Slot(i) => {
                let lit = input
                    .fp
                    .literals
                    .get(*i)
                    .ok_or_else(|| RouteError::Internal(format!("literal slot {i} missing")))?;
                match lit.kind {
                    LiteralKind::Placeholder(k) => {
                        out.push('?');
                        used.push(k);
                    }
                    _ => out.push_str(lit.text(input.sql)),
                }
            }
            Seg::Table(t) => match names.get(*t) {
                Some(Some(name)) => out.push_str(name),
                _ => {
                    return Err(RouteError::Internal(format!(
                        "no physical name for table {t}"
                    )))
                }
            },
        }
    }
    Ok(())
}

/// Targets from the key classes (every statement touching a sharded table,
/// except DDL and INSERT … VALUES).
fn class_targets(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Vec<Placed>, RouteError> {
    let rt = ctx.rt;
    let n = rt.places.len();
    let mut sets = Vec::with_capacity(rt.classes.len());
    for c in &rt.classes {
        let first = leader_of(c)?;
        let leader = ctx.sharded(first)?;
        if c.strict {
            // INSERT … SELECT with a literal key: the value must place the rows.
            let mut nodes = Vec::new();
            if let Cond::In(slots) = &c.cond {
                for &s in slots {
                    match insert_node(ctx, first, input.value(s))? {
                        Some(i) => nodes.push(i),
                        None => nodes.extend(leader.data_nodes()),
                    }
                }
            }
            nodes.sort_unstable();
            nodes.dedup();
            sets.push(nodes);
        } else {
            sets.push(eval(&c.cond, leader, input));
        }
    }
    let sharded_tables: Vec<usize> = rt
        .classes
        .iter()
        .flat_map(|c| c.tables.iter().copied())
        .collect();
    let mut placed = Vec::new();
    if let [only] = rt.classes.as_slice() {
        let mut nodes = sets.remove(0);
        if nodes.is_empty() {
            // No row can match (e.g. `uid = 1 AND uid = 2`): run once, for the
            // result's shape, on the first shard that holds data.
            nodes = ctx.sharded(leader_of(only)?)?.data_nodes();
            nodes.truncate(1);
        }
        for i in nodes {
            let mut names = vec![None; n];
            let ds = ctx.place_class_node(&only.tables, i, &mut names)?;
            placed.push(Placed {
                ds,
                names,
                rows: None,
            });
        }
    } else {
        // Several classes (subqueries, unrelated sharded tables): all must meet on one shard.
        let mut names = vec![None; n];
        let mut ds: Option<String> = None;
        let mut pending = Vec::new();
        for (c, nodes) in rt.classes.iter().zip(&sets) {
            match nodes.as_slice() {
                [i] => {
                    let d = ctx.place_class_node(&c.tables, *i, &mut names)?;
                    match &ds {
                        None => ds = Some(d),
                        Some(x) if *x == d => {}
                        Some(_) => return Err(several_shards(ctx, &sharded_tables)),
                    }
                }
                [] => pending.push(c),
                _ => return Err(several_shards(ctx, &sharded_tables)),
            }
        }
        for c in pending {
            // A class matching no row runs wherever the others run.
            let leader = ctx.sharded(leader_of(c)?)?;
            let i = match &ds {
                Some(d) => (0..leader.all_nodes().len())
                    .find(|&i| leader.node(i).is_some_and(|nd| nd.data_source == *d)),
                None => leader.data_nodes().first().copied(),
            }
            .ok_or_else(|| several_shards(ctx, &sharded_tables))?;
            let d = ctx.place_class_node(&c.tables, i, &mut names)?;
            if ds.get_or_insert_with(|| d.clone()) != &d {
                return Err(several_shards(ctx, &sharded_tables));
            }
        }
        let ds = ds.ok_or_else(|| RouteError::Internal("no data source".into()))?;
        placed.push(Placed {
            ds,
            names,
            rows: None,
        });
    }
    ctx.place_rest(&mut placed, &sharded_tables)?;
    Ok(placed)
}

/// The table whose node indexes a class uses.
fn leader_of(c: &crate::template::Class) -> Result<usize, RouteError> {
    c.tables
        .first()
        .copied()
        .ok_or_else(|| RouteError::Internal("empty key class".into()))
}

fn several_shards(ctx: &Ctx<'_>, tables: &[usize]) -> RouteError {
    let mut names: Vec<&str> = tables.iter().map(|&t| ctx.rt.names[t].as_str()).collect();
    names.dedup();
    RouteError::NotSupported(format!(
        "reading {} on different shards in one statement (a join not on the sharding column, \
         a subquery or a UNION); join bound tables on their sharding column or give each part \
         the same sharding value",
        names.join(", ")
    ))
}

/// Targets when no sharded table is involved.
fn plain_targets(ctx: &Ctx<'_>) -> Result<(Vec<Placed>, bool), RouteError> {
    let rt = ctx.rt;
    let n = rt.places.len();
    let tables = ctx.non_sharded();
    let written_broadcast: Vec<usize> = rt
        .written
        .iter()
        .copied()
        .filter(|&t| matches!(rt.places[t], Place::Broadcast(_)))
        .collect();
    // Writes to a broadcast table go to every copy; reads to the data sources all tables share.
    let candidates: Vec<String> = match written_broadcast.first() {
        Some(&t) if rt.mode != Mode::Read => ctx.homes(t),
        _ => {
            let mut c: Option<Vec<String>> = None;
            for &t in &tables {
                let homes = ctx.homes(t);
                c = Some(match c {
                    None => homes,
                    Some(prev) => prev.into_iter().filter(|d| homes.contains(d)).collect(),
                });
            }
            c.unwrap_or_else(|| vec![ctx.default_ds().to_owned()])
        }
    };
    if candidates.is_empty() {
        return Err(ctx.mixed(tables));
    }
    let any_one = rt.mode == Mode::Read && candidates.len() > 1;
    let candidates = if rt.mode == Mode::Read || !written_broadcast.is_empty() {
        candidates
    } else {
        candidates.into_iter().take(1).collect()
    };
    let mut placed: Vec<Placed> = candidates
        .into_iter()
        .map(|ds| Placed {
            ds,
            names: vec![None; n],
            rows: None,
        })
        .collect();
    ctx.place_rest(&mut placed, &[])?;
    Ok((placed, any_one))
}

/// DDL: every physical table of the first changed table; other tables named
/// (foreign keys, LIKE, further DROP targets) must be on the same nodes.
fn ddl_targets(ctx: &Ctx<'_>) -> Result<Vec<Placed>, RouteError> {
    let rt = ctx.rt;
    let n = rt.places.len();
    let Some(&leader) = rt.written.first() else {
        return Err(RouteError::Internal("DDL without a subject".into()));
    };
    let mut placed = Vec::new();
    match &rt.places[leader] {
        Place::Sharded(_) => {
            let t = ctx.sharded(leader)?;
            let others: Vec<usize> = (0..n)
                .filter(|&o| o != leader && matches!(rt.places[o], Place::Sharded(_)))
                .collect();
            for &o in &others {
                let (a, b) = (&rt.names[leader], &rt.names[o]);
                let aligned = ctx.rules.are_bound(a, b)
                    && ctx.sharded(o)?.all_nodes().len() == t.all_nodes().len();
                if !aligned {
                    return Err(RouteError::NotSupported(format!(
                        "DDL naming sharded tables {a} and {b}, which are not bound (run it per table)"
                    )));
                }
            }
            let mut members = vec![leader];
            members.extend(others.iter().copied());
            for i in 0..t.all_nodes().len() {
                let mut names = vec![None; n];
                let ds = ctx.place_class_node(&members, i, &mut names)?;
                placed.push(Placed {
                    ds,
                    names,
                    rows: None,
                });
            }
            ctx.place_rest(&mut placed, &members)?;
        }
        _ => {
            if (0..n).any(|o| matches!(rt.places[o], Place::Sharded(_))) {
                let sharded: Vec<usize> = (0..n)
                    .filter(|&o| matches!(rt.places[o], Place::Sharded(_)))
                    .collect();
                return Err(ctx.mixed([leader].into_iter().chain(sharded)));
            }
            for ds in ctx.homes(leader) {
                placed.push(Placed {
                    ds,
                    names: vec![None; n],
                    rows: None,
                });
            }
            ctx.place_rest(&mut placed, &[])?;
        }
    }
    Ok(placed)
}

/// The node an INSERT row goes to; `None` when its key is not known yet
/// (COM_STMT_PREPARE), so it may go to any node.
fn insert_node(ctx: &Ctx<'_>, table: usize, v: Val<'_>) -> Result<Option<usize>, RouteError> {
    let t = ctx.sharded(table)?;
    let err = |reason: String| RouteError::ShardingValue {
        table: ctx.rt.names[table].clone(),
        column: t.column().to_owned(),
        reason,
    };
    match v {
        Val::Null => Err(RouteError::NullShardingKey {
            table: ctx.rt.names[table].clone(),
            column: t.column().to_owned(),
        }),
        Val::Unroutable(why) => Err(err(format!("it is {why}"))),
        Val::Unbound => Ok(None),
        v => {
            let v = stored(t.column_type(), v).map_err(|why| err(format!("it is {why}")))?;
            let sv = shard_value(&v).ok_or_else(|| err("it is not a value".into()))?;
            t.shard_index(&sv).map(Some).map_err(|e| err(e.to_string()))
        }
    }
}

/// INSERT … VALUES into a sharded table: rows grouped by node, in node order.
/// A row is routed by its key slot's value or by the id filled in for it.
fn insert_targets(
    ctx: &Ctx<'_>,
    table: usize,
    slots: &[Option<usize>],
    input: &Input<'_>,
    ids: Option<&RowIds>,
) -> Result<Vec<Placed>, RouteError> {
    let n = ctx.rt.places.len();
    let mut by_node: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut anywhere = Vec::new();
    for (row, &slot) in slots.iter().enumerate() {
        let value = match (ids, slot) {
            (Some(ids), slot) => ids.key(row, slot, input),
            (None, Some(s)) => input.value(s),
            (None, None) => Val::Unbound,
        };
        match insert_node(ctx, table, value)? {
            Some(node) => by_node.entry(node).or_default().push(row),
            None => anywhere.push(row),
        }
    }
    if !anywhere.is_empty() {
        for node in ctx.sharded(table)?.data_nodes() {
            let rows = by_node.entry(node).or_default();
            rows.extend(&anywhere);
            rows.sort_unstable();
        }
    }
    // `INSERT … SET` has one row and no VALUES to split.
    let split = !ctx.rt.rendered.rows.is_empty();
    let mut placed = Vec::with_capacity(by_node.len());
    for (i, rows) in by_node {
        let mut names = vec![None; n];
        let ds = ctx.place_class_node(&[table], i, &mut names)?;
        placed.push(Placed {
            ds,
            names,
            rows: split.then_some(rows),
        });
    }
    ctx.place_rest(&mut placed, &[table])?;
    Ok(placed)
}

/// SHOW COLUMNS / CREATE TABLE / INDEX of one table: its first node.
fn show_target(ctx: &Ctx<'_>, t: usize) -> Result<Vec<Placed>, RouteError> {
    let n = ctx.rt.places.len();
    let mut names = vec![None; n];
    let ds = match &ctx.rt.places[t] {
        Place::Sharded(_) => {
            let i = crate::columns::representative_node(ctx.sharded(t)?);
            ctx.place_class_node(&[t], i, &mut names)?
        }
        _ => {
            let ds = ctx
                .homes(t)
                .into_iter()
                .next()
                .ok_or_else(|| RouteError::Internal("table without a home".into()))?;
            names[t] = ctx.node_on(t, &ds).flatten();
            ds
        }
    };
    Ok(vec![Placed {
        ds,
        names,
        rows: None,
    }])
}

/// SHOW TABLES on the default data source: physical nodes there are shown
/// under their logical names, and every table of the rules is listed.
fn show_tables_view(ctx: &Ctx<'_>) -> (Vec<(String, String)>, Vec<String>) {
    let ds = ctx.default_ds();
    let mut rename = Vec::new();
    for (logical, rule) in &ctx.rules.tables {
        let nodes: Vec<&PhysicalNode> = match rule {
            rules::TableRule::Sharded(s) => s.all_nodes().iter().collect(),
            rules::TableRule::Broadcast(b) => b.nodes().iter().collect(),
            rules::TableRule::Single(n) => vec![n],
        };
        for node in nodes {
            if node.data_source == ds && node.table != *logical {
                rename.push((node.table.clone(), logical.clone()));
            }
        }
    }
    (rename, ctx.rules.tables.keys().cloned().collect())
}

/// The merge of a statement: the shape with its literals resolved, the LIMIT
/// after merging, and the rows each shard returns (offset + count).
pub(crate) fn merge_spec(
    m: &MergeTemplate,
    input: &Input<'_>,
) -> Result<(MergeSpec, Option<u64>), RouteError> {
    let mut shape = m.shape.clone();
    if let Some(h) = &mut shape.having {
        resolve(h, input)?;
    }
    if let Some(agg) = &mut shape.aggregation {
        for (_, role) in &mut agg.roles {
            if let sql::Role::Computed(e) = role {
                resolve(e, input)?;
            }
        }
    }
    let count = |o: &Option<Operand>| -> Result<Option<u64>, RouteError> {
        let Some(o) = o else { return Ok(None) };
        let c = match o {
            Operand::Const(c) => c.clone(),
            Operand::Slot(s) => constant(*s, input)?,
        };
        match c {
            Constant::Int(i) if i >= 0 => Ok(Some(i as u64)),
            Constant::UInt(u) => Ok(Some(u)),
            other => Err(RouteError::NotSupported(format!(
                "LIMIT {other:?} (a row count must be a non-negative integer)"
            ))),
        }
    };
    let (limit, offset) = match &m.limit {
        None => (None, 0),
        Some(l) => (count(&l.count)?, count(&l.offset)?.unwrap_or(0)),
    };
    let shard_limit = limit
        .filter(|_| m.shard_limit)
        .map(|n| n.saturating_add(offset));
    Ok((
        MergeSpec {
            shape,
            offset,
            limit,
            metadata_probe: None,
        },
        shard_limit,
    ))
}

/// Replaces the slots of a merge expression by the statement's values.
fn resolve(e: &mut MergeExpr, input: &Input<'_>) -> Result<(), RouteError> {
    match e {
        MergeExpr::Column(_) => {}
        MergeExpr::Value(o) => {
            if let Operand::Slot(s) = o {
                *o = Operand::Const(constant(*s, input)?);
            }
        }
        MergeExpr::Not(x) | MergeExpr::Negate(x) | MergeExpr::IsNull(x, _) => resolve(x, input)?,
        MergeExpr::Binary(l, _, r) => {
            resolve(l, input)?;
            resolve(r, input)?;
        }
        MergeExpr::Between {
            expr, low, high, ..
        } => {
            resolve(expr, input)?;
            resolve(low, input)?;
            resolve(high, input)?;
        }
        MergeExpr::InList { expr, list, .. } => {
            resolve(expr, input)?;
            for x in list {
                resolve(x, input)?;
            }
        }
    }
    Ok(())
}

/// The value of a literal slot (or of the parameter bound to it).
fn constant(slot: usize, input: &Input<'_>) -> Result<Constant, RouteError> {
    let lit = input
        .fp
        .literals
        .get(slot)
        .ok_or_else(|| RouteError::Internal(format!("literal slot {slot} missing")))?;
    Ok(match lit.value(input.sql) {
        LiteralValue::Int(v) => Constant::Int(v),
        LiteralValue::UInt(v) => Constant::UInt(v),
        LiteralValue::Number(t) => Constant::Number(t.to_owned()),
        LiteralValue::Str(s) => Constant::Str(s.into_owned().into_bytes()),
        LiteralValue::Binary(t) => {
            return Err(RouteError::NotSupported(format!(
                "the binary literal {t} in an expression the proxy evaluates"
            )))
        }
        LiteralValue::Placeholder(k) => match input.params.get(k) {
            None => {
                return Err(RouteError::NotSupported(
                    "an unbound parameter in an expression the proxy evaluates".into(),
                ))
            }
            Some(Param::Null) => Constant::Null,
            Some(Param::Int(v)) => Constant::Int(*v),
            Some(Param::UInt(v)) => Constant::UInt(*v),
            Some(Param::Double(v)) => Constant::Number(format!("{v:e}")),
            Some(Param::Bytes(b)) => Constant::Str(b.clone()),
        },
    })
}

/// One target per data source: the parts of a merged SELECT that run on the
/// same data source (several physical tables there) become one `UNION ALL`,
/// ordered and limited like each part, so that one connection per data source
/// streams them and the server merges them.
fn union_per_data_source(
    targets: Vec<Target>,
    spec: &MergeSpec,
    shard_limit: Option<u64>,
    total_params: usize,
) -> Result<Vec<Target>, RouteError> {
    let mut groups: Vec<Vec<Target>> = Vec::new();
    for t in targets {
        match groups
            .iter_mut()
            .find(|g| g[0].data_source == t.data_source)
        {
            Some(g) => g.push(t),
            None => groups.push(vec![t]),
        }
    }
    // DISTINCT parts are deduplicated together, or a LIMIT would keep duplicates.
    let union = if spec.shape.distinct && spec.shape.aggregation.is_none() {
        " UNION "
    } else {
        " UNION ALL "
    };
    let order = spec
        .shape
        .shard_order_clause()
        .ok_or_else(|| RouteError::Internal("a sort key without a position".into()))?;
    Ok(groups
        .into_iter()
        .map(|mut parts| {
            if parts.len() == 1 {
                return parts.remove(0);
            }
            let mut sql = String::new();
            let mut params = Vec::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push_str(union);
                }
                sql.push('(');
                sql.push_str(&p.sql);
                sql.push(')');
                match &p.params {
                    Some(list) => params.extend_from_slice(list),
                    None => params.extend(0..total_params),
                }
            }
            sql.push_str(&order);
            if let Some(n) = shard_limit {
                sql.push_str(&format!(" LIMIT {n}"));
            }
            Target {
                data_source: parts[0].data_source.clone(),
                sql,
                params: params_subset(params, total_params),
            }
        })
        .collect::<Vec<_>>())
}

/// The locking clauses a rendered SELECT may end with, as sqlparser (and the share-mode
/// handling of `sql::parse`) print them.
const LOCKING_CLAUSES: [&str; 7] = [
    " LOCK IN SHARE MODE",
    " FOR UPDATE",
    " FOR UPDATE NOWAIT",
    " FOR UPDATE SKIP LOCKED",
    " FOR SHARE",
    " FOR SHARE NOWAIT",
    " FOR SHARE SKIP LOCKED",
];

/// `part` (one shard's statement) returning no rows: the same metadata, at no cost.
fn metadata_probe(
    part: Target,
    m: &MergeTemplate,
    shard_limit: Option<u64>,
) -> Result<Target, RouteError> {
    // A probe returns no rows, so it takes no locks; LIMIT may not follow a locking clause.
    let unlocked = LOCKING_CLAUSES
        .iter()
        .find_map(|lock| part.sql.strip_suffix(lock))
        .unwrap_or(&part.sql);
    let sql = match shard_limit.filter(|_| m.shard_limit) {
        // The part ends with its `LIMIT n`.
        Some(n) => {
            let limit = format!(" LIMIT {n}");
            let head = unlocked.strip_suffix(&limit).ok_or_else(|| {
                RouteError::NotSupported("a clause after LIMIT in a merged SELECT".into())
            })?;
            format!("{head} LIMIT 0")
        }
        None => format!("{unlocked} LIMIT 0"),
    };
    Ok(Target { sql, ..part })
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
