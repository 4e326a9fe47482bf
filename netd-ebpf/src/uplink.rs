//! The uplink hooks (Cilium's bpf_host): `from_uplink` (TC ingress) translates traffic from
//! outside to published ports and masquerade replies, and refuses direct access to container
//! addresses; `to_uplink` (TC egress) masquerades container traffic leaving the host and
//! restores the host address on published-port replies (after routing, so the stack never sees
//! a local source address arriving on the bridge). On the fast path (`redirect`), translated
//! packets from outside go straight into their container, and replies reach `to_uplink`
//! already translated (their source is no longer a container's: they pass).

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_UNSPEC},
    programs::TcContext,
};
use netd_common::{
    CT_F_HAIRPIN, CT_F_MASQ, CT_F_PUBLISHED, CT_F_REPLY, DROP_DIRECT_ACCESS, DROP_FRAGMENT,
    DROP_LOOPBACK_ONLY, DROP_MARTIAN, DROP_NET_INTERNAL, DROP_VLAN, DpConfig, NET_F_INTERNAL,
    NET_F_MASQ, PORT_F_LOOPBACK, UPLINK_F_VLAN_PARENT, is_martian_source,
};

use crate::{
    ct, frag, icmp, maps,
    nat::{self, WhenFull, Xlate},
    parse::{self, FRAG_LATER, L4_ICMP_ERR, L4_PORTS},
    redirect,
};

const PASS: i32 = TC_ACT_OK;
/// Traffic netd does not own (the host's own, not IPv4): on to the next program on the hook
/// (TCX_NEXT; the next filter with clsact), or the stack when there is none. netd attaches
/// first, so `TC_ACT_OK` here would hide this traffic from every program after it.
const NEXT: i32 = TC_ACT_UNSPEC;

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Entries whose packets arrive from outside: a published flow's original direction, the
/// reply of an outbound (masqueraded or tracked) flow.
#[inline(always)]
pub fn arrives_from_outside(flags: u16) -> bool {
    let published = flags & CT_F_PUBLISHED != 0 && flags & (CT_F_REPLY | CT_F_HAIRPIN) == 0;
    let outbound_reply = flags & CT_F_MASQ != 0 && flags & CT_F_REPLY != 0;
    published || outbound_reply
}

/// Entries whose packets leave for outside: an outbound flow's original direction, a published
/// flow's reply.
#[inline(always)]
pub fn leaves_for_outside(flags: u16) -> bool {
    let outbound = flags & CT_F_MASQ != 0 && flags & CT_F_REPLY == 0;
    let published_reply =
        flags & CT_F_PUBLISHED != 0 && flags & CT_F_REPLY != 0 && flags & CT_F_HAIRPIN == 0;
    outbound || published_reply
}

/// The VLAN id the kernel took off the frame before this hook (0: untagged, or priority-tagged,
/// which the kernel treats as untagged).
#[inline(always)]
fn vlan_id(ctx: &TcContext) -> u32 {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let (present, tci) = unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).vlan_tci) };
    if present == 0 { 0 } else { tci & 0x0fff }
}

/// Would the packet be translated for, or delivered to, a container: to a container address or
/// a published port? (What else arrives is host traffic: the stack decides.)
#[inline(always)]
fn towards_containers(cfg: &DpConfig, pkt: &parse::Pkt) -> bool {
    maps::in_networks(cfg, pkt.daddr)
        || pkt.kind == L4_PORTS && maps::published_port(pkt.proto, pkt.daddr, pkt.dport).is_some()
}

/// A source no outside host may send from: a martian (0/8, 127/8, multicast, 240/4), the
/// bridge subnet (the gateway included), one of the host's own addresses.
#[inline(always)]
fn spoofed_source(cfg: &DpConfig, saddr: u32) -> bool {
    is_martian_source(saddr)
        || maps::in_networks(cfg, saddr)
        || saddr == cfg.bridge_ip
        || maps::is_host_addr(saddr)
}

#[inline(always)]
pub fn from_uplink(ctx: &TcContext) -> Result<i32, u32> {
    let Some(mut pkt) = parse::ipv4(ctx)? else {
        return from_uplink6(ctx);
    };
    let Some(cfg) = maps::config() else {
        return Ok(NEXT);
    };
    // A tagged frame belongs to a VLAN device. When that device is an uplink, its own hooks
    // see the frame untagged next; otherwise nothing may translate it (the kernel discards it
    // after this hook, or hands it to a VLAN device netd does not police).
    if vlan_id(ctx) != 0 {
        if maps::uplink_flags(ifindex(ctx)) & UPLINK_F_VLAN_PARENT == 0
            && towards_containers(cfg, &pkt)
        {
            return Err(DROP_VLAN);
        }
        return Ok(NEXT);
    }
    // The fast path skips the stack's martian and reverse-path checks: a spoofed source gets
    // no translation and never reaches a container. To the host itself, the stack decides.
    if spoofed_source(cfg, pkt.saddr) {
        return if towards_containers(cfg, &pkt) {
            Err(DROP_MARTIAN)
        } else {
            Ok(NEXT)
        };
    }
    if pkt.kind == L4_ICMP_ERR {
        return icmp::from_uplink(ctx, &pkt, cfg);
    }
    let known = frag::resolve(&mut pkt);
    let k = ct::key(&pkt);
    let now = ct::now();
    if known && let Some(p) = ct::lookup(&k, &pkt, cfg, now) {
        // SAFETY: a valid map value, copied out before any map update.
        let x = Xlate::of(unsafe { &*p });
        if arrives_from_outside(x.flags) {
            ct::touch(p, &k, &pkt, ctx, now)?;
            nat::apply(ctx, &pkt, &x)?;
            return Ok(into_container(ctx, cfg, x.daddr));
        }
    }
    if pkt.frag == FRAG_LATER {
        // Untracked later fragments never open flows. To a host address they are host
        // traffic (or the stack discards them when their first fragment went elsewhere).
        return if maps::in_networks(cfg, pkt.daddr) {
            Err(DROP_DIRECT_ACCESS)
        } else {
            Ok(NEXT)
        };
    }
    if pkt.kind == L4_PORTS
        && let Some(b) = maps::published_port(pkt.proto, pkt.daddr, pkt.dport)
    {
        if b.flags & PORT_F_LOOPBACK != 0 {
            return Err(DROP_LOOPBACK_ONLY);
        }
        // Nothing from outside reaches an --internal network, published ports included.
        if internal(cfg, b.container_ip[0]) {
            return Err(DROP_NET_INTERNAL);
        }
        nat::published(ctx, &pkt, &b, ifindex(ctx), cfg)?;
        return Ok(into_container(ctx, cfg, b.container_ip[0]));
    }
    if maps::in_networks(cfg, pkt.daddr) {
        return Err(DROP_DIRECT_ACCESS);
    }
    Ok(NEXT)
}

/// A frame that is not IPv4 (`nat6`): a packet translated for a published port, or TCP/UDP
/// routed to a container's own address (no flow or binding took it: nothing else of netd's
/// applies to it here), goes straight into its container on the fast path
/// (`redirect::into_container6`), else to the stack (or the next program) as before.
#[inline(always)]
fn from_uplink6(ctx: &TcContext) -> Result<i32, u32> {
    let v = crate::nat6::from_uplink(ctx);
    if v == crate::nat6::V6_PASS || v == crate::nat6::V6_NEXT {
        let r = redirect::into_container6(ctx);
        if r != redirect::NOT_TAKEN {
            return Ok(r as i32);
        }
    }
    crate::nat6::verdict(v)
}

/// Is `ip` (network byte order) on an `--internal` network?
#[inline(always)]
fn internal(cfg: &DpConfig, ip: u32) -> bool {
    let net = maps::net_id(cfg, ip);
    net != maps::NO_NET && maps::net_flags(cfg, net) & NET_F_INTERNAL != 0
}

/// The verdict for a packet translated for the container at `ip`: straight into it on the
/// fast path, else to the stack.
#[inline(always)]
fn into_container(ctx: &TcContext, cfg: &netd_common::DpConfig, ip: u32) -> i32 {
    if redirect::enabled(cfg) {
        let v = redirect::into_container(ctx, ip);
        if v != redirect::NOT_TAKEN {
            return v as i32;
        }
    }
    PASS
}

#[inline(always)]
pub fn to_uplink(ctx: &TcContext) -> Result<i32, u32> {
    let Some(mut pkt) = parse::ipv4(ctx)? else {
        return crate::nat6::to_uplink_tail(ctx);
    };
    let Some(cfg) = maps::config() else {
        return Ok(NEXT);
    };
    if maps::in_networks(cfg, pkt.daddr) {
        return Ok(NEXT);
    }
    // ICMP errors from containers and from the host itself.
    if pkt.kind == L4_ICMP_ERR {
        return icmp::to_uplink(ctx, &pkt, cfg);
    }
    let net = maps::net_id(cfg, pkt.saddr);
    if net == maps::NO_NET {
        return Ok(NEXT);
    }
    let net_flags = maps::net_flags(cfg, net);
    if net_flags & NET_F_INTERNAL != 0 {
        return Err(DROP_NET_INTERNAL);
    }
    let known = frag::resolve(&mut pkt);
    let k = ct::key(&pkt);
    let now = ct::now();
    if known && let Some(p) = ct::lookup(&k, &pkt, cfg, now) {
        // SAFETY: a valid map value, copied out before any map update.
        let x = Xlate::of(unsafe { &*p });
        if leaves_for_outside(x.flags) {
            ct::touch(p, &k, &pkt, ctx, now)?;
            nat::apply(ctx, &pkt, &x)?;
            return Ok(PASS);
        }
    }
    let masq = net_flags & NET_F_MASQ != 0;
    if pkt.frag == FRAG_LATER {
        // Its flow is unknown: it cannot be translated, and must not leak the container's
        // address.
        return if masq { Err(DROP_FRAGMENT) } else { Ok(PASS) };
    }
    let uplink = ifindex(ctx);
    let uplink_ip = maps::uplink_ip(uplink);
    if masq && uplink_ip != 0 {
        nat::masquerade(ctx, &pkt, uplink_ip, uplink, cfg)?;
        return Ok(PASS);
    }
    // Not translated, but tracked so that the replies pass the direct-access check.
    let rev = maps::endpoint_ifindex(pkt.saddr);
    nat::track(&pkt, CT_F_MASQ, uplink, rev, ctx.len(), WhenFull::MakeRoom)?;
    Ok(PASS)
}
