//! What ships beside the binary: the Kubernetes example, the Dockerfile and
//! the systemd unit are linted, and the numbers that must agree between
//! them and the configs they run (stop timeouts, image tag) are checked.
//! yamllint, kubernetes-validate and hadolint come from PyPI (tests/run).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// Runs a linter in the repository root; its output on failure.
fn tool(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is needed (tests/run installs it): {e}"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn yaml_docs(rel: &str) -> Vec<serde_yaml::Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn server_u64(config: &serde_yaml::Value, key: &str, default: u64) -> u64 {
    config["server"][key].as_u64().unwrap_or(default)
}

#[test]
fn the_kubernetes_example_passes_yamllint_and_the_kubernetes_schemas() {
    tool(
        "yamllint",
        &["--strict", "examples/kubernetes", ".yamllint.yaml"],
    )
    .unwrap();
    tool(
        "kubernetes-validate",
        &["--strict", "--quiet", "examples/kubernetes/deployment.yaml"],
    )
    .unwrap();
    // The validator does catch a misspelt field.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read("examples/kubernetes/deployment.yaml")
            .replace("readOnlyRootFilesystem", "readOnlyRootFilesytem"),
    )
    .unwrap();
    assert!(
        tool(
            "kubernetes-validate",
            &["--strict", "--quiet", bad.to_str().unwrap()]
        )
        .is_err()
    );
}

#[test]
fn the_kubernetes_example_runs_hardened_with_stop_timings_that_add_up() {
    let docs = yaml_docs("examples/kubernetes/deployment.yaml");
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["Deployment", "Service", "PodDisruptionBudget"]);
    let pod = &docs[0]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["image"].as_str().unwrap(),
        format!("pingora-gateway:{}", env!("CARGO_PKG_VERSION")),
        "a pinned tag, the crate's version"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Who stops when: preStop, then the gateway's lame duck, grace period
    // and shutdown timeout, all inside terminationGracePeriodSeconds.
    let config: serde_yaml::Value =
        serde_yaml::from_str(&read("examples/kubernetes/gateway.yaml")).unwrap();
    let delay = server_u64(&config, "shutdown_delay_seconds", 0);
    assert!(delay > 0, "the example has a lame-duck period");
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap();
    let needed = pre_stop
        + delay
        + server_u64(&config, "grace_period_seconds", 5)
        + server_u64(&config, "graceful_shutdown_timeout_seconds", 5);
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination > needed,
        "terminationGracePeriodSeconds {termination} <= {needed} needed"
    );
    // The readiness probe notices the 503 well within the lame duck.
    let probe = &c["readinessProbe"];
    let notice =
        probe["periodSeconds"].as_u64().unwrap() * probe["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        notice <= delay,
        "readiness needs {notice} s to notice, delay {delay} s"
    );
    // The pid file and upgrade socket are on the writable /tmp volume.
    assert!(
        config["server"]["pid_file"]
            .as_str()
            .unwrap()
            .starts_with("/tmp/")
    );
    let pdb = &docs[2]["spec"];
    assert!(pdb["minAvailable"].as_u64().unwrap() >= 1);
    assert_eq!(
        pdb["selector"]["matchLabels"],
        docs[0]["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_systemd_unit_outwaits_the_configured_stop_and_keeps_the_secret_out_of_its_environment() {
    let unit = read("systemd/pingora-gateway.service");
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("unit lacks {key}="))
            .to_string()
    };
    let config: serde_yaml::Value = serde_yaml::from_str(&read("examples/systemd.yaml")).unwrap();
    let needed = server_u64(&config, "shutdown_delay_seconds", 0)
        + server_u64(&config, "grace_period_seconds", 5)
        + server_u64(&config, "graceful_shutdown_timeout_seconds", 5);
    let timeout: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(timeout > needed, "TimeoutStopSec={timeout} <= {needed} s");
    // The secret: a credential, never Environment=.
    assert!(!unit.contains("Environment=JWT_SECRET"));
    assert!(value("LoadCredential").starts_with("JWT_SECRET:/etc/pingora-gateway/"));
    assert!(config["auth"]["jwt_secret"] == "${JWT_SECRET}");
    // Documentation= names a file the install steps put there.
    let doc = value("Documentation");
    let path = doc.strip_prefix("file://").expect("a file:// URL");
    let name = Path::new(path).file_name().unwrap().to_str().unwrap();
    assert!(root().join(name).exists(), "{name} is in the repository");
    assert!(
        unit.contains(&format!("install -D -m 0644 {name} {path}")),
        "the install steps put {name} at {path}"
    );
}

#[test]
fn the_dockerfile_passes_hadolint_and_builds_what_the_docs_promise() {
    tool("hadolint", &["Dockerfile"]).unwrap();
    let d = read("Dockerfile");
    for needle in [
        "--profile production",
        "USER 10001:10001",
        "EXPOSE 6188 9090",
        "HEALTHCHECK",
        "/healthz",
        "/etc/pingora-gateway/gateway.yaml",
        "AS build",
        "AS runtime",
    ] {
        assert!(d.contains(needle), "Dockerfile lacks {needle}");
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
    // The image's user is the one the Kubernetes example runs as.
    assert!(read("examples/kubernetes/deployment.yaml").contains("runAsUser: 10001"));
}
