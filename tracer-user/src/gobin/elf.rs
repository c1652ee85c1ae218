//! The few ELF facts gobin needs, copied out of `object`'s parser at open
//! time so that `GoBinary` can own its bytes without self-references.

use std::collections::HashMap;

use object::read::elf::{ElfFile64, FileHeader, ProgramHeader, SectionHeader};
use object::{Endianness, FileKind, Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SymbolKind, elf};

use super::reader::{bytes_at, to_usize};
use super::{Arch, GoBinError};

/// A `PT_LOAD` program header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub memsz: u64,
    pub file_offset: u64,
    pub filesz: u64,
    /// `p_flags`: `PF_X` = 1, `PF_W` = 2, `PF_R` = 4.
    pub flags: u32,
}

impl LoadSegment {
    pub fn is_executable(&self) -> bool {
        self.flags & elf::PF_X != 0
    }
    pub fn is_writable(&self) -> bool {
        self.flags & elf::PF_W != 0
    }
    pub fn is_readable(&self) -> bool {
        self.flags & elf::PF_R != 0
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SectionInfo {
    pub name: String,
    pub addr: u64,
    /// File range of the section's bytes; None for SHT_NOBITS (`.bss`).
    pub file_range: Option<(u64, u64)>,
    /// Size in memory.
    pub size: u64,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct SymbolInfo {
    pub addr: u64,
    pub size: u64,
    pub is_func: bool,
}

pub(crate) struct ElfInfo {
    pub arch: Arch,
    pub is_pie: bool,
    pub segments: Vec<LoadSegment>,
    pub sections: Vec<SectionInfo>,
    /// `.symtab` symbols by name (absent when stripped). Dynamic symbols are
    /// deliberately not included: they say nothing about Go functions.
    pub symtab: Option<HashMap<String, SymbolInfo>>,
}

impl ElfInfo {
    pub fn parse(data: &[u8]) -> Result<ElfInfo, GoBinError> {
        match FileKind::parse(data) {
            Ok(FileKind::Elf64) => {}
            Ok(FileKind::Elf32) => return Err(GoBinError::UnsupportedArch("32-bit ELF".into())),
            _ => return Err(GoBinError::NotElf),
        }
        let file = ElfFile64::<Endianness>::parse(data)
            .map_err(|e| GoBinError::Malformed { what: "ELF headers", detail: e.to_string() })?;
        let endian = file.endian();
        if endian != Endianness::Little {
            return Err(GoBinError::UnsupportedArch("big-endian ELF".into()));
        }
        let hdr = file.elf_header();
        let arch = match hdr.e_machine(endian) {
            elf::EM_X86_64 => Arch::X86_64,
            elf::EM_AARCH64 => Arch::Aarch64,
            other => return Err(GoBinError::UnsupportedArch(format!("ELF machine {other}"))),
        };
        let is_pie = hdr.e_type(endian) == elf::ET_DYN;
        let segments = file
            .elf_program_headers()
            .iter()
            .filter(|ph| ph.p_type(endian) == elf::PT_LOAD)
            .map(|ph| LoadSegment {
                vaddr: ph.p_vaddr(endian),
                memsz: ph.p_memsz(endian),
                file_offset: ph.p_offset(endian),
                filesz: ph.p_filesz(endian),
                flags: ph.p_flags(endian),
            })
            .collect();
        let sections = file
            .sections()
            .filter_map(|s| {
                let name = s.name().ok()?.to_string();
                let nobits = s.elf_section_header().sh_type(endian) == elf::SHT_NOBITS;
                Some(SectionInfo {
                    name,
                    addr: s.address(),
                    file_range: if nobits { None } else { s.file_range() },
                    size: s.size(),
                })
            })
            .collect();
        let symtab = file.symbol_table().map(|table| {
            let mut map = HashMap::new();
            for sym in table.symbols() {
                let Ok(name) = sym.name() else { continue };
                if name.is_empty() || sym.is_undefined() {
                    continue;
                }
                // First definition wins; Go does not emit duplicate
                // global names, C objects in cgo binaries might.
                map.entry(name.to_string()).or_insert(SymbolInfo {
                    addr: sym.address(),
                    size: sym.size(),
                    is_func: sym.kind() == SymbolKind::Text,
                });
            }
            map
        });
        Ok(ElfInfo { arch, is_pie, segments, sections, symtab })
    }

    pub fn section(&self, name: &str) -> Option<&SectionInfo> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// Bytes of a (non-NOBITS) section.
    pub fn section_data<'a>(&self, data: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let (off, len) = self.section(name)?.file_range?;
        bytes_at(data, to_usize(off)?, to_usize(len)?)
    }

    pub fn symbol(&self, name: &str) -> Option<SymbolInfo> {
        self.symtab.as_ref()?.get(name).copied()
    }

    /// The PT_LOAD whose *file-backed* part holds `vaddr`.
    pub fn segment_for_vaddr(&self, vaddr: u64) -> Option<&LoadSegment> {
        self.segments.iter().find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        let s = self.segment_for_vaddr(vaddr)?;
        s.file_offset.checked_add(vaddr - s.vaddr)
    }

    pub fn file_offset_to_vaddr(&self, off: u64) -> Option<u64> {
        let s = self.segments.iter().find(|s| off >= s.file_offset && off - s.file_offset < s.filesz)?;
        s.vaddr.checked_add(off - s.file_offset)
    }

    /// Up to `len` file bytes at a static virtual address (never crossing the
    /// end of the segment's file image).
    pub fn read_vaddr<'a>(&self, data: &'a [u8], vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let s = self.segment_for_vaddr(vaddr)?;
        let avail = s.filesz - (vaddr - s.vaddr);
        if (len as u64) > avail {
            return None;
        }
        bytes_at(data, to_usize(self.vaddr_to_file_offset(vaddr)?)?, len)
    }

    pub fn read_u64_vaddr(&self, data: &[u8], vaddr: u64) -> Option<u64> {
        let b = self.read_vaddr(data, vaddr, 8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }
}
