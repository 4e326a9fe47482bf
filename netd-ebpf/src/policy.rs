//! Container policy: anti-spoofing on a container's veth and inter-container communication
//! (`--icc false` with `--link` allowances).

use aya_ebpf::programs::TcContext;
use netd_common::{
    DROP_ICC_MAC, DROP_MALFORMED, DROP_NET_ISOLATED, DROP_SPOOFED_IP, DROP_SPOOFED_MAC, DpConfig,
    EndpointInfo, NET_F_ICC,
};

use crate::{maps, parse::ETH_HLEN};

/// The Ethernet source must be the endpoint's MAC.
#[inline(always)]
pub fn check_eth_src(ctx: &TcContext, ep: &EndpointInfo) -> Result<(), u32> {
    let src: [u8; 6] = ctx.load(6).map_err(|_| DROP_MALFORMED)?;
    if src != ep.mac {
        return Err(DROP_SPOOFED_MAC);
    }
    Ok(())
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ArpIpv4 {
    htype: u16,
    ptype: u16,
    hlen: u8,
    plen: u8,
    op: u16,
    sha: [u8; 6],
    spa: [u8; 4],
}

/// ARP from a container must announce its own MAC and address (probes from 0.0.0.0 included:
/// endpoints are configured statically, never by DHCP).
#[inline(always)]
pub fn check_arp(ctx: &TcContext, ep: &EndpointInfo) -> Result<(), u32> {
    let a: ArpIpv4 = ctx.load(ETH_HLEN).map_err(|_| DROP_MALFORMED)?;
    if u16::from_be(a.htype) != 1 || u16::from_be(a.ptype) != 0x0800 || a.hlen != 6 || a.plen != 4 {
        return Err(DROP_MALFORMED);
    }
    if a.sha != ep.mac {
        return Err(DROP_SPOOFED_MAC);
    }
    if u32::from_ne_bytes(a.spa) != ep.ip {
        return Err(DROP_SPOOFED_IP);
    }
    Ok(())
}

/// Is `--icc false` (`enable_icc=false`) in force on network `net`?
#[inline(always)]
pub fn icc_off(cfg: &DpConfig, net: u32) -> bool {
    maps::net_flags(cfg, net) & NET_F_ICC == 0
}

/// Does `--icc false` of the sender's network `net` decide traffic to `daddr`? Another
/// container of that network, not its gateway (containers always reach the host), and
/// anything that reaches every container at once: the limited broadcast and multicast (the
/// subnet's directed broadcast is in the subnet). A BPF-to-BPF call: its lookups stay out of
/// from_container's frame.
#[inline(never)]
pub fn icc_guarded(net: u32, daddr: u32) -> bool {
    let Some(cfg) = maps::config() else {
        return false;
    };
    icc_off(cfg, net)
        && (maps::net_id(cfg, daddr) == net && daddr != maps::net_gateway(cfg, net)
            || is_group(daddr))
}

/// Networks are isolated: a container of network `net` may not reach an address of another
/// network (its gateway is the host's: allowed). Returns 0 or the drop reason. The way across
/// is a published port on a host address (hairpin), decided before this.
#[inline(never)]
pub fn check_network(net: u32, daddr: u32) -> u32 {
    let Some(cfg) = maps::config() else {
        return 0;
    };
    let dst = maps::net_id(cfg, daddr);
    if dst == maps::NO_NET || dst == net || daddr == maps::net_gateway(cfg, dst) {
        return 0;
    }
    DROP_NET_ISOLATED
}

/// 255.255.255.255 or 224.0.0.0/4 (`a` in network byte order).
#[inline(always)]
fn is_group(a: u32) -> bool {
    let h = u32::from_be(a);
    h == u32::MAX || h >> 28 == 0xe
}

/// `--icc false`: the bridge delivers a frame by its destination MAC, whatever its IP
/// destination, so the MAC must agree with the address `icc_guarded` decides on: the
/// gateway's (routed traffic, the host), the container that owns `daddr`, or a group MAC for a
/// group address. Returns 0 or the drop reason (a BPF-to-BPF call: its locals stay out of
/// from_container's frame).
#[inline(never)]
pub fn check_eth_dst(ctx: &TcContext, net: u32, daddr: u32) -> u32 {
    let Some(cfg) = maps::config() else {
        return 0;
    };
    let bridge_mac = maps::net_bridge_mac(cfg, net);
    if !icc_off(cfg, net) || bridge_mac == [0; 6] {
        return 0;
    }
    let Ok(dst) = ctx.load::<[u8; 6]>(0) else {
        return DROP_MALFORMED;
    };
    if dst == bridge_mac {
        return 0;
    }
    if dst[0] & 1 != 0 {
        // A group address (the subnet's directed broadcast included): icc_guarded decides.
        let mask = maps::network(net).map_or(cfg.subnet_mask, |n| n.subnet_mask);
        let directed = maps::net_id(cfg, daddr) == net && daddr | mask == u32::MAX;
        return if is_group(daddr) || directed {
            0
        } else {
            DROP_ICC_MAC
        };
    }
    if maps::net_id(cfg, daddr) == net
        && let Some(ep) = maps::endpoint_by_ip(daddr)
        && ep.mac == dst
    {
        return 0;
    }
    DROP_ICC_MAC
}
