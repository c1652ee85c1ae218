//! Debian packages: check with dpkg-query, install with apt-get (root only),
//! running `apt-get update` at most once per xtask run.
use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{Result, bail};

use crate::cmd::{self, note, step};

/// The Debian packages only the tests need: tmux and prometheus, for the
/// end-to-end tests of the TUI and the metrics endpoint. (Go 1.19 comes from
/// `toolchains`, `llvm-<N>-dev` from `bpf_linker`: its N follows the nightly
/// rustc.)
pub const TEST_PACKAGES: &[&str] = &["tmux", "prometheus"];

static UPDATED: AtomicBool = AtomicBool::new(false);

/// Whether a Debian package is installed.
pub fn is_installed(package: &str) -> bool {
    cmd::try_output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.trim() == "install ok installed")
}

/// Whether apt knows an installable version of `package` (after one update
/// if the lists do not have it yet).
pub fn is_available(package: &str) -> Result<bool> {
    if has_candidate(package) {
        return Ok(true);
    }
    if !UPDATED.load(Ordering::Relaxed) && cmd::is_root() {
        update()?;
        return Ok(has_candidate(package));
    }
    Ok(false)
}

fn has_candidate(package: &str) -> bool {
    cmd::try_output(Command::new("apt-cache").args(["policy", package])).is_some_and(|out| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Candidate:"))
            .is_some_and(|c| !c.trim().is_empty() && c.trim() != "(none)")
    })
}

fn update() -> Result<()> {
    step("apt-get update ...");
    cmd::run_to_stderr(Command::new("apt-get").args(["update", "-q"]))?;
    UPDATED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Installs whichever of `packages` are missing; says so when all are present.
/// Not being root is an error that names the exact command to run as root.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !is_installed(p)).collect();
    if missing.is_empty() {
        note(format_args!("apt: {} present", packages.join(" ")));
        return Ok(());
    }
    let command = format!("apt-get update && apt-get install -y {}", missing.join(" "));
    if !cmd::is_root() {
        bail!(
            "missing Debian packages: {}. Installing them needs root: run `sudo {command}` \
             (or run `cargo xtask setup` as root), then re-run",
            missing.join(" ")
        );
    }
    if !cmd::on_path("apt-get") {
        bail!("missing packages {} and apt-get is not available: install them by hand", missing.join(" "));
    }
    step(format_args!("installing Debian packages: {} ...", missing.join(" ")));
    if !UPDATED.load(Ordering::Relaxed) {
        update()?;
    }
    cmd::run_to_stderr(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )
}
