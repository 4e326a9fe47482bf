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
