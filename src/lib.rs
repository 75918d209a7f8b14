//! pingora-gateway: an API gateway on Cloudflare's Pingora.
//!
//! ```text
//! config file ─► config (as written: serde + schemars; checks: every error
//!                at once, FILE:LINE:COL: path: msg)
//!             ─► runtime::compile ─► RouteTable (matcher, upstream pools,
//!                auth keys, header values), borrowing process-wide state
//!             ─► ArcSwap ─► proxy (loads the table once per request)
//! ```
//!
//! Modules form layers and only use lower ones (checked by
//! `tests/architecture.rs`; drawn in the README's "Architecture" section):
//! `host` `routing` ← `forwarding` ← `config` ← components (`auth`
//! `downstream` `health` `logging` `policy` `tls` ← `idle` `metrics` `upstream`) ←
//! `runtime` ← `proxy` `reload` ← `admin` `lifecycle` ← `server` `validate` `cli`.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod downstream;
pub mod forwarding;
pub mod health;
pub mod host;
pub mod idle;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod validate;
