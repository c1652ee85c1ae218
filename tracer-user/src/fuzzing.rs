//! Entry points for the fuzz targets in `fuzz/` (run by `cargo xtask fuzz`).
//!
//! Not part of deferscope's API: hidden from the docs and free to change.
//! Each function feeds arbitrary bytes to one reader of untrusted input (the
//! target's executable, or its memory) and exercises what it returns the way
//! the tracer does. None of them may panic, overflow or run away, whatever
//! the bytes.

use crate::gobin::{Arch, GoVersion, fuzz};
use crate::goruntime::layout::{RuntimeLayout, builtin_minors};
use crate::process::GoroutineScanner;
use crate::process::memory::MemoryImage;

/// The whole Go binary reader: `GoBinary::parse` on a file's bytes, then
/// probe points, symbolization, `allgs`, the runtime layout (DWARF or the
/// table) and `waitReasonStrings` on the result.
pub fn go_binary(data: &[u8]) {
    fuzz::go_binary(data);
}

/// The ELF layer (headers, sections, segments, symbols) and the readers that
/// search a whole file: build info, pclntab header, moduledata, DWARF.
pub fn elf(data: &[u8]) {
    fuzz::elf(data);
}

/// The `.go.buildinfo` blob (version string), mapped as one segment.
pub fn buildinfo(data: &[u8]) {
    fuzz::buildinfo(data);
}

/// A `.gopclntab` image: function table, names, pc-value tables, files,
/// inline trees.
pub fn pclntab(data: &[u8]) {
    fuzz::pclntab(data);
}

/// DWARF (an ELF file, or raw sections: see `gobin::fuzz::dwarf`) and the
/// runtime layout built from it.
pub fn dwarf(data: &[u8]) {
    fuzz::dwarf(data);
}

/// Where [`memory_scan`] maps its image: where Go's heap arenas start.
pub const IMAGE_BASE: u64 = 0xc0_0000_0000;

/// The goroutine scanner over a memory image.
///
/// Input: byte 0 picks a runtime layout from the built-in table (Go minor
/// version; bit 7 the architecture), byte 1 bit 0 says whether
/// `runtime.allglen` is known, and the rest is the image, mapped at
/// [`IMAGE_BASE`]. The `allgs` slice header is the image's first three
/// words, `allglen` its fourth. Scans twice, so the second scan takes the
/// cached-chain path.
pub fn memory_scan(data: &[u8]) {
    let (Some(&pick), Some(&flags)) = (data.first(), data.get(1)) else { return };
    let image = data.get(2..).unwrap_or_default();
    let Some(layout) = layout_for(pick) else { return };
    let allglen = (flags & 1 != 0).then_some(IMAGE_BASE + 24);
    let scanner = GoroutineScanner::new(MemoryImage::new(IMAGE_BASE, image), layout, IMAGE_BASE, allglen);
    for _ in 0..2 {
        let Ok(scan) = scanner.scan() else { return };
        for g in &scan.goroutines {
            let _ = (g.status.as_str(), g.defer_sites.len(), g.stack_pcs.len());
        }
    }
}

/// The built-in layout that byte `pick` of a [`memory_scan`] input selects.
fn layout_for(pick: u8) -> Option<RuntimeLayout> {
    let arch = if pick & 0x80 == 0 { Arch::X86_64 } else { Arch::Aarch64 };
    let minors = builtin_minors(arch);
    let minor = *minors.get(usize::from(pick & 0x7f) % minors.len().max(1))?;
    let version = GoVersion { major: 1, minor, patch: 0, raw: format!("go1.{minor}") };
    RuntimeLayout::from_table(&version, arch).ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every committed seed replays through its target's harness in the
    /// ordinary test run (with overflow checks), and so does every one-byte
    /// corruption of a few of them: a cheap guard between fuzzing runs.
    #[test]
    fn committed_corpus_replays() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        type Harness = fn(&[u8]);
        let targets: [(&str, Harness); 6] = [
            ("go_binary", super::go_binary),
            ("elf", super::elf),
            ("buildinfo", super::buildinfo),
            ("pclntab", super::pclntab),
            ("dwarf", super::dwarf),
            ("memory_scan", super::memory_scan),
        ];
        for (name, run) in targets {
            let Ok(entries) = std::fs::read_dir(corpus.join(name)) else {
                eprintln!("SKIPPED ({name}: no corpus)");
                continue;
            };
            for (i, entry) in entries.flatten().enumerate() {
                let mut data = std::fs::read(entry.path()).expect("seed");
                run(&data);
                if i == 0 {
                    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                    for _ in 0..64 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let at = (x % data.len().max(1) as u64) as usize;
                        if let Some(b) = data.get_mut(at) {
                            *b ^= (x >> 32) as u8 | 1;
                        }
                        run(&data);
                    }
                }
            }
        }
    }
}
