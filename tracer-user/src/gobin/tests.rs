//! Tests on real Go binaries built by `cargo xtask test` (see
//! xtask/src/fixtures.rs) and on malformed input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

const FIXTURE_ENV: &str = "DEFERSCOPE_GO_FIXTURES";

#[derive(Clone, Debug)]
pub(crate) struct Fixture {
    pub path: PathBuf,
    /// `go1.24.11`
    full: String,
    arch: Arch,
    variant: String,
}

/// All fixtures. The tests that use them are `#[ignore]`d, so that a plain
/// `cargo test` lists them as ignored, not passed; `cargo xtask test` builds
/// the fixtures, sets [`FIXTURE_ENV`] and runs them (`--include-ignored`).
/// Run without the fixtures, they fail.
pub(crate) fn fixtures() -> Vec<Fixture> {
    let Some(dir) = std::env::var_os(FIXTURE_ENV) else {
        panic!("{FIXTURE_ENV} is not set: run `cargo xtask test`, which builds the Go parser fixtures and sets it");
    };
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{FIXTURE_ENV}={dir:?}: {e}"));
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // <full>-<arch>-<variant>, variant may contain '-'.
        let mut parts = name.splitn(3, '-');
        let (Some(full), Some(arch), Some(variant)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let arch = match arch {
            "amd64" => Arch::X86_64,
            "arm64" => Arch::Aarch64,
            _ => continue,
        };
        if !full.starts_with("go1.") {
            continue;
        }
        out.push(Fixture { path: e.path(), full: full.into(), arch, variant: variant.into() });
    }
    out.sort_by(|a, b| (&a.full, a.arch as u8, &a.variant).cmp(&(&b.full, b.arch as u8, &b.variant)));
    assert!(!out.is_empty(), "{FIXTURE_ENV}={dir:?} holds no fixtures");
    out
}

pub(crate) fn open(f: &Fixture) -> GoBinary {
    GoBinary::open(&f.path).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()))
}

/// Fixtures grouped by (version, arch) → variant → binary.
fn grouped(fx: &[Fixture]) -> BTreeMap<(String, u8), BTreeMap<String, (Fixture, GoBinary)>> {
    let mut m: BTreeMap<(String, u8), BTreeMap<String, (Fixture, GoBinary)>> = BTreeMap::new();
    for f in fx {
        m.entry((f.full.clone(), f.arch as u8)).or_default().insert(f.variant.clone(), (f.clone(), open(f)));
    }
    m
}

fn fixture_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/fixtures/parser-fixture/main.go")
}

/// Line number of the `MARKER:<name>` comment in the fixture source.
fn marker_line(name: &str) -> u32 {
    let src = std::fs::read_to_string(fixture_source()).expect("fixture source");
    let tag = format!("MARKER:{name}");
    let idx = src.lines().position(|l| l.contains(&tag)).unwrap_or_else(|| panic!("no {tag}"));
    idx as u32 + 1
}

/// Parses `go1.24.11` from a fixture name.
fn expected_version(full: &str) -> (u32, u32, u32) {
    let v = GoVersion::parse(full).expect("fixture version");
    (v.major, v.minor, v.patch)
}

/// Runtime functions that grow the stack (have a check) in every version.
const CHECKED: &[&str] = &[
    "runtime.deferproc",
    "runtime.deferreturn",
    "runtime.newproc",
    "runtime.gopanic",
    "runtime.goexit1",
    "runtime.gopark",
    "main.markerCaller",
    "main.heapDefers",
];

/// nosplit functions: the probe is the entry.
const NOSPLIT: &[&str] = &["runtime.deferprocStack", "runtime.casgstatus"];

fn checked_for(minor: u32) -> Vec<&'static str> {
    let mut v = CHECKED.to_vec();
    if minor >= 23 {
        v.push("runtime.popDefer");
    }
    v
}

fn nosplit_for(minor: u32) -> Vec<&'static str> {
    let mut v = NOSPLIT.to_vec();
    if minor <= 22 {
        v.push("runtime.freedefer");
    }
    v
}

fn code_at(b: &GoBinary, vaddr: u64, len: usize) -> Vec<u8> {
    b.code(vaddr, vaddr + len as u64).expect("code in file").into_owned()
}

/// The instruction that ends right before `vaddr` is the stack check's
/// conditional branch (JBE / B.LS).
fn preceded_by_stack_branch(b: &GoBinary, vaddr: u64) -> bool {
    match b.arch() {
        Arch::X86_64 => {
            let rel8 = code_at(b, vaddr - 2, 2)[0] == 0x76;
            let rel32 = code_at(b, vaddr - 6, 2) == [0x0f, 0x86];
            rel8 || rel32
        }
        Arch::Aarch64 => {
            let w = u32::from_le_bytes(code_at(b, vaddr - 4, 4).try_into().expect("4 bytes"));
            w & 0xff00_001f == 0x5400_0009
        }
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn versions_and_kinds() {
    let fx = fixtures();
    for f in &fx {
        let b = open(f);
        let v = b.version();
        assert_eq!((v.major, v.minor, v.patch), expected_version(&f.full), "{}", f.path.display());
        assert_eq!(v.raw, f.full, "{}", f.path.display());
        assert_eq!(b.arch(), f.arch, "{}", f.path.display());
        assert_eq!(b.is_pie(), f.variant.starts_with("pie"), "{}", f.path.display());
        let stripped = f.variant.ends_with("stripped");
        assert_eq!(b.is_stripped(), stripped, "{}", f.path.display());
        assert_eq!(b.has_dwarf(), !stripped, "{}", f.path.display());
        assert!(b.moduledata_addr().is_some(), "{}: moduledata not found", f.path.display());
        if let Some(sym) = b.elf.symbol("runtime.firstmoduledata") {
            assert_eq!(b.moduledata_addr(), Some(sym.addr), "{}", f.path.display());
        }
        // textStart (header ≤1.25, moduledata from 1.26) is runtime.text,
        // which differs from the .text section start in cgo binaries.
        if let Some(sym) = b.elf.symbol("runtime.text") {
            assert_eq!(b.text_start(), sym.addr, "{}", f.path.display());
        }
        if f.variant == "cgo" {
            let text_sec = b.elf.section(".text").expect(".text").addr;
            assert_ne!(b.text_start(), text_sec, "{}: cgo runtime.text should not be .text", f.path.display());
        }
        // What the load bias is computed against: the vaddr of file offset 0.
        let seg = b.load_segments()[0];
        assert_eq!(b.file_offset_to_vaddr(0), Some(seg.vaddr.wrapping_sub(seg.file_offset)));
        assert_eq!(b.file_offset_to_vaddr(b.vaddr_to_file_offset(b.text_start()).expect("text")), Some(b.text_start()));
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn pclntab_names_match_symtab() {
    let fx = fixtures();
    for f in fx.iter().filter(|f| !f.variant.ends_with("stripped")) {
        let b = open(f);
        let symtab = b.elf.symtab.as_ref().expect("symtab");
        let mut checked = 0;
        for (name, sym) in symtab {
            if !sym.is_func || name.ends_with(".abi0") {
                continue;
            }
            // Only Go functions (the symtab of a cgo binary also has C ones).
            let Some(f2) = b.pcln.lookup(&b.data, name) else { continue };
            // function_entry (symtab) and the stripped path (pclntab) agree.
            let e = b.function_entry(name);
            assert_eq!(
                Some(f2.entry),
                e,
                "{}: {name}: pclntab picks {:#x}, symtab path {e:x?}",
                f.path.display(),
                f2.entry
            );
            assert_eq!(b.function_name(sym.addr), Some(name.as_str()));
            checked += 1;
        }
        assert!(checked > 1000, "{}: only {checked} functions compared", f.path.display());
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn probe_points() {
    let fx = fixtures();
    for ((full, _), variants) in grouped(&fx) {
        let (_, minor, _) = expected_version(&full);
        for (variant, (f, b)) in &variants {
            for name in checked_for(minor) {
                let p = b.probe_point(name).unwrap_or_else(|e| panic!("{}: {name}: {e}", f.path.display()));
                assert!(p.vaddr > p.entry && p.vaddr - p.entry <= 24, "{}: {name}: {p:x?}", f.path.display());
                assert!(preceded_by_stack_branch(b, p.vaddr), "{}: {name}: {p:x?} not after JBE/BLS", f.path.display());
                assert_eq!(b.vaddr_to_file_offset(p.vaddr), Some(p.file_offset));
                assert_eq!(b.file_offset_to_vaddr(p.file_offset), Some(p.vaddr));
            }
            for name in nosplit_for(minor) {
                let p = b.probe_point(name).unwrap_or_else(|e| panic!("{}: {name}: {e}", f.path.display()));
                assert_eq!(p.vaddr, p.entry, "{}: {name} is nosplit", f.path.display());
            }
            assert!(matches!(b.probe_point("main.noSuchFunction"), Err(GoBinError::FunctionNotFound(_))));
            let _ = variant;
        }
        // Stripping does not move code: the same probes either way.
        for (a, s) in [("plain", "stripped"), ("pie", "pie-stripped")] {
            let (Some((_, ba)), Some((_, bs))) = (variants.get(a), variants.get(s)) else { continue };
            for name in
                checked_for(minor).into_iter().chain(nosplit_for(minor)).chain(["runtime.goexit1", "runtime.newproc1"])
            {
                assert_eq!(ba.function_entry(name), bs.function_entry(name), "{full} {a}/{s}: {name}");
                assert_eq!(ba.probe_point(name).ok(), bs.probe_point(name).ok(), "{full} {a}/{s}: {name}");
            }
        }
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn newproc1_return_points() {
    let fx = fixtures();
    for f in &fx {
        let b = open(f);
        let pts = b
            .call_return_points("runtime.newproc.func1", "runtime.newproc1")
            .unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        assert_eq!(pts.len(), 1, "{}: {pts:x?}", f.path.display());
        let entry = b.function_entry("runtime.newproc.func1").expect("func1");
        for p in &pts {
            assert_eq!(p.entry, entry);
            assert_eq!(b.function_name(p.vaddr), Some("runtime.newproc.func1"));
            let call_len = if b.arch() == Arch::X86_64 { 5 } else { 4 };
            let sl = b.symbolize(p.vaddr - 1).expect("symbolize call");
            assert!(sl.file.ends_with("runtime/proc.go"), "{sl:?}");
            let _ = call_len;
        }
    }
}

fn calls_to(b: &GoBinary, caller: &str, callee: &str) -> Vec<u64> {
    b.call_return_points(caller, callee)
        .unwrap_or_else(|e| panic!("{caller} → {callee}: {e}"))
        .iter()
        .map(|p| p.vaddr)
        .collect()
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn symbolize_marker_lines() {
    let fx = fixtures();
    let direct = marker_line("direct-call");
    let inlined = marker_line("inlined-call");
    for f in &fx {
        let b = open(f);
        let ctx = f.path.display();
        let rets = calls_to(&b, "main.markerCaller", "main.markerCallee");
        assert_eq!(rets.len(), 1, "{ctx}");
        let sl = b.symbolize(rets[0] - 1).expect("symbolize");
        assert_eq!(sl.function, "main.markerCaller", "{ctx}");
        assert!(sl.file.ends_with("xtask/fixtures/parser-fixture/main.go"), "{ctx}: {sl:?}");
        assert_eq!(sl.line, direct, "{ctx}: {sl:?}");
        // markerCallee called from inlinedHelper, inlined into inlineCaller.
        let rets = calls_to(&b, "main.inlineCaller", "main.markerCallee");
        assert_eq!(rets.len(), 1, "{ctx}");
        let sl = b.symbolize(rets[0] - 1).expect("symbolize");
        assert_eq!(sl.function, "main.inlinedHelper", "{ctx}: innermost inlined function");
        assert_eq!(sl.line, inlined, "{ctx}: {sl:?}");
        assert_eq!(b.function_name(rets[0] - 1), Some("main.inlineCaller"), "{ctx}");
        // Out-of-range PCs.
        assert_eq!(b.symbolize(0), None);
        assert_eq!(b.function_name(u64::MAX), None);
    }
}

/// Every PC of the fixture's own functions symbolizes identically in the
/// stripped build (where gofunc comes from moduledata, not `go:func.*`).
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn symbolize_same_when_stripped() {
    let fx = fixtures();
    for ((full, _), variants) in grouped(&fx) {
        for (a, s) in [("plain", "stripped"), ("pie", "pie-stripped")] {
            let (Some((_, ba)), Some((_, bs))) = (variants.get(a), variants.get(s)) else { continue };
            let mut n = 0;
            for i in 0..ba.pcln.len() {
                let fa = ba.pcln.func_at_index(&ba.data, i).expect("func");
                let name = ba.pcln.func_name(&ba.data, &fa).unwrap_or("");
                if !(name.starts_with("main.")
                    || name.starts_with("runtime.gopanic")
                    || name.starts_with("runtime.newproc"))
                {
                    continue;
                }
                for pc in fa.entry..fa.end {
                    assert_eq!(ba.symbolize(pc), bs.symbolize(pc), "{full} {a}/{s} pc {pc:#x}");
                    n += 1;
                }
            }
            assert!(n > 1000, "{full}: only {n} PCs compared");
        }
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn allgs_from_code_matches_symtab() {
    let fx = fixtures();
    for ((full, _), variants) in grouped(&fx) {
        for (variant, (f, b)) in &variants {
            let ctx = f.path.display();
            let decoded = b.allgs_from_code().unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_eq!(
                b.allgs_location().expect("allgs"),
                if b.is_stripped() { decoded } else { b.allgs_location().expect("allgs") }
            );
            if let Some(sym) = b.elf.symbol("runtime.allgs") {
                let len = b.elf.symbol("runtime.allglen").map(|s| s.addr);
                assert_eq!(decoded, AllgsLocation { allgs: sym.addr, allglen: len }, "{ctx}");
            }
            assert!(decoded.allglen.is_some(), "{ctx}");
            let _ = variant;
        }
        // Stripping shifts data by the same amount as the moduledata; the
        // decoded addresses must shift with it.
        for (a, s) in [("plain", "stripped"), ("pie", "pie-stripped")] {
            let (Some((_, ba)), Some((_, bs))) = (variants.get(a), variants.get(s)) else { continue };
            let la = ba.allgs_location().expect("allgs");
            let ls = bs.allgs_location().expect("allgs");
            let shift = bs.moduledata_addr().expect("md").wrapping_sub(ba.moduledata_addr().expect("md"));
            assert_eq!(ls.allgs.wrapping_sub(la.allgs), shift, "{full} {a}/{s}");
        }
    }
}

/// A runtime global found by decoding the code that references it equals
/// `.symtab`'s address where there is one, is what the binary reports as its
/// location, and moves with the module data when a binary is stripped.
fn check_global_from_code(
    symbol: &str,
    from_code: impl Fn(&GoBinary) -> Option<u64>,
    location: impl Fn(&GoBinary) -> Option<u64>,
) {
    let fx = fixtures();
    for ((full, _), variants) in grouped(&fx) {
        for (f, b) in variants.values() {
            let ctx = f.path.display();
            let decoded = from_code(b).unwrap_or_else(|| panic!("{ctx}: {symbol} not found in code"));
            if let Some(sym) = b.elf.symbol(symbol) {
                assert_eq!(decoded, sym.addr, "{ctx}: {symbol}");
            }
            assert_eq!(location(b), Some(decoded), "{ctx}");
        }
        // Stripping shifts data by the same amount as the moduledata; the
        // decoded addresses must shift with it.
        for (a, s) in [("plain", "stripped"), ("pie", "pie-stripped")] {
            let (Some((_, ba)), Some((_, bs))) = (variants.get(a), variants.get(s)) else { continue };
            let shift = bs.moduledata_addr().expect("md").wrapping_sub(ba.moduledata_addr().expect("md"));
            let (la, ls) = (location(ba).expect(symbol), location(bs).expect(symbol));
            assert_eq!(ls.wrapping_sub(la), shift, "{full} {a}/{s}");
        }
    }
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn mheap_from_code_matches_symtab() {
    check_global_from_code("runtime.mheap_", GoBinary::mheap_from_code, GoBinary::mheap_location);
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn semtable_from_code_matches_symtab() {
    check_global_from_code("runtime.semtable", GoBinary::semtable_from_code, GoBinary::semtable_location);
}

/// `runtime.allp` decoded from code equals `.symtab`'s,
/// and stripped variants shift by the same amount as their module data.
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn allp_from_code_matches_symtab() {
    check_global_from_code("runtime.allp", GoBinary::allp_from_code, GoBinary::allp_location);
}

// ---- malformed input -----------------------------------------------------

#[test]
fn garbage_is_rejected_without_panicking() {
    assert!(matches!(GoBinary::parse(Vec::new()), Err(GoBinError::NotElf)));
    assert!(matches!(GoBinary::parse(b"#!/bin/sh\necho hi\n".to_vec()), Err(GoBinError::NotElf)));
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(64, 0);
    assert!(GoBinary::parse(elf.clone()).is_err());
    elf.resize(4096, 0xff);
    assert!(GoBinary::parse(elf).is_err());
    // Pseudo-random bytes behind an ELF magic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [16usize, 64, 100, 1000, 5000] {
        let mut d = b"\x7fELF\x02\x01\x01\x00".to_vec();
        while d.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.extend_from_slice(&x.to_le_bytes());
        }
        let _ = GoBinary::parse(d);
    }
    assert!(matches!(GoBinary::open(Path::new("/nonexistent/deferscope")), Err(GoBinError::Io { .. })));
}

#[test]
fn non_go_elf_is_not_go() {
    // The test binary itself is an ELF but not a Go program.
    let me = std::env::current_exe().expect("current exe");
    match GoBinary::open(&me) {
        Err(GoBinError::NotGo) => {}
        Err(e) => panic!("expected NotGo, got {e}"),
        Ok(_) => panic!("the Rust test binary parsed as Go"),
    }
}

/// Truncated and corrupted real binaries: errors or degraded answers, never
/// a panic.
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn corrupted_fixtures_do_not_panic() {
    let fx = fixtures();
    let picks: Vec<&Fixture> =
        fx.iter().filter(|f| f.full.starts_with("go1.27") || f.full.starts_with("go1.19")).collect();
    for f in picks {
        let data = std::fs::read(&f.path).expect("read");
        for frac in [0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99] {
            let cut = (data.len() as f64 * frac) as usize;
            exercise(GoBinary::parse(data[..cut].to_vec()));
        }
        // Flip bytes inside the pclntab and the buildinfo.
        let good = open(f);
        let regions: Vec<(u64, u64)> =
            [".gopclntab", ".data.rel.ro.gopclntab", ".go.buildinfo", ".noptrdata", ".go.module"]
                .iter()
                .filter_map(|n| good.elf.section(n).and_then(|s| s.file_range))
                .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..40 {
            let mut d = data.clone();
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (off, len) = regions[(x as usize) % regions.len()];
                let i = (off + (x >> 20) % len.max(1)) as usize;
                if let Some(b) = d.get_mut(i) {
                    *b ^= (x >> 8) as u8 | 1;
                }
            }
            let _ = round;
            exercise(GoBinary::parse(d));
        }
    }
}

fn exercise(r: Result<GoBinary, GoBinError>) {
    let Ok(b) = r else { return };
    let _ = b.version();
    for name in ["runtime.deferproc", "runtime.gopanic", "main.main"] {
        let _ = b.probe_point(name);
    }
    let _ = b.call_return_points("runtime.newproc.func1", "runtime.newproc1");
    let _ = b.allgs_location();
    let _ = b.allgs_from_code();
    let _ = crate::goruntime::RuntimeLayout::of(&b);
    let start = b.text_start();
    for k in 0..2000u64 {
        let pc = start.wrapping_add(k * 97);
        let _ = b.symbolize(pc);
        let _ = b.function_name(pc);
    }
}

/// Without section headers (some packers and strippers drop them) the
/// buildinfo, pclntab and moduledata are found by scanning the segments.
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn no_section_headers() {
    let fx = fixtures();
    for f in fx.iter().filter(|f| f.variant == "stripped" || f.variant == "pie-stripped") {
        let mut data = std::fs::read(&f.path).expect("read");
        data[0x28..0x30].fill(0); // e_shoff
        data[0x3c..0x40].fill(0); // e_shnum, e_shstrndx
        let b = GoBinary::parse(data).unwrap_or_else(|e| panic!("{}: {e}", f.path.display()));
        let good = open(f);
        assert!(b.elf.sections.is_empty());
        assert_eq!(b.version(), good.version());
        assert_eq!(b.text_start(), good.text_start());
        assert_eq!(b.moduledata_addr(), good.moduledata_addr());
        for name in ["runtime.deferproc", "runtime.gopanic", "main.markerCaller"] {
            assert_eq!(b.probe_point(name).ok(), good.probe_point(name).ok(), "{}: {name}", f.path.display());
        }
        let pc = good.function_entry("main.inlineCaller").expect("inlineCaller");
        for k in 0..64 {
            assert_eq!(b.symbolize(pc + k), good.symbolize(pc + k));
        }
        assert_eq!(b.allgs_location().ok(), good.allgs_location().ok());
    }
}

/// The committed seeds of the `go_binary` fuzz target (`fuzz/corpus/`, cut
/// down from the fixtures by `cargo xtask fuzz --refresh-seeds`) parse and
/// answer like the fixtures they come from, so the fuzzer starts deep.
#[test]
fn fuzz_seeds_are_go_binaries() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/go_binary");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED (no {})", dir.display());
        return;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let b = GoBinary::open(&e.path()).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert!(name.starts_with(&b.version().raw), "{name}: {}", b.version().raw);
        assert_eq!(b.is_stripped(), name.contains("stripped"), "{name}");
        assert_eq!(b.has_dwarf(), !name.contains("stripped"), "{name}");
        for f in ["runtime.deferproc", "runtime.gopanic", "main.markerCaller"] {
            let p = b.probe_point(f).unwrap_or_else(|err| panic!("{name}: {f}: {err}"));
            assert!(p.vaddr > p.entry, "{name}: {f}: the stack check was not recognised");
        }
        let rets = b
            .call_return_points("runtime.newproc.func1", "runtime.newproc1")
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(rets.len(), 1, "{name}");
        let inl = b.call_return_points("main.inlineCaller", "main.markerCallee").expect("inlineCaller");
        let sl = b.symbolize(inl[0].vaddr - 1).unwrap_or_else(|| panic!("{name}: symbolize"));
        assert_eq!(sl.function, "main.inlinedHelper", "{name}");
        assert!(b.allgs_location().unwrap_or_else(|err| panic!("{name}: {err}")).allglen.is_some(), "{name}");
        let layout = crate::goruntime::RuntimeLayout::of(&b).unwrap_or_else(|err| panic!("{name}: {err}"));
        let expected = if b.has_dwarf() { "dwarf" } else { "table" };
        assert!(layout.source.starts_with(expected), "{name}: {}", layout.source);
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
}

/// `GoBinary::open` reads only some sections (`image.rs`) and answers
/// exactly as the whole file parsed in memory: every function's name and
/// inline frames at its entry and a few PCs in, probe points, globals found
/// by decoding code, the runtime layout (DWARF or tables).
fn assert_sparse_same_as_whole(path: &Path) {
    let name = path.display();
    let sparse = GoBinary::open(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(sparse.data.is_sparse(), "{name}: read whole, not by sections");
    let whole = GoBinary::parse(std::fs::read(path).expect("read")).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(sparse.function_count(), whole.function_count(), "{name}");
    for i in 0..whole.function_count() {
        let Some(f) = whole.pcln.func_at_index(&whole.data, i) else { continue };
        for pc in [f.entry, f.entry + 1, (f.entry + f.end) / 2, f.end.saturating_sub(1)] {
            assert_eq!(sparse.symbolize_frames(pc), whole.symbolize_frames(pc), "{name}: {pc:#x}");
        }
    }
    for f in ["runtime.deferproc", "runtime.gopanic", "runtime.goexit1", "runtime.newproc1"] {
        assert_eq!(sparse.probe_point(f).ok(), whole.probe_point(f).ok(), "{name}: {f}");
    }
    let rets = |b: &GoBinary| b.call_return_points("runtime.newproc.func1", "runtime.newproc1").ok();
    assert_eq!(rets(&sparse), rets(&whole), "{name}");
    assert_eq!(sparse.allgs_location().ok(), whole.allgs_location().ok(), "{name}");
    assert_eq!(sparse.mheap_location(), whole.mheap_location(), "{name}");
    assert_eq!(sparse.wait_reason_strings(), whole.wait_reason_strings(), "{name}");
    assert_eq!(sparse.has_dwarf(), whole.has_dwarf(), "{name}");
    let layout = |b: &GoBinary| crate::goruntime::RuntimeLayout::of(b).map(|l| format!("{l:?}")).ok();
    assert_eq!(layout(&sparse), layout(&whole), "{name}");
}

#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn sparse_image_answers_as_the_whole_file() {
    for f in fixtures() {
        assert_sparse_same_as_whole(&f.path);
    }
}

#[test]
fn sparse_image_of_fuzz_seeds_answers_as_the_whole_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/go_binary");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED (no {})", dir.display());
        return;
    };
    for e in entries.flatten() {
        assert_sparse_same_as_whole(&e.path());
    }
}

/// An ELF view of `data` alone: one segment mapping it at `vaddr`.
fn mapped_at(data: &[u8], vaddr: u64) -> ElfInfo {
    let len = data.len() as u64;
    let segment = LoadSegment { vaddr, memsz: len, file_offset: 0, filesz: len, flags: 6 };
    ElfInfo { arch: Arch::X86_64, is_pie: false, segments: vec![segment], sections: vec![], symtab: None }
}

/// A Go string header in the last 16 bytes of the address space: reading
/// its length must not overflow the address.
#[test]
fn go_strings_at_the_top_of_the_address_space() {
    let mut data = (u64::MAX - 7).to_le_bytes().to_vec();
    data.extend_from_slice(&1u64.to_le_bytes());
    assert_eq!(go_strings(&mapped_at(&data, u64::MAX - 15), &data, u64::MAX - 15, 1), Some(vec!["\u{1}".into()]));
    assert_eq!(go_strings(&mapped_at(&data[..8], u64::MAX - 7), &data[..8], u64::MAX - 7, 1), None);
    let mut good = 0x1010u64.to_le_bytes().to_vec();
    good.extend_from_slice(&3u64.to_le_bytes());
    good.extend_from_slice(b"abc");
    assert_eq!(go_strings(&mapped_at(&good, 0x1000), &good, 0x1000, 1), Some(vec!["abc".to_string()]));
}

/// A pclntab header found by scanning a segment that ends at the top of
/// the address space: its address must not overflow.
#[test]
fn pclntab_scan_at_the_top_of_the_address_space() {
    let mut tab = vec![0u8; 8]; // the header sits 8 bytes into the segment
    tab.extend_from_slice(&pclntab::MAGIC_120.to_le_bytes());
    tab.extend_from_slice(&[0, 0, 1, 8]);
    // nfunc, nfiles, textStart, funcname, cu, filetab, pctab, pcln
    for w in [1u64, 0, 0x1000, 72, 72, 72, 72, 80] {
        tab.extend_from_slice(&w.to_le_bytes());
    }
    tab.extend_from_slice(b"f\0\0\0\0\0\0\0"); // funcnametab at 72
    tab.extend_from_slice(&[0; 24]); // functab at 80: 2 entries, then a _func
    assert!(Header::locate(&tab, &mapped_at(&tab, 0x40_0000)).expect("scan").is_some(), "a valid header");
    assert!(Header::locate(&tab, &mapped_at(&tab, u64::MAX - 3)).expect("scan").is_none());
}

/// `runtime.allm` decoded from code equals `.symtab`'s, and stripped
/// variants shift by the same amount as their module data.
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn allm_from_code_matches_symtab() {
    check_global_from_code("runtime.allm", GoBinary::allm_from_code, GoBinary::allm_location);
}

/// The pointer maps a precise stack scan reads, at the call every parked
/// goroutine's innermost frame stops on (`runtime.gopark` calling `mcall`)
/// and at the outermost frame (`runtime.goexit`), on every fixture.
#[test]
#[ignore = "needs the Go parser fixtures (cargo xtask test runs it)"]
fn frame_maps_at_gopark_and_goexit() {
    let fx = fixtures();
    for variants in grouped(&fx).values() {
        for (f, b) in variants.values() {
            let ctx = f.path.display();
            let parks = b.call_return_points("runtime.gopark", "runtime.mcall").expect("gopark");
            assert!(!parks.is_empty(), "{ctx}: no mcall in gopark");
            for p in parks {
                let m = b.frame_maps(p.vaddr).unwrap_or_else(|| panic!("{ctx}: no frame maps at {:#x}", p.vaddr));
                assert!(m.sp_delta >= 16 && m.sp_delta % 8 == 0, "{ctx}: gopark frame of {} bytes", m.sp_delta);
                assert!(m.unsupported.is_none() && !m.top && !m.spwrite, "{ctx}: {m:?}");
                assert!(m.locals.is_some(), "{ctx}: gopark without a locals map");
            }
            let goexit = b.function_entry("runtime.goexit").expect("goexit");
            // Goroutines return into goexit one instruction past its entry.
            let m = b.frame_maps(goexit + 4).unwrap_or_else(|| panic!("{ctx}: no frame maps in goexit"));
            assert!(m.top, "{ctx}: goexit is not the top frame");
        }
    }
}
