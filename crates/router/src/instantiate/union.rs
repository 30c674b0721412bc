//! A top-level `UNION [ALL]` whose branches do not all run on one data source.
//!
//! Each branch is routed on its own, as a SELECT of its own (a branch that would need a
//! merge of its own across shards is refused). Every data source that holds a branch's rows
//! then runs one statement: the union of **every** branch, with its parts there (several
//! physical tables of a data source are several parts) and, for a branch with no rows
//! there, a part returning no rows (`((…) LIMIT 0)`) — so that each data source's result has
//! the column types, conversions and metadata MariaDB gives the whole union (INT and
//! DECIMAL branches give DECIMAL values). A branch whose rows any data source can give (no
//! table, or broadcast tables only) gets its rows from the first data source. The proxy
//! merges the data sources' results: concatenated for `UNION ALL`, deduplicated once more
//! for `UNION` (each data source deduplicates its own rows), sorted by the ORDER BY of the
//! whole, then limited. A branch that cannot get a part on one of these data sources (a
//! single table elsewhere) makes the union a clean 1235.

use rules::Rules;

use super::{leader_of, physical_target, whole, Ctx, Placed};
use crate::error::RouteError;
use crate::input::Input;
use crate::merged_select::spec_of;
use crate::placement::Place;
use crate::plan::{Combine, MergeSpec, Plan, StatementKind, Target};
use crate::template::{Routed, UnionTemplate};

/// The plan of a union routed branch by branch.
pub(super) fn plan(
    rules: &Rules,
    u: &UnionTemplate,
    input: &Input<'_>,
) -> Result<Plan, RouteError> {
    // COM_STMT_PREPARE shows the client its own statement's columns: no tag column.
    let branches = match (&u.untagged, input.preparing()) {
        (Some(untagged), true) => untagged,
        _ => &u.branches,
    };
    // Per branch, the parts holding its rows; `None`: any data source gives them.
    let mut own: Vec<Option<Vec<Target>>> = Vec::with_capacity(branches.len());
    for (n, rt) in branches.iter().enumerate() {
        let ctx = Ctx { rules, rt };
        if rt.places.iter().all(|p| matches!(p, Place::Broadcast(_))) {
            own.push(None);
            continue;
        }
        let branch = whole(&ctx, input)?;
        match &branch.combine {
            Combine::Single => {}
            Combine::Merge(spec) if spec.is_concat() => {}
            _ => {
                return Err(RouteError::NotSupported(format!(
                    "a UNION whose SELECT {} needs a merge of its own across shards (its \
                     aggregates, GROUP BY, DISTINCT, ORDER BY or LIMIT)",
                    n + 1
                )))
            }
        }
        own.push(Some(branch.targets));
    }
    let mut sources: Vec<String> = Vec::new();
    for t in own.iter().flatten().flatten() {
        if !sources.contains(&t.data_source) {
            sources.push(t.data_source.clone());
        }
    }
    let first = sources
        .first()
        .cloned()
        .unwrap_or_else(|| rules.schema.default_data_source.clone());
    let total = input.placeholders();
    // INTERSECT and EXCEPT: every branch's rows, tagged, for the proxy to count.
    let join = if u.shape.distinct {
        " UNION "
    } else {
        " UNION ALL "
    };
    let prepared_join = format!(" {} ", u.keyword);
    let order = u
        .shape
        .shard_order_clause()
        .ok_or_else(|| RouteError::Internal("a UNION sort key without a position".into()))?;

    if input.preparing() {
        // The client's statement on one data source, one part per branch: its parameters
        // and columns; each execution is routed with its values.
        let mut parts = Vec::with_capacity(own.len());
        for (n, (rt, targets)) in branches.iter().zip(&own).enumerate() {
            let mine = targets
                .iter()
                .flatten()
                .find(|t| t.data_source == first)
                .cloned();
            let part = match mine {
                Some(t) => t,
                None => part_on(rules, rt, &first, input, n)?,
            };
            parts.push((part, false));
        }
        let mut target = compose(&first, &parts, &prepared_join, total);
        if !u.shape.order_by.is_empty() {
            let keys: Vec<String> = u
                .shape
                .order_by
                .iter()
                .map(|k| {
                    let desc = if k.descending { " DESC" } else { "" };
                    format!("{}{desc}", k.column.index(0) + 1)
                })
                .collect();
            target
                .sql
                .push_str(&format!(" ORDER BY {}", keys.join(", ")));
        }
        if let Some(l) = &u.limit {
            let text = |o: &sql::Operand| match o {
                sql::Operand::Slot(s) => input
                    .fp
                    .literals
                    .get(*s)
                    .map(|l| l.text(input.sql).to_owned())
                    .unwrap_or_default(),
                sql::Operand::Const(sql::Constant::Int(i)) => i.to_string(),
                sql::Operand::Const(sql::Constant::UInt(u)) => u.to_string(),
                sql::Operand::Const(_) => String::new(),
            };
            if let Some(c) = &l.count {
                target.sql.push_str(&format!(" LIMIT {}", text(c)));
            }
            if let Some(o) = &l.offset {
                target.sql.push_str(&format!(" OFFSET {}", text(o)));
            }
            // Parameters only bind at execution, which routes again.
            target.params = None;
        }
        return Ok(select(vec![target], MergeSpec::concat()));
    }

    // FOUND_ROWS() after a limited set operation counts its whole result (MariaDB's rule):
    // the data sources are not limited, and the merge counts the rows past the LIMIT (an
    // INTERSECT or EXCEPT reads every row anyway).
    let (mut spec, _) = spec_of(&u.shape, u.limit.as_ref(), false, input)?;
    spec.found_beyond_limit = spec.limit.is_some() && u.shape.set_op.is_none();
    let mut targets = Vec::with_capacity(sources.len().max(1));
    for ds in if sources.is_empty() {
        std::slice::from_ref(&first)
    } else {
        sources.as_slice()
    } {
        let mut parts = Vec::new();
        for (n, (rt, targets)) in branches.iter().zip(&own).enumerate() {
            match targets {
                Some(list) => {
                    let before = parts.len();
                    parts.extend(
                        list.iter()
                            .filter(|t| t.data_source == *ds)
                            .map(|t| (t.clone(), false)),
                    );
                    if parts.len() == before {
                        parts.push((part_on(rules, rt, ds, input, n)?, true));
                    }
                }
                None => parts.push((part_on(rules, rt, ds, input, n)?, *ds != first)),
            }
        }
        let mut target = compose(ds, &parts, join, total);
        target.sql.push_str(&order);
        targets.push(target);
    }
    Ok(select(targets, spec))
}

/// A merged SELECT over `targets`.
fn select(targets: Vec<Target>, spec: MergeSpec) -> Plan {
    Plan {
        kind: StatementKind::Select,
        targets,
        combine: Combine::Merge(Box::new(spec)),
        rename: Vec::new(),
        add_tables: Vec::new(),
    }
}

/// The union of `parts` on data source `ds`, each in parentheses (an empty one, `true`,
/// limited to no row), with the parameters they use in order.
fn compose(ds: &str, parts: &[(Target, bool)], join: &str, total: usize) -> Target {
    let mut sql = String::new();
    let mut params = Vec::new();
    for (i, (p, empty)) in parts.iter().enumerate() {
        if i > 0 {
            sql.push_str(join);
        }
        if *empty {
            sql.push_str(&format!("(({}) LIMIT 0)", p.sql));
        } else {
            sql.push_str(&format!("({})", p.sql));
        }
        match &p.params {
            Some(list) => params.extend_from_slice(list),
            None => params.extend(0..total),
        }
    }
    Target {
        data_source: ds.to_owned(),
        sql,
        params: crate::splice::params_subset(params, total),
    }
}

/// Branch `n` (0-based) on data source `ds`, on the first physical table of each of its
/// tables there.
fn part_on(
    rules: &Rules,
    rt: &Routed,
    ds: &str,
    input: &Input<'_>,
    n: usize,
) -> Result<Target, RouteError> {
    let ctx = Ctx { rules, rt };
    let elsewhere = || {
        RouteError::NotSupported(format!(
            "a UNION on several shards whose SELECT {} has no table on data source {ds} (each \
             data source runs every SELECT of the union, for the result types MariaDB gives it)",
            n + 1
        ))
    };
    let mut names = vec![None; rt.places.len()];
    for c in &rt.classes {
        let leader = ctx.sharded(leader_of(c)?)?;
        let i = (0..leader.all_nodes().len())
            .find(|&i| leader.node(i).is_some_and(|nd| nd.data_source == ds))
            .ok_or_else(elsewhere)?;
        ctx.place_class_node(&c.tables, i, &mut names)
            .map_err(|_| elsewhere())?;
    }
    let mut placed = [Placed {
        ds: ds.to_owned(),
        names,
        rows: None,
    }];
    ctx.place_rest(&mut placed, &[]).map_err(|_| elsewhere())?;
    physical_target(&placed[0], &rt.rendered, input, None, None)
}
