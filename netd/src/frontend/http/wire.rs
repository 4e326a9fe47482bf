//! Just enough HTTP/1.1 for a local JSON API: one request per connection, Content-Length bodies.
//! httparse does the header parsing; bodies are bounded so a client cannot exhaust memory.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request or response head/body accepted. An attach that publishes 65 000 ports
/// answers with one port line each (about 5 MB).
pub const MAX_BODY: usize = 32 << 20;
const MAX_HEAD: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection closed before a complete HTTP message arrived")]
    Truncated,
    #[error("HTTP message head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("HTTP body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("Transfer-Encoding is not supported: send the body with a Content-Length")]
    TransferEncoding,
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
    #[error("I/O error on the API socket: {0}")]
    Io(#[from] std::io::Error),
}

impl HttpError {
    /// The status that answers a request that failed this way.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::TransferEncoding => 501,
            HttpError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => 408,
            _ => 400,
        }
    }
}

/// A parsed message: request (method, path) or response (status).
#[derive(Debug)]
pub struct Message {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// Reads one request (`request = true`) or response from `r`.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    request: bool,
) -> Result<Message, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Truncated);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let parsed = if request {
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => Some((
                    len,
                    req.method.unwrap_or_default().to_owned(),
                    req.path.unwrap_or_default().to_owned(),
                    0,
                    content_length(req.headers)?,
                )),
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(HttpError::Malformed(e.to_string())),
            }
        } else {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => Some((
                    len,
                    String::new(),
                    String::new(),
                    resp.code.unwrap_or(0),
                    content_length(resp.headers)?,
                )),
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(HttpError::Malformed(e.to_string())),
            }
        };
        match parsed {
            Some((head_len, method, path, status, body_len)) => {
                let body_len = match body_len {
                    Some(n) if n > MAX_BODY => return Err(HttpError::BodyTooLarge),
                    Some(n) => n,
                    // A response without Content-Length runs to end of stream.
                    None if !request => usize::MAX,
                    None => 0,
                };
                let mut body = buf.split_off(head_len);
                while body.len() < body_len {
                    let n = r.read(&mut chunk).await?;
                    if n == 0 {
                        if body_len == usize::MAX {
                            break;
                        }
                        return Err(HttpError::Truncated);
                    }
                    body.extend_from_slice(&chunk[..n]);
                    if body.len() > MAX_BODY {
                        return Err(HttpError::BodyTooLarge);
                    }
                }
                if body_len != usize::MAX {
                    body.truncate(body_len);
                }
                return Ok(Message {
                    method,
                    path,
                    status,
                    body,
                });
            }
            None if buf.len() > MAX_HEAD => return Err(HttpError::HeadTooLarge),
            None => {}
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, HttpError> {
    if headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(HttpError::TransferEncoding);
    }
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| HttpError::Malformed("bad Content-Length".into()))?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Serialises a response with a JSON body.
pub fn response(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Serialises a request with an optional JSON body.
pub fn request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: netd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}
