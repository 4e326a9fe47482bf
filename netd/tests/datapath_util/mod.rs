//! Harness of the datapath tests: a private network namespace with veth interfaces standing
//! in for the uplink, the bridge and the containers' veths; the dataplane loaded with its maps
//! pinned in a private bpffs; map access through the pins (as bpftool or the agent would);
//! frame building and checksum verification from scratch.

#![allow(
    dead_code,
    reason = "shared by several test files; not each uses every helper"
)]

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
    programs::{TestRun as _, TestRunOptions, Xdp},
};
use netd::dataplane::{Dataplane, DataplaneConfig, EBPF_OBJECT};
use netd_common::*;
/// The shared harness's pieces, under the names these tests have always used.
#[allow(
    unused_imports,
    reason = "re-exported for the test files; not each uses every one"
)]
pub use netd_tests::{Netns, run_cmd, spawn_in};

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
/// TC_ACT_UNSPEC (-1): "not mine", on to the next program on the hook (TCX_NEXT).
pub const TC_ACT_NEXT: u32 = u32::MAX;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const PROG_XDP_PREFILTER: &str = "xdp_prefilter";

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TIME_EXCEEDED: u8 = 11;

pub const UPLINK_IP: [u8; 4] = [198, 51, 100, 1];
pub const BRIDGE_IP: [u8; 4] = [172, 30, 0, 1];
pub const A_IP: [u8; 4] = [172, 30, 0, 2];
pub const B_IP: [u8; 4] = [172, 30, 0, 3];
pub const BRIDGE_MAC: [u8; 6] = [0x02, 0x42, 0, 0, 0, 0x01];
pub const A_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x1e, 0, 0x02];
pub const B_MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x1e, 0, 0x03];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
pub const UPLINK_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// The MAC of the uplink's next hop towards CLIENT, 198.51.100.254 (REMOTE's, .253, has no
/// neighbour entry), and of the IPv6 one (2001:db8:ff::fe).
pub const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

/// Runs a command in the namespace the calling thread entered (children inherit the thread's
/// network namespace). Refuses to run unless this thread is in another namespace than the
/// process (which stays where the test runner started it).
pub fn in_world(argv: &[&str]) {
    let ino = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    };
    assert_ne!(
        ino("/proc/thread-self/ns/net"),
        ino("/proc/self/ns/net"),
        "not inside the test namespace"
    );
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An address as the maps hold it (network byte order in a u32).
pub fn ip(a: [u8; 4]) -> u32 {
    u32::from_ne_bytes(a)
}

pub fn ct_key(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16, proto: u8) -> CtKey {
    CtKey::v4(ip(s), ip(d), sport.to_be(), dport.to_be(), proto)
}

// ------------------------------------------------------------------------------------------
// Namespaces (the shared harness's [`Netns`]) and pins.

/// A name unique to this run for pins and directories: `netd-dpath-<pid>x<n><tag>` (the
/// shared harness's counter).
pub fn unique(tag: &str) -> String {
    format!("{}{tag}", netd_tests::unique("netd-dpath-"))
}

/// Two namespaces joined by a veth pair: `h`'s `dp0` has `<net>.1/24`, `peer`'s `dp1`
/// `<net>.2/24` (`net`: the first three octets, e.g. "10.77.0"); both ends up.
pub struct VethPair {
    pub h: Netns,
    pub peer: Netns,
}

impl VethPair {
    pub fn new(net: &str) -> Self {
        let h = Netns::new("netd-dpath-h");
        let peer = Netns::new("netd-dpath-p");
        h.ip(&[
            "link", "add", "dp0", "type", "veth", "peer", "name", "dp1", "netns", &peer.name,
        ]);
        h.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "dp0"]);
        h.ip(&["link", "set", "dp0", "up"]);
        peer.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "dp1"]);
        peer.ip(&["link", "set", "dp1", "up"]);
        Self { h, peer }
    }

    /// A UDP socket on each end of the pair `net` (`<net>.1` in `h`, `<net>.2` in `peer`),
    /// ephemeral ports.
    pub fn udp_sockets_of(
        h: &Netns,
        peer: &Netns,
        net: &str,
    ) -> (std::net::UdpSocket, std::net::UdpSocket) {
        let bind = |ns: &Netns, a: String| {
            ns.enter(|| std::net::UdpSocket::bind(&a).unwrap_or_else(|e| panic!("bind {a}: {e}")))
        };
        (
            bind(h, format!("{net}.1:0")),
            bind(peer, format!("{net}.2:0")),
        )
    }
}

/// A pin directory under /run (the dataplane mounts bpffs there), unmounted and removed on
/// drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> Self {
        Self(PathBuf::from(format!("/run/{}", unique("-pins"))))
    }

    /// A dataplane configuration pinning here, with the default conntrack size.
    pub fn config(&self) -> netd::dataplane::DataplaneConfig {
        netd::dataplane::DataplaneConfig {
            pin_dir: self.0.clone(),
            ct_max: netd_common::CT_MAX_DEFAULT,
        }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Pins an empty map that bpftool creates at `path`, as a netd of another layout would have
/// left it: `kind` is bpftool's type name (`hash`, `lru_hash`, `array`), `key` and `value` the
/// sizes in bytes.
pub fn pin_bpftool_map(path: &Path, kind: &str, key: u32, value: u32, entries: u32, name: &str) {
    let (key, value, entries) = (key.to_string(), value.to_string(), entries.to_string());
    run_cmd(&[
        "bpftool",
        "map",
        "create",
        path.to_str().expect("a UTF-8 pin path"),
        "type",
        kind,
        "key",
        &key,
        "value",
        &value,
        "entries",
        &entries,
        "name",
        name,
    ]);
}

/// The error of a [`Dataplane::open`] over `pins` that must refuse them; panics saying `what`
/// was accepted if it opens.
pub fn open_refused(pins: &PinDir, what: &str) -> String {
    match Dataplane::open(&pins.config()) {
        Ok(_) => panic!("{what} was accepted"),
        Err(e) => e.to_string(),
    }
}

/// A pinned map of the dataplane under `pin_dir`.
pub fn open_map(pin_dir: &Path, name: &str) -> Map {
    let path = netd::dataplane::pinned_map(pin_dir, name);
    let data = MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Map::from_map_data(data).expect("map type")
}

pub fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap_or_else(|e| panic!("ifindex of {name}: {e}"))
}

// ------------------------------------------------------------------------------------------
// The world: one host namespace, maps programmed like the agent does.

/// Bindings: tcp *:8080 -> A:80 (11), udp *:5353 -> B:53 (12), tcp 127.0.0.1:9000 -> A:90
/// loopback-only (13), tcp *:7000-7009 -> B:8000-8009 (14).
pub fn bindings() -> Vec<PortEntry> {
    let e = |proto, host: [u8; 4], start, end, cport, cip, id, flags| PortEntry {
        host_ip: ip(host),
        proto,
        flags,
        host_port_start: start,
        host_port_end: end,
        container_port: cport,
        container_ip: ip(cip),
        binding_id: id,
        ..Default::default()
    };
    let mut v = vec![
        e(IPPROTO_TCP, [0; 4], 8080, 8080, 80, A_IP, 11, 0),
        e(IPPROTO_UDP, [0; 4], 5353, 5353, 53, B_IP, 12, 0),
        e(
            IPPROTO_TCP,
            [127, 0, 0, 1],
            9000,
            9000,
            90,
            A_IP,
            13,
            PORT_F_LOOPBACK,
        ),
        e(IPPROTO_TCP, [0; 4], 7000, 7009, 8000, B_IP, 14, 0),
    ];
    v.sort_by_key(|e| (e.proto, e.host_ip, e.host_port_start));
    v
}

/// Writes `bindings` into NETD_PORTS as the agent's writer does: one entry per port.
pub fn write_ports(map: Map, bindings: &[PortEntry]) {
    let mut ports: HashMap<_, PortKey, PortTarget> = HashMap::try_from(map).unwrap();
    for b in bindings {
        for (k, t) in b.expand() {
            ports.insert(k, t, 0).unwrap();
        }
    }
}

/// NETD_HOST_ADDRS as the agent writes it: the uplink's and the bridge's addresses, loopback.
pub fn put_host_addrs(pin_dir: &Path, up: u32, br: u32) {
    let mut h: HashMap<_, u32, u32> = HashMap::try_from(open_map(pin_dir, MAP_HOST_ADDRS)).unwrap();
    for (a, i) in [(UPLINK_IP, up), (BRIDGE_IP, br), ([127, 0, 0, 1], 1)] {
        h.insert(ip(a), i, 0).unwrap();
    }
}

/// The uplink `up` (address [`UPLINK_IP`]) in NETD_UPLINKS.
pub fn put_uplink(pin_dir: &Path, up: u32) {
    let mut u: HashMap<_, u32, UplinkInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_UPLINKS)).unwrap();
    let info = UplinkInfo {
        ip: ip(UPLINK_IP),
        flags: 0,
    };
    u.insert(up, info, 0).unwrap();
}

/// An endpoint in NETD_ENDPOINTS (by ifindex) and NETD_EP_BY_IP (by address), as the agent
/// writes it.
pub fn put_endpoint(pin_dir: &Path, e: &EndpointInfo) {
    let mut eps: HashMap<_, u32, EndpointInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_ENDPOINTS)).unwrap();
    let mut by_ip: HashMap<_, u32, EndpointInfo> =
        HashMap::try_from(open_map(pin_dir, MAP_EP_BY_IP)).unwrap();
    eps.insert(e.ifindex, e, 0).unwrap();
    by_ip.insert(e.ip, e, 0).unwrap();
}

/// A `--link` allowance src -> dst for `proto` to the port `ranges` in NETD_LINKS.
pub fn put_link(pin_dir: &Path, src: [u8; 4], dst: [u8; 4], proto: u8, ranges: &[(u16, u16)]) {
    let mut m: HashMap<_, LinkKey, LinkPorts> =
        HashMap::try_from(open_map(pin_dir, MAP_LINKS)).unwrap();
    let mut lp = LinkPorts {
        count: ranges.len() as u32,
        ..Default::default()
    };
    for (i, &(start, end)) in ranges.iter().enumerate() {
        lp.ranges[i] = PortPair { start, end };
    }
    let k = LinkKey {
        src_ip: ip(src),
        dst_ip: ip(dst),
        proto,
        _pad: [0; 3],
    };
    m.insert(k, lp, 0).unwrap();
}

/// `flags` on the bridge `br` (172.30.0.1/24, MAC `bridge_mac`); the rest zero.
pub fn bridge_config(br: u32, flags: u32, bridge_mac: [u8; 6]) -> DpConfig {
    DpConfig {
        flags,
        bridge_ifindex: br,
        bridge_ip: ip(BRIDGE_IP),
        subnet: ip([172, 30, 0, 0]),
        subnet_mask: ip([255, 255, 255, 0]),
        bridge_mac,
        ..Default::default()
    }
}

/// `--icc false --ip-masq true` on the bridge `br` (172.30.0.1/24), SNAT ports 50000-50999,
/// the agent's default timeouts.
pub fn base_config(pin_dir: &Path, br: u32) -> DpConfig {
    DpConfig {
        snat_port_min: 50000,
        snat_port_max: 50999,
        ct_tcp_syn_s: 60,
        ct_tcp_established_s: 3600,
        ct_tcp_closing_s: 120,
        ct_udp_s: 60,
        ct_icmp_s: 30,
        ct_unreplied_s: 30,
        ct_tcp_time_wait_s: 120,
        ct_tcp_close_s: 10,
        ct_ring_slots: Array::<_, CtRingSlot>::try_from(open_map(pin_dir, MAP_CT_RING))
            .unwrap()
            .len(),
        ..bridge_config(br, CFG_F_MASQ, BRIDGE_MAC)
    }
}

/// Writes `c` as NETD_CONFIG.
pub fn set_config(pin_dir: &Path, c: DpConfig) {
    let mut a: Array<_, DpConfig> = Array::try_from(open_map(pin_dir, MAP_CONFIG)).unwrap();
    a.set(0, c, 0).unwrap();
}

/// Every drop counter, summed over the CPUs.
pub fn drop_counts(pin_dir: &Path) -> [u64; DROP_REASONS as usize] {
    let m: PerCpuArray<_, u64> = PerCpuArray::try_from(open_map(pin_dir, MAP_DROPS)).unwrap();
    let mut out = [0; DROP_REASONS as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = m.get(&(i as u32), 0).unwrap().iter().sum();
    }
    out
}

// ------------------------------------------------------------------------------------------
// Real traffic: a host namespace with the bridge, containers plugged into it by veths.

/// Gives `h` the bridge `netd0` with [`BRIDGE_IP`]/24, up, and loopback up.
pub fn add_bridge(h: &Netns) {
    h.ip(&["link", "add", "netd0", "type", "bridge"]);
    h.ip(&["addr", "add", "172.30.0.1/24", "dev", "netd0"]);
    for dev in ["lo", "netd0"] {
        h.ip(&["link", "set", dev, "up"]);
    }
}

/// A container namespace whose `eth0` (address `cidr`, no DAD for IPv6) is the peer of `dev`
/// on `h`'s bridge `netd0`; `dev`, `eth0` and loopback are up.
pub fn plug_container(h: &Netns, tag: &str, dev: &str, cidr: &str) -> Netns {
    let c = Netns::new(&format!("netd-dpath-{tag}-"));
    h.ip(&[
        "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &c.name,
    ]);
    h.ip(&["link", "set", dev, "master", "netd0"]);
    h.ip(&["link", "set", dev, "up"]);
    // No DAD: IPv6 addresses are usable at once (these are the test's own namespaces).
    c.exec(&["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0"]);
    c.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0"]);
    c.ip(&["addr", "add", cidr, "dev", "eth0"]);
    c.ip(&["link", "set", "lo", "up"]);
    c.ip(&["link", "set", "eth0", "up"]);
    c
}

pub fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

pub fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo_sum(s: [u8; 4], d: [u8; 4], proto: u8, len: usize) -> u32 {
    sum16(&s) + sum16(&d) + u32::from(proto) + len as u32
}

/// The TCP/UDP checksum of `l4` (its checksum field zeroed or not: computed from scratch).
pub fn l4_checksum(s: [u8; 4], d: [u8; 4], proto: u8, l4: &[u8]) -> u16 {
    !fold(pseudo_sum(s, d, proto, l4.len()) + sum16(l4))
}

fn ihl(frame: &[u8]) -> usize {
    usize::from(frame[14] & 0x0f) * 4
}

/// (saddr, daddr, sport, dport) of an IPv4 frame; for ICMP echo the id in both ports.
pub fn tuple(frame: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let s: [u8; 4] = frame[26..30].try_into().unwrap();
    let d: [u8; 4] = frame[30..34].try_into().unwrap();
    let l4 = 14 + ihl(frame);
    let p = |o: usize| u16::from_be_bytes([frame[o], frame[o + 1]]);
    if frame[23] == IPPROTO_ICMP {
        (s, d, p(l4 + 4), p(l4 + 4))
    } else {
        (s, d, p(l4), p(l4 + 2))
    }
}

pub fn assert_ip_csum(frame: &[u8]) {
    let h = &frame[14..14 + ihl(frame)];
    assert_eq!(
        fold(sum16(h)),
        0xffff,
        "IPv4 header checksum of {frame:02x?}"
    );
}

/// Verifies the IPv4 header checksum and the L4 checksum of an unfragmented frame.
pub fn assert_csums(frame: &[u8]) {
    assert_ip_csum(frame);
    let tot = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let l4 = &frame[14 + ihl(frame)..14 + tot];
    let s: [u8; 4] = frame[26..30].try_into().unwrap();
    let d: [u8; 4] = frame[30..34].try_into().unwrap();
    match frame[23] {
        IPPROTO_TCP => assert_eq!(
            fold(pseudo_sum(s, d, IPPROTO_TCP, l4.len()) + sum16(l4)),
            0xffff,
            "TCP checksum"
        ),
        IPPROTO_UDP if l4[6..8] != [0, 0] => assert_eq!(
            fold(pseudo_sum(s, d, IPPROTO_UDP, l4.len()) + sum16(l4)),
            0xffff,
            "UDP checksum"
        ),
        IPPROTO_ICMP => assert_eq!(fold(sum16(l4)), 0xffff, "ICMP checksum"),
        _ => {}
    }
}

/// Verifies the UDP checksum of a datagram split in two fragments, under the (translated)
/// addresses of the first.
pub fn assert_reassembled_udp_csum(first: &[u8], later: &[u8]) {
    let tot = |f: &[u8]| usize::from(u16::from_be_bytes([f[16], f[17]]));
    let mut l4 = first[14 + ihl(first)..14 + tot(first)].to_vec();
    l4.extend_from_slice(&later[14 + ihl(later)..14 + tot(later)]);
    let s: [u8; 4] = first[26..30].try_into().unwrap();
    let d: [u8; 4] = first[30..34].try_into().unwrap();
    assert_eq!(
        &later[26..34],
        &first[26..34],
        "both fragments carry the same addresses"
    );
    assert_eq!(
        fold(pseudo_sum(s, d, IPPROTO_UDP, l4.len()) + sum16(&l4)),
        0xffff,
        "reassembled UDP checksum"
    );
}

mod frame;
mod world;

#[allow(
    unused_imports,
    reason = "re-exported for the test files; not each uses every one"
)]
pub use frame::*;
#[allow(
    unused_imports,
    reason = "re-exported for the test files; not each uses every one"
)]
pub use world::*;
