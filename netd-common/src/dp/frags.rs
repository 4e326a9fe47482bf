//! Fragments: the ports of fragmented IPv4 datagrams, recorded from their first fragment.

use bytemuck::{Pod, Zeroable};

/// `LruHashMap<FragKey, FragPorts>`: the ports of fragmented datagrams, recorded from their
/// first fragment so later fragments (which carry no L4 header) find their flow.
pub const MAP_FRAGS: &str = "NETD_FRAGS";
pub const FRAGS_MAX: u32 = 8192;

/// A fragmented IPv4 datagram as its fragments arrive at one hook (before translation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FragKey {
    /// Network byte order.
    pub saddr: u32,
    pub daddr: u32,
    /// The IPv4 identification field, network byte order.
    pub id: u16,
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<FragKey>() == 12);

/// The L4 ports of a fragmented datagram (its first fragment's), network byte order; the echo
/// id in both for ICMP echo.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FragPorts {
    pub sport: u16,
    pub dport: u16,
}
const _: () = assert!(core::mem::size_of::<FragPorts>() == 4);
