//! `netd monitor`'s events: every drop counted by `counters::tc_drop`/`xdp_drop` is also
//! written to NETD_EVENTS as a `DropEvent` (reason, interface, length and the packet's first
//! bytes), but only while the daemon has a monitor client (NETD_MONITOR[0] != 0). The event is
//! built in the ring buffer's own memory (reserve, fill, submit): no stack, no scratch copy.
//! The emitters are BPF-to-BPF calls with a tiny frame, so from_container's combined stack
//! grows by one (32-byte, on 6.1) frame at most. A full ring loses the event, counted in
//! NETD_MONITOR_LOST; the packet's verdict never depends on it.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    btf_maps::{Array, PerCpuArray, RingBuf},
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::btf_map,
};
use netd_common::{
    CT_F_REPLY, CT_TCP_CLOSED, CT_TCP_TIME_WAIT, CtEntry, CtKey, DropEvent, EV_DROP,
    EV_FLOW_CLOSED, EV_FLOW_NEW, EVENT_HEAD_MAX, EVENTS_RING_BYTES, FLOW_CLOSE_FIN, FLOW_CLOSE_RST,
    FlowEvent, HOOK_XDP, IPPROTO_TCP,
};

use crate::parse::{TCP_FIN, TCP_RST};

#[btf_map]
static NETD_EVENTS: RingBuf<DropEvent, { EVENTS_RING_BYTES as usize }> = RingBuf::new();

/// Index 0: non-zero while a monitor client is connected (set by the daemon).
#[btf_map]
static NETD_MONITOR: Array<u32, 1> = Array::new();

/// Index 0: events lost to a full ring.
#[btf_map]
static NETD_MONITOR_LOST: PerCpuArray<u64, 1> = PerCpuArray::new();

/// [`tcp_close`]'s headers and key, off the stack (it runs under from_container's 352-byte
/// frame). Per program instance, not pinned: it holds nothing between runs.
#[btf_map]
static NETD_MON_SCRATCH: PerCpuArray<CloseScratch, 1> = PerCpuArray::new();

pub struct CloseScratch {
    ip: [u8; 20],
    tcp: [u8; 16],
    key: CtKey,
}

/// Is anybody listening? One array lookup.
#[inline(always)]
pub fn on() -> bool {
    NETD_MONITOR.get(0).is_some_and(|v| *v != 0)
}

#[inline(always)]
fn lost() {
    if let Some(p) = NETD_MONITOR_LOST.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot, written only by this CPU while the program runs.
        unsafe { *p += 1 };
    }
}

/// Bytes of a `len`-byte packet to copy: `min(len, EVENT_HEAD_MAX)` in 1..=EVENT_HEAD_MAX (a
/// 0-byte packet asks for EVENT_HEAD_MAX, which the load helper refuses). Computed with a mask
/// and no branch, so every verifier sees the bounds on the very register it passes to the load
/// helper (6.1 does not carry them over from a `n > 0` branch and refuses a possible 0).
#[inline(always)]
fn head_len(len: u32) -> u32 {
    const MAX: u32 = EVENT_HEAD_MAX as u32;
    const _: () = assert!(MAX.is_power_of_two());
    let m = if len > MAX { MAX } else { len };
    (m.wrapping_sub(1) & (MAX - 1)) + 1
}

/// Reserves an event and fills everything but the packet bytes; `None` when the ring is full.
#[inline(always)]
fn start(
    hook: u16,
    reason: u32,
    ifindex: u32,
    len: u32,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<DropEvent>> {
    let Some(mut e) = NETD_EVENTS.reserve(0) else {
        lost();
        return None;
    };
    let p = e.as_mut_ptr();
    // SAFETY: p points at a reserved, writable DropEvent in the ring; every field is written
    // before submit (head up to cap_len, the rest is never read).
    unsafe {
        (*p).kind = EV_DROP;
        (*p).hook = hook;
        (*p).reason = reason;
        (*p).ifindex = ifindex;
        (*p).pkt_len = len;
        (*p).cap_len = 0;
        (*p)._pad = 0;
        (*p).ktime_ns = bpf_ktime_get_ns();
    }
    Some(e)
}

/// Emits the drop of the TC program's packet `skb` under `reason`, if a monitor listens.
#[inline(never)]
pub fn tc_event(skb: *mut __sk_buff, hook: u16, reason: u32) {
    if !on() {
        return;
    }
    // SAFETY: skb is the program's context, valid for the whole run.
    let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
    let Some(mut e) = start(hook, reason, ifindex, len) else {
        return;
    };
    let p = e.as_mut_ptr();
    let n = head_len(len);
    // SAFETY: head has EVENT_HEAD_MAX >= n writable bytes; the helper bounds-checks skb.
    let r = unsafe { bpf_skb_load_bytes(skb as *const _, 0, (*p).head.as_mut_ptr().cast(), n) };
    if r == 0 {
        // SAFETY: as above.
        unsafe { (*p).cap_len = n };
    }
    e.submit(0);
}

/// Emits the drop of the XDP program's packet `xdp` under `reason`, if a monitor listens.
#[inline(never)]
pub fn xdp_event(xdp: *mut xdp_md, reason: u32) {
    if !on() {
        return;
    }
    // SAFETY: xdp is the program's context, valid for the whole run. (data_end - data is
    // pointer arithmetic the verifier refuses; the helper gives the length, Linux 5.18.)
    let (ifindex, len) = unsafe { ((*xdp).ingress_ifindex, bpf_xdp_get_buff_len(xdp) as u32) };
    let Some(mut e) = start(HOOK_XDP, reason, ifindex, len) else {
        return;
    };
    let p = e.as_mut_ptr();
    let n = head_len(len);
    // SAFETY: head has EVENT_HEAD_MAX >= n writable bytes; the helper bounds-checks.
    let r = unsafe { bpf_xdp_load_bytes(xdp, 0, (*p).head.as_mut_ptr().cast(), n) };
    if r == 0 {
        // SAFETY: as above.
        unsafe { (*p).cap_len = n };
    }
    e.submit(0);
}

/// Copies `key` and `e`'s translation into the flow event at `p` (a ring reservation).
#[inline(always)]
fn fill_flow(p: *mut FlowEvent, kind: u16, cause: u32, key: &CtKey, e: &CtEntry) {
    // SAFETY: p points at a writable, reserved FlowEvent.
    unsafe {
        (*p).kind = kind;
        (*p).flags = e.flags;
        (*p).cause = cause;
        (*p).binding_id = e.binding_id;
        (*p).ifindex = e.ifindex;
        (*p).ktime_ns = bpf_ktime_get_ns();
        (*p).created_ns = e.created_ns;
        (*p).key = *key;
        (*p).nat_saddr = e.nat_saddr;
        (*p).nat_daddr = e.nat_daddr;
        (*p).nat_sport = e.nat_sport;
        (*p).nat_dport = e.nat_dport;
        (*p)._pad = 0;
    }
}

/// Emits the new flow `key` (its original-direction entry `e`), if a monitor listens. Called
/// once per created flow, from the entry point (`ct::remember_new`), where the stack is shallow.
#[inline(never)]
pub fn flow_new(key: &CtKey, e: &CtEntry) {
    if !on() {
        return;
    }
    let Some(mut ev) = NETD_EVENTS.reserve_untyped::<FlowEvent>(0) else {
        lost();
        return;
    };
    fill_flow(ev.as_mut_ptr(), EV_FLOW_NEW, 0, key, e);
    ev.submit(0);
}

/// Emits a `closed` flow event when the packet `skb`, as the program leaves it (after any
/// rewrite), is a TCP FIN or RST whose flow conntrack now holds as finished: TIME_WAIT after a
/// FIN (FINs both ways), CLOSED after an RST. Called at the entry point, after the body, where
/// the verifier sees few states (inside conntrack's TCP update the same check cost to_uplink
/// 4.8% more instructions). A retransmitted FIN emits again; the daemon drops the repeat
/// (same tuple, same `created_ns`). IPv4 packets are read back from the frame; for an IPv6
/// one (`v6`: the uplink programs, which track IPv6 flows in `nat6`) the flow is the one
/// `nat6` translated the packet for in this run (`nat6::translated`), its key and TCP flags
/// still in nat6's scratch slot.
#[inline(always)]
pub fn tcp_close(skb: *mut __sk_buff, v6: bool) {
    // The switch is read here, in the entry point: with nobody listening a packet pays one
    // array lookup, not a call, and no header is read.
    if on() {
        tcp_close_check(skb, u64::from(v6));
    }
}

#[inline(never)]
fn tcp_close_check(skb: *mut __sk_buff, v6: u64) {
    let Some(sc) = NETD_MON_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot, used only within one run of a program.
    let sc = unsafe { &mut *sc };
    // SAFETY: skb is the program's context; each buffer has the bytes asked for, and the
    // helper bounds-checks the packet.
    let r = unsafe { bpf_skb_load_bytes(skb as *const _, 12, sc.ip.as_mut_ptr().cast(), 2) };
    if r != 0 {
        return;
    }
    if sc.ip[0] == 0x86 && sc.ip[1] == 0xdd {
        if v6 != 0
            && let Some(s) = crate::nat6::translated()
            && s.pkt.proto == IPPROTO_TCP
            && let Some(want) = closing_state(s.pkt.tcp_flags)
            && let Some(cfg) = crate::maps::config()
            && let Some(p) = crate::ct::lookup_key(&s.k, cfg, crate::ct::now())
        {
            closed(&s.k, p, want);
        }
        return;
    }
    if sc.ip[0] != 0x08 || sc.ip[1] != 0x00 {
        return;
    }
    // SAFETY: as above.
    let r = unsafe { bpf_skb_load_bytes(skb as *const _, 14, sc.ip.as_mut_ptr().cast(), 20) };
    let ip = &sc.ip;
    // TCP, and a first fragment (a later one has no header).
    if r != 0 || ip[9] != IPPROTO_TCP || u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return;
    }
    let l4 = 14 + u32::from(ip[0] & 0x0f) * 4;
    // SAFETY: as above.
    let r = unsafe { bpf_skb_load_bytes(skb as *const _, l4, sc.tcp.as_mut_ptr().cast(), 14) };
    if r != 0 {
        return;
    }
    let tcp = &sc.tcp;
    let Some(want) = closing_state(tcp[13]) else {
        return;
    };
    let Some(cfg) = crate::maps::config() else {
        return;
    };
    let now = crate::ct::now();
    let addr = |o: usize| u32::from_ne_bytes([ip[o], ip[o + 1], ip[o + 2], ip[o + 3]]);
    let port = |o: usize| u16::from_ne_bytes([tcp[o], tcp[o + 1]]);
    sc.key = CtKey::v4(addr(12), addr(16), port(0), port(2), IPPROTO_TCP);
    // The tuple as it stands may be either direction's key: before translation (the
    // original direction) or after it (the reply's key, reversed).
    let p = match crate::ct::lookup_key(&sc.key, cfg, now) {
        Some(p) => p,
        None => {
            sc.key = sc.key.reversed();
            match crate::ct::lookup_key(&sc.key, cfg, now) {
                Some(p) => p,
                None => return,
            }
        }
    };
    closed(&sc.key, p, want);
}

/// The state a TCP segment with `flags` leaves its flow in when it finishes it: CLOSED for an
/// RST, TIME_WAIT for a FIN (once FINs went both ways); `None` for any other segment.
#[inline(always)]
fn closing_state(flags: u8) -> Option<u8> {
    if flags & TCP_RST != 0 {
        Some(CT_TCP_CLOSED)
    } else if flags & TCP_FIN != 0 {
        Some(CT_TCP_TIME_WAIT)
    } else {
        None
    }
}

/// Emits the `closed` event of the flow whose entry `p` (keyed `k`, either direction) is now
/// in the state `want`; nothing when it is not (a first FIN: CLOSING).
#[inline(always)]
fn closed(k: &CtKey, p: *mut CtEntry, want: u8) {
    // SAFETY: a valid map value, read only.
    let e = unsafe { &*p };
    if e.tcp_state != want {
        return;
    }
    let cause = if want == CT_TCP_CLOSED {
        FLOW_CLOSE_RST
    } else {
        FLOW_CLOSE_FIN
    };
    let Some(mut ev) = NETD_EVENTS.reserve_untyped::<FlowEvent>(0) else {
        lost();
        return;
    };
    let q = ev.as_mut_ptr();
    fill_flow(q, EV_FLOW_CLOSED, cause, k, e);
    if e.flags & CT_F_REPLY != 0 {
        // The reply's entry: its peer is the original tuple, and the original's translation
        // is the reply tuple reversed.
        // SAFETY: a reserved FlowEvent, written whole before submit.
        unsafe {
            (*q).key = e.peer;
            (*q).nat_saddr = k.daddr;
            (*q).nat_daddr = k.saddr;
            (*q).nat_sport = k.dport;
            (*q).nat_dport = k.sport;
        }
    }
    ev.submit(0);
}
