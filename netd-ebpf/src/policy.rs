//! Container policy: anti-spoofing on a container's veth and inter-container communication
//! (`--icc false` with `--link` allowances).

use aya_ebpf::programs::TcContext;
use netd_common::{
    CFG_F_ICC, DROP_ICC_MAC, DROP_MALFORMED, DROP_SPOOFED_IP, DROP_SPOOFED_MAC, DpConfig,
    EndpointInfo,
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

/// Is `--icc false` in force?
#[inline(always)]
pub fn icc_off(cfg: &DpConfig) -> bool {
    cfg.flags & CFG_F_ICC == 0
}

/// Does `--icc false` decide traffic to `daddr`? Another container on the bridge, not the
/// gateway (containers always reach the host), and anything that reaches every container at
/// once: the limited broadcast and multicast (the subnet's directed broadcast is in the subnet).
#[inline(always)]
pub fn icc_guarded(cfg: &DpConfig, daddr: u32) -> bool {
    icc_off(cfg) && (cfg.in_subnet(daddr) && daddr != cfg.bridge_ip || is_group(daddr))
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
pub fn check_eth_dst(ctx: &TcContext, daddr: u32) -> u32 {
    let Some(cfg) = maps::config() else {
        return 0;
    };
    if !icc_off(cfg) || cfg.bridge_mac == [0; 6] {
        return 0;
    }
    let Ok(dst) = ctx.load::<[u8; 6]>(0) else {
        return DROP_MALFORMED;
    };
    if dst == cfg.bridge_mac {
        return 0;
    }
    if dst[0] & 1 != 0 {
        // A group address (the subnet's directed broadcast included): icc_guarded decides.
        let directed = cfg.in_subnet(daddr) && daddr | cfg.subnet_mask == u32::MAX;
        return if is_group(daddr) || directed {
            0
        } else {
            DROP_ICC_MAC
        };
    }
    if cfg.in_subnet(daddr)
        && let Some(ep) = maps::endpoint_by_ip(daddr)
        && ep.mac == dst
    {
        return 0;
    }
    DROP_ICC_MAC
}
