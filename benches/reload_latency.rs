//! Time from a config write to the new route answering, through the real
//! binary: 40 writes (in place and by rename), distribution printed.
//!
//! ```text
//! cargo bench --bench reload_latency
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: usize = 40;

fn main() {
    // A trivial upstream: answers every request with 200.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in upstream.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    let port = {
        // The gateway binds this port right after; the bench is not a test.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("gw-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    let config = |n: usize| {
        format!(
            "server: {{ bind_address: \"127.0.0.1:{port}\", worker_threads: 1, pid_file: \"{d}/pid\", upgrade_sock: \"{d}/sock\" }}\nmetrics: {{ enabled: false }}\nlogging: {{ level: warn }}\nupstreams:\n  app: {{ servers: [\"{up_addr}\"] }}\nroutes:\n  - {{ path: \"/v{n}/*\", upstream: app, auth_required: false }}\n",
            d = dir.display()
        )
    };
    std::fs::write(&path, config(0)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(port, "/v0/x") != 200 {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut samples = vec![];
    for n in 1..=ROUNDS {
        let started = Instant::now();
        if n % 2 == 0 {
            let tmp = dir.join(".tmp.yaml");
            std::fs::write(&tmp, config(n)).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        } else {
            std::fs::write(&path, config(n)).unwrap();
        }
        let url = format!("/v{n}/x");
        while status(port, &url) != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "reload {n} never applied"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(started.elapsed());
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "config write -> new route answering ({ROUNDS} reloads): min {:?}  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
        samples[0],
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn serve(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn status(port: u16, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
