//! Rewriting addresses and ports with incremental checksum updates (bpf_l3_csum_replace /
//! bpf_l4_csum_replace), so CHECKSUM_PARTIAL and CHECKSUM_COMPLETE packets stay consistent.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM},
    programs::TcContext,
};
use netd_common::{DROP_REWRITE_FAILED, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

use crate::parse::{IP_CSUM_OFF, Pkt};

/// Offset of the L4 checksum and the extra `bpf_l4_csum_replace` flags, when the packet
/// carries one (later fragments carry no L4 header).
#[inline(always)]
fn l4_csum(pkt: &Pkt) -> Option<(usize, u64)> {
    if !pkt.has_l4() {
        return None;
    }
    let off = pkt.l4_off as usize;
    match pkt.proto {
        IPPROTO_TCP => Some((off + 16, 0)),
        // A zero UDP checksum means "none": keep it, and never write a computed zero.
        IPPROTO_UDP => Some((off + 6, u64::from(BPF_F_MARK_MANGLED_0))),
        IPPROTO_ICMP => Some((off + 2, 0)),
        _ => None,
    }
}

/// Replaces the IPv4 address at `off` (`old` -> `new`, network byte order), fixing the IPv4
/// header checksum and the TCP/UDP pseudo-header checksum.
#[inline(always)]
pub fn set_addr(ctx: &TcContext, pkt: &Pkt, off: usize, old: u32, new: u32) -> Result<(), u32> {
    if let Some((csum_off, flags)) = l4_csum(pkt) {
        // ICMP's checksum has no pseudo-header.
        if pkt.proto != IPPROTO_ICMP {
            ctx.l4_csum_replace(
                csum_off,
                u64::from(old),
                u64::from(new),
                flags | u64::from(BPF_F_PSEUDO_HDR) | 4,
            )
            .map_err(|_| DROP_REWRITE_FAILED)?;
        }
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(off, &new, 0).map_err(|_| DROP_REWRITE_FAILED)
}

/// Replaces the 16-bit L4 field at `off` (a port or the ICMP echo id), fixing the L4 checksum.
/// A UDP datagram without a checksum (0) has no field to compensate the change: on a
/// CHECKSUM_COMPLETE skb, `skb->csum` then follows the new bytes (`BPF_F_RECOMPUTE_CSUM`), or
/// it would no longer match the packet.
#[inline(always)]
pub fn set_l4_u16(ctx: &TcContext, pkt: &Pkt, off: usize, old: u16, new: u16) -> Result<(), u32> {
    let mut store_flags = 0;
    if let Some((csum_off, flags)) = l4_csum(pkt) {
        if pkt.proto == IPPROTO_UDP {
            let c: u16 = ctx.load(csum_off).map_err(|_| DROP_REWRITE_FAILED)?;
            if c == 0 {
                store_flags = u64::from(BPF_F_RECOMPUTE_CSUM);
            }
        }
        ctx.l4_csum_replace(csum_off, u64::from(old), u64::from(new), flags | 2)
            .map_err(|_| DROP_REWRITE_FAILED)?;
    }
    ctx.store(off, &new, store_flags)
        .map_err(|_| DROP_REWRITE_FAILED)
}
