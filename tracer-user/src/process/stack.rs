//! Unwinding a goroutine that is not running, from its saved registers
//! (`g.sched`), by following frame pointers (always on for Go on amd64 and
//! arm64).
//!
//! Both architectures lay a Go frame out the same way for this purpose: the
//! frame pointer points at the caller's saved frame pointer, and the word
//! above it is the return address into the caller. `mcall` (through which
//! every parked goroutine went) stores the parking function's frame pointer
//! in `sched.bp` and the return address into it in `sched.pc`.
use crate::process::memory::ReadMemory;

/// Frames kept per goroutine: enough to get past the runtime to user code and
/// a few callers up; deeper stacks are cut (and marked so by the caller).
pub const MAX_FRAMES: usize = 48;

/// Bytes of stack read in one piece from the innermost frame record up: a
/// parked goroutine's frames usually all sit in it, so its stack costs one
/// read instead of one per frame. Records above it are read one by one.
const WINDOW: u64 = 4 << 10;

/// Program counters, innermost first. The first is where the goroutine will
/// resume (`sched.pc`); the others are return addresses.
pub fn unwind<M: ReadMemory + ?Sized>(mem: &M, pc: u64, bp: u64, stack_lo: u64, stack_hi: u64) -> Vec<u64> {
    let mut pcs = Vec::with_capacity(16);
    if pc == 0 {
        return pcs;
    }
    pcs.push(pc);
    let window_len = stack_hi.saturating_sub(bp).min(WINDOW);
    let mut window = vec![0u8; usize::try_from(window_len).unwrap_or(0)];
    if bp < stack_lo || mem.read_exact(bp, &mut window).is_err() {
        window.clear();
    }
    let mut fp = bp;
    // A frame record must lie inside the goroutine's stack, and each caller's
    // record sits above the callee's: anything else means a torn read or the
    // end of the chain.
    while pcs.len() < MAX_FRAMES && fp >= stack_lo && fp.saturating_add(16) <= stack_hi && fp.is_multiple_of(8) {
        let mut record = [0u8; 16];
        let in_window = usize::try_from(fp.saturating_sub(bp)).ok().and_then(|at| window.get(at..at.checked_add(16)?));
        match in_window {
            Some(bytes) => record.copy_from_slice(bytes),
            None if mem.read_exact(fp, &mut record).is_ok() => {}
            None => break,
        }
        let next_fp = u64::from_le_bytes(record[0..8].try_into().unwrap_or_default());
        let ret = u64::from_le_bytes(record[8..16].try_into().unwrap_or_default());
        if ret == 0 {
            break;
        }
        pcs.push(ret);
        if next_fp <= fp {
            break;
        }
        fp = next_fp;
    }
    pcs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::memory::{MemoryImage, ProcessMemory};

    /// Builds a fake stack in our own memory and unwinds it.
    #[test]
    fn follows_frame_records_within_the_stack() {
        // Three frame records: [prev fp, return address].
        let mut stack = vec![0u64; 16];
        let base = stack.as_ptr() as u64;
        let at = |i: usize| base + 8 * i as u64;
        stack[2] = at(6); // frame 0 → frame 1
        stack[3] = 0x1111;
        stack[6] = at(10); // frame 1 → frame 2
        stack[7] = 0x2222;
        stack[10] = 0; // frame 2: caller fp 0 ends the chain after its ret
        stack[11] = 0x3333;
        let mem = ProcessMemory::open(std::process::id()).expect("self mem");
        let pcs = unwind(&mem, 0x9999, at(2), base, base + 8 * 16);
        assert_eq!(pcs, vec![0x9999, 0x1111, 0x2222, 0x3333]);
        // A frame pointer outside the stack bounds stops the walk.
        let pcs = unwind(&mem, 0x9999, at(2), base, at(5));
        assert_eq!(pcs, vec![0x9999, 0x1111]);
        assert!(unwind(&mem, 0, at(2), base, base + 128).is_empty());
        drop(stack);
    }

    /// The same walk over a memory image; a frame record that points at
    /// itself or runs off the image ends it.
    #[test]
    fn unwinds_a_memory_image() {
        let base = 0x7000_0000u64;
        let mut words = [0u64; 8];
        words[0] = base + 16; // frame 0 → frame 1
        words[1] = 0x1111;
        words[2] = base + 16; // frame 1 → itself: stop after its ret
        words[3] = 0x2222;
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let image = MemoryImage::new(base, &bytes);
        assert_eq!(unwind(&image, 0x9999, base, base, base + 64), vec![0x9999, 0x1111, 0x2222]);
        assert_eq!(unwind(&image, 0x9999, u64::MAX - 7, 0, u64::MAX), vec![0x9999]);
    }
}
