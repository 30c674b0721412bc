//! The physical statement of one target: a rendered template's segments with the
//! target's physical table names, the statement's literal texts (or `?` for its
//! parameters), the shards' row limit and the ids a sequence fills in, and which of the
//! statement's parameters the text uses.

use std::borrow::Cow;

use sql::{LiteralKind, Seg};

use crate::error::RouteError;
use crate::input::Input;
use crate::plan::{Param, Target};
use crate::sequence_ids::RowIds;

/// [`Target::params`] for a target whose SQL uses the parameters `used`, in order.
pub(crate) fn params_subset(used: Vec<usize>, total: usize) -> Option<Vec<usize>> {
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
        params: params_subset(used, input.placeholders()),
    })
}

/// Writes segments with table names, literal texts, the shards' row limit and
/// the ids of row `fill.1` filled in; records the parameter indexes of the
/// placeholders written.
pub(crate) fn splice(
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
            Seg::SlotInName(i) => {
                out.push_str(&literal(input, *i)?.text(input.sql).replace('`', "``"));
            }
            Seg::Slot(i) if fill.is_some_and(|(ids, _)| ids.write_slot(*i, out, used)) => {}
            Seg::Slot(i) => {
                let lit = literal(input, *i)?;
                match lit.kind {
                    LiteralKind::Placeholder(k) if input.inline_params => {
                        param_literal(input.params.get(k), out)?
                    }
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

/// The statement's literal in slot `i`.
fn literal<'i>(input: &'i Input<'_>, i: usize) -> Result<&'i sql::Literal, RouteError> {
    input
        .fp
        .literals
        .get(i)
        .ok_or_else(|| RouteError::Internal(format!("literal slot {i} missing")))
}

/// A bound parameter as an SQL literal that MariaDB reads as the same value: numbers as
/// written (a double with an exponent, so it stays a double), text as a hex string with its
/// character set: UTF-8 as `utf8mb4` (parameters are read as UTF-8, as for sharding values),
/// other bytes as `binary`. No quoting, so no escaping and no `sql_mode` matters.
fn param_literal(param: Option<&Param>, out: &mut String) -> Result<(), RouteError> {
    use std::fmt::Write;
    match param {
        None => return Err(RouteError::Internal("a parameter is not bound".into())),
        Some(Param::Null) => out.push_str("NULL"),
        Some(Param::Int(v)) => out.push_str(&v.to_string()),
        Some(Param::UInt(v)) => out.push_str(&v.to_string()),
        Some(Param::Double(v)) if v.is_finite() => out.push_str(&format!("{v:e}")),
        Some(Param::Double(v)) => {
            return Err(RouteError::NotSupported(format!("the parameter value {v}")))
        }
        Some(Param::Bytes(b)) => {
            let charset = match std::str::from_utf8(b) {
                Ok(_) => "utf8mb4",
                Err(_) => "binary",
            };
            out.push('_');
            out.push_str(charset);
            out.push_str(" X'");
            for byte in b {
                let _ = write!(out, "{byte:02X}");
            }
            out.push('\'');
        }
    }
    Ok(())
}
