//! The plugin's side of the API: one HTTP request per call, every step under a deadline so a
//! stuck or absent daemon turns into CNI error 11 ("try again later"), never a hang.

use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::result::CniError;
use crate::frontend::http::types::ErrorBody;
use crate::frontend::http::wire as http;

pub struct Api {
    socket: PathBuf,
    timeout: Duration,
}

impl Api {
    pub fn new(socket: PathBuf, timeout: Duration) -> Self {
        Self { socket, timeout }
    }

    fn later(&self, what: String) -> CniError {
        CniError::new(
            CniError::TRY_AGAIN_LATER,
            format!("netd daemon at {}: {what}", self.socket.display()),
        )
    }

    /// Sends one request; the answer's status and body. Unreachable, refused or silent
    /// daemons are [`CniError::TRY_AGAIN_LATER`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), CniError> {
        let exchange = async {
            let mut s = UnixStream::connect(&self.socket)
                .await
                .map_err(|e| self.later(format!("cannot connect: {e} (is netd running?)")))?;
            s.write_all(&http::request(method, path, body.as_deref()))
                .await
                .map_err(|e| self.later(format!("cannot send the request: {e}")))?;
            let msg = http::read_message(&mut s, false)
                .await
                .map_err(|e| self.later(format!("no answer: {e}")))?;
            Ok((msg.status, msg.body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(self.later(format!(
                    "no answer to {method} {path} within {} s",
                    self.timeout.as_secs()
                )))
            })
    }

    /// [`Api::call`] and decode a 2xx answer.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, CniError> {
        let (status, body) = self.call(method, path, body).await?;
        decode(status, &body)
    }
}

/// A 2xx answer's body as `T`, or the daemon's refusal as a CNI error.
pub fn decode<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, CniError> {
    expect_ok(status, body)?;
    serde_json::from_slice(body).map_err(|e| {
        CniError::new(
            CniError::DAEMON_FAILED,
            format!("unexpected answer from the netd daemon: {e}"),
        )
    })
}

/// The daemon's refusal (`{"message"}` with a 4xx/5xx status) as a CNI error: a bad request
/// or an unknown network is an invalid configuration (7), something in use is
/// [`CniError::CONFLICT`], anything else [`CniError::DAEMON_FAILED`].
pub fn expect_ok(status: u16, body: &[u8]) -> Result<(), CniError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let msg = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    let code = match status {
        400 | 404 => CniError::INVALID_CONFIG,
        409 => CniError::CONFLICT,
        _ => CniError::DAEMON_FAILED,
    };
    Err(CniError::new(code, format!("netd: {msg}")))
}
