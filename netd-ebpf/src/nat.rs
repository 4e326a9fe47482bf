//! Address and port translation: applying a tracked flow's translation to a packet, and
//! creating the flows that translate (published ports, hairpin, masquerade) with SNAT port
//! allocation.

use core::num::NonZeroU32;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1},
    helpers::generated::{bpf_redirect, bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release},
    programs::TcContext,
};
use netd_common::{
    CFG_F_SNAT_IN_RANGE, CT_F_DNAT, CT_F_HAIRPIN, CT_F_MASQ, CT_F_PUBLISHED, CT_F_SNAT, CtEntry,
    CtKey, DROP_CT_CLASH, DROP_CT_FULL, DROP_NO_SNAT_PORT, DROP_REWRITE_FAILED, DpConfig,
    PortTarget,
};

use crate::{
    counters,
    csum::{set_addr, set_l4_u16},
    ct::{self, CreateError, NewFlow},
    maps,
    parse::{IP_DADDR_OFF, IP_SADDR_OFF, L4_ECHO, L4_PORTS, Pkt},
};

/// SNAT ports probed in [snat_port_min, snat_port_max] after the original one is taken.
const SNAT_TRIES: u32 = 16;

/// Rewrites the packet's tuple to (saddr, daddr, sport, dport), network byte order.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    pkt: &Pkt,
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
) -> Result<(), u32> {
    if saddr != pkt.saddr {
        set_addr(ctx, pkt, IP_SADDR_OFF, pkt.saddr, saddr)?;
    }
    if daddr != pkt.daddr {
        set_addr(ctx, pkt, IP_DADDR_OFF, pkt.daddr, daddr)?;
    }
    if !pkt.has_l4() {
        return Ok(());
    }
    let l4 = pkt.l4_off as usize;
    if pkt.kind == L4_PORTS {
        if sport != pkt.sport {
            set_l4_u16(ctx, pkt, l4, pkt.sport, sport)?;
        }
        if dport != pkt.dport {
            set_l4_u16(ctx, pkt, l4 + 2, pkt.dport, dport)?;
        }
    } else if pkt.kind == L4_ECHO && sport != pkt.sport {
        // The echo id stands for both ports.
        set_l4_u16(ctx, pkt, l4 + 4, pkt.sport, sport)?;
    }
    Ok(())
}

/// A tracked entry's translation, copied out of the map.
#[derive(Clone, Copy)]
pub struct Xlate {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub flags: u16,
    pub binding_id: u32,
    pub ifindex: u32,
}

impl Xlate {
    #[inline(always)]
    pub fn of(e: &CtEntry) -> Self {
        Self {
            saddr: e.nat_saddr[0],
            daddr: e.nat_daddr[0],
            sport: e.nat_sport,
            dport: e.nat_dport,
            flags: e.flags,
            binding_id: e.binding_id,
            ifindex: e.ifindex,
        }
    }

    /// A hairpin flow whose client is its own server: both addresses change, and its
    /// packets go straight back into the container (the stack would call them martians).
    #[inline(always)]
    pub fn is_self_hairpin(&self) -> bool {
        self.flags & CT_F_HAIRPIN != 0 && self.flags & CT_F_SNAT != 0 && self.flags & CT_F_DNAT != 0
    }
}

/// Applies a tracked translation to the packet and counts it against its binding.
#[inline(always)]
pub fn apply(ctx: &TcContext, pkt: &Pkt, x: &Xlate) -> Result<(), u32> {
    rewrite(ctx, pkt, x.saddr, x.daddr, x.sport, x.dport)?;
    counters::count_binding(x.binding_id, ctx.len());
    Ok(())
}

#[inline(always)]
fn create_err(e: CreateError) -> u32 {
    match e {
        CreateError::Clash => DROP_CT_CLASH,
        CreateError::Full => DROP_CT_FULL,
    }
}

/// Tracks a flow that is not translated (links, unmasqueraded outbound traffic), so its
/// replies are recognised. A clash means another entry already answers for the reply tuple:
/// the packet passes anyway.
#[inline(always)]
pub fn track(
    pkt: &Pkt,
    flags: u16,
    fwd_ifindex: u32,
    rev_ifindex: u32,
    len: u32,
) -> Result<(), u32> {
    let Some(cfg) = maps::config() else {
        return Ok(());
    };
    let k = ct::key(pkt);
    let f = NewFlow {
        flags,
        binding_id: 0,
        fwd_ifindex,
        rev_ifindex,
        pkt,
        len,
        cfg,
        now: ct::now(),
    };
    match ct::create(&k, &k, &f) {
        Err(CreateError::Full) => Err(DROP_CT_FULL),
        _ => Ok(()),
    }
}

/// A new flow to a published port: the destination becomes the container's address and port;
/// the client's address is kept, so the container sees who is calling.
#[inline(always)]
pub fn published(
    ctx: &TcContext,
    pkt: &Pkt,
    b: &PortTarget,
    rev_ifindex: u32,
    cfg: &DpConfig,
) -> Result<(), u32> {
    let k = &ct::key(pkt);
    let cport = b.container_port.to_be();
    let t = CtKey::v4(pkt.saddr, b.container_ip[0], pkt.sport, cport, pkt.proto);
    let f = NewFlow {
        flags: CT_F_PUBLISHED,
        binding_id: b.binding_id,
        fwd_ifindex: maps::endpoint_ifindex(b.container_ip[0]),
        rev_ifindex,
        pkt,
        len: ctx.len(),
        cfg,
        now: ct::now(),
    };
    ct::create(k, &t, &f).map_err(create_err)?;
    rewrite(ctx, pkt, pkt.saddr, b.container_ip[0], pkt.sport, cport)?;
    counters::count_binding(b.binding_id, ctx.len());
    Ok(())
}

/// A container reaches a published port through a host address (hairpin): DNAT to the target
/// container; when the target is the sender itself, SNAT to its network's gateway too and send
/// the packet straight back. Returns the TC verdict.
#[inline(always)]
pub fn hairpin(
    ctx: &TcContext,
    pkt: &Pkt,
    b: &PortTarget,
    ep_ifindex: u32,
    cfg: &DpConfig,
) -> Result<i32, u32> {
    let k = &ct::key(pkt);
    let cport = b.container_port.to_be();
    let target = b.container_ip[0];
    let mut t = CtKey::v4(pkt.saddr, target, pkt.sport, cport, pkt.proto);
    let f = NewFlow {
        flags: CT_F_PUBLISHED | CT_F_HAIRPIN,
        binding_id: b.binding_id,
        fwd_ifindex: maps::endpoint_ifindex(target),
        rev_ifindex: ep_ifindex,
        pkt,
        len: ctx.len(),
        cfg,
        now: ct::now(),
    };
    if target != pkt.saddr {
        ct::create(k, &t, &f).map_err(create_err)?;
        rewrite(ctx, pkt, t.saddr[0], target, t.sport, cport)?;
        counters::count_binding(b.binding_id, ctx.len());
        // A target on another network: the stack would not route it there (networks are
        // isolated), so it goes into the target's container directly.
        let v = crate::redirect::across_networks(ctx, pkt.saddr, target);
        if v != crate::redirect::NOT_TAKEN {
            return Ok(v as i32);
        }
        return Ok(aya_ebpf::bindings::TC_ACT_OK);
    }
    // The gateway of the sender's own network.
    let gw = maps::net_gateway(cfg, maps::net_id(cfg, target));
    t.saddr[0] = if gw != 0 { gw } else { pkt.daddr };
    // The bridge address is netd's own: no host socket talks from it, so no socket lookups
    // (they would also cost from_container's verifier budget).
    let t = snat_flow(None, k, t, &f)?;
    rewrite(ctx, pkt, t.saddr[0], target, t.sport, cport)?;
    counters::count_binding(b.binding_id, ctx.len());
    bounce(ctx, ep_ifindex)
}

/// Sends a packet that came in on `ifindex` straight back out of it (to the same container),
/// swapping the Ethernet addresses: the container sent it to the gateway's MAC.
#[inline(always)]
pub fn bounce(ctx: &TcContext, ifindex: u32) -> Result<i32, u32> {
    let macs: [[u8; 6]; 2] = ctx.load(0).map_err(|_| DROP_REWRITE_FAILED)?;
    let swapped = [macs[1], macs[0]];
    ctx.store(0, &swapped, 0).map_err(|_| DROP_REWRITE_FAILED)?;
    // SAFETY: plain helper call; flags 0 = egress of `ifindex`.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// A new masquerade flow from a container to the outside: the source becomes `uplink_ip`.
#[inline(always)]
pub fn masquerade(
    ctx: &TcContext,
    pkt: &Pkt,
    uplink_ip: u32,
    uplink_ifindex: u32,
    cfg: &DpConfig,
) -> Result<(), u32> {
    let k = &ct::key(pkt);
    let mut t = *k;
    t.saddr[0] = uplink_ip;
    let f = NewFlow {
        flags: CT_F_MASQ,
        binding_id: 0,
        fwd_ifindex: uplink_ifindex,
        rev_ifindex: maps::endpoint_ifindex(pkt.saddr),
        pkt,
        len: ctx.len(),
        cfg,
        now: ct::now(),
    };
    let t = snat_flow(Some(ctx), k, t, &f)?;
    rewrite(ctx, pkt, uplink_ip, t.daddr[0], t.sport, t.dport)
}

/// A hash of the container's tuple, where the SNAT port search starts: the same tuple always
/// starts at the same port (a client reusing its own tuple reuses its own translation, and the
/// remote end's TIME_WAIT accepts its increasing sequence numbers), and tuples that differ in
/// one port spread over the whole range. Each field goes through murmur3's finalizer (a
/// multiply alone only moves a field's bits upwards, and `% range` then keeps the low ones: all
/// source ports of one container used to start within a few ports of each other).
#[inline(always)]
fn tuple_hash(k: &CtKey) -> u32 {
    let mut h = fmix32(k.saddr[0] ^ u32::from(k.proto));
    h = fmix32(h ^ k.daddr[0]);
    fmix32(h ^ ((u32::from(k.sport) << 16) | u32::from(k.dport)))
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Would a socket of this (host) namespace receive the reply of `t`? A host process may be
/// talking to the same peer from the same port (its flows are not in NETD_CT); taking that
/// port would steal its replies, so the SNAT port search skips it, as nf_nat does.
#[inline(never)]
fn host_socket_owns(ctx: &TcContext, t: &CtKey) -> bool {
    let v4 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
        saddr: t.daddr[0],
        daddr: t.saddr[0],
        sport: t.dport,
        dport: t.sport,
    };
    // SAFETY: all-zero is a valid tuple; the IPv4 member is written in full.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    tuple.__bindgen_anon_1.ipv4 = v4;
    let size = core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let netns = BPF_F_CURRENT_NETNS as i64 as u64;
    // SAFETY: ctx is the program's skb; the tuple lives on the stack for the call.
    let sk = unsafe {
        match t.proto {
            6 => bpf_sk_lookup_tcp(ctx.as_ptr(), &mut tuple, size, netns, 0),
            17 => bpf_sk_lookup_udp(ctx.as_ptr(), &mut tuple, size, netns, 0),
            _ => return false,
        }
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: a socket the lookup returned must be released exactly once.
    unsafe { bpf_sk_release(sk.cast()) };
    true
}

/// Tracks `k` -> `t` with `t`'s source port free for the reply: the original port when it lies
/// in [snat_port_min, snat_port_max] (the daemon reserves that range from the host's ephemeral
/// ports) and its reply tuple is free (in NETD_CT and among the host's own sockets), else a
/// port of the range probed from a tuple-hashed start, at most SNAT_TRIES times.
/// Returns the tuple it got.
#[inline(always)]
fn snat_flow(host: Option<&TcContext>, k: &CtKey, mut t: CtKey, f: &NewFlow) -> Result<CtKey, u32> {
    let (pkt, cfg) = (f.pkt, f.cfg);
    // With CFG_F_SNAT_IN_RANGE the original port is kept only inside the range (reserved
    // from the host's own sockets, so none can open later with it); ICMP echo ids are no
    // ports and are kept when free.
    let sport = u16::from_be(t.sport);
    let keep = pkt.kind == L4_ECHO
        || cfg.flags & CFG_F_SNAT_IN_RANGE == 0
        || (sport >= cfg.snat_port_min && sport <= cfg.snat_port_max);
    if keep && !host.is_some_and(|ctx| host_socket_owns(ctx, &t)) {
        match ct::create(k, &t, f) {
            Ok(()) => return Ok(t),
            Err(CreateError::Full) => return Err(DROP_CT_FULL),
            Err(CreateError::Clash) => {}
        }
    }
    let r = free_port(host, k, &mut t, f);
    if r != 0 {
        return Err(r);
    }
    match ct::create(k, &t, f) {
        Ok(()) => Ok(t),
        Err(CreateError::Full) => Err(DROP_CT_FULL),
        // Taken by another CPU since the check.
        Err(CreateError::Clash) => Err(DROP_NO_SNAT_PORT),
    }
}

/// Sets `t`'s source port (and echo id) to a port of [snat_port_min, snat_port_max] whose
/// reply tuple is free (unused, stale, or a finished TCP connection's when the packet is a SYN:
/// [`ct::reply_free`]), probed from a tuple-hashed start at most SNAT_TRIES times: 0, or
/// DROP_NO_SNAT_PORT. A subprogram (at most five arguments): its loop state stays off the
/// caller's deep stack, which Linux 6.1 sums with create's into the 512-byte limit.
#[inline(never)]
fn free_port(host: Option<&TcContext>, k: &CtKey, t: &mut CtKey, f: &NewFlow) -> u32 {
    let (pkt, cfg) = (f.pkt, f.cfg);
    let (min, max) = (u32::from(cfg.snat_port_min), u32::from(cfg.snat_port_max));
    if (pkt.kind != L4_PORTS && pkt.kind != L4_ECHO) || min == 0 || max < min {
        return DROP_NO_SNAT_PORT;
    }
    // Never zero (max >= min); NonZero keeps a divide-by-zero panic path out of the program.
    let Some(range) = NonZeroU32::new(max - min + 1) else {
        return DROP_NO_SNAT_PORT;
    };
    let start = tuple_hash(k) % range;
    for i in 0..SNAT_TRIES {
        let port = ((min + (start + i) % range) as u16).to_be();
        t.sport = port;
        if pkt.kind == L4_ECHO {
            t.dport = port;
        }
        if host.is_some_and(|ctx| host_socket_owns(ctx, t)) {
            continue;
        }
        // Only a cheap check per port: with `create` inside the loop, Linux 6.1's verifier
        // walks the whole of it once per iteration (to_uplink then exceeds 1M insns), and no
        // state carried between iterations either (remembering the first reclaimable port
        // did). A port another finished connection holds is taken only in the second half of
        // the probes, when the first half found none free: its remote end may refuse the SYN
        // from TIME_WAIT (the client then resets and retries, milliseconds later, or a second
        // later when that exchange is lost).
        let r = ct::reply_free(k, t, f);
        if r == ct::REPLY_FREE || (r == ct::REPLY_RECLAIMABLE && i >= SNAT_TRIES / 2) {
            return 0;
        }
    }
    DROP_NO_SNAT_PORT
}
