//! Goroutines as they are in the target's memory: `runtime.allgs`, each `g`,
//! and each goroutine's `_defer` chain.
//!
//! This is how deferscope knows chains that were built before it attached, and
//! how it resynchronises: events give changes, memory gives the truth for a
//! goroutine that is not running. A chain is only trusted when the goroutine
//! could not run while it was read (see [`ScannedGoroutine::consistent`]).
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap as HashMap;

use crate::{
    goruntime::{
        GoroutineStatus, RuntimeLayout,
        defers::{self, DeferRecord},
    },
    process::{
        memory::{MemoryError, ProcessMemory, ReadMemory, field_u8, field_u32, field_u64},
        monotonic_ns, stack,
    },
};

/// One goroutine read from memory. Addresses are the target's runtime ones.
#[derive(Clone, Debug)]
pub struct ScannedGoroutine {
    pub goid: u64,
    pub status: GoroutineStatus,
    pub wait_reason: u8,
    pub waitsince: i64,
    pub gopc: u64,
    pub startpc: u64,
    pub parent_goid: Option<u64>,
    pub sched_sp: u64,
    pub sched_pc: u64,
    /// Call sites (return addresses) of the defer records, newest first.
    /// 0 where the record does not say (pending range-over-func records).
    /// Shared with the scanner's cache and the aggregator: a goroutine that
    /// has not run costs no copy of its chain.
    pub defer_sites: Arc<[u64]>,
    /// The records of the chain as walked, newest first (empty when the
    /// chain came from the cache or the walk was cut short): where probe
    /// events that name a record fall on `defer_sites`.
    pub records: Vec<RecordMark>,
    /// The goroutine could not have run while its chain was read: same goid,
    /// status and chain head before and after, and not running.
    pub consistent: bool,
    /// `g.trackingSeq`: bumped by the runtime every time the goroutine stops
    /// running, so a change between two reads proves it ran in between.
    pub tracking_seq: Option<u8>,
    /// Stack PCs innermost first, for goroutines that are not running
    /// (empty otherwise). See `stack::unwind`. Shared like `defer_sites`.
    pub stack_pcs: Arc<[u64]>,
}

/// A record linked on a goroutine's chain, as read: its address and the
/// number of deferred calls on the chain from it down, itself included (the
/// depth the chain has while this record is on top). A push onto it, or a
/// pop that leaves it on top, puts the chain at a known depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMark {
    pub addr: u64,
    pub depth: u64,
}

/// A chain as walked: see [`GoroutineScanner::walk_chain`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// Call sites, newest first.
    pub sites: Vec<u64>,
    /// The linked records, newest first (empty if `truncated`).
    pub records: Vec<RecordMark>,
    /// The walk stopped at the safety bound, at an unreadable record or at a
    /// cycle, or it is `torn`.
    pub truncated: bool,
    /// The walk ended on a record that is on no chain (being freed or filled
    /// in: no function and no link): the goroutine changed its chain as it
    /// was walked.
    pub torn: bool,
}

impl ScannedGoroutine {
    #[cfg(test)]
    pub fn defer_depth(&self) -> u64 {
        self.defer_sites.len() as u64
    }
}

#[derive(Clone, Debug)]
pub struct GoroutineScan {
    /// CLOCK_MONOTONIC before the first read and after the last one.
    pub t_start_ns: u64,
    pub t_end_ns: u64,
    /// Every non-dead goroutine (system ones included).
    pub goroutines: Vec<ScannedGoroutine>,
    /// (call site, deferred function's code address) of sites whose records
    /// this scanner saw for the first time: what those `defer` statements
    /// will run (the funcval's code; see `gobin::wrappers`).
    pub deferred_code: Vec<(u64, u64)>,
}

/// Reads goroutines from the target (by default the live process; any
/// [`ReadMemory`], such as a fuzzer's memory image). Cheap to keep; `scan`
/// does the I/O.
pub struct GoroutineScanner<M = ProcessMemory> {
    mem: M,
    layout: RuntimeLayout,
    /// Runtime address of the `runtime.allgs` slice header.
    allgs: u64,
    /// Runtime address of `runtime.allglen`, if known.
    allglen: Option<u64>,
    /// Chains and stacks from the previous read, by goid, reused while the
    /// goroutine has provably not run since (see [`Unchanged`]): a server
    /// with 100k parked goroutines costs one read of each g per scan,
    /// not a walk of every chain and stack.
    cache: Mutex<ScanCache>,
    /// Call sites whose deferred function is known (read once per site: a
    /// `defer` statement always defers the same code, bar a func variable).
    deferred_known: Mutex<DeferredCode>,
}

#[derive(Default)]
struct DeferredCode {
    known: rustc_hash::FxHashSet<u64>,
    fresh: Vec<(u64, u64)>,
}

#[derive(Default)]
struct ScanCache {
    by_goid: HashMap<u64, Cached>,
    /// Bumped by every scan; entries not refreshed by the last one are gone.
    generation: u64,
    /// Chains and stacks by content: goroutines parked at one place (a
    /// worker pool, 100k handlers waiting on their connections) hold a
    /// handful of distinct ones, so each is stored once and shared by the
    /// cache, the aggregator and the views.
    interned: rustc_hash::FxHashSet<Arc<[u64]>>,
}

impl ScanCache {
    /// The shared copy of `words` (stored the first time it is seen).
    fn intern(&mut self, words: Arc<[u64]>) -> Arc<[u64]> {
        if let Some(shared) = self.interned.get(&words[..]) {
            return shared.clone();
        }
        self.interned.insert(words.clone());
        words
    }

    /// Forgets what only the interning set still holds.
    fn prune_interned(&mut self) {
        self.interned.retain(|words| Arc::strong_count(words) > 1);
    }
}

/// Everything that would differ if a goroutine had run since the last read:
/// `trackingSeq` moves every time it stops running, and its saved registers
/// and chain head move with any progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unchanged {
    g_addr: u64,
    raw_status: u32,
    head: u64,
    sched_pc: u64,
    sched_sp: u64,
    sched_bp: u64,
    tracking_seq: u8,
}

struct Cached {
    key: Unchanged,
    /// The scan that last found the goroutine.
    generation: u64,
    defer_sites: Arc<[u64]>,
    stack_pcs: Arc<[u64]>,
}

/// No real program holds this many records on one goroutine (8 GiB of
/// records at 48 bytes each); the bound stops a walk through a corrupt or
/// concurrently recycled chain.
const MAX_CHAIN: usize = 1 << 24;
/// Upper bound for allglen, for the same reason.
const MAX_GOROUTINES: u64 = 1 << 24;
/// Walks of a running goroutine's chain before one cut short is kept (as
/// truncated). A walk is torn only when it reaches the top record in the
/// microseconds it is being popped or pushed, so few are needed.
const MAX_WALK_ATTEMPTS: u32 = 8;
/// Then walks spaced by `WALK_RETRY_PAUSE`: a goroutine spinning on defers
/// tears every back-to-back walk on a loaded machine (seen at load 5-6 on 2
/// cores: all 8 walks of a goroutine at 40-41 records stopped at its top
/// record), but the scheduler takes it off its CPU now and then, and a walk
/// then holds. Bounded: only running goroutines tear, at most one per CPU.
const SPACED_WALK_ATTEMPTS: u32 = 8;
const WALK_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_micros(250);
/// The `g` structs sit side by side in the heap's spans: sorted by address,
/// runs of them are read with one `pread` each instead of one per g. A gap
/// up to this size between two gs is read through (cheaper than a syscall),
/// and a run is at most [`MAX_RUN_BYTES`] long.
const MAX_RUN_GAP: u64 = 4 << 10;
const MAX_RUN_BYTES: u64 = 256 << 10;

/// Splits sorted g addresses into runs read in one piece: see
/// [`MAX_RUN_GAP`].
fn g_runs(sorted: &[u64], g_size: u64) -> Vec<&[u64]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=sorted.len() {
        let ends_run = match (sorted.get(start), sorted.get(i - 1), sorted.get(i)) {
            (Some(&first), Some(&prev), Some(&next)) => {
                next.saturating_sub(prev.saturating_add(g_size)) > MAX_RUN_GAP
                    || next.saturating_add(g_size).saturating_sub(first) > MAX_RUN_BYTES
                    || prev.checked_add(g_size).is_none_or(|end| end > next)
            }
            _ => true,
        };
        if ends_run {
            if let Some(run) = sorted.get(start..i) {
                runs.push(run);
            }
            start = i;
        }
    }
    runs
}

impl<M: ReadMemory> GoroutineScanner<M> {
    pub fn new(mem: M, layout: RuntimeLayout, allgs: u64, allglen: Option<u64>) -> Self {
        Self { mem, layout, allgs, allglen, cache: Mutex::new(ScanCache::default()), deferred_known: Mutex::default() }
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

    /// Reads every live goroutine and its defer chain, in the order of the
    /// gs' addresses.
    pub fn scan(&self) -> Result<GoroutineScan, MemoryError> {
        let t_start_ns = monotonic_ns();
        let mut addresses = self.all_g_addresses()?;
        addresses.sort_unstable();
        addresses.dedup();
        let mut goroutines = Vec::with_capacity(addresses.len());
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Updated in place: most entries of a large program stay as they are.
        cache.generation = cache.generation.wrapping_add(1);
        // Grown once (see `Aggregator::apply_scan`).
        let unknown = addresses.len().saturating_sub(cache.by_goid.len());
        cache.by_goid.reserve(unknown);
        let g_size = self.layout.g_size;
        let mut run_bytes = Vec::new();
        for run in g_runs(&addresses, g_size) {
            let (Some(&first), Some(&last)) = (run.first(), run.last()) else { continue };
            run_bytes.resize(usize::try_from(last - first + g_size).unwrap_or(0), 0);
            // A run that spans an unmapped gap (or a g freed with its span)
            // is read one g at a time.
            let whole = self.mem.read_exact(first, &mut run_bytes).is_ok();
            for &g_addr in run {
                let at = usize::try_from(g_addr - first).unwrap_or(usize::MAX);
                let one;
                let bytes = match run_bytes.get(at..at.saturating_add(g_size as usize)) {
                    Some(bytes) if whole => bytes,
                    _ => match self.read_g(g_addr) {
                        Ok(bytes) => {
                            one = bytes;
                            &one[..]
                        }
                        // A g can be freed and reused while we read; an
                        // unreadable one is skipped rather than failing the
                        // whole scan.
                        Err(_) => continue,
                    },
                };
                if let Ok(Some(g)) = self.read_goroutine_cached(g_addr, bytes, &mut cache) {
                    goroutines.push(g);
                }
            }
        }
        let generation = cache.generation;
        cache.by_goid.retain(|_, cached| cached.generation == generation);
        cache.prune_interned();
        let deferred_code = std::mem::take(&mut self.deferred().fresh);
        Ok(GoroutineScan { t_start_ns, t_end_ns: monotonic_ns(), goroutines, deferred_code })
    }

    fn deferred(&self) -> std::sync::MutexGuard<'_, DeferredCode> {
        self.deferred_known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Learns what the `defer` at `site` runs from one of its records, the
    /// first time the site shows up.
    fn learn_deferred_code(&self, site: u64, record: &[u8]) {
        let mut deferred = self.deferred();
        if site == 0 || deferred.known.contains(&site) {
            return;
        }
        let funcval = field_u64(record, self.layout.defer_fn).unwrap_or(0);
        if let Ok(code) = self.mem.read_u64(funcval) {
            if funcval != 0 && code != 0 {
                deferred.known.insert(site);
                deferred.fresh.push((site, code));
            }
        }
    }

    fn read_g(&self, g_addr: u64) -> Result<Vec<u8>, MemoryError> {
        self.mem.read_vec(g_addr, self.layout.g_size as usize)
    }

    /// Reads one goroutine (None for a dead g), reusing its chain and stack
    /// from `cache` when it has not run since, and caching them (as of the
    /// cache's generation) when it cannot run.
    fn read_goroutine_cached(
        &self,
        g_addr: u64,
        before: &[u8],
        cache: &mut ScanCache,
    ) -> Result<Option<ScannedGoroutine>, MemoryError> {
        let generation = cache.generation;
        let l = &self.layout;
        let raw_status = field_u32(before, l.g_atomicstatus).unwrap_or(u32::MAX);
        let status = l.g_statuses.decode(raw_status);
        if !status.is_live() {
            return Ok(None);
        }
        let goid = field_u64(before, l.g_goid).unwrap_or(0);
        let sched = l.g_sched;
        let key = l.g_tracking_seq.and_then(|off| field_u8(before, off)).map(|tracking_seq| Unchanged {
            g_addr,
            raw_status,
            head: field_u64(before, l.g_defer).unwrap_or(0),
            sched_pc: field_u64(before, sched.saturating_add(l.gobuf_pc)).unwrap_or(0),
            sched_sp: field_u64(before, sched.saturating_add(l.gobuf_sp)).unwrap_or(0),
            sched_bp: field_u64(before, sched.saturating_add(l.gobuf_bp)).unwrap_or(0),
            tracking_seq,
        });
        let reusable = key.filter(|_| !status.may_change_chain());
        if let Some(hit) = reusable.and_then(|key| cache.by_goid.get_mut(&goid).filter(|c| c.key == key)) {
            hit.generation = generation;
            let g =
                self.goroutine_from(before, status, hit.defer_sites.clone(), Vec::new(), true, hit.stack_pcs.clone());
            return Ok(Some(g));
        }
        let Some(mut g) = self.read_goroutine_from(g_addr, before.to_vec())? else { return Ok(None) };
        g.defer_sites = cache.intern(g.defer_sites);
        g.stack_pcs = cache.intern(g.stack_pcs);
        if let Some(key) = reusable.filter(|_| g.consistent) {
            let cached = Cached { key, generation, defer_sites: g.defer_sites.clone(), stack_pcs: g.stack_pcs.clone() };
            cache.by_goid.insert(g.goid, cached);
        }
        Ok(Some(g))
    }

    fn read_goroutine_from(&self, g_addr: u64, mut before: Vec<u8>) -> Result<Option<ScannedGoroutine>, MemoryError> {
        let l = &self.layout;
        let mut attempts = 1;
        // The longest of the torn walks: under heavy load (or emulation) every
        // walk of a hot goroutine may tear, most at its newest record; the
        // longest one is the closest (still inexact) picture of its chain.
        let mut longest_torn: Option<(Chain, Vec<u8>)> = None;
        let (raw_status, status, goid, head, chain) = loop {
            let raw_status = field_u32(&before, l.g_atomicstatus).unwrap_or(u32::MAX);
            let status = l.g_statuses.decode(raw_status);
            if !status.is_live() {
                return Ok(None);
            }
            let goid = field_u64(&before, l.g_goid).unwrap_or(0);
            let head = field_u64(&before, l.g_defer).unwrap_or(0);
            let mut chain = self.walk_chain(head);
            // A running goroutine pops and pushes while we walk: a walk cut
            // short by a record it was freeing or filling in is retried.
            if !chain.torn {
                break (raw_status, status, goid, head, chain);
            }
            if attempts >= MAX_WALK_ATTEMPTS + SPACED_WALK_ATTEMPTS {
                if let Some((longer, its_g)) = longest_torn.filter(|(c, _)| c.sites.len() > chain.sites.len()) {
                    (chain, before) = (longer, its_g);
                }
                let raw_status = field_u32(&before, l.g_atomicstatus).unwrap_or(u32::MAX);
                let (goid, head) =
                    (field_u64(&before, l.g_goid).unwrap_or(0), field_u64(&before, l.g_defer).unwrap_or(0));
                break (raw_status, l.g_statuses.decode(raw_status), goid, head, chain);
            }
            if longest_torn.as_ref().is_none_or(|(c, _)| chain.sites.len() > c.sites.len()) {
                longest_torn = Some((chain, before.clone()));
            }
            if attempts >= MAX_WALK_ATTEMPTS {
                std::thread::sleep(WALK_RETRY_PAUSE);
            }
            attempts += 1;
            before = self.read_g(g_addr)?;
        };
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
        let sched_pc = field_u64(&before, sched.saturating_add(l.gobuf_pc)).unwrap_or(0);
        let sched_bp = field_u64(&before, sched.saturating_add(l.gobuf_bp)).unwrap_or(0);
        let stack_lo = field_u64(&before, l.g_stack_lo).unwrap_or(0);
        let stack_hi = field_u64(&before, l.g_stack_hi).unwrap_or(0);
        // Only a goroutine that is off-CPU has meaningful saved registers.
        let stack_pcs: Arc<[u64]> = if status.has_saved_registers() {
            stack::unwind(&self.mem, sched_pc, sched_bp, stack_lo, stack_hi).into()
        } else {
            Arc::new([])
        };
        let consistent = consistent && !chain.truncated;
        Ok(Some(self.goroutine_from(&before, status, chain.sites.into(), chain.records, consistent, stack_pcs)))
    }

    /// Assembles a [`ScannedGoroutine`] from a read of its g.
    fn goroutine_from(
        &self,
        g: &[u8],
        status: GoroutineStatus,
        defer_sites: Arc<[u64]>,
        records: Vec<RecordMark>,
        consistent: bool,
        stack_pcs: Arc<[u64]>,
    ) -> ScannedGoroutine {
        let l = &self.layout;
        let sched = l.g_sched;
        ScannedGoroutine {
            goid: field_u64(g, l.g_goid).unwrap_or(0),
            status,
            wait_reason: field_u8(g, l.g_waitreason).unwrap_or(0),
            waitsince: field_u64(g, l.g_waitsince).unwrap_or(0) as i64,
            gopc: field_u64(g, l.g_gopc).unwrap_or(0),
            startpc: field_u64(g, l.g_startpc).unwrap_or(0),
            parent_goid: l.g_parent_goid.and_then(|off| field_u64(g, off)),
            sched_sp: field_u64(g, sched.saturating_add(l.gobuf_sp)).unwrap_or(0),
            sched_pc: field_u64(g, sched.saturating_add(l.gobuf_pc)).unwrap_or(0),
            defer_sites,
            records,
            consistent,
            tracking_seq: l.g_tracking_seq.and_then(|off| field_u8(g, off)),
            stack_pcs,
        }
    }

    /// The site of a record still pending on a range-over-func header.
    /// `deferprocat` leaves its `pc` unset (the runtime fills it when the loop
    /// ends), so the site comes from the deferred function: the compiler's
    /// `….deferwrapN` closure for the `defer` statement sits at that
    /// statement's line. Returned as a pseudo return address (entry + 1) so
    /// it symbolises like the sites of the other records.
    fn pending_site(&self, record: &[u8]) -> u64 {
        let l = &self.layout;
        if let Some(pc) = field_u64(record, l.defer_pc).filter(|&pc| pc != 0) {
            return pc;
        }
        let funcval = field_u64(record, l.defer_fn).unwrap_or(0);
        match self.mem.read_u64(funcval) {
            Ok(code) if funcval != 0 && code != 0 => code.checked_add(1).unwrap_or(0),
            _ => 0,
        }
    }

    /// Walks `_defer.link` from `head`, newest first: the call sites, the
    /// records with their depths, and whether the walk was cut short (an
    /// unreadable record, a cycle, [`MAX_CHAIN`] records, or torn).
    pub fn walk_chain(&self, head: u64) -> Chain {
        let l = &self.layout;
        let mut sites = Vec::new();
        // (address, sites above it) of each linked record.
        let mut linked: Vec<(u64, usize)> = Vec::new();
        let mut truncated = false;
        let mut torn = false;
        let mut d = head;
        let mut cycle = CycleCheck::new(head);
        'walk: while d != 0 {
            if sites.len() >= MAX_CHAIN {
                truncated = true;
                break;
            }
            let Ok(record) = self.mem.read_vec(d, l.defer_size as usize) else {
                truncated = true;
                break;
            };
            let link = field_u64(&record, l.defer_link).unwrap_or(0);
            let kind = defers::classify(l, &record);
            // Popping clears a record's function and link, and a push links a
            // fresh one before setting its function: met while walking, such
            // a record hides the rest of the chain. (A converted range-over-func
            // header looks the same only inside the deferreturn that pops it.)
            if field_u64(&record, l.defer_fn) == Some(0)
                && link == 0
                && !matches!(kind, DeferRecord::RangefuncHolder { .. } | DeferRecord::SyntheticOpenDefer)
            {
                torn = true;
                break;
            }
            linked.push((d, sites.len()));
            match kind {
                DeferRecord::Call { .. } => {
                    let site = field_u64(&record, l.defer_pc).unwrap_or(0);
                    self.learn_deferred_code(site, &record);
                    sites.push(site);
                }
                // Records deferred inside a range-over-func body wait on the
                // holder's list until the loop's function returns; they were
                // pushed after the holder, so they are newer.
                DeferRecord::RangefuncHolder { head } if head != 0 => {
                    let mut pending = self.mem.read_u64(head).unwrap_or(0);
                    let mut pending_cycle = CycleCheck::new(pending);
                    while pending != 0 && pending != defers::DRAINED_LIST {
                        if sites.len() >= MAX_CHAIN {
                            truncated = true;
                            break 'walk;
                        }
                        let Ok(p) = self.mem.read_vec(pending, l.defer_size as usize) else {
                            truncated = true;
                            break 'walk;
                        };
                        let site = self.pending_site(&p);
                        self.learn_deferred_code(site, &p);
                        sites.push(site);
                        pending = field_u64(&p, l.defer_link).unwrap_or(0);
                        if pending_cycle.closes(pending) {
                            truncated = true;
                            break 'walk;
                        }
                    }
                }
                // No deferred call of their own (the probes skip them too).
                DeferRecord::RangefuncHolder { .. }
                | DeferRecord::RangefuncHeader
                | DeferRecord::SyntheticOpenDefer => {}
            }
            d = link;
            if cycle.closes(d) {
                truncated = true;
                break;
            }
        }
        let truncated = truncated || torn;
        let total = sites.len() as u64;
        // A record's pending range-over-func records sit above it in `sites`
        // but wait on it: they are part of its depth.
        let records = if truncated {
            Vec::new()
        } else {
            linked.into_iter().map(|(addr, above)| RecordMark { addr, depth: total - above as u64 }).collect()
        };
        Chain { sites, records, truncated, torn }
    }
}

/// Brent's cycle detection for a linked list read from the target, which
/// a torn read or a recycled record can close into a loop: O(1) memory, and
/// a loop is noticed within a few times its length instead of walking it up
/// to [`MAX_CHAIN`] times.
struct CycleCheck {
    /// A node the walk passed, moved up to the current one at every power
    /// of two steps.
    mark: u64,
    power: usize,
    steps: usize,
}

impl CycleCheck {
    fn new(start: u64) -> Self {
        Self { mark: start, power: 1, steps: 0 }
    }

    /// Records a step to `next`; true when `next` was already visited.
    fn closes(&mut self, next: u64) -> bool {
        if next != 0 && next == self.mark {
            return true;
        }
        self.steps += 1;
        if self.steps == self.power {
            self.mark = next;
            self.power = self.power.saturating_mul(2);
            self.steps = 0;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gobin::{Arch, GoVersion};

    /// Fake runtime structures laid out like Go 1.24's, in this process's own
    /// memory, read back through /proc/self/mem like a real target's.
    struct FakeRuntime {
        layout: RuntimeLayout,
        /// `allgs` slice header, then the g pointer array.
        allgs: Box<[u64; 3]>,
        gptrs: Box<[u64; 1]>,
        g: Box<[u8; 1024]>,
        // Boxed: records must keep their addresses while the Vec grows.
        #[allow(clippy::vec_box)]
        defers: Vec<Box<[u8; 64]>>,
    }

    impl FakeRuntime {
        fn new(minor: u32) -> Self {
            let version = GoVersion::parse(&format!("go1.{minor}.1")).expect("version");
            let layout = RuntimeLayout::from_table(&version, Arch::X86_64).expect("table layout");
            let mut rt = FakeRuntime {
                layout,
                allgs: Box::new([0; 3]),
                gptrs: Box::new([0]),
                g: Box::new([0; 1024]),
                defers: Vec::new(),
            };
            rt.gptrs[0] = rt.g.as_ptr() as u64;
            rt.allgs[0] = rt.gptrs.as_ptr() as u64;
            rt.allgs[1] = 1;
            rt.allgs[2] = 1;
            rt.set_u64(rt.layout.g_goid, 42);
            rt.set_status("_Gwaiting");
            rt
        }

        fn set_u64(&mut self, off: u64, v: u64) {
            self.g[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes());
        }

        /// Sets `g.atomicstatus` to the runtime constant `name` (`_Gwaiting`).
        fn set_status(&mut self, name: &str) {
            let status = self.layout.g_statuses.value(name).expect("status constant");
            let off = self.layout.g_atomicstatus as usize;
            self.g[off..off + 4].copy_from_slice(&status.to_le_bytes());
        }

        fn set_tracking_seq(&mut self, seq: u8) {
            let off = self.layout.g_tracking_seq.expect("trackingSeq") as usize;
            self.g[off] = seq;
        }

        /// Pushes a record with call site `pc` (and `fn` non-nil unless
        /// `header`) on the chain.
        fn push(&mut self, pc: u64, header: bool) {
            let l = &self.layout;
            let mut d = Box::new([0u8; 64]);
            let head = u64::from_le_bytes(self.g[l.g_defer as usize..l.g_defer as usize + 8].try_into().expect("8"));
            d[l.defer_pc as usize..l.defer_pc as usize + 8].copy_from_slice(&pc.to_le_bytes());
            d[l.defer_link as usize..l.defer_link as usize + 8].copy_from_slice(&head.to_le_bytes());
            let fn_value: u64 = if header { 0 } else { 0x1234 };
            d[l.defer_fn as usize..l.defer_fn as usize + 8].copy_from_slice(&fn_value.to_le_bytes());
            let addr = d.as_ptr() as u64;
            self.defers.push(d);
            let off = self.layout.g_defer;
            self.set_u64(off, addr);
        }

        fn scanner(&self) -> GoroutineScanner {
            let mem = ProcessMemory::open(std::process::id()).expect("own memory");
            GoroutineScanner::new(mem, self.layout.clone(), self.allgs.as_ptr() as u64, None)
        }
    }

    fn depth(scanner: &GoroutineScanner) -> (u64, bool) {
        let scan = scanner.scan().expect("scan");
        assert_eq!(scan.goroutines.len(), 1);
        let g = &scan.goroutines[0];
        assert_eq!(g.goid, 42);
        (g.defer_depth(), g.consistent)
    }

    #[test]
    fn reads_a_parked_goroutines_chain() {
        let mut rt = FakeRuntime::new(24);
        for pc in [10, 20, 30] {
            rt.push(pc, false);
        }
        let scanner = rt.scanner();
        let scan = scanner.scan().expect("scan");
        let g = &scan.goroutines[0];
        assert_eq!(g.defer_sites[..], [30, 20, 10], "newest first");
        assert!(g.consistent);
        assert_eq!(g.status, GoroutineStatus::Waiting);
    }

    #[test]
    fn identical_chains_are_stored_once() {
        let mut rt = FakeRuntime::new(24);
        rt.set_tracking_seq(7);
        rt.push(10, false);
        rt.push(20, false);
        let scanner = rt.scanner();
        let first = scanner.scan().expect("scan");
        // It ran (trackingSeq moved), so the chain is walked afresh: the
        // same content comes back as the same allocation.
        rt.set_tracking_seq(8);
        let second = scanner.scan().expect("scan");
        let (a, b) = (&first.goroutines[0], &second.goroutines[0]);
        assert_eq!(b.defer_sites[..], [20, 10]);
        assert!(Arc::ptr_eq(&a.defer_sites, &b.defer_sites));
        assert!(Arc::ptr_eq(&a.stack_pcs, &b.stack_pcs));
        // A different chain is a copy of its own.
        rt.push(30, false);
        rt.set_tracking_seq(9);
        let third = scanner.scan().expect("scan");
        assert_eq!(third.goroutines[0].defer_sites[..], [30, 20, 10]);
        assert!(!Arc::ptr_eq(&a.defer_sites, &third.goroutines[0].defer_sites));
    }

    #[test]
    fn reuses_chains_only_while_the_goroutine_has_not_run() {
        let mut rt = FakeRuntime::new(24);
        rt.set_tracking_seq(7);
        rt.push(10, false);
        rt.push(20, false);
        let scanner = rt.scanner();
        assert_eq!(depth(&scanner), (2, true));
        // The chain changes behind an unchanged g (head, registers and
        // trackingSeq as before): the cache answers, proving it is used.
        let l = rt.layout.clone();
        rt.defers[0][l.defer_pc as usize] = 99;
        assert_eq!(scanner.scan().expect("snapshot").goroutines[0].defer_sites[..], [20, 10]);
        // It ran in between (trackingSeq moved): read afresh.
        rt.set_tracking_seq(8);
        assert_eq!(scanner.scan().expect("snapshot").goroutines[0].defer_sites[..], [20, 99]);
        // A running goroutine is never served from the cache, nor consistent.
        rt.set_status("_Grunning");
        assert_eq!(depth(&scanner), (2, false));
    }

    #[test]
    fn range_over_func_headers_are_not_counted() {
        let mut rt = FakeRuntime::new(24);
        rt.push(10, false);
        rt.push(20, true); // converted header: linked, no function
        rt.push(30, false);
        assert_eq!(rt.scanner().scan().expect("snapshot").goroutines[0].defer_sites[..], [30, 10]);
    }

    /// Found by the memory_scan fuzz target: a record linking back into the
    /// chain (here to itself, and a longer loop) was walked 16M times per
    /// goroutine. The walk now stops at the loop and marks the chain cut.
    #[test]
    fn cyclic_chains_end_the_walk() {
        let mut rt = FakeRuntime::new(24);
        rt.push(10, false);
        let l = rt.layout.clone();
        let first = rt.defers[0].as_ptr() as u64;
        rt.defers[0][l.defer_link as usize..l.defer_link as usize + 8].copy_from_slice(&first.to_le_bytes());
        let scanner = rt.scanner();
        let chain = scanner.walk_chain(first);
        assert!(chain.truncated);
        assert!(chain.sites.len() <= 4, "{:?}", chain.sites);
        // A loop of three behind a head: each record is reported at most a
        // few times before the loop is noticed.
        let mut rt = FakeRuntime::new(24);
        for pc in [10, 20, 30, 40] {
            rt.push(pc, false);
        }
        let third = rt.defers[2].as_ptr() as u64;
        rt.defers[0][l.defer_link as usize..l.defer_link as usize + 8].copy_from_slice(&third.to_le_bytes());
        let scan = rt.scanner().scan().expect("scan");
        let g = &scan.goroutines[0];
        assert!(!g.consistent, "a cut chain is not trusted");
        assert_eq!(&g.defer_sites[..4], [40, 30, 20, 10]);
        assert!(g.defer_sites.len() <= 16, "{:?}", g.defer_sites);
    }

    #[test]
    fn records_carry_the_depth_of_the_chain_below_them() {
        let mut rt = FakeRuntime::new(24);
        rt.push(10, false);
        rt.push(20, true); // converted header: linked, not counted
        rt.push(30, false);
        let addr = |i: usize| rt.defers[i].as_ptr() as u64;
        let scan = rt.scanner().scan().expect("scan");
        let depths: Vec<(u64, u64)> = scan.goroutines[0].records.iter().map(|r| (r.addr, r.depth)).collect();
        assert_eq!(depths, vec![(addr(2), 2), (addr(1), 1), (addr(0), 1)]);
    }

    #[test]
    fn a_walk_that_meets_a_record_being_freed_is_torn() {
        // What popDefer leaves behind (no function, no link) while the
        // goroutine runs on: the walk cannot see the records below it.
        let mut rt = FakeRuntime::new(24);
        rt.push(0, true);
        rt.set_status("_Grunning");
        let g = rt.scanner().scan().expect("scan").goroutines.remove(0);
        assert!(!g.consistent);
        assert!(g.records.is_empty(), "no records to place events on");
        assert!(rt.scanner().walk_chain(rt.defers[0].as_ptr() as u64).torn);
    }

    #[test]
    fn neighbouring_gs_are_read_in_runs() {
        let g = 448;
        // Side by side, then a gap read through, then one too far.
        let sorted = [0x1000, 0x1000 + g, 0x1000 + 2 * g + 100, 0x1000 + 3 * g + MAX_RUN_GAP + 200];
        assert_eq!(g_runs(&sorted, g), vec![&sorted[..3], &sorted[3..]]);
        // A run ends before it grows past MAX_RUN_BYTES.
        let many: Vec<u64> = (0..2 * MAX_RUN_BYTES / g).map(|i| 0x10_0000 + i * g).collect();
        let runs = g_runs(&many, g);
        assert!(runs.len() >= 2 && runs.iter().all(|r| r.len() as u64 * g <= MAX_RUN_BYTES), "{}", runs.len());
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), many.len());
        // Overlapping "gs" (a corrupt allgs) are never one run.
        assert_eq!(g_runs(&[0x1000, 0x1010], g).len(), 2);
        assert!(g_runs(&[], g).is_empty());
        assert_eq!(g_runs(&[u64::MAX - 8], g), vec![&[u64::MAX - 8][..]]);
    }

    #[test]
    fn dead_goroutines_are_skipped() {
        let mut rt = FakeRuntime::new(24);
        rt.set_status("_Gdead");
        assert!(rt.scanner().scan().expect("snapshot").goroutines.is_empty());
    }
}
