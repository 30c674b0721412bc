//! dbmesh rule files: the model, its validation, and the sharding algorithms.
//!
//! A rule file (TOML, documented in `docs/configuration.md`) says where the
//! proxy listens, who may log in, which backend databases exist (data
//! sources), and where every logical table lives: sharded over many physical
//! tables, broadcast to every data source, single on one, or — when not named
//! — on the default data source. [`load_file`] / [`parse_str`] turn it into an
//! immutable [`Rules`] snapshot, reporting every problem at once; the router
//! then asks the snapshot, without I/O, where a table and a sharding value
//! live ([`Rules::table_rule`], [`ShardedTable::shard_for`],
//! [`ShardedTable::nodes_for_range`]). This crate knows nothing of SQL text.
//!
//! ```
//! use std::ops::Bound;
//! use std::path::Path;
//! use rules::{parse_str, ShardValue, TableRoute};
//!
//! let rules = parse_str(
//!     r#"
//!     [[users]]
//!     name = "app"
//!     password = "secret"
//!     [schema]
//!     name = "bank"
//!     default_data_source = "ds_0"
//!     [data_sources.ds_0]
//!     address = "127.0.0.1:3306"
//!     user = "root"
//!     database = "bank_0"
//!     [data_sources.ds_1]
//!     address = "127.0.0.1:3306"
//!     user = "root"
//!     database = "bank_1"
//!     [tables.payment]
//!     kind = "sharded"
//!     column = "uid"
//!     algorithm = "uid_slice"
//!     nodes = "ds_{0..1}"
//!     slices = { "00-49" = "ds_0", "50-99" = "ds_1" }
//!     "#,
//!     Path::new("bank.toml"),
//! )?;
//! let TableRoute::Sharded(payment) = rules.table_rule("payment") else { unreachable!() };
//! // uid 1234 is slice 34: ds_0, table `payment` in database bank_0.
//! let node = payment.shard_for(&ShardValue::Int(1234))?;
//! assert_eq!((node.data_source.as_str(), node.table.as_str()), ("ds_0", "payment"));
//! // uid BETWEEN 1040 AND 1060 touches slices 40..60: both nodes (indexes into all_nodes()).
//! let hit = payment.nodes_for_range(
//!     Bound::Included(ShardValue::Int(1040)),
//!     Bound::Included(ShardValue::Int(1060)),
//! )?;
//! assert_eq!(hit, [0, 1]);
//! assert_eq!(rules.table_rule("audit_log"), TableRoute::Default { data_source: "ds_0" });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Sequences (`[sequences.<name>]`, global id generators) are validated here
//! into [`SequenceRule`]s; the `sequence` crate runs them, and
//! [`Rules::sequence_for_column`] tells the router which column one fills.
//!
//! Modules: `config` (serde model), `validate` (checks and compilation),
//! `expr` (node expressions), `algorithm` (value → node index), `hashing`
//! (the fixed CRC-32 and XXH64), `table` (compiled table rules), `sequence`
//! (compiled sequence rules), `rules` (the snapshot), `error`.

mod algorithm;
pub mod collation;
mod config;
mod error;
mod expr;
mod hashing;
mod names;
mod rules;
mod sequence;
mod table;
mod validate;

use std::path::Path;

pub use algorithm::{
    Algorithm, ColumnType, HashRing, ShardValue, SliceMap, DEFAULT_VIRTUAL_NODES, SLICES,
};
pub use config::{
    AdminToken, AuthPlugin, BackendTls, BindingGroupConfig, DataSourceConfig, PoolConfig,
    ProxyConfig, ReadYourWrites, ReadsWhenPrimaryDown, ReplicaConfig, ReplicationConfig, RuleFile,
    SchemaConfig, SequenceConfig, TableConfig, TlsConfig, TransactionMode, UserConfig,
};
pub use error::{ConfigError, Problem, RuleError};
pub use hashing::{crc32, xxh64};
pub use names::LogicalNames;
pub use rules::{BindingGroup, Rules};
pub use sequence::{
    ColumnRef, SegmentRule, SequenceKind, SequenceRule, SnowflakeRule,
    DEFAULT_MAX_CLOCK_BACKWARD_MS, DEFAULT_SEGMENT_MAX, DEFAULT_SEGMENT_MAX_RANGE,
    DEFAULT_SEGMENT_START, DEFAULT_SEGMENT_STEP, DEFAULT_SNOWFLAKE_EPOCH_MS, MAX_WORKER_ID,
};
pub use table::{
    BroadcastTable, PhysicalNode, ShardedTable, TableRoute, TableRule, ENUMERATE_RANGE_LIMIT,
};
pub use validate::check_admin_token;

/// Reads, parses and validates the rule file at `path`.
pub fn load_file(path: &Path) -> Result<Rules, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::one(path, "", format!("cannot read the rule file: {e}")))?;
    parse_str(&text, path)
}

/// Parses and validates rule-file text. `origin` is the file the text came
/// from: it prefixes every message and relative paths are resolved against
/// its directory.
pub fn parse_str(text: &str, origin: &Path) -> Result<Rules, ConfigError> {
    validate::parse(text, origin)
}
