//! What the VM needs from Debian, installed or fetched only when missing:
//! qemu and the aarch64 cross toolchain (installed), and the arm64 kernel
//! image and a static busybox (downloaded with `apt-get download` and
//! unpacked under the VM directory, never installed on the host).
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    apt,
    cmd::{self, note, step},
};

/// Host packages: `qemu-system-aarch64`, the cross linker and C library
/// (static aarch64 Rust binaries), and binutils' `aarch64-linux-gnu-strip`
/// (a dependency of the compiler).
pub const HOST_PACKAGES: &[&str] = &["qemu-system-arm", "gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"];

/// The metapackage whose dependency names the current arm64 kernel.
const KERNEL_META: &str = "linux-image-arm64:arm64";

/// The kernel image and busybox, unpacked.
pub struct Assets {
    pub kernel: PathBuf,
    /// e.g. `6.1.0-56-arm64`.
    pub kernel_release: String,
    pub busybox: PathBuf,
}

/// Installs [`HOST_PACKAGES`] and fetches the kernel and busybox into
/// `dir` unless they are already there.
pub fn ensure(dir: &Path) -> Result<Assets> {
    step("checking the VM's host packages ...");
    apt::ensure(HOST_PACKAGES)?;
    let busybox = dir.join("busybox/bin/busybox");
    let found = find_kernel(&dir.join("kernel/boot"))?;
    if let (Some((kernel, kernel_release)), true) = (&found, busybox.is_file()) {
        note(format_args!("arm64 kernel {kernel_release} and busybox present under {}", dir.display()));
        return Ok(Assets { kernel: kernel.clone(), kernel_release: kernel_release.clone(), busybox });
    }
    apt::ensure_foreign_architecture("arm64")?;
    let Some(image) = apt::dependency_with_prefix(KERNEL_META, "linux-image-")? else {
        bail!("`apt-cache depends {KERNEL_META}` names no kernel image package");
    };
    // The same kernel without the Secure Boot signature (no shim needed).
    let kernel_package = format!("{image}-unsigned:arm64");
    let debs = dir.join("debs");
    let _ = fs::remove_dir_all(&debs);
    apt::download(&[&kernel_package, "busybox-static:arm64"], &debs)?;
    for deb in fs::read_dir(&debs)? {
        let deb = deb?.path();
        let name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("linux-image-") {
            unpack(&deb, &dir.join("kernel"), &["./boot/vmlinuz-*", "./boot/config-*"])?;
        } else if name.starts_with("busybox-static") {
            unpack(&deb, &dir.join("busybox"), &["./bin/busybox"])?;
        }
    }
    fs::remove_dir_all(&debs).with_context(|| format!("removing {}", debs.display()))?;
    let Some((kernel, kernel_release)) = find_kernel(&dir.join("kernel/boot"))? else {
        bail!("{kernel_package} held no /boot/vmlinuz-*");
    };
    if !busybox.is_file() {
        bail!("busybox-static:arm64 held no /bin/busybox");
    }
    note(format_args!("arm64 kernel {kernel_release}: {}", kernel.display()));
    Ok(Assets { kernel, kernel_release, busybox })
}

/// The newest `vmlinuz-<release>` in `boot`, if any.
fn find_kernel(boot: &Path) -> Result<Option<(PathBuf, String)>> {
    let Ok(entries) = fs::read_dir(boot) else { return Ok(None) };
    let mut kernels: Vec<(PathBuf, String)> = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(release) = name.strip_prefix("vmlinuz-") {
            kernels.push((path.clone(), release.to_owned()));
        }
    }
    kernels.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(kernels.pop())
}

/// Extracts the members matching `patterns` of a `.deb` into `into`
/// (`dpkg-deb --fsys-tarfile | tar -x`), without installing anything.
fn unpack(deb: &Path, into: &Path, patterns: &[&str]) -> Result<()> {
    step(format_args!("unpacking {} ...", deb.display()));
    fs::create_dir_all(into)?;
    let mut dpkg = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context("running dpkg-deb")?;
    let stdout = dpkg.stdout.take().context("dpkg-deb's stdout")?;
    let mut tar = Command::new("tar");
    tar.arg("-x").arg("-C").arg(into).arg("--wildcards").args(patterns).stdin(stdout);
    let result = cmd::run(&mut tar);
    let status = dpkg.wait()?;
    result?;
    if !status.success() {
        bail!("dpkg-deb --fsys-tarfile {} failed ({status})", deb.display());
    }
    Ok(())
}
