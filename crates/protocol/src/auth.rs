//! Password scrambles of the two auth plugins dbmesh speaks, for both roles: verifying a
//! client's answer (server role) and answering a backend's challenge (client role).
//!
//! <https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_authentication_methods.html>

use rand::Rng;
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// The first byte of an AuthMoreData packet.
pub const AUTH_MORE_DATA: u8 = 0x01;
/// caching_sha2_password: the scramble matched (sent as AuthMoreData).
pub const FAST_AUTH_SUCCESS: u8 = 0x03;
/// caching_sha2_password: send the password in clear (over TLS) instead.
pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
/// caching_sha2_password: a client asking for the server's RSA public key.
pub const REQUEST_PUBLIC_KEY: u8 = 0x02;

/// A 20-byte challenge of printable bytes (no NUL, which would end the string on the wire).
pub fn new_nonce() -> [u8; 20] {
    let mut rng = rand::thread_rng();
    let mut nonce = [0u8; 20];
    for b in &mut nonce {
        *b = rng.gen_range(0x21..0x7f);
    }
    nonce
}

/// mysql_native_password: `SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))`; empty for an empty password.
pub fn native_password_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha1::digest(password);
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(&nonce[..nonce.len().min(20)]);
    h.update(stage2);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// caching_sha2_password: `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)`; empty for an
/// empty password.
pub fn caching_sha2_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = Sha256::digest(password);
    let stage2 = Sha256::digest(stage1);
    let mut h = Sha256::new();
    h.update(stage2);
    h.update(&nonce[..nonce.len().min(20)]);
    let mix = h.finalize();
    stage1.iter().zip(mix.iter()).map(|(a, b)| a ^ b).collect()
}

/// The scramble `plugin` expects for `password`, or `None` for a plugin dbmesh does not speak.
pub fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Option<Vec<u8>> {
    match plugin {
        MYSQL_NATIVE_PASSWORD => Some(native_password_scramble(password, nonce)),
        CACHING_SHA2_PASSWORD => Some(caching_sha2_scramble(password, nonce)),
        _ => None,
    }
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_scramble_known_vector() {
        // Computed independently with Python: hashlib.sha1 over the same definition.
        let nonce = b"01234567890123456789";
        let got = native_password_scramble(b"secret", nonce);
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "7abe1a8776b59e931059451f81e596a60dbbf7a8");
    }

    #[test]
    fn caching_sha2_scramble_known_vector() {
        let got = caching_sha2_scramble(b"secret", b"01234567890123456789");
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "1a2da2573c2faa367e2afddb54cdfd11a95ed22eef0167151196a6fc8e3d3813"
        );
    }

    #[test]
    fn empty_password_gives_empty_scramble() {
        assert!(native_password_scramble(b"", b"x").is_empty());
        assert!(caching_sha2_scramble(b"", b"x").is_empty());
    }

    #[test]
    fn nonce_has_no_nul() {
        for _ in 0..100 {
            assert!(!new_nonce().contains(&0));
        }
    }
}
