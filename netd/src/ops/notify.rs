//! sd_notify(3) without libsystemd: one datagram of `KEY=VALUE` lines to the Unix socket named
//! by `$NOTIFY_SOCKET` (a path, or an abstract name written `@name`). Written here rather than
//! taken from a crate because it is a dozen lines over std's `UnixDatagram`, and the daemon
//! needs nothing else of libsystemd.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to the service manager. `Ok(false)` when netd was not started
/// by one (no `$NOTIFY_SOCKET`).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// [`notify`], logging a failure instead of returning it (a lost notification must not stop
/// the daemon; systemd will report the missing readiness).
pub fn tell(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told the service manager"),
        Ok(false) => {}
        Err(e) => tracing::warn!("cannot notify the service manager ({state}): {e}"),
    }
}

/// `MONOTONIC_USEC=...`, which systemd wants with `RELOADING=1`.
pub fn monotonic_usec() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let us = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    format!("MONOTONIC_USEC={us}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("netd-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&p).unwrap();
        // SAFETY: this test is the only code in the process reading NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &p) };
        assert!(notify("READY=1").unwrap());
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let name = format!("netd-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx2 = UnixDatagram::bind_addr(&addr).unwrap();
        unsafe { std::env::set_var("NOTIFY_SOCKET", format!("@{name}")) };
        assert!(notify("STOPPING=1").unwrap());
        let n = rx2.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!notify("READY=1").unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
