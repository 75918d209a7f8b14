//! The HTTP client the ACME library talks to the CA with: reqwest on the
//! process's rustls (ring) stack, trusting the system's roots plus
//! `tls.acme.ca_file` (instant-acme's own `builder_with_root` would trust
//! that one root *instead of* the system's).

use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// One request to the CA may take this long (connect, send, read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// reqwest behind instant-acme's [`HttpClient`].
pub(super) struct Client(reqwest::Client);

impl Client {
    /// A client trusting the system's roots and every certificate in
    /// `ca_file`.
    pub(super) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30));
        if let Some(path) = ca_file {
            let certs = crate::tls::pem::read_certs(path).map_err(|e| e.to_string())?;
            let extra = certs
                .iter()
                .map(|c| reqwest::Certificate::from_der(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            b = b.tls_certs_merge(extra);
        }
        b.build()
            .map(Client)
            .map_err(|e| format!("cannot build the ACME HTTP client: {e}"))
    }
}

impl HttpClient for Client {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(never) => match never {},
            };
            let rsp = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(other)?;
            let mut head = http::Response::builder().status(rsp.status());
            if let Some(h) = head.headers_mut() {
                *h = rsp.headers().clone();
            }
            let bytes = rsp.bytes().await.map_err(other)?;
            let (parts, ()) = head
                .body(())
                .map_err(instant_acme::Error::Http)?
                .into_parts();
            Ok(BytesResponse {
                parts,
                body: Box::new(bytes),
            })
        })
    }
}

fn other(e: reqwest::Error) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(e))
}
