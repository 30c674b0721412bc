//! A SELECT whose rows come from several shards and are merged by the proxy.
//!
//! Built with the statement's template ([`merge_template`]): the SELECT each shard runs
//! (sql's [`Statement::select_merge`]), rendered, and the [`sql::MergeShape`] saying how the
//! proxy combines the shards' rows. Per statement ([`merge_spec`]): the shape with the
//! statement's literal values in place, its LIMIT and OFFSET, and the rows each shard
//! returns. The parts that run on one data source become one statement
//! ([`union_per_data_source`]); [`metadata_probe`] gives the result's columns when no
//! part runs alone.

use sql::{
    Analysis, Constant, Fingerprint, LiteralValue, MergeExpr, Naming, Operand, Rendered, Statement,
};

use crate::error::RouteError;
use crate::input::Input;
use crate::plan::{MergeSpec, Param, Target};
use crate::splice::params_subset;

/// The literal texts of the statement a template is built from.
pub(crate) struct Slots<'a> {
    sql: &'a str,
    fp: &'a Fingerprint,
}

impl<'a> Slots<'a> {
    pub(crate) fn new(sql: &'a str, fp: &'a Fingerprint) -> Slots<'a> {
        Slots { sql, fp }
    }

    fn text(&self, slot: usize) -> Option<&str> {
        self.fp.literals.get(slot).map(|l| l.text(self.sql))
    }

    /// The value of an integer literal slot (a column position).
    pub(crate) fn integer(&self, slot: usize) -> Option<u64> {
        let lit = self.fp.literals.get(slot)?;
        (lit.kind == sql::LiteralKind::Int)
            .then(|| lit.text(self.sql).parse().ok())
            .flatten()
    }

    /// The texts of `slots`, which a template read as column positions.
    pub(crate) fn texts(&self, slots: &[usize]) -> Vec<(usize, String)> {
        slots
            .iter()
            .map(|&s| (s, self.text(s).unwrap_or_default().to_owned()))
            .collect()
    }
}

/// A SELECT rewritten for merging ([`Statement::select_merge`]), rendered.
#[derive(Debug)]
pub(crate) struct MergeTemplate {
    pub rendered: Rendered,
    pub shape: sql::MergeShape,
    pub limit: Option<sql::LimitOperands>,
    /// Literal texts read as column positions, which the shape depends on.
    pub positions: Vec<(usize, String)>,
    /// The shards' statement limits their rows ([`sql::Seg::Limit`]).
    pub shard_limit: bool,
}

/// The merge template of a SELECT whose top level needs a merge when it spans shards; `Err`
/// names the first construct that cannot be merged.
pub(crate) fn merge_template(
    stmt: &Statement,
    a: &Analysis,
    schema: &str,
    naming: &[Naming],
    database: Option<&str>,
    slots: &Slots<'_>,
) -> Result<MergeTemplate, String> {
    let m = stmt.select_merge(&|slot| slots.integer(slot))?;
    let rendered = m
        .statement
        .render(a, schema, naming, database, false)
        .map_err(|e| e.to_string())?;
    let positions = slots.texts(&m.position_slots);
    Ok(MergeTemplate {
        rendered,
        shape: m.shape,
        limit: m.limit,
        positions,
        shard_limit: m.shard_limit,
    })
}

/// The merge of a statement: the shape with its literals resolved, the LIMIT
/// after merging, and the rows each shard returns (offset + count).
pub(crate) fn merge_spec(
    m: &MergeTemplate,
    input: &Input<'_>,
) -> Result<(MergeSpec, Option<u64>), RouteError> {
    spec_of(&m.shape, m.limit.as_ref(), m.shard_limit, input)
}

/// A merge `shape` with its literals resolved and its LIMIT and OFFSET read; also the
/// rows each shard returns (offset + count) when `shard_limit` says the shards limit them.
pub(crate) fn spec_of(
    shape: &sql::MergeShape,
    limit: Option<&sql::LimitOperands>,
    shard_limit: bool,
    input: &Input<'_>,
) -> Result<(MergeSpec, Option<u64>), RouteError> {
    let mut shape = shape.clone();
    if let Some(h) = &mut shape.having {
        resolve(h, input)?;
    }
    if let Some(agg) = &mut shape.aggregation {
        for (_, role) in &mut agg.roles {
            match role {
                sql::Role::Computed(e) => resolve(e, input)?,
                sql::Role::GroupConcat(g) => {
                    resolve_operand(&mut g.separator, input)?;
                    if let Some(l) = &mut g.limit {
                        for o in [&mut l.count, &mut l.offset].into_iter().flatten() {
                            resolve_operand(o, input)?;
                        }
                    }
                }
                _ => {}
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
    let (limit, offset) = match limit {
        None => (None, 0),
        Some(l) => (count(&l.count)?, count(&l.offset)?.unwrap_or(0)),
    };
    let shard_limit = limit
        .filter(|_| shard_limit)
        .map(|n| n.saturating_add(offset));
    Ok((
        MergeSpec {
            shape,
            offset,
            limit,
            metadata_probe: None,
            found_beyond_limit: false,
        },
        shard_limit,
    ))
}

/// Replaces the slots of a merge expression by the statement's values.
fn resolve(e: &mut MergeExpr, input: &Input<'_>) -> Result<(), RouteError> {
    match e {
        MergeExpr::Column(_) => {}
        MergeExpr::Value(o) => resolve_operand(o, input)?,
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

/// A slot replaced by the statement's value.
fn resolve_operand(o: &mut Operand, input: &Input<'_>) -> Result<(), RouteError> {
    if let Operand::Slot(s) = o {
        *o = Operand::Const(constant(*s, input)?);
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
pub(crate) fn union_per_data_source(
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
pub(crate) fn metadata_probe(
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
