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
use netd_common::{DropEvent, EV_DROP, EVENT_HEAD_MAX, EVENTS_RING_BYTES, HOOK_XDP};

#[btf_map]
static NETD_EVENTS: RingBuf<DropEvent, { EVENTS_RING_BYTES as usize }> = RingBuf::new();

/// Index 0: non-zero while a monitor client is connected (set by the daemon).
#[btf_map]
static NETD_MONITOR: Array<u32, 1> = Array::new();

/// Index 0: events lost to a full ring.
#[btf_map]
static NETD_MONITOR_LOST: PerCpuArray<u64, 1> = PerCpuArray::new();

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
