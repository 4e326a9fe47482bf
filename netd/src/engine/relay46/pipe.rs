//! Zero-copy TCP relaying with splice(2): each direction moves bytes socket → pipe → socket
//! in the kernel (as Go's `io.Copy` between TCP connections does for docker-proxy), instead of
//! through a user-space buffer. The pipe is always drained before the next read, so a
//! non-blocking splice that would block is always waiting on a socket, never on the pipe, and
//! the pipe needs no readiness of its own.
//!
//! Half-close and reset are those of `tokio::io::copy_bidirectional`: EOF on one side shuts
//! down the other side's write (`shutdown(SHUT_WR)`) and the other direction goes on; an error
//! in either direction ends both (the caller drops both sockets).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// At most this much per splice(2) call; the pipe's capacity caps it.
const CHUNK: usize = 1 << 20;
/// The pipe's capacity (F_SETPIPE_SZ; the default is 64 KiB): fewer, larger splices. It is
/// what one direction of a connection can hold in the relay at most (pages are taken only
/// while bytes wait in it).
const PIPE_SIZE: libc::c_int = 256 << 10;

/// A pipe, both ends non-blocking and close-on-exec.
struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let p = unsafe {
            Pipe {
                r: OwnedFd::from_raw_fd(fds[0]),
                w: OwnedFd::from_raw_fd(fds[1]),
            }
        };
        // Best effort: a pipe left at the default size still works, in smaller steps.
        // SAFETY: plain fcntl on an open descriptor.
        unsafe { libc::fcntl(p.w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        Ok(p)
    }
}

/// One non-blocking splice(2) of up to `len` bytes from `from` to `to` (no offsets: sockets
/// and pipes).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on descriptors the caller keeps open; null offsets are allowed
    // (and required) for pipes and sockets.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Shuts down `s`'s write side, as `AsyncWriteExt::shutdown` does on a `TcpStream`.
fn shutdown_write(s: &TcpStream) -> io::Result<()> {
    // SAFETY: plain syscall on an open socket.
    if unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves `src` → `dst` until EOF on `src`, then shuts down `dst`'s write side; the bytes moved.
async fn one_way(src: &TcpStream, dst: &TcpStream, pipe: &Pipe) -> io::Result<u64> {
    let (pr, pw) = (pipe.r.as_raw_fd(), pipe.w.as_raw_fd());
    let mut total = 0u64;
    loop {
        // The pipe is empty here: a WouldBlock can only be the socket's.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || splice(src.as_raw_fd(), pw, CHUNK)) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            shutdown_write(dst)?;
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || splice(pr, dst.as_raw_fd(), left)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// Relays `a` ↔ `b` through two pipes until both directions have ended (or one fails); the
/// bytes moved a → b and b → a. Falls back to a user-space copy if the pipes cannot be made
/// (EMFILE, ENFILE).
pub(super) async fn relay(a: &mut TcpStream, b: &mut TcpStream) -> io::Result<(u64, u64)> {
    let pipes = Pipe::new().and_then(|p| Ok((p, Pipe::new()?)));
    let (ab, ba) = match pipes {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!("NAT46 relay: pipe: {e}; copying in user space");
            return tokio::io::copy_bidirectional_with_sizes(a, b, 64 << 10, 64 << 10).await;
        }
    };
    let (a, b) = (&*a, &*b);
    tokio::try_join!(one_way(a, b, &ab), one_way(b, a, &ba))
}
