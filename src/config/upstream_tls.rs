//! `upstreams.NAME.tls` as written: TLS from the gateway to an upstream's
//! servers. Absent = plain HTTP, exactly as before. The files named here are
//! loaded and checked where TLS is visible (`runtime::compile`, through
//! `tls::pem`), the same function for a start, a reload and `gateway validate`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// TLS to an upstream's servers (rustls, like the HTTPS listener).
/// Connections are pooled and reused like plain ones: a handshake per new
/// connection, not per request.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Name sent in SNI and checked against the server's certificate.
    /// Default: the host part of each server (`billing.internal` for
    /// `billing.internal:8443`; an IP address is checked against the
    /// certificate's IP addresses and sends no SNI).
    #[serde(default)]
    pub sni: Option<String>,
    /// Check the server's certificate: its chain up to a trusted root, its
    /// validity dates and its name. Default: true. With false any
    /// certificate is accepted (encryption without authentication).
    #[serde(default = "super::defaults::default_true")]
    pub verify: bool,
    /// PEM file of extra roots (a private CA); the system's roots are
    /// always trusted too. Default: none.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM certificate chain presented to servers that ask for one (mutual
    /// TLS); needs `client_key_file`. Default: none.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// PEM private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub client_key_file: Option<String>,
}
