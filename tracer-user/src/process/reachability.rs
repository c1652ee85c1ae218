//! Leak proofs by reachability, from outside the process: the criterion of
//! Go's own `goroutineleak` profile (Go 1.26, `runtime/mgc.go`:
//! `isMaybeRunnable`, `findMaybeRunnableGoroutines`,
//! `setSyncObjectsUntraceable`), evaluated over `/proc/PID/mem` without
//! stopping the target.
//!
//! A goroutine blocked on a concurrency primitive is *unreachable* when no
//! goroutine that may still run can reach that primitive:
//!
//! 1. Heap objects come from `mheap_.allspans`: in-use spans, sorted by
//!    address, so any word maps to the object containing it (interior
//!    pointers included). Mark bits are kept per span; the heap is never
//!    copied.
//! 2. Roots: the binary's `.data` and `.bss`, every span special (finalizers,
//!    cleanups, ...: the object and the special record), and the stacks of
//!    goroutines that may run: every goroutine not parked on a primitive,
//!    the main goroutine, and blocked ones whose primitive is found marked
//!    (iterated to a fixed point). Data and bss are scanned through the
//!    runtime's pointer masks of them (`moduledata.gcdatamask`/`gcbssmask`)
//!    when they can be read; the stacks of idle GC goroutines are no roots
//!    (`goruntime::wait::is_runtime_idle`).
//! 3. Tracing is conservative: every aligned word of a scanned object that
//!    points into an object marks it; noscan spans are marked, not read.
//!    As Go does, the `c` and `elem` fields of the sudogs of blocked
//!    goroutines (`g.waiting` chains) are never traced, or every blocked
//!    goroutine would keep its own primitive alive through the `g` and the
//!    channel wait queues.
//!
//! Everything uncertain errs towards "reachable": conservative words, all
//! specials as roots, a primitive outside the heap, a goroutine whose
//! sudogs cannot be read. Any failure to read the span table or a root
//! aborts the scan: no proof at all. The target keeps running while it is
//! read, so one scan proves nothing alone; `aggregate::leaks` asks for two
//! consecutive scans with the goroutine unchanged in between.
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
pub(crate) use stack::{BinaryFrames, StackFrames};

use crate::{
    goruntime::{
        GoroutineStatus, RuntimeLayout,
        heap::{MAIN_GOID, MAX_STACK, MSPAN_IN_USE, PAGE_SIZE, spanclass_noscan},
        layout::ReachLayout,
        wait::{PrimitiveWait, is_runtime_idle, primitive_wait},
    },
    process::{
        memory::{MemoryError, ReadMemory, field_u8, field_u16, field_u32, field_u64},
        monotonic_ns,
    },
};

/// Bounds that stop a walk through corrupt or torn memory.
const MAX_SPANS: u64 = 1 << 26;
/// More objects than any span holds (`nelems` is a uint16 since Go 1.22).
const MAX_SPAN_OBJECTS: u64 = 1 << 20;
const MAX_PROCS: u64 = 1 << 16;
const MAX_GOROUTINES: u64 = 1 << 24;
const MAX_SUDOGS: usize = 1 << 16;
const MAX_SPECIALS: usize = 1 << 22;
/// Largest data or bss section believed.
const MAX_GLOBALS: u64 = 1 << 32;
/// Reads are issued in pieces of at most this size.
const CHUNK: u64 = 1 << 20;
/// Objects of one span closer than this are read together.
const COALESCE_GAP: u64 = 4096;
/// Bytes read from a special record (the header and the finalizer or
/// cleanup fields that follow it).
const SPECIAL_READ: usize = 64;

/// Where the scan finds things in the target (runtime addresses).
#[derive(Clone, Debug)]
pub(crate) struct ReachTarget {
    pub layout: RuntimeLayout,
    /// `runtime.allgs` slice header and `runtime.allglen`.
    pub allgs: u64,
    pub allglen: Option<u64>,
    /// `runtime.mheap_`, when it could be located (None: only goroutines
    /// that can never wake, on nil channels or `select {}`, are proven).
    pub mheap: Option<u64>,
    /// Data and bss ranges `[start, end)` of the binary: global roots,
    /// scanned conservatively when the moduledata's pointer masks cannot be
    /// read.
    pub globals: Vec<(u64, u64)>,
    /// `runtime.firstmoduledata`, whose `gcdatamask`/`gcbssmask` say which
    /// words of data and bss hold pointers (the precise global roots).
    pub moduledata: Option<u64>,
    /// `runtime.allp`, whose Ps' GC buffers (`wbBuf`, `gcw`) are not
    /// traced (None: every word of a P counts, conservatively).
    pub allp: Option<u64>,
    /// `runtime.allm`, whose Ms' own goroutines (`g0`, `gsignal`) are not in
    /// `allgs` (None: their `g.stack` words count, conservatively).
    pub allm: Option<u64>,
    /// Read-rate bound in bytes per second (0: none).
    pub max_bytes_per_s: u64,
    /// Record, per marked object, the word that first marked it, to report
    /// one retaining path per reachable goroutine (`LeakScan::retained_by`).
    pub explain: bool,
    /// `runtime.semtable`, where sync waiters sit before Go 1.26 (None: such
    /// waits are not proven before 1.26).
    pub semtable: Option<u64>,
    /// The binary's stack maps, to scan parked goroutines' stacks precisely
    /// (None: every stack word from SP up counts, conservatively).
    pub frames: Option<StackFrames>,
}

/// What must not change between two scans for a goroutine to count as not
/// having run: `trackingSeq` moves whenever it stops running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ParkSignature {
    pub raw_status: u32,
    pub wait_reason: u8,
    pub sched_pc: u64,
    pub tracking_seq: u8,
}

/// A goroutine this scan found unable to be woken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unreachable {
    pub goid: u64,
    pub signature: ParkSignature,
    /// Why: "channel unreachable", "nil channel", "mutex unreachable", ...
    pub reason: &'static str,
}

/// One reachability scan's findings and cost.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeakScan {
    /// CLOCK_MONOTONIC before the first read and after the last one.
    pub t_start_ns: u64,
    pub t_end_ns: u64,
    pub bytes_read: u64,
    pub objects_marked: u64,
    /// Stacks of goroutines that may run, scanned through their frames'
    /// pointer maps, and word by word (running, in a syscall, or a frame
    /// the maps do not describe).
    pub stacks_precise: u64,
    pub stacks_conservative: u64,
    /// In-use spans (0 when the heap was not read).
    pub spans: u64,
    /// Whether the heap was traced (false: only never-waking goroutines).
    pub heap_traced: bool,
    pub unreachable: Vec<Unreachable>,
    /// Goroutines blocked on a primitive this scan found reachable.
    pub reachable: Vec<u64>,
    /// With `ReachTarget::explain`: for reachable goroutines, what keeps
    /// their primitive reachable, root first, then the heap objects through
    /// which it is reached, the primitive's object (or address) last.
    /// Addresses only: names come later, from the symbolizer.
    pub retained_by: Vec<(u64, Vec<RetainStep>)>,
    /// Why the scan proved nothing, if it failed.
    pub error: Option<String>,
}

/// One link of a retaining path (`LeakScan::retained_by`), as runtime
/// addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RetainStep {
    /// A word of the binary's data or bss at `addr`.
    Global { addr: u64 },
    /// A word of goroutine `goid`'s stack, in the frame running `pc` (a
    /// return address unless it is the innermost frame); None when the
    /// frame is not known (no frame records).
    Stack { goid: u64, frame: Option<(u64, bool)> },
    /// A word of a runtime special record (finalizer, profiling record, ...)
    /// or of a finalized object.
    Special { addr: u64 },
    /// A heap object, its size, and the offset in it of the word pointing
    /// onwards (of the primitive, for the last step).
    Object { start: u64, size: u64, offset: u64 },
    /// The primitive is not in a heap object (a global's sema word, or
    /// memory off the heap): reachable by assumption, as the proof treats it.
    OffHeap { addr: u64 },
    /// A marked object whose marking word was not recorded, or a word in no
    /// known root range (should not happen: says so instead of guessing).
    Unknown { addr: u64 },
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("{0}")]
    Torn(String),
}

/// A goroutine as the proof sees it: one per goroutine, so kept compact
/// (80 bytes; 120 with a decoded status, an owned signature and a vector of
/// primitives).
struct G {
    goid: u64,
    stack: (u64, u64),
    sched_sp: u64,
    sched_pc: u64,
    sched_bp: u64,
    wait: Wait,
    raw_status: u32,
    wait_reason: u8,
    /// `g.trackingSeq`; None when this Go has none (then no signature: no
    /// proof across two scans).
    tracking_seq: Option<u8>,
    sched: SchedState,
}

const _: () = assert!(size_of::<G>() <= 80);

impl G {
    fn signature(&self) -> Option<ParkSignature> {
        let (raw_status, wait_reason, sched_pc) = (self.raw_status, self.wait_reason, self.sched_pc);
        self.tracking_seq.map(|tracking_seq| ParkSignature { raw_status, wait_reason, sched_pc, tracking_seq })
    }
}

/// Of a goroutine's status, what `scan_stack` needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SchedState {
    Running,
    Waiting,
    Runnable,
    Other,
}

impl From<GoroutineStatus> for SchedState {
    fn from(status: GoroutineStatus) -> Self {
        match status {
            GoroutineStatus::Running => Self::Running,
            GoroutineStatus::Waiting => Self::Waiting,
            GoroutineStatus::Runnable => Self::Runnable,
            _ => Self::Other,
        }
    }
}

/// The primitives a blocked goroutine waits on: one inline (a receive, a
/// send, a sync wait), only a `select`'s several boxed.
enum Primitives {
    One(u64),
    Many(Box<[u64]>),
}

impl Primitives {
    fn from_slice(primitives: &[u64]) -> Self {
        match primitives {
            &[one] => Self::One(one),
            many => Self::Many(many.into()),
        }
    }

    fn as_slice(&self) -> &[u64] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

enum Wait {
    /// May run: its stack is a root.
    MayRun,
    /// A runtime goroutine idle between rounds of GC work: never leaked, and
    /// its stack is no root (`goruntime::wait::is_runtime_idle`).
    RuntimeIdle,
    Never(&'static str),
    /// In `sync.Cond.Wait` with no sudog linked from `g.waiting` (before Go
    /// 1.26): its sudog, the primitive, is looked up in the heap
    /// (`sema::cond_sudogs`) before any root is scanned.
    CondWaiter {
        g: u64,
    },
    /// Blocked on these primitives (any one reachable wakes it); why it is
    /// leaked when none is comes from its wait reason (`leak_reason`).
    On(Primitives),
}

#[derive(Clone, Copy)]
struct Span {
    start: u64,
    /// End of the last object (`start + nelems * elemsize`).
    end: u64,
    elemsize: u64,
    noscan: bool,
}

struct Heap {
    spans: Vec<Span>,
    marks: Vec<Vec<u64>>,
    /// Per span, its free slots as read (bit `i`: object `i` is free), None
    /// when it has none or they could not be read (all count as allocated).
    free: Vec<Option<Box<[u64]>>>,
    /// Per span, the address of its `mspan` (to read its free slots again).
    span_addrs: Vec<u64>,
    /// Words that pointed into a slot that was free when its span was read,
    /// as (span, object, word's address): the slot may have been allocated
    /// since, so its span is read again before they are dropped.
    free_hits: Vec<(u32, u64, u64)>,
    /// Words never traced (`g.stack`, sudog `c` and `elem`, P buffers,
    /// runtime structs' slack).
    masked: Masked,
    /// Objects marked and not yet scanned, as (span, object): an object's
    /// index fits in 32 bits (`read_spans` bounds a span's objects).
    work: Vec<(u32, u32)>,
    objects_marked: u64,
    /// Stacks scanned through their frames' pointer maps, and word by word.
    stacks_precise: u64,
    stacks_conservative: u64,
    /// With `ReachTarget::explain`: per marked object's start, the address
    /// of the word that first marked it.
    marked_from: Option<HashMap<u64, u64>>,
    /// With `ReachTarget::explain`: what each scanned root range is.
    roots: Vec<Root>,
    /// Where a span's free slots are read (None: every slot counts as
    /// allocated).
    alloc_layout: Option<SpanAllocLayout>,
}

/// The words of the target never traced, as Go's GC never traces them:
/// some fields of the runtime structs read (`g.stack.lo`/`hi` of every g,
/// `c` and `elem` of the sudogs of blocked goroutines) and the slack of
/// their heap objects past the struct, and the GC buffers of the Ps.
///
/// The structs are kept as their sorted addresses and their fields found
/// from the layout's offsets, not word by word: 100k goroutines parked on
/// channels made a hash set of about a million words (14 MiB).
struct Masked {
    /// Sorted and merged ranges `[start, end)` (the Ps' GC buffers).
    ranges: Vec<(u64, u64)>,
    /// Runtime structs read, each as its address with its kind in the low
    /// bits (`StructKind`); sorted and deduplicated by `seal`.
    structs: Vec<u64>,
    g: StructShape,
    sudog: StructShape,
    /// No struct's heap object reaches further than this from its address.
    extent: u64,
}

/// A runtime struct's kind, in the low bits of its (8-aligned) address.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
enum StructKind {
    G = 0,
    Sudog = 1,
}

/// A runtime struct's size and the offsets of its words never traced.
struct StructShape {
    size: u64,
    masked: [Option<u64>; 4],
}

impl StructShape {
    /// Its heap object's size at most: the struct's size class, and Go's
    /// size classes include every power of two up to 32 KiB (a larger
    /// object's span ends within a page of it).
    fn extent(&self) -> u64 {
        match self.size.next_power_of_two() {
            n if n <= 32 << 10 => n,
            _ => self.size + PAGE_SIZE,
        }
    }
}

impl Masked {
    fn new(l: &RuntimeLayout, reach: Option<&ReachLayout>) -> Self {
        // `g.stack` holds uintptrs Go's GC never traces, and `stack.hi` is
        // one past the stack's end: often the first object of the next span,
        // which a conservative read would keep alive (a primitive there
        // looked reachable from every g in `allgs`).
        let g = StructShape { size: l.g_size, masked: [Some(l.g_stack_lo), Some(l.g_stack_hi), None, None] };
        let sudog = match reach {
            Some(reach) => StructShape { size: reach.sudog_size, masked: sema::sudog_masked_words(reach) },
            None => StructShape { size: 0, masked: [None; 4] },
        };
        let extent = g.extent().max(sudog.extent());
        Self { ranges: Vec::new(), structs: Vec::new(), g, sudog, extent }
    }

    /// Notes a runtime struct read at `addr`. One at an address that is not
    /// 8-aligned (a torn read: Go allocates none such) masks nothing, which
    /// errs towards reachable.
    fn add_struct(&mut self, addr: u64, kind: StructKind) {
        if addr.is_multiple_of(8) {
            self.structs.push(addr | kind as u64);
        }
    }

    /// Sorts what was added, before the first lookup.
    fn seal(&mut self) {
        self.structs.sort_unstable();
        self.structs.dedup();
        self.structs.shrink_to_fit();
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(start, end) in &self.ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.ranges = merged;
    }
}

/// A root range, for retaining paths.
struct Root {
    start: u64,
    end: u64,
    what: RootKind,
}

enum RootKind {
    Global,
    Special,
    /// A goroutine's stack: its goid and frames as (frame pointer, pc),
    /// innermost first.
    Stack(u64, Vec<(u64, u64)>),
}

impl Heap {
    /// The span and object index holding `addr`.
    fn find(&self, addr: u64) -> Option<(usize, u64)> {
        let i = self.spans.partition_point(|s| s.start <= addr).checked_sub(1)?;
        let s = &self.spans[i];
        (addr < s.end).then(|| (i, (addr - s.start) / s.elemsize))
    }

    /// Whether the object holding `addr` is marked; None when `addr` is not
    /// in an allocated heap object (a free slot holding a primitive can
    /// only be a torn read: it proves nothing).
    fn is_marked(&self, addr: u64) -> Option<bool> {
        let (i, obj) = self.find(addr)?;
        if self.is_free(i, obj) {
            return None;
        }
        Some(self.marks[i].get((obj / 64) as usize).is_some_and(|w| w & (1 << (obj % 64)) != 0))
    }

    /// Marks the object containing `addr` (if any), queueing it for a scan
    /// unless noscan.
    fn mark(&mut self, addr: u64, from: u64) {
        let Some((i, obj)) = self.find(addr) else { return };
        if self.is_free(i, obj) {
            // Go never marks nor scans a free slot: what it holds is stale
            // (`scanConservative` skips them too). It may have been
            // allocated since its span was read: see `recheck_free_hits`.
            self.free_hits.push((i as u32, obj, from));
            return;
        }
        let s = self.spans[i];
        let bits = &mut self.marks[i];
        if bits.is_empty() {
            let nelems = (s.end - s.start) / s.elemsize;
            bits.resize(nelems.div_ceil(64) as usize, 0);
        }
        let (w, b) = ((obj / 64) as usize, obj % 64);
        if bits[w] & (1 << b) != 0 {
            return;
        }
        bits[w] |= 1 << b;
        self.objects_marked += 1;
        if let Some(marked_from) = &mut self.marked_from {
            marked_from.insert(s.start + obj * s.elemsize, from);
        }
        if !s.noscan {
            self.work.push((i as u32, obj as u32));
        }
    }

    /// Marks every object a word of `buf` (read at `addr`) points into.
    fn mark_words(&mut self, addr: u64, buf: &[u8]) {
        let skip = (addr.wrapping_neg() % 8) as usize;
        for (k, word) in buf.get(skip..).unwrap_or(&[]).chunks_exact(8).enumerate() {
            let value = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
            if value < 4096 || self.find(value).is_none() {
                continue;
            }
            let location = addr + skip as u64 + 8 * k as u64;
            if !self.is_masked(location) {
                self.mark(value, location);
            }
        }
    }
}

impl Heap {
    /// Whether the word at `location` is never traced (`Masked`).
    fn is_masked(&self, location: u64) -> bool {
        let m = &self.masked;
        let k = m.ranges.partition_point(|r| r.0 <= location);
        if k > 0 && location < m.ranges[k - 1].1 {
            return true;
        }
        // The structs whose heap objects can hold `location`: those at most
        // `extent` below it (one, unless a smaller object lies in between).
        let end = m.structs.partition_point(|&s| s & !7 <= location);
        for &s in m.structs[..end].iter().rev() {
            let (addr, kind) = (s & !7, s & 7);
            let offset = location - addr;
            if offset >= m.extent {
                break;
            }
            let shape = if kind == StructKind::Sudog as u64 { &m.sudog } else { &m.g };
            if offset < shape.size {
                if shape.masked.contains(&Some(offset)) {
                    return true;
                }
                continue;
            }
            // A g's or sudog's heap object is larger than the struct when
            // its size class is: the slack past the struct may hold stale
            // words Go's GC never reads (a 456-byte g of Go 1.27 in a
            // 480-byte object, a 104-byte sudog in a 112-byte one, kept
            // other goroutines' primitives alive).
            let tail = (addr + shape.size).next_multiple_of(8);
            if location >= tail
                && let Some((i, obj)) = self.find(addr)
                && location < self.spans[i].start + (obj + 1) * self.spans[i].elemsize
            {
                return true;
            }
        }
        false
    }

    /// Whether object `obj` of span `i` was free when the span was read.
    fn is_free(&self, i: usize, obj: u64) -> bool {
        self.free[i]
            .as_ref()
            .is_some_and(|bits| bits.get((obj / 64) as usize).is_some_and(|w| w & (1 << (obj % 64)) != 0))
    }

    fn note_root(&mut self, start: u64, end: u64, what: impl FnOnce() -> RootKind) {
        if self.marked_from.is_some() {
            self.roots.push(Root { start, end, what: what() });
        }
    }

    /// One chain of words from a root to the marked object holding `addr`
    /// (`LeakScan::retained_by`), root first.
    fn retaining_path(&self, addr: u64) -> Vec<RetainStep> {
        let Some(marked_from) = &self.marked_from else { return Vec::new() };
        let object = |addr: u64| {
            self.find(addr).map(|(i, obj)| (self.spans[i].start + obj * self.spans[i].elemsize, self.spans[i].elemsize))
        };
        let Some((start, size)) = object(addr) else {
            return vec![RetainStep::OffHeap { addr }];
        };
        let mut path = vec![RetainStep::Object { start, size, offset: addr - start }];
        let mut current = start;
        let mut seen = HashSet::default();
        while seen.insert(current) {
            let Some(&from) = marked_from.get(&current) else {
                path.push(RetainStep::Unknown { addr: current });
                break;
            };
            if let Some((start, size)) = object(from) {
                path.push(RetainStep::Object { start, size, offset: from - start });
                current = start;
                continue;
            }
            path.push(match self.roots.iter().find(|r| (r.start..r.end).contains(&from)) {
                Some(Root { what: RootKind::Global, .. }) => RetainStep::Global { addr: from },
                Some(Root { what: RootKind::Special, .. }) => RetainStep::Special { addr: from },
                Some(Root { what: RootKind::Stack(goid, frames), .. }) => {
                    // The word belongs to the innermost frame whose record
                    // lies above it; only the innermost frame's pc is not a
                    // return address.
                    let frame = frames.iter().position(|&(fp, _)| fp >= from).map(|k| (frames[k].1, k > 0));
                    RetainStep::Stack { goid: *goid, frame }
                }
                None => RetainStep::Unknown { addr: from },
            });
            break;
        }
        path.reverse();
        path
    }
}

/// A stopped goroutine's frame records as (frame pointer, pc of the frame's
/// function), innermost first, for retaining paths.
fn frame_records<M: ReadMemory>(mem: &M, g: &G) -> Vec<(u64, u64)> {
    let (lo, hi) = g.stack;
    let mut frames = Vec::new();
    let (mut fp, mut pc) = (g.sched_bp, g.sched_pc);
    while frames.len() < 1024 && fp >= lo && fp.saturating_add(16) <= hi && pc != 0 {
        frames.push((fp, pc));
        let Ok(record) = mem.read_vec(fp, 16) else { break };
        let (next_fp, ret) = (field_u64(&record, 0).unwrap_or(0), field_u64(&record, 8).unwrap_or(0));
        if next_fp <= fp {
            break;
        }
        (fp, pc) = (next_fp, ret);
    }
    frames
}

/// Reads and bounds the read rate.
struct Reader<'m, M: ReadMemory> {
    mem: &'m M,
    started: Instant,
    bytes: u64,
    max_bytes_per_s: u64,
}

impl<M: ReadMemory> Reader<'_, M> {
    fn read(&mut self, addr: u64, len: u64) -> Result<Vec<u8>, ScanError> {
        let len = usize::try_from(len).map_err(|_| ScanError::Torn(format!("read of {len} bytes")))?;
        let buf = self.mem.read_vec(addr, len)?;
        self.bytes += len as u64;
        if self.max_bytes_per_s > 0 {
            let due = Duration::from_secs_f64(self.bytes as f64 / self.max_bytes_per_s as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        Ok(buf)
    }

    /// Marks through `[start, end)`, read in chunks.
    fn scan_range(&mut self, heap: &mut Heap, start: u64, end: u64) -> Result<(), ScanError> {
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK);
            let buf = self.read(at, len)?;
            heap.mark_words(at, &buf);
            at += len;
        }
        Ok(())
    }

    /// Marks through the words of `[start, end)` whose bit is set in
    /// `mask` (bit `i`: the word at `start + 8 * i`), read in chunks.
    fn scan_masked(&mut self, heap: &mut Heap, start: u64, end: u64, mask: &[u8]) -> Result<(), ScanError> {
        let mut at = start;
        while at < end {
            let len = (end - at).min(CHUNK);
            let buf = self.read(at, len)?;
            for (k, word) in buf.chunks_exact(8).enumerate() {
                let i = ((at - start) / 8) as usize + k;
                if mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0) {
                    heap.mark_words(at + 8 * k as u64, word);
                }
            }
            at += len;
        }
        Ok(())
    }

    /// Scans queued objects until none is left, reading neighbours of one
    /// span together.
    fn drain(&mut self, heap: &mut Heap) -> Result<(), ScanError> {
        loop {
            if heap.work.is_empty() {
                self.recheck_free_hits(heap)?;
                if heap.work.is_empty() {
                    return Ok(());
                }
            }
            let mut batch = std::mem::take(&mut heap.work);
            batch.sort_unstable();
            let mut k = 0;
            while k < batch.len() {
                let (si, first) = (batch[k].0, u64::from(batch[k].1));
                let s = heap.spans[si as usize];
                let index = |j: usize| u64::from(batch[j].1);
                let mut last = k;
                while last + 1 < batch.len()
                    && batch[last + 1].0 == si
                    && (index(last + 1) - index(last) - 1) * s.elemsize <= COALESCE_GAP
                    && (index(last + 1) - first + 1) * s.elemsize <= CHUNK
                {
                    last += 1;
                }
                let run_start = s.start + first * s.elemsize;
                if last == k && s.elemsize > CHUNK {
                    // A large object: stream it.
                    self.scan_range(heap, run_start, run_start + s.elemsize)?;
                } else {
                    let run_end = s.start + (index(last) + 1) * s.elemsize;
                    let buf = self.read(run_start, run_end - run_start)?;
                    for obj in (k..=last).map(index) {
                        let off = ((obj - first) * s.elemsize) as usize;
                        let bytes = &buf[off..off + s.elemsize as usize];
                        heap.mark_words(s.start + obj * s.elemsize, bytes);
                    }
                }
                k = last + 1;
            }
        }
    }

    /// The target allocates while it is scanned: a word read during the
    /// scan that points into a slot free when its span was read may point
    /// to an object allocated since. The spans of such slots are read again;
    /// slots allocated by now are marked (and scanned), the others dropped
    /// (a pointer to a slot that is still free is stale).
    fn recheck_free_hits(&mut self, heap: &mut Heap) -> Result<(), ScanError> {
        let Some(layout) = heap.alloc_layout.filter(|_| !heap.free_hits.is_empty()) else {
            heap.free_hits.clear();
            return Ok(());
        };
        let mut hits = std::mem::take(&mut heap.free_hits);
        hits.sort_unstable();
        hits.dedup_by_key(|h| (h.0, h.1));
        let mut last_span = None;
        for (i, obj, from) in hits {
            let i = i as usize;
            if last_span != Some(i) {
                last_span = Some(i);
                let s = heap.spans[i];
                heap.free[i] = match read_span_alloc(self, &layout, heap.span_addrs[i])? {
                    Some((start, nelems, free)) if start == s.start && nelems == (s.end - s.start) / s.elemsize => free,
                    _ => None, // the span changed: count every slot as allocated
                };
            }
            if !heap.is_free(i, obj) {
                let s = heap.spans[i];
                heap.mark(s.start + obj * s.elemsize, from);
            }
        }
        heap.free_hits.clear();
        Ok(())
    }
}

/// Runs one scan. Never fails: a failure is reported in `LeakScan::error`
/// with no goroutine proven.
pub(crate) fn scan<M: ReadMemory>(mem: &M, target: &ReachTarget) -> LeakScan {
    let t_start_ns = monotonic_ns();
    let mut reader = Reader { mem, started: Instant::now(), bytes: 0, max_bytes_per_s: target.max_bytes_per_s };
    let mut result = match run(&mut reader, target) {
        Ok(scan) => scan,
        Err(e) => LeakScan { error: Some(e.to_string()), ..LeakScan::default() },
    };
    result.t_start_ns = t_start_ns;
    result.t_end_ns = monotonic_ns();
    result.bytes_read = reader.bytes;
    result
}

fn run<M: ReadMemory>(reader: &mut Reader<'_, M>, target: &ReachTarget) -> Result<LeakScan, ScanError> {
    let l = &target.layout;
    let reach = l.reach.as_ref();
    let (mut goroutines, mut masked) = read_goroutines(reader, target, reach)?;
    let (Some(reach), Some(mheap)) = (reach, target.mheap) else {
        // No heap: only goroutines that nothing can ever wake.
        let unreachable = goroutines
            .iter()
            .filter_map(|g| match g.wait {
                Wait::Never(reason) => Some(Unreachable { goid: g.goid, signature: g.signature()?, reason }),
                _ => None,
            })
            .collect();
        return Ok(LeakScan { unreachable, ..LeakScan::default() });
    };
    if let Some(allp) = target.allp {
        mask_gc_buffers(reader, reach, allp, &mut masked)?;
    }
    if let Some(allm) = target.allm {
        mask_m_goroutines(reader, reach, allm, &mut masked)?;
    }
    masked.seal();
    let spans = read_spans(reader, reach, mheap)?;
    let n_spans = spans.len() as u64;
    let specials = spans.iter().filter(|r| r.specials != 0).map(|r| (r.span.start, r.specials)).collect::<Vec<_>>();
    let span_addrs = spans.iter().map(|r| r.mspan).collect();
    let mut free = Vec::with_capacity(spans.len());
    let mut heap_spans = Vec::with_capacity(spans.len());
    for r in spans {
        heap_spans.push(r.span);
        free.push(r.free);
    }
    let mut heap = Heap {
        marks: vec![Vec::new(); heap_spans.len()],
        spans: heap_spans,
        free,
        span_addrs,
        free_hits: Vec::new(),
        alloc_layout: SpanAllocLayout::new(reach),
        masked,
        work: Vec::new(),
        objects_marked: 0,
        stacks_precise: 0,
        stacks_conservative: 0,
        marked_from: target.explain.then(HashMap::default),
        roots: Vec::new(),
    };
    resolve_cond_waiters(reader, &heap, reach, target.frames.as_ref(), &mut goroutines)?;

    // Roots: globals, specials, stacks of goroutines that may run.
    match precise_globals(reader, reach, target)? {
        Some(ranges) => {
            for (start, end, mask) in ranges {
                heap.note_root(start, end, || RootKind::Global);
                reader.scan_masked(&mut heap, start, end, &mask)?;
            }
        }
        None => {
            for &(start, end) in &target.globals {
                heap.note_root(start, end, || RootKind::Global);
                reader.scan_range(&mut heap, start, end)?;
            }
        }
    }
    for (span_start, mut special) in specials {
        let mut n = 0;
        while special != 0 {
            n += 1;
            if n > MAX_SPECIALS {
                return Err(ScanError::Torn("special list too long".into()));
            }
            let record = reader.read(special, SPECIAL_READ as u64).or_else(|_| {
                reader.read(special, reach.special_kind + 1) // a record at the end of its mapping
            })?;
            let offset = match reach.special_kind.saturating_sub(reach.special_offset) {
                2 => u64::from(u16::from_le_bytes([
                    record[reach.special_offset as usize],
                    record[reach.special_offset as usize + 1],
                ])),
                _ => field_u64(&record, reach.special_offset).unwrap_or(0),
            };
            let object = span_start.saturating_add(offset);
            let kind = field_u8(&record, reach.special_kind).map(i64::from);
            match special_root(reach, kind) {
                SpecialRoot::Unknown => {
                    heap.mark(object, special);
                    heap.note_root(special, special + SPECIAL_READ as u64, || RootKind::Special);
                    heap.mark_words(special, &record);
                }
                SpecialRoot::Finalizer => {
                    // Go scans the finalized object without marking it, and
                    // the finalizer's function is a root.
                    heap.note_root(special, special + SPECIAL_READ as u64, || RootKind::Special);
                    heap.mark_words(special, &record);
                    if let Some((i, obj)) = heap.find(object) {
                        let s = heap.spans[i];
                        if !s.noscan {
                            let start = s.start + obj * s.elemsize;
                            heap.note_root(start, start + s.elemsize, || RootKind::Special);
                            reader.scan_range(&mut heap, start, start + s.elemsize)?;
                        }
                    }
                }
                SpecialRoot::Record => {
                    heap.note_root(special, special + SPECIAL_READ as u64, || RootKind::Special);
                    heap.mark_words(special, &record);
                }
                SpecialRoot::No => {}
            }
            special = field_u64(&record, reach.special_next).unwrap_or(0);
        }
    }
    for g in goroutines.iter().filter(|g| matches!(g.wait, Wait::MayRun)) {
        scan_stack(reader, &mut heap, target.frames.as_ref(), g)?;
    }
    reader.drain(&mut heap)?;

    // Fixed point: a blocked goroutine whose primitive is marked (or not a
    // heap object) may be woken, so its stack is a root too.
    let mut reachable = Vec::new();
    let mut retained_by = Vec::new();
    loop {
        let mut woke = false;
        for g in goroutines.iter_mut() {
            let Wait::On(primitives) = &g.wait else { continue };
            if let Some(&reached) = primitives.as_slice().iter().find(|&&p| heap.is_marked(p) != Some(false)) {
                if heap.marked_from.is_some() {
                    retained_by.push((g.goid, heap.retaining_path(reached)));
                }
                g.wait = Wait::MayRun;
                reachable.push(g.goid);
                scan_stack(reader, &mut heap, target.frames.as_ref(), g)?;
                woke = true;
            }
        }
        if !woke {
            break;
        }
        reader.drain(&mut heap)?;
    }
    let unreachable = goroutines
        .iter()
        .filter_map(|g| {
            let reason = match g.wait {
                Wait::Never(reason) => reason,
                Wait::On(_) => leak_reason(l.wait_reasons.string(g.wait_reason).unwrap_or("")),
                Wait::MayRun | Wait::RuntimeIdle | Wait::CondWaiter { .. } => return None,
            };
            Some(Unreachable { goid: g.goid, signature: g.signature()?, reason })
        })
        .collect();
    Ok(LeakScan {
        objects_marked: heap.objects_marked,
        stacks_precise: heap.stacks_precise,
        stacks_conservative: heap.stacks_conservative,
        spans: n_spans,
        heap_traced: true,
        unreachable,
        reachable,
        retained_by,
        ..LeakScan::default()
    })
}

/// Masks the write-barrier buffer and GC work buffer of every P. They keep
/// pointers as integers, stale ones among them (a `wbBuf` holds the last
/// pointers stored anywhere, say a channel's address long after the only
/// goroutine that knew it exited); Go's GC never traces them, so neither
/// does the proof. Nor the page cache (`p.pcache`), whose `base` is a
/// uintptr to a heap chunk: the address of the chunk's first object; nor
/// the vector registers asynchronous preemption saves (`p.xRegs`, Go 1.26+).
fn mask_gc_buffers<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    allp: u64,
    masked: &mut Masked,
) -> Result<(), ScanError> {
    let header = reader.read(allp, 16)?;
    let (ptr, len) = (field_u64(&header, 0).unwrap_or(0), field_u64(&header, 8).unwrap_or(0));
    if len > MAX_PROCS {
        return Err(ScanError::Torn(format!("{len} Ps")));
    }
    if ptr == 0 || len == 0 {
        return Ok(());
    }
    let ps = reader.read(ptr, len * 8)?;
    for p in ps.chunks_exact(8).filter_map(|c| field_u64(c, 0)).filter(|&p| p != 0) {
        let buffers = [
            Some((reach.p_wbbuf, reach.wbbuf_size)),
            Some((reach.p_gcw, reach.gcwork_size)),
            Some((reach.p_pcache, reach.pagecache_size)),
            reach.p_xregs.map(|offset| (offset, reach.xregperp_size)),
        ];
        for (offset, size) in buffers.into_iter().flatten() {
            let start = p.wrapping_add(offset).next_multiple_of(8);
            masked.ranges.push((start, p.wrapping_add(offset + size).max(start)));
        }
    }
    Ok(())
}

/// Masks the `g.stack` words of every M's `g0` and `gsignal`, as
/// `read_goroutines` does for the goroutines of `allgs`: uintptrs to Go's GC,
/// and `stack.hi` is one past the stack, often the next span's first object.
fn mask_m_goroutines<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    allm: u64,
    masked: &mut Masked,
) -> Result<(), ScanError> {
    let mut m = reader.read(allm, 8).map(|b| field_u64(&b, 0).unwrap_or(0))?;
    let len = [reach.m_g0, reach.m_gsignal, reach.m_alllink].into_iter().max().unwrap_or(0) + 8;
    let mut n = 0;
    while m != 0 {
        n += 1;
        if n > MAX_PROCS {
            return Err(ScanError::Torn("allm list too long".into()));
        }
        let record = reader.read(m, len)?;
        for g in [reach.m_g0, reach.m_gsignal].into_iter().filter_map(|off| field_u64(&record, off)) {
            if g != 0 {
                masked.add_struct(g, StructKind::G);
            }
        }
        m = field_u64(&record, reach.m_alllink).unwrap_or(0);
    }
    Ok(())
}

/// The data and bss of the binary with their pointer masks, from
/// `runtime.firstmoduledata` (`gcdatamask`, `gcbssmask`: built by the
/// runtime at start-up, one bit per word). None when they cannot be read or
/// look wrong: the caller then scans the globals conservatively.
#[allow(clippy::type_complexity)]
fn precise_globals<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    target: &ReachTarget,
) -> Result<Option<Vec<(u64, u64, Vec<u8>)>>, ScanError> {
    let Some(md) = target.moduledata else { return Ok(None) };
    let len = [reach.moduledata_gcdatamask, reach.moduledata_gcbssmask].into_iter().max().unwrap_or(0) + 16;
    let Ok(record) = reader.read(md, len) else { return Ok(None) };
    let mut ranges = Vec::new();
    for (start, end, mask) in [
        (reach.moduledata_data, reach.moduledata_edata, reach.moduledata_gcdatamask),
        (reach.moduledata_bss, reach.moduledata_ebss, reach.moduledata_gcbssmask),
    ] {
        let (Some(start), Some(end)) = (field_u64(&record, start), field_u64(&record, end)) else { return Ok(None) };
        let bits = field_u32(&record, mask).map_or(0, u64::from);
        let bytedata = field_u64(&record, mask + 8).unwrap_or(0);
        // The range must be one the binary declares, and the mask must cover
        // it word for word (progToPointerMask(gcdata, end - start)).
        let declared = target.globals.iter().any(|&(s, e)| s <= start && start < e) || start == end;
        if end < start || end - start > MAX_GLOBALS || bits != (end - start) / 8 || !declared {
            return Ok(None);
        }
        if start == end {
            continue;
        }
        if bytedata == 0 {
            return Ok(None);
        }
        let Ok(mask) = reader.read(bytedata, bits.div_ceil(8)) else { return Ok(None) };
        ranges.push((start, end, mask));
    }
    Ok(Some(ranges))
}

/// The stack of a goroutine that may run: from its saved SP (the whole stack
/// when it is running: its SP is in a register).
fn scan_stack<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    heap: &mut Heap,
    frames: Option<&StackFrames>,
    g: &G,
) -> Result<(), ScanError> {
    let (lo, hi) = g.stack;
    if lo == 0 || hi <= lo {
        return Ok(()); // no stack (a g being created or torn down)
    }
    if hi - lo > MAX_STACK {
        return Err(ScanError::Torn(format!("goroutine {}: stack of {} bytes", g.goid, hi - lo)));
    }
    let from = if g.sched != SchedState::Running && (lo..hi).contains(&g.sched_sp) { g.sched_sp } else { lo };
    if heap.marked_from.is_some() {
        let frames = frame_records(reader.mem, g);
        heap.note_root(from, hi, || RootKind::Stack(g.goid, frames));
    }
    // Parked by the scheduler, its saved PC and SP start a walk the stack
    // maps describe. Not when it runs or is in a syscall (its registers
    // are elsewhere), nor a runnable one on arm64 (preempted in a
    // prologue, its return address is in `sched.lr`).
    let parked = match g.sched {
        SchedState::Waiting => true,
        SchedState::Runnable => frames.is_some_and(|f| !f.uses_lr),
        SchedState::Running | SchedState::Other => false,
    };
    if let Some(frames) = frames.filter(|_| parked && from == g.sched_sp && g.sched_pc != 0) {
        let stack = reader.read(from, hi - from)?;
        match frames.live_pointer_words(&stack, from, g.sched_pc) {
            Ok(mask) => {
                for (i, word) in stack.chunks_exact(8).enumerate() {
                    if mask[i / 8] & (1 << (i % 8)) != 0 {
                        heap.mark_words(from + 8 * i as u64, word);
                    }
                }
                heap.stacks_precise += 1;
            }
            Err(why) => {
                log::trace!("goroutine {}: stack scanned conservatively: {why}", g.goid);
                heap.mark_words(from, &stack);
                heap.stacks_conservative += 1;
            }
        }
        return Ok(());
    }
    heap.stacks_conservative += 1;
    reader.scan_range(heap, from, hi)
}

/// Every live goroutine, classified, and the runtime structs whose fields
/// are never traced: every g in `allgs` (dead ones too) and the sudogs read.
fn read_goroutines<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    target: &ReachTarget,
    reach: Option<&ReachLayout>,
) -> Result<(Vec<G>, Masked), ScanError> {
    let l = &target.layout;
    let header = reader.read(target.allgs, 16)?;
    let ptr = field_u64(&header, 0).unwrap_or(0);
    let mut len = field_u64(&header, 8).unwrap_or(0);
    if let Some(allglen) = target.allglen {
        len = len.min(reader.read(allglen, 8).map(|b| field_u64(&b, 0).unwrap_or(0))?);
    }
    if len > MAX_GOROUTINES {
        return Err(ScanError::Torn(format!("allglen {len}")));
    }
    let mut masked = Masked::new(l, reach);
    if ptr == 0 || len == 0 {
        return Ok((Vec::new(), masked));
    }
    let addrs = reader.read(ptr, len * 8)?;
    let mut goroutines = Vec::with_capacity(len as usize);
    masked.structs.reserve(len as usize);
    // Sync waiters not linked from g.waiting (before Go 1.26) are found in
    // the semaphore table; a table that cannot be read proves none of them.
    let sema_waiters = match (reach, target.semtable) {
        (Some(reach), Some(semtable)) => {
            sema::semtable_waiters(reader, reach, semtable, &mut masked).unwrap_or_default()
        }
        _ => Default::default(),
    };
    for g_addr in addrs.chunks_exact(8).filter_map(|c| field_u64(c, 0)).filter(|&a| a != 0) {
        let g = reader.read(g_addr, l.g_size)?;
        let raw_status = field_u32(&g, l.g_atomicstatus).unwrap_or(u32::MAX);
        let status = l.g_statuses.decode(raw_status);
        masked.add_struct(g_addr, StructKind::G);
        if !status.is_live() {
            continue;
        }
        let goid = field_u64(&g, l.g_goid).unwrap_or(0);
        let wait_reason = field_u8(&g, l.g_waitreason).unwrap_or(0);
        let sched_sp = field_u64(&g, l.g_sched + l.gobuf_sp).unwrap_or(0);
        let sched_pc = field_u64(&g, l.g_sched + l.gobuf_pc).unwrap_or(0);
        let sched_bp = field_u64(&g, l.g_sched + l.gobuf_bp).unwrap_or(0);
        let tracking_seq = l.g_tracking_seq.and_then(|off| field_u8(&g, off));
        let stack = (field_u64(&g, l.g_stack_lo).unwrap_or(0), field_u64(&g, l.g_stack_hi).unwrap_or(0));
        let reason = l.wait_reasons.string(wait_reason).unwrap_or("");
        let parked = status.is_parked() && goid != MAIN_GOID;
        let wait = match (parked, primitive_wait(reason)) {
            (true, PrimitiveWait::NeverWakes(why)) => Wait::Never(why),
            (true, kind @ (PrimitiveWait::Channel | PrimitiveWait::Sync | PrimitiveWait::Semaphore)) => match reach {
                Some(reach) => {
                    let head = field_u64(&g, reach.g_waiting).unwrap_or(0);
                    match sudog_wait(reader, reach, head, kind, &mut masked)? {
                        Wait::MayRun if kind != PrimitiveWait::Channel => match sema_waiters.get(&g_addr) {
                            Some(&sema) => Wait::On(Primitives::One(sema)),
                            None if reason == "sync.Cond.Wait" && head == 0 => Wait::CondWaiter { g: g_addr },
                            None => Wait::MayRun,
                        },
                        wait => wait,
                    }
                }
                None => Wait::MayRun,
            },
            (true, _) if is_runtime_idle(reason) => Wait::RuntimeIdle,
            _ => Wait::MayRun,
        };
        let sched = SchedState::from(status);
        goroutines.push(G {
            goid,
            stack,
            sched_sp,
            sched_pc,
            sched_bp,
            wait,
            raw_status,
            wait_reason,
            tracking_seq,
            sched,
        });
    }
    // Dead gs have none: at most a few thousand entries spare.
    goroutines.shrink_to_fit();
    Ok((goroutines, masked))
}

/// Gives every `Wait::CondWaiter` its candidate sudogs as primitives (none
/// found: it may run).
fn resolve_cond_waiters<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    heap: &Heap,
    reach: &ReachLayout,
    frames: Option<&StackFrames>,
    goroutines: &mut [G],
) -> Result<(), ScanError> {
    let waiters: HashSet<u64> = goroutines
        .iter()
        .filter_map(|g| match g.wait {
            Wait::CondWaiter { g } => Some(g),
            _ => None,
        })
        .collect();
    let mut sudogs = sema::cond_sudogs(reader, heap, reach, &waiters)?;
    for g in goroutines.iter_mut() {
        if let Wait::CondWaiter { g: addr } = g.wait {
            g.wait = match sudogs.remove(&addr) {
                Some(candidates) => {
                    Wait::On(Primitives::from_slice(&sudogs_on_own_stack(reader, frames, g, candidates)))
                }
                None => Wait::MayRun,
            };
        }
    }
    Ok(())
}

/// Of the candidate sudogs naming a Cond waiter, those its own stack points
/// to; all of them when none does or the stack cannot be read.
///
/// A released sudog keeps the `g` of the goroutine that last used it (before
/// Go 1.26 nothing clears `sudog.g`: `releaseSudog` does not, and a channel
/// wake-up only clears `elem` and `c`), so a waiter that blocked once on a
/// channel before `Cond.Wait` (`ids <- goid` in the leak fixture) has a stale
/// look-alike in the P's or the central sudog cache, both reachable. Counted
/// as a primitive, that stale sudog made the waiter reachable, its stack a
/// root, and so its Cond and every other waiter on it (seen as Go 1.21's 7
/// Cond waiters all "stuck" in CI). The live sudog is `notifyListWait`'s
/// local `s`, kept on the waiter's stack across the park for the
/// `releaseSudog(s)` after it; a stale one is there only by a dead slot's
/// chance, which errs towards reachable.
fn sudogs_on_own_stack<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    frames: Option<&StackFrames>,
    g: &G,
    candidates: Vec<u64>,
) -> Vec<u64> {
    if candidates.len() < 2 {
        return candidates;
    }
    let (lo, hi) = g.stack;
    if !(lo..hi).contains(&g.sched_sp) || hi - g.sched_sp > MAX_STACK {
        return candidates;
    }
    let Ok(words) = reader.read(g.sched_sp, hi - g.sched_sp) else { return candidates };
    // Only its live slots when the stack maps say which: a dead slot of
    // the `select` it parked in before still names a sudog now cached
    // (seen on Go 1.19, 3 runs in 8).
    let live = frames.and_then(|f| f.live_pointer_words(&words, g.sched_sp, g.sched_pc).ok());
    let is_live = |i: usize| live.as_ref().is_none_or(|m| m[i / 8] & (1 << (i % 8)) != 0);
    let on_stack: Vec<u64> = candidates
        .iter()
        .copied()
        .filter(|&sg| words.chunks_exact(8).enumerate().any(|(i, w)| is_live(i) && field_u64(w, 0) == Some(sg)))
        .collect();
    if on_stack.is_empty() { candidates } else { on_stack }
}

/// The primitives a goroutine waits on, from its sudogs; the sudogs go to
/// `masked` (their `c` and `elem` words and their objects' slack).
fn sudog_wait<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    head: u64,
    kind: PrimitiveWait,
    masked: &mut Masked,
) -> Result<Wait, ScanError> {
    let mut primitives: SmallVec<[u64; 2]> = SmallVec::new();
    let mut sg = head;
    while sg != 0 {
        if primitives.len() >= MAX_SUDOGS {
            return Ok(Wait::MayRun);
        }
        // A sudog released while we read (the goroutine woke): may run.
        let Ok(record) = reader.read(sg, reach.sudog_size) else { return Ok(Wait::MayRun) };
        // Since Go 1.26 `c` and `elem` are `maybeTraceablePtr`s: the pointer
        // (`vp`, hidden from the GC during its leak check) then the same
        // address as a uintptr (`vu`). Both words are masked; before 1.26
        // the word after `elem` is `acquiretime` and `c` ends the struct.
        let second = |off: u64| Some(off + 8).filter(|&o| o + 8 <= reach.sudog_size);
        masked.add_struct(sg, StructKind::Sudog);
        let field = if kind == PrimitiveWait::Channel { reach.sudog_c } else { reach.sudog_elem };
        let primitive = field_u64(&record, field)
            .filter(|&p| p != 0)
            .or_else(|| second(field).and_then(|o| field_u64(&record, o)))
            .unwrap_or(0);
        if primitive == 0 {
            return Ok(Wait::MayRun);
        }
        primitives.push(primitive);
        if kind != PrimitiveWait::Channel {
            break; // Go checks the first sudog's elem only
        }
        sg = field_u64(&record, reach.sudog_waitlink).unwrap_or(0);
    }
    if primitives.is_empty() {
        // Not (or no longer) linked from g.waiting: before Go 1.26 for
        // sync waits, or a goroutine between parking and being woken.
        return Ok(Wait::MayRun);
    }
    Ok(Wait::On(Primitives::from_slice(&primitives)))
}

/// Why a goroutine blocked with this wait reason on primitives found
/// unreachable is leaked.
fn leak_reason(reason: &str) -> &'static str {
    match primitive_wait(reason) {
        PrimitiveWait::NeverWakes(why) => why,
        PrimitiveWait::Channel => "channel unreachable",
        _ => sync_reason(reason),
    }
}

/// Why a goroutine blocked on a sync object with this wait reason is leaked.
fn sync_reason(reason: &str) -> &'static str {
    match reason {
        "sync.Mutex.Lock" => "mutex unreachable",
        "sync.RWMutex.Lock" | "sync.RWMutex.RLock" => "rwmutex unreachable",
        "sync.Cond.Wait" => "cond unreachable",
        "sync.WaitGroup.Wait" => "wait group unreachable",
        "semacquire" => "semaphore unreachable",
        _ => "sync object unreachable",
    }
}

/// What a span special contributes to the roots (`markrootSpans`).
enum SpecialRoot {
    /// The kinds are not known for this binary: the object and the record
    /// count as roots (errs towards reachable).
    Unknown,
    /// A finalizer: the object's contents and the record are roots, the
    /// object itself is not marked.
    Finalizer,
    /// A weak handle or a cleanup: the record is a root.
    Record,
    /// Anything else (a heap profile sample, a pin counter, ...): no root.
    /// A sampled allocation (one per 512 KiB by default) is not kept alive
    /// by its profiling record.
    No,
}

fn special_root(reach: &ReachLayout, kind: Option<i64>) -> SpecialRoot {
    let Some(finalizer) = reach.special_kind_finalizer else { return SpecialRoot::Unknown };
    match kind {
        None => SpecialRoot::Unknown,
        Some(k) if k == finalizer => SpecialRoot::Finalizer,
        Some(k) if Some(k) == reach.special_kind_weak_handle || Some(k) == reach.special_kind_cleanup => {
            SpecialRoot::Record
        }
        Some(_) => SpecialRoot::No,
    }
}

/// A span's free slots: bit `i` set when object `i` is free.
type FreeSlots = Box<[u64]>;

/// Where a span says which of its slots are free.
#[derive(Clone, Copy)]
struct SpanAllocLayout {
    start: u64,
    freeindex: u64,
    nelems: u64,
    /// 8 (uintptr) up to Go 1.21, 2 (uint16) since.
    width: u64,
    alloc_bits: u64,
}

impl SpanAllocLayout {
    fn new(reach: &ReachLayout) -> Option<Self> {
        let width = reach.mspan_nelems.checked_sub(reach.mspan_freeindex).filter(|w| matches!(w, 2 | 8))?;
        Some(Self {
            start: reach.mspan_start,
            freeindex: reach.mspan_freeindex,
            nelems: reach.mspan_nelems,
            width,
            alloc_bits: reach.mspan_alloc_bits,
        })
    }

    /// Bytes of an `mspan` to read for these fields.
    fn need(&self) -> u64 {
        [self.start + 8, self.nelems + self.width, self.alloc_bits + 8].into_iter().max().unwrap_or(0)
    }

    fn index(&self, mspan: &[u8], off: u64) -> Option<u64> {
        match self.width {
            2 => field_u16(mspan, off).map(u64::from),
            _ => field_u64(mspan, off),
        }
    }
}

/// A span's object count and free slots, from its `mspan` bytes: slot `i`
/// is free when `i >= freeindex` and its `allocBits` bit is clear
/// (`(*mspan).isFree`; Go's `freeIndexForScan` lags `freeindex` only for
/// objects being initialised, which count as allocated here). None for the
/// free slots when the span has none or its bitmap cannot be read (every
/// slot then counts as allocated: errs towards reachable).
fn span_free_slots<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    layout: &SpanAllocLayout,
    mspan: &[u8],
) -> Result<(u64, Option<FreeSlots>), ScanError> {
    let nelems = layout.index(mspan, layout.nelems).unwrap_or(0);
    let freeindex = layout.index(mspan, layout.freeindex).unwrap_or(u64::MAX);
    let alloc_bits = field_u64(mspan, layout.alloc_bits).unwrap_or(0);
    if freeindex >= nelems || alloc_bits == 0 || nelems > MAX_SPAN_OBJECTS {
        return Ok((nelems, None));
    }
    let Ok(bitmap) = reader.read(alloc_bits, nelems.div_ceil(8)) else {
        return Ok((nelems, None));
    };
    let mut free = vec![0u64; nelems.div_ceil(64) as usize];
    for i in freeindex..nelems {
        if bitmap[(i / 8) as usize] & (1 << (i % 8)) == 0 {
            free[(i / 64) as usize] |= 1 << (i % 64);
        }
    }
    Ok((nelems, free.iter().any(|&w| w != 0).then(|| free.into_boxed_slice())))
}

/// Reads a span's start, object count and free slots again.
fn read_span_alloc<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    layout: &SpanAllocLayout,
    mspan: u64,
) -> Result<Option<(u64, u64, Option<FreeSlots>)>, ScanError> {
    let Ok(bytes) = reader.read(mspan, layout.need()) else { return Ok(None) };
    let start = field_u64(&bytes, layout.start).unwrap_or(0);
    let (nelems, free) = span_free_slots(reader, layout, &bytes)?;
    Ok(Some((start, nelems, free)))
}

/// An in-use span as read: the span, its specials list, its `mspan`'s
/// address and its free slots.
struct SpanRead {
    span: Span,
    specials: u64,
    mspan: u64,
    free: Option<Box<[u64]>>,
}

/// The in-use spans, sorted by address, with their specials lists.
fn read_spans<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    mheap: u64,
) -> Result<Vec<SpanRead>, ScanError> {
    let header = reader.read(mheap + reach.mheap_allspans, 16)?;
    let ptr = field_u64(&header, 0).unwrap_or(0);
    let len = field_u64(&header, 8).unwrap_or(0);
    if len > MAX_SPANS || ptr == 0 {
        return Err(ScanError::Torn(format!("mheap_.allspans has {len} spans at {ptr:#x}")));
    }
    let ptrs = reader.read(ptr, len * 8)?;
    let need = [reach.mspan_start, reach.mspan_npages, reach.mspan_elemsize, reach.mspan_specials]
        .into_iter()
        .map(|o| o + 8)
        .chain([reach.mspan_state + 1, reach.mspan_spanclass + 1])
        .max()
        .unwrap_or(0);
    let alloc_layout = SpanAllocLayout::new(reach);
    let need = need.max(alloc_layout.map_or(0, |a| a.need()));
    let mut spans = Vec::new();
    for p in ptrs.chunks_exact(8).filter_map(|c| field_u64(c, 0)).filter(|&p| p != 0) {
        let s = reader.read(p, need)?;
        if field_u8(&s, reach.mspan_state) != Some(MSPAN_IN_USE) {
            continue;
        }
        let start = field_u64(&s, reach.mspan_start).unwrap_or(0);
        let npages = field_u64(&s, reach.mspan_npages).unwrap_or(0);
        let bytes = npages.checked_mul(PAGE_SIZE).filter(|&b| b > 0);
        let elemsize = field_u64(&s, reach.mspan_elemsize).unwrap_or(0);
        let torn = || ScanError::Torn(format!("span {p:#x}: start {start:#x}, {npages} pages, elemsize {elemsize}"));
        let bytes = bytes.ok_or_else(torn)?;
        if elemsize == 0 || elemsize > bytes || start == 0 {
            return Err(torn());
        }
        let mut nelems = bytes / elemsize;
        let mut free = None;
        if let Some(alloc_layout) = &alloc_layout {
            // Spans of small pointerful objects keep their heap bits at the
            // end since Go 1.22: `nelems` slots, not all that would fit.
            let (n, f) = span_free_slots(reader, alloc_layout, &s)?;
            if (1..=nelems).contains(&n) {
                (nelems, free) = (n, f);
            }
        }
        if nelems > MAX_SPAN_OBJECTS {
            return Err(torn()); // no span of Go's has this many objects
        }
        let end = start.checked_add(nelems * elemsize).ok_or_else(torn)?;
        let noscan = spanclass_noscan(field_u8(&s, reach.mspan_spanclass).unwrap_or(0));
        spans.push(SpanRead {
            span: Span { start, end, elemsize, noscan },
            specials: field_u64(&s, reach.mspan_specials).unwrap_or(0),
            mspan: p,
            free,
        });
    }
    spans.sort_unstable_by_key(|r| r.span.start);
    if spans.windows(2).any(|w| w[0].span.end > w[1].span.start) {
        return Err(ScanError::Torn("overlapping spans (the heap changed while read)".into()));
    }
    Ok(spans)
}

mod sema;
mod stack;
#[cfg(test)]
mod tests;
