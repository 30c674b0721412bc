//! Following a MariaDB source's row-based binlog from a GTID position: the catch-up of an
//! online rebalancing (issue 18). [`BinlogStream`] yields the source's transactions with the
//! full row images they changed; [`Follower`] applies the changes of the rows a routing
//! callback selects to a destination, idempotently, and reports the source position through
//! which it has applied everything. Nothing here knows about sharding.
//!
//! # Why our own client
//!
//! `mysql_async`'s binlog stream never announces `@mariadb_slave_capability`, so MariaDB
//! sends it placeholder events instead of its GTID events, and `mysql_common` does not parse
//! MariaDB's own event types (0xA0-0xA5: GTID, GTID_LIST, ANNOTATE_ROWS, ...). The project's
//! `backend::BackendConn` already logs in to backends (TLS, every auth plugin the proxy
//! supports, the silence watch); the stream uses it to send the replica's session variables
//! and COM_BINLOG_DUMP, and [`decode`] parses the events (a few hundred lines, pure, tested
//! on bytes captured from mariadbd).

mod apply;
pub mod decode;
mod error;
mod follower;
mod metrics;
mod position;
mod source;
mod stream;
mod value;

pub use apply::Route;
pub use error::BinlogError;
pub use follower::{Follower, FollowerHandle, FollowerOptions, FollowerSettings, Lag};
pub use metrics::FollowerMetrics;
pub use position::{Gtid, GtidPosition};
pub use source::{check_source, table_schema, TableRef, TableSchema};
pub use stream::{BinlogStream, ChangeKind, RowChange, StreamEvent, StreamOptions, TableFilter};
pub use value::Value;
