//! Edge policies compiled from the config (issue 17), used by the proxy:
//! [`ratelimit`] (a lock-free, bounded-memory GCRA per key and the
//! process-wide registry that keeps a policy's state across reloads),
//! [`cors`] (origin matching and the `Access-Control-*` values),
//! [`headers`] (per-route add/remove rules) and [`compress`] (encoding
//! negotiation and which responses are compressed).
//!
//! Everything here is built at compile time, off the request path; the
//! request path only reads it.

pub mod compress;
pub mod cors;
pub mod encoder;
pub mod headers;
pub mod ratelimit;

pub use compress::Compression;
pub use cors::Cors;
pub use encoder::Encoder;
pub use headers::HeaderRules;
pub use ratelimit::{Limiter, LimiterRegistry, Verdict};
