//! The kernel's network counters, per namespace, and what TCP says about lost packets: a test
//! that wants "no packet was dropped" asks for retransmissions instead of timing the traffic
//! (a loaded 2-core machine stalls threads for hundreds of milliseconds without dropping
//! anything; a drop always makes TCP send again).

use std::net::TcpStream;
use std::os::fd::AsRawFd;

use crate::netns::Netns;

/// Segments the kernel retransmitted on `s` since it was opened (TCP_INFO
/// `tcpi_total_retrans`).
pub fn retransmits(s: &TcpStream) -> u32 {
    // SAFETY: tcp_info is plain data; the kernel fills at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the pointers are to `info` and `len`, which outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        )
    };
    assert_eq!(
        rc,
        0,
        "TCP_INFO on {:?}: {}",
        s.local_addr(),
        std::io::Error::last_os_error()
    );
    info.tcpi_total_retrans
}

/// A counter of `/proc/net/netstat` (`group` e.g. "TcpExt") or `/proc/net/snmp` (e.g. "Tcp")
/// as seen inside `ns`; panics naming the counter if the kernel has no such one.
pub fn counter(ns: &Netns, group: &str, name: &str) -> u64 {
    let text = format!(
        "{}{}",
        ns.read("/proc/net/netstat"),
        ns.read("/proc/net/snmp")
    );
    let prefix = format!("{group}:");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .map(|l| l.split_whitespace().skip(1).collect())
        .collect();
    // Each group is a line of names followed by a line of values.
    for pair in rows.chunks(2) {
        let [names, values] = pair else { continue };
        if let Some(i) = names.iter().position(|n| *n == name) {
            return values[i]
                .parse()
                .unwrap_or_else(|e| panic!("{group}:{name} = {:?}: {e}", values[i]));
        }
    }
    panic!("no counter {group}:{name} in netns {}", ns.name())
}

/// SYNs retransmitted by clients in `ns` so far (TcpExt:TCPSynRetrans): a connection that
/// needed one lost its first SYN (or its SYN-ACK) somewhere.
pub fn syn_retransmits(ns: &Netns) -> u64 {
    counter(ns, "TcpExt", "TCPSynRetrans")
}
