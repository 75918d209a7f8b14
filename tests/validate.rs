//! `gateway validate` in a CI pipeline: standard input, JSON for editors
//! and annotations, configs whose secrets the pipeline does not have.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `gateway ARGS` with `stdin` piped in; exit code and stdout+stderr.
fn gateway(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GATEWAY_TEST_UNSET_HOST")
        .env_remove("GATEWAY_TEST_UNSET_SECRET")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn a_dash_reads_the_config_from_standard_input() {
    let (code, out) = gateway(&["validate", "-"], &read("config/default.yaml"), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("<stdin>:30:15: auth.jwt_secret: warning: HS256 secret is 15 bytes"),
        "{out}"
    );
    assert!(out.contains("<stdin>: ok"), "{out}");

    let broken = read("tests/fixtures/invalid/unknown_upstream.yaml");
    let (code, out) = gateway(&["validate", "-"], &broken, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\n<stdin>:5:15: routes[0].upstream: unknown upstream \"admin-portl\""),
        "{out}"
    );
}

#[test]
fn json_format_lists_every_problem_of_every_file() {
    let (code, out) = gateway(
        &[
            "validate",
            "--format",
            "json",
            "tests/fixtures/invalid/everything_at_once.yaml",
            "config/default.yaml",
        ],
        "",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let list = list.as_array().unwrap();
    for d in list {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["column", "file", "line", "message", "path", "severity"],
            "{d}"
        );
    }
    let find = |path: &str, severity: &str| {
        list.iter()
            .find(|d| d["path"] == path && d["severity"] == severity)
            .unwrap_or_else(|| panic!("no {severity} at {path}: {out}"))
    };
    let d = find("routes[0].upstream", "error");
    assert_eq!(d["file"], "tests/fixtures/invalid/everything_at_once.yaml");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(7), Some(31))
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown upstream \"nope\"")
    );
    find("server.worker_threads", "error");
    find("server.bind_adress", "error");
    find("routes[2]", "error");
    let w = find("auth.jwt_secret", "warning");
    assert_eq!(
        (w["line"].as_u64(), w["column"].as_u64()),
        (Some(11), Some(15))
    );
    let w = list
        .iter()
        .find(|d| d["file"] == "config/default.yaml")
        .expect("the valid file's warning is listed too");
    assert_eq!(w["severity"], "warning");
    assert_eq!(w["path"], "auth.jwt_secret");
    assert!(!out.contains(": ok"), "JSON only: {out}");
}

#[test]
fn unset_variables_are_placeholders_with_allow_missing_env() {
    let file = "tests/fixtures/ci_secrets.yaml";
    // Without the flag an unset variable stays an error, naming it.
    let (code, out) = gateway(&["validate", file], "", &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3:20: upstreams.app.servers[0]: environment variable GATEWAY_TEST_UNSET_HOST is not set"), "{out}");
    assert!(
        out.contains(
            "7:15: auth.jwt_secret: environment variable GATEWAY_TEST_UNSET_SECRET is not set"
        ),
        "{out}"
    );
    assert!(
        !out.contains("HS256"),
        "nothing concluded from an unset variable: {out}"
    );

    // With it: valid, and no warning computed from a placeholder (the
    // literal `${GATEWAY_TEST_UNSET_SECRET}` is 28 bytes: no "secret is 28 bytes").
    let (code, out) = gateway(&["validate", "--allow-missing-env", file], "", &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), format!("{file}: ok"), "no warning: {out}");

    // A variable that is set is checked as usual, flag or not.
    let (code, out) = gateway(
        &["validate", "--allow-missing-env", file],
        "",
        &[("GATEWAY_TEST_UNSET_SECRET", "short")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("7:15: auth.jwt_secret: warning: HS256 secret is 5 bytes"),
        "{out}"
    );

    // Other problems are still found next to placeholders.
    let broken = read(file).replace("upstream: app", "upstream: ap");
    let (code, out) = gateway(&["validate", "--allow-missing-env", "-"], &broken, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("routes[0].upstream: unknown upstream \"ap\""),
        "{out}"
    );
    let errors = out.lines().filter(|l| !l.contains(": warning: ")).count();
    assert_eq!(errors, 1, "{out}");
}

#[test]
fn audience_is_one_string_or_a_list() {
    let base = "upstreams:\n  app: { servers: [\"127.0.0.1:3001\"] }\nroutes:\n  - { path: \"/*\", upstream: app }\nauth:\n  jwt_secret: \"0123456789abcdef0123456789abcdef\"\n";
    for audience in ["api", "\"api\"", "[api, admin]"] {
        let (code, out) = gateway(
            &["validate", "-"],
            &format!("{base}  audience: {audience}\n"),
            &[],
        );
        assert_eq!(code, 0, "audience: {audience}: {out}");
    }
    let (code, out) = gateway(&["validate", "-"], &format!("{base}  audience: 5\n"), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("<stdin>:7:13: auth.audience:"), "{out}");
}

#[test]
fn a_tab_in_the_indentation_is_named() {
    let (code, out) = gateway(
        &["validate", "-"],
        "upstreams:\n  app: { servers: [\"127.0.0.1:3001\"] }\nroutes:\n\t- { path: \"/*\", upstream: app }\n",
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("<stdin>:4:1: (document): invalid YAML: a tab in the indentation"),
        "{out}"
    );
}

#[test]
fn placeholders_where_compile_parses_are_no_panic() {
    // A route's path, upstream, methods, kept headers and rate limit, a
    // policy's key, a trusted proxy and a header value that are unset
    // variables: check says nothing about them, and compile leaves them out
    // instead of trusting that check refused them (or reporting them).
    let text = "upstreams:\n  app:\n    servers: [\"127.0.0.1:9\"]\nroutes:\n  - path: ${GATEWAY_TEST_UNSET_PATH}\n    upstream: app\n    auth_required: false\n  - path: /b\n    upstream: ${GATEWAY_TEST_UNSET_UPSTREAM}\n    auth_required: false\n  - path: /c\n    upstream: app\n    auth_required: false\n    methods: [\"${GATEWAY_TEST_UNSET_METHOD}\"]\n    keep_request_headers: [\"${GATEWAY_TEST_UNSET_KEEP}\"]\n    rate_limit: p\n  - path: /d\n    upstream: app\n    auth_required: false\n    rate_limit: ${GATEWAY_TEST_UNSET_POLICY}\nrate_limits:\n  p: { requests_per_second: 5, burst: 5, key: \"${GATEWAY_TEST_UNSET_KEY}\" }\nserver:\n  trusted_proxies: [\"${GATEWAY_TEST_UNSET_PROXY}\"]\nresponse_headers:\n  x-a: \"${GATEWAY_TEST_UNSET_VALUE}\"\n";
    let (code, out) = gateway(&["validate", "--allow-missing-env", "-"], text, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with(": ok"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}
