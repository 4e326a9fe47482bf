//! Processes the bench starts: [`Proc`] (a background server, killed by pid and reaped on
//! drop) and [`run`] (a client with a hard time limit). Everything runs inside a namespace the
//! bench created, through `nsenter --net=PATH`, which execs the program (the pid is the
//! program's own, so it can be killed and measured by pid).

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `nsenter --net=<netns> argv...`, not yet run.
pub fn in_ns(netns: &Path, argv: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", netns.display())).args(argv);
    c
}

/// [`in_ns`], and with `cgroup` the process joins that cgroup v2 directory (it writes `0`, "the
/// writing process", to its `cgroup.procs`) between fork and exec, before it opens any socket.
/// This is how a client is put under the daemon's `--cgroup` socket hooks; the bench only ever
/// passes the private directory the harness made for that daemon (see
/// [`crate::topology::Topology::cgroup`]). Spawning fails if the join fails.
pub fn in_ns_cg(netns: &Path, cgroup: Option<&Path>, argv: &[&str]) -> Command {
    let mut c = in_ns(netns, argv);
    if let Some(cg) = cgroup {
        join_cgroup_before_exec(&mut c, cg);
    }
    c
}

/// Makes `c` join `cgroup` (a cgroup v2 directory) between fork and exec.
pub fn join_cgroup_before_exec(c: &mut Command, cgroup: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::process::CommandExt as _;
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())
        .unwrap_or_default();
    // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec, on a
    // path allocated before the fork.
    unsafe {
        c.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// The cgroup v2 directory (if any) that `pid` is in, from /proc/PID/cgroup (`0::/path`).
pub fn cgroup_v2_of(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    parse_cgroup_v2(&s)
}

/// The `0::` line of a /proc/PID/cgroup file.
pub fn parse_cgroup_v2(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// A background process this bench started; SIGKILLed (by pid) and reaped on drop.
pub struct Proc {
    pub what: String,
    child: Option<Child>,
}

impl Proc {
    /// Starts `c` with stdin/stdout/stderr on /dev/null.
    pub fn spawn(what: &str, mut c: Command) -> Result<Proc> {
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {what}"))?;
        Ok(Proc::adopt(what, child))
    }

    /// Takes ownership of an already spawned child.
    pub fn adopt(what: &str, child: Child) -> Proc {
        Proc {
            what: what.to_string(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Fails if the process has already exited.
    pub fn alive(&mut self) -> Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(st) = c.try_wait()?
        {
            bail!("{} exited early ({st})", self.what);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// What a finished client printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `c` to completion with output captured; kills it (by pid) after `limit`.
pub fn run(what: &str, mut c: Command, limit: Duration) -> Result<Finished> {
    let start = Instant::now();
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}"))?;
    let mut so = child.stdout.take().context("stdout pipe")?;
    let mut se = child.stderr.take().context("stderr pipe")?;
    let ro = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let re = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = start + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&ro.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&re.join().unwrap_or_default()).into_owned();
    Ok(Finished {
        status,
        stdout,
        stderr,
        elapsed,
    })
}

/// [`run`], failing unless the command exits 0; returns stdout.
pub fn run_ok(what: &str, c: Command, limit: Duration) -> Result<Finished> {
    let f = run(what, c, limit)?;
    if !f.status.success() {
        bail!(
            "{what} failed ({}): {} {}",
            f.status,
            f.stdout.trim(),
            f.stderr.trim()
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_v2_line_of_proc_cgroup() {
        let text = "4:memory:/x\n1:cpu:/\n0::/netd-test-1-2\n";
        assert_eq!(
            super::parse_cgroup_v2(text).as_deref(),
            Some("/netd-test-1-2")
        );
        assert_eq!(super::parse_cgroup_v2("1:cpu:/\n"), None);
    }
}
