//! How the rows of a SELECT's shards combine into the answer one database would give:
//! the [`MergeShape`] that [`crate::Statement::select_merge`] plans and the proxy's merge
//! carries out: sort keys, groups and the role of each aggregate column, HAVING and
//! expressions over aggregates, DISTINCT, and hidden helper columns, all by position in
//! the shards' result.

/// The alias prefix of the hidden helper columns the shards return after the visible ones.
pub(crate) const HIDDEN_PREFIX: &str = "__dbmesh_";

/// A column of the shards' result. The select list may hold wildcards whose
/// width is known only from the result's metadata, hence the three forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Col {
    /// The i-th column (no wildcard before it).
    Item(usize),
    /// The k-th visible column counted from the last one (0 = last).
    ItemFromEnd(usize),
    /// The j-th hidden helper column, after the visible ones.
    Hidden(usize),
}

impl Col {
    /// The column's index in a result with `visible` columns before the hidden ones.
    pub fn index(self, visible: usize) -> usize {
        match self {
            Col::Item(i) => i,
            Col::ItemFromEnd(k) => visible - 1 - k,
            Col::Hidden(j) => visible + j,
        }
    }
}

/// As `EXPLAIN ROUTE` names it: `col 2` (1-based, as `ORDER BY 2`), `col 1 from the end`
/// (after a wildcard), `hidden 1` (a helper column the client does not see).
impl std::fmt::Display for Col {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Col::Item(i) => write!(f, "col {}", i + 1),
            Col::ItemFromEnd(k) => write!(f, "col {} from the end", k + 1),
            Col::Hidden(j) => write!(f, "hidden {}", j + 1),
        }
    }
}

/// One sort key of a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    pub column: Col,
    pub descending: bool,
}

/// A literal of a merge expression: a fingerprint slot until the router
/// resolves it with the statement's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Slot(usize),
    Const(Constant),
}

/// A constant value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constant {
    Null,
    Int(i64),
    UInt(u64),
    /// A decimal or floating-point number as written (`1.5`, `2e3`).
    Number(String),
    /// A string (unescaped).
    Str(Vec<u8>),
}

/// Binary operators the proxy evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    NotEq,
    NullSafeEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Xor,
    Plus,
    Minus,
    Multiply,
    Divide,
    IntDivide,
    Modulo,
}

/// An expression over merged columns (HAVING, expressions over aggregates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeExpr {
    Column(Col),
    Value(Operand),
    Not(Box<MergeExpr>),
    Negate(Box<MergeExpr>),
    IsNull(Box<MergeExpr>, bool),
    Binary(Box<MergeExpr>, BinOp, Box<MergeExpr>),
    Between {
        expr: Box<MergeExpr>,
        negated: bool,
        low: Box<MergeExpr>,
        high: Box<MergeExpr>,
    },
    InList {
        expr: Box<MergeExpr>,
        negated: bool,
        list: Vec<MergeExpr>,
    },
}

/// How a DISTINCT aggregate folds its distinct values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistinctFn {
    Count,
    Sum,
    Avg,
}

/// How one column of a grouped result is combined across shards. Columns
/// without a role keep the first value seen in their group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Sum of per-shard counts.
    Count,
    /// Sum of per-shard sums (NULL when every part is NULL).
    Sum,
    Min,
    Max,
    /// SUM / COUNT from two hidden columns; the column keeps AVG's metadata.
    Avg {
        sum: Col,
        count: Col,
    },
    /// Folds the distinct non-NULL values of `args` (hidden group keys of the shards).
    Distinct {
        function: DistinctFn,
        args: Vec<Col>,
    },
    /// BIT_AND / BIT_OR / BIT_XOR of the per-shard results (an unsigned 64-bit
    /// integer; over no row, the function's identity).
    Bits(BitFn),
    /// GROUP_CONCAT over the elements of the merged group.
    GroupConcat(Box<GroupConcat>),
    /// Evaluated over the merged group.
    Computed(MergeExpr),
}

/// A GROUP_CONCAT the proxy computes from its elements: the shards group by each element
/// (its bytes, so that no two elements equal under the collation fold into one) and its sort
/// keys, and return with each how many rows gave it; the proxy orders, deduplicates, limits,
/// joins and cuts at `group_concat_max_len` as MariaDB does. The shards' own GROUP_CONCAT
/// column (`LIMIT 0`) gives only the result's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConcat {
    pub distinct: bool,
    /// `CONCAT(args)`: NULL exactly when MariaDB skips the row.
    pub element: Col,
    /// The `ORDER BY` inside the call, over hidden columns.
    pub order_by: Vec<SortKey>,
    /// `SEPARATOR` (`','` when not written).
    pub separator: Operand,
    /// `LIMIT` inside the call.
    pub limit: Option<LimitOperands>,
    /// `COUNT(*)`: the rows of the shard's group that gave the element.
    pub rows: Col,
    /// `@@group_concat_max_len` of the shard's session (the client's, replayed).
    pub max_len: Col,
    /// `MAX(LENGTH(element))` (as UNSIGNED): its bytes in the data's character set, where
    /// MariaDB cuts.
    pub element_bytes: Col,
    /// `MAX(LENGTH(CONCAT(element, separator)))` (as UNSIGNED): the separator's bytes there,
    /// added.
    pub with_separator_bytes: Col,
}

/// What the merge does with the column, as `EXPLAIN ROUTE` shows it.
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Count => f.write_str("sum of the shards' COUNTs"),
            Role::Sum => f.write_str("sum of the shards' SUMs"),
            Role::Min => f.write_str("least of the shards' MINs"),
            Role::Max => f.write_str("greatest of the shards' MAXs"),
            Role::Avg { sum, count } => write!(f, "AVG = {sum} / {count}"),
            Role::Distinct { function, args } => {
                let args: Vec<String> = args.iter().map(Col::to_string).collect();
                let name = match function {
                    DistinctFn::Count => "COUNT",
                    DistinctFn::Sum => "SUM",
                    DistinctFn::Avg => "AVG",
                };
                write!(
                    f,
                    "{name}(DISTINCT {}) over the merged group",
                    args.join(", ")
                )
            }
            Role::Bits(BitFn::And) => f.write_str("BIT_AND of the shards' BIT_ANDs"),
            Role::Bits(BitFn::Or) => f.write_str("BIT_OR of the shards' BIT_ORs"),
            Role::Bits(BitFn::Xor) => f.write_str("BIT_XOR of the shards' BIT_XORs"),
            Role::GroupConcat(g) => {
                let keys: Vec<String> = g
                    .order_by
                    .iter()
                    .map(|k| format!("{}{}", k.column, if k.descending { " DESC" } else { "" }))
                    .collect();
                write!(
                    f,
                    "GROUP_CONCAT({}{} ORDER BY [{}]) of the elements in {} × {}",
                    if g.distinct { "DISTINCT " } else { "" },
                    g.element,
                    keys.join(", "),
                    g.element,
                    g.rows
                )
            }
            Role::Computed(expr) => write!(f, "computed over the merged group: {expr:?}"),
        }
    }
}

/// The bitwise aggregate a [`Role::Bits`] column folds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitFn {
    And,
    Or,
    Xor,
}

impl BitFn {
    /// The function's value over no row: every bit set for BIT_AND, none for the others.
    pub fn identity(self) -> u64 {
        match self {
            BitFn::And => u64::MAX,
            BitFn::Or | BitFn::Xor => 0,
        }
    }

    /// Two partial results folded into one.
    pub fn fold(self, a: u64, b: u64) -> u64 {
        match self {
            BitFn::And => a & b,
            BitFn::Or => a | b,
            BitFn::Xor => a ^ b,
        }
    }
}

/// Grouping and aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregation {
    /// The group keys; empty: aggregates over all rows, exactly one result row.
    pub group_by: Vec<Col>,
    /// Columns combined by a [`Role`].
    pub roles: Vec<(Col, Role)>,
    /// Group keys the shards get beyond the statement's (DISTINCT aggregates'
    /// arguments): rows of one merged group may differ in them.
    pub distinct_keys: Vec<Col>,
}

/// How shard results combine into one answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeShape {
    /// Trailing helper columns the client does not see.
    pub hidden: usize,
    /// Final order. Without aggregation the shards return rows in this order.
    pub order_by: Vec<SortKey>,
    pub aggregation: Option<Aggregation>,
    /// Filter after aggregation.
    pub having: Option<MergeExpr>,
    /// Remove duplicate rows (over the visible columns).
    pub distinct: bool,
    /// INTERSECT or EXCEPT over the rows of every branch, told apart by the hidden
    /// column [`SetOp::TAG`] (the branch's index).
    pub set_op: Option<SetOp>,
}

/// An INTERSECT or EXCEPT chain the proxy evaluates over all of its branches' rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOp {
    /// EXCEPT (rows of the first branch not in the others); otherwise INTERSECT.
    pub except: bool,
    /// `ALL`: duplicates count (MariaDB 10.5+); otherwise DISTINCT.
    pub all: bool,
    /// The number of branches.
    pub branches: usize,
}

impl SetOp {
    /// The hidden column holding each row's branch index.
    pub const TAG: Col = Col::Hidden(0);

    /// How many times a row occurs in the result, given how many times it occurs in each
    /// branch: `((A op B) op C) …` as MariaDB evaluates the chain.
    pub fn occurrences(&self, counts: &[u64]) -> u64 {
        let Some((&first, rest)) = counts.split_first() else {
            return 0;
        };
        match (self.except, self.all) {
            (false, false) => u64::from(counts.iter().all(|&n| n > 0)),
            (false, true) => counts.iter().copied().min().unwrap_or(0),
            (true, false) => u64::from(first > 0 && rest.iter().all(|&n| n == 0)),
            (true, true) => rest.iter().fold(first, |left, &n| left.saturating_sub(n)),
        }
    }
}

impl std::fmt::Display for SetOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.except { "EXCEPT" } else { "INTERSECT" };
        let all = if self.all { " ALL" } else { "" };
        write!(
            f,
            "{op}{all} of {} branches by {}",
            self.branches,
            Self::TAG
        )
    }
}

/// LIMIT and OFFSET of the statement, by slot or as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitOperands {
    pub count: Option<Operand>,
    pub offset: Option<Operand>,
}

impl MergeShape {
    /// The ORDER BY that sorts a union of shard parts like each part (the
    /// sort keys by position or hidden column alias), or nothing when the
    /// proxy sorts after aggregating or after a set operation; `None` when a key has neither.
    pub fn shard_order_clause(&self) -> Option<String> {
        if self.order_by.is_empty() || self.aggregation.is_some() || self.set_op.is_some() {
            return Some(String::new());
        }
        let mut keys = Vec::with_capacity(self.order_by.len());
        for k in &self.order_by {
            let col = match k.column {
                Col::Item(i) => (i + 1).to_string(),
                Col::Hidden(j) => format!("{HIDDEN_PREFIX}{j}"),
                // Not produced for unaggregated sorts (see `select_merge`).
                Col::ItemFromEnd(_) => return None,
            };
            keys.push(if k.descending { col + " DESC" } else { col });
        }
        Some(format!(" ORDER BY {}", keys.join(", ")))
    }
}
