//! A host-local client for the socket-hook tests: joins a cgroup and a network namespace before
//! opening any socket (so the daemon's cgroup hooks see every socket it opens), runs each
//! operation and prints one `RESULT <op> => <result>` line per operation.
//!
//! ```text
//! netd-sock-client --netns PATH [--cgroup DIR] OP...
//!   "tcp HOST:PORT"       connect, send "ping\n", read a line: ok reply=.. peer=<getpeername>
//!   "udp HOST:PORT"       unconnected sendto/recvfrom:         ok reply=.. from=<source>
//!   "udpc HOST:PORT"      connected UDP:                       ok reply=.. from=.. peer=..
//!   "bind tcp|udp IP:PORT"                                     ok | err <errno>
//! ```
//!
//! Failures read `err <errno>` (`err 0` for a non-OS error). HOST may be a name (localhost).
//! The operations are `netd_tests::sockclient`'s (netd's sock_hooks test runs the same).

use std::fs::{File, OpenOptions};
use std::io::Write;

use netd_tests::sockclient::run;
use nix::sched::{CloneFlags, setns};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut ops = Vec::new();
    let (mut netns, mut cgroup) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--netns" => netns = args.next(),
            "--cgroup" => cgroup = args.next(),
            _ => ops.push(a),
        }
    }
    // The cgroup first: "0" moves the writing process itself. Then the namespace; both before
    // any socket exists.
    if let Some(cg) = cgroup {
        let mut procs = OpenOptions::new()
            .write(true)
            .open(format!("{cg}/cgroup.procs"))
            .unwrap_or_else(|e| panic!("open {cg}/cgroup.procs: {e}"));
        procs
            .write_all(b"0")
            .unwrap_or_else(|e| panic!("join cgroup {cg}: {e}"));
    }
    let netns = netns.expect("--netns PATH");
    let ns = File::open(&netns).unwrap_or_else(|e| panic!("open {netns}: {e}"));
    setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {netns}: {e}"));
    for op in ops {
        println!("RESULT {op} => {}", run(&op));
    }
}
