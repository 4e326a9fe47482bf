//! Deleting container veths off the request path.
//!
//! Unregistering a network device ends in `netdev_run_todo`, which waits for an RCU barrier
//! and for every reference to drop: 20-70 ms per veth on the test machine, most of a detach.
//! A detach therefore takes the endpoint out of the maps and the state (its traffic is dropped
//! from then on: its veth has no endpoint entry) and queues the veth here; a few worker threads,
//! each with its own netlink socket (a request blocks its socket until the kernel is done, so
//! the engine's socket must not carry them), delete the queued veths in parallel, so their
//! waits overlap. Until a deletion is done, its container's namespace and address count as
//! taken: an attach into that namespace, or with that address, waits for it
//! ([`VethReaper::blocks`]), and automatic addressing skips the address.

use std::collections::VecDeque;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Worker threads: enough for the deletions' waits to overlap on a small machine.
const WORKERS: usize = 4;

/// A veth whose deletion is queued or under way.
#[derive(Clone, Debug)]
pub struct Doomed {
    /// The host end's index in the daemon's namespace (deleting it deletes the pair).
    pub ifindex: u32,
    pub ifname: String,
    /// The container's address, not handed out again until the veth is gone.
    pub ip: Option<Ipv4Addr>,
    /// The container's namespace ([`super::netns::identity`]), whose interface name stays
    /// taken until the veth is gone.
    pub netns: Option<(u64, u64)>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Doomed>,
    /// Queued or being deleted.
    pending: Vec<Doomed>,
    /// Deleted since the last [`VethReaper::take_done`] (their counters can go).
    done: Vec<u32>,
    workers: usize,
}

struct Inner {
    q: Mutex<Queue>,
    /// Signalled when a job is queued (workers) and when one is done (waiters).
    cv: Condvar,
}

/// The veth deleter (cheap to clone: one queue).
#[derive(Clone)]
pub struct VethReaper {
    inner: Arc<Inner>,
}

impl Default for VethReaper {
    fn default() -> Self {
        Self::new()
    }
}

impl VethReaper {
    /// An idle reaper; its workers start with the first deletion, in the namespace of the
    /// thread that queues it (the daemon's).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                q: Mutex::new(Queue::default()),
                cv: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.inner.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the deletion of `d`'s veth and returns at once.
    pub fn queue(&self, d: Doomed) {
        let mut q = self.lock();
        q.pending.push(d.clone());
        q.waiting.push_back(d);
        if q.workers < WORKERS.min(q.pending.len()) {
            q.workers += 1;
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("netd-veth-reaper".into())
                .spawn(move || me.work());
            if let Err(e) = spawned {
                q.workers -= 1;
                tracing::warn!("cannot start a veth deletion thread: {e}");
            }
        }
        if q.workers == 0 {
            // No thread: delete here (slow, but never left undone).
            let d = q.waiting.pop_front().expect("just queued");
            drop(q);
            self.delete(&d, &mut None);
            return;
        }
        self.inner.cv.notify_all();
    }

    fn work(&self) {
        let mut sock = None;
        loop {
            let mut q = self.lock();
            while q.waiting.is_empty() {
                q = self.inner.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let d = q.waiting.pop_front().expect("not empty");
            drop(q);
            self.delete(&d, &mut sock);
        }
    }

    fn delete(&self, d: &Doomed, sock: &mut Option<OwnedFd>) {
        let r = match sock {
            Some(s) => delete_link(s, d.ifindex),
            None => match route_socket() {
                Ok(s) => delete_link(sock.insert(s), d.ifindex),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            tracing::warn!(ifname = %d.ifname, ifindex = d.ifindex, "deleting a detached container's veth: {e}");
        }
        let mut q = self.lock();
        if let Some(i) = q.pending.iter().position(|p| p.ifindex == d.ifindex) {
            q.pending.remove(i);
        }
        q.done.push(d.ifindex);
        drop(q);
        self.inner.cv.notify_all();
    }

    /// Whether a pending deletion holds `ip` or the namespace `netns`.
    pub fn blocks(&self, ip: Option<Ipv4Addr>, netns: Option<(u64, u64)>) -> bool {
        self.lock()
            .pending
            .iter()
            .any(|p| (ip.is_some() && p.ip == ip) || (netns.is_some() && p.netns == netns))
    }

    /// Whether a pending deletion holds `ip` (automatic addressing skips it).
    pub fn holds_ip(&self, ip: Ipv4Addr) -> bool {
        self.blocks(Some(ip), None)
    }

    /// Deletions queued or under way.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The ifindexes deleted since the last call.
    pub fn take_done(&self) -> Vec<u32> {
        std::mem::take(&mut self.lock().done)
    }

    /// Waits until no pending deletion holds `ip` or `netns`, or `timeout` passed (then
    /// returns false). Blocks the calling thread: deletions take tens of milliseconds.
    pub fn wait_for(
        &self,
        ip: Option<Ipv4Addr>,
        netns: Option<(u64, u64)>,
        timeout: Duration,
    ) -> bool {
        self.wait_until(timeout, |q| {
            !q.pending
                .iter()
                .any(|p| (ip.is_some() && p.ip == ip) || (netns.is_some() && p.netns == netns))
        })
    }

    /// Waits until every queued deletion is done, or `timeout` passed (then returns false).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |q| q.pending.is_empty())
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&Queue) -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut q = self.lock();
        while !done(&q) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .inner
                .cv
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// A NETLINK_ROUTE socket in the calling thread's namespace.
fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
#[derive(Clone, Copy)]
struct IfInfoMsg {
    family: u8,
    _pad: u8,
    kind: u16,
    index: i32,
    flags: u32,
    change: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct DelLink {
    hdr: libc::nlmsghdr,
    ifi: IfInfoMsg,
}

/// RTM_DELLINK for `ifindex`, waiting for the kernel's answer. A device already gone is fine.
fn delete_link(sock: &OwnedFd, ifindex: u32) -> io::Result<()> {
    let req = DelLink {
        hdr: libc::nlmsghdr {
            nlmsg_len: std::mem::size_of::<DelLink>() as u32,
            nlmsg_type: libc::RTM_DELLINK,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
            nlmsg_seq: ifindex,
            nlmsg_pid: 0,
        },
        ifi: IfInfoMsg {
            family: libc::AF_UNSPEC as u8,
            _pad: 0,
            kind: 0,
            index: ifindex as i32,
            flags: 0,
            change: 0,
        },
    };
    // SAFETY: req is a plain repr(C) value of the size given.
    let n = unsafe {
        libc::send(
            sock.as_raw_fd(),
            (&raw const req).cast(),
            std::mem::size_of::<DelLink>(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        let hdr_len = std::mem::size_of::<libc::nlmsghdr>();
        if n < hdr_len + 4 {
            return Err(io::Error::other("short netlink answer"));
        }
        // SAFETY: at least a header's worth of bytes were received; read unaligned.
        let hdr: libc::nlmsghdr = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
        if hdr.nlmsg_seq != ifindex || i32::from(hdr.nlmsg_type) != libc::NLMSG_ERROR {
            continue; // not our answer
        }
        let err = i32::from_ne_bytes(buf[hdr_len..hdr_len + 4].try_into().expect("4 bytes"));
        return match -err {
            0 | libc::ENODEV => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doomed(ifindex: u32, ip: [u8; 4], netns: (u64, u64)) -> Doomed {
        Doomed {
            ifindex,
            ifname: format!("veth{ifindex}"),
            ip: Some(Ipv4Addr::from(ip)),
            netns: Some(netns),
        }
    }

    #[test]
    fn a_pending_deletion_holds_its_address_and_namespace_until_done() {
        let r = VethReaper::new();
        // Pending but not queued: no worker deletes anything on this machine.
        r.lock().pending.push(doomed(7, [10, 0, 0, 2], (1, 2)));
        assert!(r.holds_ip(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(!r.holds_ip(Ipv4Addr::new(10, 0, 0, 3)));
        assert!(r.blocks(None, Some((1, 2))));
        assert!(!r.blocks(None, Some((1, 3))));
        assert!(!r.blocks(None, None), "nothing asked, nothing blocks");
        assert!(!r.wait_for(None, Some((1, 2)), Duration::from_millis(20)));
        assert!(r.wait_for(None, Some((9, 9)), Duration::ZERO));
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.wait_idle(Duration::from_secs(5)))
        };
        std::thread::sleep(Duration::from_millis(20));
        {
            let mut q = r.lock();
            q.pending.clear();
            q.done.push(7);
        }
        r.inner.cv.notify_all();
        assert!(
            waiter.join().expect("waiter"),
            "woken when the deletion ended"
        );
        assert_eq!(r.take_done(), vec![7]);
        assert!(r.take_done().is_empty());
        assert_eq!(r.pending(), 0);
    }
}
