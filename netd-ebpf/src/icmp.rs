//! ICMP errors (destination unreachable, time exceeded, parameter problem) that quote a
//! translated flow: the quoted packet is the flow's packet as it was on the other side of the
//! translation, so its addresses and ports, and the error's own outer address, are translated
//! back, as conntrack's "related" handling does.
//!
//! Checksums: the inner IPv4 header checksum follows its address change, so the outer ICMP
//! checksum (which covers both) is unchanged by it; an inner port change is compensated in the
//! outer ICMP checksum; an inner echo id change in the inner ICMP checksum (again leaving the
//! outer one unchanged). The quoted TCP/UDP checksum is left alone, as Linux does: it is
//! usually truncated and nobody checks it. `bpf_l3_csum_replace` is used for fields inside the
//! ICMP payload: it never depends on the skb's checksum state.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    CtKey, DROP_DIRECT_ACCESS, DROP_ICC, DROP_MALFORMED, DROP_REWRITE_FAILED, DpConfig,
    IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    ct,
    nat::Xlate,
    parse::{
        ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, IP_CSUM_OFF, IP_DADDR_OFF, IP_SADDR_OFF, Ipv4Hdr,
        L4Head, Pkt,
    },
    policy,
    uplink::{arrives_from_outside, leaves_for_outside},
};

const PASS: i32 = TC_ACT_OK;

/// The packet an ICMP error quotes.
struct Quoted {
    /// Frame offsets of its IPv4 header and L4 header.
    ip_off: usize,
    l4_off: usize,
    saddr: u32,
    daddr: u32,
    /// Network byte order; the echo id in both for an echo.
    sport: u16,
    dport: u16,
    proto: u8,
}

impl Quoted {
    /// The tracked tuple whose reply this quoted packet is: errors travel against the packet
    /// they quote.
    #[inline(always)]
    fn reply_key(&self) -> CtKey {
        CtKey::v4(self.daddr, self.saddr, self.dport, self.sport, self.proto)
    }
}

/// The quoted packet, `None` when it is no flow the programs translate (not TCP, UDP or ICMP
/// echo, or a later fragment). RFC 792 quotes the IPv4 header and 8 bytes: less is malformed.
#[inline(always)]
fn quoted(ctx: &TcContext, pkt: &Pkt) -> Result<Option<Quoted>, u32> {
    let ip_off = pkt.l4_off as usize + 8;
    let ip: Ipv4Hdr = ctx.load(ip_off).map_err(|_| DROP_MALFORMED)?;
    let ihl = usize::from(ip.ver_ihl & 0x0f) * 4;
    if ip.ver_ihl >> 4 != 4 || ihl < 20 {
        return Err(DROP_MALFORMED);
    }
    if u16::from_be(ip.frag_off) & 0x1fff != 0 {
        return Ok(None);
    }
    let l4_off = ip_off + ihl;
    let h: L4Head = ctx.load(l4_off).map_err(|_| DROP_MALFORMED)?;
    let (sport, dport) = match ip.proto {
        IPPROTO_TCP | IPPROTO_UDP => (h.a, h.b),
        IPPROTO_ICMP => {
            let ty = (u16::from_be(h.a) >> 8) as u8;
            if ty != ICMP_ECHO_REQUEST && ty != ICMP_ECHO_REPLY {
                return Ok(None);
            }
            (h.c, h.c)
        }
        _ => return Ok(None),
    };
    Ok(Some(Quoted {
        ip_off,
        l4_off,
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport,
        dport,
        proto: ip.proto,
    }))
}

#[inline(always)]
fn rewrite_failed<E>(_: E) -> u32 {
    DROP_REWRITE_FAILED
}

/// Replaces a 32-bit field at `off` whose checksum lives at `csum_off`.
#[inline(always)]
fn set32(ctx: &TcContext, off: usize, csum_off: usize, old: u32, new: u32) -> Result<(), u32> {
    if old == new {
        return Ok(());
    }
    ctx.l3_csum_replace(csum_off, u64::from(old), u64::from(new), 4)
        .map_err(rewrite_failed)?;
    ctx.store(off, &new, 0).map_err(rewrite_failed)
}

/// Replaces the quoted packet's port (or echo id) at `off`.
#[inline(always)]
fn set_quoted_port(
    ctx: &TcContext,
    pkt: &Pkt,
    q: &Quoted,
    off: usize,
    old: u16,
    new: u16,
) -> Result<(), u32> {
    if old == new {
        return Ok(());
    }
    // An echo id is covered by the quoted ICMP checksum; a port by the error's own.
    let csum_off = if q.proto == IPPROTO_ICMP {
        q.l4_off + 2
    } else {
        pkt.l4_off as usize + 2
    };
    ctx.l3_csum_replace(csum_off, u64::from(old), u64::from(new), 2)
        .map_err(rewrite_failed)?;
    ctx.store(off, &new, 0).map_err(rewrite_failed)
}

/// The quoted packet's source goes back to (addr, port), and so does the error's destination:
/// errors about packets that left for outside, arriving back.
#[inline(always)]
fn untranslate_source(
    ctx: &TcContext,
    pkt: &Pkt,
    q: &Quoted,
    addr: u32,
    port: u16,
) -> Result<(), u32> {
    set32(ctx, q.ip_off + 12, q.ip_off + 10, q.saddr, addr)?;
    let port_off = if q.proto == IPPROTO_ICMP {
        q.l4_off + 4
    } else {
        q.l4_off
    };
    set_quoted_port(ctx, pkt, q, port_off, q.sport, port)?;
    set32(ctx, IP_DADDR_OFF, IP_CSUM_OFF, pkt.daddr, addr)
}

/// The quoted packet's destination goes back to (addr, port), and so does the error's source:
/// errors a container sends about packets it received translated.
#[inline(always)]
fn untranslate_destination(
    ctx: &TcContext,
    pkt: &Pkt,
    q: &Quoted,
    addr: u32,
    port: u16,
) -> Result<(), u32> {
    set32(ctx, q.ip_off + 16, q.ip_off + 10, q.daddr, addr)?;
    let port_off = if q.proto == IPPROTO_ICMP {
        q.l4_off + 4
    } else {
        q.l4_off + 2
    };
    set_quoted_port(ctx, pkt, q, port_off, q.dport, port)?;
    set32(ctx, IP_SADDR_OFF, IP_CSUM_OFF, pkt.saddr, addr)
}

/// The translation of the flow the error quotes, if it is tracked.
#[inline(always)]
fn flow_of(q: &Quoted, cfg: &DpConfig) -> Option<Xlate> {
    let p = ct::lookup_key(&q.reply_key(), cfg, ct::now())?;
    // SAFETY: a valid map value, copied out at once.
    Some(Xlate::of(unsafe { &*p }))
}

/// From outside: errors about packets a container sent out masqueraded, or about published-port
/// replies, go back to the container. Others are host traffic, unless aimed at a container.
#[inline(never)]
pub fn from_uplink(ctx: &TcContext, pkt: &Pkt, cfg: &DpConfig) -> Result<i32, u32> {
    if let Some(q) = quoted(ctx, pkt)?
        && let Some(x) = flow_of(&q, cfg)
        && arrives_from_outside(x.flags)
    {
        // The entry's translation turns the quoted packet's reply into the container's view.
        untranslate_source(ctx, pkt, &q, x.daddr, x.dport)?;
        return Ok(PASS);
    }
    if crate::maps::in_networks(cfg, pkt.daddr) {
        return Err(DROP_DIRECT_ACCESS);
    }
    Ok(PASS)
}

/// To outside: errors about a published-port or masqueraded flow's packet that a container
/// received carry the host's address and port, as the flow did, whoever sends them: the
/// container, or the host itself (the packet was too big for the bridge's MTU, its TTL
/// expired on the way). The stack quotes the packet as it saw it, with the container's
/// address and port, which the sender cannot match to its socket: PMTU discovery would break.
/// The quoted packet gets the flow's outside destination back, and the error's source becomes
/// that address, as conntrack's related NAT does. Others leave untranslated.
#[inline(never)]
pub fn to_uplink(ctx: &TcContext, pkt: &Pkt, cfg: &DpConfig) -> Result<i32, u32> {
    let q = match quoted(ctx, pkt) {
        Ok(q) => q,
        // A container's malformed error is dropped; the host's own traffic is not ours to
        // judge.
        Err(e) if crate::maps::in_networks(cfg, pkt.saddr) => return Err(e),
        Err(_) => return Ok(PASS),
    };
    if let Some(q) = q
        && q.saddr == pkt.daddr
        && crate::maps::in_networks(cfg, q.daddr)
        && let Some(x) = flow_of(&q, cfg)
        && leaves_for_outside(x.flags)
    {
        untranslate_destination(ctx, pkt, &q, x.saddr, x.sport)?;
    }
    Ok(PASS)
}

/// Between containers: errors about a hairpin flow are translated like its replies; errors
/// about a tracked flow (a link) between the error's two ends pass `--icc false`; others do
/// not: the quoted packet must have been sent by the error's receiver to its sender (as the
/// sender received it), or any container could reach any other by quoting someone's flow.
#[inline(never)]
pub fn from_container(ctx: &TcContext, pkt: &Pkt, cfg: &DpConfig, net: u32) -> Result<i32, u32> {
    let q = quoted(ctx, pkt)?.filter(|q| q.saddr == pkt.daddr && q.daddr == pkt.saddr);
    let x = q.as_ref().and_then(|q| flow_of(q, cfg));
    if let (Some(q), Some(x)) = (&q, &x)
        && x.flags & netd_common::CT_F_HAIRPIN != 0
        && !x.is_self_hairpin()
    {
        untranslate_destination(ctx, pkt, q, x.saddr, x.sport)?;
        return Ok(PASS);
    }
    if x.is_none() {
        let r = policy::check_network(net, pkt.daddr);
        if r != 0 {
            return Err(r);
        }
        if policy::icc_guarded(net, pkt.daddr) {
            return Err(DROP_ICC);
        }
    }
    Ok(PASS)
}
