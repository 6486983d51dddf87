//! What a plugin may ask of the gateway. These are the only ways out of the sandbox.

use crate::__private::bindings::hookgate::plugin::host as wit;

/// Log lines, returned with the call's result (dry runs show them; deliveries keep them).
/// The gateway caps the bytes logged per call and drops the rest.
pub mod log {
    use super::wit;

    pub fn debug(message: &str) {
        wit::log(wit::Level::Debug, message);
    }
    pub fn info(message: &str) {
        wit::log(wit::Level::Info, message);
    }
    pub fn warn(message: &str) {
        wit::log(wit::Level::Warn, message);
    }
    pub fn error(message: &str) {
        wit::log(wit::Level::Error, message);
    }
}

/// A secret the tenant stored for this plugin, or `None` if there is none of that name.
pub fn secret(name: &str) -> Option<String> {
    wit::secret(name)
}

/// HMAC-SHA256 of `data` keyed with `key`, computed by the host.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    wit::hmac_sha256(key, data)
}

/// SHA-256 of `data`, computed by the host.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    wit::sha256(data)
}

/// The current Unix time in milliseconds as the gateway sees it; the same value for the
/// whole call. (There is no other clock in the sandbox.)
pub fn now_ms() -> u64 {
    wit::now_ms()
}

/// Lower-case hexadecimal of `bytes`, e.g. for signatures.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}
