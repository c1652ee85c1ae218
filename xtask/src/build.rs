//! `cargo xtask build`: builds the deferscope binary (and its eBPF object).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Result, bail};

use crate::{cmd, cmd::step, paths};

/// `cargo build [--release] -p deferscope`; returns the binary's path.
pub fn deferscope(workspace_root: &Path, release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    step(format_args!("building deferscope ({profile}) ..."));
    let mut cargo = Command::new("cargo");
    cargo.current_dir(workspace_root).args(["build", "-p", "deferscope"]);
    if release {
        cargo.arg("--release");
    }
    cmd::run_to_stderr(&mut cargo)?;
    let bin = paths::deferscope_bin(workspace_root, release);
    if !bin.is_file() {
        bail!("cargo build succeeded but {} is missing", bin.display());
    }
    step(format_args!("built {}", bin.display()));
    Ok(bin)
}
