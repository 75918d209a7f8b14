#!/usr/bin/env python3
"""Upstream connection reuse with and without work stealing (issue 19).

    cargo build --release --bin gateway
    python3 benches/upstream_reuse.py [--rounds 3] [--seconds 8] [--binary target/release/gateway]

The gateway (4 worker threads, its defaults otherwise) in front of nginx
answering from memory; wrk with 4 and with 64 keep-alive connections, the
two `server.work_stealing` settings interleaved per round. Reported per row:
requests/s, the gateway's CPU µs per request, the upstream connections nginx
accepted (`stub_status`), and the gateway's ERROR lines "failed to acquire
reusable stream". Every process started is stopped by its pid; every load
run is bounded in time.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as c  # noqa: E402


def accepts(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/nginx_status", timeout=2).read().decode()
    return int(text.splitlines()[2].split()[0])


def run_wrk(url, seconds, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(m.group(1)) if m else 0, errors + (int(non2xx.group(1)) if non2xx else 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--binary", default=os.path.join(c.ROOT, "target", "release", "gateway"))
    args = ap.parse_args()
    c.raise_fd_limit()
    c.ensure_tools()
    d = tempfile.mkdtemp(prefix="gw-reuse-")
    os.chmod(d, 0o755)
    procs = []
    rows = {}
    try:
        up_port = c.free_port()
        up = c.start_nginx(d, "upstream", up_port, """
    location = /health { return 200 "ok"; }
    location = /nginx_status { stub_status; }
    location / { return 200 "ok"; }""")
        procs.append(up)
        for rnd in range(args.rounds):
            order = [False, True] if rnd % 2 == 0 else [True, False]
            for conns in (4, 64):
                for ws in order:
                    port, mport = c.free_port(), c.free_port()
                    name = f"gw-{rnd}-{conns}-{ws}"
                    os.makedirs(os.path.join(d, name))
                    cfg = os.path.join(d, name, "gateway.yaml")
                    open(cfg, "w").write(f"""server:
  bind_address: "127.0.0.1:{port}"
  worker_threads: 4
  work_stealing: {str(ws).lower()}
  pid_file: "{d}/{name}.pid"
  upgrade_sock: "{d}/{name}.sock"
upstreams:
  app: {{ servers: ["127.0.0.1:{up_port}"] }}
routes:
  - {{ path: "/*", upstream: app, auth_required: false }}
health_check: {{ enabled: false }}
metrics:
  bind_address: "127.0.0.1:{mport}"
""")
                    log_path = os.path.join(d, f"{name}.log")
                    gw = c.Proc(name, [args.binary, "run", "--config", cfg], log=open(log_path, "w"))
                    try:
                        c.wait_http(f"http://127.0.0.1:{port}/health")
                        a0, cpu0 = accepts(up_port), c.cpu_seconds(gw.pid)
                        n, errors = run_wrk(f"http://127.0.0.1:{port}/x", args.seconds, conns)
                        cpu, a1 = c.cpu_seconds(gw.pid) - cpu0, accepts(up_port)
                    finally:
                        gw.stop()
                    log = open(log_path).read()
                    row = rows.setdefault((conns, ws), [])
                    row.append({"rps": n / args.seconds, "us": cpu / max(n, 1) * 1e6,
                                "conns": a1 - a0 - 1, "acquire_errors": log.count("failed to acquire reusable stream"),
                                "errors": errors, "requests": n})
                    print(name, row[-1], flush=True)
        print("\n| clients | work_stealing | req/s | CPU µs/req | upstream connections | per 1,000 requests | \"failed to acquire\" ERROR lines | client errors |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for (conns, ws), rs in sorted(rows.items()):
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            per_k = statistics.median(r["conns"] / max(r["requests"], 1) * 1000 for r in rs)
            print(f"| {conns} | {str(ws).lower()} | {med('rps'):,.0f} | {med('us'):.1f} | {med('conns'):,.0f} | {per_k:.1f} | {med('acquire_errors'):,.0f} | {med('errors'):.0f} |")
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
