//! The traced process: its identity in /proc (`traced`), its memory, read
//! only (`memory`), and the goroutines scanned from that memory (`scan`,
//! with stacks unwound by `stack`); finding processes to trace (`discover`).
pub(crate) mod discover;
pub(crate) mod memory;
pub(crate) mod reachability;
pub(crate) mod resources;
pub(crate) mod scan;
pub(crate) mod stack;
pub(crate) mod traced;

pub(crate) use memory::ProcessMemory;
pub(crate) use scan::{GoroutineScan, GoroutineScanner};
pub(crate) use traced::TracedProcess;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, so
/// memory reads can be ordered against probe events.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
