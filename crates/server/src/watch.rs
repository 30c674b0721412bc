//! Noticing that a client has gone while its session waits on the backends: a second handle on
//! the client's socket (a duplicate descriptor) whose readiness says when the peer closed or
//! reset the connection. It never reads, so what the client sends (a pipelined command, a TLS
//! record) stays for the session's own stream; and it costs no system call while the client
//! stays.

use std::io;
use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// Watches one client connection for its end.
pub(crate) struct ClientWatch {
    /// `None` when the descriptor could not be duplicated: the session then notices a client
    /// that left when it next writes to it, as before.
    socket: Option<TcpStream>,
}

impl ClientWatch {
    pub(crate) fn new(stream: &TcpStream) -> ClientWatch {
        let socket = stream
            .as_fd()
            .try_clone_to_owned()
            .and_then(|fd| TcpStream::from_std(std::net::TcpStream::from(fd)));
        ClientWatch {
            socket: socket
                .inspect_err(|e| tracing::warn!(error = %e, "cannot watch a client connection"))
                .ok(),
        }
    }

    /// Completes once the client has closed (FIN) or reset its connection.
    pub(crate) async fn gone(&self) {
        let Some(socket) = &self.socket else {
            return std::future::pending().await;
        };
        loop {
            match socket.ready(Interest::READABLE).await {
                Ok(ready) if !ready.is_read_closed() && !ready.is_error() => {
                    // Bytes to read, not an end: forget this readiness (no system call) and
                    // wait for the next change.
                    let _ = socket.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
                _ => return,
            }
        }
    }
}
