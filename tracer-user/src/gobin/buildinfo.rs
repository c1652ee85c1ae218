//! Go version from the `.go.buildinfo` blob (`debug/buildinfo` format).
//!
//! Layout: `"\xff Go buildinf:"` (14 bytes), pointer size (1 byte), flags
//! (1 byte; bit 0 = big-endian, bit 1 = inline strings), padded to 32 bytes.
//! Go 1.18+ sets bit 1 and follows the header with two uvarint-length
//! strings (version, modinfo). Older linkers store, at offset 16, a pointer
//! to a Go string header for the version instead.

use super::elf::ElfInfo;
use super::reader::{bytes_at, to_usize, u8_at, u64_at, uvarint};
use super::{GoBinError, GoVersion};

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
/// Upper bound on a plausible version string; guards against garbage.
const MAX_VERSION_LEN: u64 = 256;

/// The raw version string (e.g. `go1.24.11`), or None when the binary has no
/// build info blob at all.
pub(crate) fn find_version(data: &[u8], elf: &ElfInfo) -> Result<Option<String>, GoBinError> {
    if let Some(blob) = elf.section_data(data, ".go.buildinfo") {
        return parse_blob(blob, data, elf).map(Some);
    }
    // No section headers (or the section was renamed): the blob lives at a
    // 16-byte aligned address in a writable segment.
    for seg in elf.segments.iter().filter(|s| s.is_writable()) {
        let Some(start) = to_usize(seg.file_offset) else { continue };
        let Some(len) = to_usize(seg.filesz) else { continue };
        let Some(bytes) = bytes_at(data, start, len) else { continue };
        let mut off = (16 - start % 16) % 16;
        while off + HEADER_LEN <= bytes.len() {
            if bytes.get(off..off + MAGIC.len()) == Some(&MAGIC[..]) {
                if let Some(blob) = bytes.get(off..) {
                    return parse_blob(blob, data, elf).map(Some);
                }
            }
            off += 16;
        }
    }
    Ok(None)
}

fn malformed(detail: impl Into<String>) -> GoBinError {
    GoBinError::Malformed { what: ".go.buildinfo", detail: detail.into() }
}

fn parse_blob(blob: &[u8], data: &[u8], elf: &ElfInfo) -> Result<String, GoBinError> {
    if blob.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(malformed("bad magic"));
    }
    let ptr_size = u8_at(blob, 14).ok_or_else(|| malformed("truncated header"))?;
    let flags = u8_at(blob, 15).ok_or_else(|| malformed("truncated header"))?;
    if flags & 1 != 0 {
        return Err(GoBinError::UnsupportedArch("big-endian Go binary".into()));
    }
    if flags & 2 != 0 {
        let mut pos = HEADER_LEN;
        let len = uvarint(blob, &mut pos).ok_or_else(|| malformed("truncated version length"))?;
        if len == 0 || len > MAX_VERSION_LEN {
            return Err(malformed(format!("implausible version length {len}")));
        }
        let s = bytes_at(blob, pos, len as usize).ok_or_else(|| malformed("truncated version"))?;
        return String::from_utf8(s.to_vec()).map_err(|_| malformed("version is not UTF-8"));
    }
    // Pre-1.18 pointer format: *string at offset 16.
    if ptr_size != 8 {
        return Err(malformed(format!("pointer size {ptr_size} in a 64-bit ELF")));
    }
    let str_hdr = u64_at(blob, 16).ok_or_else(|| malformed("truncated header"))?;
    let ptr = elf.read_u64_vaddr(data, str_hdr).ok_or_else(|| malformed("version pointer outside the file"))?;
    let len = elf
        .read_u64_vaddr(data, str_hdr.wrapping_add(8))
        .ok_or_else(|| malformed("version pointer outside the file"))?;
    if len == 0 || len > MAX_VERSION_LEN {
        return Err(malformed(format!("implausible version length {len}")));
    }
    let s = elf.read_vaddr(data, ptr, len as usize).ok_or_else(|| malformed("version string outside the file"))?;
    String::from_utf8(s.to_vec()).map_err(|_| malformed("version is not UTF-8"))
}

impl GoVersion {
    /// Parses `go1.24.11`, `go1.21rc2`, `go1.22`, `go1.24.11 X:rangefunc` or
    /// `devel go1.25-abcdef …` (the first `go1.` wins).
    pub fn parse(raw: &str) -> Option<GoVersion> {
        let start = raw.find("go1.")?;
        let rest = raw.get(start + 2..)?;
        let mut nums = [0u32; 3];
        let mut idx = 0;
        let mut seen_digit = false;
        for c in rest.chars() {
            match c {
                '0'..='9' => {
                    let d = c.to_digit(10)?;
                    nums[idx] = nums[idx].checked_mul(10)?.checked_add(d)?;
                    seen_digit = true;
                }
                '.' if seen_digit && idx < 2 => {
                    idx += 1;
                    seen_digit = false;
                }
                _ => break,
            }
        }
        if idx == 0 {
            return None; // need at least major.minor
        }
        Some(GoVersion { major: nums[0], minor: nums[1], patch: nums[2], raw: raw.to_string() })
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings() {
        let v = GoVersion::parse("go1.24.11").expect("parses");
        assert_eq!((v.major, v.minor, v.patch), (1, 24, 11));
        let v = GoVersion::parse("go1.21rc2").expect("parses");
        assert_eq!((v.major, v.minor, v.patch), (1, 21, 0));
        let v = GoVersion::parse("go1.24.11 X:rangefunc").expect("parses");
        assert_eq!((v.minor, v.patch, v.raw.as_str()), (24, 11, "go1.24.11 X:rangefunc"));
        let v = GoVersion::parse("devel go1.25-1234abcd Tue").expect("parses");
        assert_eq!((v.major, v.minor), (1, 25));
        assert_eq!(GoVersion::parse("go"), None);
        assert_eq!(GoVersion::parse("go1"), None);
        assert_eq!(GoVersion::parse("go1.99999999999999"), None);
    }
}
