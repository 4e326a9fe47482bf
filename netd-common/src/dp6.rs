//! IPv6 policy maps: the endpoints' IPv6 addresses (by veth and by address) and the ports of
//! fragmented IPv6 datagrams. New maps beside the IPv4 ones, so the IPv4 maps keep their
//! layouts and pins: a pin set left by a netd without IPv6 simply lacks these, and the loader
//! creates them (nothing to migrate).
//!
//! Byte order: addresses are `[u32; 4]` holding the 16 address bytes as they sit in the packet
//! (network byte order, like [`crate::CtKey`]); ports are network byte order.

use bytemuck::{Pod, Zeroable};

/// `HashMap<u32 ifindex, Ep6Info>`: the IPv6 addresses of the endpoint on that host-side veth.
/// An endpoint without an entry has no IPv6 configured: see [`ep6_derived_link_local`].
pub const MAP_EP6: &str = "NETD_EP6";
/// `HashMap<[u32; 4] address, u32 ifindex>`: every endpoint IPv6 address (link-local and
/// global) → its host-side veth, for the destination side of `--icc false` and links.
pub const MAP_EP6_ADDRS: &str = "NETD_EP6_ADDRS";
/// `LruHashMap<Frag6Key, FragPorts>`: ports of fragmented IPv6 datagrams, from their first
/// fragment (IPv6's twin of [`crate::MAP_FRAGS`]).
pub const MAP_FRAGS6: &str = "NETD_FRAGS6";

/// `HashMap<[u32; 4] address, u32 ifindex>`: the host's own IPv6 addresses (IPv6's twin of
/// [`crate::MAP_HOST_ADDRS`]): a wildcard (`[::]`) published port takes only these, so traffic
/// the host routes elsewhere (to a container's global address, to another host) is never
/// translated.
pub const MAP_HOST_ADDRS6: &str = "NETD_HOST_ADDRS6";

/// Two addresses per endpoint.
pub const EP6_ADDRS_MAX: u32 = 2 * crate::ENDPOINTS_MAX;
pub const FRAGS6_MAX: u32 = 8192;

/// [`Ep6Info::global`] is set.
pub const EP6_F_GLOBAL: u32 = 1 << 0;

/// An endpoint's IPv6 addresses (NETD_EP6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Ep6Info {
    /// The link-local address (fe80::/10), network byte order.
    pub ll: [u32; 4],
    /// The global address, network byte order; valid with [`EP6_F_GLOBAL`].
    pub global: [u32; 4],
    /// `EP6_F_*`.
    pub flags: u32,
    /// The host-side veth (the map's key), for tools.
    pub ifindex: u32,
}
const _: () = assert!(core::mem::size_of::<Ep6Info>() == 40);

/// A fragmented IPv6 datagram as its fragments arrive at one hook.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct Frag6Key {
    /// Network byte order.
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
    /// The fragment header's identification, network byte order.
    pub id: u32,
    /// The upper-layer protocol (the fragment header's next header).
    pub proto: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<Frag6Key>() == 40);

impl crate::PortKey {
    /// The key of an IPv6 binding (`addr` as [`in6_words`] gives it; all zero = `[::]`).
    #[inline(always)]
    pub const fn v6(proto: u8, addr: [u32; 4], port: u16) -> Self {
        Self {
            addr,
            port,
            proto,
            family: crate::AF_INET6,
        }
    }
}

impl crate::CtKey {
    /// An IPv6 flow's tuple (addresses as [`in6_words`] gives them, ports network order).
    #[inline(always)]
    pub fn v6(saddr: [u32; 4], daddr: [u32; 4], sport: u16, dport: u16, proto: u8) -> Self {
        Self {
            saddr,
            daddr,
            sport,
            dport,
            proto,
            family: crate::AF_INET6,
            _pad: 0,
        }
    }
}

/// An address's 16 bytes as the maps hold them.
#[inline(always)]
pub fn in6_words(b: [u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// The link-local address an endpoint without IPv6 configuration derives from its MAC (modified
/// EUI-64, RFC 4291 appendix A: Linux's default `addr_gen_mode`): the only source such an
/// endpoint may use, and only for neighbour discovery and MLD.
#[inline(always)]
pub fn ep6_derived_link_local(mac: [u8; 6]) -> [u32; 4] {
    in6_words([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all): repr(C), derive(bytemuck::Pod): no padding, every bit pattern valid.
    unsafe impl aya::Pod for Ep6Info {}
    unsafe impl aya::Pod for Frag6Key {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eui64_link_local() {
        // 02:42:ac:1e:00:02 -> fe80::42:acff:fe1e:2 (the U/L bit flipped).
        let w = ep6_derived_link_local([0x02, 0x42, 0xac, 0x1e, 0, 0x02]);
        let want: [u8; 16] = [
            0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x42, 0xac, 0xff, 0xfe, 0x1e, 0, 0x02,
        ];
        assert_eq!(w, in6_words(want));
    }
}
