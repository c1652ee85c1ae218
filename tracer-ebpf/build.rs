// Rebuild when bpf-linker changes (the eBPF object is linked by it).
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
