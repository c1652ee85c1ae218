//! Free disk space, checked before and after `cargo xtask test`: a full run
//! from a clean clone writes about 10 GB under `target/` (Go toolchains and
//! build cache, the release and test builds, the arm64 VM's image and
//! sysroot, the lint builds), and a disk that fills half-way fails it with a
//! linker's bus error or "No space left on device" far from the cause.
use std::{ffi::CString, os::unix::ffi::OsStrExt as _, path::Path};

use crate::cmd;

/// What a full `cargo xtask test` from a clean clone writes, measured (see
/// the README's "Testing" section), rounded up.
pub const TEST_RUN_BYTES: u64 = 12 << 30;

/// Bytes available to an unprivileged writer on the filesystem holding
/// `path` (its nearest existing ancestor); None when it cannot be told.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let c_path = CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` is a
    // writable statvfs that the call fills in on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between architectures (u64 or i64).
    #[allow(clippy::unnecessary_cast, clippy::cast_sign_loss)]
    let (blocks, block_size) = (stat.f_bavail as u64, stat.f_frsize as u64);
    Some(blocks.saturating_mul(block_size))
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 30)
}

/// Says how much room `target` has, and warns when a run needing `needed`
/// bytes may not fit (a warning, not a refusal: a warm `target/` needs far
/// less).
pub fn report(target: &Path, needed: u64) {
    match free_bytes(target) {
        Some(free) if free < needed => cmd::note(format_args!(
            "warning: only {:.1} GiB free for {}; a run from a clean clone writes about {:.0} GiB there, \
             and may fail with \"No space left on device\"",
            gib(free),
            target.display(),
            gib(needed)
        )),
        Some(free) => cmd::note(format_args!("{:.1} GiB free for {}", gib(free), target.display())),
        None => cmd::note(format_args!("cannot tell the free space for {}", target.display())),
    }
}

/// After a failed run: names a full disk as the likely cause.
pub fn explain_failure(target: &Path) {
    if let Some(free) = free_bytes(target).filter(|&free| free < 1 << 30) {
        eprintln!(
            "error: only {:.2} GiB is left free for {}: a step that failed may have run out of disk space",
            gib(free),
            target.display()
        );
    }
}
