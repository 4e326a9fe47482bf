//! ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter problem)
//! quoting a flow translated by `nat6`, on the uplinks:
//!
//! - `from_uplink`: an error from outside about a reply the host sent for a published port
//!   (quoted: published address:port -> client) goes to the container, with the quote
//!   showing the container's address and port, as the container sent it.
//! - `to_uplink`: an error a container sends about a packet of a published flow (quoted:
//!   client -> container:port) leaves from the published address, quoting that address and
//!   port, as the client sent it.
//!
//! Checksums: the ICMPv6 checksum covers the outer pseudo-header and the whole quote; the
//! quoted TCP/UDP checksum covers the quoted addresses. Each change goes into both by
//! difference (the quoted checksum only when the quote holds it).

use aya_ebpf::{bindings::BPF_F_PSEUDO_HDR, programs::TcContext};
use netd_common::{CT_F_PUBLISHED, CtKey, DROP_REWRITE_FAILED, DpConfig, IPPROTO_TCP};

use crate::{
    ct,
    ct6::{self, Scratch6},
    nat6::{IP6_DADDR_OFF, IP6_SADDR_OFF, V6_NEXT, V6_PASS, diff16, eq},
    uplink,
};

/// An error from outside quoting what the host sent to the client for a published port.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext, s: &mut Scratch6, cfg: &DpConfig) -> Result<u32, u32> {
    let Some(inner) = published_quote(ctx, s, cfg, true)? else {
        return Ok(V6_NEXT);
    };
    // The outer destination, the quote's source address and port.
    if !eq(&s.ip.daddr, &s.t.daddr) {
        outer_addr(ctx, s, IP6_DADDR_OFF, true)?;
    }
    quote_addr(ctx, s, inner + 8, true)?;
    quote_port(ctx, s, inner + 40, s.ports2.sport, s.t.dport)?;
    Ok(V6_PASS)
}

/// An error a container sends about a packet of a published flow it received.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext, s: &mut Scratch6, cfg: &DpConfig) -> Result<u32, u32> {
    let Some(inner) = published_quote(ctx, s, cfg, false)? else {
        return Ok(V6_NEXT);
    };
    if !eq(&s.ip.saddr, &s.t.daddr) {
        outer_addr(ctx, s, IP6_SADDR_OFF, false)?;
    }
    quote_addr(ctx, s, inner + 24, false)?;
    quote_port(ctx, s, inner + 42, s.ports2.dport, s.t.dport)?;
    Ok(V6_PASS)
}

/// The published flow the error parsed into `s` quotes, both directions' first step: the
/// quoted packet (`ct6::quoted`) reversed is the key of the flow's entry for the packets
/// travelling the error's way, the original direction for an error arriving from outside
/// (`inbound`), the reply direction for one a container sends. That entry must be a
/// published flow's and carry packets that way. Sets `s.k` to its key and `s.t.daddr`,
/// `s.t.dport` to what the quote's translated side becomes: the container's address and port
/// (`inbound`), or the published address and port the client talks to. Returns the quoted
/// IPv6 header's offset; `None` when the error is not about such a flow.
#[inline(always)]
fn published_quote(
    ctx: &TcContext,
    s: &mut Scratch6,
    cfg: &DpConfig,
    inbound: bool,
) -> Result<Option<u32>, u32> {
    let Some(inner) = ct6::quoted(ctx, s)? else {
        return Ok(None);
    };
    s.k = CtKey::v6(
        s.ip2.daddr,
        s.ip2.saddr,
        s.ports2.dport,
        s.ports2.sport,
        s.ip2.nexthdr,
    );
    let Some(p) = ct::lookup_key(&s.k, cfg, ct::now()) else {
        return Ok(None);
    };
    // SAFETY: a valid map value, read at once.
    let e = unsafe { &*p };
    let way = if inbound {
        uplink::arrives_from_outside(e.flags)
    } else {
        uplink::leaves_for_outside(e.flags)
    };
    if e.flags & CT_F_PUBLISHED == 0 || !way {
        return Ok(None);
    }
    if inbound {
        s.t.daddr = e.nat_daddr;
        s.t.dport = e.nat_dport;
    } else {
        s.t.daddr = e.nat_saddr;
        s.t.dport = e.nat_sport;
    }
    Ok(Some(inner))
}

/// Offset of the ICMPv6 checksum.
#[inline(always)]
fn icmp_csum(s: &Scratch6) -> usize {
    s.pkt.l4_off as usize + 2
}

/// The outer address at `off` (the destination when `dst`, else the source) becomes
/// `s.t.daddr`: a pseudo-header change of the ICMPv6 checksum.
#[inline(always)]
fn outer_addr(ctx: &TcContext, s: &mut Scratch6, off: usize, dst: bool) -> Result<(), u32> {
    let d = if dst {
        diff16(&mut s.ip.daddr, &mut s.t.daddr)?
    } else {
        diff16(&mut s.ip.saddr, &mut s.t.daddr)?
    };
    ctx.l4_csum_replace(icmp_csum(s), 0, d, u64::from(BPF_F_PSEUDO_HDR))
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(off, &s.t.daddr, 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// The quoted address at `off` (its source when `src`, else its destination) becomes
/// `s.t.daddr`, fixing the quoted checksum (its pseudo-header) and the ICMPv6 checksum (which
/// covers the quote, the quoted checksum included).
#[inline(always)]
fn quote_addr(ctx: &TcContext, s: &mut Scratch6, off: u32, src: bool) -> Result<(), u32> {
    let d = if src {
        diff16(&mut s.ip2.saddr, &mut s.t.daddr)?
    } else {
        diff16(&mut s.ip2.daddr, &mut s.t.daddr)?
    };
    ctx.l4_csum_replace(icmp_csum(s), 0, d, 0)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    quoted_csum(ctx, s, 0, d, 0)?;
    ctx.store(off as usize, &s.t.daddr, 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// The quoted port at `off` goes from `old` to `new` (network order).
#[inline(always)]
fn quote_port(ctx: &TcContext, s: &Scratch6, off: u32, old: u16, new: u16) -> Result<(), u32> {
    if old == new {
        return Ok(());
    }
    ctx.l4_csum_replace(icmp_csum(s), u64::from(old), u64::from(new), 2)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    quoted_csum(ctx, s, u64::from(old), u64::from(new), 2)?;
    ctx.store(off as usize, &new, 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// Applies a change (`bpf_l4_csum_replace` arguments) to the quoted TCP/UDP checksum, if the
/// quote holds it (a UDP checksum of 0, "none", stays), and the checksum's own change to the
/// ICMPv6 checksum.
#[inline(always)]
fn quoted_csum(ctx: &TcContext, s: &Scratch6, from: u64, to: u64, size: u64) -> Result<(), u32> {
    let inner_l4 = s.pkt.l4_off as usize + 8 + 40;
    let off = if s.ip2.nexthdr == IPPROTO_TCP {
        inner_l4 + 16
    } else {
        inner_l4 + 6
    };
    let Ok(old) = ctx.load::<u16>(off) else {
        return Ok(());
    };
    if old == 0 && s.ip2.nexthdr != IPPROTO_TCP {
        return Ok(());
    }
    ctx.l4_csum_replace(off, from, to, size)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    let new: u16 = ctx.load(off).map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.l4_csum_replace(icmp_csum(s), u64::from(old), u64::from(new), 2)
        .map_err(|_| DROP_REWRITE_FAILED)
}
