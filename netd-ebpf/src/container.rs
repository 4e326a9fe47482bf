//! The container hooks (Cilium's bpf_lxc), on a container's host-side veth: `from_container`
//! (TC ingress: what the container sends) enforces anti-spoofing (IPv6 in `policy6`), hairpin NAT (delivered
//! straight into the target when it is on another network), network isolation and the
//! network's icc, and on the fast path sends tracked traffic that leaves by an uplink straight
//! there (`redirect`);
//! `to_container` (TC egress) refuses what reaches a container from an interface netd does not
//! police (a second NIC, a VPN): only `--uplink`s get the direct-access check and DNAT.

use aya_ebpf::{bindings::TC_ACT_OK, programs::TcContext};
use netd_common::{
    CT_F_HAIRPIN, CT_F_LINK, CtKey, DROP_DIRECT_ACCESS, DROP_ETHERTYPE, DROP_FRAGMENT, DROP_ICC,
    DROP_LOOPBACK_ONLY, DROP_MARTIAN, DROP_SPOOFED_IP, PORT_F_LOOPBACK,
};

use crate::{
    ct, frag, icmp, maps,
    nat::{self, Xlate},
    parse::{self, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, FRAG_LATER, L4_ICMP_ERR, L4_PORTS},
    policy, policy6, redirect, uplink,
};

const PASS: i32 = TC_ACT_OK;

#[inline(always)]
pub fn from_container(ctx: &TcContext) -> Result<i32, u32> {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // Not (yet) an endpoint the agent manages: no policy to apply.
    let Some(ep) = maps::endpoint(ifindex) else {
        return Ok(PASS);
    };
    policy::check_eth_src(ctx, &ep)?;
    match parse::ethertype(ctx)? {
        ETH_P_ARP => {
            policy::check_arp(ctx, &ep)?;
            return Ok(PASS);
        }
        ETH_P_IP => {}
        ETH_P_IPV6 => {
            // On in from_container6 (policy and fast path); here only without that program.
            crate::nat6::from_container_tail(ctx);
            return match policy6::from_container(ctx, ifindex) {
                0 => Ok(PASS),
                r => Err(r),
            };
        }
        // VLAN tags (0x8100, 0x88a8) and everything else would carry traffic past the policy.
        _ => return Err(DROP_ETHERTYPE),
    }
    let Some(mut pkt) = parse::ipv4(ctx)? else {
        return Ok(PASS);
    };
    if pkt.saddr != ep.ip {
        return Err(DROP_SPOOFED_IP);
    }
    let Some(cfg) = maps::config() else {
        return Ok(PASS);
    };
    let net = u32::from(ep.net_id);
    if policy::icc_off(cfg, net) {
        let r = policy::check_eth_dst(ctx, net, pkt.daddr);
        if r != 0 {
            return Err(r);
        }
    }
    if pkt.kind == L4_ICMP_ERR {
        return icmp::from_container(ctx, &pkt, cfg, net);
    }
    let known = frag::resolve(&mut pkt);
    let k = ct::key(&pkt);
    let now = ct::now();
    if known && let Some(p) = ct::lookup(&k, &pkt, cfg, now) {
        // SAFETY: a valid map value, copied out before any map update.
        let x = Xlate::of(unsafe { &*p });
        if x.flags & CT_F_HAIRPIN != 0 {
            ct::touch(p, &k, &pkt, ctx, now)?;
            nat::apply(ctx, &pkt, &x)?;
            if x.is_self_hairpin() {
                return nat::bounce(ctx, x.ifindex);
            }
            // Between two networks the stack would not route it (they are isolated): into
            // the other network's container directly.
            let v = redirect::across_networks(ctx, pkt.saddr, x.daddr);
            if v != redirect::NOT_TAKEN {
                return Ok(v as i32);
            }
        } else if x.flags & CT_F_LINK != 0 {
            ct::touch(p, &k, &pkt, ctx, now)?;
        } else if redirect::enabled(cfg) && uplink::leaves_for_outside(x.flags) {
            // Fast path: routed, translated and sent to the uplink from here.
            let out = redirect::route_to_uplink(ctx, &pkt, ifindex);
            if out != 0 {
                ct::touch(p, &k, &pkt, ctx, now)?;
                nat::apply(ctx, &pkt, &x)?;
                return Ok(redirect::send_to_uplink(ctx, out) as i32);
            }
        }
        // Outbound flows and published replies are translated (and accounted) at the uplink,
        // after routing.
        return Ok(PASS);
    }
    let r = policy::check_network(net, pkt.daddr);
    if r != 0 {
        return Err(r);
    }
    if pkt.frag == FRAG_LATER {
        return if policy::icc_guarded(net, pkt.daddr) {
            Err(DROP_FRAGMENT)
        } else {
            Ok(PASS)
        };
    }
    if pkt.kind == L4_PORTS
        && let Some(b) = maps::published_port(pkt.proto, pkt.daddr, pkt.dport)
    {
        if b.flags & PORT_F_LOOPBACK != 0 {
            return Err(DROP_LOOPBACK_ONLY);
        }
        return nat::hairpin(ctx, &pkt, &b, ep.ifindex, cfg);
    }
    if policy::icc_guarded(net, pkt.daddr) {
        if pkt.kind == L4_PORTS && maps::link_allows(pkt.saddr, pkt.daddr, pkt.proto, pkt.dport) {
            let fwd = maps::endpoint_ifindex(pkt.daddr);
            nat::track(
                &pkt,
                CT_F_LINK,
                fwd,
                ifindex,
                ctx.len(),
                nat::WhenFull::Refuse,
            )?;
            return Ok(PASS);
        }
        return Err(DROP_ICC);
    }
    Ok(PASS)
}

/// What reaches a container: from the host itself (locally generated: no ingress interface),
/// over its network's bridge, from another container, from an uplink (`from_uplink` already refused
/// direct access there), or a tracked flow. Anything else arrived on a host interface that is
/// no uplink and was routed to the container subnet: direct access (with a bridge-subnet
/// source: a martian).
/// Packets redirected into the container on the fast path (`bpf_redirect_peer`) skip this hook.
pub fn to_container(ctx: &TcContext) -> Result<i32, u32> {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let (ifindex, iif) = unsafe { ((*ctx.skb.skb).ifindex, (*ctx.skb.skb).ingress_ifindex) };
    if iif == 0 {
        return Ok(PASS);
    }
    let Some(ep) = maps::endpoint(ifindex) else {
        return Ok(PASS);
    };
    let Some(cfg) = maps::config() else {
        return Ok(PASS);
    };
    // The container's own network's bridge.
    let bridge =
        maps::network(u32::from(ep.net_id)).map_or(cfg.bridge_ifindex, |n| n.bridge_ifindex);
    if iif == bridge || maps::is_uplink(iif) || maps::endpoint(iif).is_some() {
        return Ok(PASS);
    }
    let Some(pkt) = parse::ipv4(ctx)? else {
        return Ok(PASS);
    };
    // The bridge subnet's addresses live behind the bridge: arriving by another interface,
    // they are spoofed (the stack checks this only with rp_filter on).
    if maps::in_networks(cfg, pkt.saddr) {
        return Err(DROP_MARTIAN);
    }
    // The container's own direction of a tracked flow (entries are keyed by what the
    // container sends).
    if pkt.kind == L4_PORTS || pkt.kind == parse::L4_ECHO {
        let k = CtKey::v4(pkt.daddr, pkt.saddr, pkt.dport, pkt.sport, pkt.proto);
        if pkt.frag != FRAG_LATER && ct::lookup_key(&k, cfg, ct::now()).is_some() {
            return Ok(PASS);
        }
    }
    Err(DROP_DIRECT_ACCESS)
}

/// `from_container6`'s body (tail-called by [`from_container`] for IPv6, after the MAC check):
/// the IPv6 policy (`policy6`), then on the fast path TCP/UDP that leaves by an uplink (a
/// published flow's reply, translated there, or the container's own routed traffic) is sent
/// there ([`redirect::out6_to_uplink`]); anything else goes to the stack, as before.
#[inline(always)]
pub fn from_container6(ctx: &TcContext) -> Result<i32, u32> {
    // SAFETY: ctx.skb.skb is the valid __sk_buff the kernel passed to this program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    crate::nat6::clear_translated();
    match policy6::from_container(ctx, ifindex) {
        0 => {}
        r => return Err(r),
    }
    let Some(cfg) = maps::config() else {
        return Ok(PASS);
    };
    if !redirect::enabled(cfg) {
        return Ok(PASS);
    }
    let v = redirect::out6_to_uplink(ctx, ifindex);
    if v != redirect::NOT_TAKEN {
        return Ok(v as i32);
    }
    Ok(PASS)
}
