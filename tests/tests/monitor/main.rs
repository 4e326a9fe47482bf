//! `netd monitor`: drop events from the datapath's ring buffer, through the daemon's
//! `GET /v1/monitor` stream, caused by real traffic (spoofed sources, `--icc false`, a source
//! deny list), with their reason, container and 5-tuple; filters; `--pcap` read back byte by
//! byte and with tcpdump; the emission switch (NETD_MONITOR) on only while a client listens.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netd_tests::bpf;
use netd_tests::daemon::netd_bin;
use netd_tests::dataplane::{drops, tcp_blocked, udp_fire_from};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, Daemon, TempDir, World, cmd, poll_until, tcp_server, udp_server};
use serde_json::Value;

const T: Duration = Duration::from_secs(10);
const SPOOFED: &str = "172.30.0.99";

/// A running `netd monitor`, killed (by its pid) on drop.
struct Monitor {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Monitor {
    /// Starts `netd monitor ARGS` and waits until its subscription is live.
    fn start(d: &Daemon, args: &[&str]) -> Monitor {
        let mut child = Command::new(netd_bin())
            .arg("-H")
            .arg(d.host_arg())
            .arg("monitor")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn netd monitor");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, e) = (out.clone(), err.clone());
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                o.lock().unwrap().push(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut e = e.lock().unwrap();
                e.push_str(&l);
                e.push('\n');
            }
        });
        let m = Monitor { child, out, err };
        let json = args.contains(&"--json");
        poll_until("the monitor to subscribe", T, || {
            let live = if json {
                m.lines()
                    .first()
                    .is_some_and(|l| l.contains(r#""kind":"start""#))
            } else {
                m.err
                    .lock()
                    .unwrap()
                    .contains("listening for datapath events")
            };
            if live {
                Ok(())
            } else {
                Err(format!(
                    "stdout {:?} stderr {:?}",
                    m.lines(),
                    m.err.lock().unwrap()
                ))
            }
        });
        m
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// The `--json` drop events so far.
    fn drops(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["kind"] == "drop")
            .collect()
    }

    /// Waits for a `--json` drop event that `pred` accepts.
    fn wait_drop(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        poll_until(what, T, || {
            self.drops()
                .into_iter()
                .find(|v| pred(v))
                .ok_or_else(|| format!("events so far: {:#?}", self.drops()))
        })
    }

    /// Waits for the process to exit by itself (`--count`).
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        poll_until("the monitor to exit", T, || {
            self.child
                .try_wait()
                .unwrap()
                .ok_or("still running".to_string())
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.kill();
    }
}

/// NETD_MONITOR[0], read by bpftool from the daemon's pin.
fn switch(d: &Daemon) -> u64 {
    bpf::array_u64(&d.map_pin("NETD_MONITOR"), 0)
}

fn wait_switch(d: &Daemon, want: u64) {
    poll_until(&format!("NETD_MONITOR to be {want}"), T, || {
        let v = switch(d);
        if v == want {
            Ok(())
        } else {
            Err(format!("it is {v}"))
        }
    });
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A world with `--icc false`: c1 and c2 on the bridge, c2 serving 80/tcp and 5000/udp.
struct Setup {
    w: World,
    d: Daemon,
    c1: netd_tests::Container,
    c2: netd_tests::Container,
    ip1: String,
    ip2: String,
}

fn setup(extra: &[&str]) -> Setup {
    let w = World::new();
    let mut args = vec!["--bip", BIP];
    args.extend_from_slice(extra);
    let d = w.daemon(&args);
    let c1 = w.container("c1");
    let c2 = w.container("c2");
    let ip1 = s(&d.attach("c1", &c1, &[])["ip"]).to_string();
    let ip2 = s(&d.attach("c2", &c2, &["-p", "8080:80"])["ip"]).to_string();
    c1.ip(&["addr", "add", &format!("{SPOOFED}/24"), "dev", "eth0"]);
    Setup {
        w,
        d,
        c1,
        c2,
        ip1,
        ip2,
    }
}

/// The `--json` lines of one kind so far.
fn kind(m: &Monitor, k: &str) -> Vec<Value> {
    m.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == k)
        .collect()
}

fn wait_kind(m: &Monitor, k: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll_until(what, T, || {
        kind(m, k)
            .into_iter()
            .find(|v| pred(v))
            .ok_or_else(|| format!("lines so far: {:#?}", m.lines()))
    })
}

mod drops;
mod flows;
mod ring;
