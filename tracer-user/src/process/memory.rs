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

pub struct ProcessMemory {
    mem: File,
}

impl ProcessMemory {
    pub fn open(pid: u32) -> Result<Self, MemoryError> {
        let path = PathBuf::from(format!("/proc/{pid}/mem"));
        let mem = File::open(&path).map_err(|source| MemoryError::Open { path, source })?;
        Ok(Self { mem })
    }

    pub fn read_exact(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let mut done = 0;
        while done < len {
            match self.mem.read_at(&mut buf[done..], addr + done as u64) {
                Ok(0) => return Err(MemoryError::Short { addr, len, got: done }),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(MemoryError::Read { addr, len, source }),
            }
        }
        Ok(())
    }

    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut buf = vec![0; len];
        self.read_exact(addr, &mut buf)?;
        Ok(buf)
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut buf = [0; 8];
        self.read_exact(addr, &mut buf)?;
        Ok(u64::from_le_bytes(buf))
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
    fn reads_own_memory() {
        let value: u64 = 0x1122_3344_5566_7788;
        let mem = ProcessMemory::open(std::process::id()).expect("open own /proc/self/mem");
        let addr = &value as *const u64 as u64;
        assert_eq!(mem.read_u64(addr).expect("read"), value);
    }
}
