//! A rate limit's memory is bounded whatever the number of keys: the
//! resident set of this process (one test, nothing else running in it)
//! before and after 1,000,000 distinct keys go through one policy.

use pingora_gateway::config::edge::RateLimitConfig;
use pingora_gateway::policy::{LimiterRegistry, Verdict};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn a_million_distinct_keys_leave_the_resident_set_unchanged() {
    let start = rss_kib();
    let registry = LimiterRegistry::default();
    let policy = RateLimitConfig {
        key: "header:x-api-key".into(),
        requests_per_second: 50.0,
        burst: 100,
    };
    let limiter = registry.get("per-key", &policy).unwrap();
    // The table's pages are zero-filled on first touch: 100,000 keys touch
    // all of them (512 slots a page, four random slots a key).
    for i in 0u64..100_000 {
        limiter.check(9, &i.to_le_bytes());
    }
    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut limited = 0u64;
    for i in 0u64..1_000_000 {
        let key = format!("key-{i}");
        if matches!(limiter.check(3, key.as_bytes()), Verdict::Limited { .. }) {
            limited += 1;
        }
    }
    let took = started.elapsed();
    let after = rss_kib();
    eprintln!(
        "RSS {start} KiB at start, {before} KiB with the policy's table ({} KiB) touched, {after} KiB after 1,000,000 distinct keys ({took:?}, {:.0} ns a check); refused: {limited}",
        limiter.state_bytes() / 1024,
        took.as_nanos() as f64 / 1e6
    );
    assert!(after.saturating_sub(before) < 512, "{before} → {after} KiB");
    assert_eq!(
        limited, 0,
        "a first request of a fresh key within its burst"
    );
}
