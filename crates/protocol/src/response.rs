//! Relaying a backend's response to a client without decoding rows.
//!
//! Backend connections always negotiate CLIENT_DEPRECATE_EOF; clients may not. The relay walks
//! the response structure just enough to find where it ends (and whether more results follow)
//! and to translate the end-of-metadata and end-of-rows markers into the client's style.
//! Row frames are copied as they arrive; output is flushed whenever the backend has nothing
//! more buffered, so latency stays low and a large result streams in bounded memory.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::buf::Reader;
use crate::constants::{status, MAX_PAYLOAD};
use crate::framing::PacketConn;
use crate::packets::{
    encode_eof, is_err, is_terminator, OkPacket, EOF_HEADER, ERR_HEADER, OK_HEADER,
};
use crate::resultset::write_end_of_rows;
use crate::{ProtocolError, ServerError};

/// What kind of response a command produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    /// COM_QUERY: OK, ERR or result sets, possibly several (multi-statements, procedures).
    Query,
    /// COM_STMT_EXECUTE; `cursor` when the client asked for a server-side cursor, in which
    /// case only metadata comes back now and rows come with COM_STMT_FETCH.
    Execute { cursor: bool },
    /// COM_STMT_FETCH: rows up to a terminator.
    Fetch,
    /// COM_STMT_PREPARE: statement OK plus parameter and column definitions. The client sees
    /// `client_statement_id` in place of the backend's id: statements belong to the session,
    /// not to one backend connection.
    Prepare { client_statement_id: u32 },
    /// COM_FIELD_LIST: column definitions up to a terminator.
    FieldList,
    /// One OK, ERR or EOF packet (COM_PING, COM_INIT_DB, COM_SET_OPTION, COM_STMT_RESET, ...).
    Single,
    /// One packet that is a plain string (COM_STATISTICS).
    Raw,
}

/// Which side of a relay failed; the session treats the two differently.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("backend: {0}")]
    Backend(ProtocolError),
    #[error("client: {0}")]
    Client(ProtocolError),
}

/// What the relayed response said, for session bookkeeping and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayOutcome {
    /// Status flags of the last OK/EOF seen.
    pub status: u16,
    /// Affected rows and last insert id of the last OK seen.
    pub affected_rows: u64,
    pub last_insert_id: u64,
    /// Warning count of the last OK/EOF seen.
    pub warnings: u16,
    /// The last result was a result set (rows), not an OK.
    pub result_set: bool,
    /// The rows of the last result set relayed, if there was one (for `FOUND_ROWS()`).
    pub rows: Option<u64>,
    /// The results of the response (more than one for a multi-statement text or a CALL).
    pub results: u32,
    /// The error the backend answered with, if any.
    pub error: Option<ServerError>,
    /// For COM_STMT_PREPARE: the backend's statement id, parameter and column counts.
    pub prepared: Option<PreparedInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedInfo {
    pub statement_id: u32,
    pub columns: u16,
    pub params: u16,
}

/// What the client gets in place of a backend's error, when not the error itself (e.g. the
/// proxy's own reason for an interruption it caused).
pub type ErrorFor<'a> = &'a (dyn Fn(&ServerError) -> Option<ServerError> + Sync);

/// Reads one complete response from `backend` and writes it to `client` in the client's style;
/// an error is answered as `error_for` says.
pub async fn relay_response<B, C>(
    backend: &mut PacketConn<B>,
    client: &mut PacketConn<C>,
    kind: ResponseKind,
    client_deprecate_eof: bool,
    error_for: ErrorFor<'_>,
) -> Result<RelayOutcome, RelayError>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut relay = Relay {
        backend,
        client,
        client_deprecate_eof,
        error_for,
        outcome: RelayOutcome::default(),
    };
    relay.run(kind).await?;
    // The last frame of the response is still held by the reader.
    relay.backend.consume();
    relay.client.flush().await.map_err(RelayError::Client)?;
    Ok(relay.outcome)
}

struct Relay<'a, B, C> {
    backend: &'a mut PacketConn<B>,
    client: &'a mut PacketConn<C>,
    client_deprecate_eof: bool,
    error_for: ErrorFor<'a>,
    outcome: RelayOutcome,
}

impl<B, C> Relay<'_, B, C>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self, kind: ResponseKind) -> Result<(), RelayError> {
        match kind {
            ResponseKind::Query | ResponseKind::Execute { .. } => loop {
                let cursor = matches!(kind, ResponseKind::Execute { cursor: true });
                if !self.result(cursor).await? {
                    return Ok(());
                }
            },
            ResponseKind::Fetch => {
                self.next().await?;
                if is_err(self.backend.frame()) {
                    return self.forward_error();
                }
                self.rows_from_current().await
            }
            ResponseKind::Prepare {
                client_statement_id,
            } => self.prepare(client_statement_id).await,
            ResponseKind::FieldList => loop {
                self.next().await?;
                let frame = self.backend.frame();
                if is_err(frame) {
                    return self.forward_error();
                }
                if is_terminator(frame) {
                    return self.forward_terminator();
                }
                self.forward();
                self.flush_if_full().await?;
            },
            ResponseKind::Single => {
                self.next().await?;
                let frame = self.backend.frame();
                match frame.first() {
                    Some(&ERR_HEADER) => self.forward_error(),
                    Some(&EOF_HEADER) => self.forward_terminator(),
                    _ => {
                        self.note_ok()?;
                        self.forward();
                        Ok(())
                    }
                }
            }
            ResponseKind::Raw => {
                self.next().await?;
                self.forward();
                Ok(())
            }
        }
    }

    /// One result of a query or execute; returns whether another result follows.
    async fn result(&mut self, cursor: bool) -> Result<bool, RelayError> {
        self.outcome.results += 1;
        self.next().await?;
        let frame = self.backend.frame();
        match frame.first() {
            Some(&OK_HEADER) => {
                self.note_ok()?;
                self.forward();
                return Ok(self.more_results());
            }
            Some(&ERR_HEADER) => {
                self.forward_error()?;
                return Ok(false);
            }
            Some(&0xfb) | None => {
                return Err(RelayError::Backend(ProtocolError::Malformed(
                    "unexpected LOCAL INFILE request or empty packet",
                )))
            }
            _ => {}
        }
        let columns = Reader::new(frame)
            .lenenc_int()
            .map_err(RelayError::Backend)?;
        self.outcome.result_set = true;
        self.outcome.rows = Some(0);
        self.forward();
        for _ in 0..columns {
            self.next().await?;
            self.forward();
        }
        if !self.client_deprecate_eof {
            let status = self.outcome.status;
            self.client.write_with(|b| encode_eof(0, status, b));
        }
        if cursor {
            // A cursor's metadata is followed by a terminator whose status says the cursor
            // exists; rows come later through COM_STMT_FETCH.
            self.next().await?;
            self.forward_terminator()?;
            return Ok(self.more_results());
        }
        self.next().await?;
        self.rows_from_current().await?;
        Ok(self.more_results())
    }

    /// Rows up to and including the terminator; the first frame is already read.
    async fn rows_from_current(&mut self) -> Result<(), RelayError> {
        let mut continuation = false;
        loop {
            let frame = self.backend.frame();
            if !continuation {
                if is_terminator(frame) {
                    return self.forward_terminator();
                }
                if is_err(frame) {
                    return self.forward_error();
                }
            }
            if !continuation {
                self.outcome.rows = Some(self.outcome.rows.unwrap_or(0) + 1);
            }
            // A frame of exactly MAX_PAYLOAD bytes means the row continues in the next frame,
            // whose first byte is data, not a marker.
            continuation = frame.len() == MAX_PAYLOAD;
            self.forward();
            self.flush_if_full().await?;
            self.next().await?;
        }
    }

    async fn prepare(&mut self, client_statement_id: u32) -> Result<(), RelayError> {
        self.next().await?;
        let frame = self.backend.frame();
        if is_err(frame) {
            return self.forward_error();
        }
        let mut r = Reader::new(frame);
        let parse = |r: &mut Reader| -> Result<PreparedInfo, ProtocolError> {
            if r.u8()? != OK_HEADER {
                return Err(ProtocolError::Malformed("bad COM_STMT_PREPARE response"));
            }
            let statement_id = r.u32()?;
            let columns = r.u16()?;
            let params = r.u16()?;
            Ok(PreparedInfo {
                statement_id,
                columns,
                params,
            })
        };
        let info = parse(&mut r).map_err(RelayError::Backend)?;
        self.outcome.prepared = Some(info);
        let mut first = self.backend.frame().to_vec();
        first[1..5].copy_from_slice(&client_statement_id.to_le_bytes());
        self.client.put_frame(&first);
        for count in [info.params, info.columns] {
            if count == 0 {
                continue;
            }
            for _ in 0..count {
                self.next().await?;
                self.forward();
            }
            if !self.client_deprecate_eof {
                let status = self.outcome.status;
                self.client.write_with(|b| encode_eof(0, status, b));
            }
        }
        Ok(())
    }

    /// Waits for the next backend frame, flushing client output first if that wait could block.
    async fn next(&mut self) -> Result<(), RelayError> {
        self.backend.consume();
        if !self.backend.has_buffered_frame() && self.client.buffered_output() > 0 {
            self.client.flush().await.map_err(RelayError::Client)?;
        }
        self.backend
            .fill_frame()
            .await
            .map_err(RelayError::Backend)?;
        Ok(())
    }

    async fn flush_if_full(&mut self) -> Result<(), RelayError> {
        self.client
            .flush_if_full()
            .await
            .map_err(RelayError::Client)
    }

    fn forward(&mut self) {
        self.client.put_frame(self.backend.frame());
    }

    fn forward_error(&mut self) -> Result<(), RelayError> {
        let err = ServerError::decode(self.backend.frame()).map_err(RelayError::Backend)?;
        self.outcome.error = Some(put_error(
            self.client,
            self.backend.frame(),
            err,
            self.error_for,
        ));
        Ok(())
    }

    /// Forwards an end-of-rows marker, rewriting it to a classic EOF for older clients.
    fn forward_terminator(&mut self) -> Result<(), RelayError> {
        let ok = OkPacket::decode(self.backend.frame()).map_err(RelayError::Backend)?;
        self.outcome.status = ok.status;
        self.outcome.warnings = ok.warnings;
        if self.client_deprecate_eof {
            self.forward();
        } else {
            write_end_of_rows(self.client, false, ok.warnings, ok.status);
        }
        Ok(())
    }

    fn note_ok(&mut self) -> Result<(), RelayError> {
        let ok = OkPacket::decode(self.backend.frame()).map_err(RelayError::Backend)?;
        self.outcome.status = ok.status;
        self.outcome.affected_rows = ok.affected_rows;
        self.outcome.last_insert_id = ok.last_insert_id;
        self.outcome.warnings = ok.warnings;
        self.outcome.result_set = false;
        Ok(())
    }

    fn more_results(&self) -> bool {
        self.outcome.error.is_none() && self.outcome.status & status::MORE_RESULTS_EXISTS != 0
    }
}

/// The start of one result of a query or execute, read by the proxy itself (scatter-gather).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultHeader {
    /// A statement without a result set.
    Ok(OkPacket),
    /// The server's error.
    Err(ServerError),
    /// A result set: the column definitions' raw payloads; rows follow.
    Columns(Vec<Vec<u8>>),
}

/// Reads the header of the next result: OK, ERR, or the column count and definitions.
pub async fn read_result_header<B>(
    backend: &mut PacketConn<B>,
) -> Result<ResultHeader, ProtocolError>
where
    B: AsyncRead + AsyncWrite + Unpin,
{
    let first = backend.read_packet(usize::MAX).await?;
    match first.first() {
        Some(&OK_HEADER) => Ok(ResultHeader::Ok(OkPacket::decode(&first)?)),
        Some(&ERR_HEADER) => Ok(ResultHeader::Err(ServerError::decode(&first)?)),
        Some(&0xfb) | None => Err(ProtocolError::Malformed(
            "unexpected LOCAL INFILE request or empty packet",
        )),
        _ => {
            let count = Reader::new(&first).lenenc_int()?;
            let mut columns = Vec::with_capacity(count.min(4096) as usize);
            for _ in 0..count {
                columns.push(backend.read_packet(usize::MAX).await?.to_vec());
            }
            Ok(ResultHeader::Columns(columns))
        }
    }
}

/// How a stream of rows ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowsEnd {
    /// The end-of-rows marker (not forwarded: the caller writes its own), and the rows
    /// relayed.
    Done(OkPacket, u64),
    /// An error in place of a row (already forwarded to the client).
    Err(ServerError),
}

/// Writes a backend's error `frame` (decoded: `err`) to `client`, or what `error_for` answers
/// in its place; returns the error the client got.
fn put_error<C>(
    client: &mut PacketConn<C>,
    frame: &[u8],
    err: ServerError,
    error_for: ErrorFor<'_>,
) -> ServerError
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    match error_for(&err) {
        Some(other) => {
            client.write_with(|b| other.encode(b));
            other
        }
        None => {
            client.put_frame(frame);
            err
        }
    }
}

/// Forwards row packets from `backend` to `client` up to (not including) the end marker; an
/// error in place of a row is answered as `error_for` says.
pub async fn relay_rows<B, C>(
    backend: &mut PacketConn<B>,
    client: &mut PacketConn<C>,
    error_for: ErrorFor<'_>,
) -> Result<RowsEnd, RelayError>
where
    B: AsyncRead + AsyncWrite + Unpin,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut continuation = false;
    let mut rows = 0;
    loop {
        if !backend.has_buffered_frame() && client.buffered_output() > 0 {
            client.flush().await.map_err(RelayError::Client)?;
        }
        backend.fill_frame().await.map_err(RelayError::Backend)?;
        let frame = backend.frame();
        if !continuation && is_terminator(frame) {
            let ok = OkPacket::decode(frame).map_err(RelayError::Backend)?;
            backend.consume();
            return Ok(RowsEnd::Done(ok, rows));
        }
        if !continuation && is_err(frame) {
            let err = ServerError::decode(frame).map_err(RelayError::Backend)?;
            let err = put_error(client, frame, err, error_for);
            backend.consume();
            return Ok(RowsEnd::Err(err));
        }
        if !continuation {
            rows += 1;
        }
        continuation = frame.len() == MAX_PAYLOAD;
        client.put_frame(frame);
        backend.consume();
        client.flush_if_full().await.map_err(RelayError::Client)?;
    }
}

/// Reads and discards the rest of a response whose header was read, including any further
/// results, so the connection can be used again.
pub async fn drain_after_header<B>(
    backend: &mut PacketConn<B>,
    header: &ResultHeader,
) -> Result<(), ProtocolError>
where
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut status = match header {
        ResultHeader::Ok(ok) => ok.status,
        ResultHeader::Err(_) => return Ok(()),
        ResultHeader::Columns(_) => drain_rows(backend).await?,
    };
    while status & status::MORE_RESULTS_EXISTS != 0 {
        let next = read_result_header(backend).await?;
        status = match &next {
            ResultHeader::Ok(ok) => ok.status,
            ResultHeader::Err(_) => return Ok(()),
            ResultHeader::Columns(_) => drain_rows(backend).await?,
        };
    }
    Ok(())
}

/// Discards rows up to the end marker; returns its status flags.
pub async fn drain_rows<B>(backend: &mut PacketConn<B>) -> Result<u16, ProtocolError>
where
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut continuation = false;
    loop {
        backend.fill_frame().await?;
        let frame = backend.frame();
        if !continuation && is_terminator(frame) {
            let status = OkPacket::decode(frame)?.status;
            backend.consume();
            return Ok(status);
        }
        if !continuation && is_err(frame) {
            backend.consume();
            return Ok(0);
        }
        continuation = frame.len() == MAX_PAYLOAD;
        backend.consume();
    }
}
