//! A top-level `UNION` / `UNION ALL` cut into its branches, so that each branch can be
//! routed on its own and the proxy can run, on each data source, the union of the
//! branches' parts there (see the router's `union` module).
//!
//! [`Statement::union_split`] takes a bound statement (literals are slot markers) and
//! returns each branch as a SELECT statement of its own (a parenthesized branch keeps its
//! ORDER BY and LIMIT), whether the union removes duplicates, and the ORDER BY and LIMIT
//! of the whole as a [`MergeShape`] over the result's columns. What it cannot split
//! exactly is refused with the construct's name: INTERSECT, EXCEPT, a chain mixing
//! `UNION ALL` and `UNION DISTINCT` (MariaDB's left-to-right rule would need the
//! proxy to deduplicate part of the rows), a nested set operation, `WITH`, a locking
//! clause, and ORDER BY items other than a position or a result column's name.

use sqlparser::ast::{
    self, Expr, OrderByKind, Query, SelectItem, SetExpr, SetOperator, SetQuantifier,
};

use crate::merge_rewrite::limit_operands;
use crate::merge_shape::{Col, LimitOperands, MergeShape, SortKey};
use crate::parse::{slot_of, Statement};

/// The result of [`Statement::union_split`].
#[derive(Debug, Clone)]
pub struct UnionSplit {
    /// Each branch, a query of its own, in order.
    pub branches: Vec<Statement>,
    /// `UNION` (DISTINCT): duplicates over the whole result are removed.
    pub distinct: bool,
    /// The order and DISTINCT of the whole (no aggregation, no hidden column).
    pub shape: MergeShape,
    /// LIMIT and OFFSET of the whole.
    pub limit: Option<LimitOperands>,
    /// Slots read as column positions (`ORDER BY 2`).
    pub position_slots: Vec<usize>,
}

impl Statement {
    /// The branches of a top-level `UNION`; `None` when the statement is not a set
    /// operation, `Some(Err)` naming what cannot be split. `slot_integer` gives the value
    /// of an integer literal slot (ORDER BY positions).
    pub fn union_split(
        &self,
        slot_integer: &dyn Fn(usize) -> Option<u64>,
    ) -> Option<Result<UnionSplit, String>> {
        let ast::Statement::Query(query) = &self.ast else {
            return None;
        };
        if !matches!(query.body.as_ref(), SetExpr::SetOperation { .. }) {
            return None;
        }
        Some(self.split(query, slot_integer))
    }

    fn split(
        &self,
        query: &Query,
        slot_integer: &dyn Fn(usize) -> Option<u64>,
    ) -> Result<UnionSplit, String> {
        if query.with.is_some() {
            return Err("WITH … UNION".into());
        }
        if query.fetch.is_some() {
            return Err("FETCH".into());
        }
        if !query.locks.is_empty() || self.extras.share_mode {
            return Err("a locking clause on a UNION".into());
        }
        let mut leaves = Vec::new();
        let mut quantifier = None;
        flatten(&query.body, &mut leaves, &mut quantifier)?;
        let distinct = quantifier != Some(SetQuantifier::All);
        let first = leaves.first().copied().ok_or("an empty UNION")?;
        let mut position_slots = Vec::new();
        let order_by = match &query.order_by {
            None => Vec::new(),
            Some(o) => match &o.kind {
                OrderByKind::All(_) => return Err("ORDER BY ALL".into()),
                OrderByKind::Expressions(list) => list
                    .iter()
                    .map(|e| {
                        if e.options.nulls_first.is_some() {
                            return Err("ORDER BY … NULLS FIRST/LAST".to_string());
                        }
                        let descending = matches!(e.options.sort, Some(ast::OrderBySort::Desc));
                        if matches!(e.options.sort, Some(ast::OrderBySort::Using(_))) {
                            return Err("ORDER BY … USING".to_string());
                        }
                        let column = result_column(first, &e.expr, slot_integer)?;
                        if let Some(s) = slot_of(&e.expr) {
                            position_slots.push(s);
                        }
                        Ok(SortKey { column, descending })
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        let branches = leaves
            .into_iter()
            .map(|leaf| {
                let mut q = query.clone();
                q.body = Box::new(leaf.clone());
                q.order_by = None;
                q.limit_clause = None;
                // A parenthesized branch is a query of its own, with its ORDER BY and LIMIT.
                if let SetExpr::Query(inner) = leaf {
                    q = (**inner).clone();
                }
                Statement {
                    ast: ast::Statement::Query(Box::new(q)),
                    extras: self.extras,
                }
            })
            .collect();
        Ok(UnionSplit {
            branches,
            distinct,
            shape: MergeShape {
                order_by,
                distinct,
                ..MergeShape::default()
            },
            limit: limit_operands(query)?,
            position_slots,
        })
    }
}

/// The branches of a chain of UNIONs of one kind, left to right.
fn flatten<'q>(
    body: &'q SetExpr,
    leaves: &mut Vec<&'q SetExpr>,
    quantifier: &mut Option<SetQuantifier>,
) -> Result<(), String> {
    match body {
        SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            if *op != SetOperator::Union {
                return Err(op.to_string());
            }
            let q = match set_quantifier {
                SetQuantifier::All => SetQuantifier::All,
                SetQuantifier::Distinct | SetQuantifier::None => SetQuantifier::Distinct,
                other => return Err(format!("UNION {other}")),
            };
            if quantifier.get_or_insert(q) != &q {
                return Err("a chain mixing UNION ALL and UNION DISTINCT".into());
            }
            flatten(left, leaves, quantifier)?;
            flatten(right, leaves, quantifier)
        }
        SetExpr::Select(_) => {
            leaves.push(body);
            Ok(())
        }
        SetExpr::Query(q) => match q.body.as_ref() {
            SetExpr::Select(_) if q.with.is_none() => {
                leaves.push(body);
                Ok(())
            }
            _ => Err("a nested query expression in a UNION".into()),
        },
        _ => Err("a UNION branch that is not a SELECT".into()),
    }
}

/// The result column an ORDER BY item of the whole names: a position, or the name of one
/// column of the first branch (its alias, or the column it selects).
fn result_column(
    first: &SetExpr,
    e: &Expr,
    slot_integer: &dyn Fn(usize) -> Option<u64>,
) -> Result<Col, String> {
    if let Some(p) = slot_of(e).and_then(slot_integer) {
        return match usize::try_from(p) {
            Ok(p) if p >= 1 => Ok(Col::Item(p - 1)),
            _ => Err(format!("ORDER BY position {p} of a UNION")),
        };
    }
    let Expr::Identifier(name) = e else {
        return Err(format!(
            "ORDER BY {e} over a UNION (only positions and result column names)"
        ));
    };
    let select = match first {
        SetExpr::Select(s) => s,
        SetExpr::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) => s,
            _ => return Err("a nested query expression in a UNION".into()),
        },
        _ => return Err("a UNION branch that is not a SELECT".into()),
    };
    let mut found = None;
    for (i, item) in select.projection.iter().enumerate() {
        let named = match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias),
            SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(id),
            SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids.last(),
            SelectItem::UnnamedExpr(_) => None,
            // Which names a wildcard stands for is not known here.
            _ => {
                return Err(format!(
                    "ORDER BY {name} over a UNION whose first SELECT has *"
                ))
            }
        };
        if named.is_some_and(|n| n.value.eq_ignore_ascii_case(&name.value)) {
            if found.is_some() {
                return Err(format!("ORDER BY {name} naming two columns of a UNION"));
            }
            found = Some(i);
        }
    }
    found
        .map(Col::Item)
        .ok_or_else(|| format!("ORDER BY {name} over a UNION (not a result column name)"))
}

#[cfg(test)]
mod tests {
    use crate::{fingerprint, parse};

    fn split(sql: &str) -> Result<(Vec<String>, bool, String), String> {
        let fp = fingerprint(sql);
        let mut stmt = parse(sql).unwrap().remove(0);
        stmt.bind_slots(sql, &fp);
        let integer = |slot: usize| fp.literals.get(slot)?.text(sql).parse().ok();
        let s = stmt.union_split(&integer).expect("a union")?;
        let branches = s.branches.iter().map(|b| b.ast().to_string()).collect();
        let keys = s
            .shape
            .order_by
            .iter()
            .map(|k| format!("{}{}", k.column, if k.descending { " desc" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ");
        Ok((branches, s.distinct, keys))
    }

    #[test]
    fn branches_and_order_of_the_whole() {
        let (b, distinct, keys) = split(
            "SELECT a, b AS x FROM t UNION SELECT c, d FROM u UNION SELECT 1, 2 ORDER BY x DESC, 1",
        )
        .unwrap();
        assert_eq!(b.len(), 3);
        assert!(b[0].starts_with("SELECT a, b AS x FROM t"), "{}", b[0]);
        assert!(!b[0].contains("ORDER"), "{}", b[0]);
        assert!(distinct);
        assert_eq!(keys, "col 2 desc, col 1");
        let (b, distinct, _) =
            split("(SELECT a FROM t ORDER BY a LIMIT 3) UNION ALL SELECT a FROM u").unwrap();
        assert!(!distinct);
        assert!(b[0].contains("LIMIT"), "{}", b[0]);
    }

    #[test]
    fn what_is_refused() {
        for (sql, what) in [
            ("SELECT a FROM t INTERSECT SELECT a FROM u", "INTERSECT"),
            ("SELECT a FROM t EXCEPT SELECT a FROM u", "EXCEPT"),
            (
                "SELECT a FROM t UNION ALL SELECT a FROM u UNION SELECT a FROM v",
                "mixing",
            ),
            (
                "SELECT a FROM t UNION SELECT a FROM u ORDER BY a + 1",
                "ORDER BY",
            ),
            ("SELECT * FROM t UNION SELECT a FROM u ORDER BY a", "*"),
            (
                "SELECT a FROM t UNION SELECT a FROM u ORDER BY zz",
                "not a result column",
            ),
        ] {
            let err = split(sql).unwrap_err();
            assert!(err.contains(what), "{sql}: {err}");
        }
        assert!(parse("SELECT a FROM t").unwrap()[0]
            .union_split(&|_| None)
            .is_none());
    }
}
