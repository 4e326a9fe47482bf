//! Attach modes (root): the netlink clsact fallback for kernels without TCX, forced on this
//! kernel with `TcAttachMode::Netlink`, and TCX ordering (netd first, what it does not own on
//! to the next program, programs placed ahead of it reported).
//!
//! Every namespace and pin directory is unique to the run and removed on drop; nothing is
//! attached in the root network namespace.

use std::{
    net::UdpSocket,
    os::fd::{FromRawFd as _, OwnedFd},
    time::Duration,
};

use aya::programs::{SchedClassifier, TcAttachType};
use netd::dataplane::{Dataplane, Direction, TcAttach, TcAttachMode, clsact};
use netd_common::{PROG_FROM_CONTAINER, PROG_FROM_UPLINK, PROG_TO_CONTAINER, PROG_TO_UPLINK};

#[path = "datapath_util/mod.rs"]
mod datapath_util;

use datapath_util::{Netns, PinDir, VethPair};

/// The veth pair's subnet (the first three octets).
const NET: &str = "10.78.0";

/// Host namespace `h` with veth `dp0` (10.78.0.1) whose peer `dp1` (10.78.0.2) is in `peer`,
/// plus a second veth pair `dq0`/`dq1` inside `h` (an interface netd may be told to leave).
struct Topology {
    h: Netns,
    peer: Netns,
}

impl Topology {
    fn new() -> Self {
        let VethPair { h, peer } = VethPair::new(NET);
        h.ip(&["link", "add", "dq0", "type", "veth", "peer", "name", "dq1"]);
        h.ip(&["link", "set", "dq0", "up"]);
        h.ip(&["link", "set", "dq1", "up"]);
        Self { h, peer }
    }

    /// `tc filter show dev IF ingress|egress` lines that carry a handle (one per filter).
    fn tc_filters(&self, ifname: &str, dir: &str) -> Vec<String> {
        self.h
            .exec(&["tc", "filter", "show", "dev", ifname, dir])
            .lines()
            .filter(|l| l.contains("handle"))
            .map(str::to_owned)
            .collect()
    }

    /// A permanent neighbour entry for the host in the peer: the peer's datagrams never wait
    /// on ARP (which a dropping program under test would starve).
    fn static_neigh(&self) {
        let link = self.h.exec(&["ip", "-br", "link", "show", "dp0"]);
        let mac = link.split_whitespace().nth(2).expect("dp0's MAC");
        self.peer.ip(&[
            "neigh",
            "replace",
            "10.78.0.1",
            "lladdr",
            mac,
            "dev",
            "dp1",
            "nud",
            "permanent",
        ]);
    }

    fn tcx_programs(&self, ifname: &str, attach_type: TcAttachType) -> Vec<u32> {
        self.h
            .enter(|| match SchedClassifier::query_tcx(ifname, attach_type) {
                Ok((_, progs)) => progs.iter().map(|p| p.id()).collect(),
                Err(_) => Vec::new(),
            })
    }

    /// Sends `n` datagrams from the peer to the host and returns how many arrived.
    fn peer_to_host(&self, n: usize) -> usize {
        let (host, peer) = VethPair::udp_sockets_of(&self.h, &self.peer, NET);
        host.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let dest = host.local_addr().unwrap();
        for i in 0..n {
            peer.send_to(format!("netd {i}").as_bytes(), dest).unwrap();
        }
        let mut got = 0;
        let mut buf = [0u8; 64];
        while got < n && host.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        got
    }
}

fn prog_id(dp: &Dataplane, name: &str) -> u32 {
    dp.program(name).expect(name).info().expect("info").id()
}

fn open(t: &Topology, pins: &PinDir, mode: TcAttachMode) -> Dataplane {
    t.h.enter(|| Dataplane::open_with(&pins.config(), mode).expect("open"))
}

/// netd's filter on a hook: exactly one, at netd's priority and handle, running `want`.
fn assert_netd_filter(t: &Topology, ifname: &str, dir: &str, want: &str, prog_id: u32) {
    let lines = t.tc_filters(ifname, dir);
    assert_eq!(lines.len(), 1, "{ifname} {dir}: {lines:#?}");
    let l = &lines[0];
    let handle = format!("handle {:#x}", clsact::HANDLE);
    let pref = format!("pref {}", clsact::PRIORITY);
    assert!(
        l.contains(&handle) && l.contains(&pref) && l.contains(want),
        "{ifname} {dir}: {l}"
    );
    assert!(l.contains("direct-action"), "{l}");
    assert!(
        l.contains(&format!("id {prog_id} ")),
        "runs prog {prog_id}: {l}"
    );
}

#[test]
fn netlink_filters_outlive_the_agent_and_are_replaced_in_place() {
    let t = Topology::new();
    let pins = PinDir::new();

    let mut dp = open(&t, &pins, TcAttachMode::Netlink);
    assert_eq!(dp.tc_attach(), TcAttach::Netlink);
    t.h.enter(|| dp.attach_uplink("dp0").expect("attach_uplink"));
    let (in1, out1) = (prog_id(&dp, PROG_FROM_UPLINK), prog_id(&dp, PROG_TO_UPLINK));
    assert_netd_filter(&t, "dp0", "ingress", PROG_FROM_UPLINK, in1);
    assert_netd_filter(&t, "dp0", "egress", PROG_TO_UPLINK, out1);
    assert!(
        t.tcx_programs("dp0", TcAttachType::Ingress).is_empty(),
        "nothing on TCX in netlink mode"
    );
    assert_eq!(t.peer_to_host(20), 20, "host traffic passes");

    let st = t.h.enter(|| dp.status().expect("status"));
    assert_eq!(st.tc_attach, TcAttach::Netlink);
    let mut progs: Vec<_> = st
        .programs
        .iter()
        .map(|p| {
            (
                p.ifname.as_str(),
                p.direction,
                p.program.as_str(),
                p.prog_id,
            )
        })
        .collect();
    progs.sort_by_key(|p| p.2);
    assert_eq!(
        progs,
        [
            ("dp0", Direction::Ingress, PROG_FROM_UPLINK, in1),
            ("dp0", Direction::Egress, PROG_TO_UPLINK, out1),
        ]
    );
    assert!(st.programs.iter().all(|p| p.attach == TcAttach::Netlink
        && p.priority == Some(clsact::PRIORITY)
        && p.handle == Some(clsact::HANDLE)));
    assert!(st.ahead.is_empty(), "{:#?}", st.ahead);

    // The agent goes away (its programs unloaded from user space): the filters stay and keep
    // running the old programs.
    drop(dp);
    assert_netd_filter(&t, "dp0", "ingress", PROG_FROM_UPLINK, in1);
    assert_eq!(t.peer_to_host(5), 5);

    // The next agent replaces each filter's program in place: same slot, new program. (A
    // netd of another object: the same one would reuse the programs pinned under progs/.)
    std::fs::remove_dir_all(pins.0.join("progs")).expect("unpin the programs");
    let mut dp = open(&t, &pins, TcAttachMode::Netlink);
    let (in2, out2) = (prog_id(&dp, PROG_FROM_UPLINK), prog_id(&dp, PROG_TO_UPLINK));
    assert_ne!(in1, in2);
    t.h.enter(|| dp.attach_uplink("dp0").expect("adopt"));
    assert_netd_filter(&t, "dp0", "ingress", PROG_FROM_UPLINK, in2);
    assert_netd_filter(&t, "dp0", "egress", PROG_TO_UPLINK, out2);
    // Attaching again changes nothing.
    t.h.enter(|| dp.attach_uplink("dp0").expect("attach twice"));
    assert_netd_filter(&t, "dp0", "ingress", PROG_FROM_UPLINK, in2);

    // Re-attached as the other kind: the same slots run the endpoint programs.
    t.h.enter(|| dp.attach_endpoint("dp0").expect("as an endpoint"));
    assert_netd_filter(
        &t,
        "dp0",
        "ingress",
        PROG_FROM_CONTAINER,
        prog_id(&dp, PROG_FROM_CONTAINER),
    );
    assert_netd_filter(
        &t,
        "dp0",
        "egress",
        PROG_TO_CONTAINER,
        prog_id(&dp, PROG_TO_CONTAINER),
    );

    // Prune: an interface nobody wants loses its filters; a kept one keeps them.
    t.h.enter(|| dp.attach_uplink("dq0").expect("attach dq0"));
    assert_eq!(t.tc_filters("dq0", "ingress").len(), 1);
    t.h.enter(|| dp.prune(&["dp0".to_owned()]).expect("prune"));
    assert!(t.tc_filters("dq0", "ingress").is_empty());
    assert!(t.tc_filters("dq0", "egress").is_empty());
    assert_eq!(t.tc_filters("dp0", "ingress").len(), 1);

    t.h.enter(|| dp.detach("dp0").expect("detach"));
    assert!(t.tc_filters("dp0", "ingress").is_empty());
    assert!(t.tc_filters("dp0", "egress").is_empty());
    assert_eq!(t.peer_to_host(5), 5);
}

/// Replacing the filters while a UDP stream crosses the hook: every datagram is seen by
/// exactly one netd program (the shared per-interface counter grows by exactly the number
/// sent), none is lost.
#[test]
fn netlink_replacement_has_no_gap() {
    let t = Topology::new();
    let pins = PinDir::new();
    // Only the stream reaches dp0: no IPv6 (router solicitations, MLD) and no ARP from the
    // peer, so the counter can be compared exactly.
    t.peer
        .exec(&["sysctl", "-qw", "net.ipv6.conf.dp1.disable_ipv6=1"]);
    t.static_neigh();
    let mut dp = open(&t, &pins, TcAttachMode::Netlink);
    t.h.enter(|| dp.attach_uplink("dp0").expect("attach"));
    let rx = |dp: &Dataplane| {
        t.h.enter(|| {
            dp.interface_stats()
                .expect("stats")
                .into_iter()
                .find(|s| s.ifname.as_deref() == Some("dp0"))
                .map_or(0, |s| s.rx_packets)
        })
    };
    let before = rx(&dp);
    let before_snmp = t.h.enter(|| udp_rcvbuf_errors(&0));
    let host = t.h.enter(|| UdpSocket::bind("10.78.0.1:0").expect("bind"));
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let dest = host.local_addr().unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    const REPLACEMENTS: usize = 3;
    const STRIDE: usize = 300;
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let (sent, got) = std::thread::scope(|s| {
        // A steady stream (about 10 000 datagrams a second) until the agents are done.
        let sender = s.spawn(|| {
            t.peer.enter(|| {
                let sock = UdpSocket::bind("10.78.0.2:0").expect("bind peer");
                let mut i = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    sock.send_to(&i.to_be_bytes(), dest).unwrap();
                    i += 1;
                    progress.store(i as usize, std::sync::atomic::Ordering::Relaxed);
                    if i.is_multiple_of(10) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                i as usize
            })
        });
        let receiver = s.spawn(|| {
            let mut got = 0usize;
            let mut buf = [0u8; 8];
            while host.recv_from(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        // Agents come and go while the stream runs: each replaces the filters' programs, each
        // after (and the last before) another STRIDE datagrams went out.
        let flowing = |what: &str| {
            let from = progress.load(std::sync::atomic::Ordering::Relaxed);
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while progress.load(std::sync::atomic::Ordering::Relaxed) < from + STRIDE {
                if std::time::Instant::now() > until {
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("{what}: fewer than {STRIDE} datagrams sent in 30 s");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        flowing("the stream to start");
        for _ in 0..REPLACEMENTS {
            let mut next = open(&t, &pins, TcAttachMode::Netlink);
            t.h.enter(|| next.attach_uplink("dp0").expect("replace"));
            dp = next;
            flowing("the stream to go on after a replacement");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (sender.join().unwrap(), receiver.join().unwrap())
    });
    eprintln!("{sent} datagrams across {REPLACEMENTS} replacements");
    let seen = rx(&dp) - before;
    assert_eq!(
        seen, sent as u64,
        "every datagram went through exactly one netd program"
    );
    // What the receiving socket itself dropped (its buffer overflowed while the test thread
    // was starved of CPU) is no gap in the datapath: count it, then nothing else may be lost.
    let overflowed = t.h.enter(|| udp_rcvbuf_errors(&before_snmp));
    assert_eq!(
        got + overflowed,
        sent,
        "datagrams lost across {REPLACEMENTS} replacements ({overflowed} overflowed the socket)"
    );
    assert_eq!(t.tc_filters("dp0", "ingress").len(), 1);
}

// ------------------------------------------------------------------------------------------
// TCX ordering, with tiny programs of "someone else" loaded straight through bpf(2).

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_F_BEFORE: u32 = 1 << 3;

fn bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A SCHED_CLS program that only returns `verdict` (`mov64 r0, imm; exit`).
fn verdict_prog(verdict: i32) -> OwnedFd {
    let insns: [u64; 2] = [
        0xb7 | ((verdict as u32 as u64) << 32), // r0 = verdict
        0x95,                                   // exit
    ];
    let license = b"GPL\0";
    let mut attr = [0u64; 16];
    attr[0] = u64::from(BPF_PROG_TYPE_SCHED_CLS) | (2u64 << 32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    bpf(BPF_PROG_LOAD, &mut attr).expect("BPF_PROG_LOAD")
}

/// A TCX ingress link for `prog` on `ifindex`: last, or first with `flags = BPF_F_BEFORE`.
fn tcx_link(prog: &OwnedFd, ifindex: u32, flags: u32) -> OwnedFd {
    use std::os::fd::AsRawFd as _;
    let mut attr = [0u64; 16];
    attr[0] = u64::from(prog.as_raw_fd() as u32) | (u64::from(ifindex) << 32);
    attr[1] = u64::from(BPF_TCX_INGRESS) | (u64::from(flags) << 32);
    bpf(BPF_LINK_CREATE, &mut attr).expect("BPF_LINK_CREATE tcx")
}

#[test]
fn tcx_netd_goes_first_passes_on_what_it_does_not_own_and_reports_programs_ahead() {
    let t = Topology::new();
    let pins = PinDir::new();
    t.static_neigh();
    let ifindex = t.h.enter(|| datapath_util::ifindex("dp0"));
    // Someone else's program is there first, and drops everything.
    let drop_all = verdict_prog(2);
    let drop_link = t.h.enter(|| tcx_link(&drop_all, ifindex, 0));
    assert_eq!(
        t.peer_to_host(5),
        0,
        "precondition: the other program drops"
    );

    let mut dp = open(&t, &pins, TcAttachMode::Tcx);
    assert_eq!(dp.tc_attach(), TcAttach::Tcx);
    t.h.enter(|| dp.attach_uplink("dp0").expect("attach"));
    let netd_in = prog_id(&dp, PROG_FROM_UPLINK);
    let chain = t.tcx_programs("dp0", TcAttachType::Ingress);
    assert_eq!(chain.len(), 2, "{chain:?}");
    assert_eq!(chain[0], netd_in, "netd attaches first: {chain:?}");
    // Host traffic is not netd's: from_uplink hands it on (TC_ACT_UNSPEC), so the program
    // after it still sees it, and drops it. With TC_ACT_OK it would have bypassed it.
    assert_eq!(
        t.peer_to_host(5),
        0,
        "netd passed host traffic on to the next program"
    );
    drop(drop_link);
    assert_eq!(t.peer_to_host(5), 5, "without the other program it arrives");
    let st = t.h.enter(|| dp.status().expect("status"));
    assert!(st.ahead.is_empty(), "{:#?}", st.ahead);

    // A program placed ahead of netd's later is reported.
    let next = verdict_prog(-1);
    let _ahead = t.h.enter(|| tcx_link(&next, ifindex, BPF_F_BEFORE));
    let st = t.h.enter(|| dp.status().expect("status"));
    assert_eq!(st.ahead.len(), 1, "{:#?}", st.ahead);
    let a = &st.ahead[0];
    assert_eq!(
        (a.ifname.as_str(), a.direction),
        ("dp0", Direction::Ingress)
    );
    assert_eq!(a.attach, TcAttach::Tcx);
    let chain = t.tcx_programs("dp0", TcAttachType::Ingress);
    assert_eq!(a.prog_id, Some(chain[0]));
    assert_ne!(chain[0], netd_in);
    assert_eq!(
        t.peer_to_host(5),
        5,
        "TC_ACT_UNSPEC ahead, then netd: passes"
    );
    t.h.enter(|| dp.detach("dp0").expect("detach"));
}

/// A netd that ran in TCX mode left pinned links; one started in netlink mode takes over
/// with filters and removes the links (and back): never both, never neither for long.
#[test]
fn switching_modes_leaves_one_attachment() {
    let t = Topology::new();
    let pins = PinDir::new();
    let mut dp = open(&t, &pins, TcAttachMode::Tcx);
    t.h.enter(|| dp.attach_endpoint("dp0").expect("tcx"));
    assert_eq!(t.tcx_programs("dp0", TcAttachType::Ingress).len(), 1);
    drop(dp);
    let mut dp = open(&t, &pins, TcAttachMode::Netlink);
    t.h.enter(|| dp.attach_endpoint("dp0").expect("netlink"));
    assert!(t.tcx_programs("dp0", TcAttachType::Ingress).is_empty());
    assert_eq!(t.tc_filters("dp0", "ingress").len(), 1);
    assert!(!pins.0.join("links/dp0").join(PROG_FROM_CONTAINER).exists());
    drop(dp);
    let mut dp = open(&t, &pins, TcAttachMode::Tcx);
    t.h.enter(|| dp.attach_endpoint("dp0").expect("tcx again"));
    assert_eq!(t.tcx_programs("dp0", TcAttachType::Ingress).len(), 1);
    assert!(t.tc_filters("dp0", "ingress").is_empty());
    t.h.enter(|| dp.detach("dp0").expect("detach"));
}

/// UDP datagrams this thread's network namespace dropped for a full socket buffer
/// (RcvbufErrors in /proc/thread-self/net/snmp), minus `since`.
fn udp_rcvbuf_errors(since: &usize) -> usize {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (names, values) = (
        udp.next().expect("Udp header"),
        udp.next().expect("Udp values"),
    );
    let col = names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .expect("RcvbufErrors column");
    let n: usize = values
        .split_whitespace()
        .nth(col)
        .expect("RcvbufErrors value")
        .parse()
        .expect("a number");
    n - since
}
