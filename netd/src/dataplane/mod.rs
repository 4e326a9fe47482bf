//! The eBPF dataplane: loads the embedded object, pins maps, attaches programs.

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd-ebpf"));
