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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_and_the_rest() {
        assert!(is_concurrency_primitive("chan send"));
        assert!(is_concurrency_primitive("sync.Mutex.Lock"));
        assert!(!is_concurrency_primitive("sleep"));
        assert!(!is_concurrency_primitive("IO wait"));
    }
}
