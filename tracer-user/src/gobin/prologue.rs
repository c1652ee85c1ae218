//! Recognising Go's stack-bound check and finding calls, by decoding code.
//!
//! Go functions that may grow the stack start with (cmd/internal/obj/x86/obj6.go
//! and obj/arm64/obj7.go, `stacksplit`):
//!
//! ```text
//! amd64 small:  CMPQ SP, 16(R14)                      ; JBE morestack
//! amd64 large:  LEAQ -N(SP), R12 ; CMPQ R12, 16(R14)  ; JBE morestack
//! amd64 huge:   MOVQ SP, R12 ; SUBQ $N, R12 ; JCS morestack ;
//!               CMPQ R12, 16(R14) ; JBE morestack
//! arm64 small:  MOVD 16(R28), R16 ; CMP R16, RSP                    ; BLS
//! arm64 large:  MOVD 16(R28), R16 ; SUB $N, RSP, R17 ; CMP R16, R17 ; BLS
//! arm64 huge:   MOVD 16(R28), R16 ; SUBS $N, RSP, R17 ; BLO ; CMP R16, R17 ; BLS
//! ```
//!
//! R14/R28 hold `g` and `16(g)` is `g.stackguard0`. (ABI0 assembly on amd64
//! first loads g from TLS, `MOVQ FS:-8, CX`; that form is accepted with the
//! loaded register as g.) When `morestack` returns it jumps back to the
//! function entry, so a probe *after* the branch fires once per call.
//!
//! We accept the pattern only when the compare really reads 16(g) and the
//! branch goes to a block, inside the function, that calls
//! `runtime.morestack*`. Anything else (nosplit functions, which have no
//! check; `CFunc`s comparing against stackguard1 at 24(g); frames so large the
//! assembler materialises the constant in a temporary) yields `None` and the
//! caller probes the entry.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// Instructions to decode after a branch target while looking for the
/// morestack call (the block first spills up to ~15 argument registers).
const MORESTACK_BLOCK_MAX_INSNS: usize = 48;

/// Result of prologue analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prologue {
    /// The stack check was recognised; the probe goes here.
    AfterCheck(u64),
    /// No stack check (nosplit or a function that never grows the stack).
    NoCheck,
    /// The function calls morestack but the check was not recognised.
    Unrecognised,
}

fn decoder(code: &[u8], ip: u64) -> Decoder<'_> {
    Decoder::with_ip(64, code, ip, DecoderOptions::NONE)
}

fn is_mem_g_plus_16(ins: &Instruction, op: u32, g: Register) -> bool {
    ins.op_kind(op) == OpKind::Memory
        && ins.memory_base() == g
        && ins.memory_index() == Register::None
        && ins.memory_displacement64() == 16
        && ins.memory_segment() == Register::DS
}

/// `CMP reg, [g+16]` (in either operand order).
fn is_cmp_guard(ins: &Instruction, reg: Register, g: Register) -> bool {
    ins.mnemonic() == Mnemonic::Cmp
        && ins.op_count() == 2
        && ((ins.op_kind(0) == OpKind::Register && ins.op0_register() == reg && is_mem_g_plus_16(ins, 1, g))
            || (ins.op_kind(1) == OpKind::Register && ins.op1_register() == reg && is_mem_g_plus_16(ins, 0, g)))
}

/// `MOV reg, FS:[-8]`: how ABI0 assembly loads g on linux/amd64.
fn tls_g_load(ins: &Instruction) -> Option<Register> {
    (ins.mnemonic() == Mnemonic::Mov
        && ins.op_kind(0) == OpKind::Register
        && ins.op_kind(1) == OpKind::Memory
        && ins.memory_segment() == Register::FS
        && ins.memory_base() == Register::None
        && ins.memory_index() == Register::None
        && ins.memory_displacement64() == (-8i64) as u64)
        .then(|| ins.op0_register())
}

pub(crate) fn amd64_prologue(code: &[u8], entry: u64, end: u64, is_morestack: &dyn Fn(u64) -> bool) -> Prologue {
    let mut dec = decoder(code, entry);
    let mut insns = Vec::with_capacity(6);
    while dec.can_decode() && insns.len() < 6 {
        let ins = dec.decode();
        if ins.is_invalid() {
            break;
        }
        insns.push(ins);
    }
    let mut i = 0;
    let mut g = Register::R14;
    if let Some(r) = insns.first().and_then(tls_g_load) {
        g = r;
        i = 1;
    }
    let at = |k: usize| insns.get(i + k);
    let mut jbe: Option<&Instruction> = None;
    let mut extra_branch: Option<&Instruction> = None;
    if let (Some(a), Some(b)) = (at(0), at(1)) {
        if is_cmp_guard(a, Register::RSP, g) && b.mnemonic() == Mnemonic::Jbe {
            jbe = Some(b);
        }
    }
    if jbe.is_none() {
        if let (Some(a), Some(b), Some(c)) = (at(0), at(1), at(2)) {
            let lea = a.mnemonic() == Mnemonic::Lea
                && a.op0_register() == Register::R12
                && a.memory_base() == Register::RSP
                && a.memory_index() == Register::None;
            if lea && is_cmp_guard(b, Register::R12, g) && c.mnemonic() == Mnemonic::Jbe {
                jbe = Some(c);
            }
        }
    }
    if jbe.is_none() {
        if let (Some(a), Some(b), Some(c), Some(d), Some(e)) = (at(0), at(1), at(2), at(3), at(4)) {
            let mov = a.mnemonic() == Mnemonic::Mov
                && a.op_kind(0) == OpKind::Register
                && a.op_kind(1) == OpKind::Register
                && a.op0_register() == Register::R12
                && a.op1_register() == Register::RSP;
            let sub = b.mnemonic() == Mnemonic::Sub
                && b.op_kind(0) == OpKind::Register
                && b.op0_register() == Register::R12
                && matches!(b.op_kind(1), OpKind::Immediate32to64 | OpKind::Immediate8to64 | OpKind::Immediate32);
            if mov
                && sub
                && c.mnemonic() == Mnemonic::Jb
                && is_cmp_guard(d, Register::R12, g)
                && e.mnemonic() == Mnemonic::Jbe
            {
                jbe = Some(e);
                extra_branch = Some(c);
            }
        }
    }
    if let Some(j) = jbe {
        let ok_target = |t: u64| t >= entry && t < end && amd64_block_calls(code, entry, t, is_morestack);
        if ok_target(j.near_branch_target()) && extra_branch.is_none_or(|b| ok_target(b.near_branch_target())) {
            return Prologue::AfterCheck(j.next_ip());
        }
    }
    if amd64_calls(code, entry).iter().any(|&(_, t)| is_morestack(t)) {
        Prologue::Unrecognised
    } else {
        Prologue::NoCheck
    }
}

/// Does the straight-line block at address `block` call a morestack function?
fn amd64_block_calls(code: &[u8], entry: u64, block: u64, is_morestack: &dyn Fn(u64) -> bool) -> bool {
    let Some(start) = block.checked_sub(entry).and_then(|o| usize::try_from(o).ok()) else { return false };
    let Some(block_code) = code.get(start..) else { return false };
    let mut dec = decoder(block_code, block);
    for _ in 0..MORESTACK_BLOCK_MAX_INSNS {
        if !dec.can_decode() {
            break;
        }
        let ins = dec.decode();
        if ins.is_invalid() {
            break;
        }
        if ins.mnemonic() == Mnemonic::Call && ins.op0_kind() == OpKind::NearBranch64 {
            return is_morestack(ins.near_branch_target());
        }
        if matches!(ins.mnemonic(), Mnemonic::Jmp | Mnemonic::Ret | Mnemonic::Ud2) {
            break;
        }
    }
    false
}

/// Every direct `CALL rel32` in `code`: (address after the call, target).
pub(crate) fn amd64_calls(code: &[u8], entry: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut dec = decoder(code, entry);
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.mnemonic() == Mnemonic::Call && ins.op0_kind() == OpKind::NearBranch64 {
            out.push((ins.next_ip(), ins.near_branch_target()));
        }
    }
    out
}

// ---- arm64 -------------------------------------------------------------

const A64_LDR_R16_G_16: u32 = 0xf940_0b90; // MOVD 16(R28), R16  (ldr x16, [x28, #16])
const A64_CMP_SP_R16: u32 = 0xeb30_63ff; // CMP R16, RSP       (cmp sp, x16)
const A64_CMP_R17_R16: u32 = 0xeb10_023f; // CMP R16, R17       (cmp x17, x16)
const A64_B_COND_MASK: u32 = 0xff00_0010;
const A64_B_COND: u32 = 0x5400_0000;
const COND_LO: u32 = 0x3;
const COND_LS: u32 = 0x9;

pub(crate) fn a64_words(code: &[u8]) -> impl Iterator<Item = u32> + '_ {
    code.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// `SUB(S) X17, SP, #imm{, LSL #12}` — `flag_setting` selects SUBS.
fn a64_is_sub_sp_to_r17(w: u32, flag_setting: bool) -> bool {
    let base = if flag_setting { 0xf100_03f1 } else { 0xd100_03f1 };
    w & 0xff80_03ff == base
}

/// Target of a `B.cond` with condition `cond` at `pc`.
fn a64_bcond_target(w: u32, pc: u64, cond: u32) -> Option<u64> {
    if w & A64_B_COND_MASK != A64_B_COND || w & 0xf != cond {
        return None;
    }
    let imm19 = ((w >> 5) & 0x7_ffff) as i64;
    let off = ((imm19 << 45) >> 45) * 4; // sign-extend 19 bits, ×4
    Some(pc.wrapping_add(off as u64))
}

/// Target of a `BL` at `pc`.
pub(crate) fn a64_bl_target(w: u32, pc: u64) -> Option<u64> {
    if w & 0xfc00_0000 != 0x9400_0000 {
        return None;
    }
    let imm26 = (w & 0x03ff_ffff) as i64;
    let off = ((imm26 << 38) >> 38) * 4;
    Some(pc.wrapping_add(off as u64))
}

pub(crate) fn a64_calls(code: &[u8], entry: u64) -> Vec<(u64, u64)> {
    a64_words(code)
        .enumerate()
        .filter_map(|(i, w)| {
            // Code past the top of the address space (a corrupt segment)
            // has no return address.
            let pc = entry.checked_add(4 * i as u64)?;
            a64_bl_target(w, pc).and_then(|t| Some((pc.checked_add(4)?, t)))
        })
        .collect()
}

fn a64_block_calls(code: &[u8], entry: u64, block: u64, is_morestack: &dyn Fn(u64) -> bool) -> bool {
    let Some(start) = block.checked_sub(entry).and_then(|o| usize::try_from(o).ok()) else { return false };
    let Some(block_code) = code.get(start..) else { return false };
    for (i, w) in a64_words(block_code).take(MORESTACK_BLOCK_MAX_INSNS).enumerate() {
        if let Some(t) = a64_bl_target(w, block.wrapping_add(4 * i as u64)) {
            return is_morestack(t);
        }
        // Unconditional B ends the block.
        if w & 0xfc00_0000 == 0x1400_0000 {
            break;
        }
    }
    false
}

pub(crate) fn arm64_prologue(code: &[u8], entry: u64, end: u64, is_morestack: &dyn Fn(u64) -> bool) -> Prologue {
    let w: Vec<u32> = a64_words(code).take(5).collect();
    let pc = |k: usize| entry.wrapping_add(4 * k as u64);
    let mut found: Option<(usize, Vec<u64>)> = None; // (index of BLS, branch targets)
    if w.first() == Some(&A64_LDR_R16_G_16) {
        let get = |k: usize| w.get(k).copied().unwrap_or(0);
        if get(1) == A64_CMP_SP_R16 {
            if let Some(t) = a64_bcond_target(get(2), pc(2), COND_LS) {
                found = Some((2, vec![t]));
            }
        } else if a64_is_sub_sp_to_r17(get(1), false) && get(2) == A64_CMP_R17_R16 {
            if let Some(t) = a64_bcond_target(get(3), pc(3), COND_LS) {
                found = Some((3, vec![t]));
            }
        } else if a64_is_sub_sp_to_r17(get(1), true) && get(3) == A64_CMP_R17_R16 {
            if let (Some(lo), Some(ls)) =
                (a64_bcond_target(get(2), pc(2), COND_LO), a64_bcond_target(get(4), pc(4), COND_LS))
            {
                found = Some((4, vec![lo, ls]));
            }
        }
    }
    if let Some((k, targets)) = found {
        if targets.iter().all(|&t| t >= entry && t < end && a64_block_calls(code, entry, t, is_morestack)) {
            return Prologue::AfterCheck(pc(k + 1));
        }
    }
    if a64_calls(code, entry).iter().any(|&(_, t)| is_morestack(t)) {
        Prologue::Unrecognised
    } else {
        Prologue::NoCheck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_branch_decoding() {
        // From go1.27.3 runtime.deferproc: BLS 41(PC) at 0x4f288.
        assert_eq!(a64_bcond_target(0x5400_0529, 0x4f288, COND_LS), Some(0x4f288 + 41 * 4));
        assert_eq!(a64_bcond_target(0x5400_0529, 0x4f288, COND_LO), None);
        // Negative displacement: B.LS -1 instruction.
        assert_eq!(a64_bcond_target(0x54ff_ffe9, 0x1000, COND_LS), Some(0xffc));
        assert_eq!(a64_bl_target(0x97ff_ffff, 0x1000), Some(0xffc));
        assert_eq!(a64_bl_target(0x9400_0002, 0x1000), Some(0x1008));
        assert!(a64_is_sub_sp_to_r17(0xd100_43f1, false));
    }

    #[test]
    fn garbage_code_does_not_panic() {
        let never = |_: u64| false;
        for code in [&[][..], &[0xff; 3][..], &[0x0f, 0x86][..], &[0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86][..]] {
            assert_eq!(amd64_prologue(code, 0x1000, 0x1000 + code.len() as u64, &never), Prologue::NoCheck);
            assert_eq!(arm64_prologue(code, 0x1000, 0x1000 + code.len() as u64, &never), Prologue::NoCheck);
        }
        // A well-formed check whose branch leaves the function is refused.
        let code = [0x49, 0x3b, 0x66, 0x10, 0x76, 0x40, 0x90];
        assert_eq!(amd64_prologue(&code, 0x1000, 0x1007, &|_| true), Prologue::NoCheck);
    }

    /// Function entries come from the file: code at the top of the address
    /// space must not overflow the PC arithmetic.
    #[test]
    fn code_at_the_top_of_the_address_space() {
        let words = |ws: &[u32]| ws.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
        let check = words(&[A64_LDR_R16_G_16, A64_CMP_SP_R16, 0x5400_0029, 0x9400_0000]);
        // A segment whose file image runs past the top holds code there.
        let _ = arm64_prologue(&check, u64::MAX - 7, u64::MAX, &|_| true);
        assert_eq!(a64_calls(&words(&[0x9400_0001]), u64::MAX - 3), vec![]);
        let call = [0xe8, 0, 0, 0, 0];
        assert_eq!(amd64_calls(&call, u64::MAX - 4).len(), 1);
    }
}
