//! Config as written → runtime [`RouteTable`]. Everything a request needs
//! is prepared here, off the request path: the matcher, upstream pools and
//! their peers, verification keys, header values.
//!
//! [`prepare`] (= [`crate::config::load_file`] + [`compile`]) is the one function
//! behind `gateway validate`, the start and every reload.

use super::{Route, RouteTable};
use crate::auth::{Authenticator, JwksRegistry};
use crate::config::diag::escape_segment;
use crate::config::model::{
    FileConfig, HealthCheckConfig, HealthCheckOverride, IntrospectionMode, RouteConfig,
    UpstreamConfig,
};
use crate::config::{ConfigErrors, Diagnostic, Loaded, load_bytes, load_file};
use crate::forwarding::{KeepHeaders, TrustedProxies};
use crate::health::{Checker, Spec};
use crate::host::Host;
use crate::metrics::Metrics;
use crate::routing::{Narrowing, Pattern, Router};
use crate::tls::CertFiles;
use crate::tls::challenge::Challenges;
use crate::tls::files::{Checked, ReloadCounters, check_pair};
use crate::tls::outbound::{UpstreamTls, load_ca_file};
use crate::tls::store::CertStore;
use crate::upstream::{Timeouts, UpstreamPool, resolve};
use http::{HeaderName, HeaderValue, Method};
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_load_balancing::HealthRegistry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// What compiled tables share across reloads.
#[derive(Clone)]
pub struct CompileContext {
    /// Health state of every server, kept across reloads; its check is `checker`.
    pub health: Arc<HealthRegistry>,
    /// Runs the active checks with each upstream's settings.
    pub checker: Checker,
    /// The process's metric registry (route handles are resolved from it).
    pub metrics: Arc<Metrics>,
    /// JWKS key sets by location, kept across reloads (never refetched
    /// because a config was compiled again).
    pub jwks: Arc<JwksRegistry>,
    /// Resolve server names (always, except `gateway validate --no-resolve`
    /// in pipelines that cannot reach the production DNS).
    pub resolve_names: bool,
    /// The certificate files in force and the store every handshake
    /// resolves from (its ACME half is written by the ACME client).
    pub certs: Arc<CertFiles>,
    /// Pending ACME HTTP-01 answers: published by the ACME client, served
    /// by the plain listener while `tls.acme` is set.
    pub challenges: Arc<Challenges>,
    /// Rate-limit state by policy, kept across reloads for unchanged policies.
    pub limiters: Arc<crate::policy::LimiterRegistry>,
}

impl Default for CompileContext {
    fn default() -> Self {
        let checker = Checker::default();
        let health = HealthRegistry::new();
        health.set_health_check(Box::new(checker.clone()));
        let metrics = Metrics::new();
        checker.on_transition({
            let metrics = metrics.clone();
            move |upstream, server| metrics.health_transition(upstream, server)
        });
        let certs = CertFiles::new(
            CertStore::new(),
            ReloadCounters {
                success: metrics.tls_reloads.with_label_values(&["success"]),
                failure: metrics.tls_reloads.with_label_values(&["failure"]),
            },
        );
        CompileContext {
            health: Arc::new(health),
            checker,
            metrics,
            jwks: Arc::default(),
            resolve_names: true,
            certs,
            challenges: Challenges::new(),
            limiters: Arc::default(),
        }
    }
}

/// A checked and compiled config file.
#[derive(Debug)]
pub struct Prepared {
    pub table: RouteTable,
    pub config: FileConfig,
    pub warnings: Vec<Diagnostic>,
}

/// Reads, checks and compiles `path`: what `gateway validate` runs, and
/// what the start and every reload run before using a file.
pub fn prepare(path: &Path, ctx: &CompileContext) -> Result<Prepared, ConfigErrors> {
    let loaded = load_file(path)?;
    compile(loaded, ctx)
}

/// [`prepare`] for bytes already read (a reload reads its file once, and
/// hashes exactly what it checks; `gateway validate -` reads stdin).
pub fn prepare_bytes(
    name: &str,
    bytes: &[u8],
    ctx: &CompileContext,
    allow_missing_env: bool,
) -> Result<Prepared, ConfigErrors> {
    let env = |k: &str| std::env::var(k).ok();
    compile(load_bytes(name, bytes, &env, allow_missing_env)?, ctx)
}

/// Compiles a checked config. Fails on what can't be known without
/// touching the outside world (a server name that does not resolve, a file),
/// and, never by a panic, on a value it parses again that check let through
/// (an error in the same [`ConfigErrors`]; a placeholder of `validate
/// --allow-missing-env` is left out silently).
pub fn compile(loaded: Loaded, ctx: &CompileContext) -> Result<Prepared, ConfigErrors> {
    let Loaded {
        config,
        mut warnings,
        hash,
        mut report,
    } = loaded;

    let mut upstreams = BTreeMap::new();
    let mut health_specs = HashMap::new();
    // Health is kept per server address: which upstream's checks it got.
    let mut checked_as: HashMap<std::net::SocketAddr, (&str, HealthCheckConfig)> = HashMap::new();
    for (name, u) in &config.upstreams {
        let UpstreamConfig {
            servers,
            connect_timeout_seconds,
            read_timeout_seconds,
            write_timeout_seconds,
            idle_timeout_seconds,
            retries,
            require_request_id_echo,
            keepalive,
            health_check,
            tls,
        } = u;
        let mut hc = effective_health_check(&config.health_check, health_check.as_ref());
        // A TLS upstream is probed over TLS unless its own checks say otherwise.
        if tls.is_some() && health_check.as_ref().and_then(|o| o.use_https).is_none() {
            hc.use_https = true;
        }
        let peer_tls = tls.as_ref().and_then(|t| match UpstreamTls::load(t) {
            Ok(t) => Some(t),
            Err((field, msg)) => {
                report.error(&format!("/upstreams/{name}/tls/{field}"), msg);
                None
            }
        });
        let probe_tls = match &peer_tls {
            Some(t) => t,
            None => &UpstreamTls::defaults(),
        };
        let mut addrs = Vec::with_capacity(servers.len());
        for (i, s) in servers.iter().enumerate() {
            match resolve(s) {
                Ok(a) => addrs.push(a),
                Err(_) if !ctx.resolve_names => {
                    // Checked as HOST:PORT already; stands in for the real address.
                    addrs.push(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                }
                Err(msg) => {
                    // Reported (unless it is a placeholder of `validate
                    // --allow-missing-env`); the stand-in keeps the lists aligned.
                    report.error(&format!("/upstreams/{name}/servers/{i}"), msg);
                    addrs.push(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
                }
            }
        }
        let timeouts = Timeouts {
            connect: connect_timeout_seconds.duration(),
            read: read_timeout_seconds.duration(),
            write: write_timeout_seconds.duration(),
            idle: idle_timeout_seconds.duration(),
        };
        for (i, (server, addr)) in servers.iter().zip(&addrs).enumerate() {
            match checked_as.get(addr) {
                Some((first, first_hc)) if *first_hc != hc => report.warning(
                    &format!("/upstreams/{name}/servers/{i}"),
                    format!(
                        "{server} is also in upstream \"{first}\" with other health-check settings; one health state per server: \"{first}\"'s checks apply to both"
                    ),
                ),
                Some(_) => {}
                None => {
                    checked_as.insert(*addr, (name.as_str(), hc.clone()));
                }
            }
            health_specs
                .entry(PingoraAddr::Inet(*addr))
                .or_insert_with(|| {
                    Arc::new(Spec::new(name, server, &hc, |p| probe_tls.apply(p, server)))
                });
        }
        let pool = UpstreamPool::new(
            name,
            servers,
            &addrs,
            *retries,
            timeouts,
            crate::upstream::Reuse {
                keepalive: *keepalive,
                require_echo: *require_request_id_echo,
            },
            peer_tls.as_ref(),
            &ctx.health,
            &ctx.checker,
            &ctx.metrics.upstream_desync,
        );
        upstreams.insert(name.clone(), Arc::new(pool));
    }
    let certificates = load_certificates(&config, &mut report);
    if let Some(acme) = config.tls.as_ref().and_then(|t| t.acme.as_ref()) {
        for (pointer, message) in crate::tls::acme::check_files(acme) {
            report.error(pointer, message);
        }
    }
    let auth_roots = match &config.auth.ca_file {
        Some(path) => load_ca_file(Path::new(path)).unwrap_or_else(|msg| {
            report.error("/auth/ca_file", msg);
            Vec::new()
        }),
        None => Vec::new(),
    };
    if !report.errors.is_empty() {
        report.warnings = warnings;
        return Err(report.into_errors());
    }

    let mut router = Router::default();
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        let RouteConfig {
            path,
            upstream,
            auth_required,
            host,
            methods,
            strip_prefix,
            read_timeout_seconds,
            write_timeout_seconds,
            required_scopes,
            max_body_bytes,
            keep_request_headers,
            rate_limit,
            cors,
            request_headers,
            response_headers,
        } = r;
        // Check has refused what fails here; a failure left is a value
        // nothing may be concluded from (a placeholder of `validate
        // --allow-missing-env`, whose error is not reported): the route is
        // left out, so the router's indices stay those of `routes`.
        let at = |field: &str| format!("/routes/{i}/{field}");
        let pattern = match Pattern::parse(path) {
            Ok(p) => p,
            Err(msg) => {
                report.error(&at("path"), msg);
                continue;
            }
        };
        let Some(pool) = upstreams.get(upstream).cloned() else {
            report.error(&at("upstream"), format!("no upstream named \"{upstream}\""));
            continue;
        };
        let narrowing = Narrowing {
            host: host.as_ref().map(|h| {
                Host::parse(h)
                    .map_or_else(|_| h.to_ascii_lowercase(), |h| h.name().into())
                    .into()
            }),
            methods: methods.as_ref().map(|ms| {
                ms.iter()
                    .enumerate()
                    .filter_map(|(j, m)| {
                        Method::from_bytes(m.as_bytes())
                            .map_err(|e| report.error(&at(&format!("methods/{j}")), e.to_string()))
                            .ok()
                    })
                    .collect()
            }),
        };
        router.insert(&pattern, narrowing, routes.len() as u32);
        let mut timeouts = pool.timeouts;
        if let Some(t) = read_timeout_seconds {
            timeouts.read = t.duration();
        }
        if let Some(t) = write_timeout_seconds {
            timeouts.write = t.duration();
        }
        let keep_headers = parse_each(
            keep_request_headers,
            &at("keep_request_headers"),
            &mut report,
            |l| KeepHeaders::parse(l),
        );
        let rate_limit = rate_limit.as_ref().and_then(|name| {
            let Some(policy) = config.rate_limits.get(name) else {
                report.error(
                    &at("rate_limit"),
                    format!("no rate_limits policy \"{name}\""),
                );
                return None;
            };
            let Some(limiter) = ctx.limiters.get(name, policy) else {
                let key = format!("/rate_limits/{}/key", escape_segment(name));
                report.error(&key, format!("invalid key \"{}\"", policy.key));
                return None;
            };
            Some(super::RouteLimit {
                limiter,
                limited: ctx.metrics.rate_limited.with_label_values(&[path, name]),
            })
        });
        routes.push(Route {
            pattern: path.as_str().into(),
            prefix: pattern.prefix.into(),
            upstream: pool,
            auth_required: *auth_required,
            strip_prefix: *strip_prefix,
            timeouts,
            required_scopes: required_scopes.iter().map(|s| s.as_str().into()).collect(),
            max_body_bytes: max_body_bytes.unwrap_or(config.server.max_body_bytes),
            keep_headers,
            metrics: ctx.metrics.route(path, upstream),
            edge: super::RouteEdge {
                rate_limit,
                cors: cors.as_ref().map(crate::policy::Cors::new),
                request_headers: crate::policy::HeaderRules::new(request_headers),
                response_headers: crate::policy::HeaderRules::new(response_headers),
            },
        });
    }

    let response_headers: Box<[_]> = config
        .response_headers
        .iter()
        .filter_map(|(k, v)| {
            let at = format!("/response_headers/{}", escape_segment(k));
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                (Ok(k), Ok(v)) => Some((k, v)),
                (Err(e), _) => {
                    report.error_at_key(&at, e.to_string());
                    None
                }
                (_, Err(e)) => {
                    report.error(&at, e.to_string());
                    None
                }
            }
        })
        .collect();
    let hsts = config.tls.as_ref().and_then(|t| t.hsts.as_deref());
    let hsts = hsts.and_then(|v| {
        HeaderValue::from_str(v)
            .map_err(|e| report.error("/tls/hsts", e.to_string()))
            .ok()
    });
    let tls_response_headers = response_headers
        .iter()
        .cloned()
        .chain(hsts.map(|v| (http::header::STRICT_TRANSPORT_SECURITY, v)))
        .collect();
    let redirect_https = config
        .tls
        .as_ref()
        .filter(|t| t.redirect_http)
        .and_then(|t| t.bind_address.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port());

    let a = &config.auth;
    let has_source = a.jwt_secret.is_some()
        || a.jwks_url.is_some()
        || a.oauth_service_url.is_some()
        || a.introspection.mode != IntrospectionMode::Off;
    let auth = has_source.then(|| Authenticator::from_config(a, &ctx.jwks, &auth_roots));

    let trusted_proxies = parse_each(
        &config.server.trusted_proxies,
        "/server/trusted_proxies",
        &mut report,
        |l| TrustedProxies::parse(l),
    );
    // What check should have refused (never silently compiled around).
    if !report.errors.is_empty() {
        report.warnings = warnings;
        return Err(report.into_errors());
    }
    // Last step: nothing can fail any more, so the new settings are final.
    ctx.checker.set_specs(health_specs);
    ctx.certs.install(certificates);
    warnings.append(&mut report.warnings);
    let table = RouteTable {
        router,
        routes: routes.into(),
        upstreams,
        response_headers,
        tls_response_headers,
        redirect_https,
        acme_challenges: config
            .tls
            .as_ref()
            .is_some_and(|t| t.acme.is_some())
            .then(|| ctx.challenges.clone()),
        compression: crate::policy::Compression::new(&config.compression).map(Arc::new),
        trusted_proxies,
        access_log: config.logging.access_log,
        auth,
        health: ctx.checker.clone(),
        metrics: ctx.metrics.clone(),
        hash,
    };
    Ok(Prepared {
        table,
        config,
        warnings,
    })
}

/// Loads and checks every `tls.certificates` pair (errors and warnings
/// into `report`), with where each is in the file for later reloads.
fn load_certificates(
    config: &FileConfig,
    report: &mut crate::config::Reporter,
) -> Vec<(
    crate::config::tls::CertificateConfig,
    [crate::config::Diagnostic; 2],
    Checked,
)> {
    let Some(tls) = &config.tls else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(tls.certificates.len());
    for (i, c) in tls.certificates.iter().enumerate() {
        let p = |field: &str| format!("/tls/certificates/{i}/{field}");
        match check_pair(c) {
            Ok(checked) => {
                if let Some(w) = &checked.warning {
                    report.warning(&p("cert_file"), w.clone());
                }
                let at = [
                    report.locate(&p("cert_file")),
                    report.locate(&p("key_file")),
                ];
                out.push((c.clone(), at, checked));
            }
            Err((field, msg)) => report.error(&p(field.as_str()), msg),
        }
    }
    out
}

/// `parse` of the entries of `list` that parse alone; each other one is
/// reported at `pointer/INDEX` (where a placeholder's error is not said).
fn parse_each<T: Default>(
    list: &[String],
    pointer: &str,
    report: &mut crate::config::Reporter,
    parse: impl Fn(&[&str]) -> Result<T, String>,
) -> T {
    let mut good = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        match parse(&[s.as_str()]) {
            Ok(_) => good.push(s.as_str()),
            Err(msg) => report.error(&format!("{pointer}/{i}"), msg),
        }
    }
    parse(&good).unwrap_or_else(|msg| {
        report.error(pointer, msg);
        T::default()
    })
}

/// The global `health_check` with an upstream's override applied.
pub fn effective_health_check(
    global: &HealthCheckConfig,
    o: Option<&HealthCheckOverride>,
) -> HealthCheckConfig {
    let Some(o) = o else {
        return global.clone();
    };
    let HealthCheckOverride {
        enabled,
        interval_seconds,
        timeout_seconds,
        healthy_threshold,
        unhealthy_threshold,
        path,
        expected_status_codes,
        method,
        use_https,
    } = o;
    HealthCheckConfig {
        enabled: enabled.unwrap_or(global.enabled),
        interval_seconds: interval_seconds.unwrap_or(global.interval_seconds),
        timeout_seconds: timeout_seconds.unwrap_or(global.timeout_seconds),
        healthy_threshold: healthy_threshold.unwrap_or(global.healthy_threshold),
        unhealthy_threshold: unhealthy_threshold.unwrap_or(global.unhealthy_threshold),
        path: path.clone().unwrap_or_else(|| global.path.clone()),
        expected_status_codes: expected_status_codes
            .clone()
            .unwrap_or_else(|| global.expected_status_codes.clone()),
        method: method.unwrap_or(global.method),
        use_https: use_https.unwrap_or(global.use_https),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    const TEXT: &str = "upstreams:\n  app: { servers: [\"127.0.0.1:3001\"] }\nroutes:\n  - { path: \"/*\", upstream: app }\nhealth_check: { enabled: false }\nauth:\n  jwks_url: \"http://127.0.0.1:9/jwks\"\n";

    #[test]
    fn a_recompiled_config_keeps_the_key_sets_it_had() {
        let ctx = CompileContext::default();
        let compile_once = || compile(load_str("t.yaml", TEXT, &|_| None).unwrap(), &ctx).unwrap();
        let first = compile_once();
        let source = ctx.jwks.source(
            crate::auth::JwksLocation::Url("http://127.0.0.1:9/jwks".into()),
            Default::default(),
            ctx.jwks.client(&[]),
        );
        source
            .install(br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#)
            .unwrap();
        // A reload compiles again and drops the old table: the keys stay.
        let second = compile_once();
        drop(first);
        let again = ctx.jwks.source(
            crate::auth::JwksLocation::Url("http://127.0.0.1:9/jwks".into()),
            Default::default(),
            ctx.jwks.client(&[]),
        );
        assert!(Arc::ptr_eq(&source, &again));
        assert!(again.current().by_kid("k").is_some());
        assert!(second.table.auth.is_some());
    }
}
