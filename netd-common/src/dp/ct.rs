//! Connection tracking: NETD_CT's [`CtKey`]/[`CtEntry`], the TCP states, the idle timeouts and
//! the creation-order ring eviction uses.

use bytemuck::{Pod, Zeroable};

use super::{AF_INET, DpConfig, IPPROTO_TCP, IPPROTO_UDP};

/// `HashMap<CtKey, CtEntry>` (preallocated, `--ct-max` entries): connection tracking and NAT
/// state, both directions.
pub const MAP_CT: &str = "NETD_CT";
/// `Array<u32, CtRingSlot>` with [`DpConfig::ct_ring_slots`] slots: the most recently created
/// flows, oldest first from [`CtRingPos::tail`]. Candidates for eviction when NETD_CT is full:
/// a BPF hash cannot be scanned per bucket like Linux's early drop, so new flows are remembered
/// here in creation order and the oldest one that is still unreplied goes first.
pub const MAP_CT_RING: &str = "NETD_CT_RING";
/// `Array<u32, CtRingPos>`, one entry: the ring's head and tail.
pub const MAP_CT_RING_POS: &str = "NETD_CT_RING_POS";
/// `LruHash<[u32; 4], CtSrc>` ([`CT_SRC_MAX`] entries): `--ct-per-source-max`'s count of
/// unreplied flows per outside source address (IPv4 in word 0, as [`CtKey`] holds it).
pub const MAP_CT_SRC: &str = "NETD_CT_SRC";
/// Sources NETD_CT_SRC remembers (an LRU: a source that opens flows stays recent).
pub const CT_SRC_MAX: u32 = 65_536;

pub const CT_MAX_DEFAULT: u32 = 262_144;

/// A flow as seen in one direction. For ICMP echo, sport and dport both hold the echo id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct CtKey {
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
    /// Network byte order.
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// AF_INET or AF_INET6.
    pub family: u8,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<CtKey>() == 40);

impl CtKey {
    #[inline(always)]
    pub fn v4(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> Self {
        CtKey {
            saddr: [saddr, 0, 0, 0],
            daddr: [daddr, 0, 0, 0],
            sport,
            dport,
            proto,
            family: AF_INET,
            _pad: 0,
        }
    }

    /// The same flow seen from the other end.
    #[inline(always)]
    pub fn reversed(&self) -> Self {
        CtKey {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

/// This direction's destination is rewritten (published port; reply of a masqueraded flow).
pub const CT_F_DNAT: u16 = 1 << 0;
/// This direction's source is rewritten (masquerade; reply of a published-port flow).
pub const CT_F_SNAT: u16 = 1 << 1;
/// This entry is the reply direction of its flow.
pub const CT_F_REPLY: u16 = 1 << 2;
/// A reply has been seen (the flow is bidirectional).
pub const CT_F_SEEN_REPLY: u16 = 1 << 3;
/// Allowed by a `--link` rule under `--icc false`.
pub const CT_F_LINK: u16 = 1 << 4;
/// Hairpin: a container reached a published port through a host address.
pub const CT_F_HAIRPIN: u16 = 1 << 5;
/// Masquerade flow (container -> outside).
pub const CT_F_MASQ: u16 = 1 << 6;
/// Published-port flow (outside or hairpin -> container).
pub const CT_F_PUBLISHED: u16 = 1 << 7;
/// This direction has sent a FIN.
pub const CT_F_FIN: u16 = 1 << 8;
/// [`CtEntry::td_seq`] holds a sequence number this direction sent.
pub const CT_F_TD_SEEN: u16 = 1 << 9;
/// The flow counts against its outside source's budget (`--ct-per-source-max`, NETD_CT_SRC)
/// in the window [`CtEntry::src_window`] names; cleared on both entries by the first reply.
pub const CT_F_SRC_COUNTED: u16 = 1 << 10;

pub const CT_TCP_NONE: u8 = 0;
/// Opened (a SYN, or a segment picked up mid-stream) and not answered yet.
pub const CT_TCP_SYN_SENT: u8 = 1;
pub const CT_TCP_ESTABLISHED: u8 = 2;
/// One side sent a FIN (Linux's fin_wait / close_wait): the other may still send for long.
pub const CT_TCP_CLOSING: u8 = 3;
/// An in-window RST ended the connection.
pub const CT_TCP_CLOSED: u8 = 4;
/// Both sides sent a FIN.
pub const CT_TCP_TIME_WAIT: u8 = 5;
/// The other side answered a SYN with a SYN-ACK and the opener has not acknowledged it yet
/// (Linux's SYN_RECV): not answered for eviction and timeouts ([`ct_answered`]), since a server
/// answers spoofed SYNs too; the opener's ACK makes it ESTABLISHED.
pub const CT_TCP_SYN_RECV: u8 = 6;

/// An RST is believed only when its sequence number lies within this distance of the last
/// one its sender used (what the receiver's window could hold; one GSO/BIG TCP segment ahead,
/// retransmissions behind). A blind spoofer must guess within 2 * 2^22 of 2^32.
pub const CT_RST_WINDOW: u32 = 1 << 22;

/// Does `seq` (host order) lie within [`CT_RST_WINDOW`] of `last` (wrapping)?
#[inline(always)]
pub fn seq_in_window(seq: u32, last: u32) -> bool {
    let d = seq.wrapping_sub(last) as i32;
    d.unsigned_abs() <= CT_RST_WINDOW
}

/// NETD_CT's value, layout version [`CT_LAYOUT_VERSION`]. Version 2 puts the fields every
/// packet writes (last_seen_ns, the counters, td_seq, flags, tcp_state) first and the ones set
/// once at creation after them; version 1 (netd up to 4521f4f) is
/// [`crate::layouts::CtEntryV1`], migrated at start-up (the kernel's key and value sizes are
/// the same, so only the version in the pin name tells them apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtEntry {
    /// bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the last packet.
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// TCP: the last sequence number this direction sent (host order), valid with
    /// [`CT_F_TD_SEEN`]; an RST must be near it ([`seq_in_window`]).
    pub td_seq: u32,
    /// `CT_F_*`.
    pub flags: u16,
    /// `CT_TCP_*` (TCP only).
    pub tcp_state: u8,
    pub _pad: u8,
    /// The tuple after translation: what the packet's addresses and ports become (equal to
    /// the key's where nothing changes). Network byte order.
    pub nat_saddr: [u32; 4],
    pub nat_daddr: [u32; 4],
    pub nat_sport: u16,
    pub nat_dport: u16,
    /// Published-port binding this flow uses (0 = none): NETD_PORT_STATS key.
    pub binding_id: u32,
    /// Where packets of this direction are delivered after translation, when known (the
    /// container's host-side veth): lets a program redirect without a route lookup.
    pub ifindex: u32,
    /// With [`CT_F_SRC_COUNTED`]: the budget window the flow was last counted in
    /// ([`ct_src_window`] of its source's [`CtSrc::window_start_ns`]); 0 otherwise. (Was
    /// padding, always 0: entries of older netds carry no flag and need no conversion.)
    pub src_window: u32,
    pub created_ns: u64,
    /// The other direction's key, so both go together (GC, detach).
    pub peer: CtKey,
}
/// Layout version of [`CtEntry`] (and so of NETD_CT): bump it with every change of the type,
/// and add the previous layout and its conversion to [`crate::layouts`].
pub const CT_LAYOUT_VERSION: u32 = 2;
const _: () = assert!(core::mem::size_of::<CtEntry>() == 128);

/// A flow in NETD_CT_RING: its original-direction key and when it was created (a slot whose
/// key now names a newer flow of the same tuple is stale).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtRingSlot {
    pub key: CtKey,
    pub created_ns: u64,
}
const _: () = assert!(core::mem::size_of::<CtRingSlot>() == 48);

/// NETD_CT_RING's positions: flows are written at `head % slots`, eviction looks from
/// `tail`. Both change only atomically: the head by fetch-and-add, so CPUs creating flows at
/// once each get their own slot; the tail by fetch-and-add too, one claim per slot eviction
/// looks at (CPUs evicting at once never look at the same slot), and by compare-and-exchange
/// when it has fallen more than the ring's size behind the head.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtRingPos {
    pub head: u64,
    pub tail: u64,
}
const _: () = assert!(core::mem::size_of::<CtRingPos>() == 16);

/// NETD_CT_SRC's value: one outside source's budget window (`--ct-per-source-max`). A flow
/// from the source is counted in the current window when it is created, and again on a packet
/// that keeps it alive into a later window; its first reply takes it out of the count (when
/// it was counted in this window). The count starts over at 0 when the window, the unreplied
/// timeout ([`DpConfig::ct_unreplied_s`]) long, is over: a decrement that never came (a flow
/// collected, evicted or taken over before an answer) is forgotten within one window, and a
/// source that stops sending is never refused for long. Every live unreplied flow had a
/// packet within the unreplied timeout, so it was counted in the current window or the one
/// before: at most about 2 x the budget per source.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtSrc {
    /// bpf_ktime_get_ns() when the current window started.
    pub window_start_ns: u64,
    /// Flows counted in the current window and not replied since, updated atomically. Signed:
    /// two first replies racing may take it below the truth (even to -1), never above it.
    pub count: i64,
}
const _: () = assert!(core::mem::size_of::<CtSrc>() == 16);

/// The window id flows store ([`CtEntry::src_window`]): the window's start in units of 2^20 ns
/// (about 1 ms), never 0. Windows last at least a second, so two of one source never share an
/// id (it wraps after 52 days, far beyond any unreplied flow's life).
#[inline(always)]
pub fn ct_src_window(window_start_ns: u64) -> u32 {
    ((window_start_ns >> 20) as u32).max(1)
}

/// The length of a budget window, ns: the unreplied timeout (60 s when that is uncapped).
#[inline(always)]
pub fn ct_src_window_ns(cfg: &DpConfig) -> u64 {
    let s = if cfg.ct_unreplied_s != 0 {
        cfg.ct_unreplied_s
    } else {
        60
    };
    s as u64 * 1_000_000_000
}

/// Has this entry's flow been answered? When a reply was seen, and, for a flow counted against
/// its source's budget ([`CT_F_SRC_COUNTED`]), once the budget calls it answered too: a TCP
/// flow from outside whose server sent a SYN-ACK that the source never acknowledged (a spoofed
/// SYN) stays unanswered, with the short timeout and evictable, as Linux conntrack treats a
/// flow that is not assured yet.
/// A TCP flow whose SYN-ACK the opener has not acknowledged ([`CT_TCP_SYN_RECV`]) is not
/// answered either, budget or not: a flood of spoofed SYNs to a listening port gets SYN-ACKs,
/// and must not fill the table with flows that are never evicted.
#[inline(always)]
pub fn ct_answered(e: &CtEntry) -> bool {
    e.flags & (CT_F_SEEN_REPLY | CT_F_SRC_COUNTED) == CT_F_SEEN_REPLY
        && e.tcp_state != CT_TCP_SYN_RECV
}

/// May this entry's flow be evicted to make room for a new one? Only when the other side never
/// answered ([`ct_answered`]), or a TCP connection is over (RST, FIN both ways): an answered,
/// live flow never is.
#[inline(always)]
pub fn ct_evictable(e: &CtEntry, proto: u8) -> bool {
    !ct_answered(e)
        || proto == IPPROTO_TCP && (e.tcp_state == CT_TCP_CLOSED || e.tcp_state == CT_TCP_TIME_WAIT)
}

/// Is this TCP entry's connection over (both FINs seen, or an in-window RST), so that a new SYN
/// may take its tuple at once instead of waiting out the timeout? Linux conntrack reopens a
/// TIME_WAIT or CLOSE entry on a SYN the same way (and nf_nat treats such a reply tuple as free
/// for a SYN). Only TCP: a UDP or ICMP flow has no end a packet announces.
#[inline(always)]
pub fn ct_reusable(e: &CtEntry, proto: u8) -> bool {
    proto == IPPROTO_TCP && (e.tcp_state == CT_TCP_TIME_WAIT || e.tcp_state == CT_TCP_CLOSED)
}

/// Idle timeout of an entry, nanoseconds. Shared by the eBPF side (which refreshes entries) and
/// the agent's garbage collector (which removes expired pairs). 0 (timeouts not configured) means
/// "never expires": the programs then rely on LRU eviction alone.
#[inline(always)]
pub fn ct_timeout_ns(e: &CtEntry, proto: u8, cfg: &DpConfig) -> u64 {
    let mut s = match proto {
        IPPROTO_TCP => match e.tcp_state {
            CT_TCP_ESTABLISHED => cfg.ct_tcp_established_s,
            CT_TCP_CLOSING => cfg.ct_tcp_closing_s,
            CT_TCP_TIME_WAIT => cfg.ct_tcp_time_wait_s,
            CT_TCP_CLOSED => cfg.ct_tcp_close_s,
            _ => cfg.ct_tcp_syn_s,
        },
        IPPROTO_UDP => cfg.ct_udp_s,
        _ => cfg.ct_icmp_s,
    };
    // Unanswered: at most the short cap (a timeout of 0, "never", is capped too).
    if !ct_answered(e) && cfg.ct_unreplied_s != 0 && (s == 0 || s > cfg.ct_unreplied_s) {
        s = cfg.ct_unreplied_s;
    }
    s as u64 * 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::IPPROTO_ICMP;

    #[test]
    fn timeouts_eviction_and_the_rst_window() {
        let cfg = DpConfig {
            ct_tcp_syn_s: 60,
            ct_tcp_established_s: 3600,
            ct_tcp_closing_s: 120,
            ct_tcp_time_wait_s: 100,
            ct_tcp_close_s: 10,
            ct_udp_s: 60,
            ct_icmp_s: 0,
            ct_unreplied_s: 30,
            ..Default::default()
        };
        let s = 1_000_000_000;
        let mut e = CtEntry {
            tcp_state: CT_TCP_ESTABLISHED,
            ..Default::default()
        };
        // Unreplied: capped, even a "never" timeout.
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 30 * s);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_ICMP, &cfg), 30 * s);
        assert!(ct_evictable(&e, IPPROTO_TCP));
        e.flags |= CT_F_SEEN_REPLY;
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 3600 * s);
        assert_eq!(ct_timeout_ns(&e, IPPROTO_ICMP, &cfg), 0);
        assert!(!ct_evictable(&e, IPPROTO_TCP));
        for (state, t, evictable) in [
            (CT_TCP_CLOSING, 120, false),
            (CT_TCP_TIME_WAIT, 100, true),
            (CT_TCP_CLOSED, 10, true),
        ] {
            e.tcp_state = state;
            assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), t * s);
            assert_eq!(ct_evictable(&e, IPPROTO_TCP), evictable);
        }
        assert!(!ct_evictable(&e, IPPROTO_UDP), "replied UDP stays");
        // SYN-ACKed, not acknowledged: unanswered (short timeout, evictable) until the ACK.
        e.tcp_state = CT_TCP_SYN_RECV;
        assert!(!ct_answered(&e));
        assert!(ct_evictable(&e, IPPROTO_TCP));
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 30 * s);
        // Replied but still counted against its source's budget (a SYN-ACK the source never
        // acknowledged): unanswered.
        e.tcp_state = CT_TCP_ESTABLISHED;
        e.flags |= CT_F_SRC_COUNTED;
        assert!(!ct_answered(&e));
        assert!(ct_evictable(&e, IPPROTO_TCP));
        assert_eq!(ct_timeout_ns(&e, IPPROTO_TCP, &cfg), 30 * s);
        e.flags &= !CT_F_SRC_COUNTED;
        assert!(ct_answered(&e));
        for (state, reusable) in [
            (CT_TCP_SYN_SENT, false),
            (CT_TCP_ESTABLISHED, false),
            (CT_TCP_CLOSING, false),
            (CT_TCP_CLOSED, true),
            (CT_TCP_TIME_WAIT, true),
        ] {
            e.tcp_state = state;
            assert_eq!(ct_reusable(&e, IPPROTO_TCP), reusable, "state {state}");
            assert!(!ct_reusable(&e, IPPROTO_UDP), "UDP never");
        }
        assert!(seq_in_window(1000, 1000));
        assert!(seq_in_window(5, u32::MAX - 5), "wraps");
        assert!(seq_in_window(1000 + CT_RST_WINDOW, 1000));
        assert!(!seq_in_window(1001 + CT_RST_WINDOW, 1000));
        assert!(!seq_in_window(1000u32.wrapping_add(0x8000_0000), 1000));
    }

    #[test]
    fn budget_windows() {
        let mut cfg = DpConfig {
            ct_unreplied_s: 30,
            ..Default::default()
        };
        assert_eq!(ct_src_window_ns(&cfg), 30_000_000_000);
        cfg.ct_unreplied_s = 0;
        assert_eq!(ct_src_window_ns(&cfg), 60_000_000_000, "uncapped: 60 s");
        assert_eq!(ct_src_window(0), 1, "never 0 (0 = not counted)");
        // Windows a second apart never share an id.
        let t = 123_456_789_000_000;
        assert_ne!(ct_src_window(t), ct_src_window(t + 1_000_000_000));
        assert_eq!(ct_src_window(t), ct_src_window(t + 1));
    }

    #[test]
    fn ct_key_reversed() {
        let k = CtKey::v4(1, 2, 3, 4, IPPROTO_TCP);
        assert_eq!(k.reversed().reversed(), k);
        assert_eq!(k.reversed().saddr[0], 2);
    }
}
