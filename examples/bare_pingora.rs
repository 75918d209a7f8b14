//! The thinnest Pingora proxy: one `ProxyHttp` that returns a clone of one
//! `HttpPeer`. The benchmark's ceiling for any gateway on this Pingora
//! version (same crates, same release profile).
//!
//! ```text
//! cargo run --release --example bare_pingora -- LISTEN UPSTREAM THREADS [READ_BUFFER_BYTES [nosteal]]
//! ```
//!
//! `nosteal` applies the gateway's defaults to Pingora's settings: no
//! work-stealing scheduler (`ServerConf::work_stealing`) and no write buffer
//! (the benchmark's "tuned" bare row, with READ_BUFFER_BYTES 0).

use async_trait::async_trait;
use pingora_core::listeners::ListenerConfig;
use pingora_core::protocols::l4::stream::L4BufferSettings;
use pingora_core::server::Server;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

struct Bare(HttpPeer);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(
        &self,
        _: &mut Session,
        _: &mut (),
    ) -> pingora_error::Result<Box<HttpPeer>> {
        Ok(Box::new(self.0.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = (&args[1], &args[2]);
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(1);
    let tuned = args.get(5).map(String::as_str) == Some("nosteal");
    let conf = ServerConf {
        threads,
        pid_file: format!("/tmp/bare-pingora-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/bare-pingora-{}.sock", std::process::id()),
        work_stealing: !tuned,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(
        Opt {
            upgrade: false,
            daemon: false,
            nocapture: false,
            test: false,
            conf: None,
        },
        conf,
    );
    server.bootstrap();
    let mut proxy = pingora_proxy::http_proxy_service(
        &server.configuration,
        Bare(HttpPeer::new(upstream.as_str(), false, String::new())),
    );
    let mut listener = ListenerConfig::tcp(listen);
    if let Some(read) = args.get(4).and_then(|b| b.parse().ok()) {
        let mut buffers = L4BufferSettings::default().read(read);
        if tuned {
            buffers = buffers.write(0);
        }
        listener = listener.l4_buffer(buffers);
    }
    proxy.add_listener(listener);
    server.add_service(proxy);
    server.run_forever();
}
