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

use crate::{
    goruntime::{
        GoroutineStatus, RuntimeLayout,
        heap::{MAIN_GOID, MAX_STACK, MSPAN_IN_USE, PAGE_SIZE, spanclass_noscan},
        layout::ReachLayout,
        wait::{PrimitiveWait, is_runtime_idle, primitive_wait},
    },
    process::{
        memory::{MemoryError, ReadMemory, field_u8, field_u32, field_u64},
        monotonic_ns,
    },
};

/// Bounds that stop a walk through corrupt or torn memory.
const MAX_SPANS: u64 = 1 << 26;
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
    /// In-use spans (0 when the heap was not read).
    pub spans: u64,
    /// Whether the heap was traced (false: only never-waking goroutines).
    pub heap_traced: bool,
    pub unreachable: Vec<Unreachable>,
    /// Goroutines blocked on a primitive this scan found reachable.
    pub reachable: Vec<u64>,
    /// With `ReachTarget::explain`: for reachable goroutines, what keeps
    /// their primitive reachable, root first, then the heap objects through
    /// which it is reached ("0xc000123000 (96 B)+0x8": the object, its size
    /// and the offset of the word pointing onwards), the primitive last.
    pub retained_by: Vec<(u64, Vec<String>)>,
    /// Why the scan proved nothing, if it failed.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("{0}")]
    Torn(String),
}

/// A goroutine as the proof sees it.
struct G {
    goid: u64,
    signature: Option<ParkSignature>,
    status: GoroutineStatus,
    stack: (u64, u64),
    sched_sp: u64,
    sched_pc: u64,
    sched_bp: u64,
    wait: Wait,
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
    /// Blocked on these primitives (any one reachable wakes it).
    On {
        primitives: Vec<u64>,
        reason: &'static str,
    },
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
    /// Addresses of words never traced (sudog `c` and `elem` of blocked
    /// goroutines).
    masked: HashSet<u64>,
    work: Vec<(u32, u64)>,
    objects_marked: u64,
    /// With `ReachTarget::explain`: per marked object's start, the address
    /// of the word that first marked it.
    marked_from: Option<HashMap<u64, u64>>,
    /// With `ReachTarget::explain`: what each scanned root range is.
    roots: Vec<Root>,
}

/// Runtime structs read from heap objects, as (address, size of the
/// struct): the slack of their objects past the struct is never traced.
type RuntimeStructs = Vec<(u64, u64)>;

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

    fn is_marked(&self, addr: u64) -> Option<bool> {
        let (i, obj) = self.find(addr)?;
        Some(self.marks[i].get((obj / 64) as usize).is_some_and(|w| w & (1 << (obj % 64)) != 0))
    }

    /// Marks the object containing `addr` (if any), queueing it for a scan
    /// unless noscan.
    fn mark(&mut self, addr: u64, from: u64) {
        let Some((i, obj)) = self.find(addr) else { return };
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
            self.work.push((i as u32, obj));
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
            if !self.masked.contains(&location) {
                self.mark(value, location);
            }
        }
    }
}

impl Heap {
    fn note_root(&mut self, start: u64, end: u64, what: impl FnOnce() -> RootKind) {
        if self.marked_from.is_some() {
            self.roots.push(Root { start, end, what: what() });
        }
    }

    /// One chain of words from a root to the marked object holding `addr`
    /// (`LeakScan::retained_by`).
    fn retaining_path(&self, addr: u64) -> Vec<String> {
        let Some(marked_from) = &self.marked_from else { return Vec::new() };
        let object = |addr: u64| {
            self.find(addr).map(|(i, obj)| (self.spans[i].start + obj * self.spans[i].elemsize, self.spans[i].elemsize))
        };
        let Some((start, size)) = object(addr) else {
            return vec![format!("{addr:#x}: not a heap object")];
        };
        let mut path = vec![format!("{start:#x} ({size} B)+{:#x}", addr - start)];
        let mut current = start;
        let mut seen = HashSet::default();
        while seen.insert(current) {
            let Some(&from) = marked_from.get(&current) else {
                path.push("?".into());
                break;
            };
            if let Some((start, size)) = object(from) {
                path.push(format!("{start:#x} ({size} B)+{:#x}", from - start));
                current = start;
                continue;
            }
            path.push(match self.roots.iter().find(|r| (r.start..r.end).contains(&from)) {
                Some(Root { what: RootKind::Global, .. }) => format!("global {from:#x}"),
                Some(Root { what: RootKind::Special, start, .. }) => format!("special {start:#x}+{:#x}", from - start),
                Some(Root { what: RootKind::Stack(goid, frames), end, .. }) => {
                    // The word belongs to the innermost frame whose record
                    // lies above it.
                    match frames.iter().find(|&&(fp, _)| fp >= from) {
                        Some(&(fp, pc)) => format!("goroutine {goid} stack, frame pc {pc:#x}, fp-{:#x}", fp - from),
                        None => format!("goroutine {goid} stack, hi-{:#x}", end - from),
                    }
                }
                None => format!("root {from:#x}"),
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
        while !heap.work.is_empty() {
            let mut batch = std::mem::take(&mut heap.work);
            batch.sort_unstable();
            let mut k = 0;
            while k < batch.len() {
                let (si, first) = batch[k];
                let s = heap.spans[si as usize];
                let mut last = k;
                while last + 1 < batch.len()
                    && batch[last + 1].0 == si
                    && (batch[last + 1].1 - batch[last].1 - 1) * s.elemsize <= COALESCE_GAP
                    && (batch[last + 1].1 - first + 1) * s.elemsize <= CHUNK
                {
                    last += 1;
                }
                let run_start = s.start + first * s.elemsize;
                if last == k && s.elemsize > CHUNK {
                    // A large object: stream it.
                    self.scan_range(heap, run_start, run_start + s.elemsize)?;
                } else {
                    let run_end = s.start + (batch[last].1 + 1) * s.elemsize;
                    let buf = self.read(run_start, run_end - run_start)?;
                    for &(_, obj) in &batch[k..=last] {
                        let off = ((obj - first) * s.elemsize) as usize;
                        let bytes = &buf[off..off + s.elemsize as usize];
                        heap.mark_words(s.start + obj * s.elemsize, bytes);
                    }
                }
                k = last + 1;
            }
        }
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
    let (mut goroutines, mut masked, mut runtime_structs) = read_goroutines(reader, target, reach)?;
    let (Some(reach), Some(mheap)) = (reach, target.mheap) else {
        // No heap: only goroutines that nothing can ever wake.
        let unreachable = goroutines
            .iter()
            .filter_map(|g| match g.wait {
                Wait::Never(reason) => Some(Unreachable { goid: g.goid, signature: g.signature?, reason }),
                _ => None,
            })
            .collect();
        return Ok(LeakScan { unreachable, ..LeakScan::default() });
    };
    if let Some(allp) = target.allp {
        mask_gc_buffers(reader, reach, allp, &mut masked)?;
    }
    if let Some(allm) = target.allm {
        mask_m_goroutines(reader, l, reach, allm, &mut masked, &mut runtime_structs)?;
    }
    let spans = read_spans(reader, reach, mheap)?;
    let n_spans = spans.len() as u64;
    let specials = spans.iter().filter(|(_, sp)| *sp != 0).map(|(s, sp)| (s.start, *sp)).collect::<Vec<_>>();
    let mut heap = Heap {
        marks: vec![Vec::new(); spans.len()],
        spans: spans.into_iter().map(|(s, _)| s).collect(),
        masked,
        work: Vec::new(),
        objects_marked: 0,
        marked_from: target.explain.then(HashMap::default),
        roots: Vec::new(),
    };
    // A g's or sudog's heap object is larger than the struct when its size
    // class is: the slack past the struct may hold stale words Go's GC never
    // reads (a 456-byte g of Go 1.27 in a 480-byte object, a 104-byte sudog
    // in a 112-byte one, kept other goroutines' primitives alive).
    for (addr, size) in runtime_structs {
        if let Some((i, obj)) = heap.find(addr) {
            let end = heap.spans[i].start + (obj + 1) * heap.spans[i].elemsize;
            let tail = (addr + size).next_multiple_of(8);
            heap.masked.extend((tail..end).step_by(8));
        }
    }
    resolve_cond_waiters(reader, &heap, reach, &mut goroutines)?;

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
            heap.mark(span_start.saturating_add(offset), special);
            heap.note_root(special, special + SPECIAL_READ as u64, || RootKind::Special);
            heap.mark_words(special, &record);
            special = field_u64(&record, reach.special_next).unwrap_or(0);
        }
    }
    for g in goroutines.iter().filter(|g| matches!(g.wait, Wait::MayRun)) {
        scan_stack(reader, &mut heap, g)?;
    }
    reader.drain(&mut heap)?;

    // Fixed point: a blocked goroutine whose primitive is marked (or not a
    // heap object) may be woken, so its stack is a root too.
    let mut reachable = Vec::new();
    let mut retained_by = Vec::new();
    loop {
        let mut woke = false;
        for g in goroutines.iter_mut() {
            let Wait::On { primitives, .. } = &g.wait else { continue };
            if primitives.iter().any(|&p| heap.is_marked(p) != Some(false)) {
                if heap.marked_from.is_some() {
                    let path =
                        primitives.iter().find(|&&p| heap.is_marked(p) != Some(false)).map(|&p| heap.retaining_path(p));
                    retained_by.push((g.goid, path.unwrap_or_default()));
                }
                g.wait = Wait::MayRun;
                reachable.push(g.goid);
                scan_stack(reader, &mut heap, g)?;
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
                Wait::Never(reason) | Wait::On { reason, .. } => reason,
                Wait::MayRun | Wait::RuntimeIdle | Wait::CondWaiter { .. } => return None,
            };
            Some(Unreachable { goid: g.goid, signature: g.signature?, reason })
        })
        .collect();
    Ok(LeakScan {
        objects_marked: heap.objects_marked,
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
/// uintptr to a heap chunk: the address of the chunk's first object.
fn mask_gc_buffers<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    allp: u64,
    masked: &mut HashSet<u64>,
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
            (reach.p_wbbuf, reach.wbbuf_size),
            (reach.p_gcw, reach.gcwork_size),
            (reach.p_pcache, reach.pagecache_size),
        ];
        for (offset, size) in buffers {
            let start = p.wrapping_add(offset).next_multiple_of(8);
            masked.extend((start..p.wrapping_add(offset + size)).step_by(8));
        }
    }
    Ok(())
}

/// Masks the `g.stack` words of every M's `g0` and `gsignal`, as
/// `read_goroutines` does for the goroutines of `allgs`: uintptrs to Go's GC,
/// and `stack.hi` is one past the stack, often the next span's first object.
/// Their addresses and sizes go to `runtime_structs`.
fn mask_m_goroutines<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    l: &RuntimeLayout,
    reach: &ReachLayout,
    allm: u64,
    masked: &mut HashSet<u64>,
    runtime_structs: &mut RuntimeStructs,
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
                masked.extend([g + l.g_stack_lo, g + l.g_stack_hi]);
                runtime_structs.push((g, l.g_size));
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
fn scan_stack<M: ReadMemory>(reader: &mut Reader<'_, M>, heap: &mut Heap, g: &G) -> Result<(), ScanError> {
    let (lo, hi) = g.stack;
    if lo == 0 || hi <= lo {
        return Ok(()); // no stack (a g being created or torn down)
    }
    if hi - lo > MAX_STACK {
        return Err(ScanError::Torn(format!("goroutine {}: stack of {} bytes", g.goid, hi - lo)));
    }
    let from = if g.status != GoroutineStatus::Running && (lo..hi).contains(&g.sched_sp) { g.sched_sp } else { lo };
    if heap.marked_from.is_some() {
        let frames = frame_records(reader.mem, g);
        heap.note_root(from, hi, || RootKind::Stack(g.goid, frames));
    }
    reader.scan_range(heap, from, hi)
}

/// Every live goroutine, classified, the sudog and `g.stack` fields never to
/// trace, and the address and size of every g in `allgs` (dead ones too)
/// and of the sudogs read.
fn read_goroutines<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    target: &ReachTarget,
    reach: Option<&ReachLayout>,
) -> Result<(Vec<G>, HashSet<u64>, RuntimeStructs), ScanError> {
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
    if ptr == 0 || len == 0 {
        return Ok((Vec::new(), HashSet::default(), Vec::new()));
    }
    let addrs = reader.read(ptr, len * 8)?;
    let mut goroutines = Vec::new();
    let mut masked = HashSet::default();
    let mut runtime_structs = Vec::new();
    // Sync waiters not linked from g.waiting (before Go 1.26) are found in
    // the semaphore table; a table that cannot be read proves none of them.
    let sema_waiters = match (reach, target.semtable) {
        (Some(reach), Some(semtable)) => {
            sema::semtable_waiters(reader, reach, semtable, &mut masked, &mut runtime_structs).unwrap_or_default()
        }
        _ => Default::default(),
    };
    for g_addr in addrs.chunks_exact(8).filter_map(|c| field_u64(c, 0)).filter(|&a| a != 0) {
        let g = reader.read(g_addr, l.g_size)?;
        let raw_status = field_u32(&g, l.g_atomicstatus).unwrap_or(u32::MAX);
        let status = l.g_statuses.decode(raw_status);
        // `g.stack` holds uintptrs Go's GC never traces, and `stack.hi` is
        // one past the stack's end: often the first object of the next span,
        // which a conservative read would keep alive (a primitive there
        // looked reachable from every g in `allgs`).
        masked.extend([g_addr + l.g_stack_lo, g_addr + l.g_stack_hi]);
        runtime_structs.push((g_addr, l.g_size));
        if !status.is_live() {
            continue;
        }
        let goid = field_u64(&g, l.g_goid).unwrap_or(0);
        let wait_reason = field_u8(&g, l.g_waitreason).unwrap_or(0);
        let sched_sp = field_u64(&g, l.g_sched + l.gobuf_sp).unwrap_or(0);
        let sched_pc = field_u64(&g, l.g_sched + l.gobuf_pc).unwrap_or(0);
        let sched_bp = field_u64(&g, l.g_sched + l.gobuf_bp).unwrap_or(0);
        let signature = l.g_tracking_seq.and_then(|off| field_u8(&g, off)).map(|tracking_seq| ParkSignature {
            raw_status,
            wait_reason,
            sched_pc,
            tracking_seq,
        });
        let stack = (field_u64(&g, l.g_stack_lo).unwrap_or(0), field_u64(&g, l.g_stack_hi).unwrap_or(0));
        let reason = l.wait_reasons.string(wait_reason).unwrap_or("");
        let parked = status.is_parked() && goid != MAIN_GOID;
        let wait = match (parked, primitive_wait(reason)) {
            (true, PrimitiveWait::NeverWakes(why)) => Wait::Never(why),
            (true, kind @ (PrimitiveWait::Channel | PrimitiveWait::Sync | PrimitiveWait::Semaphore)) => match reach {
                Some(reach) => {
                    let head = field_u64(&g, reach.g_waiting).unwrap_or(0);
                    match sudog_wait(reader, reach, head, kind, reason, &mut masked, &mut runtime_structs)? {
                        Wait::MayRun if kind != PrimitiveWait::Channel => match sema_waiters.get(&g_addr) {
                            Some(&sema) => Wait::On { primitives: vec![sema], reason: sync_reason(reason) },
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
        goroutines.push(G { goid, signature, status, stack, sched_sp, sched_pc, sched_bp, wait });
    }
    Ok((goroutines, masked, runtime_structs))
}

/// Gives every `Wait::CondWaiter` its candidate sudogs as primitives (none
/// found: it may run).
fn resolve_cond_waiters<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    heap: &Heap,
    reach: &ReachLayout,
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
                Some(primitives) => Wait::On { primitives, reason: "cond unreachable" },
                None => Wait::MayRun,
            };
        }
    }
    Ok(())
}

/// The primitives a goroutine waits on, from its sudogs; their `c` and
/// `elem` words go into `masked`, their addresses and size into
/// `runtime_structs`.
fn sudog_wait<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    head: u64,
    kind: PrimitiveWait,
    reason: &str,
    masked: &mut HashSet<u64>,
    runtime_structs: &mut RuntimeStructs,
) -> Result<Wait, ScanError> {
    let mut primitives = Vec::new();
    let mut sg = head;
    while sg != 0 {
        if primitives.len() >= MAX_SUDOGS {
            return Ok(Wait::MayRun);
        }
        // A sudog released while we read (the goroutine woke): may run.
        let Ok(record) = reader.read(sg, reach.sudog_size) else { return Ok(Wait::MayRun) };
        runtime_structs.push((sg, reach.sudog_size));
        // Since Go 1.26 `c` and `elem` are `maybeTraceablePtr`s: the pointer
        // (`vp`, hidden from the GC during its leak check) then the same
        // address as a uintptr (`vu`). Both words are masked; before 1.26
        // the word after `elem` is `acquiretime` and `c` ends the struct.
        let second = |off: u64| Some(off + 8).filter(|&o| o + 8 <= reach.sudog_size);
        sema::mask_sudog(reach, sg, masked);
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
    let reason = match kind {
        PrimitiveWait::Channel => "channel unreachable",
        _ => sync_reason(reason),
    };
    Ok(Wait::On { primitives, reason })
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

/// The in-use spans, sorted by address, with their specials lists.
fn read_spans<M: ReadMemory>(
    reader: &mut Reader<'_, M>,
    reach: &ReachLayout,
    mheap: u64,
) -> Result<Vec<(Span, u64)>, ScanError> {
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
        let end = start.checked_add(bytes / elemsize * elemsize).ok_or_else(torn)?;
        let noscan = spanclass_noscan(field_u8(&s, reach.mspan_spanclass).unwrap_or(0));
        spans.push((Span { start, end, elemsize, noscan }, field_u64(&s, reach.mspan_specials).unwrap_or(0)));
    }
    spans.sort_unstable_by_key(|(s, _)| s.start);
    if spans.windows(2).any(|w| w[0].0.end > w[1].0.start) {
        return Err(ScanError::Torn("overlapping spans (the heap changed while read)".into()));
    }
    Ok(spans)
}

mod sema;
#[cfg(test)]
mod tests;
