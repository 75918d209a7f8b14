//! Checks of `tls.acme` that need no file or network: the names can be
//! validated by HTTP-01 (no wildcard, no IP address), the directory is an
//! HTTPS URL, contacts are URLs. `storage_dir` and `ca_file` are checked
//! where files are (`runtime::compile`, the same for start, reload and
//! `gateway validate`).

use super::Reporter;
use super::tls::AcmeConfig;

pub(super) fn check_acme(a: &AcmeConfig, r: &mut Reporter) {
    let AcmeConfig {
        directory_url,
        contact,
        domains,
        storage_dir,
        ca_file,
    } = a;
    match directory_url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => {}
        _ => r.error(
            "/tls/acme/directory_url",
            format!(
                "{directory_url:?} is not an https:// URL (RFC 8555 requires HTTPS), e.g. https://acme-v02.api.letsencrypt.org/directory"
            ),
        ),
    }
    for (i, c) in contact.iter().enumerate() {
        if !c.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphabetic())
                && !rest.is_empty()
        }) {
            r.error(
                &format!("/tls/acme/contact/{i}"),
                format!("{c:?} is not a URL; write e.g. mailto:ops@example.com"),
            );
        }
    }
    if domains.is_empty() {
        r.error(
            "/tls/acme/domains",
            "no domain to obtain a certificate for: list at least one name, e.g. [gw.example.com]",
        );
    }
    for (i, d) in domains.iter().enumerate() {
        if let Err(m) = domain_problem(d) {
            r.error(&format!("/tls/acme/domains/{i}"), format!("{d:?}: {m}"));
        }
        if domains[..i].iter().any(|o| o.eq_ignore_ascii_case(d)) {
            r.error(
                &format!("/tls/acme/domains/{i}"),
                format!("{d:?} is listed twice"),
            );
        }
    }
    if storage_dir.is_empty() {
        r.error("/tls/acme/storage_dir", "must not be empty");
    }
    if ca_file.as_ref().is_some_and(String::is_empty) {
        r.error(
            "/tls/acme/ca_file",
            "must not be empty (leave it out for none)",
        );
    }
}

/// Whether `d` is a DNS name an HTTP-01 challenge can prove.
fn domain_problem(d: &str) -> Result<(), &'static str> {
    if d.starts_with("*.") || d.contains('*') {
        return Err(
            "wildcard names need the DNS-01 challenge; HTTP-01 (used here) cannot prove them: list each name",
        );
    }
    if d.parse::<std::net::IpAddr>().is_ok() {
        return Err("an IP address, not a DNS name");
    }
    let name = d.strip_suffix('.').unwrap_or(d);
    if name.is_empty() || name.len() > 253 {
        return Err("not a DNS name");
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err("not a DNS name (letters, digits and '-' in dot-separated labels)");
        }
    }
    if !name.contains('.') {
        return Err("a public CA issues only for fully qualified names (e.g. gw.example.com)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::domain_problem;

    #[test]
    fn http01_names() {
        assert!(domain_problem("gw.example.com").is_ok());
        assert!(domain_problem("GW.Example.com.").is_ok());
        assert!(domain_problem("xn--bcher-kva.example").is_ok());
        for bad in [
            "*.example.com",
            "a.*.example.com",
            "127.0.0.1",
            "::1",
            "",
            "localhost",
            "a..b",
            "-a.example",
            "a_b.example",
            "gw.example.com:443",
        ] {
            assert!(domain_problem(bad).is_err(), "{bad}");
        }
    }
}
