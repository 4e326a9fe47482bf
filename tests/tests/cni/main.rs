//! The `netd-cni` plugin, run directly with crafted stdin and environment against a test
//! daemon (as libcni runs it): VERSION; ADD into a namespace the test made, then real TCP from
//! the outside to the published port with the client's real address; CHECK; DEL twice, DEL
//! after the namespace is gone and after a daemon restart; both CNI versions; a CNI_NETNS that
//! only the plugin's mount namespace can see; STATUS and GC (1.1); errors (malformed config,
//! missing environment, unknown network, daemon down or silent) as CNI error JSON that leave
//! nothing behind; and `netd cni install`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netd_tests::daemon::netd_bin;
use netd_tests::podman::{CniDirs, Podman, SERVE, peer_of, podman_installed, tcp_exchange};
use netd_tests::world::{HOST_UPLINK_IP, OUTSIDE_IP};
use netd_tests::{BIP, Daemon, TempDir, World, cmd_ok, tcp_request_until, tcp_server};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(5);
/// No plugin run may take longer (the plugin's own deadlines are shorter).
const PLUGIN_LIMIT: Duration = Duration::from_secs(40);

fn plugin_bin() -> PathBuf {
    let p = netd_bin().with_file_name("netd-cni");
    assert!(p.exists(), "build netd-cni first: cargo build -p netd");
    p
}

/// What one plugin run printed and how it ended.
struct Run {
    code: i32,
    out: Value,
    took: Duration,
}

/// Runs `argv` (the plugin, or a wrapper that execs it) with only `env` (plus PATH) and
/// `stdin`; panics if it runs longer than [`PLUGIN_LIMIT`].
fn run_argv(argv: &[&str], stdin: &str, env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().expect("spawn netd-cni");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t.elapsed() > PLUGIN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netd-cni {env:?} hung for {PLUGIN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t.elapsed();
    let o = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let out = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "netd-cni printed no JSON ({e}): {text:?}, stderr {:?}",
                String::from_utf8_lossy(&o.stderr)
            )
        })
    };
    Run {
        code: o.status.code().unwrap_or(-1),
        out,
        took,
    }
}

fn plugin(cmd: &str, stdin: &str, env: &[(&str, &str)]) -> Run {
    let bin = plugin_bin();
    let mut all = vec![("CNI_COMMAND", cmd), ("CNI_PATH", "/nonexistent")];
    all.extend_from_slice(env);
    run_argv(&[bin.to_str().unwrap()], stdin, &all)
}

/// The plugin's config as libcni passes it (conflist entry with name and cniVersion).
fn conf(version: &str, sock: &Path, network: Option<&str>, extra: Value) -> String {
    // GC records go next to the daemon's socket (its temporary directory), never to the
    // machine's /var/lib/cni.
    let data = sock
        .parent()
        .unwrap_or(Path::new("/nonexistent"))
        .join("cni-data");
    let mut c = json!({
        "cniVersion": version, "name": "netdnet", "type": "netd-cni",
        "socket": format!("unix://{}", sock.display()),
        "dataDir": data,
    });
    if let Some(n) = network {
        c["network"] = json!(n);
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// The environment of a per-container command.
fn env<'a>(id: &'a str, netns: &'a str, ifname: &'a str, args: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_ARGS", args),
    ]
}

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what}: expected success, got {}", r.out);
}

fn err(r: &Run, code: u64, what: &str) -> String {
    assert_ne!(r.code, 0, "{what}: expected a failure, got {}", r.out);
    assert_eq!(r.out["code"], json!(code), "{what}: {}", r.out);
    assert!(r.out["cniVersion"].is_string(), "{what}: {}", r.out);
    r.out["msg"].as_str().unwrap_or_default().to_string()
}

fn blue(d: &Daemon) {
    d.netd_ok(&["network", "create", "blue", "--subnet", "10.77.0.0/24"]);
}

fn host_veths(w: &World) -> Vec<String> {
    w.host
        .links()
        .into_iter()
        .filter(|l| l.starts_with("veth") || l.starts_with("vtmp"))
        .collect()
}

/// Polls until the host namespace has no veth left: the daemon deletes a detached endpoint's
/// veth in the background.
fn no_host_veths_left(w: &World) {
    netd_tests::poll_until("the host's veths to go", Duration::from_secs(10), || {
        let v = host_veths(w);
        if v.is_empty() { Ok(()) } else { Err(v) }
    });
}

mod commands;
mod errors_gc;
mod install;
mod podman;
mod podman_networks;
