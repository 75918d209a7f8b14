//! The `tls:` section as written: the HTTPS listener, its certificates
//! (files and ACME) and the HTTPS policies of the plain listener. Absent =
//! plain HTTP only, exactly as before.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// HTTPS listener (HTTP/2 and HTTP/1.1 by ALPN) with SNI certificates that
/// reload live, optionally obtained by ACME.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the HTTPS listener, `IP:PORT`. Default: `0.0.0.0:6443`.
    /// `server.bind_address` stays the plain-HTTP listener.
    #[serde(default = "default_tls_bind")]
    pub bind_address: String,
    /// Certificate/key pairs (PEM). SNI picks the pair whose certificate
    /// names the requested host (exact, then one-label wildcard); the first
    /// pair is served to clients without SNI or with an unknown name. May be
    /// empty when `acme` is set (the ACME certificate is then the default).
    /// Edits of these files apply to new handshakes within 2 s; a broken or
    /// mismatched pair keeps the previous certificate.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Automatic certificates from an ACME (RFC 8555) CA, HTTP-01 challenges
    /// answered by the plain listener.
    #[serde(default)]
    pub acme: Option<AcmeConfig>,
    /// Answer every plain-HTTP request with `308` to the same host and path
    /// over HTTPS (ACME challenges excepted). Default: false.
    #[serde(default)]
    pub redirect_http: bool,
    /// `Strict-Transport-Security` value sent on HTTPS responses only, e.g.
    /// `max-age=31536000; includeSubDomains`. Default: none.
    #[serde(default)]
    pub hsts: Option<String>,
    /// Lowest TLS version accepted: `"1.2"` or `"1.3"`. Default: `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
}

/// A certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key_file: String,
}

/// ACME account and the names to obtain a certificate for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's ACME directory, e.g.
    /// `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// Account contacts, e.g. `mailto:ops@example.com`. Default: none.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Names the certificate covers (HTTP-01: no wildcards); also served by SNI.
    pub domains: Vec<String>,
    /// Where the account key and certificates are kept (files mode 0600).
    /// Default: `/var/lib/pingora-gateway/acme`.
    #[serde(default = "default_acme_storage")]
    pub storage_dir: String,
    /// Extra PEM root trusted for the ACME server itself (a private or test
    /// CA); the system's roots are always trusted. Default: none.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

fn default_tls_bind() -> String {
    "0.0.0.0:6443".into()
}

fn default_acme_storage() -> String {
    "/var/lib/pingora-gateway/acme".into()
}
