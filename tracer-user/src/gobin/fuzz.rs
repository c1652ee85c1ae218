//! Harnesses for the fuzz targets (reached through `crate::fuzzing`): each
//! runs one reader over arbitrary bytes and exercises what it returns the
//! way deferscope would. A child of `gobin` so that it can drive the readers
//! (`elf`, `buildinfo`, `pclntab`, `moduledata`, `dwarf`) directly.

use object::elf::{PF_R, PF_W, PF_X};

use super::buildinfo;
use super::dwarf;
use super::elf::{ElfInfo, LoadSegment, SectionInfo};
use super::moduledata;
use super::pclntab::{Header, PclnTab};
use super::{Arch, GoBinary, GoVersion};
use crate::goruntime::layout::{RuntimeLayout, STRUCTS};
use crate::goruntime::probe_plan::{self, Placement};

/// Where the synthetic ELF views of the `buildinfo` and `pclntab` targets
/// map their input.
const BASE: u64 = 0x40_0000;

/// Functions exercised per binary: enough to reach every code path without
/// making one run slow on a large input.
const MAX_FUNCS: usize = 256;

/// Functions looked up beyond the probe plan (what the tests and the
/// stripped-binary paths use).
const EXTRA_FUNCTIONS: &[&str] =
    &["runtime.gopanic", "runtime.deferreturn", "runtime.newproc", "runtime.gopark", "main.main", "runtime.allgadd"];

/// The whole reader: `GoBinary::parse`, then everything the tracer asks of
/// the result.
pub(crate) fn go_binary(data: &[u8]) {
    let Ok(binary) = GoBinary::parse(data.to_vec()) else { return };
    let _ = format!("{binary:?}");
    let version = binary.version().clone();
    let _ = (binary.arch(), binary.is_pie(), binary.is_stripped(), binary.has_dwarf());
    let _ = (binary.text_start(), binary.moduledata_addr(), binary.function_count());
    for plan in probe_plan::plan(&version) {
        match plan.placement {
            Placement::Entry(function) => {
                let _ = binary.function_entry(function);
                let _ = binary.probe_point(function);
            }
            Placement::AfterCall { caller, callee } => {
                let _ = binary.call_return_points(caller, callee);
            }
        }
    }
    for function in EXTRA_FUNCTIONS {
        let _ = binary.probe_point(function);
    }
    let _ = binary.allgs_location();
    let _ = binary.allgs_from_code();
    let _ = binary.wait_reason_strings();
    if let Ok(layout) = RuntimeLayout::of(&binary) {
        let _ = layout.g_statuses.decode(u32::MAX);
        let _ = layout.wait_reasons.string(u8::MAX);
    }
    for seg in binary.load_segments() {
        for vaddr in [seg.vaddr, seg.vaddr.wrapping_add(seg.filesz), seg.vaddr.wrapping_add(seg.memsz)] {
            if let Some(off) = binary.vaddr_to_file_offset(vaddr) {
                let _ = binary.file_offset_to_vaddr(off);
            }
        }
    }
    let pcln = &binary.pcln;
    for i in 0..pcln.len().min(MAX_FUNCS) {
        let Some(f) = pcln.func_at_index(&binary.data, i) else { continue };
        if let Some(name) = pcln.func_name(&binary.data, &f) {
            let _ = binary.function_entry(name);
        }
        // Every function read as a deferred function value: wrappers decoded.
        let _ = binary.deferred_call(f.entry);
        for pc in pcs_of(f.entry, f.end) {
            let _ = binary.symbolize(pc);
            let _ = binary.symbolize_frames(pc);
            let _ = binary.function_name(pc);
            let _ = binary.function_start(pc);
        }
    }
    for pc in [0, u64::MAX, binary.text_start()] {
        let _ = binary.symbolize_frames(pc);
        let _ = binary.deferred_call(pc);
    }
    // The wrapper decoders over arbitrary bytes, near the top of the address
    // space (branch targets must not overflow).
    for entry in [0, u64::MAX - 64] {
        let _ = super::wrappers::amd64_insns(data, entry);
        let _ = super::wrappers::arm64_insns(data, entry);
    }
}

/// The ELF layer and the readers that locate things in a whole file.
pub(crate) fn elf(data: &[u8]) {
    let Ok(elf) = ElfInfo::parse(data) else { return };
    for section in &elf.sections {
        let _ = elf.section_data(data, &section.name);
    }
    for seg in &elf.segments {
        for vaddr in [seg.vaddr, seg.vaddr.wrapping_add(seg.filesz).wrapping_sub(8)] {
            let _ = elf.read_u64_vaddr(data, vaddr);
            if let Some(off) = elf.vaddr_to_file_offset(vaddr) {
                let _ = elf.file_offset_to_vaddr(off);
            }
        }
    }
    for name in ["runtime.allgs", "runtime.text", "go:func.*", "runtime.waitReasonStrings"] {
        let _ = elf.symbol(name);
    }
    let version = buildinfo::find_version(data, &elf).ok().flatten().and_then(|v| GoVersion::parse(&v));
    if let Ok(Some(hdr)) = Header::locate(data, &elf) {
        let expect = moduledata::Expect {
            pc_header: hdr.vaddr,
            funcnametab: hdr.vaddr.wrapping_add(hdr.funcname as u64),
            ftab: hdr.vaddr.wrapping_add(hdr.pcln as u64),
        };
        let _ = moduledata::find(data, &elf, &expect, version.map_or(27, |v| v.minor));
    }
    if dwarf::has_dwarf(data) {
        let _ = dwarf::read_facts(data, STRUCTS);
    }
}

/// The `.go.buildinfo` blob, as a section and as found by scanning.
pub(crate) fn buildinfo(data: &[u8]) {
    for section in [Some(".go.buildinfo"), None] {
        if let Ok(Some(raw)) = buildinfo::find_version(data, &mapped(data, section)) {
            let _ = GoVersion::parse(&raw);
        }
    }
}

/// The `.gopclntab` reader: the header, the function table, names, lines,
/// files and inline trees (funcdata offsets count from the input's start).
pub(crate) fn pclntab(data: &[u8]) {
    let elf = mapped(data, Some(".gopclntab"));
    let Ok(Some(hdr)) = Header::locate(data, &elf) else {
        // Without the section, the header is searched for.
        let _ = Header::locate(data, &mapped(data, None));
        return;
    };
    let text_start = if hdr.text_start != 0 { hdr.text_start } else { BASE };
    let Ok(tab) = PclnTab::new(data, hdr, text_start, Some(BASE)) else { return };
    for i in 0..tab.len().min(MAX_FUNCS) {
        let Some(f) = tab.func_at_index(data, i) else { continue };
        let _ = f.func_id();
        if let Some(name) = tab.func_name(data, &f) {
            let _ = tab.lookup(data, name);
        }
        for pc in pcs_of(f.entry, f.end) {
            let Some(found) = tab.find_func(data, pc) else { continue };
            let _ = tab.file_line(data, &found, pc);
            let _ = tab.inlined_call(data, &elf, &found, pc);
        }
    }
}

/// The DWARF reader and the layout built from what it finds. The input is
/// an ELF file, or the raw sections: `abbrev_len: u32 LE`, `str_len: u32
/// LE`, `.debug_abbrev`, `.debug_str`, then `.debug_info` (the rest).
pub(crate) fn dwarf(data: &[u8]) {
    let facts = if data.starts_with(b"\x7fELF") {
        dwarf::read_facts(data, STRUCTS)
    } else {
        let Some(sections) = raw_sections(data) else { return };
        dwarf::facts_from_sections(&sections, STRUCTS)
    };
    let Ok(facts) = facts else { return };
    let strings: Vec<String> = (0..4).map(|i| format!("reason {i}")).collect();
    for (minor, strings) in [(19, None), (27, Some(&strings[..]))] {
        let version = GoVersion { major: 1, minor, patch: 0, raw: format!("go1.{minor}") };
        let _ = RuntimeLayout::from_dwarf(&facts, &version, strings);
    }
}

fn raw_sections(data: &[u8]) -> Option<gimli::DwarfSections<&[u8]>> {
    let len = |at: usize| usize::try_from(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?)).ok();
    let (abbrev_len, str_len) = (len(0)?, len(4)?);
    let abbrev_end = 8usize.checked_add(abbrev_len)?;
    let str_end = abbrev_end.checked_add(str_len)?;
    let (abbrev, str, info) = (data.get(8..abbrev_end)?, data.get(abbrev_end..str_end)?, data.get(str_end..)?);
    gimli::DwarfSections::load(|id| {
        Ok::<_, ()>(match id {
            gimli::SectionId::DebugAbbrev => abbrev,
            gimli::SectionId::DebugStr => str,
            gimli::SectionId::DebugInfo => info,
            _ => &[],
        })
    })
    .ok()
}

/// PCs worth symbolizing in [entry, end): both ends, the next byte and the
/// middle.
fn pcs_of(entry: u64, end: u64) -> [u64; 4] {
    let mid = entry.wrapping_add(end.wrapping_sub(entry) / 2);
    [entry, entry.wrapping_add(1), mid, end.wrapping_sub(1)]
}

/// An ELF view of `data` alone: one read-write-execute segment mapping it at
/// [`BASE`], and optionally one section of that name covering all of it.
fn mapped(data: &[u8], section: Option<&str>) -> ElfInfo {
    let len = data.len() as u64;
    let segment = LoadSegment { vaddr: BASE, memsz: len, file_offset: 0, filesz: len, flags: PF_R | PF_W | PF_X };
    ElfInfo {
        arch: Arch::X86_64,
        is_pie: false,
        segments: vec![segment],
        sections: section
            .map(|name| SectionInfo { name: name.to_string(), addr: BASE, file_range: Some((0, len)), size: len })
            .into_iter()
            .collect(),
        symtab: None,
    }
}
