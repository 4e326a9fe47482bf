//! netd's benchmark suite: netd (S3) against the no-NAT floor (S0), Docker 20.10's iptables
//! ruleset with iptables-legacy and iptables-nft (S1), the real docker-proxy (S2), and dockerd
//! with netd as its network driver (S4), on one private topology of network namespaces built
//! with the netd-tests harness.
//!
//! - [`topology`]: the namespaces, the wiring (netd), the servers; [`docker`]: S4's dockerd.
//! - [`systems`]: the systems under test behind one trait (setup / route / check data).
//! - [`paths`]: P1–P6, their correctness checks, and which tools measure each.
//! - [`tools`]: iperf3, sockperf and `netd-connrate` (clients, servers, output parsers).
//! - [`cpu`], [`memory`]: CPU time (softirq, processes, BPF programs) and memory.
//! - [`matrix`], [`sweep`]: the two measurement loops.
//! - [`record`], [`report`], [`plot`]: raw JSON, the Markdown tables and goals, PNG plots.
//!
//! Safety: everything runs in namespaces the bench creates (unique names, removed on drop,
//! also on panic); the root namespace is never touched; the only cgroup processes join is the
//! private directory the harness makes for each daemon (checked before use, removed with the
//! daemon), never a root cgroup; every process the bench starts is killed by pid; every load
//! loop is bounded in time and count.

pub mod config;
pub mod cpu;
pub mod docker;
pub mod matrix;
pub mod memory;
pub mod paths;
pub mod plot;
pub mod proc;
pub mod record;
pub mod report;
pub mod sweep;
pub mod systems;
pub mod tools;
pub mod topology;
