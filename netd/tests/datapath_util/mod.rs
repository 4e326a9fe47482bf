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

pub struct World {
    pub pins: PinDir,
    pub dp: Dataplane,
    /// ifindexes: the uplink, the bridge, A's and B's host-side veths, an unmanaged one.
    pub up: u32,
    pub br: u32,
    pub va: u32,
    pub vb: u32,
    pub vx: u32,
}

impl World {
    /// Builds the world in a fresh namespace and runs `f` inside it.
    pub fn with(f: impl FnOnce(&World) + Send) {
        Self::with_ct_max(CT_MAX_DEFAULT, f)
    }

    /// [`World::with`] with a connection-tracking table of `ct_max` entries.
    pub fn with_ct_max(ct_max: u32, f: impl FnOnce(&World) + Send) {
        let ns = Netns::new("netd-dpath-w");
        // veth pairs (the dummy driver may be missing); only their ifindexes matter.
        for dev in ["up0", "netd0", "va", "vb", "vx"] {
            let peer = format!("{dev}p");
            ns.ip(&["link", "add", dev, "type", "veth", "peer", "name", &peer]);
        }
        let pins = PinDir::new();
        ns.enter(move || {
            let dp = Dataplane::open(&DataplaneConfig {
                pin_dir: pins.0.clone(),
                ct_max,
            })
            .expect("open the dataplane");
            let w = World {
                pins,
                dp,
                up: ifindex("up0"),
                br: ifindex("netd0"),
                va: ifindex("va"),
                vb: ifindex("vb"),
                vx: ifindex("vx"),
            };
            w.program();
            f(&w);
        });
    }

    pub fn map(&self, name: &str) -> Map {
        open_map(&self.pins.0, name)
    }

    /// What the agent writes at start: host addresses, the uplink, endpoints, bindings.
    fn program(&self) {
        let pins = &self.pins.0;
        put_host_addrs(pins, self.up, self.br);
        put_uplink(pins, self.up);
        for (ifindex, a, mac) in [(self.va, A_IP, A_MAC), (self.vb, B_IP, B_MAC)] {
            put_endpoint(
                pins,
                &EndpointInfo {
                    ip: ip(a),
                    ifindex,
                    mac,
                    net_id: 0,
                },
            );
        }
        write_ports(self.map(MAP_PORTS), &bindings());
    }

    /// The configuration the tests start from: `--icc false --ip-masq true`, no filters.
    pub fn base_config(&self) -> DpConfig {
        base_config(&self.pins.0, self.br)
    }

    /// Writes the configuration: the current one (the base one the first time) changed by `f`.
    pub fn config(&self, f: impl FnOnce(&mut DpConfig)) {
        let a: Array<_, DpConfig> = Array::try_from(self.map(MAP_CONFIG)).unwrap();
        let mut c = a.get(&0, 0).unwrap();
        if c.subnet_mask == 0 {
            c = self.base_config();
        }
        f(&mut c);
        set_config(&self.pins.0, c);
    }

    pub fn link(&self, src: [u8; 4], dst: [u8; 4], proto: u8, ranges: &[(u16, u16)]) {
        put_link(&self.pins.0, src, dst, proto, ranges);
    }

    pub fn filter(&self, map: &str, net: [u8; 4], prefix: u32) {
        let mut t: LpmTrie<_, u32, u32> = LpmTrie::try_from(self.map(map)).unwrap();
        t.insert(&Key::new(prefix, ip(net)), 1, 0).unwrap();
    }

    /// Runs TC program `prog` on `frame` as if it arrived at/left through `ifindex`.
    pub fn run(&self, prog: &str, ifindex: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_from(prog, ifindex, 0, frame)
    }

    /// [`World::run`] for a packet that arrived on `ingress` (0: locally generated).
    pub fn run_from(&self, prog: &str, ifindex: u32, ingress: u32, frame: &[u8]) -> (u32, Vec<u8>) {
        // struct __sk_buff: ingress_ifindex at offset 36, ifindex at 40; the kernel takes
        // ifindex as the skb's device and ingress_ifindex as its skb_iif.
        let mut skb = [0u8; 192];
        skb[36..40].copy_from_slice(&ingress.to_ne_bytes());
        skb[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let res = self
            .dp
            .program(prog)
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&skb),
                ..TestRunOptions::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN {prog} on {frame:02x?}: {e:?}"));
        out.truncate(res.data_size_out as usize);
        (res.return_value, out)
    }

    pub fn ct(&self, k: &CtKey) -> Option<CtEntry> {
        let m: HashMap<_, CtKey, CtEntry> = HashMap::try_from(self.map(MAP_CT)).unwrap();
        m.get(k, 0).ok()
    }

    /// Writes a conntrack entry as it is (crafted or changed entries).
    pub fn set_ct(&self, k: &CtKey, e: &CtEntry) {
        let mut m: HashMap<_, CtKey, CtEntry> = HashMap::try_from(self.map(MAP_CT)).unwrap();
        m.insert(k, e, 0).unwrap();
    }

    pub fn drops(&self) -> [u64; DROP_REASONS as usize] {
        drop_counts(&self.pins.0)
    }

    pub fn drop_count(&self, reason: u32) -> u64 {
        self.drops()[reason as usize]
    }

    /// (packets, bytes) of a binding.
    pub fn port_stats(&self, binding_id: u32) -> (u64, u64) {
        let m: PerCpuHashMap<_, u32, Traffic> =
            PerCpuHashMap::try_from(self.map(MAP_PORT_STATS)).unwrap();
        match m.get(&binding_id, 0) {
            Ok(v) => {
                let mut t = Traffic::default();
                for c in v.iter() {
                    t.accumulate(c);
                }
                (t.packets, t.bytes)
            }
            Err(_) => (0, 0),
        }
    }

    /// The XDP program, loaded from the same object onto the same pinned maps (the
    /// Dataplane loads only the TC programs so far).
    pub fn xdp(&self) -> XdpProg {
        let mut loader = EbpfLoader::new();
        let maps: Vec<(String, PathBuf)> = ALL_MAPS
            .iter()
            .map(|m| (m.to_string(), netd::dataplane::pinned_map(&self.pins.0, m)))
            .collect();
        for (name, path) in &maps {
            loader.map_pin_path(name.as_str(), path.as_path());
        }
        let mut ebpf = loader.load(EBPF_OBJECT).expect("load the object again");
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_XDP_PREFILTER)
            .expect("xdp_prefilter in the object")
            .try_into()
            .unwrap();
        prog.load().expect("verifier accepts xdp_prefilter");
        XdpProg { ebpf }
    }
}

pub struct XdpProg {
    ebpf: Ebpf,
}

impl XdpProg {
    pub fn run(&self, frame: &[u8]) -> u32 {
        self.run_repeat(frame, 1).0
    }

    /// Runs the program `repeat` times on `frame`: (verdict, mean time per run).
    pub fn run_repeat(&self, frame: &[u8], repeat: u32) -> (u32, std::time::Duration) {
        let prog: &Xdp = self
            .ebpf
            .program(PROG_XDP_PREFILTER)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let res = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN xdp");
        (res.return_value, res.duration)
    }
}

// ------------------------------------------------------------------------------------------
// Frames.

/// An Ethernet/IPv4 frame under construction.
#[derive(Clone)]
pub struct Frame {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    saddr: [u8; 4],
    daddr: [u8; 4],
    proto: u8,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    tcp_seq: u32,
    icmp_type: u8,
    icmp_code: u8,
    ip_id: u16,
    options: Vec<u8>,
    payload: Vec<u8>,
    udp_csum: bool,
}

impl Frame {
    fn new(saddr: [u8; 4], daddr: [u8; 4], proto: u8, sport: u16, dport: u16) -> Self {
        Self {
            src_mac: CLIENT_MAC,
            dst_mac: UPLINK_MAC,
            saddr,
            daddr,
            proto,
            sport,
            dport,
            tcp_flags: TCP_ACK,
            tcp_seq: 0x0102_0304,
            icmp_type: 0,
            icmp_code: 0,
            ip_id: 0x1111,
            options: Vec::new(),
            payload: Vec::new(),
            udp_csum: true,
        }
    }

    pub fn tcp(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16) -> Self {
        Self::new(s, d, IPPROTO_TCP, sport, dport)
    }

    pub fn udp(s: [u8; 4], d: [u8; 4], sport: u16, dport: u16) -> Self {
        Self::new(s, d, IPPROTO_UDP, sport, dport)
    }

    /// ICMP echo request/reply with `id`.
    pub fn echo(s: [u8; 4], d: [u8; 4], ty: u8, id: u16) -> Self {
        let mut f = Self::new(s, d, IPPROTO_ICMP, id, 7);
        f.icmp_type = ty;
        f
    }

    /// ICMP error of `ty`/`code` quoting `quoted` (an IPv4 packet without Ethernet header).
    pub fn icmp_error(s: [u8; 4], d: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Self {
        let mut f = Self::new(s, d, IPPROTO_ICMP, 0, 0);
        f.icmp_type = ty;
        f.icmp_code = code;
        f.payload = quoted.to_vec();
        f
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The TCP sequence number (host order).
    pub fn seq(mut self, seq: u32) -> Self {
        self.tcp_seq = seq;
        self
    }

    pub fn flags(mut self, f: u8) -> Self {
        self.tcp_flags = f;
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn options(mut self, o: &[u8]) -> Self {
        assert!(o.len().is_multiple_of(4) && o.len() <= 40);
        self.options = o.to_vec();
        self
    }

    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_id = id;
        self
    }

    pub fn no_udp_csum(mut self) -> Self {
        self.udp_csum = false;
        self
    }

    /// The L4 header and payload, checksummed.
    fn l4(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        match self.proto {
            IPPROTO_TCP => {
                l4.extend_from_slice(&self.sport.to_be_bytes());
                l4.extend_from_slice(&self.dport.to_be_bytes());
                l4.extend_from_slice(&self.tcp_seq.to_be_bytes());
                l4.extend_from_slice(&0u32.to_be_bytes());
                l4.extend_from_slice(&[0x50, self.tcp_flags, 0xff, 0xff, 0, 0, 0, 0]);
            }
            IPPROTO_UDP => {
                l4.extend_from_slice(&self.sport.to_be_bytes());
                l4.extend_from_slice(&self.dport.to_be_bytes());
                l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
            }
            _ => {
                l4.extend_from_slice(&[self.icmp_type, self.icmp_code, 0, 0]);
                if self.icmp_type == ICMP_ECHO_REQUEST || self.icmp_type == ICMP_ECHO_REPLY {
                    l4.extend_from_slice(&self.sport.to_be_bytes());
                    l4.extend_from_slice(&0x0001u16.to_be_bytes());
                } else {
                    l4.extend_from_slice(&[0; 4]);
                }
            }
        }
        l4.extend_from_slice(&self.payload);
        let (off, pseudo) = match self.proto {
            IPPROTO_TCP => (16, true),
            IPPROTO_UDP => (6, true),
            _ => (2, false),
        };
        if self.proto != IPPROTO_UDP || self.udp_csum {
            let mut c = if pseudo {
                l4_checksum(self.saddr, self.daddr, self.proto, &l4)
            } else {
                !fold(sum16(&l4))
            };
            if self.proto == IPPROTO_UDP && c == 0 {
                c = 0xffff;
            }
            l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
        }
        l4
    }

    fn ip_header(&self, l4_len: usize, frag_field: u16) -> Vec<u8> {
        let ihl = 20 + self.options.len();
        let mut h = vec![0x40 | (ihl / 4) as u8, 0];
        h.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
        h.extend_from_slice(&self.ip_id.to_be_bytes());
        h.extend_from_slice(&frag_field.to_be_bytes());
        h.extend_from_slice(&[64, self.proto, 0, 0]);
        h.extend_from_slice(&self.saddr);
        h.extend_from_slice(&self.daddr);
        h.extend_from_slice(&self.options);
        let c = !fold(sum16(&h));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn eth(&self) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    pub fn bytes(&self) -> Vec<u8> {
        let l4 = self.l4();
        let mut f = self.eth();
        f.extend_from_slice(&self.ip_header(l4.len(), 0));
        f.extend_from_slice(&l4);
        f
    }

    /// The IPv4 packet without its Ethernet header (for quoting in ICMP errors).
    pub fn ip_packet(&self) -> Vec<u8> {
        self.bytes()[14..].to_vec()
    }

    /// Two fragments: the first carries `first_len` bytes (a multiple of 8) of the L4
    /// datagram, the second the rest.
    pub fn fragments(&self, first_len: usize) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(first_len % 8, 0);
        let l4 = self.l4();
        let mut a = self.eth();
        a.extend_from_slice(&self.ip_header(first_len, 0x2000));
        a.extend_from_slice(&l4[..first_len]);
        let mut b = self.eth();
        b.extend_from_slice(&self.ip_header(l4.len() - first_len, (first_len / 8) as u16));
        b.extend_from_slice(&l4[first_len..]);
        (a, b)
    }
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

/// `frame` with another Ethernet source (and the bridge as destination).
pub fn with_macs(frame: &[u8], src: [u8; 6]) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&BRIDGE_MAC);
    f[6..12].copy_from_slice(&src);
    f
}

/// An ARP request from (sha, spa) for tpa.
pub fn arp_frame(sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f
}

/// `frame` with a VLAN tag (TPID `tpid`: 0x8100 for 802.1Q, 0x88a8 for 802.1ad; VLAN id 5)
/// after the MAC addresses.
pub fn vlan_tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
    let mut f = frame[..12].to_vec();
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&[0, 5]);
    f.extend_from_slice(&frame[12..]);
    f
}

/// A minimal IPv6 frame (UDP to ff02::1) from `mac`.
pub fn ipv6_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0, 1, 0, 2, 0, 8, 0, 0]);
    f
}

/// What an ICMP error quotes: the IPv4 header and 8 bytes of `f`.
pub fn quote(f: &Frame) -> Vec<u8> {
    let p = f.ip_packet();
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[..ihl + 8].to_vec()
}

/// (saddr, daddr, sport, dport) of the packet an ICMP error frame quotes.
pub fn quoted_tuple(frame: &[u8]) -> ([u8; 4], [u8; 4], u16, u16) {
    let inner = 14 + ihl(frame) + 8;
    let mut f = frame[..14].to_vec();
    f.extend_from_slice(&frame[inner..]);
    tuple(&f)
}

/// The quoted IPv4 header's checksum, and the quoted echo's ICMP checksum when it is one.
pub fn assert_quoted_csums(frame: &[u8]) {
    let inner = 14 + ihl(frame) + 8;
    let ihl_in = usize::from(frame[inner] & 0x0f) * 4;
    assert_eq!(
        fold(sum16(&frame[inner..inner + ihl_in])),
        0xffff,
        "quoted IPv4 header checksum"
    );
}
