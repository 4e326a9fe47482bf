//! Connection tracking in a preallocated hash (NETD_CT): one entry per direction, linked through
//! `CtEntry::peer`. Entries carry the NAT translation of their direction, the TCP state and
//! counters; the agent's garbage collector removes expired pairs, and lookups here already
//! ignore expired entries so a stale tuple can be reused at once. Not an LRU: a full table
//! refuses new flows (DROP_CT_FULL) instead of evicting established ones, so a flood of new
//! connections cannot break live ones. Its size is the agent's `--ct-max`.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    btf_maps::{HashMap, PerCpuArray},
    helpers::bpf_ktime_get_ns,
    macros::btf_map,
};
use netd_common::{
    CT_F_DNAT, CT_F_REPLY, CT_F_SEEN_REPLY, CT_F_SNAT, CT_MAX_DEFAULT, CT_TCP_CLOSED,
    CT_TCP_CLOSING, CT_TCP_ESTABLISHED, CT_TCP_NONE, CT_TCP_SYN_SENT, CtEntry, CtKey, DpConfig,
    IPPROTO_ICMP, IPPROTO_TCP, ct_timeout_ns,
};

use crate::parse::{ICMP_ECHO_REPLY, L4_ECHO, Pkt, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

#[btf_map]
static NETD_CT: HashMap<CtKey, CtEntry, { CT_MAX_DEFAULT as usize }> = HashMap::new();

/// Where [`create`] builds entries: a CtEntry is too big for the 512-byte stack it shares with
/// its callers. Per program instance, not pinned: it holds nothing between packets.
#[btf_map]
static NETD_CT_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// The entry being built and the reply tuple.
pub struct Scratch {
    entry: CtEntry,
    reply: CtKey,
}

const EEXIST: i32 = 17;

/// Why a new flow could not be tracked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CreateError {
    /// The reply tuple belongs to another live flow.
    Clash,
    /// The map refused the insert (full).
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
/// original-direction entry and an echo reply only a reply entry.
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
    Some(p)
}

/// Is the flow of entry `e` over? Only when neither direction was seen within its timeout:
/// each direction's `last_seen_ns` only moves with its own packets, and a flow whose packets
/// all go one way (a UDP stream, a container answering late) is alive as a whole.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the key by value would copy it onto the 512-byte BPF stack"
)]
fn stale(e: &CtEntry, proto: u8, cfg: &DpConfig, now: u64) -> bool {
    if !expired(e, proto, cfg, now) {
        return false;
    }
    match NETD_CT.get_ptr(&e.peer) {
        // SAFETY: a valid map value, read at once.
        Some(q) => expired(unsafe { &*q }, proto, cfg, now),
        None => true,
    }
}

/// The live entry for `k`, whatever packet asks.
#[inline(always)]
pub fn lookup_key(k: &CtKey, cfg: &DpConfig, now: u64) -> Option<*mut CtEntry> {
    let p = NETD_CT.get_ptr_mut(k)?;
    // SAFETY: a valid map value; read without holding a reference across map updates.
    if stale(unsafe { &*p }, k.proto, cfg, now) {
        return None;
    }
    Some(p)
}

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
    } else if f & TCP_SYN != 0 && f & TCP_ACK == 0 {
        CT_TCP_SYN_SENT
    } else {
        // Picked up mid-stream (e.g. after the agent flushed the table): loose, like
        // nf_conntrack_tcp_loose.
        CT_TCP_ESTABLISHED
    }
}

#[inline(always)]
fn next_tcp_state(old: u8, flags: u8, is_reply: bool) -> u8 {
    if flags & TCP_RST != 0 {
        CT_TCP_CLOSED
    } else if flags & TCP_SYN != 0
        && flags & TCP_ACK == 0
        && !is_reply
        && (old == CT_TCP_CLOSING || old == CT_TCP_CLOSED)
    {
        // The tuple is reused by a new connection.
        CT_TCP_SYN_SENT
    } else if flags & TCP_FIN != 0 && old < CT_TCP_CLOSING {
        CT_TCP_CLOSING
    } else if old == CT_TCP_SYN_SENT && is_reply {
        CT_TCP_ESTABLISHED
    } else {
        old
    }
}

/// Accounts a packet to its entry: last seen, counters, TCP state and "reply seen" (both
/// directions get state changes, so either entry tells the garbage collector the truth).
#[inline(always)]
pub fn touch(p: *mut CtEntry, pkt: &Pkt, len: u32, now: u64) {
    // SAFETY: a valid map value; racing CPUs may lose a counter update, never memory safety.
    let e = unsafe { &mut *p };
    e.last_seen_ns = now;
    e.packets += 1;
    e.bytes += u64::from(len);
    let is_reply = e.flags & CT_F_REPLY != 0;
    let old = e.tcp_state;
    let state = if pkt.proto == IPPROTO_TCP {
        next_tcp_state(old, pkt.tcp_flags, is_reply)
    } else {
        old
    };
    let seen = is_reply && e.flags & CT_F_SEEN_REPLY == 0;
    if state == old && !seen {
        return;
    }
    e.tcp_state = state;
    if is_reply {
        e.flags |= CT_F_SEEN_REPLY;
    }
    let peer = e.peer;
    if let Some(q) = NETD_CT.get_ptr_mut(peer) {
        // SAFETY: as above.
        let q = unsafe { &mut *q };
        q.tcp_state = state;
        if is_reply {
            q.flags |= CT_F_SEEN_REPLY;
        }
        q.last_seen_ns = now;
    }
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
}

/// Tracks a new flow whose packets `k` become `t` after translation: inserts the reply entry
/// (keyed by `t` reversed) without replacing a live flow's, then the original one. Not inlined:
/// its entry buffer would otherwise be duplicated on the stack at every call site.
#[inline(never)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing keys by value would copy them onto the 512-byte BPF stack"
)]
pub fn create(k: &CtKey, t: &CtKey, f: &NewFlow) -> Result<(), CreateError> {
    let (pkt, len, cfg, now) = (f.pkt, f.len, f.cfg, f.now);
    let Some(sc) = NETD_CT_SCRATCH.get_ptr_mut(0) else {
        return Err(CreateError::Full);
    };
    // SAFETY: this CPU's scratch slot; nothing else runs on this CPU meanwhile.
    let sc = unsafe { &mut *sc };
    sc.reply = t.reversed();
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
    e.tcp_state = initial_tcp_state(pkt);
    e._pad = 0;
    e.binding_id = f.binding_id;
    e.ifindex = f.rev_ifindex;
    e.last_seen_ns = now;
    e.created_ns = now;
    e.packets = 0;
    e.bytes = 0;
    e.peer = *k;
    insert_reply(r, e, k, pkt.proto, cfg, now)?;

    // A stale original entry may still point at another reply tuple: drop that one.
    if let Some(old) = NETD_CT.get_ptr(k) {
        // SAFETY: a valid map value; the key is copied into the scratch entry at once.
        e.peer = unsafe { (*old).peer };
        if e.peer != *r {
            let _ = NETD_CT.remove(&e.peer);
        }
    }
    e.nat_saddr = t.saddr;
    e.nat_daddr = t.daddr;
    e.nat_sport = t.sport;
    e.nat_dport = t.dport;
    e.flags = f.flags | nat;
    e.ifindex = f.fwd_ifindex;
    e.packets = 1;
    e.bytes = u64::from(len);
    e.peer = *r;
    if NETD_CT.insert(k, &*e, u64::from(BPF_ANY)).is_err() {
        let _ = NETD_CT.remove(r);
        return Err(CreateError::Full);
    }
    Ok(())
}

#[inline(always)]
fn insert_reply(
    r: &CtKey,
    e: &CtEntry,
    k: &CtKey,
    proto: u8,
    cfg: &DpConfig,
    now: u64,
) -> Result<(), CreateError> {
    match NETD_CT.insert(r, e, u64::from(BPF_NOEXIST)) {
        Ok(()) => Ok(()),
        Err(err) if err == -EEXIST => {
            // Ours (the original entry was removed) or expired: take it over.
            let Some(old) = NETD_CT.get_ptr(r) else {
                return Err(CreateError::Clash);
            };
            // SAFETY: a valid map value, read at once.
            let old = unsafe { &*old };
            if old.peer != *k && !stale(old, proto, cfg, now) {
                return Err(CreateError::Clash);
            }
            NETD_CT
                .insert(r, e, u64::from(BPF_ANY))
                .map_err(|_| CreateError::Full)
        }
        Err(_) => Err(CreateError::Full),
    }
}
