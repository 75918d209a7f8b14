//! Checks of `upstreams.NAME.tls` and `auth.ca_file` that need no file: the
//! SNI name, pairs that must come together, settings that defeat each
//! other. The files are loaded and checked in `runtime::compile` (through
//! `tls::pem`): readable, parseable, the key matching the certificate.

use super::Reporter;
use super::upstream_tls::UpstreamTlsConfig;
use rustls::pki_types::ServerName;

/// `base` is the upstream's pointer (`/upstreams/NAME`); `hc_use_https` its
/// own `health_check.use_https`, if set.
pub(super) fn check_upstream_tls(
    base: &str,
    servers: &[String],
    tls: &UpstreamTlsConfig,
    hc_use_https: Option<bool>,
    r: &mut Reporter,
) {
    let UpstreamTlsConfig {
        sni,
        verify,
        ca_file,
        client_cert_file,
        client_key_file,
    } = tls;
    let p = |field: &str| format!("{base}/tls/{field}");
    match sni {
        Some(name) => {
            if let Err(msg) = server_name(name) {
                r.error(&p("sni"), msg);
            }
        }
        None => {
            for (i, s) in servers.iter().enumerate() {
                let host = host_of(s);
                if !host.is_empty() && server_name(host).is_err() {
                    r.error(
                        &format!("{base}/servers/{i}"),
                        format!("\"{host}\" cannot be checked against a certificate; set tls.sni to the name the certificate carries"),
                    );
                }
            }
        }
    }
    for (field, v) in [
        ("ca_file", ca_file),
        ("client_cert_file", client_cert_file),
        ("client_key_file", client_key_file),
    ] {
        if v.as_deref().is_some_and(str::is_empty) {
            r.error(&p(field), "must not be empty");
        }
    }
    match (client_cert_file, client_key_file) {
        (Some(_), None) => r.error(
            &p("client_cert_file"),
            "a client certificate needs its key: set client_key_file too",
        ),
        (None, Some(_)) => r.error(
            &p("client_key_file"),
            "a client key needs its certificate: set client_cert_file too",
        ),
        _ => {}
    }
    if !verify {
        r.warning(
            &p("verify"),
            "the servers' certificates are not checked: anyone on the network path can impersonate them",
        );
        if ca_file.is_some() {
            r.warning(&p("ca_file"), "unused: verify is false");
        }
    }
    if hc_use_https == Some(false) {
        r.warning(
            &format!("{base}/health_check/use_https"),
            "health checks go over plain HTTP to servers that speak TLS: they will fail",
        );
    }
}

pub(super) fn check_auth_ca_file(ca_file: Option<&str>, r: &mut Reporter) {
    if ca_file.is_some_and(str::is_empty) {
        r.error("/auth/ca_file", "must not be empty");
    }
}

/// The host of `HOST:PORT` (brackets of an IPv6 literal removed).
pub fn host_of(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn server_name(name: &str) -> Result<(), String> {
    ServerName::try_from(name)
        .map(|_| ())
        .map_err(|_| format!("\"{name}\" is not a DNS name or an IP address"))
}
