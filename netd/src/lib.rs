//! netd: one engine (networks, endpoints, port bindings, links, filters) with thin front ends
//! (the HTTP+JSON API on a Unix socket, and the CLI that talks to it).
//!
//! - [`engine`]: typed requests in, views and typed errors out; owns the state and drives
//!   [`wiring`] (netlink) and [`dataplane`] (the eBPF programs and maps).
//! - [`frontend`]: the CLI and the HTTP API, each parsing its own input with [`spec`].
//! - [`dnsfiles`]: each container's hostname, hosts and resolv.conf; [`fsutil`]: atomic writes.
pub mod dataplane;
pub mod dnsfiles;
pub mod engine;
pub mod frontend;
pub mod fsutil;
pub mod ops;
pub mod spec;
pub mod wiring;
