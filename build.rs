//! Build facts for `gateway --version`: the git commit (or
//! `$GATEWAY_GIT_COMMIT`, e.g. in a container build without `.git`) and the
//! Pingora version from Cargo.lock.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GATEWAY_GIT_COMMIT");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let commit = std::env::var("GATEWAY_GIT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves (only paths that exist: a missing one would
    // rerun this script on every build).
    for path in ["HEAD", "packed-refs"]
        .into_iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .chain(
            git(&["symbolic-ref", "-q", "HEAD"])
                .and_then(|r| git(&["rev-parse", "--git-path", &r])),
        )
    {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let pingora = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"pingora-core\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GATEWAY_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=GATEWAY_PINGORA_VERSION={pingora}");
}
