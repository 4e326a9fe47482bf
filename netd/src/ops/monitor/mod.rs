//! `netd monitor`: the daemon reads the datapath's NETD_EVENTS ring buffer and fans its events
//! out to every client of `GET /v1/monitor`, each through its own filter.
//!
//! The programs write events only while NETD_MONITOR[0] is non-zero: [`Monitor::subscribe`]
//! sets it for the first client and the last [`Subscription`]'s drop clears it, so with nobody
//! watching a drop costs one array lookup more and nothing else does. A daemon that starts
//! clears it (a killed daemon may have left it set).
//!
//! - [`event`]: the NDJSON lines, the 5-tuple from the packet's head, filters, human lines.
//! - [`pcap`]: `--pcap FILE`.

pub mod event;
pub mod pcap;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use netd_common::{DropEvent, MAP_EVENTS, MAP_MONITOR, MAP_MONITOR_LOST};
use tokio::io::unix::AsyncFd;
use tokio::sync::broadcast;

use crate::frontend::http::server::Shared;
use event::{Drop as DropLine, Line};

/// Lines buffered per client before a slow one loses some.
const CLIENT_QUEUE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot open the monitor map {path}: {source}")]
    Map {
        path: String,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot switch datapath events {what} in {MAP_MONITOR}: {source}")]
    Switch {
        what: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot poll the ring buffer {MAP_EVENTS}: {0}")]
    Poll(#[source] std::io::Error),
}

/// The daemon's side: the switch, the subscriber count and the fan-out.
pub struct Monitor {
    tx: broadcast::Sender<Arc<Line>>,
    state: Mutex<SwitchState>,
    lost: PerCpuArray<MapData, u64>,
}

struct SwitchState {
    clients: usize,
    switch: Array<MapData, u32>,
}

fn open(pin_dir: &Path, name: &str) -> Result<Map, MonitorError> {
    let path = crate::dataplane::pinned_map(pin_dir, name);
    let err = |source| MonitorError::Map {
        path: path.display().to_string(),
        source,
    };
    Map::from_map_data(MapData::from_pin(&path).map_err(err)?).map_err(err)
}

impl Monitor {
    /// Opens the monitor maps pinned under `pin_dir`, turns emission off, and starts the task
    /// that reads the ring and names interfaces and containers from `engine`.
    pub fn start(pin_dir: &Path, engine: Shared) -> Result<Arc<Self>, MonitorError> {
        let map_err = |name: &str| {
            let path = crate::dataplane::pinned_map(pin_dir, name)
                .display()
                .to_string();
            move |source| MonitorError::Map { path, source }
        };
        let mut switch: Array<MapData, u32> =
            Array::try_from(open(pin_dir, MAP_MONITOR)?).map_err(map_err(MAP_MONITOR))?;
        switch.set(0, 0, 0).map_err(|source| MonitorError::Switch {
            what: "off",
            source,
        })?;
        let lost = PerCpuArray::try_from(open(pin_dir, MAP_MONITOR_LOST)?)
            .map_err(map_err(MAP_MONITOR_LOST))?;
        let ring: RingBuf<MapData> =
            RingBuf::try_from(open(pin_dir, MAP_EVENTS)?).map_err(map_err(MAP_EVENTS))?;
        // SAFETY: the RingBuf owns its map descriptor and moves into the AsyncFd, which keeps
        // it open (and the same descriptor) for its whole life.
        let ring =
            unsafe { AsyncFd::register(ring) }.map_err(|e| MonitorError::Poll(e.into_parts().1))?;
        let (tx, _) = broadcast::channel(CLIENT_QUEUE);
        let m = Arc::new(Self {
            tx,
            state: Mutex::new(SwitchState { clients: 0, switch }),
            lost,
        });
        tokio::spawn(read_ring(ring, m.clone(), engine));
        Ok(m)
    }

    /// A new client: emission is on while it lives.
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, MonitorError> {
        let rx = self.tx.subscribe();
        let mut st = self.state.lock().expect("monitor state");
        if st.clients == 0 {
            st.switch
                .set(0, 1, 0)
                .map_err(|source| MonitorError::Switch { what: "on", source })?;
            tracing::info!("monitor client connected: datapath events on");
        }
        st.clients += 1;
        Ok(Subscription {
            rx,
            monitor: self.clone(),
        })
    }

    /// Events lost to a full ring so far, summed over CPUs.
    fn ring_lost(&self) -> u64 {
        self.lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

/// One client's stream; dropping it (the client went away) turns emission off if it was the
/// last.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Line>>,
    monitor: Arc<Monitor>,
}

impl Subscription {
    /// The next line, or `None` when the daemon's reader stopped. A client that fell behind
    /// gets a [`Line::Lost`] for what it missed.
    pub async fn next(&mut self) -> Option<Arc<Line>> {
        match self.rx.recv().await {
            Ok(l) => Some(l),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Arc::new(Line::Lost {
                count: n,
                cause: "slow_client".into(),
            })),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.monitor.state.lock().expect("monitor state");
        st.clients -= 1;
        if st.clients == 0 {
            match st.switch.set(0, 0, 0) {
                Ok(()) => tracing::info!("last monitor client gone: datapath events off"),
                Err(e) => tracing::warn!("cannot switch datapath events off: {e}"),
            }
        }
    }
}

/// Interface and address owners, refreshed from the engine at most once a second.
#[derive(Default)]
struct Names {
    by_ifname: HashMap<String, String>,
    by_ip: HashMap<IpAddr, String>,
    /// Published ports: (proto, host port) -> container.
    by_port: HashMap<(String, u16), String>,
    at: Option<Instant>,
}

impl Names {
    async fn refresh(&mut self, engine: &Shared) {
        if self
            .at
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        let list = engine.lock().await.list();
        self.by_ifname.clear();
        self.by_ip.clear();
        self.by_port.clear();
        for e in list {
            for p in &e.ports {
                self.by_port
                    .insert((p.proto.clone(), p.host_port), e.name.clone());
            }
            if let Some(h) = &e.host_ifname {
                self.by_ifname.insert(h.clone(), e.name.clone());
            }
            if let Some(ip) = e.ip.as_deref().and_then(|i| i.parse().ok()) {
                self.by_ip.insert(ip, e.name.clone());
            }
        }
        self.at = Some(Instant::now());
    }
}

fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

/// CLOCK_REALTIME - CLOCK_MONOTONIC, nanoseconds: turns `bpf_ktime_get_ns` into Unix time.
fn realtime_offset() -> u64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to write.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    now(libc::CLOCK_REALTIME).saturating_sub(now(libc::CLOCK_MONOTONIC))
}

fn describe(ev: &DropEvent, names: &Names) -> DropLine {
    let head = &ev.head[..(ev.cap_len as usize).min(ev.head.len())];
    let tuple = event::tuple(head);
    let ifname = ifname(ev.ifindex);
    let by_if = ifname
        .as_ref()
        .and_then(|n| names.by_ifname.get(n))
        .cloned();
    let owner = |ip: Option<IpAddr>| ip.and_then(|i| names.by_ip.get(&i)).cloned();
    let (src, dst) = (owner(tuple.src), owner(tuple.dst));
    let (container, peer) = match by_if {
        // The container's own veth: the other end is the address that is not its own.
        Some(c) => {
            let other = [dst, src].into_iter().flatten().find(|o| *o != c);
            (Some(c), other)
        }
        // An uplink: the container addressed, or the one publishing the port, or the sender.
        None => {
            let published = || {
                let port = tuple.dport?;
                names.by_port.get(&(tuple.proto.clone(), port)).cloned()
            };
            match (dst.or_else(published), src) {
                (Some(d), s) => (Some(d), s),
                (None, s) => (s, None),
            }
        }
    };
    DropLine {
        time_ns: ev.ktime_ns + realtime_offset(),
        reason: netd_common::drop_reason_name(ev.reason).into(),
        reason_code: ev.reason,
        program: event::program(
            ev.hook,
            ifname
                .as_ref()
                .is_some_and(|n| names.by_ifname.contains_key(n)),
        )
        .into(),
        ifindex: ev.ifindex,
        ifname,
        container,
        peer,
        tuple,
        len: ev.pkt_len,
        head: event::head_hex(ev),
    }
}

async fn read_ring(mut ring: AsyncFd<RingBuf<MapData>>, m: Arc<Monitor>, engine: Shared) {
    let mut names = Names::default();
    let mut lost_seen = m.ring_lost();
    loop {
        let mut guard = match ring.readable_mut().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("monitor: {}", MonitorError::Poll(e));
                return;
            }
        };
        let mut raw = Vec::new();
        {
            let rb = guard.get_inner_mut();
            while let Some(item) = rb.next() {
                if item.len() >= size_of::<DropEvent>() {
                    raw.push(bytemuck::pod_read_unaligned::<DropEvent>(
                        &item[..size_of::<DropEvent>()],
                    ));
                }
            }
        }
        guard.clear_ready();
        if raw.is_empty() {
            continue;
        }
        names.refresh(&engine).await;
        let lost = m.ring_lost();
        if lost > lost_seen {
            let _ = m.tx.send(Arc::new(Line::Lost {
                count: lost - lost_seen,
                cause: "ring".into(),
            }));
            lost_seen = lost;
        }
        for ev in &raw {
            // No receiver only means the last client left since the event was emitted.
            let _ =
                m.tx.send(Arc::new(Line::Drop(Box::new(describe(ev, &names)))));
        }
    }
}
