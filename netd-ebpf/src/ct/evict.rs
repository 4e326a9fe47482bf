//! The ring of recently created flows (NETD_CT_RING) and eviction from it when NETD_CT is
//! full: [`remember_new`] writes a new flow at the ring's head, [`evict_one`] (called by
//! [`super::make_room`]) evicts the oldest flow that may go (see the parent module's doc).
//! `make_room` stays in the parent module: moved here, the verifier's count for to_uplink6
//! changed (LLVM laid out its stack slots in another order).

use core::{ffi::c_void, num::NonZeroU64, ptr::addr_of_mut};

use aya_ebpf::{btf_maps::Array, helpers::generated::bpf_loop, macros::btf_map};
use netd_common::{
    CT_F_SRC_COUNTED, CT_MAX_DEFAULT, CtRingPos, CtRingSlot, DROP_CT_EVICTED, DpConfig,
    ct_evictable,
};

use super::{NETD_CT, NETD_CT_SCRATCH, remove_if_points_back, stale};
use crate::counters;

/// Recently created flows, oldest first from the tail (see the module doc). The agent sizes it
/// to a slot per flow NETD_CT can hold and writes the size into `DpConfig::ct_ring_slots`.
#[btf_map]
static NETD_CT_RING: Array<CtRingSlot, { CT_MAX_DEFAULT as usize / 2 }> = Array::new();

#[btf_map]
static NETD_CT_RING_POS: Array<CtRingPos, 1> = Array::new();

/// Ring slots looked at to find an eviction victim for one new flow.
const CT_EVICT_TRIES: u32 = 32;

/// Writes the flow the program just created (if any) at the ring's head. Called by the entry
/// points after the program's body, outside its deep stack.
#[inline(always)]
pub fn remember_new() {
    let Some(sc) = NETD_CT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot.
    let sc = unsafe { &mut *sc };
    for i in 0..2 {
        if sc.unlink_pending[i] != 0 {
            sc.unlink_pending[i] = 0;
            remove_if_points_back(&sc.unlink[i], &sc.unlink_back[i]);
        }
    }
    if sc.new_pending == 0 {
        return;
    }
    sc.new_pending = 0;
    if sc.entry.flags & CT_F_SRC_COUNTED != 0 {
        // A flow from outside `budget::admit` let in: its source's count goes up now that
        // it is tracked.
        super::budget::count_new(&sc.new_key.saddr, sc.entry.src_window);
    }
    crate::monitor::flow_new(&sc.new_key, &sc.entry);
    let Some(cfg) = crate::maps::config() else {
        return;
    };
    let Some(n) = NonZeroU64::new(u64::from(cfg.ct_ring_slots)) else {
        return;
    };
    let Some(pos) = NETD_CT_RING_POS.get_ptr_mut(0) else {
        return;
    };
    // The slot is claimed with an atomic add (BPF_ATOMIC_FETCH_ADD, Linux 5.12): CPUs creating
    // flows at once each get their own slot. (A plain read and write of `head` let two CPUs
    // write the same slot and advance the head once: one of the new flows was never in the
    // ring, and never evicted.)
    // SAFETY: a valid, 8-byte aligned map value field, accessed atomically by every CPU.
    let head = unsafe { fetch_add(addr_of_mut!((*pos).head), 1) };
    let Some(slot) = NETD_CT_RING.get_ptr_mut((head % n) as u32) else {
        return;
    };
    // SAFETY: a valid map value; this CPU's slot until the ring wraps.
    let slot = unsafe { &mut *slot };
    slot.key = sc.new_key;
    slot.created_ns = sc.entry.created_ns;
    // The tail trails the head by at most the ring's size: the slots below `head + 1 - n`
    // now hold newer flows. It moves forward by compare-and-exchange from the value read,
    // never by a plain write, which could undo a claim [`evict_step`] made meanwhile (and have
    // a slot scanned twice); when the exchange fails another CPU moved it first, and
    // [`evict_one`] catches it up the same way.
    // SAFETY: as above.
    unsafe { catch_up(addr_of_mut!((*pos).tail), head + 1, n.get()) };
}

/// Moves the tail at `tail` up to `head - slots` (the oldest slot still holding its flow)
/// when it is further behind: one compare-and-exchange, which fails only when another CPU
/// moved it since it was read (forward: tails only move forward, see [`evict_step`]).
///
/// # Safety
/// `tail` must be a valid, 8-byte aligned pointer into a map value.
#[inline(always)]
unsafe fn catch_up(tail: *mut u64, head: u64, slots: u64) {
    // SAFETY: the caller's pointer; an aligned 8-byte load is atomic.
    let t = unsafe { core::ptr::read_volatile(tail) };
    if t + slots < head {
        // SAFETY: as above.
        unsafe { cmpxchg(tail, t, head - slots) };
    }
}

/// `*p += v` atomically, returning the old value: BPF_ATOMIC | BPF_FETCH (Linux 5.12), written
/// as assembly because bpf-linker's generic CPU (v1) refuses a fetching atomic add from LLVM
/// (core's AtomicU64 has no fetch_add on bpfel either), while the verifier accepts it for any
/// program.
///
/// # Safety
/// `p` must be a valid, 8-byte aligned pointer into a map value.
#[inline(always)]
pub(super) unsafe fn fetch_add(p: *mut u64, v: u64) -> u64 {
    let mut r = v;
    // SAFETY: the caller's pointer; the instruction reads and writes only `*p`.
    unsafe {
        core::arch::asm!(
            "{r} = atomic_fetch_add((u64 *)({p} + 0), {r})",
            p = in(reg) p,
            r = inout(reg) r,
            options(nostack),
        );
    }
    r
}

/// `if *p == old { *p = new }` atomically, returning what `*p` held: BPF_ATOMIC | BPF_CMPXCHG
/// (Linux 5.12), assembly for the same reason as [`fetch_add`].
///
/// # Safety
/// `p` must be a valid, 8-byte aligned pointer into a map value.
#[inline(always)]
pub(super) unsafe fn cmpxchg(p: *mut u64, old: u64, new: u64) -> u64 {
    let mut r0 = old;
    // SAFETY: the caller's pointer; the instruction reads and writes only `*p` (and r0).
    unsafe {
        core::arch::asm!(
            "r0 = cmpxchg_64({p} + 0, r0, {new})",
            p = in(reg) p,
            new = in(reg) new,
            inout("r0") r0,
            options(nostack),
        );
    }
    r0
}

/// What [`evict_step`] works on, on [`evict_one`]'s stack.
#[repr(C)]
struct Evict {
    head: u64,
    slots: u64,
    now: u64,
    cfg: *const DpConfig,
    /// The ring's positions (NETD_CT_RING_POS[0]).
    pos: *mut CtRingPos,
    found: u64,
}

/// Evicts the oldest flow of the ring that may go (unreplied, finished or expired), looking at
/// most CT_EVICT_TRIES slots from the tail; flows it passes over (replied and live, or gone)
/// leave the ring. Counts the eviction; false when there was none. The scan runs in
/// `bpf_loop`, so the verifier walks its body once rather than once per slot and call site.
#[inline(never)]
pub(super) fn evict_one(cfg: &DpConfig, now: u64) -> bool {
    let slots = u64::from(cfg.ct_ring_slots);
    let Some(pos) = NETD_CT_RING_POS.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a valid map value; both positions are only changed atomically.
    let head = unsafe { core::ptr::read_volatile(addr_of_mut!((*pos).head)) };
    // SAFETY: as above.
    unsafe { catch_up(addr_of_mut!((*pos).tail), head, slots) };
    let mut ev = Evict {
        head,
        slots,
        now,
        cfg,
        pos,
        found: 0,
    };
    // SAFETY: evict_step has the callback signature bpf_loop expects and only reads `ev`
    // through the pointer it is given, for the duration of the call.
    unsafe {
        bpf_loop(
            CT_EVICT_TRIES,
            evict_step as *mut c_void,
            (&mut ev as *mut Evict).cast(),
            0,
        )
    };
    if ev.found != 0 {
        counters::count_drop(DROP_CT_EVICTED);
    }
    ev.found != 0
}

/// One slot of [`evict_one`]'s scan: 1 stops the loop. The slot is claimed with an atomic
/// add on the tail, so CPUs evicting at once each look at their own slots: two never take
/// the same victim (both counting an eviction, one of them making no room) and a slot is
/// never looked at twice (a plain write of the tail could move it back over slots another
/// CPU had claimed). A claim at or past the head is given back (the tail never passes the
/// head for long: a flow written there meanwhile keeps its place), and a claim of a slot a
/// newer flow overwrote is skipped.
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the key by value would copy it onto the 512-byte BPF stack"
)]
extern "C" fn evict_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes evict_one's `Evict` back.
    let ev = unsafe { &mut *ctx.cast::<Evict>() };
    let Some(n) = NonZeroU64::new(ev.slots) else {
        return 1;
    };
    // SAFETY: `pos` is NETD_CT_RING_POS's value (a map value pointer kept on evict_one's
    // stack); its tail is 8-byte aligned and only changed atomically.
    let tail = unsafe { addr_of_mut!((*ev.pos).tail) };
    // SAFETY: as above.
    let t = unsafe { fetch_add(tail, 1) };
    if t >= ev.head {
        // SAFETY: as above; adding 2^64 - 1 takes the claim back.
        unsafe { fetch_add(tail, u64::MAX) };
        return 1;
    }
    if t + n.get() < ev.head {
        return 0;
    }
    let Some(slot) = NETD_CT_RING.get_ptr((t % n) as u32) else {
        return 1;
    };
    // SAFETY: a valid map value.
    let slot = unsafe { &*slot };
    let Some(p) = NETD_CT.get_ptr(&slot.key) else {
        return 0;
    };
    // SAFETY: a valid map value, read at once; `cfg` is the config map's value.
    let (e, cfg) = unsafe { (&*p, &*ev.cfg) };
    if e.created_ns != slot.created_ns
        || !ct_evictable(e, slot.key.proto) && !stale(e, &slot.key, cfg, ev.now)
    {
        return 0;
    }
    // The peer first, while this entry (holding its key) is still in the map.
    remove_if_points_back(&e.peer, &slot.key);
    // Only the CPU whose delete succeeds made the room: two CPUs can read the same flow from
    // one slot (one claimed index t and stalled while the ring wrapped, the other claimed t+n
    // and read the slot's newer flow), and the second one's delete finds nothing.
    if NETD_CT.remove(&slot.key).is_err() {
        return 0;
    }
    ev.found = 1;
    1
}
