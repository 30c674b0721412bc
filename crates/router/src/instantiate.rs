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

use rules::{PhysicalNode, Rules, ShardedTable};
use sql::Cond;

use crate::error::RouteError;
use crate::input::{Input, Val};
use crate::key_nodes::{matching_nodes, shard_value};
use crate::merged_select::{merge_spec, metadata_probe, union_per_data_source, MergeTemplate};
use crate::placement::Place;
use crate::plan::{Combine, MoveFrom, Plan, RowMove, SessionStatement, StatementKind, Target};
use crate::sequence_ids::RowIds;
use crate::splice::{params_subset, splice};
use crate::stored::stored;
use crate::template::{Class, Mode, Routed, Template};

mod union;

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
        Template::Set => Ok(Plan::session(SessionStatement::Set(
            input.sql.trim().to_owned(),
        ))),
        Template::Fixed(plan) => Ok(plan.clone()),
        Template::Routed(rt) => routed(&Ctx { rules, rt }, input),
        Template::LogicalView(v) => crate::logical_view::instantiate(rules, v, input),
    }
}

/// Routes a statement by the rules; a UNION that does not run whole on one data source
/// is routed branch by branch ([`union`]).
fn routed(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Plan, RouteError> {
    match (whole(ctx, input), &ctx.rt.union) {
        (Err(RouteError::NotSupported(_)), Some(Ok(u))) => union::plan(ctx.rules, u, input),
        (Err(RouteError::NotSupported(_)), Some(Err(what))) => Err(RouteError::NotSupported(
            format!("{what} on several shards"),
        )),
        (plan, _) => plan,
    }
}

/// Routes a statement as a whole by the rules: where its tables are placed, how results
/// combine, and each target's physical statement.
fn whole(ctx: &Ctx<'_>, input: &Input<'_>) -> Result<Plan, RouteError> {
    let rt = ctx.rt;
    let row_ids = rt
        .fill
        .as_ref()
        .map(|f| crate::sequence_ids::assign(f, input))
        .transpose()?;
    let (placed, any_one) = placements(ctx, input, row_ids.as_ref())?;
    if let Some((table, node)) = key_move(ctx, &placed, input)? {
        return row_move(ctx, input, &placed, table, node);
    }
    let (mut combine, merge) = combine(ctx, input, placed.len(), any_one)?;
    let rendered = merge.map_or(&rt.rendered, |m| &m.template.rendered);
    let shard_limit = merge.and_then(|m| m.shard_limit);
    let mut targets = Vec::with_capacity(placed.len());
    for p in &placed {
        targets.push(physical_target(
            p,
            rendered,
            input,
            shard_limit,
            row_ids.as_ref(),
        )?);
    }
    if let (Some(merged), Combine::Merge(spec)) = (merge, &mut combine) {
        let first = targets.first().cloned();
        targets = union_per_data_source(targets, spec, shard_limit, input.placeholders())?;
        if targets.len() < placed.len() {
            spec.metadata_probe = first
                .map(|t| metadata_probe(t, merged.template, shard_limit))
                .transpose()?;
        }
    }
    let (rename, add_tables) = shown_names(ctx, &placed);
    Ok(Plan {
        kind: rt.kind.clone(),
        targets,
        combine,
        rename,
        add_tables,
    })
}

/// Where the statement runs, by its kind; also whether a read may run on any
/// one of them (tables with copies on each).
fn placements(
    ctx: &Ctx<'_>,
    input: &Input<'_>,
    row_ids: Option<&RowIds>,
) -> Result<(Vec<Placed>, bool), RouteError> {
    let rt = ctx.rt;
    let placed = if rt.show_tables {
        vec![Placed {
            ds: ctx.default_ds().to_owned(),
            names: vec![None; rt.places.len()],
            rows: None,
        }]
    } else if let Some(t) = rt.show_table {
        show_target(ctx, t)?
    } else if let Some(rows) = &rt.insert_rows {
        insert_targets(ctx, rows.table, &rows.key_slots, input, row_ids)?
    } else if rt.mode == Mode::Ddl {
        ddl_targets(ctx)?
    } else if !rt.classes.is_empty() {
        class_targets(ctx, input)?
    } else {
        return plain_targets(ctx);
    };
    Ok((placed, false))
}

/// Updating a sharding column: a point update whose new key stays on its shard runs as it
/// is (`None`); otherwise the rows move to the new key's node, returned with the table,
/// when the statement can move them, or it is refused.
fn key_move<'r>(
    ctx: &Ctx<'r>,
    placed: &[Placed],
    input: &Input<'_>,
) -> Result<Option<(usize, &'r PhysicalNode)>, RouteError> {
    let rt = ctx.rt;
    // COM_STMT_PREPARE: the new key is not bound yet; each execution is routed with it.
    if input.preparing() && matches!(rt.row_move, Some(Ok(_))) {
        return Ok(None);
    }
    let mut moving = None;
    for &(table, slot) in &rt.key_updates {
        let t = ctx.sharded(table)?;
        let err = || RouteError::ShardingKeyUpdate {
            table: rt.names[table].clone(),
            column: t.column().to_owned(),
        };
        let v = stored(t.column_type(), input.value(slot)).map_err(|_| err())?;
        let node = shard_value(&v)
            .and_then(|sv| t.shard_for(&sv).ok())
            .ok_or_else(err)?;
        let stays = matches!(placed, [only] if only.names[table].as_deref() == Some(node.table.as_str())
            && only.ds == node.data_source);
        if stays {
            continue;
        }
        match &rt.row_move {
            Some(Ok(_)) if rt.key_updates.len() == 1 => moving = Some((table, node)),
            Some(Err(what)) => {
                return Err(RouteError::NotSupported(format!(
                    "moving rows of {} to another shard (updating its sharding column {}) \
                     with {what}",
                    rt.names[table],
                    t.column()
                )))
            }
            _ => return Err(err()),
        }
    }
    Ok(moving)
}

/// The plan moving the rows an UPDATE changes to `node` (table `table`'s node of the new
/// key), see [`RowMove`]. Its statements carry the parameters as literals.
fn row_move(
    ctx: &Ctx<'_>,
    input: &Input<'_>,
    placed: &[Placed],
    table: usize,
    node: &PhysicalNode,
) -> Result<Plan, RouteError> {
    let rt = ctx.rt;
    let Some(Ok(m)) = &rt.row_move else {
        return Err(RouteError::Internal("no row move".into()));
    };
    let input = Input {
        inline_params: true,
        ..*input
    };
    // Text: no parameter left to bind.
    let text = |p: &Placed, rendered: &sql::Rendered| {
        physical_target(p, rendered, &input, None, None).map(|t| Target { params: None, ..t })
    };
    let mut in_place = None;
    let mut from = Vec::with_capacity(placed.len());
    for p in placed {
        if p.ds == node.data_source && p.names[table].as_deref() == Some(node.table.as_str()) {
            in_place = Some(text(p, &rt.rendered)?);
        } else {
            from.push(MoveFrom {
                select: text(p, &m.select)?,
                delete: text(p, &m.delete)?,
            });
        }
    }
    let mut set = Vec::with_capacity(m.set.len());
    for (column, segs) in &m.set {
        let mut value = String::new();
        splice(segs, &[], &input, &mut value, &mut Vec::new(), None, None)?;
        set.push((column.clone(), value));
    }
    let targets = in_place
        .iter()
        .cloned()
        .chain(
            from.iter()
                .flat_map(|f| [f.select.clone(), f.delete.clone()]),
        )
        .collect();
    Ok(Plan {
        kind: rt.kind.clone(),
        targets,
        combine: Combine::MoveRows(Box::new(RowMove {
            table: rt.names[table].clone(),
            column: ctx.sharded(table)?.column().to_owned(),
            to: node.data_source.clone(),
            to_table: sql::quote_ident(&node.table).into_owned(),
            in_place,
            from,
            set,
        })),
        rename: Vec::new(),
        add_tables: Vec::new(),
    })
}

/// A SELECT merged across shards: its merge template and the rows each shard returns.
#[derive(Clone, Copy)]
struct Merged<'t> {
    template: &'t MergeTemplate,
    shard_limit: Option<u64>,
}

/// How the results of `targets` targets combine, or why they cannot; for a
/// merged SELECT also how it merges.
fn combine<'t>(
    ctx: &Ctx<'t>,
    input: &Input<'_>,
    targets: usize,
    any_one: bool,
) -> Result<(Combine, Option<Merged<'t>>), RouteError> {
    let rt = ctx.rt;
    let combine = match (rt.mode, targets) {
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
                    let merged = Merged {
                        template: m,
                        shard_limit: limit,
                    };
                    return Ok((Combine::Merge(Box::new(spec)), Some(merged)));
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
    Ok((combine, None))
}

/// The statement one placement runs: `rendered` with its physical table names,
/// the statement's literals, the shards' row limit, and its rows of a split
/// INSERT with their ids.
fn physical_target(
    p: &Placed,
    rendered: &sql::Rendered,
    input: &Input<'_>,
    shard_limit: Option<u64>,
    row_ids: Option<&RowIds>,
) -> Result<Target, RouteError> {
    let names: Vec<Option<Cow<'_, str>>> = p
        .names
        .iter()
        .map(|n| n.as_deref().map(sql::quote_ident))
        .collect();
    let mut out = String::with_capacity(input.sql.len() + 16);
    let mut used = Vec::new();
    // Head and tail hold the one row of an INSERT … SET.
    let first_row = row_ids.map(|ids| (ids, 0));
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
        let fill = row_ids.map(|ids| (ids, r));
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
    Ok(Target {
        data_source: p.ds.clone(),
        sql: out,
        params: params_subset(used, input.placeholders()),
    })
}

/// For SHOW: the (physical, logical) names the result shows under their
/// logical name, and the logical tables SHOW TABLES lists.
fn shown_names(ctx: &Ctx<'_>, placed: &[Placed]) -> (Vec<(String, String)>, Vec<String>) {
    let rt = ctx.rt;
    if rt.show_tables {
        return show_tables_view(ctx);
    }
    let Some(t) = rt.show_table else {
        return (Vec::new(), Vec::new());
    };
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
            sets.push(matching_nodes(&c.cond, leader, input));
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
fn leader_of(c: &Class) -> Result<usize, RouteError> {
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
        for node in rule.physical_tables() {
            if node.data_source == ds && node.table != *logical {
                rename.push((node.table.clone(), logical.clone()));
            }
        }
    }
    (rename, ctx.rules.tables.keys().cloned().collect())
}
