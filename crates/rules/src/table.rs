//! Compiled table rules and the routing questions a router asks of them.
//!
//! A validated `[tables.<name>]` becomes a [`TableRule`]. For a sharded table
//! the [`ShardedTable`] answers: which node holds this value
//! ([`ShardedTable::shard_for`]), which nodes can hold values in this range
//! ([`ShardedTable::nodes_for_range`]), and which nodes exist
//! ([`ShardedTable::all_nodes`] for DDL, [`ShardedTable::data_nodes`] for
//! scatter reads). Everything is pure and allocation-free on the single-value
//! path; nodes are returned by reference or by index into `all_nodes()`.

use std::fmt;
use std::ops::Bound;

use crate::algorithm::{range_index, slice_of, Algorithm, ColumnType, Key, ShardValue, SLICES};
use crate::error::RuleError;

/// One physical table: a table name in a data source's database.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhysicalNode {
    /// The data source; the database is that data source's `database`.
    pub data_source: String,
    /// The physical table name.
    pub table: String,
}

impl PhysicalNode {
    /// A node from its parts.
    pub fn new(data_source: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            data_source: data_source.into(),
            table: table.into(),
        }
    }
}

impl fmt::Display for PhysicalNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.data_source, self.table)
    }
}

/// The validated rule of one logical table named in the rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableRule {
    /// Rows are split over several physical tables by a sharding column.
    Sharded(ShardedTable),
    /// A full copy on each of several data sources.
    Broadcast(BroadcastTable),
    /// One physical table on a named data source.
    Single(PhysicalNode),
}

impl TableRule {
    /// Every physical table of the rule: a sharded table's nodes, a broadcast table's
    /// copies, a single table's one table.
    pub fn physical_tables(&self) -> &[PhysicalNode] {
        match self {
            TableRule::Sharded(s) => s.all_nodes(),
            TableRule::Broadcast(b) => b.nodes(),
            TableRule::Single(n) => std::slice::from_ref(n),
        }
    }
}

/// Where a logical table lives, as the router sees it; see [`crate::Rules::table_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableRoute<'a> {
    /// Route by the sharding column's value.
    Sharded(&'a ShardedTable),
    /// Read from any one node, write to all.
    Broadcast(&'a BroadcastTable),
    /// Always this one node.
    Single(&'a PhysicalNode),
    /// Not named in the rules: on the schema's default data source, under the name the client used.
    Default {
        /// The default data source.
        data_source: &'a str,
    },
}

/// A broadcast (reference) table: one identical copy per data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastTable {
    pub(crate) nodes: Vec<PhysicalNode>,
}

impl BroadcastTable {
    /// Every copy, in data source name order. Writes go to all of them.
    pub fn nodes(&self) -> &[PhysicalNode] {
        &self.nodes
    }

    /// The copy to read on `data_source`, if that data source has one
    /// (for joining with a table that lives there).
    pub fn node_on(&self, data_source: &str) -> Option<&PhysicalNode> {
        self.nodes.iter().find(|n| n.data_source == data_source)
    }
}

/// A sharded table: its column, algorithm and ordered physical nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedTable {
    pub(crate) name: String,
    pub(crate) column: String,
    pub(crate) column_type: ColumnType,
    pub(crate) algorithm: Algorithm,
    pub(crate) nodes: Vec<PhysicalNode>,
    pub(crate) binding_group: Option<usize>,
}

/// Integer ranges no longer than this are pruned by evaluating every value,
/// whatever the algorithm (so `id BETWEEN 10 AND 12` under `hash` hits at most 3 nodes).
pub const ENUMERATE_RANGE_LIMIT: i128 = 128;

impl ShardedTable {
    /// The logical table name, as written in the rule file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sharding column.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// How the sharding column's values compare.
    pub fn column_type(&self) -> ColumnType {
        self.column_type
    }

    /// The algorithm and its parameters.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// The index into [`crate::Rules::binding_groups`] of this table's group, if any.
    pub fn binding_group(&self) -> Option<usize> {
        self.binding_group
    }

    /// Every physical table, in layout order; node indexes refer to this slice.
    /// DDL goes to all of them.
    pub fn all_nodes(&self) -> &[PhysicalNode] {
        &self.nodes
    }

    /// The node at `index` (as returned by [`Self::shard_index`] / [`Self::nodes_for_range`]).
    pub fn node(&self, index: usize) -> Option<&PhysicalNode> {
        self.nodes.get(index)
    }

    /// The index of the node holding rows whose sharding column equals `value`.
    pub fn shard_index(&self, value: &ShardValue<'_>) -> Result<usize, RuleError> {
        let key = self.column_type.key(value)?;
        self.algorithm.index(key, self.nodes.len())
    }

    /// The UID slice (00-99) of a row whose sharding column equals `value`, as the
    /// `uid_slice` algorithm computes it: an integer's last two decimal digits (negative
    /// UIDs refused), a string's last two characters when they are digits (a one-digit
    /// string is that slice; trailing spaces ignored). Whatever the table's algorithm, for
    /// the rebalancer, which must select exactly the rows the router sends to a slice.
    pub fn slice_of(&self, value: &ShardValue<'_>) -> Result<u8, RuleError> {
        slice_of(self.column_type.key(value)?)
    }

    /// The node holding rows whose sharding column equals `value`.
    pub fn shard_for(&self, value: &ShardValue<'_>) -> Result<&PhysicalNode, RuleError> {
        let i = self.shard_index(value)?;
        // Every algorithm returns an index below the node count (validation
        // guarantees at least one node), so this cannot go out of bounds.
        Ok(&self.nodes[i])
    }

    /// Indexes of the nodes that can hold rows at all: every node, except that
    /// under `uid_slice` a node owning no slice (being prepared by rebalancing)
    /// holds no live rows. A scatter read (no usable condition) goes to these.
    pub fn data_nodes(&self) -> Vec<usize> {
        match &self.algorithm {
            Algorithm::UidSlice(map) => map.owners(),
            _ => (0..self.nodes.len()).collect(),
        }
    }

    /// Indexes (ascending, distinct) of the nodes that can hold a sharding value
    /// `v` with `lo <= v <= hi` (bounds as in [`std::ops::RangeBounds`]).
    ///
    /// - `range`: exactly the partitions the interval touches.
    /// - any algorithm on an integer column, interval of at most
    ///   [`ENUMERATE_RANGE_LIMIT`] values: the nodes of those values
    ///   (`uid_slice` skips negative values, which cannot be stored).
    /// - otherwise (hash-like algorithms, string columns): [`Self::data_nodes`].
    ///
    /// An empty interval gives no nodes. A bound that cannot be compared with
    /// the column (e.g. `'abc'` on an integer column) is an error; the router
    /// should then fall back to [`Self::data_nodes`] or reject the statement.
    pub fn nodes_for_range(
        &self,
        lo: Bound<ShardValue<'_>>,
        hi: Bound<ShardValue<'_>>,
    ) -> Result<Vec<usize>, RuleError> {
        if self.column_type == ColumnType::String {
            return Ok(self.data_nodes());
        }
        let lo = match lo {
            Bound::Included(v) => int_of(&v)?,
            Bound::Excluded(v) => int_of(&v)?.saturating_add(1),
            Bound::Unbounded => i128::MIN,
        };
        let hi = match hi {
            Bound::Included(v) => int_of(&v)?,
            Bound::Excluded(v) => int_of(&v)?.saturating_sub(1),
            Bound::Unbounded => i128::MAX,
        };
        let lo = match self.algorithm {
            Algorithm::UidSlice(_) => lo.max(0),
            _ => lo,
        };
        if lo > hi {
            return Ok(Vec::new());
        }
        if let Algorithm::Range(boundaries) = &self.algorithm {
            return Ok((range_index(boundaries, lo)..=range_index(boundaries, hi)).collect());
        }
        // Past 100 consecutive UIDs every slice is covered; stop enumerating there.
        let limit = match self.algorithm {
            Algorithm::UidSlice(_) => SLICES as i128,
            _ => ENUMERATE_RANGE_LIMIT,
        };
        if hi.checked_sub(lo).is_none_or(|span| span >= limit) {
            return Ok(self.data_nodes());
        }
        let mut hit = vec![false; self.nodes.len()];
        for v in lo..=hi {
            let i = match &self.algorithm {
                Algorithm::UidSlice(map) => map.node_of_slice(slice_of(Key::Int(v))?),
                a => a.index(Key::Int(v), self.nodes.len())?,
            };
            if let Some(h) = hit.get_mut(i) {
                *h = true;
            }
        }
        Ok(hit
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.then_some(i))
            .collect())
    }
}

/// A range bound on an integer column as an integer.
fn int_of(value: &ShardValue<'_>) -> Result<i128, RuleError> {
    match ColumnType::Int.key(value)? {
        Key::Int(v) => Ok(v),
        Key::Str(s) => Err(RuleError::NotAnInteger(s.into_owned())),
    }
}
