//! Following the host: interfaces and addresses that change under the daemon (hot-plug, DHCP,
//! an operator). A netlink socket subscribed to link and address events (RTMGRP_LINK,
//! RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR) says which interfaces changed
//! ([`HostEvents::next`]); the engine refreshes only for those that are not its own
//! ([`Engine::host_changed`]).
//!
//! netd's own changes are most of the events on a busy host: every attach creates a veth pair
//! and enslaves it (several link events, and an IPv6 link-local address on the host end),
//! every detach deletes one. A refresh reads every link (without `--uplink`) and every address
//! of the namespace, and so costs O(endpoints) under the engine lock: refreshing on each of
//! those events made an attach slower with every container already there. Events about a
//! container veth (one the state holds, or one netd created or retired in the last two
//! minutes) and about netd's bridges are therefore skipped; anything else, and lost events
//! (ENOBUFS), refresh.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::{Engine, EngineError};

/// What a batch of events was about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostChanges {
    /// Interfaces whose link changed (appeared, went, renamed, up/down, master): index and
    /// name when the message carried one.
    pub links: Vec<(u32, Option<String>)>,
    /// Interfaces whose addresses changed.
    pub addrs: Vec<u32>,
    /// Events were lost (ENOBUFS): anything may have changed.
    pub overflow: bool,
}

impl HostChanges {
    fn is_empty(&self) -> bool {
        self.links.is_empty() && self.addrs.is_empty() && !self.overflow
    }
}

const NLMSG_HDRLEN: usize = 16;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// sizeof(struct ifinfomsg): family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The interface name in a link message's attributes (`attrs`: after the ifinfomsg).
fn ifname(attrs: &[u8]) -> Option<String> {
    let mut off = 0;
    while off + 4 <= attrs.len() {
        let len = usize::from(u16_at(attrs, off)?);
        let ty = u16_at(attrs, off + 2)? & 0x3fff;
        if len < 4 || off + len > attrs.len() {
            return None;
        }
        if ty == IFLA_IFNAME {
            let v = &attrs[off + 4..off + len];
            let v = v.split(|b| *b == 0).next().unwrap_or_default();
            return std::str::from_utf8(v).ok().map(str::to_string);
        }
        off += align4(len);
    }
    None
}

/// Adds what the netlink messages in `buf` (one datagram) are about to `out`.
pub fn parse(buf: &[u8], out: &mut HostChanges) {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let (Some(len), Some(ty)) = (u32_at(buf, off), u16_at(buf, off + 4)) else {
            return;
        };
        let len = len as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return;
        }
        let body = &buf[off + NLMSG_HDRLEN..off + len];
        match ty {
            RTM_NEWLINK | RTM_DELLINK => {
                if let Some(index) = u32_at(body, 4) {
                    let name = body.get(IFINFOMSG_LEN..).and_then(ifname);
                    out.links.push((index, name));
                }
            }
            // ifaddrmsg: family, prefixlen, flags, scope, index.
            RTM_NEWADDR | RTM_DELADDR => {
                if let Some(index) = u32_at(body, 4) {
                    out.addrs.push(index);
                }
            }
            _ => {}
        }
        off += align4(len);
    }
}

/// A netlink socket subscribed to link and address events of the calling thread's network
/// namespace.
pub struct HostEvents(AsyncFd<OwnedFd>);

impl HostEvents {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before it is owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero is a valid sockaddr_nl.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups =
            (libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        // SAFETY: binding our socket to a valid sockaddr_nl of the size passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open (and the same
        // descriptor) for its whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Self(fd))
    }

    /// Waits for events and drains every one queued: what they were about.
    pub async fn next(&self) -> io::Result<HostChanges> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = HostChanges::default();
        loop {
            let mut guard = self.0.readable().await?;
            loop {
                // SAFETY: receiving into our own buffer of the given length.
                let n = unsafe {
                    libc::recv(
                        self.0.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                    )
                };
                if n >= 0 {
                    parse(&buf[..n as usize], &mut out);
                    continue;
                }
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    // ENOBUFS: events were dropped; a refresh covers them.
                    _ if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        out.overflow = true;
                        continue;
                    }
                    _ => return Err(e),
                }
            }
            guard.clear_ready();
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

/// How long a veth netd created or retired counts as its own after it left the state: its
/// last events (the reaper's delete) arrive after the detach.
const RECENT: Duration = Duration::from_secs(120);

/// Interfaces netd created or retired lately, by index.
#[derive(Default)]
pub struct RecentLinks(HashMap<u32, Instant>);

impl RecentLinks {
    pub fn mark(&mut self, ifindex: u32) {
        let now = Instant::now();
        if self.0.len() >= 1024 {
            self.0.retain(|_, t| now.duration_since(*t) < RECENT);
        }
        self.0.insert(ifindex, now);
    }

    fn contains(&self, ifindex: u32) -> bool {
        self.0.get(&ifindex).is_some_and(|t| t.elapsed() < RECENT)
    }
}

impl Engine {
    /// Is the interface netd's own (a container veth in the state or touched lately, or one of
    /// its bridges)? Such events change neither the uplinks nor the host's addresses.
    fn own_link(&self, ifindex: u32, name: Option<&str>) -> bool {
        if self.recent_links.contains(ifindex) {
            return true;
        }
        if let Some(n) = name
            && (n == self.net.bridge || self.state.networks.values().any(|net| net.bridge == n))
        {
            return true;
        }
        self.state.endpoints.values().any(|e| {
            e.host_ifindex == Some(ifindex) || (name.is_some() && e.host_ifname.as_deref() == name)
        })
    }

    /// Follows what changed on the host: the uplinks (and the addresses) when an interface
    /// that is not netd's own changed, the addresses when only addresses of such interfaces
    /// did, nothing for netd's own changes. Returns whether it refreshed.
    pub async fn host_changed(&mut self, c: &HostChanges) -> Result<bool, EngineError> {
        let links = c.overflow
            || c.links
                .iter()
                .any(|(i, n)| !self.own_link(*i, n.as_deref()));
        if links {
            self.refresh_uplinks().await?;
            return Ok(true);
        }
        if c.addrs.iter().any(|i| !self.own_link(*i, None)) {
            self.refresh_addresses().await?;
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + body.len();
        let mut m = (len as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(body);
        m.resize(align4(m.len()), 0);
        m
    }

    fn link_body(index: u32, name: Option<&str>) -> Vec<u8> {
        let mut b = vec![0u8; 4];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        // Another attribute first (IFLA_MTU), then the name.
        b.extend_from_slice(&8u16.to_ne_bytes());
        b.extend_from_slice(&4u16.to_ne_bytes());
        b.extend_from_slice(&1500u32.to_ne_bytes());
        if let Some(n) = name {
            let len = 4 + n.len() + 1;
            b.extend_from_slice(&(len as u16).to_ne_bytes());
            b.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
            b.extend_from_slice(n.as_bytes());
            b.push(0);
            b.resize(align4(b.len()), 0);
        }
        b
    }

    #[test]
    fn link_and_address_messages_name_their_interfaces() {
        let mut buf = msg(RTM_NEWLINK, &link_body(7, Some("veth1234567")));
        buf.extend(msg(RTM_DELLINK, &link_body(9, None)));
        // ifaddrmsg of index 12, then an unrelated message (a route) and NLMSG_DONE.
        buf.extend(msg(RTM_NEWADDR, &[10, 64, 0, 0, 12, 0, 0, 0]));
        buf.extend(msg(24, &[0; 12]));
        buf.extend(msg(RTM_DELADDR, &[2, 24, 0, 0, 3, 0, 0, 0]));
        let mut c = HostChanges::default();
        parse(&buf, &mut c);
        assert_eq!(
            c.links,
            [(7, Some("veth1234567".to_string())), (9, None)],
            "{c:?}"
        );
        assert_eq!(c.addrs, [12, 3]);
        assert!(!c.overflow);
    }

    #[test]
    fn truncated_messages_end_the_parse() {
        let mut buf = msg(RTM_NEWLINK, &link_body(7, Some("eth0")));
        let whole = buf.len();
        buf.extend(msg(RTM_NEWLINK, &link_body(8, Some("eth1"))));
        buf.truncate(whole + 10);
        let mut c = HostChanges::default();
        parse(&buf, &mut c);
        assert_eq!(c.links, [(7, Some("eth0".to_string()))]);
        // A message whose length runs past the datagram, or is too short, stops it too.
        let mut bad = msg(RTM_NEWLINK, &link_body(5, None));
        bad[0..4].copy_from_slice(&4u32.to_ne_bytes());
        let mut c = HostChanges::default();
        parse(&bad, &mut c);
        assert!(c.is_empty());
    }

    #[test]
    fn recent_links_expire_and_stay_bounded() {
        let mut r = RecentLinks::default();
        r.mark(4);
        assert!(r.contains(4) && !r.contains(5));
        r.0.insert(5, Instant::now() - RECENT - Duration::from_secs(1));
        assert!(!r.contains(5), "older than RECENT");
        for i in 10..1100 {
            r.mark(i);
        }
        assert!(r.0.len() <= 1100);
        assert!(
            !r.0.contains_key(&5),
            "expired entries pruned once over 1024"
        );
    }
}
