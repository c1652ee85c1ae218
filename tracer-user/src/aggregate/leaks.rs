//! Deciding which blocked goroutines are leaked, from outside the process.
//!
//! A goroutine is leaked when it has stayed blocked on a concurrency
//! primitive (channel, select, lock, cond, WaitGroup, semaphore: see
//! `goruntime::wait`) without running for at least `--leak-after`. The
//! runtime's own goroutines and the main goroutine (parked for good by design
//! in servers: `select {}`) never are (`goruntime::goroutines`).
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

#[cfg(test)]
mod tests {
    use super::*;

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
