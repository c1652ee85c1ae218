//! The aggregator: folds probe events and memory snapshots into per-goroutine
//! and per-site state, and renders [`model::Snapshot`]s.
//!
//! Pure state, no I/O: every rule about ordering events against memory reads
//! lives here and is unit-tested.
//!
//! Ordering. Probe events carry `bpf_ktime_get_ns()` and a memory snapshot
//! carries the CLOCK_MONOTONIC interval in which it was read. A chain read
//! while its goroutine could not run (`consistent`) is the truth at the
//! snapshot's start, so:
//! - events stamped before `t_start` are already in it (ignored if they are
//!   still in the ring buffer when the snapshot is applied);
//! - events stamped after are not, and are applied on top;
//! - a goroutine with an event already applied at or after `t_start` keeps its
//!   event-derived chain (the read may have raced with it).
//!
//! Coverage. Depths come from events only while every defer probe (all the
//! push probes and the pop probe) is attached: a partial stream (say pushes
//! without pops) never moves a depth. When the overhead governor detaches one,
//! chains come from memory reads alone, exact for goroutines read
//! consistently (parked) and marked inexact otherwise, and the attached probes
//! only count. When they are all back, every goroutine needs a new baseline
//! from a read that started after the re-attach, as at startup.
//!
//! Events stamped before every probe was attached only count
//! ([`Aggregator::set_probes_live`]): while only some probes are in, pushes
//! are seen without their pops. The first memory read, which starts after,
//! is the baseline. Likewise events stamped before the last re-attach.
//!
//! A goroutine that never stops running is never read consistently. Push and
//! pop events name the record below the one they push or pop (the chain's
//! head after a pop), which places them on a chain: on the empty chain
//! exactly, or on the records found by the last read of the goroutine, so
//! such a goroutine's depth comes from memory too, marked inexact.
pub mod findings;
pub mod leaks;
pub mod lifetime;
pub mod model;

use std::collections::hash_map::Entry;
use std::{num::NonZeroU64, sync::Arc};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;

use tracer_common::{Event, EventKind, UNKNOWN_RECORD};

use crate::{
    goruntime::{
        GoroutineStatus,
        goroutines::{MAIN_GOID, is_blocking_machinery, is_system_start},
        layout::WaitReasons,
        wait::is_concurrency_primitive,
    },
    process::{
        GoroutineScan,
        reachability::{LeakScan, RetainStep},
        scan::{RecordMark, ScannedGoroutine},
    },
};
use model::{DeferSiteView, GoroutineDetails, GoroutineView, LeakScanView, Site, Snapshot, Totals, Verdict};

/// What the aggregator needs to know about the target's code.
pub trait Symbolizer {
    /// Source line of a runtime PC (a return address: the call's line).
    fn call_site(&mut self, return_pc: u64) -> Option<Site>;
    /// Name of the function at a runtime PC.
    fn function_at(&mut self, pc: u64) -> Option<Arc<str>>;
    /// Every logical frame (inlined calls first) of one physical frame of a
    /// stack: `pc` itself for the innermost frame, a return address for the
    /// others.
    fn frames(&mut self, pc: u64, is_return_address: bool) -> Vec<Site>;
    /// What a deferred function value whose code is at `code_pc` runs,
    /// through the compiler's wrappers (`gobin::GoBinary::deferred_call`).
    fn deferred_call(&mut self, _code_pc: u64) -> Option<Site> {
        None
    }
    /// The global holding runtime address `addr` (`main.registry+0x18`, or
    /// `.bss+0x1234` in a stripped binary).
    fn global_at(&mut self, _addr: u64) -> Option<Arc<str>> {
        None
    }
}

/// Call sites of a goroutine's live records, oldest first. Most goroutines
/// hold a short chain: two records fit inline, with no allocation of their
/// own (100k goroutines: 3.2 MB less).
type ChainSites = SmallVec<[u64; 2]>;

/// One goroutine as the aggregator knows it: kept compact, since a server
/// may have 100k of them (each byte here costs 130 kB there, with the
/// table's slack).
#[derive(Debug, Default)]
struct GoroutineState {
    /// Call sites of the live records, oldest first (the top is last).
    sites: ChainSites,
    /// (u32: packs with the flags below; no chain is 4G records long.)
    max_depth: u32,
    /// ktime of the newest applied event.
    last_event_ns: u64,
    /// Events stamped before this are already reflected in `sites`.
    ignore_before_ns: u64,
    /// When deferscope first heard of it (event ktime or snapshot start).
    first_seen_ns: u64,
    /// A chain from memory (or an empty one known from creation) is in.
    has_baseline: bool,
    depth_exact: bool,
    status: Option<GoroutineStatus>,
    wait_reason: u8,
    gopc: u64,
    startpc: u64,
    parent_goid: Option<NonZeroU64>,
    system: Option<bool>,
    /// Stack PCs from the last memory read, innermost first (shared with the
    /// scanner's cache while the goroutine does not run).
    stack: Arc<[u64]>,
    /// The current block, while memory shows it waiting.
    block: Option<leaks::Block>,
    /// Where the next push or pop event falls on the chain in memory: see
    /// [`Anchor`].
    anchor: Option<Anchor>,
}

impl GoroutineState {
    /// Keeps the deepest chain seen.
    fn note_depth(&mut self) {
        self.max_depth = self.max_depth.max(u32::try_from(self.sites.len()).unwrap_or(u32::MAX));
    }

    /// The chain (oldest first) below a push, or left by a pop, whose event
    /// names `record` as the record under it; and whether it is exact.
    /// Consumes the anchor it used.
    fn chain_on(&mut self, record: u64) -> Option<(Vec<u64>, bool)> {
        if record == 0 {
            return Some((Vec::new(), true));
        }
        if record == UNKNOWN_RECORD {
            return None;
        }
        match self.anchor.as_ref()? {
            Anchor::Read(read) => {
                let depth = *read.depths.get(&record)?;
                let Some(Anchor::Read(read)) = self.anchor.take() else { return None };
                let mut sites = read.sites;
                sites.truncate(depth as usize);
                Some((sites, false))
            }
            Anchor::Top(marks) => {
                let depth = marks.iter().find(|m| m.addr == record)?.depth as usize;
                if depth > self.sites.len() {
                    return None;
                }
                self.anchor = None;
                Some((self.sites[..depth].to_vec(), self.depth_exact))
            }
        }
    }
}

/// Where a goroutine's next push or pop event falls on its chain in memory:
/// the event names the record below it (the chain's head after a pop), and
/// the last read found that record at a known depth.
#[derive(Debug)]
enum Anchor {
    /// A read that could not be taken as the truth (the goroutine was
    /// running, or ran during it): every record found, each with the depth
    /// of the chain while it is on top, and the chain's sites, oldest first.
    /// The next event naming one of them puts the chain where the read
    /// says. Only a record popped and reused at another depth during the
    /// read itself could mislead it, so the depth stays marked inexact.
    /// Boxed: rare, and every tracked goroutine carries an `Anchor` slot.
    Read(Box<ReadAnchor>),
    /// A read taken as the chain (now the bottom of `sites`): its top two
    /// records. A goroutine preempted at rest inside `deferproc` (newdefer's
    /// stack check comes after the push probe) links its record after the
    /// read, though the push event is older than it; the next event names
    /// the read's top record (a push onto the late record does not, and
    /// waits for the pop back onto it) and counts that record back in.
    /// Inline (one record: the second is `addr` 0, which no event names):
    /// every parked goroutine has one, and a box each cost 4.8 MB at 100k.
    Top([RecordMark; 2]),
}

/// See [`Anchor::Read`].
#[derive(Debug)]
struct ReadAnchor {
    depths: HashMap<u64, u64>,
    sites: Vec<u64>,
}

impl Anchor {
    fn from_read(gm: &ScannedGoroutine) -> Option<Anchor> {
        if gm.records.is_empty() {
            return None;
        }
        let depths = gm.records.iter().map(|r| (r.addr, r.depth)).collect();
        Some(Anchor::Read(Box::new(ReadAnchor { depths, sites: gm.defer_sites.iter().rev().copied().collect() })))
    }

    fn top_of(gm: &ScannedGoroutine) -> Option<Anchor> {
        (!gm.records.is_empty()).then(|| {
            let mut marks = [RecordMark { addr: 0, depth: 0 }; 2];
            for (mark, record) in marks.iter_mut().zip(&gm.records) {
                *mark = *record;
            }
            Anchor::Top(marks)
        })
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct SiteStats {
    pushed: u64,
    live: u64,
}

/// Static facts about the target, copied into every snapshot.
#[derive(Clone, Debug, Default)]
pub struct ProcessInfo {
    pub pid: u32,
    pub exe: String,
    /// See `Snapshot::container`.
    pub container: Option<String>,
    pub go_version: String,
    pub arch: String,
    pub probes: Vec<String>,
}

/// What a snapshot is rendered with, besides the aggregated state.
#[derive(Clone, Debug, Default)]
pub struct SnapshotInputs {
    /// RFC 3339 time of the snapshot.
    pub time: String,
    /// Cap on the goroutine list.
    pub top: Option<usize>,
    /// Fill `stack` and `defer_chain` of each goroutine (TUI, `--stacks`).
    pub details: bool,
    /// CLOCK_MONOTONIC now, for block ages.
    pub now_ns: u64,
    /// `--leak-after`, in ns.
    pub leak_after_ns: u64,
    pub trace_uptime_s: f64,
    pub probe_hits: Vec<model::ProbeHits>,
    pub mode: model::Mode,
    pub overhead: Option<model::Overhead>,
    /// What the process holds now (`process::resources`).
    pub process: Option<model::ProcessResources>,
}

/// Which event streams are complete: every probe that carries them attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// Every push probe attached.
    pub pushes: bool,
    /// At least one push probe attached.
    pub some_pushes: bool,
    /// The pop probe attached.
    pub pops: bool,
    /// Goroutine creation and exit attached.
    pub goroutines: bool,
}

impl Coverage {
    pub const FULL: Coverage = Coverage { pushes: true, some_pushes: true, pops: true, goroutines: true };

    /// Depths can follow events.
    pub fn defers(self) -> bool {
        self.pushes && self.pops
    }
}

impl Default for Coverage {
    fn default() -> Self {
        Self::FULL
    }
}

#[derive(Default)]
pub struct Aggregator {
    goroutines: HashMap<u64, GoroutineState>,
    sites: HashMap<u64, SiteStats>,
    /// Goroutines seen exiting, with the exit's ktime, so that a memory
    /// snapshot read before the exit does not bring them back.
    exited: HashMap<u64, u64>,
    totals: Totals,
    wait_reasons: WaitReasons,
    /// How long the last applied memory read took.
    memory_read_s: f64,
    coverage: Coverage,
    /// Reads that started before this (the last time every defer probe was
    /// attached again) cannot be a baseline for event-derived depths.
    complete_since_ns: u64,
    /// Highest goid and goroutine count of the previous read (estimates of
    /// creations and exits while their probes are detached).
    previous_read: Option<(u64, usize)>,
    /// Totals that include estimates (since some probe was detached).
    estimated: std::collections::BTreeSet<&'static str>,
    /// Leak proofs from reachability scans.
    prover: leaks::Prover,
    /// The last reachability scan, and how many ran and failed.
    last_leak_scan: Option<LeakScan>,
    leak_scans: u64,
    leak_scan_failures: u64,
    /// Goroutines the last successful scan found reachable.
    reachable: HashSet<u64>,
    /// Their retaining paths, from the last successful scan (empty without
    /// `--explain-leaks`).
    retained_by: HashMap<u64, Vec<RetainStep>>,
    /// Group sizes over time, for growth.
    group_history: HashMap<GroupKey, leaks::GroupHistory>,
    /// ktime once every probe was first attached: earlier events only count.
    probes_live_ns: u64,
    /// What each `defer` statement (by call site) runs: its funcval's code.
    deferred_code: HashMap<u64, u64>,
    /// Pending records' push times and popped records' lifetimes.
    lifetimes: lifetime::Lifetimes,
    /// Growth of the records each goroutine holds per site.
    findings: findings::Findings,
}

type GroupKey = (Verdict, Option<Site>, Option<Site>, String);

impl Aggregator {
    pub fn new(wait_reasons: WaitReasons) -> Self {
        Self { wait_reasons, ..Self::default() }
    }

    fn add_live(&mut self, pc: u64) {
        self.sites.entry(pc).or_default().live += 1;
        self.totals.defer_records_live += 1;
    }

    fn remove_live(&mut self, pc: u64) {
        if let Some(stats) = self.sites.get_mut(&pc) {
            stats.live = stats.live.saturating_sub(1);
            if stats.live == 0 && stats.pushed == 0 {
                self.sites.remove(&pc);
            }
        }
        self.totals.defer_records_live = self.totals.defer_records_live.saturating_sub(1);
    }

    /// A goroutine's chain went from `old` to `new` sites: the live counts follow.
    fn move_live(&mut self, old: impl IntoIterator<Item = u64>, new: impl IntoIterator<Item = u64>) {
        for pc in old {
            self.remove_live(pc);
        }
        for pc in new {
            self.add_live(pc);
        }
    }

    /// Which probes are attached now; `now_ns` is CLOCK_MONOTONIC after the
    /// last attach or detach took effect. Drain the events first.
    pub fn set_coverage(&mut self, coverage: Coverage, now_ns: u64) {
        if coverage.defers() && !self.coverage.defers() {
            // Events are complete again from now on, but what happened while
            // they were not is unknown: every chain needs a new baseline,
            // from a read that started after now.
            self.complete_since_ns = now_ns;
            for g in self.goroutines.values_mut() {
                g.has_baseline = false;
                g.depth_exact = false;
            }
        }
        if !coverage.pushes {
            self.estimated.insert("defers_pushed");
        }
        if !coverage.pops {
            self.estimated.insert("defers_popped");
        }
        if !coverage.goroutines {
            self.estimated.insert("goroutines_created");
            self.estimated.insert("goroutines_exited");
        }
        self.coverage = coverage;
    }

    /// Events stamped before `t_ns` (CLOCK_MONOTONIC, once every probe is
    /// attached) are left out: before then a push could be seen without its
    /// pop. The first memory read, started after, is the baseline.
    pub fn set_probes_live(&mut self, t_ns: u64) {
        self.probes_live_ns = t_ns;
    }

    /// Replaces a goroutine's chain (sites oldest first), placed by an event.
    fn set_chain(&mut self, goid: u64, sites: Vec<u64>, exact: bool) {
        let Some(g) = self.goroutines.get_mut(&goid) else { return };
        let old = std::mem::replace(&mut g.sites, ChainSites::from_vec(sites));
        g.note_depth();
        g.has_baseline = true;
        g.depth_exact = exact;
        let new_sites = g.sites.clone();
        // Records the mirrored chain does not share date from this event.
        self.lifetimes.chain_read(goid, &new_sites, g.last_event_ns);
        self.move_live(old, new_sites);
    }

    pub fn apply_event(&mut self, event: &Event) {
        self.totals.events += 1;
        let Some(kind) = EventKind::from_u32(event.kind) else { return };
        let t = event.ktime_ns;
        if !self.coverage.defers() || t < self.probes_live_ns.max(self.complete_since_ns) {
            // A partial stream only counts; depths come from memory. (An
            // event stamped before every probe was in, at startup or at the
            // last re-attach, belongs to a partial stream: a push of it may
            // have been seen without its pop.)
            match kind {
                EventKind::DeferPush => {
                    self.totals.defers_pushed += 1;
                    self.sites.entry(event.pc).or_default().pushed += 1;
                    return;
                }
                EventKind::DeferPop => {
                    self.totals.defers_popped += 1;
                    return;
                }
                EventKind::GoroutineExit | EventKind::GoroutineCreate => {}
            }
        }
        if kind != EventKind::GoroutineCreate
            && self.exited.contains_key(&event.goid)
            && kind != EventKind::GoroutineExit
        {
            // Late events of a goroutine that already exited (cannot happen in
            // order; a safety net against cross-CPU reordering).
            return;
        }
        match kind {
            EventKind::DeferPush => {
                self.totals.defers_pushed += 1;
                self.sites.entry(event.pc).or_default().pushed += 1;
                let g = self.goroutine_for_event(event.goid, t);
                if t < g.ignore_before_ns {
                    return;
                }
                g.last_event_ns = g.last_event_ns.max(t);
                if let Some((below, exact)) = g.chain_on(event.aux) {
                    self.set_chain(event.goid, below, exact);
                }
                let Some(g) = self.goroutines.get_mut(&event.goid) else { return };
                g.sites.push(event.pc);
                g.note_depth();
                self.add_live(event.pc);
                self.lifetimes.pushed(event.goid, event.pc, t);
            }
            EventKind::DeferPop => {
                self.totals.defers_popped += 1;
                let switched = self.complete_since_ns != 0;
                let g = self.goroutine_for_event(event.goid, t);
                if t < g.ignore_before_ns {
                    return;
                }
                g.last_event_ns = g.last_event_ns.max(t);
                if let Some((left, exact)) = g.chain_on(event.aux) {
                    self.lifetimes.popped_leaving(event.goid, t, &left);
                    self.set_chain(event.goid, left, exact);
                    return;
                }
                match g.sites.pop() {
                    Some(pc) => {
                        self.remove_live(pc);
                        self.lifetimes.popped(event.goid, t);
                    }
                    None => {
                        // We did not know this record: the chain is not exact
                        // until the next consistent memory read. (Right after
                        // probes were re-attached, a chain without a baseline
                        // is known to be stale: no sign of lost events.)
                        let stale = !g.has_baseline && switched;
                        g.depth_exact = false;
                        g.has_baseline = false;
                        if !stale {
                            self.totals.unmatched_pops += 1;
                        }
                    }
                }
            }
            EventKind::GoroutineExit => {
                self.totals.goroutines_exited += 1;
                self.exited.insert(event.goid, t);
                self.lifetimes.exited(event.goid);
                if let Some(g) = self.goroutines.remove(&event.goid) {
                    for pc in g.sites {
                        self.remove_live(pc);
                    }
                }
            }
            EventKind::GoroutineCreate => {
                self.totals.goroutines_created += 1;
                let g = self.goroutine_for_event(event.goid, t);
                // A new goroutine has no defers: its chain is known exactly.
                if !g.has_baseline && g.sites.is_empty() {
                    g.has_baseline = true;
                    g.depth_exact = true;
                }
                g.gopc = event.pc;
                g.startpc = event.aux;
                g.parent_goid = NonZeroU64::new(event.arg);
                g.status.get_or_insert(GoroutineStatus::Runnable);
            }
        }
    }

    fn goroutine_for_event(&mut self, goid: u64, t: u64) -> &mut GoroutineState {
        self.goroutines.entry(goid).or_insert_with(|| GoroutineState { first_seen_ns: t, ..Default::default() })
    }

    pub fn apply_scan(&mut self, scan: &GoroutineScan) {
        self.memory_read_s = scan.t_end_ns.saturating_sub(scan.t_start_ns) as f64 / 1e9;
        let events_define_depth = self.coverage.defers();
        // A read that began before the probes were all back may have missed
        // events in between: its chains are a start, not a baseline.
        let baseline_ok = events_define_depth && scan.t_start_ns >= self.complete_since_ns;
        self.estimate_goroutines(scan);
        self.deferred_code.extend(scan.deferred_code.iter().copied());
        let (mut grown, mut shrunk) = (0u64, 0u64);
        // Grown once to the read's size: growing by doubling keeps the old
        // and the new table alive together (36 MB at 100k goroutines).
        // (No lookup per goroutine: reserving is a no-op when room is left.)
        let more = scan.goroutines.len().saturating_sub(self.goroutines.len());
        self.goroutines.reserve(more);
        self.lifetimes.reserve(more);
        let mut seen = HashSet::with_capacity_and_hasher(scan.goroutines.len(), Default::default());
        for gm in &scan.goroutines {
            if self.exited.contains_key(&gm.goid) {
                continue;
            }
            seen.insert(gm.goid);
            let new = !self.goroutines.contains_key(&gm.goid);
            let g = self
                .goroutines
                .entry(gm.goid)
                .or_insert_with(|| GoroutineState { first_seen_ns: scan.t_start_ns, ..Default::default() });
            g.status = Some(gm.status);
            g.block = gm.status.is_parked().then(|| {
                let signature = leaks::BlockSignature {
                    wait_reason: gm.wait_reason,
                    sched_pc: gm.sched_pc,
                    // The GC may move a blocked goroutine's stack (shrinking
                    // it), which changes its saved SP without it running; with
                    // trackingSeq available, SP adds nothing and is left out.
                    sched_sp: if gm.tracking_seq.is_some() { 0 } else { gm.sched_sp },
                    tracking_seq: gm.tracking_seq,
                };
                leaks::next_block(g.block, signature, scan.t_start_ns, gm.waitsince)
            });
            g.stack.clone_from(&gm.stack_pcs);
            g.wait_reason = gm.wait_reason;
            g.gopc = gm.gopc;
            g.startpc = gm.startpc;
            g.parent_goid = gm.parent_goid.and_then(NonZeroU64::new);
            // (ktime 0 never occurs: it marks "no event yet".)
            let raced = g.last_event_ns != 0 && g.last_event_ns >= scan.t_start_ns;
            let take_chain = if events_define_depth {
                !raced && (gm.consistent || !g.has_baseline || new)
            } else {
                // Only memory moves chains now: every read replaces them.
                true
            };
            if !take_chain {
                // A read that overlapped the goroutine's own pushes and pops
                // still says which record is where, for its next event.
                // (A torn read keeps the anchor of the one before.)
                g.anchor = if g.depth_exact { None } else { Anchor::from_read(gm).or(g.anchor.take()) };
                // Until an event names one of the read's records, events alone
                // say only what was pushed since attach, on top of a chain they
                // never saw: the read, inexact as it is, is the better estimate.
                // (A goroutine spinning on 40 records showed depth 0 in the
                // snapshot after its first read when it made no event in
                // between: arm64 under emulation, issue 12's test.)
                let estimate =
                    !g.has_baseline && !gm.records.is_empty() && !g.sites.iter().rev().eq(gm.defer_sites.iter());
                if estimate {
                    let old = std::mem::replace(&mut g.sites, gm.defer_sites.iter().rev().copied().collect());
                    g.note_depth();
                    g.depth_exact = false;
                    let new_sites = g.sites.clone();
                    self.lifetimes.first_chain_read(gm.goid, &new_sites, scan.t_start_ns);
                    self.move_live(old, new_sites);
                }
                continue;
            }
            // A chain read while it could change may be off by an event in
            // flight during the read, and even one read at rest by a push:
            // its next event corrects that. (Kept while probes are detached
            // too: the first events after they are back place the chain.)
            g.anchor = if !gm.consistent {
                Anchor::from_read(gm)
            } else if gm.records.is_empty() && !gm.defer_sites.is_empty() {
                // From the scanner's cache: it has not run since the read
                // that found the records, so that read's anchor holds.
                g.anchor.take().filter(|a| matches!(a, Anchor::Top(_)))
            } else {
                Anchor::top_of(gm)
            };
            // The same chain (a goroutine that has not run) moves nothing
            // between sites.
            let moved = (!g.sites.iter().rev().eq(gm.defer_sites.iter())).then(|| {
                let old = std::mem::take(&mut g.sites);
                g.sites = gm.defer_sites.iter().rev().copied().collect();
                if !new {
                    grown += (g.sites.len() as u64).saturating_sub(old.len() as u64);
                    shrunk += (old.len() as u64).saturating_sub(g.sites.len() as u64);
                }
                (old, g.sites.clone())
            });
            g.note_depth();
            g.ignore_before_ns = scan.t_start_ns;
            let first_read = !g.has_baseline;
            g.has_baseline = baseline_ok || !events_define_depth;
            g.depth_exact = gm.consistent && (baseline_ok || !events_define_depth);
            if let Some((old, new_sites)) = moved {
                if first_read {
                    self.lifetimes.first_chain_read(gm.goid, &new_sites, scan.t_start_ns);
                } else {
                    self.lifetimes.chain_read(gm.goid, &new_sites, scan.t_start_ns);
                }
                self.move_live(old, new_sites);
            }
        }
        // Goroutines that memory no longer shows and that did nothing since
        // the read began have exited without us seeing it (before attach, or
        // an event was lost).
        let gone: Vec<u64> = self
            .goroutines
            .iter()
            .filter(|(goid, g)| {
                !seen.contains(goid) && g.first_seen_ns < scan.t_start_ns && g.last_event_ns < scan.t_start_ns
            })
            .map(|(goid, _)| *goid)
            .collect();
        for goid in gone {
            self.lifetimes.exited(goid);
            if let Some(g) = self.goroutines.remove(&goid) {
                for pc in g.sites {
                    self.remove_live(pc);
                }
            }
        }
        // Exits older than this read can no longer be contradicted by it.
        self.exited.retain(|_, t| *t >= scan.t_start_ns);
        // With no probe on a side, successive reads give a lower bound.
        if !events_define_depth {
            if !self.coverage.some_pushes {
                self.totals.defers_pushed += grown;
            }
            if !self.coverage.pops {
                self.totals.defers_popped += shrunk;
            }
        }
    }

    /// Goroutines created and exited between two reads, while their probes
    /// are detached: goids are handed out in increasing order, so the highest
    /// one moves by about the number created (the runtime hands them to each
    /// P in batches of 16, so this is an estimate); exits are what the count
    /// does not show of those.
    fn estimate_goroutines(&mut self, scan: &GoroutineScan) {
        let max_goid = scan.goroutines.iter().map(|g| g.goid).max().unwrap_or(0);
        let count = scan.goroutines.len();
        if let Some((previous_max, previous_count)) = self.previous_read {
            if !self.coverage.goroutines {
                let created = max_goid.saturating_sub(previous_max);
                self.totals.goroutines_created += created;
                self.totals.goroutines_exited += (previous_count as u64 + created).saturating_sub(count as u64);
            }
        }
        self.previous_read = Some((max_goid.max(self.previous_read.map_or(0, |p| p.0)), count));
    }

    /// Folds in a reachability scan (leak proofs).
    pub fn apply_leak_scan(&mut self, mut scan: LeakScan) {
        self.prover.apply(&scan);
        self.leak_scans += 1;
        if scan.error.is_some() {
            self.leak_scan_failures += 1;
        } else {
            self.reachable = scan.reachable.iter().copied().collect();
            self.retained_by = std::mem::take(&mut scan.retained_by).into_iter().collect();
        }
        self.last_leak_scan = Some(scan);
    }

    pub fn set_events_lost(&mut self, lost: u64) {
        self.totals.events_lost = lost;
    }

    /// Renders the current state.
    pub fn snapshot(&mut self, info: &ProcessInfo, sym: &mut dyn Symbolizer, inputs: &SnapshotInputs) -> Snapshot {
        let mut system_cache: HashMap<u64, bool> = HashMap::default();
        let mut live = 0;
        let wait_reasons = &self.wait_reasons;
        let mut reason_strings: HashMap<u8, Option<Arc<str>>> = HashMap::default();
        let mut leak_reason_strings: HashMap<&'static str, Arc<str>> = HashMap::default();
        // One pass over every goroutine: what counts, what leaks, and its
        // view (the `--top` cap applies to the listing only, after sorting;
        // no intermediate copy per goroutine: with 100k of them it counts).
        let mut goroutines: Vec<GoroutineView> = Vec::with_capacity(self.goroutines.len());
        let mut groups: HashMap<GroupKey, model::LeakGroup> = HashMap::default();
        let tracked = &self.goroutines;
        self.prover.retain(|goid| tracked.contains_key(&goid));
        let heap_scanned = self.last_leak_scan.as_ref().is_some_and(|s| s.heap_traced);
        for (goid, g) in self.goroutines.iter_mut() {
            if g.system.is_none() && g.startpc != 0 {
                let system = *system_cache
                    .entry(g.startpc)
                    .or_insert_with(|| sym.function_at(g.startpc).is_some_and(|f| is_system_start(&f)));
                g.system = Some(system);
            }
            let system = g.system.unwrap_or(false);
            if !system {
                live += 1;
            }
            let status = g.status.unwrap_or(GoroutineStatus::Runnable);
            let waiting = status.is_parked();
            // One shared string per reason: 100k parked goroutines would
            // otherwise own 100k copies of "chan receive" per snapshot.
            let wait_reason = if waiting {
                reason_strings
                    .entry(g.wait_reason)
                    .or_insert_with(|| wait_reasons.string(g.wait_reason).map(Arc::from))
                    .clone()
            } else {
                None
            };
            let blocked_for_ns = g.block.map(|b| inputs.now_ns.saturating_sub(b.since_ns));
            let blocked_at = if waiting { blocking_site(&g.stack, sym) } else { None };
            let stuck = !system
                && *goid != MAIN_GOID
                && wait_reason.as_deref().is_some_and(is_concurrency_primitive)
                && blocked_for_ns.is_some_and(|ns| ns >= inputs.leak_after_ns);
            let proof = self.prover.proof(*goid).filter(|p| stuck && p.holds_for(g.wait_reason, g.block.as_ref()));
            let leaked = proof.is_some();
            let leak_reason = match proof {
                Some(p) => Some(p.reason),
                None if !stuck => None,
                None if self.prover.is_candidate(*goid) => Some("unreachable once: confirming"),
                None if self.reachable.contains(goid) => Some("reachable: could still be woken"),
                None if heap_scanned => Some("not provable: primitive unknown"),
                None => Some("not scanned"),
            }
            // Shared like the wait reasons: 100k stuck goroutines, 3.2 MB.
            .map(|reason| leak_reason_strings.entry(reason).or_insert_with(|| Arc::from(reason)).clone());
            let unreachable_for_s = proof.map(|p| inputs.now_ns.saturating_sub(p.since_ns) as f64 / 1e9);
            let retained_by = (stuck && !leaked && self.reachable.contains(goid))
                .then(|| self.retained_by.get(goid))
                .flatten()
                .map(|path| leaks::describe_retaining_path(path, sym));
            // Go's own tracebacks print no creator for the main goroutine either.
            let created_by = (g.gopc != 0 && *goid != MAIN_GOID).then(|| sym.call_site(g.gopc)).flatten();
            if stuck {
                let blocked_s = blocked_for_ns.unwrap_or(0) as f64 / 1e9;
                let reason = wait_reason.as_deref().unwrap_or_default().to_owned();
                let verdict = if leaked { Verdict::Leaked } else { Verdict::Stuck };
                let key = (verdict, created_by.clone(), blocked_at.clone(), reason.clone());
                let group = groups.entry(key).or_insert_with(|| model::LeakGroup {
                    verdict,
                    created_by: created_by.clone(),
                    blocked_at: blocked_at.clone(),
                    wait_reason: reason,
                    count: 0,
                    oldest_blocked_s: 0.0,
                    sample_goids: Vec::new(),
                    growing: false,
                    growth_per_min: 0.0,
                    retained_by: None,
                });
                if group.retained_by.is_none() {
                    group.retained_by.clone_from(&retained_by);
                }
                group.count += 1;
                group.oldest_blocked_s = group.oldest_blocked_s.max(blocked_s);
                group.sample_goids.push(*goid);
            }
            let mut view = GoroutineView {
                goid: *goid,
                state: status,
                wait_reason,
                defer_depth: g.sites.len() as u64,
                max_defer_depth: u64::from(g.max_depth),
                top_defer_site: g.sites.last().and_then(|&pc| sym.call_site(pc)),
                created_by,
                start_function: (g.startpc != 0).then(|| sym.function_at(g.startpc)).flatten(),
                parent_goid: g.parent_goid.map(NonZeroU64::get),
                system,
                depth_exact: g.depth_exact,
                blocked_for_s: blocked_for_ns.map(|ns| ns as f64 / 1e9),
                blocked_at,
                leaked,
                stuck,
                leak_reason,
                unreachable_for_s,
                details: None,
            };
            view.set_details(GoroutineDetails {
                retained_by,
                stack: inputs.details.then(|| symbolize_stack(&g.stack, sym)),
                defer_chain: inputs.details.then(|| defer_chain(&g.sites, sym)),
            });
            goroutines.push(view);
        }
        self.totals.goroutines_live = live;
        self.totals.goroutines_total = goroutines.len() as u64;
        // Growth, per group, since it appeared (groups that vanished forget).
        self.group_history.retain(|key, _| groups.contains_key(key));
        let mut leak_groups: Vec<model::LeakGroup> = groups
            .into_iter()
            .map(|(key, mut group)| {
                let (growing, per_min) = self.group_history.entry(key).or_default().record(inputs.now_ns, group.count);
                group.growing = growing;
                group.growth_per_min = per_min;
                group.sample_goids.sort_unstable();
                group.sample_goids.truncate(10);
                group
            })
            .collect();
        leak_groups.sort_by(|a, b| {
            a.verdict
                .cmp(&b.verdict)
                .then(b.count.cmp(&a.count))
                .then(b.oldest_blocked_s.total_cmp(&a.oldest_blocked_s))
        });
        let sum = |v: Verdict| -> u64 { leak_groups.iter().filter(|g| g.verdict == v).map(|g| g.count).sum() };
        self.totals.goroutines_leaked = sum(Verdict::Leaked);
        self.totals.goroutines_stuck = sum(Verdict::Stuck);

        // Deepest first, then by goid (unique keys: an unstable sort is exact).
        goroutines.sort_unstable_by(|a, b| b.defer_depth.cmp(&a.defer_depth).then(a.goid.cmp(&b.goid)));
        goroutines.truncate(inputs.top.unwrap_or(usize::MAX));
        let mut sites: Vec<(u64, SiteStats)> = self.sites.iter().map(|(pc, s)| (*pc, *s)).collect();
        sites.sort_by(|a, b| b.1.live.cmp(&a.1.live).then(b.1.pushed.cmp(&a.1.pushed)).then(a.0.cmp(&b.0)));
        // Several return addresses can share one source line (e.g. a defer
        // statement compiled twice); merge them by line.
        let mut merged: Vec<DeferSiteView> = Vec::new();
        let mut site_lifetimes = lifetime::SiteLifetimes::new(&self.lifetimes, inputs.now_ns);
        let mut index: HashMap<Site, usize> = HashMap::default();
        for (pc, stats) in sites {
            let site = sym.call_site(pc).unwrap_or_else(|| Site::new(&format!("{pc:#x}"), "", 0));
            let deferred = self.deferred_code.get(&pc).and_then(|&code| sym.deferred_call(code));
            let at = match index.entry(site) {
                Entry::Occupied(e) => {
                    let view = &mut merged[*e.get()];
                    view.pushed += stats.pushed;
                    view.live += stats.live;
                    if view.deferred.is_none() {
                        view.deferred = deferred;
                    }
                    *e.get()
                }
                Entry::Vacant(e) => {
                    let site = e.key().clone();
                    e.insert(merged.len());
                    merged.push(DeferSiteView {
                        site,
                        pushed: stats.pushed,
                        live: stats.live,
                        deferred,
                        lifetime_s: None,
                        oldest_live_s: None,
                        oldest_live_lower_bound: false,
                    });
                    merged.len() - 1
                }
            };
            site_lifetimes.add(at, pc);
        }
        site_lifetimes.fill(&mut merged);
        merged.sort_by(|a, b| b.live.cmp(&a.live).then(b.pushed.cmp(&a.pushed)));
        let findings = self.findings(sym, inputs, &merged, &leak_groups);
        Snapshot {
            time: inputs.time.clone(),
            pid: info.pid,
            exe: info.exe.clone(),
            container: info.container.clone(),
            go_version: info.go_version.clone(),
            arch: info.arch.clone(),
            probes: info.probes.clone(),
            totals: self.totals.clone(),
            goroutines,
            defer_sites: merged,
            leaks: leak_groups,
            leak_scan: self.last_leak_scan.as_ref().map(|scan| LeakScanView {
                last_s_ago: inputs.now_ns.saturating_sub(scan.t_end_ns) as f64 / 1e9,
                duration_s: scan.t_end_ns.saturating_sub(scan.t_start_ns) as f64 / 1e9,
                bytes_read: scan.bytes_read,
                objects_marked: scan.objects_marked,
                stacks_precise: scan.stacks_precise,
                stacks_conservative: scan.stacks_conservative,
                spans: scan.spans,
                heap_traced: scan.heap_traced,
                scans: self.leak_scans,
                failures: self.leak_scan_failures,
                error: scan.error.clone(),
            }),
            leak_after_s: inputs.leak_after_ns as f64 / 1e9,
            probe_hits: inputs.probe_hits.clone(),
            trace_uptime_s: inputs.trace_uptime_s,
            memory_read_s: self.memory_read_s,
            target_exited: false,
            mode: inputs.mode,
            overhead: inputs.overhead.clone(),
            estimated: self.estimated.iter().map(|s| (*s).to_owned()).collect(),
            process: inputs.process.clone(),
            findings,
        }
    }
}

/// The innermost frame of a blocked goroutine outside the blocking
/// machinery (runtime, sync): the line a user would look at.
/// (`sync.Mutex.Lock` inlined into the caller is machinery too, so this
/// looks through inlined frames.)
fn blocking_site(stack: &[u64], sym: &mut dyn Symbolizer) -> Option<Site> {
    stack
        .iter()
        .enumerate()
        .flat_map(|(i, &pc)| sym.frames(pc, i > 0))
        .find(|site| !is_blocking_machinery(&site.function))
}

fn symbolize_stack(stack: &[u64], sym: &mut dyn Symbolizer) -> Vec<Site> {
    stack
        .iter()
        .enumerate()
        .flat_map(|(i, &pc)| {
            let frames = sym.frames(pc, i > 0);
            if frames.is_empty() { vec![Site::new(&format!("{pc:#x}"), "", 0)] } else { frames }
        })
        .collect()
}

/// A chain grouped into runs of the same site, newest first.
fn defer_chain(sites_oldest_first: &[u64], sym: &mut dyn Symbolizer) -> Vec<model::DeferChainEntry> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &pc in sites_oldest_first.iter().rev() {
        match runs.last_mut() {
            Some((last, count)) if *last == pc => *count += 1,
            _ => runs.push((pc, 1)),
        }
    }
    runs.into_iter().map(|(pc, count)| model::DeferChainEntry { site: sym.call_site(pc), count }).collect()
}

#[cfg(test)]
mod tests;
