//! The fast path (`CFG_F_FAST_PATH`, Cilium's lib/fib.h): translated packets skip the host's
//! routing and netfilter.
//!
//! - [`into_container`]: `from_uplink` has translated a packet for a container (published port,
//!   masquerade reply); it goes straight to the container's `eth0` with `bpf_redirect_peer`,
//!   after what the bridge would have done as a router: Ethernet from the bridge's MAC to the
//!   container's, TTL decremented. [`into_container6`] does the same for an IPv6 packet `nat6`
//!   translated to a published port (hop limit decremented; IPv6 has no header checksum).
//! - [`route_to_uplink`] and [`send_to_uplink`]: `from_container` holds a tracked packet that leaves by an uplink (a
//!   published flow's reply, an established masqueraded flow). `bpf_fib_lookup` routes it as
//!   the stack would; from_container translates it (not at the uplink's egress: redirected, it never
//!   meets the stack's input checks that call a host source arriving on the bridge a martian)
//!   and sent with `bpf_redirect` (neighbour known) or `bpf_redirect_neigh` (the kernel
//!   resolves it). `to_uplink` lets such already-translated packets pass.
//!
//! Whenever something is missing (flag off, no endpoint, no route, not an uplink, TTL 1,
//! bigger than the MTU) the packet takes the stack's path unchanged, as without the fast path.
//!
//! Both functions are BPF-to-BPF calls (`#[inline(never)]`): their locals do not grow the
//! callers' frames, and the big ones (the FIB lookup's parameters) live in a per-CPU scratch
//! slot because the call chain shares the 512-byte stack limit.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_SHOT, bpf_fib_lookup,
        bpf_redir_neigh,
    },
    btf_maps::PerCpuArray,
    helpers::generated::{
        bpf_check_mtu, bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh,
        bpf_redirect_peer,
    },
    macros::btf_map,
    programs::TcContext,
};
use netd_common::{
    AF_INET, AF_INET6, CFG_F_FAST_PATH, DROP_REWRITE_FAILED, DpConfig, NET_F_INTERNAL,
};

use crate::{
    counters::{self, Dir},
    maps,
    parse::{ETH_HLEN, IP_CSUM_OFF, Pkt},
};

/// The fast path does not take the packet: the caller goes on as without it.
pub const NOT_TAKEN: i64 = -1;

/// Offset of the IPv4 TTL (followed by the protocol: one 16-bit checksum word).
const IP_TTL_OFF: usize = ETH_HLEN + 8;

/// Is the fast path on?
#[inline(always)]
pub fn enabled(cfg: &DpConfig) -> bool {
    cfg.flags & CFG_F_FAST_PATH != 0
}

/// The FIB lookup's parameters and `bpf_redirect_neigh`'s next hop: too big for the stack.
/// Per program instance, not pinned: nothing is kept between packets.
pub struct Scratch {
    fib: bpf_fib_lookup,
    nh: bpf_redir_neigh,
    /// The lookup found the neighbour (dmac/smac are valid).
    neigh_known: u32,
}

#[btf_map]
static NETD_FIB_SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

/// The TTL/protocol word, when the TTL may be decremented (a router sends a TTL of 1 no
/// further: the stack then answers with ICMP time exceeded).
#[inline(always)]
fn ttl_word(ctx: &TcContext) -> Option<[u8; 2]> {
    let w: [u8; 2] = ctx.load(IP_TTL_OFF).ok()?;
    if w[0] <= 1 { None } else { Some(w) }
}

/// Decrements the TTL read as `w`, fixing the IPv4 header checksum.
#[inline(always)]
fn dec_ttl(ctx: &TcContext, w: [u8; 2]) -> Result<(), u32> {
    let new = [w[0] - 1, w[1]];
    let (old16, new16) = (u16::from_ne_bytes(w), u16::from_ne_bytes(new));
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old16), u64::from(new16), 2)
        .map_err(|_| DROP_REWRITE_FAILED)?;
    ctx.store(IP_TTL_OFF, &new, 0)
        .map_err(|_| DROP_REWRITE_FAILED)
}

/// Does the packet fit `ifindex`'s MTU? (GSO packets do: they are segmented for it.) Too big,
/// it takes the stack's path, which fragments it or answers "fragmentation needed".
#[inline(always)]
fn fits(ctx: &TcContext, ifindex: u32) -> bool {
    let mut mtu_len: u32 = 0;
    // SAFETY: ctx is the program's skb; mtu_len lives on the stack for the call.
    unsafe { bpf_check_mtu(ctx.as_ptr(), ifindex, &mut mtu_len, 0, 0) == 0 }
}

/// Counts a drop (the packet was already partly rewritten) and returns the verdict. Both
/// callers run at TC ingress (from_uplink, from_container).
#[inline(always)]
fn drop(ctx: &TcContext, reason: u32) -> i64 {
    counters::tc_drop(ctx, netd_common::HOOK_TC_INGRESS, reason);
    i64::from(TC_ACT_SHOT)
}

/// Delivers a packet `from_uplink` translated for the container at `ip` (network byte order)
/// straight into it. Returns the TC verdict, or [`NOT_TAKEN`].
#[inline(never)]
pub fn into_container(ctx: &TcContext, ip: u32) -> i64 {
    let Some(cfg) = maps::config() else {
        return NOT_TAKEN;
    };
    if !enabled(cfg) {
        return NOT_TAKEN;
    }
    deliver(ctx, cfg, maps::net_id(cfg, ip), ip)
}

/// Delivers a packet `from_container` translated (hairpin through a published port) from
/// `saddr` to the container at `daddr` of another network straight into it, fast path or not:
/// the host does not route between networks. Returns the TC verdict, or [`NOT_TAKEN`] when
/// both are on the same network (or the delivery cannot be made: the stack's path then).
#[inline(never)]
pub fn across_networks(ctx: &TcContext, saddr: u32, daddr: u32) -> i64 {
    let Some(cfg) = maps::config() else {
        return NOT_TAKEN;
    };
    let net = maps::net_id(cfg, daddr);
    if net == maps::NO_NET || net == maps::net_id(cfg, saddr) {
        return NOT_TAKEN;
    }
    deliver(ctx, cfg, net, daddr)
}

/// Offset of the IPv6 hop limit.
const IP6_HOP_OFF: usize = ETH_HLEN + 7;

/// fe80::/10.
#[inline(always)]
fn is_link_local6(a: &[u32; 4]) -> bool {
    let b = a[0].to_ne_bytes();
    b[0] == 0xfe && b[1] & 0xc0 == 0x80
}

/// A source the host would not forward from: link-local, multicast, `::`, `::1` (and the rest
/// of ::/96), v4-mapped (`ipv6_rcv` drops those last ones before routing).
#[inline(always)]
fn unforwarded_src6(a: &[u32; 4]) -> bool {
    a[0].to_ne_bytes()[0] == 0xff
        || is_link_local6(a)
        || a[0] == 0 && a[1] == 0 && (a[2] == 0 || a[2] == u32::from_be(0xffff))
}

/// Delivers the IPv6 packet `nat6::from_uplink` has just left for a container
/// (`nat6::inbound_addrs`) straight into it: translated for a published port, or routed to a
/// container's own address (TCP or UDP that no flow or binding took; it would only meet the
/// host's forwarding, which has no check of netd's for it). Returns the TC verdict, or
/// [`NOT_TAKEN`]: flag off, VLAN-tagged, the destination not an endpoint's or link-local, its network
/// `--internal` or without a bridge MAC, a hop limit of 1 (the stack answers time exceeded),
/// too big for the veth, or a source the stack would not forward (link-local, multicast,
/// ::/96, v4-mapped), which keeps its verdict.
#[inline(never)]
pub fn into_container6(ctx: &TcContext) -> i64 {
    let Some(cfg) = maps::config() else {
        return NOT_TAKEN;
    };
    if !enabled(cfg) {
        return NOT_TAKEN;
    }
    let Some((saddr, daddr)) = crate::nat6::inbound_addrs() else {
        return NOT_TAKEN;
    };
    // A VLAN-tagged frame (the kernel took the tag off before this hook) belongs to a VLAN
    // device, or is discarded after it: the stack decides, as without the fast path.
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let (vlan, tci) = unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).vlan_tci) };
    if vlan != 0 && tci & 0x0fff != 0 {
        return NOT_TAKEN;
    }
    // NETD_EP6_ADDRS holds the endpoints' link-local addresses too: never routed to.
    if unforwarded_src6(saddr) || is_link_local6(daddr) {
        return NOT_TAKEN;
    }
    // SAFETY: copied out at once; the key is read in place in the scratch slot.
    let Some(ifx) = (unsafe { crate::policy6::NETD_EP6_ADDRS.get(daddr) }).copied() else {
        return NOT_TAKEN;
    };
    let Some(ep) = maps::endpoint(ifx) else {
        return NOT_TAKEN;
    };
    let net = u32::from(ep.net_id);
    if maps::net_flags(cfg, net) & NET_F_INTERNAL != 0 {
        return NOT_TAKEN;
    }
    let bridge_mac = maps::net_bridge_mac(cfg, net);
    if bridge_mac == [0; 6] {
        return NOT_TAKEN;
    }
    let Ok(hop) = ctx.load::<u8>(IP6_HOP_OFF) else {
        return NOT_TAKEN;
    };
    if hop <= 1 || !fits(ctx, ep.ifindex) {
        return NOT_TAKEN;
    }
    if ctx.store(IP6_HOP_OFF, &(hop - 1), 0).is_err() {
        return drop(ctx, DROP_REWRITE_FAILED);
    }
    let macs = [ep.mac, bridge_mac];
    if ctx.store(0, &macs, 0).is_err() {
        return drop(ctx, DROP_REWRITE_FAILED);
    }
    counters::count_on(ep.ifindex, ctx.len(), Dir::Tx);
    // SAFETY: plain helper call; the peer of `ep.ifindex` is the container's eth0.
    unsafe { bpf_redirect_peer(ep.ifindex, 0) }
}

/// Into the container at `ip` on network `net`: TTL decremented, Ethernet from the network's
/// bridge to the container, `bpf_redirect_peer`.
#[inline(always)]
fn deliver(ctx: &TcContext, cfg: &DpConfig, net: u32, ip: u32) -> i64 {
    if net == maps::NO_NET {
        return NOT_TAKEN;
    }
    let bridge_mac = maps::net_bridge_mac(cfg, net);
    if bridge_mac == [0; 6] {
        return NOT_TAKEN;
    }
    let Some(ep) = maps::endpoint_by_ip(ip) else {
        return NOT_TAKEN;
    };
    let Some(w) = ttl_word(ctx) else {
        return NOT_TAKEN;
    };
    if !fits(ctx, ep.ifindex) {
        return NOT_TAKEN;
    }
    if let Err(r) = dec_ttl(ctx, w) {
        return drop(ctx, r);
    }
    let macs = [ep.mac, bridge_mac];
    if ctx.store(0, &macs, 0).is_err() {
        return drop(ctx, DROP_REWRITE_FAILED);
    }
    // The host-side veth's egress hook (to_container) never sees it: count it here.
    counters::count_on(ep.ifindex, ctx.len(), Dir::Tx);
    // SAFETY: plain helper call; the peer of `ep.ifindex` is the container's eth0.
    unsafe { bpf_redirect_peer(ep.ifindex, 0) }
}

/// Routes a tracked packet that `from_container` (arrived on `in_ifindex`) holds and that
/// leaves by an uplink, as the stack would: untranslated, arriving on the container's veth.
/// Returns the uplink it leaves by, or 0 when the fast path does not take it (no route, not an
/// uplink, TTL 1, too big). The caller then translates it and hands it to [`send_to_uplink`]:
/// the translation stays in from_container's frame, where hairpin already has it, because
/// the frames of a call chain share the 512-byte stack.
#[inline(never)]
pub fn route_to_uplink(ctx: &TcContext, pkt: &Pkt, in_ifindex: u32) -> u32 {
    if ttl_word(ctx).is_none() {
        return 0;
    }
    let Some(sc) = NETD_FIB_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a per-CPU slot, used only while this program runs on this CPU.
    let sc = unsafe { &mut *sc };
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    sc.fib = unsafe { core::mem::zeroed() };
    let f = &mut sc.fib;
    f.family = AF_INET;
    f.l4_protocol = pkt.proto;
    f.sport = pkt.sport;
    f.dport = pkt.dport;
    f.ifindex = in_ifindex;
    // tot_len stays 0 (no MTU check here: `fits` below knows about GSO).
    f.__bindgen_anon_3.ipv4_src = pkt.saddr;
    f.__bindgen_anon_4.ipv4_dst = pkt.daddr;
    let size = core::mem::size_of::<bpf_fib_lookup>() as i32;
    // SAFETY: ctx is the program's skb; the parameters live in the scratch slot.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), f, size, 0) } as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return 0;
    }
    sc.neigh_known = u32::from(rc == BPF_FIB_LKUP_RET_SUCCESS);
    let out = f.ifindex;
    if out == 0 || !maps::is_uplink(out) || !fits(ctx, out) {
        return 0;
    }
    out
}

/// Sends a packet [`route_to_uplink`] routed to uplink `out` (and the caller translated) out
/// of it: TTL decremented, then `bpf_redirect` with the neighbour's MAC, or
/// `bpf_redirect_neigh` when the neighbour is not resolved yet (the kernel resolves the next
/// hop the lookup found). Returns the TC verdict.
#[inline(never)]
pub fn send_to_uplink(ctx: &TcContext, out: u32) -> i64 {
    let Some(sc) = NETD_FIB_SCRATCH.get_ptr_mut(0) else {
        return drop(ctx, DROP_REWRITE_FAILED);
    };
    // SAFETY: a per-CPU slot, used only while this program runs on this CPU.
    let sc = unsafe { &mut *sc };
    let Some(w) = ttl_word(ctx) else {
        return drop(ctx, DROP_REWRITE_FAILED);
    };
    if let Err(r) = dec_ttl(ctx, w) {
        return drop(ctx, r);
    }
    redirect_out(ctx, sc, out, AF_INET)
}

/// Sends the packet out of `out`, the uplink the FIB lookup in `sc` found: with its next
/// hop's MAC and `bpf_redirect` when the neighbour is known, else `bpf_redirect_neigh` to the
/// next hop (the gateway, or the destination itself when it is on link) for the kernel to
/// resolve. `family`: AF_INET or AF_INET6 (a constant at each call site).
#[inline(always)]
fn redirect_out(ctx: &TcContext, sc: &mut Scratch, out: u32, family: u8) -> i64 {
    if sc.neigh_known != 0 {
        let macs = [sc.fib.dmac, sc.fib.smac];
        if ctx.store(0, &macs, 0).is_err() {
            return drop(ctx, DROP_REWRITE_FAILED);
        }
        // SAFETY: plain helper call; flags 0 = egress of `out`.
        return unsafe { bpf_redirect(out, 0) };
    }
    sc.nh.nh_family = u32::from(family);
    // SAFETY: reading the union member the FIB lookup wrote for this family.
    unsafe {
        if family == AF_INET6 {
            sc.nh.__bindgen_anon_1.ipv6_nh = sc.fib.__bindgen_anon_4.ipv6_dst;
        } else {
            sc.nh.__bindgen_anon_1.ipv4_nh = sc.fib.__bindgen_anon_4.ipv4_dst;
        }
    }
    let size = core::mem::size_of::<bpf_redir_neigh>() as i32;
    // SAFETY: plain helper call; the next hop lives in the scratch slot.
    unsafe { bpf_redirect_neigh(out, &mut sc.nh, size, 0) }
}

/// The fast path for an IPv6 TCP/UDP packet a container (veth `in_ifindex`) sends to the
/// bridge as its router: a published flow's reply (`nat6`'s egress translation: the
/// published address and port back) or the container's own routed traffic from its global
/// address (left as it is). When `bpf_fib_lookup` routes it out of an uplink, its hop limit
/// is decremented and it is sent with `bpf_redirect` (neighbour known) or
/// `bpf_redirect_neigh`. Returns the TC verdict, or [`NOT_TAKEN`] with the packet unchanged:
/// the stack's path, where `to_uplink6` translates a published reply. Not taken: hop limit 1,
/// not TCP/UDP, not to the bridge's MAC (or none known), an `--internal` network, a source or
/// destination the host would not forward (link-local, multicast, ::/96, v4-mapped), to one
/// of the host's addresses or another container (checked before the FIB lookup, which is
/// only done for what may leave by an uplink), no route, not an uplink, too big. The
/// uplink's egress then sees a packet that is no published reply: not netd's, it passes.
#[inline(never)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "the key is read in place from the scratch map: by value it would be copied onto the stack"
)]
pub fn out6_to_uplink(ctx: &TcContext, in_ifindex: u32) -> i64 {
    let Ok(hop) = ctx.load::<u8>(IP6_HOP_OFF) else {
        return NOT_TAKEN;
    };
    if hop <= 1 {
        return NOT_TAKEN;
    }
    let (Some(cfg), Some(ep)) = (maps::config(), maps::endpoint_ref(in_ifindex)) else {
        return NOT_TAKEN;
    };
    let net = u32::from(ep.net_id);
    if maps::net_flags(cfg, net) & NET_F_INTERNAL != 0 {
        return NOT_TAKEN;
    }
    // Routed by the host only when sent to its bridge (else the bridge switches it).
    let bridge_mac = maps::net_bridge_mac(cfg, net);
    let Ok(dst_mac) = ctx.load::<[u8; 6]>(0) else {
        return NOT_TAKEN;
    };
    if bridge_mac == [0; 6] || dst_mac != bridge_mac {
        return NOT_TAKEN;
    }
    let Some(ip) = crate::nat6::out_parse(ctx) else {
        return NOT_TAKEN;
    };
    if unforwarded_src6(&ip.saddr) || unforwarded_src6(&ip.daddr) {
        return NOT_TAKEN;
    }
    // SAFETY: a lookup only; the key is read in place in the scratch slot.
    if crate::nat6::is_host_addr6(&ip.daddr)
        || unsafe { crate::policy6::NETD_EP6_ADDRS.get(&ip.daddr) }.is_some()
    {
        return NOT_TAKEN;
    }
    let Some(sc) = NETD_FIB_SCRATCH.get_ptr_mut(0) else {
        return NOT_TAKEN;
    };
    // SAFETY: a per-CPU slot, used only while this program runs on this CPU.
    let sc = unsafe { &mut *sc };
    // SAFETY: all-zero is a valid bpf_fib_lookup.
    sc.fib = unsafe { core::mem::zeroed() };
    let f = &mut sc.fib;
    f.family = AF_INET6;
    f.ifindex = in_ifindex;
    f.__bindgen_anon_3.ipv6_src = ip.saddr;
    f.__bindgen_anon_4.ipv6_dst = ip.daddr;
    let size = core::mem::size_of::<bpf_fib_lookup>() as i32;
    // SAFETY: ctx is the program's skb; the parameters live in the scratch slot.
    let rc = unsafe { fib_lookup(ctx.as_ptr(), f, size, 0) } as u32;
    if rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH {
        return NOT_TAKEN;
    }
    sc.neigh_known = u32::from(rc == BPF_FIB_LKUP_RET_SUCCESS);
    let out = f.ifindex;
    if out == 0 || !maps::is_uplink(out) || !fits(ctx, out) {
        return NOT_TAKEN;
    }
    // Only now the flow is looked up and accounted: a published reply is translated, the
    // container's own traffic leaves as it is.
    match crate::nat6::out_translate(ctx) {
        crate::nat6::V6_PASS | crate::nat6::V6_NEXT => {}
        r => return drop(ctx, r & 0xffff),
    }
    if ctx.store(IP6_HOP_OFF, &(hop - 1), 0).is_err() {
        return drop(ctx, DROP_REWRITE_FAILED);
    }
    redirect_out(ctx, sc, out, AF_INET6)
}
