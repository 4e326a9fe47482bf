//! The maps the socket hooks read and write, and the published-port lookup.
//!
//! NETD_PORTS and NETD_HOST_ADDRS are declared exactly as the TC object declares
//! them (netd-common's types and sizes): the agent loads this object with the same pin paths,
//! so these are the very maps the TC object created and the agent programs.

use aya_ebpf::{
    bindings::BPF_ANY,
    btf_maps::{Array, HashMap, LruHashMap},
    macros::btf_map,
};
use netd_common::{
    HOST_ADDRS_MAX, PORT_F_NO_RESERVE, PORTS_MAX, PortKey, PortTarget, SOCK_ORIG_MAX,
    SOCK_REVNAT_MAX, SockConfig, SockNat, SockRevKey, find_port, is_loopback_v4,
};

#[btf_map]
static NETD_PORTS: HashMap<PortKey, PortTarget, { PORTS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_HOST_ADDRS: HashMap<u32, u32, { HOST_ADDRS_MAX as usize }> = HashMap::new();

#[btf_map]
static NETD_SOCK_CONFIG: Array<SockConfig, 1> = Array::new();

#[btf_map]
static NETD_SOCK_ORIG: LruHashMap<u64, SockNat, { SOCK_ORIG_MAX as usize }> = LruHashMap::new();

#[btf_map]
static NETD_SOCK_REVNAT: LruHashMap<SockRevKey, SockNat, { SOCK_REVNAT_MAX as usize }> =
    LruHashMap::new();

/// The daemon's network namespace cookie, 0 until the agent writes it.
#[inline(always)]
pub fn netns_cookie() -> u64 {
    NETD_SOCK_CONFIG.get(0).map_or(0, |c| c.netns_cookie)
}

/// Where a host-local (proto, dst, dport) goes: the container's (address, port), both network
/// byte order, when `dst` is a loopback address, `0.0.0.0` (which Linux delivers locally) or
/// one of the host's addresses, and a published port takes it (exact address first, then the
/// wildcard bindings). Loopback-only bindings (127.0.0.1) are found here: this is their point.
#[inline(always)]
pub fn published(proto: u8, dst: u32, dport: u16) -> Option<(u32, u16)> {
    if dst != 0 && !is_loopback_v4(dst) && NETD_HOST_ADDRS.get_ptr(dst).is_none() {
        return None;
    }
    let host_port = u16::from_be(dport);
    let (t, _) = find_port(port_entry, proto, dst, host_port)?;
    Some((t.container_ip[0], t.container_port.to_be()))
}

#[inline(always)]
fn port_entry(k: &PortKey) -> Option<PortTarget> {
    // SAFETY: copied out at once; the agent replaces entries whole.
    unsafe { NETD_PORTS.get(k).copied() }
}

/// Would a host socket binding (proto, addr, port) take a port a published binding reserves?
/// `addr` and `port` network byte order. A bind to the wildcard address conflicts with every
/// address's bindings of that port (the writer's [`PortKey::any`] marker); a bind to an
/// address with that address's bindings and the wildcard ones. Port 0 (autobind) never does:
/// the published ports are in ip_local_reserved_ports, so the kernel never picks one.
#[inline(always)]
pub fn reserved(proto: u8, addr: u32, port: u16) -> bool {
    let port = u16::from_be(port);
    if port == 0 {
        return false;
    }
    let hit = if addr == 0 {
        port_entry(&PortKey::any(proto, port))
    } else {
        find_port(port_entry, proto, addr, port).map(|(t, _)| t)
    };
    hit.is_some_and(|t| t.flags & PORT_F_NO_RESERVE == 0)
}

/// The redirection a connected socket went through (see `SockNat`), if any.
#[inline(always)]
pub fn orig(cookie: u64) -> Option<SockNat> {
    // SAFETY: copied out at once.
    unsafe { NETD_SOCK_ORIG.get(cookie).copied() }
}

/// Records a connected socket's redirection. A failed insert (the LRU map can only fail to
/// allocate) costs only the cosmetic part: getpeername shows the container's address.
#[inline(always)]
pub fn set_orig(cookie: u64, nat: &SockNat) {
    // Ignored on purpose: the connection itself is redirected either way.
    let _ = NETD_SOCK_ORIG.insert(cookie, nat, BPF_ANY as u64);
}

/// The published address `cookie` sent to that `backend_ip:backend_port` answers for.
#[inline(always)]
pub fn revnat(cookie: u64, backend_ip: u32, backend_port: u16) -> Option<SockNat> {
    let key = SockRevKey {
        cookie,
        backend_ip,
        backend_port,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    unsafe { NETD_SOCK_REVNAT.get(key).copied() }
}

/// Records that `cookie` reached the container through `nat`'s published address (for the
/// replies' source). Written only when it changes, so a busy UDP sender does not rewrite the
/// entry for every datagram. A failed insert only costs the cosmetic rewrite on receive.
#[inline(always)]
pub fn set_revnat(cookie: u64, nat: &SockNat) {
    let key = SockRevKey {
        cookie,
        backend_ip: nat.backend_ip,
        backend_port: nat.backend_port,
        _pad: 0,
    };
    // SAFETY: compared at once.
    if unsafe { NETD_SOCK_REVNAT.get(key) }.is_some_and(|cur| cur == nat) {
        return;
    }
    // Ignored on purpose, as in set_orig: the datagram is redirected either way.
    let _ = NETD_SOCK_REVNAT.insert(key, nat, BPF_ANY as u64);
}
