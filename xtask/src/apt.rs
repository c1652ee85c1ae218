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

/// The Debian packages `cargo xtask bench` adds: bpftrace, the peer its
/// per-hit cost is measured against (prometheus is in `TEST_PACKAGES`).
pub const BENCH_PACKAGES: &[&str] = &["bpftrace"];

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

/// Makes dpkg accept packages of a foreign architecture (`arm64`), then
/// refreshes the package lists so they include it. Idempotent.
pub fn ensure_foreign_architecture(arch: &str) -> Result<()> {
    let foreign = cmd::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if foreign.split_whitespace().any(|a| a == arch) {
        note(format_args!("dpkg: foreign architecture {arch} present"));
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "dpkg does not know the {arch} architecture; adding it needs root: run \
             `sudo dpkg --add-architecture {arch} && sudo apt-get update`, then re-run"
        );
    }
    step(format_args!("adding the {arch} architecture to dpkg ..."));
    cmd::run(Command::new("dpkg").args(["--add-architecture", arch]))?;
    update()
}

/// Downloads (without installing) the `.deb` of each package into `dir`
/// with `apt-get download`, after one `apt-get update` if apt does not know
/// a package yet.
pub fn download(packages: &[&str], dir: &std::path::Path) -> Result<()> {
    for package in packages {
        if !is_available(package)? {
            bail!("apt knows no installable {package}: is the Debian archive in the apt sources?");
        }
    }
    step(format_args!("downloading {} into {} ...", packages.join(" "), dir.display()));
    std::fs::create_dir_all(dir)?;
    cmd::run(Command::new("apt-get").current_dir(dir).args(["download", "-q"]).args(packages))
}

/// The first package `package` depends on whose name starts with `prefix`
/// (e.g. the versioned kernel image behind the `linux-image-arm64:arm64`
/// metapackage), from `apt-cache depends`.
pub fn dependency_with_prefix(package: &str, prefix: &str) -> Result<Option<String>> {
    let out = cmd::output(Command::new("apt-cache").args(["depends", package]))?;
    Ok(parse_dependency(&out, prefix))
}

fn parse_dependency(apt_cache_depends: &str, prefix: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|l| {
        let name = l.trim().strip_prefix("Depends:")?.trim();
        let name = name.split(':').next().unwrap_or(name);
        name.starts_with(prefix).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_dependency() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-56-arm64:arm64\n";
        assert_eq!(parse_dependency(out, "linux-image-6").as_deref(), Some("linux-image-6.1.0-56-arm64"));
        assert_eq!(parse_dependency(out, "linux-headers"), None);
    }
}
