//! What a monitor client sees: one [`Line`] per NDJSON line, the drop's 5-tuple read from the
//! packet's first bytes, the filter a client asks for, and the human format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netd_common::{DROP_REASONS, DropEvent, HOOK_TC_EGRESS, HOOK_TC_INGRESS, HOOK_XDP};
use serde::{Deserialize, Serialize};

/// One line of `GET /v1/monitor`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    /// First line: the subscription is live (the datapath emits from now on).
    Start { filter: Filter },
    /// A dropped packet.
    Drop(Box<Drop>),
    /// A conntrack flow was created, closed (FIN/RST) or expired (the idle collector).
    Flow(Box<Flow>),
    /// A new flow a policy rule let through (`--link`, a published port, a filter allow list).
    Verdict(Box<Verdict>),
    /// Events this client did not get: the ring buffer was full (`ring`) or the client read
    /// too slowly (`slow_client`).
    Lost { count: u64, cause: String },
}

/// A dropped packet, with what the daemon knows of its interface and addresses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    /// Unix time of the drop, nanoseconds.
    pub time_ns: u64,
    /// The drop reason's name (`netd stats`'s names) and number.
    pub reason: String,
    pub reason_code: u32,
    /// The program that dropped it (`netd_common::PROG_*`).
    pub program: String,
    pub ifindex: u32,
    pub ifname: Option<String>,
    /// The container of the interface (its host-side veth), else of the packet's destination,
    /// else of its source.
    pub container: Option<String>,
    /// The container at the other end, if any.
    pub peer: Option<String>,
    #[serde(flatten)]
    pub tuple: Tuple,
    /// The packet's length.
    pub len: u32,
    /// The packet's first bytes (up to 128, from the Ethernet header), hex.
    pub head: String,
}

/// A conntrack flow: its original-direction tuple and, when translated, what it becomes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// Unix time of the event, nanoseconds.
    pub time_ns: u64,
    /// `new`, `closed` or `expired`.
    pub event: String,
    /// For `closed`: `fin` (FINs both ways) or `rst`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What the flow is: `masquerade`, `published`, `hairpin`, `link` or `tracked`.
    pub flow: String,
    /// The container that opened it (source), else the one it reaches.
    pub container: Option<String>,
    pub peer: Option<String>,
    #[serde(flatten)]
    pub tuple: Tuple,
    /// The tuple after translation, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<Tuple>,
}

/// A policy verdict: which rule let a new flow through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub time_ns: u64,
    /// `allow` (denials are drops: `icc-denied`, `source-denied`, ...).
    pub verdict: String,
    /// `link` (`--link` with `--icc false`), `published` (a published port), `filter-allow`
    /// (an entry of `netd filter allow`).
    pub rule: String,
    /// The rule itself, e.g. `web -> db 80/tcp`, `0.0.0.0:8080/tcp -> web:80`, `203.0.113.0/24`.
    pub detail: String,
    pub container: Option<String>,
    pub peer: Option<String>,
    #[serde(flatten)]
    pub tuple: Tuple,
}

/// What the packet's head tells: L3 protocol and addresses, L4 protocol and ports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tuple {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `arp`, `ipv4/<n>`, `ipv6/<n>` or `ethertype/0x....`.
    pub proto: String,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// Reads the 5-tuple from an Ethernet frame's first bytes (VLAN tags skipped, IPv4 with its
/// IHL); what the bytes do not reach stays empty.
pub fn tuple(head: &[u8]) -> Tuple {
    let mut t = Tuple::default();
    let mut off = 12;
    let mut ethertype = match be16(head, off) {
        Some(e) => e,
        None => {
            t.proto = "truncated".into();
            return t;
        }
    };
    // 802.1Q / 802.1ad tags.
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        off += 4;
        match be16(head, off) {
            Some(e) => ethertype = e,
            None => {
                t.proto = "vlan".into();
                return t;
            }
        }
    }
    let l3 = off + 2;
    let (proto, l4) = match ethertype {
        0x0800 => {
            let Some(ip) = head.get(l3..l3 + 20) else {
                t.proto = "ipv4".into();
                return t;
            };
            t.src = Some(IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])));
            t.dst = Some(IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])));
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // A later fragment carries no L4 header.
            let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            (ip[9], (frag_off == 0).then_some(l3 + ihl))
        }
        0x86dd => {
            let Some(ip) = head.get(l3..l3 + 40) else {
                t.proto = "ipv6".into();
                return t;
            };
            let a = |o: usize| {
                let b: [u8; 16] = ip[o..o + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(b))
            };
            t.src = Some(a(8));
            t.dst = Some(a(24));
            (ip[6], Some(l3 + 40))
        }
        0x0806 => {
            t.proto = "arp".into();
            // Sender and target protocol addresses of an IPv4 ARP.
            if let Some(a) = head.get(l3..l3 + 28) {
                t.src = Some(IpAddr::V4(Ipv4Addr::new(a[14], a[15], a[16], a[17])));
                t.dst = Some(IpAddr::V4(Ipv4Addr::new(a[24], a[25], a[26], a[27])));
            }
            return t;
        }
        e => {
            t.proto = format!("ethertype/0x{e:04x}");
            return t;
        }
    };
    let v6 = ethertype == 0x86dd;
    t.proto = match proto {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 if !v6 => "icmp".into(),
        58 if v6 => "icmpv6".into(),
        n if v6 => format!("ipv6/{n}"),
        n => format!("ipv4/{n}"),
    };
    if let Some(l4) = l4 {
        if proto == 6 || proto == 17 {
            t.sport = be16(head, l4);
            t.dport = be16(head, l4 + 2);
        }
    }
    t
}

/// The tuple of a conntrack key (addresses and ports in network byte order, IPv4 in the first
/// word; `family` AF_INET or AF_INET6).
pub fn key_tuple(
    saddr: [u32; 4],
    daddr: [u32; 4],
    sport: u16,
    dport: u16,
    proto: u8,
    family: u8,
) -> Tuple {
    let v6 = family == netd_common::AF_INET6;
    let addr = |a: [u32; 4]| -> IpAddr {
        if v6 {
            let mut b = [0u8; 16];
            for (i, w) in a.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        } else {
            IpAddr::V4(Ipv4Addr::from(a[0].to_ne_bytes()))
        }
    };
    let ports = proto == 6 || proto == 17;
    Tuple {
        proto: match proto {
            6 => "tcp".into(),
            17 => "udp".into(),
            1 if !v6 => "icmp".into(),
            58 if v6 => "icmpv6".into(),
            n if v6 => format!("ipv6/{n}"),
            n => format!("ipv4/{n}"),
        },
        src: Some(addr(saddr)),
        dst: Some(addr(daddr)),
        sport: ports.then(|| u16::from_be(sport)),
        dport: ports.then(|| u16::from_be(dport)),
    }
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The program behind an event: the hook, and whether the interface is a container's veth
/// (else an uplink).
pub fn program(hook: u16, container_veth: bool) -> &'static str {
    match (hook, container_veth) {
        (HOOK_TC_INGRESS, true) => netd_common::PROG_FROM_CONTAINER,
        (HOOK_TC_EGRESS, true) => netd_common::PROG_TO_CONTAINER,
        (HOOK_TC_INGRESS, false) => netd_common::PROG_FROM_UPLINK,
        (HOOK_TC_EGRESS, false) => netd_common::PROG_TO_UPLINK,
        (HOOK_XDP, _) => netd_common::PROG_XDP_PREFILTER,
        _ => "unknown",
    }
}

/// Hex of the event's valid head bytes.
pub fn head_hex(ev: &DropEvent) -> String {
    let n = (ev.cap_len as usize).min(ev.head.len());
    ev.head[..n].iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes back from [`Drop::head`].
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Event types a client can ask for (`--type`); without any, drops only.
pub const TYPES: &[&str] = &["drop", "flow", "verdict"];

/// An event type of [`TYPES`].
pub fn parse_type(s: &str) -> Result<String, String> {
    if TYPES.contains(&s) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "unknown event type {s:?}: use one of {}",
            TYPES.join(", ")
        ))
    }
}

/// What a client wants to see; empty fields match everything (but `types`: drops only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Event types ([`TYPES`]), any of; empty: `drop`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Drop reasons (numbers), any of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<u32>,
    /// The drop's container or peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Source or destination port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A drop reason by name (`netd stats`'s names, from the one table in netd-common) or number.
pub fn parse_reason(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        if n > 0 && n < DROP_REASONS {
            return Ok(n);
        }
    }
    let names = || (1..DROP_REASONS).filter(|&r| netd_common::drop_reason_name(r) != "unknown");
    names()
        .find(|&r| netd_common::drop_reason_name(r) == s)
        .ok_or_else(|| {
            let all: Vec<&str> = names().map(netd_common::drop_reason_name).collect();
            format!("unknown drop reason {s:?}: use one of {}", all.join(", "))
        })
}

impl Filter {
    /// From the query string of `GET /v1/monitor?reason=a,b&container=NAME&port=N`.
    pub fn from_query(
        types: Option<&str>,
        reason: Option<&str>,
        container: Option<&str>,
        port: Option<&str>,
    ) -> Result<Self, String> {
        let types = match types {
            Some(t) => t
                .split(',')
                .filter(|s| !s.is_empty())
                .flat_map(|s| match s {
                    "all" => TYPES.iter().map(|t| Ok((*t).to_owned())).collect(),
                    s => vec![parse_type(s)],
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let reasons = match reason {
            Some(r) => r
                .split(',')
                .filter(|s| !s.is_empty())
                .map(parse_reason)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let port = port
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| format!("invalid port {p:?}: expected 0-65535"))
            })
            .transpose()?;
        Ok(Self {
            types,
            reasons,
            container: container.map(str::to_owned),
            port,
        })
    }

    /// The query string that asks for this filter (empty, or starting with `?`).
    pub fn to_query(&self) -> String {
        let mut q = Vec::new();
        if !self.types.is_empty() {
            q.push(format!("type={}", self.types.join(",")));
        }
        if !self.reasons.is_empty() {
            let r: Vec<String> = self.reasons.iter().map(u32::to_string).collect();
            q.push(format!("reason={}", r.join(",")));
        }
        if let Some(c) = &self.container {
            q.push(format!("container={c}"));
        }
        if let Some(p) = self.port {
            q.push(format!("port={p}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }

    /// Does this client get line `l`? Start and lost lines always go out.
    pub fn wants(&self, l: &Line) -> bool {
        let typed = |t: &str| {
            if self.types.is_empty() {
                t == "drop"
            } else {
                self.types.iter().any(|x| x == t)
            }
        };
        let who = |c: &Option<String>, p: &Option<String>| {
            self.container
                .as_ref()
                .is_none_or(|w| c.as_ref() == Some(w) || p.as_ref() == Some(w))
        };
        let port = |t: &Tuple, nat: Option<&Tuple>| {
            self.port.is_none_or(|p| {
                [Some(t), nat]
                    .into_iter()
                    .flatten()
                    .any(|t| t.sport == Some(p) || t.dport == Some(p))
            })
        };
        match l {
            Line::Start { .. } | Line::Lost { .. } => true,
            Line::Drop(d) => typed("drop") && self.matches(d),
            // Reasons are drop reasons: a client that asks for some wants only those drops.
            Line::Flow(f) => {
                typed("flow")
                    && self.reasons.is_empty()
                    && who(&f.container, &f.peer)
                    && port(&f.tuple, f.nat.as_ref())
            }
            Line::Verdict(v) => {
                typed("verdict")
                    && self.reasons.is_empty()
                    && who(&v.container, &v.peer)
                    && port(&v.tuple, None)
            }
        }
    }

    pub fn matches(&self, d: &Drop) -> bool {
        (self.reasons.is_empty() || self.reasons.contains(&d.reason_code))
            && self
                .container
                .as_ref()
                .is_none_or(|c| d.container.as_ref() == Some(c) || d.peer.as_ref() == Some(c))
            && self
                .port
                .is_none_or(|p| d.tuple.sport == Some(p) || d.tuple.dport == Some(p))
    }
}

/// `HH:MM:SS.uuuuuu` (UTC) of a Unix time in nanoseconds.
fn clock(time_ns: u64) -> String {
    let s = time_ns / 1_000_000_000;
    let us = (time_ns % 1_000_000_000) / 1000;
    let day = s % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{us:06}",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// ` (web -> db)`, ` (web)` or nothing.
fn who(container: &Option<String>, peer: &Option<String>) -> String {
    match (container, peer) {
        (Some(c), Some(p)) => format!(" ({c} -> {p})"),
        (Some(c), None) => format!(" ({c})"),
        _ => String::new(),
    }
}

fn endpoint(ip: Option<IpAddr>, port: Option<u16>) -> String {
    match (ip, port) {
        (Some(IpAddr::V6(a)), Some(p)) => format!("[{a}]:{p}"),
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.to_string(),
        (None, _) => "?".into(),
    }
}

/// One human line, as `cilium monitor` prints drops:
/// `12:00:01.123456 drop icc-denied from_container veth1a2b (web -> db) tcp 172.17.0.2:40000 -> 172.17.0.3:80 len 74`.
pub fn format_line(l: &Line) -> String {
    match l {
        Line::Start { .. } => "listening for datapath events (Ctrl-C to stop)".into(),
        Line::Lost { count, cause } => format!("lost {count} events ({cause})"),
        Line::Flow(f) => {
            let nat = match &f.nat {
                Some(n) => format!(
                    " as {} -> {}",
                    endpoint(n.src, n.sport),
                    endpoint(n.dst, n.dport)
                ),
                None => String::new(),
            };
            let cause = f
                .cause
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            format!(
                "{} flow {}{cause} {}{} {} {} -> {}{nat}",
                clock(f.time_ns),
                f.event,
                f.flow,
                who(&f.container, &f.peer),
                f.tuple.proto,
                endpoint(f.tuple.src, f.tuple.sport),
                endpoint(f.tuple.dst, f.tuple.dport),
            )
        }
        Line::Verdict(v) => format!(
            "{} verdict {} {} [{}]{} {} {} -> {}",
            clock(v.time_ns),
            v.verdict,
            v.rule,
            v.detail,
            who(&v.container, &v.peer),
            v.tuple.proto,
            endpoint(v.tuple.src, v.tuple.sport),
            endpoint(v.tuple.dst, v.tuple.dport),
        ),
        Line::Drop(d) => {
            let who = who(&d.container, &d.peer);
            format!(
                "{} drop {} {} {}{who} {} {} -> {} len {}",
                clock(d.time_ns),
                d.reason,
                d.program,
                d.ifname.as_deref().unwrap_or("?"),
                d.tuple.proto,
                endpoint(d.tuple.src, d.tuple.sport),
                endpoint(d.tuple.dst, d.tuple.dport),
                d.len
            )
        }
    }
}

#[cfg(test)]
mod tests;
