//! Route lookup cost at 10 and 10,000 routes (the matcher must not grow
//! linearly with the route count), plus path normalization.
//!
//! ```text
//! cargo bench --bench routing
//! ```

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use pingora_gateway::routing::{Narrowing, Pattern, Router, normalize_path};
use std::hint::black_box;

fn router(n: usize) -> Router {
    let mut r = Router::default();
    r.insert(&Pattern::parse("/*").unwrap(), Narrowing::default(), 0);
    for i in 1..n {
        let p = format!("/svc{}/v{}/*", i % 1000, i / 1000);
        r.insert(&Pattern::parse(&p).unwrap(), Narrowing::default(), i as u32);
    }
    r
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_lookup");
    for n in [10, 10_000] {
        let r = router(n);
        let hit = format!("/svc{}/v{}/orders/123", (n - 1) % 1000, (n - 1) / 1000);
        g.bench_function(format!("{n}_routes_hit"), |b| {
            b.iter(|| r.lookup(black_box(&hit), None, &Method::GET))
        });
        g.bench_function(format!("{n}_routes_fallback"), |b| {
            b.iter(|| r.lookup(black_box("/nothing/here/at/all"), None, &Method::GET))
        });
    }
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize_path");
    g.bench_function("clean", |b| {
        b.iter(|| normalize_path(black_box("/kline/api/candles/1m")))
    });
    g.bench_function("dirty", |b| {
        b.iter(|| normalize_path(black_box("/kline//api/./x/../candles/%7E1m")))
    });
    g.finish();
}

criterion_group!(benches, lookup, normalize);
criterion_main!(benches);
