//! IPv6 from containers (from_container's IPv6 branch): anti-spoofing of the source address
//! (link-local included), neighbour discovery that cannot claim another's address, no router
//! advertisements or redirects, network isolation, and `--icc false` with `--link` allowances
//! exactly as for IPv4.
//!
//! One BPF-to-BPF call ([`from_container`]) with a small frame: the parsed packet lives in a
//! per-CPU scratch map (from_container's stack is near the verifier's 512-byte limit).
//!
//! - Extension headers (hop-by-hop, routing, destination options, fragment, AH) are walked,
//!   at most [`ip6::EXT_MAX`], to find the upper-layer header (`ip6::walk`, the walk `ct6`
//!   uses too); a longer chain is malformed here.
//! - Fragments: the first fragment's ports are recorded (NETD_FRAGS6, LRU), later fragments
//!   take them, as IPv4's (`frag`).
//! - Links are stateless for IPv6, as Docker 1.8's own rule pair was (`-s A -d B --dport P`
//!   and `-s B -d A --sport P`): the sender and receiver are mapped to their endpoints and the
//!   IPv4-keyed NETD_LINKS decides, so one link rule covers both families.

use aya_ebpf::{
    bindings::BPF_ANY,
    btf_maps::{HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
    programs::TcContext,
};
use netd_common::{
    DROP_FRAGMENT, DROP_ICC, DROP_ICC_MAC, DROP_IPV6_OFF, DROP_MALFORMED, DROP_ND_SPOOF,
    DROP_NET_ISOLATED, DROP_REDIRECT, DROP_ROUTER_ADVERT, DROP_SPOOFED_IP, ENDPOINTS_MAX,
    EP6_ADDRS_MAX, EP6_F_GLOBAL, EndpointInfo, Ep6Info, FRAGS6_MAX, Frag6Key, FragPorts,
    IPPROTO_TCP, IPPROTO_UDP, ep6_derived_link_local,
};

use crate::{
    ip6::{self, Ip6Hdr, NH_ICMPV6, Upper, load},
    maps,
    parse::{ETH_HLEN, FRAG_FIRST, FRAG_LATER, FRAG_NONE},
    policy,
};

#[btf_map]
static NETD_EP6: HashMap<u32, Ep6Info, { ENDPOINTS_MAX as usize }> = HashMap::new();

#[btf_map]
pub(crate) static NETD_EP6_ADDRS: HashMap<[u32; 4], u32, { EP6_ADDRS_MAX as usize }> =
    HashMap::new();

#[btf_map]
pub(crate) static NETD_FRAGS6: LruHashMap<Frag6Key, FragPorts, { FRAGS6_MAX as usize }> =
    LruHashMap::new();

/// The packet being decided. Per program instance, not pinned: nothing lives between packets.
#[btf_map]
static NETD_V6_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// Neighbour discovery options looked at in one message.
const ND_OPTS_MAX: u32 = 4;

const MLD_QUERY: u8 = 130;
const MLD_REPORT: u8 = 131;
const MLD_DONE: u8 = 132;
const ND_RS: u8 = 133;
const ND_RA: u8 = 134;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const ND_REDIRECT: u8 = 137;
const MLD2_REPORT: u8 = 143;

const ND_OPT_SLLA: u8 = 1;
const ND_OPT_TLLA: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    ip: Ip6Hdr,
    /// The fragment key (addresses, id, upper-layer protocol) of a fragment.
    frag: Frag6Key,
    /// The sender's link-local address (its entry's, or derived from its MAC).
    own_ll: [u32; 4],
    /// An ND message's target address.
    target: [u32; 4],
    /// The first 8 bytes of an extension header, the upper-layer header or an ND option.
    head: [u8; 8],
    ports: FragPorts,
}

#[inline(always)]
fn eq(a: &[u32; 4], b: &[u32; 4]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}

#[inline(always)]
fn is_unspecified(a: &[u32; 4]) -> bool {
    a[0] | a[1] | a[2] | a[3] == 0
}

/// ff00::/8.
#[inline(always)]
fn is_multicast(a: &[u32; 4]) -> bool {
    a[0].to_ne_bytes()[0] == 0xff
}

/// fe80::/10 or a link-scope group (ff02::/16).
#[inline(always)]
fn is_link_scope(a: &[u32; 4]) -> bool {
    let b = a[0].to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80 || b[0] == 0xff && b[1] & 0x0f == 2
}

/// ff02::1:ff00:0/104, the solicited-node multicast group a DAD probe goes to.
#[inline(always)]
fn is_solicited_node(a: &[u32; 4]) -> bool {
    a[0] == u32::from_be(0xff02_0000)
        && a[1] == 0
        && a[2] == u32::from_be(1)
        && a[3].to_ne_bytes()[0] == 0xff
}

#[inline(always)]
fn is_nd(ty: u8) -> bool {
    ty == ND_RS || ty == ND_NS || ty == ND_NA
}

#[inline(always)]
fn is_mld(ty: u8) -> bool {
    ty == MLD_QUERY || ty == MLD_REPORT || ty == MLD_DONE || ty == MLD2_REPORT
}

/// The verdict on an IPv6 frame the container behind `ifindex` sent: 0 to pass it, or the drop
/// reason. The Ethernet source was checked by the caller. A BPF-to-BPF call (two arguments,
/// scratch in NETD_V6_SCRATCH) so its locals stay out of from_container's frame.
#[inline(never)]
pub fn from_container(ctx: &TcContext, ifindex: u32) -> u32 {
    match decide(ctx, ifindex) {
        Ok(()) => 0,
        Err(r) => r,
    }
}

#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys are passed by reference into the scratch map: by value they would be copied onto the stack"
)]
fn decide(ctx: &TcContext, ifindex: u32) -> Result<(), u32> {
    let Some(sp) = NETD_V6_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on it while the program does.
    let s = unsafe { &mut *sp };
    let Some(ep) = maps::endpoint_ref(ifindex) else {
        return Ok(());
    };
    load(ctx, ETH_HLEN as u32, &mut s.ip)?;
    if u32::from_be(s.ip.vtc_flow) >> 28 != 6 {
        return Err(DROP_MALFORMED);
    }
    let plen = u32::from(u16::from_be(s.ip.payload_len));
    // 0: a jumbogram / BIG TCP packet, whose length is the skb's.
    if plen != 0 && ETH_HLEN as u32 + 40 + plen > ctx.len() {
        return Err(DROP_MALFORMED);
    }
    // Extension headers up to the upper-layer header (a longer chain is malformed here).
    let Some(Upper {
        nh,
        off: l4_off,
        frag,
    }) = ip6::walk(ctx, s.ip.nexthdr, &mut s.head, &mut s.frag.id)?
    else {
        return Err(DROP_MALFORMED);
    };
    // The upper-layer header's first bytes: ports, or ICMPv6 type.
    let mut icmp_type = 0u8;
    let ports = nh == IPPROTO_TCP || nh == IPPROTO_UDP;
    s.ports = FragPorts { sport: 0, dport: 0 };
    if frag != FRAG_LATER {
        if ports {
            load(ctx, l4_off, &mut s.ports)?;
        } else if nh == NH_ICMPV6 {
            load(ctx, l4_off, &mut s.head)?;
            icmp_type = s.head[0];
        }
    }
    // Only the host routes.
    if icmp_type == ND_RA {
        return Err(DROP_ROUTER_ADVERT);
    }
    if icmp_type == ND_REDIRECT {
        return Err(DROP_REDIRECT);
    }
    let control = u8::from(nh == NH_ICMPV6 && (is_nd(icmp_type) || is_mld(icmp_type)));

    // The source: one of the endpoint's addresses; `::` only for a DAD probe or an MLD report.
    let ep6 = NETD_EP6.get_ptr(ifindex);
    let mut global = false;
    match ep6 {
        // SAFETY: map values, read at once; the agent replaces entries whole.
        Some(e) => unsafe {
            s.own_ll = (*e).ll;
            global = (*e).flags & EP6_F_GLOBAL != 0 && eq(&s.ip.saddr, &(*e).global);
        },
        None => s.own_ll = ep6_derived_link_local(ep.mac),
    }
    let unspecified = is_unspecified(&s.ip.saddr);
    if unspecified {
        let dad = icmp_type == ND_NS && is_solicited_node(&s.ip.daddr);
        let report =
            (icmp_type == MLD_REPORT || icmp_type == MLD2_REPORT) && is_multicast(&s.ip.daddr);
        if nh != NH_ICMPV6 || !(dad || report) {
            return Err(DROP_SPOOFED_IP);
        }
    } else if !global && !eq(&s.ip.saddr, &s.own_ll) {
        return Err(DROP_SPOOFED_IP);
    }
    // Without IPv6 configuration its only address is the link-local one: it stays on its link.
    if ep6.is_none() && !is_link_scope(&s.ip.daddr) {
        return Err(DROP_IPV6_OFF);
    }
    if nh == NH_ICMPV6 && is_nd(icmp_type) {
        check_nd(ctx, s, ep, ep6, l4_off, icmp_type, unspecified)?;
    }

    // Fragments: the first one's ports for the later ones.
    let mut known = true;
    if ports && frag != FRAG_NONE {
        s.frag.saddr = s.ip.saddr;
        s.frag.daddr = s.ip.daddr;
        s.frag.proto = nh;
        s.frag._pad = [0; 3];
        if frag == FRAG_FIRST {
            // A failed insert only means the later fragments will be unknown.
            let _ = NETD_FRAGS6.insert(&s.frag, &s.ports, u64::from(BPF_ANY));
        } else {
            // SAFETY: copied out at once.
            match unsafe { NETD_FRAGS6.get(&s.frag) } {
                Some(p) => s.ports = *p,
                None => known = false,
            }
        }
    }
    check_peer(
        ctx,
        s,
        ep,
        nh,
        control | (u8::from(known) << 1) | (u8::from(ep6.is_some()) << 2),
    )
}

/// `check_peer`'s facts about the packet.
const P_CONTROL: u8 = 1;
const P_KNOWN: u8 = 2;
const P_CONFIGURED: u8 = 4;

/// Neighbour discovery (`ty` RS, NS or NA at `l4_off`): an advertisement's target must be one
/// of the sender's addresses, a DAD probe's too; every link-layer address option must carry
/// the sender's MAC.
#[inline(always)]
fn check_nd(
    ctx: &TcContext,
    s: &mut Scratch,
    ep: &EndpointInfo,
    ep6: Option<*const Ep6Info>,
    l4_off: u32,
    ty: u8,
    unspecified: bool,
) -> Result<(), u32> {
    let mut opt = l4_off + 8;
    if ty != ND_RS {
        load(ctx, l4_off + 8, &mut s.target)?;
        opt += 16;
        if ty == ND_NA || unspecified {
            let mut own = eq(&s.target, &s.own_ll);
            if let Some(e) = ep6 {
                // SAFETY: a map value, read at once.
                unsafe {
                    own |= (*e).flags & EP6_F_GLOBAL != 0 && eq(&s.target, &(*e).global);
                }
            }
            if !own {
                return Err(DROP_ND_SPOOF);
            }
        }
    }
    let end = ctx.len();
    let mut i = 0;
    while i < ND_OPTS_MAX {
        if opt + 8 > end {
            break;
        }
        load(ctx, opt, &mut s.head)?;
        let len = u32::from(s.head[1]) * 8;
        if len == 0 {
            return Err(DROP_MALFORMED);
        }
        let t = s.head[0];
        if (t == ND_OPT_SLLA || t == ND_OPT_TLLA) && !option_mac_is(&s.head, &ep.mac) {
            return Err(DROP_ND_SPOOF);
        }
        opt += len;
        i += 1;
    }
    Ok(())
}

/// Does a link-layer address option (type, length, MAC) carry `mac`?
#[inline(always)]
fn option_mac_is(opt: &[u8; 8], mac: &[u8; 6]) -> bool {
    let mut i = 0;
    while i < 6 {
        if opt[2 + i] != mac[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Who the packet goes to: another container (the same network only; under `--icc false`
/// only neighbour discovery and what a link allows), a group (under `--icc false` only
/// neighbour discovery and MLD), or anything else (the host, routed: passes). Under
/// `--icc false` the Ethernet destination must agree, as for IPv4 (`check_eth_dst`), and an
/// endpoint without IPv6 configuration sends only neighbour discovery and MLD. `facts`:
/// `P_*`.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys are passed by reference into the scratch map: by value they would be copied onto the stack"
)]
fn check_peer(
    ctx: &TcContext,
    s: &mut Scratch,
    ep: &EndpointInfo,
    nh: u8,
    facts: u8,
) -> Result<(), u32> {
    let control = facts & P_CONTROL != 0;
    let Some(cfg) = maps::config() else {
        return Ok(());
    };
    let net = u32::from(ep.net_id);
    let icc_off = policy::icc_off(cfg, net);
    let mut peer: Option<&EndpointInfo> = None;
    // SAFETY: copied out at once.
    if let Some(dst_if) = unsafe { NETD_EP6_ADDRS.get(&s.ip.daddr) }.copied()
        && dst_if != ep.ifindex
        && let Some(d) = maps::endpoint_ref(dst_if)
    {
        if d.net_id != ep.net_id {
            return Err(DROP_NET_ISOLATED);
        }
        peer = Some(d);
    }
    if !icc_off {
        return Ok(());
    }
    let bridge_mac = maps::net_bridge_mac(cfg, net);
    if bridge_mac != [0; 6] {
        let dst: [u8; 6] = ctx.load(0).map_err(|_| DROP_MALFORMED)?;
        let ok = if dst[0] & 1 != 0 {
            is_multicast(&s.ip.daddr)
        } else {
            dst == bridge_mac || peer.is_some_and(|p| p.mac == dst)
        };
        if !ok {
            return Err(DROP_ICC_MAC);
        }
    }
    if control {
        return Ok(());
    }
    // Without IPv6 configuration there is no address another container could be allowed by.
    if facts & P_CONFIGURED == 0 {
        return Err(DROP_ICC);
    }
    if let Some(p) = peer {
        if nh == IPPROTO_TCP || nh == IPPROTO_UDP {
            if facts & P_KNOWN == 0 {
                return Err(DROP_FRAGMENT);
            }
            if maps::link_allows(ep.ip, p.ip, nh, s.ports.dport)
                || maps::link_allows(p.ip, ep.ip, nh, s.ports.sport)
            {
                return Ok(());
            }
        }
        return Err(DROP_ICC);
    }
    if is_multicast(&s.ip.daddr) {
        return Err(DROP_ICC);
    }
    Ok(())
}
