//! SIGINT while a child owns the terminal: like a shell, xtask does not die
//! on Ctrl-C (so its guards can clean up); it only records it. A handler,
//! unlike SIG_IGN, is reset on exec, so children still get the default.
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Records SIGINT instead of dying on it.
pub fn catch_interrupts() -> Result<()> {
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; sigaction is given a zeroed, valid struct.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

/// Whether SIGINT arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
