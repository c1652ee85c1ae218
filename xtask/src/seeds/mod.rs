//! `cargo xtask fuzz --refresh-seeds`: regenerates `fuzz/corpus/<target>/`
//! from the Go parser fixtures (`xtask/src/fixtures.rs`) and the runtime
//! layout table, so that no seed is made by hand.
//!
//! The fixtures are 1–2.5 MB each, so the seeds are cut down, not copied:
//! - `go_binary`, `elf`: a *mini binary* per picked fixture: the ELF header,
//!   the original `.go.buildinfo`, a re-linked `.gopclntab` holding only the
//!   functions deferscope probes or decodes (and their successors), those
//!   functions' code, their inline trees, the moduledata (its table pointers
//!   rewritten), `runtime.waitReasonStrings`, a few symbols when the fixture
//!   has them, and a pruned DWARF (see `dwarf.rs`), each at its original
//!   address. It parses and answers like the fixture for those functions.
//! - `pclntab`: the re-linked table alone; `buildinfo`: the blob alone;
//!   `dwarf`: the pruned sections, raw; `memory_scan`: synthetic heaps laid
//!   out with every layout of `layouts.json` (see `memory.rs`).
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use crate::cmd::{note, step};

mod dwarf;
mod elf;
mod memory;
mod pclntab;

use elf::{Elf, PF_R, PF_W, Piece, Symbol, u64_at};

/// Functions whose records, code and inline trees the mini binaries keep:
/// the probe plan's, those the fuzz harness and the stripped-binary paths
/// decode (`runtime.allgadd`, the morestack targets of stack checks), and
/// the fixture's own (inlined calls, deferred calls).
const WANTED: &[&str] = &[
    "runtime.deferproc",
    "runtime.deferprocStack",
    "runtime.deferprocat",
    "runtime.goexit1",
    "runtime.newproc.func1",
    "runtime.newproc1",
    "runtime.popDefer",
    "runtime.freedefer",
    "runtime.gopanic",
    "runtime.deferreturn",
    "runtime.newproc",
    "runtime.gopark",
    "runtime.allgadd",
    "runtime.casgstatus",
    "runtime.morestack",
    "runtime.morestack_noctxt",
    "main.main",
    "main.markerCaller",
    "main.markerCallee",
    "main.inlineCaller",
    "main.inlinedHelper",
    "main.heapDefers",
];

/// Data symbols the mini binaries keep (when the fixture has a `.symtab`).
const DATA_SYMBOLS: &[&str] = &[
    "runtime.allgs",
    "runtime.allglen",
    "runtime.text",
    "go:func.*",
    "go.func.*",
    "runtime.firstmoduledata",
    "runtime.waitReasonStrings",
];

/// Moduledata field offsets (see tracer-user/src/gobin/moduledata.rs).
const MD_SLICES: [usize; 6] = [8, 32, 56, 80, 104, 128]; // funcnametab cutab filetab pctab pclntable ftab
const MD_TEXT: usize = 176;
const MD_LEN: usize = 512;

fn gofunc_offset(minor: u32) -> usize {
    match minor {
        0..=19 => 304,
        20..=26 => 320,
        _ => 344,
    }
}

/// One fixture, cut down.
struct Cut {
    mini: Vec<u8>,
    pclntab: Vec<u8>,
    buildinfo: Vec<u8>,
    dwarf: Option<Vec<u8>>,
}

pub fn refresh(workspace_root: &Path, fixtures_dir: &Path) -> Result<()> {
    let corpus = workspace_root.join("fuzz").join("corpus");
    let picks = pick_fixtures(fixtures_dir)?;
    step(format_args!("cutting seeds out of {} fixtures into {} ...", picks.len(), corpus.display()));
    let mut seeds: BTreeMap<&str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for (n, path) in picks.iter().enumerate() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let cut = cut(&data).with_context(|| format!("cutting {}", path.display()))?;
        note(format_args!(
            "{name}: mini binary {} B, pclntab {} B{}",
            cut.mini.len(),
            cut.pclntab.len(),
            cut.dwarf.as_ref().map_or(String::new(), |d| format!(", DWARF {} B", d.len()))
        ));
        // The first and last toolchains' picks also seed the ELF layer.
        if n < 2 || n + 2 >= picks.len() {
            seeds.entry("elf").or_default().push((name.clone(), cut.mini.clone()));
        }
        seeds.entry("go_binary").or_default().push((name.clone(), cut.mini));
        seeds.entry("pclntab").or_default().push((name.clone(), cut.pclntab));
        seeds.entry("buildinfo").or_default().push((name.clone(), cut.buildinfo));
        if let Some(d) = cut.dwarf {
            seeds.entry("dwarf").or_default().push((name.clone(), d));
        }
    }
    let layouts = fs::read_to_string(workspace_root.join("tracer-user/src/goruntime/layouts.json"))?;
    seeds.insert("memory_scan", memory::seeds(&layouts)?);
    let mut total = 0;
    for (target, files) in &seeds {
        let dir = corpus.join(target);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir)?;
        let size: usize = files.iter().map(|(_, d)| d.len()).sum();
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes)?;
        }
        note(format_args!("{target}: {} seeds, {} KB", files.len(), size.div_ceil(1024)));
        total += size;
    }
    step(format_args!("seed corpus: {} KB", total.div_ceil(1024)));
    Ok(())
}

/// Two fixtures per Go toolchain, on different architectures, rotating
/// through the build variants so that every variant and every pclntab,
/// moduledata and DWARF generation is seeded.
fn pick_fixtures(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut by_version: BTreeMap<(u32, u32), String> = BTreeMap::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(full) = name.split('-').next().filter(|f| f.starts_with("go1.")) else { continue };
        let mut nums = full.trim_start_matches("go1.").split('.').map(|n| n.parse::<u32>().unwrap_or(0));
        let key = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        by_version.insert(key, full.to_string());
    }
    let mut picks = Vec::new();
    for (i, full) in by_version.values().enumerate() {
        let (a, b) = if i % 2 == 0 { ("amd64", "arm64") } else { ("arm64", "amd64") };
        let first = ["plain", "pie", "cgo", "plain"][i % 4];
        let second = ["pie-stripped", "stripped"][i % 2];
        for (arch, variant) in [(a, first), (b, second)] {
            let mut path = dir.join(format!("{full}-{arch}-{variant}"));
            if !path.exists() {
                path = dir.join(format!("{full}-{arch}-plain")); // cgo: amd64 with a C compiler only
            }
            if path.exists() {
                picks.push(path);
            }
        }
    }
    if picks.is_empty() {
        anyhow::bail!("no Go parser fixtures in {}", dir.display());
    }
    Ok(picks)
}

fn cut(data: &[u8]) -> Result<Cut> {
    let elf = Elf::parse(data)?;
    let pcln_sec = elf
        .section(".gopclntab")
        .or_else(|| elf.section(".data.rel.ro.gopclntab"))
        .context("no .gopclntab section")?
        .clone();
    let tab = elf.section_data(&pcln_sec.name).context("pclntab outside the file")?;
    let header = pclntab::Header::parse(tab)?;
    let buildinfo = elf.section_data(".go.buildinfo").context("no .go.buildinfo")?;
    let minor = go_minor(buildinfo).context("no Go version in .go.buildinfo")?;
    let moduledata = find_moduledata(&elf, pcln_sec.addr, &header);
    let md_word = |off: usize| moduledata.as_ref().and_then(|(_, b)| u64_at(b, off));
    let text_start = [Some(header.text_start).filter(|&t| t != 0), md_word(MD_TEXT)]
        .into_iter()
        .flatten()
        .next()
        .or_else(|| elf.symbol("runtime.text").map(|s| s.value))
        .context("no text start")?;
    let gofunc = md_word(gofunc_offset(minor))
        .filter(|&g| g != 0)
        .or_else(|| elf.symbol("go:func.*").or_else(|| elf.symbol("go.func.*")).map(|s| s.value));
    let compacted = pclntab::compact(&elf, tab, text_start, gofunc, WANTED)?;

    let flags_of = |vaddr: u64| elf.segment_of(vaddr).map_or(PF_R, |s| s.flags);
    let mut raw: Vec<(u64, u64)> = compacted.code.clone();
    raw.push((text_start, text_start + 64));
    raw.extend(compacted.inline_trees.iter().map(|(v, b)| (*v, *v + b.len() as u64)));
    if let Some(g) = gofunc {
        raw.push((g, g + 16));
    }
    if let Some(sym) = elf.symbol("runtime.waitReasonStrings") {
        raw.push((sym.value, sym.value + sym.size));
        for i in 0..sym.size / 16 {
            let hdr = sym.value + 16 * i;
            let (Some(ptr), Some(len)) = (elf.read(hdr, 8), elf.read(hdr + 8, 8)) else { continue };
            let (ptr, len) = (u64_at(ptr, 0).unwrap_or(0), u64_at(len, 0).unwrap_or(0));
            if len > 0 && len < 256 {
                raw.push((ptr, ptr + len));
            }
        }
    }
    let mut pieces = Vec::new();
    for (start, end) in merge(&elf, raw) {
        let Some(bytes) = elf.read(start, (end - start) as usize) else { continue };
        let mut bytes = bytes.to_vec();
        // Inline trees carry rewritten name offsets.
        for (v, tree) in &compacted.inline_trees {
            if *v >= start && *v + tree.len() as u64 <= end {
                let at = (*v - start) as usize;
                bytes[at..at + tree.len()].copy_from_slice(tree);
            }
        }
        pieces.push(Piece { vaddr: start, flags: flags_of(start), bytes, section: None });
    }
    let pcln_flags = flags_of(pcln_sec.addr);
    pieces.push(Piece {
        vaddr: pcln_sec.addr,
        flags: pcln_flags,
        bytes: compacted.bytes.clone(),
        section: Some(pcln_sec.name.clone()),
    });
    let bi_addr = elf.section(".go.buildinfo").map_or(0, |s| s.addr);
    pieces.push(Piece {
        vaddr: bi_addr,
        flags: PF_R | PF_W,
        bytes: buildinfo.to_vec(),
        section: Some(".go.buildinfo".into()),
    });
    if let Some((md_vaddr, mut md)) = moduledata {
        let tables = [compacted.funcname, compacted.cu, compacted.filetab, compacted.pctab, compacted.pcln];
        for (field, off) in MD_SLICES.iter().zip(tables.into_iter().chain([compacted.pcln])) {
            md[*field..field + 8].copy_from_slice(&(pcln_sec.addr + off).to_le_bytes());
        }
        let name = if elf.section(".go.module").is_some() { ".go.module" } else { ".noptrdata" };
        pieces.push(Piece { vaddr: md_vaddr, flags: PF_R | PF_W, bytes: md, section: Some(name.into()) });
    }
    pieces.sort_by_key(|p| p.vaddr);
    // allgs and allglen are in .bss: writable memory without file bytes.
    let bss: Vec<(u64, u64)> =
        elf.segments.iter().filter(|s| s.flags & PF_W != 0).map(|s| (s.vaddr, s.memsz)).collect();

    let mut unmapped = Vec::new();
    if !elf.symbols.is_empty() {
        let mut symbols: Vec<(String, Symbol)> = Vec::new();
        for name in WANTED
            .iter()
            .flat_map(|n| [n.to_string(), format!("{n}.abi0")])
            .chain(DATA_SYMBOLS.iter().map(|n| n.to_string()))
        {
            if let Some(sym) = elf.symbol(&name) {
                symbols.push((name, sym));
            }
        }
        unmapped.extend(elf::symtab(&symbols));
    }
    let pruned = dwarf::prune(&elf)?;
    if let Some(p) = &pruned {
        unmapped.push(elf::compressed_debug(".debug_abbrev", &p.abbrev));
        unmapped.push(elf::compressed_debug(".debug_info", &p.info));
        if !p.str.is_empty() {
            unmapped.push(elf::compressed_debug(".debug_str", &p.str));
        }
    }
    Ok(Cut {
        mini: elf::write(&elf, &pieces, &bss, &unmapped),
        pclntab: compacted.bytes,
        buildinfo: buildinfo.to_vec(),
        dwarf: pruned.as_ref().map(dwarf::raw_input),
    })
}

/// Sorted ranges, merged where they overlap or nearly touch inside one
/// segment of the fixture.
fn merge(elf: &Elf<'_>, mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.retain(|&(s, e)| e > s && elf.segment_of(s).is_some());
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        if let Some(last) = out.last_mut() {
            let same_segment = elf.segment_of(last.0).map(|x| x.vaddr) == elf.segment_of(s).map(|x| x.vaddr);
            if s <= last.1 + 64 && same_segment {
                last.1 = last.1.max(e);
                continue;
            }
        }
        out.push((s, e));
    }
    // Never past the end of the segment's file image.
    for r in &mut out {
        if let Some(seg) = elf.segment_of(r.0) {
            r.1 = r.1.min(seg.vaddr + seg.filesz);
        }
    }
    out
}

/// The moduledata: the only pointer-aligned word in writable data equal to
/// the pcHeader's address that is followed by the funcnametab pointer and,
/// at +128, the ftab pointer. Returns its address and first bytes.
fn find_moduledata(elf: &Elf<'_>, pcln: u64, h: &pclntab::Header) -> Option<(u64, Vec<u8>)> {
    for seg in elf.segments.iter().filter(|s| s.flags & PF_W != 0) {
        let bytes = elf.data.get(seg.offset as usize..(seg.offset + seg.filesz) as usize)?;
        let mut pos = (8 - seg.vaddr as usize % 8) % 8;
        while pos + MD_LEN <= bytes.len() {
            if u64_at(bytes, pos) == Some(pcln)
                && u64_at(bytes, pos + 8) == Some(pcln + h.funcname as u64)
                && u64_at(bytes, pos + 128) == Some(pcln + h.pcln as u64)
            {
                return Some((seg.vaddr + pos as u64, bytes[pos..pos + MD_LEN].to_vec()));
            }
            pos += 8;
        }
    }
    None
}

/// The Go minor version in a `.go.buildinfo` blob (Go 1.18+ inline form).
fn go_minor(blob: &[u8]) -> Option<u32> {
    let len = usize::from(*blob.get(32)?); // a uvarint below 128
    let version = std::str::from_utf8(blob.get(33..33 + len)?).ok()?;
    version.strip_prefix("go1.")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixture cuts down to a small mini binary (run by `cargo xtask
    /// test`, which sets `DEFERSCOPE_GO_FIXTURES`; `cargo xtask fuzz` checks
    /// that deferscope parses the results).
    #[test]
    fn fixtures_cut_down() {
        let Some(dir) = std::env::var_os("DEFERSCOPE_GO_FIXTURES") else {
            eprintln!("SKIPPED (DEFERSCOPE_GO_FIXTURES not set; run cargo xtask test)");
            return;
        };
        for entry in fs::read_dir(dir).expect("fixtures").flatten() {
            let data = fs::read(entry.path()).expect("read");
            let cut = cut(&data).unwrap_or_else(|e| panic!("{}: {e:#}", entry.path().display()));
            assert!(cut.mini.len() < 256 << 10, "{}: {} bytes", entry.path().display(), cut.mini.len());
        }
    }

    #[test]
    fn go_minor_from_buildinfo() {
        let mut blob = b"\xff Go buildinf:\x08\x02".to_vec();
        blob.resize(32, 0);
        blob.push(9);
        blob.extend_from_slice(b"go1.24.11");
        assert_eq!(go_minor(&blob), Some(24));
        assert_eq!(go_minor(&blob[..36]), None);
    }
}
