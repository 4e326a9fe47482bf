//! The NAT/policy dataplane's maps: configuration, endpoints, host addresses, published port
//! ranges, connection tracking, link allowances, source filters and drop reasons.
//!
//! Byte order: every address field is **network byte order** (as it sits in the packet); every
//! port in [`CtKey`]/[`CtEntry`] is network byte order too; port *ranges* used for comparisons
//! ([`PortEntry`], [`PortPair`]) are **host byte order**. Addresses are `[u32; 4]` in the
//! connection-tracking types so IPv6 is an addition: IPv4 sits in word 0, words 1-3 are zero.
//!
//! One module per concern, each with its maps' names (pinned at `<pin_dir>/maps/<NAME>`), sizes,
//! `#[repr(C)]` types and the logic both sides share; everything is re-exported here (and from the
//! crate root).

mod config;
mod ct;
mod drops;
mod endpoints;
mod filters;
mod frags;
mod links;
mod ports;

pub use config::*;
pub use ct::*;
pub use drops::*;
pub use endpoints::*;
pub use filters::*;
pub use frags::*;
pub use links::*;
pub use ports::*;

// Address families and IP protocols, as the packets and the types above hold them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

// ---------------------------------------------------------------------------------------------
// aya::Pod for user space.

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY (all): repr(C), derive(bytemuck::Pod): no padding, every bit pattern valid.
    unsafe impl aya::Pod for DpConfig {}
    unsafe impl aya::Pod for EndpointInfo {}
    unsafe impl aya::Pod for NetConfig {}
    unsafe impl aya::Pod for UplinkInfo {}
    unsafe impl aya::Pod for PortEntry {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for PortTarget {}
    unsafe impl aya::Pod for Traffic {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtEntry {}
    unsafe impl aya::Pod for crate::layouts::CtEntryV1 {}
    unsafe impl aya::Pod for CtRingSlot {}
    unsafe impl aya::Pod for CtRingPos {}
    unsafe impl aya::Pod for CtSrc {}
    unsafe impl aya::Pod for LinkKey {}
    unsafe impl aya::Pod for LinkPorts {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for FragPorts {}
}
