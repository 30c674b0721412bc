//! Reading and writing the protocol's basic types: fixed and length-encoded integers and
//! strings. [`Reader`] is a cursor over a payload that fails with `Malformed` instead of panicking.

use bytes::BufMut;

use crate::ProtocolError;

type Result<T> = std::result::Result<T, ProtocolError>;

/// A bounds-checked cursor over one packet payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.data[self.pos..];
        self.pos = self.data.len();
        rest
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(ProtocolError::Malformed("truncated field"));
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u24(&mut self) -> Result<u32> {
        let b = self.bytes(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-encoded integer; `None` for the NULL marker 0xFB.
    pub fn lenenc_int_or_null(&mut self) -> Result<Option<u64>> {
        let first = self.u8()?;
        Ok(Some(match first {
            0xfb => return Ok(None),
            0xfc => u64::from(self.u16()?),
            0xfd => u64::from(self.u24()?),
            0xfe => self.u64()?,
            0xff => return Err(ProtocolError::Malformed("invalid length-encoded integer")),
            n => u64::from(n),
        }))
    }

    pub fn lenenc_int(&mut self) -> Result<u64> {
        self.lenenc_int_or_null()?
            .ok_or(ProtocolError::Malformed("unexpected NULL"))
    }

    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.lenenc_int()?;
        let len = usize::try_from(len).map_err(|_| ProtocolError::Malformed("length overflow"))?;
        self.bytes(len)
    }

    /// A length-encoded string, or `None` for the NULL marker of text-protocol rows.
    pub fn lenenc_bytes_or_null(&mut self) -> Result<Option<&'a [u8]>> {
        match self.lenenc_int_or_null()? {
            None => Ok(None),
            Some(len) => {
                let len = usize::try_from(len)
                    .map_err(|_| ProtocolError::Malformed("length overflow"))?;
                self.bytes(len).map(Some)
            }
        }
    }

    /// A NUL-terminated string (the NUL is consumed). A missing NUL at the very end of the
    /// payload is tolerated, as servers do for the last field.
    pub fn nul_bytes(&mut self) -> Result<&'a [u8]> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => {
                self.pos = self.data.len();
                Ok(rest)
            }
        }
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut impl BufMut, n: u64) {
    if n < 0xfb {
        out.put_u8(n as u8);
    } else if n <= 0xffff {
        out.put_u8(0xfc);
        out.put_u16_le(n as u16);
    } else if n <= 0xff_ffff {
        out.put_u8(0xfd);
        out.put_uint_le(n, 3);
    } else {
        out.put_u8(0xfe);
        out.put_u64_le(n);
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut impl BufMut, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.put_slice(s);
}

/// Appends a NUL-terminated string.
pub fn put_nul_bytes(out: &mut impl BufMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn lenenc_int_round_trips(n in any::<u64>()) {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, n);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.lenenc_int().unwrap(), n);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.lenenc_bytes();
            let _ = r.nul_bytes();
            let _ = r.u64();
        }
    }

    #[test]
    fn lenenc_boundaries() {
        for (n, len) in [
            (250u64, 1),
            (251, 3),
            (65535, 3),
            (65536, 4),
            (16_777_215, 4),
            (16_777_216, 9),
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, n);
            assert_eq!(out.len(), len, "{n}");
        }
    }
}
