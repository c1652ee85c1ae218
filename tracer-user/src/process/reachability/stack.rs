//! Precise scanning of a parked goroutine's stack, as Go's collector does it
//! (`scanstack`, `scanframeworker`): frame by frame from the saved PC and
//! SP, only the words the compiler's stack maps say hold live pointers at
//! each frame's call, plus the address-taken locals (stack objects) a live
//! pointer reaches.
//!
//! A conservative scan reads every word from SP up, and a word left over in
//! a frame slot the function no longer uses (a dead goroutine's stack reused
//! for a new one keeps its old contents) can hold a primitive's address
//! long after the last goroutine that used it: one stale `*sync.Cond` in a
//! stuck goroutine's frame kept 7 leaked Cond waiters "stuck" in CI. Any
//! frame the maps do not describe (asynchronous preemption, a signal, a
//! reflect stub, a table that does not fit) makes the caller fall back to
//! the conservative scan: it errs towards reachable.
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap as HashMap;

use crate::gobin::{FrameMaps, GoBinary};

/// Deepest stack walked; deeper stacks are scanned conservatively.
const MAX_FRAMES: usize = 4096;

/// Distinct PCs whose maps are kept between scans (a server's goroutines
/// park at a few hundred call sites; past this the cache starts over).
const MAX_CACHED_PCS: usize = 1 << 16;

/// Pointer maps by runtime PC.
pub(crate) trait FrameSource: std::fmt::Debug + Send + Sync {
    fn frame_maps(&self, pc: u64) -> Option<Arc<FrameMaps>>;
}

/// A target's frames: its binary's tables, at its load bias, decoded once
/// per PC (100k goroutines parked in the same few functions share them).
#[derive(Debug)]
pub(crate) struct BinaryFrames {
    binary: Arc<GoBinary>,
    bias: u64,
    cache: Mutex<HashMap<u64, Option<Arc<FrameMaps>>>>,
}

impl BinaryFrames {
    pub fn new(binary: Arc<GoBinary>, bias: u64) -> Self {
        Self { binary, bias, cache: Mutex::default() }
    }
}

impl FrameSource for BinaryFrames {
    fn frame_maps(&self, pc: u64) -> Option<Arc<FrameMaps>> {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(maps) = cache.get(&pc) {
            return maps.clone();
        }
        if cache.len() >= MAX_CACHED_PCS {
            cache.clear();
        }
        let maps = self.binary.frame_maps(pc.wrapping_sub(self.bias)).map(Arc::new);
        cache.insert(pc, maps.clone());
        maps
    }
}

/// How a target's frames are found and laid out.
#[derive(Clone, Debug)]
pub(crate) struct StackFrames {
    pub source: Arc<dyn FrameSource>,
    /// arm64: the return address is in a link register, saved at the
    /// callee's SP; x86-64: pushed by CALL just above the callee's frame.
    pub uses_lr: bool,
}

impl StackFrames {
    /// `sys.MinFrameSize`: the saved LR below the arguments on arm64.
    fn min_frame(&self) -> u64 {
        if self.uses_lr { 8 } else { 0 }
    }

    /// Bitmap over the words of `stack` (the bytes from `sp` to the stack's
    /// top) of those holding live pointers for a goroutine parked at `pc`;
    /// `Err`: why the stack cannot be scanned precisely.
    pub fn live_pointer_words(&self, stack: &[u8], sp: u64, pc: u64) -> Result<Vec<u8>, &'static str> {
        let hi = sp + stack.len() as u64;
        let word = |addr: u64| -> Option<u64> {
            let off = usize::try_from(addr.checked_sub(sp)?).ok()?;
            Some(u64::from_le_bytes(stack.get(off..off.checked_add(8)?)?.try_into().ok()?))
        };
        let mut mask = vec![0u8; (stack.len() / 8).div_ceil(8)];
        let set = |mask: &mut [u8], addr: u64| -> Result<(), &'static str> {
            if addr < sp || addr + 8 > hi || !addr.is_multiple_of(8) {
                return Err("a pointer map outside the stack");
            }
            let i = ((addr - sp) / 8) as usize;
            mask[i / 8] |= 1 << (i % 8);
            Ok(())
        };
        let mut objects: Vec<(u64, u64)> = Vec::new();
        let (mut frame_pc, mut frame_sp) = (pc, sp);
        let mut depth = 0;
        loop {
            if depth == MAX_FRAMES {
                return Err("too many frames");
            }
            let f = self.source.frame_maps(frame_pc).ok_or("a frame without pointer maps")?;
            if let Some(why) = f.unsupported {
                return Err(why);
            }
            if f.spwrite && depth > 0 {
                return Err("a frame that writes SP");
            }
            // runtime.(*unwinder).resolveInternal.
            let fp = frame_sp.saturating_add(f.sp_delta).saturating_add(if self.uses_lr { 0 } else { 8 });
            if !f.sp_delta.is_multiple_of(8) {
                return Err("a frame size that is not whole words");
            }
            if fp > hi {
                return Err("a frame past the stack's top");
            }
            let lr = match (f.top, self.uses_lr) {
                (true, _) => 0,
                (false, true) => word(frame_sp).ok_or("a return address outside the stack")?,
                (false, false) => word(fp - 8).ok_or("a return address outside the stack")?,
            };
            let mut varp = if self.uses_lr { fp } else { fp - 8 };
            if varp > frame_sp {
                varp -= 8; // the saved frame pointer
            }
            let argp = fp + self.min_frame();
            // runtime.(*stkframe).getStackMap.
            let size = varp.saturating_sub(frame_sp);
            // Go compares with the stack alignment on arm64 (16: the saved
            // LR and padding), with the minimum frame size elsewhere (0).
            if size > if self.uses_lr { 16 } else { 0 } {
                match &f.locals {
                    Some(m) => {
                        let base = varp.checked_sub(8 * u64::from(m.words)).filter(|&b| b >= frame_sp);
                        let base = base.ok_or("a locals map larger than its frame")?;
                        for i in (0..m.words).filter(|&i| m.is_pointer(i)) {
                            set(&mut mask, base + 8 * u64::from(i))?;
                        }
                    }
                    None => return Err("a frame without a locals map"),
                }
            }
            if f.args_size >= 8 {
                let m = f.args.as_ref().ok_or("arguments without a map")?;
                for i in (0..m.words).filter(|&i| m.is_pointer(i)) {
                    set(&mut mask, argp + 8 * u64::from(i))?;
                }
            }
            for o in &f.objects {
                let base = if o.off < 0 {
                    varp.checked_sub(u64::from(o.off.unsigned_abs()))
                } else {
                    argp.checked_add(o.off as u64)
                };
                objects.push((base.ok_or("a stack object outside the stack")?, u64::from(o.size)));
            }
            depth += 1;
            if f.top || lr == 0 {
                break;
            }
            (frame_pc, frame_sp) = (lr, fp);
            if frame_sp >= hi {
                break;
            }
        }
        // Stack objects live when a live word points into them, and what
        // they point to in turn (scanned whole: errs towards reachable).
        let mut scanned = vec![false; objects.len()];
        loop {
            let mut grew = false;
            for (j, &(start, size)) in objects.iter().enumerate() {
                if scanned[j] {
                    continue;
                }
                let reached = (0..stack.len() / 8).any(|i| {
                    mask[i / 8] & (1 << (i % 8)) != 0
                        && word(sp + 8 * i as u64).is_some_and(|v| v >= start && v < start.saturating_add(size))
                });
                if reached {
                    scanned[j] = true;
                    grew = true;
                    let first = start.next_multiple_of(8).max(sp);
                    for addr in (first..start.saturating_add(size).min(hi)).step_by(8) {
                        if addr + 8 <= hi {
                            set(&mut mask, addr)?;
                        }
                    }
                }
            }
            if !grew {
                return Ok(mask);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gobin::{PointerMap, StackObject};

    #[derive(Debug, Default)]
    struct FakeFrames(HashMap<u64, FrameMaps>);

    impl FrameSource for FakeFrames {
        fn frame_maps(&self, pc: u64) -> Option<Arc<FrameMaps>> {
            self.0.get(&pc).cloned().map(Arc::new)
        }
    }

    fn map(words: u32, live: &[u32]) -> PointerMap {
        let mut bits = vec![0u8; (words as usize).div_ceil(8)];
        for &i in live {
            bits[i as usize / 8] |= 1 << (i % 8);
        }
        PointerMap { words, bits }
    }

    const SP: u64 = 0x1000;

    /// x86-64, three frames: an innermost one at pc 0x10 (frame 0x18 below
    /// its return address), its caller at 0x20 (0x28, one pointer argument,
    /// a 16-byte stack object) and goexit at 0x30.
    fn frames() -> FakeFrames {
        let mut f = FakeFrames::default();
        f.0.insert(0x10, FrameMaps { sp_delta: 0x18, locals: Some(map(2, &[1])), ..FrameMaps::default() });
        f.0.insert(
            0x20,
            FrameMaps {
                sp_delta: 0x28,
                locals: Some(map(4, &[0])),
                args_size: 8,
                args: Some(map(1, &[0])),
                objects: vec![StackObject { off: -0x10, size: 16 }],
                ..FrameMaps::default()
            },
        );
        f.0.insert(0x30, FrameMaps { top: true, ..FrameMaps::default() });
        f
    }

    fn stack() -> Vec<u8> {
        let mut words = [0xdead_u64; 16];
        words[3] = 0x20; // return address of the innermost frame (fp 0x1020)
        words[4] = SP + 0x38; // the caller's live local: into its stack object
        words[9] = 0x30; // the caller's return address (fp 0x1050)
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    fn live(mask: &[u8]) -> Vec<u64> {
        (0..mask.len() * 8).filter(|&i| mask[i / 8] & (1 << (i % 8)) != 0).map(|i| SP + 8 * i as u64).collect()
    }

    #[test]
    fn only_live_slots_and_reached_stack_objects_are_pointers() {
        let frames = StackFrames { source: Arc::new(frames()), uses_lr: false };
        let mask = frames.live_pointer_words(&stack(), SP, 0x10).expect("precise");
        // 0x1000 (a dead local), the saved frame pointers and return
        // addresses are not; the stack object at 0x1030 is, reached from
        // the local at 0x1020; the argument at 0x1050 is.
        assert_eq!(live(&mask), vec![0x1008, 0x1020, 0x1030, 0x1038, 0x1050]);
    }

    #[test]
    fn frames_the_maps_do_not_describe_fall_back() {
        let mut source = frames();
        source.0.get_mut(&0x20).expect("frame").unsupported = Some("asynchronously preempted");
        let frames = StackFrames { source: Arc::new(source), uses_lr: false };
        assert_eq!(frames.live_pointer_words(&stack(), SP, 0x10), Err("asynchronously preempted"));
        let mut source = self::frames();
        source.0.get_mut(&0x20).expect("frame").locals = None;
        let frames = StackFrames { source: Arc::new(source), uses_lr: false };
        assert_eq!(frames.live_pointer_words(&stack(), SP, 0x10), Err("a frame without a locals map"));
        let frames = StackFrames { source: Arc::new(self::frames()), uses_lr: false };
        assert_eq!(frames.live_pointer_words(&stack(), SP, 0x40), Err("a frame without pointer maps"));
        // A frame reaching past the stack's top.
        assert_eq!(frames.live_pointer_words(&stack()[..0x40], SP, 0x10), Err("a frame past the stack's top"));
    }
}
