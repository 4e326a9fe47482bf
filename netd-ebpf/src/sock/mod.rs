//! The socket-hook object's logic (included by `bin/netd-sock.rs`).
//!
//! - `ctx`: typed access to `struct bpf_sock_addr` and the socket/netns cookies.
//! - `maps`: the maps (shared with the TC object: NETD_PORTS, NETD_HOST_ADDRS;
//!   own: NETD_SOCK_*) and the published-port lookup.
//! - `xlate`: what each hook rewrites.
//! - `reserve`: the bind hooks that keep host sockets off published ports.

pub mod ctx;
pub mod maps;
pub mod reserve;
pub mod xlate;
