//! `cargo xtask vm-smoke`: boots Debian 12's own 6.1 kernel under qemu/KVM with a busybox
//! initramfs holding the debug `netd` binary, and checks that netd runs there: it mounts the
//! bpffs at /sys/fs/bpf itself (the VM has none), probes that 6.1 has no TCX, loads every
//! program through the 6.1 verifier, attaches them as netlink clsact filters, and a published
//! port answers across a veth pair and through a VLAN (802.1Q) uplink on it. qemu runs with TCG (see [`run`]). Everything happens
//! inside the VM; on the host it only
//! downloads packages (without installing the kernel) and writes under target/vm.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::cmd;

/// What the VM runs as /init. Prints NETD-SMOKE-OK or NETD-SMOKE-FAIL, then powers off.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
# iproute2's ip and tc (busybox's own are too small, and its sh prefers applets) and netd
# live in /usr/sbin.
export PATH=/usr/sbin:/bin
ip() { /usr/sbin/ip "$@"; }
tc() { /usr/sbin/tc "$@"; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/netns /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# A refused program's error holds its whole verifier log: show its start, where the verifier
# gave up (the log's end) and its "processed N insns" summary.
fail() {
    echo "NETD-SMOKE-FAIL: $*"
    head -c 3000 /run/netd.err 2>/dev/null; echo
    if [ "$(wc -c </run/netd.err 2>/dev/null)" -gt 3000 ] 2>/dev/null; then
        echo "[...] the error's last 6000 bytes:"; tail -c 6000 /run/netd.err; echo
    fi
    grep -E 'verified_insns|processed [0-9]+ insns' /run/netd.err
    poweroff -f
}
echo "kernel: $(uname -r)"
# inet_diag, tcp_diag and udp_diag: the daemon lists the host's sockets (sock_diag) before
# it publishes a port.
for m in llc stp garp mrp 8021q bridge veth sch_ingress cls_bpf inet_diag tcp_diag udp_diag; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
grep -q ' /sys/fs/bpf ' /proc/mounts && fail "/sys/fs/bpf is already a bpffs: the test would not show the mount"
ip link set lo up
ip netns add out || fail "ip netns add"
ip link add up0 type veth peer name eth0 netns out
ip addr add 198.51.100.1/24 dev up0
ip link set up0 up
ip -n out addr add 198.51.100.2/24 dev eth0
ip -n out link set eth0 up
# A VLAN uplink (802.1Q, which this machine's own kernel lacks): VLAN 100 over the same veth.
ip link add link up0 name up0.100 type vlan id 100 || fail "vlan device"
ip addr add 203.0.113.1/24 dev up0.100
ip link set up0.100 up
ip -n out link add link eth0 name eth0.100 type vlan id 100
ip -n out addr add 203.0.113.2/24 dev eth0.100
ip -n out link set eth0.100 up
mkdir /sys/fs/cgroup/netd-smoke
netd daemon --uplink up0 --uplink up0.100 --bip 172.30.0.1/24 --cgroup /sys/fs/cgroup/netd-smoke \
    -H unix:///run/netd.sock --state-dir /run/netd-state >/run/netd.out 2>/run/netd.err &
daemon=$!
i=0
until timeout 10 netd -H unix:///run/netd.sock status >/run/status.json 2>/dev/null; do
    kill -0 $daemon 2>/dev/null || fail "the daemon exited"
    i=$((i+1)); [ $i -gt 60 ] && fail "the daemon did not come up"; sleep 1
done
cat /run/netd.err
grep -q '"tc_attach": *"netlink"' /run/status.json || fail "not attached through netlink: $(cat /run/status.json)"
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "no bpffs mounted at /sys/fs/bpf"
tc filter show dev up0 ingress | tee /run/filters
grep -q 'from_uplink' /run/filters || fail "no from_uplink filter on up0"
ip netns add web
netd -H unix:///run/netd.sock attach web --netns /run/netns/web -p 8080:80 >/dev/null || fail "attach"
nsenter --net=/run/netns/web sh -c 'echo hello-from-web | nc -l -p 80' &
sleep 1
got=$(nsenter --net=/run/netns/out nc -w 3 198.51.100.1 8080 </dev/null)
[ "$got" = "hello-from-web" ] || fail "published port answered '$got'"
echo "published port: $got"
tc filter show dev up0.100 ingress | grep -q 'from_uplink' || fail "no from_uplink filter on up0.100"
nsenter --net=/run/netns/web sh -c 'echo hello-over-vlan | nc -l -p 80' &
sleep 1
got=$(nsenter --net=/run/netns/out nc -w 3 203.0.113.1 8080 </dev/null)
[ "$got" = "hello-over-vlan" ] || fail "published port over VLAN 100 answered '$got'"
echo "published port over VLAN 100: $got"
echo NETD-SMOKE-OK
poweroff -f
"#;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::root().join("target"))
}

/// The package name of Debian's current 6.1 kernel image (what linux-image-amd64 depends on).
fn kernel_package() -> anyhow::Result<String> {
    let out = cmd::probe(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))
        .context("apt-cache is needed to find Debian's kernel")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-6.1"))
        .map(str::to_owned)
        .context("linux-image-amd64 does not depend on a 6.1 kernel image (run apt-get update?)")
}

/// Downloads (not installs) the kernel package and unpacks it under `dir/kernel`.
fn fetch_kernel(dir: &Path) -> anyhow::Result<PathBuf> {
    let unpacked = dir.join("kernel");
    if !unpacked.join("boot").is_dir() {
        let pkg = kernel_package()?;
        cmd::run(
            Command::new("apt-get")
                .current_dir(dir)
                .args(["download", &pkg]),
        )?;
        let deb = fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&pkg))
            })
            .context("the downloaded kernel package")?;
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    Ok(unpacked)
}

fn first_file(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .with_context(|| format!("no {prefix}* in {}", dir.display()))
}

/// Copies `bin` to the root's /usr/sbin and the shared libraries `ldd` lists at their paths.
fn copy_with_libs(bin: &Path, root: &Path, as_name: &str) -> anyhow::Result<()> {
    fs::copy(bin, root.join("usr/sbin").join(as_name))
        .with_context(|| format!("copy {}", bin.display()))?;
    let out = Command::new("ldd").arg(bin).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(Path::new);
        if let Some(lib) = path {
            let dest = root.join(lib.strip_prefix("/")?);
            fs::create_dir_all(dest.parent().unwrap())?;
            fs::copy(lib, &dest).with_context(|| format!("copy {}", lib.display()))?;
        }
    }
    Ok(())
}

/// A gzip'd newc cpio archive of `root` (what the kernel unpacks as its initramfs).
fn cpio(root: &Path, out: &Path) -> anyhow::Result<()> {
    fn walk(dir: &Path, base: &Path, entries: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            entries.push(p.strip_prefix(base).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                walk(&p, base, entries)?;
            }
        }
        Ok(())
    }
    use std::os::unix::fs::MetadataExt as _;
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    entries.sort();
    let mut buf = Vec::new();
    fn header(buf: &mut Vec<u8>, ino: u64, mode: u32, size: usize, name: &str) {
        let fields = [ino as u32, mode, 0, 0, 1, 0, size as u32, 0, 0, 0, 0];
        let mut h = String::from("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        h.push_str(&format!("{:08x}{:08x}", name.len() + 1, 0));
        buf.extend_from_slice(h.as_bytes());
        buf.extend_from_slice(name.as_bytes());
        buf.push(0);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
    }
    for (i, rel) in entries.iter().enumerate() {
        let p = root.join(rel);
        let md = fs::symlink_metadata(&p)?;
        let name = rel.to_string_lossy();
        let data = if md.file_type().is_symlink() {
            fs::read_link(&p)?
                .to_string_lossy()
                .into_owned()
                .into_bytes()
        } else if md.is_file() {
            fs::read(&p)?
        } else {
            Vec::new()
        };
        header(&mut buf, i as u64 + 1, md.mode(), data.len(), &name);
        buf.extend_from_slice(&data);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
    }
    header(&mut buf, 0, 0, 0, "TRAILER!!!");
    let mut gz = Command::new("gzip")
        .arg("-1")
        .stdin(Stdio::piped())
        .stdout(fs::File::create(out)?)
        .spawn()
        .context("gzip")?;
    gz.stdin.take().unwrap().write_all(&buf)?;
    if !gz.wait()?.success() {
        bail!("gzip failed");
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    if cmd::probe(Command::new("qemu-system-x86_64").arg("--version")).is_none() {
        cmd::run(Command::new("apt-get").args([
            "install",
            "-y",
            "--no-install-recommends",
            "qemu-system-x86",
        ]))?;
    }
    cmd::run(
        Command::new("cargo")
            .current_dir(cmd::root())
            .args(["build", "-p", "netd"]),
    )?;
    let dir = target_dir().join("vm");
    fs::create_dir_all(&dir)?;
    let kernel = fetch_kernel(&dir)?;
    let vmlinuz = first_file(&kernel.join("boot"), "vmlinuz-")?;
    let release = vmlinuz
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_string();
    let modules = kernel.join("lib/modules").join(&release).join("kernel");

    let root = dir.join("initramfs");
    let _ = fs::remove_dir_all(&root);
    for d in [
        "bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "lib/modules",
        "var",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    std::os::unix::fs::symlink("/run", root.join("var/run"))?;
    fs::copy("/usr/bin/busybox", root.join("bin/busybox")).context("busybox (busybox-static)")?;
    copy_with_libs(&target_dir().join("debug/netd"), &root, "netd")?;
    // Debug info is most of the debug binary; the VM needs none of it.
    cmd::run(Command::new("strip").arg(root.join("usr/sbin/netd")))?;
    copy_with_libs(Path::new("/usr/bin/ip"), &root, "ip")?;
    copy_with_libs(Path::new("/usr/sbin/tc"), &root, "tc")?;
    for (m, rel) in [
        ("llc", "net/llc/llc.ko"),
        ("stp", "net/802/stp.ko"),
        ("garp", "net/802/garp.ko"),
        ("mrp", "net/802/mrp.ko"),
        ("8021q", "net/8021q/8021q.ko"),
        ("bridge", "net/bridge/bridge.ko"),
        ("veth", "drivers/net/veth.ko"),
        ("sch_ingress", "net/sched/sch_ingress.ko"),
        ("cls_bpf", "net/sched/cls_bpf.ko"),
        ("inet_diag", "net/ipv4/inet_diag.ko"),
        ("tcp_diag", "net/ipv4/tcp_diag.ko"),
        ("udp_diag", "net/ipv4/udp_diag.ko"),
    ] {
        fs::copy(modules.join(rel), root.join(format!("lib/modules/{m}.ko")))
            .with_context(|| format!("module {rel}"))?;
    }
    fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.53\n")?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    // The daemon gives its API socket to the group `netd` (`-G`), which it looks up.
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\nnetd:x:990:\n")?;
    fs::write(root.join("init"), INIT)?;
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o755))?;
    let initrd = dir.join("initramfs.cpio.gz");
    println!("+ pack {} into {}", root.display(), initrd.display());
    cpio(&root, &initrd)?;

    let log = dir.join("console.log");
    let mut qemu = Command::new("qemu-system-x86_64");
    // TCG, not KVM: on this machine kind (itself a VM) a KVM guest hangs before its first
    // console line, while TCG boots the 6.1 kernel in a few seconds.
    qemu.args([
        "-accel",
        "tcg,thread=multi",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "2048",
    ])
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(&vmlinuz)
    .arg("-initrd")
    .arg(&initrd)
    .args(["-append", "console=ttyS0 panic=-1 quiet"])
    .stdin(Stdio::null())
    .stdout(fs::File::create(&log)?)
    .stderr(Stdio::inherit());
    println!("+ {} > {}", cmd::display(&qemu), log.display());
    let mut child = qemu.spawn().context("start qemu")?;
    let started = Instant::now();
    let limit = Duration::from_secs(600);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if started.elapsed() > limit {
            // Our own qemu, by its pid.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = fs::read_to_string(&log).unwrap_or_default();
    print!("{console}");
    // What the 6.1 verifier spent on each program: netd logs `verified_insns` for every
    // program it accepted; a refused one ends its log with "processed N insns (limit ...)".
    for line in console.lines() {
        if let Some(i) = line.find("program=") {
            if line.contains("verified_insns=") {
                println!("vm-smoke: verifier: {}", &line[i..]);
            }
        } else if line.starts_with("processed ") && line.contains(" insns") {
            println!("vm-smoke: verifier refused a program: {line}");
        }
    }
    match status {
        None => bail!(
            "the VM did not finish within {limit:?} (console in {})",
            log.display()
        ),
        Some(_) if console.contains("NETD-SMOKE-OK") => {
            println!(
                "vm-smoke: netd ran on Linux {release} ({:.0?})",
                started.elapsed()
            );
            Ok(())
        }
        Some(st) => bail!(
            "netd failed on Linux {release} (qemu {st}); console in {}",
            log.display()
        ),
    }
}
