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

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aya::maps::{Array, Map, MapData, PerCpuArray, RingBuf};
use ipnet::Ipv4Net;
use netd_common::{
    CT_F_HAIRPIN, CT_F_LINK, CT_F_MASQ, CT_F_PUBLISHED, CT_F_REPLY, CtEntry, CtKey, DropEvent,
    EV_DROP, EV_FLOW_CLOSED, EV_FLOW_NEW, FLOW_CLOSE_RST, FlowEvent, MAP_EVENTS, MAP_MONITOR,
    MAP_MONITOR_LOST,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, mpsc};

use crate::frontend::http::server::Shared;
use event::{Drop as DropLine, Flow, Line, Verdict};

/// [`FlowEvent::kind`] of a flow the idle collector removed (user space only).
const EV_FLOW_EXPIRED: u16 = 0x100;

/// Flows the conntrack collector removed, for the ring reader (set by [`Monitor::start`]);
/// [`CLIENTS`] tells the collector whether anybody listens.
static EXPIRED: OnceLock<mpsc::UnboundedSender<FlowEvent>> = OnceLock::new();
static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// The conntrack collector removed entry `e` (keyed `k`) as idle: a `flow expired` event for
/// its original direction, if a monitor client listens.
pub fn flow_expired(k: &CtKey, e: &CtEntry) {
    if CLIENTS.load(Ordering::Relaxed) == 0 || e.flags & CT_F_REPLY != 0 {
        return;
    }
    let Some(tx) = EXPIRED.get() else { return };
    let _ = tx.send(FlowEvent {
        kind: EV_FLOW_EXPIRED,
        flags: e.flags,
        cause: 0,
        binding_id: e.binding_id,
        ifindex: e.ifindex,
        ktime_ns: monotonic_ns(),
        created_ns: e.created_ns,
        key: *k,
        nat_saddr: e.nat_saddr,
        nat_daddr: e.nat_daddr,
        nat_sport: e.nat_sport,
        nat_dport: e.nat_dport,
        _pad: 0,
    });
}

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
        let (etx, erx) = mpsc::unbounded_channel();
        // One daemon, one monitor: a second start (tests) keeps the first sender.
        let _ = EXPIRED.set(etx);
        tokio::spawn(read_ring(ring, m.clone(), engine, erx));
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
        CLIENTS.fetch_add(1, Ordering::Relaxed);
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
        CLIENTS.fetch_sub(1, Ordering::Relaxed);
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
    /// Published ports: (proto, host port) -> (host ip, container port).
    port_rule: HashMap<(String, u16), (String, u16)>,
    allow: Vec<Ipv4Net>,
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
        let (list, filters) = {
            let eng = engine.lock().await;
            (eng.list(), eng.filters())
        };
        self.by_ifname.clear();
        self.by_ip.clear();
        self.by_port.clear();
        self.port_rule.clear();
        self.allow = filters.allow;
        for e in list {
            for p in &e.ports {
                self.by_port
                    .insert((p.proto.clone(), p.host_port), e.name.clone());
                self.port_rule.insert(
                    (p.proto.clone(), p.host_port),
                    (p.host_ip.clone(), p.container_port),
                );
            }
            for a in [&e.global_ipv6, &e.link_local_ipv6].into_iter().flatten() {
                if let Ok(ip) = a.parse() {
                    self.by_ip.insert(ip, e.name.clone());
                }
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

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One event of the ring, told apart by its first two bytes (`kind`).
enum Raw {
    Drop(Box<DropEvent>),
    Flow(FlowEvent),
}

fn parse_raw(item: &[u8]) -> Option<Raw> {
    let kind = u16::from_ne_bytes([*item.first()?, *item.get(1)?]);
    match kind {
        EV_DROP if item.len() >= size_of::<DropEvent>() => Some(Raw::Drop(Box::new(
            bytemuck::pod_read_unaligned(&item[..size_of::<DropEvent>()]),
        ))),
        EV_FLOW_NEW | EV_FLOW_CLOSED if item.len() >= size_of::<FlowEvent>() => Some(Raw::Flow(
            bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]),
        )),
        _ => None,
    }
}

/// A flow event as a [`Flow`] line, and the [`Verdict`] that let a new flow in, if a rule did.
fn describe_flow(ev: &FlowEvent, names: &Names) -> (Flow, Option<Verdict>) {
    let k = &ev.key;
    let tuple = event::key_tuple(k.saddr, k.daddr, k.sport, k.dport, k.proto, k.family);
    let nat = event::key_tuple(
        ev.nat_saddr,
        ev.nat_daddr,
        ev.nat_sport,
        ev.nat_dport,
        k.proto,
        k.family,
    );
    let owner = |ip: Option<IpAddr>| ip.and_then(|i| names.by_ip.get(&i)).cloned();
    let published = || {
        let port = tuple.dport?;
        names.by_port.get(&(tuple.proto.clone(), port)).cloned()
    };
    let (src, dst) = (owner(tuple.src), owner(nat.dst).or_else(published));
    let (container, peer) = match (src, dst) {
        (Some(s), d) => (Some(s), d),
        (None, d) => (d, None),
    };
    let f = ev.flags;
    let kind = if f & CT_F_LINK != 0 {
        "link"
    } else if f & CT_F_HAIRPIN != 0 {
        "hairpin"
    } else if f & CT_F_PUBLISHED != 0 {
        "published"
    } else if f & CT_F_MASQ != 0 {
        "masquerade"
    } else {
        "tracked"
    };
    let time_ns = ev.ktime_ns + realtime_offset();
    let (event, cause) = match ev.kind {
        EV_FLOW_NEW => ("new", None),
        EV_FLOW_CLOSED if ev.cause == FLOW_CLOSE_RST => ("closed", Some("rst".to_owned())),
        EV_FLOW_CLOSED => ("closed", Some("fin".to_owned())),
        _ => ("expired", None),
    };
    let verdict = (ev.kind == EV_FLOW_NEW)
        .then(|| verdict_of(kind, &tuple, &nat, &container, &peer, names))
        .flatten()
        .map(|(rule, detail)| Verdict {
            time_ns,
            verdict: "allow".into(),
            rule: rule.into(),
            detail,
            container: container.clone(),
            peer: peer.clone(),
            tuple: tuple.clone(),
        });
    let flow = Flow {
        time_ns,
        event: event.into(),
        cause,
        flow: kind.into(),
        container,
        peer,
        nat: (nat != tuple).then_some(nat),
        tuple,
    };
    (flow, verdict)
}

/// Which rule let a new flow of kind `kind` in: a `--link` (icc off), a published port (with
/// the filter allow list entry its source matched, when there is a list), or none.
fn verdict_of(
    kind: &str,
    t: &event::Tuple,
    nat: &event::Tuple,
    container: &Option<String>,
    peer: &Option<String>,
    names: &Names,
) -> Option<(&'static str, String)> {
    let port = format!("{}/{}", t.dport.unwrap_or(0), t.proto);
    match kind {
        "link" => Some((
            "link",
            format!(
                "{} -> {} {port}",
                container.as_deref().unwrap_or("?"),
                peer.as_deref().unwrap_or("?")
            ),
        )),
        "published" => {
            // From outside: the XDP allow list let it through first, if there is one.
            if let Some(IpAddr::V4(src)) = t.src {
                if let Some(n) = names
                    .allow
                    .iter()
                    .filter(|n| n.contains(&src))
                    .max_by_key(|n| n.prefix_len())
                {
                    return Some(("filter-allow", n.to_string()));
                }
            }
            let (host_ip, cport) = names
                .port_rule
                .get(&(t.proto.clone(), t.dport?))
                .cloned()
                .unwrap_or_else(|| ("?".into(), nat.dport.unwrap_or(0)));
            Some((
                "published",
                format!(
                    "{host_ip}:{port} -> {}:{cport}",
                    peer.as_deref().or(container.as_deref()).unwrap_or("?")
                ),
            ))
        }
        _ => None,
    }
}

/// Flows already reported closed: the datapath reports a close again for a retransmitted FIN
/// or RST (and each program a packet crosses may see it); a flow is its tuple and creation time.
#[derive(Default)]
struct Closed {
    seen: std::collections::HashSet<(CtKey, u64)>,
    order: std::collections::VecDeque<(CtKey, u64)>,
}

impl Closed {
    const KEEP: usize = 16384;

    /// True the first time flow `f` is reported closed.
    fn first(&mut self, f: &FlowEvent) -> bool {
        let id = (f.key, f.created_ns);
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

async fn read_ring(
    mut ring: AsyncFd<RingBuf<MapData>>,
    m: Arc<Monitor>,
    engine: Shared,
    mut expired: mpsc::UnboundedReceiver<FlowEvent>,
) {
    let mut names = Names::default();
    let mut lost_seen = m.ring_lost();
    let mut closed = Closed::default();
    loop {
        let mut raw = Vec::new();
        tokio::select! {
            g = ring.readable_mut() => {
                let mut guard = match g {
                    Ok(g) => g,
                    Err(e) => {
                        tracing::warn!("monitor: {}", MonitorError::Poll(e));
                        return;
                    }
                };
                let rb = guard.get_inner_mut();
                while let Some(item) = rb.next() {
                    raw.extend(parse_raw(&item));
                }
                guard.clear_ready();
            }
            Some(ev) = expired.recv() => raw.push(Raw::Flow(ev)),
        }
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
            match ev {
                Raw::Drop(d) => {
                    let _ =
                        m.tx.send(Arc::new(Line::Drop(Box::new(describe(d, &names)))));
                }
                Raw::Flow(f) => {
                    if f.kind == EV_FLOW_CLOSED && !closed.first(f) {
                        continue;
                    }
                    let (flow, verdict) = describe_flow(f, &names);
                    if let Some(v) = verdict {
                        let _ = m.tx.send(Arc::new(Line::Verdict(Box::new(v))));
                    }
                    let _ = m.tx.send(Arc::new(Line::Flow(Box::new(flow))));
                }
            }
        }
    }
}
