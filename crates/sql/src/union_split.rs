//! A top-level `UNION`, `INTERSECT` or `EXCEPT` chain cut into its branches, so that each
//! branch can be routed on its own and the proxy can run, on each data source, the union
//! of the branches' parts there (see the router's `union` module).
//!
//! [`Statement::union_split`] takes a bound statement (literals are slot markers) and
//! returns each branch as a SELECT statement of its own (a parenthesized branch keeps its
//! ORDER BY and LIMIT), and the ORDER BY, LIMIT and DISTINCT of the whole as a
//! [`MergeShape`] over the result's columns. For INTERSECT and EXCEPT each branch also
//! returns its index as a hidden trailing column ([`SetOp::TAG`]): the data sources return
//! every branch's rows, and the proxy counts each row per branch. What it cannot split
//! exactly is refused with the construct's name: a chain mixing operators or `ALL` and
//! `DISTINCT` (MariaDB's precedence and left-to-right rules would need part of the rows
//! combined first), a nested set operation, `WITH`, a locking clause, and ORDER BY items
//! other than a position or a result column's name.

use sqlparser::ast::{
    self, Expr, OrderByKind, Query, SelectItem, SetExpr, SetOperator, SetQuantifier,
};

use crate::merge_rewrite::limit_operands;
use crate::merge_shape::{Col, LimitOperands, MergeShape, SetOp, SortKey, HIDDEN_PREFIX};
use crate::parse::{slot_of, Statement};

/// The result of [`Statement::union_split`].
#[derive(Debug, Clone)]
pub struct UnionSplit {
    /// Each branch, a query of its own, in order (with its [`SetOp::TAG`] column for
    /// INTERSECT and EXCEPT).
    pub branches: Vec<Statement>,
    /// For INTERSECT and EXCEPT: the branches as written, without the tag column.
    pub untagged: Option<Vec<Statement>>,
    /// The order, DISTINCT (a `UNION`) or set operation of the whole.
    pub shape: MergeShape,
    /// How the branches are joined where one server combines them: `UNION`, `UNION ALL`,
    /// `INTERSECT`, `EXCEPT ALL`, …
    pub keyword: String,
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
        let mut chain = None;
        flatten(&query.body, &mut leaves, &mut chain)?;
        let (op, quantifier) = chain.ok_or("an empty set operation")?;
        let all = quantifier == SetQuantifier::All;
        let set_op = (op != SetOperator::Union).then_some(SetOp {
            except: op == SetOperator::Except,
            all,
            branches: leaves.len(),
        });
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
        let untagged: Vec<Statement> = leaves
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
        let (branches, untagged) = match set_op {
            None => (untagged, None),
            Some(_) => {
                let mut tagged = untagged.clone();
                for (i, b) in tagged.iter_mut().enumerate() {
                    tag(b, i)?;
                }
                (tagged, Some(untagged))
            }
        };
        let keyword = format!("{op}{}", if all { " ALL" } else { "" });
        Ok(UnionSplit {
            branches,
            untagged,
            shape: MergeShape {
                order_by,
                distinct: set_op.is_none() && !all,
                hidden: usize::from(set_op.is_some()),
                set_op,
                ..MergeShape::default()
            },
            keyword,
            limit: limit_operands(query)?,
            position_slots,
        })
    }
}

/// Appends the branch index `i` as the hidden column [`SetOp::TAG`] to a branch's select list.
fn tag(branch: &mut Statement, i: usize) -> Result<(), String> {
    let ast::Statement::Query(q) = &mut branch.ast else {
        return Err("a set operation branch that is not a query".into());
    };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return Err("a set operation branch that is not a SELECT".into());
    };
    select.projection.push(SelectItem::ExprWithAlias {
        expr: Expr::value(ast::Value::Number(i.to_string(), false)),
        alias: ast::Ident::new(format!("{HIDDEN_PREFIX}0")),
    });
    Ok(())
}

/// The branches of a chain of one set operator and quantifier, left to right.
fn flatten<'q>(
    body: &'q SetExpr,
    leaves: &mut Vec<&'q SetExpr>,
    chain: &mut Option<(SetOperator, SetQuantifier)>,
) -> Result<(), String> {
    match body {
        SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            if !matches!(
                op,
                SetOperator::Union | SetOperator::Intersect | SetOperator::Except
            ) {
                return Err(op.to_string());
            }
            let q = match set_quantifier {
                SetQuantifier::All => SetQuantifier::All,
                SetQuantifier::Distinct | SetQuantifier::None => SetQuantifier::Distinct,
                other => return Err(format!("{op} {other}")),
            };
            let (first_op, first_q) = *chain.get_or_insert((*op, q));
            if first_op != *op {
                return Err(format!("a chain mixing {first_op} and {op}"));
            }
            if first_q != q {
                return Err(format!("a chain mixing {op} ALL and {op} DISTINCT"));
            }
            flatten(left, leaves, chain)?;
            flatten(right, leaves, chain)
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
        let distinct = s.shape.distinct;
        let keys = s
            .shape
            .order_by
            .iter()
            .map(|k| format!("{}{}", k.column, if k.descending { " desc" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ");
        Ok((branches, distinct, keys))
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
    fn intersect_and_except_tag_their_branches() {
        let (b, distinct, keys) = split(
            "SELECT a FROM t EXCEPT ALL SELECT b FROM u EXCEPT ALL SELECT c FROM v ORDER BY 1",
        )
        .unwrap();
        assert!(!distinct);
        assert_eq!(keys, "col 1");
        assert!(
            b[0].starts_with("SELECT a, 0 AS __dbmesh_0 FROM t"),
            "{}",
            b[0]
        );
        assert!(
            b[2].starts_with("SELECT c, 2 AS __dbmesh_0 FROM v"),
            "{}",
            b[2]
        );
        let sql = "SELECT a FROM t INTERSECT SELECT a FROM u";
        let mut stmt = parse(sql).unwrap().remove(0);
        stmt.bind_slots(sql, &fingerprint(sql));
        let s = stmt.union_split(&|_| None).unwrap().unwrap();
        assert_eq!(s.keyword, "INTERSECT");
        assert_eq!(s.shape.hidden, 1);
        let op = s.shape.set_op.unwrap();
        assert_eq!(op.occurrences(&[2, 3]), 1);
        assert_eq!(op.occurrences(&[2, 0]), 0);
        assert_eq!(s.untagged.unwrap()[1].ast().to_string(), "SELECT a FROM u");
    }

    #[test]
    fn what_is_refused() {
        for (sql, what) in [
            (
                "SELECT a FROM t INTERSECT SELECT a FROM u UNION SELECT a FROM v",
                "mixing",
            ),
            (
                "SELECT a FROM t EXCEPT SELECT a FROM u EXCEPT ALL SELECT a FROM v",
                "mixing",
            ),
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
