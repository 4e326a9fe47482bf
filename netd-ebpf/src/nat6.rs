//! IPv6 published ports (DNAT6) on the uplinks: `from_uplink` translates a new TCP/UDP flow to
//! a published port on one of the host's IPv6 addresses (or the binding's own address) to the
//! container's IPv6 address and port, keeping the client's address; `to_uplink` gives the
//! container's replies the published address and port back. Flows live in NETD_CT beside the
//! IPv4 ones (its `CtKey`/`CtEntry` already hold 16-byte addresses and a family: no layout
//! change, one table, one `--ct-max`, one garbage collector), with the same states, timeouts
//! and eviction (`ct6` adapts the IPv6 packet to `ct`'s accounting).
//!
//! Checksums: IPv6 has no header checksum; an address change goes into the TCP/UDP (or
//! ICMPv6) checksum through the pseudo-header as one `bpf_csum_diff` of the 16 bytes, a port
//! change as a 2-byte replacement. Extension headers (hop-by-hop, routing, destination
//! options, fragment, AH) are walked to the upper-layer header; fragments follow their first
//! fragment's ports (NETD_FRAGS6). ICMPv6 errors quoting a translated flow are translated in
//! `icmp6`.
//!
//! One BPF-to-BPF call per program ([`from_uplink`], [`to_uplink`]), its state in a per-CPU
//! scratch map, so the IPv4 paths' stacks and verifier budgets are not touched.

use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    btf_maps::{HashMap, PerCpuArray, ProgramArray},
    helpers::generated::bpf_csum_diff,
    macros::btf_map,
    programs::TcContext,
};
use netd_common::{
    CT_F_DNAT, CT_F_PUBLISHED, CT_F_SNAT, DROP_CT_CLASH, DROP_CT_FULL, DROP_CT_SOURCE_BUDGET,
    DROP_LOOPBACK_ONLY, DROP_REWRITE_FAILED, DpConfig, HOST_ADDRS_MAX, IPPROTO_TCP, IPPROTO_UDP,
    PORT_F_LOOPBACK, PortKey, TAIL_FROM_CONTAINER6, TAIL_TO_UPLINK6, TAIL6_SLOTS,
};

use crate::{
    counters, csum, ct,
    ct6::{self, Scratch6},
    icmp6, maps,
    parse::{ETH_HLEN, FRAG_LATER, L4_ICMP_ERR, L4_PORTS, Pkt},
    policy6, uplink,
};

#[btf_map]
static NETD_TAIL6: ProgramArray<{ TAIL6_SLOTS as usize }> = ProgramArray::new();

#[btf_map]
static NETD_HOST_ADDRS6: HashMap<[u32; 4], u32, { HOST_ADDRS_MAX as usize }> = HashMap::new();

/// The packet being translated. Per program instance, not pinned: nothing lives between
/// packets.
#[btf_map]
static NETD_NAT6_SCRATCH: PerCpuArray<Scratch6, 1> = PerCpuArray::new();

/// [`from_uplink`]/[`to_uplink`] results: not netd's (on to the next program), translated
/// (to the stack), or `V6_DROP | reason`.
pub const V6_NEXT: u32 = 0;
pub const V6_PASS: u32 = 1;
pub const V6_DROP: u32 = 1 << 16;

pub const IP6_SADDR_OFF: usize = ETH_HLEN + 8;
pub const IP6_DADDR_OFF: usize = ETH_HLEN + 24;
pub const NH_ICMPV6: u8 = 58;

/// The uplink programs' verdict for a [`from_uplink`]/[`to_uplink`] result.
#[inline(always)]
pub fn verdict(v: u32) -> Result<i32, u32> {
    match v {
        V6_NEXT => Ok(aya_ebpf::bindings::TC_ACT_UNSPEC),
        V6_PASS => Ok(aya_ebpf::bindings::TC_ACT_OK),
        r => Err(r & 0xffff),
    }
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Is `a` one of the host's own IPv6 addresses?
#[inline(always)]
pub fn is_host_addr6(a: &[u32; 4]) -> bool {
    NETD_HOST_ADDRS6.get_ptr(a).is_some()
}

#[inline(always)]
fn scratch() -> Option<&'static mut Scratch6> {
    let p = NETD_NAT6_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; nothing else runs on it while the program does.
    Some(unsafe { &mut *p })
}

/// Ingress on an uplink, a frame that is not IPv4: `V6_*`.
#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> u32 {
    run(ctx, DIR_IN)
}

/// Egress on an uplink, a frame that is not IPv4: on in `to_uplink6` (a tail call: to_uplink
/// is close to the verifier's 1M limit). Without that program (slot empty) the frame is not
/// netd's.
#[inline(always)]
pub fn to_uplink_tail(ctx: &TcContext) -> Result<i32, u32> {
    // SAFETY: a tail call into a TC program of the same object; returns only on failure.
    unsafe { NETD_TAIL6.tail_call(ctx, TAIL_TO_UPLINK6) };
    Ok(aya_ebpf::bindings::TC_ACT_UNSPEC)
}

/// Ingress on a container's veth, an IPv6 frame: on in `from_container6` (a tail call, on a
/// stack of its own: from_container's frames leave no room for nat6's). Returns only when the
/// slot is empty (an agent that does not install it); the caller then polices the frame
/// itself.
#[inline(always)]
pub fn from_container_tail(ctx: &TcContext) {
    // SAFETY: a tail call into a TC program of the same object; returns only on failure.
    unsafe { NETD_TAIL6.tail_call(ctx, TAIL_FROM_CONTAINER6) };
}

/// Forgets what an earlier program on this CPU translated (`monitor::tcp_close` reads it
/// after the verdict of a program that may not run nat6 at all).
#[inline(always)]
pub fn clear_translated() {
    if let Some(s) = scratch() {
        s.translated = 0;
    }
}

/// `to_uplink6`'s body: `V6_*`.
#[inline(always)]
pub fn to_uplink(ctx: &TcContext) -> u32 {
    run(ctx, DIR_OUT)
}

const DIR_IN: u32 = 0;
const DIR_OUT: u32 = 1;

/// Step results besides `V6_NEXT`, `V6_PASS` and drops: what the next step is.
const V6_PORTS: u32 = 2;
const V6_ICMP: u32 = 3;
const V6_NEW: u32 = 4;
const V6_REWRITE: u32 = 5;

/// The IPv6 path as steps, each a subprogram called from the program's own frame and
/// handing over through the scratch slot only, never one under another: the verifier then
/// walks each step once per result of the one before (not once per path through it), and
/// `ct::create` (160 bytes of stack) runs under the small [`track_new`] frame alone (the
/// uplink programs' own frame is 280 bytes of the 512).
#[inline(always)]
fn run(ctx: &TcContext, dir: u32) -> u32 {
    let mut v = parse_step(ctx);
    if v == V6_ICMP {
        return icmp_step(ctx, dir);
    }
    if v == V6_PORTS {
        v = lookup_step(ctx, dir);
    }
    if v == V6_NEW {
        v = track_new(ctx);
        // NETD_CT is full: evict one flow and track this one after all (`nat::WhenFull`),
        // from this frame, where `ct::make_room`'s frames fit.
        if v == V6_DROP | DROP_CT_FULL && ct::make_room() {
            v = track_new(ctx);
        }
    }
    if v == V6_REWRITE {
        v = rewrite_step(ctx);
    }
    v
}

#[inline(always)]
fn code(r: Result<u32, u32>) -> u32 {
    match r {
        Ok(v) => v,
        Err(r) => V6_DROP | r,
    }
}

/// Parses the frame into the scratch slot: `V6_PORTS` (TCP/UDP), `V6_ICMP` (an ICMPv6
/// error), else `V6_NEXT`.
#[inline(never)]
fn parse_step(ctx: &TcContext) -> u32 {
    let Some(s) = scratch() else {
        return V6_NEXT;
    };
    s.translated = 0;
    s.routed = 0;
    match ct6::parse(ctx, s) {
        Ok(false) => V6_NEXT,
        Ok(true) if s.pkt.kind == L4_ICMP_ERR => V6_ICMP,
        Ok(true) if s.pkt.kind == L4_PORTS => V6_PORTS,
        Ok(true) => V6_NEXT,
        Err(r) => V6_DROP | r,
    }
}

/// An ICMPv6 error quoting a translated flow (`icmp6`).
#[inline(never)]
fn icmp_step(ctx: &TcContext, dir: u32) -> u32 {
    let (Some(s), Some(cfg)) = (scratch(), maps::config()) else {
        return V6_NEXT;
    };
    code(if dir == DIR_IN {
        icmp6::from_uplink(ctx, s, cfg)
    } else {
        icmp6::to_uplink(ctx, s, cfg)
    })
}

/// The flow of a TCP/UDP packet: tracked (accounted; `V6_REWRITE` with `s.t`), new to a
/// published port from outside (`V6_NEW`), or not netd's.
#[inline(never)]
fn lookup_step(ctx: &TcContext, dir: u32) -> u32 {
    code(if dir == DIR_IN {
        from_uplink6(ctx)
    } else {
        to_uplink6(ctx)
    })
}

/// Tracks the new flow [`from_uplink6`] found. Its frame holds the `NewFlow` and nothing
/// else (`ct::create` runs under it; 288 + 64 + 160 bytes as the verifier rounds frames). The
/// flow's scalars come from the scratch slot; its pointers are taken afresh (a pointer
/// stored in a map reads back as a plain number).
#[inline(never)]
fn track_new(ctx: &TcContext) -> u32 {
    let (Some(s), Some(cfg)) = (scratch(), maps::config()) else {
        return V6_NEXT;
    };
    let w = ct::budget::admit(&s.k.saddr, s.now);
    if w == ct::budget::ADMIT_REFUSED {
        return V6_DROP | DROP_CT_SOURCE_BUDGET;
    }
    let f = ct::NewFlow {
        flags: CT_F_PUBLISHED | ct::budget::counted(w),
        binding_id: s.b.binding_id,
        fwd_ifindex: s.fwd,
        rev_ifindex: ifindex(ctx),
        pkt: &s.pkt,
        len: ctx.len(),
        cfg,
        now: s.now,
        src_window: w as u32,
    };
    match ct::create(&s.k, &s.t, &f) {
        Ok(()) => {
            s.new = 1;
            V6_REWRITE
        }
        Err(ct::CreateError::Clash) => V6_DROP | DROP_CT_CLASH,
        Err(ct::CreateError::Full) => V6_DROP | DROP_CT_FULL,
    }
}

/// Rewrites the packet from `s.k` to `s.t` and counts it on its binding (`s.b`); marks a flow
/// [`track_new`] just created.
#[inline(never)]
fn rewrite_step(ctx: &TcContext) -> u32 {
    let (Some(s), Some(cfg)) = (scratch(), maps::config()) else {
        return V6_NEXT;
    };
    if s.new != 0 {
        mark_dnat(s, cfg);
    }
    if let Err(r) = rewrite(ctx, s) {
        return V6_DROP | r;
    }
    s.translated = 1;
    counters::count_binding(s.b.binding_id, ctx.len());
    V6_PASS
}

/// The scratch slot of the packet this run translated for a tracked flow (`s.k` its flow's
/// key as the packet arrived, `s.pkt` its parse), once: `None` when this run translated
/// nothing. Every IPv6 frame of an uplink program resets it first ([`parse_step`]).
#[inline(always)]
pub fn translated() -> Option<&'static mut Scratch6> {
    let s = scratch()?;
    if s.translated == 0 {
        return None;
    }
    s.translated = 0;
    Some(s)
}

/// The source and destination addresses of the packet this uplink run leaves for a
/// container, read in place in the scratch slot (nothing taken: `monitor::tcp_close` still
/// reads the slot after the verdict): translated for a published port (its new destination,
/// the container's address), or routed (a TCP/UDP packet no flow or binding took: its own
/// destination). `None` for anything else.
#[inline(always)]
pub fn inbound_addrs() -> Option<(&'static [u32; 4], &'static [u32; 4])> {
    let s = scratch()?;
    if s.translated != 0 {
        return Some((&s.ip.saddr, &s.t.daddr));
    }
    if s.routed != 0 {
        return Some((&s.ip.saddr, &s.ip.daddr));
    }
    None
}

/// `from_container6`'s fast path, first step: parses the frame a container sent into the
/// scratch slot. Its IPv6 header when it is TCP or UDP (what the fast path takes out), else
/// `None`. Nothing is looked up or accounted yet: that is [`out_translate`]'s, once the
/// FIB lookup has said the packet leaves by an uplink.
#[inline(always)]
pub fn out_parse(ctx: &TcContext) -> Option<&'static crate::ip6::Ip6Hdr> {
    if parse_step(ctx) != V6_PORTS {
        return None;
    }
    Some(&scratch()?.ip)
}

/// `from_container6`'s fast path, second step (after [`out_parse`]): a published flow's reply
/// is accounted and translated back (`V6_PASS`); `V6_NEXT`: no published flow takes it (the
/// container's own routed traffic, left as it is); or `V6_DROP | reason`.
#[inline(always)]
pub fn out_translate(ctx: &TcContext) -> u32 {
    let v = lookup_step(ctx, DIR_OUT);
    if v == V6_REWRITE {
        return rewrite_step(ctx);
    }
    v
}

#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "the key is read in place from the scratch map: by value it would be copied onto the stack"
)]
fn from_uplink6(ctx: &TcContext) -> Result<u32, u32> {
    let (Some(s), Some(cfg)) = (scratch(), maps::config()) else {
        return Ok(V6_NEXT);
    };
    s.new = 0;
    ct6::set_key(s);
    let now = ct::now();
    if s.known != 0
        && let Some(p) = ct::lookup(&s.k, &s.pkt, cfg, now)
    {
        // SAFETY: a valid map value, copied out before any map update.
        let e = unsafe { &*p };
        if uplink::arrives_from_outside(e.flags) {
            s.t = s.k;
            s.t.daddr = e.nat_daddr;
            s.t.dport = e.nat_dport;
            s.b.binding_id = e.binding_id;
            ct::touch(p, &s.k, &s.pkt, ctx, now)?;
            return Ok(V6_REWRITE);
        }
    }
    if s.pkt.frag == FRAG_LATER {
        s.routed = 1;
        return Ok(V6_NEXT);
    }
    let hport = u16::from_be(s.k.dport);
    s.pk = PortKey::v6(s.k.proto, s.k.daddr, hport);
    let mut b = maps::port_entry(&s.pk);
    if b.is_none() && is_host_addr6(&s.k.daddr) {
        s.pk.addr = [0; 4];
        b = maps::port_entry(&s.pk);
    }
    let Some(b) = b else {
        s.routed = 1;
        return Ok(V6_NEXT);
    };
    if b.flags & PORT_F_LOOPBACK != 0 {
        return Err(DROP_LOOPBACK_ONLY);
    }
    s.t = s.k;
    s.t.daddr = b.container_ip;
    s.t.dport = b.container_port.to_be();
    // SAFETY: copied out at once.
    s.fwd = unsafe { policy6::NETD_EP6_ADDRS.get(&b.container_ip) }.map_or(0, |i| *i);
    s.b = b;
    s.now = now;
    Ok(V6_NEW)
}

/// `ct::create` derives the NAT flags from the addresses' first words (IPv4's): an IPv6
/// container address that shares them with the host address (same /32) would get none. The
/// published flow's entries say what they do.
#[inline(always)]
fn mark_dnat(s: &Scratch6, cfg: &DpConfig) {
    let now = ct::now();
    if let Some(p) = ct::lookup_key(&s.k, cfg, now) {
        // SAFETY: a valid map value; racing CPUs may lose an update, never memory safety.
        unsafe { (*p).flags |= CT_F_DNAT };
        // SAFETY: as above; the peer key is read in place.
        if let Some(q) = ct::lookup_key(unsafe { &(*p).peer }, cfg, now) {
            // SAFETY: as above.
            unsafe { (*q).flags |= CT_F_SNAT };
        }
    }
}

#[inline(always)]
fn to_uplink6(ctx: &TcContext) -> Result<u32, u32> {
    let (Some(s), Some(cfg)) = (scratch(), maps::config()) else {
        return Ok(V6_NEXT);
    };
    s.new = 0;
    // Until a published flow is found: the container's own traffic, routed.
    s.routed = 1;
    if s.known == 0 {
        return Ok(V6_NEXT);
    }
    ct6::set_key(s);
    let now = ct::now();
    let Some(p) = ct::lookup(&s.k, &s.pkt, cfg, now) else {
        return Ok(V6_NEXT);
    };
    // SAFETY: a valid map value, copied out before any map update.
    let e = unsafe { &*p };
    if !uplink::leaves_for_outside(e.flags) || e.flags & CT_F_PUBLISHED == 0 {
        return Ok(V6_NEXT);
    }
    s.routed = 0;
    s.t = s.k;
    s.t.saddr = e.nat_saddr;
    s.t.sport = e.nat_sport;
    s.b.binding_id = e.binding_id;
    ct::touch(p, &s.k, &s.pkt, ctx, now)?;
    Ok(V6_REWRITE)
}

/// Rewrites the packet's tuple from `s.k` to `s.t`.
#[inline(always)]
fn rewrite(ctx: &TcContext, s: &mut Scratch6) -> Result<(), u32> {
    if !eq(&s.k.saddr, &s.t.saddr) {
        set_addr6(ctx, &s.pkt, IP6_SADDR_OFF, &mut s.k.saddr, &mut s.t.saddr)?;
    }
    if !eq(&s.k.daddr, &s.t.daddr) {
        set_addr6(ctx, &s.pkt, IP6_DADDR_OFF, &mut s.k.daddr, &mut s.t.daddr)?;
    }
    if !s.pkt.has_l4() {
        return Ok(());
    }
    let l4 = s.pkt.l4_off as usize;
    if s.t.sport != s.k.sport {
        csum::set_l4_u16(ctx, &s.pkt, l4, s.k.sport, s.t.sport)?;
    }
    if s.t.dport != s.k.dport {
        csum::set_l4_u16(ctx, &s.pkt, l4 + 2, s.k.dport, s.t.dport)?;
    }
    Ok(())
}

#[inline(always)]
pub fn eq(a: &[u32; 4], b: &[u32; 4]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3]
}

/// The checksum difference of replacing the 16 bytes at `old` with those at `new` (both in
/// scratch map memory).
#[inline(always)]
pub fn diff16(old: &mut [u32; 4], new: &mut [u32; 4]) -> Result<u64, u32> {
    // SAFETY: both point at 16 readable bytes of this CPU's scratch slot.
    let d = unsafe { bpf_csum_diff(old.as_mut_ptr(), 16, new.as_mut_ptr(), 16, 0) };
    if d < 0 {
        return Err(DROP_REWRITE_FAILED);
    }
    Ok(d as u64)
}

/// The L4 checksum's offset of `pkt` and its extra flags, when it carries one.
#[inline(always)]
pub fn l4_csum6(pkt: &Pkt) -> Option<(usize, u64)> {
    if !pkt.has_l4() {
        return None;
    }
    let off = pkt.l4_off as usize;
    match pkt.proto {
        IPPROTO_TCP => Some((off + 16, 0)),
        IPPROTO_UDP => Some((off + 6, u64::from(BPF_F_MARK_MANGLED_0))),
        NH_ICMPV6 => Some((off + 2, 0)),
        _ => None,
    }
}

/// Replaces the IPv6 address at `off` (`old` -> `new`), fixing the upper-layer checksum
/// through its pseudo-header (every IPv6 upper-layer checksum has one, ICMPv6's too).
#[inline(always)]
fn set_addr6(
    ctx: &TcContext,
    pkt: &Pkt,
    off: usize,
    old: &mut [u32; 4],
    new: &mut [u32; 4],
) -> Result<(), u32> {
    if let Some((csum_off, flags)) = l4_csum6(pkt) {
        let d = diff16(old, new)?;
        ctx.l4_csum_replace(csum_off, 0, d, flags | u64::from(BPF_F_PSEUDO_HDR))
            .map_err(|_| DROP_REWRITE_FAILED)?;
    }
    ctx.store(off, &*new, 0).map_err(|_| DROP_REWRITE_FAILED)
}
