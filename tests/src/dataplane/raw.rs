//! Crafted TCP segments sent through a raw socket: floods of spoofed SYNs or bare ACKs from
//! the outside namespace, for the conntrack-under-pressure tests.

use super::*;

/// The Internet checksum of `data` (RFC 1071).
fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A 20-byte TCP segment with `flags` (e.g. 0x02 SYN, 0x10 ACK), sequence `seq` and
/// acknowledgement `ack`, its IPv4 header included, both checksums right.
pub fn tcp_segment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let c = csum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// Sends `n` packets `packet(i)` (IPv4, header included) to `dst` through a raw socket in
/// `ns`; panics saying what failed.
pub fn send_raw(
    ns: &Netns,
    dst: Ipv4Addr,
    n: u32,
    packet: impl Fn(u32) -> Vec<u8> + Send + 'static,
) {
    in_netns(ns, move || {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
        anyhow::ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns (closed when dropped).
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        for i in 0..n {
            let p = packet(i);
            // SAFETY: p and to live for the call.
            let r = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    (&to as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                )
            };
            anyhow::ensure!(
                r == p.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    })
    .expect("raw packets from the outside");
}
