//! TLS, one stack for everything: rustls 0.23 with the *ring* provider (the
//! one Pingora's `rustls` feature links), for the HTTPS listener, ACME,
//! upstream connections and identity-provider fetches alike.
//!
//! - [`pem`]: reading and checking certificate, key and CA files — the same
//!   functions serve a start, a reload and `gateway validate`, so they cannot
//!   disagree about a file.
//! - [`store`]: the process-wide certificate store every handshake resolves
//!   from (SNI), written by the file loader and the ACME client.
//! - [`challenge`]: ACME HTTP-01 answers, shared by the ACME client (which
//!   publishes them) and the plain listener (which serves them).
//! - [`accept`]: the HTTPS listener's handshake (our own rustls config over
//!   a Pingora-owned TCP listener) and its counters; [`record`]: the TLS
//!   stream itself (rustls's unbuffered API, no record buffer while idle);
//!   [`conn`]: that stream as a Pingora stream.
//! - [`outbound`]: TLS to upstream servers (`upstreams.NAME.tls`): trust,
//!   SNI and client certificates applied to Pingora peers, and CA files.
//! - [`acme`]: automatic certificates (RFC 8555, HTTP-01), kept under
//!   `tls.acme.storage_dir` and renewed in the background.

pub mod accept;
pub mod acme;
pub mod challenge;
pub mod conn;
pub mod files;
pub mod outbound;
pub mod pem;
pub mod record;
pub mod store;

pub use accept::{Acceptor, TlsCounters};
pub use files::{CertFiles, CertWatchService};

use std::sync::Arc;

/// The crypto provider every TLS configuration of the process is built with.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process default (what reqwest, instant-acme
/// and Pingora pick up when not handed one). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
