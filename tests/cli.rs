//! `gateway validate` and `gateway schema`, as a CI pipeline runs them.

use std::path::Path;
use std::process::Command;

fn gateway(args: &[&str]) -> (i32, String) {
    gateway_env(args, &[])
}

fn gateway_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("GATEWAY_TEST_UNSET_HOST")
        .env_remove("GATEWAY_TEST_UNSET_SECRET")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_seed_config_validates_with_a_warning_for_its_short_secret() {
    let (code, out) = gateway(&["validate", "config/default.yaml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "config/default.yaml:30:15: auth.jwt_secret: warning: HS256 secret is 15 bytes"
        ),
        "{out}"
    );
    assert!(out.contains("config/default.yaml: ok"), "{out}");
}

/// Each broken file, with every line `gateway validate` must print for it.
const BROKEN: &[(&str, &[&str])] = &[
    (
        "unknown_field.yaml",
        &[
            "2:3: server.bind_adress: unknown field \"bind_adress\", did you mean \"bind_address\"?",
            "6:56: routes[0].strip_prefx: unknown field \"strip_prefx\", did you mean \"strip_prefix\"?",
            "9:3: logging.formatt: unknown field \"formatt\", did you mean \"format\"?",
        ],
    ),
    (
        "unknown_upstream.yaml",
        &[
            "5:15: routes[0].upstream: unknown upstream \"admin-portl\", did you mean \"admin-portal\"?",
            "8:15: routes[1].upstream: unknown upstream \"zzz\" (defined: admin-portal)",
        ],
    ),
    (
        "bad_values.yaml",
        &[
            "2:19: server.worker_threads: \"four\" is not of type \"integer\"",
            "6:30: upstreams.app.connect_timeout_seconds: 0 is less than or equal to the minimum of 0",
            "10:21: health_check.interval_seconds: -1 is less than or equal to the minimum of 0",
            "11:24: health_check.unhealthy_threshold: 0 is less than the minimum of 1",
            "12:32: health_check.expected_status_codes[1]: 700 is greater than the maximum of 599",
            "13:11: health_check.method: \"PATCH\" is not one of \"GET\", \"HEAD\"",
            "15:10: logging.level: \"loud\" is not one of \"trace\", \"debug\", \"info\", \"warn\", \"error\"",
        ],
    ),
    (
        "bad_routes.yaml",
        &[
            "4:13: routes[0].path: pattern \"/admin/*/x\": '*' is only allowed as the whole last segment",
            "5:13: routes[1].path: pattern \"admin\" must start with '/'",
            "6:13: routes[2].path: pattern \"/a/../b\" is not a normalized path",
            "8:13: routes[4].path: duplicate route: routes[3] has the same path, host and methods",
            "9:70: routes[5].methods[0]: \"get\" is not an HTTP method (use upper case, e.g. GET)",
        ],
    ),
    (
        "syntax.yaml",
        &["3:1: (document): invalid YAML: did not find expected ',' or '}'"],
    ),
    (
        "missing_env.yaml",
        &[
            "2:20: upstreams.app.servers[0]: environment variable GATEWAY_TEST_UNSET_HOST is not set",
            "6:15: auth.jwt_secret: environment variable GATEWAY_TEST_UNSET_SECRET is not set",
        ],
    ),
    (
        "bad_servers.yaml",
        &[
            "4:18: upstreams.a.servers[0]: \"localhost\" is not HOST:PORT",
            "5:17: upstreams.b.servers: an upstream needs at least one server",
            "6:36: upstreams.c.servers[1]: server \"127.0.0.1:3001\" is listed twice",
            "6:54: upstreams.c.servers[2]: \"127.0.0.1:99999\" is not HOST:PORT",
            "12:17: metrics.bind_address: 127.0.0.1:9090 collides with server.bind_address 0.0.0.0:9090",
        ],
    ),
    (
        "auth_without_key.yaml",
        &[
            "4:5: routes[0].auth_required: this route requires a token but no key is configured",
            "5:77: routes[1].required_scopes: required_scopes needs auth_required: true",
            "7:22: auth.oauth_service_url: \"127.0.0.1:3001\" is not an http(s) URL",
        ],
    ),
    (
        "bad_auth.yaml",
        &[
            "6:13: auth.jwks_url: \"ftp://auth.example/jwks\" is not an http(s) URL",
            "7:16: auth.cookie_name: \"my session\" is not a cookie name",
            "8:18: auth.introspection: set both client_id and client_secret, or neither",
            "8:26: auth.introspection.mode: introspection needs auth.oauth_service_url",
            "8:26: auth.introspection.mode: introspection needs auth.token_validation_endpoint",
            "9:28: auth.identity_headers.sub: \"Authorization\" is set by the gateway or the client",
            "10:26: auth.login_redirect.url: \"login\" is neither an http(s) URL nor a path",
            "11:15: auth.algorithms: an empty list accepts no token",
        ],
    ),
    (
        "missing_fields.yaml",
        &["4:5: routes[0]: missing required field \"upstream\""],
    ),
    ("empty.yaml", &["1:1: (document): file is empty"]),
    (
        "tab.yaml",
        &[
            "2:1: (document): invalid YAML: a tab in the indentation (YAML indents with spaces only)",
        ],
    ),
    (
        // Schema and semantic problems together, in one run.
        "everything_at_once.yaml",
        &[
            "2:19: server.worker_threads: \"four\" is not of type \"integer\"",
            "3:3: server.bind_adress: unknown field \"bind_adress\", did you mean \"bind_address\"?",
            "7:31: routes[0].upstream: unknown upstream \"nope\" (defined: app)",
            "8:13: routes[1].path: duplicate route: routes[0] has the same path, host and methods",
            "9:5: routes[2]: missing required field \"path\"",
        ],
    ),
];

#[test]
fn broken_files_report_every_error_with_line_column_and_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut on_disk: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut listed: Vec<_> = BROKEN.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every fixture has expectations");

    for (file, expected) in BROKEN {
        let path = format!("tests/fixtures/invalid/{file}");
        let (code, out) = gateway(&["validate", &path]);
        assert_eq!(code, 1, "{file}: {out}");
        let errors: Vec<&str> = out.lines().filter(|l| !l.contains(": warning: ")).collect();
        assert_eq!(
            errors.len(),
            expected.len(),
            "{file}: one line per error:\n{out}"
        );
        for (line, want) in errors.iter().zip(expected.iter()) {
            assert!(
                line.starts_with(&format!("{path}:{want}")),
                "{file}:\n  want {want}\n  got  {line}"
            );
        }
    }
}

#[test]
fn several_files_fail_when_any_fails() {
    let (code, out) = gateway(&[
        "validate",
        "config/default.yaml",
        "tests/fixtures/invalid/unknown_upstream.yaml",
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("config/default.yaml: ok"));
    assert!(out.contains("unknown_upstream.yaml:5:15:"));
    let (code, out) = gateway(&["validate", "tests/fixtures/unresolvable.yaml"]);
    assert_eq!(code, 1);
    assert!(out.contains("unresolvable.yaml:2:20: upstreams.app.servers[0]: cannot resolve \"no-such-host.invalid:3001\""), "{out}");
    let (code, out) = gateway(&[
        "validate",
        "--no-resolve",
        "tests/fixtures/unresolvable.yaml",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = gateway(&["validate", "no/such/file.yaml"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("no/such/file.yaml:1:1: (document): cannot read file"),
        "{out}"
    );
}

#[test]
fn the_committed_schema_is_what_gateway_schema_prints() {
    let (code, printed) = gateway(&["schema"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/gateway.schema.json"),
    )
    .unwrap();
    assert!(
        printed == committed,
        "schema/gateway.schema.json is stale: run `cargo run -- schema > schema/gateway.schema.json`"
    );
    let default =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.yaml"))
            .unwrap();
    assert!(default.starts_with("# yaml-language-server: $schema=../schema/gateway.schema.json\n"));
}

#[test]
fn every_config_shipped_in_the_repository_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![];
    for dir in ["config", "examples", "examples/kubernetes"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.to_string_lossy().into_owned();
            if name.ends_with(".yaml")
                && std::fs::read_to_string(&p).unwrap().contains("upstreams:")
            {
                files.push(name);
            }
        }
    }
    assert!(!files.is_empty());
    // The Kubernetes example names cluster services: no DNS for them here.
    let mut args = vec!["validate", "--no-resolve"];
    args.extend(files.iter().map(String::as_str));
    // examples/systemd.yaml takes its secret from the environment, as in production.
    let secret = "s".repeat(40);
    let (code, out) = gateway_env(&args, &[("JWT_SECRET", &secret)]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/pingora-gateway.service"),
    )
    .unwrap();
    for needle in [
        "Type=forking",
        "PIDFile=/run/pingora-gateway/gateway.pid",
        "ExecReload=/bin/kill -QUIT $MAINPID",
        "ExecReload=/usr/local/bin/gateway run --upgrade --daemon",
        "ExecStartPre=/usr/local/bin/gateway validate",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(needle), "unit lacks {needle}");
    }
    // Verify a copy whose binary path exists here (verify checks executables).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pingora-gateway.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/gateway", env!("CARGO_BIN_EXE_gateway")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze is needed (tests/run installs systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn a_server_in_two_upstreams_with_different_checks_gets_a_warning() {
    let (code, out) = gateway(&["validate", "tests/fixtures/shared_server.yaml"]);
    assert_eq!(code, 0, "a warning does not fail: {out}");
    assert!(
        out.contains("shared_server.yaml:3:18: upstreams.b.servers[0]: warning: 127.0.0.1:3001 is also in upstream \"a\""),
        "{out}"
    );
}
