//! Everything deferscope knows about how the Go runtime behaves, and how
//! that changes from version to version. `gobin` reads binaries; this module
//! says what their runtime means.
//!
//! - [`SUPPORTED`]: the Go versions deferscope traces;
//! - [`layout`]: struct offsets and enum values (`_G*` statuses, `waitReason`),
//!   from DWARF or the generated table `layouts.json`;
//! - [`probe_plan`]: which runtime functions are probed in which version;
//! - [`goroutines`]: statuses, the runtime's own goroutines, the main
//!   goroutine, blocking machinery frames;
//! - [`wait`]: wait reasons that are concurrency primitives;
//! - [`defers`]: `_defer` record kinds and the compiler's `deferwrap` naming.
//!
//! # Adding a Go version (say 1.28)
//!
//! 1. Add its toolchain to `xtask/src/toolchains.rs` (`PYPI_GO_VERSIONS`).
//! 2. `cargo xtask gen-layouts`: regenerates `layouts.json` (offsets, status
//!    codes, wait reasons) from every toolchain. The generator fails loudly
//!    when a struct member it needs is gone.
//! 3. Raise [`SUPPORTED`]'s newest minor.
//! 4. Read the release's `runtime/panic.go` and `proc.go`: if the push or pop
//!    primitives changed, update [`probe_plan`] (and the probes in
//!    `tracer-ebpf`); if a new `_G*` status appeared, name it in
//!    [`goroutines::GoroutineStatus::from_constant`].
//! 5. `cargo xtask test`: every integration test runs on every toolchain.
pub(crate) mod defers;
pub(crate) mod goroutines;
pub(crate) mod heap;
pub(crate) mod layout;
pub(crate) mod probe_plan;
pub(crate) mod wait;

pub use goroutines::GoroutineStatus;
pub(crate) use layout::RuntimeLayout;

use crate::gobin::GoVersion;

/// A range of Go 1.x minor versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupportedVersions {
    pub oldest_minor: u32,
    pub newest_minor: u32,
}

/// The Go versions whose runtime deferscope knows: Go 1.19 to 1.27.
pub const SUPPORTED: SupportedVersions = SupportedVersions { oldest_minor: 19, newest_minor: 27 };

impl SupportedVersions {
    pub fn contains(&self, version: &GoVersion) -> bool {
        version.major == 1 && (self.oldest_minor..=self.newest_minor).contains(&version.minor)
    }
}

impl std::fmt::Display for SupportedVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Go 1.{} to 1.{}", self.oldest_minor, self.newest_minor)
    }
}
