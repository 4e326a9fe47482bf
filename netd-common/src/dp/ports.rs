//! Published ports: a hash keyed by (proto, family, host address, host port), ranges expanded
//! into one entry per port. A change writes and deletes only the ports it changes, a lookup is
//! one or two hash probes (exact address, then the wildcard), and there is no whole-table flip.
//! Ranges are expanded rather than kept in a side list: 65 535 entries of 44 bytes are cheap,
//! while a range list needs a search the programs (and their verifier budget) pay for on every
//! new flow.

use bytemuck::{Pod, Zeroable};

use super::{AF_INET, AF_INET6};

/// `HashMap<PortKey, PortTarget>` (`PORTS_MAX` entries): published host ports, one entry per
/// port (ranges expanded), plus the bind hook's [`PORT_FAMILY_ANY`] markers.
pub const MAP_PORTS: &str = "NETD_PORTS";
/// `PerCpuHashMap<u32 binding_id, Traffic>`: packets/bytes per published-port binding.
pub const MAP_PORT_STATS: &str = "NETD_PORT_STATS";

/// NETD_PORTS entries: every TCP and UDP port of one address (2 x 65 535), or their markers
/// for the bind hook, with room to spare.
pub const PORTS_MAX: u32 = 262_144;
pub const PORT_STATS_MAX: u32 = 131_072;

/// The binding accepts traffic only from the host itself (host_ip is a loopback address).
pub const PORT_F_LOOPBACK: u8 = 1 << 0;
/// The container's runtime holds the host port itself (`reserve_ports: false`, e.g. podman's
/// conmon): the bind hook lets host sockets bind it.
pub const PORT_F_NO_RESERVE: u8 = 1 << 1;

/// [`PortKey::family`] of the per-port marker the writer keeps for the bind hook: "some
/// reserving binding holds this (proto, port) on some address" (addr is zero). A bind to the
/// wildcard address conflicts with every address's bindings; the TC programs never look these
/// up (they ask for `AF_INET`).
pub const PORT_FAMILY_ANY: u8 = 0;

/// NETD_PORTS key. `addr` is network byte order, zero = the wildcard address; IPv4 sits in
/// word 0, words 1-3 are zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Pod, Zeroable)]
pub struct PortKey {
    pub addr: [u32; 4],
    /// Host port, host byte order.
    pub port: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub proto: u8,
    /// AF_INET, AF_INET6, or [`PORT_FAMILY_ANY`].
    pub family: u8,
}
const _: () = assert!(core::mem::size_of::<PortKey>() == 20);

impl PortKey {
    /// The key of an IPv4 binding; `addr_nbo` 0 = the wildcard.
    #[inline(always)]
    pub const fn v4(proto: u8, addr_nbo: u32, port: u16) -> Self {
        Self {
            addr: [addr_nbo, 0, 0, 0],
            port,
            proto,
            family: AF_INET,
        }
    }

    /// The bind hook's marker for (proto, port) on any address.
    #[inline(always)]
    pub const fn any(proto: u8, port: u16) -> Self {
        Self {
            addr: [0; 4],
            port,
            proto,
            family: PORT_FAMILY_ANY,
        }
    }
}

/// NETD_PORTS value: where one published host port goes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortTarget {
    /// The container's address, network byte order (IPv4 in word 0).
    pub container_ip: [u32; 4],
    /// Container port, host byte order.
    pub container_port: u16,
    /// `PORT_F_*`.
    pub flags: u8,
    pub _pad: u8,
    /// Key into NETD_PORT_STATS; stable for the binding's life.
    pub binding_id: u32,
}
const _: () = assert!(core::mem::size_of::<PortTarget>() == 24);

/// One published binding as the agent describes it: a range of host ports on one address
/// mapped 1:1 onto container ports. The map holds it expanded ([`PortEntry::expand`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct PortEntry {
    /// Bound host address, network byte order; 0 = every address of the host.
    pub host_ip: u32,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub proto: u8,
    /// `PORT_F_*`.
    pub flags: u8,
    pub _pad: u16,
    /// First and last host port of the range, host byte order.
    pub host_port_start: u16,
    pub host_port_end: u16,
    /// Container port that `host_port_start` maps to, host byte order; the range maps 1:1.
    pub container_port: u16,
    pub _pad2: u16,
    /// The container's address, network byte order.
    pub container_ip: u32,
    /// Key into NETD_PORT_STATS; stable for the binding's life.
    pub binding_id: u32,
    /// [`AF_INET6`]: an IPv6 binding, whose addresses are `host_ip6` and `container_ip6`
    /// (`host_ip`/`container_ip` unused); anything else: IPv4.
    pub family: u8,
    pub _pad3: [u8; 3],
    /// IPv6 host address (all zero: `[::]`, every IPv6 address of the host), network order.
    pub host_ip6: [u32; 4],
    /// The container's IPv6 address, network order.
    pub container_ip6: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<PortEntry>() == 60);

impl PortEntry {
    /// The host address as NETD_PORTS keys hold it (IPv4 in word 0).
    #[inline(always)]
    pub fn host_addr(&self) -> [u32; 4] {
        if self.family == AF_INET6 {
            self.host_ip6
        } else {
            [self.host_ip, 0, 0, 0]
        }
    }

    /// The container port for `host_port` (host order), if the range holds it.
    #[inline(always)]
    pub fn translate(&self, host_port: u16) -> Option<u16> {
        if host_port >= self.host_port_start && host_port <= self.host_port_end {
            Some(
                self.container_port
                    .wrapping_add(host_port - self.host_port_start),
            )
        } else {
            None
        }
    }

    /// The NETD_PORTS entry of `host_port`, which the range must hold.
    #[inline(always)]
    pub fn entry(&self, host_port: u16) -> (PortKey, PortTarget) {
        let v6 = self.family == AF_INET6;
        (
            if v6 {
                PortKey::v6(self.proto, self.host_ip6, host_port)
            } else {
                PortKey::v4(self.proto, self.host_ip, host_port)
            },
            PortTarget {
                container_ip: if v6 {
                    self.container_ip6
                } else {
                    [self.container_ip, 0, 0, 0]
                },
                container_port: self
                    .container_port
                    .wrapping_add(host_port.wrapping_sub(self.host_port_start)),
                flags: self.flags,
                _pad: 0,
                binding_id: self.binding_id,
            },
        )
    }

    /// Every NETD_PORTS entry of the range, one per host port.
    pub fn expand(&self) -> impl Iterator<Item = (PortKey, PortTarget)> + '_ {
        (self.host_port_start..=self.host_port_end).map(|p| self.entry(p))
    }

    /// Does this binding reserve its host ports from host sockets (the bind hook's business)?
    #[inline(always)]
    pub fn reserves(&self) -> bool {
        self.flags & PORT_F_NO_RESERVE == 0
    }
}

/// The published-port lookup shared by the eBPF programs and the agent's tests: the exact
/// address first, then the wildcard binding of the same (proto, port). `get` reads NETD_PORTS.
/// Returns the entry and whether it is the wildcard one.
#[inline(always)]
pub fn find_port(
    get: impl Fn(&PortKey) -> Option<PortTarget>,
    proto: u8,
    host_ip_nbo: u32,
    port: u16,
) -> Option<(PortTarget, bool)> {
    if let Some(t) = get(&PortKey::v4(proto, host_ip_nbo, port)) {
        return Some((t, host_ip_nbo == 0));
    }
    if host_ip_nbo != 0 {
        return get(&PortKey::v4(proto, 0, port)).map(|t| (t, true));
    }
    None
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Traffic>() == 16);

impl Traffic {
    pub fn accumulate(&mut self, o: &Traffic) {
        self.packets += o.packets;
        self.bytes += o.bytes;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::dp::{IPPROTO_TCP, IPPROTO_UDP};

    fn entry(proto: u8, ip: [u8; 4], start: u16, end: u16, cport: u16) -> PortEntry {
        PortEntry {
            host_ip: u32::from_ne_bytes(ip),
            proto,
            host_port_start: start,
            host_port_end: end,
            container_port: cport,
            container_ip: u32::from_ne_bytes([172, 30, 0, 2]),
            binding_id: start as u32,
            ..Default::default()
        }
    }

    #[test]
    fn lookup_finds_expanded_ranges_exact_then_wildcard() {
        let mut v: Vec<PortEntry> = std::vec![
            entry(IPPROTO_TCP, [0, 0, 0, 0], 80, 80, 8080),
            entry(IPPROTO_TCP, [0, 0, 0, 0], 8000, 8999, 80),
            entry(IPPROTO_TCP, [127, 0, 0, 1], 9000, 9000, 90),
            entry(IPPROTO_UDP, [0, 0, 0, 0], 53, 53, 5353),
            // The specific address wins over the wildcard on the same port.
            entry(IPPROTO_TCP, [198, 51, 100, 1], 8100, 8100, 7),
        ];
        for i in 0..2000u16 {
            v.push(entry(
                IPPROTO_TCP,
                [198, 51, 100, 1],
                20000 + 2 * i,
                20000 + 2 * i,
                1,
            ));
        }
        let map: std::collections::HashMap<PortKey, PortTarget> =
            v.iter().flat_map(PortEntry::expand).collect();
        assert_eq!(map.len(), 1 + 1000 + 1 + 1 + 1 + 2000);
        let get = |k: &PortKey| map.get(k).copied();
        let host = u32::from_ne_bytes([198, 51, 100, 1]);
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let port = |ip, proto, p| find_port(get, proto, ip, p).map(|(t, w)| (t.container_port, w));
        assert_eq!(port(host, IPPROTO_TCP, 8500), Some((580, true)));
        assert_eq!(port(host, IPPROTO_TCP, 80), Some((8080, true)));
        assert_eq!(port(host, IPPROTO_TCP, 8100), Some((7, false)));
        assert_eq!(port(lo, IPPROTO_TCP, 8100), Some((180, true)));
        assert_eq!(
            port(host, IPPROTO_TCP, 9000),
            None,
            "bound to 127.0.0.1 only"
        );
        assert_eq!(port(lo, IPPROTO_TCP, 9000), Some((90, false)));
        assert_eq!(port(host, IPPROTO_UDP, 80), None);
        assert_eq!(port(host, IPPROTO_UDP, 53), Some((5353, true)));
        assert_eq!(port(host, IPPROTO_TCP, 20001), None);
        assert_eq!(port(host, IPPROTO_TCP, 23998), Some((1, false)));
        assert_eq!(port(0, IPPROTO_TCP, 80), Some((8080, true)));
        assert_eq!(port(0, IPPROTO_TCP, 9000), None);
        let t = map[&PortKey::v4(IPPROTO_TCP, 0, 8999)];
        assert_eq!((t.container_ip[0], t.binding_id), (v[1].container_ip, 8000));
    }
}
