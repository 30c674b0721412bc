//! Rewriting a top-level SELECT so that its per-shard results can be merged
//! into the answer one database would give.
//!
//! [`Statement::select_merge`] takes a bound statement (literals are slot
//! markers) and returns the statement each shard runs plus a [`MergeShape`]:
//! which result columns are sort keys, group keys and aggregates, and how the
//! proxy combines them. The rules, by construct:
//! - ORDER BY: shards sort (the clause is kept); keys not in the select list
//!   become hidden trailing columns; the proxy k-way merges.
//! - LIMIT n OFFSET m: shards get `LIMIT m+n` ([`crate::Seg::Limit`]); the
//!   proxy skips and takes after merging.
//! - Aggregates and GROUP BY: shards group as written (no HAVING, ORDER BY,
//!   LIMIT or DISTINCT); the proxy combines partial groups. COUNT and SUM
//!   add up, MIN/MAX compare, BIT_AND/BIT_OR/BIT_XOR fold bit by bit; AVG keeps its own column (for its metadata) and
//!   adds hidden SUM and COUNT; COUNT/SUM/AVG(DISTINCT x) add `x` to the
//!   shards' GROUP BY and count or add the distinct values; expressions over
//!   aggregates (`SUM(a) / COUNT(*)`) and HAVING are evaluated by the proxy.
//! - DISTINCT: shards deduplicate, the proxy again (after aggregation, if any).
//! - Keys name select items as MariaDB resolves them: an alias, the same expression, or the
//!   same column (`uid` is `payment.uid`); a position may fall into a wildcard. A hidden
//!   sort key under DISTINCT must be a value the select list determines (one of its items,
//!   or a column of its `*` / `t.*`).
//!
//! Anything else is refused with the construct's name (the router turns that
//! into error 1235), never merged approximately.

use sqlparser::ast::{
    self, BinaryOperator, DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr,
    FunctionArgumentClause, FunctionArguments, GroupByExpr, Ident, LimitClause, OrderByKind, Query,
    SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins,
    UnaryOperator, Value,
};

use crate::analyze::name_parts;
use crate::merge_shape::{
    Aggregation, BinOp, BitFn, Col, Constant, DistinctFn, GroupConcat, LimitOperands, MergeExpr,
    MergeShape, Operand, Role, SortKey, HIDDEN_PREFIX,
};
use crate::parse::{name_slot_marker, slot_of, Statement, LIMIT_MARKER};

/// The result of [`Statement::select_merge`].
#[derive(Debug, Clone)]
pub struct SelectMerge {
    /// What each shard runs (render it like any statement).
    pub statement: Statement,
    pub shape: MergeShape,
    pub limit: Option<LimitOperands>,
    /// Each shard's result is limited (the statement has [`crate::Seg::Limit`]).
    pub shard_limit: bool,
    /// Slots read as column positions (`ORDER BY 2`): the shape holds only
    /// for statements with the same literal text in these slots.
    pub position_slots: Vec<usize>,
}

impl Statement {
    /// The per-shard statement and merge shape of a top-level SELECT; `Err`
    /// names the first construct that cannot be merged. `slot_integer` gives
    /// the value of an integer literal slot (ORDER BY / GROUP BY positions).
    pub fn select_merge(
        &self,
        slot_integer: &dyn Fn(usize) -> Option<u64>,
    ) -> Result<SelectMerge, String> {
        let ast::Statement::Query(query) = &self.ast else {
            return Err("a statement that is not a SELECT".into());
        };
        let mut query: Query = (**query).clone();
        let limit = limit_operands(&query)?;
        if query.fetch.is_some() {
            return Err("FETCH".into());
        }
        let SetExpr::Select(select) = query.body.as_mut() else {
            return Err(format!("{} of several shards", set_name(&query.body)));
        };
        if select
            .select_modifiers
            .as_ref()
            .is_some_and(|m| m.sql_calc_found_rows)
        {
            return Err("SQL_CALC_FOUND_ROWS".into());
        }
        if matches!(select.distinct, Some(ast::Distinct::On(_))) {
            return Err("DISTINCT ON".into());
        }
        let mut b = Builder::new(&select.projection, &select.from, slot_integer);
        let group_exprs = match &select.group_by {
            GroupByExpr::All(_) => return Err("GROUP BY ALL".into()),
            GroupByExpr::Expressions(v, modifiers) => {
                if !modifiers.is_empty() {
                    return Err("GROUP BY … WITH ROLLUP".into());
                }
                v.clone()
            }
        };
        let order: Vec<(Expr, bool)> = match &query.order_by {
            None => Vec::new(),
            Some(o) => match &o.kind {
                OrderByKind::All(_) => return Err("ORDER BY ALL".into()),
                OrderByKind::Expressions(list) => list
                    .iter()
                    .map(|e| match e.options.sort {
                        Some(ast::OrderBySort::Using(_)) => Err("ORDER BY … USING".to_string()),
                        _ if e.options.nulls_first.is_some() => {
                            Err("ORDER BY … NULLS FIRST/LAST".to_string())
                        }
                        Some(ast::OrderBySort::Desc) => Ok((e.expr.clone(), true)),
                        _ => Ok((e.expr.clone(), false)),
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        let aggregated = !group_exprs.is_empty()
            || select
                .projection
                .iter()
                .any(|i| item_expr(i).is_some_and(has_aggregate))
            || select.having.as_ref().is_some_and(has_aggregate)
            || order.iter().any(|(e, _)| has_aggregate(e));
        let distinct = matches!(select.distinct, Some(ast::Distinct::Distinct));

        let mut shape = MergeShape {
            distinct,
            ..MergeShape::default()
        };
        if aggregated {
            let mut agg = Aggregation {
                group_by: Vec::new(),
                roles: Vec::new(),
                distinct_keys: Vec::new(),
            };
            for g in &group_exprs {
                let col = b.group_key(g)?;
                agg.group_by.push(col);
            }
            for i in 0..select.projection.len() {
                let Some(e) = item_expr(&select.projection[i]) else {
                    continue;
                };
                if !has_aggregate(e) {
                    continue;
                }
                let Some(col) = b.item_col(i) else {
                    return Err("aggregates after a wildcard in the select list".into());
                };
                let role = b.role(e)?;
                if matches!(role, Role::GroupConcat(_)) {
                    select.projection[i] = metadata_only_item(&select.projection[i]);
                }
                agg.roles.push((col, role));
            }
            let having = match select.having.take() {
                Some(h) => Some(b.merge_expr(&h)?),
                None => None,
            };
            for (e, desc) in &order {
                let column = b.order_key(e, true)?;
                shape.order_by.push(SortKey {
                    column,
                    descending: *desc,
                });
            }
            agg.roles.append(&mut b.hidden_roles);
            agg.distinct_keys = b.distinct_keys.clone();
            let mut keys = group_exprs.clone();
            keys.extend(b.distinct_exprs.iter().cloned());
            select.group_by = GroupByExpr::Expressions(keys, Vec::new());
            select.distinct = None;
            query.order_by = None;
            query.limit_clause = None;
            shape.having = having;
            shape.aggregation = Some(agg);
        } else {
            for (e, desc) in &order {
                let column = b.order_key(e, false)?;
                // Unions of shards' parts order by position or hidden alias
                // ([`MergeShape::shard_order_clause`]); a column after a wildcard has neither.
                let column = match column {
                    Col::ItemFromEnd(k) => {
                        let i = b.exprs.len() - 1 - k;
                        let expr = b.exprs[i].clone().ok_or("ORDER BY a wildcard")?;
                        b.add_hidden(&expr)
                    }
                    c => c,
                };
                // A hidden column the select list does not determine would make rows
                // distinct on the shards that the proxy then sees as duplicates.
                if let (true, Col::Hidden(j)) = (distinct, column) {
                    if !b.determined_by_items(&b.hidden[j]) {
                        return Err(
                            "SELECT DISTINCT ordered by an expression not in its select list"
                                .into(),
                        );
                    }
                }
                shape.order_by.push(SortKey {
                    column,
                    descending: *desc,
                });
            }
            if limit.as_ref().is_some_and(|l| l.count.is_some()) {
                query.limit_clause = Some(LimitClause::LimitOffset {
                    limit: Some(Expr::Value(
                        Value::Placeholder(LIMIT_MARKER.to_owned()).into(),
                    )),
                    offset: None,
                    limit_by: Vec::new(),
                });
            } else {
                query.limit_clause = None;
            }
        }
        shape.hidden = b.hidden.len();
        select
            .projection
            .extend(
                b.hidden
                    .iter()
                    .enumerate()
                    .map(|(j, e)| SelectItem::ExprWithAlias {
                        expr: e.clone(),
                        alias: Ident::new(format!("{HIDDEN_PREFIX}{j}")),
                    }),
            );
        let shard_limit = query.limit_clause.is_some();
        let position_slots = b.position_slots;
        Ok(SelectMerge {
            position_slots,
            statement: Statement {
                ast: ast::Statement::Query(Box::new(query)),
                extras: self.extras,
            },
            shape,
            limit,
            shard_limit,
        })
    }
}

fn set_name(body: &SetExpr) -> String {
    match body {
        SetExpr::SetOperation { op, .. } => op.to_string(),
        SetExpr::Query(_) => "a parenthesized query".into(),
        SetExpr::Values(_) => "VALUES".into(),
        _ => "this query form".into(),
    }
}

pub(crate) fn limit_operands(q: &Query) -> Result<Option<LimitOperands>, String> {
    let (count, offset) = match &q.limit_clause {
        None => return Ok(None),
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if !limit_by.is_empty() {
                return Err("LIMIT BY".into());
            }
            (limit.as_ref(), offset.as_ref().map(|o| &o.value))
        }
        Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(limit), Some(offset)),
    };
    Ok(Some(LimitOperands {
        count: count.map(operand).transpose()?,
        offset: offset.map(operand).transpose()?,
    }))
}

/// A literal (bound to a slot, or as written) as an operand.
fn operand(e: &Expr) -> Result<Operand, String> {
    if let Some(slot) = slot_of(e) {
        return Ok(Operand::Slot(slot));
    }
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => Ok(Operand::Const(Constant::Null)),
            Value::Number(n, _) => Ok(Operand::Const(match n.parse::<i64>() {
                Ok(i) => Constant::Int(i),
                Err(_) => match n.parse::<u64>() {
                    Ok(u) => Constant::UInt(u),
                    Err(_) => Constant::Number(n.clone()),
                },
            })),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Ok(Operand::Const(Constant::Str(s.clone().into_bytes())))
            }
            Value::Boolean(b) => Ok(Operand::Const(Constant::Int(i64::from(*b)))),
            other => Err(format!("the literal {other}")),
        },
        Expr::Nested(inner) => operand(inner),
        other => Err(format!("the expression {other}")),
    }
}

/// The expression of a select item (`None` for wildcards).
fn item_expr(item: &SelectItem) -> Option<&Expr> {
    match item {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// The aggregate functions the proxy can combine, by upper-case name.
const MERGEABLE: &[&str] = &[
    "COUNT", "SUM", "MIN", "MAX", "AVG", "BIT_AND", "BIT_OR", "BIT_XOR",
];

/// The upper-case name of an aggregate call (not windowed), if `e` is one.
fn aggregate_name(e: &Expr) -> Option<String> {
    let Expr::Function(f) = e else { return None };
    if f.over.is_some() {
        return None;
    }
    let name = name_parts(&f.name).last()?.to_ascii_uppercase();
    crate::analyze::AGGREGATES
        .contains(&name.as_str())
        .then_some(name)
}

fn has_aggregate(e: &Expr) -> bool {
    use std::ops::ControlFlow;
    let mut found = false;
    let _ = ast::visit_expressions(e, |x: &Expr| {
        if aggregate_name(x).is_some() {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Text for comparing expressions: case-insensitive, as MySQL compares column names.
fn key_text(e: &Expr) -> String {
    e.to_string().to_ascii_lowercase()
}

/// A column named in a statement: its name and, if written, the table (or alias) that
/// qualifies it; both lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnName {
    qualifier: Option<String>,
    name: String,
}

impl ColumnName {
    /// `e` as a column name (`uid`, `p.uid`, `bank.payment.uid`), parentheses aside.
    fn of(e: &Expr) -> Option<ColumnName> {
        match strip_nested(e) {
            Expr::Identifier(id) => Some(ColumnName {
                qualifier: None,
                name: id.value.to_lowercase(),
            }),
            Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                [.., table, column] => Some(ColumnName {
                    qualifier: Some(table.value.to_lowercase()),
                    name: column.value.to_lowercase(),
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What a GROUP BY or ORDER BY key refers to in the shards' result.
enum Reference {
    /// A select item.
    Item(usize),
    /// A column a wildcard gives, by position.
    Column(Col),
}

/// Collects hidden columns and resolves references to the select list.
struct Builder<'a> {
    slot_integer: &'a dyn Fn(usize) -> Option<u64>,
    position_slots: Vec<usize>,
    /// Per select item: its alias (lowercase) and expression text.
    aliases: Vec<Option<String>>,
    texts: Vec<Option<String>>,
    exprs: Vec<Option<Expr>>,
    /// Per select item that is a column: its name.
    columns: Vec<Option<ColumnName>>,
    /// Per wildcard of the select list: `None` for `*`, the qualifier of `t.*` (lowercase).
    wildcards: Vec<Option<String>>,
    /// The name that qualifies the columns of the FROM clause's only table (its alias,
    /// or its name), when it has one table.
    only_table: Option<String>,
    /// Whether a wildcard precedes / follows item i.
    wildcard_before: Vec<bool>,
    wildcard_after: Vec<bool>,
    hidden: Vec<Expr>,
    hidden_roles: Vec<(Col, Role)>,
    /// DISTINCT aggregate arguments added to the shards' GROUP BY.
    distinct_exprs: Vec<Expr>,
    distinct_keys: Vec<Col>,
}

impl<'a> Builder<'a> {
    fn new(
        items: &[SelectItem],
        from: &[TableWithJoins],
        slot_integer: &'a dyn Fn(usize) -> Option<u64>,
    ) -> Builder<'a> {
        let n = items.len();
        let is_wild = |i: &SelectItem| item_expr(i).is_none();
        let mut wildcard_before = vec![false; n];
        let mut wildcard_after = vec![false; n];
        for i in 1..n {
            wildcard_before[i] = wildcard_before[i - 1] || is_wild(&items[i - 1]);
        }
        for i in (0..n.saturating_sub(1)).rev() {
            wildcard_after[i] = wildcard_after[i + 1] || is_wild(&items[i + 1]);
        }
        let only_table = match from {
            [TableWithJoins {
                relation: TableFactor::Table { name, alias, .. },
                joins,
            }] if joins.is_empty() => match alias {
                Some(a) => Some(a.name.value.to_lowercase()),
                None => name_parts(name).last().map(|t| t.to_lowercase()),
            },
            _ => None,
        };
        Builder {
            slot_integer,
            position_slots: Vec::new(),
            aliases: items
                .iter()
                .map(|i| match i {
                    SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
                    _ => None,
                })
                .collect(),
            texts: items
                .iter()
                .map(|i| item_expr(i).map(|e| key_text(strip_nested(e))))
                .collect(),
            exprs: items.iter().map(|i| item_expr(i).cloned()).collect(),
            columns: items
                .iter()
                .map(|i| item_expr(i).and_then(ColumnName::of))
                .collect(),
            wildcards: items
                .iter()
                .filter_map(|i| match i {
                    SelectItem::Wildcard(_) => Some(None),
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) => Some(name_parts(name).last().map(|t| t.to_lowercase())),
                    _ => None,
                })
                .collect(),
            only_table,
            wildcard_before,
            wildcard_after,
            hidden: Vec::new(),
            hidden_roles: Vec::new(),
            distinct_exprs: Vec::new(),
            distinct_keys: Vec::new(),
        }
    }

    fn item_col(&self, i: usize) -> Option<Col> {
        if !self.wildcard_before[i] {
            Some(Col::Item(i))
        } else if !self.wildcard_after[i] {
            Some(Col::ItemFromEnd(self.exprs.len() - 1 - i))
        } else {
            None
        }
    }

    /// What a GROUP BY or ORDER BY key refers to: a column position (`ORDER BY 2`),
    /// or the select item [`Builder::find_item`] finds.
    fn key_reference(&mut self, e: &Expr) -> Result<Option<Reference>, String> {
        match self.position(e) {
            Some(pos) => self.at_position(pos).map(Some),
            None => Ok(self.find_item(e).map(Reference::Item)),
        }
    }

    /// The column position `e` gives, if it is an integer literal (a position is written
    /// as a number literal, which binding left unslotted only if it could not bind: accept
    /// both).
    fn position(&mut self, e: &Expr) -> Option<u64> {
        match (slot_of(e), e) {
            (Some(slot), _) => {
                let p = (self.slot_integer)(slot);
                if p.is_some() {
                    self.position_slots.push(slot);
                }
                p
            }
            (None, Expr::Value(v)) => match &v.value {
                Value::Number(n, _) => n.parse::<u64>().ok(),
                _ => None,
            },
            _ => None,
        }
    }

    /// Column `pos` (1-based) of the result. Before the first wildcard it is a select
    /// item; the wildcard's first column is column `pos` (a table has at least one); past
    /// it, only when nothing follows the wildcard (the server refuses a position past the
    /// last column).
    fn at_position(&self, pos: u64) -> Result<Reference, String> {
        let Some(i) = usize::try_from(pos).ok().and_then(|p| p.checked_sub(1)) else {
            return Err(format!("column position {pos}"));
        };
        match self.exprs.iter().position(Option::is_none) {
            Some(w) if i == w || (i > w && w + 1 == self.exprs.len()) => {
                Ok(Reference::Column(Col::Item(i)))
            }
            Some(w) if i > w => Err(format!(
                "column position {pos} past a wildcard that other items follow"
            )),
            _ if i < self.exprs.len() => Ok(Reference::Item(i)),
            _ => Err(format!("column position {pos}")),
        }
    }

    /// The select item `e` refers to, as MariaDB resolves a name in GROUP BY, ORDER BY
    /// and HAVING: an alias, the same expression, or the same column (`uid` is
    /// `payment.uid`; `p.uid` is `uid` when `p` is the only table).
    fn find_item(&self, e: &Expr) -> Option<usize> {
        let e = strip_nested(e);
        if let Expr::Identifier(id) = e {
            let name = id.value.to_lowercase();
            if let Some(i) = self
                .aliases
                .iter()
                .position(|a| a.as_deref() == Some(&name))
            {
                return Some(i);
            }
        }
        let text = key_text(e);
        if let Some(i) = self
            .texts
            .iter()
            .position(|t| t.as_deref() == Some(text.as_str()))
        {
            return Some(i);
        }
        let key = ColumnName::of(e)?;
        self.columns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| self.same_column(&key, c)))
    }

    /// Whether a key's column name names the column of a select item.
    fn same_column(&self, key: &ColumnName, item: &ColumnName) -> bool {
        if key.name != item.name {
            return false;
        }
        match (&key.qualifier, &item.qualifier) {
            (Some(k), Some(i)) => k == i,
            // An unqualified key is the column of that name (were two select items columns
            // of that name in different tables, the server would refuse it as ambiguous).
            (None, _) => true,
            (Some(k), None) => self.only_table.as_ref() == Some(k),
        }
    }

    /// Whether the select list determines the value of `e` in each row: `e` is one of its
    /// items, or a column a wildcard gives.
    fn determined_by_items(&self, e: &Expr) -> bool {
        if self.find_item(e).is_some() {
            return true;
        }
        let Some(column) = ColumnName::of(e) else {
            return false;
        };
        self.wildcards.iter().any(|w| match (w, &column.qualifier) {
            (None, _) => true,
            (Some(t), Some(q)) => t == q,
            (Some(t), None) => self.only_table.as_ref() == Some(t),
        })
    }

    fn add_hidden(&mut self, e: &Expr) -> Col {
        let text = key_text(e);
        if let Some(j) = self.hidden.iter().position(|h| key_text(h) == text) {
            return Col::Hidden(j);
        }
        self.hidden.push(e.clone());
        Col::Hidden(self.hidden.len() - 1)
    }

    /// The column of a GROUP BY key.
    fn group_key(&mut self, e: &Expr) -> Result<Col, String> {
        if has_aggregate(e) {
            return Err("an aggregate in GROUP BY".into());
        }
        Ok(match self.key_reference(e)? {
            Some(Reference::Column(c)) => c,
            Some(Reference::Item(i)) => match self.item_col(i) {
                Some(c) => c,
                None => {
                    let expr = self.exprs[i].clone().ok_or("GROUP BY a wildcard")?;
                    self.add_hidden(&expr)
                }
            },
            None => self.add_hidden(e),
        })
    }

    fn order_key(&mut self, e: &Expr, aggregated: bool) -> Result<Col, String> {
        match self.key_reference(e)? {
            Some(Reference::Column(c)) => Ok(c),
            Some(Reference::Item(i)) => match self.item_col(i) {
                Some(c) => Ok(c),
                None => {
                    let expr = self.exprs[i].clone().ok_or("ORDER BY a wildcard")?;
                    self.hidden_value(&expr, aggregated)
                }
            },
            None => self.hidden_value(e, aggregated),
        }
    }

    /// A hidden column computing `e`; in an aggregated query, with the role
    /// its aggregates need.
    fn hidden_value(&mut self, e: &Expr, aggregated: bool) -> Result<Col, String> {
        if aggregated && has_aggregate(e) {
            let before = self.hidden.len();
            let col = self.add_hidden(e);
            if self.hidden.len() > before {
                let role = self.role(e)?;
                if let (Role::GroupConcat(_), Col::Hidden(j)) = (&role, col) {
                    self.hidden[j] = metadata_only(e);
                }
                self.hidden_roles.push((col, role));
            }
            return Ok(col);
        }
        Ok(self.add_hidden(e))
    }

    /// How a select-list expression containing aggregates is combined.
    fn role(&mut self, e: &Expr) -> Result<Role, String> {
        // Recursion through expressions: bounded by the parser's recursion limit.
        let e = strip_nested(e);
        let Some(name) = aggregate_name(e) else {
            return Ok(Role::Computed(self.merge_expr(e)?));
        };
        let Expr::Function(f) = e else {
            return Err(format!("aggregate function {name}()"));
        };
        if name == "GROUP_CONCAT" {
            return self.group_concat(f);
        }
        if !MERGEABLE.contains(&name.as_str()) {
            return Err(format!("aggregate function {name}()"));
        }
        let FunctionArguments::List(list) = &f.args else {
            return Err(format!("aggregate function {name}() without arguments"));
        };
        if !list.clauses.is_empty() || f.filter.is_some() || !f.within_group.is_empty() {
            return Err(format!("aggregate function {name}() with clauses"));
        }
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut args = Vec::with_capacity(list.args.len());
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => {
                    if has_aggregate(x) {
                        return Err(format!("nested aggregate in {name}()"));
                    }
                    args.push(x.clone());
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) if name == "COUNT" && !distinct => {
                }
                _ => return Err(format!("the arguments of {name}()")),
            }
        }
        // DISTINCT changes nothing of MIN, MAX and the bitwise aggregates.
        if distinct && matches!(name.as_str(), "COUNT" | "SUM" | "AVG") {
            let function = match name.as_str() {
                "COUNT" => DistinctFn::Count,
                "SUM" => DistinctFn::Sum,
                _ => DistinctFn::Avg,
            };
            let mut cols = Vec::with_capacity(args.len());
            for a in &args {
                let col = self.add_hidden(a);
                if !self.distinct_keys.contains(&col) {
                    self.distinct_keys.push(col);
                    self.distinct_exprs.push(a.clone());
                }
                cols.push(col);
            }
            return Ok(Role::Distinct {
                function,
                args: cols,
            });
        }
        Ok(match name.as_str() {
            "COUNT" => Role::Count,
            "SUM" => Role::Sum,
            "MIN" => Role::Min,
            "MAX" => Role::Max,
            "BIT_AND" => Role::Bits(BitFn::And),
            "BIT_OR" => Role::Bits(BitFn::Or),
            "BIT_XOR" => Role::Bits(BitFn::Xor),
            _ => {
                let [arg] = args.as_slice() else {
                    return Err("AVG() with several arguments".into());
                };
                let sum = self.hidden_call("SUM", arg);
                let count = self.hidden_call("COUNT", arg);
                Role::Avg { sum, count }
            }
        })
    }

    /// GROUP_CONCAT, computed by the proxy from its elements ([`GroupConcat`]): hidden columns
    /// for the element, its sort keys, its row count, the session's `group_concat_max_len` and
    /// byte lengths; the element (as itself and as bytes) and the sort keys join the shards'
    /// GROUP BY.
    fn group_concat(&mut self, f: &ast::Function) -> Result<Role, String> {
        let FunctionArguments::List(list) = &f.args else {
            return Err("GROUP_CONCAT() without arguments".into());
        };
        if f.filter.is_some() || !f.within_group.is_empty() || f.null_treatment.is_some() {
            return Err("GROUP_CONCAT() with FILTER, WITHIN GROUP or a NULL treatment".into());
        }
        let mut args = Vec::with_capacity(list.args.len());
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) if !has_aggregate(x) => {
                    args.push(x.clone())
                }
                _ => return Err("the arguments of GROUP_CONCAT()".into()),
            }
        }
        if args.is_empty() {
            return Err("GROUP_CONCAT() without arguments".into());
        }
        let mut order = Vec::new();
        let mut separator = Expr::Value(Value::SingleQuotedString(",".into()).into());
        let mut limit = None;
        for clause in &list.clauses {
            match clause {
                FunctionArgumentClause::OrderBy(keys) => order.clone_from(keys),
                FunctionArgumentClause::Separator(v) => separator = Expr::Value(v.clone()),
                FunctionArgumentClause::Limit(count) => {
                    limit = Some(LimitOperands {
                        count: Some(operand(count)?),
                        offset: None,
                    })
                }
                other => return Err(format!("GROUP_CONCAT(… {other})")),
            }
        }
        let element = call("CONCAT", args.clone());
        let element_col = self.add_hidden(&element);
        self.group_on(&element, Some(element_col));
        let bytes = Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(element.clone()),
            data_type: ast::DataType::Binary(None),
            format: None,
        };
        self.group_on(&bytes, None);
        let mut order_by = Vec::with_capacity(order.len());
        for key in &order {
            let descending = match key.options.sort {
                None | Some(ast::OrderBySort::Asc) => false,
                Some(ast::OrderBySort::Desc) => true,
                Some(ast::OrderBySort::Using(_)) => {
                    return Err("GROUP_CONCAT(… ORDER BY … USING)".into())
                }
            };
            if key.options.nulls_first.is_some() {
                return Err("GROUP_CONCAT(… ORDER BY … NULLS FIRST/LAST)".into());
            }
            if slot_of(&key.expr).is_some() || matches!(key.expr, Expr::Value(_)) {
                return Err("GROUP_CONCAT(… ORDER BY a position or literal)".into());
            }
            if has_aggregate(&key.expr) {
                return Err("GROUP_CONCAT(… ORDER BY an aggregate)".into());
            }
            let column = self.add_hidden(&key.expr);
            self.group_on(&key.expr, Some(column));
            order_by.push(SortKey { column, descending });
        }
        let mut with_separator = args;
        with_separator.push(separator.clone());
        let rows = self.add_hidden(&Expr::Function(ast::Function {
            args: FunctionArguments::List(ast::FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
                clauses: Vec::new(),
            }),
            ..function("COUNT")
        }));
        let max_len = self.add_hidden(&Expr::Identifier(Ident::new("@@group_concat_max_len")));
        // Cast, for a type that stays BIGINT UNSIGNED when a data source unions its tables'
        // parts (a bare MAX(LENGTH(…)) becomes INT there, and its binary rows 4 bytes wide).
        let max_length = |e: Expr| Expr::Cast {
            kind: ast::CastKind::Cast,
            expr: Box::new(call("MAX", vec![call("LENGTH", vec![e])])),
            data_type: ast::DataType::Unsigned,
            format: None,
        };
        let element_bytes = self.add_hidden(&max_length(element.clone()));
        let with_separator_bytes = self.add_hidden(&max_length(call("CONCAT", with_separator)));
        Ok(Role::GroupConcat(Box::new(GroupConcat {
            distinct: matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
            element: element_col,
            order_by,
            separator: operand(&separator)?,
            limit,
            rows,
            max_len,
            element_bytes,
            with_separator_bytes,
        })))
    }

    /// Adds `e` to the shards' GROUP BY (once), and its hidden column to the keys `EXPLAIN`
    /// lists.
    fn group_on(&mut self, e: &Expr, col: Option<Col>) {
        let text = key_text(e);
        if !self.distinct_exprs.iter().any(|d| key_text(d) == text) {
            self.distinct_exprs.push(e.clone());
        }
        if let Some(col) = col.filter(|c| !self.distinct_keys.contains(c)) {
            self.distinct_keys.push(col);
        }
    }

    /// A hidden `FUNC(arg)` column combined as that function.
    fn hidden_call(&mut self, func: &str, arg: &Expr) -> Col {
        let before = self.hidden.len();
        let col = self.add_hidden(&call(func, vec![arg.clone()]));
        if self.hidden.len() > before {
            let role = if func == "SUM" {
                Role::Sum
            } else {
                Role::Count
            };
            self.hidden_roles.push((col, role));
        }
        col
    }

    /// An expression evaluated by the proxy over merged columns.
    fn merge_expr(&mut self, e: &Expr) -> Result<MergeExpr, String> {
        let e = strip_nested(e);
        if slot_of(e).is_some() || matches!(e, Expr::Value(_)) {
            return Ok(MergeExpr::Value(operand(e)?));
        }
        if let Some(i) = self.find_item(e) {
            if let Some(c) = self.item_col(i) {
                if aggregate_name(e).is_some() || !has_aggregate(e) {
                    return Ok(MergeExpr::Column(c));
                }
            }
        }
        if aggregate_name(e).is_some() {
            return Ok(MergeExpr::Column(self.hidden_value(e, true)?));
        }
        let boxed = |b: &mut Self, x: &Expr| b.merge_expr(x).map(Box::new);
        Ok(match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                MergeExpr::Column(self.add_hidden(e))
            }
            Expr::UnaryOp { op, expr } => match op {
                UnaryOperator::Not => MergeExpr::Not(boxed(self, expr)?),
                UnaryOperator::Minus => MergeExpr::Negate(boxed(self, expr)?),
                UnaryOperator::Plus => self.merge_expr(expr)?,
                other => return Err(format!("the operator {other} over merged rows")),
            },
            Expr::IsNull(x) => MergeExpr::IsNull(boxed(self, x)?, false),
            Expr::IsNotNull(x) => MergeExpr::IsNull(boxed(self, x)?, true),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => MergeExpr::Between {
                expr: boxed(self, expr)?,
                negated: *negated,
                low: boxed(self, low)?,
                high: boxed(self, high)?,
            },
            Expr::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => MergeExpr::InList {
                expr: boxed(self, expr)?,
                negated: *negated,
                list: list
                    .iter()
                    .map(|x| self.merge_expr(x))
                    .collect::<Result<_, _>>()?,
            },
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Eq => BinOp::Eq,
                    BinaryOperator::NotEq => BinOp::NotEq,
                    BinaryOperator::Spaceship => BinOp::NullSafeEq,
                    BinaryOperator::Lt => BinOp::Lt,
                    BinaryOperator::LtEq => BinOp::LtEq,
                    BinaryOperator::Gt => BinOp::Gt,
                    BinaryOperator::GtEq => BinOp::GtEq,
                    BinaryOperator::And => BinOp::And,
                    BinaryOperator::Or => BinOp::Or,
                    BinaryOperator::Xor => BinOp::Xor,
                    BinaryOperator::Plus => BinOp::Plus,
                    BinaryOperator::Minus => BinOp::Minus,
                    BinaryOperator::Multiply => BinOp::Multiply,
                    BinaryOperator::Divide => BinOp::Divide,
                    BinaryOperator::MyIntegerDivide => BinOp::IntDivide,
                    BinaryOperator::Modulo => BinOp::Modulo,
                    other => return Err(format!("the operator {other} over merged rows")),
                };
                MergeExpr::Binary(boxed(self, left)?, op, boxed(self, right)?)
            }
            other if !has_aggregate(other) => MergeExpr::Column(self.add_hidden(other)),
            Expr::Function(f) => {
                let name = name_parts(&f.name).join(".").to_ascii_uppercase();
                return Err(format!("the function {name}() over aggregates"));
            }
            _ => return Err("this kind of expression over aggregates".into()),
        })
    }
}

/// A call of `name` without arguments.
fn function(name: &str) -> ast::Function {
    ast::Function {
        name: ast::ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: Vec::new(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    }
}

/// `name(args)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        args: FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: Vec::new(),
        }),
        ..function(name)
    })
}

/// A GROUP_CONCAT call as the shards run it for the result's metadata only: the same arguments
/// and separator (they decide its type and length), no DISTINCT or ORDER BY, and `LIMIT 0`, so
/// that no shard concatenates or warns about a cut.
fn metadata_only(e: &Expr) -> Expr {
    let mut e = strip_nested(e).clone();
    if let Expr::Function(ast::Function {
        args: FunctionArguments::List(list),
        ..
    }) = &mut e
    {
        list.duplicate_treatment = None;
        list.clauses
            .retain(|c| matches!(c, FunctionArgumentClause::Separator(_)));
        list.clauses.push(FunctionArgumentClause::Limit(Expr::Value(
            Value::Number("0".into(), false).into(),
        )));
    }
    e
}

/// A select item of a GROUP_CONCAT as the shards run it ([`metadata_only`]), named as the
/// client wrote it.
fn metadata_only_item(item: &SelectItem) -> SelectItem {
    match item {
        SelectItem::ExprWithAlias { expr, alias } => SelectItem::ExprWithAlias {
            expr: metadata_only(expr),
            alias: alias.clone(),
        },
        SelectItem::UnnamedExpr(expr) => SelectItem::ExprWithAlias {
            expr: metadata_only(expr),
            alias: Ident::with_quote('`', name_of(expr)),
        },
        other => other.clone(),
    }
}

/// The name a server gives an unaliased select item: its text, the literals (and `?`) in it as
/// the statement wrote them.
fn name_of(e: &Expr) -> String {
    let printed = e.to_string();
    let mut name = String::with_capacity(printed.len());
    for (i, piece) in printed.split('\u{0}').enumerate() {
        match piece
            .strip_prefix('L')
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(slot) if i % 2 == 1 => name.push_str(&name_slot_marker(slot)),
            _ if i % 2 == 1 => {
                name.push('\u{0}');
                name.push_str(piece);
                name.push('\u{0}');
            }
            _ => name.push_str(piece),
        }
    }
    name
}

fn strip_nested(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) => strip_nested(inner),
        other => other,
    }
}
