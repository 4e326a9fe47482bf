//! The two rtnetlink tc-filter requests aya 0.14 does not expose: listing the filters of a
//! clsact hook (with each cls_bpf filter's program id and name) and deleting one filter by
//! priority and handle. Synchronous, on a socket of the calling thread's network namespace.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use aya::programs::TcAttachType;

const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_ID: u16 = 11;
/// `htons(ETH_P_ALL)`, the protocol aya's filters match.
pub const PROTO_ALL: u16 = 0x0003u16.to_be();

const NLMSG_HDR: usize = 16;
const TCMSG: usize = 20;

/// The clsact parent of a direction (`TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_{IN,E}GRESS)`).
pub fn parent(attach_type: TcAttachType) -> u32 {
    match attach_type {
        TcAttachType::Ingress => 0xFFFF_FFF2,
        TcAttachType::Egress => 0xFFFF_FFF3,
        TcAttachType::Custom(p) => p,
    }
}

/// One tc filter as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
    /// The classifier, e.g. `bpf`.
    pub kind: String,
    /// cls_bpf: the name given at attach time (aya uses the program's name).
    pub name: Option<String>,
    /// cls_bpf: the program it runs.
    pub prog_id: Option<u32>,
}

/// A netlink socket of the calling thread's namespace, for many requests in a row
/// ([`filters_on`]): one socket instead of one per request.
pub fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
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
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn request(
    msg_type: u16,
    flags: u16,
    ifindex: u32,
    handle: u32,
    parent: u32,
    info: u32,
) -> Vec<u8> {
    let len = (NLMSG_HDR + TCMSG) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&msg_type.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid
    b.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    b.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    b.extend_from_slice(&handle.to_ne_bytes());
    b.extend_from_slice(&parent.to_ne_bytes());
    b.extend_from_slice(&info.to_ne_bytes());
    b
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The attributes of `b` as (type, payload), malformed tails ignored.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16_at(b, 0) as usize;
        let ty = u16_at(b, 2) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Sends `req` and reads replies until the dump ends or the ACK arrives; calls `each` on every
/// RTM_NEWTFILTER payload (tcmsg + attributes).
fn exchange(req: &[u8], each: impl FnMut(&[u8])) -> io::Result<()> {
    exchange_on(&socket()?, req, each)
}

/// [`exchange`] on `sock`, which must have no request in flight.
fn exchange_on(sock: &OwnedFd, req: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    // SAFETY: sending a fully initialised buffer on our socket.
    let sent = unsafe { libc::send(sock.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receiving into our own buffer of the given length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut b = &buf[..n as usize];
        while b.len() >= NLMSG_HDR {
            let len = u32_at(b, 0) as usize;
            let ty = u16_at(b, 4);
            if len < NLMSG_HDR || len > b.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "truncated netlink message",
                ));
            }
            let payload = &b[NLMSG_HDR..len];
            match ty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = if payload.len() >= 4 {
                        -(u32_at(payload, 0) as i32)
                    } else {
                        0
                    };
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(errno))
                    };
                }
                _ if payload.len() >= TCMSG => each(payload),
                _ => {}
            }
            b = &b[((len + 3) & !3).min(b.len())..];
        }
    }
}

/// The filters on `ifindex`'s clsact hook of `attach_type`, in the kernel's order (lowest
/// priority number, which runs first, first). No clsact qdisc means no filters.
pub fn filters(ifindex: u32, attach_type: TcAttachType) -> io::Result<Vec<Filter>> {
    filters_on(&socket()?, ifindex, attach_type)
}

/// [`filters`] on a socket of [`socket`]'s (one per thread), reused for many interfaces.
pub fn filters_on(
    sock: &OwnedFd,
    ifindex: u32,
    attach_type: TcAttachType,
) -> io::Result<Vec<Filter>> {
    let req = request(
        RTM_GETTFILTER,
        NLM_F_DUMP,
        ifindex,
        0,
        parent(attach_type),
        0,
    );
    let mut out = Vec::new();
    let result = exchange_on(sock, &req, |p| {
        let handle = u32_at(p, 8);
        let info = u32_at(p, 16);
        // Each priority is also listed once on its own, without a handle.
        if handle == 0 {
            return;
        }
        let mut f = Filter {
            priority: (info >> 16) as u16,
            handle,
            kind: String::new(),
            name: None,
            prog_id: None,
        };
        for (ty, v) in attrs(&p[TCMSG..]) {
            match ty {
                TCA_KIND => f.kind = c_string(v),
                TCA_OPTIONS => {
                    for (ty, v) in attrs(v) {
                        match ty {
                            TCA_BPF_NAME => f.name = Some(c_string(v)),
                            TCA_BPF_ID if v.len() >= 4 => f.prog_id = Some(u32_at(v, 0)),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(f);
    });
    match result {
        Ok(()) => {}
        // No clsact qdisc (or the interface went away): nothing attached.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::ENOENT | libc::ENODEV)
            ) =>
        {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    }
    out.sort_by_key(|f| f.priority);
    Ok(out)
}

/// Deletes the filter at `priority`/`handle` of `ifindex`'s `attach_type` hook. A filter (or
/// qdisc, or interface) that is already gone is not an error.
pub fn delete(
    ifindex: u32,
    attach_type: TcAttachType,
    priority: u16,
    handle: u32,
) -> io::Result<()> {
    let info = (u32::from(priority) << 16) | u32::from(PROTO_ALL);
    let req = request(
        RTM_DELTFILTER,
        NLM_F_ACK,
        ifindex,
        handle,
        parent(attach_type),
        info,
    );
    match exchange(&req, |_| {}) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}
