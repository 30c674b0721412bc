//! Backend side of the proxy: dbmesh's own connections to MySQL/MariaDB servers.
//!
//! [`conn::BackendConn`] is one authenticated connection that knows the session state it
//! currently carries (database, character set, multi-statement option), so a borrower applies
//! only the differences, and which statements it has prepared, so any session borrowing it
//! reuses them. [`pool::Pool`] hands connections out with a bounded size and a fair,
//! bounded wait. [`cluster::Cluster`] is a data source's primary and replicas, with the health
//! each server was last seen in. Nothing here knows about SQL semantics or sharding.

pub mod cluster;
pub mod conn;
pub mod error;
pub mod gtid;
pub mod pool;
pub mod stream;

pub use cluster::{Cluster, ReplicaChoice, Server, ServerStats};
pub use conn::{
    quote_literal, record_setting, BackendConn, ConnectOptions, QueryResult, RawResult,
    SessionState, WantedState,
};
pub use error::BackendError;
pub use gtid::{Gtid, Position};
pub use pool::{set_worker, Pool, PoolStats, PooledConn};
pub use stream::{BackendStream, Tls};
