//! Goroutines as they are in the target's memory: `runtime.allgs`, each `g`,
//! and each goroutine's `_defer` chain.
//!
//! This is how deferscope knows chains that were built before it attached, and
//! how it resynchronises: events give changes, memory gives the truth for a
//! goroutine that is not running. A chain is only trusted when the goroutine
//! could not run while it was read (see [`GoroutineMemory::consistent`]).
use crate::{
    gobin::RuntimeLayout,
    target::{
        memory::{MemoryError, ProcessMemory, field_u8, field_u32, field_u64},
        monotonic_ns, stack,
    },
};

/// `g.atomicstatus` without the `_Gscan` bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoroutineStatus {
    Idle,
    Runnable,
    Running,
    Syscall,
    Waiting,
    Dead,
    CopyStack,
    Preempted,
    /// Go 1.26+: the GC found it unreachable while blocked (goroutineleak).
    Leaked,
    /// Go 1.26+: a g kept for cgo callbacks on extra Ms.
    DeadExtra,
    Unknown(u32),
}

impl GoroutineStatus {
    const SCAN_BIT: u32 = 0x1000;

    pub fn from_raw(raw: u32) -> Self {
        match raw & !Self::SCAN_BIT {
            0 => Self::Idle,
            1 => Self::Runnable,
            2 => Self::Running,
            3 => Self::Syscall,
            4 => Self::Waiting,
            6 => Self::Dead,
            8 => Self::CopyStack,
            9 => Self::Preempted,
            10 => Self::Leaked,
            11 => Self::DeadExtra,
            other => Self::Unknown(other),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Runnable => "runnable",
            Self::Running => "running",
            Self::Syscall => "syscall",
            Self::Waiting => "waiting",
            Self::Dead => "dead",
            Self::CopyStack => "copystack",
            Self::Preempted => "preempted",
            Self::Leaked => "leaked",
            Self::DeadExtra => "dead",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether the g holds a goroutine (as `runtime.gcount` counts them).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Dead | Self::DeadExtra | Self::Idle)
    }

    /// Whether the goroutine may be executing Go code, and so changing its
    /// defer chain, right now. `_Gcopystack` moves the chain, so it counts too.
    pub fn may_change_chain(self) -> bool {
        matches!(self, Self::Running | Self::CopyStack | Self::Unknown(_))
    }
}

/// One goroutine read from memory. Addresses are the target's runtime ones.
#[derive(Clone, Debug)]
pub struct GoroutineMemory {
    pub goid: u64,
    pub g_addr: u64,
    pub status: GoroutineStatus,
    pub wait_reason: u8,
    pub waitsince: i64,
    pub gopc: u64,
    pub startpc: u64,
    pub parent_goid: Option<u64>,
    pub sched_sp: u64,
    pub sched_pc: u64,
    pub sched_bp: u64,
    pub sched_lr: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// Call sites (return addresses) of the defer records, newest first.
    /// 0 where the record does not say (pending range-over-func records).
    pub defer_sites: Vec<u64>,
    /// The goroutine could not have run while its chain was read: same goid,
    /// status and chain head before and after, and not running.
    pub consistent: bool,
    /// The walk stopped at the safety bound or at an unreadable record.
    pub chain_truncated: bool,
    /// `g.trackingSeq`: bumped by the runtime every time the goroutine stops
    /// running, so a change between two reads proves it ran in between.
    pub tracking_seq: Option<u8>,
    /// Stack PCs innermost first, for goroutines that are not running
    /// (empty otherwise). See `stack::unwind`.
    pub stack_pcs: Vec<u64>,
}

impl GoroutineMemory {
    pub fn defer_depth(&self) -> u64 {
        self.defer_sites.len() as u64
    }
}

#[derive(Clone, Debug)]
pub struct MemorySnapshot {
    /// CLOCK_MONOTONIC before the first read and after the last one.
    pub t_start_ns: u64,
    pub t_end_ns: u64,
    /// Every non-dead goroutine (system ones included).
    pub goroutines: Vec<GoroutineMemory>,
}

/// Reads goroutines from the target. Cheap to keep; `snapshot` does the I/O.
pub struct MemoryWalker {
    mem: ProcessMemory,
    layout: RuntimeLayout,
    /// Runtime address of the `runtime.allgs` slice header.
    allgs: u64,
    /// Runtime address of `runtime.allglen`, if known.
    allglen: Option<u64>,
}

/// No real program holds this many records on one goroutine (8 GiB of
/// records at 48 bytes each); the bound stops a walk through a corrupt or
/// concurrently recycled chain.
const MAX_CHAIN: usize = 1 << 24;
/// Upper bound for allglen, for the same reason.
const MAX_GOROUTINES: u64 = 1 << 24;
/// Go's `badDefer()` sentinel terminating a drained range-over-func list.
const BAD_DEFER: u64 = 1;

impl MemoryWalker {
    pub fn new(mem: ProcessMemory, layout: RuntimeLayout, allgs: u64, allglen: Option<u64>) -> Self {
        Self { mem, layout, allgs, allglen }
    }

    pub fn layout(&self) -> &RuntimeLayout {
        &self.layout
    }

    /// The addresses of every g in `allgs` (dead ones included).
    fn all_g_addresses(&self) -> Result<Vec<u64>, MemoryError> {
        let header = self.mem.read_vec(self.allgs, 16)?;
        let ptr = field_u64(&header, 0).unwrap_or(0);
        let slice_len = field_u64(&header, 8).unwrap_or(0);
        // allglen is what the runtime reads atomically; the slice length can
        // be ahead of it while allgadd is appending.
        let len = match self.allglen {
            Some(addr) => self.mem.read_u64(addr)?.min(slice_len),
            None => slice_len,
        }
        .min(MAX_GOROUTINES);
        if ptr == 0 || len == 0 {
            return Ok(Vec::new());
        }
        let raw = self.mem.read_vec(ptr, (len * 8) as usize)?;
        Ok(raw.chunks_exact(8).filter_map(|c| field_u64(c, 0)).filter(|&g| g != 0).collect())
    }

    /// Reads every live goroutine and its defer chain.
    pub fn snapshot(&self) -> Result<MemorySnapshot, MemoryError> {
        let t_start_ns = monotonic_ns();
        let mut goroutines = Vec::new();
        for g_addr in self.all_g_addresses()? {
            // A g can be freed and reused while we read; an unreadable one is
            // skipped rather than failing the whole snapshot.
            if let Ok(Some(g)) = self.read_goroutine(g_addr) {
                goroutines.push(g);
            }
        }
        Ok(MemorySnapshot { t_start_ns, t_end_ns: monotonic_ns(), goroutines })
    }

    fn read_g(&self, g_addr: u64) -> Result<Vec<u8>, MemoryError> {
        self.mem.read_vec(g_addr, self.layout.g_size as usize)
    }

    pub fn read_goroutine(&self, g_addr: u64) -> Result<Option<GoroutineMemory>, MemoryError> {
        let l = &self.layout;
        let before = self.read_g(g_addr)?;
        let raw_status = field_u32(&before, l.g_atomicstatus).unwrap_or(u32::MAX);
        let status = GoroutineStatus::from_raw(raw_status);
        if !status.is_live() {
            return Ok(None);
        }
        let goid = field_u64(&before, l.g_goid).unwrap_or(0);
        let head = field_u64(&before, l.g_defer).unwrap_or(0);
        let (defer_sites, chain_truncated) = self.walk_chain(head);
        let consistent = if head == 0 {
            // One read of the g: nothing else to compare.
            !status.may_change_chain()
        } else {
            let after = self.read_g(g_addr)?;
            field_u32(&after, l.g_atomicstatus) == Some(raw_status)
                && field_u64(&after, l.g_goid) == Some(goid)
                && field_u64(&after, l.g_defer) == Some(head)
                && !status.may_change_chain()
        };
        let sched = l.g_sched;
        let sched_pc = field_u64(&before, sched + l.gobuf_pc).unwrap_or(0);
        let sched_bp = field_u64(&before, sched + l.gobuf_bp).unwrap_or(0);
        let stack_lo = field_u64(&before, l.g_stack_lo).unwrap_or(0);
        let stack_hi = field_u64(&before, l.g_stack_hi).unwrap_or(0);
        // Only a goroutine that is off-CPU has meaningful saved registers.
        let stack_pcs = if matches!(
            status,
            GoroutineStatus::Waiting | GoroutineStatus::Runnable | GoroutineStatus::Preempted | GoroutineStatus::Leaked
        ) {
            stack::unwind(&self.mem, sched_pc, sched_bp, stack_lo, stack_hi)
        } else {
            Vec::new()
        };
        Ok(Some(GoroutineMemory {
            goid,
            g_addr,
            status,
            wait_reason: field_u8(&before, l.g_waitreason).unwrap_or(0),
            waitsince: field_u64(&before, l.g_waitsince).unwrap_or(0) as i64,
            gopc: field_u64(&before, l.g_gopc).unwrap_or(0),
            startpc: field_u64(&before, l.g_startpc).unwrap_or(0),
            parent_goid: l.g_parent_goid.and_then(|off| field_u64(&before, off)),
            sched_sp: field_u64(&before, sched + l.gobuf_sp).unwrap_or(0),
            sched_pc,
            sched_bp,
            sched_lr: field_u64(&before, sched + l.gobuf_lr).unwrap_or(0),
            stack_lo,
            stack_hi,
            defer_sites,
            consistent: consistent && !chain_truncated,
            chain_truncated,
            tracking_seq: l.g_tracking_seq.and_then(|off| field_u8(&before, off)),
            stack_pcs,
        }))
    }

    /// Walks `_defer.link` from `head`, newest first. Returns the call sites
    /// and whether the walk was cut short.
    pub fn walk_chain(&self, head: u64) -> (Vec<u64>, bool) {
        let l = &self.layout;
        let mut sites = Vec::new();
        let mut d = head;
        while d != 0 {
            if sites.len() >= MAX_CHAIN {
                return (sites, true);
            }
            let Ok(record) = self.mem.read_vec(d, l.defer_size as usize) else {
                return (sites, true);
            };
            let synthetic_open_defer =
                l.defer_open_defer.and_then(|off| field_u8(&record, off)).is_some_and(|b| b != 0);
            let is_rangefunc = l.defer_rangefunc.and_then(|off| field_u8(&record, off)).is_some_and(|b| b != 0);
            // A range-over-func header (Go ≥ 1.22) is the only linked record
            // without a function: it holds no deferred call. The probes leave
            // it out of the depth too (see tracer-ebpf's pop_defer).
            let is_header = l.defer_rangefunc.is_some() && field_u64(&record, l.defer_fn) == Some(0);
            if is_rangefunc {
                // Records deferred inside a range-over-func body wait on the
                // header's list until the loop's function returns; they were
                // pushed after the header, so they are newer.
                if let Some(head_ptr) = l.defer_head.and_then(|off| field_u64(&record, off)) {
                    if head_ptr != 0 {
                        let mut pending = self.mem.read_u64(head_ptr).unwrap_or(0);
                        while pending != 0 && pending != BAD_DEFER && sites.len() < MAX_CHAIN {
                            let Ok(p) = self.mem.read_vec(pending, l.defer_size as usize) else {
                                return (sites, true);
                            };
                            sites.push(field_u64(&p, l.defer_pc).unwrap_or(0));
                            pending = field_u64(&p, l.defer_link).unwrap_or(0);
                        }
                    }
                }
            }
            // Go ≤ 1.21 panics link synthetic records for open-coded frames;
            // no deferproc pushed them, so they are not part of the depth.
            if !synthetic_open_defer && !is_rangefunc && !is_header {
                sites.push(field_u64(&record, l.defer_pc).unwrap_or(0));
            }
            d = field_u64(&record, l.defer_link).unwrap_or(0);
        }
        (sites, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strips_scan_bit() {
        assert_eq!(GoroutineStatus::from_raw(0x1004), GoroutineStatus::Waiting);
        assert_eq!(GoroutineStatus::from_raw(2), GoroutineStatus::Running);
        assert!(GoroutineStatus::Running.may_change_chain());
        assert!(!GoroutineStatus::Waiting.may_change_chain());
        assert!(!GoroutineStatus::Dead.is_live());
        assert!(!GoroutineStatus::DeadExtra.is_live());
        assert_eq!(GoroutineStatus::from_raw(77), GoroutineStatus::Unknown(77));
    }
}
