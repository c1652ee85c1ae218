//! Snapshots on stdout: JSON lines (`--json`) and the plain text view, and
//! the choice between them, the dashboard and the exporter alone.
pub(crate) mod json;
pub(crate) mod text;

use std::io::{self, IsTerminal as _};

use crate::{aggregate::model::Snapshot, cli::Options};

/// Where a session's snapshots go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutputMode {
    /// `--json`: one object per line on stdout.
    Json,
    /// Plain text on stdout (not a terminal, or no TUI built in).
    Text { is_tty: bool },
    /// The interactive dashboard (stdout belongs to it).
    Tui,
    /// `--no-tui` with `--metrics-addr`: nothing on stdout.
    Headless,
}

/// `--no-tui` without `--json` or `--metrics-addr`.
#[derive(Debug, thiserror::Error)]
#[error("--no-tui without --json has nothing to show: add --metrics-addr HOST:PORT or --json")]
pub struct NothingToShow;

impl OutputMode {
    pub(crate) fn choose(options: &Options) -> Result<Self, NothingToShow> {
        let is_tty = io::stdout().is_terminal();
        Ok(if options.json {
            Self::Json
        } else if options.no_tui {
            if options.metrics_addr.is_none() {
                return Err(NothingToShow);
            }
            Self::Headless
        } else if is_tty && io::stdin().is_terminal() && crate::tui::AVAILABLE {
            Self::Tui
        } else {
            Self::Text { is_tty }
        })
    }

    /// Prints one snapshot, if this mode prints on stdout. `top` caps the
    /// goroutines listed (the feed keeps them all, so counts stay whole).
    /// False when nobody reads stdout any more (`deferscope --json | head
    /// -1`): the session then ends, as `yes | head` does, rather than
    /// tracing for no one.
    pub(crate) fn print(self, snapshot: &Snapshot, top: Option<usize>) -> io::Result<bool> {
        if matches!(self, Self::Tui | Self::Headless) {
            return Ok(true);
        }
        let capped;
        let snapshot = match top {
            Some(n) if snapshot.goroutines.len() > n => {
                capped = snapshot.with_top(n);
                &capped
            }
            _ => snapshot,
        };
        let mut stdout = io::stdout().lock();
        let result = match self {
            Self::Json => json::write_line(&mut stdout, snapshot),
            Self::Text { is_tty } => text::show(&mut stdout, snapshot, is_tty, terminal_rows()),
            Self::Tui | Self::Headless => Ok(()),
        };
        match result {
            // A closed pipe is not an error: the reader is done.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            other => other.map(|()| true),
        }
    }
}

/// Rows left for the goroutine list of the text view.
fn terminal_rows() -> usize {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills the winsize we own.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_row > 0 { (ws.ws_row as usize).saturating_sub(20).max(5) } else { 30 }
}
