//! Connection tracking seen from user space: listing (`netd ct`), flushing a detached
//! container's flows, and garbage-collecting idle entries.

use std::net::Ipv4Addr;

use aya::maps::{HashMap as BpfHashMap, MapData};
use netd_common::{
    CT_F_DNAT, CT_F_LINK, CT_F_MASQ, CT_F_PUBLISHED, CT_F_REPLY, CT_F_SNAT, CtEntry, CtKey, CtSrc,
    MAP_CT, MAP_CT_SRC,
};
use serde::Serialize;

use super::{Dataplane, DataplaneError};

/// One direction of a tracked flow, for `netd ct`.
#[derive(Debug, Clone, Serialize)]
pub struct CtFlow {
    pub proto: &'static str,
    pub src: String,
    pub dst: String,
    /// What the packet becomes after translation (same as src/dst when untranslated).
    pub nat_src: String,
    pub nat_dst: String,
    pub direction: &'static str,
    pub kind: Vec<&'static str>,
    pub tcp_state: u8,
    pub packets: u64,
    pub bytes: u64,
    pub idle_s: u64,
}

/// An outside source holding flows of its `--ct-per-source-max` budget, for `netd stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtSourceCount {
    pub addr: std::net::IpAddr,
    /// Unanswered flows counted in its current window.
    pub flows: u64,
}

/// Filters for `netd ct`.
#[derive(Debug, Clone, Default)]
pub struct CtQuery {
    pub ip: Option<Ipv4Addr>,
    pub proto: Option<u8>,
    pub port: Option<u16>,
}

fn v4(w: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(w))
}

/// A NETD_CT_SRC key: IPv4 in word 0 (the rest zero), else IPv6.
fn source_addr(a: &[u32; 4]) -> std::net::IpAddr {
    if a[1..] == [0, 0, 0] {
        v4(a[0]).into()
    } else {
        let mut b = [0u8; 16];
        for (i, w) in a.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(b).into()
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        _ => "other",
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() reads.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into ts.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl CtQuery {
    fn matches(&self, k: &CtKey, e: &CtEntry) -> bool {
        let ips = [k.saddr[0], k.daddr[0], e.nat_saddr[0], e.nat_daddr[0]];
        let ports = [k.sport, k.dport, e.nat_sport, e.nat_dport];
        self.ip
            .is_none_or(|ip| ips.contains(&u32::from(ip).to_be()))
            && self.proto.is_none_or(|p| p == k.proto)
            && self.port.is_none_or(|p| ports.contains(&p.to_be()))
    }
}

impl Dataplane {
    fn ct(&self) -> Result<BpfHashMap<&MapData, CtKey, CtEntry>, DataplaneError> {
        let m = self
            .maps
            .get(MAP_CT)
            .ok_or(DataplaneError::MapNotFound { map: MAP_CT })?;
        BpfHashMap::try_from(m).map_err(|source| DataplaneError::Map {
            map: MAP_CT,
            source,
        })
    }

    fn ct_mut(&mut self) -> Result<BpfHashMap<&mut MapData, CtKey, CtEntry>, DataplaneError> {
        let m = self
            .maps
            .get_mut(MAP_CT)
            .ok_or(DataplaneError::MapNotFound { map: MAP_CT })?;
        BpfHashMap::try_from(m).map_err(|source| DataplaneError::Map {
            map: MAP_CT,
            source,
        })
    }

    /// The sources holding flows of their budget in their current window (NETD_CT_SRC; a
    /// window that is over counts nothing), most flows first, at most `limit`.
    pub fn ct_sources(&self, limit: usize) -> Result<Vec<CtSourceCount>, DataplaneError> {
        let window = netd_common::ct_src_window_ns(&self.config()?);
        let now = monotonic_ns();
        let m: BpfHashMap<&MapData, [u32; 4], CtSrc> =
            BpfHashMap::try_from(self.map_ref(MAP_CT_SRC)?).map_err(|source| {
                DataplaneError::Map {
                    map: MAP_CT_SRC,
                    source,
                }
            })?;
        let mut out: Vec<CtSourceCount> = m
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, s)| s.count > 0 && now.saturating_sub(s.window_start_ns) < window)
            .map(|(a, s)| CtSourceCount {
                addr: source_addr(&a),
                flows: s.count as u64,
            })
            .collect();
        out.sort_by(|a, b| b.flows.cmp(&a.flows).then(a.addr.cmp(&b.addr)));
        out.truncate(limit);
        Ok(out)
    }

    /// Tracked flows matching `q` (IPv4).
    pub fn ct_flows(&self, q: &CtQuery) -> Result<Vec<CtFlow>, DataplaneError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in self.ct()?.iter() {
            let Ok((k, e)) = item else { continue };
            if !q.matches(&k, &e) {
                continue;
            }
            let mut kind = Vec::new();
            // An outbound container flow is a masquerade only when it is translated
            // (--ip-masq false tracks it untranslated).
            if e.flags & CT_F_MASQ != 0 {
                let translated = e.flags & (CT_F_SNAT | CT_F_DNAT) != 0;
                kind.push(if translated { "masquerade" } else { "outbound" });
            }
            for (f, n) in [
                (CT_F_PUBLISHED, "published"),
                (CT_F_LINK, "link"),
                (CT_F_DNAT, "dnat"),
                (CT_F_SNAT, "snat"),
            ] {
                if e.flags & f != 0 {
                    kind.push(n);
                }
            }
            out.push(CtFlow {
                proto: proto_name(k.proto),
                src: format!("{}:{}", v4(k.saddr[0]), u16::from_be(k.sport)),
                dst: format!("{}:{}", v4(k.daddr[0]), u16::from_be(k.dport)),
                nat_src: format!("{}:{}", v4(e.nat_saddr[0]), u16::from_be(e.nat_sport)),
                nat_dst: format!("{}:{}", v4(e.nat_daddr[0]), u16::from_be(e.nat_dport)),
                direction: if e.flags & CT_F_REPLY != 0 {
                    "reply"
                } else {
                    "original"
                },
                kind,
                tcp_state: e.tcp_state,
                packets: e.packets,
                bytes: e.bytes,
                idle_s: now.saturating_sub(e.last_seen_ns) / 1_000_000_000,
            });
        }
        out.sort_by(|a, b| (a.proto, &a.src, &a.dst).cmp(&(b.proto, &b.src, &b.dst)));
        Ok(out)
    }

    /// Removes every flow (both directions) that involves `ip`: a detached container's flows
    /// must not outlive it, or a new container with the same address would inherit them.
    pub fn ct_flush_ip(&mut self, ip: Ipv4Addr) -> Result<usize, DataplaneError> {
        let q = CtQuery {
            ip: Some(ip),
            ..Default::default()
        };
        self.ct_remove_where(|k, e| q.matches(k, e))
    }

    fn ct_remove_where(
        &mut self,
        pred: impl Fn(&CtKey, &CtEntry) -> bool,
    ) -> Result<usize, DataplaneError> {
        let doomed: Vec<(CtKey, CtKey)> = self
            .ct()?
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, e)| pred(k, e))
            .map(|(k, e)| (k, e.peer))
            .collect();
        let mut ct = self.ct_mut()?;
        let mut n = 0;
        for (k, peer) in doomed {
            if ct.remove(&k).is_ok() {
                n += 1;
            }
            let _ = ct.remove(&peer);
        }
        Ok(n)
    }
}

/// Garbage collection of idle conntrack entries, on its own handles to the pinned maps so it
/// runs beside the engine (a full table is hundreds of thousands of entries: walking it must
/// not hold up attach, detach or the API).
pub struct CtGc {
    ct: aya::maps::Map,
    config: aya::maps::Map,
}

impl CtGc {
    /// Opens the pinned NETD_CT and NETD_CONFIG under `pin_dir`.
    pub fn open(pin_dir: &std::path::Path) -> Result<Self, DataplaneError> {
        let open = |name: &'static str| {
            let path = super::pins::PinLayout::new(pin_dir).map(name);
            MapData::from_pin(&path)
                .and_then(aya::maps::Map::from_map_data)
                .map_err(|source| DataplaneError::Map { map: name, source })
        };
        Ok(Self {
            ct: open(MAP_CT)?,
            config: open(netd_common::MAP_CONFIG)?,
        })
    }

    fn config(&self) -> Result<netd_common::DpConfig, DataplaneError> {
        let cfg_map: aya::maps::Array<&MapData, netd_common::DpConfig> =
            aya::maps::Array::try_from(&self.config).map_err(|source| DataplaneError::Map {
                map: netd_common::MAP_CONFIG,
                source,
            })?;
        cfg_map.get(&0, 0).map_err(|source| DataplaneError::Map {
            map: netd_common::MAP_CONFIG,
            source,
        })
    }

    /// Removes expired flows in one pass ([`CtGc::scan`] then [`CtGc::sweep`]). Returns how
    /// many entries went.
    pub fn run(&mut self) -> Result<usize, DataplaneError> {
        let doomed = self.scan()?;
        self.sweep(&doomed)
    }

    /// The entries that looked expired in a walk of the table: each direction refreshes only
    /// its own entry, so an entry is a candidate only when its flow's other direction (its
    /// peer, when that points back) has expired too, or is gone.
    pub fn scan(&self) -> Result<Vec<CtKey>, DataplaneError> {
        let cfg = self.config()?;
        let now = monotonic_ns();
        let all: std::collections::HashMap<CtKey, CtEntry> = {
            let ct: BpfHashMap<&MapData, CtKey, CtEntry> =
                BpfHashMap::try_from(&self.ct).map_err(|source| DataplaneError::Map {
                    map: MAP_CT,
                    source,
                })?;
            ct.iter().filter_map(Result::ok).collect()
        };
        Ok(all
            .iter()
            .filter(|(k, e)| idle(k, e, all.get(&e.peer), &cfg, now))
            .map(|(k, _)| *k)
            .collect())
    }

    /// Removes the candidates of a [`CtGc::scan`] that are still idle. Walking a full table
    /// takes long, and meanwhile the datapath refreshes or recreates flows: each entry and its
    /// peer are read again right before the delete, and anything seen since stays. (The
    /// re-read and the delete are two system calls: a packet landing between them loses its
    /// entry, and the next one recreates the flow as unreplied; the window is microseconds,
    /// not the length of the walk.)
    pub fn sweep(&mut self, candidates: &[CtKey]) -> Result<usize, DataplaneError> {
        let cfg = self.config()?;
        let mut ct: BpfHashMap<&mut MapData, CtKey, CtEntry> =
            BpfHashMap::try_from(&mut self.ct).map_err(|source| DataplaneError::Map {
                map: MAP_CT,
                source,
            })?;
        let mut n = 0;
        for k in candidates {
            let now = monotonic_ns();
            let Ok(e) = ct.get(k, 0) else { continue };
            let peer = ct.get(&e.peer, 0).ok();
            if idle(k, &e, peer.as_ref(), &cfg, now) && ct.remove(k).is_ok() {
                crate::ops::monitor::flow_expired(k, &e);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Is the flow of entry `e` (keyed `k`, whose peer entry is `peer`) idle past its timeout in
/// both directions? A peer that does not point back belongs to another flow.
fn idle(
    k: &CtKey,
    e: &CtEntry,
    peer: Option<&CtEntry>,
    cfg: &netd_common::DpConfig,
    now: u64,
) -> bool {
    let expired = |e: &CtEntry| {
        let t = netd_common::ct_timeout_ns(e, k.proto, cfg);
        // A timeout of 0 means the entry never expires.
        t != 0 && now.saturating_sub(e.last_seen_ns) > t
    };
    expired(e) && peer.is_none_or(|p| p.peer != *k || expired(p))
}
