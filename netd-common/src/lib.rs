//! Types shared by the netd agent (user space) and its eBPF programs (kernel).
//!
//! Every map key and value is `#[repr(C)]`, has explicit padding, derives `bytemuck::Pod` (which
//! refuses hidden padding at compile time) and carries a size assertion, so both sides agree on
//! the layout byte for byte. Map names are constants here so the agent, the eBPF crate and the
//! README's `bpftool map dump pinned` examples never drift apart.
#![no_std]

pub mod dp;
pub mod dp6;
pub mod layouts;
pub mod maps;
pub mod monitor;
pub mod programs;
pub mod sock;

pub use dp::*;
pub use dp6::*;
pub use maps::*;
pub use monitor::*;
pub use programs::*;
pub use sock::*;
