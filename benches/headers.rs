//! Header preparation on the request path: what the gateway adds to every
//! request going upstream and to every response going back.
//!
//! `cargo bench --bench headers`

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue};
use pingora_gateway::forwarding::{Forwarding, KeepHeaders, prepare_upstream_request};
use pingora_gateway::host::Host;
use pingora_gateway::proxy::decorate_response;
use pingora_http::{RequestHeader, ResponseHeader};
use std::hint::black_box;

fn request() -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/kline/btc?from=1", Some(8)).unwrap();
    for (k, v) in [
        ("Host", "gateway.example"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0"),
        ("Accept", "text/html,application/json;q=0.9,*/*;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Cookie", "theme=dark; session=0123456789abcdef"),
    ] {
        req.append_header(k, v).unwrap();
    }
    req
}

fn response() -> ResponseHeader {
    let mut resp = ResponseHeader::build(200, Some(8)).unwrap();
    for (k, v) in [
        ("Content-Type", "application/json"),
        ("Content-Length", "1234"),
        ("Cache-Control", "no-store"),
        ("Date", "Fri, 27 Nov 2026 07:02:25 GMT"),
    ] {
        resp.append_header(k, v).unwrap();
    }
    resp
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("headers");
    let id = HeaderValue::from_static("d174c4d9190d699bcba840594a7b05e4");
    let ip = Some("203.0.113.7".parse().unwrap());
    let security: Vec<(HeaderName, HeaderValue)> = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
    ]
    .into_iter()
    .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
    .collect();
    let (req, resp) = (request(), response());
    let host = Host::parse("gateway.example").unwrap();
    let forwarding = Forwarding {
        peer: ip,
        trusted: false,
        host: Some(&host),
        scheme: "http",
        local_port: Some(8080),
        request_id: &id,
        keep: KeepHeaders::default(),
    };
    // The clone of a parsed header is part of each iteration; measure it alone too.
    g.bench_function("clone_request_only", |b| b.iter(|| black_box(req.clone())));
    g.bench_function("upstream_request", |b| {
        b.iter(|| {
            let mut r = req.clone();
            prepare_upstream_request(&mut r, &forwarding).unwrap();
            black_box(r)
        })
    });
    g.bench_function("clone_response_only", |b| {
        b.iter(|| black_box(resp.clone()))
    });
    g.bench_function("response", |b| {
        b.iter(|| {
            let mut r = resp.clone();
            decorate_response(&mut r, &id, &security).unwrap();
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, headers);
criterion_main!(benches);
