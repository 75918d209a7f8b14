//! The issue-12 header flood, bounded: N connections to a gateway on
//! 127.0.0.1 each send the start of a request and then one header line of
//! SIZE bytes that never ends. Prints the gateway's RSS before, its peak
//! during the attack, and its RSS over the 10 s after every connection
//! closed, plus how the gateway answered.
//!
//! ```text
//! cargo build --release
//! target/release/gateway run --config config/bench.yaml &
//! cargo run --release --example header_flood -- PORT PID [CONNECTIONS=2000] [SIZE=1048576]
//! ```
//! Loopback only; at most 5,000 connections of at most 4 MiB each; every
//! connection stops after 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: header_flood PORT PID [CONNECTIONS] [SIZE]");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("port");
    let pid: u32 = args[2].parse().expect("pid");
    let n: usize = args
        .get(3)
        .map_or(2000, |v| v.parse().expect("count"))
        .min(5000);
    let size: usize = args
        .get(4)
        .map_or(1 << 20, |v| v.parse().expect("size"))
        .min(4 << 20);

    let before = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let line = Arc::new(vec![b'a'; size]);
    let statuses = Arc::new([
        AtomicUsize::new(0), // 431
        AtomicUsize::new(0), // other answer
        AtomicUsize::new(0), // closed without an answer
    ]);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (line, statuses) = (line.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                statuses[2].fetch_add(1, Ordering::Relaxed);
                return;
            };
            let _ = s
                .write_all(b"GET / HTTP/1.1\r\nHost: flood\r\nX-Flood: ")
                .await;
            let _ = tokio::time::timeout(Duration::from_secs(30), s.write_all(&line)).await;
            let mut head = [0u8; 12];
            let got = tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut head)).await;
            let i = match got {
                Ok(Ok(_)) if &head == b"HTTP/1.1 431" => 0,
                Ok(Ok(_)) => 1,
                _ => 2,
            };
            statuses[i].fetch_add(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let attack = start.elapsed();
    let closed = Instant::now();
    let mut settled = None;
    let mut after = rss_kib(pid);
    while closed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = rss_kib(pid);
        if settled.is_none() && after < before + 32 * 1024 {
            settled = Some(closed.elapsed());
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    println!(
        "{n} connections x {size} bytes in {attack:.1?}: 431 {}, other {}, closed without answer {}",
        statuses[0].load(Ordering::Relaxed),
        statuses[1].load(Ordering::Relaxed),
        statuses[2].load(Ordering::Relaxed)
    );
    println!(
        "gateway RSS: before {:.1} MB, peak {:.1} MB, 10 s after {:.1} MB (within 32 MB of before after {settled:?})",
        before as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
