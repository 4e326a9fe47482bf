//! Connection tracking in a preallocated hash (NETD_CT): one entry per direction, linked through
//! `CtEntry::peer` (a peer counts only while it points back). Entries carry the NAT translation
//! of their direction, the TCP state and counters; the agent's garbage collector removes expired
//! pairs, and lookups here already ignore expired entries so a stale tuple can be reused at once
//! (its old owner is removed with it, so two flows never share a reply tuple).
//!
//! Under pressure, like Linux conntrack's early drop but oldest first: a flow is "unreplied"
//! until the other side answers, with a short timeout (`ct_unreplied_s`); new flows are also
//! remembered in creation order in NETD_CT_RING, and when NETD_CT is full a new flow evicts the
//! oldest remembered flow that is unreplied or finished (`ct_evictable`, counted
//! DROP_CT_EVICTED). A replied, live flow is never evicted; only when the ring offers no victim
//! within CT_EVICT_TRIES slots is the new flow refused (DROP_CT_FULL). The table stays a
//! preallocated hash (not an LRU): an LRU would evict established flows too, and would split
//! pairs. Its size is the agent's `--ct-max`. Eviction ([`make_room`]: `nat::WhenFull`) and the
//! ring write ([`remember_new`]) run from the programs' own frames, never under [`create`]:
//! from_container and [`create`] already use the whole 512-byte stack. `--ct-per-source-max`
//! ([`budget`]) limits the unanswered flows one outside source may open.
//!
//! TCP: SYN_SENT (also a flow picked up mid-stream) -> ESTABLISHED on the first answer ->
//! CLOSING (one FIN) -> TIME_WAIT (FINs both ways), or CLOSED on an RST, which must lie within
//! `CT_RST_WINDOW` of its sender's last sequence number (else DROP_TCP_RST_WINDOW). A finished
//! connection (TIME_WAIT, CLOSED) holds its tuples only until a new SYN wants them, as in Linux
//! conntrack: a SYN on its original tuple opens a fresh flow ([`lookup`] ignores the old one and
//! [`create`] replaces both entries), and a new flow (a SYN) may take over its reply tuple, in
//! the SNAT port search too ([`reply_free`]), removing the old owner's other entry.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST, bpf_sock_tuple},
    btf_maps::{HashMap, PerCpuArray},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
};
use netd_common::{
    CT_F_DNAT, CT_F_FIN, CT_F_REPLY, CT_F_SEEN_REPLY, CT_F_SNAT, CT_F_SRC_COUNTED, CT_F_TD_SEEN,
    CT_MAX_DEFAULT, CT_TCP_CLOSED, CT_TCP_CLOSING, CT_TCP_ESTABLISHED, CT_TCP_NONE,
    CT_TCP_SYN_RECV, CT_TCP_SYN_SENT, CT_TCP_TIME_WAIT, CtEntry, CtKey, DROP_MALFORMED,
    DROP_TCP_RST_WINDOW, DpConfig, IPPROTO_ICMP, IPPROTO_TCP, ct_reusable, ct_timeout_ns,
    seq_in_window,
};

use aya_ebpf::programs::TcContext;

use crate::parse::{ICMP_ECHO_REPLY, L4_ECHO, Pkt, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

pub mod budget;
mod evict;
use evict::evict_one;
pub use evict::remember_new;

#[btf_map]
static NETD_CT: HashMap<CtKey, CtEntry, { CT_MAX_DEFAULT as usize }> = HashMap::new();

/// Where [`create`] builds entries: a CtEntry is too big for the 512-byte stack it shares with
/// its callers. Per program instance, not pinned: it holds nothing between packets.
#[btf_map]
static NETD_CT_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// The entry being built and the reply tuple; the original key of the last flow created,
/// for the entry point to write into the ring ([`remember_new`]) where the stack is shallow.
pub struct Scratch {
    entry: CtEntry,
    reply: CtKey,
    new_key: CtKey,
    new_pending: u64,
    /// Entries [`create`] found to unlink (`unlink[i]` if its peer is still `unlink_back[i]`),
    /// removed by [`remember_new`] at the entry point: a call to [`remove_if_points_back`]
    /// under `create` is one more frame, and Linux 6.1 sums from_container + create + that
    /// frame (each rounded up to 32 bytes) to 544 of its 512-byte limit.
    unlink: [CtKey; 2],
    unlink_back: [CtKey; 2],
    unlink_pending: [u64; 2],
    /// The SNAT port search's socket lookup tuple ([`sock_tuple`]).
    sock: bpf_sock_tuple,
}

/// This CPU's buffer for a `bpf_sk_lookup_*` tuple: on the stack it would cost the SNAT port
/// search's leaf frame 48 bytes, and from_container's call chain has none to spare on Linux
/// 6.1 (it sums frames, each rounded up to 32 bytes, into the 512-byte limit).
#[inline(always)]
pub fn sock_tuple() -> Option<*mut bpf_sock_tuple> {
    let sc = NETD_CT_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; only the field's address is taken.
    Some(unsafe { core::ptr::addr_of_mut!((*sc).sock) })
}

/// Queues `remove_if_points_back(key, back)` in slot `i` for [`remember_new`].
#[inline(always)]
fn unlink_later(i: usize, key: &CtKey, back: &CtKey) {
    let Some(sc) = NETD_CT_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch slot; written through the raw pointer, disjoint from the
    // entry and reply fields the caller holds.
    unsafe {
        (*sc).unlink[i] = *key;
        (*sc).unlink_back[i] = *back;
        (*sc).unlink_pending[i] = 1;
    }
}

const EEXIST: i32 = 17;

/// Why a new flow could not be tracked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// The reply tuple belongs to another live flow.
    Clash,
    /// The map refused the insert (full of replied flows, or another error).
    Full,
}

/// The packet's tuple as seen at this hook.
#[inline(always)]
pub fn key(pkt: &Pkt) -> CtKey {
    CtKey::v4(pkt.saddr, pkt.daddr, pkt.sport, pkt.dport, pkt.proto)
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no arguments, no side effects.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn expired(e: &CtEntry, proto: u8, cfg: &DpConfig, now: u64) -> bool {
    let t = ct_timeout_ns(e, proto, cfg);
    t != 0 && now.saturating_sub(e.last_seen_ns) > t
}

/// The live entry for `k`, checked against the packet: an ICMP echo request only matches an
/// original-direction entry and an echo reply only a reply entry. A SYN opening a new
/// connection on the tuple of a finished one (TIME_WAIT or CLOSED, [`ct_reusable`]) matches
/// nothing: the caller then creates the flow afresh, replacing both of the old entries
/// ([`create`]), as Linux conntrack reopens such a tuple.
#[inline(always)]
pub fn lookup(k: &CtKey, pkt: &Pkt, cfg: &DpConfig, now: u64) -> Option<*mut CtEntry> {
    let p = lookup_key(k, cfg, now)?;
    // SAFETY: a valid map value; read without holding a reference across map updates.
    let e = unsafe { &*p };
    if pkt.kind == L4_ECHO && pkt.has_l4() {
        let is_reply_pkt = pkt.icmp_type == ICMP_ECHO_REPLY;
        if is_reply_pkt != (e.flags & CT_F_REPLY != 0) {
            return None;
        }
    }
    if opens(pkt) && e.flags & CT_F_REPLY == 0 && ct_reusable(e, k.proto) {
        return None;
    }
    Some(p)
}

/// Does `pkt` open a TCP connection (a SYN without ACK or RST)?
#[inline(always)]
pub fn opens(pkt: &Pkt) -> bool {
    pkt.proto == IPPROTO_TCP
        && pkt.has_l4()
        && pkt.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
}

/// May the new flow opened by `pkt` take over the tuple of entry `e` (held by another flow)?
/// When that flow is gone ([`stale`]), or `pkt` is a SYN and that TCP connection is over
/// ([`ct_reusable`]): the old owner's entries are then removed both ways.
#[inline(always)]
fn may_take(e: &CtEntry, k: &CtKey, pkt: &Pkt, cfg: &DpConfig, now: u64) -> bool {
    (opens(pkt) && ct_reusable(e, k.proto)) || stale(e, k, cfg, now)
}

/// Is the flow of entry `e` (keyed `k`) over? Only when neither direction was seen within its
/// timeout: each direction's `last_seen_ns` only moves with its own packets, and a flow whose
/// packets all go one way (a UDP stream, a container answering late) is alive as a whole. A
/// peer that does not point back at `k` belongs to another flow and keeps nothing alive.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the key by value would copy it onto the 512-byte BPF stack"
)]
fn stale(e: &CtEntry, k: &CtKey, cfg: &DpConfig, now: u64) -> bool {
    if !expired(e, k.proto, cfg, now) {
        return false;
    }
    match NETD_CT.get_ptr(&e.peer) {
        // SAFETY: a valid map value, read at once.
        Some(q) => {
            let q = unsafe { &*q };
            q.peer != *k || expired(q, k.proto, cfg, now)
        }
        None => true,
    }
}

/// The entry for `k`, live or not (the SNAT port search reads the translation a finished
/// flow had).
#[inline(always)]
pub fn entry(k: &CtKey) -> Option<*const CtEntry> {
    NETD_CT.get_ptr(k)
}

/// The live entry for `k`, whatever packet asks.
#[inline(always)]
pub fn lookup_key(k: &CtKey, cfg: &DpConfig, now: u64) -> Option<*mut CtEntry> {
    let p = NETD_CT.get_ptr_mut(k)?;
    // SAFETY: a valid map value; read without holding a reference across map updates.
    if stale(unsafe { &*p }, k, cfg, now) {
        return None;
    }
    Some(p)
}

/// The state a flow opened by `pkt` starts in. A segment that is not a SYN (a mid-stream ACK,
/// say after the agent flushed the table) starts unanswered like a SYN: only the other side's
/// answer makes it ESTABLISHED, so spoofed segments never get the long timeout.
#[inline(always)]
fn initial_tcp_state(pkt: &Pkt) -> u8 {
    if pkt.proto != IPPROTO_TCP {
        return CT_TCP_NONE;
    }
    let f = pkt.tcp_flags;
    if f & TCP_RST != 0 {
        CT_TCP_CLOSED
    } else if f & TCP_FIN != 0 {
        CT_TCP_CLOSING
    } else {
        CT_TCP_SYN_SENT
    }
}

/// The peer of `e` (keyed `k`), when it points back.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the key by value would copy it onto the 512-byte BPF stack"
)]
fn peer_of(e: &CtEntry, k: &CtKey) -> Option<*mut CtEntry> {
    let q = NETD_CT.get_ptr_mut(&e.peer)?;
    // SAFETY: a valid map value, read at once.
    if unsafe { (*q).peer != *k } {
        return None;
    }
    Some(q)
}

/// Accounts a packet to its entry `p` (keyed `k`): TCP state and window, "reply seen" (both
/// directions get state changes, so either entry tells the garbage collector the truth), last
/// seen and counters. An RST outside its sender's window changes nothing and is dropped. Not
/// inlined (see [`account`]).
#[inline(always)]
pub fn touch(p: *mut CtEntry, k: &CtKey, pkt: &Pkt, ctx: &TcContext, now: u64) -> Result<(), u32> {
    match account(p, k, pkt, ctx, now) {
        0 => Ok(()),
        r => Err(r),
    }
}

/// [`touch`] as a subprogram (at most five arguments, a plain return value): its three call
/// sites in from_container would otherwise each cost stack there. 0 or a drop reason.
#[inline(never)]
fn account(p: *mut CtEntry, k: &CtKey, pkt: &Pkt, ctx: &TcContext, now: u64) -> u32 {
    // SAFETY: a valid map value, read at once.
    if unsafe { (*p).flags } & CT_F_SRC_COUNTED != 0 {
        // Counted against its source's budget (`budget`): the answer takes it out, a packet
        // from the source in a later window counts it again (or is refused).
        let r = budget::packet(p, k, pkt, ctx, now);
        if r != 0 {
            return r;
        }
    }
    let len = ctx.len();
    if pkt.proto == IPPROTO_TCP {
        // The sequence number sits 4 bytes into the TCP header (parse checked the header).
        let seq = match ctx.load::<u32>(pkt.l4_off as usize + 4) {
            Ok(s) => u32::from_be(s),
            Err(_) => return DROP_MALFORMED,
        };
        // The acknowledgement number, 8 bytes in: what completes a handshake (SYN_RECV).
        let ack = match ctx.load::<u32>(pkt.l4_off as usize + 8) {
            Ok(a) => u32::from_be(a),
            Err(_) => return DROP_MALFORMED,
        };
        let r = tcp_update(p, k, pkt, seq, ack, now);
        if r != 0 {
            return r;
        }
    } else {
        // SAFETY: a valid map value; racing CPUs may lose an update, never memory safety.
        let e = unsafe { &mut *p };
        if e.flags & (CT_F_REPLY | CT_F_SEEN_REPLY) == CT_F_REPLY {
            e.flags |= CT_F_SEEN_REPLY;
            if let Some(q) = peer_of(e, k) {
                // SAFETY: as above.
                let q = unsafe { &mut *q };
                q.flags |= CT_F_SEEN_REPLY;
                q.last_seen_ns = now;
            }
        }
    }
    // SAFETY: as above.
    let e = unsafe { &mut *p };
    e.last_seen_ns = now;
    e.packets += 1;
    e.bytes += u64::from(len);
    0
}

/// The TCP half of [`touch`]: 0, or the drop reason for an RST outside the window. Moves both
/// entries through SYN_SENT -> SYN_RECV (the answer is a SYN-ACK) -> ESTABLISHED (the opener's
/// ACK; or at once when the first answer is no SYN-ACK: a flow picked up mid-stream) ->
/// CLOSING (one FIN) -> TIME_WAIT (FINs both ways), or CLOSED (RST). A SYN on a half-closed tuple starts over in
/// place; on a TIME_WAIT or CLOSED one it never gets here ([`lookup`]: a fresh flow).
#[inline(always)]
fn tcp_update(p: *mut CtEntry, k: &CtKey, pkt: &Pkt, seq: u32, ack: u32, now: u64) -> u32 {
    // SAFETY: a valid map value; racing CPUs may lose an update, never memory safety.
    let e = unsafe { &mut *p };
    let f = pkt.tcp_flags;
    if f & TCP_RST != 0 && e.flags & CT_F_TD_SEEN != 0 && !seq_in_window(seq, e.td_seq) {
        return DROP_TCP_RST_WINDOW;
    }
    let q = peer_of(e, k);
    // SAFETY: as above.
    let (peer_flags, peer_seq) = q.map_or((0, 0), |q| unsafe { ((*q).flags, (*q).td_seq) });
    let is_reply = e.flags & CT_F_REPLY != 0;
    let old = e.tcp_state;
    let mut clear = 0;
    let state = if f & TCP_RST != 0 {
        CT_TCP_CLOSED
    } else if f & TCP_SYN != 0
        && f & TCP_ACK == 0
        && !is_reply
        && (old == CT_TCP_CLOSING || old == CT_TCP_CLOSED || old == CT_TCP_TIME_WAIT)
    {
        // The tuple is reused by a new connection: the old FINs and the answer's sequence
        // numbers are history.
        clear = CT_F_FIN | CT_F_TD_SEEN;
        e.flags &= !CT_F_FIN;
        CT_TCP_SYN_SENT
    } else if f & TCP_FIN != 0 {
        e.flags |= CT_F_FIN;
        if peer_flags & CT_F_FIN != 0 {
            CT_TCP_TIME_WAIT
        } else if old < CT_TCP_CLOSING || old == CT_TCP_SYN_RECV {
            CT_TCP_CLOSING
        } else {
            old
        }
    } else if old == CT_TCP_SYN_SENT && is_reply {
        if f & TCP_SYN != 0 {
            CT_TCP_SYN_RECV
        } else {
            CT_TCP_ESTABLISHED
        }
    } else if old == CT_TCP_SYN_RECV && !is_reply && acknowledges(f, ack, peer_flags, peer_seq) {
        // The opener acknowledges the SYN-ACK's sequence number: it receives what is sent
        // to it (a blind spoofer's ACK does not, and leaves the flow unanswered).
        CT_TCP_ESTABLISHED
    } else {
        old
    };
    e.td_seq = seq;
    e.flags |= CT_F_TD_SEEN;
    let seen = is_reply && e.flags & CT_F_SEEN_REPLY == 0;
    if state == old && !seen && clear == 0 {
        return 0;
    }
    e.tcp_state = state;
    if is_reply {
        e.flags |= CT_F_SEEN_REPLY;
    }
    if let Some(q) = q {
        // SAFETY: as above.
        let q = unsafe { &mut *q };
        q.tcp_state = state;
        q.flags &= !clear;
        if is_reply {
            q.flags |= CT_F_SEEN_REPLY;
        }
        q.last_seen_ns = now;
    }
    0
}

/// Does a segment with TCP flags `f` and acknowledgement number `ack` acknowledge what the
/// other direction (its entry's `peer_flags` and last sequence number `peer_seq`) sent: an
/// ACK without SYN or RST whose number lies within [`seq_in_window`] of it? Then its sender
/// receives what is sent to it: the handshake is complete (SYN_RECV -> ESTABLISHED, and
/// `budget`'s answer). A SYN sent again, or an ACK sent blind, as a spoofer must, is not.
#[inline(always)]
fn acknowledges(f: u8, ack: u32, peer_flags: u16, peer_seq: u32) -> bool {
    f & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_ACK
        && peer_flags & CT_F_TD_SEEN != 0
        && seq_in_window(ack, peer_seq)
}

/// Everything a new flow's pair of entries needs besides its tuples (one argument, so that
/// [`create`] stays a BPF subprogram: at most five arguments).
pub struct NewFlow<'a> {
    /// `CT_F_*` kind flags for both entries (MASQ, PUBLISHED, HAIRPIN, LINK); the NAT and
    /// direction flags are derived.
    pub flags: u16,
    pub binding_id: u32,
    /// Where the original direction is delivered after translation (0 = unknown).
    pub fwd_ifindex: u32,
    /// Where the reply direction is delivered after translation (0 = unknown).
    pub rev_ifindex: u32,
    pub pkt: &'a Pkt,
    /// Frame length of the packet opening the flow.
    pub len: u32,
    pub cfg: &'a DpConfig,
    pub now: u64,
    /// With CT_F_SRC_COUNTED in `flags`: the budget window the flow is counted in
    /// ([`budget::admit`]); else 0.
    pub src_window: u32,
}

/// Tracks a new flow whose packets `k` become `t` after translation: inserts the reply entry
/// (keyed by `t` reversed) without replacing a live flow's, then the original one, evicting an
/// unreplied flow when the table is full, and remembers the flow in NETD_CT_RING. Not inlined:
/// its entry buffer would otherwise be duplicated on the stack at every call site.
#[inline(never)]
pub fn create(k: &CtKey, t: &CtKey, f: &NewFlow) -> Result<(), CreateError> {
    let Some(sc) = NETD_CT_SCRATCH.get_ptr_mut(0) else {
        return Err(CreateError::Full);
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU meanwhile.
    let sc = unsafe { &mut *sc };
    set_reversed(&mut sc.reply, t);
    let r = &sc.reply;
    let e = &mut sc.entry;
    let mut nat = 0;
    if t.saddr[0] != k.saddr[0] || t.sport != k.sport {
        nat |= CT_F_SNAT;
    }
    // An ICMP echo id stands in both port fields; changing it is a source translation.
    if t.daddr[0] != k.daddr[0] || (t.dport != k.dport && k.proto != IPPROTO_ICMP) {
        nat |= CT_F_DNAT;
    }
    // The reply undoes what the original direction does.
    let mut rev_nat = 0;
    if nat & CT_F_SNAT != 0 {
        rev_nat |= CT_F_DNAT;
    }
    if nat & CT_F_DNAT != 0 {
        rev_nat |= CT_F_SNAT;
    }
    e.nat_saddr = k.daddr;
    e.nat_daddr = k.saddr;
    e.nat_sport = k.dport;
    e.nat_dport = k.sport;
    e.flags = f.flags | rev_nat | CT_F_REPLY;
    e.tcp_state = initial_tcp_state(f.pkt);
    e._pad = 0;
    e.td_seq = 0;
    e.src_window = f.src_window;
    e.binding_id = f.binding_id;
    e.ifindex = f.rev_ifindex;
    e.last_seen_ns = f.now;
    e.created_ns = f.now;
    e.packets = 0;
    e.bytes = 0;
    e.peer = *k;
    insert_reply(r, e, k, f)?;

    // A stale original entry may still point at another reply tuple: drop that one (if it
    // is still ours).
    if let Some(old) = NETD_CT.get_ptr(k) {
        // SAFETY: a valid map value; its peer key is read in place.
        let old_peer = unsafe { &(*old).peer };
        if *old_peer != *r {
            unlink_later(0, old_peer, k);
        }
    }
    e.nat_saddr = t.saddr;
    e.nat_daddr = t.daddr;
    e.nat_sport = t.sport;
    e.nat_dport = t.dport;
    e.flags = f.flags | nat;
    e.ifindex = f.fwd_ifindex;
    e.packets = 1;
    e.bytes = u64::from(f.len);
    if f.pkt.proto == IPPROTO_TCP && f.pkt.tcp_flags & TCP_FIN != 0 {
        e.flags |= CT_F_FIN;
    }
    e.peer = *r;
    if insert(k, e, u64::from(BPF_ANY)) != 0 {
        let _ = NETD_CT.remove(r);
        return Err(CreateError::Full);
    }
    sc.new_key = *k;
    sc.new_pending = 1;
    Ok(())
}

/// `dst = t.reversed()`, field by field into `dst` (a map value): `reversed()` builds the key
/// on the caller's frame first, and Linux 6.1 sums frames (each rounded up to 32 bytes) into
/// one 512-byte limit, which from_container -> create -> remove_if_points_back reaches.
#[inline(always)]
fn set_reversed(dst: &mut CtKey, t: &CtKey) {
    dst.saddr = t.daddr;
    dst.daddr = t.saddr;
    dst.sport = t.dport;
    dst.dport = t.sport;
    dst.proto = t.proto;
    dst.family = t.family;
    dst._pad = t._pad;
}

/// [`reply_free`]: nobody holds the reply tuple, or `k`'s own (earlier) flow, or a flow that
/// is gone.
pub const REPLY_FREE: u32 = 1;
/// [`reply_free`]: another connection that is over holds it; a SYN may take it over.
pub const REPLY_RECLAIMABLE: u32 = 2;

/// Would [`create`] take `t`'s reply tuple for the flow `k` opened by `f.pkt` (no clash)?
/// [`REPLY_FREE`] when no entry holds it, or the one there is `k`'s own or stale;
/// [`REPLY_RECLAIMABLE`] when it is another, finished TCP connection's and `f.pkt` is a SYN
/// ([`may_take`]): usable, but the remote end may still hold that connection in TIME_WAIT and
/// refuse a SYN whose sequence number is below the old one's (a client that reuses its own
/// tuple sends increasing ones); else 0. The reversed tuple is built in the scratch slot, off
/// the caller's stack.
#[inline(never)]
pub fn reply_free(k: &CtKey, t: &CtKey, f: &NewFlow) -> u32 {
    let Some(sc) = NETD_CT_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU meanwhile.
    let sc = unsafe { &mut *sc };
    set_reversed(&mut sc.reply, t);
    let r = &sc.reply;
    match NETD_CT.get_ptr(r) {
        None => REPLY_FREE,
        // SAFETY: a valid map value, read at once.
        Some(old) => {
            let old = unsafe { &*old };
            if old.peer == *k || stale(old, r, f.cfg, f.now) {
                REPLY_FREE
            } else if opens(f.pkt) && ct_reusable(old, r.proto) {
                REPLY_RECLAIMABLE
            } else {
                0
            }
        }
    }
}

/// Removes the entry keyed `key` if its peer is `back` (it is the other half of `back`'s
/// flow, not of a newer one that reused the tuple).
#[inline(never)]
fn remove_if_points_back(key: &CtKey, back: &CtKey) {
    if let Some(q) = NETD_CT.get_ptr(key)
        // SAFETY: a valid map value, read at once.
        && unsafe { (*q).peer == *back }
    {
        let _ = NETD_CT.remove(key);
    }
}

/// Inserts `k` -> `e`; 0 or the map's error (-E2BIG when full: the caller of [`create`] then
/// makes room with [`make_room`], where the stack is shallow).
#[inline(always)]
fn insert(k: &CtKey, e: &CtEntry, flags: u64) -> i32 {
    match NETD_CT.insert(k, e, flags) {
        Ok(()) => 0,
        Err(err) => err,
    }
}

#[inline(always)]
fn insert_reply(r: &CtKey, e: &CtEntry, k: &CtKey, f: &NewFlow) -> Result<(), CreateError> {
    match insert(r, e, u64::from(BPF_NOEXIST)) {
        0 => Ok(()),
        err if err == -EEXIST => {
            // Ours (the original entry was removed) or expired: take it over.
            let Some(old) = NETD_CT.get_ptr(r) else {
                return Err(CreateError::Clash);
            };
            // SAFETY: a valid map value, read at once.
            let old = unsafe { &*old };
            if old.peer != *k {
                if !may_take(old, r, f.pkt, f.cfg, f.now) {
                    return Err(CreateError::Clash);
                }
                // The old owner's original entry would keep translating into this tuple,
                // and its replies would now reach the new flow: it goes.
                unlink_later(1, &old.peer, r);
            }
            NETD_CT
                .insert(r, e, u64::from(BPF_ANY))
                .map_err(|_| CreateError::Full)
        }
        _ => Err(CreateError::Full),
    }
}

/// Makes room in a full NETD_CT for a new flow the program just failed to track: evicts one
/// flow. True when it did (the caller then tries the packet again).
#[inline(always)]
pub fn make_room() -> bool {
    match crate::maps::config() {
        Some(cfg) => evict_one(cfg, now()),
        None => false,
    }
}
