//! Reader for Go's `.gopclntab` (runtime/symtab.go, Go 1.18+ formats).
//!
//! ```text
//! pcHeader (64-bit):  magic u32 | pad1 pad2 minLC ptrSize u8 | nfunc | nfiles
//!                     | textStart (0 from Go 1.26) | funcnameOffset | cuOffset
//!                     | filetabOffset | pctabOffset | pclnOffset
//! functab  (at pclnOffset): nfunc+1 × {entryoff u32, funcoff u32}; the last
//!                     entryoff is the end of the last function
//! _func    (at pclnOffset+funcoff): entryoff, nameoff, args, deferreturn,
//!                     pcsp, pcfile, pcln, npcdata, cuOffset, [startLine (1.20+)],
//!                     funcID u8, flag u8, pad u8, nfuncdata u8,
//!                     pcdata [npcdata]u32, funcdata [nfuncdata]u32
//! ```
//! Magic 0xfffffff0 (1.18–1.19) has no `startLine`, so `funcID` is at byte 36
//! instead of 40.

use std::sync::OnceLock;

use super::GoBinError;
use super::elf::ElfInfo;
use super::reader::{bytes_at, cstr_at, i32_at, to_usize, u8_at, u32_at, u64_at, uvarint};

pub(crate) const MAGIC_118: u32 = 0xffff_fff0;
pub(crate) const MAGIC_120: u32 = 0xffff_fff1;

const PCDATA_INL_TREE_INDEX: u32 = 2;
const FUNCDATA_INL_TREE: u32 = 3;
const HEADER_LEN: usize = 72;

fn malformed(detail: impl Into<String>) -> GoBinError {
    GoBinError::Malformed { what: ".gopclntab", detail: detail.into() }
}

/// The parsed header, before the text base is known.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    /// Static address of the pcHeader (= `.gopclntab`).
    pub vaddr: u64,
    pub file_off: usize,
    pub len: usize,
    pub magic: u32,
    pub min_lc: u8,
    pub nfunc: usize,
    /// 0 from Go 1.26.
    pub text_start: u64,
    pub funcname: usize,
    pub cu: usize,
    pub filetab: usize,
    pub pctab: usize,
    pub pcln: usize,
}

impl Header {
    /// Parses the header at the start of `bytes` (the pclntab image).
    pub fn parse(bytes: &[u8], vaddr: u64, file_off: usize) -> Result<Header, GoBinError> {
        let magic = u32_at(bytes, 0).ok_or_else(|| malformed("truncated header"))?;
        if magic != MAGIC_118 && magic != MAGIC_120 {
            return Err(match magic {
                0xffff_fffa | 0xffff_fffb => GoBinError::UnsupportedVersion(format!(
                    "pclntab magic {magic:#x} (Go 1.2–1.17); deferscope needs Go 1.18 or newer"
                )),
                _ => malformed(format!("unknown magic {magic:#x}")),
            });
        }
        let hdr8 = bytes_at(bytes, 4, 4).ok_or_else(|| malformed("truncated header"))?;
        let (pad1, pad2, min_lc, ptr_size) = (hdr8[0], hdr8[1], hdr8[2], hdr8[3]);
        if pad1 != 0 || pad2 != 0 || !matches!(min_lc, 1 | 2 | 4) || ptr_size != 8 {
            return Err(malformed(format!("bad header pad={pad1},{pad2} minLC={min_lc} ptrSize={ptr_size}")));
        }
        if bytes.len() < HEADER_LEN {
            return Err(malformed("truncated header"));
        }
        let word = |i: usize| u64_at(bytes, 8 * i).ok_or_else(|| malformed("truncated header"));
        let off = |i: usize| -> Result<usize, GoBinError> {
            let v = to_usize(word(i)?)
                .filter(|&v| v <= bytes.len())
                .ok_or_else(|| malformed("offset outside the table"))?;
            Ok(v)
        };
        let nfunc = to_usize(word(1)?).ok_or_else(|| malformed("nfunc"))?;
        let hdr = Header {
            vaddr,
            file_off,
            len: bytes.len(),
            magic,
            min_lc,
            nfunc,
            text_start: word(3)?,
            funcname: off(4)?,
            cu: off(5)?,
            filetab: off(6)?,
            pctab: off(7)?,
            pcln: off(8)?,
        };
        // functab must fit.
        let ftab_len = nfunc.checked_add(1).and_then(|n| n.checked_mul(8)).ok_or_else(|| malformed("nfunc"))?;
        if hdr.pcln.checked_add(ftab_len).is_none_or(|end| end > bytes.len()) {
            return Err(malformed(format!("functab of {nfunc} functions does not fit")));
        }
        Ok(hdr)
    }

    /// Finds the pclntab: the `.gopclntab` section, else a scan of the
    /// segments (read-only first) for a header that parses.
    pub fn locate(data: &[u8], elf: &ElfInfo) -> Result<Option<Header>, GoBinError> {
        // PIE binaries of Go ≤1.20 put it in the RELRO data instead.
        let sec = elf.section(".gopclntab").or_else(|| elf.section(".data.rel.ro.gopclntab"));
        if let Some(sec) = sec {
            let (off, len) = sec.file_range.ok_or_else(|| malformed("section has no file data"))?;
            let (off, len) =
                (to_usize(off).ok_or_else(|| malformed("offset"))?, to_usize(len).ok_or_else(|| malformed("size"))?);
            let bytes =
                bytes_at(data, off, len).ok_or_else(|| malformed("section extends past the end of the file"))?;
            return Header::parse(bytes, sec.addr, off).map(Some);
        }
        let read_only = elf.segments.iter().filter(|s| !s.is_writable());
        let writable = elf.segments.iter().filter(|s| s.is_writable());
        for seg in read_only.chain(writable) {
            let (Some(start), Some(len)) = (to_usize(seg.file_offset), to_usize(seg.filesz)) else { continue };
            let Some(bytes) = bytes_at(data, start, len) else { continue };
            let mut pos = (8 - start % 8) % 8;
            while pos + HEADER_LEN <= bytes.len() {
                let m = u32_at(bytes, pos);
                if m == Some(MAGIC_120) || m == Some(MAGIC_118) {
                    // A segment's addresses end at the top of the address space.
                    let vaddr = seg.vaddr.checked_add(pos as u64);
                    if let (Some(tail), Some(vaddr)) = (bytes.get(pos..), vaddr) {
                        if let Ok(h) = Header::parse(tail, vaddr, start + pos) {
                            // Cheap sanity check against random matches: the
                            // first function name must be a string.
                            if h.nfunc > 0 && cstr_at(tail, h.funcname).is_some() {
                                return Ok(Some(h));
                            }
                        }
                    }
                }
                pos += 8;
            }
        }
        Ok(None)
    }

    pub fn new_func_layout(&self) -> bool {
        self.magic == MAGIC_120
    }
}

#[derive(Clone, Copy, Debug)]
struct FuncRec {
    entry: u64,
    /// Offset of the `_func` from the start of the pclntab.
    func_off: usize,
}

/// The function table, resolved against the text base.
pub(crate) struct PclnTab {
    pub hdr: Header,
    pub text_start: u64,
    /// Base of funcdata offsets (`moduledata.gofunc`), if known.
    pub gofunc: Option<u64>,
    funcs: Vec<FuncRec>,
    /// End of the last function (the functab's sentinel entry).
    end: u64,
    names: OnceLock<Vec<u32>>,
}

/// One function's `_func` record.
#[derive(Clone, Copy)]
pub(crate) struct Func<'a> {
    tab: &'a [u8],
    off: usize,
    new_layout: bool,
    pub entry: u64,
    pub end: u64,
}

impl<'a> Func<'a> {
    fn u32f(&self, o: usize) -> Option<u32> {
        u32_at(self.tab, self.off.checked_add(o)?)
    }
    pub fn name_off(&self) -> Option<u32> {
        self.u32f(4)
    }
    pub fn pcfile(&self) -> Option<u32> {
        self.u32f(20)
    }
    pub fn pcln(&self) -> Option<u32> {
        self.u32f(24)
    }
    /// Size of the arguments in bytes (`abi.ArgsSizeUnknown`: unknown).
    pub fn args(&self) -> Option<i32> {
        i32_at(self.tab, self.off.checked_add(8)?)
    }
    /// Offset of the SP-delta table (frame size at each PC).
    pub fn pcsp(&self) -> Option<u32> {
        self.u32f(16)
    }
    /// `abi.FuncFlag`: top frame, SP write, assembly.
    pub fn flag(&self) -> Option<u8> {
        u8_at(self.tab, self.off.checked_add(self.tail() + 1)?)
    }
    fn npcdata(&self) -> Option<u32> {
        self.u32f(28)
    }
    fn cu_offset(&self) -> Option<u32> {
        self.u32f(32)
    }
    fn tail(&self) -> usize {
        if self.new_layout { 40 } else { 36 }
    }
    /// `abi.FuncID`; 0 is an ordinary function, `FuncIDWrapper` marks
    /// autogenerated wrappers such as ABI0↔ABIInternal shims.
    pub fn func_id(&self) -> Option<u8> {
        u8_at(self.tab, self.off.checked_add(self.tail())?)
    }
    fn nfuncdata(&self) -> Option<u8> {
        u8_at(self.tab, self.off.checked_add(self.tail() + 3)?)
    }
    pub(crate) fn pcdata(&self, i: u32) -> Option<u32> {
        if i >= self.npcdata()? {
            return None;
        }
        self.u32f(self.tail() + 4 + 4 * i as usize)
    }
    pub(crate) fn funcdata(&self, i: u32) -> Option<u32> {
        if i >= u32::from(self.nfuncdata()?) {
            return None;
        }
        let npc = to_usize(u64::from(self.npcdata()?))?;
        let o = (self.tail() + 4).checked_add(npc.checked_mul(4)?)?.checked_add(4 * i as usize)?;
        self.u32f(o).filter(|&v| v != u32::MAX)
    }
}

impl PclnTab {
    pub fn new(data: &[u8], hdr: Header, text_start: u64, gofunc: Option<u64>) -> Result<PclnTab, GoBinError> {
        let tab = bytes_at(data, hdr.file_off, hdr.len).ok_or_else(|| malformed("table outside the file"))?;
        let mut funcs = Vec::with_capacity(hdr.nfunc);
        let mut prev = 0u64;
        for i in 0..hdr.nfunc {
            let o = hdr.pcln + 8 * i;
            let entry_off = u32_at(tab, o).ok_or_else(|| malformed("truncated functab"))?;
            let func_off = u32_at(tab, o + 4).ok_or_else(|| malformed("truncated functab"))?;
            let entry = text_start.checked_add(u64::from(entry_off)).ok_or_else(|| malformed("entry overflows"))?;
            if entry < prev {
                return Err(malformed(format!("functab not sorted at index {i}")));
            }
            prev = entry;
            let func_off = hdr
                .pcln
                .checked_add(func_off as usize)
                .filter(|&f| f < tab.len())
                .ok_or_else(|| malformed(format!("_func {i} outside the table")))?;
            funcs.push(FuncRec { entry, func_off });
        }
        let end_off = u32_at(tab, hdr.pcln + 8 * hdr.nfunc).ok_or_else(|| malformed("truncated functab"))?;
        let end = text_start.saturating_add(u64::from(end_off)).max(prev);
        Ok(PclnTab { hdr, text_start, gofunc, funcs, end, names: OnceLock::new() })
    }

    fn tab<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        bytes_at(data, self.hdr.file_off, self.hdr.len).unwrap_or(&[])
    }

    pub fn len(&self) -> usize {
        self.funcs.len()
    }

    pub fn func_at_index<'a>(&self, data: &'a [u8], i: usize) -> Option<Func<'a>> {
        let rec = self.funcs.get(i)?;
        let end = self.funcs.get(i + 1).map_or(self.end, |n| n.entry);
        Some(Func {
            tab: self.tab(data),
            off: rec.func_off,
            new_layout: self.hdr.new_func_layout(),
            entry: rec.entry,
            end,
        })
    }

    /// The function whose [entry, next entry) range holds `pc`.
    pub fn find_func<'a>(&self, data: &'a [u8], pc: u64) -> Option<Func<'a>> {
        let first = self.funcs.first()?;
        if pc < first.entry || pc >= self.end {
            return None;
        }
        let i = self.funcs.partition_point(|f| f.entry <= pc).checked_sub(1)?;
        self.func_at_index(data, i)
    }

    pub fn func_name<'a>(&self, data: &'a [u8], f: &Func<'_>) -> Option<&'a str> {
        self.name_at(data, f.name_off()?)
    }

    fn name_at<'a>(&self, data: &'a [u8], name_off: u32) -> Option<&'a str> {
        cstr_at(self.tab(data), self.hdr.funcname.checked_add(name_off as usize)?)
    }

    /// Indices into the function table sorted by name (then index), built
    /// on first use: 4 bytes a function where a map of owned names took
    /// ~130 (8 MB on prometheus); the names stay in the pclntab.
    fn names(&self, data: &[u8]) -> &[u32] {
        self.names.get_or_init(|| {
            let mut named: Vec<(&str, u32)> = (0..self.funcs.len())
                .filter_map(|i| Some((self.func_at_index(data, i).and_then(|f| self.func_name(data, &f))?, i as u32)))
                .collect();
            named.sort_unstable();
            named.into_iter().map(|(_, i)| i).collect()
        })
    }

    /// The indices of the functions called `name`, in table order.
    fn indices_named<'s>(&'s self, data: &[u8], name: &str) -> &'s [u32] {
        let sorted = self.names(data);
        let name_of = |i: u32| self.func_at_index(data, i as usize).and_then(|f| self.func_name(data, &f));
        let start = sorted.partition_point(|&i| name_of(i) < Some(name));
        let len = sorted[start..].partition_point(|&i| name_of(i) == Some(name));
        &sorted[start..start + len]
    }

    /// The function called `name`. ABI wrappers share their target's name
    /// in pclntab (`runtime.goexit1` and `runtime.goexit1.abi0` are both
    /// "runtime.goexit1"); for duplicated names prefer funcID 0. Only for
    /// duplicates: `runtime.deferreturn` is itself tagged as a wrapper.
    pub fn lookup<'a>(&self, data: &'a [u8], name: &str) -> Option<Func<'a>> {
        let idx = self.indices_named(data, name);
        let funcs: Vec<Func<'a>> = idx.iter().filter_map(|&i| self.func_at_index(data, i as usize)).collect();
        if funcs.len() > 1 {
            if let Some(f) = funcs.iter().find(|f| f.func_id() == Some(0)) {
                return Some(*f);
            }
        }
        funcs.first().copied()
    }

    /// Decodes the pc-value table at `table_off` for `target` (runtime
    /// `pcvalue`): pairs of (zigzag value delta, pc delta / minLC) varints,
    /// starting from value -1 at the function entry.
    pub fn pcvalue(&self, data: &[u8], table_off: u32, entry: u64, target: u64) -> Option<i32> {
        if table_off == 0 {
            return None;
        }
        let tab = self.tab(data);
        let mut p = self.hdr.pctab.checked_add(table_off as usize)?;
        let mut val: i32 = -1;
        let mut pc = entry;
        let mut first = true;
        loop {
            let uv = uvarint(tab, &mut p)? as u32;
            if uv == 0 && !first {
                return None;
            }
            first = false;
            let delta = ((uv >> 1) as i32) ^ -((uv & 1) as i32);
            val = val.wrapping_add(delta);
            let pcdelta = uvarint(tab, &mut p)?;
            pc = pc.checked_add(pcdelta.checked_mul(u64::from(self.hdr.min_lc))?)?;
            if target < pc {
                return Some(val);
            }
        }
    }

    fn file_name<'a>(&self, data: &'a [u8], f: &Func<'_>, file_no: i32) -> Option<&'a str> {
        let tab = self.tab(data);
        let idx = u64::from(f.cu_offset()?).checked_add(u64::try_from(file_no).ok()?)?;
        let off = u32_at(tab, self.hdr.cu.checked_add(to_usize(idx)?.checked_mul(4)?)?)?;
        if off == u32::MAX {
            return None;
        }
        cstr_at(tab, self.hdr.filetab.checked_add(off as usize)?)
    }

    /// File and line of `pc` inside `f` (the innermost position: Go's line
    /// tables already describe inlined code by its own source position).
    pub fn file_line<'a>(&self, data: &'a [u8], f: &Func<'_>, pc: u64) -> Option<(&'a str, u32)> {
        let file_no = self.pcvalue(data, f.pcfile()?, f.entry, pc)?;
        let line = self.pcvalue(data, f.pcln()?, f.entry, pc)?;
        Some((self.file_name(data, f, file_no)?, u32::try_from(line).ok()?))
    }

    /// Name of the innermost function inlined at `pc`, if `pc` is in inlined
    /// code (FUNCDATA_InlTree indexed by PCDATA_InlTreeIndex).
    pub fn inlined_name<'a>(&self, data: &'a [u8], elf: &ElfInfo, f: &Func<'_>, pc: u64) -> Option<&'a str> {
        self.inlined_call(data, elf, f, pc).map(|(name, _)| name)
    }

    /// The innermost inlined call at `pc`: the inlined function's name and
    /// the PC in the enclosing (logical) function where the call was, which
    /// Go's own unwinder (`inlineUnwinder`) follows to the outer frames.
    pub fn inlined_call<'a>(&self, data: &'a [u8], elf: &ElfInfo, f: &Func<'_>, pc: u64) -> Option<(&'a str, u64)> {
        let tree_off = f.funcdata(FUNCDATA_INL_TREE)?;
        let idx_table = f.pcdata(PCDATA_INL_TREE_INDEX)?;
        let ix = self.pcvalue(data, idx_table, f.entry, pc)?;
        let ix = u64::try_from(ix).ok()?; // -1: not inlined
        let tree = self.gofunc?.checked_add(u64::from(tree_off))?;
        // inlinedCall: 1.20+ {funcID u8, _ [3]u8, nameOff i32, parentPc i32,
        // startLine i32} (16 bytes); 1.18–1.19 {parent i16, funcID u8, _ u8,
        // file i32, line i32, func_ i32, parentPc i32} (20 bytes).
        let (size, name_field, parent_pc_field) =
            if self.hdr.new_func_layout() { (16u64, 4u64, 8u64) } else { (20, 12, 16) };
        let entry = elf.read_vaddr(data, tree.checked_add(ix.checked_mul(size)?)?, size as usize)?;
        let name_off = i32_at(entry, name_field as usize)?;
        let parent_pc = i32_at(entry, parent_pc_field as usize)?;
        let name = self.name_at(data, u32::try_from(name_off).ok()?)?;
        Some((name, f.entry.checked_add(u64::try_from(parent_pc).ok()?)?))
    }
}
