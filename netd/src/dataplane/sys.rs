//! The few bpf(2) commands aya 0.14 does not expose for pinned objects: reading a TCX or cgroup
//! link's target and hook, force-detaching a link, swapping a link's program, and counting a
//! map's entries. netd's one bpf(2) shim: every raw command goes through [`bpf`] here.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;

/// `enum bpf_attach_type` values of TCX links.
pub const BPF_TCX_INGRESS: u32 = 46;
pub const BPF_TCX_EGRESS: u32 = 47;
/// `enum bpf_link_type` of TCX links.
pub const BPF_LINK_TYPE_TCX: u32 = 11;
/// `BPF_LINK_TYPE_XDP`; its link info also starts with the ifindex.
pub const BPF_LINK_TYPE_XDP: u32 = 6;
/// `enum bpf_link_type` of cgroup links.
pub const BPF_LINK_TYPE_CGROUP: u32 = 3;

/// A zeroed `union bpf_attr` large enough for the commands above.
type Attr = [u64; 8];

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, writable, zero-padded bpf_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            size_of::<Attr>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a pinned BPF object (BPF_OBJ_GET).
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr: Attr = [0; 8];
    attr[0] = path.as_ptr() as u64;
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The parts of `struct bpf_link_info` netd reads.
#[derive(Clone, Copy, Debug)]
pub struct LinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    /// For TCX links: the interface, or 0 once the interface is gone (the link is defunct).
    pub ifindex: u32,
    /// For TCX links: BPF_TCX_INGRESS or BPF_TCX_EGRESS.
    pub attach_type: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD on a link.
pub fn link_info(fd: BorrowedFd<'_>) -> io::Result<LinkInfo> {
    // struct bpf_link_info: type, id, prog_id, pad, then a union whose tcx member is
    // { ifindex, attach_type } at byte 16.
    let mut info = [0u32; 16];
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | ((size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(LinkInfo {
        link_type: info[0],
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
        attach_type: info[5],
    })
}

/// The parts of `struct bpf_link_info` for a cgroup link.
#[derive(Clone, Copy, Debug)]
pub struct CgroupLinkInfo {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    pub cgroup_id: u64,
    pub attach_type: u32,
}

/// BPF_OBJ_GET_INFO_BY_FD on a cgroup link.
pub fn cgroup_link_info(fd: BorrowedFd<'_>) -> io::Result<CgroupLinkInfo> {
    // struct bpf_link_info: type, id, prog_id, pad, then a union whose cgroup member is
    // { __u64 cgroup_id; __u32 attach_type; } at byte 16.
    let mut info = [0u32; 16];
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(fd.as_raw_fd() as u32) | ((size_of_val(&info) as u64) << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(CgroupLinkInfo {
        link_type: info[0],
        id: info[1],
        prog_id: info[2],
        cgroup_id: u64::from(info[4]) | (u64::from(info[5]) << 32),
        attach_type: info[6],
    })
}

/// BPF_LINK_UPDATE: atomically replaces the link's program.
pub fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr: Attr = [0; 8];
    // link_update: { __u32 link_fd; __u32 new_prog_fd; __u32 flags; __u32 old_prog_fd; }
    attr[0] = u64::from(link.as_raw_fd() as u32) | (u64::from(prog.as_raw_fd() as u32) << 32);
    bpf(BPF_LINK_UPDATE, &mut attr).map(drop)
}

/// BPF_LINK_DETACH: detaches the link now, whoever else still holds it open.
pub fn link_detach(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(fd.as_raw_fd() as u32);
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// Counts a map's entries by walking its keys (BPF_MAP_GET_NEXT_KEY), stopping at `max`. Entries
/// inserted or deleted during the walk may or may not be counted (a hash map restarts the walk
/// when the current key vanishes, hence the cap).
pub fn map_count_entries(map: impl AsFd, key_size: u32, max: u32) -> io::Result<u32> {
    // A map without keys (the monitor's ring buffer) has no entries to walk.
    if key_size == 0 {
        return Ok(0);
    }
    let fd = map.as_fd().as_raw_fd() as u32;
    let mut key = vec![0u8; key_size as usize];
    let mut next = vec![0u8; key_size as usize];
    let mut count = 0u32;
    let mut first = true;
    loop {
        let mut attr: Attr = [0; 8];
        attr[0] = u64::from(fd);
        // A null key asks for the first key.
        attr[1] = if first { 0 } else { key.as_ptr() as u64 };
        attr[2] = next.as_mut_ptr() as u64;
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) if count >= max => return Ok(max),
            Ok(_) => {
                count += 1;
                first = false;
                std::mem::swap(&mut key, &mut next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(count),
            Err(e) => return Err(e),
        }
    }
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Writes `values` at `keys` in one BPF_MAP_UPDATE_BATCH call (kernel >= 5.6): publishing a
/// 65 535-port range is one syscall, not 65 535.
pub fn map_update_batch<K: Copy, V: Copy>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr: Attr = [0; 8];
    // struct { in_batch, out_batch, keys, values; u32 count, map_fd; elem_flags, flags } batch
    attr[2] = keys.as_ptr() as u64;
    attr[3] = values.as_ptr() as u64;
    attr[4] = u64::from(keys.len() as u32) | (u64::from(map.as_raw_fd() as u32) << 32);
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr).map(drop)
}

/// Deletes `keys` in one BPF_MAP_DELETE_BATCH call (hash maps, kernel >= 5.6). Every key must
/// be present: the kernel stops at the first missing one (ENOENT).
pub fn map_delete_batch<K: Copy>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr: Attr = [0; 8];
    attr[2] = keys.as_ptr() as u64;
    attr[4] = u64::from(keys.len() as u32) | (u64::from(map.as_raw_fd() as u32) << 32);
    bpf(BPF_MAP_DELETE_BATCH, &mut attr).map(drop)
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Every (key, value) of a hash map, read in BPF_MAP_LOOKUP_BATCH calls of up to 4096
/// entries (kernel >= 5.6): a restart reads a 65 000-port table in 16 syscalls, not 130 000.
/// `K` and `V` must be the map's key and value types (not a per-CPU map's).
pub fn map_entries<K: Copy + bytemuck::Zeroable, V: Copy + bytemuck::Zeroable>(
    map: BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    const CHUNK: usize = 4096;
    let mut keys = vec![K::zeroed(); CHUNK];
    let mut values = vec![V::zeroed(); CHUNK];
    let mut out = Vec::new();
    // The hash map's batch token is a bucket index (u32); u64 leaves room.
    let (mut token_in, mut token_out) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr: Attr = [0; 8];
        // struct { in_batch, out_batch, keys, values; u32 count, map_fd; elem_flags, flags }
        attr[0] = if first {
            0
        } else {
            (&raw const token_in) as u64
        };
        attr[1] = (&raw mut token_out) as u64;
        attr[2] = keys.as_mut_ptr() as u64;
        attr[3] = values.as_mut_ptr() as u64;
        attr[4] = CHUNK as u64 | (u64::from(map.as_raw_fd() as u32) << 32);
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        // The kernel writes back how many it copied, also with the last chunk's ENOENT.
        let n = ((attr[4] & 0xffff_ffff) as usize).min(CHUNK);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match r {
            Ok(_) => {
                token_in = token_out;
                first = false;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// BPF_MAP_GET_NEXT_KEY on raw bytes: the key after `key` (the first for `None`) in `next`;
/// `Ok(false)` at the end.
pub fn map_next_key_raw(
    map: BorrowedFd<'_>,
    key: Option<&[u8]>,
    next: &mut [u8],
) -> io::Result<bool> {
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(map.as_raw_fd() as u32);
    attr[1] = key.map_or(0, |k| k.as_ptr() as u64);
    attr[2] = next.as_mut_ptr() as u64;
    match bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// BPF_MAP_LOOKUP_ELEM on raw bytes (`value` sized for the map, per-CPU maps included);
/// `Ok(false)` when the key is not there.
pub fn map_lookup_raw(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(map.as_raw_fd() as u32);
    attr[1] = key.as_ptr() as u64;
    attr[2] = value.as_mut_ptr() as u64;
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// BPF_MAP_UPDATE_ELEM (BPF_ANY) on raw bytes.
pub fn map_update_raw(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr: Attr = [0; 8];
    attr[0] = u64::from(map.as_raw_fd() as u32);
    attr[1] = key.as_ptr() as u64;
    attr[2] = value.as_ptr() as u64;
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;

/// Creates a BPF array of one `u32` named `name` (at most 15 bytes) holding `value`.
pub fn create_u32_array(name: &str, value: u32) -> io::Result<OwnedFd> {
    let mut attr: Attr = [0; 8];
    // map_type BPF_MAP_TYPE_ARRAY (2), key_size 4, value_size 4, max_entries 1.
    attr[0] = 2 | (4 << 32);
    attr[1] = 4 | (1 << 32);
    let mut bytes = [0u8; 64];
    for (i, w) in attr.iter().enumerate() {
        bytes[i * 8..][..8].copy_from_slice(&w.to_ne_bytes());
    }
    // map_name[16] at byte 28 (after map_flags, inner_map_fd, numa_node).
    let n = name.len().min(15);
    bytes[28..28 + n].copy_from_slice(&name.as_bytes()[..n]);
    for (i, w) in attr.iter_mut().enumerate() {
        *w = u64::from_ne_bytes(bytes[i * 8..][..8].try_into().expect("8 bytes"));
    }
    let fd = bpf(BPF_MAP_CREATE, &mut attr)?;
    // SAFETY: BPF_MAP_CREATE returned a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    map_update_raw(fd.as_fd(), &0u32.to_ne_bytes(), &value.to_ne_bytes())?;
    Ok(fd)
}

/// Pins a BPF object at `path` (BPF_OBJ_PIN).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr: Attr = [0; 8];
    attr[0] = path.as_ptr() as u64;
    attr[1] = u64::from(fd.as_raw_fd() as u32);
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

const BPF_PROG_QUERY: libc::c_long = 16;

/// How many programs run on `ifindex`'s TCX hook `attach_type` ([`BPF_TCX_INGRESS`] or
/// [`BPF_TCX_EGRESS`]): one BPF_PROG_QUERY by index, no name lookup and no program info (what
/// `netd status` asks of every veth; aya's `query_tcx` resolves the name and reads each
/// program's info). 0 on a device without TCX programs.
pub fn tcx_prog_count(ifindex: u32, attach_type: u32) -> io::Result<u32> {
    let mut attr: Attr = [0; 8];
    // target_ifindex, attach_type; query_flags and attach_flags 0; prog_ids NULL, prog_cnt 0:
    // the kernel writes the count.
    attr[0] = u64::from(ifindex) | (u64::from(attach_type) << 32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    Ok(attr[3] as u32)
}
