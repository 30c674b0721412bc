//! [`RouteError`]: why a statement cannot be routed, as the client will see it.
//!
//! Every variant maps to a MySQL error code and SQLSTATE ([`RouteError::code`],
//! [`RouteError::sqlstate`]) and a message that names the construct or table
//! in the way ([`RouteError::message`]). The router fails closed: when it
//! cannot be sure where rows live it returns one of these, never a guess.

/// A statement the router will not route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The text is not SQL the parser understands (and it names a table of
    /// the rules, so it cannot simply go to the default data source).
    #[error("You have an error in your SQL syntax: {0}")]
    Parse(String),
    /// The text holds no statement.
    #[error("Query was empty")]
    Empty,
    /// A construct the router cannot run correctly (yet); the text names it.
    #[error("This version of dbmesh doesn't yet support '{0}'")]
    NotSupported(String),
    /// An UPDATE (or ON DUPLICATE KEY UPDATE) would move rows to another shard.
    #[error(
        "Updating the sharding column {table}.{column} is only possible when the new value \
         is on the same shard as every row the statement can change (a point update); \
         delete and re-insert the row instead"
    )]
    ShardingKeyUpdate {
        /// The logical table.
        table: String,
        /// Its sharding column.
        column: String,
    },
    /// An INSERT into a sharded table does not give the sharding column.
    #[error(
        "Field '{column}' doesn't have a default value (it is the sharding column of {table})"
    )]
    MissingShardingKey {
        /// The logical table.
        table: String,
        /// Its sharding column.
        column: String,
    },
    /// An INSERT gives NULL for the sharding column.
    #[error("Column '{column}' cannot be null (it is the sharding column of {table})")]
    NullShardingKey {
        /// The logical table.
        table: String,
        /// Its sharding column.
        column: String,
    },
    /// An INSERT gives a sharding value the rule cannot place.
    #[error("Cannot route by the value of sharding column {table}.{column}: {reason}")]
    ShardingValue {
        /// The logical table.
        table: String,
        /// Its sharding column.
        column: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// UPDATE/DELETE without WHERE on a sharded table, which would change every shard.
    #[error(
        "{statement} without a WHERE clause on sharded table {table} would change every shard; \
         add a WHERE clause or enable the router option allow_full_scatter_write"
    )]
    FullScatterWrite {
        /// `UPDATE` or `DELETE`.
        statement: &'static str,
        /// The logical table.
        table: String,
    },
    /// The number of bound parameters does not match the placeholders.
    #[error("Incorrect arguments to EXECUTE: the statement has {expected} placeholders, {got} values were bound")]
    ParamCount {
        /// `?` in the statement.
        expected: usize,
        /// Values bound.
        got: usize,
    },
    /// An INSERT needs ids from the sequence that fills a column of its table;
    /// [`crate::Router::route_filled`] routes it with them.
    #[error(
        "The INSERT into {table} takes {count} id(s) from sequence {sequence} for column \
         {column}; dbmesh fills them in only when it runs the statement by itself"
    )]
    IdsNeeded {
        /// The sequence, as named in the rule file.
        sequence: String,
        /// The logical table.
        table: String,
        /// The filled column.
        column: String,
        /// Ids needed: one per row that omits the column or gives NULL or 0.
        count: usize,
    },
    /// Routing needs a table's column list (an INSERT without a column list, `*` over
    /// `information_schema`); [`crate::Router::learn_columns`] gives it.
    #[error(
        "dbmesh needs the column list of {}.{} on data source {} to route this statement",
        from.database,
        from.table,
        from.data_source
    )]
    ColumnsNeeded {
        /// Where to read the list.
        from: crate::ColumnSource,
    },
    /// An INSERT without a column list gives a row more or fewer values than the table has
    /// columns (as far as the router knows them).
    #[error("Column count doesn't match value count at row {row}")]
    ColumnCount {
        /// The table as the statement names it.
        table: String,
        /// The row, counted from 1.
        row: usize,
        /// Where the list was read.
        from: crate::ColumnSource,
    },
    /// A bug: the router's own invariants do not hold.
    #[error("dbmesh router internal error: {0}")]
    Internal(String),
}

/// What the client of a statement the router will not route sees.
impl protocol::ClientError for RouteError {
    fn code(&self) -> u16 {
        match self {
            RouteError::Parse(_) => 1064,
            RouteError::Empty => 1065,
            RouteError::NotSupported(_)
            | RouteError::ShardingKeyUpdate { .. }
            | RouteError::ShardingValue { .. }
            | RouteError::IdsNeeded { .. }
            | RouteError::ColumnsNeeded { .. } => 1235,
            RouteError::ColumnCount { .. } => 1136,
            RouteError::MissingShardingKey { .. } => 1364,
            RouteError::NullShardingKey { .. } => 1048,
            RouteError::FullScatterWrite { .. } => 1175,
            RouteError::ParamCount { .. } => 1210,
            RouteError::Internal(_) => 1105,
        }
    }

    fn sqlstate(&self) -> &str {
        match self {
            RouteError::Parse(_)
            | RouteError::Empty
            | RouteError::NotSupported(_)
            | RouteError::ShardingKeyUpdate { .. }
            | RouteError::ShardingValue { .. }
            | RouteError::IdsNeeded { .. }
            | RouteError::ColumnsNeeded { .. } => "42000",
            RouteError::ColumnCount { .. } => "21S01",
            RouteError::NullShardingKey { .. } => "23000",
            RouteError::MissingShardingKey { .. }
            | RouteError::FullScatterWrite { .. }
            | RouteError::ParamCount { .. }
            | RouteError::Internal(_) => "HY000",
        }
    }

    fn client_message(&self) -> std::borrow::Cow<'static, str> {
        self.to_string().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::ClientError;

    #[test]
    fn codes() {
        let e = RouteError::NotSupported("ORDER BY across shards".into());
        assert_eq!((e.code(), e.sqlstate()), (1235, "42000"));
        assert_eq!(
            e.client_message(),
            "This version of dbmesh doesn't yet support 'ORDER BY across shards'"
        );
        assert_eq!(RouteError::Parse("x".into()).code(), 1064);
    }
}
