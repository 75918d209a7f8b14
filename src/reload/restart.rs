//! Which settings a reload cannot apply, derived from the config types.
//!
//! The sections in [`PROCESS_SECTIONS`] are read once, when the process
//! starts, except the fields in [`LIVE`]; a change to any other field of
//! them (a field added later included) is reported as needing a new
//! process. Every other top-level section is applied whole by a reload.
//! The fields are compared as serialized, so no field list is written by
//! hand; the unit test below fails when a field of the schema is in
//! neither [`LIVE`] nor [`NEEDS_RESTART`], so each new field gets a
//! decision (and the README's list stays true).

use crate::config::model::FileConfig;
use serde_json::Value;

/// Top-level sections whose fields only a new process applies, except [`LIVE`].
pub const PROCESS_SECTIONS: &[&str] = &["server", "metrics", "logging", "tls"];

/// Top-level sections a reload applies whole.
pub const LIVE_SECTIONS: &[&str] = &[
    "upstreams",
    "routes",
    "health_check",
    "auth",
    "response_headers",
    "rate_limits",
    "compression",
];

/// Fields of [`PROCESS_SECTIONS`] a reload applies.
pub const LIVE: &[&str] = &[
    "server.trusted_proxies",
    "server.max_body_bytes",
    "logging.level",
    "logging.access_log",
    "tls.certificates",
    "tls.redirect_http",
    "tls.hsts",
];

/// Fields of [`PROCESS_SECTIONS`] only a new process applies. Documentation
/// and the completeness test: the comparison warns about every field not
/// in [`LIVE`], listed here or not.
pub const NEEDS_RESTART: &[&str] = &[
    "server.bind_address",
    "server.worker_threads",
    "server.pid_file",
    "server.upgrade_sock",
    "server.grace_period_seconds",
    "server.graceful_shutdown_timeout_seconds",
    "server.shutdown_delay_seconds",
    "server.reuse_port",
    "server.read_buffer_bytes",
    "server.write_buffer_bytes",
    "server.work_stealing",
    "server.keepalive_timeout_seconds",
    "server.config_poll_interval_seconds",
    "server.request_header_timeout_seconds",
    "server.max_request_header_bytes",
    "server.max_connections",
    "server.max_connections_per_ip",
    "metrics.enabled",
    "metrics.bind_address",
    "metrics.path",
    "logging.format",
    "tls.bind_address",
    "tls.min_version",
    "tls.acme",
];

/// The settings of `new` that differ from those the process `started`
/// with and that only a new process applies, each with its value in `new`
/// (`tls` alone when the HTTPS listener is added or removed).
pub fn pending(started: &FileConfig, new: &FileConfig) -> Vec<(String, Value)> {
    let (old, new) = (as_value(started), as_value(new));
    let mut out = vec![];
    let sections = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|o| o.keys());
    let mut sections: Vec<&String> = sections.collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        if LIVE_SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let (a, b) = (&old[section], &new[section]);
        match (a.as_object(), b.as_object()) {
            (Some(a), Some(b)) => {
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let field = format!("{section}.{k}");
                    if !LIVE.contains(&field.as_str()) && a.get(k) != b.get(k) {
                        out.push((field, b.get(k).cloned().unwrap_or(Value::Null)));
                    }
                }
            }
            _ if a != b => out.push((section.clone(), b.clone())),
            _ => {}
        }
    }
    out
}

fn as_value(c: &FileConfig) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// What an operator does to apply a restart-needed setting: under systemd
/// (`INVOCATION_ID` is set) its reload, else the generic ways.
pub fn action(under_systemd: bool) -> &'static str {
    if under_systemd {
        "run `systemctl reload pingora-gateway` (a graceful upgrade, nothing dropped) or restart the service"
    } else {
        "restart the gateway, or upgrade gracefully (start `gateway run --upgrade` with the same config, then send SIGQUIT to this process)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Property names of a schema node, following `$ref` and `anyOf`.
    fn fields(schema: &Value, node: &Value) -> BTreeSet<String> {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            return fields(schema, &schema["$defs"][name]);
        }
        let mut out: BTreeSet<String> = node
            .get("properties")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for key in ["anyOf", "oneOf", "allOf"] {
            for sub in node
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.extend(fields(schema, sub));
            }
        }
        out
    }

    #[test]
    fn every_field_is_either_live_or_needs_a_restart() {
        let schema = crate::config::schema();
        let top = fields(&schema, &schema);
        let classified: BTreeSet<String> = PROCESS_SECTIONS
            .iter()
            .chain(LIVE_SECTIONS)
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            top, classified,
            "a top-level section is neither in LIVE_SECTIONS nor in PROCESS_SECTIONS"
        );
        let mut seen = BTreeSet::new();
        for section in PROCESS_SECTIONS {
            for f in fields(&schema, &schema["properties"][section]) {
                let field = format!("{section}.{f}");
                let live = LIVE.contains(&field.as_str());
                let restart = NEEDS_RESTART.contains(&field.as_str());
                assert!(
                    live != restart,
                    "{field}: list it in exactly one of LIVE and NEEDS_RESTART (src/reload/restart.rs)"
                );
                seen.insert(field);
            }
        }
        for f in LIVE.iter().chain(NEEDS_RESTART) {
            assert!(seen.contains(*f), "{f} is listed but is no config field");
        }
    }

    fn cfg(text: &str) -> FileConfig {
        crate::config::load_str("t.yaml", text, &|_| None)
            .unwrap()
            .config
    }

    #[test]
    fn names_each_changed_process_setting() {
        let old = cfg(
            "upstreams:\n  a: { servers: [\"127.0.0.1:1\"] }\nroutes:\n  - { path: /*, upstream: a, auth_required: false }\n",
        );
        let mut new = old.clone();
        assert!(pending(&old, &new).is_empty());
        new.server.bind_address = "0.0.0.0:7000".into();
        new.server.max_connections_per_ip = 5;
        new.server.trusted_proxies = vec!["10.0.0.0/8".into()];
        new.metrics.bind_address = "0.0.0.0:9191".into();
        new.logging.level = crate::config::model::LogLevel::Debug;
        new.routes.clear();
        let names: Vec<String> = pending(&old, &new).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            names,
            [
                "metrics.bind_address",
                "server.bind_address",
                "server.max_connections_per_ip"
            ]
        );
        let mut with_tls = old.clone();
        with_tls.tls =
            Some(serde_json::from_value(serde_json::json!({"certificates": []})).unwrap());
        let names: Vec<String> = pending(&old, &with_tls)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(names, ["tls"]);
    }
}
