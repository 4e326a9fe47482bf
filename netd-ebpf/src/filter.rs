//! Source filters at XDP (`xdp_prefilter` on uplinks): with an allow or deny list configured,
//! a packet that opens a connection to a container (to a container address, or to a published
//! port) from a denied or not-allowed source is dropped before the stack sees it, and so are
//! the later packets of its flows: a `deny` added later cuts established connections, as
//! Docker's DOCKER-USER rules do. Replies of the containers' own outbound flows always pass.
//! VLAN-tagged frames (802.1Q, 802.1ad, up to two tags) are judged by the packet inside: no
//! tag gets past the lists.

use aya_ebpf::{bindings::xdp_action::XDP_PASS, programs::XdpContext};
use netd_common::{
    CFG_F_ALLOWLIST, CFG_F_DENYLIST, CT_F_MASQ, CT_F_REPLY, DROP_FILTER_DENY,
    DROP_FILTER_NOT_ALLOWED, PORT_F_LOOPBACK,
};

use crate::{
    ct, maps,
    parse::{self, L4_PORTS, Untagged},
};

pub fn prefilter(ctx: &XdpContext) -> Result<u32, u32> {
    let Some(cfg) = maps::config() else {
        return Ok(XDP_PASS);
    };
    if cfg.flags & (CFG_F_ALLOWLIST | CFG_F_DENYLIST) == 0 {
        return Ok(XDP_PASS);
    }
    // Malformed packets are left to the TC programs, which count them.
    let Ok(shift) = parse::vlan_tags_len(ctx) else {
        return Ok(XDP_PASS);
    };
    let frame = Untagged { frame: ctx, shift };
    let Ok(Some(pkt)) = parse::ipv4(&frame) else {
        return Ok(XDP_PASS);
    };
    if !pkt.has_l4() {
        return Ok(XDP_PASS);
    }
    let to_container = maps::in_networks(cfg, pkt.daddr)
        || pkt.kind == L4_PORTS
            && maps::published_port(pkt.proto, pkt.daddr, pkt.dport)
                .is_some_and(|b| b.flags & PORT_F_LOOPBACK == 0);
    if !to_container {
        return Ok(XDP_PASS);
    }
    // Replies of a container's outbound flow (unmasqueraded: to its own address) pass; a
    // flow from outside is judged packet by packet.
    if let Some(p) = ct::lookup(&ct::key(&pkt), &pkt, cfg, ct::now()) {
        // SAFETY: a valid map value, read at once.
        let flags = unsafe { (*p).flags };
        if flags & CT_F_MASQ != 0 && flags & CT_F_REPLY != 0 {
            return Ok(XDP_PASS);
        }
    }
    if cfg.flags & CFG_F_DENYLIST != 0 && maps::denied(pkt.saddr) {
        return Err(DROP_FILTER_DENY);
    }
    if cfg.flags & CFG_F_ALLOWLIST != 0 && !maps::allowed(pkt.saddr) {
        return Err(DROP_FILTER_NOT_ALLOWED);
    }
    Ok(XDP_PASS)
}
