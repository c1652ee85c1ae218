//! Just enough ELF64 (little-endian) to cut seeds out of Go binaries: read
//! the headers, sections, symbols and virtual memory of a fixture, and write
//! a small file of chosen pieces at their original addresses.
use anyhow::{Context as _, Result, bail};

pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
const PT_LOAD: u32 = 1;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHF_WRITE: u64 = 1;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const SHF_COMPRESSED: u64 = 0x800;
const ELFCOMPRESS_ZLIB: u32 = 1;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
const SHDR_LEN: usize = 64;
const SYM_LEN: usize = 24;

pub fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(off..off.checked_add(2)?)?.try_into().ok()?))
}

pub fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

pub fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(d.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// A NUL-terminated string at `off`.
pub fn cstr_at(d: &[u8], off: usize) -> Option<&str> {
    let tail = d.get(off..)?;
    std::str::from_utf8(&tail[..tail.iter().position(|&b| b == 0)?]).ok()
}

#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub flags: u32,
}

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Symbol {
    pub value: u64,
    pub size: u64,
    pub info: u8,
}

/// A fixture, parsed.
pub struct Elf<'a> {
    pub data: &'a [u8],
    pub segments: Vec<Segment>,
    pub sections: Vec<Section>,
    /// `.symtab` in file order (empty when stripped).
    pub symbols: Vec<(String, Symbol)>,
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if !data.starts_with(b"\x7fELF\x02\x01") {
            bail!("not a little-endian ELF64 file");
        }
        let field = |off| u64_at(data, off).context("truncated ELF header");
        let half = |off| u16_at(data, off).map(usize::from).context("truncated ELF header");
        let (phoff, shoff) = (field(32)? as usize, field(40)? as usize);
        let (phnum, shnum, shstrndx) = (half(56)?, half(60)?, half(62)?);
        let mut segments = Vec::new();
        for i in 0..phnum {
            let ph = data.get(phoff + i * PHDR_LEN..).context("program headers")?;
            if u32_at(ph, 0) != Some(PT_LOAD) {
                continue;
            }
            let w = |off| u64_at(ph, off).context("program header");
            let flags = u32_at(ph, 4).context("program header")?;
            segments.push(Segment { vaddr: w(16)?, offset: w(8)?, filesz: w(32)?, memsz: w(40)?, flags });
        }
        let mut raw = Vec::new();
        for i in 0..shnum {
            let sh = data.get(shoff + i * SHDR_LEN..).context("section headers")?;
            let w = |off| u64_at(sh, off).context("section header");
            let name = u32_at(sh, 0).context("section header")?;
            let kind = u32_at(sh, 4).context("section header")?;
            raw.push((name, kind, w(8)?, w(16)?, w(24)?, w(32)?));
        }
        let shstr = raw.get(shstrndx).map(|s| (s.4 as usize, s.5 as usize));
        let names = shstr.and_then(|(off, len)| data.get(off..off + len)).unwrap_or_default();
        let sections: Vec<Section> = raw
            .into_iter()
            .map(|(name, kind, flags, addr, offset, size)| Section {
                name: cstr_at(names, name as usize).unwrap_or_default().to_string(),
                kind,
                flags,
                addr,
                offset,
                size,
            })
            .collect();
        let mut elf = Elf { data, segments, sections, symbols: vec![] };
        elf.symbols = elf.read_symbols().unwrap_or_default();
        Ok(elf)
    }

    fn read_symbols(&self) -> Option<Vec<(String, Symbol)>> {
        let symtab = self.sections.iter().find(|s| s.kind == SHT_SYMTAB)?;
        let strtab = self.section_data(".strtab")?;
        let table = self.data.get(symtab.offset as usize..(symtab.offset + symtab.size) as usize)?;
        let mut out = Vec::new();
        for sym in table.chunks_exact(SYM_LEN).skip(1) {
            let name = cstr_at(strtab, u32_at(sym, 0)? as usize)?.to_string();
            let (shndx, value, size) = (u16_at(sym, 6)?, u64_at(sym, 8)?, u64_at(sym, 16)?);
            if !name.is_empty() && shndx != 0 {
                out.push((name, Symbol { value, size, info: sym[4] }));
            }
        }
        Some(out)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The file bytes of a section (as stored: maybe compressed).
    pub fn section_data(&self, name: &str) -> Option<&'a [u8]> {
        let s = self.section(name)?;
        self.data.get(s.offset as usize..s.offset.checked_add(s.size)? as usize)
    }

    /// A debug section's contents, inflated when it is zlib-compressed.
    pub fn debug_section(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let Some(s) = self.section(name) else {
            // Older linkers: `.zdebug_*`, "ZLIB" and a big-endian size.
            let zname = format!(".z{}", name.trim_start_matches('.'));
            let Some(data) = self.section_data(&zname) else { return Ok(None) };
            if !data.starts_with(b"ZLIB") {
                bail!("{zname}: no ZLIB header");
            }
            let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(data.get(12..).unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("{zname}: zlib: {e:?}"))?;
            return Ok(Some(inflated));
        };
        let data = self.section_data(name).context("section outside the file")?;
        if s.flags & SHF_COMPRESSED == 0 {
            return Ok(Some(data.to_vec()));
        }
        if u32_at(data, 0) != Some(ELFCOMPRESS_ZLIB) {
            bail!("{name}: unknown compression");
        }
        let inflated = miniz_oxide::inflate::decompress_to_vec_zlib(data.get(24..).unwrap_or_default())
            .map_err(|e| anyhow::anyhow!("{name}: zlib: {e:?}"))?;
        Ok(Some(inflated))
    }

    pub fn symbol(&self, name: &str) -> Option<Symbol> {
        self.symbols.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }

    /// The PT_LOAD whose file image holds `vaddr`.
    pub fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments.iter().find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    /// `len` file bytes at a virtual address, within one segment.
    pub fn read(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let s = self.segment_of(vaddr)?;
        if vaddr - s.vaddr + len as u64 > s.filesz {
            return None;
        }
        let off = (s.offset + (vaddr - s.vaddr)) as usize;
        self.data.get(off..off + len)
    }
}

/// A piece of the new file: bytes mapped at `vaddr` (a PT_LOAD of their
/// own), optionally also named as a section.
pub struct Piece {
    pub vaddr: u64,
    pub flags: u32,
    pub bytes: Vec<u8>,
    pub section: Option<String>,
}

/// A section that is not mapped (symbols, DWARF).
pub struct Unmapped {
    pub name: String,
    pub kind: u32,
    pub flags: u64,
    pub bytes: Vec<u8>,
    pub entsize: u64,
}

/// Writes an ELF64 file: the original ELF header (patched), one PT_LOAD per
/// piece (in address order), `bss` as file-less PT_LOADs (vaddr, memsz), and
/// section headers for the named pieces and `unmapped`.
pub fn write(original: &Elf<'_>, pieces: &[Piece], bss: &[(u64, u64)], unmapped: &[Unmapped]) -> Vec<u8> {
    let nseg = pieces.len() + bss.len();
    let mut out = vec![0u8; EHDR_LEN + nseg * PHDR_LEN];
    out[..EHDR_LEN].copy_from_slice(&original.data[..EHDR_LEN]);
    let mut phdrs = Vec::new();
    let mut shdrs: Vec<(String, u32, u64, u64, u64, u64, u64)> = Vec::new(); // name, type, flags, addr, off, size, entsize
    for p in pieces {
        align(&mut out, 16);
        let off = out.len() as u64;
        out.extend_from_slice(&p.bytes);
        let len = p.bytes.len() as u64;
        phdrs.push((PT_LOAD, p.flags, off, p.vaddr, len, len));
        if let Some(name) = &p.section {
            let mut flags = SHF_ALLOC;
            if p.flags & PF_W != 0 {
                flags |= SHF_WRITE;
            }
            if p.flags & PF_X != 0 {
                flags |= SHF_EXECINSTR;
            }
            shdrs.push((name.clone(), SHT_PROGBITS, flags, p.vaddr, off, len, 0));
        }
    }
    for &(vaddr, memsz) in bss {
        phdrs.push((PT_LOAD, PF_R | PF_W, 0, vaddr, 0, memsz));
    }
    for u in unmapped {
        align(&mut out, 8);
        let off = out.len() as u64;
        out.extend_from_slice(&u.bytes);
        shdrs.push((u.name.clone(), u.kind, u.flags, 0, off, u.bytes.len() as u64, u.entsize));
    }
    // .shstrtab last.
    let mut shstrtab = vec![0u8];
    let mut name_offs = Vec::new();
    for (name, ..) in shdrs.iter().chain(std::iter::once(&(".shstrtab".to_string(), 0, 0, 0, 0, 0, 0))) {
        name_offs.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(name.as_bytes());
        shstrtab.push(0);
    }
    let shstr_off = out.len() as u64;
    out.extend_from_slice(&shstrtab);
    shdrs.push((".shstrtab".into(), SHT_STRTAB, 0, 0, shstr_off, shstrtab.len() as u64, 0));
    align(&mut out, 8);
    let shoff = out.len();
    out.extend_from_slice(&[0u8; SHDR_LEN]); // SHN_UNDEF
    let strtab_index = shdrs.iter().position(|s| s.0 == ".strtab").map_or(0, |i| i as u32 + 1);
    for (i, (_, kind, flags, addr, off, size, entsize)) in shdrs.iter().enumerate() {
        let mut sh = [0u8; SHDR_LEN];
        sh[0..4].copy_from_slice(&name_offs[i].to_le_bytes());
        sh[4..8].copy_from_slice(&kind.to_le_bytes());
        sh[8..16].copy_from_slice(&flags.to_le_bytes());
        sh[16..24].copy_from_slice(&addr.to_le_bytes());
        sh[24..32].copy_from_slice(&off.to_le_bytes());
        sh[32..40].copy_from_slice(&size.to_le_bytes());
        if *kind == SHT_SYMTAB {
            sh[40..44].copy_from_slice(&strtab_index.to_le_bytes()); // sh_link
            sh[44..48].copy_from_slice(&1u32.to_le_bytes()); // sh_info: first global
        }
        sh[48..56].copy_from_slice(&(if *kind == SHT_SYMTAB { 8u64 } else { 1 }).to_le_bytes());
        sh[56..64].copy_from_slice(&entsize.to_le_bytes());
        out.extend_from_slice(&sh);
    }
    let shnum = (shdrs.len() + 1) as u16;
    for (i, (kind, flags, off, vaddr, filesz, memsz)) in phdrs.iter().enumerate() {
        let ph = &mut out[EHDR_LEN + i * PHDR_LEN..EHDR_LEN + (i + 1) * PHDR_LEN];
        ph[0..4].copy_from_slice(&kind.to_le_bytes());
        ph[4..8].copy_from_slice(&flags.to_le_bytes());
        ph[8..16].copy_from_slice(&off.to_le_bytes());
        ph[16..24].copy_from_slice(&vaddr.to_le_bytes());
        ph[24..32].copy_from_slice(&vaddr.to_le_bytes());
        ph[32..40].copy_from_slice(&filesz.to_le_bytes());
        ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        ph[48..56].copy_from_slice(&16u64.to_le_bytes());
    }
    out[32..40].copy_from_slice(&(EHDR_LEN as u64).to_le_bytes()); // e_phoff
    out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes()); // e_shoff
    out[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
    out[56..58].copy_from_slice(&(nseg as u16).to_le_bytes());
    out[58..60].copy_from_slice(&(SHDR_LEN as u16).to_le_bytes());
    out[60..62].copy_from_slice(&shnum.to_le_bytes());
    out[62..64].copy_from_slice(&(shnum - 1).to_le_bytes()); // .shstrtab is last
    out
}

/// `.symtab` and `.strtab` holding `symbols` (after the null symbol).
/// Every symbol is marked defined in section 1.
pub fn symtab(symbols: &[(String, Symbol)]) -> [Unmapped; 2] {
    let mut tab = vec![0u8; SYM_LEN];
    let mut strs = vec![0u8];
    for (name, sym) in symbols {
        let mut e = [0u8; SYM_LEN];
        e[0..4].copy_from_slice(&(strs.len() as u32).to_le_bytes());
        e[4] = sym.info;
        e[6..8].copy_from_slice(&1u16.to_le_bytes());
        e[8..16].copy_from_slice(&sym.value.to_le_bytes());
        e[16..24].copy_from_slice(&sym.size.to_le_bytes());
        tab.extend_from_slice(&e);
        strs.extend_from_slice(name.as_bytes());
        strs.push(0);
    }
    [
        Unmapped { name: ".symtab".into(), kind: SHT_SYMTAB, flags: 0, bytes: tab, entsize: SYM_LEN as u64 },
        Unmapped { name: ".strtab".into(), kind: SHT_STRTAB, flags: 0, bytes: strs, entsize: 0 },
    ]
}

/// A debug section, zlib-compressed the way Go's linker stores it.
pub fn compressed_debug(name: &str, contents: &[u8]) -> Unmapped {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&ELFCOMPRESS_ZLIB.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(contents.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&miniz_oxide::deflate::compress_to_vec_zlib(contents, 9));
    Unmapped { name: name.into(), kind: SHT_PROGBITS, flags: SHF_COMPRESSED, bytes, entsize: 0 }
}

fn align(out: &mut Vec<u8>, to: usize) {
    while !out.len().is_multiple_of(to) {
        out.push(0);
    }
}
