//! Address and port translation: applying a tracked flow's translation to a packet, and
//! creating the flows that translate (published ports, hairpin, masquerade) with SNAT port
//! allocation.

use core::{ffi::c_void, num::NonZeroU32};

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_CURRENT_NETNS, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1},
    helpers::generated::{
        bpf_loop, bpf_redirect, bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release,
    },
    programs::TcContext,
};
use netd_common::{
    CFG_F_SNAT_IN_RANGE, CT_F_DNAT, CT_F_HAIRPIN, CT_F_MASQ, CT_F_PUBLISHED, CT_F_REPLY, CT_F_SNAT,
    CtEntry, CtKey, DROP_CT_CLASH, DROP_CT_FULL, DROP_CT_SOURCE_BUDGET, DROP_NO_SNAT_PORT,
    DROP_REWRITE_FAILED, DpConfig, IPPROTO_ICMP, PortTarget,
};

use crate::{
    counters,
    csum::{set_addr, set_l4_u16},
    ct::{self, CreateError, NewFlow, budget},
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

/// What creating a flow does when NETD_CT is full.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Evict one flow ([`ct::make_room`]) and create it once more: the uplink programs track
    /// the packet that opens the flow. Only the creation runs again, not the program (a second
    /// copy of an uplink body cost to_uplink half of its verifier budget).
    MakeRoom,
    /// Refuse it (DROP_CT_FULL): from_container's entry point makes room for the
    /// retransmission.
    Refuse,
}

/// [`ct::create`] under `when`'s policy for a full table.
#[inline(always)]
fn create(k: &CtKey, t: &CtKey, f: &NewFlow, when: WhenFull) -> Result<(), CreateError> {
    match ct::create(k, t, f) {
        Err(CreateError::Full) if when == WhenFull::MakeRoom && ct::make_room() => {
            ct::create(k, t, f)
        }
        r => r,
    }
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
    when: WhenFull,
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
        src_window: 0,
    };
    match create(&k, &k, &f, when) {
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
    let now = ct::now();
    let w = budget::admit(&k.saddr, now);
    if w == budget::ADMIT_REFUSED {
        return Err(DROP_CT_SOURCE_BUDGET);
    }
    let f = NewFlow {
        flags: CT_F_PUBLISHED | budget::counted(w),
        binding_id: b.binding_id,
        fwd_ifindex: maps::endpoint_ifindex(b.container_ip[0]),
        rev_ifindex,
        pkt,
        len: ctx.len(),
        cfg,
        now,
        src_window: w as u32,
    };
    create(k, &t, &f, WhenFull::MakeRoom).map_err(create_err)?;
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
        src_window: 0,
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
    snat_flow(core::ptr::null_mut(), k, &mut t, &f, WhenFull::Refuse)?;
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
        src_window: 0,
    };
    snat_flow(ctx.as_ptr(), k, &mut t, &f, WhenFull::MakeRoom)?;
    rewrite(ctx, pkt, uplink_ip, t.daddr[0], t.sport, t.dport)
}

/// Where the SNAT port search starts for the container's tuple `k`, as an offset into a range
/// of `range` ports: a hash of everything but the source port, plus the source port. The same
/// tuple always starts at the same port (a client reusing its own tuple gets its own
/// translation back, and the remote end's TIME_WAIT accepts its increasing sequence numbers),
/// and the source ports of one container towards one destination map one-to-one onto the range
/// (its ephemeral range, 28 232 ports by default, is smaller than `--masq-ports auto`), so
/// they never collide with each other's TIME_WAIT tuples; other containers and destinations
/// start elsewhere. Each field goes through murmur3's finalizer (a multiply alone only moves a
/// field's bits upwards, and `% range` then keeps the low ones).
#[inline(always)]
fn search_start(k: &CtKey, range: NonZeroU32) -> u32 {
    let mut h = fmix32(k.saddr[0] ^ u32::from(k.proto));
    h = fmix32(h ^ k.daddr[0]);
    h = fmix32(h ^ u32::from(k.dport));
    // Both terms below `range`: the sum cannot overflow.
    (h % range + u32::from(u16::from_be(k.sport)) % range) % range
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Is `t`'s source port taken outside NETD_CT? By a published host port of `t`'s source
/// address (NETD_PORTS), which `--masq-ports` may overlap: a masqueraded flow there would hold
/// a reply tuple that new connections to the published port may need; or, with `skb` (the
/// program's context; null for netd's own bridge address), by a socket of this (host)
/// namespace that would receive the reply of `t`: a host process may be talking to the same
/// peer from the same port (its flows are not in NETD_CT), and taking that port would steal its
/// replies, as nf_nat knows. A leaf subprogram with a small frame (its socket tuple is in the
/// scratch slot, [`ct::sock_tuple`]): from_container's call chain has no stack to spare.
#[inline(never)]
fn host_port_taken(skb: *mut c_void, t: &CtKey, kind: u8) -> bool {
    if kind == L4_PORTS && maps::published_port(t.proto, t.saddr[0], t.sport).is_some() {
        return true;
    }
    if skb.is_null() {
        return false;
    }
    let Some(tuple) = ct::sock_tuple() else {
        return false;
    };
    // SAFETY: this CPU's scratch tuple; the IPv4 member is written in full.
    unsafe {
        let v4 = &mut (*tuple).__bindgen_anon_1.ipv4;
        v4.saddr = t.daddr[0];
        v4.daddr = t.saddr[0];
        v4.sport = t.dport;
        v4.dport = t.sport;
    }
    let size = core::mem::size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let netns = BPF_F_CURRENT_NETNS as i64 as u64;
    // SAFETY: skb is the program's skb; the tuple is this CPU's scratch buffer.
    let sk = unsafe {
        match t.proto {
            6 => bpf_sk_lookup_tcp(skb, tuple, size, netns, 0),
            17 => bpf_sk_lookup_udp(skb, tuple, size, netns, 0),
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

/// Is `t`'s source port one [`create`](ct::create) may translate `k` to? [`ct::REPLY_FREE`] or
/// [`ct::REPLY_RECLAIMABLE`] ([`ct::reply_free`]), or 0 when it is taken (by a live flow, or
/// outside NETD_CT: [`host_port_taken`]).
#[inline(always)]
fn port_usable(skb: *mut c_void, k: &CtKey, t: &CtKey, f: &NewFlow) -> u32 {
    if host_port_taken(skb, t, f.pkt.kind) {
        return 0;
    }
    ct::reply_free(k, t, f)
}

/// Tracks `k` -> `t` with `t`'s source port (set here) free for the reply.
/// `skb` is the program's context when the translated source is a host address whose sockets
/// must be respected (null: netd's own bridge address). The port, in this order:
/// - the port this same tuple was translated to last ([`last_port`]), as iptables' MASQUERADE
///   keeps a client's port: the remote end sees the same tuple with increasing sequence numbers
///   and its TIME_WAIT accepts the new SYN, where a tuple another connection finished with may
///   be refused;
/// - the original one, when it lies in [snat_port_min, snat_port_max] (the daemon reserves that
///   range from the host's ephemeral ports) or CFG_F_SNAT_IN_RANGE is off, and nobody holds it
///   (as nf_nat keeps a port only while no other conntrack entry, TIME_WAIT included, has that
///   reply tuple);
/// - a port of the range probed from a tuple-hashed start ([`search_start`]).
///
/// Only the second half of the search takes a port that another, finished connection holds
/// ([`ct::REPLY_RECLAIMABLE`]): the remote end may still be in TIME_WAIT for that tuple and
/// refuse the SYN when its sequence number is below the old connection's (the client then
/// resets and retries some 10 ms later). Before, a container port inside the range was kept
/// even so, and it collided with the hashed ports of the container's other source ports
/// whenever its ephemeral range overlapped the masquerade range (the bench's clients use
/// 15000-65000): 436 of 5 738 SYNs of one P5 run went to a port another tuple had just
/// finished with.
///
/// One [`create`](ct::create) call site (twice with [`WhenFull::MakeRoom`]: its retry), and
/// the search in `bpf_loop`: the verifier walks create and the probe once, not once per probe.
#[inline(always)]
fn snat_flow(
    skb: *mut c_void,
    k: &CtKey,
    t: &mut CtKey,
    f: &NewFlow,
    when: WhenFull,
) -> Result<(), u32> {
    let r = choose_port(skb, k, t, f);
    if r != 0 {
        return Err(r);
    }
    match create(k, t, f, when) {
        Ok(()) => Ok(()),
        Err(CreateError::Full) => Err(DROP_CT_FULL),
        // Taken by another CPU since the check.
        Err(CreateError::Clash) => Err(DROP_NO_SNAT_PORT),
    }
}

/// [`choose_port`]'s loop state, on its (small) stack; [`port_step`] gets a pointer to it.
#[repr(C)]
struct Probe {
    skb: *mut c_void,
    k: *const CtKey,
    t: *mut CtKey,
    f: *const NewFlow<'static>,
    /// 1 when a step found a port (it is in `*t`).
    found: u64,
}

/// Steps of [`port_step`]: the port `k` held last, the original port, then the search.
const STEP_LAST: u64 = 0;
const STEP_ORIGINAL: u64 = 1;
const STEP_SEARCH: u64 = 2;

/// Sets `t`'s source port (and echo id) as [`snat_flow`] describes: 0, or DROP_NO_SNAT_PORT.
/// Every candidate is one step of a `bpf_loop` (Linux 5.17), so the verifier walks one step
/// instead of unrolled copies (to_uplink used 921k of its 1M instructions so), and this frame
/// holds only the loop state: from_container's chain (from_container, this, the step,
/// [`ct::reply_free`]) must stay within Linux 6.1's 512 bytes.
#[inline(never)]
fn choose_port(skb: *mut c_void, k: &CtKey, t: &mut CtKey, f: &NewFlow) -> u32 {
    let mut p = Probe {
        skb,
        k,
        t,
        f: (f as *const NewFlow).cast(),
        found: 0,
    };
    // SAFETY: port_step has the callback signature bpf_loop expects and only uses `p` (and
    // what it points to, all alive for this call) through the pointer it is given.
    unsafe {
        bpf_loop(
            STEP_SEARCH as u32 + SNAT_TRIES,
            port_step as *mut c_void,
            (&mut p as *mut Probe).cast(),
            0,
        )
    };
    if p.found != 0 { 0 } else { DROP_NO_SNAT_PORT }
}

/// Step `i` of [`choose_port`]: 1 (stop) when the step found a usable port (`found` set) or
/// none can follow, 0 for the next step.
/// - STEP_LAST: the port `k` was translated to last ([`last_port`]), when in the range;
/// - STEP_ORIGINAL: the original port, when CFG_F_SNAT_IN_RANGE is off, or the port lies in
///   [snat_port_min, snat_port_max] (reserved from the host's own sockets, so none can open
///   later with it), or it is an ICMP echo id (no port);
/// - then SNAT_TRIES ports of the range from `k`'s [`search_start`].
///
/// A port another finished connection holds ([`ct::REPLY_RECLAIMABLE`]) is taken only in the
/// second half of the search, when every step before found none free: its remote end may
/// refuse the SYN from TIME_WAIT (the client then resets and retries, milliseconds later, or a
/// second later when that exchange is lost).
extern "C" fn port_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes choose_port's `Probe` back; its pointers are alive.
    let p = unsafe { &mut *ctx.cast::<Probe>() };
    // SAFETY: as above.
    let (k, t, f) = unsafe { (&*p.k, &mut *p.t, &*p.f) };
    let (kind, cfg) = (f.pkt.kind, f.cfg);
    let (min, max) = (cfg.snat_port_min, cfg.snat_port_max);
    let in_range = |port: u16| {
        let port = u16::from_be(port);
        port >= min && port <= max
    };
    // Can the range be searched? Without it, only the original port can be had.
    let searchable = (kind == L4_PORTS || kind == L4_ECHO) && min != 0 && max >= min;
    let reclaim = if i == STEP_ORIGINAL {
        if !(kind == L4_ECHO || cfg.flags & CFG_F_SNAT_IN_RANGE == 0 || in_range(k.sport)) {
            return 0;
        }
        set_port(t, kind, k.sport);
        // A finished connection's tuple is taken here only when no search follows.
        !searchable
    } else {
        if !searchable {
            return if i == STEP_LAST { 0 } else { 1 };
        }
        if i == STEP_LAST {
            let last = last_port(k, t);
            if last == 0 || !in_range(last) {
                return 0;
            }
            set_port(t, kind, last);
            false
        } else {
            let (min, max) = (u32::from(min), u32::from(max));
            // Never zero (max >= min); NonZero keeps a divide-by-zero panic path out.
            let Some(range) = NonZeroU32::new(max - min + 1) else {
                return 1;
            };
            let j = (i - STEP_SEARCH) as u32;
            let port = min + (search_start(k, range) + j % range) % range;
            set_port(t, kind, (port as u16).to_be());
            j >= SNAT_TRIES / 2
        }
    };
    let r = port_usable(p.skb, k, t, f);
    if r == ct::REPLY_FREE || (r == ct::REPLY_RECLAIMABLE && reclaim) {
        p.found = 1;
        return 1;
    }
    0
}

#[inline(always)]
fn set_port(t: &mut CtKey, kind: u8, port: u16) {
    t.sport = port;
    if kind == L4_ECHO {
        t.dport = port;
    }
}

/// The source port (network byte order) that the flow `k` was last translated to, when its
/// entry is still in NETD_CT (a finished or stale flow: a live one would have matched) and
/// translated to `t`'s addresses and destination port; else 0.
#[inline(always)]
fn last_port(k: &CtKey, t: &CtKey) -> u16 {
    let Some(e) = ct::entry(k) else {
        return 0;
    };
    // SAFETY: a valid map value, read at once.
    let e = unsafe { &*e };
    if e.flags & CT_F_REPLY != 0
        || e.nat_saddr != t.saddr
        || e.nat_daddr != t.daddr
        || (t.proto != IPPROTO_ICMP && e.nat_dport != t.dport)
    {
        return 0;
    }
    e.nat_sport
}
