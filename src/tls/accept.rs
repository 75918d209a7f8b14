//! The HTTPS listener's handshake: our own rustls `ServerConfig` over a TCP
//! listener that Pingora owns.
//!
//! Why not Pingora's TLS listener: its rustls builder fixes the versions to
//! TLS 1.2 + 1.3 (no `tls.min_version: "1.3"`), gives no way to hand it a
//! `ServerConfig`, and reports failed handshakes only as log lines (no
//! `gateway_tls_handshake_errors_total{reason}`). So the listener is a plain
//! Pingora TCP listener — Pingora still owns the socket, and hands it over
//! on a graceful upgrade like any other — and the listening application
//! (`idle::ParkIdle`) runs [`Acceptor::accept`] first. Certificates
//! come from the [`CertStore`] (SNI, swapped live), ALPN offers `h2` then
//! `http/1.1`; the result is a [`TlsConn`] that Pingora's HTTP/1 and HTTP/2
//! code serves like its own TLS stream.

use super::conn::TlsConn;
use super::record::ServerTls;
use super::store::CertStore;
use crate::config::tls::TlsVersion;
use pingora_core::protocols::Stream;
use prometheus::{IntCounter, IntCounterVec};
use std::sync::Arc;
use std::time::Duration;

/// Reasons of `gateway_tls_handshake_errors_total`.
pub const ERROR_REASONS: [&str; 7] = [
    "timeout",
    "closed",
    "protocol_version",
    "no_certificate",
    "alert_received",
    "bad_message",
    "other",
];

/// Handshake counters, resolved once (a count is one atomic add).
pub struct TlsCounters {
    /// `[TLS 1.2, TLS 1.3] × [h2, http/1.1, none]`.
    handshakes: [[IntCounter; 3]; 2],
    errors: [IntCounter; ERROR_REASONS.len()],
}

impl TlsCounters {
    /// Handles into `handshakes{version,alpn}` and `errors{reason}`.
    pub fn new(handshakes: &IntCounterVec, errors: &IntCounterVec) -> Self {
        let row =
            |v: &str| ["h2", "http/1.1", "none"].map(|a| handshakes.with_label_values(&[v, a]));
        TlsCounters {
            handshakes: [row("1.2"), row("1.3")],
            errors: ERROR_REASONS.map(|r| errors.with_label_values(&[r])),
        }
    }

    fn error(&self, reason: &str) {
        if let Some(i) = ERROR_REASONS.iter().position(|r| *r == reason) {
            self.errors[i].inc();
        }
    }
}

/// Accepts TLS on streams of the HTTPS listener; see the module docs.
pub struct Acceptor {
    config: Arc<rustls::ServerConfig>,
    timeout: Duration,
    counters: Arc<TlsCounters>,
}

impl Acceptor {
    /// `timeout`: the whole handshake must finish within it (the listener's
    /// request-header timeout).
    pub fn new(
        store: Arc<CertStore>,
        min_version: TlsVersion,
        timeout: Duration,
        counters: Arc<TlsCounters>,
    ) -> Result<Self, rustls::Error> {
        let config = server_config(store, min_version)?;
        Ok(Acceptor {
            config: Arc::new(config),
            timeout,
            counters,
        })
    }

    /// Runs the handshake; `None` (counted by reason) when it fails.
    pub async fn accept(&self, stream: Stream) -> Option<Stream> {
        let handshake = ServerTls::accept(stream, self.config.clone());
        let done = pingora_timeout::timeout(self.timeout, handshake).await;
        let tls = match done {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                let reason = error_reason(&e);
                tracing::debug!(reason, error = %e, "TLS handshake failed");
                self.counters.error(reason);
                return None;
            }
            Err(_) => {
                self.counters.error("timeout");
                return None;
            }
        };
        let conn = tls.connection();
        let v = usize::from(conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3));
        let a = match conn.alpn_protocol() {
            Some(b"h2") => 0,
            Some(b"http/1.1") => 1,
            _ => 2,
        };
        self.counters.handshakes[v][a].inc();
        Some(Box::new(TlsConn::new(tls)))
    }
}

/// The listener's rustls configuration: versions from `min_version`, SNI
/// certificates from `store`, ALPN `h2` then `http/1.1`, session tickets.
pub fn server_config(
    store: Arc<CertStore>,
    min_version: TlsVersion,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

/// The `reason` label of a failed handshake.
fn error_reason(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match e.get_ref().and_then(|i| i.downcast_ref::<E>()) {
        Some(E::PeerIncompatible(_)) => "protocol_version",
        Some(E::General(_)) => "no_certificate",
        Some(E::AlertReceived(_)) => "alert_received",
        Some(
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_),
        ) => "bad_message",
        Some(_) => "other",
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => "closed",
            std::io::ErrorKind::InvalidData => "bad_message",
            _ => "other",
        },
    }
}
