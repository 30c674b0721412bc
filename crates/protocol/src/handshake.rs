//! The connection phase: the server greeting (HandshakeV10), the client's HandshakeResponse41
//! (and the short SSLRequest before TLS), auth switching, and COM_CHANGE_USER, each with an
//! encoder and a decoder because dbmesh plays both roles.
//!
//! <https://mariadb.com/kb/en/connection/>

use bytes::{BufMut, BytesMut};

use crate::buf::{put_lenenc_bytes, put_lenenc_int, put_nul_bytes, Reader};
use crate::constants::caps;
use crate::ProtocolError;

type Result<T> = std::result::Result<T, ProtocolError>;

/// The server's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
    /// MariaDB's extended capabilities ([`crate::constants::extended_caps`]); zero when
    /// `capabilities` has `CLIENT_MYSQL`.
    pub extended_capabilities: u32,
}

impl Greeting {
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(10);
        put_nul_bytes(out, self.server_version.as_bytes());
        out.put_u32_le(self.connection_id);
        out.put_slice(&self.nonce[..8]);
        out.put_u8(0);
        out.put_u16_le(self.capabilities as u16);
        out.put_u8(self.collation);
        out.put_u16_le(self.status);
        out.put_u16_le((self.capabilities >> 16) as u16);
        out.put_u8(self.nonce.len() as u8 + 1);
        out.put_bytes(0, 6);
        out.put_u32_le(self.extended_capabilities);
        // Part 2 of the nonce, NUL-terminated: 13 bytes for a 20-byte nonce.
        put_nul_bytes(out, &self.nonce[8..]);
        put_nul_bytes(out, self.auth_plugin.as_bytes());
    }

    pub fn decode(payload: &[u8]) -> Result<Greeting> {
        let mut r = Reader::new(payload);
        let version = r.u8()?;
        if version != 10 {
            return Err(ProtocolError::Malformed(
                "unsupported handshake protocol version",
            ));
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
        let connection_id = r.u32()?;
        let mut nonce = r.bytes(8)?.to_vec();
        r.skip(1)?;
        let mut capabilities = u32::from(r.u16()?);
        let mut collation = 0;
        let mut status = 0;
        let mut auth_plugin = String::new();
        let mut extended_capabilities = 0;
        if !r.is_empty() {
            collation = r.u8()?;
            status = r.u16()?;
            capabilities |= u32::from(r.u16()?) << 16;
            let nonce_len = usize::from(r.u8()?);
            r.skip(6)?;
            let extended = r.u32()?;
            if capabilities & caps::LONG_PASSWORD == 0 {
                extended_capabilities = extended;
            }
            if capabilities & caps::SECURE_CONNECTION != 0 {
                let part2 = nonce_len.saturating_sub(8).max(13);
                let bytes = r.bytes(part2.min(r.remaining()))?;
                // The last byte is a NUL terminator, not part of the nonce.
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                nonce.extend_from_slice(&bytes[..end]);
            }
            if capabilities & caps::PLUGIN_AUTH != 0 {
                auth_plugin = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
            }
        }
        Ok(Greeting {
            server_version,
            connection_id,
            nonce,
            capabilities,
            collation,
            status,
            auth_plugin,
            extended_capabilities,
        })
    }
}

/// The client's answer to the greeting. When `ssl_request` is set, this was the short
/// SSLRequest packet and the rest arrives after the TLS handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub ssl_request: bool,
    /// MariaDB's extended capabilities ([`crate::constants::extended_caps`]), read by a
    /// MariaDB server only when `capabilities` lacks `CLIENT_MYSQL`.
    pub extended_capabilities: u32,
}

impl HandshakeResponse {
    pub fn decode(payload: &[u8]) -> Result<HandshakeResponse> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(ProtocolError::Malformed(
                "clients must support the 4.1 protocol",
            ));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.skip(19)?;
        let extended_capabilities = r.u32()?;
        let mut resp = HandshakeResponse {
            capabilities,
            max_packet,
            collation,
            extended_capabilities,
            ..HandshakeResponse::default()
        };
        if r.is_empty() {
            if capabilities & caps::SSL == 0 {
                return Err(ProtocolError::Malformed(
                    "handshake response without a user",
                ));
            }
            resp.ssl_request = true;
            return Ok(resp);
        }
        resp.user = utf8(r.nul_bytes()?)?;
        resp.auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let len = usize::from(r.u8()?);
            r.bytes(len)?.to_vec()
        } else {
            r.nul_bytes()?.to_vec()
        };
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            let db = utf8(r.nul_bytes()?)?;
            resp.database = (!db.is_empty()).then_some(db);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin = Some(utf8(r.nul_bytes()?)?);
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let len = usize::try_from(r.lenenc_int()?)
                .map_err(|_| ProtocolError::Malformed("attribute length"))?;
            let mut attrs = Reader::new(r.bytes(len)?);
            while !attrs.is_empty() {
                let k = utf8(attrs.lenenc_bytes()?)?;
                let v = utf8(attrs.lenenc_bytes()?)?;
                resp.attributes.push((k, v));
            }
        }
        Ok(resp)
    }

    /// Encodes the full response (client role). With `ssl_request`, only the short SSLRequest.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.capabilities);
        out.put_u32_le(self.max_packet);
        out.put_u8(self.collation);
        out.put_bytes(0, 19);
        out.put_u32_le(self.extended_capabilities);
        if self.ssl_request {
            return;
        }
        put_nul_bytes(out, self.user.as_bytes());
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(out, &self.auth_response);
        } else {
            out.put_u8(self.auth_response.len() as u8);
            out.put_slice(&self.auth_response);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            put_nul_bytes(out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            put_nul_bytes(out, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            let mut attrs = BytesMut::new();
            for (k, v) in &self.attributes {
                put_lenenc_bytes(&mut attrs, k.as_bytes());
                put_lenenc_bytes(&mut attrs, v.as_bytes());
            }
            put_lenenc_int(out, attrs.len() as u64);
            out.put_slice(&attrs);
        }
    }
}

/// AuthSwitchRequest: 0xFE, plugin name, new nonce.
pub fn encode_auth_switch(plugin: &str, nonce: &[u8], out: &mut BytesMut) {
    out.put_u8(0xfe);
    put_nul_bytes(out, plugin.as_bytes());
    put_nul_bytes(out, nonce);
}

/// Decodes an AuthSwitchRequest into (plugin, nonce).
pub fn decode_auth_switch(payload: &[u8]) -> Result<(String, Vec<u8>)> {
    let mut r = Reader::new(payload);
    if r.u8()? != 0xfe {
        return Err(ProtocolError::Malformed("not an auth switch request"));
    }
    let plugin = utf8(r.nul_bytes()?)?;
    let mut nonce = r.rest().to_vec();
    if nonce.last() == Some(&0) {
        nonce.pop();
    }
    Ok((plugin, nonce))
}

/// COM_CHANGE_USER's payload after the command byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeUser {
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub collation: Option<u8>,
    pub auth_plugin: Option<String>,
}

impl ChangeUser {
    pub fn decode(body: &[u8], capabilities: u32) -> Result<ChangeUser> {
        let mut r = Reader::new(body);
        let user = utf8(r.nul_bytes()?)?;
        let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
            let len = usize::from(r.u8()?);
            r.bytes(len)?.to_vec()
        } else {
            r.nul_bytes()?.to_vec()
        };
        let db = utf8(r.nul_bytes()?)?;
        let mut out = ChangeUser {
            user,
            auth_response,
            database: (!db.is_empty()).then_some(db),
            ..ChangeUser::default()
        };
        if r.remaining() >= 2 {
            out.collation = Some(r.u16()? as u8);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            out.auth_plugin = Some(utf8(r.nul_bytes()?)?);
        }
        Ok(out)
    }
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtocolError::Malformed("invalid utf-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn greeting() -> Greeting {
        Greeting {
            server_version: "10.11.19-MariaDB".into(),
            connection_id: 42,
            nonce: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH,
            collation: 45,
            status: 2,
            auth_plugin: "mysql_native_password".into(),
            extended_capabilities: crate::constants::extended_caps::STMT_BULK_OPERATIONS,
        }
    }

    #[test]
    fn greeting_round_trip() {
        let g = greeting();
        let mut out = BytesMut::new();
        g.encode(&mut out);
        assert_eq!(Greeting::decode(&out).unwrap(), g);
    }

    #[test]
    fn response_round_trip() {
        let resp = HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::CONNECT_WITH_DB
                | caps::CONNECT_ATTRS
                | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA,
            max_packet: 1 << 24,
            collation: 45,
            user: "dbmesh".into(),
            auth_response: vec![1, 2, 3, 0, 5],
            database: Some("bank".into()),
            auth_plugin: Some("caching_sha2_password".into()),
            attributes: vec![("_client_name".into(), "test".into())],
            ssl_request: false,
            extended_capabilities: crate::constants::extended_caps::STMT_BULK_OPERATIONS,
        };
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        assert_eq!(HandshakeResponse::decode(&out).unwrap(), resp);
    }

    #[test]
    fn ssl_request_is_recognised() {
        let resp = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SSL,
            ssl_request: true,
            ..HandshakeResponse::default()
        };
        let mut out = BytesMut::new();
        resp.encode(&mut out);
        assert_eq!(out.len(), 32);
        assert!(HandshakeResponse::decode(&out).unwrap().ssl_request);
    }

    #[test]
    fn auth_switch_round_trip() {
        let mut out = BytesMut::new();
        encode_auth_switch("mysql_native_password", b"01234567890123456789", &mut out);
        let (p, n) = decode_auth_switch(&out).unwrap();
        assert_eq!(p, "mysql_native_password");
        assert_eq!(n, b"01234567890123456789");
    }

    proptest! {
        #[test]
        fn response_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = HandshakeResponse::decode(&data);
            let _ = Greeting::decode(&data);
            let _ = ChangeUser::decode(&data, u32::MAX);
        }

        #[test]
        fn mutated_valid_response_never_panics(i in 0usize..64, b in any::<u8>(), cut in 0usize..80) {
            let resp = HandshakeResponse {
                capabilities: !caps::SSL,
                user: "u".into(),
                auth_response: vec![9; 20],
                database: Some("db".into()),
                auth_plugin: Some("mysql_native_password".into()),
                attributes: vec![("a".into(), "b".into())],
                ..HandshakeResponse::default()
            };
            let mut out = BytesMut::new();
            resp.encode(&mut out);
            let mut v = out.to_vec();
            let i = i % v.len();
            v[i] = b;
            v.truncate(cut.max(1));
            let _ = HandshakeResponse::decode(&v);
        }
    }
}
