//! Read-only access to another process's memory through `/proc/PID/mem`.
//!
//! The file is opened read-only: deferscope never writes the target. Reads do
//! not stop the target, so a value can change while it is read; callers that
//! need consistency re-read and compare (see `goroutines`).
use std::{fs::File, io, os::unix::fs::FileExt, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read {len} bytes at {addr:#x} in the target: {source}")]
    Read { addr: u64, len: usize, source: io::Error },
    #[error("short read of {len} bytes at {addr:#x} in the target (got {got})")]
    Short { addr: u64, len: usize, got: usize },
}

/// A read-only source of the target's memory: the live process
/// ([`ProcessMemory`]) or an image of it ([`MemoryImage`], for fuzzing and
/// tests). The scanner and the unwinder are generic over it, so the live
/// path pays nothing for the abstraction.
pub trait ReadMemory {
    /// Fills `buf` from `addr`, or fails without a partial result.
    fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// `len` bytes at `addr`.
    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut buf = vec![0; len];
        self.read_exact(addr, &mut buf)?;
        Ok(buf)
    }

    /// The little-endian word at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut buf = [0; 8];
        self.read_exact(addr, &mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }
}

pub struct ProcessMemory {
    mem: File,
}

impl ProcessMemory {
    pub fn open(pid: u32) -> Result<Self, MemoryError> {
        let path = PathBuf::from(format!("/proc/{pid}/mem"));
        let mem = File::open(&path).map_err(|source| MemoryError::Open { path, source })?;
        Ok(Self { mem })
    }
}

impl ReadMemory for ProcessMemory {
    fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let mut done = 0;
        while let Some(rest) = buf.get_mut(done..).filter(|rest| !rest.is_empty()) {
            // An address range that wraps past the top is never mapped.
            let Some(at) = addr.checked_add(done as u64) else {
                return Err(MemoryError::Short { addr, len, got: done });
            };
            match self.mem.read_at(rest, at) {
                Ok(0) => return Err(MemoryError::Short { addr, len, got: done }),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(MemoryError::Read { addr, len, source }),
            }
        }
        Ok(())
    }
}

/// An image of the target's memory: `bytes` mapped at `base`, nothing else.
/// What the fuzzer hands the goroutine scanner instead of a live process.
#[derive(Clone, Copy, Debug)]
pub struct MemoryImage<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> MemoryImage<'a> {
    pub fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }

    /// The image's bytes at [addr, addr + len), if they are all in it.
    fn slice(&self, addr: u64, len: usize) -> Result<&'a [u8], MemoryError> {
        let short = |got| MemoryError::Short { addr, len, got };
        // Nothing is mapped past the top of the address space.
        addr.checked_add(len as u64).ok_or_else(|| short(0))?;
        let start = addr.checked_sub(self.base).and_then(|o| usize::try_from(o).ok()).ok_or_else(|| short(0))?;
        let tail = self.bytes.get(start..).ok_or_else(|| short(0))?;
        tail.get(..len).ok_or_else(|| short(tail.len()))
    }
}

impl ReadMemory for MemoryImage<'_> {
    fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        buf.copy_from_slice(self.slice(addr, buf.len())?);
        Ok(())
    }

    /// Checks the range before allocating: a wild length read from the image
    /// costs nothing.
    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        Ok(self.slice(addr, len)?.to_vec())
    }
}

/// Little-endian field access into a buffer read from the target; `None` when
/// the offset is out of range (never panics on a short buffer).
pub fn field_u64(buf: &[u8], off: u64) -> Option<u64> {
    let off = usize::try_from(off).ok()?;
    let bytes = buf.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

pub fn field_u32(buf: &[u8], off: u64) -> Option<u32> {
    let off = usize::try_from(off).ok()?;
    let bytes = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

pub fn field_u16(buf: &[u8], off: u64) -> Option<u16> {
    let off = usize::try_from(off).ok()?;
    let bytes = buf.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(bytes.try_into().ok()?))
}

pub fn field_u8(buf: &[u8], off: u64) -> Option<u8> {
    buf.get(usize::try_from(off).ok()?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_bounds_checked() {
        let buf = [1u8, 0, 0, 0, 0, 0, 0, 0, 2];
        assert_eq!(field_u64(&buf, 0), Some(1));
        assert_eq!(field_u64(&buf, 2), None);
        assert_eq!(field_u32(&buf, 5), Some(2 << 24));
        assert_eq!(field_u8(&buf, 8), Some(2));
        assert_eq!(field_u8(&buf, 9), None);
        assert_eq!(field_u64(&buf, u64::MAX), None);
    }

    #[test]
    fn images_read_only_what_they_hold() {
        let bytes = [1u8, 0, 0, 0, 0, 0, 0, 0, 2];
        let image = MemoryImage::new(0x1000, &bytes);
        assert_eq!(image.read_u64(0x1000).expect("in the image"), 1);
        assert_eq!(image.read_vec(0x1008, 1).expect("last byte"), [2]);
        assert!(matches!(image.read_u64(0x1004), Err(MemoryError::Short { got: 5, .. })));
        assert!(image.read_u64(0xfff).is_err(), "below the base");
        assert!(image.read_vec(0x1000, usize::MAX).is_err(), "no allocation for a wild length");
        assert!(MemoryImage::new(u64::MAX, &bytes).read_u64(u64::MAX).is_err());
    }

    #[test]
    fn reads_near_the_top_of_the_address_space_fail() {
        let mem = ProcessMemory::open(std::process::id()).expect("open own /proc/self/mem");
        assert!(mem.read_u64(u64::MAX - 3).is_err());
    }

    #[test]
    fn reads_own_memory() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = ProcessMemory::open(std::process::id()).expect("open own /proc/self/mem");
        let addr = &value as *const u64 as u64;
        assert_eq!(mem.read_u64(addr).expect("read"), value);
    }
}
