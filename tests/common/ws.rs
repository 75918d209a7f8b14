//! WebSocket helpers: an echo upstream and a client through the gateway.

use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

/// A WebSocket echo server on an ephemeral port (text messages).
pub async fn ws_echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket client connected through the gateway at `/ws/x`.
pub async fn ws_connect(port: u16) -> Ws {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_tungstenite::client_async(format!("ws://127.0.0.1:{port}/ws/x"), stream)
        .await
        .unwrap()
        .0
}

/// Sends `n` text messages and expects each echoed back; `context` (e.g.
/// the gateway's log) is shown if it fails.
pub async fn ws_roundtrip(ws: &mut Ws, n: usize, context: impl Fn() -> String) {
    for i in 0..n {
        let sent = ws
            .send(tokio_tungstenite::tungstenite::Message::text(format!(
                "m{i}"
            )))
            .await;
        assert!(sent.is_ok(), "send {i}: {sent:?}\n{}", context());
        let got = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        match got {
            Ok(Some(Ok(m))) => assert_eq!(m.into_text().unwrap().as_str(), format!("m{i}")),
            other => panic!("echo {i}: {other:?}\n{}", context()),
        }
    }
}
