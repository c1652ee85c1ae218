//! The Rust side of the toolchain: nightly with rust-src (for `-Z build-std`)
//! and the LLVM major that the nightly rustc was built with.
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, note, step};

/// rustup components that building the probes needs: (toolchain, component).
/// rust-src on nightly builds the eBPF crate (`-Z build-std=core`).
pub const BUILD_COMPONENTS: &[(&str, &str)] = &[("nightly", "rust-src")];

/// rustup components that development needs: [`BUILD_COMPONENTS`], clippy on
/// nightly to lint the eBPF crate, clippy and rustfmt on stable to lint the
/// host crates.
pub const COMPONENTS: &[(&str, &str)] =
    &[("nightly", "rust-src"), ("nightly", "clippy"), ("stable", "clippy"), ("stable", "rustfmt")];

/// The Rust target of the other supported architecture, so `lint` can check
/// that deferscope (userspace and probes) builds for it too.
pub fn cross_target() -> &'static str {
    if cfg!(target_arch = "aarch64") { "x86_64-unknown-linux-gnu" } else { "aarch64-unknown-linux-gnu" }
}

/// The Debian package of the C cross compiler for [`cross_target`] (which
/// the `cc` crate finds by its target-prefixed name).
pub fn cross_c_compiler_package() -> &'static str {
    if cfg!(target_arch = "aarch64") { "gcc-x86-64-linux-gnu" } else { "gcc-aarch64-linux-gnu" }
}

/// Makes sure the nightly toolchain and `components` are installed, and with
/// `cross`, the stable standard library for [`cross_target`].
pub fn ensure_components(components: &[(&str, &str)], cross: bool) -> Result<()> {
    step("checking rustup toolchains and components ...");
    if !cmd::on_path("rustup") {
        bail!("rustup is not on PATH; install it from https://rustup.rs and re-run `cargo xtask setup`");
    }
    let toolchains = cmd::output(Command::new("rustup").args(["toolchain", "list"]))?;
    let has_nightly = toolchains.lines().any(|l| l.starts_with("nightly"));
    if !has_nightly {
        step("installing the nightly Rust toolchain ...");
        cmd::run_to_stderr(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    for &(toolchain, component) in components {
        let installed =
            cmd::output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", toolchain]))?;
        if installed.lines().any(|l| l == component || l.starts_with(&format!("{component}-"))) {
            note(format_args!("{toolchain}: {component} present"));
        } else {
            step(format_args!("installing rustup component {component} ({toolchain}) ..."));
            cmd::run_to_stderr(Command::new("rustup").args(["component", "add", component, "--toolchain", toolchain]))?;
        }
    }
    if !cross {
        return Ok(());
    }
    let target = cross_target();
    if has_cross_target() {
        note(format_args!("stable: {target} standard library present"));
    } else {
        step(format_args!("installing the {target} standard library (stable) for the cross-architecture check ..."));
        // Optional: without it `lint` skips that one check (and says so).
        if let Err(e) =
            cmd::run_to_stderr(Command::new("rustup").args(["target", "add", target, "--toolchain", "stable"]))
        {
            note(format_args!("could not install it ({e:#}); the cross-architecture check will be skipped"));
        }
    }
    Ok(())
}

/// Whether the stable standard library for [`cross_target`] is installed.
pub fn has_cross_target() -> bool {
    cmd::try_output(Command::new("rustup").args(["target", "list", "--installed", "--toolchain", "stable"]))
        .is_some_and(|targets| targets.lines().any(|l| l.trim() == cross_target()))
}

/// The LLVM major version of `rustc +nightly -vV` (bpf-linker must match it).
pub fn nightly_llvm_major() -> Result<u32> {
    let out = cmd::output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    parse_llvm_major(&out).with_context(|| format!("no `LLVM version:` line in `rustc +nightly -vV`:\n{out}"))
}

fn parse_llvm_major(rustc_vv: &str) -> Option<u32> {
    let version = rustc_vv.lines().find_map(|l| l.strip_prefix("LLVM version:"))?;
    version.trim().split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llvm_major() {
        let vv = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\nLLVM version: 22.1.4\n";
        assert_eq!(parse_llvm_major(vv), Some(22));
        assert_eq!(parse_llvm_major("rustc 1.0"), None);
    }
}
