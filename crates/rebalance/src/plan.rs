//! [`MovePlan`]: which rows move where, from the rules and the newest slice-map version.
//! Pure (no I/O), so the refusals and the layout are unit-tested.
//!
//! `--slices 30-44 --to ds_4` moves those slices of every `uid_slice` table (or, with a
//! table named, of that table's binding group): for each table, every source physical table
//! owning some of the slices now (a data source may hold several physical tables of one
//! logical table), and the destination physical table, which must already be a node of the
//! table in the rules. Bound tables move together and land on the node at the same position,
//! as [`rules::Rules::with_slices`] places them. Broadcast and single tables are untouched.

use std::collections::BTreeMap;
use std::fmt;

use meta::slice_map::{self, TableSlices};
use meta::{SliceMapVersion, SliceSet};
use rules::{Algorithm, PhysicalNode, Rules, ShardedTable, TableRule, SLICES};

use crate::predicate::slice_predicate;
use crate::RebalanceError;

/// A physical table with the database its data source uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhysicalTable {
    pub data_source: String,
    pub database: String,
    pub table: String,
}

impl PhysicalTable {
    fn of(node: &PhysicalNode, rules: &Rules) -> PhysicalTable {
        PhysicalTable {
            data_source: node.data_source.clone(),
            database: rules
                .data_source(&node.data_source)
                .map(|ds| ds.database.clone())
                .unwrap_or_default(),
            table: node.table.clone(),
        }
    }

    /// `ds_1.payment`: how the move state names it.
    pub fn node_name(&self) -> String {
        format!("{}.{}", self.data_source, self.table)
    }

    /// `` `bank_1`.`payment` ``: how SQL names it on its server.
    pub fn sql_name(&self) -> String {
        format!("{}.{}", ident(&self.database), ident(&self.table))
    }
}

/// An identifier quoted for MariaDB.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// One source physical table's part of a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePart {
    pub source: PhysicalTable,
    /// The moving slices this table owns now.
    pub slices: SliceSet,
}

/// One logical table's part of a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMove {
    /// The table's rule (the sharding column, how a row's slice is computed).
    pub rule: ShardedTable,
    pub parts: Vec<SourcePart>,
    pub destination: PhysicalTable,
}

impl TableMove {
    pub fn logical(&self) -> &str {
        self.rule.name()
    }

    /// The condition selecting the rows of `slices` (the part's) in this table.
    pub fn predicate(&self, slices: SliceSet) -> String {
        slice_predicate(self.rule.column(), self.rule.column_type(), slices)
    }
}

/// A planned move of UID slices to a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovePlan {
    pub slices: SliceSet,
    /// As the DBA named it: a data source, or `ds.table`.
    pub destination: String,
    /// The slice-map version the plan was made from.
    pub from_version: u64,
    /// The map once the move is cut over: version `from_version + 1`.
    pub next_map: SliceMapVersion,
    /// Each binding group's table named in the slice map (or its first) → the moving slices:
    /// what the fence holds and the move state records.
    pub groups: BTreeMap<String, SliceSet>,
    pub tables: Vec<TableMove>,
}

impl MovePlan {
    /// Plans moving `slices` to `destination` (`ds_4`, or `ds_4.payment_1` when the data
    /// source holds several nodes of the table) for every `uid_slice` table, or (`scope` not
    /// empty) for the binding groups of the tables named, from `rules` (the rule file's) and
    /// `map` (the newest slice-map version).
    pub fn build(
        rules: &Rules,
        map: &SliceMapVersion,
        slices: SliceSet,
        destination: &str,
        scope: &[String],
    ) -> Result<MovePlan, RebalanceError> {
        if slices.is_empty() {
            return Err(RebalanceError::refused(
                "no slices named (e.g. --slices 30-44)",
            ));
        }
        let now = slice_map::apply(rules, map).map_err(|e| {
            RebalanceError::refused(format!(
                "the rule file does not fit slice-map version {}: {e}",
                map.version
            ))
        })?;
        let groups = groups_in_scope(&now, map, scope)?;
        let mut next_map = SliceMapVersion {
            version: map.version + 1,
            tables: map.tables.clone(),
        };
        let mut plan_groups = BTreeMap::new();
        let mut tables = Vec::new();
        for (named, members) in &groups {
            let rule = sharded(&now, named)?;
            let at = destination_index(rule, destination)?;
            let owners = owners(rule)?;
            let already: SliceSet = slices
                .iter()
                .filter(|&s| owners[usize::from(s)] == at)
                .fold(SliceSet::default(), |mut set, s| {
                    set.insert(s);
                    set
                });
            if !already.is_empty() {
                return Err(RebalanceError::refused(format!(
                    "slices {already} of {named} are on {} already",
                    rule.node(at).map_or_else(String::new, ToString::to_string)
                )));
            }
            let mut new_owners = owners.clone();
            for s in slices.iter() {
                new_owners[usize::from(s)] = at;
            }
            next_map
                .tables
                .insert(named.clone(), slices_text(rule, &new_owners));
            plan_groups.insert(named.clone(), slices);
            for member in members {
                tables.push(table_move(&now, member, &owners, at, slices)?);
            }
        }
        // The next version must place every moving slice on the destination and leave the
        // rest: check it as a proxy will read it.
        let next = slice_map::apply(rules, &next_map).map_err(|e| {
            RebalanceError::refused(format!("the next slice map would not fit the rules: {e}"))
        })?;
        for moved in &tables {
            let rule = sharded(&next, moved.logical())?;
            for s in 0..SLICES as u8 {
                let owner = owner_node(rule, s)?;
                let wanted = if slices.contains(s) {
                    moved.destination.node_name()
                } else {
                    owner_node(sharded(&now, moved.logical())?, s)?
                };
                if owner != wanted {
                    return Err(RebalanceError::refused(format!(
                        "the next slice map places slice {s:02} of {} on {owner}, not {wanted}",
                        moved.logical()
                    )));
                }
            }
        }
        Ok(MovePlan {
            slices,
            destination: destination.to_string(),
            from_version: map.version,
            next_map,
            groups: plan_groups,
            tables,
        })
    }

    /// The source data sources, each once, in name order.
    pub fn source_data_sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| t.parts.iter().map(|p| p.source.data_source.clone()))
            .collect();
        sources.sort();
        sources.dedup();
        sources
    }

    /// The destination data source.
    pub fn destination_data_source(&self) -> &str {
        self.tables
            .first()
            .map_or("", |t| t.destination.data_source.as_str())
    }

    /// Every source physical table with its table move.
    pub fn parts(&self) -> impl Iterator<Item = (&TableMove, &SourcePart)> {
        self.tables
            .iter()
            .flat_map(|t| t.parts.iter().map(move |p| (t, p)))
    }

    /// What the move state records: the sources and `(source node, destination node)` pairs.
    pub fn new_move(&self) -> meta::moves::NewMove {
        meta::moves::NewMove {
            slices: self.slices,
            destination: self.destination.clone(),
            tables: self.groups.clone(),
            from_version: self.from_version,
            plan: self.to_string(),
            sources: self.source_data_sources(),
            nodes: self
                .parts()
                .map(|(t, p)| (p.source.node_name(), t.destination.node_name()))
                .collect(),
        }
    }
}

/// One line per source physical table: `payment: ds_1.payment (slices 30-44) -> ds_4.payment`.
impl fmt::Display for MovePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slices {} to {} (slice map version {} -> {})",
            self.slices, self.destination, self.from_version, self.next_map.version
        )?;
        for (table, part) in self.parts() {
            write!(
                f,
                "\n  {}: {} (slices {}) -> {}",
                table.logical(),
                part.source.node_name(),
                part.slices,
                table.destination.node_name()
            )?;
        }
        Ok(())
    }
}

/// The binding groups to move: each as the table the slice map names for it (or its first
/// member) with its members; every `uid_slice` table's, or those of the tables in `scope`.
fn groups_in_scope(
    rules: &Rules,
    map: &SliceMapVersion,
    scope: &[String],
) -> Result<BTreeMap<String, Vec<String>>, RebalanceError> {
    let candidates: Vec<&ShardedTable> = if scope.is_empty() {
        rules
            .tables
            .values()
            .filter_map(|t| match t {
                TableRule::Sharded(s) if matches!(s.algorithm(), Algorithm::UidSlice(_)) => Some(s),
                _ => None,
            })
            .collect()
    } else {
        scope
            .iter()
            .map(|name| uid_slice_table(rules, name))
            .collect::<Result<_, _>>()?
    };
    if candidates.is_empty() {
        return Err(RebalanceError::refused(
            "the rules have no 'uid_slice' table",
        ));
    }
    let mut groups = BTreeMap::new();
    for table in candidates {
        let members: Vec<String> = table
            .binding_group()
            .and_then(|g| rules.binding_groups.get(g))
            .map_or_else(|| vec![table.name().to_string()], |g| g.tables.clone());
        let named = members
            .iter()
            .find(|m| map.tables.contains_key(*m))
            .or(members.first())
            .cloned()
            .unwrap_or_else(|| table.name().to_string());
        groups.insert(named, members);
    }
    Ok(groups)
}

/// The `uid_slice` table `name` (matched as the router matches names); why not otherwise.
fn uid_slice_table<'a>(rules: &'a Rules, name: &str) -> Result<&'a ShardedTable, RebalanceError> {
    let rule = rules.tables.get(name).or_else(|| {
        rules
            .tables
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    });
    match rule {
        Some(TableRule::Sharded(s)) if matches!(s.algorithm(), Algorithm::UidSlice(_)) => Ok(s),
        Some(TableRule::Sharded(s)) => Err(RebalanceError::refused(format!(
            "{name} is sharded by '{}', not 'uid_slice': only UID slices move",
            s.algorithm().name()
        ))),
        Some(TableRule::Broadcast(_)) => Err(RebalanceError::refused(format!(
            "{name} is a broadcast table: it is on every data source already and does not move"
        ))),
        Some(TableRule::Single(_)) => Err(RebalanceError::refused(format!(
            "{name} is a single table: it does not move with UID slices"
        ))),
        None => Err(RebalanceError::refused(format!(
            "{name} is not a table of the rules"
        ))),
    }
}

fn sharded<'a>(rules: &'a Rules, name: &str) -> Result<&'a ShardedTable, RebalanceError> {
    rules
        .sharded(name)
        .ok_or_else(|| RebalanceError::refused(format!("{name} is not a sharded table")))
}

/// The node index owning each slice.
fn owners(rule: &ShardedTable) -> Result<Vec<usize>, RebalanceError> {
    match rule.algorithm() {
        Algorithm::UidSlice(map) => Ok((0..SLICES as u8).map(|s| map.node_of_slice(s)).collect()),
        other => Err(RebalanceError::refused(format!(
            "{} is sharded by '{}', not 'uid_slice'",
            rule.name(),
            other.name()
        ))),
    }
}

fn owner_node(rule: &ShardedTable, slice: u8) -> Result<String, RebalanceError> {
    let owners = owners(rule)?;
    Ok(rule
        .node(owners[usize::from(slice)])
        .map_or_else(String::new, ToString::to_string))
}

/// The index of `destination` among `rule`'s nodes, resolved as the rule file's `slices`
/// targets are: a data source holding one node of the table, or `ds.table`.
fn destination_index(rule: &ShardedTable, destination: &str) -> Result<usize, RebalanceError> {
    let nodes = rule.all_nodes();
    if let Some((ds, table)) = destination.split_once('.') {
        return nodes
            .iter()
            .position(|n| n.data_source == ds && n.table == table)
            .ok_or_else(|| {
                RebalanceError::refused(format!(
                    "{destination} is not a node of {} in the rules (its nodes: {}); add it to the table's nodes first",
                    rule.name(),
                    node_list(nodes)
                ))
            });
    }
    let on: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].data_source == destination)
        .collect();
    match on.as_slice() {
        [i] => Ok(*i),
        [] => Err(RebalanceError::refused(format!(
            "data source '{destination}' holds no node of {} in the rules (its nodes: {}); add it to the table's nodes first",
            rule.name(),
            node_list(nodes)
        ))),
        _ => Err(RebalanceError::refused(format!(
            "data source '{destination}' holds {} nodes of {}: name one as '{destination}.<table>'",
            on.len(),
            rule.name()
        ))),
    }
}

fn node_list(nodes: &[PhysicalNode]) -> String {
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rule-file `slices` text of `owners`: runs of slices per node, each node named by its
/// data source when that holds one node of the table, else as `ds.table`.
fn slices_text(rule: &ShardedTable, owners: &[usize]) -> TableSlices {
    let nodes = rule.all_nodes();
    let target = |i: usize| {
        let node = &nodes[i];
        if nodes
            .iter()
            .filter(|n| n.data_source == node.data_source)
            .count()
            == 1
        {
            node.data_source.clone()
        } else {
            node.to_string()
        }
    };
    let mut out = TableSlices::new();
    let mut start = 0usize;
    for s in 1..=owners.len() {
        if s == owners.len() || owners[s] != owners[start] {
            let key = if s - 1 == start {
                format!("{start:02}")
            } else {
                format!("{start:02}-{:02}", s - 1)
            };
            out.insert(key, target(owners[start]));
            start = s;
        }
    }
    out
}

/// `member`'s move: the source physical tables owning moving slices now, and the node at
/// the destination's position.
fn table_move(
    rules: &Rules,
    member: &str,
    group_owners: &[usize],
    at: usize,
    slices: SliceSet,
) -> Result<TableMove, RebalanceError> {
    let rule = sharded(rules, member)?;
    let owners = owners(rule)?;
    if owners != group_owners {
        return Err(RebalanceError::refused(format!(
            "{member} does not place its slices as the rest of its binding group does"
        )));
    }
    let destination = rule.node(at).ok_or_else(|| {
        RebalanceError::refused(format!(
            "{member} has no node at the destination's position {at} (its binding group's layouts differ)"
        ))
    })?;
    let mut by_node: BTreeMap<usize, SliceSet> = BTreeMap::new();
    for s in slices.iter() {
        by_node.entry(owners[usize::from(s)]).or_default().insert(s);
    }
    let parts = by_node
        .into_iter()
        .filter_map(|(i, slices)| {
            rule.node(i).map(|node| SourcePart {
                source: PhysicalTable::of(node, rules),
                slices,
            })
        })
        .collect();
    Ok(TableMove {
        rule: rule.clone(),
        parts,
        destination: PhysicalTable::of(destination, rules),
    })
}

#[cfg(test)]
mod tests;
