//! Builds the eBPF object (tracer-ebpf's `tracer` bin) with nightly and
//! bpf-linker, and puts it in OUT_DIR for `include_bytes_aligned!`.
//!
//! `DEFERSCOPE_SKIP_EBPF=1` writes an empty object instead, so `cargo check`,
//! clippy and the parser unit tests work on a machine without bpf-linker; a
//! binary built that way refuses to attach and says why.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=DEFERSCOPE_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    if env::var("DEFERSCOPE_SKIP_EBPF").is_ok_and(|v| v == "1") {
        println!("cargo:warning=DEFERSCOPE_SKIP_EBPF=1: building without the eBPF probes");
        fs::write(out_dir.join("tracer"), []).context("writing the empty eBPF object")?;
        return Ok(());
    }
    if which_bpf_linker().is_none() {
        return Err(anyhow!(
            "bpf-linker is not installed: run `cargo xtask setup` (or set DEFERSCOPE_SKIP_EBPF=1 to build without probes)"
        ));
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("tracer-ebpf manifest has no parent dir"))?;
    aya_build::build_ebpf(
        [Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() }],
        Toolchain::default(),
    )
}

fn which_bpf_linker() -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d| d.join("bpf-linker")).find(|p| p.is_file())
}
