//! Finding `runtime.allgs`/`runtime.allglen` in stripped binaries.
//!
//! They are in `.symtab` and DWARF but not in pclntab. `runtime.allgadd`
//! (always present) does, in every supported version:
//!
//! ```go
//! lock(&allglock)
//! allgs = append(allgs, gp)                       // reads/writes allgs+0/8/16
//! if &allgs[0] != allgptr { atomicstorep(&allgptr, …) }
//! atomic.Storeuintptr(&allglen, uintptr(len(allgs)))
//! ```
//!
//! So `allgs` is the address X whose X, X+8 and X+16 are all accessed, and
//! `allglen` is the target of an atomic store (amd64 `XCHGQ`, arm64 `STLR`)
//! that the function never otherwise reads (`allgptr` is also compared).
//! `allglen` is *not* at a fixed distance from `allglock`: it is at
//! allglock+8 in 1.21–1.27 but allglock-8 in 1.19.

use std::collections::BTreeSet;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

use super::prologue::a64_words;

#[derive(Default, Debug)]
pub(crate) struct Accesses {
    /// Static addresses read or written by ordinary loads/stores.
    plain: BTreeSet<u64>,
    /// Targets of atomic stores, in code order.
    atomic_stores: Vec<u64>,
}

impl Accesses {
    /// (allgs, allglen) candidates; `is_data` filters addresses that are not
    /// in writable memory.
    pub(crate) fn solve(&self, is_data: &dyn Fn(u64) -> bool) -> Option<(u64, Option<u64>)> {
        let allgs = self.plain.iter().copied().find(|&x| {
            let accessed = |off: u64| x.checked_add(off).is_some_and(|a| self.plain.contains(&a));
            is_data(x) && accessed(8) && accessed(16)
        })?;
        // The slice header is 24 bytes; allglen is not part of it.
        let in_header = |a: u64| a.checked_sub(allgs).is_some_and(|off| off < 24);
        let allglen =
            self.atomic_stores.iter().rev().copied().find(|&a| is_data(a) && !self.plain.contains(&a) && !in_header(a));
        Some((allgs, allglen))
    }

    /// Every writable X whose X, X+8 and X+16 are all accessed: the slice
    /// headers the code appends to or reslices.
    pub(crate) fn slice_headers(&self, is_data: &dyn Fn(u64) -> bool) -> Vec<u64> {
        let accessed = |x: u64, off: u64| x.checked_add(off).is_some_and(|a| self.plain.contains(&a));
        self.plain.iter().copied().filter(|&x| is_data(x) && accessed(x, 8) && accessed(x, 16)).collect()
    }

    /// Targets of atomic stores that the code also reads with an ordinary
    /// load (`mp.alllink = allm; atomicstorep(&allm, mp)`).
    pub(crate) fn read_then_atomically_stored(&self, is_data: &dyn Fn(u64) -> bool) -> Vec<u64> {
        let mut out: Vec<u64> =
            self.atomic_stores.iter().copied().filter(|&a| is_data(a) && self.plain.contains(&a)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether the code reads or writes `addr` with an ordinary load/store.
    pub(crate) fn reads(&self, addr: u64) -> bool {
        self.plain.contains(&addr)
    }
}

pub(crate) fn amd64_accesses(code: &[u8], entry: u64) -> Accesses {
    let mut acc = Accesses::default();
    let mut dec = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    // Register → static address it holds (from a RIP-relative LEA).
    let mut lea: Vec<(Register, u64)> = Vec::new();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            lea.clear();
            continue;
        }
        let has_mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
        if ins.mnemonic() == Mnemonic::Lea && ins.is_ip_rel_memory_operand() {
            let r = ins.op0_register().full_register();
            lea.retain(|(x, _)| *x != r);
            lea.push((r, ins.ip_rel_memory_address()));
            continue;
        }
        if has_mem {
            let addr = if ins.is_ip_rel_memory_operand() {
                Some(ins.ip_rel_memory_address())
            } else if ins.memory_index() == Register::None && ins.memory_displacement64() == 0 {
                let base = ins.memory_base().full_register();
                lea.iter().find(|(r, _)| *r == base).map(|(_, a)| *a)
            } else {
                None
            };
            if let Some(a) = addr {
                if ins.mnemonic() == Mnemonic::Xchg {
                    acc.atomic_stores.push(a);
                } else {
                    acc.plain.insert(a);
                }
            }
        }
        // Anything written to a register invalidates what we knew about it.
        if ins.op_count() > 0 && ins.op_kind(0) == OpKind::Register {
            let r = ins.op0_register().full_register();
            lea.retain(|(x, _)| *x != r);
        }
        if matches!(ins.mnemonic(), Mnemonic::Call | Mnemonic::Jmp | Mnemonic::Ret) {
            lea.clear();
        }
    }
    acc
}

/// How many instructions an ADRP-derived register value stays trusted. Go
/// emits `ADRP; ADD; STLR` or `ADRP; LDR/STR` back to back, so a short
/// window avoids modelling every instruction that could clobber a register.
const A64_WINDOW: usize = 3;

pub(crate) fn arm64_accesses(code: &[u8], entry: u64) -> Accesses {
    let mut acc = Accesses::default();
    let mut regs: [Option<(u64, usize)>; 32] = [None; 32];
    for (i, w) in a64_words(code).enumerate() {
        let pc = entry.wrapping_add(4 * i as u64);
        let rd = (w & 0x1f) as usize;
        let rn = ((w >> 5) & 0x1f) as usize;
        let get = |r: usize, regs: &[Option<(u64, usize)>; 32]| {
            regs.get(r).copied().flatten().filter(|&(_, at)| i - at <= A64_WINDOW).map(|(v, _)| v)
        };
        if w & 0x9f00_0000 == 0x9000_0000 {
            // ADRP Xd, label
            let immlo = u64::from((w >> 29) & 0x3);
            let immhi = u64::from((w >> 5) & 0x7_ffff);
            let imm = (((immhi << 2) | immlo) as i64) << 43 >> 43; // sign-extend 21 bits
            let v = (pc & !0xfff).wrapping_add((imm << 12) as u64);
            if let Some(slot) = regs.get_mut(rd) {
                *slot = Some((v, i));
            }
            continue;
        }
        if w & 0xff80_0000 == 0x9100_0000 {
            // ADD Xd, Xn, #imm12{, LSL #12}
            let sh = (w >> 22) & 1;
            let imm = u64::from((w >> 10) & 0xfff) << (12 * sh);
            let v = get(rn, &regs).map(|b| (b.wrapping_add(imm), i));
            if let Some(slot) = regs.get_mut(rd) {
                *slot = v;
            }
            continue;
        }
        match w & 0xffc0_0000 {
            // LDR/STR Xt, [Xn, #imm12*8]
            0xf940_0000 | 0xf900_0000 => {
                if let Some(b) = get(rn, &regs) {
                    acc.plain.insert(b.wrapping_add(u64::from((w >> 10) & 0xfff) * 8));
                }
            }
            // LDP/STP Xt1, Xt2, [Xn, #imm7*8]
            0xa940_0000 | 0xa900_0000 => {
                if let Some(b) = get(rn, &regs) {
                    let imm7 = (((w >> 15) & 0x7f) as i64) << 57 >> 57;
                    let a = b.wrapping_add((imm7 * 8) as u64);
                    acc.plain.insert(a);
                    acc.plain.insert(a.wrapping_add(8));
                }
            }
            _ => {
                if w & 0xffff_fc00 == 0xc89f_fc00 {
                    // STLR Xt, [Xn]
                    if let Some(b) = get(rn, &regs) {
                        acc.atomic_stores.push(b);
                    }
                }
            }
        }
        // Loads define Rt; be conservative and forget it.
        if let Some(slot) = regs.get_mut(rd) {
            *slot = None;
        }
    }
    acc
}

/// The static address held in the receiver register (amd64 `AX`, arm64
/// `R0`: the first argument of Go's register ABI, Go 1.17+/1.18+) at each
/// direct call to `callee` in `code`: how `runtime.mheap_` is found in
/// stripped binaries, from `mheap_.alloc(…)` in `runtime.(*mcentral).grow`
/// (`LEAQ runtime.mheap_(SB), AX; …; CALL runtime.(*mheap).alloc`).
pub(crate) fn receivers_at_calls(code: &[u8], entry: u64, callee: u64, arm64: bool) -> Vec<u64> {
    if arm64 { arm64_receivers(code, entry, callee) } else { amd64_receivers(code, entry, callee) }
}

fn amd64_receivers(code: &[u8], entry: u64, callee: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut dec = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut rax: Option<u64> = None;
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.is_invalid() {
            rax = None;
            continue;
        }
        if ins.mnemonic() == Mnemonic::Call {
            if ins.op0_kind() == OpKind::NearBranch64 && ins.near_branch_target() == callee {
                out.extend(rax);
            }
            rax = None;
            continue;
        }
        if ins.mnemonic() == Mnemonic::Lea
            && ins.is_ip_rel_memory_operand()
            && ins.op0_register().full_register() == Register::RAX
        {
            rax = Some(ins.ip_rel_memory_address());
            continue;
        }
        // Anything else written to RAX (or a jump into the middle) forgets it.
        let writes_rax = ins.op_count() > 0
            && ins.op0_kind() == OpKind::Register
            && ins.op0_register().full_register() == Register::RAX;
        if writes_rax || matches!(ins.mnemonic(), Mnemonic::Jmp | Mnemonic::Ret) {
            rax = None;
        }
    }
    out
}

/// How many instructions after `ADRP; ADD` into R0 a `BL` may come.
const A64_CALL_WINDOW: usize = 8;

fn arm64_receivers(code: &[u8], entry: u64, callee: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut adrp: [Option<(u64, usize)>; 32] = [None; 32];
    let mut r0: Option<(u64, usize)> = None;
    for (i, w) in a64_words(code).enumerate() {
        let pc = entry + 4 * i as u64;
        let rd = (w & 0x1f) as usize;
        let rn = ((w >> 5) & 0x1f) as usize;
        if w & 0x9f00_0000 == 0x9000_0000 {
            // ADRP Xd, label
            let immlo = u64::from((w >> 29) & 0x3);
            let immhi = u64::from((w >> 5) & 0x7_ffff);
            let imm = (((immhi << 2) | immlo) as i64) << 43 >> 43;
            adrp[rd] = Some(((pc & !0xfff).wrapping_add((imm << 12) as u64), i));
            if rd == 0 {
                r0 = None;
            }
            continue;
        }
        if w & 0xff80_0000 == 0x9100_0000 {
            // ADD Xd, Xn, #imm12{, LSL #12}
            let sh = (w >> 22) & 1;
            let imm = u64::from((w >> 10) & 0xfff) << (12 * sh);
            let v = adrp[rn].filter(|&(_, at)| i - at <= 2).map(|(b, _)| b.wrapping_add(imm));
            if rd == 0 {
                r0 = v.map(|v| (v, i));
            }
            adrp[rd] = None;
            continue;
        }
        if w & 0xfc00_0000 == 0x9400_0000 {
            // BL label
            let imm = ((w & 0x03ff_ffff) as i64) << 38 >> 36; // imm26 * 4, sign-extended
            if pc.wrapping_add(imm as u64) == callee
                && let Some((v, at)) = r0
                && i - at <= A64_CALL_WINDOW
            {
                out.push(v);
            }
            r0 = None;
            continue;
        }
        // Most instructions write Rd (bits 0–4): forget it.
        if rd == 0 {
            r0 = None;
        }
        adrp[rd] = None;
    }
    out
}

/// Every static address `code` takes (amd64 `LEAQ sym(SB)`, arm64
/// `ADRP; ADD`): how `runtime.semtable` is found in stripped binaries, as
/// the one writable address both `semacquire1` and `semrelease1` take
/// (`semtable.rootFor(addr)` is inlined into both).
pub(crate) fn data_addresses(code: &[u8], entry: u64, arm64: bool) -> Vec<u64> {
    let mut out = Vec::new();
    if arm64 {
        let mut adrp: [Option<(u64, usize)>; 32] = [None; 32];
        for (i, w) in a64_words(code).enumerate() {
            let pc = entry + 4 * i as u64;
            let (rd, rn) = ((w & 0x1f) as usize, ((w >> 5) & 0x1f) as usize);
            if w & 0x9f00_0000 == 0x9000_0000 {
                let immlo = u64::from((w >> 29) & 0x3);
                let immhi = u64::from((w >> 5) & 0x7_ffff);
                let imm = (((immhi << 2) | immlo) as i64) << 43 >> 43;
                adrp[rd] = Some(((pc & !0xfff).wrapping_add((imm << 12) as u64), i));
                continue;
            }
            if w & 0xff80_0000 == 0x9100_0000 {
                let imm = u64::from((w >> 10) & 0xfff) << (12 * ((w >> 22) & 1));
                if let Some((base, at)) = adrp[rn]
                    && i - at <= 2
                {
                    out.push(base.wrapping_add(imm));
                }
            }
            adrp[rd] = None;
        }
        return out;
    }
    let mut dec = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if !ins.is_invalid() && ins.mnemonic() == Mnemonic::Lea && ins.is_ip_rel_memory_operand() {
            out.push(ins.ip_rel_memory_address());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses decoded from code are words from the file: near the top of
    /// the address space, X+8, X+16 and the slice's end must not overflow.
    #[test]
    fn addresses_at_the_top_do_not_overflow() {
        let mut acc = Accesses::default();
        acc.plain.insert(u64::MAX - 7);
        assert_eq!(acc.solve(&|_| true), None);
        acc.plain.extend([u64::MAX - 23, u64::MAX - 15]);
        acc.atomic_stores.push(u64::MAX - 3);
        assert_eq!(acc.solve(&|_| true), Some((u64::MAX - 23, None)), "allglen inside the slice header");
        // ADRP; LDR at the last words of the address space.
        let code: Vec<u8> = [0x9000_0010u32, 0xf940_0210, 0xd503_201f].iter().flat_map(|w| w.to_le_bytes()).collect();
        let _ = arm64_accesses(&code, u64::MAX - 7);
    }
}
