//! The MySQL client/server protocol as dbmesh speaks it on both sides: to clients (server role)
//! and to backends (client role). Pure encoding and decoding plus async packet framing; nothing
//! here knows about sharding.
//!
//! Reference: <https://mariadb.com/kb/en/clientserver-protocol/> and
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/PAGE_PROTOCOL.html>.

pub mod auth;
pub mod buf;
pub mod bulk;
pub mod constants;
pub mod error;
pub mod framing;
pub mod handshake;
pub mod packets;
pub mod response;
pub mod resultset;
pub mod stmt;
pub mod text;

pub use error::{is_deadlock, ClientError, ProtocolError, ServerError};
