//! What the kernel itself says is attached: BPF_PROG_QUERY on each interface's TCX hooks,
//! asked from inside the namespace (ifindexes are per namespace). This is independent of
//! netd's own `status`, and of bpftool 7.1, whose `net show` does not list TCX links.
//!
//! And the daemon's pinned array maps as bpftool reads and writes them ([`array_u64`],
//! [`percpu_sum`], [`array_value`], [`array_update`]) and any pinned map's keys
//! ([`map_keys`], [`map_delete`], [`map_update`]), also while the daemon is stopped; and the
//! netlink clsact filters `tc filter show` lists ([`tc_filters`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::netns::Netns;
use crate::traffic::in_netns;
use crate::{cmd, run_cmd};

const BPF_PROG_QUERY: libc::c_long = 16;
/// `enum bpf_attach_type` values (kernel >= 6.6; newer than Debian 12's headers).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// The `query` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}
const _: () = assert!(size_of::<QueryAttr>() == 64);

fn query(ifindex: u32, attach_type: u32) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: attr is a valid, initialised bpf_attr prefix of the size passed; prog_ids points
    // to a buffer of prog_cnt u32s that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut attr as *mut QueryAttr,
            size_of::<QueryAttr>(),
        )
    };
    if rc < 0 {
        bail!(
            "BPF_PROG_QUERY ifindex {ifindex} type {attach_type}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(ids[..attr.prog_cnt as usize].to_vec())
}

/// For every interface in `ns`: (ifname, "ingress"|"egress") -> TCX program ids, for hooks
/// that have at least one program.
pub fn tcx_programs(ns: &Netns) -> BTreeMap<(String, String), Vec<u32>> {
    let links = ns.links();
    in_netns(ns, move || {
        let mut m = BTreeMap::new();
        for ifname in links {
            let c = std::ffi::CString::new(ifname.clone())?;
            // SAFETY: c is a valid NUL-terminated string.
            let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if ifindex == 0 {
                continue; // vanished meanwhile
            }
            for (dir, t) in [("ingress", BPF_TCX_INGRESS), ("egress", BPF_TCX_EGRESS)] {
                let ids = query(ifindex, t)?;
                if !ids.is_empty() {
                    m.insert((ifname.clone(), dir.to_string()), ids);
                }
            }
        }
        Ok(m)
    })
    .expect("query TCX programs")
}

/// `bpftool -j map dump pinned PIN`, parsed; panics with bpftool's error.
pub fn map_dump(pin: &Path) -> Value {
    let o = cmd(&["bpftool", "-j", "map", "dump", "pinned", pin_str(pin)]);
    assert!(
        o.status.success(),
        "bpftool map dump {}: {}",
        pin.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("bpftool JSON")
}

fn pin_str(pin: &Path) -> &str {
    pin.to_str().expect("a UTF-8 pin path")
}

/// The bytes of a value as bpftool prints them without BTF: hex strings ("0x2a") or numbers.
fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .unwrap_or_else(|| panic!("value bytes, got {v}"))
        .iter()
        .map(|b| {
            let n = b.as_str().map_or_else(
                || b.as_u64().expect("a byte"),
                |s| u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex byte"),
            );
            u8::try_from(n).expect("a byte")
        })
        .collect()
}

/// Little-endian bytes (at most 8) as a number.
fn le_u64(b: &[u8]) -> u64 {
    b.iter()
        .enumerate()
        .map(|(i, b)| u64::from(*b) << (8 * i))
        .sum()
}

/// Entry `index` of the array (of a number type) pinned at `pin`. With BTF bpftool prints the
/// value as a number ("formatted"), else as bytes.
pub fn array_u64(pin: &Path, index: usize) -> u64 {
    let entry = &map_dump(pin)[index];
    if let Some(n) = entry["formatted"]["value"].as_u64() {
        return n;
    }
    le_u64(&bytes(&entry["value"]))
}

/// Entry `index` of the per-CPU array (of a number type) pinned at `pin`, summed over CPUs.
pub fn percpu_sum(pin: &Path, index: usize) -> u64 {
    let entry = &map_dump(pin)[index];
    if let Some(a) = entry["formatted"]["values"].as_array() {
        return a.iter().filter_map(|c| c["value"].as_u64()).sum();
    }
    entry["values"]
        .as_array()
        .expect("per-CPU values")
        .iter()
        .map(|c| le_u64(&bytes(&c["value"])))
        .sum()
}

/// The raw bytes of entry `index` of the array pinned at `pin` (`bpftool map lookup`).
pub fn array_value(pin: &Path, index: u32) -> Vec<u8> {
    let key = index.to_le_bytes().map(|b| b.to_string());
    let mut argv = vec![
        "bpftool",
        "-j",
        "map",
        "lookup",
        "pinned",
        pin_str(pin),
        "key",
    ];
    argv.extend(key.iter().map(String::as_str));
    let o = run_cmd(&argv);
    let v: Value = serde_json::from_slice(&o.stdout).expect("bpftool JSON");
    bytes(&v["value"])
}

/// Writes `value` (its raw bytes) as entry `index` of the array pinned at `pin`.
pub fn array_update(pin: &Path, index: u32, value: &[u8]) {
    map_update(pin, &index.to_le_bytes(), value);
}

/// The keys of the map pinned at `pin`, as raw bytes, in bpftool's order.
pub fn map_keys(pin: &Path) -> Vec<Vec<u8>> {
    map_dump(pin)
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| bytes(&e["key"]))
        .collect()
}

/// The IPv4 bindings in the NETD_PORTS map pinned at `pin`: (proto, host port), sorted. A key
/// is netd-common's `PortKey`: addr (16 bytes), port (u16, host order), proto, family.
pub fn port_table_v4(pin: &Path) -> Vec<(u8, u16)> {
    let mut v: Vec<(u8, u16)> = map_keys(pin)
        .iter()
        .filter(|k| k.len() == 20 && i32::from(k[19]) == libc::AF_INET)
        .map(|k| (k[18], u16::from_le_bytes([k[16], k[17]])))
        .collect();
    v.sort_unstable();
    v
}

fn byte_words(b: &[u8]) -> Vec<String> {
    b.iter().map(|b| b.to_string()).collect()
}

/// Writes `key` -> `value` (raw bytes) into the map pinned at `pin`; panics with bpftool's error.
pub fn map_update(pin: &Path, key: &[u8], value: &[u8]) {
    let (key, value) = (byte_words(key), byte_words(value));
    let mut argv = vec!["bpftool", "map", "update", "pinned", pin_str(pin), "key"];
    argv.extend(key.iter().map(String::as_str));
    argv.push("value");
    argv.extend(value.iter().map(String::as_str));
    run_cmd(&argv);
}

/// Deletes `key` (raw bytes) from the map pinned at `pin`; panics with bpftool's error.
pub fn map_delete(pin: &Path, key: &[u8]) {
    let key = byte_words(key);
    let mut argv = vec!["bpftool", "map", "delete", "pinned", pin_str(pin), "key"];
    argv.extend(key.iter().map(String::as_str));
    run_cmd(&argv);
}

/// One netlink clsact filter that carries a handle, as `tc filter show` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcFilter {
    pub pref: String,
    /// "0x4e44" for netd's.
    pub handle: String,
    /// The program's id.
    pub id: String,
    /// The program's name.
    pub name: String,
}

/// `tc filter show dev IFNAME DIR` ("ingress" or "egress") in `ns`: the filters with a handle.
pub fn tc_filters(ns: &Netns, ifname: &str, dir: &str) -> Vec<TcFilter> {
    let out = ns.run_ok(&["tc", "filter", "show", "dev", ifname, dir]);
    out.lines()
        .filter(|l| l.contains("handle"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let after = |k: &str| {
                w.iter()
                    .position(|x| *x == k)
                    .and_then(|i| w.get(i + 1))
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            };
            // "... pref 1 bpf chain 0 handle 0x4e44 from_uplink direct-action not_in_hw id 42 ..."
            let handle = after("handle");
            TcFilter {
                pref: after("pref"),
                name: after(&handle),
                id: after("id"),
                handle,
            }
        })
        .collect()
}
