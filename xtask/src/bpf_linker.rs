//! bpf-linker, built against Debian's `llvm-<N>-dev` where N is the LLVM
//! major of the nightly rustc that compiles the eBPF crate (they must match).
use std::{env, path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::{
    apt,
    cmd::{self, note, step},
};

/// The Debian package with the LLVM that bpf-linker links against.
pub fn llvm_dev_package(llvm_major: u32) -> String {
    format!("llvm-{llvm_major}-dev")
}

/// Fails clearly when Debian has no `llvm-<N>-dev` for the nightly's LLVM.
pub fn check_llvm_available(llvm_major: u32) -> Result<()> {
    let package = llvm_dev_package(llvm_major);
    if apt::is_installed(&package) || apt::is_available(&package)? {
        return Ok(());
    }
    bail!(
        "the nightly rustc is built with LLVM {llvm_major}, so bpf-linker needs feature llvm-{llvm_major} \
         and Debian's {package}, but apt has no {package}{}. Use a nightly whose LLVM major Debian \
         packages, or install LLVM {llvm_major} yourself and run \
         `LLVM_PREFIX=<its prefix> cargo install bpf-linker --no-default-features --features llvm-{llvm_major}`",
        if cmd::is_root() { "" } else { " (not root, so `apt-get update` was not tried)" }
    )
}

/// Installs bpf-linker unless a build for the same LLVM major is present.
/// Expects `llvm-<N>-dev` to be installed already (see `setup`).
pub fn ensure(llvm_major: u32) -> Result<()> {
    step(format_args!("checking bpf-linker (llvm-{llvm_major}) ..."));
    let mut force = false;
    if let Some(version) = cmd::try_output(Command::new("bpf-linker").arg("--version")) {
        match installed_llvm_major() {
            Some(m) if m != llvm_major => {
                note(format_args!(
                    "{} is built for LLVM {m}, but nightly rustc uses LLVM {llvm_major}: reinstalling",
                    version.trim()
                ));
                force = true;
            }
            m => {
                let llvm = m.map_or(String::new(), |m| format!(", LLVM {m}"));
                note(format_args!("{} present{llvm}", version.trim()));
                return Ok(());
            }
        }
    }
    let prefix = PathBuf::from(format!("/usr/lib/llvm-{llvm_major}"));
    if !prefix.join("bin/llvm-config").is_file() {
        bail!(
            "{} has no bin/llvm-config: is {} installed? Run `cargo xtask setup` as root",
            prefix.display(),
            llvm_dev_package(llvm_major)
        );
    }
    step(format_args!("installing bpf-linker (llvm-{llvm_major}) ... (takes ~3 minutes)"));
    let feature = format!("llvm-{llvm_major}");
    let mut install = Command::new("cargo");
    install.env("LLVM_PREFIX", &prefix).args([
        "install",
        "bpf-linker",
        "--no-default-features",
        "--features",
        &feature,
    ]);
    if force {
        install.arg("--force");
    }
    cmd::run_to_stderr(&mut install)?;
    if cmd::try_output(Command::new("bpf-linker").arg("--version")).is_none() {
        bail!("bpf-linker was installed but does not run from PATH: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// The LLVM major the installed bpf-linker uses: from the libLLVM it links
/// (ldd), else from the features cargo recorded when installing it.
fn installed_llvm_major() -> Option<u32> {
    let path = cmd::which("bpf-linker")?;
    if let Some(ldd) = cmd::try_output(Command::new("ldd").arg(&path)) {
        if let Some(m) = ldd.lines().find_map(|l| l.split_once("libLLVM").and_then(|(_, rest)| first_number(rest))) {
            return Some(m);
        }
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let crates2 = std::fs::read_to_string(cargo_home.join(".crates2.json")).ok()?;
    let entry = &crates2[crates2.find("\"bpf-linker ")?..];
    let features = &entry[entry.find("\"features\"")?..];
    let features = &features[..features.find(']')?];
    features.split_once("\"llvm-").and_then(|(_, rest)| first_number(rest))
}

fn first_number(s: &str) -> Option<u32> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_llvm_major_in_library_names() {
        assert_eq!(first_number(".so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1"), Some(22));
        assert_eq!(first_number("-19.so => /x"), Some(19));
        assert_eq!(first_number("nothing"), None);
    }
}
