//! The client side of the socket, for `claude-pm`'s operator commands: one HTTP/1.1 request
//! per connection, answers decoded into the same wire types the server encodes.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::error::{Error, Result};
use crate::events::Samples;
use crate::wire::{ErrorBody, SessionDetail, SessionView};

/// Where the daemon listens.
#[derive(Clone)]
enum Endpoint {
    Unix(PathBuf),
    /// `host:port`, and the bearer token every request carries.
    Tcp {
        addr: String,
        token: String,
    },
}

/// A client of the daemon, on its Unix socket or on TCP with a token.
#[derive(Clone)]
pub struct Client {
    endpoint: Endpoint,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.endpoint {
            Endpoint::Unix(path) => f.debug_struct("Client").field("socket", path).finish(),
            Endpoint::Tcp { addr, .. } => f
                .debug_struct("Client")
                .field("addr", addr)
                .field("token", &"[redacted]")
                .finish(),
        }
    }
}

/// One HTTP/1.1 exchange over `io`.
async fn exchange<I>(
    io: I,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::io("talk to the daemon", std::io::Error::other(e)))?;
    tokio::spawn(conn);
    sender
        .send_request(request)
        .await
        .map_err(|e| Error::io("talk to the daemon", std::io::Error::other(e)))
}

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// DELETE.
    Delete,
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            endpoint: Endpoint::Unix(socket.into()),
        }
    }

    /// A client of the daemon listening on TCP at `addr` (`host:port`), sending `token`.
    pub fn tcp(addr: impl Into<String>, token: impl Into<String>) -> Client {
        Client {
            endpoint: Endpoint::Tcp {
                addr: addr.into(),
                token: token.into(),
            },
        }
    }

    /// The socket, for a client of one.
    pub fn socket(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Unix(path) => Some(path),
            Endpoint::Tcp { .. } => None,
        }
    }

    /// Send `request` (with the token, on TCP).
    async fn send(
        &self,
        mut request: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    Error::io(format!("connect to the daemon at {}", path.display()), e)
                })?;
                exchange(stream, request).await
            }
            Endpoint::Tcp { addr, token } => {
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| Error::io(format!("connect to the daemon at {addr}"), e))?;
                let value = format!("Bearer {token}").parse().map_err(|_| {
                    Error::io(
                        "use the token",
                        std::io::Error::other("it is not a valid header value"),
                    )
                })?;
                request.headers_mut().insert("authorization", value);
                exchange(stream, request).await
            }
        }
    }

    /// Send one request; the status and the body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes)> {
        self.request_seq(method, path, body)
            .await
            .map(|(status, _, body)| (status, body))
    }

    /// [`Client::request`], with the answer's event number header if it has one.
    async fn request_seq(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Option<u64>, Bytes)> {
        let method = match method {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
            Method::Delete => hyper::Method::DELETE,
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "claude-pm")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Error::io("build a request", std::io::Error::other(e)))?;
        let response = self.send(request).await?;
        let status = response.status().as_u16();
        let seq = response
            .headers()
            .get(crate::server::EVENT_SEQ_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Error::io("read the daemon's answer", std::io::Error::other(e)))?
            .to_bytes();
        Ok((status, seq, body))
    }

    /// A request whose success is JSON of type `T`; an error status becomes [`Error::Api`]
    /// with the daemon's message.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let (status, bytes) = self.request(method, path, body).await?;
        decode(status, &bytes)
    }

    /// `GET /v1/sessions`.
    pub async fn list(&self) -> Result<Vec<SessionView>> {
        self.json(Method::Get, "/v1/sessions", None).await
    }

    /// `GET /v1/sessions` and the number of the newest event it includes: following the
    /// events after that number misses nothing that happened since the list was taken.
    pub async fn list_with_seq(&self) -> Result<(Vec<SessionView>, u64)> {
        let (status, seq, bytes) = self.request_seq(Method::Get, "/v1/sessions", None).await?;
        let list = decode(status, &bytes)?;
        let seq = seq.ok_or_else(|| Error::Api {
            status,
            message: format!(
                "the answer has no {} header",
                crate::server::EVENT_SEQ_HEADER
            ),
        })?;
        Ok((list, seq))
    }

    /// `GET /v1/sessions/{name}`.
    pub async fn inspect(&self, name: &str) -> Result<SessionDetail> {
        self.json(Method::Get, &format!("/v1/sessions/{name}"), None)
            .await
    }

    /// `GET /v1/sessions/{name}/history`.
    pub async fn history(&self, name: &str) -> Result<crate::history::HistoryView> {
        self.json(Method::Get, &format!("/v1/sessions/{name}/history"), None)
            .await
    }

    /// `POST /v1/sessions` with a definition (the keys of a `[[session]]` table, as JSON).
    pub async fn create(&self, definition: &serde_json::Value) -> Result<SessionDetail> {
        let body = serde_json::to_vec(definition)
            .map_err(|e| Error::io("encode", std::io::Error::other(e)))?;
        self.json(Method::Post, "/v1/sessions", Some(body)).await
    }

    /// `POST /v1/sessions/{name}/stop`.
    pub async fn stop(&self, name: &str) -> Result<SessionView> {
        self.json(Method::Post, &format!("/v1/sessions/{name}/stop"), None)
            .await
    }

    /// `POST /v1/sessions/{name}/restart`.
    pub async fn restart(&self, name: &str) -> Result<SessionView> {
        self.json(Method::Post, &format!("/v1/sessions/{name}/restart"), None)
            .await
    }

    /// `DELETE /v1/sessions/{name}`.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let _: serde_json::Value = self
            .json(Method::Delete, &format!("/v1/sessions/{name}"), None)
            .await?;
        Ok(())
    }

    /// `POST /v1/reload`: apply the config file as it is now.
    pub async fn reload(&self) -> Result<crate::wire::ReloadReport> {
        self.json(Method::Post, "/v1/reload", None).await
    }

    /// `POST /v1/drain`: stop every session and take no new ones (the daemon keeps running).
    pub async fn drain(&self) -> Result<()> {
        let _: serde_json::Value = self.json(Method::Post, "/v1/drain", None).await?;
        Ok(())
    }

    /// `GET /v1/events?since=SEQ&follow=BOOL&samples=all|changed`: each NDJSON record to
    /// `each` as it arrives, until the stream ends (without `follow`, after the kept events).
    pub async fn events(
        &self,
        since: u64,
        follow: bool,
        samples: Samples,
        each: impl FnMut(&str),
    ) -> Result<()> {
        let samples = samples.as_str();
        self.lines_of(
            &format!("/v1/events?since={since}&follow={follow}&samples={samples}"),
            each,
        )
        .await
    }

    /// `GET /v1/sessions/{name}/logs?follow=true`: each output line to `each` as it comes,
    /// until the session is deleted or restarted from scratch.
    pub async fn follow_logs(&self, name: &str, each: impl FnMut(&str)) -> Result<()> {
        self.lines_of(&format!("/v1/sessions/{name}/logs?follow=true"), each)
            .await
    }

    /// A GET whose body is lines, each to `each` as it arrives.
    async fn lines_of(&self, path: &str, mut each: impl FnMut(&str)) -> Result<()> {
        let request = hyper::Request::builder()
            .uri(path)
            .header("host", "claude-pm")
            .body(Full::new(Bytes::new()))
            .map_err(|e| Error::io("build a request", std::io::Error::other(e)))?;
        let mut response = self.send(request).await?;
        let status = response.status().as_u16();
        let mut pending = Vec::new();
        while let Some(frame) = response.body_mut().frame().await {
            let frame =
                frame.map_err(|e| Error::io("read the event stream", std::io::Error::other(e)))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                each(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref());
            }
        }
        if status != 200 {
            return Err(Error::Api {
                status,
                message: String::from_utf8_lossy(&pending).into_owned(),
            });
        }
        Ok(())
    }

    /// `GET /v1/sessions/{name}/logs`: the kept lines.
    pub async fn logs(&self, name: &str) -> Result<String> {
        let (status, bytes) = self
            .request(Method::Get, &format!("/v1/sessions/{name}/logs"), None)
            .await?;
        if status != 200 {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| e.error)
                .unwrap_or_default();
            return Err(Error::Api { status, message });
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// An answer whose success is JSON of type `T`; an error status becomes [`Error::Api`] with
/// the daemon's message.
fn decode<T: serde::de::DeserializeOwned>(status: u16, bytes: &[u8]) -> Result<T> {
    if !(200..300).contains(&status) {
        let message = match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(bytes).trim().to_owned(),
        };
        return Err(Error::Api { status, message });
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Api {
        status,
        message: format!("an answer that is not what was asked for: {e}"),
    })
}
