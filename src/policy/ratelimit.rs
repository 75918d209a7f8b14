//! Rate limits: GCRA (the generic cell rate algorithm, i.e. a token bucket
//! kept as one "theoretical arrival time" per key) over a fixed-size table.
//!
//! Memory is bounded whatever the number of keys: a policy owns
//! [`ROWS`] × [`SLOTS`] `AtomicU64` (2 MiB), allocated once. A key hashes
//! (SipHash with a per-policy random seed, so clients cannot aim at a slot)
//! to one slot per row, count-min style: the key's arrival time is the
//! *smallest* of its slots (another key sharing a slot can only have pushed
//! it later), and an admitted request raises each of its slots to the new
//! time (conservative update). A key is refused wrongly only when every one
//! of its four slots is shared with a key that is at its limit right now:
//! with K keys at their limit at once, about (K / 65536)^4 (10,000 → 0.05 %).
//! Idle keys cost nothing: a slot whose time has passed is as good as empty.
//!
//! Lock-free: the slot holding the key's minimum is advanced with one
//! compare-and-swap (retried if another request of the same slot won), the
//! others with `fetch_max`. Refused requests write nothing.

use crate::config::edge::{KeyKind, RateLimitConfig};
use http::HeaderValue;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Hash rows per policy.
pub const ROWS: usize = 4;
/// Slots per row (a power of two).
pub const SLOTS: usize = 1 << 16;

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; `remaining` more requests would be admitted right now.
    Allowed { remaining: u64 },
    /// Over the limit: the next request is admitted after `retry_after`.
    Limited { retry_after: Duration },
}

/// One policy's buckets.
pub struct Limiter {
    pub name: Box<str>,
    pub kind: KeyKind,
    /// `RateLimit-Policy` value: `"name";q=N;w=S`.
    pub policy_header: HeaderValue,
    slots: Box<[AtomicU64]>,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// `burst × interval`: how far ahead of now a key's time may run.
    capacity: u64,
    seed: RandomState,
    epoch: Instant,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("name", &self.name).finish()
    }
}

impl Limiter {
    fn new(name: &str, kind: KeyKind, c: &RateLimitConfig) -> Limiter {
        let interval = (1e9 / c.requests_per_second).max(1.0) as u64;
        let burst = u64::from(c.burst.max(1));
        // Quota per window for the header: whole requests per whole seconds.
        let (q, w) = if c.requests_per_second >= 1.0 {
            (c.requests_per_second.round() as u64, 1)
        } else {
            (1, (1.0 / c.requests_per_second).round() as u64)
        };
        let policy_header = HeaderValue::from_str(&format!("\"{name}\";q={q};w={w}"))
            .unwrap_or(HeaderValue::from_static("\"\";q=0;w=1"));
        Limiter {
            name: name.into(),
            kind,
            policy_header,
            slots: (0..ROWS * SLOTS).map(|_| AtomicU64::new(0)).collect(),
            interval,
            capacity: interval.saturating_mul(burst),
            seed: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Counts one request of `key` (`tag` keeps kinds of keys apart: a user
    /// called like an address is another key).
    pub fn check(&self, tag: u8, key: &[u8]) -> Verdict {
        // +1: zero is an empty slot, never a time.
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        self.check_at(tag, key, now)
    }

    fn check_at(&self, tag: u8, key: &[u8], now: u64) -> Verdict {
        let mut h = self.seed.build_hasher();
        h.write_u8(tag);
        h.write(key);
        let h = h.finish();
        let (h1, h2) = (h as u32 as usize, ((h >> 32) as u32 | 1) as usize);
        let idx: [usize; ROWS] = std::array::from_fn(|i| {
            i * SLOTS + (h1.wrapping_add(i.wrapping_mul(h2)) & (SLOTS - 1))
        });
        for _ in 0..16 {
            let (mut min, mut at) = (u64::MAX, 0);
            for (i, &j) in idx.iter().enumerate() {
                let v = self.slots[j].load(Ordering::Acquire);
                if v < min {
                    (min, at) = (v, i);
                }
            }
            let next = min.max(now).saturating_add(self.interval);
            let ahead = next - now;
            if ahead > self.capacity {
                return Verdict::Limited {
                    retry_after: Duration::from_nanos(ahead - self.capacity),
                };
            }
            if self.slots[idx[at]]
                .compare_exchange(min, next, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                for (i, &j) in idx.iter().enumerate() {
                    if i != at {
                        self.slots[j].fetch_max(next, Ordering::AcqRel);
                    }
                }
                return Verdict::Allowed {
                    remaining: (self.capacity - ahead) / self.interval,
                };
            }
        }
        // Sixteen lost races in a row on one slot: admit rather than spin.
        Verdict::Allowed { remaining: 0 }
    }

    /// Bytes of bucket state (fixed at creation).
    pub fn state_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }
}

/// Process-wide: every policy's limiter by name and parameters. A reload
/// that keeps a policy unchanged gets the same limiter back, with its
/// buckets; a changed or new one starts empty. Only compiling locks it.
#[derive(Default)]
pub struct LimiterRegistry {
    map: Mutex<HashMap<PolicyId, Weak<Limiter>>>,
}

/// A policy's name, rate (bits of the f64), burst and key.
type PolicyId = (String, u64, u32, String);

impl LimiterRegistry {
    /// The limiter for `name` with these parameters (`c.key` checked).
    pub fn get(&self, name: &str, c: &RateLimitConfig) -> Option<Arc<Limiter>> {
        let kind = KeyKind::parse(&c.key).ok()?;
        let id = (
            name.to_string(),
            c.requests_per_second.to_bits(),
            c.burst,
            c.key.clone(),
        );
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(l) = map.get(&id).and_then(Weak::upgrade) {
            return Some(l);
        }
        let l = Arc::new(Limiter::new(name, kind, c));
        map.insert(id, Arc::downgrade(&l));
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: u32) -> Limiter {
        let c = RateLimitConfig {
            key: "client_ip".into(),
            requests_per_second: rps,
            burst,
        };
        Limiter::new("p", KeyKind::ClientIp, &c)
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = limiter(10.0, 5);
        let t = SEC;
        for i in 0..5 {
            assert_eq!(
                l.check_at(0, b"k", t),
                Verdict::Allowed { remaining: 4 - i }
            );
        }
        let Verdict::Limited { retry_after } = l.check_at(0, b"k", t) else {
            panic!("sixth request admitted");
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        // Another key has its own bucket.
        assert!(matches!(l.check_at(0, b"j", t), Verdict::Allowed { .. }));
        // One token back every 100 ms.
        assert!(matches!(
            l.check_at(0, b"k", t + SEC / 10),
            Verdict::Allowed { remaining: 0 }
        ));
        assert!(matches!(
            l.check_at(0, b"k", t + SEC / 10),
            Verdict::Limited { .. }
        ));
        // Idle long enough: a full burst again.
        assert_eq!(
            l.check_at(0, b"k", t + 10 * SEC),
            Verdict::Allowed { remaining: 4 }
        );
        assert_eq!(l.policy_header, "\"p\";q=10;w=1");
    }

    #[test]
    fn slow_rates_and_tags() {
        let l = limiter(0.5, 1);
        assert!(matches!(l.check_at(0, b"k", SEC), Verdict::Allowed { .. }));
        assert!(matches!(l.check_at(1, b"k", SEC), Verdict::Allowed { .. }));
        assert_eq!(
            l.check_at(0, b"k", SEC),
            Verdict::Limited {
                retry_after: Duration::from_secs(2)
            }
        );
        assert_eq!(l.policy_header, "\"p\";q=1;w=2");
    }

    #[test]
    fn a_registry_keeps_unchanged_policies() {
        let reg = LimiterRegistry::default();
        let c = RateLimitConfig {
            key: "user".into(),
            requests_per_second: 5.0,
            burst: 2,
        };
        let a = reg.get("p", &c).unwrap();
        assert!(Arc::ptr_eq(&a, &reg.get("p", &c).unwrap()));
        let changed = RateLimitConfig {
            burst: 3,
            ..c.clone()
        };
        assert!(!Arc::ptr_eq(&a, &reg.get("p", &changed).unwrap()));
        assert!(!Arc::ptr_eq(&a, &reg.get("q", &c).unwrap()));
    }

    /// 1,000,000 keys, 10,000 new ones a second for 100 s, each at 1
    /// request/s (about 10,000 keys at their limit at any moment): how many
    /// first requests the shared slots refuse wrongly. (Memory is measured
    /// in tests/ratelimit_memory.rs, a process of its own.)
    #[test]
    fn a_million_keys_are_rarely_confused() {
        let l = limiter(1.0, 1);
        assert_eq!(l.state_bytes(), 2 * 1024 * 1024);
        let mut limited = 0;
        for i in 0u64..1_000_000 {
            let now = SEC + i * 100_000;
            if matches!(
                l.check_at(0, &i.to_le_bytes(), now),
                Verdict::Limited { .. }
            ) {
                limited += 1;
            }
        }
        eprintln!("first requests wrongly limited: {limited} of 1,000,000");
        assert!(limited < 2_000, "{limited}");
    }

    proptest::proptest! {
        /// Whatever the arrival times, one key never gets more than
        /// `burst + elapsed × rate` requests admitted.
        #[test]
        fn never_more_than_the_bucket_allows(rps in 1u32..1000, burst in 1u32..50, gaps in proptest::collection::vec(0u64..50_000_000, 1..300)) {
            let l = limiter(f64::from(rps), burst);
            let mut t = SEC;
            let mut admitted = 0u64;
            for g in &gaps {
                t += g;
                if matches!(l.check_at(0, b"k", t), Verdict::Allowed { .. }) {
                    admitted += 1;
                }
            }
            let elapsed = (t - SEC) as f64 / 1e9;
            let bound = f64::from(burst) + elapsed * f64::from(rps) + 1.0;
            proptest::prop_assert!(admitted as f64 <= bound, "{admitted} > {bound}");
        }
    }
}
