//! Go binary introspection: everything deferscope learns from the target's
//! executable file, without running it.
//!
//! Zero-copy readers over the file's bytes (gimli/object style): explicit
//! error types, no panics on malformed input.
//!
//! CONTRACT (used by the rest of deferscope; keep these names and signatures,
//! add freely):
//! - addresses are *static* virtual addresses as in the ELF file (before the
//!   PIE load bias); callers add the bias from /proc/PID/maps
//!   (`process::TracedProcess::load_bias`).
//!
//! Layout: `image` (the file's bytes: only the sections used are read),
//! `elf` (program/section headers, symtab), `buildinfo` (version),
//! `pclntab` (functions, lines, inline trees), `moduledata` (text base and
//! gofunc for stripped 1.26+ binaries), `prologue` (stack-check and call
//! decoding), `allgs` (allgs/allglen from `runtime.allgadd`), `dwarf`
//! (struct members and constants, which `goruntime::layout` turns into
//! offsets). Tests: `tests.rs`, on binaries built by
//! `xtask/src/fixtures.rs` (env `DEFERSCOPE_GO_FIXTURES`). Fuzzing: `fuzz.rs`
//! drives every reader for the targets in `fuzz/` (`cargo xtask fuzz`).

mod allgs;
mod buildinfo;
mod dwarf;
mod elf;
pub(crate) mod fuzz;
mod image;
mod moduledata;
mod pclntab;
mod prologue;
mod reader;
mod stackmap;
#[cfg(test)]
pub(crate) mod tests;
mod wrappers;

use std::{borrow::Cow, path::Path};

pub(crate) use dwarf::DwarfFacts;
pub use elf::LoadSegment;
pub use stackmap::{FrameMaps, PointerMap, StackObject};

use elf::ElfInfo;
use image::{Image, SHF_EXECINSTR, SectionHeader};
use moduledata::Moduledata;
use pclntab::{Header, PclnTab};
use prologue::Prologue;

#[derive(Debug, thiserror::Error)]
pub enum GoBinError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("not an ELF file")]
    NotElf,
    #[error("not a Go binary (no .go.buildinfo and no .gopclntab)")]
    NotGo,
    #[error("unsupported architecture {0} (deferscope supports x86_64 and aarch64)")]
    UnsupportedArch(String),
    #[error("unsupported Go version {0}")]
    UnsupportedVersion(String),
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("function {0} not found")]
    FunctionNotFound(String),
    #[error("{0}")]
    Other(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The name users see (`uname -m`).
    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// Go's name for it (`GOARCH`).
    pub fn goarch(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Aarch64 => "arm64",
        }
    }
}

/// `go1.24.11` → major 1, minor 24, patch 11. `raw` keeps the exact string
/// (which may carry suffixes such as `go1.24.11 X:rangefunc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    pub raw: String,
}

/// A source position.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceLine {
    pub function: String,
    pub file: String,
    pub line: u32,
}

/// Where to put a uprobe on a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePoint {
    /// Static virtual address of the function's entry.
    pub entry: u64,
    /// Static virtual address of the probe: the first instruction after the
    /// prologue's stack-bound check (so `morestack` re-running the function
    /// does not fire the probe twice), or `entry` for functions without one.
    pub vaddr: u64,
    /// File offset of `vaddr`, computed from the program headers (what a
    /// uprobe attaches to; correct for PIE).
    pub file_offset: u64,
}

/// Where `runtime.allgs` (a `[]*g`: ptr, len, cap) lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllgsLocation {
    /// Static address of the slice header `runtime.allgs`.
    pub allgs: u64,
    /// Static address of `runtime.allglen` (uintptr), if found.
    pub allglen: Option<u64>,
}

/// A parsed Go executable.
pub struct GoBinary {
    /// The file's bytes that the readers use (see `image.rs`): read, not
    /// mmapped, since the target may be rebuilt in place while we run and a
    /// truncated mapping would SIGBUS.
    data: Image,
    elf: ElfInfo,
    version: GoVersion,
    pcln: PclnTab,
    moduledata: Option<Moduledata>,
}

impl std::fmt::Debug for GoBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoBinary")
            .field("version", &self.version.raw)
            .field("arch", &self.elf.arch)
            .field("pie", &self.elf.is_pie)
            .field("stripped", &self.is_stripped())
            .field("functions", &self.pcln.len())
            .finish()
    }
}

impl GoBinary {
    /// Reads and parses the file (e.g. `/proc/PID/exe`): only the sections
    /// used after startup stay in memory (see `image.rs`).
    pub fn open(path: &Path) -> Result<GoBinary, GoBinError> {
        let io = |source| GoBinError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        if let Some(image) = Image::sparse(file, kept_at_open).map_err(io)? {
            match GoBinary::from_image(image) {
                Ok(mut binary) => {
                    binary.load_funcdata().map_err(io)?;
                    return Ok(binary);
                }
                // Whatever is wrong, the whole file says it the same way
                // for every binary (or parses where a section was
                // somewhere unexpected).
                Err(e) => log::debug!("{}: {e} in the sections read; reading the whole file", path.display()),
            }
        }
        let data = std::fs::read(path).map_err(io)?;
        GoBinary::parse(data)
    }

    /// Parses an in-memory image.
    pub fn parse(data: Vec<u8>) -> Result<GoBinary, GoBinError> {
        GoBinary::from_image(Image::whole(data))
    }

    /// Reads what a sparse image left out and the readers want after
    /// startup: the funcdata (inline trees), from `gofunc` to the end of
    /// `.rodata`, where the linker puts it. With a symbol table, or without
    /// `gofunc`, all of `.rodata` (`wait_reason_strings` reads strings
    /// anywhere in it). A `gofunc` outside `.rodata` (a layout the linker
    /// does not make, as in the fuzz seeds): every non-code segment.
    fn load_funcdata(&mut self) -> std::io::Result<()> {
        let rodata = self.elf.section(".rodata").and_then(|s| Some((s.addr, s.file_range?)));
        match (self.pcln.gofunc.filter(|_| self.elf.symtab.is_none()), rodata) {
            (Some(g), Some((addr, (off, len)))) if g >= addr && g - addr < len => {
                self.data.load(off + (g - addr), len - (g - addr))
            }
            (None, Some((_, (off, len)))) => self.data.load(off, len),
            _ => {
                for seg in self.elf.segments.clone().iter().filter(|s| !s.is_executable()) {
                    self.data.load(seg.file_offset, seg.filesz)?;
                }
                if let Some((_, (off, len))) = rodata {
                    self.data.load(off, len)?;
                }
                Ok(())
            }
        }
    }

    fn from_image(data: Image) -> Result<GoBinary, GoBinError> {
        let elf = ElfInfo::parse(&data)?;
        let raw_version = buildinfo::find_version(&data, &elf)?;
        let hdr = Header::locate(&data, &elf)?;
        let (raw_version, hdr) = match (raw_version, hdr) {
            (None, None) => return Err(GoBinError::NotGo),
            (None, Some(_)) => {
                return Err(GoBinError::UnsupportedVersion(
                    "unknown: the binary has a .gopclntab but no .go.buildinfo".into(),
                ));
            }
            (Some(v), None) => {
                return Err(GoBinError::Malformed { what: ".gopclntab", detail: format!("missing in a {v} binary") });
            }
            (Some(v), Some(h)) => (v, h),
        };
        let version = GoVersion::parse(&raw_version)
            .ok_or_else(|| GoBinError::UnsupportedVersion(format!("unparseable version string {raw_version:?}")))?;
        // The pclntab and buildinfo formats read here start with Go 1.18.
        if version.major != 1 || version.minor < 18 {
            return Err(GoBinError::UnsupportedVersion(version.raw));
        }
        let expect = moduledata::Expect {
            pc_header: hdr.vaddr,
            funcnametab: hdr.vaddr.wrapping_add(hdr.funcname as u64),
            ftab: hdr.vaddr.wrapping_add(hdr.pcln as u64),
        };
        let md = moduledata::find(&data, &elf, &expect, version.minor);
        // textStart is in the header up to Go 1.25; from 1.26 it is 0 and
        // only moduledata.text (= runtime.text, which is *not* the .text
        // section start in cgo binaries) has it.
        let text_start = if hdr.text_start != 0 {
            hdr.text_start
        } else if let Some(md) = md {
            md.text
        } else if let Some(sym) = elf.symbol("runtime.text") {
            sym.addr
        } else {
            return Err(GoBinError::Malformed {
                what: ".gopclntab",
                detail: "textStart is 0 and neither moduledata nor runtime.text was found".into(),
            });
        };
        let gofunc = md
            .and_then(|m| m.gofunc)
            .or_else(|| elf.symbol("go:func.*").or_else(|| elf.symbol("go.func.*")).map(|s| s.addr));
        let pcln = PclnTab::new(&data, hdr, text_start, gofunc)?;
        Ok(GoBinary { data, elf, version, pcln, moduledata: md })
    }

    pub fn version(&self) -> &GoVersion {
        &self.version
    }

    pub fn arch(&self) -> Arch {
        self.elf.arch
    }

    /// ET_DYN (position independent).
    pub fn is_pie(&self) -> bool {
        self.elf.is_pie
    }

    /// True when the binary has no `.symtab` (function names come from pclntab).
    pub fn is_stripped(&self) -> bool {
        self.elf.symtab.is_none()
    }

    pub fn has_dwarf(&self) -> bool {
        dwarf::has_dwarf(&self.data)
    }

    /// Entry address of a function by its Go name (`runtime.deferproc`); when
    /// the name appears twice (ABI wrappers), the non-wrapper one.
    pub fn function_entry(&self, name: &str) -> Option<u64> {
        if let Some(sym) = self.elf.symbol(name).filter(|s| s.is_func) {
            // `.symtab` names the ABI0 half of an ABI pair `name.abi0`, but
            // pclntab gives both halves the same name. Resolve such pairs
            // with the pclntab rule (the non-wrapper wins) so that stripped
            // and unstripped builds agree: for Go functions that is `name`
            // (the `.abi0` one is the wrapper), for assembly functions such
            // as `runtime.reflectcall` it is `name.abi0`.
            if self.elf.symbol(&format!("{name}.abi0")).is_some() {
                if let Some(f) = self.pcln.lookup(&self.data, name) {
                    return Some(f.entry);
                }
            }
            return Some(sym.addr);
        }
        self.pcln.lookup(&self.data, name).map(|f| f.entry)
    }

    /// [entry, end) of the function starting at `entry`, from pclntab.
    fn function_bounds(&self, entry: u64) -> Option<(u64, u64)> {
        let f = self.pcln.find_func(&self.data, entry).filter(|f| f.entry == entry)?;
        Some((f.entry, f.end))
    }

    fn code(&self, entry: u64, end: u64) -> Result<Cow<'_, [u8]>, GoBinError> {
        let len = usize::try_from(end.saturating_sub(entry)).unwrap_or(0);
        // Within one segment's file image, as `ElfInfo::read_vaddr` checks.
        let in_file = self.elf.segment_for_vaddr(entry).is_some_and(|s| len as u64 <= s.filesz - (entry - s.vaddr));
        let off = self.elf.vaddr_to_file_offset(entry).filter(|_| in_file);
        off.and_then(|off| self.data.bytes(off, len)).ok_or_else(|| GoBinError::Malformed {
            what: "program headers",
            detail: format!("code at {entry:#x}..{end:#x} is not in the file"),
        })
    }

    fn located(&self, name: &str) -> Result<(u64, u64), GoBinError> {
        let entry = self.function_entry(name).ok_or_else(|| GoBinError::FunctionNotFound(name.to_string()))?;
        self.function_bounds(entry).ok_or_else(|| GoBinError::Malformed {
            what: ".gopclntab",
            detail: format!("{name} at {entry:#x} has no pclntab entry"),
        })
    }

    fn is_morestack(&self, addr: u64) -> bool {
        self.function_name(addr).is_some_and(|n| n.starts_with("runtime.morestack"))
    }

    fn point(&self, entry: u64, vaddr: u64) -> Result<ProbePoint, GoBinError> {
        let file_offset = self.vaddr_to_file_offset(vaddr).ok_or_else(|| GoBinError::Malformed {
            what: "program headers",
            detail: format!("{vaddr:#x} is not in a loadable segment"),
        })?;
        Ok(ProbePoint { entry, vaddr, file_offset })
    }

    /// Where to attach an entry uprobe to `name`.
    pub fn probe_point(&self, name: &str) -> Result<ProbePoint, GoBinError> {
        let (entry, end) = self.located(name)?;
        let code = self.code(entry, end)?;
        let is_morestack = |a: u64| self.is_morestack(a);
        let prologue = match self.elf.arch {
            Arch::X86_64 => prologue::amd64_prologue(&code, entry, end, &is_morestack),
            Arch::Aarch64 => prologue::arm64_prologue(&code, entry, end, &is_morestack),
        };
        let vaddr = match prologue {
            Prologue::AfterCheck(v) => v,
            Prologue::NoCheck => entry,
            Prologue::Unrecognised => {
                log::warn!(
                    "{name}: calls morestack but its stack check has an unknown shape; probing the entry \
                     (the probe may fire twice when the stack grows)"
                );
                entry
            }
        };
        self.point(entry, vaddr)
    }

    /// Probe points on the instruction right after each `CALL callee` inside
    /// `caller` (e.g. after `runtime.newproc1` in `runtime.newproc.func1`):
    /// how deferscope sees a function's result without a uretprobe.
    pub fn call_return_points(&self, caller: &str, callee: &str) -> Result<Vec<ProbePoint>, GoBinError> {
        let (entry, end) = self.located(caller)?;
        let target = self.function_entry(callee).ok_or_else(|| GoBinError::FunctionNotFound(callee.to_string()))?;
        let code = self.code(entry, end)?;
        let calls = match self.elf.arch {
            Arch::X86_64 => prologue::amd64_calls(&code, entry),
            Arch::Aarch64 => prologue::a64_calls(&code, entry),
        };
        calls.into_iter().filter(|&(_, t)| t == target).map(|(ret, _)| self.point(entry, ret)).collect()
    }

    /// Function, file and line of a PC (static address). For a return
    /// address, pass `pc - 1` to get the line of the call.
    pub fn symbolize(&self, pc: u64) -> Option<SourceLine> {
        let f = self.pcln.find_func(&self.data, pc)?;
        let (file, line) = self.pcln.file_line(&self.data, &f, pc)?;
        let function =
            self.pcln.inlined_name(&self.data, &self.elf, &f, pc).or_else(|| self.pcln.func_name(&self.data, &f))?;
        Some(SourceLine { function: function.to_string(), file: file.to_string(), line })
    }

    /// Every logical frame at `pc`, innermost first: the inlined calls (each
    /// at its own source line) and then the physical function, at the line
    /// of the outermost inlined call. For a return address, pass `pc - 1`.
    pub fn symbolize_frames(&self, pc: u64) -> Vec<SourceLine> {
        let mut frames = Vec::new();
        let Some(f) = self.pcln.find_func(&self.data, pc) else { return frames };
        let mut at = pc;
        // The inline tree is a tree: each parent PC is in a shallower inlined
        // call. The bound stops a corrupt table from looping.
        for _ in 0..64 {
            let Some((file, line)) = self.pcln.file_line(&self.data, &f, at) else { break };
            match self.pcln.inlined_call(&self.data, &self.elf, &f, at) {
                Some((name, parent_pc)) => {
                    frames.push(SourceLine { function: name.to_string(), file: file.to_string(), line });
                    if parent_pc == at {
                        break;
                    }
                    at = parent_pc;
                }
                None => {
                    if let Some(name) = self.pcln.func_name(&self.data, &f) {
                        frames.push(SourceLine { function: name.to_string(), file: file.to_string(), line });
                    }
                    break;
                }
            }
        }
        frames
    }

    /// Name of the function containing `pc`.
    pub fn function_name(&self, pc: u64) -> Option<&str> {
        let f = self.pcln.find_func(&self.data, pc)?;
        self.pcln.func_name(&self.data, &f)
    }

    /// Entry address of the function containing `pc`.
    pub fn function_start(&self, pc: u64) -> Option<u64> {
        self.pcln.find_func(&self.data, pc).map(|f| f.entry)
    }

    /// Number of functions in the pclntab.
    pub fn function_count(&self) -> usize {
        self.pcln.len()
    }

    /// Static address of `moduledata.text` / the pclntab text base.
    pub fn text_start(&self) -> u64 {
        self.pcln.text_start
    }

    /// Static address of `runtime.firstmoduledata`, when found.
    pub fn moduledata_addr(&self) -> Option<u64> {
        self.moduledata.map(|m| m.vaddr)
    }

    /// The named runtime structs and the runtime's constants from DWARF, or
    /// `None` when the binary has no DWARF (stripped).
    pub(crate) fn dwarf_facts(&self, structs: &[&str]) -> Result<Option<DwarfFacts>, GoBinError> {
        if !self.has_dwarf() {
            return Ok(None);
        }
        // A sparse image has no DWARF: read it for this call only.
        match self.data.sections(|s| is_dwarf(s.name)) {
            None => dwarf::read_facts(&self.data, structs).map(Some),
            Some(Err(source)) => Err(GoBinError::Io { path: "the executable".into(), source }),
            Some(Ok(sections)) => dwarf::read_facts(&sections, structs).map(Some),
        }
    }

    /// The binary's own `runtime.waitReasonStrings` (`[N]string`), when the
    /// symbol table has it.
    pub(crate) fn wait_reason_strings(&self) -> Option<Vec<String>> {
        let sym = self.elf.symbol("runtime.waitReasonStrings")?;
        go_strings(&self.elf, &self.data, sym.addr, sym.size / 16)
    }

    pub fn allgs_location(&self) -> Result<AllgsLocation, GoBinError> {
        if let Some(sym) = self.elf.symbol("runtime.allgs") {
            let allglen = self.elf.symbol("runtime.allglen").map(|s| s.addr);
            return Ok(AllgsLocation { allgs: sym.addr, allglen });
        }
        self.allgs_from_code()
    }

    /// `allgs_location` for stripped binaries: decodes `runtime.allgadd`
    /// (see `allgs.rs`). Public so tests can check it against `.symtab`.
    pub fn allgs_from_code(&self) -> Result<AllgsLocation, GoBinError> {
        let (entry, end) = self.located("runtime.allgadd")?;
        let code = self.code(entry, end)?;
        let acc = match self.elf.arch {
            Arch::X86_64 => allgs::amd64_accesses(&code, entry),
            Arch::Aarch64 => allgs::arm64_accesses(&code, entry),
        };
        let is_data =
            |a: u64| self.elf.segments.iter().any(|s| s.is_writable() && a >= s.vaddr && a - s.vaddr < s.memsz);
        let (allgs, allglen) = acc.solve(&is_data).ok_or_else(|| GoBinError::Malformed {
            what: "runtime.allgadd",
            detail: "no slice header accessed at X, X+8, X+16".into(),
        })?;
        Ok(AllgsLocation { allgs, allglen })
    }

    /// Static address of `runtime.mheap_`, from `.symtab` (None when
    /// stripped: then leaks are proven only for goroutines that can never
    /// wake).
    pub fn mheap_location(&self) -> Option<u64> {
        match self.elf.symbol("runtime.mheap_") {
            Some(sym) => Some(sym.addr),
            None => self.mheap_from_code(),
        }
    }

    /// `mheap_location` for stripped binaries: the receiver of the
    /// `mheap_.alloc(…)` call in `runtime.(*mcentral).grow` (see
    /// `allgs::receivers_at_calls`), when every such call agrees and the
    /// address is writable data.
    pub fn mheap_from_code(&self) -> Option<u64> {
        let (entry, end) = self.located("runtime.(*mcentral).grow").ok()?;
        let callee = self.function_entry("runtime.(*mheap).alloc")?;
        let code = self.code(entry, end).ok()?;
        let found = allgs::receivers_at_calls(&code, entry, callee, self.elf.arch == Arch::Aarch64);
        let first = *found.first()?;
        let is_data =
            self.elf.segments.iter().any(|s| s.is_writable() && first >= s.vaddr && first - s.vaddr < s.memsz);
        (is_data && found.iter().all(|&a| a == first)).then_some(first)
    }

    /// Static address of `runtime.semtable`, from `.symtab` or, stripped,
    /// from the code of `runtime.semacquire1` and `runtime.semrelease1`
    /// (`allgs::data_addresses`): the one address in .data or .bss both
    /// take.
    pub fn semtable_location(&self) -> Option<u64> {
        match self.elf.symbol("runtime.semtable") {
            Some(sym) => Some(sym.addr),
            None => self.semtable_from_code(),
        }
    }

    /// `semtable_location` for stripped binaries.
    pub fn semtable_from_code(&self) -> Option<u64> {
        let globals = self.pointer_globals();
        let mut common: Option<Vec<u64>> = None;
        for f in ["runtime.semacquire1", "runtime.semrelease1"] {
            let (entry, end) = self.located(f).ok()?;
            let code = self.code(entry, end).ok()?;
            // The table holds pointers, so it lies in .data or .bss; the
            // flags both functions also take (`writeBarrier`, profiling
            // rates) hold none and lie in the noptr sections.
            let in_pointer_globals = |a: u64| globals.iter().any(|&(start, end)| (start..end).contains(&a));
            let mut found: Vec<u64> = allgs::data_addresses(&code, entry, self.elf.arch == Arch::Aarch64)
                .into_iter()
                .filter(|&a| in_pointer_globals(a))
                .collect();
            found.sort_unstable();
            found.dedup();
            common = Some(match common {
                None => found,
                Some(c) => c.into_iter().filter(|a| found.contains(a)).collect(),
            });
        }
        match common?.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// The static ranges `[start, end)` of the module's data and bss, which
    /// hold every global that can point into the heap (`moduledata.data`..
    /// `edata` and `bss`..`ebss`: the `.data` and `.bss` sections; the
    /// `noptr` ones hold no pointers). Section headers survive `-s -w`.
    pub fn pointer_globals(&self) -> Vec<(u64, u64)> {
        [".data", ".bss"]
            .into_iter()
            .filter_map(|name| self.elf.section(name))
            .filter(|s| s.addr != 0 && s.size > 0)
            .filter_map(|s| Some((s.addr, s.addr.checked_add(s.size)?)))
            .collect()
    }

    /// Names the global holding static address `addr`: `main.registry+0x18`
    /// from `.symtab`, or stripped (no data symbols to go by) the section and
    /// the offset in it, `.bss+0x1234`. None outside every section.
    pub fn global_name(&self, addr: u64) -> Option<String> {
        if let Some(symtab) = &self.elf.symtab {
            // A linear pass: called for the few roots of retaining paths, and
            // cached by the caller.
            let holder = symtab
                .iter()
                .filter(|(_, sym)| !sym.is_func && sym.addr <= addr && addr < sym.addr.saturating_add(sym.size.max(1)))
                // The innermost sized symbol; zero-sized markers
                // (`runtime.bss`, `runtime.edata`, ...) only when nothing else
                // holds the address.
                .min_by_key(|(_, sym)| (sym.size == 0, sym.size));
            if let Some((name, sym)) = holder {
                return Some(format!("{name}+{:#x}", addr - sym.addr));
            }
        }
        self.elf
            .sections
            .iter()
            .find(|s| s.addr != 0 && s.addr <= addr && addr < s.addr.saturating_add(s.size))
            .map(|s| format!("{}+{:#x}", s.name, addr - s.addr))
    }

    /// `runtime.allp` (the `[]*p` of every P), from `.symtab` or, stripped,
    /// from code (`allp_from_code`).
    pub fn allp_location(&self) -> Option<u64> {
        match self.elf.symbol("runtime.allp") {
            Some(sym) => Some(sym.addr),
            None => self.allp_from_code(),
        }
    }

    /// `allp_location` for stripped binaries: `runtime.procresize` appends
    /// to or reslices several global slices (`allp`, `idlepMask`,
    /// `timerpMask`, …: their X, X+8 and X+16 are accessed); `allp` is the
    /// one of them whose length both `runtime.retake` and
    /// `runtime.checkdead` read (`for i := 0; i < len(allp); i++`).
    pub fn allp_from_code(&self) -> Option<u64> {
        let accesses = |name: &str| {
            let (entry, end) = self.located(name).ok()?;
            let code = self.code(entry, end).ok()?;
            Some(match self.elf.arch {
                Arch::X86_64 => allgs::amd64_accesses(&code, entry),
                Arch::Aarch64 => allgs::arm64_accesses(&code, entry),
            })
        };
        let is_data =
            |a: u64| self.elf.segments.iter().any(|s| s.is_writable() && a >= s.vaddr && a - s.vaddr < s.memsz);
        let headers = accesses("runtime.procresize")?.slice_headers(&is_data);
        let (retake, checkdead) = (accesses("runtime.retake")?, accesses("runtime.checkdead")?);
        let read_len = |x: &u64| retake.reads(x + 8) && checkdead.reads(x + 8);
        match headers.iter().filter(|x| read_len(x)).collect::<Vec<_>>().as_slice() {
            [one] => Some(**one),
            _ => None,
        }
    }

    /// `runtime.allm` (the list of every M), from the symbol table: None
    /// when stripped.
    pub fn allm_location(&self) -> Option<u64> {
        match self.elf.symbol("runtime.allm") {
            Some(sym) => Some(sym.addr),
            None => self.allm_from_code(),
        }
    }

    /// `allm_location` for stripped binaries: `runtime.mcommoninit` links a
    /// new M at the head of the list (`mp.alllink = allm` then
    /// `atomicstorep(unsafe.Pointer(&allm), unsafe.Pointer(mp))`): `allm`
    /// is the one global it both loads and stores atomically.
    pub fn allm_from_code(&self) -> Option<u64> {
        let (entry, end) = self.located("runtime.mcommoninit").ok()?;
        let code = self.code(entry, end).ok()?;
        let accesses = match self.elf.arch {
            Arch::X86_64 => allgs::amd64_accesses(&code, entry),
            Arch::Aarch64 => allgs::arm64_accesses(&code, entry),
        };
        let is_data =
            |a: u64| self.elf.segments.iter().any(|s| s.is_writable() && a >= s.vaddr && a - s.vaddr < s.memsz);
        match accesses.read_then_atomically_stored(&is_data).as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Static address of `runtime.firstmoduledata`, if it was found.
    pub fn moduledata_location(&self) -> Option<u64> {
        self.moduledata.map(|m| m.vaddr)
    }

    /// Converts a static virtual address into a file offset (program headers).
    pub fn vaddr_to_file_offset(&self, vaddr: u64) -> Option<u64> {
        self.elf.vaddr_to_file_offset(vaddr)
    }

    /// Converts a file offset into a static virtual address (program headers).
    pub fn file_offset_to_vaddr(&self, off: u64) -> Option<u64> {
        self.elf.file_offset_to_vaddr(off)
    }

    /// The `PT_LOAD` program headers.
    pub fn load_segments(&self) -> Vec<LoadSegment> {
        self.elf.segments.clone()
    }
}

/// The sections a sparse image reads at open: all with file bytes except
/// machine code (read per function when decoded), DWARF (read once, when
/// its facts are wanted) and `.rodata` (`GoBinary::load_funcdata`).
fn kept_at_open(s: &SectionHeader<'_>) -> bool {
    s.flags & SHF_EXECINSTR == 0 && !is_dwarf(s.name) && s.name != b".rodata"
}

fn is_dwarf(name: &[u8]) -> bool {
    name.starts_with(b".debug_") || name.starts_with(b".zdebug_")
}

/// The `count` Go strings whose headers (`{ptr, len}`) start at `addr`,
/// each cut at 256 bytes; at most 256 of them.
fn go_strings(elf: &ElfInfo, data: &[u8], addr: u64, count: u64) -> Option<Vec<String>> {
    let n = usize::try_from(count).ok()?.min(256);
    let mut out = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let hdr = addr.checked_add(16 * i)?;
        let ptr = elf.read_u64_vaddr(data, hdr)?;
        let len = usize::try_from(elf.read_u64_vaddr(data, hdr.checked_add(8)?)?).ok()?;
        if len == 0 {
            out.push(String::new());
            continue;
        }
        let b = elf.read_vaddr(data, ptr, len.min(256))?;
        out.push(String::from_utf8_lossy(b).into_owned());
    }
    Some(out)
}
