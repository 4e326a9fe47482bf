//! The daemon's side of the API: parses each request into the engine's typed request, calls
//! the engine, and answers with its view or its error's status.

use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use super::convert::{self, BadRequest};
use super::types::{
    AttachRequest, ErrorBody, FilterRequest, NetworkCreateRequest, P2pRequest, PublishRequest,
};
use super::wire as http;
use crate::engine::{Engine, EngineError};
use crate::ops::monitor::Monitor;
use crate::ops::monitor::event::{Filter, Line};

pub type Shared = Arc<Mutex<Engine>>;

/// Connections served at once. Each holds a descriptor, and the daemon also needs descriptors
/// for its port reservations. When all are taken, the one that has waited longest for its
/// request is closed to make room ([`Waiting`]), so stalled clients never lock others out.
const MAX_CONNECTIONS: usize = 128;
/// A client has this long to send its whole request.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a new connection waits for a slot when every one is busy with a request.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The connections still reading their request, oldest first: the ones to shed when the
/// slots run out (a connection that is being answered is never cut).
#[derive(Default)]
struct Waiting {
    next_id: u64,
    queue: std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>,
}

type WaitingList = Arc<std::sync::Mutex<Waiting>>;

/// Serves connections until the listener fails. `monitor` serves `GET /v1/monitor` (none
/// without the eBPF dataplane).
pub async fn serve(listener: UnixListener, engine: Shared, monitor: Option<Arc<Monitor>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let waiting = WaitingList::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("API accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                // Every slot is taken: close the connection that has waited longest for its
                // request, and take its slot.
                let shed = waiting.lock().expect("waiting list").queue.pop_front();
                if let Some((_, n)) = shed {
                    n.notify_one();
                }
                tokio::time::timeout(SLOT_WAIT, slots.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let Some(permit) = permit else {
            // Every slot is answering a request: refuse this one instead of queueing it.
            tokio::spawn(async move {
                let mut stream = stream;
                let body = error_body(&format!(
                    "the daemon is serving {MAX_CONNECTIONS} requests: try again"
                ));
                let _ = write(&mut stream, &http::response(503, &body)).await;
            });
            continue;
        };
        let engine = engine.clone();
        let monitor = monitor.clone();
        let waiting = waiting.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, engine, monitor, permit, waiting).await {
                tracing::debug!("API connection: {e}");
            }
        });
    }
}

/// Reads one request within [`READ_TIMEOUT`], unless the slot is needed first.
async fn read_request(
    stream: &mut UnixStream,
    waiting: &WaitingList,
) -> Result<http::Message, http::HttpError> {
    let shed = Arc::new(tokio::sync::Notify::new());
    let id = {
        let mut w = waiting.lock().expect("waiting list");
        let id = w.next_id;
        w.next_id += 1;
        w.queue.push_back((id, shed.clone()));
        id
    };
    let timed_out = |what: &str| {
        Err(http::HttpError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            what.to_string(),
        )))
    };
    let r = tokio::select! {
        r = tokio::time::timeout(READ_TIMEOUT, http::read_message(stream, true)) => {
            r.unwrap_or_else(|_| timed_out("request not received within 10 s"))
        }
        _ = shed.notified() => timed_out(&format!(
            "request not received before {MAX_CONNECTIONS} other connections needed the slot"
        )),
    };
    waiting
        .lock()
        .expect("waiting list")
        .queue
        .retain(|(i, _)| *i != id);
    r
}

async fn handle(
    mut stream: UnixStream,
    engine: Shared,
    monitor: Option<Arc<Monitor>>,
    permit: tokio::sync::OwnedSemaphorePermit,
    waiting: WaitingList,
) -> Result<(), http::HttpError> {
    let req = match read_request(&mut stream, &waiting).await {
        Ok(r) => r,
        Err(e) => {
            // The slot goes back first: a shed connection's slot is awaited by a new one.
            drop(permit);
            let body = error_body(&e.to_string());
            write(&mut stream, &http::response(e.status(), &body)).await?;
            return Ok(());
        }
    };
    if req.path.split('?').next().map(|p| p.trim_matches('/')) == Some("v1/monitor") {
        // A stream lasts as long as its client watches: it must not hold a request slot.
        drop(permit);
        if req.method != "GET" {
            let body = error_body(&format!("method {} not allowed on /v1/monitor", req.method));
            return write(&mut stream, &http::response(405, &body)).await;
        }
        return monitor_stream(stream, &req.path, monitor.as_ref()).await;
    }
    let (status, body) = route(&req.method, &req.path, &req.body, &engine).await;
    write(&mut stream, &http::response(status, &body)).await
}

/// `GET /v1/monitor?type=&reason=&container=&port=`: NDJSON lines ([`Line`]) until the client
/// closes; the body is delimited by the connection's end (no Content-Length). The first line
/// (`{"kind":"start",...}`) says the datapath emits events from now on.
async fn monitor_stream(
    mut stream: UnixStream,
    full_path: &str,
    monitor: Option<&Arc<Monitor>>,
) -> Result<(), http::HttpError> {
    let Some(monitor) = monitor else {
        let body =
            error_body("netd monitor needs the eBPF dataplane (this daemon runs without it)");
        return write(&mut stream, &http::response(503, &body)).await;
    };
    let filter = match Filter::from_query(
        query(full_path, "type"),
        query(full_path, "reason"),
        query(full_path, "container"),
        query(full_path, "port"),
    ) {
        Ok(f) => f,
        Err(e) => return write(&mut stream, &http::response(400, &error_body(&e))).await,
    };
    let mut sub = match monitor.subscribe() {
        Ok(s) => s,
        Err(e) => {
            let body = error_body(&e.to_string());
            return write(&mut stream, &http::response(500, &body)).await;
        }
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    let mut out = head.as_bytes().to_vec();
    out.extend_from_slice(&ndjson(&Line::Start {
        filter: filter.clone(),
    }));
    write(&mut stream, &out).await?;
    let (mut rd, mut wr) = stream.split();
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            // The client sends nothing more: end of stream or an error means it went away.
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            },
            l = sub.next() => {
                let Some(l) = l else { return Ok(()) };
                if !filter.wants(&l) {
                    continue;
                }
                // A client that stops reading for READ_TIMEOUT loses its stream.
                match tokio::time::timeout(READ_TIMEOUT, wr.write_all(&ndjson(&l))).await {
                    Ok(r) => r?,
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}

fn ndjson(l: &Line) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).expect("serialises");
    v.push(b'\n');
    v
}

/// Writes an answer; a client that does not read it within [`READ_TIMEOUT`] loses it (and
/// its connection slot).
async fn write(stream: &mut UnixStream, bytes: &[u8]) -> Result<(), http::HttpError> {
    match tokio::time::timeout(READ_TIMEOUT, stream.write_all(bytes)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(http::HttpError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "answer not read within 10 s",
        ))),
    }
}

fn error_body(msg: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        message: msg.to_string(),
    })
    .expect("serialises")
}

fn json<T: Serialize>(status: u16, v: &T) -> (u16, Vec<u8>) {
    match serde_json::to_vec_pretty(v) {
        Ok(b) => (status, b),
        Err(e) => (500, error_body(&e.to_string())),
    }
}

fn err(e: EngineError) -> (u16, Vec<u8>) {
    (super::status_of(&e), error_body(&e.to_string()))
}

fn bad(e: BadRequest) -> (u16, Vec<u8>) {
    (400, error_body(&e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, (u16, Vec<u8>)> {
    serde_json::from_slice(body)
        .map_err(|e| (400, error_body(&format!("invalid request body: {e}"))))
}

/// Value of `key` in a query string (no percent-decoding: values are IPs, names, numbers).
fn query<'a>(full: &'a str, key: &str) -> Option<&'a str> {
    let q = full.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
}

async fn route(method: &str, full_path: &str, body: &[u8], engine: &Shared) -> (u16, Vec<u8>) {
    let path = full_path.split('?').next().unwrap_or(full_path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // How far the running counted operation (a publish, the start-up reconcile) is: read
    // without the engine, which that operation holds.
    if (method, segs.as_slice()) == ("GET", ["v1", "progress"].as_slice()) {
        return json(200, &crate::ops::progress::STEPS.view());
    }
    // A restarted daemon still reconciling answers reads from its snapshot.
    if let Some(answer) = super::starting::Starting::answer(method, &segs) {
        return answer;
    }
    match (method, segs.as_slice()) {
        ("GET", ["v1", "status"]) => match engine.lock().await.status() {
            Ok(s) => json(200, &s),
            Err(e) => err(e),
        },
        ("GET", ["v1", "endpoints"]) => json(200, &engine.lock().await.list()),
        ("POST", ["v1", "endpoints"]) => {
            let req: AttachRequest = match parse(body) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let spec = match convert::endpoint_spec(req) {
                Ok(s) => s,
                Err(e) => return bad(e),
            };
            let t = std::time::Instant::now();
            match engine.lock().await.attach(spec).await {
                Ok(v) => {
                    crate::ops::metrics::ATTACH.observe(t.elapsed());
                    json(201, &v)
                }
                Err(e) => err(e),
            }
        }
        ("GET", ["v1", "endpoints", name]) => match engine.lock().await.inspect(name) {
            Ok(v) => json(200, &v),
            Err(e) => err(e),
        },
        ("DELETE", ["v1", "endpoints", name]) => match engine.lock().await.detach(name).await {
            Ok(()) => (204, Vec::new()),
            Err(e) => err(e),
        },
        ("POST", ["v1", "p2p"]) => {
            let req: P2pRequest = match parse(body) {
                Ok(r) => r,
                Err(e) => return e,
            };
            match engine.lock().await.p2p(&req.name1, &req.name2).await {
                Ok(()) => (204, Vec::new()),
                Err(e) => err(e),
            }
        }
        ("POST", ["v1", "endpoints", name, "ports"]) => {
            let req: PublishRequest = match parse(body) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let specs = match convert::publish_specs(&req.publish) {
                Ok(s) => s,
                Err(e) => return bad(e),
            };
            let t = std::time::Instant::now();
            match engine.lock().await.publish(name, &specs).await {
                Ok(v) => {
                    crate::ops::metrics::PUBLISH.observe(t.elapsed());
                    json(200, &v)
                }
                Err(e) => err(e),
            }
        }
        ("GET", ["v1", "networks"]) => json(200, &engine.lock().await.networks()),
        ("POST", ["v1", "networks"]) => {
            let req: NetworkCreateRequest = match parse(body) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let spec = match convert::network_spec(req) {
                Ok(s) => s,
                Err(e) => return bad(e),
            };
            match engine.lock().await.create_network(spec).await {
                Ok(v) => json(201, &v),
                Err(e) => err(e),
            }
        }
        ("GET", ["v1", "networks", name]) => match engine.lock().await.network(name) {
            Ok(v) => json(200, &v),
            Err(e) => err(e),
        },
        ("DELETE", ["v1", "networks", name]) => {
            match engine.lock().await.remove_network(name).await {
                Ok(()) => (204, Vec::new()),
                Err(e) => err(e),
            }
        }
        ("GET", ["v1", "filters"]) => json(200, &engine.lock().await.filters()),
        ("POST", ["v1", "filters"]) => {
            let req: FilterRequest = match parse(body) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let change = match convert::filter_change(req) {
                Ok(c) => c,
                Err(e) => return bad(e),
            };
            match engine.lock().await.change_filters(change).await {
                Ok(f) => json(200, &f),
                Err(e) => err(e),
            }
        }
        ("GET", ["v1", "stats"]) => match engine.lock().await.stats() {
            Ok(s) => json(200, &s),
            Err(e) => err(e),
        },
        ("GET", ["v1", "ct"]) => {
            let q = match convert::ct_query(
                query(full_path, "ip"),
                query(full_path, "proto"),
                query(full_path, "port"),
            ) {
                Ok(q) => q,
                Err(e) => return bad(e),
            };
            let r = engine.lock().await.ct(&q);
            match r {
                Ok(v) => json(200, &v),
                Err(e) => err(e),
            }
        }
        (
            _,
            [
                "v1",
                "status" | "endpoints" | "networks" | "p2p" | "filters" | "stats" | "ct",
                ..,
            ],
        ) => (
            405,
            error_body(&format!("method {method} not allowed on {path}")),
        ),
        ("POST", [m]) if crate::frontend::docker::is_plugin_path(m) => {
            crate::frontend::docker::handle(m, body, engine).await
        }
        _ => (404, error_body(&format!("no such API path: {path}"))),
    }
}
