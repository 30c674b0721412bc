//! Errors of the protocol layer, and [`ServerError`]: the MySQL error a client will see.

use std::borrow::Cow;

/// A failure to read or write the protocol. Any of these ends the connection it happened on.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by peer")]
    Closed,
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("packet of {size} bytes is larger than max_allowed_packet ({limit} bytes)")]
    PacketTooLarge { size: usize, limit: usize },
    #[error("packets out of order: expected sequence id {expected}, got {got}")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("tls: {0}")]
    Tls(String),
    #[error("the peer read nothing for {0:?} (write timeout)")]
    WriteTimeout(std::time::Duration),
}

/// What a client sees of an error: the one contract every crate's error type meets, so the
/// server turns any of them into an ERR packet the same way ([`ClientError::to_server_error`]).
/// The message is what the client may know: backend addresses and accounts stay in the log.
pub trait ClientError {
    /// The MySQL error code.
    fn code(&self) -> u16;
    /// The SQLSTATE, five ASCII characters.
    fn sqlstate(&self) -> &str;
    /// The message the client gets.
    fn client_message(&self) -> Cow<'static, str>;
    /// The ERR packet's contents.
    fn to_server_error(&self) -> ServerError {
        ServerError::new(self.code(), self.sqlstate(), self.client_message())
    }
}

/// ER_LOCK_DEADLOCK and ER_XA_RBDEADLOCK: the server rolled the transaction back.
pub fn is_deadlock(code: u16) -> bool {
    matches!(code, 1213 | 1614)
}

/// The error sent to a client before closing because of a protocol failure.
impl ClientError for ProtocolError {
    fn code(&self) -> u16 {
        match self {
            // ER_NET_PACKET_TOO_LARGE
            ProtocolError::PacketTooLarge { .. } => 1153,
            // ER_NET_PACKETS_OUT_OF_ORDER
            ProtocolError::OutOfOrder { .. } => 1156,
            // ER_UNKNOWN_COM_ERROR
            _ => 1047,
        }
    }

    fn sqlstate(&self) -> &str {
        "08S01"
    }

    fn client_message(&self) -> Cow<'static, str> {
        match self {
            ProtocolError::PacketTooLarge { .. } => {
                "Got a packet bigger than 'max_allowed_packet' bytes".into()
            }
            ProtocolError::OutOfOrder { .. } => "Got packets out of order".into(),
            other => format!("Unknown command ({other})").into(),
        }
    }
}

/// A MySQL error as carried by an ERR packet: what the client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: [u8; 5],
    pub message: Cow<'static, str>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ERROR {} ({}): {}",
            self.code,
            self.sqlstate_str(),
            self.message
        )
    }
}

impl std::error::Error for ServerError {}

/// A server's error as it came, or one the proxy composed.
impl ClientError for ServerError {
    fn code(&self) -> u16 {
        self.code
    }

    fn sqlstate(&self) -> &str {
        self.sqlstate_str()
    }

    fn client_message(&self) -> Cow<'static, str> {
        self.message.clone()
    }

    fn to_server_error(&self) -> ServerError {
        self.clone()
    }
}

impl ServerError {
    /// `sqlstate` must be five ASCII characters.
    pub fn new(code: u16, sqlstate: &str, message: impl Into<Cow<'static, str>>) -> Self {
        let mut state = *b"HY000";
        if sqlstate.len() == 5 {
            state.copy_from_slice(sqlstate.as_bytes());
        }
        ServerError {
            code,
            sqlstate: state,
            message: message.into(),
        }
    }

    pub fn sqlstate_str(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or("HY000")
    }

    /// 1235 ER_NOT_SUPPORTED_YET naming the construct.
    pub fn not_supported(what: impl std::fmt::Display) -> Self {
        ServerError::new(
            1235,
            "42000",
            format!("This version of dbmesh doesn't yet support '{what}'"),
        )
    }

    /// 1047 ER_UNKNOWN_COM_ERROR.
    pub fn unknown_command(command: u8) -> Self {
        ServerError::new(1047, "08S01", format!("Unknown command 0x{command:02x}"))
    }

    /// 1105 ER_UNKNOWN_ERROR, used for backend failures the client cannot fix.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        ServerError::new(1105, "HY000", message)
    }
}
