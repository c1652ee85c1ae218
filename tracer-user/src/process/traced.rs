//! The target process as the kernel shows it in /proc.
use std::{
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no process with PID {0}")]
    NoSuchProcess(u32),
    #[error("permission denied reading {path}: deferscope needs root (or CAP_SYS_PTRACE, CAP_BPF and CAP_PERFMON)")]
    PermissionDenied { path: PathBuf },
    #[error("process {pid} has no executable (a kernel thread or a zombie)")]
    NoExecutable { pid: u32 },
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the executable of process {pid} is not mapped in its memory")]
    ExeNotMapped { pid: u32 },
}

fn io_error(pid: u32, path: &Path, source: io::Error) -> ProcessError {
    match source.kind() {
        io::ErrorKind::NotFound if !Path::new(&format!("/proc/{pid}")).exists() => ProcessError::NoSuchProcess(pid),
        io::ErrorKind::NotFound => ProcessError::NoExecutable { pid },
        io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied { path: path.to_owned() },
        _ => ProcessError::Io { path: path.to_owned(), source },
    }
}

/// A running process, identified by PID.
#[derive(Clone, Debug)]
pub struct TracedProcess {
    pub pid: u32,
    /// `/proc/PID/exe`: opens the executable the process runs even when the
    /// file on disk was replaced or deleted (uprobes attach to this inode).
    pub exe_link: PathBuf,
    /// Where the link points, for display (may end in " (deleted)").
    pub exe_path: PathBuf,
    pub exe_inode: u64,
}

impl TracedProcess {
    pub fn open(pid: u32) -> Result<Self, ProcessError> {
        if pid == 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(ProcessError::NoSuchProcess(pid));
        }
        let exe_link = PathBuf::from(format!("/proc/{pid}/exe"));
        let exe_path = fs::read_link(&exe_link).map_err(|e| io_error(pid, &exe_link, e))?;
        let exe_inode = fs::metadata(&exe_link).map_err(|e| io_error(pid, &exe_link, e))?.ino();
        Ok(Self { pid, exe_link, exe_path, exe_inode })
    }

    /// The executable's file name, for labels and headers.
    pub fn exe_name(&self) -> String {
        let name = self.exe_path.file_name().map(|n| n.to_string_lossy().into_owned());
        name.unwrap_or_else(|| self.exe_path.display().to_string()).trim_end_matches(" (deleted)").to_owned()
    }

    pub fn is_alive(&self) -> bool {
        // A zombie still has /proc/PID but no longer runs Go code.
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
            Err(_) => false,
        }
    }

    /// Mappings of the executable itself: (start address, file offset).
    pub fn exe_mappings(&self) -> Result<Vec<(u64, u64)>, ProcessError> {
        let path = PathBuf::from(format!("/proc/{}/maps", self.pid));
        let maps = fs::read_to_string(&path).map_err(|e| io_error(self.pid, &path, e))?;
        Ok(parse_exe_mappings(&maps, self.exe_inode))
    }

    /// The PIE load bias: runtime address − static address. 0 for ET_EXEC.
    /// `first_load_vaddr` is the page-aligned vaddr of the PT_LOAD segment
    /// that starts at file offset 0.
    pub fn load_bias(&self, is_pie: bool, first_load_vaddr: u64) -> Result<u64, ProcessError> {
        if !is_pie {
            return Ok(0);
        }
        bias_from_mappings(&self.exe_mappings()?, first_load_vaddr).ok_or(ProcessError::ExeNotMapped { pid: self.pid })
    }
}

/// The kernel maps the segment at file offset 0 at its page-aligned link
/// address plus the bias.
fn bias_from_mappings(mappings: &[(u64, u64)], first_load_vaddr: u64) -> Option<u64> {
    let (start, _) = mappings.iter().find(|(_, off)| *off == 0)?;
    Some(start.wrapping_sub(first_load_vaddr & !0xfff))
}

/// Parses /proc/PID/maps lines `start-end perms offset dev inode path` and
/// keeps those of the given inode.
fn parse_exe_mappings(maps: &str, inode: u64) -> Vec<(u64, u64)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let _perms = fields.next()?;
            let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _dev = fields.next()?;
            let ino: u64 = fields.next()?.parse().ok()?;
            let start = u64::from_str_radix(range.split_once('-')?.0, 16).ok()?;
            (ino == inode).then_some((start, offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps() {
        let maps = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fe:00 1234 /tmp/prog
55d0c0b00000-55d0c0c00000 r-xp 00100000 fe:00 1234 /tmp/prog
7f0000000000-7f0000001000 rw-p 00000000 00:00 0 
7f0000001000-7f0000002000 r--p 00000000 fe:00 99 /lib/libc.so";
        assert_eq!(parse_exe_mappings(maps, 1234), vec![(0x55d0c0a00000, 0), (0x55d0c0b00000, 0x100000)]);
        assert!(parse_exe_mappings("garbage\n\n1-2 x", 1).is_empty());
    }

    #[test]
    fn load_bias_from_the_mapping_at_offset_zero() {
        let maps = [(0x5555_5540_0000, 0x1000), (0x5555_5500_0000, 0)];
        assert_eq!(bias_from_mappings(&maps, 0x400000), Some(0x5555_5500_0000 - 0x400000));
        assert_eq!(bias_from_mappings(&maps[..1], 0x400000), None);
    }

    #[test]
    fn missing_pid_is_a_clear_error() {
        let err = TracedProcess::open(u32::MAX - 1).unwrap_err();
        assert_eq!(err.to_string(), format!("no process with PID {}", u32::MAX - 1));
    }

    #[test]
    fn own_process() {
        let me = TracedProcess::open(std::process::id()).expect("self");
        assert!(me.is_alive());
        assert!(!me.exe_mappings().expect("maps").is_empty());
    }
}
