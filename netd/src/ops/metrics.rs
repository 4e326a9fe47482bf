//! The Prometheus text endpoint (`--metrics-addr HOST:PORT`, off by default): `GET /metrics`
//! answers the exposition format 0.0.4 with drops per reason, connection-tracking usage and
//! idle evictions, per-published-port packets and bytes, attach and publish latency
//! histograms, and the fill level of every pinned map. Counters come from the dataplane's
//! maps at scrape time; nothing is counted on the packet path for this endpoint.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::frontend::http::server::Shared;
use crate::frontend::http::wire;

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus histogram of durations.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let n = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {n}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Time from an attach request to its answer (successful attaches only).
pub static ATTACH: Histogram = Histogram::new();
/// Time from a publish request to its answer (successful publishes only).
pub static PUBLISH: Histogram = Histogram::new();
/// Conntrack entries removed by the idle collector.
pub static CT_EVICTED: AtomicU64 = AtomicU64::new(0);
/// Host events (link or address changes) that made the daemon refresh its uplinks or host
/// addresses, and those it skipped as its own (a container veth's, a bridge's).
pub static HOST_REFRESHES: AtomicU64 = AtomicU64::new(0);
pub static HOST_EVENTS_OWN: AtomicU64 = AtomicU64::new(0);

/// A label value escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The whole exposition.
pub async fn render(engine: &Shared) -> String {
    let mut out = String::new();
    let (stats, status, endpoints) = {
        let e = engine.lock().await;
        (e.stats(), e.status(), e.list().len())
    };
    head(&mut out, "netd_endpoints", "gauge", "Attached containers.");
    let _ = writeln!(out, "netd_endpoints {endpoints}");
    match stats {
        Ok(s) => {
            head(
                &mut out,
                "netd_drops_total",
                "counter",
                "Packets dropped by the dataplane, per reason.",
            );
            for d in &s.drops {
                let _ = writeln!(
                    out,
                    "netd_drops_total{{reason=\"{}\"}} {}",
                    esc(&d.reason),
                    d.packets
                );
            }
            for (name, help, bytes) in [
                (
                    "netd_published_port_packets_total",
                    "Packets translated for a published port.",
                    false,
                ),
                (
                    "netd_published_port_bytes_total",
                    "Bytes translated for a published port.",
                    true,
                ),
            ] {
                head(&mut out, name, "counter", help);
                for b in &s.bindings {
                    let _ = writeln!(
                        out,
                        "{name}{{container=\"{}\",proto=\"{}\",host_ip=\"{}\",host_port=\"{}\",container_port=\"{}\"}} {}",
                        esc(&b.container),
                        esc(&b.proto),
                        esc(&b.host_ip),
                        esc(&b.host_port),
                        esc(&b.container_port),
                        if bytes { b.bytes } else { b.packets }
                    );
                }
            }
        }
        Err(e) => tracing::warn!("metrics: cannot read the dataplane's counters: {e}"),
    }
    let maps = status
        .ok()
        .and_then(|s| s.ebpf.get("maps").cloned())
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default();
    head(
        &mut out,
        "netd_map_entries",
        "gauge",
        "Entries in each pinned BPF map.",
    );
    for m in &maps {
        let _ = writeln!(
            out,
            "netd_map_entries{{map=\"{}\"}} {}",
            esc(m["name"].as_str().unwrap_or("")),
            m["entries"].as_u64().unwrap_or(0)
        );
    }
    head(
        &mut out,
        "netd_map_max_entries",
        "gauge",
        "Capacity of each pinned BPF map.",
    );
    for m in &maps {
        let _ = writeln!(
            out,
            "netd_map_max_entries{{map=\"{}\"}} {}",
            esc(m["name"].as_str().unwrap_or("")),
            m["max_entries"].as_u64().unwrap_or(0)
        );
    }
    if let Some(ct) = maps
        .iter()
        .find(|m| m["name"].as_str() == Some(netd_common::MAP_CT))
    {
        head(
            &mut out,
            "netd_conntrack_entries",
            "gauge",
            "Connection-tracking entries in use (two per flow).",
        );
        let _ = writeln!(
            out,
            "netd_conntrack_entries {}",
            ct["entries"].as_u64().unwrap_or(0)
        );
        head(
            &mut out,
            "netd_conntrack_max_entries",
            "gauge",
            "Connection-tracking table size (--ct-max); a full table refuses new flows.",
        );
        let _ = writeln!(
            out,
            "netd_conntrack_max_entries {}",
            ct["max_entries"].as_u64().unwrap_or(0)
        );
    }
    head(
        &mut out,
        "netd_conntrack_evictions_total",
        "counter",
        "Connection-tracking entries removed by the idle collector.",
    );
    let _ = writeln!(
        out,
        "netd_conntrack_evictions_total {}",
        CT_EVICTED.load(Ordering::Relaxed)
    );
    head(
        &mut out,
        "netd_host_events_total",
        "counter",
        "Batches of host link/address events: refreshed (another interface changed) or own (netd's veths and bridges only, skipped).",
    );
    let _ = writeln!(
        out,
        "netd_host_events_total{{result=\"refreshed\"}} {}",
        HOST_REFRESHES.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "netd_host_events_total{{result=\"own\"}} {}",
        HOST_EVENTS_OWN.load(Ordering::Relaxed)
    );
    ATTACH.render(
        &mut out,
        "netd_attach_duration_seconds",
        "Time to attach a container (API request to answer).",
    );
    PUBLISH.render(
        &mut out,
        "netd_publish_duration_seconds",
        "Time to publish ports on an attached container (API request to answer).",
    );
    out
}

/// Binds `addr`; errors name the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on --metrics-addr {addr}: {e}"))
}

/// Serves `GET /metrics` until the listener fails.
pub async fn serve(listener: TcpListener, engine: Shared) {
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(s, &engine).await {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(mut s: TcpStream, engine: &Shared) -> Result<(), wire::HttpError> {
    let t = Duration::from_secs(10);
    let req = match tokio::time::timeout(t, wire::read_message(&mut s, true)).await {
        Ok(r) => r,
        Err(_) => return Ok(()),
    };
    let (status, ctype, body) = match req {
        Ok(r) if r.method == "GET" && r.path.split('?').next() == Some("/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(engine).await.into_bytes(),
        ),
        Ok(r) => (
            404,
            "text/plain; charset=utf-8",
            format!(
                "only GET /metrics is served here, not {} {}\n",
                r.method, r.path
            )
            .into_bytes(),
        ),
        Err(e) => (
            e.status(),
            "text/plain; charset=utf-8",
            format!("{e}\n").into_bytes(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        wire::reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    let _ = tokio::time::timeout(t, s.write_all(&out)).await;
    Ok(())
}
