//! The identity of a config file: SHA-256 of exactly the bytes that were
//! checked, so `gateway_config_info{hash}` and `/readyz` match `sha256sum`.

use sha2::{Digest, Sha256};
use std::fmt;

/// SHA-256 of a config file's bytes. Printed (`{}`, `{:x}`) as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConfigHash([u8; 32]);

impl ConfigHash {
    pub fn of(bytes: &[u8]) -> ConfigHash {
        ConfigHash(Sha256::digest(bytes).into())
    }
}

impl fmt::LowerHex for ConfigHash {
    /// All 64 digits, whatever the width asked for (a hash is never cut).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

impl fmt::Debug for ConfigHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_what_sha256sum_prints() {
        // `printf 'abc' | sha256sum`
        let h = ConfigHash::of(b"abc");
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(h.to_string(), want);
        assert_eq!(format!("{h:016x}"), want);
    }
}
