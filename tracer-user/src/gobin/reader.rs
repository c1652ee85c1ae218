//! Bounds-checked little-endian readers over untrusted byte slices.
//!
//! Every accessor returns `None` instead of panicking when the input is too
//! short; callers turn that into `GoBinError::Malformed` where it matters.

pub(crate) fn bytes_at(d: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    d.get(off..off.checked_add(len)?)
}

pub(crate) fn u8_at(d: &[u8], off: usize) -> Option<u8> {
    d.get(off).copied()
}

pub(crate) fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes_at(d, off, 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes_at(d, off, 4)?.try_into().ok()?))
}

pub(crate) fn i32_at(d: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_le_bytes(bytes_at(d, off, 4)?.try_into().ok()?))
}

pub(crate) fn u64_at(d: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes_at(d, off, 8)?.try_into().ok()?))
}

/// A NUL-terminated UTF-8 string starting at `off` (Go's funcnametab and
/// filetab entries).
pub(crate) fn cstr_at(d: &[u8], off: usize) -> Option<&str> {
    let tail = d.get(off..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    std::str::from_utf8(tail.get(..end)?).ok()
}

/// Go's `encoding/binary` unsigned varint (LEB128), advancing `pos`.
pub(crate) fn uvarint(d: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *d.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
    }
}

/// Converts a u64 from the file into a usize index, refusing values that do
/// not fit (only matters on 32-bit hosts, but keeps arithmetic honest).
pub(crate) fn to_usize(v: u64) -> Option<usize> {
    usize::try_from(v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_none() {
        let d = [1u8, 2, 3];
        assert_eq!(u32_at(&d, 0), None);
        assert_eq!(u64_at(&d, usize::MAX), None);
        assert_eq!(bytes_at(&d, usize::MAX, 2), None);
        assert_eq!(cstr_at(b"abc", 0), None, "no terminator");
        assert_eq!(cstr_at(b"abc\0", 1), Some("bc"));
        let mut p = 0;
        assert_eq!(uvarint(&[0x80, 0x80], &mut p), None);
        let mut p = 0;
        assert_eq!(uvarint(&[0xac, 0x02], &mut p), Some(300));
        let mut p = 0;
        assert_eq!(uvarint(&[0xff; 20], &mut p), None, "overlong varint");
    }
}
