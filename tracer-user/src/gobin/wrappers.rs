//! What a deferred function value will run, through the compiler's wrappers.
//!
//! A `_defer` record's `fn` is a funcval whose code is rarely the function
//! the user deferred. The compiler wraps every deferred call with arguments
//! or a receiver in a closure (cmd/compile/internal/walk `wrapGoDefer`,
//! `main.work.deferwrap1` since Go 1.22, an anonymous `main.work.func2`
//! before), and a method value is a `-fm` wrapper. The wrapper's code calls
//! the real function, or inlines it (then some instruction of the wrapper
//! belongs to the inlined callee in the inline tree). So a wrapper is read by
//! decoding it, instruction by instruction: the first call into a function
//! that is not runtime plumbing (stack growth, write barriers), or the first
//! instruction of an inlined callee, names the deferred function.
//!
//! A real closure (`defer func() { … }()`) reads as itself. Before Go 1.22
//! defer wrappers and closures share the `funcN` names; a wrapper is then
//! recognised by its code sitting entirely at the `defer` statement's line
//! (a one-line closure `defer func() { f.Close() }()` reads as `f.Close`,
//! which is what it runs). A pre-1.22 wrapper around a deferred func *value*
//! with arguments calls it indirectly; it reads as the wrapper.
use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use yaxpeax_arch::{Decoder as _, U8Reader};
use yaxpeax_arm::armv8::a64::{InstDecoder, Opcode, Operand};

use super::{Arch, GoBinary, SourceLine};

/// Instructions decoded per wrapper at most: wrappers are a few dozen, and a
/// bound keeps a corrupt pclntab (a "function" megabytes long) cheap.
const MAX_WRAPPER_INSNS: usize = 512;

/// One decoded instruction: its address and, for a direct call, the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub pc: u64,
    pub call: Option<u64>,
}

pub(crate) fn amd64_insns(code: &[u8], entry: u64) -> Vec<Insn> {
    let mut out = Vec::new();
    let mut dec = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while dec.can_decode() && out.len() < MAX_WRAPPER_INSNS {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            break;
        }
        let call = (ins.mnemonic() == Mnemonic::Call && ins.op0_kind() == OpKind::NearBranch64)
            .then(|| ins.near_branch_target());
        out.push(Insn { pc: ins.ip(), call });
    }
    out
}

pub(crate) fn arm64_insns(code: &[u8], entry: u64) -> Vec<Insn> {
    let decoder = InstDecoder::default();
    let mut out = Vec::new();
    for (i, word) in code.chunks_exact(4).take(MAX_WRAPPER_INSNS).enumerate() {
        let Some(pc) = entry.checked_add(4 * i as u64) else { break };
        // An undecodable word (data, or a corrupt file) is skipped: arm64
        // instructions are fixed-size, so the next one still lines up.
        let call = match decoder.decode(&mut U8Reader::new(word)) {
            Ok(ins) if ins.opcode == Opcode::BL => match ins.operands[0] {
                Operand::PCOffset(off) => pc.checked_add_signed(off),
                _ => None,
            },
            _ => None,
        };
        out.push(Insn { pc, call });
    }
    out
}

/// How a function value's code is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// A compiler wrapper: read what it calls.
    Wrapper,
    /// `funcN` before Go 1.22: a wrapper if its code sits at one line.
    WrapperIfOneLine,
    /// A function or a real closure: reads as itself.
    Itself,
}

fn shape(name: &str, minor: u32) -> Shape {
    if name.contains(".deferwrap") || name.ends_with("-fm") {
        return Shape::Wrapper;
    }
    let last = name.rsplit('.').next().unwrap_or("");
    let is_func_n = last.strip_prefix("func").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if minor < 22 && is_func_n { Shape::WrapperIfOneLine } else { Shape::Itself }
}

/// Runtime plumbing a wrapper may call or inline before the deferred call:
/// stack growth, write barriers, allocation, conversions, panics. The
/// runtime's exported functions (`runtime.UnlockOSThread`) can be deferred.
fn is_plumbing(function: &str) -> bool {
    function.strip_prefix("runtime.").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '('))
}

impl GoBinary {
    /// The function a deferred function value runs, from its code's static
    /// address (the funcval's first word): through a compiler wrapper to the
    /// function it calls, else the function itself. `file`/`line` are where
    /// that function starts. `None` when `code` is not a function's entry.
    pub fn deferred_call(&self, code: u64) -> Option<SourceLine> {
        let f = self.pcln.find_func(&self.data, code).filter(|f| f.entry == code)?;
        let name = self.pcln.func_name(&self.data, &f)?;
        let itself = || self.function_at_entry(name, f.entry);
        let shape = shape(name, self.version.minor);
        if shape == Shape::Itself {
            return itself();
        }
        let Ok(code_bytes) = self.code(f.entry, f.end) else { return itself() };
        let insns = match self.elf.arch {
            Arch::X86_64 => amd64_insns(&code_bytes, f.entry),
            Arch::Aarch64 => arm64_insns(&code_bytes, f.entry),
        };
        let entry_line = self.symbolize(f.entry).map(|s| s.line);
        for insn in insns {
            let frames = self.symbolize_frames(insn.pc);
            // Innermost first, the wrapper last: the frame before it is the
            // function the wrapper called, inlined.
            if let [.., callee, _wrapper] = frames.as_slice() {
                if !is_plumbing(&callee.function) {
                    return self.function_at_entry(&callee.function, 0).or_else(|| Some(callee.clone()));
                }
            } else if shape == Shape::WrapperIfOneLine
                && frames.first().is_some_and(|frame| Some(frame.line) != entry_line)
            {
                // Code on another line than the `defer`: a real closure.
                return itself();
            }
            if let Some(target) = insn.call {
                let Some(callee) = self.function_name(target) else { continue };
                if !is_plumbing(callee) {
                    return self.function_at_entry(callee, target);
                }
            }
        }
        // Nothing called (an indirect call through a func value, or an
        // empty wrapper): the wrapper is the best name there is.
        itself()
    }

    /// A function's name and where it starts, by entry (or, with entry 0,
    /// by name: an inlined function may also have an out-of-line copy).
    fn function_at_entry(&self, name: &str, entry: u64) -> Option<SourceLine> {
        let entry = if entry == 0 { self.function_entry(name)? } else { entry };
        let start = self.symbolize(entry)?;
        Some(SourceLine { function: name.to_owned(), file: start.file, line: start.line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_by_name_and_version() {
        assert_eq!(shape("main.work.deferwrap1", 22), Shape::Wrapper);
        assert_eq!(shape("main.(*conn).release-fm", 19), Shape::Wrapper);
        assert_eq!(shape("main.work.func2", 21), Shape::WrapperIfOneLine);
        assert_eq!(shape("main.work.func2.1", 21), Shape::Itself);
        assert_eq!(shape("main.work.func2", 22), Shape::Itself);
        assert_eq!(shape("main.work", 19), Shape::Itself);
        assert_eq!(shape("main.function", 19), Shape::Itself);
    }

    #[test]
    fn runtime_plumbing_is_skipped_but_exported_runtime_functions_are_not() {
        assert!(is_plumbing("runtime.morestack"));
        assert!(is_plumbing("runtime.gcWriteBarrier1"));
        assert!(is_plumbing("runtime.(*mheap).alloc"));
        assert!(!is_plumbing("runtime.UnlockOSThread"));
        assert!(!is_plumbing("os.(*File).Close"));
    }

    #[test]
    fn decodes_calls() {
        // CALL rel32 to 0x1000+5+0x10; RET.
        let x86 = [0xe8, 0x10, 0, 0, 0, 0xc3];
        assert_eq!(
            amd64_insns(&x86, 0x1000),
            vec![Insn { pc: 0x1000, call: Some(0x1015) }, Insn { pc: 0x1005, call: None }]
        );
        // bl #+8 ; bl #-4 ; ret
        let words: Vec<u8> = [0x9400_0002u32, 0x97ff_ffff, 0xd65f_03c0].iter().flat_map(|w| w.to_le_bytes()).collect();
        let calls: Vec<_> = arm64_insns(&words, 0x2000).into_iter().map(|i| i.call).collect();
        assert_eq!(calls, vec![Some(0x2008), Some(0x2000), None]);
    }

    #[test]
    fn malformed_code_never_panics() {
        for code in [&[][..], &[0xff; 7][..], &[0xe8, 0xff, 0xff, 0xff][..], &[0x0f; 2000][..]] {
            let _ = amd64_insns(code, u64::MAX - 2);
            let _ = arm64_insns(code, u64::MAX - 2);
        }
        // A call whose target wraps around the address space is dropped.
        assert_eq!(arm64_insns(&0x9400_0002u32.to_le_bytes(), u64::MAX - 3)[0].call, None);
        assert!(amd64_insns(&[0x90; 4000], 0).len() <= MAX_WRAPPER_INSNS);
    }
}

/// On every Go fixture (all versions, arches, stripped or not): the wrapper
/// of `defer func(i int) {…}(i)` in `heapDefers` reads as that closure (Go
/// 1.22+), and the closure reads as itself. (`defer f.Close()`, method
/// values and real closures are checked live by tests/tests/diagnostics.rs.)
#[cfg(test)]
mod fixture_tests {
    use crate::gobin::tests::{fixtures, open};

    #[test]
    #[ignore = "needs the Go fixtures: cargo xtask test"]
    fn defer_wrappers_resolve_on_every_fixture() {
        for fixture in fixtures() {
            let b = open(&fixture);
            let mut wrappers = 0;
            for i in 0..b.pcln.len() {
                let Some(f) = b.pcln.func_at_index(&b.data, i) else { continue };
                let Some(name) = b.pcln.func_name(&b.data, &f) else { continue };
                if !name.starts_with("main.heapDefers.") {
                    continue;
                }
                let deferred = b.deferred_call(f.entry).map(|s| s.function);
                // Before Go 1.22 the wrapper captures the closure as a func
                // value and calls it indirectly: only memory could tell, so
                // it reads as itself.
                let expected = if b.version.minor < 22 { name } else { "main.heapDefers.func1" };
                assert_eq!(deferred.as_deref(), Some(expected), "{}: {name}", fixture.path.display());
                wrappers += usize::from(name != "main.heapDefers.func1");
            }
            assert!(wrappers >= 1, "{}: no defer wrapper in heapDefers", fixture.path.display());
        }
    }
}
