//! Memory: a process's VmRSS (/proc/PID/status), and the BPF objects a process holds open
//! (/proc/PID/fdinfo: `map_id` and `memlock` of map fds, `prog_id` of program fds).

use std::collections::BTreeMap;

/// VmRSS of `pid` in bytes, if the process exists.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&s)
}

/// The `VmRSS:` line of /proc/PID/status, in bytes.
pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One fdinfo file's BPF identity.
#[derive(Debug, Default, PartialEq)]
pub struct FdInfo {
    pub map_id: Option<u32>,
    pub prog_id: Option<u32>,
    pub memlock: u64,
}

pub fn parse_fdinfo(text: &str) -> FdInfo {
    let mut f = FdInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "map_id" => f.map_id = v.parse().ok(),
            "prog_id" => f.prog_id = v.parse().ok(),
            "memlock" => f.memlock = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    f
}

/// BPF objects held by a process.
#[derive(Debug, Default)]
pub struct BpfHeld {
    /// map id -> memlock bytes
    pub maps: BTreeMap<u32, u64>,
    pub progs: Vec<u32>,
}

impl BpfHeld {
    pub fn map_bytes(&self) -> u64 {
        self.maps.values().sum()
    }
}

/// Scans /proc/PID/fdinfo for BPF maps and programs.
pub fn bpf_held(pid: u32) -> BpfHeld {
    let mut h = BpfHeld::default();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return h;
    };
    for e in dir.flatten() {
        let Ok(t) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let f = parse_fdinfo(&t);
        if let Some(id) = f.map_id {
            h.maps.insert(id, f.memlock);
        }
        if let Some(id) = f.prog_id
            && !h.progs.contains(&id)
        {
            h.progs.push(id);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_in_bytes() {
        let s = "Name:\tdocker-proxy\nVmPeak:\t 1 kB\nVmRSS:\t    3328 kB\nRssAnon:\t 732 kB\n";
        assert_eq!(parse_vmrss(s), Some(3328 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn fdinfo_of_map_and_prog() {
        let m = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2071\nmap_type:\t1\nkey_size:\t4\n\
                 value_size:\t8\nmax_entries:\t1024\nmap_flags:\t0x0\nmap_extra:\t0x0\n\
                 memlock:\t90112\nmap_id:\t42\nfrozen:\t0\n";
        assert_eq!(
            parse_fdinfo(m),
            FdInfo {
                map_id: Some(42),
                prog_id: None,
                memlock: 90112
            }
        );
        let p = "pos:\t0\nprog_type:\t3\nprog_jited:\t1\nprog_tag:\tab\nmemlock:\t4096\n\
                 prog_id:\t77\nrun_time_ns:\t0\nrun_cnt:\t0\n";
        assert_eq!(parse_fdinfo(p).prog_id, Some(77));
    }
}
