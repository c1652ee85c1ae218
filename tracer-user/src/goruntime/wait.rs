//! Wait reasons: which ones mean "blocked on a concurrency primitive".
//!
//! The numbers are renumbered across versions ([`super::WaitReasons`] maps
//! them per version); the strings Go prints are stable, so the rules here
//! are written against the strings.

/// Wait reasons (as Go prints them) that mean "blocked on a concurrency
/// primitive": channel operations, select, locks, cond, WaitGroup and
/// semaphores. Sleeping, IO wait, syscalls, GC and timers never are.
const CONCURRENCY_PRIMITIVE_WAITS: &[&str] = &[
    "chan send",
    "chan receive",
    "chan send (nil chan)",
    "chan receive (nil chan)",
    "select",
    "select (no cases)",
    "sync.Mutex.Lock",
    "sync.RWMutex.RLock",
    "sync.RWMutex.Lock",
    "sync.Cond.Wait",
    "sync.WaitGroup.Wait",
    // sync.WaitGroup.Wait up to Go 1.23, and runtime semaphores.
    "semacquire",
];

/// Whether a goroutine parked with this wait reason waits on a concurrency
/// primitive, so that it can leak.
pub(crate) fn is_concurrency_primitive(reason: &str) -> bool {
    CONCURRENCY_PRIMITIVE_WAITS.contains(&reason)
}

/// What a blocked goroutine's wait reason says about proving it leaked,
/// following Go's own `isMaybeRunnable` (runtime/mgc.go, Go 1.26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrimitiveWait {
    /// Nothing can ever wake it: a nil channel, `select {}`. The reason says why.
    NeverWakes(&'static str),
    /// Channel send, receive or select: woken only through the channels of
    /// its sudogs (`g.waiting`, chained by `waitlink`, field `c`).
    Channel,
    /// Mutex, RWMutex, WaitGroup, Cond: woken only through the sync object
    /// at the first sudog's `elem`. The runtime links that sudog from
    /// `g.waiting` only since Go 1.26; before, Mutex, RWMutex and WaitGroup
    /// waiters are found in `runtime.semtable`, Cond waiters not at all.
    Sync,
    /// "semacquire": a semaphore wait that Go does not attribute (sync
    /// waits on Go 1.19, `sync.WaitGroup.Wait` up to 1.23, runtime and
    /// `internal/poll` semaphores). Woken only through the semaphore word at
    /// the sudog's `elem` (`g.waiting` on 1.26+, else `runtime.semtable`);
    /// a semaphore outside the heap (the runtime's globals) is reachable.
    Semaphore,
    /// Anything else (sleep, I/O, syscalls): may run.
    MayRun,
}

/// Wait reasons of the runtime's own goroutines parked between rounds of
/// work that never handles user objects: GC mark workers, the sweeper, the
/// scavenger, the forced-GC helper. No user pointer is live in their
/// stacks (Go's GC scans them precisely). Scanned conservatively, their dead
/// slots would count: a GC worker created during a GC reuses the stack of a
/// goroutine that exited, with its stale frames, and kept whole leaked
/// groups "reachable" in Go's leak corpus. Finalizer and cleanup goroutines
/// run user code, so they are not in this list.
const RUNTIME_IDLE_WAITS: &[&str] = &["GC worker (idle)", "GC sweep wait", "GC scavenge wait", "force gc (idle)"];

/// Whether a goroutine parked with this wait reason is a runtime goroutine
/// between rounds of work, whose stack is no root of user objects.
pub(crate) fn is_runtime_idle(reason: &str) -> bool {
    RUNTIME_IDLE_WAITS.contains(&reason)
}

/// Classifies a wait reason (as Go prints it) for the reachability proof.
pub(crate) fn primitive_wait(reason: &str) -> PrimitiveWait {
    match reason {
        "chan send (nil chan)" | "chan receive (nil chan)" => PrimitiveWait::NeverWakes("nil channel"),
        "select (no cases)" => PrimitiveWait::NeverWakes("select with no cases"),
        "chan send" | "chan receive" | "select" => PrimitiveWait::Channel,
        "sync.Mutex.Lock" | "sync.RWMutex.RLock" | "sync.RWMutex.Lock" | "sync.Cond.Wait" | "sync.WaitGroup.Wait" => {
            PrimitiveWait::Sync
        }
        "semacquire" => PrimitiveWait::Semaphore,
        _ => PrimitiveWait::MayRun,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitive_waits_follow_go() {
        assert_eq!(primitive_wait("chan send (nil chan)"), PrimitiveWait::NeverWakes("nil channel"));
        assert_eq!(primitive_wait("select"), PrimitiveWait::Channel);
        assert_eq!(primitive_wait("sync.WaitGroup.Wait"), PrimitiveWait::Sync);
        // Runtime semaphores (and WaitGroup.Wait before Go 1.24) are proven
        // through their semaphore word.
        assert_eq!(primitive_wait("semacquire"), PrimitiveWait::Semaphore);
        assert_eq!(primitive_wait("sleep"), PrimitiveWait::MayRun);
    }

    #[test]
    fn primitives_and_the_rest() {
        assert!(is_concurrency_primitive("chan send"));
        assert!(is_concurrency_primitive("sync.Mutex.Lock"));
        assert!(!is_concurrency_primitive("sleep"));
        assert!(!is_concurrency_primitive("IO wait"));
    }
}
