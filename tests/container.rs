//! The container image for real: the Dockerfile's `runtime` stage built with
//! podman on a Debian base made here with debootstrap (no image registry is
//! reachable), run, and the gateway curled through it.
//!
//! Runs when podman, runc and debootstrap are installed
//! (`apt-get install podman runc debootstrap`), and says "skipped" otherwise.
//! The first run makes the base image (≈40 s) and keeps it in podman's
//! storage as `localhost/pingora-gateway-base:CODENAME`.
//!
//! The binary is this test build's, handed in with `--build-context build=`
//! in place of the `build` stage (a production build of its own takes many
//! minutes). In this sandbox crun cannot set up cgroups ("cgroups in hybrid
//! mode not supported") nor raise rlimits, hence `--runtime runc` and
//! `--ulimit`s no higher than the machine's.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/pingora-gateway:test";

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `podman --runtime runc ARGS`: success and the output.
fn podman(args: &[&str]) -> (bool, String) {
    let out = Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The machine's Debian release and mirror (what apt uses here).
fn debian() -> (String, String) {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .unwrap_or("bookworm")
        .trim_matches('"')
        .to_string();
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let mirror = sources
        .lines()
        .find_map(|l| l.strip_prefix("URIs: "))
        .and_then(|u| u.split_whitespace().next())
        .unwrap_or("http://deb.debian.org/debian")
        .to_string();
    (codename, mirror)
}

/// `localhost/pingora-gateway-base:CODENAME`, made once with debootstrap.
fn base_image() -> String {
    let (codename, mirror) = debian();
    let image = format!("localhost/pingora-gateway-base:{codename}");
    if podman(&["image", "exists", &image]).0 {
        return image;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let root = dir.path().join("root");
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &codename])
        .arg(&root)
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!("tar -C {} -c . | podman import - {image}", root.display());
    let ok = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(ok.success(), "podman import");
    image
}

/// Removes the container however the test ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

fn ulimits() -> [String; 4] {
    [
        "--ulimit".into(),
        "nofile=1024:1024".into(),
        "--ulimit".into(),
        "nproc=1024:1024".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_image_runs_as_its_user_and_serves_through_the_container() {
    for tool in ["podman", "runc", "debootstrap"] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed (apt-get install podman runc debootstrap)");
            return;
        }
    }
    let base = base_image();
    // The build stage's output, from this build.
    let ctx = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = ctx.path().join("bin/out");
    std::fs::create_dir_all(out.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(out.join("usr/share/doc/pingora-gateway")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_gateway"),
        out.join("usr/local/bin/gateway"),
    )
    .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("README.md"),
        out.join("usr/share/doc/pingora-gateway/README.md"),
    )
    .unwrap();
    let main = ctx.path().join("main");
    std::fs::create_dir_all(&main).unwrap();
    let dockerfile = root.join("Dockerfile");
    let mut args: Vec<String> = vec![
        "build".into(),
        "--format".into(),
        "docker".into(),
        "--network".into(),
        "host".into(),
        "--target".into(),
        "runtime".into(),
        "--build-arg".into(),
        format!("RUNTIME_IMAGE={base}"),
        "--build-context".into(),
        format!("build={}", ctx.path().join("bin").display()),
        "-f".into(),
        dockerfile.display().to_string(),
        "-t".into(),
        IMAGE.into(),
    ];
    args.extend(ulimits());
    args.push(main.display().to_string());
    let started = Instant::now();
    let (ok, log) = podman(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "podman build:\n{log}");
    eprintln!("image built in {:?}", started.elapsed());

    // Run it on the host's network: the upstream and the ports are this test's.
    let up = Upstream::start("app").await;
    let (proxy, metrics) = (reserve_port(), reserve_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  bind_address: \"127.0.0.1:{}\"\n  reuse_port: true\n  pid_file: /tmp/gw.pid\n  upgrade_sock: /tmp/gw.sock\n  grace_period_seconds: 10\nupstreams:\n  app: {{ servers: [\"{}\"] }}\nroutes:\n  - {{ path: \"/*\", upstream: app, auth_required: false }}\nmetrics:\n  bind_address: \"127.0.0.1:{}\"\n",
            proxy.port, up.addr, metrics.port
        ),
    )
    .unwrap();
    let name = format!("pingora-gateway-test-{}", std::process::id());
    let mount = format!("{}:/etc/pingora-gateway/gateway.yaml:ro", config.display());
    let mut run: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "--network".into(),
        "host".into(),
        "--read-only".into(),
        "--tmpfs".into(),
        "/tmp".into(),
        "-v".into(),
        mount,
        "-e".into(),
        format!("GATEWAY_METRICS_PORT={}", metrics.port),
    ];
    run.extend(ulimits());
    run.push(IMAGE.into());
    let (ok, log) = podman(&run.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "podman run:\n{log}");
    let _container = Container(name.clone());
    let port = proxy.port;
    let listening = wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening.is_ok(), "{}", podman(&["logs", &name]).1);

    let r = client()
        .get(format!("http://127.0.0.1:{port}/through/the/container"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(up.requests() >= 1, "the upstream saw the request");
    let (ok, id) = podman(&["exec", &name, "id"]);
    assert!(
        ok && id.starts_with("uid=10001(gateway) gid=10001(gateway)"),
        "runs as the image's user and group: {id}"
    );
    let (ok, log) = podman(&["healthcheck", "run", &name]);
    assert!(ok, "HEALTHCHECK against /healthz: {log}");

    let stopping = Instant::now();
    let (ok, log) = podman(&["stop", "-t", "15", &name]);
    let took = stopping.elapsed();
    assert!(ok, "{log}");
    assert!(took < Duration::from_secs(5), "an idle stop took {took:?}");
    let (_, code) = podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(code.trim(), "0", "{}", podman(&["logs", &name]).1);
}
