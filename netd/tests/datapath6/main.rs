//! IPv6 policy in from_container (root): crafted frames through BPF_PROG_TEST_RUN after the
//! IPv6 maps were filled through the dataplane's API, as the agent fills them. Verdicts and
//! drop counters per rule: source addresses, neighbour discovery, router advertisements and
//! redirects, endpoints without IPv6, `--icc false` with links, network isolation, extension
//! headers and fragments. Plus the API itself: whole-or-nothing changes, and pins left by a
//! netd without the IPv6 maps.

#[path = "../datapath_util/mod.rs"]
mod datapath_util;

use std::net::Ipv6Addr;

use aya::maps::HashMap;
use datapath_util::*;
use netd::dataplane::{Dataplane, DataplaneError};
use netd_common::*;

const NH_HOP: u8 = 0;
const NH_ROUTING: u8 = 43;
const NH_FRAGMENT: u8 = 44;
const NH_ICMPV6: u8 = 58;
const NH_DSTOPTS: u8 = 60;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// The link-local address a MAC gives (modified EUI-64).
fn eui64(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

fn a_ll() -> Ipv6Addr {
    eui64(A_MAC)
}
fn b_ll() -> Ipv6Addr {
    eui64(B_MAC)
}
fn a_g() -> Ipv6Addr {
    a6("2001:db8:1::2")
}
fn b_g() -> Ipv6Addr {
    a6("2001:db8:1::3")
}
fn gw() -> Ipv6Addr {
    a6("2001:db8:1::1")
}
fn outside() -> Ipv6Addr {
    a6("2001:db8:ff::9")
}

/// The multicast MAC of an IPv6 group (33:33 + its last 32 bits).
fn group_mac(g: Ipv6Addr) -> [u8; 6] {
    let o = g.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::from([
        0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// An IPv6 packet (from the IPv6 header on) of `nh` carrying `payload`.
fn ip6(s: Ipv6Addr, d: Ipv6Addr, nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[nh, 255]);
    p.extend_from_slice(&s.octets());
    p.extend_from_slice(&d.octets());
    p.extend_from_slice(payload);
    p
}

fn eth6(src: [u8; 6], dst: [u8; 6], packet: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(packet);
    f
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = sport.to_be_bytes().to_vec();
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn icmp6(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(body);
    m
}

/// A link-layer address option (1: source, 2: target).
fn lla(ty: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut o = vec![ty, 1];
    o.extend_from_slice(&mac);
    o
}

/// A neighbour solicitation or advertisement (`ty` 135/136) for `target` with `opts`.
fn nd(ty: u8, target: Ipv6Addr, opts: &[u8]) -> Vec<u8> {
    let mut body = if ty == 136 {
        vec![0x60, 0, 0, 0]
    } else {
        vec![0; 4]
    };
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(opts);
    icmp6(ty, &body)
}

/// An 8-byte hop-by-hop or destination options header (PadN) before `next`.
fn opts_hdr(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// A fragment header: `offset` in 8-byte units, more fragments, identification.
fn frag_hdr(next: u8, offset: u16, more: bool, id: u32) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

fn run(w: &World, ifindex: u32, frame: &[u8]) -> u32 {
    w.run(PROG_FROM_CONTAINER, ifindex, frame).0
}

/// The endpoints' IPv6 maps as the API writes them: A with link-local and global, B too
/// unless `b` is false (then B has no IPv6 configuration).
fn program6(w: &World, b: bool) {
    let pins = w.pins.0.clone();
    let mut dp = Dataplane::open(&netd::dataplane::DataplaneConfig {
        pin_dir: pins,
        ct_max: CT_MAX_DEFAULT,
    })
    .expect("a second handle on the pinned maps");
    dp.set_endpoint_ipv6(w.va, a_ll(), Some(a_g())).unwrap();
    if b {
        dp.set_endpoint_ipv6(w.vb, b_ll(), Some(b_g())).unwrap();
    }
}

mod addresses;
mod api;
mod headers;
mod policy;
