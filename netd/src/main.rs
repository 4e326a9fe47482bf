fn main() {
    println!("{}", netd::dataplane::EBPF_OBJECT.len());
}
