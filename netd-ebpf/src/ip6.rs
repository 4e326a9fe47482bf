//! The IPv6 header and its extension-header walk, shared by the container policy (`policy6`)
//! and the uplinks' connection tracking (`ct6`): one walk, so both always agree on where a
//! packet's upper-layer header is and whether it is a fragment.

use aya_ebpf::{helpers::generated::bpf_skb_load_bytes, programs::TcContext};
use netd_common::DROP_MALFORMED;

use crate::parse::{ETH_HLEN, FRAG_FIRST, FRAG_LATER, FRAG_NONE};

pub const NH_HOP: u8 = 0;
pub const NH_ROUTING: u8 = 43;
pub const NH_FRAGMENT: u8 = 44;
pub const NH_AH: u8 = 51;
pub const NH_ICMPV6: u8 = 58;
pub const NH_DSTOPTS: u8 = 60;

/// Extension headers walked before the upper-layer header must appear.
pub const EXT_MAX: u32 = 6;

/// Offset of the first header after the fixed IPv6 header.
pub const IP6_PAYLOAD_OFF: u32 = ETH_HLEN as u32 + 40;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Ip6Hdr {
    pub vtc_flow: u32,
    pub payload_len: u16,
    pub nexthdr: u8,
    pub hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

/// Loads `size_of::<T>()` bytes at `off` into `dst` (scratch map memory).
#[inline(always)]
pub fn load<T>(ctx: &TcContext, off: u32, dst: *mut T) -> Result<(), u32> {
    // SAFETY: the helper writes at most size_of::<T>() bytes into `dst`, which points into
    // the caller's per-CPU scratch slot, and fails on a frame shorter than off + len.
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            off,
            dst.cast(),
            core::mem::size_of::<T>() as u32,
        )
    };
    if r == 0 { Ok(()) } else { Err(DROP_MALFORMED) }
}

/// Is `nh` one of the extension headers netd walks (hop-by-hop, routing, destination
/// options, fragment, AH)?
#[inline(always)]
pub fn is_ext(nh: u8) -> bool {
    nh == NH_HOP || nh == NH_ROUTING || nh == NH_DSTOPTS || nh == NH_FRAGMENT || nh == NH_AH
}

/// Where the upper-layer header is: its protocol, its offset, and the fragment state
/// (`FRAG_*`) of the packet.
#[derive(Clone, Copy)]
pub struct Upper {
    pub nh: u8,
    pub off: u32,
    pub frag: u8,
}

/// Walks the extension headers after an IPv6 header whose next header is `first`, at most
/// [`EXT_MAX`] of them, to the upper-layer header. `head` (scratch memory) receives each
/// extension header's first 8 bytes; a fragment header's identification goes to `frag_id`
/// (as it is on the wire). `None` when the chain is longer than netd walks; `DROP_MALFORMED`
/// for a truncated one.
#[inline(always)]
pub fn walk(
    ctx: &TcContext,
    first: u8,
    head: &mut [u8; 8],
    frag_id: &mut u32,
) -> Result<Option<Upper>, u32> {
    let mut nh = first;
    let mut off = IP6_PAYLOAD_OFF;
    let mut frag = FRAG_NONE;
    let mut i = 0;
    while i < EXT_MAX {
        if !is_ext(nh) {
            break;
        }
        load(ctx, off, head)?;
        if nh == NH_FRAGMENT {
            let fo = u16::from_be_bytes([head[2], head[3]]);
            frag = if fo & 0xfff8 != 0 {
                FRAG_LATER
            } else if fo & 1 != 0 {
                FRAG_FIRST
            } else {
                frag
            };
            *frag_id = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]);
            off += 8;
        } else if nh == NH_AH {
            off += (u32::from(head[1]) + 2) * 4;
        } else {
            off += (u32::from(head[1]) + 1) * 8;
        }
        nh = head[0];
        i += 1;
    }
    if is_ext(nh) {
        return Ok(None);
    }
    Ok(Some(Upper { nh, off, frag }))
}
