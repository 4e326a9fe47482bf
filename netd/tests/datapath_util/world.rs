//! The test world (namespace, veths, dataplane, pinned maps) and loaded XDP programs.

use super::*;

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

    /// Transmitted packets counted against interface `ifindex` (NETD_IF_STATS, every CPU).
    pub fn tx_packets(&self, ifindex: u32) -> u64 {
        let m: aya::maps::PerCpuHashMap<_, u32, IfStats> =
            aya::maps::PerCpuHashMap::try_from(self.map(MAP_IF_STATS)).unwrap();
        m.get(&ifindex, 0)
            .map(|v| v.iter().map(|s| s.tx_packets).sum())
            .unwrap_or(0)
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
