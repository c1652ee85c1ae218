//! `cargo xtask setup`: installs whatever is missing, skipping fast when
//! everything is present.
use std::{path::Path, time::Instant};

use anyhow::Result;

use crate::{
    apt, bpf_linker,
    cmd::{note, step},
    rustup,
    toolchains::{self, GoToolchain},
};

/// What setup found or installed.
pub struct Setup {
    /// All Go toolchains, oldest first.
    pub toolchains: Vec<GoToolchain>,
}

/// Installs: rustup components, Debian packages (llvm-N-dev, Go 1.19, tmux,
/// prometheus), bpf-linker for LLVM N, and the PyPI Go toolchains.
pub fn run(workspace_root: &Path) -> Result<Setup> {
    let start = Instant::now();
    step("setup: checking the development environment ...");
    rustup::ensure_components()?;

    let llvm_major = rustup::nightly_llvm_major()?;
    note(format_args!("nightly rustc uses LLVM {llvm_major}"));
    bpf_linker::check_llvm_available(llvm_major)?;
    let llvm_dev = bpf_linker::llvm_dev_package(llvm_major);
    let mut packages: Vec<&str> = apt::APT_PACKAGES.to_vec();
    packages.push(&llvm_dev);
    step("checking Debian packages ...");
    apt::ensure(&packages)?;

    bpf_linker::ensure(llvm_major)?;
    let toolchains = toolchains::go_toolchains(workspace_root)?;
    step(format_args!("setup: everything is present ({:.1}s)", start.elapsed().as_secs_f64()));
    Ok(Setup { toolchains })
}
