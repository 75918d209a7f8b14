//! Semantic checks the JSON schema cannot express. Each check reports into
//! the [`Reporter`] and carries on, so one run finds every problem.

use super::check_auth::{can_verify, check_auth};
use super::model::{
    AuthConfig, FileConfig, HealthCheckConfig, HealthCheckOverride, LoggingConfig, MetricsConfig,
    RouteConfig, ServerConfig, UpstreamConfig,
};
use super::{Reporter, did_you_mean};
use crate::forwarding::{KeepHeaders, TrustedProxies};
use crate::host::Host;
use crate::routing::{Narrowing, Pattern, Router};
use http::Method;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

pub(super) fn check(c: &FileConfig, r: &mut Reporter) {
    let FileConfig {
        server,
        upstreams,
        routes,
        health_check,
        auth,
        metrics,
        logging,
        response_headers,
        tls,
        rate_limits: _,
        compression: _,
    } = c;
    super::check_edge::check_edge(c, r);
    let plain = check_server(server, metrics, r);
    if let Some(t) = tls {
        super::check_tls::check_tls(t, plain, r);
    }
    for (name, u) in upstreams {
        check_upstream(name, u, r);
    }
    check_routes(
        routes,
        upstreams.keys().map(String::as_str).collect(),
        auth,
        r,
    );
    warn_public_method_twins(routes, r);
    check_health(health_check, r);
    check_auth(auth, r);
    super::check_upstream_tls::check_auth_ca_file(auth.ca_file.as_deref(), r);
    let LoggingConfig {
        level: _,
        format: _,
        access_log: _,
    } = logging;
    for (name, value) in response_headers {
        let p = format!("/response_headers/{}", super::diag::escape_segment(name));
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            r.error_at_key(&p, format!("\"{name}\" is not a valid header name"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            r.error(&p, "not a valid header value");
        }
    }
    // A route whose upstream is unknown (a stand-in) might be using any.
    let all_known = (0..routes.len()).all(|i| !r.is_damaged(&format!("/routes/{i}/upstream")));
    for name in upstreams.keys() {
        if all_known && !routes.iter().any(|rt| &rt.upstream == name) {
            r.warning(
                &format!("/upstreams/{name}"),
                format!("upstream \"{name}\" is not used by any route"),
            );
        }
    }
}

/// Returns the plain listener's address when it parses.
fn check_server(s: &ServerConfig, m: &MetricsConfig, r: &mut Reporter) -> Option<SocketAddr> {
    let ServerConfig {
        bind_address,
        worker_threads: _,
        pid_file,
        upgrade_sock,
        grace_period_seconds: _,
        graceful_shutdown_timeout_seconds: _,
        shutdown_delay_seconds: _,
        reuse_port: _,
        trusted_proxies,
        max_body_bytes: _,
        read_buffer_bytes: _,
        keepalive_timeout_seconds: _,
        work_stealing: _,
        write_buffer_bytes: _,
        config_poll_interval_seconds: _,
        request_header_timeout_seconds: _,
        max_request_header_bytes: _,
        max_connections: _,
        max_connections_per_ip: _,
    } = s;
    let proxy = listen_addr(bind_address, "/server/bind_address", r);
    for (i, p) in trusted_proxies.iter().enumerate() {
        if let Err(msg) = TrustedProxies::parse(std::slice::from_ref(p)) {
            r.error(&format!("/server/trusted_proxies/{i}"), msg);
        }
    }
    if pid_file.is_empty() {
        r.error("/server/pid_file", "must not be empty");
    }
    if upgrade_sock.is_empty() {
        r.error("/server/upgrade_sock", "must not be empty");
    }
    let MetricsConfig {
        enabled,
        bind_address: metrics_bind,
        path,
    } = m;
    let metrics = listen_addr(metrics_bind, "/metrics/bind_address", r);
    if !path.starts_with('/') {
        r.error("/metrics/path", format!("\"{path}\" must start with '/'"));
    }
    if let (true, Some(p), Some(m)) = (*enabled, proxy, metrics) {
        let overlap = p.port() == m.port()
            && (p.ip() == m.ip() || p.ip().is_unspecified() || m.ip().is_unspecified());
        if overlap {
            r.error(
                "/metrics/bind_address",
                format!("{metrics_bind} collides with server.bind_address {bind_address}; use another port"),
            );
        }
    }
    proxy
}

pub(super) fn listen_addr(value: &str, pointer: &str, r: &mut Reporter) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(
                pointer,
                format!("\"{value}\" is not an IP:PORT address (e.g. \"0.0.0.0:6188\")"),
            );
            None
        }
    }
}

fn check_upstream(name: &str, u: &UpstreamConfig, r: &mut Reporter) {
    let base = format!("/upstreams/{}", super::diag::escape_segment(name));
    let UpstreamConfig {
        servers,
        // Positive timeouts and thresholds are schema rules (exclusiveMinimum, minimum).
        connect_timeout_seconds: _,
        read_timeout_seconds: _,
        write_timeout_seconds: _,
        idle_timeout_seconds: _,
        retries: _,
        require_request_id_echo: _,
        keepalive: _,
        health_check,
        tls,
    } = u;
    if servers.is_empty() {
        r.error(
            &format!("{base}/servers"),
            "an upstream needs at least one server",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, s) in servers.iter().enumerate() {
        let p = format!("{base}/servers/{i}");
        if let Err(msg) = parse_host_port(s) {
            r.error(&p, msg);
        } else if !seen.insert(s.as_str()) {
            r.error(&p, format!("server \"{s}\" is listed twice"));
        }
    }
    if let Some(o) = health_check {
        let HealthCheckOverride {
            enabled: _,
            interval_seconds: _,
            timeout_seconds: _,
            healthy_threshold: _,
            unhealthy_threshold: _,
            path,
            expected_status_codes: _,
            method: _,
            // Over TLS with the upstream's settings (`tls`).
            use_https: _,
        } = o;
        let hc = format!("{base}/health_check");
        if let Some(p) = path {
            check_hc_path(p, &format!("{hc}/path"), r);
        }
    }
    if let Some(t) = tls {
        super::check_upstream_tls::check_upstream_tls(
            &base,
            servers,
            t,
            health_check.as_ref().and_then(|o| o.use_https),
            r,
        );
    }
}

/// `HOST:PORT` with a numeric port and a non-empty host.
pub(crate) fn parse_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("\"{s}\" is not HOST:PORT (e.g. \"127.0.0.1:3001\")");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn check_routes(routes: &[RouteConfig], upstreams: Vec<&str>, auth: &AuthConfig, r: &mut Reporter) {
    // (path, lowercase host, sorted methods) → index of the first route with them.
    type RouteKey = (String, Option<String>, Option<Vec<String>>);
    let mut seen: HashMap<RouteKey, usize> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        let base = format!("/routes/{i}");
        let RouteConfig {
            path,
            upstream,
            auth_required,
            host,
            methods,
            strip_prefix: _,
            read_timeout_seconds: _,
            write_timeout_seconds: _,
            required_scopes,
            max_body_bytes: _,
            keep_request_headers,
            // Checked in check_edge.rs.
            rate_limit: _,
            cors: _,
            request_headers: _,
            response_headers: _,
        } = route;
        for (j, h) in keep_request_headers.iter().enumerate() {
            if let Err(msg) = KeepHeaders::parse(std::slice::from_ref(h)) {
                r.error(&format!("{base}/keep_request_headers/{j}"), msg);
            }
        }
        if let Err(msg) = Pattern::parse(path) {
            r.error(&format!("{base}/path"), msg);
        }
        if !upstreams.contains(&upstream.as_str()) {
            let hint = match did_you_mean(upstream, &upstreams) {
                Some(s) => format!(", did you mean \"{s}\"?"),
                None => format!(" (defined: {})", upstreams.join(", ")),
            };
            r.error(
                &format!("{base}/upstream"),
                format!("unknown upstream \"{upstream}\"{hint}"),
            );
        }
        let host_key = host.as_ref().map(|h| match Host::parse(h) {
            Ok(parsed) if parsed.port().is_none() => parsed.name().to_string(),
            _ => {
                r.error(
                    &format!("{base}/host"),
                    format!("\"{h}\" is not a host name (no scheme, port or path)"),
                );
                h.to_ascii_lowercase()
            }
        });
        let mut method_key = None;
        if let Some(ms) = methods {
            if ms.is_empty() {
                r.error(
                    &format!("{base}/methods"),
                    "an empty list matches nothing; remove the field to match all methods",
                );
            }
            for (j, m) in ms.iter().enumerate() {
                if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                    r.error(
                        &format!("{base}/methods/{j}"),
                        format!("\"{m}\" is not an HTTP method (use upper case, e.g. GET)"),
                    );
                }
            }
            let mut sorted = ms.clone();
            sorted.sort();
            sorted.dedup();
            method_key = Some(sorted);
        }
        let key = (path.clone(), host_key, method_key);
        if let Some(first) = seen.get(&key) {
            r.error(
                &format!("{base}/path"),
                format!("duplicate route: routes[{first}] has the same path, host and methods"),
            );
        } else {
            seen.insert(key, i);
        }
        for (j, s) in required_scopes.iter().enumerate() {
            if s.is_empty() || s.contains(' ') {
                r.error(
                    &format!("{base}/required_scopes/{j}"),
                    "a scope is one non-empty word",
                );
            }
        }
        if *auth_required && !can_verify(auth) {
            r.error(
                &format!("{base}/auth_required"),
                "this route requires a token but no key is configured to verify it (set auth.jwt_secret, auth.jwks_url, auth.oauth_service_url or auth.introspection)",
            );
        }
        if !*auth_required && !required_scopes.is_empty() {
            r.error(
                &format!("{base}/required_scopes"),
                "required_scopes needs auth_required: true",
            );
        }
    }
}

/// A protected route narrowed to some methods leaves the others to whatever
/// route matches next: warn when that is a public route (a twin with the
/// same path, or a public catch-all), since a client changing the method
/// (or a framework honouring an override header) reaches it without a token.
fn warn_public_method_twins(routes: &[RouteConfig], r: &mut Reporter) {
    const METHODS: [Method; 7] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];
    let host_of = |rt: &RouteConfig| {
        rt.host
            .as_ref()
            .map(|h| Host::parse(h).map_or_else(|_| h.to_ascii_lowercase(), |h| h.name().into()))
    };
    let mut router = Router::default();
    for (i, rt) in routes.iter().enumerate() {
        let (Ok(p), Some(ms)) = (
            Pattern::parse(&rt.path),
            rt.methods
                .as_ref()
                .map(|ms| {
                    ms.iter()
                        .map(|m| Method::from_bytes(m.as_bytes()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()
                .ok(),
        ) else {
            continue;
        };
        let narrowing = Narrowing {
            host: host_of(rt).map(Into::into),
            methods: ms.map(Into::into),
        };
        router.insert(&p, narrowing, i as u32);
    }
    for (i, protected) in routes.iter().enumerate() {
        let (Some(methods), Ok(pattern)) = (
            protected
                .methods
                .as_ref()
                .filter(|_| protected.auth_required),
            Pattern::parse(&protected.path),
        ) else {
            continue;
        };
        // The route's own path, and one below it for a wildcard.
        let mut probes = vec![if pattern.prefix.is_empty() {
            "/".to_string()
        } else {
            pattern.prefix.clone()
        }];
        if pattern.wildcard {
            probes.push(format!("{}/x", pattern.prefix));
        }
        let host = host_of(protected);
        let mut public: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for m in METHODS
            .iter()
            .filter(|m| !methods.iter().any(|x| x == m.as_str()))
        {
            for path in &probes {
                if let Some(j) = router.lookup(path, host.as_deref(), m)
                    && !routes[j as usize].auth_required
                {
                    let list = public.entry(j as usize).or_default();
                    if !list.contains(&m.as_str()) {
                        list.push(m.as_str());
                    }
                }
            }
        }
        for (j, others) in public {
            r.warning(
                &format!("/routes/{i}/methods"),
                format!(
                    "this route is protected only for {}; routes[{j}] (public) answers {} on its paths without a token — narrow the public route or protect it",
                    methods.join(", "),
                    others.join(", ")
                ),
            );
        }
    }
}

fn check_health(h: &HealthCheckConfig, r: &mut Reporter) {
    // Intervals, timeouts, thresholds and status codes are schema rules.
    let HealthCheckConfig {
        enabled: _,
        interval_seconds: _,
        timeout_seconds: _,
        healthy_threshold: _,
        unhealthy_threshold: _,
        path,
        expected_status_codes: _,
        method: _,
        // Over TLS with each upstream's settings (`upstreams.NAME.tls`).
        use_https: _,
    } = h;
    check_hc_path(path, "/health_check/path", r);
}

pub(super) fn check_hc_path(path: &str, pointer: &str, r: &mut Reporter) {
    if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path).is_err() {
        r.error(
            pointer,
            format!("\"{path}\" must be a path starting with '/'"),
        );
    }
}
