//! Deciding which blocked goroutines are stuck, and which are leaked.
//!
//! A goroutine is **stuck** when it has stayed blocked on a concurrency
//! primitive (channel, select, lock, cond, WaitGroup, semaphore: see
//! `goruntime::wait`) without running for at least `--leak-after`. That is a
//! symptom: a lifecycle goroutine waiting for a shutdown is stuck too.
//! A stuck goroutine is **leaked** when it is proven: two consecutive
//! reachability scans (`process::reachability`) found the primitive it waits
//! on unreachable from every goroutine that may still run, and it has not run
//! since the first of them (same `trackingSeq`, wait reason and saved PC,
//! also at the time of the snapshot). See [`Prover`]. The runtime's own
//! goroutines and the main goroutine (parked for good by design in servers:
//! `select {}`) are never either (`goruntime::goroutines`).
//!
//! "Without running" needs a sound signal: a healthy consumer that wakes every
//! 100 ms and parks again at the same line looks identical in a snapshot (same
//! status, wait reason, saved PC and SP). Two fields of the `g` settle it:
//! - `g.trackingSeq` is incremented by `casgstatus` on every transition out
//!   of `_Grunning` (runtime/proc.go), so it changes whenever the goroutine ran
//!   between two reads (it is a uint8: a goroutine that ran a multiple of 256
//!   times between two reads looks unchanged for that one interval, which
//!   only shortens its apparent age on the next change, never makes it leak);
//! - `g.waitsince` is zeroed by `execute` whenever the goroutine runs and set
//!   by the GC to the GC's start time when it finds it blocked, so a non-zero
//!   value is a lower bound on how long it has been blocked — which gives an
//!   age to goroutines blocked since before deferscope attached.
//!
//! `g.waitsince` alone is not enough (it stays 0 until a GC runs). A
//! goroutine's block starts at the first read that shows it blocked with a
//! given signature; any change of the signature restarts it.

/// What must stay the same for a goroutine to count as not having run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSignature {
    pub wait_reason: u8,
    pub sched_pc: u64,
    pub sched_sp: u64,
    pub tracking_seq: Option<u8>,
}

/// A retaining path in words, root first, one string per step, each
/// starting with its kind (`global`, `goroutine N stack`, `special`, `heap`,
/// `off-heap`, `unknown`) so that scripts can split on the first space; the
/// primitive's step ends with " (primitive)". Globals are named by
/// `.symtab` symbol (`global main.registry+0x18`) or, stripped, by section
/// and offset (`global .bss+0x1234`); a stack by the frame's function and
/// line (pclntab, stripped or not); heap objects by address, size and the
/// offset of the word pointing onwards.
pub(crate) fn describe_retaining_path(path: &[RetainStep], sym: &mut dyn Symbolizer) -> Vec<String> {
    let mut words: Vec<String> = Vec::with_capacity(path.len());
    for step in path {
        words.push(match *step {
            RetainStep::Global { addr } => match sym.global_at(addr) {
                Some(name) => format!("global {name}"),
                None => format!("global {addr:#x}"),
            },
            RetainStep::Stack { goid, frame: None } => format!("goroutine {goid} stack"),
            RetainStep::Stack { goid, frame: Some((pc, is_return_address)) } => {
                match sym.frames(pc, is_return_address).last() {
                    Some(site) => format!("goroutine {goid} stack: {} ({}:{})", site.function, site.file, site.line),
                    None => format!("goroutine {goid} stack: pc {pc:#x}"),
                }
            }
            RetainStep::Special { addr } => format!("special {addr:#x}"),
            RetainStep::Object { start, size, offset } => format!("heap {start:#x} ({size} B) +{offset:#x}"),
            // A primitive outside the heap is a global's word (a global
            // sync.Mutex) or off-heap memory: named when it is a global.
            RetainStep::OffHeap { addr } => match sym.global_at(addr) {
                Some(name) => format!("global {name}"),
                None => format!("off-heap {addr:#x}"),
            },
            RetainStep::Unknown { addr } => format!("unknown {addr:#x}"),
        });
    }
    if let Some(last) = words.last_mut() {
        last.push_str(" (primitive)");
    }
    words
}

/// The block a goroutine is in, as far as deferscope can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub signature: BlockSignature,
    /// CLOCK_MONOTONIC ns since which it has been blocked without running.
    pub since_ns: u64,
}

/// Folds one memory read of a waiting goroutine into its block.
/// `read_start_ns` is when the read began; `waitsince` is `g.waitsince`.
pub fn next_block(previous: Option<Block>, signature: BlockSignature, read_start_ns: u64, waitsince: i64) -> Block {
    let mut since_ns = match previous {
        Some(b) if b.signature == signature => b.since_ns,
        _ => read_start_ns,
    };
    if waitsince > 0 {
        since_ns = since_ns.min(waitsince as u64);
    }
    Block { signature, since_ns }
}

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use crate::process::reachability::{LeakScan, ParkSignature, RetainStep};

use super::Symbolizer;

/// A leak proof: the goroutine's primitive was unreachable in two
/// consecutive scans, with the goroutine unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    pub signature: ParkSignature,
    pub reason: &'static str,
    /// Start of the first scan that found it unreachable (CLOCK_MONOTONIC).
    pub since_ns: u64,
}

impl Proof {
    /// Whether the goroutine, as last read, is still exactly as proven.
    pub fn holds_for(&self, wait_reason: u8, block: Option<&Block>) -> bool {
        block.is_some_and(|b| {
            b.signature.tracking_seq == Some(self.signature.tracking_seq)
                && b.signature.sched_pc == self.signature.sched_pc
                && b.signature.wait_reason == self.signature.wait_reason
        }) && wait_reason == self.signature.wait_reason
    }
}

/// Turns reachability scans into proofs: a goroutine is proven when two
/// consecutive successful scans found it unreachable with the same
/// signature. A scan that fails breaks the sequence; a successful scan that
/// finds a proven goroutine reachable withdraws its proof.
#[derive(Debug, Default)]
pub struct Prover {
    /// Unreachable in the last successful scan: signature, reason, since.
    candidates: HashMap<u64, Proof>,
    proven: HashMap<u64, Proof>,
}

impl Prover {
    pub fn apply(&mut self, scan: &LeakScan) {
        if scan.error.is_some() {
            self.candidates.clear();
            return;
        }
        let mut next = HashMap::default();
        for u in &scan.unreachable {
            let since_ns = match self.candidates.get(&u.goid) {
                Some(c) if c.signature == u.signature => {
                    let proof = Proof { signature: u.signature, reason: u.reason, since_ns: c.since_ns };
                    self.proven.insert(u.goid, proof);
                    c.since_ns
                }
                _ => scan.t_start_ns,
            };
            next.insert(u.goid, Proof { signature: u.signature, reason: u.reason, since_ns });
        }
        self.proven.retain(|goid, p| next.get(goid).is_some_and(|c| c.signature == p.signature));
        self.candidates = next;
    }

    /// Found unreachable by the last scan, not yet confirmed.
    pub fn is_candidate(&self, goid: u64) -> bool {
        self.candidates.contains_key(&goid) && !self.proven.contains_key(&goid)
    }

    pub fn proof(&self, goid: u64) -> Option<&Proof> {
        self.proven.get(&goid)
    }

    /// Forgets goroutines that no longer exist.
    pub fn retain(&mut self, alive: impl Fn(u64) -> bool) {
        self.proven.retain(|goid, _| alive(*goid));
        self.candidates.retain(|goid, _| alive(*goid));
    }
}

/// How far back a group's growth is measured.
pub const GROWTH_WINDOW_NS: u64 = 5 * 60 * 1_000_000_000;
/// A shorter history says nothing about growth.
pub const GROWTH_MIN_SPAN_NS: u64 = 10 * 1_000_000_000;

/// The sizes of one group over the recent window, from its first appearance.
#[derive(Debug, Default)]
pub struct GroupHistory {
    samples: VecDeque<(u64, u64)>,
}

impl GroupHistory {
    /// Records the group's size now; returns (growing, members per minute).
    /// Growing: the group is bigger now than at the start of the window,
    /// which spans at least [`GROWTH_MIN_SPAN_NS`].
    pub fn record(&mut self, now_ns: u64, count: u64) -> (bool, f64) {
        if self.samples.back().is_none_or(|&(t, _)| t < now_ns) {
            self.samples.push_back((now_ns, count));
        }
        while self.samples.len() > 2
            && self.samples.get(1).is_some_and(|&(t, _)| now_ns.saturating_sub(t) >= GROWTH_WINDOW_NS)
        {
            self.samples.pop_front();
        }
        let Some(&(t0, c0)) = self.samples.front() else { return (false, 0.0) };
        let span = now_ns.saturating_sub(t0);
        if span < GROWTH_MIN_SPAN_NS {
            return (false, 0.0);
        }
        let per_min = (count as f64 - c0 as f64) / (span as f64 / 60e9);
        (count > c0, if count > c0 { per_min } else { per_min.min(0.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::reachability::Unreachable;

    fn psig(seq: u8) -> ParkSignature {
        ParkSignature { raw_status: 4, wait_reason: 14, sched_pc: 0x10, tracking_seq: seq }
    }

    fn leak_scan(t: u64, unreachable: &[(u64, u8)]) -> LeakScan {
        LeakScan {
            t_start_ns: t,
            unreachable: unreachable
                .iter()
                .map(|&(goid, seq)| Unreachable { goid, signature: psig(seq), reason: "channel unreachable" })
                .collect(),
            ..LeakScan::default()
        }
    }

    #[test]
    fn proofs_need_two_consecutive_scans_of_an_unchanged_goroutine() {
        let mut p = Prover::default();
        p.apply(&leak_scan(100, &[(5, 1), (6, 1)]));
        assert!(p.proof(5).is_none(), "one scan proves nothing");
        // 6 ran in between (trackingSeq moved): start over.
        p.apply(&leak_scan(200, &[(5, 1), (6, 2)]));
        assert_eq!(p.proof(5).map(|x| x.since_ns), Some(100));
        assert!(p.proof(6).is_none());
        // A failed scan breaks the sequence but keeps proofs.
        p.apply(&LeakScan { error: Some("torn".into()), ..LeakScan::default() });
        p.apply(&leak_scan(400, &[(5, 1), (6, 2)]));
        assert!(p.proof(6).is_none());
        assert!(p.proof(5).is_some());
        // Found reachable by a later scan: the proof is withdrawn.
        p.apply(&leak_scan(500, &[(6, 2)]));
        assert!(p.proof(5).is_none());
        assert!(p.proof(6).is_some());
    }

    #[test]
    fn a_proof_holds_only_while_the_goroutine_has_not_run() {
        let proof = Proof { signature: psig(1), reason: "nil channel", since_ns: 0 };
        let block = |seq: u8| Block {
            signature: BlockSignature { wait_reason: 14, sched_pc: 0x10, sched_sp: 0, tracking_seq: Some(seq) },
            since_ns: 0,
        };
        assert!(proof.holds_for(14, Some(&block(1))));
        assert!(!proof.holds_for(14, Some(&block(2))));
        assert!(!proof.holds_for(14, None));
    }

    #[test]
    fn growth_over_the_window() {
        let s = 1_000_000_000;
        let mut h = GroupHistory::default();
        assert_eq!(h.record(0, 10), (false, 0.0));
        assert_eq!(h.record(5 * s, 15), (false, 0.0), "too short to tell");
        assert_eq!(h.record(30 * s, 40), (true, 60.0));
        // Stable afterwards: growth fades once the window moves past it.
        let mut h = GroupHistory::default();
        for t in 0..20 {
            h.record(t * 60 * s, 14);
        }
        assert_eq!(h.record(20 * 60 * s, 14), (false, 0.0));
    }

    fn sig(seq: u8) -> BlockSignature {
        BlockSignature { wait_reason: 14, sched_pc: 0x10, sched_sp: 0x20, tracking_seq: Some(seq) }
    }

    #[test]
    fn unchanged_signature_keeps_the_start() {
        let b = next_block(None, sig(1), 100, 0);
        assert_eq!(b.since_ns, 100);
        let b = next_block(Some(b), sig(1), 200, 0);
        assert_eq!(b.since_ns, 100);
    }

    #[test]
    fn running_in_between_restarts_the_block() {
        // A consumer woken every 100 ms: same place, but trackingSeq moved.
        let b = next_block(None, sig(1), 100, 0);
        let b = next_block(Some(b), sig(4), 200, 0);
        assert_eq!(b.since_ns, 200);
    }

    #[test]
    fn waitsince_dates_blocks_from_before_attach() {
        let b = next_block(None, sig(1), 5_000, 1_000);
        assert_eq!(b.since_ns, 1_000);
    }
}
