//! The rule file as written: serde structs with their defaults.
//!
//! Everything here is what TOML deserializes into, before validation. The
//! proxy, user and data-source sections are kept as they are in the validated
//! [`crate::Rules`]; the `[tables.*]`, `[[binding_groups]]` and `[sequences.*]`
//! sections are raw ([`TableConfig`], [`BindingGroupConfig`], [`SequenceConfig`]) and
//! are compiled by `validate` into [`crate::TableRule`]s and [`crate::SequenceRule`]s. Fields whose meaning depends on other
//! fields (a table's `kind`, `algorithm`, …) are plain strings here so that
//! validation can report every problem with its location instead of stopping
//! at the first serde error. `docs/configuration.md` documents every field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The whole rule file, as parsed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// `[proxy]`: listener and limits; every field has a default.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[[users]]`: the accounts clients log in with.
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// `[data_sources.<name>]`: the backend databases.
    #[serde(default)]
    pub data_sources: BTreeMap<String, DataSourceConfig>,
    /// `[schema]`: the logical database and where unnamed tables live.
    pub schema: SchemaConfig,
    /// `[tables.<name>]`: one rule per logical table that is not on the default data source.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// `[[binding_groups]]`: sharded tables that must route the same key to the same data source.
    #[serde(default)]
    pub binding_groups: Vec<BindingGroupConfig>,
    /// `[sequences.<name>]`: global id generators, optionally filling a table's column.
    #[serde(default)]
    pub sequences: BTreeMap<String, SequenceConfig>,
    /// `[replication]`: health checks of primaries and replicas, and how reads use replicas.
    #[serde(default)]
    pub replication: ReplicationConfig,
}

/// `[proxy]`: what the proxy listens on and its limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// MySQL protocol listener, `host:port`. Default `127.0.0.1:3307`.
    pub listen: String,
    /// Admin HTTP listener (`/metrics`, `/health`, `POST /reload`). Default `127.0.0.1:9307`.
    pub admin_listen: String,
    /// The bearer token every admin request that changes something must carry (at least
    /// 16 characters); the environment variable `DBMESH_ADMIN_TOKEN` takes precedence.
    /// Without either, those requests are refused.
    pub admin_token: Option<AdminToken>,
    /// `/health` and `/metrics` answer without the token. Default true.
    pub admin_status_public: bool,
    /// Client sessions (logged-in connections) at once. Default 10000. Connections still
    /// logging in do not count: `max_authenticating` bounds those.
    pub max_connections: usize,
    /// Connections that may be logging in at once; one more closes the one that has been
    /// logging in longest. Default 1000.
    pub max_authenticating: usize,
    /// How long a client has for its whole login (greeting to OK, TLS included), in
    /// milliseconds. Default 10000 (MySQL's `connect_timeout`).
    pub login_timeout_ms: u64,
    /// How long one write to a client may wait for the client to read, in milliseconds; a
    /// client that stops reading for longer is disconnected and the backend connection that
    /// was streaming to it is closed (MySQL's `net_write_timeout`). Default 60000.
    pub net_write_timeout_ms: u64,
    /// Largest packet accepted from a client, in bytes. Default 64 MiB.
    pub max_allowed_packet: usize,
    /// Overrides the server version string sent in the handshake.
    pub server_version: Option<String>,
    /// At start, `CREATE DATABASE IF NOT EXISTS` for every data source's database. Default false.
    pub create_databases: bool,
    /// Seconds an idle client connection is kept. Default 28800 (MySQL's `wait_timeout`).
    pub idle_timeout_secs: u64,
    /// Threads serving client sessions, each running its own event loop; 0 means one per
    /// CPU.
    pub worker_threads: usize,
    /// `[proxy.tls]`: TLS for clients; absent means no TLS.
    pub tls: Option<TlsConfig>,
    /// The data source holding dbmesh's own `meta` tables (sequence blocks, worker-id
    /// leases). Required once a segment sequence or a leased snowflake worker id is configured.
    pub meta_data_source: Option<String>,
    /// Bytes of GROUP BY / DISTINCT state one statement merged across shards may hold;
    /// past it the statement fails with error 1038. Default 64 MiB.
    pub merge_memory_limit: usize,
    /// Largest OFFSET of a statement merged across shards (each shard returns offset +
    /// count rows, so the cost grows with it); past it error 1235. Default 1000000.
    pub max_merge_offset: u64,
    /// Prepared statements one session may hold; past it error 1461. Default 1024.
    pub max_prepared_statements: usize,
    /// The longest a client statement (a read or a write) may run, in milliseconds, across all
    /// its shards and the proxy's merge: past it the backends' work is interrupted and the
    /// client gets 1969, as from MariaDB's `max_statement_time`. Each session starts with it
    /// (or its user's `max_statement_time_ms`) and may change it with `SET max_statement_time`.
    /// 0 means no limit. Default 0.
    pub max_statement_time_ms: u64,
    /// Statements that take at least this many milliseconds (from the command's arrival to
    /// the last byte of the answer) are logged as one `slow_statement` event each. 0 turns
    /// the slow log off. Default 1000. Reloadable.
    pub slow_statement_ms: u64,
    /// The query log: one `statement` event for one statement in every this many (1: all).
    /// 0 turns it off. Default 0. Reloadable.
    pub query_log_every: u64,
    /// Whether those events carry the statement's text as the client sent it, literals
    /// included. Default false: they carry its fingerprint, literals replaced by `?`, so a
    /// log never holds customers' data unless asked to. Reloadable.
    pub log_statement_text: bool,
    /// This proxy's number among the proxies serving one set of backends (0-255): the high 8
    /// bits of its session ids, so ids from different proxies never collide. Default 0.
    pub number: u8,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:3307".to_owned(),
            admin_listen: "127.0.0.1:9307".to_owned(),
            admin_token: None,
            admin_status_public: true,
            max_connections: 10_000,
            max_authenticating: 1_000,
            login_timeout_ms: 10_000,
            net_write_timeout_ms: 60_000,
            max_allowed_packet: 64 * 1024 * 1024,
            server_version: None,
            create_databases: false,
            idle_timeout_secs: 28_800,
            worker_threads: 0,
            tls: None,
            meta_data_source: None,
            merge_memory_limit: 64 * 1024 * 1024,
            max_merge_offset: 1_000_000,
            max_prepared_statements: 1024,
            max_statement_time_ms: 0,
            slow_statement_ms: 1000,
            query_log_every: 0,
            log_statement_text: false,
            number: 0,
        }
    }
}

/// The admin API's bearer token. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(pub String);

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[proxy.tls]`: certificate and key for client TLS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain. Relative paths are resolved against the rule file's directory.
    pub cert: PathBuf,
    /// PEM private key. Relative paths are resolved against the rule file's directory.
    pub key: PathBuf,
    /// Refuse clients that do not switch to TLS. Default false.
    #[serde(default)]
    pub require: bool,
}

/// `[[users]]`: one account clients log in with. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name; unique.
    pub name: String,
    /// Clear-text password (the proxy needs it to verify both auth plugins).
    #[serde(default)]
    pub password: String,
    /// Authentication plugin offered first; absent lets the proxy choose.
    #[serde(default)]
    pub auth_plugin: Option<AuthPlugin>,
    /// The process privilege: the user sees every session in the process list and may kill
    /// any, not only its own. Default false.
    #[serde(default)]
    pub process: bool,
    /// The user's sessions' statement time limit in milliseconds, in place of
    /// `proxy.max_statement_time_ms`; 0 means no limit.
    #[serde(default)]
    pub max_statement_time_ms: Option<u64>,
}

/// A MySQL authentication plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthPlugin {
    /// `mysql_native_password` (SHA-1 scramble).
    MysqlNativePassword,
    /// `caching_sha2_password` (SHA-256 scramble; the MySQL 8 default).
    CachingSha2Password,
}

impl AuthPlugin {
    /// The plugin name as it appears on the wire.
    pub fn name(self) -> &'static str {
        match self {
            AuthPlugin::MysqlNativePassword => "mysql_native_password",
            AuthPlugin::CachingSha2Password => "caching_sha2_password",
        }
    }
}

/// `[data_sources.<name>]`: one backend database. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSourceConfig {
    /// `host:port` of the MySQL/MariaDB server (IPv6 as `[::1]:3306`).
    pub address: String,
    /// Backend user.
    pub user: String,
    /// Backend password. Default empty.
    #[serde(default)]
    pub password: String,
    /// The database on that server; every physical table of this data source lives in it.
    pub database: String,
    /// `[data_sources.<name>.pool]`: connection pool limits (each replica has a pool of the
    /// same limits).
    #[serde(default)]
    pub pool: PoolConfig,
    /// Whether dbmesh's connections to this data source's servers use TLS. Default
    /// `preferred`.
    #[serde(default)]
    pub tls: BackendTls,
    /// PEM file of the certificate authorities a server's certificate must chain to
    /// (`tls = "verify_identity"`). Relative paths are resolved against the rule file's
    /// directory.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// `[[data_sources.<name>.replicas]]`: servers replicating this one (the primary); reads
    /// that may see slightly old data go to them.
    #[serde(default)]
    pub replicas: Vec<ReplicaConfig>,
}

/// `tls` of a data source: MySQL's `--ssl-mode` for dbmesh's backend connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendTls {
    /// Plaintext, even where the server offers TLS.
    Disabled,
    /// TLS where the server offers it, plaintext where it does not; the certificate is not
    /// checked.
    #[default]
    Preferred,
    /// TLS or no connection; the certificate is not checked (it encrypts, it does not
    /// authenticate the server).
    Required,
    /// TLS with a certificate that chains to `tls_ca` and names the host of the server's
    /// address.
    VerifyIdentity,
}

/// `[[data_sources.<name>.replicas]]`: one replica of a data source's primary. It is reached
/// with the primary's user, password and database.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaConfig {
    /// `host:port` of the replica.
    pub address: String,
    /// Share of the data source's replica reads, relative to the other replicas. Default 1;
    /// 0 keeps the replica out of reads (a standby for failover).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// How reads after a session's own write find a replica that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadYourWrites {
    /// Wait on a replica for the write's GTID (`MASTER_GTID_WAIT`) up to `gtid_wait_ms`,
    /// else read from the primary; a server without GTIDs falls back to `window`.
    Gtid,
    /// Read from the primary for `read_your_writes_window_ms` after each write.
    Window,
}

/// `reads_when_primary_down`: what reads of a data source do while its primary is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadsWhenPrimaryDown {
    /// Replicas that applied everything they received keep serving reads (of data as old as
    /// the last write they saw); a session's read only where its last write is applied.
    Replicas,
    /// Replicas without their primary get no reads, so reads fail with the primary's error.
    Fail,
}

/// `[replication]`: backend health checks and the read/write split.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// How often every primary and replica is checked, in milliseconds. Default 1000.
    pub health_check_interval_ms: u64,
    /// How long one check (connect, ping, replication status) may take. Default 1000.
    pub health_check_timeout_ms: u64,
    /// A replica further behind its primary than this (`Seconds_Behind_Master`) gets no
    /// reads. Default 5.
    pub max_replica_lag_secs: u64,
    /// Default `replicas`.
    pub reads_when_primary_down: ReadsWhenPrimaryDown,
    /// Default `gtid`.
    pub read_your_writes: ReadYourWrites,
    /// How long a read after the session's write may wait for a replica to apply it before
    /// it goes to the primary, in milliseconds. Default 50.
    pub gtid_wait_ms: u64,
    /// With `read_your_writes = "window"` (or without GTIDs): reads go to the primary for
    /// this long after the session's last write, in milliseconds. Default 1000.
    pub read_your_writes_window_ms: u64,
    /// Writes of each data source go to the one of its servers that is writable and
    /// replicates from nothing, as an HA tool's promotion leaves it (checked every health
    /// check); two such servers stop the data source's writes (split brain). Default false.
    pub follow_topology: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            health_check_interval_ms: 1_000,
            health_check_timeout_ms: 1_000,
            max_replica_lag_secs: 5,
            reads_when_primary_down: ReadsWhenPrimaryDown::Replicas,
            read_your_writes: ReadYourWrites::Gtid,
            gtid_wait_ms: 50,
            read_your_writes_window_ms: 1_000,
            follow_topology: false,
        }
    }
}

impl fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserConfig")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("auth_plugin", &self.auth_plugin)
            .field("process", &self.process)
            .field("max_statement_time_ms", &self.max_statement_time_ms)
            .finish()
    }
}

impl fmt::Debug for DataSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataSourceConfig")
            .field("address", &self.address)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("pool", &self.pool)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

/// `[data_sources.<name>.pool]`: connection pool limits of one data source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Most connections open at once. Default 64.
    pub max: usize,
    /// Idle connections kept open. Default 0.
    pub min_idle: usize,
    /// How long a statement waits for a free connection, in milliseconds. Default 5000.
    pub acquire_timeout_ms: u64,
    /// How long opening the TCP connection to a server may take, in milliseconds. Default
    /// 5000.
    pub connect_timeout_ms: u64,
    /// How long the server may take to greet and log dbmesh in once connected, in
    /// milliseconds. Default 5000.
    pub handshake_timeout_ms: u64,
    /// How long a server may stay silent while dbmesh waits on it, in milliseconds; then a
    /// new connection to it is tried, and if that gets no answer either (within
    /// `connect_timeout_ms` and `handshake_timeout_ms`) the statement fails and the server is
    /// taken out. A server that answers keeps running the statement. Default 30000.
    pub read_timeout_ms: u64,
    /// TCP keepalive of idle backend connections: probes start after this many idle seconds
    /// and repeat at this interval; three unanswered probes close the connection. 0 turns
    /// keepalive off. Default 30.
    pub keepalive_secs: u64,
    /// Longest a statement may run on a server, in milliseconds, enforced by the server
    /// (MariaDB `max_statement_time`, MySQL `max_execution_time`, which bounds only SELECT):
    /// past it the statement fails with the server's error and its locks are released. 0
    /// means no limit. Default 0.
    pub statement_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max: 64,
            min_idle: 0,
            acquire_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            handshake_timeout_ms: 5_000,
            read_timeout_ms: 30_000,
            keepalive_secs: 30,
            statement_timeout_ms: 0,
        }
    }
}

/// `[schema]`: the logical database clients see.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaConfig {
    /// Logical database name (what `USE` and `SHOW DATABASES` show).
    pub name: String,
    /// Data source of every table not named in `[tables]`.
    pub default_data_source: String,
    /// How a transaction that wrote on several data sources commits: `xa` (atomic, two-phase
    /// commit logged in `proxy.meta_data_source`) or `local` (one commit per data source, not
    /// atomic). Unset: `xa` when `proxy.meta_data_source` is set, else `local`
    /// ([`crate::Rules::transaction_mode`]).
    #[serde(default)]
    pub transaction_mode: Option<TransactionMode>,
    /// In `xa` mode, how long a statement of a transaction with branches on several data
    /// sources may wait for a row lock, in milliseconds, before the proxy takes the wait for
    /// a deadlock across servers (which no server can see) and rolls the whole transaction
    /// back with 1213. 0: no bound but each server's `innodb_lock_wait_timeout`. Default 1000.
    #[serde(default = "default_distributed_lock_wait_ms")]
    pub distributed_lock_wait_ms: u64,
}

fn default_distributed_lock_wait_ms() -> u64 {
    1_000
}

/// `schema.transaction_mode` (and a session's `dbmesh_transaction_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionMode {
    /// Every transaction's branches are XA branches: one data source commits in one phase,
    /// several by two-phase commit with the decision in the meta data source.
    Xa,
    /// Each data source commits on its own, one after another: not atomic across data
    /// sources (a crash between the commits keeps some and loses others).
    Local,
}

impl TransactionMode {
    /// The name in the rule file and in `dbmesh_transaction_mode`.
    pub fn name(self) -> &'static str {
        match self {
            TransactionMode::Xa => "xa",
            TransactionMode::Local => "local",
        }
    }

    /// The mode named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<TransactionMode> {
        [TransactionMode::Xa, TransactionMode::Local]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// `[tables.<name>]` as written; `validate` turns it into a [`crate::TableRule`].
///
/// Which fields are allowed depends on `kind` and `algorithm`; a field that
/// does not apply is reported as an error rather than ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// `sharded`, `broadcast` or `single`.
    pub kind: Option<String>,
    /// sharded: the sharding column.
    pub column: Option<String>,
    /// sharded: `int` (default) or `string`; how values of the column are compared.
    pub column_type: Option<String>,
    /// sharded: `mod`, `hash`, `range`, `consistent_hash` or `uid_slice`.
    pub algorithm: Option<String>,
    /// sharded: the physical tables, as node expressions (`ds_{0..1}.payment_{0..3}`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub nodes: Option<Vec<String>>,
    /// range: ascending split points; node `i` holds `boundaries[i-1] <= v < boundaries[i]`.
    pub boundaries: Option<Vec<i64>>,
    /// consistent_hash: points per node on the ring. Default 160.
    pub virtual_nodes: Option<u32>,
    /// uid_slice: `"00-29" = "ds_0"`: slice range to data source (or `ds.table` node).
    pub slices: Option<BTreeMap<String, String>>,
    /// single: the data source holding the table.
    pub data_source: Option<String>,
    /// broadcast: the data sources holding a copy. Default: every data source.
    pub data_sources: Option<Vec<String>>,
}

/// `[[binding_groups]]`: sharded tables bound together.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingGroupConfig {
    /// The logical tables of the group (at least two).
    pub tables: Vec<String>,
}

/// `[sequences.<name>]` as written; `validate` turns it into a [`crate::SequenceRule`].
///
/// Numbers are signed here (TOML integers are) so that validation can report
/// an out-of-range value with its location; which fields are allowed depends on `kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// `snowflake` or `segment`.
    pub kind: Option<String>,
    /// The logical table whose column this sequence fills (with `column`).
    pub table: Option<String>,
    /// The column of `table` this sequence fills when an INSERT omits it or gives NULL/0.
    pub column: Option<String>,
    /// segment: ids reserved per round trip to the meta data source. Default 1000.
    pub step: Option<i64>,
    /// segment: the first id ever handed out. Default 1.
    pub start: Option<i64>,
    /// segment: the largest id (e.g. 2147483647 for an INT column). Default 2^63-1.
    pub max: Option<i64>,
    /// segment: most ids one `SELECT NEXTVAL(seq, n)` reserves. Default 1000000.
    pub max_range: Option<i64>,
    /// snowflake: a fixed worker id (0-1023); absent leases one from the meta data source.
    pub worker_id: Option<i64>,
    /// snowflake: the timestamp origin, in ms since the Unix epoch. Default 2024-01-01T00:00:00Z.
    pub epoch: Option<i64>,
    /// snowflake: clock steps backwards up to this many ms are waited out. Default 5.
    pub max_clock_backward_ms: Option<i64>,
}

/// Accepts `nodes = "expr"` as well as `nodes = ["expr", ...]`.
fn one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a node expression or a list of node expressions")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_owned()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany).map(Some)
}
