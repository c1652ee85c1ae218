//! Types shared by the eBPF probes (`tracer-ebpf`) and userspace (`deferscope`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into
//! the ring buffer and userspace reads it back byte for byte.
#![no_std]

/// What a ring-buffer [`Event`] reports.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A defer record was pushed onto the current goroutine's chain.
    /// `pc` is the return address of the call into the runtime (the `defer`
    /// statement's call site) — for deferprocat, the deferred function's
    /// entry + 1, which symbolises to the same line — and `arg` the record's
    /// address when the probe knows it (deferprocStack), else 0. `aux` is
    /// the record it goes on top of (`g._defer` at the push: 0 for an empty
    /// chain), or [`UNKNOWN_RECORD`] (deferprocat, which pushes onto a
    /// range-over-func loop's own list).
    DeferPush = 1,
    /// The newest record of the current goroutine's chain was popped.
    /// `arg` is the record's address, `aux` the record below it, which is
    /// the chain's head after the pop (0: the chain is now empty), or
    /// [`UNKNOWN_RECORD`] if it could not be read.
    DeferPop = 2,
    /// The current goroutine is exiting (`runtime.goexit1`).
    GoroutineExit = 3,
    /// A goroutine was created. `goid` is the new goroutine, `pc` its `go`
    /// statement (`g.gopc`), `arg` its parent's goid (0 when unknown), `aux`
    /// its start function's PC (`g.startpc`).
    GoroutineCreate = 4,
}

impl EventKind {
    pub fn from_u32(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::DeferPush,
            2 => Self::DeferPop,
            3 => Self::GoroutineExit,
            4 => Self::GoroutineCreate,
            _ => return None,
        })
    }
}

/// In a defer event's `aux`: the probe could not tell which record is below.
pub const UNKNOWN_RECORD: u64 = u64::MAX;

/// One probe hit, as written to the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// An [`EventKind`] discriminant.
    pub kind: u32,
    /// The [`ProbeId`] that fired.
    pub probe: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, comparable with userspace
    /// reads of that clock (used to order events against memory snapshots).
    pub ktime_ns: u64,
    /// The goroutine the event is about.
    pub goid: u64,
    /// See [`EventKind`].
    pub pc: u64,
    /// See [`EventKind`].
    pub arg: u64,
    /// See [`EventKind`] (GoroutineCreate: the new goroutine's start PC;
    /// DeferPush and DeferPop: the record below the one pushed or popped).
    pub aux: u64,
    /// Kernel thread id of the M that ran the probe.
    pub tid: u32,
    /// The traced process (its tgid in the initial PID namespace): one
    /// probe object serves every traced process, events are routed by this.
    pub tgid: u32,
}

/// Every runtime function deferscope can probe; the index into `PROBE_HITS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProbeId {
    DeferProc = 0,
    DeferProcStack = 1,
    DeferProcAt = 2,
    PopDefer = 3,
    FreeDefer = 4,
    Goexit1 = 5,
    NewProcReturn = 6,
}

pub const PROBE_COUNT: u32 = 7;

impl ProbeId {
    pub const ALL: [ProbeId; PROBE_COUNT as usize] = [
        Self::DeferProc,
        Self::DeferProcStack,
        Self::DeferProcAt,
        Self::PopDefer,
        Self::FreeDefer,
        Self::Goexit1,
        Self::NewProcReturn,
    ];

    pub fn from_u32(raw: u32) -> Option<Self> {
        Self::ALL.get(raw as usize).copied()
    }

    /// Name of the eBPF program in the object file.
    pub const fn program_name(self) -> &'static str {
        match self {
            Self::DeferProc => "deferproc",
            Self::DeferProcStack => "deferproc_stack",
            Self::DeferProcAt => "deferprocat",
            Self::PopDefer => "pop_defer",
            Self::FreeDefer => "freedefer",
            Self::Goexit1 => "goexit1",
            Self::NewProcReturn => "newproc_return",
        }
    }
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events that did not fit into the ring buffer.
    pub const EVENTS_LOST: u32 = 0;
    /// Probe hits whose goroutine could not be read (bad g pointer).
    pub const READ_ERRORS: u32 = 1;
    /// freedefer hits skipped because the record was a synthetic open-coded
    /// defer frame (Go ≤ 1.21 panics and Goexit).
    pub const OPEN_DEFER_SKIPPED: u32 = 2;
    /// popDefer hits skipped because the record was a range-over-func header
    /// (it holds no deferred call, so it is not part of the depth).
    pub const RANGEFUNC_HEADER_SKIPPED: u32 = 3;
    /// Hits of the `calibrate` probe on deferscope's own calibration point
    /// (measuring what one probe hit costs on this kernel).
    pub const CALIBRATION_HITS: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// How many processes the `PROCESSES` and `PROBE_HITS` maps can hold: the
/// ceiling of `--max-processes`.
pub const MAX_PROCESSES: u32 = 4096;

/// Marks an absent field in [`ProcessParams`].
pub const NO_OFFSET: u64 = u64::MAX;

/// What the probes need to know about one traced process (its Go runtime's
/// struct offsets differ per Go version), in the `PROCESSES` map keyed by
/// tgid. A probe hit of a process without an entry is ignored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessParams {
    /// Offset of `g.goid`.
    pub goid_offset: u64,
    /// Offset of `g.parentGoid`, or [`NO_OFFSET`].
    pub parent_goid_offset: u64,
    /// Offset of `g.gopc`.
    pub gopc_offset: u64,
    /// Offset of `g.startpc`.
    pub startpc_offset: u64,
    /// Offset of `g._defer`.
    pub g_defer_offset: u64,
    /// Offset of `_defer.fn`.
    pub defer_fn_offset: u64,
    /// Offset of `_defer.link`.
    pub defer_link_offset: u64,
    /// Offset of `_defer.openDefer`, or [`NO_OFFSET`] (Go ≥ 1.22).
    pub open_defer_offset: u64,
}

/// Hits per probe of one process (index: [`ProbeId`]), in the per-CPU
/// `PROBE_HITS` map keyed by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessHits {
    pub hits: [u64; PROBE_COUNT as usize],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers, every bit pattern is valid.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcessParams {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcessHits {}
}
