//! The Go heap as the garbage collector sees it, for the reachability scan
//! (`process::reachability`). Values checked against `runtime/mheap.go`,
//! `sizeclasses.go` and `mbitmap.go` of Go 1.19 to 1.27 (they have not
//! changed over that range).
//!
//! - `mheap_.allspans` lists every span ever created; only spans in state
//!   `mSpanInUse` hold heap objects. `mSpanManual` spans hold goroutine
//!   stacks and other manually managed memory: not objects.
//! - A span covers `npages` pages of 8 KiB from `startAddr`; object `i` starts
//!   at `startAddr + i * elemsize` (large objects: one object, the span).
//! - `spanclass` is `sizeclass << 1 | noscan`: the objects of a noscan span
//!   hold no pointers, so their contents are never traced.
//! - `mspan.specials` lists the span's specials (finalizers, cleanups, weak
//!   handles, profiling records, ...): the collector treats finalizers and
//!   cleanups as roots (`markrootSpans`); deferscope treats every special as
//!   one, which can only make more objects reachable.

/// `_PageSize` (`_PageShift` = 13) on every platform Go supports.
pub(crate) const PAGE_SIZE: u64 = 8192;

/// `mSpanInUse`: `mSpanDead = iota; mSpanInUse; mSpanManual`.
pub(crate) const MSPAN_IN_USE: u8 = 1;

/// Whether a span's objects hold no pointers (`spanClass.noscan`).
pub(crate) fn spanclass_noscan(spanclass: u8) -> bool {
    spanclass & 1 == 1
}

/// The largest goroutine stack the runtime allows (`maxstacksize`, 1 GB on
/// 64-bit); a larger range read from a g is torn or corrupt.
pub(crate) const MAX_STACK: u64 = 1 << 30;

/// The main goroutine's ID. It is never proven leaked (a server's
/// `select {}` in main is by design) and its stack is always a root.
pub(crate) use super::goroutines::MAIN_GOID;
