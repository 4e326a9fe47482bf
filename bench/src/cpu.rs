//! CPU cost of a run: softirq and busy time of the whole machine from /proc/stat, the CPU time
//! of the load clients (getrusage of reaped children) and of the long-lived processes a system
//! runs (docker-proxy, netd, servers; from /proc/PID/stat), and per-BPF-program run time.
//!
//! BPF run-time statistics are switched on with the BPF_ENABLE_STATS syscall, which keeps them
//! on only while the returned fd is open ([`BpfStatsGuard`]); the global
//! `kernel.bpf_stats_enabled` sysctl is never written.

use std::collections::BTreeMap;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::Command;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Counters from the aggregate `cpu` line of /proc/stat, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStat {
    pub softirq: u64,
    pub busy: u64,
    pub total: u64,
}

/// Parses the first (`cpu `) line of /proc/stat.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    let total: u64 = f[..8].iter().sum();
    Some(ProcStat {
        softirq: f[6],
        busy: total - f[3] - f[4],
        total,
    })
}

/// utime + stime (ticks) from the text of /proc/PID/stat.
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

fn children_cpu_s() -> f64 {
    // SAFETY: ru is a valid out-pointer for the duration of the call.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn pids_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|t| parse_pid_stat(&t))
        .sum()
}

/// A snapshot taken before a run; [`CpuMeter::finish`] gives the deltas.
pub struct CpuMeter {
    stat: ProcStat,
    children: f64,
    pids: Vec<u32>,
    pid_ticks: u64,
    t0: std::time::Instant,
}

/// CPU used during one run, in seconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CpuUsage {
    pub wall_s: f64,
    /// softirq time on all CPUs (machine-wide: includes other work on the machine).
    pub softirq_s: f64,
    /// non-idle time on all CPUs (machine-wide).
    pub busy_s: f64,
    /// user+system time of the load clients this run started and reaped.
    pub clients_s: f64,
    /// user+system time of the system's long-lived processes (proxies, netd, servers).
    pub servers_s: f64,
}

impl CpuMeter {
    pub fn start(pids: Vec<u32>) -> CpuMeter {
        CpuMeter {
            stat: read_proc_stat(),
            children: children_cpu_s(),
            pid_ticks: pids_ticks(&pids),
            pids,
            t0: std::time::Instant::now(),
        }
    }

    pub fn finish(self) -> CpuUsage {
        let hz = ticks_per_sec();
        let s = read_proc_stat();
        CpuUsage {
            wall_s: self.t0.elapsed().as_secs_f64(),
            softirq_s: s.softirq.saturating_sub(self.stat.softirq) as f64 / hz,
            busy_s: s.busy.saturating_sub(self.stat.busy) as f64 / hz,
            clients_s: children_cpu_s() - self.children,
            servers_s: pids_ticks(&self.pids).saturating_sub(self.pid_ticks) as f64 / hz,
        }
    }
}

fn read_proc_stat() -> ProcStat {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_proc_stat(&t))
        .unwrap_or_default()
}

const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// BPF run-time statistics, on while this guard lives (the kernel counts the holders).
pub struct BpfStatsGuard {
    _fd: OwnedFd,
}

impl BpfStatsGuard {
    pub fn enable() -> Result<BpfStatsGuard> {
        // `union bpf_attr` for BPF_ENABLE_STATS is `struct { __u32 type; }`.
        let mut attr = [0u32; 2];
        attr[0] = BPF_STATS_RUN_TIME;
        // SAFETY: attr is a valid, zero-padded bpf_attr prefix of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            bail!("BPF_ENABLE_STATS: {}", std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        Ok(BpfStatsGuard {
            _fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }
}

/// Cumulative run time and run count of one BPF program.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ProgCounters {
    pub name: String,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// Reads the counters of each program id with `bpftool prog show id N -j`.
pub fn prog_counters(ids: &[u32]) -> BTreeMap<u32, ProgCounters> {
    let mut m = BTreeMap::new();
    for id in ids {
        let Ok(out) = Command::new("bpftool")
            .args(["prog", "show", "id", &id.to_string(), "-j"])
            .output()
        else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
            continue;
        };
        m.insert(
            *id,
            ProgCounters {
                name: v["name"].as_str().unwrap_or("?").to_string(),
                run_time_ns: v["run_time_ns"].as_u64().unwrap_or(0),
                run_cnt: v["run_cnt"].as_u64().unwrap_or(0),
            },
        );
    }
    m
}

/// Per-program cost over one run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProgCost {
    pub id: u32,
    pub name: String,
    pub runs: u64,
    pub ns_per_run: f64,
}

/// The programs that ran between two snapshots, with their mean cost per run (per packet for
/// TC and XDP programs).
pub fn prog_costs(
    before: &BTreeMap<u32, ProgCounters>,
    after: &BTreeMap<u32, ProgCounters>,
) -> Vec<ProgCost> {
    let mut v = vec![];
    for (id, a) in after {
        let b = before.get(id).cloned().unwrap_or_default();
        let runs = a.run_cnt.saturating_sub(b.run_cnt);
        if runs == 0 {
            continue;
        }
        let ns = a.run_time_ns.saturating_sub(b.run_time_ns);
        v.push(ProgCost {
            id: *id,
            name: a.name.clone(),
            runs,
            ns_per_run: ns as f64 / runs as f64,
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_softirq_and_busy() {
        let t = "cpu  100 5 50 1000 20 3 7 0 0 0\ncpu0 50 2 25 500 10 1 3 0 0 0\nintr 1";
        let s = parse_proc_stat(t).unwrap();
        assert_eq!(s.softirq, 7);
        assert_eq!(s.total, 1185);
        assert_eq!(s.busy, 1185 - 1000 - 20);
    }

    #[test]
    fn pid_stat_with_spaces_in_comm() {
        let t = "1234 (docker proxy) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 4 0 0 20 0 8 0";
        assert_eq!(parse_pid_stat(t), Some(21));
    }

    #[test]
    fn prog_costs_are_deltas_per_run() {
        let c = |n: &str, t, r| ProgCounters {
            name: n.into(),
            run_time_ns: t,
            run_cnt: r,
        };
        let before = BTreeMap::from([(1, c("from_uplink", 1000, 10)), (2, c("idle", 5, 1))]);
        let after = BTreeMap::from([
            (1, c("from_uplink", 5000, 110)),
            (2, c("idle", 5, 1)),
            (3, c("new", 300, 3)),
        ]);
        let v = prog_costs(&before, &after);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].runs, v[0].ns_per_run), (100, 40.0));
        assert_eq!((v[1].name.as_str(), v[1].ns_per_run), ("new", 100.0));
    }
}
