//! [`Rules`]: one validated, immutable snapshot of a rule file.
//!
//! The proxy holds a snapshot (behind an `Arc`, swapped whole on reload) and
//! asks it where a logical table lives ([`Rules::table_rule`]); the answer
//! borrows from the snapshot, so routing a statement allocates nothing here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::algorithm::Algorithm;
use crate::config::{DataSourceConfig, ProxyConfig, ReplicationConfig, SchemaConfig, UserConfig};
use crate::error::ConfigError;
use crate::sequence::SequenceRule;
use crate::table::{PhysicalNode, ShardedTable, TableRoute, TableRule};
use crate::validate::build_slices;

/// A validated rule file. Build it with [`crate::load_file`] or [`crate::parse_str`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The rule file this snapshot came from (re-read on reload).
    pub origin: PathBuf,
    /// `[proxy]`, with TLS paths made absolute.
    pub proxy: ProxyConfig,
    /// `[[users]]`; names are unique.
    pub users: Vec<UserConfig>,
    /// `[data_sources.<name>]`.
    pub data_sources: BTreeMap<String, DataSourceConfig>,
    /// `[schema]`.
    pub schema: SchemaConfig,
    /// `[tables.<name>]`, compiled; keys as written in the file.
    pub tables: BTreeMap<String, TableRule>,
    /// `[[binding_groups]]`; [`ShardedTable::binding_group`] indexes this.
    pub binding_groups: Vec<BindingGroup>,
    /// `[sequences.<name>]`, compiled; keys as written in the file.
    pub sequences: BTreeMap<String, SequenceRule>,
    /// `[replication]`.
    pub replication: ReplicationConfig,
}

/// Sharded tables that route equal keys to the same data source, so joins on
/// the key stay on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingGroup {
    /// The member tables, as listed in the rule file.
    pub tables: Vec<String>,
}

impl Rules {
    /// How transactions on several data sources commit: `schema.transaction_mode`, or when
    /// unset `xa` if there is a meta data source to log decisions in, else `local`.
    pub fn transaction_mode(&self) -> crate::TransactionMode {
        self.schema
            .transaction_mode
            .unwrap_or(if self.proxy.meta_data_source.is_some() {
                crate::TransactionMode::Xa
            } else {
                crate::TransactionMode::Local
            })
    }

    /// Where `logical_table` lives. Names are matched exactly first, then
    /// ASCII case-insensitively (so `PAYMENT` is never mistaken for an
    /// unnamed table and sent to the default data source). Tables not named
    /// in the rules are [`TableRoute::Default`].
    pub fn table_rule(&self, logical_table: &str) -> TableRoute<'_> {
        match self.lookup(logical_table) {
            Some(TableRule::Sharded(s)) => TableRoute::Sharded(s),
            Some(TableRule::Broadcast(b)) => TableRoute::Broadcast(b),
            Some(TableRule::Single(n)) => TableRoute::Single(n),
            None => TableRoute::Default {
                data_source: &self.schema.default_data_source,
            },
        }
    }

    /// The sharded table named `logical_table` (matched as in [`Self::table_rule`]).
    pub fn sharded(&self, logical_table: &str) -> Option<&ShardedTable> {
        match self.lookup(logical_table) {
            Some(TableRule::Sharded(s)) => Some(s),
            _ => None,
        }
    }

    fn lookup(&self, name: &str) -> Option<&TableRule> {
        self.tables.get(name).or_else(|| {
            self.tables
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }

    /// The sequence named `name`: exact match first, then ASCII case-insensitively
    /// (names differing only in case are rejected by validation).
    pub fn sequence(&self, name: &str) -> Option<&SequenceRule> {
        self.sequences.get(name).or_else(|| {
            self.sequences
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
    }

    /// The sequence that fills `column` of logical table `table` when an INSERT omits it
    /// (or gives NULL/0). Both names are matched ASCII case-insensitively.
    pub fn sequence_for_column(&self, table: &str, column: &str) -> Option<&SequenceRule> {
        self.sequences.values().find(|s| {
            s.fills.as_ref().is_some_and(|f| {
                f.table.eq_ignore_ascii_case(table) && f.column.eq_ignore_ascii_case(column)
            })
        })
    }

    /// The sequence that fills a column of logical table `table` (matched ASCII
    /// case-insensitively); validation allows at most one per table.
    pub fn sequence_for_table(&self, table: &str) -> Option<&SequenceRule> {
        self.sequences.values().find(|s| {
            s.fills
                .as_ref()
                .is_some_and(|f| f.table.eq_ignore_ascii_case(table))
        })
    }

    /// The data source named `name`.
    pub fn data_source(&self, name: &str) -> Option<&DataSourceConfig> {
        self.data_sources.get(name)
    }

    /// The user named `name` (exact match, as MySQL user names are case-sensitive).
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// Whether rows of `a` and `b` with equal sharding keys always live on
    /// the same data source: both sharded and in one binding group (or the same table).
    pub fn are_bound(&self, a: &str, b: &str) -> bool {
        match (self.sharded(a), self.sharded(b)) {
            (Some(x), Some(y)) => {
                x.name == y.name
                    || (x.binding_group.is_some() && x.binding_group == y.binding_group)
            }
            _ => false,
        }
    }

    /// The logical table a physical table belongs to, for showing logical
    /// names (`SHOW TABLES`, `information_schema`). `None` for tables that
    /// are not nodes of a named table (they keep their own name).
    pub fn logical_name_of(&self, data_source: &str, physical_table: &str) -> Option<&str> {
        self.tables.iter().find_map(|(name, rule)| {
            let is_node =
                |n: &PhysicalNode| n.data_source == data_source && n.table == physical_table;
            let hit = match rule {
                TableRule::Sharded(s) => s.nodes.iter().any(is_node),
                TableRule::Broadcast(b) => b.nodes.iter().any(is_node),
                TableRule::Single(n) => is_node(n),
            };
            hit.then_some(name.as_str())
        })
    }

    /// A new snapshot with the UID slices of `table` (and of every table
    /// bound to it) replaced; the rest is shared unchanged. This is the step
    /// online rebalancing takes after moving slices.
    ///
    /// `slices` is written as in the rule file (`"00-29" = "ds_0"`); targets
    /// are resolved against `table`'s nodes, and bound tables get the node at
    /// the same position (a binding group has the same data source layout).
    pub fn with_slices(
        &self,
        table: &str,
        slices: &BTreeMap<String, String>,
    ) -> Result<Rules, ConfigError> {
        let at = format!("tables.{table}.slices");
        let Some(t) = self.sharded(table) else {
            return Err(ConfigError::one(
                &self.origin,
                &at,
                format!("'{table}' is not a sharded table"),
            ));
        };
        if !matches!(t.algorithm, Algorithm::UidSlice(_)) {
            return Err(ConfigError::one(
                &self.origin,
                &at,
                format!(
                    "'{table}' uses algorithm '{}', not 'uid_slice'",
                    t.algorithm.name()
                ),
            ));
        }
        let map = build_slices(slices, &t.nodes, &self.data_sources).map_err(|errors| {
            ConfigError::new(
                errors
                    .into_iter()
                    .map(|message| crate::Problem {
                        origin: self.origin.clone(),
                        location: at.clone(),
                        message,
                    })
                    .collect(),
            )
        })?;
        let members: Vec<String> = t
            .binding_group
            .and_then(|g| self.binding_groups.get(g))
            .map_or_else(|| vec![t.name.clone()], |g| g.tables.clone());
        let mut next = self.clone();
        for name in members {
            if let Some(TableRule::Sharded(s)) = next.tables.get_mut(&name) {
                s.algorithm = Algorithm::UidSlice(map.clone());
            }
        }
        Ok(next)
    }
}
