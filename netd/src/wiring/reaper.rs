//! Deleting container veths off the request path.
//!
//! Unregistering a network device ends in `netdev_run_todo`, which waits for an RCU barrier
//! and for every reference to drop: 20-70 ms per veth on the test machine, most of a detach.
//! A detach therefore first retires the veth (cheap netlink requests, see
//! `Engine::retire_veth`: the host end off the bridge, the container end down, without
//! addresses and renamed, so its name and address are free at once), takes the endpoint out
//! of the maps and the state, and queues the veth here; a few worker threads, each with its
//! own netlink socket (a request blocks its socket until the kernel is done, so the engine's
//! socket must not carry them), delete the queued veths in parallel, so their waits overlap.
//! Nothing waits for a deletion but the daemon's exit ([`VethReaper::shutdown`]).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Worker threads: enough for the deletions' waits to overlap on a small machine.
const WORKERS: usize = 4;

/// A veth whose deletion is queued or under way.
#[derive(Clone, Debug)]
pub struct Doomed {
    /// The host end's index in the daemon's namespace (deleting it deletes the pair).
    pub ifindex: u32,
    pub ifname: String,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Doomed>,
    /// Queued or being deleted.
    pending: Vec<Doomed>,
    /// Deleted since the last [`VethReaper::take_done`] (their counters can go).
    done: Vec<u32>,
    /// Worker threads running.
    workers: usize,
    handles: Vec<JoinHandle<()>>,
    /// Set by [`VethReaper::shutdown`]: workers exit once the queue is empty, and later
    /// deletions run in the caller's thread.
    stop: bool,
}

/// How a veth is deleted: RTM_DELLINK on the worker's socket (a test double in unit tests).
type Deleter = dyn Fn(&Doomed, &mut Option<OwnedFd>) -> io::Result<()> + Send + Sync;

struct Inner {
    q: Mutex<Queue>,
    /// Signalled when a job is queued or the reaper stops (workers) and when one is done
    /// (waiters).
    cv: Condvar,
    delete: Box<Deleter>,
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
    ///
    /// `NETD_REAPER_DELAY_MS=N` in the daemon's environment starts each deletion N ms late:
    /// the tests use it to make the deletions as slow as a loaded machine makes them, and so
    /// check that nothing a user sees waits for one.
    pub fn new() -> Self {
        let delay = std::env::var("NETD_REAPER_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis);
        Self::with_deleter(Box::new(move |d: &Doomed, sock: &mut Option<OwnedFd>| {
            if let Some(t) = delay {
                std::thread::sleep(t);
            }
            match sock {
                Some(s) => delete_link(s, d.ifindex),
                None => delete_link(sock.insert(route_socket()?), d.ifindex),
            }
        }))
    }

    fn with_deleter(delete: Box<Deleter>) -> Self {
        Self {
            inner: Arc::new(Inner {
                q: Mutex::new(Queue::default()),
                cv: Condvar::new(),
                delete,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.inner.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the deletion of `d`'s veth and returns at once (after [`VethReaper::shutdown`]:
    /// deletes it before returning).
    pub fn queue(&self, d: Doomed) {
        let mut q = self.lock();
        q.pending.push(d.clone());
        q.waiting.push_back(d);
        if !q.stop && q.workers < WORKERS.min(q.pending.len()) {
            q.workers += 1;
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("netd-veth-reaper".into())
                .spawn(move || me.work());
            match spawned {
                Ok(h) => q.handles.push(h),
                Err(e) => {
                    q.workers -= 1;
                    tracing::warn!("cannot start a veth deletion thread: {e}");
                }
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
            while q.waiting.is_empty() && !q.stop {
                q = self.inner.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            let Some(d) = q.waiting.pop_front() else {
                // Stopped, nothing left.
                q.workers -= 1;
                drop(q);
                self.inner.cv.notify_all();
                return;
            };
            drop(q);
            self.delete(&d, &mut sock);
        }
    }

    fn delete(&self, d: &Doomed, sock: &mut Option<OwnedFd>) {
        if let Err(e) = (self.inner.delete)(d, sock) {
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

    /// Deletions queued or under way.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The ifindexes deleted since the last call.
    pub fn take_done(&self) -> Vec<u32> {
        std::mem::take(&mut self.lock().done)
    }

    /// Waits until every queued deletion is done, or `timeout` passed (then returns false).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |q| q.pending.is_empty())
    }

    /// The daemon's exit: waits (at most `timeout`) for the queued deletions, then stops the
    /// worker threads and joins them. Returns whether every deletion was done; when not, the
    /// workers still finish what is queued but are not waited for (one may be blocked in the
    /// kernel). Deletions queued afterwards run in the caller's thread.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        let idle = self.wait_idle(timeout);
        let handles = {
            let mut q = self.lock();
            q.stop = true;
            std::mem::take(&mut q.handles)
        };
        self.inner.cv.notify_all();
        if idle {
            for h in handles {
                let _ = h.join();
            }
        }
        idle
    }

    /// Worker threads running.
    pub fn workers(&self) -> usize {
        self.lock().workers
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn doomed(ifindex: u32) -> Doomed {
        Doomed {
            ifindex,
            ifname: format!("veth{ifindex}"),
        }
    }

    /// A reaper whose deletions take `ms` each and count themselves (no netlink).
    fn slow_reaper(ms: u64) -> (VethReaper, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let count = n.clone();
        let r = VethReaper::with_deleter(Box::new(move |_: &Doomed, _: &mut Option<OwnedFd>| {
            std::thread::sleep(Duration::from_millis(ms));
            count.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        (r, n)
    }

    #[test]
    fn deletions_run_in_parallel_and_shutdown_waits_for_them_then_stops_the_workers() {
        let (r, deleted) = slow_reaper(50);
        let t = Instant::now();
        for i in 1..=8 {
            r.queue(doomed(i));
        }
        assert!(
            t.elapsed() < Duration::from_millis(40),
            "queue returned at once"
        );
        assert_eq!(r.workers(), WORKERS);
        assert!(r.shutdown(Duration::from_secs(5)), "all done in time");
        // Four workers, 50 ms each: two rounds, not eight.
        assert!(
            t.elapsed() < Duration::from_millis(8 * 50),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(deleted.load(Ordering::SeqCst), 8);
        assert_eq!(r.workers(), 0, "the workers exited and were joined");
        assert_eq!(r.pending(), 0);
        let mut done = r.take_done();
        done.sort();
        assert_eq!(done, (1..=8).collect::<Vec<_>>());
        // After the shutdown a deletion runs in the caller's thread, no worker starts.
        r.queue(doomed(9));
        assert_eq!(deleted.load(Ordering::SeqCst), 9);
        assert_eq!(r.workers(), 0);
        assert_eq!(r.take_done(), vec![9]);
    }

    #[test]
    fn a_shutdown_that_times_out_says_so_and_the_workers_still_finish() {
        let (r, deleted) = slow_reaper(200);
        r.queue(doomed(1));
        assert!(!r.shutdown(Duration::from_millis(20)));
        assert!(r.wait_idle(Duration::from_secs(5)));
        assert_eq!(deleted.load(Ordering::SeqCst), 1);
        let until = Instant::now() + Duration::from_secs(5);
        while r.workers() > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            r.workers(),
            0,
            "the stopped worker exited once the queue was empty"
        );
    }
}
