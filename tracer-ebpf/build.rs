// Rebuild when bpf-linker changes (the eBPF object is linked by it), and
// declare `bpf_target_arch`: tracer-user/build.rs (and `cargo xtask lint`)
// set it to the host architecture whose registers the probes read.
fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
