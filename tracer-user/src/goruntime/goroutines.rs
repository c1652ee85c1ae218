//! Goroutines as the runtime sees them: their status, which ones are the
//! runtime's own, the main goroutine, and which stack frames are the
//! machinery of blocking rather than the code that blocked.
use serde::{Serialize, Serializer};

/// `g.atomicstatus` without the `_Gscan` bit. Decoded through the version's
/// generated [`super::StatusCodes`], never from numbers typed here.
///
/// Serialised as the JSON contract has it: lower case, `_Gdeadextra` as
/// `dead`, anything unknown as `unknown`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GoroutineStatus {
    Idle,
    #[default]
    Runnable,
    Running,
    Syscall,
    Waiting,
    Dead,
    CopyStack,
    Preempted,
    /// Go 1.26+: the GC found it unreachable while blocked (goroutineleak).
    Leaked,
    /// Go 1.26+: a g kept for cgo callbacks on extra Ms.
    DeadExtra,
    /// A value this version's table does not name.
    Unknown(u32),
}

impl GoroutineStatus {
    /// The status a `runtime2.go` constant names (`_Gwaiting`), if deferscope
    /// knows it.
    pub(crate) fn from_constant(name: Option<&str>) -> Option<Self> {
        Some(match name? {
            "_Gidle" => Self::Idle,
            "_Grunnable" => Self::Runnable,
            "_Grunning" => Self::Running,
            "_Gsyscall" => Self::Syscall,
            "_Gwaiting" => Self::Waiting,
            "_Gdead" => Self::Dead,
            "_Gcopystack" => Self::CopyStack,
            "_Gpreempted" => Self::Preempted,
            "_Gleaked" => Self::Leaked,
            "_Gdeadextra" => Self::DeadExtra,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Runnable => "runnable",
            Self::Running => "running",
            Self::Syscall => "syscall",
            Self::Waiting => "waiting",
            Self::Dead | Self::DeadExtra => "dead",
            Self::CopyStack => "copystack",
            Self::Preempted => "preempted",
            Self::Leaked => "leaked",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether the g holds a goroutine (as `runtime.gcount` counts them).
    pub fn is_live(self) -> bool {
        !matches!(self, Self::Dead | Self::DeadExtra | Self::Idle)
    }

    /// Whether the goroutine may be executing Go code, and so changing its
    /// defer chain, right now. `_Gcopystack` moves the chain, so it counts too.
    pub fn may_change_chain(self) -> bool {
        matches!(self, Self::Running | Self::CopyStack | Self::Unknown(_))
    }

    /// Parked in `gopark` with a wait reason (`_Gleaked` is a parked
    /// goroutine the Go 1.26+ GC proved unreachable).
    pub fn is_parked(self) -> bool {
        matches!(self, Self::Waiting | Self::Leaked)
    }

    /// Off-CPU with meaningful saved registers (`g.sched`), so its stack can
    /// be unwound from them.
    pub fn has_saved_registers(self) -> bool {
        matches!(self, Self::Waiting | Self::Runnable | Self::Preempted | Self::Leaked)
    }
}

impl std::fmt::Display for GoroutineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for GoroutineStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The goid of the main goroutine (`runtime.main`): servers park it for good
/// (`select {}`, waiting for a signal), so it is never a leak, and the
/// runtime's bootstrap, not a `go` statement, created it.
pub(crate) const MAIN_GOID: u64 = 1;

/// Whether a goroutine starting at `start_function` is one of the runtime's
/// own, with the rule of `runtime.isSystemGoroutine` (what
/// `runtime.NumGoroutine` leaves out): started in package runtime, except
/// `runtime.main` and the goroutines that run user code.
pub(crate) fn is_system_start(start_function: &str) -> bool {
    start_function.starts_with("runtime.")
        && !matches!(start_function, "runtime.main" | "runtime.handleAsyncEvent" | "runtime.corostart")
}

/// Packages whose frames are the machinery of blocking, not the place a user
/// would fix: a blocked goroutine's blocking site is the innermost frame
/// outside them.
pub(crate) fn is_blocking_machinery(function: &str) -> bool {
    function.starts_with("runtime.")
        || function.starts_with("sync.")
        || function.starts_with("internal/")
        || function.starts_with("sync/atomic.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_goroutines_and_machinery() {
        assert!(is_system_start("runtime.gcBgMarkWorker"));
        assert!(!is_system_start("runtime.main"));
        assert!(!is_system_start("main.main"));
        assert!(is_blocking_machinery("runtime.gopark"));
        assert!(is_blocking_machinery("sync.(*Mutex).Lock"));
        assert!(is_blocking_machinery("internal/sync.(*Mutex).lockSlow"));
        assert!(!is_blocking_machinery("main.worker"));
        assert!(!is_blocking_machinery("syncer.run"));
    }

    #[test]
    fn status_names_and_classes() {
        assert_eq!(serde_json::to_string(&GoroutineStatus::DeadExtra).expect("json"), "\"dead\"");
        assert_eq!(serde_json::to_string(&GoroutineStatus::Unknown(77)).expect("json"), "\"unknown\"");
        assert!(GoroutineStatus::Running.may_change_chain());
        assert!(!GoroutineStatus::Waiting.may_change_chain());
        assert!(!GoroutineStatus::Dead.is_live());
        assert!(!GoroutineStatus::DeadExtra.is_live());
        assert!(GoroutineStatus::Leaked.is_parked());
    }
}
