//! `netd doctor`: what netd needs from this host, checked where it runs (its network
//! namespace): kernel features (TCX, bpf_redirect_peer, cgroup socket hooks, BTF), the bpffs
//! and cgroup v2 mounts, sysctls, and other TC/XDP programs or iptables/nftables rules that
//! would interfere. Each finding says how to fix it; a missing requirement or an interfering
//! program makes the command exit non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

use aya::programs::{SchedClassifier, TcAttachType};
use serde::Serialize;

/// Names of netd's own interface programs (the kernel keeps the first 15 bytes).
const NETD_PROGRAMS: &[&str] = &[
    "from_container",
    "to_container",
    "from_uplink",
    "to_uplink",
    "xdp_prefilter",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    pub detail: String,
    /// What to do, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(check: &str, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        level: Level::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn bad(check: &str, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        level,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// What to look at.
pub struct DoctorArgs {
    /// Interfaces to check for other programs (default: every interface of the namespace).
    pub interfaces: Vec<String>,
    pub bpffs: PathBuf,
    pub cgroup: Option<PathBuf>,
}

/// The running kernel's (major, minor).
fn kernel_version() -> Option<(u32, u32)> {
    let r = nix::sys::utsname::uname().ok()?;
    let rel = r.release().to_string_lossy().into_owned();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn kernel_checks(out: &mut Vec<Finding>) {
    let Some(v) = kernel_version() else {
        out.push(bad(
            "kernel",
            Level::Warn,
            "cannot read the kernel version",
            "check uname -r",
        ));
        return;
    };
    // (feature, minimum kernel, why netd needs it)
    for (check, min, what) in [
        (
            "tcx",
            (6, 6),
            "TCX links for the TC programs (e420bed0, 6.6)",
        ),
        (
            "redirect_peer",
            (5, 10),
            "bpf_redirect_peer into container namespaces (9aa1206e, 5.10)",
        ),
        (
            "cgroup_sock_hooks",
            (4, 17),
            "cgroup connect4/sendmsg4 hooks for host-local access (4.17/4.18)",
        ),
    ] {
        if v >= min {
            out.push(ok(check, format!("kernel {}.{}: {what}", v.0, v.1)));
        } else {
            out.push(bad(
                check,
                Level::Fail,
                format!(
                    "kernel {}.{} is older than {}.{}: no {what}",
                    v.0, v.1, min.0, min.1
                ),
                format!("boot a kernel {}.{} or newer", min.0, min.1),
            ));
        }
    }
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        out.push(ok("btf", "/sys/kernel/btf/vmlinux"));
    } else {
        out.push(bad(
            "btf",
            Level::Fail,
            "/sys/kernel/btf/vmlinux is missing",
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ));
    }
}

/// The fs type of the mount holding `p` (statfs f_type).
fn fs_magic(p: &Path) -> Option<i64> {
    nix::sys::statfs::statfs(p)
        .ok()
        .map(|s| s.filesystem_type().0)
}

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const CGROUP2_MAGIC: i64 = 0x63677270;

fn mount_checks(a: &DoctorArgs, out: &mut Vec<Finding>) {
    let mut dir = a.bpffs.as_path();
    while !dir.exists() {
        match dir.parent() {
            Some(p) => dir = p,
            None => break,
        }
    }
    if fs_magic(dir) == Some(BPF_FS_MAGIC) {
        out.push(ok("bpffs", format!("{} is on a bpffs", dir.display())));
    } else {
        out.push(bad(
            "bpffs",
            Level::Warn,
            format!(
                "{} is not on a bpffs (netd mounts one there itself)",
                a.bpffs.display()
            ),
            "mount -t bpf bpf /sys/fs/bpf (systemd does at boot), so pins outlive netd's mount",
        ));
    }
    let cg = a
        .cgroup
        .clone()
        .unwrap_or_else(crate::dataplane::sock::default_cgroup);
    if fs_magic(&cg) == Some(CGROUP2_MAGIC) {
        out.push(ok(
            "cgroup2",
            format!("{} is a cgroup v2 hierarchy", cg.display()),
        ));
    } else {
        out.push(bad(
            "cgroup2",
            Level::Fail,
            format!("{} is not a cgroup v2 hierarchy: no socket hooks", cg.display()),
            "mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with systemd.unified_cgroup_hierarchy=1), or pass --cgroup DIR",
        ));
    }
}

fn sysctl_checks(out: &mut Vec<Finding>) {
    let p = "/proc/sys/net/ipv4/ip_forward";
    match std::fs::read_to_string(p).map(|s| s.trim().to_string()) {
        Ok(v) if v == "1" => out.push(ok("ip_forward", "net.ipv4.ip_forward = 1")),
        Ok(v) => out.push(bad(
            "ip_forward",
            Level::Warn,
            format!("net.ipv4.ip_forward = {v}"),
            "netd sets it with --ip-forward true (the default); with --ip-forward false containers cannot reach the outside",
        )),
        Err(e) => out.push(bad("ip_forward", Level::Warn, format!("cannot read {p}: {e}"), "check /proc/sys")),
    }
}

fn interfaces(a: &DoctorArgs) -> Vec<String> {
    if !a.interfaces.is_empty() {
        return a.interfaces.clone();
    }
    let mut v: Vec<String> = nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn is_netd(name: &str) -> bool {
    NETD_PROGRAMS
        .iter()
        .any(|p| p.starts_with(name) && !name.is_empty())
}

fn program_checks(a: &DoctorArgs, out: &mut Vec<Finding>) {
    for ifname in interfaces(a) {
        let mut foreign = Vec::new();
        let mut ours = Vec::new();
        for (dir, t) in [
            ("ingress", TcAttachType::Ingress),
            ("egress", TcAttachType::Egress),
        ] {
            match SchedClassifier::query_tcx(&ifname, t) {
                Ok((_, progs)) => {
                    for p in progs {
                        let name = p.name_as_str().unwrap_or("").to_string();
                        if is_netd(&name) {
                            ours.push(format!("tcx/{dir} {name}"));
                        } else {
                            foreign.push(format!("tcx/{dir} program {name:?} (id {})", p.id()));
                        }
                    }
                }
                Err(e) => out.push(bad(
                    "tc_programs",
                    Level::Warn,
                    format!("{ifname}: cannot query TCX {dir}: {e}"),
                    "run netd doctor as root in netd's network namespace",
                )),
            }
            // Classic tc filters (cls_bpf, u32, matchall, ...): netd uses none.
            if let Some(text) = run("tc", &["filter", "show", "dev", &ifname, dir]) {
                for l in text.lines().filter(|l| l.starts_with("filter")) {
                    foreign.push(format!("tc {dir} {}", l.trim()));
                }
            }
        }
        if let Some(text) = run("ip", &["-d", "-j", "link", "show", "dev", &ifname]) {
            let j: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(x) = j.get(0).and_then(|l| l.get("xdp")) {
                let id = x["prog"]["id"].as_u64().unwrap_or(0);
                let name = aya::programs::loaded_programs()
                    .filter_map(Result::ok)
                    .find(|p| u64::from(p.id()) == id)
                    .and_then(|p| p.name_as_str().map(str::to_string))
                    .unwrap_or_default();
                if is_netd(&name) {
                    ours.push(format!("xdp {name}"));
                } else {
                    foreign.push(format!("xdp program {name:?} (id {id})"));
                }
            }
        }
        if foreign.is_empty() {
            let detail = if ours.is_empty() {
                format!("{ifname}: no TC/XDP programs")
            } else {
                format!("{ifname}: only netd's ({})", ours.join(", "))
            };
            out.push(ok("tc_programs", detail));
        } else {
            out.push(bad(
                "tc_programs",
                Level::Fail,
                format!("{ifname}: other programs would see or change netd's traffic: {}", foreign.join("; ")),
                format!(
                    "remove them, e.g. tc filter del dev {ifname} ingress; tc qdisc del dev {ifname} clsact; ip link set dev {ifname} xdp off (bpftool net detach for TCX links)"
                ),
            ));
        }
    }
}

fn firewall_checks(out: &mut Vec<Finding>) {
    let mut rules = Vec::new();
    for tool in ["iptables-save", "iptables-legacy-save"] {
        if let Some(text) = run(tool, &[]) {
            let n = text.lines().filter(|l| l.starts_with("-A ")).count();
            if n > 0 {
                rules.push(format!("{tool}: {n} rules"));
            }
        }
    }
    if let Some(text) = run("nft", &["list", "ruleset"]) {
        let n = text
            .lines()
            .filter(|l| {
                let t = l.trim();
                !t.is_empty()
                    && !t.starts_with("table")
                    && !t.starts_with("chain")
                    && !t.starts_with("type")
                    && !t.starts_with('}')
                    && !t.starts_with("policy")
            })
            .count();
        if n > 0 && rules.is_empty() {
            rules.push(format!("nft: {n} rule lines"));
        }
    }
    if rules.is_empty() {
        out.push(ok(
            "firewall",
            "no iptables or nftables rules in this namespace",
        ));
    } else {
        out.push(bad(
            "firewall",
            Level::Warn,
            format!(
                "{} (netd needs none; a FORWARD drop or NAT rule can hide its traffic)",
                rules.join(", ")
            ),
            "review them with iptables-save / nft list ruleset",
        ));
    }
}

/// Every check, in order.
pub fn run_checks(a: &DoctorArgs) -> Vec<Finding> {
    let mut out = Vec::new();
    kernel_checks(&mut out);
    mount_checks(a, &mut out);
    sysctl_checks(&mut out);
    program_checks(a, &mut out);
    firewall_checks(&mut out);
    out
}

/// The report, one line per finding, with the fix under each problem.
pub fn format(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        s.push_str(&format!("[{tag}] {:<18} {}\n", f.check, f.detail));
        if let Some(fix) = &f.fix {
            s.push_str(&format!("       fix: {fix}\n"));
        }
    }
    s
}
