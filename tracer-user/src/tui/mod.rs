//! The live dashboard (ratatui + crossterm), `deferscope --pid PID` in a
//! terminal.
//!
//! - [`app`]: the state (selection, sort, filter, pause, focus, history);
//! - [`keys`]: keys → state changes;
//! - [`event`]: terminal input (snapshots come from [`crate::feed`]);
//! - [`ui`] and [`sections`]: drawing, one module per part of the screen;
//! - [`terminal`]: raw mode / alternate screen, always restored.
use std::{
    io,
    time::{Duration, Instant},
};

use crate::{cli::Options, feed::SnapshotFeed};

pub mod app;
pub mod event;
pub mod format;
pub mod keys;
pub mod sections;
pub mod terminal;
pub mod ui;

use app::{App, Settings};
use event::{Event, Events, POLL};
use keys::{Action, handle_key};

/// Whether this build has the interactive dashboard.
pub const AVAILABLE: bool = true;

/// Runs the dashboard until the user quits, or until the feed closes
/// (unless the last snapshot says the target exited: then the screen stays,
/// with the last data, until `q`). Blocking: call it on its own thread.
pub(crate) fn run(mut feed: SnapshotFeed, options: &Options) -> io::Result<()> {
    let mut guard = terminal::TerminalGuard::enter()?;
    let mut app = App::new(Settings::from_options(options));
    let mut dirty = true;
    let mut last_draw = Instant::now();
    loop {
        // Take every snapshot that arrived; only the newest matters.
        if let Some(snapshot) = feed.next_unseen() {
            app.on_snapshot(snapshot);
            dirty = true;
        }
        if feed.is_closed() && !app.feed_closed {
            app.feed_closed = true;
            dirty = true;
            if !app.target_exited() {
                return Ok(());
            }
        }
        // Redraw on change, and once a second anyway (uptime, blinking).
        if dirty || last_draw.elapsed().as_secs() >= 1 {
            ui::render(&mut guard.terminal, &mut app)?;
            dirty = false;
            last_draw = Instant::now();
        }
        // Wait for input; then take everything already queued (key repeat,
        // pasted filters) before drawing again.
        let mut timeout = POLL;
        while let Some(event) = Events::poll_terminal(timeout)? {
            timeout = Duration::ZERO;
            match event {
                Event::Key(key) => match handle_key(&mut app, key) {
                    Action::Quit => return Ok(()),
                    Action::Redraw => dirty = true,
                    Action::None => {}
                },
                Event::Redraw => {
                    guard.terminal.autoresize()?;
                    dirty = true;
                }
            }
        }
    }
}
