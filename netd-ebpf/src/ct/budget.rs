//! `--ct-per-source-max`: a budget of unreplied flows per outside source address, so that one
//! source (or a few) cannot take NETD_CT alone. Only flows opened from outside count
//! (published ports, IPv4 and IPv6: [`admit`] before `create`), and only until they are
//! answered: a UDP flow by its first reply; a TCP flow once the source acknowledges the
//! answer (the third segment of its handshake, acknowledging the server's sequence number), as
//! Linux conntrack calls a flow assured only then. A SYN answered by a SYN-ACK is not enough:
//! a server answers spoofed SYNs too. A client whose connections are answered is never refused.
//!
//! NETD_CT_SRC holds per source a window (the unreplied timeout long) and the flows counted
//! in it ([`CtSrc`]). A counted flow carries CT_F_SRC_COUNTED and its window's id
//! (`CtEntry::src_window`); until the flag goes it keeps the unreplied timeout and may be
//! evicted (`ct_answered`), SYN-ACK or not:
//! - [`admit`] refuses a new flow when the source's count has reached the budget; else the
//!   flow is created counted, and [`count_new`] (from `remember_new`, at the entry point)
//!   adds it to the count;
//! - [`packet`] (from `account`, only for counted entries): the answer takes the flow out of
//!   the count (when it was counted in the current window) and clears the flag on both
//!   entries; before an answer, a packet from the source on a flow counted in an earlier
//!   window counts it again in this one, or is refused when the source is at its budget (it
//!   does not keep the flow alive);
//! - the count starts over when the window is over. Every decrement that never came (a flow
//!   collected, evicted or taken over unanswered, a lost race) is forgotten within one window,
//!   so no count can refuse a source for longer. A live flow nothing came back for had a
//!   packet of its source within the unreplied timeout, so it is counted in the current window
//!   or in the one before: a source holds at most about twice its budget of them (plus what
//!   CPUs admitting at the same instant let through: the check and the count are not one
//!   atomic step). A flow whose server's SYN-ACK the source never acknowledges lives while the
//!   server resends it, plus the unreplied timeout: about four windows for Linux's servers.

use aya_ebpf::{bindings::BPF_NOEXIST, btf_maps::LruHashMap, macros::btf_map, programs::TcContext};
use netd_common::{
    CT_F_REPLY, CT_F_SEEN_REPLY, CT_F_SRC_COUNTED, CT_SRC_MAX, CtEntry, CtKey, CtSrc,
    DROP_CT_SOURCE_BUDGET, DpConfig, IPPROTO_TCP, ct_src_window, ct_src_window_ns,
};

use super::{
    evict::{cmpxchg, fetch_add},
    peer_of,
};
use crate::{
    maps,
    parse::{Pkt, TCP_ACK, TCP_RST, TCP_SYN},
};

#[btf_map]
static NETD_CT_SRC: LruHashMap<[u32; 4], CtSrc, { CT_SRC_MAX as usize }> = LruHashMap::new();

/// [`admit`]: no budget (off, or the source cannot be tracked): create the flow uncounted.
pub const ADMIT_UNCOUNTED: u64 = 0;
/// [`admit`]: the source holds its budget: refuse the flow (DROP_CT_SOURCE_BUDGET).
pub const ADMIT_REFUSED: u64 = u64::MAX;

/// The flag a flow [`admit`] answered `w` for is created with.
#[inline(always)]
pub fn counted(w: u64) -> u16 {
    if w == ADMIT_UNCOUNTED {
        0
    } else {
        CT_F_SRC_COUNTED
    }
}

/// May the source `src` open one more flow from outside? [`ADMIT_UNCOUNTED`],
/// [`ADMIT_REFUSED`], or the id of the window to count the flow in (a `u32`, never 0: put it
/// in `NewFlow::src_window` with CT_F_SRC_COUNTED).
#[inline(never)]
pub fn admit(src: &[u32; 4], now: u64) -> u64 {
    let Some(cfg) = maps::config() else {
        return ADMIT_UNCOUNTED;
    };
    if cfg.ct_src_max == 0 {
        return ADMIT_UNCOUNTED;
    }
    let Some(s) = window(src, cfg, now) else {
        return ADMIT_UNCOUNTED;
    };
    // SAFETY: a valid map value; its fields are read once, racing CPUs only move them.
    let (start, count) = unsafe { ((*s).window_start_ns, (*s).count) };
    if count >= i64::from(cfg.ct_src_max) {
        return ADMIT_REFUSED;
    }
    u64::from(ct_src_window(start))
}

/// Adds a flow [`admit`] let in (and `create` tracked) to the count of `src`, when its window
/// `id` is still the current one (a flow admitted just before the window ended is not counted
/// in the new one until its next packet).
#[inline(never)]
pub fn count_new(src: &[u32; 4], id: u32) {
    let Some(s) = NETD_CT_SRC.get_ptr_mut(src) else {
        return;
    };
    // SAFETY: a valid map value; the count is 8-byte aligned and changed only atomically.
    unsafe {
        if ct_src_window((*s).window_start_ns) == id {
            fetch_add(core::ptr::addr_of_mut!((*s).count).cast(), 1);
        }
    }
}

/// A packet on a counted entry `p` (keyed `k`): 0, or DROP_CT_SOURCE_BUDGET for a packet of
/// the source that would keep its flow alive into a window where the source is at its budget.
/// See the module doc.
#[inline(never)]
pub fn packet(p: *mut CtEntry, k: &CtKey, pkt: &Pkt, ctx: &TcContext, now: u64) -> u32 {
    // SAFETY: a valid map value; racing CPUs may lose an update, never memory safety.
    let e = unsafe { &mut *p };
    if e.flags & CT_F_REPLY != 0 {
        // An answer. UDP: the flow is replied and leaves its source's count (the source is
        // the reply's destination). TCP: only once the source shows it sees the answer.
        if k.proto != IPPROTO_TCP {
            release(e, k, &k.daddr);
        }
        return 0;
    }
    if e.flags & CT_F_SEEN_REPLY != 0 {
        if k.proto != IPPROTO_TCP || acks_the_answer(e, k, pkt, ctx) {
            release(e, k, &k.saddr);
        }
        return 0;
    }
    let Some(cfg) = maps::config() else {
        return 0;
    };
    if cfg.ct_src_max == 0 {
        // The budget was turned off: the flow is not counted any more (on both entries: a
        // counted entry keeps the unreplied timeout). The source's next packet does it; a
        // flow answered but not acknowledged yet is uncounted by its acknowledgement.
        e.flags &= !CT_F_SRC_COUNTED;
        if let Some(q) = peer_of(e, k) {
            // SAFETY: as above.
            unsafe { (*q).flags &= !CT_F_SRC_COUNTED };
        }
        return 0;
    }
    let Some(s) = window(&k.saddr, cfg, now) else {
        return 0;
    };
    // SAFETY: as in `admit`.
    let (start, count) = unsafe { ((*s).window_start_ns, (*s).count) };
    let id = ct_src_window(start);
    if e.src_window == id {
        return 0;
    }
    if count >= i64::from(cfg.ct_src_max) {
        return DROP_CT_SOURCE_BUDGET;
    }
    e.src_window = id;
    // SAFETY: as in `count_new`.
    unsafe { fetch_add(core::ptr::addr_of_mut!((*s).count).cast(), 1) };
    0
}

/// Does the TCP segment `pkt` of the original entry `e` (keyed `k`, answered) acknowledge the
/// answer: an ACK without SYN or RST whose acknowledgement number lies within the window of
/// the last sequence number the other side sent? Then the source completed its handshake: it
/// receives what is sent to it, so its address is not spoofed. A SYN sent again, or an ACK
/// sent blind (as a spoofer must), is not.
#[inline(always)]
fn acks_the_answer(e: &CtEntry, k: &CtKey, pkt: &Pkt, ctx: &TcContext) -> bool {
    // The flags first, before any lookup (and `acknowledges` checks them again): this keeps
    // `packet`'s frame at 32 bytes, which from_uplink's call chain needs on the 512-byte stack.
    if pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_ACK || !pkt.has_l4() {
        return false;
    }
    let Some(q) = peer_of(e, k) else {
        return false;
    };
    // SAFETY: a valid map value, read at once.
    let (qflags, qseq) = unsafe { ((*q).flags, (*q).td_seq) };
    // The acknowledgement number sits 8 bytes into the TCP header (parse checked it).
    let Ok(ack) = ctx.load::<u32>(pkt.l4_off as usize + 8) else {
        return false;
    };
    super::acknowledges(pkt.tcp_flags, u32::from_be(ack), qflags, qseq)
}

/// Takes the answered flow of entry `e` (keyed `k`) out of the count of `src`, when it was
/// counted in the current window, and clears CT_F_SRC_COUNTED on both of its entries.
#[inline(always)]
fn release(e: &mut CtEntry, k: &CtKey, src: &[u32; 4]) {
    e.flags &= !CT_F_SRC_COUNTED;
    let Some(q) = peer_of(e, k) else {
        return;
    };
    // SAFETY: a valid map value; racing CPUs may lose an update, never memory safety.
    let q = unsafe { &mut *q };
    if q.flags & CT_F_SRC_COUNTED == 0 {
        return;
    }
    q.flags &= !CT_F_SRC_COUNTED;
    // The original entry holds the window the flow was counted in.
    let id = if e.flags & CT_F_REPLY != 0 {
        q.src_window
    } else {
        e.src_window
    };
    if let Some(s) = NETD_CT_SRC.get_ptr_mut(src) {
        // SAFETY: a valid map value; the count is 8-byte aligned and changed atomically.
        unsafe {
            if ct_src_window((*s).window_start_ns) == id && (*s).count > 0 {
                // Adding 2^64 - 1 subtracts one.
                fetch_add(core::ptr::addr_of_mut!((*s).count).cast(), u64::MAX);
            }
        }
    }
}

/// The budget entry of `src`, its window started afresh when the last one is over (or it is
/// new). The CPU whose compare-and-exchange moves the window's start resets the count.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the key by value would copy it onto the 512-byte BPF stack"
)]
fn window(src: &[u32; 4], cfg: &DpConfig, now: u64) -> Option<*mut CtSrc> {
    let s = match NETD_CT_SRC.get_ptr_mut(src) {
        Some(s) => s,
        None => {
            let fresh = CtSrc {
                window_start_ns: now,
                count: 0,
            };
            // Another CPU may have inserted it meanwhile: then its entry stays.
            let _ = NETD_CT_SRC.insert(src, &fresh, u64::from(BPF_NOEXIST));
            return NETD_CT_SRC.get_ptr_mut(src);
        }
    };
    // SAFETY: a valid map value; the start is 8-byte aligned and changed only atomically.
    unsafe {
        let start = core::ptr::read_volatile(core::ptr::addr_of!((*s).window_start_ns));
        if now.saturating_sub(start) >= ct_src_window_ns(cfg)
            && cmpxchg(core::ptr::addr_of_mut!((*s).window_start_ns), start, now) == start
        {
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*s).count), 0);
        }
    }
    Some(s)
}
