//! Packet framing over any async byte stream, in two phases (mini-redis style): bytes are
//! buffered until a whole physical packet is present, then it is handed out by reference, so
//! relaying a packet from one connection to another is one copy and no allocation.
//!
//! A physical packet is a 3-byte little-endian length, a 1-byte sequence id and the payload. A
//! logical payload of 16 MiB - 1 bytes or more is split into several physical packets; a
//! payload whose length is an exact multiple of that is followed by an empty packet.

use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::constants::MAX_PAYLOAD;
use crate::ProtocolError;

type Result<T> = std::result::Result<T, ProtocolError>;

const HEADER: usize = 4;
const READ_CHUNK: usize = 64 * 1024;
/// Past this much buffered output, writers flush before buffering more.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

/// A framed connection: the stream plus its read and write buffers and the sequence counter.
pub struct PacketConn<S> {
    stream: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// The sequence id the next packet written will carry.
    seq: u8,
    /// Length of the frame at the front of `rbuf` once `fill_frame` returned, else 0.
    frame_len: Option<usize>,
    /// Longest a flush may wait without the peer taking any byte, see
    /// [`set_write_timeout`](Self::set_write_timeout).
    write_timeout: Option<Duration>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketConn<S> {
    pub fn new(stream: S) -> Self {
        Self::with_buffered(stream, BytesMut::new())
    }

    /// A connection whose first bytes were already read into `buffered` (e.g. by a TLS upgrade).
    pub fn with_buffered(stream: S, buffered: BytesMut) -> Self {
        PacketConn {
            stream,
            rbuf: buffered,
            wbuf: BytesMut::new(),
            seq: 0,
            frame_len: None,
            write_timeout: None,
        }
    }

    /// Bounds how long a flush may wait for the peer to read: past `timeout` without any
    /// byte taken, the flush fails with [`ProtocolError::WriteTimeout`] (MySQL's
    /// `net_write_timeout`). A peer that reads slowly but steadily is not cut off.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.write_timeout = timeout;
    }

    /// Gives back the stream and any bytes read from it but not consumed yet.
    pub fn into_parts(self) -> (S, BytesMut) {
        (self.stream, self.rbuf)
    }

    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// The stream, e.g. to check an idle connection without reading from it.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// True when bytes are buffered that nobody consumed.
    pub fn has_unread(&self) -> bool {
        !self.rbuf.is_empty()
    }

    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// True when a whole frame is already buffered (so reading it would not wait on the peer).
    pub fn has_buffered_frame(&self) -> bool {
        frame_length(&self.rbuf).is_some_and(|len| self.rbuf.len() >= HEADER + len)
    }

    /// Waits until one whole physical packet is buffered and returns its payload length.
    /// The payload is then available from [`frame`](Self::frame) until [`consume`](Self::consume).
    pub async fn fill_frame(&mut self) -> Result<usize> {
        if let Some(len) = self.frame_len {
            return Ok(len);
        }
        loop {
            if let Some(len) = frame_length(&self.rbuf) {
                if self.rbuf.len() >= HEADER + len {
                    self.seq = self.rbuf[3].wrapping_add(1);
                    self.frame_len = Some(len);
                    return Ok(len);
                }
                self.rbuf.reserve(HEADER + len - self.rbuf.len());
            }
            self.read_more().await?;
        }
    }

    /// The payload of the frame returned by the last `fill_frame`.
    pub fn frame(&self) -> &[u8] {
        match self.frame_len {
            Some(len) => &self.rbuf[HEADER..HEADER + len],
            None => &[],
        }
    }

    /// The sequence id of the current frame.
    pub fn frame_seq(&self) -> u8 {
        self.rbuf.get(3).copied().unwrap_or(0)
    }

    /// Drops the current frame from the read buffer.
    pub fn consume(&mut self) {
        if let Some(len) = self.frame_len.take() {
            self.rbuf.advance(HEADER + len);
        }
    }

    /// Reads one logical packet (joining split frames) into a fresh buffer. Fails with
    /// `PacketTooLarge` past `limit` bytes, after which the connection must be closed.
    pub async fn read_packet(&mut self, limit: usize) -> Result<BytesMut> {
        let len = self.fill_frame().await?;
        let first_seq = self.frame_seq();
        if len > limit {
            return Err(ProtocolError::PacketTooLarge { size: len, limit });
        }
        if len < MAX_PAYLOAD {
            // One frame, the usual case: handed out as a view of the read buffer, which takes
            // its space back once the packet is dropped (no allocation, no copy).
            self.frame_len = None;
            let mut payload = self.rbuf.split_to(HEADER + len);
            payload.advance(HEADER);
            return Ok(payload);
        }
        let mut payload = BytesMut::with_capacity(len);
        payload.extend_from_slice(self.frame());
        self.consume();
        let mut last_len = len;
        let mut expected = first_seq.wrapping_add(1);
        while last_len == MAX_PAYLOAD {
            last_len = self.fill_frame().await?;
            let got = self.frame_seq();
            if got != expected {
                return Err(ProtocolError::OutOfOrder { expected, got });
            }
            expected = expected.wrapping_add(1);
            if payload.len() + last_len > limit {
                return Err(ProtocolError::PacketTooLarge {
                    size: payload.len() + last_len,
                    limit,
                });
            }
            payload.extend_from_slice(self.frame());
            self.consume();
        }
        Ok(payload)
    }

    async fn read_more(&mut self) -> Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(ProtocolError::Closed);
        }
        Ok(())
    }

    /// Buffers one logical packet, splitting it when needed.
    pub fn write_packet(&mut self, payload: &[u8]) {
        let mut rest = payload;
        loop {
            let chunk = rest.len().min(MAX_PAYLOAD);
            self.put_frame(&rest[..chunk]);
            rest = &rest[chunk..];
            if chunk < MAX_PAYLOAD {
                break;
            }
        }
    }

    /// Buffers one packet whose payload `build` writes straight into the output buffer.
    pub fn write_with(&mut self, build: impl FnOnce(&mut BytesMut)) {
        let start = self.wbuf.len();
        self.wbuf.put_bytes(0, HEADER);
        build(&mut self.wbuf);
        let len = self.wbuf.len() - start - HEADER;
        if len < MAX_PAYLOAD {
            self.wbuf[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
            self.wbuf[start + 3] = self.seq;
            self.seq = self.seq.wrapping_add(1);
        } else {
            let payload = self.wbuf.split_off(start + HEADER);
            self.wbuf.truncate(start);
            self.write_packet(&payload);
        }
    }

    /// Buffers one physical frame as-is (with this connection's next sequence id); used to
    /// relay frames of a split packet one by one.
    pub fn put_frame(&mut self, payload: &[u8]) {
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        self.wbuf.reserve(HEADER + payload.len());
        self.wbuf.put_uint_le(payload.len() as u64, 3);
        self.wbuf.put_u8(self.seq);
        self.wbuf.put_slice(payload);
        self.seq = self.seq.wrapping_add(1);
    }

    pub fn buffered_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes all buffered output to the stream.
    pub async fn flush(&mut self) -> Result<()> {
        let Some(timeout) = self.write_timeout else {
            if !self.wbuf.is_empty() {
                self.stream.write_all(&self.wbuf).await?;
                self.wbuf.clear();
            }
            self.stream.flush().await?;
            return Ok(());
        };
        // Each write is bounded on its own, so the timeout measures how long the peer takes
        // no bytes at all, not how long the whole buffer takes.
        let mut written = 0;
        while written < self.wbuf.len() {
            let n = bounded(timeout, self.stream.write(&self.wbuf[written..])).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            written += n;
        }
        self.wbuf.clear();
        bounded(timeout, self.stream.flush()).await?;
        Ok(())
    }

    /// Flushes only when enough output is buffered to be worth a syscall.
    pub async fn flush_if_full(&mut self) -> Result<()> {
        if self.wbuf.len() >= FLUSH_THRESHOLD {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

/// `io` within `timeout`. A socket with room takes the bytes on the first poll, so the timer
/// (a clock read and the runtime's timer handle on each write) is set up only for a peer that
/// makes dbmesh wait.
async fn bounded<T>(
    timeout: Duration,
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T> {
    let mut io = std::pin::pin!(io);
    let first = io
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    if let std::task::Poll::Ready(done) = first {
        return Ok(done?);
    }
    // Polled again under the timer with the task's own waker, which re-registers interest.
    Ok(tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| ProtocolError::WriteTimeout(timeout))??)
}

fn frame_length(buf: &[u8]) -> Option<usize> {
    (buf.len() >= HEADER)
        .then(|| usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    async fn round_trip(payload: Vec<u8>) -> Vec<u8> {
        let (a, b) = tokio::io::duplex(1 << 20);
        let writer = tokio::spawn(async move {
            let mut w = PacketConn::new(a);
            w.write_packet(&payload);
            w.flush().await.unwrap();
            w
        });
        let mut r = PacketConn::new(b);
        let got = r.read_packet(usize::MAX).await.unwrap().to_vec();
        drop(writer.await.unwrap());
        got
    }

    #[tokio::test]
    async fn split_packets_round_trip() {
        for len in [
            0,
            1,
            MAX_PAYLOAD - 1,
            MAX_PAYLOAD,
            MAX_PAYLOAD + 1,
            2 * MAX_PAYLOAD,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(round_trip(payload.clone()).await, payload, "len {len}");
        }
    }

    #[tokio::test]
    async fn exact_multiple_gets_trailing_empty_frame() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w = PacketConn::new(a);
        w.write_packet(&vec![7u8; MAX_PAYLOAD]);
        assert_eq!(w.buffered_output(), 4 + MAX_PAYLOAD + 4);
        assert_eq!(w.seq(), 2);
    }

    #[tokio::test]
    async fn oversized_packet_is_refused() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut w = PacketConn::new(a);
        w.write_packet(&[1u8; 1000]);
        w.flush().await.unwrap();
        let mut r = PacketConn::new(b);
        let err = r.read_packet(100).await.unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::PacketTooLarge {
                size: 1000,
                limit: 100
            }
        ));
    }

    #[tokio::test]
    async fn truncated_packet_is_closed_not_a_panic() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[10, 0, 0, 0, 1, 2]).await.unwrap();
        drop(a);
        let mut r = PacketConn::new(b);
        assert!(matches!(
            r.read_packet(1 << 20).await,
            Err(ProtocolError::Closed)
        ));
    }

    #[tokio::test]
    async fn write_with_matches_write_packet() {
        let (a, _b) = tokio::io::duplex(64);
        let mut w1 = PacketConn::new(a);
        w1.write_with(|b| b.put_slice(b"hello"));
        let (c, _d) = tokio::io::duplex(64);
        let mut w2 = PacketConn::new(c);
        w2.write_packet(b"hello");
        assert_eq!(w1.wbuf, w2.wbuf);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_times_the_flush_out() {
        // The duplex buffer holds 64 bytes; nobody reads the other end.
        let (a, _unread) = tokio::io::duplex(64);
        let mut w = PacketConn::new(a);
        w.set_write_timeout(Some(Duration::from_millis(50)));
        w.write_packet(&[0u8; 4096]);
        let started = std::time::Instant::now();
        let err = w.flush().await.unwrap_err();
        assert!(matches!(err, ProtocolError::WriteTimeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_peer_that_reads_slowly_but_steadily_is_not_cut_off() {
        let (a, mut b) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 16];
            loop {
                // Each read comes well within the timeout; all of them (about 60) take far
                // longer.
                tokio::time::sleep(Duration::from_millis(20)).await;
                match b.read(&mut chunk).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&chunk[..n]),
                }
            }
        });
        let mut w = PacketConn::new(a);
        w.set_write_timeout(Some(Duration::from_millis(500)));
        w.write_packet(&[7u8; 1000]);
        w.flush().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap().len(), 4 + 1000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (mut a, b) = tokio::io::duplex(1024);
                a.write_all(&data).await.unwrap();
                drop(a);
                let mut r = PacketConn::new(b);
                while r.read_packet(1 << 20).await.is_ok() {}
            });
        }
    }
}
