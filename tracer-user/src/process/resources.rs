//! What the traced process holds, from /proc: open files against their
//! limit, resident memory, threads. A pile of `Close` defers shows up here
//! as file descriptors.
use std::path::Path;

use crate::aggregate::model::ProcessResources;

/// Reads `/proc/PID/{fd,limits,statm,status}`. Each figure is independent:
/// one that cannot be read (the process exited, or /proc is restricted) is
/// left out rather than failing the others.
pub(crate) fn read(pid: u32) -> ProcessResources {
    read_from(&Path::new("/proc").join(pid.to_string()))
}

fn read_from(dir: &Path) -> ProcessResources {
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    ProcessResources {
        open_fds: std::fs::read_dir(dir.join("fd")).ok().map(|entries| entries.count() as u64),
        fd_limit: text("limits").and_then(|t| open_files_soft_limit(&t)),
        rss_bytes: text("statm").and_then(|t| resident_pages(&t)).map(|pages| pages.saturating_mul(page_size())),
        threads: text("status").and_then(|t| status_threads(&t)),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// The soft limit of `Max open files` (`unlimited` → none).
fn open_files_soft_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// `statm`'s second field: resident pages.
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

fn status_threads(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("Threads:"))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63504                63504                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_soft_limit(limits), Some(1024));
        assert_eq!(open_files_soft_limit("Max open files            unlimited            unlimited    files"), None);
        assert_eq!(resident_pages("2580 512 300 1 0 400 0\n"), Some(512));
        assert_eq!(status_threads("Name:\tdemo\nThreads:\t7\nSigQ:\t0/1\n"), Some(7));
        assert_eq!(status_threads(""), None);
        assert_eq!(resident_pages("garbage"), None);
    }

    /// Against this test process's own view of itself.
    #[test]
    fn reads_this_process() {
        let before = read(std::process::id());
        let files: Vec<std::fs::File> = (0..8).map(|_| std::fs::File::open("/proc/self/stat").expect("open")).collect();
        let after = read(std::process::id());
        let (before_fds, after_fds) = (before.open_fds.expect("fds"), after.open_fds.expect("fds"));
        // Other tests run in parallel threads and open files too.
        assert!(after_fds >= before_fds + 8 || after_fds >= 8, "{before_fds} → {after_fds}");
        drop(files);
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes into the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(after.fd_limit, (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur));
        assert!(after.rss_bytes.expect("rss") > 0);
        assert!(after.threads.expect("threads") >= 1);
        assert_eq!(read(u32::MAX), ProcessResources::default(), "no such process: nothing, no panic");
    }
}
