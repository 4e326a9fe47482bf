//! netd: one engine (networks, endpoints, port bindings, links, filters) with thin front ends
//! (the HTTP+JSON API on a Unix socket, and the CLI that talks to it).
pub mod api;
pub mod cli;
pub mod daemon;
pub mod dataplane;
pub mod dnsfiles;
pub mod engine;
pub mod fsutil;
pub mod spec;
pub mod wiring;
