use which::which;

fn main() {
    // Rebuild the eBPF object when bpf-linker changes (a rebuilt linker can emit different BTF).
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    // bpf-linker passes LLVM `--bpf-expand-memcpy-in-order` by default, which sets the BPF
    // backend's MaxStoresPerMemset/Memmove to 0: every memset and memmove (a zeroed stack
    // key, two adjacent `= 0` stores merged by LLVM, a struct copy between raw pointers)
    // becomes a call into compiler_builtins' byte-by-byte loop. Linux 6.1's verifier walks
    // such a loop one byte per state at every call site, and from_container then exceeds its
    // 1M-instruction budget. Without the flag LLVM expands them into word-sized loads and
    // stores at the call site.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg=--disable-expand-memcpy-in-order");
    }
}
