#!/usr/bin/env python3
"""Side-by-side benchmark: the gateway against nginx and a bare Pingora proxy.

One command (installs nginx and wrk if missing, builds with the production
profile: fat LTO):

    python3 benches/compare.py                # 8 interleaved rounds of 3 s per row
    python3 benches/compare.py --rounds 10 --seconds 5 --idle 10000
    python3 benches/compare.py --ab OLD/target/production/gateway --rows "nginx|gateway( B)?( 4 KiB)?$|tuned" --idle 0
    python3 benches/compare.py --rows "limit|64 KiB" --idle 0   # edge policies only
    python3 benches/compare.py --idle-only --idle-rows "https|^gateway"   # idle memory only
    python3 benches/compare.py --ab OLD/target/release/gateway --rows "https|h2|nginx" --idle 0   # HTTPS A/B

    python3 benches/compare.py --pingap /work/tools/pingap/bin/pingap --c10k   # the peer, 10,000 connections

pingap rows (a Pingora-based gateway from crates.io, the direct peer): one
upstream (the same nginx), one location, one server, its defaults otherwise;
`cargo install pingap --version 0.13.1 --locked --root /work/tools/pingap`
(needs Debian's protobuf-compiler). Found through --pingap, PATH or
/work/tools/pingap/bin; without it the pingap rows are left out.

--c10k: 10,000 keep-alive connections each sending, 5,000 req/s in all
(`oha -c 10000 -q 5000 -z 20s`, `cargo install oha --locked --root
/work/tools/oha`), against fresh nginx, bare Pingora, gateway (and pingap)
processes with 2 workers each: p50/p99, errors, CPU, peak RSS and the
proxy's ERROR log lines. Needs a hard fd limit of at least ~12,000. The
steady-state p50/p99 count only requests started after the first
C10K_WARMUP seconds (oha's per-request records, `--db-url`): a
connection's first request also carries its connect, and 10,000 connects at
once are a burst of their own; the p99 over all requests is shown beside it.

HTTPS rows (TLS 1.3, one self-signed P-256 certificate for both): keep-alive
HTTP/1.1 (wrk), a new connection and full handshake per request (wrk with
`Connection: close`), HTTP/2 (h2load, 64 connections x 10 streams).

Everything runs on 127.0.0.1 with one worker each (nginx worker_processes 1,
Pingora threads 1), the same upstream (nginx answering from memory), the same
load generator (wrk -t1 -c64). Rows are measured in a shuffled order inside
each round, so drift on a shared machine hits every row alike; ratios are
medians of per-round ratios. A second nginx proxy is a control pair: its
ratio to the first is the run's noise floor. Then each proxy holds N idle
keep-alive client connections and its RSS is read. Every process started is
stopped by its pid; every load loop is bounded in time.
"""

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-secret-0123456789abcdef-0123456789"
# Both Pingora binaries are built with the same profile (fat LTO, one codegen
# unit): what a deployment runs (see Cargo.toml).
PROFILE = "production"


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def ensure_tools():
    missing = [p for p, cmd in (("nginx", "nginx"), ("wrk", "wrk"), ("cmake", "cmake"), ("openssl", "openssl"), ("nghttp2-client", "h2load")) if not shutil.which(cmd) and not os.path.exists("/usr/sbin/" + cmd)]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        sh(*sudo, "apt-get", "update", "-qq")
        sh(*sudo, "apt-get", "install", "-y", "-qq", *missing, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port():
    """A port free now (bind, read, release). Fine for a benchmark run by
    hand; the test suite reserves its ports race-free instead."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    def __init__(self, name, args, pid_from_file=None, env=None, log=None):
        self.name = name
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL,
                                  preexec_fn=raise_fd_limit, env=env)
        self.pid_from_file = pid_from_file

    @property
    def pid(self):
        """The process doing the work (nginx: its single worker)."""
        if self.pid_from_file:
            master = int(open(self.pid_from_file).read().strip())
            kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
            return int(kids[0]) if kids else master
        return self.p.pid

    def stop(self):
        try:
            if self.pid_from_file and os.path.exists(self.pid_from_file):
                os.kill(int(open(self.pid_from_file).read().strip()), signal.SIGTERM)
            self.p.send_signal(signal.SIGTERM)
            self.p.wait(timeout=10)
        except Exception:
            self.p.kill()


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def nginx_conf(d, name, port, body, http_extra="", workers=1):
    conf = os.path.join(d, f"{name}.conf")
    open(conf, "w").write(f"""
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {d}/{name}.pid;
error_log {d}/{name}.error.log;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  keepalive_requests 100000;
  {http_extra}
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    {body}
  }}
}}
""")
    return conf


def start_nginx(d, name, port, body, http_extra="", workers=1):
    conf = nginx_conf(d, name, port, body, http_extra, workers)
    p = Proc(name, ["nginx", "-c", conf, "-g", "daemon off;"], pid_from_file=f"{d}/{name}.pid")
    wait_http(f"http://127.0.0.1:{port}/health")
    return p


def gateway_config(d, port, upstream_port, mport, extra_routes="", auth=False, extra_server="", jwks=None, upstream_ca=None, workers=1):
    routes = [("/oauth/*", False), ("/admin/*", auth), ("/kline/*", auth), ("/flow/*", auth), ("/test/*", auth), ("/*", auth)]
    lines = [f'  - {{ path: "{p}", upstream: app, auth_required: {str(a).lower()} }}' for p, a in routes]
    return f"""server:
  bind_address: "127.0.0.1:{port}"
  worker_threads: {workers}
  pid_file: "{d}/gw-{port}.pid"
  upgrade_sock: "{d}/gw-{port}.sock"
{extra_server}upstreams:
  app: {{ servers: ["127.0.0.1:{upstream_port}"]{f', tls: {{ ca_file: "{upstream_ca}" }}' if upstream_ca else ""} }}
routes:
{chr(10).join(lines)}
{extra_routes}
health_check: {{ interval_seconds: 5, path: /health }}
auth:
  jwt_secret: "{SECRET}"
{f'  jwks_url: "{jwks}"' if jwks else ""}
metrics:
  bind_address: "127.0.0.1:{mport}"
logging: {{ level: info, format: json }}
"""


def start_gateway(d, name, config_text, exe=None):
    # Each gateway's config in a directory of its own: the file watcher wakes on
    # any write in that directory, and logs must not land there.
    os.makedirs(os.path.join(d, name), exist_ok=True)
    path = os.path.join(d, name, "gateway.yaml")
    open(path, "w").write(config_text)
    port = int(re.search(r'bind_address: "127.0.0.1:(\d+)"', config_text).group(1))
    log = open(os.path.join(d, f"{name}.log"), "w")  # access log on, to a file
    p = Proc(name, [exe or os.path.join(ROOT, "target", PROFILE, "gateway"), "run", "--config", path], log=log)
    wait_http(f"http://127.0.0.1:{port}/oauth/health")
    p.config_path = path
    return p


def find_pingap(explicit):
    """pingap (crates.io: `cargo install pingap --version 0.13.1 --locked`):
    --pingap, else on PATH, else /work/tools/pingap/bin. None: no pingap rows."""
    if explicit:
        return os.path.abspath(explicit)
    for exe in (shutil.which("pingap"), "/work/tools/pingap/bin/pingap", os.path.expanduser("~/.cargo/bin/pingap")):
        if exe and os.access(exe, os.X_OK):
            return exe
    return None


def start_pingap(d, name, exe, port, upstream_port, threads=1):
    """pingap with one upstream (the shared nginx), one location (`/`), one
    server, otherwise its defaults (no access log, no plugins; Pingora's
    work stealing on). TOML, written at run time."""
    os.makedirs(os.path.join(d, name), exist_ok=True)
    path = os.path.join(d, name, "pingap.toml")
    open(path, "w").write(f"""[basic]
threads = {threads}
pid_file = "{d}/{name}.pid"
upgrade_sock = "{d}/{name}.sock"

[upstreams.app]
addrs = ["127.0.0.1:{upstream_port}"]

[locations.lo]
upstream = "app"
path = "/"

[servers.bench]
addr = "127.0.0.1:{port}"
locations = ["lo"]
threads = {threads}
""")
    log = open(os.path.join(d, f"{name}.log"), "w")
    p = Proc(name, [exe, "-c", path], log=log)
    wait_http(f"http://127.0.0.1:{port}/health")
    return p


def find_oha(explicit=None):
    if explicit:
        return os.path.abspath(explicit)
    for exe in (shutil.which("oha"), "/work/tools/oha/bin/oha", os.path.expanduser("~/.cargo/bin/oha")):
        if exe and os.access(exe, os.X_OK):
            return exe
    return None


def oha(exe, url, conns, qps, seconds, db=None, warmup=0.0):
    """A fixed aggregate rate over many keep-alive connections (oha's JSON
    summary): p50/p99 in ms, errors = transport errors + non-2xx. With `db`
    (an sqlite file oha writes each request to), `p50`/`p99` are those of the
    requests started at or after `warmup` seconds, and `p99_all` is oha's
    own over the whole run."""
    extra = ["--db-url", db] if db else []
    out = subprocess.run([exe, "-c", str(conns), "-q", str(qps), "-z", f"{seconds}s", "--no-tui",
                          "--output-format", "json", "-t", "5s", *extra, url],
                         capture_output=True, text=True, timeout=seconds + 180, preexec_fn=raise_fd_limit)
    try:
        r = json.loads(out.stdout)
    except ValueError:
        raise SystemExit(f"oha gave no JSON: {out.stderr[-2000:]}")
    lat = r.get("latencyPercentiles", {})
    codes = r.get("statusCodeDistribution", {})
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    # Requests still in flight when -z ends are reported as "aborted due to
    # deadline": the end of the run, not an error of the proxy.
    kinds = r.get("errorDistribution", {})
    transport = sum(v for k, v in kinds.items() if "deadline" not in k)
    ms = lambda v: v * 1000 if v is not None else float("nan")
    res = {"rps": r["summary"]["requestsPerSec"], "requests": sum(codes.values()) + transport,
           "p50": ms(lat.get("p50")), "p99": ms(lat.get("p99")), "p99_all": ms(lat.get("p99")),
           "errors": transport + sum(codes.values()) - ok, "error_kinds": kinds}
    if db and os.path.exists(db):
        import sqlite3
        with sqlite3.connect(db) as c:
            d = sorted(v for (v,) in c.execute("SELECT duration FROM oha WHERE start >= ?", (warmup,)))
        if d:
            res["p50"], res["p99"] = ms(d[len(d) // 2]), ms(d[min(len(d) - 1, int(len(d) * 0.99))])
            res["steady_requests"] = len(d)
    return res


def proc_tree(pid):
    """pid and its children (nginx: the master and its workers)."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(k) for k in kids]


def make_cert(d):
    """One self-signed P-256 certificate for `bench` and 127.0.0.1, served
    by nginx and the gateway alike."""
    crt, key = os.path.join(d, "bench.crt"), os.path.join(d, "bench.key")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", crt, "-days", "30", "-subj", "/CN=bench",
       "-addext", "subjectAltName=DNS:bench,IP:127.0.0.1", capture_output=True)
    os.chmod(key, 0o644)  # nginx workers run as nobody
    return crt, key


def make_upstream_ca(d):
    """A test CA and a leaf it signed for 127.0.0.1: the TLS upstream's
    certificate, verified by nginx (`proxy_ssl_verify`) and the gateway
    (`tls.ca_file`) alike."""
    ca_crt, ca_key = os.path.join(d, "up-ca.crt"), os.path.join(d, "up-ca.key")
    crt, key, csr, ext = (os.path.join(d, f"up-tls.{x}") for x in ("crt", "key", "csr", "ext"))
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    sh("openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "30", "-subj", "/CN=bench upstream CA", capture_output=True)
    sh("openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1", capture_output=True)
    open(ext, "w").write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "30", "-extfile", ext, capture_output=True)
    for f in (ca_crt, key):
        os.chmod(f, 0o644)  # nginx workers run as nobody
    return ca_crt, crt, key


def nginx_tls_server(port, crt, key, proxy_body):
    """An nginx `server` block on `port`: TLS 1.3 only, HTTP/2 and HTTP/1.1."""
    return f"""server {{
    listen 127.0.0.1:{port} ssl http2 reuseport backlog=4096;
    ssl_certificate {crt};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    keepalive_requests 100000;
    http2_max_concurrent_streams 128;
    {proxy_body}
  }}"""


def gateway_tls(port, crt, key):
    """The gateway's `tls:` section: the same certificate, TLS 1.3 only."""
    return f"""tls:
  bind_address: "127.0.0.1:{port}"
  min_version: "1.3"
  certificates:
    - {{ cert_file: "{crt}", key_file: "{key}" }}
"""


def h2load(url, seconds):
    """HTTP/2 requests/s: one thread, 64 connections, 10 streams each."""
    out = subprocess.run(["h2load", "-t1", "-c64", "-m10", f"-D{seconds}", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    def num(pattern, default=0.0):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default
    done = num(r"requests: \d+ total, \d+ started, (\d+) done")
    ok2xx = num(r"status codes: (\d+) 2xx")
    errors = num(r"(\d+) failed") + num(r"(\d+) errored") + num(r"(\d+) timeout") + max(done - ok2xx, 0)
    return {"rps": num(r"finished in [\d.]+s, ([\d.]+) req/s"), "requests": done,
            "p50": float("nan"), "p99": float("nan"), "errors": int(errors)}


def hs256_token():
    import base64, hmac, hashlib
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 7200}).encode())
    sig = b64(hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def rs256(d, kid="bench"):
    """An RSA key made with openssl, its JWKS (served by the upstream nginx)
    and an RS256 token signed with it."""
    import base64, hashlib
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    key = os.path.join(d, "rsa.pem")
    sh("openssl", "genrsa", "-out", key, "2048", stderr=subprocess.DEVNULL)
    modulus = subprocess.run(["openssl", "rsa", "-in", key, "-noout", "-modulus"], capture_output=True, text=True, check=True).stdout
    n = bytes.fromhex(modulus.strip().split("=", 1)[1])
    jwks = {"keys": [{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(n), "e": "AQAB"}]}
    open(os.path.join(d, "jwks.json"), "w").write(json.dumps(jwks))
    head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps({"sub": "bench", "exp": int(time.time()) + 7200}).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=f"{head}.{body}".encode(), capture_output=True, check=True).stdout
    return f"{head}.{body}.{b64(sig)}"


def wrk(url, seconds, header=None, script=None):
    args = ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if header:
        args += ["-H", header]
    if script:
        args += ["-s", script]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 30).stdout
    def num(pattern, default=0.0):
        m = re.search(pattern, out)
        return float(m.group(1)) if m else default
    def ms(label):
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out)) + int(num(r"Non-2xx or 3xx responses: (\d+)"))
    m = re.search(r"requests in [\d.]+\w+, ([\d.]+)([KMG]?B) read", out)
    read = float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1 << 20, "GB": 1 << 30}[m.group(2)] if m else 0.0
    requests = num(r"(\d+) requests in")
    return {"rps": num(r"Requests/sec:\s+([\d.]+)"), "requests": requests,
            "p50": ms("50"), "p99": ms("99"), "errors": errors,
            "bytes_per_req": read / max(requests, 1)}


async def hold_idle(port, n, path, header="", tls=False):
    """Opens n keep-alive connections (over TLS 1.3 when `tls`), one request
    each, and keeps them open."""
    conns = []
    req = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{header}\r\n".encode()
    sem = asyncio.Semaphore(500 if not tls else 100)
    ctx = None
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
    async def one():
        async with sem:
            if ctx:
                r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="bench")
            else:
                r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(req)
            await w.drain()
            await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            conns.append((r, w))
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failed = sum(1 for x in results if isinstance(x, Exception))
    return conns, failed


def set_profile(profile):
    global PROFILE
    PROFILE = profile


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000, help="idle keep-alive connections for the memory test (0: skip)")
    ap.add_argument("--idle-rows", metavar="REGEX", help="hold the idle connections only on the processes whose names match (e.g. 'gateway|https')")
    ap.add_argument("--idle-only", action="store_true", help="skip the throughput rows: only the idle-connection memory test")
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--ab", metavar="GATEWAY_BINARY", help="A/B: also run this gateway binary (e.g. a build of the previous commit) on the same config, as rows 'gateway B'")
    ap.add_argument("--rows", metavar="REGEX", help="run only the rows whose names match (ratios need both of their rows)")
    ap.add_argument("--profile", default=PROFILE, help="cargo profile of the binaries (default: production; release builds faster for a quick look)")
    ap.add_argument("--pingap", metavar="PATH", help="pingap binary for the peer rows (default: on PATH or /work/tools/pingap/bin; none found: no pingap rows)")
    ap.add_argument("--c10k", action="store_true", help="also 10,000 keep-alive connections at 5,000 req/s in all (oha) against nginx, bare Pingora, the gateway (and pingap), 2 workers each")
    ap.add_argument("--c10k-seconds", type=int, default=20, help="seconds per --c10k row (the issue: 20)")
    ap.add_argument("--oha", metavar="PATH", help="oha binary for --c10k (default: on PATH or /work/tools/oha/bin)")
    args = ap.parse_args()
    set_profile(args.profile)
    pingap = find_pingap(args.pingap)
    print(f"pingap: {pingap or 'not found, no pingap rows'}", file=sys.stderr)
    raise_fd_limit()
    ensure_tools()
    sh("cargo", "build", "--profile", PROFILE, "--bin", "gateway", "--example", "bare_pingora", cwd=ROOT)

    d = tempfile.mkdtemp(prefix="gw-bench-")
    os.chmod(d, 0o755)  # nginx workers (user nobody) read the 4 KiB file
    procs = []
    try:
        ports = {k: free_port() for k in ("up", "nginx", "nginx2", "bare", "bare_tuned", "gw", "gw_auth", "gw_rs", "gw_10k", "gw_reload", "gw_64k", "m1", "m2", "m3", "m4", "m5", "m6", "nginx_tls", "nginx_tls_http", "gw_tls", "gw_tls_http", "m8", "up_tls", "up_tls_http", "nginx_up_tls", "gw_up_tls", "m9", "gw_rl", "m11", "gw_gz", "m10", "nginx_gz")}
        open(os.path.join(d, "4k.txt"), "w").write("x" * 4096)  # served from the page cache
        open(os.path.join(d, "1m.bin"), "wb").write(b"x" * (1 << 20))
        # A 64 KiB JSON list, as an API answers (compressible, not trivially).
        rows_json = [{"id": i, "symbol": "BTC-USD", "open": 40000 + i % 97, "close": 40010 + i % 89, "volume": (i * 7919) % 100003} for i in range(900)]
        json_text = json.dumps(rows_json, separators=(",", ":"))[: 64 * 1024 - 2]
        json_text = json_text[: json_text.rfind("},") + 1] + "]"
        open(os.path.join(d, "64k.json"), "w").write(json_text + " " * (64 * 1024 - len(json_text)))
        rs_token = rs256(d)
        upload = os.path.join(d, "upload.lua")
        open(upload, "w").write('wrk.method = "POST"\nwrk.body = string.rep("x", 1048576)\n')
        up_body = f"""
    client_max_body_size 2m;
    location = /health {{ return 200 "ok"; }}
    location = /jwks.json {{ root {d}; default_type application/json; try_files /jwks.json =404; }}
    location ~ /4k$ {{ root {d}; default_type text/plain; try_files /4k.txt =404; }}
    location ~ /1m$ {{ root {d}; default_type application/octet-stream; try_files /1m.bin =404; }}
    location ~ /64k.json$ {{ root {d}; default_type application/json; try_files /64k.json =404; }}
    location /upload {{ return 200 "ok"; }}
    location / {{ return 200 "ok"; }}"""
        up = start_nginx(d, "upstream", ports["up"], up_body)
        procs.append(up)
        # The same upstream over TLS (TLS 1.3, a certificate from a test CA).
        up_ca, up_crt, up_key = make_upstream_ca(d)
        up_tls = start_nginx(d, "upstream_tls", ports["up_tls_http"], up_body, f"""server {{
    listen 127.0.0.1:{ports['up_tls']} ssl reuseport backlog=4096;
    ssl_certificate {up_crt};
    ssl_certificate_key {up_key};
    ssl_protocols TLSv1.3;
    keepalive_requests 100000;
    {up_body}
  }}""")
        procs.append(up_tls)
        proxy_body = 'client_max_body_size 2m; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }'
        backend = f"upstream backend {{ server 127.0.0.1:{ports['up']}; keepalive 128; }}"
        for name in ("nginx", "nginx2"):
            procs.append(start_nginx(d, name, ports[name], proxy_body, backend))
        nginx, nginx2 = procs[1], procs[2]
        crt, key = make_cert(d)
        nginx_tls = start_nginx(d, "nginx_tls", ports["nginx_tls_http"], proxy_body,
                                backend + "\n  " + nginx_tls_server(ports["nginx_tls"], crt, key, proxy_body))
        procs.append(nginx_tls)
        # nginx to the TLS upstream: verified, pooled (keepalive), sessions reused.
        tls_backend = f"upstream backend_tls {{ server 127.0.0.1:{ports['up_tls']}; keepalive 128; }}"
        tls_proxy_body = ('client_max_body_size 2m; location / { proxy_pass https://backend_tls; proxy_http_version 1.1; proxy_set_header Connection ""; '
                          f'proxy_ssl_verify on; proxy_ssl_trusted_certificate {up_ca}; proxy_ssl_name 127.0.0.1; proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.3; }}')
        nginx_up_tls = start_nginx(d, "nginx_up_tls", ports["nginx_up_tls"], tls_proxy_body, tls_backend)
        procs.append(nginx_up_tls)
        bare = Proc("bare", [os.path.join(ROOT, "target", PROFILE, "examples/bare_pingora"), f"127.0.0.1:{ports['bare']}", f"127.0.0.1:{ports['up']}", "1"])
        procs.append(bare)
        wait_http(f"http://127.0.0.1:{ports['bare']}/health")
        # The same Pingora tuning as the gateway's defaults: no work stealing,
        # no per-connection read or write buffer.
        bare_tuned = Proc("bare_tuned", [os.path.join(ROOT, "target", PROFILE, "examples/bare_pingora"), f"127.0.0.1:{ports['bare_tuned']}", f"127.0.0.1:{ports['up']}", "1", "0", "nosteal"])
        procs.append(bare_tuned)
        wait_http(f"http://127.0.0.1:{ports['bare_tuned']}/health")
        gw = start_gateway(d, "gw", gateway_config(d, ports["gw"], ports["up"], ports["m1"]))
        gw_auth = start_gateway(d, "gw_auth", gateway_config(d, ports["gw_auth"], ports["up"], ports["m2"], auth=True))
        many = "\n".join(f'  - {{ path: "/svc{i}/v{i % 7}/*", upstream: app, auth_required: false }}' for i in range(10_000))
        gw_10k = start_gateway(d, "gw_10k", gateway_config(d, ports["gw_10k"], ports["up"], ports["m3"], extra_routes=many))
        gw_reload = start_gateway(d, "gw_reload", gateway_config(d, ports["gw_reload"], ports["up"], ports["m4"]))
        gw_rs = start_gateway(d, "gw_rs", gateway_config(d, ports["gw_rs"], ports["up"], ports["m5"], auth=True, jwks=f"http://127.0.0.1:{ports['up']}/jwks.json"))
        # Pingora's default 64 KiB per-connection read buffer, to show that
        # the gateway's default (none) costs nothing on large bodies.
        gw_64k = start_gateway(d, "gw_64k", gateway_config(d, ports["gw_64k"], ports["up"], ports["m6"], extra_server="  read_buffer_bytes: 65536\n"))
        gw_tls = start_gateway(d, "gw_tls", gateway_config(d, ports["gw_tls_http"], ports["up"], ports["m8"]) + gateway_tls(ports["gw_tls"], crt, key))
        gw_up_tls = start_gateway(d, "gw_up_tls", gateway_config(d, ports["gw_up_tls"], ports["up_tls"], ports["m9"], upstream_ca=up_ca))
        # Edge policies (issue 17): a route under a rate limit it never
        # reaches (every wrk connection is one client address: one bucket,
        # the worst case for contention) beside the same process's route
        # without one; compression of a 64 KiB JSON body beside nginx gzip
        # (level 6 both, the gateway's gzip level).
        limited = '  - { path: "/limited/*", upstream: app, auth_required: false, rate_limit: bench }\nrate_limits:\n  bench: { key: client_ip, requests_per_second: 1000000000, burst: 1000000000 }\n'
        gw_rl = start_gateway(d, "gw_rl", gateway_config(d, ports["gw_rl"], ports["up"], ports["m11"], extra_routes=limited))
        gw_gz = start_gateway(d, "gw_gz", gateway_config(d, ports["gw_gz"], ports["up"], ports["m10"]) + "compression: { enabled: true }\n")
        gzip_body = proxy_body.replace("location / {", "gzip on; gzip_comp_level 6; gzip_min_length 1024; gzip_proxied any; gzip_types application/json; gzip_vary on; location / {")
        nginx_gz = start_nginx(d, "nginx_gz", ports["nginx_gz"], gzip_body, backend)
        procs += [gw, gw_auth, gw_10k, gw_reload, gw_rs, gw_64k, gw_tls, gw_up_tls, gw_rl, gw_gz, nginx_gz]
        if pingap:
            ports["pingap"] = free_port()
            pg = start_pingap(d, "pingap", pingap, ports["pingap"], ports["up"])
            procs.append(pg)
        if args.ab:
            ports["gw_b"], ports["m7"] = free_port(), free_port()
            gw_b = start_gateway(d, "gw_b", gateway_config(d, ports["gw_b"], ports["up"], ports["m7"]), exe=os.path.abspath(args.ab))
            procs.append(gw_b)
            ports["gw_b_tls"], ports["gw_b_tls_http"], ports["m12"] = free_port(), free_port(), free_port()
            gw_b_tls = start_gateway(d, "gw_b_tls", gateway_config(d, ports["gw_b_tls_http"], ports["up"], ports["m12"]) + gateway_tls(ports["gw_b_tls"], crt, key), exe=os.path.abspath(args.ab))
            procs.append(gw_b_tls)

        token = hs256_token()
        rows = {
            "upstream direct": (up, f"http://127.0.0.1:{ports['up']}/test/x", None),
            "nginx": (nginx, f"http://127.0.0.1:{ports['nginx']}/test/x", None),
            "nginx (control)": (nginx2, f"http://127.0.0.1:{ports['nginx2']}/test/x", None),
            "bare pingora": (bare, f"http://127.0.0.1:{ports['bare']}/test/x", None),
            "bare pingora tuned": (bare_tuned, f"http://127.0.0.1:{ports['bare_tuned']}/test/x", None),
            "gateway": (gw, f"http://127.0.0.1:{ports['gw']}/test/x", None),
            "gateway 4 KiB": (gw, f"http://127.0.0.1:{ports['gw']}/test/4k", None),
            "nginx 4 KiB": (nginx, f"http://127.0.0.1:{ports['nginx']}/test/4k", None),
            "bare pingora 4 KiB": (bare, f"http://127.0.0.1:{ports['bare']}/test/4k", None),
            "gateway auth HS256": (gw_auth, f"http://127.0.0.1:{ports['gw_auth']}/test/x", f"Authorization: Bearer {token}"),
            "gateway auth RS256": (gw_rs, f"http://127.0.0.1:{ports['gw_rs']}/test/x", f"Authorization: Bearer {rs_token}"),
            "gateway 1 MiB down": (gw, f"http://127.0.0.1:{ports['gw']}/test/1m", None),
            "gateway 64K buf 1 MiB down": (gw_64k, f"http://127.0.0.1:{ports['gw_64k']}/test/1m", None),
            "nginx 1 MiB down": (nginx, f"http://127.0.0.1:{ports['nginx']}/test/1m", None),
            "gateway 1 MiB up": (gw, f"http://127.0.0.1:{ports['gw']}/upload", None, upload),
            "gateway 64K buf 1 MiB up": (gw_64k, f"http://127.0.0.1:{ports['gw_64k']}/upload", None, upload),
            "nginx 1 MiB up": (nginx, f"http://127.0.0.1:{ports['nginx']}/upload", None, upload),
            "gateway 10k routes": (gw_10k, f"http://127.0.0.1:{ports['gw_10k']}/svc9999/v3/x", None),
            "gateway reload 1/s": (gw_reload, f"http://127.0.0.1:{ports['gw_reload']}/test/x", None),
            # HTTPS, TLS 1.3, the same certificate: keep-alive HTTP/1.1, a
            # new connection (full handshake) per request, HTTP/2.
            "nginx https": (nginx_tls, f"https://127.0.0.1:{ports['nginx_tls']}/test/x", None),
            "gateway https": (gw_tls, f"https://127.0.0.1:{ports['gw_tls']}/test/x", None),
            "nginx https handshakes": (nginx_tls, f"https://127.0.0.1:{ports['nginx_tls']}/test/x", "Connection: close"),
            "gateway https handshakes": (gw_tls, f"https://127.0.0.1:{ports['gw_tls']}/test/x", "Connection: close"),
            "nginx h2": (nginx_tls, f"https://127.0.0.1:{ports['nginx_tls']}/test/x", None, "h2load"),
            "gateway h2": (gw_tls, f"https://127.0.0.1:{ports['gw_tls']}/test/x", None, "h2load"),
            # Plain client side, TLS to the upstream (pooled connections).
            "nginx tls upstream": (nginx_up_tls, f"http://127.0.0.1:{ports['nginx_up_tls']}/test/x", None),
            "gateway tls upstream": (gw_up_tls, f"http://127.0.0.1:{ports['gw_up_tls']}/test/x", None),
            "gateway no limit": (gw_rl, f"http://127.0.0.1:{ports['gw_rl']}/test/x", None),
            "gateway rate-limited": (gw_rl, f"http://127.0.0.1:{ports['gw_rl']}/limited/x", None),
            "gateway 64 KiB JSON": (gw_gz, f"http://127.0.0.1:{ports['gw_gz']}/test/64k.json", None),
            "gateway gzip 64 KiB JSON": (gw_gz, f"http://127.0.0.1:{ports['gw_gz']}/test/64k.json", "Accept-Encoding: gzip"),
            "gateway br 64 KiB JSON": (gw_gz, f"http://127.0.0.1:{ports['gw_gz']}/test/64k.json", "Accept-Encoding: br"),
            "gateway zstd 64 KiB JSON": (gw_gz, f"http://127.0.0.1:{ports['gw_gz']}/test/64k.json", "Accept-Encoding: zstd"),
            "nginx gzip 64 KiB JSON": (nginx_gz, f"http://127.0.0.1:{ports['nginx_gz']}/test/64k.json", "Accept-Encoding: gzip"),
        }
        if pingap:
            rows["pingap"] = (pg, f"http://127.0.0.1:{ports['pingap']}/test/x", None)
            rows["pingap 4 KiB"] = (pg, f"http://127.0.0.1:{ports['pingap']}/test/4k", None)
        if args.ab:
            rows["gateway B"] = (gw_b, f"http://127.0.0.1:{ports['gw_b']}/test/x", None)
            rows["gateway B 4 KiB"] = (gw_b, f"http://127.0.0.1:{ports['gw_b']}/test/4k", None)
            rows["gateway B https"] = (gw_b_tls, f"https://127.0.0.1:{ports['gw_b_tls']}/test/x", None)
            rows["gateway B https handshakes"] = (gw_b_tls, f"https://127.0.0.1:{ports['gw_b_tls']}/test/x", "Connection: close")
            rows["gateway B h2"] = (gw_b_tls, f"https://127.0.0.1:{ports['gw_b_tls']}/test/x", None, "h2load")
            rows["gateway B 1 MiB down"] = (gw_b, f"http://127.0.0.1:{ports['gw_b']}/test/1m", None)
        if args.rows:
            rows = {k: v for k, v in rows.items() if re.search(args.rows, k)}
        if args.idle_only:
            rows = {}
        results = {name: [] for name in rows}
        stop_reload = threading.Event()
        def reloader():
            base = open(gw_reload.config_path).read()
            n = 0
            while not stop_reload.wait(1.0):
                n += 1
                open(gw_reload.config_path, "w").write(base + f"\nresponse_headers: {{ X-Version: \"{n}\" }}\n")
        for r in range(args.rounds if rows else 0):
            order = list(rows)
            random.shuffle(order)
            for name in order:
                proc, url, header, *script = rows[name]
                pid = proc.pid
                t = None
                if name == "gateway reload 1/s":
                    stop_reload.clear()
                    t = threading.Thread(target=reloader, daemon=True)
                    t.start()
                c0 = cpu_seconds(pid)
                if script == ["h2load"]:
                    res = h2load(url, args.seconds)
                else:
                    res = wrk(url, args.seconds, header, *script)
                res["cpu_us_per_req"] = (cpu_seconds(pid) - c0) / max(res["requests"], 1) * 1e6
                if t:
                    stop_reload.set()
                    t.join()
                results[name].append(res)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {results[n][-1]['rps']:.0f}" for n in rows), file=sys.stderr)

        def med(name, key):
            return statistics.median(x.get(key, 0.0) for x in results[name])
        def ratio(a, b):
            if a not in results or b not in results:
                return None
            return statistics.median(x["rps"] / max(y["rps"], 1) for x, y in zip(results[a], results[b]))
        peak = {name: rss_kb(row[0].pid, "VmHWM") for name, row in rows.items()}

        print(f"\n{'row':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU µs/req':>12}{'peak RSS MB':>13}{'bytes/resp':>12}")
        for name in rows:
            errs = sum(x["errors"] for x in results[name])
            print(f"{name:<28}{med(name, 'rps'):>10.0f}{med(name, 'p50'):>9.2f}{med(name, 'p99'):>9.2f}{errs:>8}{med(name, 'cpu_us_per_req'):>12.1f}{peak[name] / 1024:>13.1f}{med(name, 'bytes_per_req'):>12.0f}")
        pairs = {
            "gateway / gateway B  [A/B]": ("gateway", "gateway B"),
            "gateway 4 KiB / gateway B 4 KiB  [A/B]": ("gateway 4 KiB", "gateway B 4 KiB"),
            "gateway https / gateway B https  [A/B]": ("gateway https", "gateway B https"),
            "gateway https handshakes / B  [A/B]": ("gateway https handshakes", "gateway B https handshakes"),
            "gateway h2 / gateway B h2  [A/B]": ("gateway h2", "gateway B h2"),
            "gateway 1 MiB down / gateway B 1 MiB down  [A/B]": ("gateway 1 MiB down", "gateway B 1 MiB down"),
        }
        ratios = {
            "nginx (control) / nginx  [noise floor]": ratio("nginx (control)", "nginx"),
            "bare pingora / nginx": ratio("bare pingora", "nginx"),
            "gateway / nginx": ratio("gateway", "nginx"),
            "bare pingora tuned / nginx": ratio("bare pingora tuned", "nginx"),
            "gateway / bare pingora": ratio("gateway", "bare pingora"),
            "gateway / bare pingora tuned": ratio("gateway", "bare pingora tuned"),
            "gateway / pingap": ratio("gateway", "pingap"),
            "gateway 4 KiB / pingap 4 KiB": ratio("gateway 4 KiB", "pingap 4 KiB"),
            "pingap / bare pingora": ratio("pingap", "bare pingora"),
            "gateway 4 KiB / nginx 4 KiB": ratio("gateway 4 KiB", "nginx 4 KiB"),
            "gateway 4 KiB / bare pingora 4 KiB": ratio("gateway 4 KiB", "bare pingora 4 KiB"),
            "gateway auth HS256 / gateway": ratio("gateway auth HS256", "gateway"),
            "gateway auth RS256 / gateway": ratio("gateway auth RS256", "gateway"),
            "gateway 1 MiB down / 64 KiB buffer": ratio("gateway 1 MiB down", "gateway 64K buf 1 MiB down"),
            "gateway 1 MiB up / 64 KiB buffer": ratio("gateway 1 MiB up", "gateway 64K buf 1 MiB up"),
            "gateway 1 MiB down / nginx": ratio("gateway 1 MiB down", "nginx 1 MiB down"),
            "gateway 1 MiB up / nginx": ratio("gateway 1 MiB up", "nginx 1 MiB up"),
            "gateway 10k routes / gateway": ratio("gateway 10k routes", "gateway"),
            "gateway reload 1/s / gateway": ratio("gateway reload 1/s", "gateway"),
            "gateway https / nginx https": ratio("gateway https", "nginx https"),
            "gateway https handshakes / nginx": ratio("gateway https handshakes", "nginx https handshakes"),
            "gateway h2 / nginx h2": ratio("gateway h2", "nginx h2"),
            "gateway https / gateway": ratio("gateway https", "gateway"),
            "gateway tls upstream / nginx": ratio("gateway tls upstream", "nginx tls upstream"),
            "gateway tls upstream / gateway": ratio("gateway tls upstream", "gateway"),
            "gateway rate-limited / no limit": ratio("gateway rate-limited", "gateway no limit"),
            "gateway gzip / nginx gzip 64 KiB JSON": ratio("gateway gzip 64 KiB JSON", "nginx gzip 64 KiB JSON"),
            "gateway gzip / uncompressed 64 KiB": ratio("gateway gzip 64 KiB JSON", "gateway 64 KiB JSON"),
        }
        for k, (a, b) in pairs.items():
            ratios[k] = ratio(a, b)
        ratios = {k: v for k, v in ratios.items() if v is not None}
        print("\nratios (median of per-round ratios):")
        for k, v in ratios.items():
            print(f"  {k:<40}{v:6.3f}")

        idle = {}
        if args.idle:
            print(f"\nRSS with {args.idle} idle keep-alive connections (fresh processes):")
            fresh = {k: free_port() for k in ("nginx", "bare", "bare_tuned", "gw", "gw_64k", "m1", "m2", "nginx_tls", "nginx_tls_http", "gw_tls", "gw_tls_http", "m3")}
            exe = os.path.join(ROOT, "target", PROFILE, "examples/bare_pingora")
            up_addr = f"127.0.0.1:{ports['up']}"
            candidates = [
                ("nginx", lambda: start_nginx(d, "nginx_idle", fresh["nginx"], proxy_body, backend), fresh["nginx"]),
                ("bare pingora", lambda: Proc("bare_idle", [exe, f"127.0.0.1:{fresh['bare']}", up_addr, "1"]), fresh["bare"]),
                ("bare pingora tuned", lambda: Proc("bare_tuned_idle", [exe, f"127.0.0.1:{fresh['bare_tuned']}", up_addr, "1", "0", "nosteal"]), fresh["bare_tuned"]),
                ("gateway", lambda: start_gateway(d, "gw_idle", gateway_config(d, fresh["gw"], ports["up"], fresh["m1"])), fresh["gw"]),
                ("gateway 64K buf", lambda: start_gateway(d, "gw_64k_idle", gateway_config(d, fresh["gw_64k"], ports["up"], fresh["m2"], extra_server="  read_buffer_bytes: 65536\n")), fresh["gw_64k"]),
                ("nginx https", lambda: start_nginx(d, "nginx_tls_idle", fresh["nginx_tls_http"], proxy_body, backend + "\n  " + nginx_tls_server(fresh["nginx_tls"], crt, key, proxy_body)), fresh["nginx_tls"]),
                ("gateway https", lambda: start_gateway(d, "gw_tls_idle", gateway_config(d, fresh["gw_tls_http"], ports["up"], fresh["m3"]) + gateway_tls(fresh["gw_tls"], crt, key)), fresh["gw_tls"]),
            ]
            if args.ab:
                fresh.update({k: free_port() for k in ("gw_b", "m4", "gw_b_tls", "gw_b_tls_http", "m5")})
                candidates += [
                    ("gateway B", lambda: start_gateway(d, "gw_b_idle", gateway_config(d, fresh["gw_b"], ports["up"], fresh["m4"]), exe=os.path.abspath(args.ab)), fresh["gw_b"]),
                    ("gateway B https", lambda: start_gateway(d, "gw_b_tls_idle", gateway_config(d, fresh["gw_b_tls_http"], ports["up"], fresh["m5"]) + gateway_tls(fresh["gw_b_tls"], crt, key), exe=os.path.abspath(args.ab)), fresh["gw_b_tls"]),
                ]
            if args.idle_rows:
                candidates = [c for c in candidates if re.search(args.idle_rows, c[0])]
            for name, start, port in candidates:
                proc = start()
                procs.append(proc)
                tls = "https" in name
                if not tls:
                    wait_http(f"http://127.0.0.1:{port}/health")
                before = rss_kb(proc.pid)
                (rss, anon), failed = asyncio.run(asyncio.wait_for(hold_and_measure(port, args.idle, proc, tls), 300))
                idle[name] = {"rss_before_mb": before / 1024, "rss_mb": rss / 1024, "anon_mb": anon / 1024, "failed": failed}
                print(f"  {name:<20}{rss / 1024:8.1f} MB  (anonymous {anon / 1024:.1f} MB; before: {before / 1024:.1f} MB; failed connections: {failed})")
                proc.stop()
        c10k = run_c10k(d, args, ports, procs, proxy_body, backend, pingap) if args.c10k else {}
        if args.json:
            json.dump({"results": results, "ratios": ratios, "idle": idle, "c10k": c10k}, open(args.json, "w"), indent=1)
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(d, ignore_errors=True)


C10K_CONNS, C10K_QPS, C10K_WORKERS, C10K_WARMUP = 10_000, 5_000, 2, 4.0


def run_c10k(d, args, ports, procs, proxy_body, backend, pingap):
    """The original design's concurrency: 10,000 keep-alive connections each
    sending, 5,000 req/s in all (oha, rate-limited), against fresh processes
    with 2 workers each, one after the other, the same upstream. CPU and peak
    RSS are summed over the process and its children (nginx's workers)."""
    exe_oha = find_oha(args.oha)
    if not exe_oha:
        print("\n--c10k: oha not found (cargo install oha --locked), skipped", file=sys.stderr)
        return {}
    fresh = {k: free_port() for k in ("nginx", "bare", "gw", "m1", "pingap")}
    up_addr = f"127.0.0.1:{ports['up']}"
    bare_exe = os.path.join(ROOT, "target", PROFILE, "examples/bare_pingora")
    w = C10K_WORKERS
    candidates = [
        ("nginx", lambda: start_nginx(d, "nginx_c10k", fresh["nginx"], proxy_body, backend, workers=w), fresh["nginx"], None),
        ("bare pingora", lambda: Proc("bare_c10k", [bare_exe, f"127.0.0.1:{fresh['bare']}", up_addr, str(w)]), fresh["bare"], None),
        ("gateway", lambda: start_gateway(d, "gw_c10k", gateway_config(d, fresh["gw"], ports["up"], fresh["m1"], workers=w)), fresh["gw"], os.path.join(d, "gw_c10k.log")),
    ]
    if pingap:
        candidates.append(("pingap", lambda: start_pingap(d, "pingap_c10k", pingap, fresh["pingap"], ports["up"], threads=w), fresh["pingap"], os.path.join(d, "pingap_c10k.log")))
    out = {}
    print(f"\n{C10K_CONNS} keep-alive connections, {C10K_QPS} req/s in all, {args.c10k_seconds} s, {w} workers each (oha):")
    print(f"  p50/p99: requests started after the first {C10K_WARMUP:g} s; p99 all: the whole run")
    print(f"  {'row':<16}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'p99 all':>9}{'errors':>8}{'CPU µs/req':>12}{'CPU cores':>10}{'peak RSS MB':>13}{'ERROR lines':>13}")
    for name, start, port, log in candidates:
        proc = start()
        procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/health")
        master = int(open(proc.pid_from_file).read().strip()) if proc.pid_from_file else proc.p.pid
        pids = proc_tree(master)
        c0 = sum(cpu_seconds(p) for p in pids)
        t0 = time.time()
        db = os.path.join(d, f"oha_{name.replace(' ', '_')}.sqlite")
        res = oha(exe_oha, f"http://127.0.0.1:{port}/test/x", C10K_CONNS, C10K_QPS, args.c10k_seconds,
                  db=db, warmup=C10K_WARMUP)
        wall = time.time() - t0
        cpu = sum(cpu_seconds(p) for p in pids) - c0
        res["cpu_us_per_req"] = cpu / max(res["requests"], 1) * 1e6
        res["cpu_cores"] = cpu / wall
        res["peak_rss_mb"] = sum(rss_kb(p, "VmHWM") for p in pids) / 1024
        res["error_log_lines"] = sum(1 for line in open(log, errors="replace") if "ERROR" in line) if log else 0
        out[name] = res
        print(f"  {name:<16}{res['rps']:>8.0f}{res['p50']:>9.2f}{res['p99']:>9.2f}{res['p99_all']:>9.2f}{res['errors']:>8}{res['cpu_us_per_req']:>12.1f}{res['cpu_cores']:>10.2f}{res['peak_rss_mb']:>13.1f}{res['error_log_lines']:>13}")
        if res["error_kinds"]:
            print(f"    errors: {res['error_kinds']}")
        proc.stop()
    return out


async def hold_and_measure(port, n, proc, tls=False):
    conns, failed = await hold_idle(port, n, "/test/x", tls=tls)
    await asyncio.sleep(1)
    rss = (rss_kb(proc.pid), rss_kb(proc.pid, "RssAnon"))
    for _, w in conns:
        w.close()
    return rss, failed


if __name__ == "__main__":
    main()
