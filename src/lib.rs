//! pingora-gateway: an API gateway on Cloudflare's Pingora.
//!
//! ```text
//! config file ─► config (as written: serde + schemars)
//!             ─► config::compile (every error at once, FILE:LINE:COL: path: msg)
//!             ─► RouteTable (matcher, upstream pools, auth keys, header values)
//!             ─► ArcSwap ─► proxy (loads the table once per request)
//! ```

pub mod auth;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod forwarding;
pub mod health;
pub mod host;
pub mod idle;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod server;
pub mod standin;
pub mod upstream;
pub mod validate;
