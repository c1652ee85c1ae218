//! The executable's bytes as `GoBinary` keeps them: every reader indexes
//! one slice by file offset (zero-copy, gimli/object style), but only the
//! sections deferscope uses are in it.
//!
//! A sparse image is an anonymous mapping the size of the file into which
//! the wanted sections are `pread`: pages never written stay unbacked and
//! cost no memory. It is anonymous on purpose: a mapping of the target's
//! file itself would SIGBUS if the binary were truncated or rewritten on
//! disk while we run; bytes read once cannot change under us.
//!
//! What is left out: machine code (the decoders `pread` the few functions
//! they look at, [`Image::bytes`]), DWARF (read into a temporary image
//! when its facts are wanted, [`Image::sections`], and dropped after) and
//! `.rodata` (loaded afterwards, only from the funcdata base on, see
//! `GoBinary::open`). On Debian's stripped prometheus that leaves 31 of its
//! 50 MB on disk.

use std::{borrow::Cow, fs::File, io, ops::Deref, os::unix::fs::FileExt as _};

use super::reader::{bytes_at, u16_at, u32_at, u64_at};

/// The file's bytes: all of them, or the wanted sections of a sparse image.
pub(crate) struct Image {
    bytes: Bytes,
    /// The file a sparse image came from, for what it left out.
    file: Option<File>,
}

enum Bytes {
    Whole(Vec<u8>),
    Sparse(memmap2::MmapMut),
}

impl Deref for Image {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Whole(v) => v,
            Bytes::Sparse(m) => m,
        }
    }
}

/// A section header's fields that decide whether it is loaded.
pub(crate) struct SectionHeader<'a> {
    pub name: &'a [u8],
    pub flags: u64,
}

pub(crate) const SHT_NOBITS: u32 = 8;
pub(crate) const SHF_EXECINSTR: u64 = 4;

/// Reads `[off, off + len)` of `file` into the same range of `map`,
/// clipped to the file's size (a header pointing past the end is the
/// parsers' to report).
fn load_into(file: &File, map: &mut [u8], off: u64, len: u64) -> io::Result<()> {
    let size = map.len() as u64;
    let (start, end) = (off.min(size), off.saturating_add(len).min(size));
    if start == end {
        return Ok(());
    }
    // Both fit in usize: they are at most the mapping's length.
    file.read_exact_at(&mut map[start as usize..end as usize], start)
}

impl Image {
    /// Every byte, already in memory.
    pub fn whole(data: Vec<u8>) -> Image {
        Image { bytes: Bytes::Whole(data), file: None }
    }

    /// The ELF, program and section headers, the section name table and
    /// the sections `keep` wants. `Ok(None)` when the file is not a 64-bit
    /// little-endian ELF with section headers: the caller reads it whole
    /// (and the parsers say what is wrong with it).
    pub fn sparse(file: File, keep: impl Fn(&SectionHeader<'_>) -> bool) -> io::Result<Option<Image>> {
        let size = file.metadata()?.len();
        let Ok(len) = usize::try_from(size) else { return Ok(None) };
        if size < 64 {
            return Ok(None);
        }
        let mut map = memmap2::MmapMut::map_anon(len)?;
        load_into(&file, &mut map, 0, 64)?;
        let h = &map[..64];
        if h[..4] != *b"\x7fELF" || h[4] != 2 || h[5] != 1 {
            return Ok(None);
        }
        let field = |off: usize| u64_at(h, off).unwrap_or(0);
        let half = |off: usize| u64::from(u16_at(h, off).unwrap_or(0));
        let (phoff, shoff) = (field(0x20), field(0x28));
        let (phentsize, phnum, shentsize, shnum, shstrndx) =
            (half(0x36), half(0x38), half(0x3a), half(0x3c), half(0x3e));
        if shoff == 0 || shnum == 0 || shentsize < 64 || shstrndx >= shnum {
            return Ok(None);
        }
        load_into(&file, &mut map, phoff, phentsize.saturating_mul(phnum))?;
        load_into(&file, &mut map, shoff, shentsize.saturating_mul(shnum))?;
        let header = |map: &[u8], i: u64| -> Option<(u32, u32, u64, u64, u64)> {
            let at = usize::try_from(shoff.checked_add(i.checked_mul(shentsize)?)?).ok()?;
            let sh = bytes_at(map, at, 64)?;
            Some((u32_at(sh, 0)?, u32_at(sh, 4)?, u64_at(sh, 8)?, u64_at(sh, 0x18)?, u64_at(sh, 0x20)?))
        };
        let Some((_, _, _, names_off, names_len)) = header(&map, shstrndx) else { return Ok(None) };
        load_into(&file, &mut map, names_off, names_len)?;
        let mut wanted = Vec::new();
        for i in 0..shnum {
            let Some((name, sh_type, flags, off, len)) = header(&map, i) else { continue };
            if sh_type == SHT_NOBITS {
                continue;
            }
            let name = usize::try_from(names_off.saturating_add(u64::from(name)))
                .ok()
                .and_then(|at| map.get(at..))
                .map(|tail| &tail[..tail.iter().position(|&b| b == 0).unwrap_or(0)])
                .unwrap_or_default();
            if keep(&SectionHeader { name, flags }) {
                wanted.push((off, len));
            }
        }
        for (off, len) in wanted {
            load_into(&file, &mut map, off, len)?;
        }
        Ok(Some(Image { bytes: Bytes::Sparse(map), file: Some(file) }))
    }

    /// True when only some sections were read (`Image::sparse`).
    #[cfg(test)]
    pub fn is_sparse(&self) -> bool {
        matches!(self.bytes, Bytes::Sparse(_))
    }

    /// Makes `[off, off + len)` of the file present (a sparse image reads
    /// it; a whole one has it).
    pub fn load(&mut self, off: u64, len: u64) -> io::Result<()> {
        match (&mut self.bytes, &self.file) {
            (Bytes::Sparse(map), Some(file)) => load_into(file, map, off, len),
            _ => Ok(()),
        }
    }

    /// `len` bytes at file offset `off`, wherever they are: borrowed from
    /// a whole image, read from the file for a sparse one (code, which it
    /// leaves out). None when they are not in the file.
    pub fn bytes(&self, off: u64, len: usize) -> Option<Cow<'_, [u8]>> {
        match &self.file {
            None => bytes_at(self, usize::try_from(off).ok()?, len).map(Cow::Borrowed),
            Some(file) => {
                if off.checked_add(len as u64)? > self.len() as u64 {
                    return None;
                }
                let mut buf = vec![0; len];
                file.read_exact_at(&mut buf, off).ok()?;
                Some(Cow::Owned(buf))
            }
        }
    }

    /// A temporary image of the same file with the sections `keep` wants
    /// (e.g. DWARF, read once at startup), or None for a whole image,
    /// which has them all.
    pub fn sections(&self, keep: impl Fn(&SectionHeader<'_>) -> bool) -> Option<io::Result<Image>> {
        let file = self.file.as_ref()?;
        Some(file.try_clone().and_then(|f| Image::sparse(f, keep)).and_then(|image| {
            image.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the ELF headers changed on disk"))
        }))
    }
}
