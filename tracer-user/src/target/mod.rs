//! The traced process: its identity, its memory (read-only), and the
//! goroutines found in that memory.
pub mod goroutines;
pub mod memory;
pub mod process;
pub mod stack;

pub use goroutines::{GoroutineMemory, GoroutineStatus, MemorySnapshot, MemoryWalker};
pub use memory::ProcessMemory;
pub use process::TargetProcess;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, so
/// memory reads can be ordered against probe events.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
