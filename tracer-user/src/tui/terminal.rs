//! Entering and leaving the full-screen terminal mode. The guard restores
//! the terminal when dropped, and a panic hook restores it before the panic
//! message prints, so a crash never leaves the shell in raw mode.
use std::{
    io::{self, Stdout},
    sync::Once,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor, execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
};

pub type Tty = Terminal<CrosstermBackend<Stdout>>;

/// Leaves the alternate screen, disables raw mode, shows the cursor. Safe to
/// call more than once and when the terminal was never set up.
pub fn restore() -> io::Result<()> {
    let raw = terminal::disable_raw_mode();
    let screen = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    raw.and(screen)
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore();
            previous(info);
        }));
    });
}

/// The terminal in dashboard mode while alive.
pub struct TerminalGuard {
    pub terminal: Tty,
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        // From here on, Drop (or the error path) restores.
        let guard = || -> io::Result<Tty> {
            execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
            let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            terminal.clear()?;
            Ok(terminal)
        };
        match guard() {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                let _ = restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}
