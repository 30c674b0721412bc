//! Packet framing and the login packets: the input is the byte stream a client sends. It is
//! framed as the proxy frames it (`PacketConn::read_packet`), the first packet is decoded as the
//! handshake response and every later COM_CHANGE_USER with the capabilities it announced. The
//! packets a backend sends at login (greeting, OK, ERR, auth switch) are decoded too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::constants::com;
use protocol::framing::PacketConn;
use protocol::handshake::{decode_auth_switch, ChangeUser, Greeting, HandshakeResponse};
use protocol::packets::OkPacket;
use protocol::ServerError;

/// Small enough that a fuzzed length is often past it, as a client's max_allowed_packet is.
const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut conn = PacketConn::new(std::io::Cursor::new(data.to_vec()));
    let mut capabilities = 0;
    let mut first = true;
    while let Ok(packet) = dbmesh_fuzz::ready(conn.read_packet(LIMIT)) {
        assert!(packet.len() <= LIMIT);
        if first {
            first = false;
            if let Ok(response) = HandshakeResponse::decode(&packet) {
                capabilities = response.capabilities;
            }
        } else if let Some((&com::CHANGE_USER, body)) = packet.split_first() {
            let _ = ChangeUser::decode(body, capabilities);
        }
        let _ = Greeting::decode(&packet);
        let _ = OkPacket::decode(&packet);
        let _ = ServerError::decode(&packet);
        let _ = decode_auth_switch(&packet);
    }
});
