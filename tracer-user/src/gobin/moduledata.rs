//! Locating `runtime.firstmoduledata` without symbols.
//!
//! From Go 1.26 `pcHeader.textStart` is always 0 ("use the moduledata text
//! field instead", runtime/symtab.go), and `moduledata.gofunc` is the base of
//! every funcdata offset (inline trees), so stripped binaries need the
//! moduledata. It is the only object in the writable data that starts with a
//! pointer to the pcHeader followed by a slice pointing at funcnametab; we
//! scan for that, `.go.module` (1.26+) and `.noptrdata` (≤1.25) first.
//!
//! Field offsets (64-bit), identical in 1.18–1.27 up to `text`:
//! pcHeader 0, funcnametab 8, cutab 32, filetab 56, pctab 80, pclntable 104,
//! ftab 128, findfunctab 152, minpc 160, maxpc 168, text 176, etext 184.
//! `gofunc` moves: 304 (1.18–1.19), 320 (1.20–1.26: covctrs added),
//! 344 (1.27: typedesclen, itaboffset, itabsize added).

use super::elf::ElfInfo;
use super::reader::{bytes_at, to_usize, u64_at};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Moduledata {
    pub vaddr: u64,
    pub text: u64,
    pub etext: u64,
    pub minpc: u64,
    pub maxpc: u64,
    /// `go:func.*`, the base of funcdata offsets; None if implausible.
    pub gofunc: Option<u64>,
}

const OFF_FUNCNAMETAB: usize = 8;
const OFF_FTAB: usize = 128;
const OFF_MINPC: usize = 160;
const OFF_MAXPC: usize = 168;
const OFF_TEXT: usize = 176;
const OFF_ETEXT: usize = 184;

fn gofunc_offset(minor: u32) -> usize {
    match minor {
        0..=19 => 304,
        20..=26 => 320,
        // Unknown future versions: assume the newest known layout; the
        // value is validated before use.
        _ => 344,
    }
}

/// What the pclntab header tells us the moduledata must point at.
pub(crate) struct Expect {
    pub pc_header: u64,
    pub funcnametab: u64,
    pub ftab: u64,
}

pub(crate) fn find(data: &[u8], elf: &ElfInfo, expect: &Expect, minor: u32) -> Option<Moduledata> {
    let mut regions: Vec<(u64, u64)> = Vec::new(); // (file offset, len)
    for name in [".go.module", ".noptrdata", ".data.rel.ro", ".data"] {
        if let Some(r) = elf.section(name).and_then(|s| s.file_range) {
            regions.push(r);
        }
    }
    for seg in elf.segments.iter().filter(|s| s.is_writable()) {
        regions.push((seg.file_offset, seg.filesz));
    }
    let needle = expect.pc_header.to_le_bytes();
    for (off, len) in regions {
        let (Some(off), Some(len)) = (to_usize(off), to_usize(len)) else { continue };
        let Some(bytes) = bytes_at(data, off, len) else { continue };
        // The moduledata is pointer-aligned; align relative to the file
        // offset, which is congruent to the vaddr modulo the page size.
        let mut pos = (8 - off % 8) % 8;
        while pos + 8 <= bytes.len() {
            if bytes.get(pos..pos + 8) == Some(&needle[..]) {
                if let Some(md) = validate(data, elf, off + pos, expect, minor) {
                    return Some(md);
                }
            }
            pos += 8;
        }
    }
    None
}

fn validate(data: &[u8], elf: &ElfInfo, file_off: usize, expect: &Expect, minor: u32) -> Option<Moduledata> {
    let field = |o: usize| u64_at(data, file_off.checked_add(o)?);
    if field(OFF_FUNCNAMETAB)? != expect.funcnametab || field(OFF_FTAB)? != expect.ftab {
        return None;
    }
    let (minpc, maxpc, text, etext) = (field(OFF_MINPC)?, field(OFF_MAXPC)?, field(OFF_TEXT)?, field(OFF_ETEXT)?);
    if !(text <= minpc && minpc < maxpc && maxpc <= etext) {
        return None;
    }
    let text_seg = elf.segment_for_vaddr(text)?;
    if !text_seg.is_executable() {
        return None;
    }
    let gofunc_off = gofunc_offset(minor);
    let gofunc = field(gofunc_off).filter(|&g| {
        // rodata precedes gofunc in the struct, and go:func.* lives in (or
        // after) the read-only data.
        let rodata = field(gofunc_off - 8).unwrap_or(0);
        g != 0 && g >= rodata && elf.segment_for_vaddr(g).is_some()
    });
    let vaddr = elf.file_offset_to_vaddr(file_off as u64)?;
    Some(Moduledata { vaddr, text, etext, minpc, maxpc, gofunc })
}
