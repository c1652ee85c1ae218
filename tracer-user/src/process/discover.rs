//! Finding processes in /proc: which exist, what they run, and which
//! container they run in, for `--exe` and `--all`.
//!
//! A PID alone does not identify a process over time: PIDs are reused, and
//! a process that calls exec keeps its PID but runs another program (a
//! freshly forked child briefly runs its parent's). [`Identity`] is what
//! stays the same for as long as one program runs in one process.
use std::{fs, io, os::unix::fs::MetadataExt, path::Path};

/// One program running in one process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    pub(crate) pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// tells a reused PID apart.
    pub(crate) start_ticks: u64,
    /// Device and inode of `/proc/PID/exe`: tells an exec apart.
    pub(crate) exe: (u64, u64),
}

impl Identity {
    /// `None` when the process is gone, or has no executable (a kernel
    /// thread, a zombie); `Err` when it cannot be read (permissions).
    pub(crate) fn of(pid: u32) -> io::Result<Option<Self>> {
        let Some(start_ticks) = start_ticks(pid) else { return Ok(None) };
        match fs::metadata(format!("/proc/{pid}/exe")) {
            Ok(meta) => Ok(Some(Self { pid, start_ticks, exe: (meta.dev(), meta.ino()) })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Device and inode of the executable of `pid`, when it can be read: one
/// `stat`, the cheap check that a known process still runs the same program.
pub(crate) fn exe_of(pid: u32) -> Option<(u64, u64)> {
    fs::metadata(format!("/proc/{pid}/exe")).ok().map(|meta| (meta.dev(), meta.ino()))
}

/// Every PID in /proc now (processes, not threads).
pub(crate) fn pids() -> io::Result<Vec<u32>> {
    let mut pids: Vec<u32> =
        fs::read_dir("/proc")?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Start time of a process, from `/proc/PID/stat`; `None` when it is gone.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    // The command name can hold spaces and parentheses: fields count from
    // the last ')'. The state is field 3, the start time field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The base name of the executable a process runs (`/proc/PID/exe`, not
/// the 15-character `comm`), without the " (deleted)" of a replaced file.
pub(crate) fn exe_name(pid: u32) -> io::Result<String> {
    let target = fs::read_link(format!("/proc/{pid}/exe"))?;
    Ok(base_name(&target))
}

fn base_name(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    name.trim_end_matches(" (deleted)").to_owned()
}

/// The container a process runs in, from `/proc/PID/cgroup`: the 64-hex
/// container ID that Docker, containerd, CRI-O and Podman put in the cgroup
/// path; `None` outside a container (or when it cannot be read).
pub(crate) fn container_of(pid: u32) -> Option<String> {
    container_id(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

fn container_id(cgroup: &str) -> Option<String> {
    let is_id = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    // Lines are `hierarchy:controllers:path`; the innermost component that
    // names a container wins (`…/docker-<id>.scope`, `…/cri-containerd-<id>.scope`,
    // `/kubepods/burstable/pod<uid>/<id>`, `/docker/<id>`).
    cgroup.lines().filter_map(|line| line.splitn(3, ':').nth(2)).find_map(|path| {
        path.rsplit('/').find_map(|component| {
            let component = component.trim_end_matches(".scope");
            let id = component.rsplit(['-', ':']).next()?;
            is_id(id).then(|| id.to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f5e0b7c1d2a4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";

    #[test]
    fn container_ids_of_the_common_runtimes() {
        let cases = [
            format!("0::/system.slice/docker-{ID}.scope"),
            format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
            ),
            format!("12:memory:/kubepods/burstable/pod0c7a5b3e-1111-2222-3333-444455556666/{ID}\n0::/"),
            format!("0::/docker/{ID}"),
            format!("0::/machine.slice/libpod-{ID}.scope/container"),
            format!("0::/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"),
        ];
        for cgroup in &cases {
            assert_eq!(container_id(cgroup).as_deref(), Some(ID), "{cgroup}");
        }
    }

    #[test]
    fn no_container_on_the_host() {
        assert_eq!(container_id("0::/user.slice/user-0.slice/session-3.scope"), None);
        assert_eq!(container_id("0::/system.slice/ssh.service\n"), None);
        assert_eq!(container_id(""), None);
        assert_eq!(container_id("garbage"), None);
        // 64 characters that are not all hex.
        assert_eq!(container_id(&format!("0::/docker/{}", "z".repeat(64))), None);
    }

    #[test]
    fn start_time_counts_from_the_last_parenthesis() {
        let stat = "42 (a) b) (c) S 1 42 42 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(987654));
        assert_eq!(parse_start_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name(Path::new("/srv/api/server (deleted)")), "server");
        assert_eq!(base_name(Path::new("/usr/bin/worker")), "worker");
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        let id = Identity::of(me).expect("read").expect("exists");
        assert_eq!(id.pid, me);
        assert_eq!(Identity::of(me).expect("read"), Some(id), "stable");
        assert!(pids().expect("list").contains(&me));
        assert!(!exe_name(me).expect("exe").is_empty());
        assert_eq!(Identity::of(u32::MAX - 1).expect("read"), None);
    }
}
