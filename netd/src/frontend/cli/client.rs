//! The CLI's side of the API: one HTTP request per call on the daemon's socket.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::frontend::http::types::ErrorBody;
use crate::frontend::http::wire as http;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the netd daemon at {path}: {source} (is `netd daemon` running with this -H?)"
    )]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] http::HttpError),
    /// The daemon refused the request; the message is the daemon's.
    #[error("{0}")]
    Daemon(String),
    #[error("unexpected answer from the daemon: {0}")]
    Decode(String),
}

pub struct Client<'a> {
    socket: &'a Path,
}

impl<'a> Client<'a> {
    pub fn new(socket: &'a Path) -> Self {
        Self { socket }
    }

    /// Sends one request; returns the raw body of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut s =
            UnixStream::connect(self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.display().to_string(),
                    source,
                })?;
        s.write_all(&http::request(method, path, body.as_deref()))
            .await
            .map_err(http::HttpError::from)?;
        let msg = http::read_message(&mut s, false).await?;
        if (200..300).contains(&msg.status) {
            Ok(msg.body)
        } else {
            let text = serde_json::from_slice::<ErrorBody>(&msg.body)
                .map(|e| e.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&msg.body).into_owned());
            Err(ClientError::Daemon(text))
        }
    }

    /// Sends a GET whose answer is a stream (`/v1/monitor`): on a 2xx answer, the connection
    /// with the head read, and the body bytes that came with it.
    pub async fn stream(&self, path: &str) -> Result<(UnixStream, Vec<u8>), ClientError> {
        let mut s =
            UnixStream::connect(self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.display().to_string(),
                    source,
                })?;
        s.write_all(&http::request("GET", path, None))
            .await
            .map_err(http::HttpError::from)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (status, head_len) = loop {
            let n = s.read(&mut chunk).await.map_err(http::HttpError::from)?;
            if n == 0 {
                return Err(http::HttpError::Truncated.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => break (resp.code.unwrap_or(0), len),
                Ok(httparse::Status::Partial) if buf.len() < 64 << 10 => {}
                Ok(httparse::Status::Partial) => return Err(http::HttpError::HeadTooLarge.into()),
                Err(e) => return Err(http::HttpError::Malformed(e.to_string()).into()),
            }
        };
        let mut body = buf.split_off(head_len);
        if (200..300).contains(&status) {
            return Ok((s, body));
        }
        // An error answers with a JSON body and closes.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut body))
            .await;
        let text = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        Err(ClientError::Daemon(text))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let body = self.call("GET", path, None).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        req: &B,
    ) -> Result<T, ClientError> {
        let json = serde_json::to_vec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        let body = self.call("POST", path, Some(json)).await?;
        if body.is_empty() {
            return serde_json::from_slice(b"null").map_err(|e| ClientError::Decode(e.to_string()));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}
