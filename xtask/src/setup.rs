//! `cargo xtask setup`: installs whatever is missing, skipping fast when
//! everything is present. What "everything" is depends on the task: a
//! [`Plan`].
use std::{path::Path, time::Instant};

use anyhow::Result;

use crate::{
    apt, bpf_linker,
    cmd::{note, step},
    demo, rustup,
    toolchains::{self, GoToolchain},
};

/// What setup found or installed.
pub struct Setup {
    /// The Go toolchains of the plan, oldest first.
    pub toolchains: Vec<GoToolchain>,
}

/// What a task needs installed. Every plan includes what building the probes
/// needs: the nightly toolchain, `llvm-<N>-dev` for the nightly's LLVM N and
/// bpf-linker built against it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// rustup components, (toolchain, component).
    pub components: &'static [(&'static str, &'static str)],
    /// The stable standard library of the other architecture (for `lint`'s
    /// cross-architecture check).
    pub cross_target: bool,
    /// Debian packages besides `llvm-<N>-dev` and Go 1.19 (a toolchain).
    pub apt: &'static [&'static str],
    /// Go toolchains, major.minor, oldest first.
    pub go: Vec<String>,
}

impl Plan {
    /// Everything development needs (setup, build, test, lint, bench): the
    /// lint components, the test packages and the whole Go matrix.
    pub fn full() -> Self {
        Self { components: rustup::COMPONENTS, cross_target: true, apt: apt::TEST_PACKAGES, go: toolchains::matrix() }
    }

    /// `cargo xtask demo`: build deferscope and its probes, and the demo
    /// workload with one Go toolchain. No linters, no test packages.
    pub fn demo() -> Self {
        Self { components: rustup::BUILD_COMPONENTS, cross_target: false, apt: &[], go: vec![demo::DEMO_GO.to_owned()] }
    }
}

/// Installs what [`Plan::full`] lists: rustup components, Debian packages
/// (llvm-N-dev, Go 1.19, tmux, prometheus), bpf-linker for LLVM N, and the
/// PyPI Go toolchains.
pub fn run(workspace_root: &Path) -> Result<Setup> {
    run_plan(workspace_root, &Plan::full())
}

/// Installs what `plan` lists and is missing.
pub fn run_plan(workspace_root: &Path, plan: &Plan) -> Result<Setup> {
    let start = Instant::now();
    step("setup: checking the development environment ...");
    rustup::ensure_components(plan.components, plan.cross_target)?;

    let llvm_major = rustup::nightly_llvm_major()?;
    note(format_args!("nightly rustc uses LLVM {llvm_major}"));
    bpf_linker::check_llvm_available(llvm_major)?;
    let llvm_dev = bpf_linker::llvm_dev_package(llvm_major);
    let mut packages: Vec<&str> = plan.apt.to_vec();
    packages.push(&llvm_dev);
    // Go 1.19 comes from apt too: ask for it now, so that a fresh machine
    // runs one `apt-get install`.
    if plan.go.iter().any(|v| v == "1.19") {
        packages.push(toolchains::GO_119_PACKAGE);
    }
    step("checking Debian packages ...");
    apt::ensure(&packages)?;

    bpf_linker::ensure(llvm_major)?;
    let toolchains = toolchains::ensure_versions(workspace_root, &plan.go)?;
    step(format_args!("setup: everything needed is in place ({:.1}s)", start.elapsed().as_secs_f64()));
    Ok(Setup { toolchains })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_installs_only_what_the_demo_needs() {
        let plan = Plan::demo();
        // Probes: nightly rust-src (llvm-N-dev and bpf-linker are in every plan).
        assert_eq!(plan.components, [("nightly", "rust-src")]);
        assert!(!plan.cross_target);
        // No tmux, no prometheus: they are for the tests.
        assert!(plan.apt.is_empty(), "{:?}", plan.apt);
        // One Go, the demo's, not the matrix.
        assert_eq!(plan.go, [demo::DEMO_GO]);
        assert!(toolchains::matrix().contains(&plan.go[0]));
    }

    #[test]
    fn full_setup_installs_the_test_matrix_and_the_linters() {
        let plan = Plan::full();
        assert_eq!(plan.go, toolchains::matrix());
        assert!(plan.apt.contains(&"prometheus") && plan.apt.contains(&"tmux"));
        assert!(plan.components.contains(&("stable", "clippy")) && plan.components.contains(&("nightly", "rust-src")));
        assert!(plan.cross_target);
    }
}
