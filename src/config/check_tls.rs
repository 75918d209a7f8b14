//! Checks of the `tls:` section that need no file: the listener address,
//! the HSTS value, that some certificate can be served. The certificate and
//! key files themselves are loaded and checked where `tls` is visible
//! (`runtime::compile`, through `tls::pem`), the same function for a start,
//! a reload and `gateway validate`.

use super::Reporter;
use super::tls::{CertificateConfig, TlsConfig};
use std::net::SocketAddr;

pub(super) fn check_tls(t: &TlsConfig, plain: Option<SocketAddr>, r: &mut Reporter) {
    let TlsConfig {
        bind_address,
        certificates,
        acme,
        redirect_http: _,
        hsts,
        min_version: _,
    } = t;
    let tls = super::check::listen_addr(bind_address, "/tls/bind_address", r);
    if let (Some(p), Some(t)) = (plain, tls)
        && p.port() == t.port()
    {
        // The listening application tells the listeners apart by local port.
        r.error(
            "/tls/bind_address",
            format!(
                "{bind_address} has the port of server.bind_address; HTTPS needs a port of its own"
            ),
        );
    }
    if certificates.is_empty() && acme.is_none() {
        r.error(
            "/tls/certificates",
            "no certificate to serve: list at least one cert_file/key_file pair, or set tls.acme",
        );
    }
    for (i, c) in certificates.iter().enumerate() {
        let CertificateConfig {
            cert_file,
            key_file,
        } = c;
        for (field, v) in [("cert_file", cert_file), ("key_file", key_file)] {
            if v.is_empty() {
                r.error(
                    &format!("/tls/certificates/{i}/{field}"),
                    "must not be empty",
                );
            }
        }
    }
    if let Some(a) = acme {
        super::check_acme::check_acme(a, r);
    }
    if let Some(h) = hsts
        && http::HeaderValue::from_str(h).is_err()
    {
        r.error("/tls/hsts", "not a valid header value");
    }
}
