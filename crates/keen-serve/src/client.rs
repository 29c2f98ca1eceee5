//! [`Client`]: a minimal keep-alive HTTP/1.1 client over hyper, for the tests and the load
//! generator (no TLS, no redirects, one request at a time per client).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// What can fail while sending a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (connection closed, malformed answer...).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (an invalid header value).
    #[error("bad request: {0}")]
    Request(String),
}

/// A response: status, `Content-Type` and `Retry-After` headers, body.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
}

impl ClientResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One keep-alive connection to a server, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client for `addr`; it connects on the first request.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, ClientError> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: self.addr,
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            // The connection is driven in the background until either side closes it.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| ClientError::Request("no connection".into()))?;
        sender.ready().await?;
        Ok(sender)
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<ClientResponse, ClientError> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST path` with `body` of `content_type` (`None`: no `Content-Type` header).
    pub async fn post(
        &mut self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<ClientResponse, ClientError> {
        self.send(Method::POST, path, content_type, body.into())
            .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let reused = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        let first = self
            .send_once(method.clone(), path, content_type, body.clone())
            .await;
        match first {
            // The server may close a kept-alive connection at any time (after an error answer,
            // an idle timeout): one retry on a fresh connection.
            Err(ClientError::Http(_)) if reused => {
                self.send_once(method, path, content_type, body).await
            }
            other => other,
        }
    }

    async fn send_once(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let host = HeaderValue::from_str(&self.addr.to_string())
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host);
        if let Some(ct) = content_type {
            builder = builder.header(CONTENT_TYPE, ct);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let result = async {
            let sender = self.connect().await?;
            let response = sender.send_request(request).await?;
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(str::to_string)
            };
            let status = response.status().as_u16();
            let retry_after = header(hyper::header::RETRY_AFTER);
            let content_type = header(CONTENT_TYPE);
            let body = response.into_body().collect().await?.to_bytes();
            Ok(ClientResponse {
                status,
                retry_after,
                content_type,
                body,
            })
        }
        .await;
        if result.is_err() {
            // The connection is unusable; the next request opens a new one.
            self.sender = None;
        }
        result
    }
}
