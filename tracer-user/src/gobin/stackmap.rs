//! A stack frame's pointer maps, from the pclntab and its funcdata: what Go's
//! own collector reads to scan a goroutine's stack precisely (runtime
//! `stkframe.getStackMap`; the same formats from Go 1.19 to 1.27):
//!
//! ```text
//! pcsp            pc-value table: the frame size (SP delta) at each PC
//! PCDATA 1        pc-value table: the stack map index at each call
//! FUNCDATA 0/1    args / locals maps: n i32 | nbit i32 | n × ⌈nbit/8⌉ bytes
//! FUNCDATA 2      stack objects: n u64 | n × {off i32, size i32,
//!                 ptrdata i32, gcdataoff u32}
//! ```
//!
//! Special frames are recognised by name: funcIDs are renumbered between
//! Go versions, names are not.

use super::GoBinary;
use super::reader::{i32_at, u32_at, u64_at};

const PCDATA_STACK_MAP_INDEX: u32 = 1;
const FUNCDATA_ARGS_POINTER_MAPS: u32 = 0;
const FUNCDATA_LOCALS_POINTER_MAPS: u32 = 1;
const FUNCDATA_STACK_OBJECTS: u32 = 2;
/// `abi.ArgsSizeUnknown`: reflect's call stubs, whose arguments only the
/// runtime knows.
const ARGS_SIZE_UNKNOWN: i32 = i32::MIN;
/// `abi.FuncFlagTopFrame`: the outermost frame (`runtime.goexit`).
const FUNC_FLAG_TOP_FRAME: u8 = 1;
/// `abi.FuncFlagSPWrite`: writes SP other than by the frame's own
/// adjustment: no SP delta holds above it.
const FUNC_FLAG_SPWRITE: u8 = 2;
/// Bounds believed from the binary (a corrupt table must not allocate
/// gigabytes).
const MAX_MAP_BITS: i32 = 1 << 20;
const MAX_STACK_OBJECTS: u64 = 1 << 12;

/// Which words of a frame region hold live pointers (`runtime.bitvector`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PointerMap {
    pub words: u32,
    pub bits: Vec<u8>,
}

impl PointerMap {
    pub fn is_pointer(&self, word: u32) -> bool {
        word < self.words && self.bits.get(word as usize / 8).is_some_and(|b| b & (1 << (word % 8)) != 0)
    }
}

/// An address-taken local or argument: scanned only when a live pointer on
/// the stack points into it (Go's `stackObjectRecord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackObject {
    /// From `varp` when negative, from `argp` otherwise.
    pub off: i32,
    pub size: u32,
}

/// What scanning one frame at one PC needs.
#[derive(Clone, Debug, Default)]
pub struct FrameMaps {
    /// Frame size at the PC: SP + delta is the caller's SP, less the return
    /// address on x86.
    pub sp_delta: u64,
    /// The outermost frame: nothing above it.
    pub top: bool,
    /// SP is written by hand: no caller frame can be found above it.
    pub spwrite: bool,
    /// Why this frame cannot be scanned precisely (asynchronous preemption
    /// and signal frames hold registers, reflect stubs have untyped
    /// arguments): the whole stack is then scanned conservatively.
    pub unsupported: Option<&'static str>,
    /// Argument size in bytes (from `_func.args`).
    pub args_size: u32,
    /// Live pointers among the locals below `varp` (None: no locals map).
    pub locals: Option<PointerMap>,
    /// Live pointers among the arguments from `argp` (None: no args map).
    pub args: Option<PointerMap>,
    pub objects: Vec<StackObject>,
}

/// Frames whose contents only the runtime knows how to scan.
fn unsupported_frame(name: &str) -> Option<&'static str> {
    match name {
        "runtime.asyncPreempt" => Some("asynchronously preempted"),
        "runtime.sigpanic" => Some("in a signal panic"),
        "runtime.morestack" | "runtime.morestack_noctxt" => Some("growing its stack"),
        "reflect.makeFuncStub" | "reflect.methodValueCall" => Some("in a reflect call stub"),
        _ if name.starts_with("runtime.debugCall") => Some("in a debugger call"),
        _ => None,
    }
}

impl GoBinary {
    /// The pointer maps of the frame of the function holding `pc` (a static
    /// address) stopped at `pc`, a call's return address or a function
    /// entry. None: no function there, or its tables cannot be read.
    pub fn frame_maps(&self, pc: u64) -> Option<FrameMaps> {
        let (pcln, data) = (&self.pcln, &self.data[..]);
        let f = pcln.find_func(data, pc)?;
        let name = pcln.func_name(data, &f)?;
        let flag = f.flag()?;
        let sp_delta = u64::try_from(pcln.pcvalue(data, f.pcsp()?, f.entry, pc)?).ok()?;
        let args = f.args()?;
        let mut maps = FrameMaps {
            sp_delta,
            top: flag & FUNC_FLAG_TOP_FRAME != 0 || name == "runtime.goexit",
            spwrite: flag & FUNC_FLAG_SPWRITE != 0,
            unsupported: unsupported_frame(name).or((args == ARGS_SIZE_UNKNOWN).then_some("untyped arguments")),
            args_size: u32::try_from(args).unwrap_or(0),
            ..FrameMaps::default()
        };
        // The map index at the call (the PC before the return address); at
        // the entry, or with no index there, the first map (as Go does).
        let index = if pc == f.entry {
            0
        } else {
            f.pcdata(PCDATA_STACK_MAP_INDEX)
                .and_then(|table| pcln.pcvalue(data, table, f.entry, pc - 1))
                .filter(|&i| i >= 0)
                .unwrap_or(0)
        };
        let gofunc = pcln.gofunc?;
        let map = |which: u32| -> Option<Option<PointerMap>> {
            let Some(off) = f.funcdata(which) else { return Some(None) };
            let at = gofunc.checked_add(u64::from(off))?;
            let header = self.elf.read_vaddr(data, at, 8)?;
            let (n, nbit) = (i32_at(header, 0)?, i32_at(header, 4)?);
            if n <= 0 || !(0..=MAX_MAP_BITS).contains(&nbit) || index >= n {
                return None; // Go throws "bad symbol table" here
            }
            let len = (nbit as u64).div_ceil(8);
            let bits = self.elf.read_vaddr(data, at + 8 + index as u64 * len, len as usize)?;
            Some(Some(PointerMap { words: nbit as u32, bits: bits.to_vec() }))
        };
        maps.locals = map(FUNCDATA_LOCALS_POINTER_MAPS)?;
        maps.args = map(FUNCDATA_ARGS_POINTER_MAPS)?;
        if let Some(off) = f.funcdata(FUNCDATA_STACK_OBJECTS) {
            let at = gofunc.checked_add(u64::from(off))?;
            let n = u64_at(self.elf.read_vaddr(data, at, 8)?, 0)?;
            if n > MAX_STACK_OBJECTS {
                return None;
            }
            let records = self.elf.read_vaddr(data, at + 8, (n * 16) as usize)?;
            for r in records.chunks_exact(16) {
                maps.objects.push(StackObject { off: i32_at(r, 0)?, size: u32_at(r, 4)? });
            }
        }
        Some(maps)
    }
}
