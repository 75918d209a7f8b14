//! Bounded cache of verification and introspection results.
//!
//! Keyed by the SHA-256 of the token, never the token itself, so a memory
//! dump or a debug print shows no credential. Entries expire at a deadline
//! chosen by the caller (the earlier of the token's `exp` and a TTL).
//! Sharded mutexes keep contention low; a full shard first drops expired
//! entries, then an arbitrary one.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// The cache key of a token.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry<V> {
    value: V,
    until: Instant,
}

type Shard<V> = Mutex<HashMap<TokenHash, Entry<V>>>;

pub struct TokenCache<V> {
    shards: Box<[Shard<V>]>,
    per_shard: usize,
}

impl<V: Clone> TokenCache<V> {
    /// A cache holding at most about `max_entries` results.
    pub fn new(max_entries: usize) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &TokenHash) -> &Shard<V> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// The live value for `key`, if any.
    pub fn get(&self, key: &TokenHash) -> Option<V> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(e) if e.until > Instant::now() => Some(e.value.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `value` until `until` (nothing is kept for a past deadline).
    pub fn insert(&self, key: TokenHash, value: V, until: Instant) {
        let now = Instant::now();
        if until <= now {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, e| e.until > now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, Entry { value, until });
    }

    /// Drops `key` (a cached result found stale by its user).
    pub fn remove(&self, key: &TokenHash) {
        self.shard(key)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Entries held (expired ones included until touched).
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

/// When a result stops being reused: at `exp`, or after `ttl` if sooner.
pub(super) fn deadline(exp: Option<u64>, ttl: Option<Duration>) -> Instant {
    let now = Instant::now();
    let to_exp =
        exp.map(|e| Duration::from_secs(e.saturating_sub(jsonwebtoken::get_current_timestamp())));
    let d = match (to_exp, ttl) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => Duration::ZERO,
    };
    // A token may claim any `exp`: cache it a day at most, never overflow.
    now + d.min(Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_until_the_deadline_and_stays_bounded() {
        let c = TokenCache::new(32);
        let later = Instant::now() + Duration::from_secs(60);
        c.insert(token_hash("a"), 1, later);
        assert_eq!(c.get(&token_hash("a")), Some(1));
        assert_eq!(c.get(&token_hash("b")), None);
        c.insert(token_hash("past"), 2, Instant::now());
        assert_eq!(c.get(&token_hash("past")), None);
        for i in 0..10_000 {
            c.insert(token_hash(&i.to_string()), i, later);
        }
        assert!(c.entries() <= 32, "bounded: {}", c.entries());
    }

    #[test]
    fn the_key_is_a_digest_not_the_token() {
        let h = token_hash("secret-token");
        assert_eq!(h.len(), 32);
        assert!(!h.windows(6).any(|w| w == b"secret"));
    }
}
