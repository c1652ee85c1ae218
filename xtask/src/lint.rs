//! `cargo xtask lint`: clippy on the host crates and the fuzz targets,
//! clippy on the eBPF crate (nightly, bpfel target), a build check for the
//! other architecture, and rustfmt.
use std::{path::Path, process::Command};

use anyhow::Result;

use crate::{cmd, cmd::step, paths, rustup, summary::Summary};

/// The `bpf_target_arch` values the probes support (x86_64 and arm64 hosts).
const BPF_TARGET_ARCHES: &[&str] = &["x86_64", "aarch64"];

/// Runs every lint, recording each in `summary` (all run even if one fails).
pub fn run(workspace_root: &Path, summary: &mut Summary) {
    summary.record("clippy (host crates)", || {
        step("clippy on the host crates ...");
        cmd::run(Command::new("cargo").current_dir(workspace_root).args([
            "clippy",
            "--workspace",
            "--exclude",
            "tracer-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    });
    // The fuzz crate is outside the workspace (cargo-fuzz wants its own
    // manifest). libfuzzer-sys builds on stable (only `cargo fuzz run` needs
    // nightly's sanitizer flags), so plain clippy checks the targets still
    // compile against the readers; its own target dir keeps the workspace's
    // builds warm.
    summary.record("clippy (fuzz targets)", || {
        step("clippy on the fuzz crate ...");
        let target_dir = paths::target_dir(workspace_root).join("fuzz-clippy");
        cmd::run(
            Command::new("cargo")
                .current_dir(workspace_root.join("fuzz"))
                .args(["clippy", "--all-targets", "--target-dir"])
                .arg(&target_dir)
                .args(["--", "-D", "warnings"]),
        )
    });
    // The probes have per-architecture register code under
    // `#[cfg(bpf_target_arch = ..)]` (set by tracer-user/build.rs for the host); lint
    // both, each in its own target dir so they do not rebuild each other.
    for arch in BPF_TARGET_ARCHES {
        summary.record(&format!("clippy (tracer-ebpf, bpfel, {arch})"), || {
            step(format_args!("clippy on the eBPF crate (nightly, bpfel-unknown-none, bpf_target_arch={arch}) ..."));
            let target_dir = paths::target_dir(workspace_root).join("ebpf-clippy").join(arch);
            cmd::run(
                Command::new("rustup")
                    .current_dir(workspace_root.join("tracer-ebpf"))
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .env_remove("RUSTFLAGS")
                    .env("CARGO_ENCODED_RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{arch}\""))
                    .args(["run", "nightly", "cargo", "clippy", "-p", "tracer-ebpf"])
                    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--target-dir"])
                    .arg(&target_dir)
                    .args(["--", "-D", "warnings"]),
            )
        });
    }
    // The probes and the userspace side both have per-architecture code
    // (registers, instruction decoding): check the other architecture builds.
    let cross = rustup::cross_target();
    summary.record(&format!("cargo check ({cross})"), || {
        // The exporter's TLS (ring) compiles C and assembly: the build
        // scripts need the other architecture's C compiler.
        crate::apt::ensure(&[rustup::cross_c_compiler_package()])?;
        step(format_args!("cargo check for {cross} ..."));
        cmd::run(Command::new("cargo").current_dir(workspace_root).args([
            "check",
            "-p",
            "deferscope",
            "--target",
            cross,
        ]))
    });
    summary.record("rustfmt", || {
        step("cargo fmt --check ...");
        cmd::run(Command::new("cargo").current_dir(workspace_root).args(["fmt", "--all", "--check"]))
    });
}

/// `cargo xtask lint` on its own.
pub fn standalone(workspace_root: &Path) -> Result<()> {
    let mut summary = Summary::default();
    run(workspace_root, &mut summary);
    summary.finish()
}
