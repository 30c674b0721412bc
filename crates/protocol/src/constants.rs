//! Protocol constants: capability and status flags, command bytes, column types.

/// Capability flags (`CLIENT_*`).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
}

/// MariaDB's extended capabilities (`MARIADB_CLIENT_*`, bits 32-63 of its capability set): the
/// last four of the greeting's reserved bytes and of the HandshakeResponse's filler. A
/// greeting that sets `CLIENT_MYSQL` (bit 0, [`caps::LONG_PASSWORD`]) announces none.
/// <https://mariadb.com/kb/en/connection/#capabilities>
pub mod extended_caps {
    /// COM_STMT_BULK_EXECUTE is understood.
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
}

/// Server status flags (`SERVER_*`) carried in OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const NO_GOOD_INDEX_USED: u16 = 16;
    pub const NO_INDEX_USED: u16 = 32;
    pub const CURSOR_EXISTS: u16 = 64;
    pub const LAST_ROW_SENT: u16 = 128;
    pub const DB_DROPPED: u16 = 256;
    pub const NO_BACKSLASH_ESCAPES: u16 = 512;
    pub const IN_TRANS_READONLY: u16 = 8192;
    pub const SESSION_STATE_CHANGED: u16 = 16384;
}

/// Command bytes (`COM_*`), the first byte of every client request.
pub mod com {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const CHANGE_USER: u8 = 0x11;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB's COM_STMT_BULK_EXECUTE ([`crate::bulk`]).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;

    /// A stable lowercase name for metrics and logs.
    pub fn name(command: u8) -> &'static str {
        match command {
            SLEEP => "sleep",
            QUIT => "quit",
            INIT_DB => "init_db",
            QUERY => "query",
            FIELD_LIST => "field_list",
            STATISTICS => "statistics",
            PROCESS_INFO => "process_info",
            PROCESS_KILL => "process_kill",
            DEBUG => "debug",
            PING => "ping",
            CHANGE_USER => "change_user",
            STMT_PREPARE => "stmt_prepare",
            STMT_EXECUTE => "stmt_execute",
            STMT_SEND_LONG_DATA => "stmt_send_long_data",
            STMT_CLOSE => "stmt_close",
            STMT_RESET => "stmt_reset",
            SET_OPTION => "set_option",
            STMT_FETCH => "stmt_fetch",
            RESET_CONNECTION => "reset_connection",
            STMT_BULK_EXECUTE => "stmt_bulk_execute",
            _ => "unknown",
        }
    }
}

/// Column types (`MYSQL_TYPE_*`).
pub mod column_type {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

/// Column definition flags.
pub mod column_flag {
    pub const NOT_NULL: u16 = 1;
    pub const PRI_KEY: u16 = 2;
    pub const UNIQUE_KEY: u16 = 4;
    pub const MULTIPLE_KEY: u16 = 8;
    pub const BLOB: u16 = 16;
    pub const UNSIGNED: u16 = 32;
    pub const ZEROFILL: u16 = 64;
    pub const BINARY: u16 = 128;
    pub const ENUM: u16 = 256;
    pub const AUTO_INCREMENT: u16 = 512;
    pub const TIMESTAMP: u16 = 1024;
    pub const SET: u16 = 2048;
    pub const NUM: u16 = 32768;
}

/// The largest payload one physical packet can carry; longer payloads are split.
pub const MAX_PAYLOAD: usize = 0xff_ffff;

/// Collation id of `utf8mb4_general_ci`, what the proxy announces and uses for its own text.
pub const UTF8MB4_GENERAL_CI: u8 = 45;
/// Collation id of `binary`, used for numeric columns the proxy synthesises.
pub const BINARY_COLLATION: u16 = 63;

/// The character set (and collation, where the backend is sure to know it) for a collation id
/// sent in a handshake, as `SET NAMES` arguments: other MariaDB collations give their
/// character set, so the server picks its default collation. MySQL 8 clients announce ids
/// MariaDB lacks (255 = `utf8mb4_0900_ai_ci`); those are read as utf8mb4.
pub fn set_names_for_collation(id: u8) -> &'static str {
    match id {
        8 => "latin1",
        33 => "utf8mb3",
        45 => "utf8mb4",
        46 => "utf8mb4 COLLATE utf8mb4_bin",
        63 => "binary",
        83 => "utf8mb3 COLLATE utf8mb3_bin",
        192 => "utf8mb3 COLLATE utf8mb3_unicode_ci",
        224 => "utf8mb4 COLLATE utf8mb4_unicode_ci",
        28 => "gbk",
        24 => "gb2312",
        11 => "ascii",
        _ => crate::text::charset_of_collation(id).unwrap_or("utf8mb4"),
    }
}
