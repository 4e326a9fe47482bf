//! Builds the eBPF object (netd-ebpf's `netd-ebpf` binary, for bpfel-unknown-none with the
//! nightly toolchain and bpf-linker) and leaves it in OUT_DIR, where `src/dataplane` embeds it.
//! Run `cargo xtask setup` once on a fresh machine to install the nightly's rust-src and
//! bpf-linker.

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../netd-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "netd-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
