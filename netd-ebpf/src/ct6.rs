//! IPv6 packets for connection tracking: the parse (its extension-header walk is `ip6::walk`,
//! shared with `policy6`), the flow's tuple, and the IPv4-shaped [`Pkt`] that `ct`'s lookup,
//! accounting and creation read (they look only at its protocol, L4 offset, fragment state
//! and TCP flags, never its addresses).
//! IPv6 flows live in NETD_CT itself, keyed by `CtKey` with `family` AF_INET6: same states,
//! timeouts, eviction and garbage collection as IPv4's.

use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use netd_common::{
    CtKey, DROP_MALFORMED, Frag6Key, FragPorts, IPPROTO_TCP, IPPROTO_UDP, PortKey, PortTarget,
};

use crate::{
    ip6::{self, Ip6Hdr, NH_ICMPV6, Upper, load},
    parse::{
        ETH_HLEN, ETH_P_IPV6, FRAG_FIRST, FRAG_LATER, FRAG_NONE, L4_ICMP_ERR, L4_OTHER, L4_PORTS,
        Pkt,
    },
    policy6::NETD_FRAGS6,
};

/// ICMPv6 error types (destination unreachable, packet too big, time exceeded, parameter
/// problem): they quote the packet that caused them.
const ICMP6_ERR_MAX: u8 = 4;

/// Everything the IPv6 uplink paths work on (NETD_NAT6_SCRATCH, per CPU).
#[repr(C)]
pub struct Scratch6 {
    pub ip: Ip6Hdr,
    /// The packet an ICMPv6 error quotes.
    pub ip2: Ip6Hdr,
    /// The packet's tuple and what it becomes.
    pub k: CtKey,
    pub t: CtKey,
    pub pk: PortKey,
    pub frag: Frag6Key,
    pub ports: FragPorts,
    /// The quoted packet's ports.
    pub ports2: FragPorts,
    pub head: [u8; 8],
    pub pkt: Pkt,
    /// 1 when the ports are known (not a later fragment whose first one was missed).
    pub known: u32,
    /// A new flow's binding, the container's veth (0: unknown) and the time it was seen.
    pub b: PortTarget,
    pub fwd: u32,
    /// 1 when [`crate::nat6`] created the flow for this packet.
    pub new: u32,
    /// 1 when [`crate::nat6`] translated this packet for the flow keyed `k` (this run's, for
    /// `monitor::tcp_close`).
    pub translated: u32,
    /// 1 when this run found a TCP/UDP packet that no flow or binding of [`crate::nat6`]
    /// takes: routed IPv6 (the fast path's `redirect::into_container6` and
    /// `redirect::out6_to_uplink` read `ip` then).
    pub routed: u32,
    pub now: u64,
}

/// Parses an IPv6 frame into `s`: false when it is not IPv6, or its extension-header chain is
/// longer than netd walks (the stack decides about those); `DROP_MALFORMED` for truncated
/// headers. Fragments: the first one's ports are recorded for the later ones (NETD_FRAGS6,
/// keyed by the addresses as they arrive, before any translation).
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "keys are passed by reference into the scratch map: by value they would be copied onto the stack"
)]
pub fn parse(ctx: &TcContext, s: &mut Scratch6) -> Result<bool, u32> {
    let et: u16 = ctx.load(12).map_err(|_| DROP_MALFORMED)?;
    if u16::from_be(et) != ETH_P_IPV6 {
        return Ok(false);
    }
    load(ctx, ETH_HLEN as u32, &mut s.ip)?;
    if u32::from_be(s.ip.vtc_flow) >> 28 != 6 {
        return Err(DROP_MALFORMED);
    }
    let Some(Upper { nh, off, frag }) = ip6::walk(ctx, s.ip.nexthdr, &mut s.head, &mut s.frag.id)?
    else {
        return Ok(false);
    };
    s.pkt = Pkt {
        saddr: 0,
        daddr: 0,
        l4_off: off,
        sport: 0,
        dport: 0,
        ip_id: 0,
        proto: nh,
        kind: L4_OTHER,
        frag,
        tcp_flags: 0,
        icmp_type: 0,
    };
    s.known = 1;
    s.ports = FragPorts { sport: 0, dport: 0 };
    if nh == IPPROTO_TCP || nh == IPPROTO_UDP {
        s.pkt.kind = L4_PORTS;
        if frag != FRAG_LATER {
            load(ctx, off, &mut s.ports)?;
            if nh == IPPROTO_TCP {
                s.pkt.tcp_flags = ctx
                    .load::<u8>(off as usize + 13)
                    .map_err(|_| DROP_MALFORMED)?;
            }
        }
        if frag != FRAG_NONE {
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
                    None => s.known = 0,
                }
            }
        }
        s.pkt.sport = s.ports.sport;
        s.pkt.dport = s.ports.dport;
    } else if nh == NH_ICMPV6 && frag == FRAG_NONE {
        load(ctx, off, &mut s.head)?;
        s.pkt.icmp_type = s.head[0];
        if s.head[0] >= 1 && s.head[0] <= ICMP6_ERR_MAX {
            s.pkt.kind = L4_ICMP_ERR;
        }
    }
    Ok(true)
}

/// `s.k` = the packet's tuple as it arrived.
#[inline(always)]
pub fn set_key(s: &mut Scratch6) {
    s.k = CtKey::v6(
        s.ip.saddr,
        s.ip.daddr,
        s.ports.sport,
        s.ports.dport,
        s.pkt.proto,
    );
}

/// Parses the packet an ICMPv6 error (parsed into `s`) quotes into `s.ip2` and `s.ports2`:
/// false when it is not TCP or UDP straight after its IPv6 header (netd translates no other
/// quoted packets). Returns the quoted IPv6 header's offset.
#[inline(always)]
pub fn quoted(ctx: &TcContext, s: &mut Scratch6) -> Result<Option<u32>, u32> {
    let inner = s.pkt.l4_off + 8;
    load(ctx, inner, &mut s.ip2)?;
    if u32::from_be(s.ip2.vtc_flow) >> 28 != 6 {
        return Ok(None);
    }
    if s.ip2.nexthdr != IPPROTO_TCP && s.ip2.nexthdr != IPPROTO_UDP {
        return Ok(None);
    }
    load(ctx, inner + 40, &mut s.ports2)?;
    Ok(Some(inner))
}
