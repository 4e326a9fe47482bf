//! An ICMP sniffer and ping from a namespace.

use super::*;

/// A raw ICMP socket in a namespace: every ICMP packet that arrives there is copied to it, so a
/// test sees the source address of each echo request after the host's translations.
pub struct IcmpSniffer {
    fd: OwnedFd,
}

impl IcmpSniffer {
    pub fn new(ns: &Netns) -> IcmpSniffer {
        let fd = in_netns(ns, || {
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_INET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    libc::IPPROTO_ICMP,
                )
            };
            if fd < 0 {
                bail!("raw socket: {}", std::io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .expect("ICMP sniffer");
        IcmpSniffer { fd }
    }

    /// Source addresses of the echo requests received since the last call.
    pub fn echo_request_sources(&self) -> Vec<Ipv4Addr> {
        let mut res = vec![];
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return res;
            }
            let p = &buf[..n as usize];
            if p.len() < 20 {
                continue;
            }
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            if p.len() > ihl && p[ihl] == 8 {
                res.push(Ipv4Addr::new(p[12], p[13], p[14], p[15]));
            }
        }
    }
}

/// `ping -c1 -W1` from `ns` to `dst`, optionally from source address `src` (`-I`).
pub fn ping_from(ns: &Netns, src: Option<&str>, dst: &str) -> bool {
    let mut argv = vec!["ping", "-c1", "-W1", "-n", "-q"];
    if let Some(s) = src {
        argv.extend_from_slice(&["-I", s]);
    }
    argv.push(dst);
    ns.run(&argv).status.success()
}
